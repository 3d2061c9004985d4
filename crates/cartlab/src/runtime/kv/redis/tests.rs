use super::*;
use std::time::Instant;
use test_support::{RedisAuth, RedisServer};

fn url(text: &str) -> RedisUrl {
    RedisUrl::parse(text).unwrap()
}

#[test]
fn opening_does_not_connect() {
    assert!(RedisBackend::new(&url("redis://127.0.0.1:1")).is_ok());
}

#[tokio::test]
async fn crud_outage_and_recovery() {
    let mut server = RedisServer::start();
    let b = RedisBackend::new(&url(&server.url())).unwrap();

    assert_eq!(b.get("session:abc".into()).await.unwrap(), None);
    assert!(!b.exists("session:abc".into()).await.unwrap());
    b.set("session:abc".into(), b"one".to_vec()).await.unwrap();
    b.set("session:abc".into(), vec![0, 1, 255]).await.unwrap();
    b.set("other".into(), b"x".to_vec()).await.unwrap();
    assert_eq!(
        b.get("session:abc".into()).await.unwrap(),
        Some(vec![0, 1, 255])
    );
    assert!(b.exists("session:abc".into()).await.unwrap());
    assert_eq!(b.get_keys().await.unwrap(), ["other", "session:abc"]);
    b.delete("other".into()).await.unwrap();
    b.delete("never-there".into()).await.unwrap();
    assert_eq!(b.get_keys().await.unwrap(), ["session:abc"]);

    // Spin's layout: the key is stored under its own name.
    assert_eq!(
        server.query::<Vec<u8>>(&["GET", "session:abc"]),
        [0u8, 1, 255]
    );

    // get_keys over several SCAN batches.
    for i in 0..2500 {
        b.set(format!("k{i:04}"), vec![1]).await.unwrap();
    }
    let keys = b.get_keys().await.unwrap();
    assert_eq!(keys.len(), 2501);
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and unique");

    // Outage: prompt Unavailable, repeatedly.
    server.kill();
    for _ in 0..3 {
        let t = Instant::now();
        let r = b.get("session:abc".into()).await;
        let took = t.elapsed();
        assert!(matches!(r, Err(KvError::Unavailable(_))), "{r:?}");
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }
    let t = Instant::now();
    assert!(matches!(b.get_keys().await, Err(KvError::Unavailable(_))));
    assert!(t.elapsed() < Duration::from_millis(1500));

    // Recovery on the same backend object (the fresh server has no data: no persistence).
    server.restart();
    b.set("session:abc".into(), b"back".to_vec()).await.unwrap();
    assert_eq!(
        b.get("session:abc".into()).await.unwrap(),
        Some(b"back".to_vec())
    );
}

#[tokio::test]
async fn start_while_down_then_recover() {
    let mut server = RedisServer::start();
    server.kill();
    let b = RedisBackend::new(&url(&server.url())).unwrap();
    let t = Instant::now();
    assert!(matches!(
        b.set("k".into(), vec![1]).await,
        Err(KvError::Unavailable(_))
    ));
    assert!(t.elapsed() < Duration::from_millis(1500));
    server.restart();
    b.set("k".into(), vec![1]).await.unwrap();
    assert!(b.exists("k".into()).await.unwrap());
}

#[tokio::test]
async fn hung_server_times_out_promptly_then_recovers() {
    let server = RedisServer::start();
    let b = RedisBackend::new(&url(&server.url())).unwrap();
    b.set("k".into(), vec![1]).await.unwrap();
    server.pause();
    let t = Instant::now();
    let r = b.get("k".into()).await;
    let took = t.elapsed();
    server.resume();
    assert!(matches!(r, Err(KvError::Unavailable(_))), "{r:?}");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(b.get("k".into()).await.unwrap(), Some(vec![1]));
}

#[tokio::test]
async fn server_errors_are_other() {
    let server = RedisServer::start();
    server.redis_cli(&["LPUSH", "list", "x"]);
    let b = RedisBackend::new(&url(&server.url())).unwrap();
    assert!(matches!(b.get("list".into()).await, Err(KvError::Other(_))));
    // And the backend keeps working afterwards.
    b.set("k".into(), vec![2]).await.unwrap();
}

fn backend(server: &RedisServer) -> Arc<dyn KvBackend> {
    Arc::new(RedisBackend::new(&url(&server.url())).unwrap())
}

#[tokio::test]
async fn compare_and_swap_semantics() {
    let server = RedisServer::start();
    crate::runtime::kv::conformance::compare_and_swap(backend(&server)).await;
}

#[tokio::test]
async fn concurrent_cas_counter_reaches_32() {
    let server = RedisServer::start();
    crate::runtime::kv::conformance::concurrent_cas_counter(backend(&server)).await;
}

#[tokio::test]
async fn increment_is_incrby_on_decimal_text() {
    let server = RedisServer::start();
    crate::runtime::kv::conformance::increment(backend(&server)).await;
    // Stored the way Redis INCRBY stores it: a plain decimal string.
    assert_eq!(server.redis_cli(&["GET", "n"]).trim(), "-2");
}

#[tokio::test]
async fn batch_get_many_keeps_missing_keys() {
    let server = RedisServer::start();
    crate::runtime::kv::conformance::batch(backend(&server)).await;
}

#[tokio::test]
async fn list_keys_pages_with_scan() {
    let server = RedisServer::start();
    let b = backend(&server);
    crate::runtime::kv::conformance::list_keys(b.clone()).await;
    assert!(matches!(
        b.list_keys(Some("not a cursor".into())).await,
        Err(KvError::Other(_))
    ));
}

#[tokio::test]
async fn new_operations_fail_promptly_when_redis_is_down() {
    let mut server = RedisServer::start();
    let b = backend(&server);
    server.kill();
    let t = Instant::now();
    assert!(matches!(
        b.compare_and_swap("k".into(), None, vec![1]).await,
        Err(KvError::Unavailable(_))
    ));
    assert!(matches!(
        b.increment("k".into(), 1).await,
        Err(KvError::Unavailable(_))
    ));
    assert!(matches!(
        b.get_many(vec!["k".into()]).await,
        Err(KvError::Unavailable(_))
    ));
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn credentials_in_the_url_are_sent_and_never_shown() {
    let secret = "kv-s3cret";
    let server = RedisServer::start_with_auth(RedisAuth::Password(secret.into()));
    let b = RedisBackend::new(&url(&server.url())).unwrap();
    b.set("cartlab:k".into(), vec![1]).await.unwrap();
    assert_eq!(b.get("cartlab:k".into()).await.unwrap(), Some(vec![1]));
    assert!(!b.describe().contains(secret), "{}", b.describe());
    // Without the password, or with a wrong one: a prompt error that does not show it.
    let wrong = format!("redis://:{secret}-not@127.0.0.1:{}", server.port());
    for address in [server.url_without_credentials(), wrong] {
        let b = RedisBackend::new(&url(&address)).unwrap();
        let t = Instant::now();
        let e = b.get("cartlab:k".into()).await.unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_millis(1500));
        assert!(!e.contains(secret), "{e}");
    }
}

mod behind_sentinel {
    use super::*;
    use crate::app::runtime_config::ReplicaWait;
    use test_support::{MASTER_NAME, SentinelSet};

    fn backend(set: &SentinelSet, wait: bool) -> RedisBackend {
        let config = RedisSentinel {
            sentinels: set.sentinel_urls().iter().map(|u| url(u)).collect(),
            master_name: MASTER_NAME.into(),
            wait: wait.then_some(ReplicaWait {
                replicas: 1,
                timeout: Duration::from_millis(200),
            }),
        };
        RedisBackend::sentinel(&config, SetTtl::Keep)
    }

    #[tokio::test]
    async fn writes_wait_for_the_replica_and_fail_promptly_without_one() {
        let mut set = SentinelSet::start();
        let primary = set.agreed_primary().expect("a primary");
        let b = backend(&set, true);
        crate::runtime::kv::conformance::compare_and_swap(Arc::new(backend(&set, true))).await;
        b.set("k".into(), b"v".to_vec()).await.unwrap();
        assert_eq!(set.node(primary).redis_cli(&["GET", "k"]), "v");
        let replica = set.node_ports().into_iter().find(|p| *p != primary);
        set.kill(replica.expect("a replica"));
        let started = Instant::now();
        let e = b.set("k".into(), b"w".to_vec()).await.unwrap_err();
        assert!(
            matches!(&e, KvError::Unavailable(m) if m.contains("0 of 1 replica(s)")),
            "{e}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        // The refused write is on the primary, but a read through the same backend does not
        // hand it out as if it were confirmed.
        assert!(matches!(
            b.get("k".into()).await,
            Err(KvError::Unavailable(_))
        ));
        let unconfirmed = backend(&set, false);
        assert_eq!(
            unconfirmed.get("k".into()).await.unwrap(),
            Some(b"w".to_vec())
        );
        // Without wait_replicas the same write is done.
        unconfirmed.set("k".into(), b"x".to_vec()).await.unwrap();
    }

    /// After a failover the old primary, once demoted, answers writes with READONLY: the
    /// backend drops that connection and asks the sentinels again.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_demoted_primary_sends_the_backend_back_to_the_sentinels() {
        let set = SentinelSet::start();
        let old = set.agreed_primary().expect("a primary");
        let b = backend(&set, false);
        b.set("k".into(), b"before".to_vec()).await.unwrap();
        set.force_failover();
        let new =
            tokio::task::block_in_place(|| set.wait_for_promotion(old, Duration::from_secs(20)));
        // What the sentinels do to the old primary some seconds later, done now.
        let new_port = new.to_string();
        set.node(old)
            .query::<()>(&["REPLICAOF", "127.0.0.1", &new_port]);
        let mut refusals = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match b.set("k".into(), b"after".to_vec()).await {
                Ok(()) => break,
                Err(KvError::Unavailable(e)) if Instant::now() < deadline => refusals.push(e),
                Err(e) => panic!("{e} after {refusals:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // One write meets the demoted node; the next goes to the promoted one.
        assert!(
            refusals.len() == 1 && refusals[0].contains("read only replica"),
            "{refusals:?}"
        );
        assert_eq!(
            set.node(new).redis_cli(&["GET", "k"]),
            "after",
            "{refusals:?}"
        );
    }
}
