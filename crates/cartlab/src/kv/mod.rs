//! Key-value backends behind one trait: Redis and SQLite, with Spin's storage layouts so
//! data written by cartlab is readable by Spin and vice versa.
//!
//! Every method returns a `'static` boxed future so the host can call it from a `'static`
//! host-call future without borrowing the backend.

pub mod redis;
pub mod sqlite;

use std::fmt;
use std::sync::Arc;

use anyhow::Result;
use futures::future::BoxFuture;

use crate::runtime_config::StoreConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The backend cannot be reached now (connection refused, timeout, connection dropped).
    /// The host should answer promptly (503); the backend recovers by itself later.
    Unavailable(String),
    /// Anything else (e.g. a server-side error, a corrupt database).
    Other(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Unavailable(m) => write!(f, "key-value store unavailable: {m}"),
            KvError::Other(m) => write!(f, "key-value store error: {m}"),
        }
    }
}

impl std::error::Error for KvError {}

pub trait KvBackend: Send + Sync + 'static {
    fn get(&self, key: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, KvError>>;
    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'static, Result<(), KvError>>;
    fn delete(&self, key: String) -> BoxFuture<'static, Result<(), KvError>>;
    fn exists(&self, key: String) -> BoxFuture<'static, Result<bool, KvError>>;
    /// All keys of the store, sorted, no duplicates.
    fn get_keys(&self) -> BoxFuture<'static, Result<Vec<String>, KvError>>;
    /// For start-up summaries and logs.
    fn describe(&self) -> String {
        String::from("key-value store")
    }
}

/// Opens the store for `label`. Never contacts Redis: a Redis that is down at start-up
/// makes individual operations fail with [`KvError::Unavailable`] until it comes back.
/// SQLite files (and their parent directories) are created here, so a bad path fails
/// start-up.
pub async fn open(label: &str, config: &StoreConfig) -> Result<Arc<dyn KvBackend>> {
    Ok(match config {
        StoreConfig::Redis { url } => Arc::new(redis::RedisBackend::new(url)?),
        StoreConfig::Sqlite { path } => {
            let (label, path) = (label.to_owned(), path.clone());
            // Opening runs migrations and may touch the disk: keep it off the async threads.
            let backend = tokio::task::spawn_blocking(move || {
                sqlite::SqliteBackend::open(&label, path.as_deref())
            })
            .await??;
            Arc::new(backend)
        }
    })
}
