//! The wire contract, stated once for the components, the lab host, its clients and tests:
//! header names, the session cookie's name prefix, and the JSON bodies.
//!
//! Money is [`Dollars`]: cents written as a JSON number of dollars (`2500`, `12.99`) and read
//! back from the number's text, never through a float.

use crate::money::Dollars;
use serde::{Deserialize, Serialize};

pub use crate::idempotency::{IDEMPOTENCY_KEY_HEADER, REPLAYED_HEADER};

/// The id of the instance that answered (its `serverId`), on every response.
pub const INSTANCE_HEADER: &str = "x-cartlab-instance";
/// The environment variable through which a host names each instance (as `wasmtime serve`
/// hands each instance its environment): the lab host sets it, and a component reports it as
/// its `serverId`; under hosts that do not (Spin), the component picks a random id.
pub const INSTANCE_ID_ENV: &str = "CARTLAB_INSTANCE_ID";
/// How many requests that instance has served, this one included.
pub const REQUESTS_HEADER: &str = "x-cartlab-requests";
/// A component's session cookie is this prefix and its kind: `cartlab_stateless`.
pub const COOKIE_PREFIX: &str = "cartlab_";

/// The session cookie's name for a component kind (`stateless`, `stateful`).
pub fn cookie_name(kind: &str) -> String {
    format!("{COOKIE_PREFIX}{kind}")
}

/// The cart, as every cart route answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartView {
    pub server_id: String,
    pub server_kind: String,
    pub requests_served: u64,
    /// A non-secret fingerprint of the session id, or null without a session.
    pub session_id: Option<String>,
    pub cart: Vec<LineView>,
    pub item_count: u64,
    pub total: Dollars,
}

/// One cart line; `cart` lists them in the order `DELETE /cart/items/{n}` counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    pub item: String,
    pub price: Dollars,
    pub quantity: u32,
    pub line_total: Dollars,
}

/// `POST /cart/add`: `{"item": "MacBook Pro", "price": 2500, "quantity": 1}`, quantity
/// optional (1). The handler reads it field by field to say which one is wrong; clients send
/// this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddItem {
    pub item: String,
    pub price: Dollars,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u32>,
}

/// Every failing response: `{"error":{"code":"...","message":"..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable snake_case code ([`crate::ErrorCode::as_str`]).
    pub code: String,
    pub message: String,
}

/// `GET /health` when the store answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: String,
    pub server_id: String,
    pub server_kind: String,
    pub requests_served: u64,
}

/// `POST /crash`: what the instance says as it goes down, in its panic message (the host's
/// log); never a response: the client gets the runtime's 500.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Crash {
    pub message: String,
    pub server_id: String,
    pub server_kind: String,
    pub requests_served: u64,
}

/// `GET /`: the component's routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub service: String,
    pub server_id: String,
    pub server_kind: String,
    pub requests_served: u64,
    pub routes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Cents;

    #[test]
    fn a_cart_reads_back_to_the_cent() {
        let text = r#"{"serverId":"a","serverKind":"stateless","requestsServed":3,"sessionId":null,"cart":[{"item":"Cable","price":19.99,"quantity":3,"lineTotal":59.97}],"itemCount":3,"total":59.97}"#;
        let view: CartView = serde_json::from_str(text).unwrap();
        assert_eq!(view.total, Dollars(Cents(5_997)));
        assert_eq!(view.cart[0].price, Dollars(Cents(1_999)));
        assert_eq!(serde_json::to_string(&view).unwrap(), text);
    }

    #[test]
    fn an_add_leaves_out_a_missing_quantity() {
        let add = AddItem {
            item: "Pen".into(),
            price: Dollars(Cents(250)),
            quantity: None,
        };
        let text = serde_json::to_string(&add).unwrap();
        assert_eq!(text, r#"{"item":"Pen","price":2.5}"#);
        assert_eq!(serde_json::from_str::<AddItem>(&text).unwrap(), add);
    }

    #[test]
    fn a_price_that_is_not_whole_cents_is_refused() {
        let text = r#"{"item":"Pen","price":2.555}"#;
        assert!(serde_json::from_str::<AddItem>(text).is_err());
    }
}
