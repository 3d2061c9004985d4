//! The cartlab lab host: runs a Spin app's components on wasmtime with Spin's
//! semantics (routes, key-value, variables, instance reuse), in rooms by concern whose
//! arrows run one way: `commands` → `serve` → `runtime` → `app`.

pub mod app;
pub mod client;
pub mod commands;
pub mod runtime;
pub mod serve;
