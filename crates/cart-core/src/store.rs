//! Where sessions live: the [`SessionStore`] trait (conditional writes only), the in-memory
//! store of the stateful component, and the [`KeyValue`] byte store with compare-and-swap that
//! `crate::kv_sessions::KvSessionStore` keeps records in (`wasi:keyvalue` or Redis through
//! `spin:redis` in the stateless component).

use crate::hex::push_lower_hex;
use crate::session::{Lifetime, SessionId, SessionRecord};

mod either;
mod memory;
mod redis;
mod wasi_kv;
pub use either::{Backend, BackendCas};
pub use memory::MemoryStore;
pub use redis::{CAS_SCRIPT, RedisArg, RedisCommands, RedisKeyValue, RedisReply, redis_error};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
pub use wasi_kv::{WasiBucket, WasiKeyValue, key_value_error};

/// Prefix of every session key, so sessions are recognisable in `redis-cli`.
pub const SESSION_KEY_PREFIX: &str = "cartlab:session:";
/// The key that [`KvSessionStore::check`](crate::KvSessionStore) looks up: a real round trip to the store.
pub const HEALTH_KEY: &str = "cartlab:health";

/// The store key of a session: `cartlab:session:<hex SHA-256 of the id>`. The cookie holds the
/// id, the store only its hash, so whoever can read Redis or the SQLite file cannot present a
/// stored session as their own. (Records written under raw ids before this need no migration:
/// sessions are short-lived, and such a record just expires unread.)
pub fn session_key(id: &SessionId) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cartlab session key\0");
    hasher.update(id.as_str().as_bytes());
    let mut key = String::with_capacity(SESSION_KEY_PREFIX.len() + 64);
    key.push_str(SESSION_KEY_PREFIX);
    push_lower_hex(&mut key, &hasher.finalize());
    key
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

/// Session persistence as the request handler needs it: lost-update-free.
///
/// Every write is conditional on what was read (compare-and-set): [`SessionStore::load`]
/// returns a [`SessionStore::Version`] with the record, and [`SessionStore::save_if`] writes only
/// if the stored session is still that version (or, with `None`, still absent). A `false` from
/// `save_if` means a concurrent request won. Where [`SessionStore::confirms_writes`] is false,
/// neither answer is trusted: the handler reads the record back to see whether its operation
/// is there (`crate::idempotency`).
#[allow(async_fn_in_trait)]
pub trait SessionStore {
    /// Proof of the state [`SessionStore::load`] saw; consumed by a conditional write.
    type Version;

    async fn load(
        &self,
        id: &SessionId,
    ) -> Result<Option<(SessionRecord, Self::Version)>, StoreError>;

    /// Writes `record` if the stored session is still `expected` (`None`: if there is none).
    /// `ttl_secs` is the session's remaining lifetime: a store with native expiry keeps the
    /// record that long. `Ok(false)`: another write came first; nothing was written.
    async fn save_if(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected: Option<Self::Version>,
        ttl_secs: u64,
    ) -> Result<bool, StoreError>;

    /// The record of session `id` by a plain read, for a request that will not write it
    /// (most `GET /cart`s): no version is made, which on Spin's Redis key-value backend would
    /// cost a connection and a `WATCH`. Unreadable records count as absent, as in `load`.
    async fn read(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.load(id).await?.map(|(record, _)| record))
    }

    /// Writes a new session under `id`, an id just generated (256 random bits nobody else
    /// has seen, so nothing can race this write and no condition is needed), queued for
    /// expiry with `deadline` where the store has no TTL. `Ok`: written, for certain (plain
    /// writes are trusted on every backend; only compare-and-swap answers are not). The
    /// default queues, then creates with [`SessionStore::save_if`].
    async fn create(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl_secs: u64,
        deadline: u64,
    ) -> Result<(), StoreError> {
        self.track_expiry(id, deadline).await?;
        match self.save_if(id, record, None, ttl_secs).await? {
            true => Ok(()),
            false => Err(StoreError("a newly generated session id was taken".into())),
        }
    }

    /// Whether an `Ok(true)` from [`SessionStore::save_if`] is certain. False for a store
    /// whose compare-and-swap may report a write that did not happen (Spin 4.1's Redis
    /// key-value backend), so the handler reads back after every write.
    fn confirms_writes(&self) -> bool {
        true
    }

    /// Deletes the session if it is still `expected` (an expired session found on a read).
    async fn delete_if(&self, id: &SessionId, expected: Self::Version) -> Result<bool, StoreError>;

    /// Deletes the session whatever it holds (`DELETE /cart`: the id's holder ends it).
    async fn delete(&self, id: &SessionId) -> Result<(), StoreError>;

    /// Health: really touches the store.
    async fn check(&self) -> Result<(), StoreError>;

    /// Called once before a new session is first written, with the unix second it will expire
    /// at unless used: a store without native expiry notes it, so the session is removed even
    /// if it is never seen again. The default does nothing.
    async fn track_expiry(&self, _id: &SessionId, _deadline: u64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes some expired sessions, doing a bounded amount of work; returns how many. For
    /// stores without native expiry. The default does nothing.
    async fn sweep(&self, _now_unix_secs: u64, _lifetime: &Lifetime) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Waits `millis` before a retry after a conflict. The default does not wait.
    async fn pause(&self, _millis: u64) {}
}

/// A byte key-value store with compare-and-swap: what [`KvSessionStore`](crate::KvSessionStore) needs. The stateless
/// builds use [`WasiKeyValue`] (`wasi:keyvalue` store + atomics) and [`RedisKeyValue`]
/// (`spin:redis`: `GET` + a compare-and-set Lua `EVAL`), over their SDK's calls.
#[allow(async_fn_in_trait)]
pub trait KeyValue {
    /// What a conditional write compares against (a CAS handle, or the bytes read).
    type Cas;

    /// The current value of `key` and a token for a write conditional on it.
    async fn get_cas(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::Cas), StoreError>;

    /// Sets `key` to `value` if it still holds what `cas` saw (`None`: if `key` is absent).
    /// `ttl_ms`: how long the key should live, for stores with native expiry (others ignore
    /// it). `Ok(false)`: the value had changed; nothing was written (unless the store lies:
    /// see [`KeyValue::confirms_swaps`]).
    async fn set_if(
        &self,
        key: &str,
        cas: Option<Self::Cas>,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Whether `set_if`'s `Ok(true)` is certain. `wasi:keyvalue` cannot promise it: on Spin
    /// 4.1's Redis backend a swap that lost its race can report success.
    fn confirms_swaps(&self) -> bool;

    /// Whether the store expires keys itself (the TTL of `set_if`). Without, sessions are
    /// tracked in an expiry queue in the store (`crate::expiry`).
    fn expires_keys(&self) -> bool;

    /// A plain read.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// A plain write: the expiry queue's entries and cursor (`ttl_ms` `None`), a new session
    /// (`Some`: how long it lives, for stores with native expiry; others ignore it).
    async fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StoreError>;

    /// Plain writes of several keys in one round trip, all or none (`wasi:keyvalue/batch`'s
    /// `set-many`, `MSET` on Spin's Redis backend): a new session and its expiry-queue entry.
    async fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        for (key, value) in entries {
            self.set(key, value, None).await?;
        }
        Ok(())
    }

    /// Atomically adds `delta` to the counter at `key` (absent: 0) and returns the new value.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;

    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    async fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// Waits before a retry after a conflict. The default does not wait.
    async fn pause(&self, _millis: u64) {}
}

/// What an expired or forgotten session's key holds until it is deleted: an empty value (no
/// record is empty). Overwriting a record with it is a compare-and-swap, so a conditional
/// write racing with the deletion fails instead of being silently deleted afterwards; a key
/// holding it can then be deleted unconditionally, since no writer ever expects it.
pub const TOMBSTONE: &[u8] = b"";
/// How long a tombstone may live in a store with native expiry (it is deleted at once anyway).
const TOMBSTONE_TTL_MS: u64 = 60_000;

/// Tombstones `key` if it still holds what `cas` saw, then deletes it; returns whether it did.
/// Whatever the swap answers, the key is deleted only once it is seen holding the tombstone: on
/// a store whose swap can report success for a write that did not happen, an unconditional
/// delete could remove a session just written by another request.
pub(crate) async fn bury<K: KeyValue>(kv: &K, key: &str, cas: K::Cas) -> Result<bool, StoreError> {
    let swapped = kv.set_if(key, Some(cas), TOMBSTONE, TOMBSTONE_TTL_MS).await;
    let buried = match swapped {
        Ok(true) if kv.confirms_swaps() => true,
        _ => kv.get(key).await?.as_deref() == Some(TOMBSTONE),
    };
    if buried {
        kv.delete(key).await?;
    }
    Ok(buried)
}

/// A byte store in memory whose CAS compares values, as Spin's SQLite backend and cartlab's
/// Redis script do. Clones share the map, like instances sharing one external store. For
/// native tests and tools; the components use Spin's stores.
#[derive(Clone, Default)]
pub struct MemoryKeyValue(std::rc::Rc<std::cell::RefCell<BTreeMap<String, Vec<u8>>>>);

impl MemoryKeyValue {
    /// The keys stored now.
    pub fn keys_now(&self) -> Vec<String> {
        self.0.borrow().keys().cloned().collect()
    }

    /// The value stored under `key` now.
    pub fn value_now(&self, key: &str) -> Option<Vec<u8>> {
        self.0.borrow().get(key).cloned()
    }

    /// Stores `value` under `key` directly (to set up a test).
    pub fn put(&self, key: &str, value: &[u8]) {
        self.0.borrow_mut().insert(key.to_owned(), value.to_vec());
    }
}

impl KeyValue for MemoryKeyValue {
    type Cas = Option<Vec<u8>>;
    async fn get_cas(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::Cas), StoreError> {
        let value = self.value_now(key);
        Ok((value.clone(), value))
    }
    async fn set_if(
        &self,
        key: &str,
        cas: Option<Self::Cas>,
        value: &[u8],
        _ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut map = self.0.borrow_mut();
        if map.get(key) != cas.flatten().as_ref() {
            return Ok(false);
        }
        map.insert(key.to_owned(), value.to_vec());
        Ok(true)
    }
    fn confirms_swaps(&self) -> bool {
        true
    }
    fn expires_keys(&self) -> bool {
        false
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.value_now(key))
    }
    async fn set(&self, key: &str, value: &[u8], _ttl_ms: Option<u64>) -> Result<(), StoreError> {
        self.put(key, value);
        Ok(())
    }
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut map = self.0.borrow_mut();
        let current = match map.get(key) {
            None => 0,
            Some(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| StoreError("not a counter".into()))?,
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| StoreError("counter overflow".into()))?;
        map.insert(key.to_owned(), next.to_string().into_bytes());
        Ok(next)
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.borrow_mut().remove(key);
        Ok(())
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.0.borrow().contains_key(key))
    }
}
