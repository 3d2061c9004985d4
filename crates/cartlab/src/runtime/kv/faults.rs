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
mod tests;
