//! Fleets (`--instances N` behind sticky, round-robin or least-loaded
//! routing) and the `/_lab/` API, with the real components in `cartlab up`
//! and a real redis-server; and what a Redis stall costs in instances in each store mode.

mod common;

use common::{
    Cents, Design, Expect, IPHONE, Lab, MACBOOK, RedisServer, SEED_TOTAL, seed_cart,
    start_up_error, with_redis,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

async fn lab_get(lab: &Lab, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{}{path}", lab.url))
        .await
        .expect("lab GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A lab order as curl sends one: typed as JSON when it has a body.
async fn lab_post(lab: &Lab, path: &str, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(format!("{}{path}", lab.url));
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    let response = request
        .body(body.to_string())
        .send()
        .await
        .expect("lab POST");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The component's entries in `GET /_lab/instances`.
async fn instances_of(lab: &Lab, component: &str) -> Vec<Value> {
    let (status, body) = lab_get(lab, "/_lab/instances").await;
    assert_eq!(status, 200, "{body}");
    body["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|entry| entry["component"] == component)
        .and_then(|entry| entry["instances"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_pool_keeps_the_stateful_cart_until_its_instance_crashes_then_fails_over() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(
        &redis,
        dir.path(),
        &[
            "--instances",
            "3",
            "--routing",
            "sticky",
            "--restart-delay",
            "30s",
        ],
    );
    let shopper = lab.shopper();

    let first = shopper
        .add(Design::Stateful, MACBOOK.0, MACBOOK.1)
        .await
        .succeeded("add");
    let second = shopper
        .add(Design::Stateful, IPHONE.0, IPHONE.1)
        .await
        .succeeded("add");
    let before = shopper.cart(Design::Stateful).await.succeeded("cart");
    // Sticky: the same long-lived instance served all three.
    assert_eq!(first.instance, second.instance);
    assert_eq!(before.instance, first.instance);
    assert_eq!(
        (first.requests, second.requests, before.requests),
        (1, 2, 3)
    );
    assert_eq!(before.total(), Some(SEED_TOTAL));
    let listed = instances_of(&lab, "stateful-cart").await;
    let serving: Vec<_> = listed
        .iter()
        .filter(|entry| entry["serverId"] == first.instance.as_str())
        .collect();
    assert_eq!(serving.len(), 1, "{listed:?}");
    assert_eq!(serving[0]["served"], 3);
    assert_eq!(serving[0]["state"], "ready");
    let slot = serving[0]["slot"].clone();

    shopper.crash(Design::Stateful).await.trapped();
    // Failover: the session's server is down (restart delay 30 s), so a live
    // one answers, without the cart.
    let after = shopper.cart(Design::Stateful).await.succeeded("cart");
    assert_ne!(after.instance, first.instance);
    assert!(after.items().is_empty(), "{}", after.body);
    let listed = instances_of(&lab, "stateful-cart").await;
    let crashed_slot: Vec<_> = listed
        .iter()
        .filter(|entry| entry["slot"] == slot)
        .collect();
    assert_eq!(crashed_slot.len(), 1, "{listed:?}");
    assert_eq!(crashed_slot[0]["state"], "down", "{listed:?}");
    // The failed-over session stays on its new instance.
    let again = shopper
        .add(Design::Stateful, MACBOOK.0, MACBOOK.1)
        .await
        .succeeded("add");
    assert_eq!(again.instance, after.instance);
    assert_eq!(again.items(), ["MacBook Pro"]);

    // The same journey on the stateless cart loses nothing.
    seed_cart(&shopper, Design::Stateless).await;
    shopper.crash(Design::Stateless).await.trapped();
    let survived = shopper.cart(Design::Stateless).await.succeeded("cart");
    assert_eq!(survived.total(), Some(SEED_TOTAL), "{}", survived.body);
    let log = lab.log().join("\n");
    assert!(log.contains("failed over"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_fragments_the_stateful_cart_and_not_the_stateless_one() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(
        &redis,
        dir.path(),
        &["--instances", "3", "--routing", "round-robin"],
    );
    let items = ["A", "B", "C", "D", "E", "F"];
    for component in Design::BOTH {
        let shopper = lab.shopper();
        let mut instances = BTreeSet::new();
        let mut largest = 0;
        for item in items {
            let answer = shopper
                .add(component, item, Cents(1_000))
                .await
                .succeeded("add");
            instances.insert(answer.instance.clone());
            largest = largest.max(answer.items().len());
        }
        let cart = shopper.cart(component).await.succeeded("cart");
        assert_eq!(instances.len(), 3, "{component}: {instances:?}");
        if component == Design::Stateful {
            // Each instance knows only the session it made; the cookie
            // changes hands every request and no cart grows past one line.
            assert_eq!(largest, 1, "{component}");
            assert!(cart.items().len() <= 1, "{}", cart.body);
        } else {
            assert_eq!(largest, 6);
            assert_eq!(cart.items(), items, "{}", cart.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stateless_cart_is_intact_under_every_routing_and_recycling_mode() {
    let redis = RedisServer::start();
    let runs: [&[&str]; 4] = [
        &[
            "--instances",
            "3",
            "--routing",
            "sticky",
            "--restart-delay",
            "200ms",
        ],
        &[
            "--instances",
            "3",
            "--routing",
            "round-robin",
            "--restart-delay",
            "200ms",
        ],
        &[
            "--instances",
            "2",
            "--routing",
            "least-loaded",
            "--max-instance-reuse-count",
            "2",
        ],
        &["--max-instance-reuse-count", "1"],
    ];
    for flags in runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let lab = with_redis(&redis, dir.path(), flags);
        let shopper = lab.shopper();
        seed_cart(&shopper, Design::Stateless).await;
        shopper.crash(Design::Stateless).await.trapped();
        let (status, rolled) = lab_post(&lab, "/_lab/recycle", r#"{"mode":"rolling"}"#).await;
        assert_eq!(status, 200, "{flags:?}: {rolled}");
        let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
        assert_eq!(cart.total(), Some(SEED_TOTAL), "{flags:?}");
        let (status, all) = lab_post(&lab, "/_lab/recycle", "").await;
        assert_eq!(status, 200, "{flags:?}: {all}");
        // After a big-bang redeploy every server may still be restarting.
        let mut answer = shopper
            .send(reqwest::Method::GET, "/stateless/cart", None)
            .await
            .reached();
        for _ in 0..50 {
            if answer.status != 503 {
                break;
            }
            assert_eq!(
                answer.body["error"]["code"], "no_live_instance",
                "{flags:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            answer = shopper
                .send(reqwest::Method::GET, "/stateless/cart", None)
                .await
                .reached();
        }
        assert_eq!(answer.status, 200, "{flags:?}: {}", answer.body);
        assert_eq!(answer.total(), Some(SEED_TOTAL), "{flags:?}");
        assert!(lab.stop(), "{flags:?}: clean shutdown");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_redeploy_replaces_every_pool_instance_one_by_one() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(
        &redis,
        dir.path(),
        &[
            "--instances",
            "3",
            "--routing",
            "round-robin",
            "--restart-delay",
            "300ms",
        ],
    );
    let shopper = lab.shopper();
    for _ in 0..3 {
        shopper
            .add(Design::Stateful, "A", Cents(100))
            .await
            .succeeded("add");
    }
    let before: BTreeSet<String> = instances_of(&lab, "stateful-cart")
        .await
        .iter()
        .filter_map(|entry| entry["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(before.len(), 3, "{before:?}");

    let started = std::time::Instant::now();
    let (status, body) = lab_post(
        &lab,
        "/_lab/recycle",
        r#"{"component":"stateful-cart","mode":"rolling"}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let recycled: BTreeSet<String> = body["recycled"]
        .as_array()
        .expect("recycled")
        .iter()
        .filter_map(|id| id.as_str().map(str::to_string))
        .collect();
    assert_eq!(recycled, before);
    // One slot at a time, each out of rotation for its restart delay.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let log = lab.log().join("\n");
    assert_eq!(log.matches("reason=recycled").count(), 3, "{log}");

    // Three fresh instances (generation 2 of each slot) serve afterwards.
    for _ in 0..3 {
        let answer = shopper
            .add(Design::Stateful, "B", Cents(100))
            .await
            .succeeded("add");
        assert_eq!(answer.requests, 1, "{}", answer.body);
    }
    let after = instances_of(&lab, "stateful-cart").await;
    assert!(
        after.iter().all(|entry| entry["generation"] == 2),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_api_lists_recycles_and_streams_events_in_spin_mode() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // The host names its instances; a user's variable of the same name does not.
    let lab = with_redis(
        &redis,
        dir.path(),
        &[
            "--idle-instance-timeout",
            "60s",
            "--env",
            "CARTLAB_INSTANCE_ID=forged",
        ],
    );
    let shopper = lab.shopper();

    // Subscribe first: the stream opens with a snapshot.
    let mut events = reqwest::get(format!("{}/_lab/events", lab.url))
        .await
        .expect("events");
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");

    let first = shopper
        .add(Design::Stateful, MACBOOK.0, MACBOOK.1)
        .await
        .succeeded("add");
    let (status, snapshot) = lab_get(&lab, "/_lab/instances").await;
    assert_eq!(status, 200);
    assert_eq!(snapshot["mode"], "spin");
    let listed = instances_of(&lab, "stateful-cart").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["serverId"], first.instance.as_str());
    assert_eq!(listed[0]["served"], 1);
    let number = listed[0]["number"].as_u64().expect("number");

    // Recycle that one instance: the cart goes with it.
    let order = json!({ "component": "stateful-cart", "instance": number }).to_string();
    let (status, body) = lab_post(&lab, "/_lab/recycle", &order).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recycled"], json!([format!("stateful-cart#{number}")]));
    let after = shopper.cart(Design::Stateful).await.succeeded("cart");
    assert_ne!(after.instance, first.instance);
    assert!(after.items().is_empty());
    shopper.crash(Design::Stateful).await.trapped();

    // The stream saw the whole story, in order.
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("\"reason\":\"trap\"") && std::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), events.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    let names: Vec<&str> = seen
        .lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"hello"), "{seen}");
    for expected in ["instance-started", "request", "instance-recycled"] {
        assert!(names.contains(&expected), "{expected} missing: {seen}");
    }
    assert!(seen.contains("\"reason\":\"recycled\""), "{seen}");
    assert!(seen.contains("\"reason\":\"trap\""), "{seen}");
    // The instance was named when it started, before it answered anything.
    let started = seen
        .split("event: instance-started\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_default();
    assert!(
        started.contains(&format!("\"serverId\":\"{}\"", first.instance)),
        "{seen}"
    );
    assert_ne!(first.instance, "forged");
    assert!(!seen.contains("cartlab_stateful="), "no cookies in events");

    // Bad orders get JSON errors, never a recycle.
    for (body, status, code) in [
        ("{not json", 400, "bad_request"),
        (r#"{"mode":"sideways"}"#, 400, "bad_request"),
        (r#"{"component":"nope"}"#, 404, "unknown_component"),
        (
            r#"{"component":"stateful-cart","instance":999}"#,
            404,
            "unknown_instance",
        ),
        (r#"{"instance":1}"#, 400, "bad_request"),
        (
            r#"{"mode":"one","component":"stateful-cart"}"#,
            400,
            "bad_request",
        ),
        (r#"{"extra":true}"#, 400, "bad_request"),
    ] {
        let (got, answer) = lab_post(&lab, "/_lab/recycle", body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let huge = format!(r#"{{"component":"{}"}}"#, "x".repeat(10_000));
    assert_eq!(lab_post(&lab, "/_lab/recycle", &huge).await.0, 413);
    assert_eq!(lab_get(&lab, "/_lab/nothing").await.0, 404);
    let (status, body) = lab_post(&lab, "/_lab/instances", "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    // The stream is still open: shutdown must end it rather than wait out
    // its grace period for it.
    let (stopped, log) = lab.stop_with_log();
    assert!(stopped);
    let log = log.join("\n");
    assert!(!log.contains("did not finish"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    drop(events);
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_api_can_be_turned_off_and_its_prefix_is_reserved() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(&redis, dir.path(), &["--lab-api", "off"]);
    let (status, body) = lab_get(&lab, "/_lab/instances").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    drop(lab);

    let manifest = r#"spin_manifest_version = 2
[application]
name = "greedy"
[[trigger.http]]
route = "/_lab/..."
component = "cart"
[component.cart]
source = "cart.wasm"
"#;
    std::fs::write(dir.path().join("spin.toml"), manifest).expect("write manifest");
    let error = start_up_error(&[], dir.path());
    assert!(error.contains("reserved for the lab host"), "{error}");

    // Fleet-only flags need --instances; the concurrency limit does not apply to fleets.
    let error = start_up_error(&["--routing", "sticky"], dir.path());
    assert!(error.contains("--instances"), "{error}");
    let error = start_up_error(
        &[
            "--instances",
            "2",
            "--max-instance-concurrent-reuse-count",
            "4",
        ],
        dir.path(),
    );
    assert!(error.contains("does not apply"), "{error}");
}

/// Reads sent together while Redis holds every command (`CLIENT PAUSE`).
const STALLED_READS: usize = 8;

/// How many requests each of the stateless cart's instances holds at the moment all
/// [`STALLED_READS`] reads are in flight together, in a lab in `session_store` mode, and the
/// instances that answered them. Redis pauses for 500 ms: within the host's 800 ms bound on
/// a Redis operation, so every read is answered once Redis resumes.
async fn instances_holding_a_stall(session_store: &str) -> (Vec<u64>, BTreeSet<String>) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mode = format!("session_store={session_store}");
    let url = format!("redis_url={}", redis.url());
    let lab = with_redis(
        &redis,
        dir.path(),
        &["--variable", &mode, "--variable", &url],
    );
    let shopper = lab.shopper();
    seed_cart(&shopper, Design::Stateless).await;

    let _: () = redis.query(&["CLIENT", "PAUSE", "500", "ALL"]);
    let reads: Vec<_> = (0..STALLED_READS)
        .map(|_| {
            let shopper = shopper.clone();
            tokio::spawn(async move { shopper.cart(Design::Stateless).await })
        })
        .collect();
    let mut holding = Vec::new();
    for _ in 0..40 {
        let instances = instances_of(&lab, "stateless-cart").await;
        holding = instances
            .iter()
            .filter_map(|instance| instance["inFlight"].as_u64())
            .filter(|&in_flight| in_flight > 0)
            .collect();
        if holding.iter().sum::<u64>() == STALLED_READS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut answered_by = BTreeSet::new();
    for read in reads {
        let cart = read
            .await
            .expect("read task")
            .succeeded("read during the stall");
        assert_eq!(cart.total(), Some(SEED_TOTAL), "{}", cart.body);
        answered_by.insert(cart.instance);
    }
    assert_eq!(
        holding.iter().sum::<u64>(),
        STALLED_READS as u64,
        "{session_store}: the {STALLED_READS} reads were never in flight together while \
         Redis was paused: {holding:?}"
    );
    eprintln!("{session_store}: in flight per instance during the stall {holding:?}");
    assert!(lab.stop());
    (holding, answered_by)
}

/// Redis mode calls `spin:redis@3`, whose functions are async: a request waiting on Redis
/// leaves its instance free to take more, so a stall needs few instances. Key-value mode
/// calls `wasi:keyvalue` (draft 2), whose functions are synchronous: wasmtime's handler, under
/// Spin as here, gives an instance blocked in one no other request until it returns, so each
/// stalled read holds an instance of its own. (Reads that arrive while an instance is busy
/// running guest code start another instance in either mode, so Redis mode may use a few.)
/// What the async call costs in CPU on a fast Redis is in `bench/profile.md`.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_stall_shares_instances_in_redis_mode_and_takes_one_per_read_in_key_value_mode() {
    let (holding, answered_by) = instances_holding_a_stall("redis").await;
    assert!(
        holding.iter().any(|&in_flight| in_flight > 1),
        "an instance waiting on spin:redis takes more reads: {holding:?}"
    );
    assert_eq!(answered_by.len(), holding.len(), "{answered_by:?}");

    let (holding, answered_by) = instances_holding_a_stall("key-value").await;
    assert_eq!(
        holding, [1; STALLED_READS],
        "an instance blocked in a synchronous store call takes no other read"
    );
    assert_eq!(answered_by.len(), STALLED_READS, "{answered_by:?}");
}
