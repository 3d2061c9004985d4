//! cartlab's stateless cart: sessions live outside the instance, so any instance can serve any
//! request and a crashed instance loses nothing. The logic is in `cart-core` (the
//! compare-and-set retry loop, the operation ids that make every change safe to repeat, the
//! expiry rules, both session stores), the Spin plumbing in `cart-spin`; this file only binds
//! spin-sdk 7's `wasi:keyvalue` for the store the Spin variable `session_store` picks:
//!
//! - `key-value` (default): the key-value store labelled `default`, through `wasi:keyvalue`
//!   (`store` + `atomics` + `batch`), on whatever backs it: SQLite (Spin's default) or Redis
//!   (`runtime-config.toml`); every write is read back ([`cart_core::WasiKeyValue`]).
//! - `redis`: Redis at `redis_url` through `spin:redis` ([`cart_core::RedisKeyValue`] over
//!   [`cart_spin::redis::SpinRedis`]), the fast path.

use cart_core::{
    Backend, KvSessionStore, RedisKeyValue, Settings, StoreError, StoreMode, WasiKeyValue,
    key_value_error,
};
use cart_spin::redis::SpinRedis;
use cart_spin::{Request, Response};
use spin_sdk::experimental::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

cart_spin::http_handler!(handle);

async fn handle(req: Request) -> Response {
    // On a settings error `serve` answers 500 `invalid_config` before touching any store.
    let backend = match cart_spin::settings(Settings::stateless).await {
        Ok(settings) if settings.session_store == StoreMode::Redis => {
            Backend::Redis(RedisKeyValue(SpinRedis::new(settings)))
        }
        _ => Backend::KeyValue(WasiKeyValue(Bucket::default())),
    };
    let sessions = KvSessionStore(backend);
    cart_spin::serve(req, Settings::stateless, &sessions).await
}

thread_local! {
    /// This instance's open bucket (a wasm instance has one thread).
    static BUCKET: RefCell<Option<Rc<wasi_kv::Bucket>>> = const { RefCell::new(None) };
}

/// `wasi:keyvalue` store `default`, opened once per instance when first needed: the handle
/// stays valid for the instance's life, so later requests skip the `open`.
#[derive(Default)]
struct Bucket(OnceCell<Rc<wasi_kv::Bucket>>);

impl Bucket {
    fn open(&self) -> Result<&wasi_kv::Bucket, StoreError> {
        if let Some(bucket) = self.0.get() {
            return Ok(bucket);
        }
        let bucket = match BUCKET.with_borrow(Clone::clone) {
            Some(bucket) => bucket,
            None => {
                let opened = Rc::new(wasi_kv::open("default").map_err(key_value_error)?);
                BUCKET.set(Some(opened.clone()));
                opened
            }
        };
        Ok(self.0.get_or_init(|| bucket))
    }
}

cart_core::impl_wasi_bucket!(Bucket, atomics, batch, pause);

/// Waits before a retry without blocking the instance's other requests.
async fn pause(millis: u64) {
    spin_sdk::time::sleep(Duration::from_millis(millis)).await
}
