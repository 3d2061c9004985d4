//! What a request passes through: the request, the instance serving it, the response, and
//! the per-request context every handler gets.

use crate::settings::Settings;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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

    /// The instance serving the request at hand, in a component (a wasm instance's statics
    /// live as long as it does): its id, fixed on first use, and its count of requests
    /// served, this one included. An adapter calls it once per request.
    pub fn for_request() -> Instance {
        static ID: OnceLock<String> = OnceLock::new();
        static SERVED: AtomicU64 = AtomicU64::new(0);
        Instance {
            id: ID.get_or_init(Instance::id_from_env).clone(),
            requests_served: SERVED.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// The id an adapter gives its instance: the name the host gave it through its
    /// environment ([`INSTANCE_ID_ENV`](crate::contract::INSTANCE_ID_ENV)), when it gave a sane
    /// one (the lab host does); otherwise a random id, as under Spin.
    pub fn id_from_env() -> String {
        std::env::var(crate::contract::INSTANCE_ID_ENV)
            .ok()
            .filter(|id| is_sane_instance_id(id))
            .unwrap_or_else(|| Instance::random_id().unwrap_or_else(|_| "no-rng".into()))
    }
}

/// 1 to 64 visible ASCII characters: fit for a header value and a log line.
fn is_sane_instance_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
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
        header(&self.headers, name)
    }
}

/// The first value of header `name` among `headers` (case-insensitive).
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response, and whether the adapter must make the instance trap instead of sending it
/// (then the response is what the instance says as it goes down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    pub response: Response,
    pub crash: bool,
}

impl Handled {
    /// The response to send, or, for a crash, a trap (a panic is `unreachable` in wasm).
    /// Trap before answering, never after: an instance that answered first could take the
    /// client's next request in the moment before it dies (Spin hands requests to any
    /// instance that looks alive), and that request would fail too. Trapping here, the crash
    /// costs exactly this request: the runtime answers 500, discards the instance, and every
    /// later request gets a new one. What went down is in the panic message, in the host's
    /// log.
    pub fn response_or_trap(self) -> Response {
        if self.crash {
            panic!(
                "cartlab: crash requested by POST /crash: {}",
                String::from_utf8_lossy(&self.response.body)
            );
        }
        self.response
    }
}

pub(super) struct Context<'a, S> {
    pub settings: &'a Settings,
    pub store: &'a S,
    pub instance: &'a Instance,
    pub now: u64,
}

#[cfg(test)]
mod tests {
    use super::is_sane_instance_id;

    #[test]
    fn host_instance_ids_are_taken_only_when_sane() {
        for good in ["stateful-cart#3", "a", &"x".repeat(64)] {
            assert!(is_sane_instance_id(good), "{good:?}");
        }
        for bad in [
            "",
            "has space",
            "tab\t",
            "é",
            "line\nbreak",
            &"x".repeat(65),
        ] {
            assert!(!is_sane_instance_id(bad), "{bad:?}");
        }
    }
}
