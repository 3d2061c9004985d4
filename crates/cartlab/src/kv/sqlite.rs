//! SQLite key-value backend with Spin's table layout (spin `crates/key-value-spin`):
//! one table `spin_key_value (store, key, value)` keyed by the store label, so a database
//! file is shared by labels and interchangeable with Spin's `.spin/sqlite_key_value.db`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use rusqlite::{Connection, OptionalExtension, params};

use super::{KvBackend, KvError};

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

    fn describe(&self) -> String {
        format!("sqlite {}", self.location)
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
        let cfg = crate::runtime_config::StoreConfig::Sqlite {
            path: Some(dir.path().join("s/kv.db")),
        };
        let b = super::super::open("default", &cfg).await.unwrap();
        b.set("k".into(), b"v".to_vec()).await.unwrap();
        assert_eq!(b.get("k".into()).await.unwrap(), Some(b"v".to_vec()));
        assert!(b.describe().contains("kv.db"));
    }
}
