//! [`Backend`]: the stateless cart's store for one request, picked by `session_store`.

use crate::store::{KeyValue, StoreError};

/// `session_store = "key-value"` or `"redis"`.
pub enum Backend<K, R> {
    KeyValue(K),
    Redis(R),
}

/// A token of either store; a token reaches only the store that made it.
pub enum BackendCas<K, R> {
    KeyValue(K),
    Redis(R),
}

fn mismatch() -> StoreError {
    StoreError("internal: a CAS token from the other store mode".into())
}

impl<K: KeyValue, R: KeyValue> KeyValue for Backend<K, R> {
    type Cas = BackendCas<K::Cas, R::Cas>;

    async fn get_cas(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::Cas), StoreError> {
        match self {
            Backend::KeyValue(kv) => {
                let (value, cas) = kv.get_cas(key).await?;
                Ok((value, BackendCas::KeyValue(cas)))
            }
            Backend::Redis(kv) => {
                let (value, cas) = kv.get_cas(key).await?;
                Ok((value, BackendCas::Redis(cas)))
            }
        }
    }

    async fn set_if(
        &self,
        key: &str,
        cas: Option<Self::Cas>,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        match (self, cas) {
            (Backend::KeyValue(kv), None) => kv.set_if(key, None, value, ttl_ms).await,
            (Backend::KeyValue(kv), Some(BackendCas::KeyValue(cas))) => {
                kv.set_if(key, Some(cas), value, ttl_ms).await
            }
            (Backend::Redis(kv), None) => kv.set_if(key, None, value, ttl_ms).await,
            (Backend::Redis(kv), Some(BackendCas::Redis(cas))) => {
                kv.set_if(key, Some(cas), value, ttl_ms).await
            }
            _ => Err(mismatch()),
        }
    }

    fn confirms_swaps(&self) -> bool {
        match self {
            Backend::KeyValue(kv) => kv.confirms_swaps(),
            Backend::Redis(kv) => kv.confirms_swaps(),
        }
    }

    fn expires_keys(&self) -> bool {
        match self {
            Backend::KeyValue(kv) => kv.expires_keys(),
            Backend::Redis(kv) => kv.expires_keys(),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Backend::KeyValue(kv) => kv.get(key).await,
            Backend::Redis(kv) => kv.get(key).await,
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StoreError> {
        match self {
            Backend::KeyValue(kv) => kv.set(key, value, ttl_ms).await,
            Backend::Redis(kv) => kv.set(key, value, ttl_ms).await,
        }
    }

    async fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        match self {
            Backend::KeyValue(kv) => kv.set_many(entries).await,
            Backend::Redis(kv) => kv.set_many(entries).await,
        }
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        match self {
            Backend::KeyValue(kv) => kv.increment(key, delta).await,
            Backend::Redis(kv) => kv.increment(key, delta).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Backend::KeyValue(kv) => kv.delete(key).await,
            Backend::Redis(kv) => kv.delete(key).await,
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Backend::KeyValue(kv) => kv.exists(key).await,
            Backend::Redis(kv) => kv.exists(key).await,
        }
    }

    async fn pause(&self, millis: u64) {
        match self {
            Backend::KeyValue(kv) => kv.pause(millis).await,
            Backend::Redis(kv) => kv.pause(millis).await,
        }
    }
}
