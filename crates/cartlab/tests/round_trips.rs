//! Redis round trips per request, counted by the Redis server itself (`INFO commandstats`)
//! while the real stateless cart runs in `cartlab up`: reads that write nothing, sessions
//! created with plain writes, and the compare-and-set of an add. (How long they take is for
//! `bench/`, never for a test.)

mod common;

use common::{Cents, Design, Expect, Lab, RedisServer, Shopper, with_redis};
use std::collections::BTreeMap;

const N: u64 = 100;

/// Calls per command since the server started, the test's own commands (`INFO`, the client
/// handshake of each query) left out.
fn calls(redis: &RedisServer) -> BTreeMap<String, u64> {
    redis
        .redis_cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let count = rest.split(',').next()?.parse().ok()?;
            (!name.starts_with("info") && !name.starts_with("client")).then(|| (name.into(), count))
        })
        .collect()
}

/// What `work` made Redis run, per command.
async fn counted(redis: &RedisServer, work: impl AsyncFnOnce()) -> BTreeMap<String, u64> {
    let before = calls(redis);
    work().await;
    calls(redis)
        .into_iter()
        .filter_map(|(name, after)| {
            let n = after - before.get(&name).copied().unwrap_or(0);
            (n > 0).then_some((name, n))
        })
        .collect()
}

fn expect(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).into(), *v)).collect()
}

async fn reads(shopper: &Shopper, n: u64) {
    for _ in 0..n {
        shopper.cart(Design::Stateless).await.succeeded("cart");
    }
}

async fn new_sessions(lab: &Lab, n: u64) {
    for _ in 0..n {
        lab.shopper()
            .add(Design::Stateless, "Pen", Cents(100))
            .await
            .succeeded("add");
    }
}

async fn adds(shopper: &Shopper, n: u64) {
    for i in 0..n {
        shopper
            .add(Design::Stateless, &format!("item {i}"), Cents(100))
            .await
            .succeeded("add");
    }
}

/// A shopper whose session was just written: each of its reads is exactly one GET.
async fn reads_are_one_get(redis: &RedisServer, lab: &Lab) -> Shopper {
    let shopper = lab.shopper();
    shopper
        .add(Design::Stateless, "MacBook Pro", Cents(250_000))
        .await
        .succeeded("add");
    let read = counted(redis, || reads(&shopper, N)).await;
    assert_eq!(
        read,
        expect(&[("get", N)]),
        "a read written just now: one GET"
    );
    shopper
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_mode_reads_in_one_get_creates_in_one_set_and_adds_in_two_round_trips() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redis_url={}", redis.url());
    let lab = with_redis(
        &redis,
        dir.path(),
        &["--variable", "session_store=redis", "--variable", &url],
    );
    let shopper = reads_are_one_get(&redis, &lab).await;

    let created = counted(&redis, || new_sessions(&lab, N)).await;
    assert_eq!(
        created,
        expect(&[("set", N)]),
        "a new session: one SET with its TTL"
    );

    // 99 more lines: the cart holds 100 at most.
    let added = counted(&redis, || adds(&shopper, N - 1)).await;
    let n = N - 1;
    // A GET, then one EVAL whose script runs a GET and a SET inside Redis.
    assert_eq!(
        added,
        expect(&[("eval", n), ("get", 2 * n), ("set", n)]),
        "an add: GET + the compare-and-set EVAL"
    );
    let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
    assert_eq!(cart.items().len(), 100);
    assert!(lab.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn key_value_mode_reads_in_one_get_and_creates_in_at_most_three_round_trips() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(&redis, dir.path(), &[]);
    reads_are_one_get(&redis, &lab).await;

    // Each creation: the queue's counter (INCRBY), then the session and its queue entry in one
    // batch (MULTI, two SETs, EXEC: one round trip); one in eight also sweeps, at the cost of
    // a counter read (INCRBY by 0) and two GETs. No scripts: they are for `--kv-faults`.
    let created = counted(&redis, || new_sessions(&lab, N)).await;
    let get = |name: &str| created.get(name).copied().unwrap_or(0);
    let round_trips = get("incrby") + get("get") + get("exec");
    eprintln!("{N} new sessions, {round_trips} round trips: {created:?}");
    assert!(
        round_trips <= 3 * N,
        "{round_trips} round trips for {N} new sessions: {created:?}"
    );
    assert_eq!(
        (get("exec"), get("multi")),
        (N, N),
        "one batch per session: {created:?}"
    );
    assert_eq!(get("eval") + get("evalsha"), 0, "no scripts: {created:?}");
    assert_eq!(
        get("set"),
        2 * N,
        "each session and its queue entry: {created:?}"
    );
    assert!(lab.stop());
}
