//! Where sessions live: the [`SessionStore`] trait, the in-memory store of the stateful
//! component, and [`KvSessionStore`], which keeps versioned JSON records in any byte
//! key-value store (Spin key-value in the stateless component).

use crate::session::{SessionId, SessionRecord};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard};

/// Prefix of every session key, so sessions are recognisable in `redis-cli`.
pub const SESSION_KEY_PREFIX: &str = "cartlab:session:";
/// The key that [`KvSessionStore::check`] looks up: a real round trip to the store.
pub const HEALTH_KEY: &str = "cartlab:health";

/// The store key of a session: `cartlab:session:<id>`.
pub fn session_key(id: &SessionId) -> String {
    format!("{SESSION_KEY_PREFIX}{}", id.as_str())
}

/// The session store failed (unreachable, refused, ...). Answered as 503 `store_unavailable`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// Session persistence as the request handler needs it.
#[allow(async_fn_in_trait)]
pub trait SessionStore {
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError>;
    async fn save(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError>;
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError>;
    /// Health: really touches the store.
    async fn check(&self) -> Result<(), StoreError>;
}

/// Sessions in this process's (or wasm instance's) own memory: gone when it is.
///
/// `const`-constructible so a component can keep one in a `static`. The lock is only held
/// inside synchronous sections, never across an `.await`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<BTreeMap<SessionId, SessionRecord>>,
}

impl MemoryStore {
    pub const fn new() -> MemoryStore {
        MemoryStore {
            sessions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.sessions().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sessions(&self) -> MutexGuard<'_, BTreeMap<SessionId, SessionRecord>> {
        // A panic while holding the lock kills a wasm instance anyway; natively, keep going.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.sessions().get(id).cloned())
    }

    async fn save(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        self.sessions().insert(id.clone(), record.clone());
        Ok(())
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.sessions().remove(id);
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A byte key-value store, as Spin's `spin:key-value` offers (get/set/delete/exists).
#[allow(async_fn_in_trait)]
pub trait KeyValue {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;
}

/// Sessions as versioned JSON records under `cartlab:session:<id>` in a [`KeyValue`] store.
#[derive(Debug, Default)]
pub struct KvSessionStore<K>(pub K);

impl<K: KeyValue> SessionStore for KvSessionStore<K> {
    /// A record that cannot be read (corrupt, or a version this code does not know) counts as
    /// absent: the client gets a fresh session rather than an error on every request.
    async fn load(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let bytes = self.0.get(&session_key(id)).await?;
        Ok(bytes.and_then(|b| SessionRecord::from_json(b).ok()))
    }

    async fn save(&self, id: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
        self.0
            .set(&session_key(id), record.to_json().as_bytes())
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.0.delete(&session_key(id)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.0.exists(HEALTH_KEY).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Cents;
    use futures::executor::block_on;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct MapKv(RefCell<HashMap<String, Vec<u8>>>);

    impl KeyValue for MapKv {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.borrow().get(key).cloned())
        }
        async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.0.borrow_mut().insert(key.to_owned(), value.to_vec());
            Ok(())
        }
        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.borrow_mut().remove(key);
            Ok(())
        }
        async fn exists(&self, key: &str) -> Result<bool, StoreError> {
            Ok(self.0.borrow().contains_key(key))
        }
    }

    #[test]
    fn kv_store_keeps_versioned_json_under_prefixed_key() {
        block_on(async {
            let store = KvSessionStore(MapKv::default());
            let id = SessionId::generate().unwrap();
            let mut record = SessionRecord::new(5);
            record.cart.add("Pen".into(), Cents(150), 2).unwrap();
            store.save(&id, &record).await.unwrap();

            let key = format!("cartlab:session:{}", id.as_str());
            let raw = store.0.0.borrow().get(&key).cloned().unwrap();
            assert!(raw.starts_with(br#"{"v":1,"#));
            assert_eq!(store.load(&id).await.unwrap(), Some(record));

            store
                .0
                .0
                .borrow_mut()
                .insert(key.clone(), b"garbage".to_vec());
            assert_eq!(store.load(&id).await.unwrap(), None);

            store.delete(&id).await.unwrap();
            assert!(store.0.0.borrow().is_empty());
            store.check().await.unwrap();
        });
    }

    #[test]
    fn memory_store_round_trip() {
        block_on(async {
            let store = MemoryStore::new();
            let id = SessionId::generate().unwrap();
            assert_eq!(store.load(&id).await.unwrap(), None);
            store.save(&id, &SessionRecord::new(1)).await.unwrap();
            assert_eq!(store.len(), 1);
            assert_eq!(store.load(&id).await.unwrap(), Some(SessionRecord::new(1)));
            store.delete(&id).await.unwrap();
            assert!(store.is_empty());
        });
    }
}
