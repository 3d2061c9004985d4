//! cartlab's cart and session logic, shared by the `stateless-cart` and `stateful-cart` Spin
//! components and tested natively. Plain Rust: no Spin types.
//!
//! A component adapter builds [`Settings`] from Spin variables, an [`Instance`] from its
//! statics, a [`Request`] from the HTTP request, and calls [`handle`] with its
//! [`SessionStore`]: [`KvSessionStore`] over Spin key-value (stateless) or a static
//! [`MemoryStore`] (stateful, the contrast).

pub mod api;
pub mod cart;
pub mod cookie;
pub mod error;
pub mod money;
pub mod session;
pub mod settings;
pub mod store;

pub use api::{
    CRASH_MESSAGE, Handled, Instance, MAX_BODY_BYTES, Request, Response, error_response, handle,
};
pub use cart::{Cart, CartError, CartLine};
pub use error::{ApiError, ErrorCode};
pub use money::Cents;
pub use session::{SessionId, SessionRecord};
pub use settings::{ConfigError, Settings, VARIABLE_NAMES};
pub use store::{KeyValue, KvSessionStore, MemoryStore, SessionStore, StoreError, session_key};
