//! The expiry queue: how sessions leave a store that has no TTL (Spin key-value).
//!
//! Listing keys to find expired sessions costs O(all keys) on every sweep (and on Spin every key
//! travels into the guest). Instead each new session is queued with its deadline when it is
//! created: the counter [`QUEUE_LAST`] hands out slot numbers (an atomic `increment`, correct
//! on every Spin backend) and slot `cartlab:expiry:slot:<n>` gets `{"key":..,"due":..}` with a
//! plain write (each slot has exactly one writer, so nothing contends). [`QUEUE_CURSOR`] is the
//! first slot not yet swept.
//!
//! A sweep walks slots from the cursor while they are due: an expired session is buried, one
//! still in use is queued again at its current deadline, and the slot is deleted. The work is
//! proportional to what has come due: each expired session once, and a live one at most once
//! per idle timeout. Deadlines are queued as `now + idle`, so slots come due nearly in order
//! and the walk stops at the first slot that is not due; a session therefore leaves the store
//! at most one idle timeout after it expired (given requests to sweep). Every step is safe to
//! repeat, so two sweeps walking the same slots at once do no harm.

use crate::session::{Lifetime, SessionRecord};
use crate::store::{KeyValue, StoreError, TOMBSTONE, bury};
use serde::{Deserialize, Serialize};

/// The counter of the newest slot handed out (0 or absent: none yet).
pub const QUEUE_LAST: &str = "cartlab:expiry:last";
/// The first slot a sweep has not finished (absent: 1).
pub const QUEUE_CURSOR: &str = "cartlab:expiry:cursor";
/// Prefix of a slot's key; the slot number follows.
pub const QUEUE_SLOT_PREFIX: &str = "cartlab:expiry:slot:";
/// Most slots one sweep handles.
pub const SWEEP_BATCH: usize = 8;
/// A missing slot this close to the newest one may be a queueing still in flight (the counter
/// is incremented before the slot is written): the walk waits for it rather than skip it. One
/// further back was lost (its write failed) and is skipped.
const IN_FLIGHT_SLOTS: i64 = 64;

/// The key of slot `n`.
pub fn slot_key(n: i64) -> String {
    format!("{QUEUE_SLOT_PREFIX}{n}")
}

/// What a slot holds: a session key and the unix second it expires at unless used.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub due: u64,
}

/// Queues `key` (a session key) to be looked at once `due` has passed.
pub async fn enqueue<K: KeyValue>(kv: &K, key: &str, due: u64) -> Result<(), StoreError> {
    let (slot, entry) = next_slot(kv, key, due).await?;
    kv.set(&slot, &entry, None).await
}

/// Writes a new session's `record` under `key` and queues it at `due`, in two round trips:
/// the slot number, then both writes in one batch, so the session never exists unqueued.
pub async fn create<K: KeyValue>(
    kv: &K,
    key: &str,
    record: &[u8],
    due: u64,
) -> Result<(), StoreError> {
    let (slot, entry) = next_slot(kv, key, due).await?;
    kv.set_many(&[(&slot, &entry), (key, record)]).await
}

/// A new slot's key and the entry it is to hold.
async fn next_slot<K: KeyValue>(
    kv: &K,
    key: &str,
    due: u64,
) -> Result<(String, Vec<u8>), StoreError> {
    let slot = kv.increment(QUEUE_LAST, 1).await?;
    let entry = Entry {
        key: key.to_owned(),
        due,
    };
    // A string and an integer: serialising cannot fail.
    Ok((
        slot_key(slot),
        serde_json::to_vec(&entry).unwrap_or_default(),
    ))
}

/// Handles up to `batch` due slots; returns how many sessions it removed.
pub async fn sweep<K: KeyValue>(
    kv: &K,
    now: u64,
    lifetime: &Lifetime,
    batch: usize,
) -> Result<usize, StoreError> {
    // `increment` by 0 reads the counter whatever its stored format (Spin's SQLite backend
    // keeps counters as 8 bytes, its Redis backend as decimal text).
    let last = kv.increment(QUEUE_LAST, 0).await?;
    let start = match kv.get(QUEUE_CURSOR).await? {
        Some(bytes) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(1)
            .max(1),
        None => 1,
    };
    let mut cursor = start;
    let walked = walk(kv, now, lifetime, batch, last, &mut cursor).await;
    // Saved even after an error, so the slots already deleted are not walked again.
    if cursor != start {
        let saved = kv
            .set(QUEUE_CURSOR, cursor.to_string().as_bytes(), None)
            .await;
        if walked.is_ok() {
            saved?;
        }
    }
    walked
}

async fn walk<K: KeyValue>(
    kv: &K,
    now: u64,
    lifetime: &Lifetime,
    batch: usize,
    last: i64,
    cursor: &mut i64,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    for _ in 0..batch {
        if *cursor > last {
            break;
        }
        let slot = slot_key(*cursor);
        match kv.get(&slot).await? {
            None if last - *cursor < IN_FLIGHT_SLOTS => break,
            None => {}
            Some(bytes) => match serde_json::from_slice::<Entry>(&bytes) {
                // Like `is_expired`: a session expires strictly after its deadline.
                Ok(entry) if entry.due >= now => break,
                Ok(entry) => {
                    removed += settle(kv, &entry.key, now, lifetime).await?;
                    kv.delete(&slot).await?;
                }
                // Not written by this code: nothing to settle.
                Err(_) => kv.delete(&slot).await?,
            },
        }
        *cursor += 1;
    }
    Ok(removed)
}

/// Looks at the session under `key` whose queued deadline has passed: removes it if it is
/// expired, unreadable or a tombstone (1), or queues it again at its current deadline if it is
/// still in use (0).
async fn settle<K: KeyValue>(
    kv: &K,
    key: &str,
    now: u64,
    lifetime: &Lifetime,
) -> Result<usize, StoreError> {
    let (bytes, cas) = kv.get_cas(key).await?;
    let Some(bytes) = bytes else {
        return Ok(0);
    };
    if bytes == TOMBSTONE {
        kv.delete(key).await?;
        return Ok(1);
    }
    match SessionRecord::from_json(&bytes) {
        Ok(record) if !record.is_expired(now, lifetime) => {
            enqueue(kv, key, record.deadline(lifetime)).await?;
            Ok(0)
        }
        // Expired, or unreadable (which `load` treats as absent, so nobody would ever remove it).
        _ => Ok(usize::from(bury(kv, key, cas).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv_sessions::KvSessionStore;
    use crate::session::SessionId;
    use crate::store::{MemoryKeyValue, SESSION_KEY_PREFIX, SessionStore, session_key};
    use futures::executor::block_on;

    const LIFE: Lifetime = Lifetime {
        idle_secs: 100,
        max_age_secs: 10_000,
    };

    /// A session created at `created` and last used at `touched`, queued as its creation did.
    async fn session(
        store: &KvSessionStore<MemoryKeyValue>,
        created: u64,
        touched: u64,
    ) -> SessionId {
        let id = SessionId::generate().unwrap();
        let mut record = SessionRecord::new(created);
        record.touched = touched;
        store
            .track_expiry(&id, SessionRecord::new(created).deadline(&LIFE))
            .await
            .unwrap();
        assert!(store.save_if(&id, &record, None, 60).await.unwrap());
        id
    }

    fn sessions_left(store: &KvSessionStore<MemoryKeyValue>) -> usize {
        store
            .0
            .keys_now()
            .iter()
            .filter(|k| k.starts_with(SESSION_KEY_PREFIX))
            .count()
    }

    #[test]
    fn expired_sessions_leave_and_live_ones_are_queued_again() {
        block_on(async {
            let store = KvSessionStore(MemoryKeyValue::default());
            let abandoned = session(&store, 1_000, 1_000).await;
            let in_use = session(&store, 1_000, 1_090).await;
            let young = session(&store, 1_050, 1_050).await;
            assert_eq!(store.0.increment(QUEUE_LAST, 0).await.unwrap(), 3);

            // Nothing due yet: nothing touched.
            assert_eq!(store.sweep(1_100, &LIFE).await.unwrap(), 0);
            assert_eq!(store.0.get(QUEUE_CURSOR).await.unwrap(), None);

            // At 1_101 the first two are due: one expired, one in use until 1_190.
            assert_eq!(store.sweep(1_101, &LIFE).await.unwrap(), 1);
            assert!(store.load(&abandoned).await.unwrap().is_none());
            assert!(store.load(&in_use).await.unwrap().is_some());
            assert_eq!(
                store.0.get(QUEUE_CURSOR).await.unwrap(),
                Some(b"3".to_vec()),
                "stopped at the young session's slot"
            );
            let requeued: Entry =
                serde_json::from_slice(&store.0.get(&slot_key(4)).await.unwrap().unwrap()).unwrap();
            assert_eq!(
                requeued,
                Entry {
                    key: session_key(&in_use),
                    due: 1_190
                }
            );
            assert_eq!(
                store.0.get(&slot_key(1)).await.unwrap(),
                None,
                "slots are deleted"
            );

            // Later, everything has expired: all gone, the queue empty.
            assert_eq!(store.sweep(1_191, &LIFE).await.unwrap(), 2);
            assert!(store.load(&young).await.unwrap().is_none());
            assert_eq!(sessions_left(&store), 0);
            let left: Vec<String> = store
                .0
                .keys_now()
                .into_iter()
                .filter(|k| k.starts_with(QUEUE_SLOT_PREFIX))
                .collect();
            assert!(left.is_empty(), "{left:?}");
        });
    }

    #[test]
    fn sweep_work_is_bounded_and_resumes_at_the_cursor() {
        block_on(async {
            let store = KvSessionStore(MemoryKeyValue::default());
            for _ in 0..3 * SWEEP_BATCH {
                session(&store, 0, 0).await;
            }
            assert_eq!(store.sweep(1_000, &LIFE).await.unwrap(), SWEEP_BATCH);
            assert_eq!(sessions_left(&store), 2 * SWEEP_BATCH);
            assert_eq!(store.sweep(1_000, &LIFE).await.unwrap(), SWEEP_BATCH);
            assert_eq!(store.sweep(1_000, &LIFE).await.unwrap(), SWEEP_BATCH);
            assert_eq!(store.sweep(1_000, &LIFE).await.unwrap(), 0);
            assert_eq!(sessions_left(&store), 0);
        });
    }

    #[test]
    fn tombstones_unreadable_records_and_lost_slots_are_cleared() {
        block_on(async {
            let store = KvSessionStore(MemoryKeyValue::default());
            let gone = session(&store, 0, 0).await;
            let garbage = session(&store, 0, 0).await;
            store.0.put(&session_key(&gone), TOMBSTONE);
            store.0.put(&session_key(&garbage), b"not a record");
            store.0.put(&slot_key(3), b"not an entry");
            assert_eq!(store.0.increment(QUEUE_LAST, 1).await.unwrap(), 3);
            assert_eq!(store.sweep(1_000, &LIFE).await.unwrap(), 2);
            assert_eq!(sessions_left(&store), 0);
            assert_eq!(
                store.0.get(QUEUE_CURSOR).await.unwrap(),
                Some(b"4".to_vec())
            );

            // A slot handed out but never written: waited for while it may be in flight,
            // skipped once far enough behind the newest.
            assert_eq!(store.0.increment(QUEUE_LAST, 1).await.unwrap(), 4);
            let late = session(&store, 0, 0).await;
            assert_eq!(
                store.sweep(1_000, &LIFE).await.unwrap(),
                0,
                "waits at slot 4"
            );
            assert!(store.load(&late).await.unwrap().is_some());
            for _ in 0..IN_FLIGHT_SLOTS {
                session(&store, 900, 900).await;
            }
            assert_eq!(
                store.sweep(1_000, &LIFE).await.unwrap(),
                1,
                "slot 4 skipped"
            );
            assert!(store.load(&late).await.unwrap().is_none());
        });
    }
}
