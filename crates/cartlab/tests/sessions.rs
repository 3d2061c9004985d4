//! Sessions done right, through the real components in `cartlab up`: no lost
//! updates under concurrency in every store mode, real expiry, Redis outages.

mod common;

use common::{Cents, Design, Expect, Lab, RedisServer, Shopper, redis_runtime_config};
use reqwest::Method;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where stateless-cart keeps sessions in a test.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// wasi:keyvalue compare-and-swap over the key-value store backed by Redis.
    KeyValueRedis,
    /// spin:redis: GET + a compare-and-set Lua EVAL with a real TTL.
    RedisNative,
    /// wasi:keyvalue compare-and-swap over the embedded SQLite default.
    KeyValueSqlite,
}

fn start(mode: Mode, redis: Option<&RedisServer>, dir: &Path, extra: &[&str]) -> Lab {
    let state = dir.to_str().expect("utf-8 path").to_string();
    let mut args: Vec<String> = vec!["--state-dir".into(), state];
    match mode {
        Mode::KeyValueRedis => {
            let redis = redis.expect("redis for this mode");
            let config = redis_runtime_config(dir, &redis.url());
            args.push("--runtime-config-file".into());
            args.push(config.to_str().expect("utf-8").into());
        }
        Mode::RedisNative => {
            let redis = redis.expect("redis for this mode");
            args.extend([
                "--variable".into(),
                "session_store=redis".into(),
                "--variable".into(),
                format!("redis_url={}", redis.url()),
            ]);
        }
        Mode::KeyValueSqlite => {}
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Lab::start(&args)
}

/// A shopper with a session whose cart is empty.
async fn empty_session(lab: &Lab) -> Shopper {
    let shopper = lab.shopper();
    shopper
        .add(Design::Stateless, "first", Cents(100))
        .await
        .succeeded("add");
    let emptied = shopper
        .send(Method::DELETE, "/stateless/cart/items/0", None)
        .await
        .reached();
    assert_eq!(emptied.status, 200, "{}", emptied.body);
    assert!(
        shopper
            .cart(Design::Stateless)
            .await
            .succeeded("cart")
            .items()
            .is_empty()
    );
    shopper
}

async fn concurrent_adds_keep_every_line(mode: Mode) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = start(mode, Some(&redis), dir.path(), &[]);
    for round in 0..10 {
        let shopper = std::sync::Arc::new(empty_session(&lab).await);
        let adds = (0..64).map(|n| {
            let shopper = shopper.clone();
            tokio::spawn(async move {
                shopper
                    .send(
                        Method::POST,
                        "/stateless/cart/add",
                        Some(serde_json::json!({ "item": format!("item {n}"), "price": 1 })),
                    )
                    .await
                    .reached()
            })
        });
        let answers = futures::future::join_all(adds).await;
        let mut refused = Vec::new();
        for answer in answers {
            let answer = answer.expect("task");
            if answer.status != 200 {
                refused.push((answer.status, answer.body.to_string()));
            }
        }
        let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
        let lines = cart.items();
        let items: BTreeSet<&String> = lines.iter().collect();
        assert!(
            refused.is_empty(),
            "{mode:?} round {round}: refused adds {refused:?}"
        );
        assert_eq!(
            (lines.len(), items.len()),
            (64, 64),
            "{mode:?} round {round}: 64 acknowledged adds must leave 64 lines, none twice"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_adds_keep_every_line_with_key_value_on_redis() {
    concurrent_adds_keep_every_line(Mode::KeyValueRedis).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_adds_keep_every_line_with_redis_native_sessions() {
    concurrent_adds_keep_every_line(Mode::RedisNative).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_adds_keep_every_line_with_key_value_on_sqlite() {
    concurrent_adds_keep_every_line(Mode::KeyValueSqlite).await;
}

async fn expired_session_is_replaced_by_an_empty_one(mode: Mode) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = start(
        mode,
        Some(&redis),
        dir.path(),
        &["--variable", "session_idle_secs=1"],
    );
    let shopper = lab.shopper();
    let added = shopper
        .add(Design::Stateless, "MacBook Pro", Cents(250_000))
        .await
        .succeeded("add");
    let old = added.body["sessionId"]
        .as_str()
        .expect("session")
        .to_string();
    // Past the idle timeout the browser would drop the cookie (Max-Age); a
    // client that keeps sending it must still not get the old cart.
    let cookie = shopper
        .cookie(Design::Stateless)
        .expect("the add set a session cookie");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/stateless/cart/add", lab.url))
        .header("cookie", cookie)
        .json(&serde_json::json!({ "item": "iPhone 15", "price": 1200 }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_ne!(
        body["sessionId"].as_str(),
        Some(old.as_str()),
        "{mode:?}: {body}"
    );
    assert_eq!(
        body["total"], 1200,
        "{mode:?}: the expired cart is not served: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_sessions_are_never_served_in_any_mode() {
    for mode in [Mode::KeyValueRedis, Mode::RedisNative, Mode::KeyValueSqlite] {
        expired_session_is_replaced_by_an_empty_one(mode).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_native_session_ttl_is_real_and_slides_with_activity() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = start(
        Mode::RedisNative,
        Some(&redis),
        dir.path(),
        &["--variable", "session_idle_secs=20"],
    );
    let shopper = lab.shopper();
    shopper
        .add(Design::Stateless, "MacBook Pro", Cents(250_000))
        .await
        .succeeded("add");
    let keys: Vec<String> = redis.query(&["KEYS", "cartlab:session:*"]);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let first: i64 = redis.query(&["PTTL", &keys[0]]);
    assert!(first > 0 && first <= 20_000, "PTTL after add: {first}");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let aged: i64 = redis.query(&["PTTL", &keys[0]]);
    assert!(aged < first, "the TTL counts down: {first} then {aged}");
    shopper
        .add(Design::Stateless, "iPhone 15", Cents(120_000))
        .await
        .succeeded("add");
    let slid: i64 = redis.query(&["PTTL", &keys[0]]);
    assert!(slid > aged, "activity slides the TTL: {aged} then {slid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_killed_gives_prompt_503s_and_service_resumes_with_every_acknowledged_add() {
    for mode in [Mode::KeyValueRedis, Mode::RedisNative] {
        let mut redis = RedisServer::start_durable();
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = start(mode, Some(&redis), dir.path(), &[]);
        let shopper = lab.shopper();
        for n in 0..10 {
            shopper
                .add(Design::Stateless, &format!("item {n}"), Cents(1_000))
                .await
                .succeeded("add");
        }
        redis.kill();
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let started = Instant::now();
            let answer = shopper
                .send(
                    Method::POST,
                    "/stateless/cart/add",
                    Some(serde_json::json!({ "item": "lost?", "price": 1 })),
                )
                .await
                .reached();
            slowest = slowest.max(started.elapsed());
            assert_eq!(answer.status, 503, "{mode:?}: {}", answer.body);
            assert_eq!(answer.body["error"]["code"], "store_unavailable");
            assert!(answer.retry_after.is_some(), "{mode:?}: Retry-After");
        }
        let health = shopper.health(Design::Stateless).await.reached();
        assert_eq!(health.status, 503, "{mode:?}: health reports the outage");
        let stateful = shopper.health(Design::Stateful).await.reached();
        assert_eq!(
            stateful.status, 200,
            "the stateful component does not need Redis"
        );
        eprintln!("{mode:?}: slowest answer with Redis down: {slowest:?}");

        redis.restart();
        // No restart of cartlab: the next requests reconnect by themselves.
        let mut resumed = None;
        for _ in 0..50 {
            let answer = shopper
                .send(Method::GET, "/stateless/cart", None)
                .await
                .reached();
            if answer.status == 200 {
                resumed = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let cart = resumed.expect("service resumes after Redis restarts");
        let items: BTreeSet<String> = cart.items().into_iter().collect();
        let expected: BTreeSet<String> = (0..10).map(|n| format!("item {n}")).collect();
        assert_eq!(items, expected, "{mode:?}: every acknowledged add survived");
        assert_eq!(
            shopper.health(Design::Stateless).await.reached().status,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_redis_gives_503_instead_of_a_hang() {
    for mode in [Mode::KeyValueRedis, Mode::RedisNative] {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = start(mode, Some(&redis), dir.path(), &[]);
        let shopper = lab.shopper();
        shopper
            .add(Design::Stateless, "MacBook Pro", Cents(250_000))
            .await
            .succeeded("add");
        // SIGSTOP: the port still accepts connections, but nothing answers.
        redis.pause();
        let started = Instant::now();
        let answer = shopper
            .send(Method::GET, "/stateless/cart", None)
            .await
            .reached();
        let waited = started.elapsed();
        redis.resume();
        assert_eq!(answer.status, 503, "{mode:?}: {}", answer.body);
        assert_eq!(answer.body["error"]["code"], "store_unavailable");
        // Bounded by the host's Redis timeouts, not by the client's 30 s.
        eprintln!("{mode:?}: answer with Redis hung after {waited:?}");
        let mut resumed = false;
        for _ in 0..50 {
            if shopper
                .send(Method::GET, "/stateless/cart", None)
                .await
                .reached()
                .status
                == 200
            {
                resumed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            resumed,
            "{mode:?}: service resumes when Redis answers again"
        );
        let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
        assert_eq!(cart.total(), Some(Cents(250_000)), "{}", cart.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_sessions_leave_the_key_value_store_through_its_expiry_queue() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = start(
        Mode::KeyValueRedis,
        Some(&redis),
        dir.path(),
        &["--variable", "session_idle_secs=1"],
    );
    // Cookie-less adds whose shoppers never come back.
    for n in 0..40 {
        lab.shopper()
            .add(Design::Stateless, &format!("abandoned {n}"), Cents(100))
            .await
            .succeeded("add");
    }
    let sessions = |redis: &RedisServer| -> usize {
        redis
            .query::<Vec<String>>(&["KEYS", "cartlab:session:*"])
            .len()
    };
    // (On a slow machine the first may already have expired and been swept by the last adds.)
    assert!(sessions(&redis) <= 40);
    let queued: i64 = redis.query(&["GET", "cartlab:expiry:last"]);
    assert_eq!(queued, 40, "every new session was queued for expiry");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        sessions(&redis) > 0,
        "no TTL: expired keys stay until swept"
    );
    // A shopper who stays (its add is a write, and may already sweep some).
    let stays = lab.shopper();
    stays
        .add(Design::Stateless, "MacBook Pro", Cents(250_000))
        .await
        .succeeded("add");

    // Key-value has no TTL: the keys stay until requests sweep the queue (one request in 8 of
    // those that write sweeps up to 8 due slots). The shopper who stays keeps changing the
    // cart meanwhile: adds a pen, removes it.
    let mut requests = 0;
    while sessions(&redis) > 1 && requests < 2000 {
        stays
            .add(Design::Stateless, "Pen", Cents(100))
            .await
            .succeeded("add");
        let removed = stays
            .send(Method::DELETE, "/stateless/cart/items/1", None)
            .await
            .reached();
        assert_eq!(removed.status, 200, "{}", removed.body);
        assert_eq!(
            removed.total(),
            Some(Cents(250_000)),
            "the live session is never swept"
        );
        requests += 2;
    }
    assert_eq!(
        sessions(&redis),
        1,
        "after {requests} requests only the live session is left"
    );
    eprintln!("40 abandoned sessions swept within {requests} requests");
}
