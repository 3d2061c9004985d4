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
//! | `POST /crash` | answers, then the adapter makes the instance trap (if `crash_enabled`) |
//!
//! `POST /cart/add` and `DELETE /cart/items/{n}` honour an `Idempotency-Key` header: a repeat
//! with the same key answers the cart as it stands, marked `Idempotent-Replayed: true`, without
//! applying the change again; the same key with a different change is 422
//! `idempotency_key_reused`.

use crate::cart::{Cart, CartError, validate_item};
use crate::contract::{self, CartView, INSTANCE_HEADER, LineView, REQUESTS_HEADER};
use crate::cookie::{expired_session_cookie, presented_session_id, session_cookie};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{self, Operation, REPLAYED_HEADER, fingerprint};
use crate::money::{Cents, Dollars, parse_price};
use crate::session::{SessionId, SessionRecord};
use crate::settings::Settings;
use crate::store::{SessionStore, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// The message `POST /crash` answers with (the seed's).
pub const CRASH_MESSAGE: &str = "Server is going down!";

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

/// A response, and whether the adapter must make the instance trap after (or instead of)
/// sending it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    pub response: Response,
    pub crash: bool,
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

struct Context<'a, S> {
    settings: &'a Settings,
    store: &'a S,
    instance: &'a Instance,
    now: u64,
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

// ---- sessions --------------------------------------------------------------------------------

/// Most read-modify-write attempts per request before answering 409 `conflict`.
pub const MAX_ATTEMPTS: u32 = 12;
/// Back-off before retry `n` (1-based) is random in `0..=min(BASE << n, CAP)` ms ("full
/// jitter"), so colliding requests spread out instead of colliding again.
const BACKOFF_BASE_MS: u64 = 2;
const BACKOFF_CAP_MS: u64 = 256;
/// One request in this many of those that wrote also sweeps the expiry queue (stores without
/// native expiry). With [`crate::expiry::SWEEP_BATCH`] slots a sweep, the queue drains a slot
/// per write on average, as fast as writes can fill it: a slot is queued when a session is
/// created, and queued again only for a session written since its slot was queued.
pub const SWEEP_ONE_IN: u32 = 8;
/// Reading a session rewrites it (sliding its expiry) only once this share of the idle timeout
/// has passed since it was last written: most reads cost one store read, and the cookie's
/// `Max-Age` and the store's TTL still agree, both counted from the last write.
const TOUCH_EVERY_IDLE_DIVISOR: u64 = 10;

fn backoff_ms(retry: u32) -> u64 {
    let ceiling = (BACKOFF_BASE_MS << retry.min(16)).min(BACKOFF_CAP_MS);
    getrandom::u32().map_or(ceiling, |r| u64::from(r) % (ceiling + 1))
}

/// A live session as read from the store: its id, its record and the version read.
type Found<V> = Option<(SessionId, SessionRecord, V)>;

/// Session `id`, if the store holds it and it has not expired. An expired record is never
/// served: it is deleted (if unchanged) and counts as absent.
async fn load_live<S: SessionStore>(
    cx: &Context<'_, S>,
    id: SessionId,
) -> Result<Found<S::Version>, StoreError> {
    match cx.store.load(&id).await? {
        Some((record, version)) if record.is_expired(cx.now, &cx.settings.lifetime()) => {
            // If it changed meanwhile, a request that read it before it expired wrote it:
            // leave that alone; this request still treats the session as gone.
            cx.store.delete_if(&id, version).await?;
            Ok(None)
        }
        Some((record, version)) => Ok(Some((id, record, version))),
        None => Ok(None),
    }
}

/// The client's live session, if it presented one. The cookie value is format-checked first
/// (malformed values never reach the store); unknown ids are not adopted.
async fn find_session<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
) -> Result<Found<S::Version>, StoreError> {
    match presented_session_id(req.headers, &cx.settings.cookie_name) {
        Some(id) => load_live(cx, id).await,
        None => Ok(None),
    }
}

fn no_randomness(e: getrandom::Error) -> ApiError {
    ApiError::new(
        ErrorCode::InternalError,
        format!("no randomness for an id: {e}"),
    )
}

/// What a request does to its session.
enum Change {
    /// Only uses it (`GET /cart`): slides its expiry.
    Touch,
    /// Adds to the cart, creating the session if there is none.
    Add(String, Cents, u32),
    /// Removes cart line `n`.
    Remove(usize),
}

impl Change {
    /// The operation that names this change in the session record (none for a touch, which
    /// is safe to repeat): the client's `Idempotency-Key` if it sent one, else a random id.
    fn operation(&self, client_key: Option<&str>) -> Result<Option<Operation>, ApiError> {
        let request = match self {
            Change::Touch => return Ok(None),
            Change::Add(item, price, quantity) => {
                fingerprint(&["add", item, &price.0.to_string(), &quantity.to_string()])
            }
            Change::Remove(index) => fingerprint(&["remove", &index.to_string()]),
        };
        Operation::new(client_key, request)
            .map(Some)
            .map_err(no_randomness)
    }
}

/// The read-modify-write of one request, lost-update-free and applied at most once, on a
/// store whose compare-and-swap answers may be wrong in both directions.
///
/// Read the session and its version; unless the record shows this change done already, apply
/// it, note its operation id in the record and write conditionally on the version. Then,
/// whatever the store answered (unless it [confirms](SessionStore::confirms_writes) a
/// success), read the record back: the change is done when the record holds its operation id.
/// If not, back off (with jitter) and go again from what was read, at most [`MAX_ATTEMPTS`]
/// writes, then 409 `conflict` (503 if the last write failed): the last read showed the change
/// not applied. A read that fails is 503 at once, and then the change may have been applied
/// by a write before it: a client that must know retries with the same `Idempotency-Key`.
async fn update_session<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
    change: Change,
    client_key: Option<String>,
) -> Result<Reply, ApiError> {
    let lifetime = cx.settings.lifetime();
    let op = change.operation(client_key.as_deref())?;
    let mut found = find_session(cx, req).await?;
    // The session this request wrote to last: a new one keeps its id across attempts (and is
    // queued for expiry once).
    let mut written: Option<SessionId> = None;
    let mut write_error: Option<StoreError> = None;
    for attempt in 0..MAX_ATTEMPTS {
        if let Some(id) = written.clone() {
            cx.store.pause(backoff_ms(attempt)).await;
            // What was read back before the pause is stale by now.
            found = load_live(cx, id).await?;
        }
        if let Some((id, record, _)) = &found
            && let Some(reply) = settled(cx, id, record, op.as_ref(), attempt == 0)?
        {
            return Ok(if written.is_some() {
                reply.wrote()
            } else {
                reply
            });
        }
        let (id, mut record, expected) = match found.take() {
            Some((id, record, version)) => (id, record, Some(version)),
            None => match &change {
                Change::Touch => return Ok(cart_reply(cx, None, &Cart::new())),
                Change::Remove(index) => {
                    return Err(CartError::NoSuchLine {
                        index: *index,
                        lines: 0,
                    }
                    .into());
                }
                Change::Add(..) => {
                    let record = SessionRecord::new(cx.now);
                    let id = match written.take() {
                        Some(id) => id,
                        None => {
                            let id = SessionId::generate().map_err(no_randomness)?;
                            // Queued before it is written: no session escapes expiry.
                            cx.store
                                .track_expiry(&id, record.deadline(&lifetime))
                                .await?;
                            id
                        }
                    };
                    (id, record, None)
                }
            },
        };
        match &change {
            Change::Touch => {}
            Change::Add(item, price, quantity) => {
                record.cart.add(item.clone(), *price, *quantity)?
            }
            Change::Remove(index) => {
                record.cart.remove_line(*index)?;
            }
        }
        if let Some(op) = &op {
            record.remember(op.stamp.clone());
        }
        // Never move `touched` back (another instance's clock may be a little ahead).
        record.touched = record.touched.max(cx.now);
        let remaining = record.remaining_secs(cx.now, &lifetime).max(1);
        match cx.store.save_if(&id, &record, expected, remaining).await {
            Ok(true) if cx.store.confirms_writes() => {
                return Ok(session_reply(cx, &id, &record, false).wrote());
            }
            Ok(_) => write_error = None,
            Err(e) => write_error = Some(e),
        }
        // Whatever the store answered, what it holds says what happened.
        if let Some((id, record, _)) = &load_live(cx, id.clone()).await?
            && let Some(reply) = settled(cx, id, record, op.as_ref(), false)?
        {
            return Ok(reply.wrote());
        }
        written = Some(id);
    }
    Err(match write_error {
        Some(e) => e.into(),
        None => ApiError::new(
            ErrorCode::Conflict,
            format!(
                "the session kept changing under concurrent requests ({MAX_ATTEMPTS} attempts); nothing was changed, try again"
            ),
        ),
    })
}

/// The answer if this request's change is in `record` already: for a touch, a session written
/// recently enough; for an operation, its id among those applied (a replay if it was there
/// before this request wrote anything). A client key reused for another change is refused.
fn settled<S>(
    cx: &Context<'_, S>,
    id: &SessionId,
    record: &SessionRecord,
    op: Option<&Operation>,
    before_writing: bool,
) -> Result<Option<Reply>, ApiError> {
    let replayed = match op {
        None => {
            let since_write = cx.now.saturating_sub(record.touched);
            if since_write > cx.settings.session_idle_secs / TOUCH_EVERY_IDLE_DIVISOR {
                return Ok(None);
            }
            false
        }
        Some(op) => match record.applied(&op.stamp.id) {
            None => return Ok(None),
            Some(stamp) if stamp.request != op.stamp.request => {
                return Err(ApiError::new(
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was already used on this session for a different change; use a new key for a new change",
                ));
            }
            Some(_) => before_writing && op.from_client,
        },
    };
    Ok(Some(session_reply(cx, id, record, replayed)))
}

/// The cart of a live session, with its cookie (`Max-Age`: the session's remaining lifetime).
fn session_reply<S>(
    cx: &Context<'_, S>,
    id: &SessionId,
    record: &SessionRecord,
    replayed: bool,
) -> Reply {
    let remaining = record
        .remaining_secs(cx.now, &cx.settings.lifetime())
        .max(1);
    let mut reply = cart_reply(cx, Some(id), &record.cart);
    reply.set_cookie = Some(session_cookie(cx.settings, id, remaining));
    reply.replayed = replayed;
    reply
}

// ---- routes ----------------------------------------------------------------------------------

async fn get_cart<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
) -> Result<Reply, ApiError> {
    update_session(cx, req, Change::Touch, None).await
}

async fn add_item<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
) -> Result<Reply, ApiError> {
    // Validate everything about the request before touching the store.
    let (item, price, quantity) = parse_add_body(req)?;
    let key = idempotency::client_key(req.headers)?;
    update_session(cx, req, Change::Add(item, price, quantity), key).await
}

async fn remove_line<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
    n: &str,
) -> Result<Reply, ApiError> {
    let index = parse_digits::<usize>(n).ok_or_else(|| {
        ApiError::new(
            ErrorCode::NoSuchLine,
            format!("{n:?} is not a line number; lines are numbered from 0"),
        )
    })?;
    let key = idempotency::client_key(req.headers)?;
    update_session(cx, req, Change::Remove(index), key).await
}

async fn clear_cart<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
) -> Result<Reply, ApiError> {
    // Deleting needs no lookup: whoever holds an id owns that session.
    if let Some(id) = presented_session_id(req.headers, &cx.settings.cookie_name) {
        cx.store.delete(&id).await?;
    }
    let mut reply = cart_reply(cx, None, &Cart::new());
    reply.set_cookie = Some(expired_session_cookie(cx.settings));
    Ok(reply)
}

async fn health<S: SessionStore>(cx: &Context<'_, S>) -> Result<Reply, ApiError> {
    cx.store.check().await?;
    Ok(Reply::json(
        200,
        &contract::Health {
            status: "healthy".to_owned(),
            server_id: cx.instance.id.clone(),
            server_kind: cx.settings.server_kind.to_owned(),
            requests_served: cx.instance.requests_served,
        },
    ))
}

fn crash<S>(cx: &Context<'_, S>) -> Result<Reply, ApiError> {
    if !cx.settings.crash_enabled {
        return Err(ApiError::new(
            ErrorCode::CrashDisabled,
            "POST /crash is switched off (Spin variable crash_enabled = false)",
        ));
    }
    let mut reply = Reply::json(
        200,
        &contract::Crash {
            message: CRASH_MESSAGE.to_owned(),
            server_id: cx.instance.id.clone(),
            server_kind: cx.settings.server_kind.to_owned(),
            requests_served: cx.instance.requests_served,
        },
    );
    reply.crash = true;
    Ok(reply)
}

fn index<S>(cx: &Context<'_, S>) -> Reply {
    let base = &cx.settings.base_path;
    let routes = [
        "POST /cart/add",
        "GET /cart",
        "DELETE /cart/items/{n}",
        "DELETE /cart",
        "GET /health",
        "POST /crash",
    ]
    .iter()
    .map(|r| r.replacen(' ', &format!(" {base}"), 1))
    .collect();
    Reply::json(
        200,
        &contract::Index {
            service: "cartlab".to_owned(),
            server_id: cx.instance.id.clone(),
            server_kind: cx.settings.server_kind.to_owned(),
            requests_served: cx.instance.requests_served,
            routes,
        },
    )
}

// ---- request bodies --------------------------------------------------------------------------

/// `{"item": "MacBook Pro", "price": 2500, "quantity": 1}`; fields are kept raw so the price is
/// read from its JSON text, never through a float. Unknown fields are ignored.
#[derive(Deserialize)]
struct AddItemBody<'a> {
    #[serde(borrow)]
    item: Option<&'a RawValue>,
    #[serde(borrow)]
    price: Option<&'a RawValue>,
    #[serde(borrow)]
    quantity: Option<&'a RawValue>,
}

fn parse_add_body(req: &Request<'_>) -> Result<(String, Cents, u32), ApiError> {
    let declared = header(req.headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if req.body.len() > MAX_BODY_BYTES || declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body must be at most {MAX_BODY_BYTES} bytes"),
        ));
    }
    let media_type = header(req.headers, "content-type")
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .unwrap_or("");
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("content-type must be application/json, not {media_type:?}"),
        ));
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            r#"request body is empty; send e.g. {"item": "MacBook Pro", "price": 2500}"#,
        ));
    }
    // serde would also read a JSON array into the struct, positionally (`["Pen", 1]`).
    if req.body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            ErrorCode::InvalidJson,
            "request body must be a JSON object",
        ));
    }
    let body: AddItemBody = serde_json::from_slice(req.body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("request body must be a JSON object: {e}"),
        )
    })?;

    let item = body
        .item
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidItem, "item is required"))?;
    let item = serde_json::from_str::<String>(item.get())
        .map_err(|_| ApiError::new(ErrorCode::InvalidItem, "item must be a string"))?;
    let item = validate_item(&item)?;

    let price = body
        .price
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidPrice, "price is required"))?;
    let price = parse_price(price.get())
        .map_err(|e| ApiError::new(ErrorCode::InvalidPrice, e.to_string()))?;

    let quantity = match body.quantity {
        None => 1,
        // A plain JSON integer only: not 1.0, not "1", not 1e0.
        Some(raw) => parse_digits::<u32>(raw.get())
            .filter(|q| (1..=crate::cart::MAX_QUANTITY).contains(q))
            .ok_or(CartError::InvalidQuantity)?,
    };
    Ok((item, price, quantity))
}

/// A non-negative decimal integer written with digits only (`parse` alone would take `+1`).
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// ---- responses -------------------------------------------------------------------------------

fn cart_reply<S>(cx: &Context<'_, S>, id: Option<&SessionId>, cart: &Cart) -> Reply {
    Reply::json(
        200,
        &CartView {
            server_id: cx.instance.id.clone(),
            server_kind: cx.settings.server_kind.to_owned(),
            requests_served: cx.instance.requests_served,
            session_id: id.map(SessionId::fingerprint),
            cart: cart
                .lines()
                .iter()
                .map(|line| LineView {
                    item: line.item.clone(),
                    price: Dollars(line.price),
                    quantity: line.quantity,
                    line_total: Dollars(line.line_total()),
                })
                .collect(),
            item_count: cart.item_count(),
            total: Dollars(cart.total()),
        },
    )
}

/// A response before the headers every response shares are added.
struct Reply {
    status: u16,
    body: String,
    set_cookie: Option<String>,
    allow: Option<&'static str>,
    retry_after: bool,
    /// The answer to a repeated `Idempotency-Key`: the change was applied before.
    replayed: bool,
    /// This request wrote to the session store.
    wrote: bool,
    crash: bool,
}

impl Reply {
    fn json(status: u16, body: &impl Serialize) -> Reply {
        Reply {
            status,
            // Our bodies are plain structs of strings and numbers: serialising cannot fail.
            body: serde_json::to_string(body).unwrap_or_default(),
            set_cookie: None,
            allow: None,
            retry_after: false,
            replayed: false,
            wrote: false,
            crash: false,
        }
    }

    fn error(error: ApiError) -> Reply {
        Reply {
            status: error.status(),
            body: error.to_json(),
            set_cookie: None,
            allow: error.allow,
            retry_after: matches!(
                error.code,
                ErrorCode::StoreUnavailable | ErrorCode::Conflict
            ),
            replayed: false,
            wrote: false,
            crash: false,
        }
    }

    fn wrote(mut self) -> Reply {
        self.wrote = true;
        self
    }

    fn into_response(self, instance: &Instance) -> Response {
        let mut headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("cache-control".to_owned(), "no-store".to_owned()),
            (INSTANCE_HEADER.to_owned(), instance.id.clone()),
            (
                REQUESTS_HEADER.to_owned(),
                instance.requests_served.to_string(),
            ),
        ];
        if let Some(allow) = self.allow {
            headers.push(("allow".to_owned(), allow.to_owned()));
        }
        if self.retry_after {
            headers.push(("retry-after".to_owned(), "1".to_owned()));
        }
        if self.replayed {
            headers.push((REPLAYED_HEADER.to_owned(), "true".to_owned()));
        }
        if let Some(cookie) = self.set_cookie {
            headers.push(("set-cookie".to_owned(), cookie));
        }
        Response {
            status: self.status,
            headers,
            body: self.body.into_bytes(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::new(
            ErrorCode::StoreUnavailable,
            format!("the session store is unavailable: {e}"),
        )
    }
}

impl From<crate::settings::ConfigError> for ApiError {
    fn from(e: crate::settings::ConfigError) -> ApiError {
        ApiError::new(ErrorCode::InvalidConfig, e.to_string())
    }
}

impl From<CartError> for ApiError {
    fn from(e: CartError) -> ApiError {
        let code = match e {
            CartError::InvalidItem(_) => ErrorCode::InvalidItem,
            CartError::InvalidQuantity => ErrorCode::InvalidQuantity,
            CartError::InvalidPrice => ErrorCode::InvalidPrice,
            CartError::CartFull => ErrorCode::CartFull,
            CartError::QuantityLimit { .. } => ErrorCode::QuantityLimit,
            CartError::NoSuchLine { .. } => ErrorCode::NoSuchLine,
        };
        ApiError::new(code, e.to_string())
    }
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
