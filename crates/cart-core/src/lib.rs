//! cartlab's cart and session logic, shared by every build of the cart components (spin-sdk 7
//! for Spin >= 4.1 and Akamai Functions, spin-sdk 5.2 for Spin 3.x hosts) and tested natively.
//! Plain Rust: no Spin types; each SDK's adapter implements the small traits here
//! ([`RedisCommands`], [`WasiBucket`]).
//!
//! A component adapter builds [`Settings`] from Spin variables, an [`Instance`] from its
//! statics, a [`Request`] from the HTTP request, and calls [`handle`] with its
//! [`SessionStore`]: [`KvSessionStore`] over a compare-and-swap byte store (stateless:
//! `wasi:keyvalue` or Redis through `spin:redis`) or a static [`MemoryStore`] (stateful, the
//! contrast).
//!
//! Sessions are lost-update-free: every write is conditional on the version read, retried with
//! jittered back-off up to [`MAX_ATTEMPTS`] times, then answered 409 `conflict`. Every change
//! carries an operation id the record remembers ([`idempotency`]), so a change is never applied
//! twice and its outcome is read back rather than taken from a store that may misreport it.
//! Sessions expire after an idle timeout (sliding) and an absolute lifetime, checked on every
//! read; the cookie's `Max-Age` and the store's TTL are the same remaining lifetime; stores
//! without a TTL keep an [`expiry`] queue.

pub mod api;
pub mod cart;
pub mod contract;
pub mod cookie;
pub mod error;
pub mod expiry;
mod hex;
pub mod idempotency;
pub mod kv_sessions;
pub mod money;
pub mod session;
pub mod settings;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use api::{
    CRASH_MESSAGE, Handled, Instance, MAX_ATTEMPTS, MAX_BODY_BYTES, Request, Response,
    error_response, handle, header, now_unix_secs,
};
pub use cart::{Cart, CartError, CartLine};
pub use error::{ApiError, ErrorCode};
pub use idempotency::{
    IDEMPOTENCY_KEY_HEADER, OpStamp, Operation, REMEMBERED_OPS, REPLAYED_HEADER,
};
pub use kv_sessions::KvSessionStore;
pub use money::Cents;
pub use session::{Lifetime, SessionId, SessionRecord};
pub use settings::{ConfigError, Secret, Settings, StoreMode, VARIABLE_NAMES};
pub use store::{
    Backend, BackendCas, CAS_SCRIPT, KeyValue, MemoryKeyValue, MemoryStore, RedisArg,
    RedisCommands, RedisKeyValue, RedisReply, SessionStore, StoreError, TOMBSTONE, WasiBucket,
    WasiKeyValue, key_value_error, redis_error, session_key,
};
