//! One build per Spin host family, each run in the lab host as that family would run it
//! (`--host-profile`): the WASIp2 build (deploy/spin3) as Spin 3.x runs it, a fresh instance
//! per request; the Akamai build (deploy/akamai) without atomics and without instance reuse;
//! and the builds a family cannot link refused before serving, naming what is missing.

mod common;

use common::{
    Design, Expect, IPHONE, Lab, MACBOOK, RedisServer, SEED_TOTAL, Shopper, redis_runtime_config,
    repo_root, seed_cart, start_up_error,
};

const SPIN3_MANIFEST: &str = "deploy/spin3/spin.toml";
const AKAMAI_MANIFEST: &str = "deploy/akamai/spin.toml";

/// The seed journey on a host that gives every request a fresh instance: the stateless cart
/// holds 3700 before and after `/crash`; the stateful cart has lost the MacBook by the very
/// next request, with no crash at all.
async fn journey_without_reuse(shopper: &Shopper, label: &str) {
    seed_cart(shopper, Design::Stateless).await;
    let before = shopper.cart(Design::Stateless).await.succeeded("cart");
    assert_eq!(before.total(), Some(SEED_TOTAL), "{label}: {}", before.body);
    shopper.crash(Design::Stateless).await.trapped();
    let after = shopper.cart(Design::Stateless).await.succeeded("cart");
    assert_eq!(
        after.total(),
        Some(SEED_TOTAL),
        "{label}: the stateless cart survives the crash: {}",
        after.body
    );
    assert_eq!(
        after.requests, 1,
        "{label}: every request on a new instance"
    );

    let added = shopper
        .add(Design::Stateful, MACBOOK.0, MACBOOK.1)
        .await
        .succeeded("add");
    assert_eq!(added.items(), [MACBOOK.0], "{label}: {}", added.body);
    let next = shopper.cart(Design::Stateful).await.succeeded("cart");
    assert_ne!(
        next.instance, added.instance,
        "{label}: the next request meets another instance"
    );
    assert_eq!(next.requests, 1, "{label}: a fresh instance");
    assert!(
        next.items().is_empty(),
        "{label}: the stateful cart is lost on the very next request: {}",
        next.body
    );
    println!(
        "{label}: stateless {} -> {} after /crash; stateful [{}] then {:?}",
        before.total().map_or(0, |c| c.0),
        after.total().map_or(0, |c| c.0),
        MACBOOK.0,
        next.items()
    );
}

fn path_arg(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread")]
async fn wasip2_build_on_spin_3_in_both_store_modes() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = redis_runtime_config(dir.path(), &redis.url());
    let redis_url = format!("redis_url={}", redis.url());
    let modes: [(&str, &[&str]); 2] = [
        ("key-value on Redis", &[]),
        (
            "session_store=redis",
            &[
                "--variable",
                "session_store=redis",
                "--variable",
                &redis_url,
            ],
        ),
    ];
    for (mode, extra) in modes {
        let mut args = vec![
            "-f",
            SPIN3_MANIFEST,
            "--host-profile",
            "spin-3",
            "--runtime-config-file",
            path_arg(&config),
            "--state-dir",
            path_arg(dir.path()),
        ];
        args.extend_from_slice(extra);
        let lab = Lab::start(&args);
        journey_without_reuse(&lab.shopper(), &format!("WASIp2, {mode}")).await;
        // Same API, same cookies: the dashboard is there too.
        let page = reqwest::get(format!("{}/", lab.url))
            .await
            .expect("dashboard");
        assert_eq!(page.status(), 200);
        assert!(lab.stop(), "cartlab exits cleanly");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wasip2_build_also_runs_on_spin_4_1_without_reuse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(&["-f", SPIN3_MANIFEST, "--state-dir", path_arg(dir.path())]);
    let shopper = lab.shopper();
    let served: Vec<u64> = {
        let mut served = Vec::new();
        for _ in 0..3 {
            served.push(
                shopper
                    .cart(Design::Stateful)
                    .await
                    .succeeded("cart")
                    .requests,
            );
        }
        served
    };
    // Spin 4.1 reuses WASIp3 instances only: the reuse flags do not apply to WASIp2.
    assert_eq!(served, [1, 1, 1]);
    let log = lab.log();
    assert!(
        log.iter().any(|line| line.contains("WASIp2 component")),
        "the host says how it runs a WASIp2 component"
    );
    assert!(lab.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn akamai_build_keeps_carts_in_redis_without_atomics() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let redis_url = format!("redis_url={}", redis.url());
    let lab = Lab::start(&[
        "-f",
        AKAMAI_MANIFEST,
        "--host-profile",
        "akamai",
        "--variable",
        &redis_url,
        "--state-dir",
        path_arg(dir.path()),
    ]);
    journey_without_reuse(&lab.shopper(), "Akamai").await;
    // A second item lands in the same Redis session from yet another instance.
    let shopper = lab.shopper();
    seed_cart(&shopper, Design::Stateless).await;
    let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
    assert_eq!(cart.items(), [MACBOOK.0, IPHONE.0]);
    assert!(lab.stop());

    // The build has no key-value path: asking for one is a configuration error, not a
    // silent fallback.
    let lab = Lab::start(&[
        "-f",
        AKAMAI_MANIFEST,
        "--host-profile",
        "akamai",
        "--variable",
        "session_store=key-value",
        "--variable",
        &redis_url,
        "--state-dir",
        path_arg(dir.path()),
    ]);
    let answer = lab.shopper().cart(Design::Stateless).await.reached();
    assert_eq!(
        (answer.status, answer.error_code()),
        (500, Some("invalid_config")),
        "{}",
        answer.body
    );
    assert!(lab.stop());
}

#[test]
fn a_host_family_refuses_what_it_cannot_link() {
    let root = repo_root();
    // Spin 4.1's build imports wasi:keyvalue/atomics, which Akamai lacks.
    let error = start_up_error(&["--host-profile", "akamai"], &root);
    assert!(
        error.contains("imports wasi:keyvalue/atomics@0.2.0-draft2")
            && error.contains("--host-profile akamai"),
        "{error}"
    );
    // Spin 3 runs no WASIp3 component.
    let error = start_up_error(&["--host-profile", "spin-3"], &root);
    assert!(
        error.contains("exports wasi:http/handler@0.3.0")
            && error.contains("--host-profile spin-3"),
        "{error}"
    );
    // Every other build links on its own family (the tests above serve them).
}
