//! One function per route.

use super::body::{parse_add_body, parse_digits};
use super::reply::{Reply, cart_reply};
use super::types::{Context, Request};
use super::update::{Change, update_session};
use crate::cart::Cart;
use crate::contract;
use crate::cookie::{expired_session_cookie, presented_session_id};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency;
use crate::store::SessionStore;

/// What an instance says as `POST /crash` brings it down (the seed's words).
pub const CRASH_MESSAGE: &str = "Server is going down!";

pub(super) async fn get_cart<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
) -> Result<Reply, ApiError> {
    update_session(cx, req, Change::Touch, None).await
}

pub(super) async fn add_item<S: SessionStore>(
    cx: &Context<'_, S>,
    req: &Request<'_>,
) -> Result<Reply, ApiError> {
    // Validate everything about the request before touching the store.
    let (item, price, quantity) = parse_add_body(req)?;
    let key = idempotency::client_key(req.headers)?;
    update_session(cx, req, Change::Add(item, price, quantity), key).await
}

pub(super) async fn remove_line<S: SessionStore>(
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

pub(super) async fn clear_cart<S: SessionStore>(
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

pub(super) async fn health<S: SessionStore>(cx: &Context<'_, S>) -> Result<Reply, ApiError> {
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

pub(super) fn crash<S>(cx: &Context<'_, S>) -> Result<Reply, ApiError> {
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

pub(super) fn index<S>(cx: &Context<'_, S>) -> Reply {
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
