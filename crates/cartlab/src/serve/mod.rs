//! The HTTP side: the running host a request sees, the front that routes requests to
//! components, and the lab's own `/_lab/` API.

pub mod connection;
pub mod cross_site;
pub mod host;
pub mod lab_api;
pub mod limits;
pub mod new_sessions;
pub mod request_body;
pub mod server;
pub mod tls;
