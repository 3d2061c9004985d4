//! cartlab's stateless cart for Spin 3.x hosts (WASIp2, spin-sdk 5.2): the same stores as the
//! WASIp3 `stateless-cart`, picked by the Spin variable `session_store` — `key-value` through
//! `wasi:keyvalue` (store + atomics + batch, every write read back:
//! [`cart_core::WasiKeyValue`]) or `redis` through `fermyon:spin/redis`
//! ([`cart_core::RedisKeyValue`]). This file only binds spin-sdk 5.2's `wasi:keyvalue`.

use cart_core::{
    Backend, KvSessionStore, RedisKeyValue, Settings, StoreError, StoreMode, WasiKeyValue,
    key_value_error,
};
use cart_spin_wasip2::redis::SpinRedis;
use spin_sdk::http::{IncomingRequest, ResponseOutparam};
use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use std::cell::OnceCell;
use std::time::Duration;

#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    // On a settings error `serve` answers 500 `invalid_config` before touching any store.
    let backend = match cart_spin_wasip2::settings(Settings::stateless) {
        Ok(settings) if settings.session_store == StoreMode::Redis => {
            Backend::Redis(RedisKeyValue(SpinRedis::new(settings)))
        }
        _ => Backend::KeyValue(WasiKeyValue(Bucket::default())),
    };
    let sessions = KvSessionStore(backend);
    cart_spin_wasip2::serve(req, out, Settings::stateless, &sessions).await
}

/// `wasi:keyvalue` store `default`, opened when first needed. (A WASIp2 instance serves one
/// request, so there is nothing to keep between requests.)
#[derive(Default)]
struct Bucket(OnceCell<wasi_kv::Bucket>);

impl Bucket {
    fn open(&self) -> Result<&wasi_kv::Bucket, StoreError> {
        if let Some(bucket) = self.0.get() {
            return Ok(bucket);
        }
        let opened = wasi_kv::open("default").map_err(key_value_error)?;
        Ok(self.0.get_or_init(|| opened))
    }
}

cart_core::impl_wasi_bucket!(Bucket, atomics, batch, pause);

/// Waits before a retry. Blocking is fine: a WASIp2 instance serves this one request only.
async fn pause(millis: u64) {
    std::thread::sleep(Duration::from_millis(millis))
}
