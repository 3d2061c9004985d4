//! Key-value backends behind one trait: Redis and SQLite, with Spin's storage layouts so
//! data written by cartlab is readable by Spin and vice versa.
//!
//! Every method returns a `'static` boxed future so the host can call it from a `'static`
//! host-call future without borrowing the backend.

pub mod faults;
pub mod redis;
pub mod sqlite;

use std::fmt;
use std::sync::Arc;

use anyhow::Result;
use futures::future::BoxFuture;

use crate::app::runtime_config::StoreConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The backend cannot be reached now (connection refused, timeout, connection dropped).
    /// The host should answer promptly (503); the backend recovers by itself later.
    Unavailable(String),
    /// `increment` found a value that is not a counter (decimal text); the value is kept.
    NotACounter,
    /// Anything else (e.g. a server-side error, a corrupt database).
    Other(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Unavailable(m) => write!(f, "key-value store unavailable: {m}"),
            KvError::NotACounter => write!(f, "key-value store error: the value is not a counter"),
            KvError::Other(m) => write!(f, "key-value store error: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

/// `(key, value)` pairs as `get_many` returns them.
pub type KeyValues = Vec<(String, Option<Vec<u8>>)>;

/// One page of `list_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub cursor: Option<String>,
}

/// Parses an ASCII decimal counter as stored by `increment`.
pub(crate) fn parse_counter(value: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(KvError::NotACounter)
}

pub trait KvBackend: Send + Sync + 'static {
    fn get(&self, key: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, KvError>>;
    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'static, Result<(), KvError>>;
    fn delete(&self, key: String) -> BoxFuture<'static, Result<(), KvError>>;
    fn exists(&self, key: String) -> BoxFuture<'static, Result<bool, KvError>>;
    /// All keys of the store, sorted, no duplicates.
    fn get_keys(&self) -> BoxFuture<'static, Result<Vec<String>, KvError>>;
    /// One page of keys and the cursor of the next page (`None`: no more pages).
    /// Pages may repeat a key (Redis SCAN); order is unspecified.
    fn list_keys(&self, cursor: Option<String>) -> BoxFuture<'static, Result<KeyPage, KvError>>;
    /// Atomically adds `delta` to the counter at `key` (absent counts as 0) and returns
    /// the new value. Counters are stored as ASCII decimal text on every backend (Redis
    /// INCRBY's format); a value that is not such a number, or an overflow, is an error.
    fn increment(&self, key: String, delta: i64) -> BoxFuture<'static, Result<i64, KvError>>;
    /// Atomically sets `key` to `new` if its current value is `expected` (`None`: the key
    /// is absent). Returns whether the value was written.
    fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> BoxFuture<'static, Result<bool, KvError>>;
    /// Values of `keys`, in order; a missing key comes back as `(key, None)`.
    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'static, Result<KeyValues, KvError>>;
    fn set_many(
        &self,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<(), KvError>>;
    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), KvError>>;
    /// For start-up summaries and logs.
    fn describe(&self) -> String {
        String::from("key-value store")
    }
}

/// Opens the store for `label`. Never contacts Redis (nor its sentinels): a Redis that is down at start-up
/// makes individual operations fail with [`KvError::Unavailable`] until it comes back.
/// SQLite files (and their parent directories) are created here, so a bad path fails
/// start-up. `faults` (lab only, `--kv-faults`) makes the store misbehave on purpose.
pub async fn open(
    label: &str,
    config: &StoreConfig,
    faults: Option<&Arc<faults::Faults>>,
) -> Result<Arc<dyn KvBackend>> {
    let backend: Arc<dyn KvBackend> = match config {
        StoreConfig::Redis { url } => {
            let ttl = faults.map_or(faults::SetTtl::Keep, |f| f.set_ttl(label, config));
            Arc::new(redis::RedisBackend::with_ttl(url, ttl)?)
        }
        StoreConfig::RedisSentinel(set) => {
            let ttl = faults.map_or(faults::SetTtl::Keep, |f| f.set_ttl(label, config));
            Arc::new(redis::RedisBackend::sentinel(set, ttl))
        }
        StoreConfig::Sqlite { path } => {
            let (label, path) = (label.to_owned(), path.clone());
            // Opening runs migrations and may touch the disk: keep it off the async threads.
            let backend = tokio::task::spawn_blocking(move || {
                sqlite::SqliteBackend::open(&label, path.as_deref())
            })
            .await??;
            Arc::new(backend)
        }
    };
    Ok(match faults {
        Some(faults) => faults.wrap(label, config, backend),
        None => backend,
    })
}

/// Behaviour every backend must share, run against each backend by its own tests.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    pub async fn compare_and_swap(b: Arc<dyn KvBackend>) {
        // Absent expected: creates only if absent.
        assert!(
            b.compare_and_swap("cas".into(), None, b"v1".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !b.compare_and_swap("cas".into(), None, b"x".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(b.get("cas".into()).await.unwrap(), Some(b"v1".to_vec()));
        // Match writes, mismatch does not.
        assert!(
            b.compare_and_swap("cas".into(), Some(b"v1".to_vec()), b"v2".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !b.compare_and_swap("cas".into(), Some(b"v1".to_vec()), b"v3".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(b.get("cas".into()).await.unwrap(), Some(b"v2".to_vec()));
        // Expected a value but the key is absent.
        assert!(
            !b.compare_and_swap("none".into(), Some(Vec::new()), b"x".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(b.get("none".into()).await.unwrap(), None);
        // Binary values and the empty value are compared exactly.
        b.set("bin".into(), Vec::new()).await.unwrap();
        assert!(
            !b.compare_and_swap("bin".into(), None, vec![1])
                .await
                .unwrap()
        );
        assert!(
            b.compare_and_swap("bin".into(), Some(Vec::new()), vec![0, 255])
                .await
                .unwrap()
        );
        assert!(
            b.compare_and_swap("bin".into(), Some(vec![0, 255]), vec![0])
                .await
                .unwrap()
        );
    }

    /// 32 tasks each add 1 to a decimal-text counter with a read / CAS / retry loop.
    pub async fn concurrent_cas_counter(b: Arc<dyn KvBackend>) {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move {
                    let mut retries = 0u32;
                    loop {
                        let current = b.get("counter".into()).await.unwrap();
                        let n = current.as_deref().map_or(0, |v| parse_counter(v).unwrap());
                        let next = (n + 1).to_string().into_bytes();
                        if b.compare_and_swap("counter".into(), current, next)
                            .await
                            .unwrap()
                        {
                            return retries;
                        }
                        retries += 1;
                        assert!(retries < 10_000, "livelock");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(b.get("counter".into()).await.unwrap(), Some(b"32".to_vec()));
    }

    pub async fn increment(b: Arc<dyn KvBackend>) {
        assert_eq!(b.increment("n".into(), 5).await.unwrap(), 5);
        assert_eq!(b.increment("n".into(), -7).await.unwrap(), -2);
        assert_eq!(b.get("n".into()).await.unwrap(), Some(b"-2".to_vec()));
        b.set("t".into(), b"41".to_vec()).await.unwrap();
        assert_eq!(b.increment("t".into(), 1).await.unwrap(), 42);
        // Not a counter: an error, and the value is left alone.
        b.set("s".into(), b"abc".to_vec()).await.unwrap();
        assert_eq!(b.increment("s".into(), 1).await, Err(KvError::NotACounter));
        assert_eq!(b.get("s".into()).await.unwrap(), Some(b"abc".to_vec()));
        b.set("max".into(), i64::MAX.to_string().into_bytes())
            .await
            .unwrap();
        assert!(
            matches!(b.increment("max".into(), 1).await, Err(KvError::Other(_))),
            "overflow"
        );
        // Concurrent increments are not lost.
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let b = b.clone();
                tokio::spawn(async move { b.increment("c".into(), 1).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(b.get("c".into()).await.unwrap(), Some(b"32".to_vec()));
    }

    pub async fn batch(b: Arc<dyn KvBackend>) {
        assert_eq!(b.get_many(Vec::new()).await.unwrap(), Vec::new());
        b.set_many(vec![
            ("a".into(), b"1".to_vec()),
            ("b".into(), b"2".to_vec()),
        ])
        .await
        .unwrap();
        b.set_many(Vec::new()).await.unwrap();
        assert_eq!(
            b.get_many(vec!["a".into(), "missing".into(), "b".into()])
                .await
                .unwrap(),
            vec![
                ("a".to_owned(), Some(b"1".to_vec())),
                ("missing".to_owned(), None),
                ("b".to_owned(), Some(b"2".to_vec())),
            ]
        );
        assert_eq!(
            b.get_many(vec!["missing".into()]).await.unwrap(),
            vec![("missing".to_owned(), None)]
        );
        b.delete_many(vec!["a".into(), "missing".into()])
            .await
            .unwrap();
        b.delete_many(Vec::new()).await.unwrap();
        assert_eq!(b.get("a".into()).await.unwrap(), None);
        assert_eq!(b.get("b".into()).await.unwrap(), Some(b"2".to_vec()));
    }

    /// Pages through `n` keys written under `prefix`; every key is seen.
    pub async fn list_keys(b: Arc<dyn KvBackend>) {
        let page = b.list_keys(None).await.unwrap();
        assert!(page.keys.is_empty() && page.cursor.is_none(), "{page:?}");
        let n = 2500;
        let pairs: Vec<_> = (0..n).map(|i| (format!("k{i:05}"), vec![1])).collect();
        b.set_many(pairs).await.unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = b.list_keys(cursor).await.unwrap();
            pages += 1;
            seen.extend(page.keys);
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(pages < 10_000);
        }
        assert_eq!(seen.len(), n);
        assert!(pages > 1, "paged");
    }
}
