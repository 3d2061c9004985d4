//! Replies: the JSON bodies and the headers every response shares, and how errors become
//! replies.

use super::types::{Context, Instance, Response};
use crate::cart::{Cart, CartError};
use crate::contract::{CartView, INSTANCE_HEADER, LineView, REQUESTS_HEADER};
use crate::error::{ApiError, ErrorCode};
use crate::idempotency::REPLAYED_HEADER;
use crate::money::Dollars;
use crate::session::SessionId;
use crate::store::StoreError;
use serde::Serialize;

pub(super) fn cart_reply<S>(cx: &Context<'_, S>, id: Option<&SessionId>, cart: &Cart) -> Reply {
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
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: String,
    pub(super) set_cookie: Option<String>,
    pub(super) allow: Option<&'static str>,
    pub(super) retry_after: bool,
    /// The answer to a repeated `Idempotency-Key`: the change was applied before.
    pub(super) replayed: bool,
    /// This request wrote to the session store.
    pub(super) wrote: bool,
    pub(super) crash: bool,
}

impl Reply {
    pub(super) fn json(status: u16, body: &impl Serialize) -> Reply {
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

    pub(super) fn error(error: ApiError) -> Reply {
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

    pub(super) fn wrote(mut self) -> Reply {
        self.wrote = true;
        self
    }

    pub(super) fn into_response(self, instance: &Instance) -> Response {
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

/// What failed, in the user's terms; the store's own words (addresses, client errors) go to
/// the log only (a component's stderr is Spin's log).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        eprintln!("cartlab: session store error: {e}");
        ApiError::new(
            ErrorCode::StoreUnavailable,
            "the session store is unreachable right now; try again",
        )
    }
}

/// The variable and what it must be; never its value (it may be a misplaced secret).
impl From<crate::settings::ConfigError> for ApiError {
    fn from(e: crate::settings::ConfigError) -> ApiError {
        eprintln!("cartlab: bad setting: {e}");
        ApiError::new(
            ErrorCode::InvalidConfig,
            format!("this component is misconfigured: {e}"),
        )
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
