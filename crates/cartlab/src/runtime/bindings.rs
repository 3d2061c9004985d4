//! Host-side bindings for the Spin interfaces in `wit/` (key-value, variables,
//! redis: `spin:*@3.0.0` for WASIp3 guests, `fermyon:spin@2.0.0` for WASIp2 ones;
//! wasi:keyvalue for both). wasi:http and the WASI basics come from wasmtime-wasi(-http).

wasmtime::component::bindgen!({
    path: "wit",
    world: "cartlab:host/spin-host",
    imports: {
        // wasi:keyvalue draft2 functions are synchronous in WIT but the backends are
        // async: `async` makes them Rust futures while the guest blocks on the call.
        "wasi:keyvalue": async | trappable | tracing,
        // WASIp2 guests call fermyon:spin synchronously; the backends are async.
        "fermyon:spin": async | trappable | tracing,
        default: store | trappable | tracing,
    },
    with: {
        "spin:key-value/key-value.store": crate::runtime::spin_host::OpenStore,
        "spin:redis/redis.connection": crate::runtime::spin_redis::RedisConnection,
        // fermyon:spin@2.0.0 holds the same resources as the @3.0.0 interfaces.
        "fermyon:spin/key-value.store": crate::runtime::spin_host::OpenStore,
        "fermyon:spin/redis.connection": crate::runtime::spin_redis::RedisConnection,
        "wasi:keyvalue/store.bucket": crate::runtime::wasi_keyvalue::Bucket,
        "wasi:keyvalue/atomics.cas": crate::runtime::wasi_keyvalue::Cas,
    },
});

pub use fermyon::spin::{key_value as key_value_v2, redis as redis_v2, variables as variables_v2};
pub use spin::key_value::key_value;
pub use spin::redis::redis;
pub use spin::variables::variables;
pub use wasi::keyvalue::{atomics as wasi_atomics, batch as wasi_batch, store as wasi_store};
