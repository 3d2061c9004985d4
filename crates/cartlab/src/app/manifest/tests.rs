use super::*;
use crate::app::routes::HttpRoute;

const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "cart"
version = "0.1.0"
description = "carts"
authors = ["me"]

[application.trigger.http]
base = "/"

[variables]
redis_prefix = { default = "cart" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/stateless/..."
component = "stateless-cart"

[[trigger.http]]
id = "sf"
route = "/stateful/..."
component = "stateful-cart"
executor = { type = "spin" }

[component.stateless-cart]
source = "target/wasm32-wasip2/release/stateless_cart.wasm"
key_value_stores = ["default"]
allowed_outbound_hosts = []
environment = { RUST_LOG = "info" }
[component.stateless-cart.variables]
prefix = "{{ redis_prefix }}:"
key = "{{api_key}}"
[component.stateless-cart.build]
command = "cargo build --target wasm32-wasip2 --release -p stateless-cart"
watch = ["src/**/*.rs", "Cargo.toml"]

[component.stateful-cart]
source = "target/wasm32-wasip2/release/stateful_cart.wasm"
[component.stateful-cart.build]
command = ["echo one", "echo two"]
workdir = "components/stateful-cart"
"#;

fn p(text: &str) -> Result<AppManifest> {
    parse(text, Path::new("/app/spin.toml"), "spin.toml")
}

fn err(text: &str) -> String {
    format!("{:#}", p(text).unwrap_err())
}

/// GOOD with `from` replaced by `to` (asserting the replacement happened).
fn edit(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "fixture lacks {from:?}");
    GOOD.replacen(from, to, 1)
}

#[test]
fn parses_the_app_shape() {
    let m = p(GOOD).unwrap();
    assert_eq!(m.name, "cart");
    assert_eq!(m.version.as_deref(), Some("0.1.0"));
    assert_eq!(m.dir, Path::new("/app"));
    assert_eq!(
        m.router.routes().cloned().collect::<Vec<_>>(),
        vec![
            HttpRoute {
                route: "/stateless/...".into(),
                component: "stateless-cart".into()
            },
            HttpRoute {
                route: "/stateful/...".into(),
                component: "stateful-cart".into()
            },
        ]
    );
    let sl = &m.components["stateless-cart"];
    assert_eq!(
        sl.source,
        Path::new("/app/target/wasm32-wasip2/release/stateless_cart.wasm")
    );
    assert_eq!(sl.key_value_stores, ["default"]);
    assert_eq!(sl.variables["prefix"], "{{ redis_prefix }}:");
    assert_eq!(sl.environment["RUST_LOG"], "info");
    let b = sl.build.as_ref().unwrap();
    assert_eq!(b.workdir, Path::new("/app"));
    assert_eq!(b.watch, ["src/**/*.rs", "Cargo.toml"]);
    let sf = &m.components["stateful-cart"];
    assert!(sf.key_value_stores.is_empty());
    let b = sf.build.as_ref().unwrap();
    assert_eq!(b.commands, ["echo one", "echo two"]);
    assert_eq!(b.workdir, Path::new("/app/components/stateful-cart"));
    assert_eq!(
        m.variables["api_key"],
        VariableDecl {
            default: None,
            required: true,
            secret: true
        }
    );
}

#[test]
fn bad_toml_reports_line_and_column() {
    let e = err("spin_manifest_version = 2\n[application\nname = 1");
    assert!(e.starts_with("spin.toml: invalid TOML"), "{e}");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn manifest_version_must_be_2() {
    let e = err(&edit(
        "spin_manifest_version = 2",
        "spin_manifest_version = \"1\"",
    ));
    assert!(e.contains("`spin_manifest_version`"), "{e}");
    let e = err(&edit("spin_manifest_version = 2", ""));
    assert!(e.contains("missing field `spin_manifest_version`"), "{e}");
}

#[test]
fn unsupported_component_fields_are_named() {
    for (field, line) in [
        ("files", "files = [\"static/**\"]"),
        ("sqlite_databases", "sqlite_databases = [\"default\"]"),
        ("ai_models", "ai_models = [\"llama2-chat\"]"),
        (
            "allowed_http_hosts",
            "allowed_http_hosts = [\"example.com\"]",
        ),
        ("dependencies", "dependencies = { \"a:b/c\" = \"1.0\" }"),
    ] {
        let text = edit(
            "[component.stateful-cart]\n",
            &format!("[component.stateful-cart]\n{line}\n"),
        );
        let e = err(&text);
        assert_eq!(
            e,
            format!(
                "spin.toml: component `stateful-cart`: field `{field}` is not supported by cartlab up"
            )
        );
    }
}

#[test]
fn unknown_fields_are_named() {
    let e = err(&edit(
        "allowed_outbound_hosts = []",
        "alowed_outbound_hosts = []",
    ));
    assert!(
        e.starts_with(
            "spin.toml: component `stateless-cart`: unknown field `alowed_outbound_hosts`"
        ),
        "{e}"
    );
    let e = err(&edit("authors = [\"me\"]", "author = \"me\""));
    assert!(e.contains("[application]: unknown field `author`"), "{e}");
    let e = err(&edit("executor = { type = \"spin\" }", "exec = 1"));
    assert!(e.contains("unknown field `exec`"), "{e}");
    let e = err(&format!("{GOOD}\n[extra]\nx = 1\n"));
    assert!(e.contains("unknown field `extra`"), "{e}");
    let e = err(&edit("watch = [", "whatch = ["));
    assert!(
        e.contains("[component.stateless-cart.build]: unknown field `whatch`"),
        "{e}"
    );
}

#[test]
fn type_errors_name_the_field() {
    let e = err(&edit("version = \"0.1.0\"", "version = 1"));
    assert!(e.contains("[application]: field `version`"), "{e}");
    let e = err(&edit(
        "key_value_stores = [\"default\"]",
        "key_value_stores = \"default\"",
    ));
    assert!(e.contains("field `key_value_stores`"), "{e}");
}

#[test]
fn unsupported_sources_and_triggers() {
    let e = err(&edit(
        "source = \"target/wasm32-wasip2/release/stateful_cart.wasm\"",
        "source = { url = \"https://x/y.wasm\", digest = \"sha256:00\" }",
    ));
    assert!(
        e.contains("component `stateful-cart`: field `source` = { url, digest }"),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD}\n[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"stateful-cart\"\n"
    ));
    assert!(
        e.contains("[[trigger.redis]]") && e.contains("not supported"),
        "{e}"
    );
    let e = err(&edit(
        "executor = { type = \"spin\" }",
        "executor = { type = \"wagi\" }",
    ));
    assert!(e.contains("wagi") && e.contains("not supported"), "{e}");
    let e = err(&edit(
        "id = \"sf\"",
        "id = \"sf\"\nstatic_response = { status_code = 200 }",
    ));
    assert!(
        e.contains("field `static_response` is not supported"),
        "{e}"
    );
    let e = err(&edit(
        "route = \"/stateful/...\"",
        "route = { private = true }",
    ));
    assert!(e.contains("private"), "{e}");
    let e = err(&edit("base = \"/\"", "base = \"/api\""));
    assert!(e.contains("field `base`"), "{e}");
    let e = err(&edit("authors = [\"me\"]", "targets = [\"spin-up:3.3\"]"));
    assert!(e.contains("field `targets` is not supported"), "{e}");
}

#[test]
fn route_to_unknown_component() {
    let e = err(&edit(
        "component = \"stateful-cart\"",
        "component = \"nope\"",
    ));
    assert!(e.contains("component `nope` is not defined"), "{e}");
}

#[test]
fn duplicate_routes() {
    let e = err(&edit(
        "route = \"/stateful/...\"",
        "route = \"/stateless/...\"",
    ));
    assert!(
        e.contains("duplicate") && e.contains("/stateless/..."),
        "{e}"
    );
}

#[test]
fn undeclared_template_variable() {
    let e = err(&edit("{{api_key}}", "{{ apikey }}"));
    assert!(
        e.contains("component `stateless-cart`: variable `key`")
            && e.contains("`apikey`, which is not declared"),
        "{e}"
    );
    let e = err(&edit("{{api_key}}", "{{ api_key"));
    assert!(e.contains("unmatched"), "{e}");
}

#[test]
fn variable_names_and_decls() {
    let e = err(&edit("api_key = {", "Api_Key = {"));
    assert!(e.contains("variable `Api_Key`: invalid name"), "{e}");
    let e = err(&edit("api_key = {", "2key = {"));
    assert!(e.contains("variable `2key`: invalid name"), "{e}");
    let e = err(&edit("prefix = \"{{", "Prefix = \"{{"));
    assert!(e.contains("variable `Prefix`: invalid name"), "{e}");
    let e = err(&edit(
        "{ required = true, secret = true }",
        "{ required = true, default = \"x\" }",
    ));
    assert!(e.contains("`required` OR have a `default`"), "{e}");
    let e = err(&edit(
        "{ default = \"cart\" }",
        "{ description = \"no value\" }",
    ));
    assert!(e.contains("`required` OR have a `default`"), "{e}");
}

#[test]
fn key_value_labels_and_component_ids() {
    let e = err(&edit("[\"default\"]", "[\"Bad Label\"]"));
    assert!(e.contains("invalid label \"Bad Label\""), "{e}");
    assert!(
        p(&edit(
            "[\"default\"]",
            "[\"default\", \"my_store\", \"other-store\"]"
        ))
        .is_ok()
    );
    let text = GOOD
        .replace("stateful-cart", "stateful_cart")
        .replace("stateful_cart.wasm", "x.wasm");
    let e = err(&text);
    assert!(
        e.contains("component `stateful_cart`: invalid component id"),
        "{e}"
    );
}

#[test]
fn absolute_workdir_rejected() {
    let e = err(&edit(
        "workdir = \"components/stateful-cart\"",
        "workdir = \"/abs\"",
    ));
    assert!(e.contains("field `workdir` must be relative"), "{e}");
}

#[test]
fn load_accepts_dir_or_file_and_the_real_manifest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("spin.toml"), GOOD).unwrap();
    let a = load(dir.path()).unwrap();
    let b = load(&dir.path().join("spin.toml")).unwrap();
    assert_eq!(a.path, b.path);
    assert_eq!(a.dir, dir.path());
    let e = format!("{:#}", load(&dir.path().join("nope.toml")).unwrap_err());
    assert!(e.contains("nope.toml"), "{e}");

    // The project's own spin.toml, once it exists, must load.
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spin.toml");
    if real.exists() {
        let m = load(&real).unwrap();
        let comp_of = |r: &str| {
            m.router
                .routes()
                .find(|x| x.route == r)
                .map(|x| x.component.clone())
        };
        assert_eq!(comp_of("/stateless/...").as_deref(), Some("stateless-cart"));
        assert_eq!(comp_of("/stateful/...").as_deref(), Some("stateful-cart"));
        assert!(
            m.components["stateless-cart"]
                .key_value_stores
                .contains(&"default".to_owned())
        );
    }
}
