//! [`MemoryStore`]: sessions in this process's (or wasm instance's) own memory, bounded: expired
//! sessions are swept, and past the cap the least recently used are evicted.

use super::{SessionStore, StoreError};
use crate::session::{Lifetime, SessionId, SessionRecord};
use crate::settings::DEFAULT_MAX_SESSIONS;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Most expired sessions one [`SessionStore::sweep`] removes: bounded work for the request
/// that runs it (the handler sweeps on one write in [`crate::api::SWEEP_ONE_IN`], and each
/// write adds at most one session).
const SWEEP_MAX: usize = 64;

/// Sessions in this process's (or wasm instance's) own memory: gone when it is.
///
/// `const`-constructible so a component can keep one in a `static`. The lock is only held
/// inside synchronous sections, never across an `.await`. At most
/// [`MemoryStore::max_sessions`] are held: a new session past the cap evicts the least
/// recently used (read or written) one. A write's TTL is kept as native expiry: `sweep`
/// removes sessions past it.
#[derive(Debug)]
pub struct MemoryStore {
    sessions: Mutex<Sessions>,
    max_sessions: AtomicUsize,
}

#[derive(Debug)]
struct Sessions {
    records: BTreeMap<SessionId, Held>,
    /// Every session by its last use, least recent first.
    by_use: BTreeMap<u64, SessionId>,
    /// Every session by the unix second its TTL ends.
    by_expiry: BTreeSet<(u64, SessionId)>,
    /// Counts uses: the key of `by_use`.
    tick: u64,
}

#[derive(Debug)]
struct Held {
    record: SessionRecord,
    used: u64,
    expires: u64,
}

impl Sessions {
    /// Marks `id` as used now.
    fn touch(&mut self, id: &SessionId) {
        if let Some(held) = self.records.get_mut(id) {
            self.by_use.remove(&held.used);
            self.tick += 1;
            held.used = self.tick;
            self.by_use.insert(self.tick, id.clone());
        }
    }

    fn insert(&mut self, id: &SessionId, record: SessionRecord, expires: u64) {
        self.remove(id);
        self.tick += 1;
        self.by_use.insert(self.tick, id.clone());
        self.by_expiry.insert((expires, id.clone()));
        let held = Held {
            record,
            used: self.tick,
            expires,
        };
        self.records.insert(id.clone(), held);
    }

    fn remove(&mut self, id: &SessionId) -> Option<SessionRecord> {
        let held = self.records.remove(id)?;
        self.by_use.remove(&held.used);
        self.by_expiry.remove(&(held.expires, id.clone()));
        Some(held.record)
    }

    /// Evicts the least recently used sessions until at most `max` are held.
    fn evict_beyond(&mut self, max: usize) {
        while self.records.len() > max {
            let Some((_, id)) = self.by_use.pop_first() else {
                return;
            };
            self.remove(&id);
        }
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// A store holding at most [`DEFAULT_MAX_SESSIONS`].
    pub const fn new() -> MemoryStore {
        MemoryStore::with_max_sessions(DEFAULT_MAX_SESSIONS)
    }

    pub const fn with_max_sessions(max: usize) -> MemoryStore {
        MemoryStore {
            sessions: Mutex::new(Sessions {
                records: BTreeMap::new(),
                by_use: BTreeMap::new(),
                by_expiry: BTreeSet::new(),
                tick: 0,
            }),
            max_sessions: AtomicUsize::new(max),
        }
    }

    /// The cap on sessions held (at least 1).
    pub fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::Relaxed)
    }

    /// Changes the cap (the stateful component sets it from its settings); a lower one takes
    /// effect at the next new session.
    pub fn set_max_sessions(&self, max: usize) {
        self.max_sessions.store(max.max(1), Ordering::Relaxed);
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.sessions().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every record held (for tests and tools); counts as no use.
    pub fn records(&self) -> BTreeMap<SessionId, SessionRecord> {
        let sessions = self.sessions();
        let records = sessions.records.iter();
        records
            .map(|(id, held)| (id.clone(), held.record.clone()))
            .collect()
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding the lock kills a wasm instance anyway; natively, keep going.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The record itself is the version: a write succeeds if the stored record is unchanged.
impl SessionStore for MemoryStore {
    type Version = SessionRecord;

    async fn load(
        &self,
        id: &SessionId,
    ) -> Result<Option<(SessionRecord, SessionRecord)>, StoreError> {
        let mut sessions = self.sessions();
        sessions.touch(id);
        let record = sessions.records.get(id).map(|held| held.record.clone());
        Ok(record.map(|r| (r.clone(), r)))
    }

    async fn save_if(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected: Option<SessionRecord>,
        ttl_secs: u64,
    ) -> Result<bool, StoreError> {
        let mut sessions = self.sessions();
        if sessions.records.get(id).map(|held| &held.record) != expected.as_ref() {
            return Ok(false);
        }
        if expected.is_none() {
            // Room for one more, then this one.
            let max = self.max_sessions().max(1);
            sessions.evict_beyond(max - 1);
        }
        // The handler sets `touched` to its clock just before writing: the TTL runs from it.
        let expires = record.touched.saturating_add(ttl_secs);
        sessions.insert(id, record.clone(), expires);
        Ok(true)
    }

    async fn delete_if(&self, id: &SessionId, expected: SessionRecord) -> Result<bool, StoreError> {
        let mut sessions = self.sessions();
        if sessions.records.get(id).map(|held| &held.record) != Some(&expected) {
            return Ok(false);
        }
        sessions.remove(id);
        Ok(true)
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.sessions().remove(id);
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes up to `SWEEP_MAX` sessions whose TTL ended before `now`, soonest first. The
    /// record decides: one still live under `lifetime` (settings changed) stays, queued again
    /// at its deadline.
    async fn sweep(&self, now_unix_secs: u64, lifetime: &Lifetime) -> Result<usize, StoreError> {
        let mut sessions = self.sessions();
        let mut removed = 0;
        for _ in 0..SWEEP_MAX {
            let Some((expires, id)) = sessions.by_expiry.first().cloned() else {
                break;
            };
            if expires >= now_unix_secs {
                break;
            }
            let Some(record) = sessions.remove(&id) else {
                break;
            };
            if record.is_expired(now_unix_secs, lifetime) {
                removed += 1;
            } else {
                let deadline = record.deadline(lifetime);
                sessions.insert(&id, record, deadline.max(now_unix_secs));
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn memory_store_round_trip() {
        block_on(async {
            let store = MemoryStore::new();
            let id = SessionId::generate().unwrap();
            assert!(store.load(&id).await.unwrap().is_none());
            assert!(
                store
                    .save_if(&id, &SessionRecord::new(1), None, 60)
                    .await
                    .unwrap()
            );
            assert_eq!(store.len(), 1);
            let (record, version) = store.load(&id).await.unwrap().unwrap();
            assert_eq!(record, SessionRecord::new(1));
            assert!(
                !store
                    .save_if(&id, &SessionRecord::new(2), None, 60)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .save_if(&id, &SessionRecord::new(2), Some(version.clone()), 60)
                    .await
                    .unwrap()
            );
            assert!(!store.delete_if(&id, version).await.unwrap());
            store.delete(&id).await.unwrap();
            assert!(store.is_empty());
        });
    }

    #[test]
    fn past_the_cap_the_least_recently_used_go_first() {
        block_on(async {
            let store = MemoryStore::with_max_sessions(3);
            let ids: Vec<SessionId> = (0..4).map(|_| SessionId::generate().unwrap()).collect();
            for id in &ids[..3] {
                assert!(
                    store
                        .save_if(id, &SessionRecord::new(1), None, 60)
                        .await
                        .unwrap()
                );
            }
            // A read is a use: the first session is now the most recently used.
            assert!(store.load(&ids[0]).await.unwrap().is_some());
            assert!(
                store
                    .save_if(&ids[3], &SessionRecord::new(1), None, 60)
                    .await
                    .unwrap()
            );
            let held = store.records();
            assert_eq!(held.len(), 3);
            assert!(!held.contains_key(&ids[1]), "the least recently used went");
            for id in [&ids[0], &ids[2], &ids[3]] {
                assert!(held.contains_key(id));
            }
        });
    }

    #[test]
    fn sweep_removes_what_expired_and_keeps_what_lives() {
        let life = Lifetime {
            idle_secs: 100,
            max_age_secs: 1000,
        };
        block_on(async {
            let store = MemoryStore::new();
            let (old, new) = (
                SessionId::generate().unwrap(),
                SessionId::generate().unwrap(),
            );
            assert!(
                store
                    .save_if(&old, &SessionRecord::new(10), None, 100)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .save_if(&new, &SessionRecord::new(200), None, 100)
                    .await
                    .unwrap()
            );
            assert_eq!(
                store.sweep(110, &life).await.unwrap(),
                0,
                "nothing ended yet"
            );
            assert_eq!(store.sweep(111, &life).await.unwrap(), 1);
            assert_eq!(store.records().into_keys().collect::<Vec<_>>(), [new]);
        });
    }
}
