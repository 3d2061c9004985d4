//! [`WasiKeyValue`]: the [`KeyValue`] store of `session_store = "key-value"`, over
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` on the store `default` as an SDK binds
//! it ([`WasiBucket`]): spin-sdk 7 and 5.2 bind the same interfaces, so both builds keep
//! sessions the same way. Its compare-and-swap answer is not trusted
//! ([`KeyValue::confirms_swaps`] is false): Spin 4.1's Redis backend reports every committed
//! swap as failed and can report a lost one as success, so cart-core reads every write back
//! (docs/spin-key-value.md). Key-value has no TTL: sessions are queued by deadline in the store
//! itself and swept a few at a time (`crate::expiry`).

use crate::store::{KeyValue, StoreError};

/// The `wasi:keyvalue` calls [`WasiKeyValue`] makes on the bucket `default`: what each SDK
/// adapter implements (opening the bucket when first needed). The calls are synchronous in
/// both SDKs.
#[allow(async_fn_in_trait)]
pub trait WasiBucket {
    /// An `atomics.cas` handle.
    type Cas;
    /// `cas.new` then `cas.current`: the handle and the value it saw. (`current` must be
    /// called: Spin's SQLite backend remembers there the value to compare against.)
    fn cas(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::Cas), StoreError>;
    /// `atomics.swap`: `Ok(false)` for `cas-failed`.
    fn swap(&self, cas: Self::Cas, value: &[u8]) -> Result<bool, StoreError>;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// `batch.set-many`.
    fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    /// `atomics.increment`.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Waits before a retry after a conflict, without blocking other requests the instance
    /// may be serving.
    async fn pause(&self, millis: u64);
}

/// Sessions in `wasi:keyvalue`: compare-and-swap through `atomics`, answers read back.
pub struct WasiKeyValue<B>(pub B);

impl<B: WasiBucket> KeyValue for WasiKeyValue<B> {
    type Cas = B::Cas;

    async fn get_cas(&self, key: &str) -> Result<(Option<Vec<u8>>, B::Cas), StoreError> {
        self.0.cas(key)
    }

    async fn set_if(
        &self,
        key: &str,
        cas: Option<B::Cas>,
        value: &[u8],
        _ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let cas = match cas {
            Some(cas) => cas,
            None => {
                // Create only if absent: a CAS whose `current` saw no value.
                let (current, cas) = self.0.cas(key)?;
                if current.is_some() {
                    return Ok(false);
                }
                cas
            }
        };
        self.0.swap(cas, value)
    }

    fn confirms_swaps(&self) -> bool {
        false
    }

    fn expires_keys(&self) -> bool {
        false
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key)
    }

    async fn set(&self, key: &str, value: &[u8], _ttl_ms: Option<u64>) -> Result<(), StoreError> {
        self.0.set(key, value)
    }

    /// `batch.set-many`: `MSET` on Spin's Redis backend, one transaction on its SQLite one.
    /// (The draft lets a failure leave some keys written: the expiry queue's slot comes first,
    /// and a slot whose session is missing is simply dropped by a sweep.)
    async fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let owned: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.to_vec()))
            .collect();
        self.0.set_many(&owned)
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.0.increment(key, delta)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key)
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.0.exists(key)
    }

    async fn pause(&self, millis: u64) {
        self.0.pause(millis).await
    }
}

/// A failed `wasi:keyvalue` call as a [`StoreError`].
pub fn key_value_error(detail: impl std::fmt::Debug) -> StoreError {
    StoreError(format!("key-value: {detail:?}"))
}

/// Implements [`WasiBucket`] for `$bucket` over an SDK's bindings of `wasi:keyvalue` draft 2,
/// given its `atomics` and `batch` modules (in scope at the call) and an `async fn(u64)` that
/// waits that many milliseconds. spin-sdk 7 and 5.2 generate the same functions in different
/// modules, so one body serves both. `$bucket` must have
/// `fn open(&self) -> Result<&store::Bucket, StoreError>`.
#[macro_export]
macro_rules! impl_wasi_bucket {
    ($bucket:ty, $atomics:ident, $batch:ident, $pause:path) => {
        impl $crate::WasiBucket for $bucket {
            type Cas = $atomics::Cas;

            fn cas(
                &self,
                key: &str,
            ) -> Result<(Option<Vec<u8>>, $atomics::Cas), $crate::StoreError> {
                let cas = $atomics::Cas::new(self.open()?, key).map_err($crate::key_value_error)?;
                let current = cas.current().map_err($crate::key_value_error)?;
                Ok((current, cas))
            }

            fn swap(&self, cas: $atomics::Cas, value: &[u8]) -> Result<bool, $crate::StoreError> {
                match $atomics::swap(cas, value) {
                    Ok(()) => Ok(true),
                    Err($atomics::CasError::CasFailed(_)) => Ok(false),
                    Err($atomics::CasError::StoreError(e)) => Err($crate::key_value_error(e)),
                }
            }

            fn get(&self, key: &str) -> Result<Option<Vec<u8>>, $crate::StoreError> {
                self.open()?.get(key).map_err($crate::key_value_error)
            }

            fn set(&self, key: &str, value: &[u8]) -> Result<(), $crate::StoreError> {
                self.open()?
                    .set(key, value)
                    .map_err($crate::key_value_error)
            }

            fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), $crate::StoreError> {
                $batch::set_many(self.open()?, entries).map_err($crate::key_value_error)
            }

            fn increment(&self, key: &str, delta: i64) -> Result<i64, $crate::StoreError> {
                $atomics::increment(self.open()?, key, delta).map_err($crate::key_value_error)
            }

            fn delete(&self, key: &str) -> Result<(), $crate::StoreError> {
                self.open()?.delete(key).map_err($crate::key_value_error)
            }

            fn exists(&self, key: &str) -> Result<bool, $crate::StoreError> {
                self.open()?.exists(key).map_err($crate::key_value_error)
            }

            async fn pause(&self, millis: u64) {
                $pause(millis).await
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A bucket whose CAS handle is the value it saw, and whose swap says `answer`.
    #[derive(Default)]
    struct Fake {
        values: RefCell<BTreeMap<String, Vec<u8>>>,
        swaps: RefCell<Vec<Option<Vec<u8>>>>,
    }

    impl WasiBucket for Fake {
        type Cas = Option<Vec<u8>>;
        fn cas(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::Cas), StoreError> {
            let value = self.values.borrow().get(key).cloned();
            Ok((value.clone(), value))
        }
        fn swap(&self, cas: Self::Cas, _value: &[u8]) -> Result<bool, StoreError> {
            self.swaps.borrow_mut().push(cas);
            Ok(true)
        }
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.values.borrow().get(key).cloned())
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.values.borrow_mut().insert(key.into(), value.to_vec());
            Ok(())
        }
        fn set_many(&self, entries: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
            self.values.borrow_mut().extend(entries.iter().cloned());
            Ok(())
        }
        fn increment(&self, _key: &str, _delta: i64) -> Result<i64, StoreError> {
            Err(StoreError("unused".into()))
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.values.borrow_mut().remove(key);
            Ok(())
        }
        fn exists(&self, key: &str) -> Result<bool, StoreError> {
            Ok(self.values.borrow().contains_key(key))
        }
        async fn pause(&self, _millis: u64) {}
    }

    #[test]
    fn create_only_if_absent_swaps_only_a_handle_that_saw_nothing() {
        block_on(async {
            let kv = WasiKeyValue(Fake::default());
            assert!(kv.set_if("k", None, b"one", 0).await.unwrap());
            assert_eq!(
                *kv.0.swaps.borrow(),
                [None],
                "swapped on a handle that saw no value"
            );
            kv.0.set("k", b"one").unwrap();
            assert!(
                !kv.set_if("k", None, b"two", 0).await.unwrap(),
                "k is taken"
            );
            assert_eq!(kv.0.swaps.borrow().len(), 1, "no swap when the key exists");
            assert!(!kv.confirms_swaps(), "a swap's answer is read back");
        });
    }
}
