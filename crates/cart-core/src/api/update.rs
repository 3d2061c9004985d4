//! The read-modify-write of a session: read, apply, conditional write, read back.

use super::reply::{Reply, cart_reply};
use super::types::{Context, Request};
use crate::cart::{Cart, CartError};
use crate::cookie::{presented_session_id, session_cookie};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::{Operation, fingerprint};
use crate::money::Cents;
use crate::session::{SessionId, SessionRecord};
use crate::store::{SessionStore, StoreError};

// ---- sessions --------------------------------------------------------------------------------

/// Most read-modify-write attempts per request before answering 409 `conflict`.
pub const MAX_ATTEMPTS: u32 = 12;
/// Back-off before retry `n` (1-based) is random in `0..=min(BASE << n, CAP)` ms ("full
/// jitter"), so colliding requests spread out instead of colliding again.
const BACKOFF_BASE_MS: u64 = 2;
const BACKOFF_CAP_MS: u64 = 256;
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

fn no_randomness(e: getrandom::Error) -> ApiError {
    eprintln!("cartlab: no randomness for an id: {e}");
    ApiError::new(
        ErrorCode::InternalError,
        "the server could not make a random id; try again",
    )
}

/// What a request does to its session.
pub(super) enum Change {
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
///
/// Two shortcuts keep the common requests at one or two store round trips: a touch reads
/// with a plain read and writes nothing while the session was written recently
/// ([`TOUCH_EVERY_IDLE_DIVISOR`]); an add without a live session creates one under a fresh
/// id with plain writes ([`SessionStore::create`]), which nothing can race.
pub(super) async fn update_session<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
    change: Change,
    client_key: Option<String>,
) -> Result<Reply, ApiError> {
    let Some(id) = presented_session_id(req.headers, &cx.settings.cookie_name) else {
        return without_session(cx, &change, client_key).await;
    };
    if let Change::Touch = change {
        match cx.store.read(&id).await? {
            None => return Ok(cart_reply(cx, None, &Cart::new())),
            Some(record) if !record.is_expired(cx.now, &cx.settings.lifetime()) => {
                if let Some(reply) = settled(cx, &id, &record, None, true)? {
                    return Ok(reply);
                }
            }
            // Expired: the path below deletes it.
            Some(_) => {}
        }
    }
    let op = change.operation(client_key.as_deref())?;
    let mut write_error: Option<StoreError> = None;
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            cx.store.pause(backoff_ms(attempt)).await;
        }
        // The first read, or a fresh one after the pause (what was read back is stale).
        let Some((id, mut record, expected)) = load_live(cx, id.clone()).await? else {
            // Gone (never there, expired, or ended by a concurrent `DELETE /cart`).
            return without_session(cx, &change, client_key).await;
        };
        if let Some(reply) = settled(cx, &id, &record, op.as_ref(), attempt == 0)? {
            return Ok(if attempt > 0 { reply.wrote() } else { reply });
        }
        apply(&change, &mut record)?;
        if let Some(op) = &op {
            record.remember(op.stamp.clone());
        }
        // Never move `touched` back (another instance's clock may be a little ahead).
        record.touched = record.touched.max(cx.now);
        let remaining = record
            .remaining_secs(cx.now, &cx.settings.lifetime())
            .max(1);
        match cx
            .store
            .save_if(&id, &record, Some(expected), remaining)
            .await
        {
            Ok(true) if cx.store.confirms_writes() => {
                return Ok(session_reply(cx, &id, &record, false).wrote());
            }
            Ok(_) => write_error = None,
            Err(e) => write_error = Some(e),
        }
        // Whatever the store answered, what it holds says what happened.
        if let Some((id, record, _)) = &load_live(cx, id).await?
            && let Some(reply) = settled(cx, id, record, op.as_ref(), false)?
        {
            return Ok(reply.wrote());
        }
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

/// Applies `change` to the cart of `record`.
fn apply(change: &Change, record: &mut SessionRecord) -> Result<(), CartError> {
    match change {
        Change::Touch => {}
        Change::Add(item, price, quantity) => record.cart.add(item.clone(), *price, *quantity)?,
        Change::Remove(index) => {
            record.cart.remove_line(*index)?;
        }
    }
    Ok(())
}

/// The answer when the client has no live session: an empty cart for a touch, no such line
/// for a removal, and for an add a new session holding it.
async fn without_session<S: SessionStore>(
    cx: &Context<'_, S>,
    change: &Change,
    client_key: Option<String>,
) -> Result<Reply, ApiError> {
    match change {
        Change::Touch => Ok(cart_reply(cx, None, &Cart::new())),
        Change::Remove(index) => Err(CartError::NoSuchLine {
            index: *index,
            lines: 0,
        }
        .into()),
        Change::Add(..) => {
            let op = change.operation(client_key.as_deref())?;
            let lifetime = cx.settings.lifetime();
            let mut record = SessionRecord::new(cx.now);
            apply(change, &mut record)?;
            if let Some(op) = op {
                record.remember(op.stamp);
            }
            let id = SessionId::generate().map_err(no_randomness)?;
            let remaining = record.remaining_secs(cx.now, &lifetime).max(1);
            cx.store
                .create(&id, &record, remaining, record.deadline(&lifetime))
                .await?;
            Ok(session_reply(cx, &id, &record, false).wrote())
        }
    }
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
