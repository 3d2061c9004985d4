//! The Spin interfaces a component sees, implemented over the lab host's
//! key-value backends and resolved variables, so a component cannot tell
//! whether Spin or `cartlab up` runs it.

use crate::runtime::bindings::{key_value, variables};
use crate::runtime::instance::InstanceState;
use crate::runtime::kv::{KvBackend, KvError};
use std::sync::Arc;
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, StreamReader};

/// A store the component opened: `spin:key-value/key-value.store`.
pub struct OpenStore {
    backend: Arc<dyn KvBackend>,
}

impl OpenStore {
    pub fn new(backend: Arc<dyn KvBackend>) -> Self {
        Self { backend }
    }

    pub fn backend(&self) -> Arc<dyn KvBackend> {
        self.backend.clone()
    }
}

/// Marker type through which the generated bindings reach [`InstanceState`].
pub struct SpinHost;

impl HasData for SpinHost {
    type Data<'a> = &'a mut InstanceState;
}

/// Adds `spin:key-value`, `spin:variables`, `spin:redis` (WASIp3 guests), their
/// `fermyon:spin@2.0.0` twins (WASIp2 guests) and `wasi:keyvalue` (both) to the linker.
pub fn add_to_linker(
    linker: &mut wasmtime::component::Linker<InstanceState>,
) -> wasmtime::Result<()> {
    key_value::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    variables::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    crate::runtime::bindings::redis::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    use crate::runtime::bindings::{key_value_v2, redis_v2, variables_v2};
    key_value_v2::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    variables_v2::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    redis_v2::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    crate::runtime::bindings::wasi_store::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    crate::runtime::bindings::wasi_atomics::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    crate::runtime::bindings::wasi_batch::add_to_linker::<_, SpinHost>(linker, |state| state)?;
    Ok(())
}

pub(crate) fn kv_error(error: KvError) -> key_value::Error {
    // The message reaches the guest; it never contains keys or values.
    key_value::Error::Other(error.to_string())
}

fn backend_of<T>(
    accessor: &Accessor<T, SpinHost>,
    store: &Resource<OpenStore>,
) -> wasmtime::Result<Arc<dyn KvBackend>> {
    accessor.with(|mut access| {
        let state = access.get();
        Ok(state.table.get(store)?.backend.clone())
    })
}

impl key_value::Host for &mut InstanceState {}

impl key_value::HostStore for &mut InstanceState {}

impl<T> key_value::HostStoreWithStore<T> for SpinHost {
    fn drop(
        mut access: wasmtime::component::Access<'_, T, Self>,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<()> {
        access.get().table.delete(store)?;
        Ok(())
    }

    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, key_value::Error>> {
        accessor.with(|mut access| {
            let state = access.get();
            // Spin: a label the manifest did not grant opens as access-denied.
            let Some(backend) = state.component.key_value_store(&label) else {
                return Ok(Err(key_value::Error::AccessDenied));
            };
            match state.table.push(OpenStore { backend }) {
                Ok(store) => Ok(Ok(store)),
                Err(_) => Ok(Err(key_value::Error::StoreTableFull)),
            }
        })
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let backend = backend_of(accessor, &store)?;
        Ok(backend.get(key).await.map_err(kv_error))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let backend = backend_of(accessor, &store)?;
        Ok(backend.set(key, value).await.map_err(kv_error))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let backend = backend_of(accessor, &store)?;
        Ok(backend.delete(key).await.map_err(kv_error))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let backend = backend_of(accessor, &store)?;
        Ok(backend.exists(key).await.map_err(kv_error))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<(
        StreamReader<String>,
        FutureReader<Result<(), key_value::Error>>,
    )> {
        let backend = backend_of(accessor, &store)?;
        let (keys, result) = match backend.get_keys().await {
            Ok(keys) => (keys, Ok(())),
            Err(error) => (Vec::new(), Err(kv_error(error))),
        };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let result =
                FutureReader::new(
                    &mut access,
                    async move { wasmtime::Result::<_>::Ok(result) },
                )?;
            Ok((keys, result))
        })
    }
}

impl variables::Host for &mut InstanceState {}

impl<T> variables::HostWithStore<T> for SpinHost {
    async fn get(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, variables::Error>> {
        accessor.with(|mut access| Ok(access.get().component.variable(&name)))
    }
}
