//! What each build of the components imports and exports, read from the built .wasm files as
//! `wasm-tools component wit` prints them (`wit_component::decode` + `WitPrinter`): the Spin
//! 4.1 build (spin.toml) exports `wasi:http/handler@0.3.0`; the WASIp2 build (deploy/spin3)
//! exports `wasi:http/incoming-handler@0.2.0` and imports nothing at 0.3; the Akamai build's
//! stateless cart (deploy/akamai) imports no key-value at all, so no `wasi:keyvalue/atomics`;
//! no stateful cart or dashboard imports key-value or Redis. `scripts/test` builds the
//! components before the tests run; a missing file fails, it is never skipped.

mod common;

use common::repo_root;
use wit_component::WitPrinter;

/// A component's world: the interfaces it imports and exports, e.g. `wasi:http/types@0.3.0`.
struct World {
    file: &'static str,
    imports: Vec<String>,
    exports: Vec<String>,
}

impl World {
    /// The world of `target/wasm32-wasip2/release/<file>`.
    fn of(file: &'static str) -> World {
        let path = repo_root().join("target/wasm32-wasip2/release").join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run `cargo build --target wasm32-wasip2 --release` first",
                path.display()
            )
        });
        let decoded = wit_component::decode(&bytes)
            .unwrap_or_else(|e| panic!("{file} is not a component: {e:?}"));
        let mut printer = WitPrinter::default();
        printer
            .print(decoded.resolve(), decoded.package(), &[])
            .unwrap_or_else(|e| panic!("{file}: cannot print its WIT: {e:?}"));
        World::parse(file, &printer.output.to_string())
    }

    /// The `import x;` and `export x;` lines of printed WIT.
    fn parse(file: &'static str, wit: &str) -> World {
        let named = |keyword: &str| -> Vec<String> {
            wit.lines()
                .filter_map(|line| line.trim().strip_prefix(keyword)?.strip_suffix(';'))
                .map(str::to_owned)
                .collect()
        };
        let world = World {
            file,
            imports: named("import "),
            exports: named("export "),
        };
        assert!(!world.exports.is_empty(), "{file}: no exports in\n{wit}");
        world
    }

    fn exports(&self, interface: &str) -> bool {
        self.exports.iter().any(|name| name == interface)
    }

    /// The imports whose name starts with any of `prefixes`.
    fn imports_of(&self, prefixes: &[&str]) -> Vec<&str> {
        self.imports
            .iter()
            .map(String::as_str)
            .filter(|name| prefixes.iter().any(|prefix| name.starts_with(prefix)))
            .collect()
    }
}

/// Every key-value interface Spin offers, and Redis.
const KEY_VALUE: [&str; 3] = [
    "wasi:keyvalue/",
    "spin:key-value/",
    "fermyon:spin/key-value",
];
const REDIS: [&str; 2] = ["spin:redis/", "fermyon:spin/redis"];

const SPIN_4_1: [&str; 3] = [
    "stateless_cart.wasm",
    "stateful_cart.wasm",
    "dashboard.wasm",
];
const SPIN_3: [&str; 3] = [
    "stateless_cart_wasip2.wasm",
    "stateful_cart_wasip2.wasm",
    "dashboard_wasip2.wasm",
];
/// deploy/akamai: its own stateless cart, Spin 4.1's stateful cart and dashboard.
const AKAMAI_STATELESS: &str = "stateless_cart_redis.wasm";

#[test]
fn the_spin_4_1_build_exports_the_wasip3_handler() {
    for file in SPIN_4_1.into_iter().chain([AKAMAI_STATELESS]) {
        let world = World::of(file);
        assert!(
            world.exports(WASIP3_HANDLER),
            "{file} exports {:?}",
            world.exports
        );
    }
}

const WASIP3_HANDLER: &str = "wasi:http/handler@0.3.0";

#[test]
fn the_wasip2_build_exports_incoming_handler_and_imports_nothing_at_0_3() {
    for file in SPIN_3 {
        let world = World::of(file);
        assert!(
            world.exports("wasi:http/incoming-handler@0.2.0"),
            "{file} exports {:?}",
            world.exports
        );
        assert!(!world.exports(WASIP3_HANDLER), "{file}");
        let wasip3: Vec<&String> = world
            .imports
            .iter()
            .filter(|name| name.contains("@0.3."))
            .collect();
        assert!(wasip3.is_empty(), "{file} imports {wasip3:?}");
    }
}

#[test]
fn the_akamai_stateless_cart_imports_no_key_value_and_keeps_sessions_in_redis() {
    let world = World::of(AKAMAI_STATELESS);
    let key_value = world.imports_of(&KEY_VALUE);
    assert!(
        key_value.is_empty(),
        "{}: Akamai's key-value has no wasi:keyvalue/atomics; this build must import no key-value, \
         but imports {key_value:?}",
        world.file
    );
    assert_eq!(world.imports_of(&REDIS), ["spin:redis/redis@3.0.0"]);
}

#[test]
fn both_stateless_carts_offer_key_value_and_redis() {
    for (file, redis) in [
        ("stateless_cart.wasm", "spin:redis/redis@3.0.0"),
        ("stateless_cart_wasip2.wasm", "fermyon:spin/redis@2.0.0"),
    ] {
        let world = World::of(file);
        assert_eq!(
            world.imports_of(&KEY_VALUE),
            [
                "wasi:keyvalue/store@0.2.0-draft2",
                "wasi:keyvalue/atomics@0.2.0-draft2",
                "wasi:keyvalue/batch@0.2.0-draft2",
            ],
            "{file}"
        );
        assert_eq!(world.imports_of(&REDIS), [redis], "{file}");
    }
}

#[test]
fn stateful_carts_and_dashboards_import_no_key_value_and_no_redis() {
    let builds = [SPIN_4_1, SPIN_3];
    for file in builds.iter().flat_map(|build| &build[1..]) {
        let world = World::of(file);
        let stores = world.imports_of(&[&KEY_VALUE[..], &REDIS[..]].concat());
        assert!(stores.is_empty(), "{file} imports {stores:?}");
    }
}
