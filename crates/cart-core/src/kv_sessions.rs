//! [`KvSessionStore`]: sessions as versioned JSON records in any byte [`KeyValue`] store with
//! compare-and-swap, queued for expiry where the store has no TTL.

use crate::expiry;
use crate::session::{Lifetime, SessionId, SessionRecord};
use crate::store::{HEALTH_KEY, KeyValue, SessionStore, StoreError, bury, session_key};

/// Sessions as versioned JSON records under [`session_key`] (a hash of the id) in a [`KeyValue`] store,
/// every write a compare-and-swap against the bytes read.
#[derive(Debug, Default)]
pub struct KvSessionStore<K>(pub K);

impl<K: KeyValue> KvSessionStore<K> {
    /// The record stored under `key` (a session key) and a token for a write conditional on
    /// it. A record that cannot be read (corrupt, a tombstone, or a version this code does not
    /// know) counts as absent: the client gets a fresh session (under a new id) rather than an
    /// error on every request.
    async fn load_key(&self, key: &str) -> Result<Option<(SessionRecord, K::Cas)>, StoreError> {
        let (bytes, cas) = self.0.get_cas(key).await?;
        Ok(bytes
            .and_then(|b| SessionRecord::from_json(b).ok())
            .map(|record| (record, cas)))
    }
}

impl<K: KeyValue> SessionStore for KvSessionStore<K> {
    type Version = K::Cas;

    async fn load(&self, id: &SessionId) -> Result<Option<(SessionRecord, K::Cas)>, StoreError> {
        self.load_key(&session_key(id)).await
    }

    async fn save_if(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected: Option<K::Cas>,
        ttl_secs: u64,
    ) -> Result<bool, StoreError> {
        let ttl_ms = ttl_secs.max(1).saturating_mul(1000);
        self.0
            .set_if(
                &session_key(id),
                expected,
                record.to_json().as_bytes(),
                ttl_ms,
            )
            .await
    }

    async fn read(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let bytes = self.0.get(&session_key(id)).await?;
        Ok(bytes.and_then(|b| SessionRecord::from_json(b).ok()))
    }

    /// One round trip where the store expires keys (a `SET` with the TTL), two where the
    /// session must be queued for expiry ([`expiry::create`]).
    async fn create(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        ttl_secs: u64,
        deadline: u64,
    ) -> Result<(), StoreError> {
        let key = session_key(id);
        let json = record.to_json();
        if self.0.expires_keys() {
            let ttl_ms = ttl_secs.max(1).saturating_mul(1000);
            return self.0.set(&key, json.as_bytes(), Some(ttl_ms)).await;
        }
        expiry::create(&self.0, &key, json.as_bytes(), deadline).await
    }

    fn confirms_writes(&self) -> bool {
        self.0.confirms_swaps()
    }

    async fn delete_if(&self, id: &SessionId, expected: K::Cas) -> Result<bool, StoreError> {
        bury(&self.0, &session_key(id), expected).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.0.delete(&session_key(id)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.0.exists(HEALTH_KEY).await.map(|_| ())
    }

    async fn track_expiry(&self, id: &SessionId, deadline: u64) -> Result<(), StoreError> {
        if self.0.expires_keys() {
            return Ok(());
        }
        expiry::enqueue(&self.0, &session_key(id), deadline).await
    }

    async fn sweep(&self, now_unix_secs: u64, lifetime: &Lifetime) -> Result<usize, StoreError> {
        if self.0.expires_keys() {
            return Ok(0);
        }
        expiry::sweep(&self.0, now_unix_secs, lifetime, expiry::SWEEP_BATCH).await
    }

    async fn pause(&self, millis: u64) {
        self.0.pause(millis).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Cents;
    use crate::store::MemoryKeyValue;
    use futures::executor::block_on;

    #[test]
    fn kv_store_keeps_versioned_json_under_prefixed_key() {
        block_on(async {
            let store = KvSessionStore(MemoryKeyValue::default());
            let id = SessionId::generate().unwrap();
            let mut record = SessionRecord::new(5);
            record.cart.add("Pen".into(), Cents(150), 2).unwrap();
            assert!(store.save_if(&id, &record, None, 60).await.unwrap());

            let key = session_key(&id);
            assert_eq!(store.0.keys_now(), [key.as_str()]);
            assert!(
                key.starts_with("cartlab:session:") && !key.contains(id.as_str()),
                "{key}: the store holds a hash of the id, never the id"
            );
            let raw = store.0.value_now(&key).unwrap();
            assert!(raw.starts_with(br#"{"v":1,"#));
            let (loaded, _) = store.load(&id).await.unwrap().unwrap();
            assert_eq!(loaded, record);

            store.0.put(&key, b"garbage");
            assert!(store.load(&id).await.unwrap().is_none());

            store.delete(&id).await.unwrap();
            assert!(store.0.keys_now().is_empty());
            store.check().await.unwrap();
        });
    }

    #[test]
    fn kv_writes_are_conditional_on_the_version_read() {
        block_on(async {
            let store = KvSessionStore(MemoryKeyValue::default());
            let id = SessionId::generate().unwrap();
            let first = SessionRecord::new(1);
            assert!(store.save_if(&id, &first, None, 60).await.unwrap());
            assert!(
                !store.save_if(&id, &first, None, 60).await.unwrap(),
                "create only if absent"
            );
            let (_, a) = store.load(&id).await.unwrap().unwrap();
            let (_, b) = store.load(&id).await.unwrap().unwrap();
            let mut second = first.clone();
            second.cart.add("Pen".into(), Cents(1), 1).unwrap();
            assert!(store.save_if(&id, &second, Some(a), 60).await.unwrap());
            let mut stale = first.clone();
            stale.cart.add("Cup".into(), Cents(1), 1).unwrap();
            assert!(
                !store.save_if(&id, &stale, Some(b), 60).await.unwrap(),
                "a write based on a stale read is refused"
            );
            assert_eq!(store.load(&id).await.unwrap().unwrap().0, second);

            // delete_if: refused once the record changed, done while unchanged.
            let (_, old) = store.load(&id).await.unwrap().unwrap();
            let (_, current) = store.load(&id).await.unwrap().unwrap();
            let mut third = second.clone();
            third.touched = 9;
            assert!(store.save_if(&id, &third, Some(current), 60).await.unwrap());
            assert!(!store.delete_if(&id, old).await.unwrap());
            let (_, current) = store.load(&id).await.unwrap().unwrap();
            assert!(store.delete_if(&id, current).await.unwrap());
            assert!(store.0.keys_now().is_empty());
        });
    }
}
