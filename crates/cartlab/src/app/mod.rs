//! What the user wrote: `spin.toml`, `runtime-config.toml` and variable values, read and
//! checked once at start-up. Nothing here knows the server, the pool or the stores.

pub mod manifest;
pub mod routes;
pub mod runtime_config;
pub mod variables;
