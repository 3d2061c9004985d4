//! Running components: the engine's Spin interfaces and key-value backends, instances, their
//! pools with Spin's reuse rules, fleets of long-lived instances, the lab's registry of them,
//! where their output goes, and building them.

pub mod bindings;
pub mod component_build;
pub mod fermyon_spin;
pub mod fleet;
pub mod guest_output;
pub mod host_profile;
pub mod instance;
pub mod instances;
pub mod kv;
pub mod lab;
pub mod outbound;
pub mod pool;
pub mod session_cookies;
pub mod slot;
pub mod spin_host;
pub mod spin_redis;
pub mod wasi_keyvalue;
