//! Host-side bindings for the Spin interfaces in `wit/` (key-value, variables).
//! wasi:http and the WASI basics come from wasmtime-wasi(-http).

wasmtime::component::bindgen!({
    path: "wit",
    world: "cartlab:host/spin-host",
    imports: { default: store | trappable | tracing },
    with: {
        "spin:key-value/key-value.store": crate::spin_host::OpenStore,
    },
});

pub use spin::key_value::key_value;
pub use spin::variables::variables;
