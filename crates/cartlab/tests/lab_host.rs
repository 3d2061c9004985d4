//! `cartlab up` running the real components: the seed journey, Spin's
//! instance-reuse sequences, Redis and SQLite stores, start-up errors.

mod common;

use common::{
    Design, Expect, IPHONE, Lab, MACBOOK, RedisServer, SEED_TOTAL, Shopper, seed_cart,
    start_up_error, with_redis,
};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn seed_journey_stateful_cart_is_lost_and_stateless_cart_survives_a_crash() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(&redis, dir.path(), &[]);
    let shopper = lab.shopper();

    for component in Design::BOTH {
        seed_cart(&shopper, component).await;
        let before = shopper.cart(component).await.succeeded("cart");
        assert_eq!(before.items(), ["MacBook Pro", "iPhone 15"], "{component}");
        assert_eq!(before.total(), Some(SEED_TOTAL), "{component}");

        shopper.crash(component).await.trapped();

        let after = shopper.cart(component).await.succeeded("cart");
        assert_ne!(
            after.instance, before.instance,
            "{component}: the crash must discard the instance"
        );
        assert_eq!(
            after.requests, 1,
            "{component}: a fresh instance serves next"
        );
        if component == Design::Stateful {
            assert!(
                after.items().is_empty(),
                "CART LOST! expected: {}",
                after.body
            );
        } else {
            assert_eq!(
                after.total(),
                Some(SEED_TOTAL),
                "Cart survived! expected: {}",
                after.body
            );
        }
    }
    // Session ids are secrets: neither the host nor the components log them.
    let secrets: Vec<String> = Design::BOTH
        .into_iter()
        .filter_map(|design| shopper.cookie(design))
        .filter_map(|pair| pair.split_once('=').map(|(_, id)| id.to_string()))
        .collect();
    assert_eq!(secrets.len(), 2, "both components set a session cookie");
    let log = lab.log();
    assert!(
        log.iter().any(|line| line.contains("instance recycled")),
        "lifecycle is logged"
    );
    for secret in &secrets {
        assert!(
            !log.iter().any(|line| line.contains(secret.as_str())),
            "a session id appeared in the host's log"
        );
    }
    assert!(lab.stop(), "cartlab exits cleanly on SIGTERM");
}

/// What host_request fuzzing found, twice: a request right after a crash must not meet the
/// dying instance, whether the crash's client waited for the answer or shut down its side at
/// once (it then still gets the answer).
#[tokio::test(flavor = "multi_thread")]
async fn the_request_after_a_crash_meets_a_new_instance() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(&["--state-dir", dir.path().to_str().expect("utf-8 path")]);
    let address = lab.url.trim_start_matches("http://").to_string();
    let shopper = lab.shopper();
    for half_close in [false, true] {
        for _ in 0..50 {
            let mut stream = tokio::net::TcpStream::connect(&address)
                .await
                .expect("connect");
            let crash = format!(
                "POST /stateful/crash HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(crash.as_bytes()).await.expect("send");
            if half_close {
                stream.shutdown().await.expect("shut down the sending side");
            }
            let mut answer = String::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
                .await
                .expect("the crash is answered in time")
                .expect("read the answer");
            assert!(
                answer.starts_with("HTTP/1.1 500") && answer.contains("component_trapped"),
                "half-closed: {half_close}: {answer}"
            );
            let next = shopper.health(Design::Stateful).await.reached();
            assert_eq!(next.status, 200, "half-closed: {half_close}: {}", next.body);
            assert_eq!(next.requests, 1, "a fresh instance serves next");
        }
    }
    assert!(lab.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_count_one_gives_every_request_a_fresh_instance() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(&redis, dir.path(), &["--max-instance-reuse-count", "1"]);
    let shopper = lab.shopper();

    let mut instances = BTreeSet::new();
    for component in [Design::Stateless, Design::Stateful] {
        let first = shopper
            .add(component, MACBOOK.0, MACBOOK.1)
            .await
            .succeeded("add");
        let second = shopper
            .add(component, IPHONE.0, IPHONE.1)
            .await
            .succeeded("add");
        let read = shopper.cart(component).await.succeeded("cart");
        for answer in [&first, &second, &read] {
            assert_eq!(answer.requests, 1, "{component}: {}", answer.body);
            instances.insert(answer.instance.clone());
        }
        if component == Design::Stateless {
            assert_eq!(second.total(), Some(SEED_TOTAL));
            assert_eq!(read.total(), Some(SEED_TOTAL));
        } else {
            assert_eq!(
                second.items(),
                ["iPhone 15"],
                "the stateful cart forgot the MacBook"
            );
            assert!(
                read.items().is_empty(),
                "the stateful cart is empty every time"
            );
        }
    }
    assert_eq!(instances.len(), 6, "six requests, six instances");
}

#[tokio::test(flavor = "multi_thread")]
async fn reuse_count_three_cycles_one_two_three() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(&[
        "--state-dir",
        dir.path().to_str().expect("utf-8"),
        "--max-instance-reuse-count",
        "3",
        "--idle-instance-timeout",
        "30s",
    ]);
    let shopper = lab.shopper();
    let mut counts = Vec::new();
    for _ in 0..10 {
        counts.push(shopper.health(Design::Stateful).await.reached().requests);
    }
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1, 2, 3, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_reuse_serves_sequential_requests_from_one_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(&["--state-dir", dir.path().to_str().expect("utf-8")]);
    let shopper = lab.shopper();
    let mut counts = Vec::new();
    let mut instances = BTreeSet::new();
    for _ in 0..10 {
        let answer = shopper.health(Design::Stateful).await.reached();
        counts.push(answer.requests);
        instances.insert(answer.instance);
    }
    assert_eq!(counts, (1..=10).collect::<Vec<u64>>());
    assert_eq!(instances.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_timeout_drops_an_instance_and_a_longer_one_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8");

    let short = Lab::start(&["--state-dir", state, "--idle-instance-timeout", "200ms"]);
    let shopper = short.shopper();
    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(shopper.health(Design::Stateful).await.reached().requests);
        // Well past the idle timeout: the instance must be gone by then.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(
        counts,
        [1, 1, 1],
        "each request after an idle gap gets a fresh instance"
    );
    drop(short);

    let long = Lab::start(&["--state-dir", state, "--idle-instance-timeout", "60s"]);
    let shopper = long.shopper();
    let mut counts = Vec::new();
    for _ in 0..3 {
        counts.push(shopper.health(Design::Stateful).await.reached().requests);
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(
        counts,
        [1, 2, 3],
        "a longer idle timeout keeps the instance"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_limit_one_spreads_parallel_requests_over_instances() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(
        &redis,
        dir.path(),
        &[
            "--max-instance-concurrent-reuse-count",
            "1",
            "--max-instance-reuse-count",
            "1000",
        ],
    );
    // The stateless health check awaits Redis, so requests overlap in flight.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let url = lab.url.clone();
        tasks.push(tokio::spawn(async move {
            Shopper::new(&url)
                .expect("http client")
                .health(Design::Stateless)
                .await
                .reached()
        }));
    }
    let mut instances = BTreeSet::new();
    for task in tasks {
        let answer = task.await.expect("task");
        assert_eq!(answer.status, 200, "{}", answer.body);
        instances.insert(answer.instance);
    }
    assert!(
        instances.len() > 1,
        "32 parallel requests with one request per instance in flight ran on {} instance(s)",
        instances.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stateless_carts_are_visible_in_redis_under_the_session_prefix() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(&redis, dir.path(), &[]);
    let shopper = lab.shopper();
    seed_cart(&shopper, Design::Stateless).await;

    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("cartlab:session:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "one session key, got {keys:?}");
    let record: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .expect("GET");
    assert!(
        record.contains("MacBook Pro") && record.contains("iPhone 15"),
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_sqlite_default_survives_a_restart_of_cartlab() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8");
    let lab = Lab::start(&["--state-dir", state]);
    let shopper = lab.shopper();
    seed_cart(&shopper, Design::Stateless).await;
    let before = shopper.cart(Design::Stateless).await.succeeded("cart");
    assert_eq!(before.total(), Some(SEED_TOTAL));
    assert!(lab.stop(), "clean shutdown");
    assert!(dir.path().join("sqlite_key_value.db").exists());

    // A new host process on a new port; the same cookie jar (cookies are kept
    // per host name, not per port) presents the same session.
    let lab = Lab::start(&["--state-dir", state]);
    let reused = shopper.rebase(&lab.url);
    let after = reused.cart(Design::Stateless).await.succeeded("cart");
    assert_ne!(after.instance, before.instance);
    assert_eq!(after.total(), Some(SEED_TOTAL), "{}", after.body);
}

#[test]
fn start_up_errors_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let write = |name: &str, text: &str| std::fs::write(root.join(name), text).expect("write");

    // Bad TOML.
    write(
        "spin.toml",
        "spin_manifest_version = 2\n[application\nname = \"x\"\n",
    );
    let error = start_up_error(&[], root);
    assert!(error.contains("spin.toml"), "{error}");
    assert!(error.to_lowercase().contains("line"), "{error}");

    // Missing .wasm.
    let manifest = r#"spin_manifest_version = 2
[application]
name = "broken"
[[trigger.http]]
route = "/cart/..."
component = "cart"
[component.cart]
source = "missing/cart.wasm"
key_value_stores = ["default"]
"#;
    write("spin.toml", manifest);
    let error = start_up_error(&[], root);
    assert!(error.contains("missing/cart.wasm"), "{error}");

    // Unknown store type.
    write("rc.toml", "[key_value_store.default]\ntype = \"etcd\"\n");
    let error = start_up_error(&["--runtime-config-file", "rc.toml"], root);
    assert!(error.contains("etcd"), "{error}");

    // Granted label with no store.
    write(
        "spin.toml",
        &manifest.replace("[\"default\"]", "[\"carts\"]"),
    );
    let error = start_up_error(&[], root);
    assert!(error.contains("carts"), "{error}");
}
