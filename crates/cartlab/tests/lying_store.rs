//! The stateless cart on a key-value store that lies or fails, through `cartlab up
//! --kv-faults` (the lab host misbehaving on purpose, e.g. like Spin 4.1's Redis backend,
//! whose compare-and-swap answers are inverted) and the real components: the seed journey,
//! concurrent adds, random store errors, and an `Idempotency-Key` retry after a dropped
//! connection. Every acknowledged add must be in the cart exactly once.

mod common;

use common::{Cents, Design, Expect, Lab, RedisServer, SEED_TOTAL, Shopper, seed_cart, with_redis};
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

/// `cartlab up --kv-faults <faults>` with key-value `default` in `redis`.
fn start(redis: &RedisServer, dir: &Path, faults: &str) -> Lab {
    with_redis(redis, dir, &["--kv-faults", faults])
}

/// Runs a test body under a deadline, so a regression hangs nothing.
async fn bounded<T>(limit: Duration, body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, body).await {
        Ok(value) => value,
        Err(_) => panic!("the test did not finish within {limit:?}"),
    }
}

/// `(item, quantity)` of every line of a cart body.
fn lines(cart: &Value) -> Vec<(String, u64)> {
    cart["cart"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|line| {
                    (
                        line["item"].as_str().unwrap_or_default().to_string(),
                        line["quantity"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn add_body(item: &str, price: u64) -> Value {
    json!({ "item": item, "price": price })
}

/// Adds `item` at $1 once, whatever the answer: the item, the status and the body.
async fn try_add(shopper: &Shopper, item: String) -> (String, u16, Value) {
    let answer = shopper
        .send(
            Method::POST,
            "/stateless/cart/add",
            Some(add_body(&item, 1)),
        )
        .await
        .reached();
    (item, answer.status, answer.body)
}

/// Sends a request until it answers 200 (a store with injected errors may answer 503 or
/// 409 now and then, and a 503 may come after the change was applied); at most `tries`
/// times, all with one `Idempotency-Key`, so the change is applied once.
async fn until_ok(
    shopper: &Shopper,
    method: Method,
    path: &str,
    body: Option<Value>,
    tries: u32,
) -> Value {
    let key = format!("until-ok-{:016x}", rand::random::<u64>());
    let mut last = None;
    for _ in 0..tries {
        let answer = shopper
            .send_keyed(method.clone(), path, body.clone(), Some(&key))
            .await
            .reached();
        if answer.status == 200 {
            return answer.body;
        }
        assert!(
            matches!(answer.status, 409 | 503),
            "{method} {path}: {} {}",
            answer.status,
            answer.body
        );
        last = Some((answer.status, answer.body));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{method} {path}: no 200 in {tries} tries; last {last:?}");
}

/// A shopper with a session whose cart is empty.
async fn empty_session(lab: &Lab) -> Shopper {
    let shopper = lab.shopper();
    until_ok(
        &shopper,
        Method::POST,
        "/stateless/cart/add",
        Some(add_body("first", 1)),
        20,
    )
    .await;
    until_ok(
        &shopper,
        Method::DELETE,
        "/stateless/cart/items/0",
        None,
        20,
    )
    .await;
    let cart = until_ok(&shopper, Method::GET, "/stateless/cart", None, 20).await;
    assert!(lines(&cart).is_empty(), "{cart}");
    shopper
}

fn has_line(log: &[String], needle: &str) -> bool {
    log.iter().any(|line| line.contains(needle))
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_journey_survives_a_crash_on_spin_4_1_redis_key_value() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = start(&redis, dir.path(), "spin-4.1");
    bounded(Duration::from_secs(60), async {
        let shopper = lab.shopper();
        seed_cart(&shopper, Design::Stateless).await;
        let before = shopper.cart(Design::Stateless).await.succeeded("cart");
        assert_eq!(
            before.items(),
            ["MacBook Pro", "iPhone 15"],
            "{}",
            before.body
        );
        assert_eq!(before.total(), Some(SEED_TOTAL), "{}", before.body);

        shopper.crash(Design::Stateless).await.trapped();
        let after = shopper.cart(Design::Stateless).await.succeeded("cart");
        assert_ne!(after.instance, before.instance, "a new instance serves");
        assert_eq!(after.total(), Some(SEED_TOTAL), "{}", after.body);
        assert_eq!(
            lines(&after.body),
            [("MacBook Pro".to_string(), 1), ("iPhone 15".to_string(), 1)],
            "each add applied once"
        );
    })
    .await;
    let (stopped, log) = lab.stop_with_log();
    assert!(stopped, "clean shutdown");
    assert!(
        log.iter()
            .any(|l| l.contains("cartlab up ready") && l.contains("kv_faults=spin-4.1")),
        "the start-up summary names the faults"
    );
    assert!(has_line(&log, "fault=false-failure"), "the store did lie");
    assert!(has_line(&log, "kv faults injected"), "shutdown summary");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_adds_are_each_kept_once_on_spin_4_1_redis_key_value() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = start(&redis, dir.path(), "spin-4.1");
    bounded(Duration::from_secs(240), async {
        for round in 0..10 {
            let shopper = std::sync::Arc::new(empty_session(&lab).await);
            let adds = (0..64).map(|n| {
                let shopper = shopper.clone();
                tokio::spawn(async move { try_add(&shopper, format!("item {n}")).await })
            });
            let mut refused = Vec::new();
            for answer in futures::future::join_all(adds).await {
                let (item, status, body) = answer.expect("task");
                if !(200..300).contains(&status) {
                    refused.push((item, status, body["error"]["code"].clone()));
                }
            }
            let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
            let kept = lines(&cart.body);
            let twice: Vec<_> = kept.iter().filter(|(_, q)| *q != 1).collect();
            assert!(
                refused.is_empty(),
                "round {round}: {} of 64 adds refused, e.g. {:?}",
                refused.len(),
                &refused[..refused.len().min(3)]
            );
            assert!(twice.is_empty(), "round {round}: applied twice: {twice:?}");
            let items: BTreeSet<String> = kept.into_iter().map(|(item, _)| item).collect();
            let expected: BTreeSet<String> = (0..64).map(|n| format!("item {n}")).collect();
            assert_eq!(items, expected, "round {round}: exactly the 64 new lines");
        }
    })
    .await;
    let (_, log) = lab.stop_with_log();
    assert!(
        has_line(&log, "fault=false-failure"),
        "committed swaps were denied"
    );
    assert!(
        has_line(&log, "fault=false-success"),
        "lost swaps were confirmed"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("kv fault injected") && l.contains("cartlab:session:")),
        "fault lines never name a key"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_add_is_kept_once_despite_random_store_errors() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = start(&redis, dir.path(), "error-rate=0.05");
    // Two sessions of 96 adds each (a cart holds at most 100 lines), 8 in flight at a time.
    let (statuses, refused_but_kept) = bounded(Duration::from_secs(240), async {
        let mut statuses = BTreeMap::<u16, usize>::new();
        let mut refused_but_kept = 0;
        for session in 0..2 {
            let shopper = std::sync::Arc::new(empty_session(&lab).await);
            let answers: Vec<(String, u16, Value)> = futures::stream::iter(0..96)
                .map(|n| {
                    let shopper = shopper.clone();
                    async move { try_add(&shopper, format!("s{session} item {n}")).await }
                })
                .buffer_unordered(8)
                .collect()
                .await;
            let cart = until_ok(&shopper, Method::GET, "/stateless/cart", None, 40).await;
            let kept: BTreeMap<String, u64> = lines(&cart).into_iter().collect();
            for (item, status, body) in &answers {
                *statuses.entry(*status).or_default() += 1;
                if (200..300).contains(status) {
                    assert_eq!(
                        kept.get(item),
                        Some(&1),
                        "session {session}: `{item}` answered {status} but is not in the cart exactly once"
                    );
                } else {
                    assert!(
                        matches!(status, 409 | 503),
                        "session {session}: `{item}` answered {status}: {body}"
                    );
                    if kept.contains_key(item) {
                        refused_but_kept += 1;
                    }
                }
            }
            let attempted: BTreeSet<&String> = answers.iter().map(|(item, ..)| item).collect();
            for (item, quantity) in &kept {
                assert!(attempted.contains(item), "session {session}: stray `{item}`");
                assert_eq!(*quantity, 1, "session {session}: `{item}` applied twice");
            }
        }
        (statuses, refused_but_kept)
    })
    .await;
    eprintln!("answers by status: {statuses:?}; refused yet kept: {refused_but_kept}");
    let (_, log) = lab.stop_with_log();
    assert!(has_line(&log, "fault=error-before"), "errors before writes");
    assert!(has_line(&log, "fault=error-after"), "errors after writes");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_retry_after_a_dropped_connection_applies_the_add_once() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = start(&redis, dir.path(), "slow-writes=600ms");
    bounded(Duration::from_secs(60), async {
        let shopper = lab.shopper();
        shopper
            .add(Design::Stateless, "MacBook Pro", Cents(250_000))
            .await
            .succeeded("add");
        let cookie = shopper.cookie(Design::Stateless).expect("session cookie");
        let id = cookie
            .split_once('=')
            .map(|(_, id)| id.to_string())
            .expect("name=value");
        let session_key =
            cart_core::session_key(&cart_core::SessionId::parse(&id).expect("a session id"));
        assert!(
            redis
                .redis_cli(&["GET", &session_key])
                .contains("MacBook Pro"),
            "the session lives under {session_key}"
        );

        let key = format!("k-{:016x}", rand::random::<u64>());
        let url = format!("{}/stateless/cart/add", lab.url);
        let body = add_body("iPhone 15", 1200);
        let post = |client: &reqwest::Client, body: &Value| {
            client
                .post(&url)
                .header("cookie", &cookie)
                .header("idempotency-key", &key)
                .json(body)
                .send()
        };

        // The client gives up (and drops the connection) while the host holds the write.
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(250))
            .build()
            .expect("client");
        let started = Instant::now();
        match post(&impatient, &body).await {
            Err(error) => assert!(error.is_timeout(), "{error}"),
            Ok(response) => panic!(
                "answered {} within {:?}: the write was not slowed",
                response.status(),
                started.elapsed()
            ),
        }

        // The host had committed it.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !redis
            .redis_cli(&["GET", &session_key])
            .contains("iPhone 15")
        {
            assert!(
                Instant::now() < deadline,
                "the dropped add never reached Redis"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // The retry with the same key and body is a replay, not a second iPhone.
        let patient = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let response = post(&patient, &body).await.expect("retry");
        let status = response.status();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let cart: Value = response.json().await.expect("json");
        assert!(status.is_success(), "retry answered {status}: {cart}");
        assert_eq!(replayed.as_deref(), Some("true"), "{cart}");
        assert_eq!(
            lines(&cart),
            [("MacBook Pro".to_string(), 1), ("iPhone 15".to_string(), 1)],
            "the add is applied once"
        );
        let now = shopper.cart(Design::Stateless).await.succeeded("cart");
        assert_eq!(now.total(), Some(SEED_TOTAL), "{}", now.body);

        // The same key for another change is refused.
        let response = post(&patient, &add_body("AirPods", 200))
            .await
            .expect("reuse");
        let status = response.status().as_u16();
        let error: Value = response.json().await.expect("json");
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["error"]["code"], "idempotency_key_reused", "{error}");
        let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
        assert_eq!(cart.total(), Some(SEED_TOTAL), "{}", cart.body);
    })
    .await;
    let (_, log) = lab.stop_with_log();
    assert!(has_line(&log, "fault=slow-write"));
}

#[test]
fn bad_kv_faults_are_refused_naming_the_bad_part() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (spec, named) in [
        ("error-rate=2", "error-rate=2"),
        ("foo", "foo"),
        ("spin-4.1,slow-writes=soon", "slow-writes=soon"),
    ] {
        let error = common::start_up_error(&["--kv-faults", spec], dir.path());
        assert!(
            error.contains("--kv-faults") && error.contains(&format!("`{named}`")),
            "{spec}: {error}"
        );
    }
}

#[test]
fn spin_4_1_without_a_redis_store_warns_at_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8");
    let lab = Lab::start(&["--state-dir", state, "--kv-faults", "spin-4.1"]);
    let (_, log) = lab.stop_with_log();
    assert!(
        has_line(&log, "spin-4.1 applies to no store"),
        "{}",
        log.join("\n")
    );
}
