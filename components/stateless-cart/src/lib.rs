//! cartlab's stateless cart: sessions live in Spin key-value (label `default`,
//! Redis with `runtime-config.toml`), so any instance can serve any request and
//! a crashed instance loses nothing. The logic is in `cart-core`, the Spin
//! plumbing in `cart-spin`; this file only chooses where sessions live.

use cart_core::{KeyValue, KvSessionStore, Settings, StoreError};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::key_value::Store;
use std::cell::OnceCell;

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    let sessions = KvSessionStore(SpinKeyValue::default());
    cart_spin::serve(req, Settings::stateless, &sessions).await
}

/// Spin key-value store `default`, opened on first use within a request.
#[derive(Default)]
struct SpinKeyValue {
    store: OnceCell<Store>,
}

impl SpinKeyValue {
    async fn store(&self) -> Result<&Store, StoreError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let opened = Store::open("default").await.map_err(store_error)?;
        Ok(self.store.get_or_init(|| opened))
    }
}

fn store_error(e: spin_sdk::key_value::Error) -> StoreError {
    StoreError(format!("{e:?}"))
}

impl KeyValue for SpinKeyValue {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store().await?.get(key).await.map_err(store_error)
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let store = self.store().await?;
        store.set(key, value).await.map_err(store_error)
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store().await?.delete(key).await.map_err(store_error)
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.store().await?.exists(key).await.map_err(store_error)
    }
}
