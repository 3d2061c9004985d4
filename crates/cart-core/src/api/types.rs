//! What a request passes through: the request, the instance serving it, the response, and
//! the per-request context every handler gets.

use crate::settings::Settings;

/// The instance serving a request: its random id, fixed for its life (shown as `serverId`), and
/// how many requests it has served, this one included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub requests_served: u64,
}

impl Instance {
    /// A fresh random instance id: 8 hex digits.
    pub fn random_id() -> Result<String, getrandom::Error> {
        Ok(format!("{:08x}", getrandom::u32()?))
    }
}

/// A request as the handler sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path after the component prefix (`/cart/add`); a full path (`/stateless/cart/add`)
    /// also works, its prefix is stripped. A query string is ignored.
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// A response to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response, and whether the adapter must make the instance trap instead of sending it
/// (then the response is what the instance says as it goes down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    pub response: Response,
    pub crash: bool,
}

pub(super) struct Context<'a, S> {
    pub settings: &'a Settings,
    pub store: &'a S,
    pub instance: &'a Instance,
    pub now: u64,
}
