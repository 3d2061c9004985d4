use super::*;
use crate::app::runtime_config::RedisUrl;
use crate::runtime::kv::redis::RedisBackend;
use test_support::RedisServer;

fn parse(text: &str) -> Result<FaultSpec, String> {
    text.parse::<FaultSpec>().map_err(|e| e.to_string())
}

#[test]
fn spec_parses_each_fault_and_combinations() {
    assert_eq!(
        parse("spin-4.1"),
        Ok(FaultSpec {
            spin_4_1: true,
            ..FaultSpec::default()
        })
    );
    assert_eq!(parse("error-rate=0.05").unwrap().error_rate, Some(0.05));
    assert_eq!(parse("error-rate=1").unwrap().error_rate, Some(1.0));
    assert_eq!(
        parse("slow-writes=500ms").unwrap().slow_writes,
        Some(Duration::from_millis(500))
    );
    assert_eq!(
        parse("slow-writes=2s").unwrap().slow_writes,
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        parse("spin-4.1, error-rate=0.05,slow-writes=600ms"),
        Ok(FaultSpec {
            spin_4_1: true,
            error_rate: Some(0.05),
            slow_writes: Some(Duration::from_millis(600)),
        })
    );
    assert!(parse("none").unwrap().is_none());
    assert!(FaultSpec::default().is_none());
}

#[test]
fn spec_display_round_trips() {
    assert_eq!(FaultSpec::default().to_string(), "none");
    for text in [
        "spin-4.1",
        "error-rate=0.05",
        "slow-writes=600ms",
        "spin-4.1,error-rate=0.05,slow-writes=1.5s",
    ] {
        let spec = parse(text).unwrap();
        assert_eq!(spec.to_string(), text);
        assert_eq!(parse(&spec.to_string()), Ok(spec));
    }
}

#[test]
fn bad_specs_name_the_bad_part() {
    for (text, named) in [
        ("foo", "`foo`"),
        ("spin-4.1,foo", "`foo`"),
        ("error-rate=2", "`error-rate=2`"),
        ("error-rate=0", "`error-rate=0`"),
        ("error-rate=-0.1", "`error-rate=-0.1`"),
        ("error-rate=NaN", "`error-rate=NaN`"),
        ("error-rate=lots", "`error-rate=lots`"),
        ("error-rate", "`error-rate`"),
        ("slow-writes=soon", "`slow-writes=soon`"),
        ("slow-writes=0ms", "`slow-writes=0ms`"),
        ("spin-4.1=yes", "`spin-4.1=yes`"),
        ("spin-4.1,spin-4.1", "`spin-4.1`"),
        ("error-rate=0.1,error-rate=0.2", "`error-rate=0.2`"),
        ("spin-4.1,", "empty"),
        ("", "empty"),
    ] {
        let error = parse(text).expect_err(text);
        assert!(error.contains(named), "{text:?}: {error}");
    }
}

#[test]
fn clap_reports_the_bad_part() {
    use clap::Parser;
    #[derive(Parser, Debug)]
    struct Cli {
        #[arg(long, value_parser = clap::value_parser!(FaultSpec))]
        kv_faults: Option<FaultSpec>,
    }
    let cli = Cli::try_parse_from(["t", "--kv-faults", "spin-4.1,error-rate=0.5"]).unwrap();
    assert_eq!(cli.kv_faults.unwrap().error_rate, Some(0.5));
    let error = Cli::try_parse_from(["t", "--kv-faults", "error-rate=2"])
        .unwrap_err()
        .to_string();
    assert!(error.contains("`error-rate=2`"), "{error}");
}

fn redis_config(server: &RedisServer) -> StoreConfig {
    StoreConfig::Redis {
        url: RedisUrl::parse(&server.url()).unwrap(),
    }
}

/// A Redis store of label `default` opened as `cartlab up --kv-faults spec` opens it.
async fn open(server: &RedisServer, spec: &str) -> (Arc<dyn KvBackend>, Arc<Faults>) {
    let faults = Faults::new(parse(spec).unwrap());
    let backend = crate::runtime::kv::open("default", &redis_config(server), Some(&faults))
        .await
        .unwrap();
    (backend, faults)
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.query(&["PTTL", key])
}

#[tokio::test]
async fn spin_4_1_inverts_every_swap_answer() {
    let server = RedisServer::start();
    let (b, faults) = open(&server, "spin-4.1").await;
    b.set("k".into(), b"v1".to_vec()).await.unwrap();

    // Committed, reported as failed.
    let answer = b
        .compare_and_swap("k".into(), Some(b"v1".to_vec()), b"v2".to_vec())
        .await
        .unwrap();
    assert!(!answer, "a committed swap is reported as CasFailed");
    assert_eq!(server.redis_cli(&["GET", "k"]), "v2", "and it IS written");
    assert_eq!(faults.count(FaultKind::FalseFailure), 1);

    // Lost its race (stale expected value), reported as done.
    let answer = b
        .compare_and_swap("k".into(), Some(b"v1".to_vec()), b"v3".to_vec())
        .await
        .unwrap();
    assert!(answer, "a swap that lost its race is reported as success");
    assert_eq!(
        server.redis_cli(&["GET", "k"]),
        "v2",
        "and it is NOT written"
    );
    assert_eq!(faults.count(FaultKind::FalseSuccess), 1);

    // Creating an absent key, and failing to create an existing one.
    assert!(
        !b.compare_and_swap("new".into(), None, b"n".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(server.redis_cli(&["GET", "new"]), "n");
    assert!(
        b.compare_and_swap("new".into(), None, b"m".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(server.redis_cli(&["GET", "new"]), "n");
    assert_eq!(faults.count(FaultKind::FalseFailure), 2);
    assert_eq!(faults.count(FaultKind::FalseSuccess), 2);
    for kind in [
        FaultKind::ErrorBefore,
        FaultKind::ErrorAfter,
        FaultKind::SlowWrite,
    ] {
        assert_eq!(faults.count(kind), 0, "{kind}");
    }
}

#[tokio::test]
async fn spin_4_1_set_wipes_the_ttl() {
    let server = RedisServer::start();
    let (b, faults) = open(&server, "spin-4.1").await;
    server.redis_cli(&["SET", "k", "v"]);
    server.redis_cli(&["PEXPIRE", "k", "60000"]);
    b.set("k".into(), b"w".to_vec()).await.unwrap();
    assert_eq!(pttl(&server, "k"), -1, "plain SET: no TTL any more");
    assert_eq!(faults.count(FaultKind::TtlWiped), 1);
    // No TTL to wipe: nothing reported.
    b.set("k".into(), b"x".to_vec()).await.unwrap();
    b.set("fresh".into(), b"x".to_vec()).await.unwrap();
    assert_eq!(faults.count(FaultKind::TtlWiped), 1);

    // The compare-and-swap path and set_many wipe it too.
    server.redis_cli(&["PEXPIRE", "k", "60000"]);
    b.compare_and_swap("k".into(), Some(b"x".to_vec()), b"y".to_vec())
        .await
        .unwrap();
    assert_eq!(pttl(&server, "k"), -1);
    assert_eq!(server.redis_cli(&["GET", "k"]), "y");
    server.redis_cli(&["PEXPIRE", "k", "60000"]);
    b.set_many(vec![
        ("k".into(), b"z".to_vec()),
        ("m".into(), b"z".to_vec()),
    ])
    .await
    .unwrap();
    assert_eq!(pttl(&server, "k"), -1);
    assert_eq!(faults.count(FaultKind::TtlWiped), 3);
}

#[tokio::test]
async fn without_faults_writes_keep_the_ttl() {
    let server = RedisServer::start();
    let b = crate::runtime::kv::open("default", &redis_config(&server), None)
        .await
        .unwrap();
    server.redis_cli(&["SET", "k", "v"]);
    server.redis_cli(&["PEXPIRE", "k", "60000"]);
    b.set("k".into(), b"w".to_vec()).await.unwrap();
    let kept = pttl(&server, "k");
    assert!(kept > 0 && kept <= 60_000, "set keeps the TTL: {kept}");
    assert!(
        b.compare_and_swap("k".into(), Some(b"w".to_vec()), b"x".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(server.redis_cli(&["GET", "k"]), "x");
    let kept = pttl(&server, "k");
    assert!(
        kept > 0 && kept <= 60_000,
        "compare-and-swap keeps the TTL: {kept}"
    );
    b.set_many(vec![("k".into(), b"y".to_vec())]).await.unwrap();
    assert!(pttl(&server, "k") > 0, "set_many keeps the TTL");
    b.increment("n".into(), 1).await.unwrap();
    server.redis_cli(&["PEXPIRE", "n", "60000"]);
    b.increment("n".into(), 1).await.unwrap();
    assert!(pttl(&server, "n") > 0, "increment keeps the TTL");
    // Other faults leave Redis's TTL behaviour alone.
    let (b, _) = open(&server, "slow-writes=1ms").await;
    b.set("k".into(), b"z".to_vec()).await.unwrap();
    assert!(pttl(&server, "k") > 0);
}

#[tokio::test]
async fn spin_4_1_leaves_sqlite_alone() {
    let faults = Faults::new(parse("spin-4.1").unwrap());
    let config = StoreConfig::Sqlite { path: None };
    let b = crate::runtime::kv::open("default", &config, Some(&faults))
        .await
        .unwrap();
    assert!(
        b.compare_and_swap("k".into(), None, b"v".to_vec())
            .await
            .unwrap()
    );
    assert!(
        !b.compare_and_swap("k".into(), None, b"w".to_vec())
            .await
            .unwrap()
    );
    assert!(FaultKind::ALL.iter().all(|&kind| faults.count(kind) == 0));
    assert!(!faults.applied_to(&config).spin_4_1);
}

#[tokio::test]
async fn error_rate_one_fails_everything_before_or_after() {
    let server = RedisServer::start();
    let (b, faults) = open(&server, "error-rate=1").await;
    assert!(b.get("k".into()).await.is_err());
    assert!(b.exists("k".into()).await.is_err());
    assert!(b.get_keys().await.is_err());
    assert!(b.list_keys(None).await.is_err());
    assert!(b.get_many(vec!["k".into()]).await.is_err());
    assert_eq!(faults.count(FaultKind::ErrorBefore), 5, "reads fail before");
    assert_eq!(faults.count(FaultKind::ErrorAfter), 0);
    assert!(b.delete("k".into()).await.is_err());
    assert!(b.increment("n".into(), 1).await.is_err());
    assert!(
        b.compare_and_swap("c".into(), None, b"v".to_vec())
            .await
            .is_err()
    );
    assert!(b.set_many(vec![("m".into(), b"v".to_vec())]).await.is_err());
    assert!(b.delete_many(vec!["m".into()]).await.is_err());

    // Many writes, each to its own key: the ones that failed after were applied, the
    // ones that failed before were not.
    let writes = 200;
    let before = faults.count(FaultKind::ErrorBefore);
    let after = faults.count(FaultKind::ErrorAfter);
    for i in 0..writes {
        let error = b.set(format!("w{i}"), b"v".to_vec()).await.unwrap_err();
        assert!(matches!(error, KvError::Other(ref m) if m.contains("injected fault")));
    }
    let applied: Vec<String> = server.query(&["KEYS", "w*"]);
    let failed_after = faults.count(FaultKind::ErrorAfter) - after;
    let failed_before = faults.count(FaultKind::ErrorBefore) - before;
    assert_eq!(failed_before + failed_after, writes);
    assert!(
        failed_before > 0 && failed_after > 0,
        "{failed_before} / {failed_after}"
    );
    assert_eq!(applied.len() as u64, failed_after, "after ones are applied");
}

#[tokio::test]
async fn error_rate_with_spin_4_1_counts_each_kind() {
    let server = RedisServer::start();
    let (b, faults) = open(&server, "spin-4.1,error-rate=0.5").await;
    let mut errors = 0;
    for i in 0..200 {
        match b
            .compare_and_swap(format!("c{i}"), None, b"v".to_vec())
            .await
        {
            Ok(answer) => assert!(!answer, "every committed swap is reported failed"),
            Err(_) => errors += 1,
        }
    }
    let n = |kind| faults.count(kind);
    assert_eq!(n(FaultKind::ErrorBefore) + n(FaultKind::ErrorAfter), errors);
    assert_eq!(n(FaultKind::FalseFailure), 200 - errors);
    assert!(errors > 0 && errors < 200, "{errors}");
    let written: Vec<String> = server.query(&["KEYS", "c*"]);
    assert_eq!(
        written.len() as u64,
        n(FaultKind::FalseFailure) + n(FaultKind::ErrorAfter)
    );
}

#[tokio::test]
async fn slow_writes_apply_first_then_answer_late() {
    let server = RedisServer::start();
    let (b, faults) = open(&server, "slow-writes=400ms").await;
    let started = std::time::Instant::now();
    let write = tokio::spawn({
        let b = b.clone();
        async move { b.set("k".into(), b"v".to_vec()).await }
    });
    // Applied long before it is answered.
    let mut seen = false;
    while started.elapsed() < Duration::from_millis(300) {
        if server.redis_cli(&["GET", "k"]) == "v" {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the write is applied before the delay");
    assert!(!write.is_finished(), "and answered only after it");
    write.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(faults.count(FaultKind::SlowWrite), 1);
    // Reads are not delayed.
    let started = std::time::Instant::now();
    assert_eq!(b.get("k".into()).await.unwrap(), Some(b"v".to_vec()));
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(faults.count(FaultKind::SlowWrite), 1);
}

#[test]
fn no_applicable_fault_leaves_the_backend_unwrapped() {
    let faults = Faults::new(parse("spin-4.1").unwrap());
    let sqlite = StoreConfig::Sqlite { path: None };
    let url = RedisUrl::parse("redis://127.0.0.1:1").unwrap();
    let inner: Arc<dyn KvBackend> = Arc::new(RedisBackend::new(&url).unwrap());
    let redis = StoreConfig::Redis { url };
    assert!(Arc::ptr_eq(
        &inner,
        &faults.wrap("default", &sqlite, inner.clone())
    ));
    assert!(!Arc::ptr_eq(
        &inner,
        &faults.wrap("default", &redis, inner.clone())
    ));
    let faults = Faults::new(parse("error-rate=0.1").unwrap());
    assert!(!Arc::ptr_eq(
        &inner,
        &faults.wrap("default", &sqlite, inner.clone())
    ));
}
