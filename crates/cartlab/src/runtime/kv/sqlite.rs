//! SQLite key-value backend with Spin's table layout (spin `crates/key-value-spin`):
//! one table `spin_key_value (store, key, value)` keyed by the store label, so a database
//! file is shared by labels and interchangeable with Spin's `.spin/sqlite_key_value.db`.
//!
//! Read-modify-write operations (`increment`, `compare_and_swap`, batches) run in one
//! `BEGIN IMMEDIATE` transaction, so they stay atomic against other connections to the
//! same file. Counters are ASCII decimal text, like Redis INCRBY; Spin's SQLite backend
//! stores them as 8 little-endian bytes instead, so a counter is not interchangeable
//! between the two hosts (plain values are).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};

use super::{KeyPage, KeyValues, KvBackend, KvError, parse_counter};

/// How long a statement waits for another process (or another label's connection to the
/// same file) holding the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteBackend {
    label: String,
    location: String,
    // One connection per backend; rusqlite connections are not Sync, and SQLite serialises
    // writers anyway. Used only from `spawn_blocking`.
    conn: Arc<Mutex<Connection>>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path`, or an in-memory one for `None`.
    /// Blocking: call from a blocking context.
    pub fn open(label: &str, path: Option<&Path>) -> Result<Self> {
        let (conn, location) = match path {
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).with_context(|| {
                        format!(
                            "key-value store `{label}`: cannot create directory {}",
                            parent.display()
                        )
                    })?;
                }
                let conn = Connection::open(path).with_context(|| {
                    format!(
                        "key-value store `{label}`: cannot open SQLite database {}",
                        path.display()
                    )
                })?;
                // WAL lets readers proceed while a writer commits; the mode is stored in
                // the file, and Spin's SQLite opens WAL databases fine.
                let mode: String = conn
                    .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                    .with_context(|| {
                        format!(
                            "key-value store `{label}`: cannot enable WAL on {}",
                            path.display()
                        )
                    })?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(store = label, mode = %mode, "SQLite did not switch to WAL mode");
                }
                (conn, path.display().to_string())
            }
            None => (
                Connection::open_in_memory().with_context(|| {
                    format!("key-value store `{label}`: cannot open in-memory SQLite")
                })?,
                "in-memory".to_owned(),
            ),
        };
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key   TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key)
            )",
            [],
        )
        .with_context(|| format!("key-value store `{label}`: cannot create table in {location}"))?;
        Ok(Self {
            label: label.to_owned(),
            location,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection and this store's label on the blocking pool.
    fn run<T, F>(&self, f: F) -> BoxFuture<'static, Result<T, KvError>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &str) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let label = self.label.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let guard = conn
                    .lock()
                    .map_err(|_| KvError::Other("SQLite connection lock poisoned".into()))?;
                f(&guard, &label).map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(code, _)
                        if matches!(
                            code.code,
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        ) =>
                    {
                        KvError::Unavailable(e.to_string())
                    }
                    e => KvError::Other(e.to_string()),
                })
            })
            .await
            .map_err(|e| KvError::Other(format!("SQLite task failed: {e}")))?
        })
    }
}

impl KvBackend for SqliteBackend {
    fn get(&self, key: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, KvError>> {
        self.run(move |c, store| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |row| row.get(0))
                .optional()
        })
    }

    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'static, Result<(), KvError>> {
        self.run(move |c, store| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![store, key, value])
            .map(drop)
        })
    }

    fn delete(&self, key: String) -> BoxFuture<'static, Result<(), KvError>> {
        self.run(move |c, store| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute(params![store, key])
                .map(drop)
        })
    }

    fn exists(&self, key: String) -> BoxFuture<'static, Result<bool, KvError>> {
        self.run(move |c, store| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists(params![store, key])
        })
    }

    fn get_keys(&self) -> BoxFuture<'static, Result<Vec<String>, KvError>> {
        self.run(move |c, store| {
            c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?
                .query_map(params![store], |row| row.get(0))?
                .collect()
        })
    }

    fn list_keys(&self, cursor: Option<String>) -> BoxFuture<'static, Result<KeyPage, KvError>> {
        // The cursor is the last key of the previous page: keyset pagination stays
        // correct while other writers insert or delete keys.
        self.run(move |c, store| {
            let keys: Vec<String> = c
                .prepare_cached(
                    "SELECT key FROM spin_key_value WHERE store = ?1 AND key > ?2
                     ORDER BY key LIMIT ?3",
                )?
                .query_map(
                    params![store, cursor.unwrap_or_default(), LIST_PAGE as i64],
                    |row| row.get(0),
                )?
                .collect::<rusqlite::Result<_>>()?;
            let cursor = keys.last().filter(|_| keys.len() == LIST_PAGE).cloned();
            Ok(KeyPage { keys, cursor })
        })
    }

    fn increment(&self, key: String, delta: i64) -> BoxFuture<'static, Result<i64, KvError>> {
        let run = self.run(move |c, store| {
            immediate(c, |c| {
                let current: Option<Vec<u8>> = select_value(c, store, &key)?;
                let next = match current.as_deref().map(parse_counter) {
                    None => Ok(delta),
                    Some(Ok(n)) => n
                        .checked_add(delta)
                        .ok_or_else(|| KvError::Other("increment overflows i64".into())),
                    Some(Err(e)) => Err(e),
                };
                if let Ok(n) = next {
                    upsert(c, store, &key, n.to_string().as_bytes())?;
                }
                Ok(next)
            })
        });
        Box::pin(async move { run.await? })
    }

    fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> BoxFuture<'static, Result<bool, KvError>> {
        self.run(move |c, store| {
            immediate(c, |c| {
                if select_value(c, store, &key)? != expected {
                    return Ok(false);
                }
                upsert(c, store, &key, &new)?;
                Ok(true)
            })
        })
    }

    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'static, Result<KeyValues, KvError>> {
        self.run(move |c, store| {
            // One read transaction: every value comes from the same snapshot.
            immediate_read(c, |c| {
                keys.into_iter()
                    .map(|key| -> rusqlite::Result<(String, Option<Vec<u8>>)> {
                        let value = select_value(c, store, &key)?;
                        Ok((key, value))
                    })
                    .collect()
            })
        })
    }

    fn set_many(
        &self,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<(), KvError>> {
        self.run(move |c, store| {
            immediate(c, |c| {
                for (key, value) in &key_values {
                    upsert(c, store, key, value)?;
                }
                Ok(())
            })
        })
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), KvError>> {
        self.run(move |c, store| {
            immediate(c, |c| {
                for key in &keys {
                    c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                        .execute(params![store, key])?;
                }
                Ok(())
            })
        })
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.location)
    }
}

/// Keys per `list_keys` page.
const LIST_PAGE: usize = 1000;

fn select_value(c: &Connection, store: &str, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
        .query_row(params![store, key], |row| row.get(0))
        .optional()
}

fn upsert(c: &Connection, store: &str, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![store, key, value])
    .map(drop)
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction: the write lock is taken up front, so
/// another process (or another label's connection to the file) cannot write between
/// our read and our write. Commits on `Ok`, rolls back on `Err`.
fn immediate<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    transaction(c, "BEGIN IMMEDIATE", f)
}

fn immediate_read<T>(
    c: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    transaction(c, "BEGIN DEFERRED", f)
}

fn transaction<T>(
    c: &Connection,
    begin: &str,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    c.execute_batch(begin)?;
    match f(c) {
        Ok(v) => {
            if let Err(e) = c.execute_batch("COMMIT") {
                let _ = c.execute_batch("ROLLBACK");
                return Err(e);
            }
            Ok(v)
        }
        Err(e) => {
            // The statement error is what matters; a failed rollback leaves the
            // connection in autocommit mode anyway once SQLite aborts the transaction.
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn crud(b: &SqliteBackend) {
        assert_eq!(b.get("k".into()).await.unwrap(), None);
        assert!(!b.exists("k".into()).await.unwrap());
        b.set("k".into(), b"v1".to_vec()).await.unwrap();
        b.set("k".into(), b"v2".to_vec()).await.unwrap();
        b.set("a".into(), vec![0, 255]).await.unwrap();
        assert_eq!(b.get("k".into()).await.unwrap(), Some(b"v2".to_vec()));
        assert_eq!(b.get("a".into()).await.unwrap(), Some(vec![0, 255]));
        assert!(b.exists("k".into()).await.unwrap());
        assert_eq!(b.get_keys().await.unwrap(), ["a", "k"]);
        b.delete("k".into()).await.unwrap();
        b.delete("missing".into()).await.unwrap();
        assert_eq!(b.get("k".into()).await.unwrap(), None);
        assert_eq!(b.get_keys().await.unwrap(), ["a"]);
    }

    #[tokio::test]
    async fn crud_in_memory_and_on_disk() {
        crud(&SqliteBackend::open("default", None).unwrap()).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/sqlite_key_value.db");
        crud(&SqliteBackend::open("default", Some(&path)).unwrap()).await;
        assert!(path.exists(), "parent dirs and file created");
    }

    #[tokio::test]
    async fn persists_across_reopen_and_labels_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        {
            let a = SqliteBackend::open("default", Some(&path)).unwrap();
            let b = SqliteBackend::open("other", Some(&path)).unwrap();
            a.set("cart:1".into(), b"x".to_vec()).await.unwrap();
            b.set("cart:1".into(), b"y".to_vec()).await.unwrap();
        }
        let a = SqliteBackend::open("default", Some(&path)).unwrap();
        assert_eq!(a.get("cart:1".into()).await.unwrap(), Some(b"x".to_vec()));
        assert_eq!(a.get_keys().await.unwrap(), ["cart:1"]);
        let b = SqliteBackend::open("other", Some(&path)).unwrap();
        assert_eq!(b.get("cart:1".into()).await.unwrap(), Some(b"y".to_vec()));

        // Spin's layout, read back with plain SQL as Spin would.
        let conn = Connection::open(&path).unwrap();
        let v: Vec<u8> = conn
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = 'default' AND key = 'cart:1'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(v, b"x");
    }

    #[tokio::test]
    async fn open_via_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::app::runtime_config::StoreConfig::Sqlite {
            path: Some(dir.path().join("s/kv.db")),
        };
        let b = super::super::open("default", &cfg, None).await.unwrap();
        b.set("k".into(), b"v".to_vec()).await.unwrap();
        assert_eq!(b.get("k".into()).await.unwrap(), Some(b"v".to_vec()));
        assert!(b.describe().contains("kv.db"));
    }

    fn memory() -> Arc<dyn KvBackend> {
        Arc::new(SqliteBackend::open("default", None).unwrap())
    }

    #[tokio::test]
    async fn compare_and_swap_semantics() {
        crate::runtime::kv::conformance::compare_and_swap(memory()).await;
    }

    #[tokio::test]
    async fn concurrent_cas_counter_reaches_32() {
        crate::runtime::kv::conformance::concurrent_cas_counter(memory()).await;
    }

    #[tokio::test]
    async fn concurrent_cas_counter_across_connections_to_one_file() {
        // Two backends (two connections) on one file: BEGIN IMMEDIATE keeps CAS atomic
        // between them, as between Spin and cartlab sharing a database.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let a: Arc<dyn KvBackend> = Arc::new(SqliteBackend::open("default", Some(&path)).unwrap());
        let b: Arc<dyn KvBackend> = Arc::new(SqliteBackend::open("default", Some(&path)).unwrap());
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let backend = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    loop {
                        let current = backend.get("counter".into()).await.unwrap();
                        let n = current
                            .as_deref()
                            .map_or(0, |v| crate::runtime::kv::parse_counter(v).unwrap());
                        let next = (n + 1).to_string().into_bytes();
                        if backend
                            .compare_and_swap("counter".into(), current, next)
                            .await
                            .unwrap()
                        {
                            return;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(a.get("counter".into()).await.unwrap(), Some(b"32".to_vec()));
    }

    #[tokio::test]
    async fn increment_stores_decimal_text() {
        let b = memory();
        crate::runtime::kv::conformance::increment(b.clone()).await;
        assert_eq!(b.get("n".into()).await.unwrap(), Some(b"-2".to_vec()));
    }

    #[tokio::test]
    async fn batch_get_many_keeps_missing_keys() {
        crate::runtime::kv::conformance::batch(memory()).await;
    }

    #[tokio::test]
    async fn list_keys_pages_by_last_key() {
        let b = memory();
        crate::runtime::kv::conformance::list_keys(b.clone()).await;
        // Labels sharing a file do not see each other's keys.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let x = SqliteBackend::open("x", Some(&path)).unwrap();
        let y = SqliteBackend::open("y", Some(&path)).unwrap();
        x.set("only-x".into(), vec![1]).await.unwrap();
        assert!(y.list_keys(None).await.unwrap().keys.is_empty());
        assert_eq!(x.list_keys(None).await.unwrap().keys, ["only-x"]);
    }
}
