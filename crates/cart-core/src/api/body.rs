//! The body of `POST /cart/add`, validated before the store is touched.

use super::types::{Request, header};
use crate::cart::{CartError, validate_item};
use crate::error::{ApiError, ErrorCode};
use crate::money::{Cents, parse_price};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

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

pub(super) fn parse_add_body(req: &Request<'_>) -> Result<(String, Cents, u32), ApiError> {
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
pub(super) fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
