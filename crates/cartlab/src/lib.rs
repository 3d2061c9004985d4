//! The cartlab lab host: runs a Spin app's components on wasmtime with Spin's
//! semantics (routes, key-value, variables, instance reuse), split by concern.

pub mod app;
pub mod bindings;
pub mod client;
pub mod commands;
pub mod component_build;
pub mod fleet;
pub mod host;
pub mod instance;
pub mod kv;
pub mod lab;
pub mod lab_api;
pub mod outbound;
pub mod pool;
pub mod server;
pub mod slot;
pub mod spin_host;
pub mod spin_redis;
pub mod testing;
pub mod up;
pub mod wasi_keyvalue;
