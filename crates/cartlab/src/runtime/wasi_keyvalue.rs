//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2`, as Spin links it: a bucket
//! identifier is a key-value label granted in `key_value_stores` (same grants as
//! `spin:key-value`), backed by the same store. Implemented as the draft specifies,
//! not as Spin 4.1 behaves (see SPIN-NOTES "Spin 4.1 backend bugs"): CAS is one atomic
//! compare-and-set on the backend, `get-many` returns `(key, none)` for missing keys.
//!
//! The draft's functions are synchronous: the guest blocks while the backend works,
//! and every backend operation is bounded (~1 s on Redis), so a call cannot hang.

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::runtime::bindings::{wasi_atomics as atomics, wasi_batch as batch, wasi_store as store};
use crate::runtime::instance::InstanceState;
use crate::runtime::kv::{KvBackend, KvError};

/// An open `wasi:keyvalue/store.bucket`.
pub struct Bucket {
    backend: Arc<dyn KvBackend>,
}

/// A `wasi:keyvalue/atomics.cas` handle: the key and the value it had when the
/// handle was made; `swap` writes only if the stored value is still that one.
pub struct Cas {
    backend: Arc<dyn KvBackend>,
    key: String,
    current: Option<Vec<u8>>,
}

fn store_error(error: KvError) -> store::Error {
    // The message reaches the guest; it never contains keys or values.
    store::Error::Other(error.to_string())
}

type StoreResult<T> = wasmtime::Result<Result<T, store::Error>>;

impl InstanceState {
    fn bucket_backend(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<Arc<dyn KvBackend>> {
        Ok(self.table.get(bucket)?.backend.clone())
    }
}

impl store::Host for &mut InstanceState {
    async fn open(&mut self, identifier: String) -> StoreResult<Resource<Bucket>> {
        // Spin: a label the manifest did not grant is access-denied.
        let Some(backend) = self.component.key_value_store(&identifier) else {
            return Ok(Err(store::Error::AccessDenied));
        };
        Ok(match self.table.push(Bucket { backend }) {
            Ok(bucket) => Ok(bucket),
            Err(_) => Err(store::Error::Other("too many open buckets".into())),
        })
    }
}

impl store::HostBucket for &mut InstanceState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> StoreResult<Option<Vec<u8>>> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend.get(key).await.map_err(store_error))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> StoreResult<()> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend.set(key, value).await.map_err(store_error))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> StoreResult<()> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend.delete(key).await.map_err(store_error))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> StoreResult<bool> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend.exists(key).await.map_err(store_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> StoreResult<store::KeyResponse> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend
            .list_keys(cursor)
            .await
            .map(|page| store::KeyResponse {
                keys: page.keys,
                cursor: page.cursor,
            })
            .map_err(store_error))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for &mut InstanceState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> StoreResult<i64> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend.increment(key, delta).await.map_err(store_error))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        // `swap` consumes the handle, whatever the outcome.
        let Cas {
            backend,
            key,
            current,
        } = self.table.delete(cas)?;
        match backend.compare_and_swap(key.clone(), current, value).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                // The draft: a failed CAS hands back a handle on the latest value.
                let current = match backend.get(key.clone()).await {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(store_error(e)))),
                };
                Ok(
                    match self.table.push(Cas {
                        backend,
                        key,
                        current,
                    }) {
                        Ok(fresh) => Err(atomics::CasError::CasFailed(fresh)),
                        Err(_) => Err(atomics::CasError::StoreError(store::Error::Other(
                            "too many open CAS handles".into(),
                        ))),
                    },
                )
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(store_error(e)))),
        }
    }
}

impl atomics::HostCas for &mut InstanceState {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> StoreResult<Resource<Cas>> {
        let backend = self.bucket_backend(&bucket)?;
        let current = match backend.get(key.clone()).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(store_error(e))),
        };
        Ok(self
            .table
            .push(Cas {
                backend,
                key,
                current,
            })
            .map_err(|_| store::Error::Other("too many open CAS handles".into())))
    }

    async fn current(&mut self, cas: Resource<Cas>) -> StoreResult<Option<Vec<u8>>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for &mut InstanceState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> StoreResult<Vec<(String, Option<Vec<u8>>)>> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend.get_many(keys).await.map_err(store_error))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> StoreResult<()> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend.set_many(key_values).await.map_err(store_error))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> StoreResult<()> {
        let backend = self.bucket_backend(&bucket)?;
        Ok(backend.delete_many(keys).await.map_err(store_error))
    }
}
