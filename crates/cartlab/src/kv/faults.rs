//! Lab-only fault injection for key-value stores (`cartlab up --kv-faults SPEC`): the host
//! misbehaves on purpose so tests can prove the app survives stores that lie or fail.
//!
//! - `spin-4.1`: stores of `type = "redis"` answer like Spin 4.1's Redis backend (SPIN-NOTES
//!   "Spin 4.1 backend bugs"): a committed compare-and-swap is reported as failed, one that
//!   lost its race as done ([`FaultyBackend`]), and `set` wipes the key's TTL (a flag of
//!   [`RedisBackend`](super::redis::RedisBackend), see [`SetTtl`]). Spin's SQLite backend is
//!   correct, so SQLite stores are left alone.
//! - `error-rate=P`: every operation on every store fails with probability `P`; a write
//!   fails before reaching the store or after it was applied, half and half.
//! - `slow-writes=DURATION`: every write is applied, then answered after `DURATION`.
//!
//! Every injected fault is counted and logged as `kv fault injected` (fault kind, store
//! label, operation, running count; never keys or values, which can hold session ids).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::RngExt as _;

use super::{KeyPage, KeyValues, KvBackend, KvError};
use crate::app::runtime_config::StoreConfig;

/// The parsed value of `--kv-faults`: which faults to inject. The default injects none.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultSpec {
    /// Redis-typed stores behave like Spin 4.1's Redis backend.
    pub spin_4_1: bool,
    /// Probability that an operation fails, in (0, 1].
    pub error_rate: Option<f64>,
    /// Delay between applying a write and answering it.
    pub slow_writes: Option<Duration>,
}

/// A `--kv-faults` part that is not understood; the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpecError(String);

impl fmt::Display for FaultSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FaultSpecError {}

impl FaultSpec {
    pub fn is_none(&self) -> bool {
        *self == FaultSpec::default()
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    /// A comma-separated list of `spin-4.1`, `error-rate=P`, `slow-writes=DURATION`;
    /// `none` alone is the empty list.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut spec = FaultSpec::default();
        if text.trim() == "none" {
            return Ok(spec);
        }
        for part in text.split(',').map(str::trim) {
            let bad = |why: &str| FaultSpecError(format!("`{part}`: {why}"));
            let (name, value) = match part.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (part, None),
            };
            match (name, value) {
                ("", _) => {
                    return Err(FaultSpecError(format!(
                        "empty fault in `{text}` (use spin-4.1, error-rate=P, slow-writes=DURATION)"
                    )));
                }
                ("spin-4.1", None) if spec.spin_4_1 => return Err(bad("given twice")),
                ("spin-4.1", None) => spec.spin_4_1 = true,
                ("spin-4.1", Some(_)) => return Err(bad("spin-4.1 takes no value")),
                ("error-rate", Some(_)) if spec.error_rate.is_some() => {
                    return Err(bad("given twice"));
                }
                ("error-rate", Some(value)) => {
                    let rate: f64 = value
                        .parse()
                        .map_err(|_| bad("the rate is a number, e.g. error-rate=0.05"))?;
                    // Written so that NaN is rejected too.
                    if !(rate > 0.0 && rate <= 1.0) {
                        return Err(bad("the rate must be more than 0 and at most 1"));
                    }
                    spec.error_rate = Some(rate);
                }
                ("slow-writes", Some(_)) if spec.slow_writes.is_some() => {
                    return Err(bad("given twice"));
                }
                ("slow-writes", Some(value)) => {
                    let delay = crate::app::duration::parse_duration(value)
                        .map_err(|e| bad(&e.to_string()))?;
                    if delay.is_zero() {
                        return Err(bad("the delay must be more than 0"));
                    }
                    spec.slow_writes = Some(delay);
                }
                ("error-rate" | "slow-writes", None) => {
                    return Err(bad(
                        "needs a value, e.g. error-rate=0.05 or slow-writes=500ms",
                    ));
                }
                _ => {
                    return Err(bad(
                        "unknown fault (use spin-4.1, error-rate=P, slow-writes=DURATION)",
                    ));
                }
            }
        }
        Ok(spec)
    }
}

impl fmt::Display for FaultSpec {
    /// The canonical spec, parseable again; `none` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.spin_4_1 {
            parts.push("spin-4.1".to_owned());
        }
        if let Some(rate) = self.error_rate {
            parts.push(format!("error-rate={rate}"));
        }
        if let Some(delay) = self.slow_writes {
            parts.push(format!("slow-writes={delay:?}"));
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// The kinds of injected fault, as logged in `fault=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A committed compare-and-swap reported as failed.
    FalseFailure,
    /// A compare-and-swap that did not commit reported as done.
    FalseSuccess,
    /// A write dropped the key's TTL.
    TtlWiped,
    /// An error instead of the operation, which was not applied.
    ErrorBefore,
    /// An error after the write was applied.
    ErrorAfter,
    /// A write answered late after it was applied.
    SlowWrite,
}

impl FaultKind {
    pub const ALL: [FaultKind; 6] = [
        FaultKind::FalseFailure,
        FaultKind::FalseSuccess,
        FaultKind::TtlWiped,
        FaultKind::ErrorBefore,
        FaultKind::ErrorAfter,
        FaultKind::SlowWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::FalseFailure => "false-failure",
            FaultKind::FalseSuccess => "false-success",
            FaultKind::TtlWiped => "ttl-wiped",
            FaultKind::ErrorBefore => "error-before",
            FaultKind::ErrorAfter => "error-after",
            FaultKind::SlowWrite => "slow-write",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The active faults of one host and the running count of each kind, shared by its stores.
#[derive(Debug)]
pub struct Faults {
    spec: FaultSpec,
    counts: [AtomicU64; FaultKind::ALL.len()],
}

impl Faults {
    pub fn new(spec: FaultSpec) -> Arc<Self> {
        Arc::new(Self {
            spec,
            counts: Default::default(),
        })
    }

    pub fn spec(&self) -> FaultSpec {
        self.spec
    }

    /// Counts one injected fault and logs it; returns the new count of that kind.
    pub fn record(&self, kind: FaultKind, store: &str, op: &'static str) -> u64 {
        let count = self.counts[kind.index()].fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(fault = %kind, store = %store, op = %op, count, "kv fault injected");
        count
    }

    pub fn count(&self, kind: FaultKind) -> u64 {
        self.counts[kind.index()].load(Ordering::Relaxed)
    }

    /// The totals per kind as one log line, for shutdown.
    pub fn log_summary(&self) {
        let n = |kind| self.count(kind);
        tracing::info!(
            faults = %self.spec,
            false_failure = n(FaultKind::FalseFailure),
            false_success = n(FaultKind::FalseSuccess),
            ttl_wiped = n(FaultKind::TtlWiped),
            error_before = n(FaultKind::ErrorBefore),
            error_after = n(FaultKind::ErrorAfter),
            slow_write = n(FaultKind::SlowWrite),
            "kv faults injected"
        );
    }

    fn lies_like_spin_4_1(&self, config: &StoreConfig) -> bool {
        self.spec.spin_4_1 && matches!(config, StoreConfig::Redis { .. })
    }

    /// The faults that apply to a store of this configuration, for start-up summaries.
    pub fn applied_to(&self, config: &StoreConfig) -> FaultSpec {
        FaultSpec {
            spin_4_1: self.lies_like_spin_4_1(config),
            ..self.spec
        }
    }

    /// What the Redis backend of store `label` does to a TTL on `set`.
    pub fn set_ttl(self: &Arc<Self>, label: &str, config: &StoreConfig) -> SetTtl {
        if self.lies_like_spin_4_1(config) {
            SetTtl::Wipe(FaultReporter {
                faults: self.clone(),
                store: label.into(),
            })
        } else {
            SetTtl::Keep
        }
    }

    /// `backend` with the faults that apply to it; unchanged when none does.
    pub fn wrap(
        self: &Arc<Self>,
        label: &str,
        config: &StoreConfig,
        backend: Arc<dyn KvBackend>,
    ) -> Arc<dyn KvBackend> {
        let lie_about_swaps = self.lies_like_spin_4_1(config);
        if !lie_about_swaps && self.spec.error_rate.is_none() && self.spec.slow_writes.is_none() {
            return backend;
        }
        Arc::new(FaultyBackend {
            inner: backend,
            reporter: FaultReporter {
                faults: self.clone(),
                store: label.into(),
            },
            lie_about_swaps,
            error_rate: self.spec.error_rate,
            slow_writes: self.spec.slow_writes,
        })
    }
}

/// Records faults injected in one store.
#[derive(Debug, Clone)]
pub struct FaultReporter {
    faults: Arc<Faults>,
    store: Arc<str>,
}

impl FaultReporter {
    pub fn record(&self, kind: FaultKind, op: &'static str) -> u64 {
        self.faults.record(kind, &self.store, op)
    }

    /// Counts an injected error and returns it. The message reaches the guest, so it says
    /// what happened without any key.
    fn error(&self, kind: FaultKind, op: &'static str) -> KvError {
        self.record(kind, op);
        KvError::Other(format!("injected fault ({kind}) in {op}"))
    }
}

/// What a Redis write does to a TTL the key already has.
#[derive(Debug, Clone)]
pub enum SetTtl {
    /// Keep it (`SET ... KEEPTTL`, Redis >= 6): a key-value write does not change expiry.
    Keep,
    /// Drop it, as Spin 4.1's plain `SET` does; every dropped TTL is reported.
    Wipe(FaultReporter),
}

/// Where an injected error happens relative to the operation.
#[derive(Clone, Copy)]
enum Injected {
    Before,
    After,
}

/// A backend that fails, lags or lies on purpose around a correct one.
pub struct FaultyBackend {
    inner: Arc<dyn KvBackend>,
    reporter: FaultReporter,
    /// Spin 4.1's Redis backend: every compare-and-swap answer inverted.
    lie_about_swaps: bool,
    error_rate: Option<f64>,
    slow_writes: Option<Duration>,
}

impl FaultyBackend {
    /// Whether this operation gets an injected error (rolled when it is called).
    fn roll(&self, write: bool) -> Option<Injected> {
        let rate = self.error_rate?;
        let mut rng = rand::rng();
        if !rng.random_bool(rate) {
            return None;
        }
        // A read has nothing to apply: it can only fail before.
        Some(if write && rng.random_bool(0.5) {
            Injected::After
        } else {
            Injected::Before
        })
    }

    fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        call: impl FnOnce(&dyn KvBackend) -> BoxFuture<'static, Result<T, KvError>>,
    ) -> BoxFuture<'static, Result<T, KvError>> {
        if self.roll(false).is_some() {
            let error = self.reporter.error(FaultKind::ErrorBefore, op);
            return Box::pin(async move { Err(error) });
        }
        call(&*self.inner)
    }

    fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        call: impl FnOnce(&dyn KvBackend) -> BoxFuture<'static, Result<T, KvError>>,
    ) -> BoxFuture<'static, Result<T, KvError>> {
        let injected = self.roll(true);
        if let Some(Injected::Before) = injected {
            let error = self.reporter.error(FaultKind::ErrorBefore, op);
            return Box::pin(async move { Err(error) });
        }
        let applied = call(&*self.inner);
        let (reporter, slow) = (self.reporter.clone(), self.slow_writes);
        Box::pin(async move {
            // Applied first, answered later: a client that gives up meanwhile leaves a
            // committed write behind.
            let result = applied.await;
            if let Some(delay) = slow {
                reporter.record(FaultKind::SlowWrite, op);
                tokio::time::sleep(delay).await;
            }
            match injected {
                Some(Injected::After) => Err(reporter.error(FaultKind::ErrorAfter, op)),
                _ => result,
            }
        })
    }
}

impl KvBackend for FaultyBackend {
    fn get(&self, key: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, KvError>> {
        self.read("get", |b| b.get(key))
    }

    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'static, Result<(), KvError>> {
        self.write("set", |b| b.set(key, value))
    }

    fn delete(&self, key: String) -> BoxFuture<'static, Result<(), KvError>> {
        self.write("delete", |b| b.delete(key))
    }

    fn exists(&self, key: String) -> BoxFuture<'static, Result<bool, KvError>> {
        self.read("exists", |b| b.exists(key))
    }

    fn get_keys(&self) -> BoxFuture<'static, Result<Vec<String>, KvError>> {
        self.read("get_keys", |b| b.get_keys())
    }

    fn list_keys(&self, cursor: Option<String>) -> BoxFuture<'static, Result<KeyPage, KvError>> {
        self.read("list_keys", |b| b.list_keys(cursor))
    }

    fn increment(&self, key: String, delta: i64) -> BoxFuture<'static, Result<i64, KvError>> {
        self.write("increment", |b| b.increment(key, delta))
    }

    fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> BoxFuture<'static, Result<bool, KvError>> {
        const OP: &str = "compare_and_swap";
        let answer = self.write(OP, |b| b.compare_and_swap(key, expected, new));
        if !self.lie_about_swaps {
            return answer;
        }
        let reporter = self.reporter.clone();
        Box::pin(async move {
            let written = answer.await?;
            // Spin 4.1 sends `UNWATCH <key>` after a committed `EXEC`, which Redis rejects,
            // and decodes an aborted `EXEC` (nil) as success: every answer is the opposite.
            let kind = if written {
                FaultKind::FalseFailure
            } else {
                FaultKind::FalseSuccess
            };
            reporter.record(kind, OP);
            Ok(!written)
        })
    }

    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'static, Result<KeyValues, KvError>> {
        self.read("get_many", |b| b.get_many(keys))
    }

    fn set_many(
        &self,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<(), KvError>> {
        self.write("set_many", |b| b.set_many(key_values))
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), KvError>> {
        self.write("delete_many", |b| b.delete_many(keys))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::redis::RedisBackend;
    use crate::testing::RedisServer;

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
        StoreConfig::Redis { url: server.url() }
    }

    /// A Redis store of label `default` opened as `cartlab up --kv-faults spec` opens it.
    async fn open(server: &RedisServer, spec: &str) -> (Arc<dyn KvBackend>, Arc<Faults>) {
        let faults = Faults::new(parse(spec).unwrap());
        let backend = crate::kv::open("default", &redis_config(server), Some(&faults))
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
        let b = crate::kv::open("default", &redis_config(&server), None)
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
        let b = crate::kv::open("default", &config, Some(&faults))
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
        let redis = StoreConfig::Redis {
            url: "redis://127.0.0.1:1".into(),
        };
        let inner: Arc<dyn KvBackend> = Arc::new(RedisBackend::new("redis://127.0.0.1:1").unwrap());
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
}
