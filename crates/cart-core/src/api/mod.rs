//! Request handling: one async function from a request to a response, over a [`SessionStore`].
//!
//! Routes, under the component's prefix (`/stateless` or `/stateful`):
//!
//! | route | does |
//! |---|---|
//! | `GET /` | a small JSON index of these routes |
//! | `POST /cart/add` | `{"item": "MacBook Pro", "price": 2500, "quantity": 1}` (quantity optional, default 1); creates the session if needed |
//! | `GET /cart` | the cart (and slides the session's expiry); without a valid session an empty cart, `sessionId: null`, and no cookie (no session is created by reading) |
//! | `DELETE /cart/items/{n}` | removes line `n`, counted from 0 in the order of the `cart` array |
//! | `DELETE /cart` | forgets the session: deletes it from the store and expires the cookie |
//! | `GET /health` | checks the store for real; 503 `store_unavailable` if it fails |
//! | `POST /crash` | the adapter makes the instance trap instead of answering (if `crash_enabled`): the runtime's 500 is the answer |
//!
//! `POST /cart/add` and `DELETE /cart/items/{n}` honour an `Idempotency-Key` header: a repeat
//! with the same key answers the cart as it stands, marked `Idempotent-Replayed: true`, without
//! applying the change again; the same key with a different change is 422
//! `idempotency_key_reused`.
//!
//! Arrows one way: this file (entry and routing) → `routes` → `update` (the read → apply →
//! swap → read-back loop) and `body` (the add body) → `reply` (replies, JSON) → `types`.

mod body;
mod reply;
mod routes;
mod types;
mod update;

pub use body::MAX_BODY_BYTES;
pub use routes::CRASH_MESSAGE;
pub use types::{Handled, Instance, Request, Response, header};
pub use update::MAX_ATTEMPTS;

use crate::error::{ApiError, ErrorCode};
use crate::settings::Settings;
use crate::store::SessionStore;
use reply::Reply;
use routes::{add_item, clear_cart, crash, get_cart, health, index, remove_line};
use types::Context;

/// One request in this many of those that wrote also sweeps the expiry queue (stores without
/// native expiry). With [`crate::expiry::SWEEP_BATCH`] slots a sweep, the queue drains a slot
/// per write on average, as fast as writes can fill it: a slot is queued when a session is
/// created, and queued again only for a session written since its slot was queued.
pub const SWEEP_ONE_IN: u32 = 8;

/// The unix second now, as adapters pass it to [`handle`].
pub fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Handles one request. Never panics; every failure is a JSON error response.
pub async fn handle<S: SessionStore>(
    settings: &Settings,
    store: &S,
    instance: &Instance,
    now_unix_secs: u64,
    req: Request<'_>,
) -> Handled {
    let cx = Context {
        settings,
        store,
        instance,
        now: now_unix_secs,
    };
    let reply = route(&cx, &req).await.unwrap_or_else(Reply::error);
    // Housekeeping for stores without native expiry, on a share of the requests that wrote to
    // the store (a read that writes nothing stays one store read); bounded work, and its
    // failure is not this request's.
    if reply.wrote && reply.status < 500 && sweep_due() {
        let _ = store.sweep(now_unix_secs, &settings.lifetime()).await;
    }
    let crash = reply.crash;
    Handled {
        response: reply.into_response(instance),
        crash,
    }
}

fn sweep_due() -> bool {
    getrandom::u32().is_ok_and(|r| r % SWEEP_ONE_IN == 0)
}

/// The response for an error raised outside [`handle`] (e.g. a bad Spin variable), with the
/// same headers as every other response.
pub fn error_response(instance: &Instance, error: &ApiError) -> Response {
    Reply::error(error.clone()).into_response(instance)
}

enum Route<'p> {
    Index,
    Cart,
    AddItem,
    CartLine(&'p str),
    Health,
    Crash,
}

async fn route<S: SessionStore>(cx: &Context<'_, S>, req: &Request<'_>) -> Result<Reply, ApiError> {
    let path = local_path(&cx.settings.base_path, req.path);
    let (route, allow) = match path {
        "/" => (Route::Index, "GET"),
        "/cart" => (Route::Cart, "GET, DELETE"),
        "/cart/add" => (Route::AddItem, "POST"),
        "/health" => (Route::Health, "GET"),
        "/crash" => (Route::Crash, "POST"),
        other => match other.strip_prefix("/cart/items/") {
            Some(n) if !n.is_empty() && !n.contains('/') => (Route::CartLine(n), "DELETE"),
            _ => {
                return Err(ApiError::new(
                    ErrorCode::NotFound,
                    format!("no route {} {}", req.method, req.path),
                ));
            }
        },
    };
    match (route, req.method) {
        (Route::Index, "GET") => Ok(index(cx)),
        (Route::Cart, "GET") => get_cart(cx, req).await,
        (Route::Cart, "DELETE") => clear_cart(cx, req).await,
        (Route::AddItem, "POST") => add_item(cx, req).await,
        (Route::CartLine(n), "DELETE") => remove_line(cx, req, n).await,
        (Route::Health, "GET") => health(cx).await,
        (Route::Crash, "POST") => crash(cx),
        _ => Err(ApiError::method_not_allowed(req.method, allow)),
    }
}

/// The path below the component prefix, without a query string; `""` becomes `/`.
fn local_path<'p>(base_path: &str, path: &'p str) -> &'p str {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let path = match path.strip_prefix(base_path) {
        Some(rest) if !base_path.is_empty() && (rest.is_empty() || rest.starts_with('/')) => rest,
        _ => path,
    };
    if path.is_empty() { "/" } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths() {
        assert_eq!(local_path("/stateless", "/stateless/cart/add"), "/cart/add");
        assert_eq!(local_path("/stateless", "/cart/add"), "/cart/add");
        assert_eq!(local_path("/stateless", "/stateless"), "/");
        assert_eq!(local_path("/stateless", ""), "/");
        assert_eq!(local_path("/stateless", "/stateless/cart?x=1"), "/cart");
        assert_eq!(
            local_path("/stateless", "/statelessness/cart"),
            "/statelessness/cart"
        );
        assert_eq!(
            local_path("/stateful", "/stateless/cart"),
            "/stateless/cart"
        );
    }
}
