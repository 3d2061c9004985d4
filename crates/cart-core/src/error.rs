//! The JSON error every failing response carries: `{"error":{"code":"...","message":"..."}}`.

use crate::contract::{ErrorBody, ErrorDetail};
use std::fmt;

/// Stable, snake_case error codes (clients may match on them) and their HTTP statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 404: no such route.
    NotFound,
    /// 405: the route exists, the method does not (an `Allow` header lists the ones that do).
    MethodNotAllowed,
    /// 415: a body that is not `application/json`.
    UnsupportedMediaType,
    /// 413: a body over 16 KiB.
    PayloadTooLarge,
    /// 400: empty body, malformed JSON, or JSON that is not an object.
    InvalidJson,
    /// 400: `item` missing, not a string, empty, too long or with control characters.
    InvalidItem,
    /// 400: `price` missing, not a number, negative, over 1,000,000 or with 3+ decimals.
    InvalidPrice,
    /// 400: `quantity` not a whole number in 1..=99.
    InvalidQuantity,
    /// 409: the cart already has the maximum number of lines.
    CartFull,
    /// 409: merging into an existing line would exceed 99.
    QuantityLimit,
    /// 404: `DELETE /cart/items/{n}` with no line `n`.
    NoSuchLine,
    /// 400: an `Idempotency-Key` header that is empty, too long or not visible ASCII.
    InvalidIdempotencyKey,
    /// 422: an `Idempotency-Key` already used on this session for a different change.
    IdempotencyKeyReused,
    /// 403: `POST /crash` while the `crash_enabled` variable is false.
    CrashDisabled,
    /// 409 (with `retry-after: 1`): concurrent writes to the same session kept winning and the
    /// bounded compare-and-set retries ran out; nothing was written, the request may be retried.
    Conflict,
    /// 503 (with `retry-after: 1`): the session store failed.
    StoreUnavailable,
    /// 500: a Spin variable has a value the component cannot use.
    InvalidConfig,
    /// 500: anything else (e.g. no randomness for a session id).
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidItem => "invalid_item",
            ErrorCode::InvalidPrice => "invalid_price",
            ErrorCode::InvalidQuantity => "invalid_quantity",
            ErrorCode::CartFull => "cart_full",
            ErrorCode::QuantityLimit => "quantity_limit",
            ErrorCode::NoSuchLine => "no_such_line",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::CrashDisabled => "crash_disabled",
            ErrorCode::Conflict => "conflict",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::InternalError => "internal_error",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidJson
            | ErrorCode::InvalidItem
            | ErrorCode::InvalidPrice
            | ErrorCode::InvalidQuantity
            | ErrorCode::InvalidIdempotencyKey => 400,
            ErrorCode::CrashDisabled => 403,
            ErrorCode::NotFound | ErrorCode::NoSuchLine => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::CartFull | ErrorCode::QuantityLimit | ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::IdempotencyKeyReused => 422,
            ErrorCode::InvalidConfig | ErrorCode::InternalError => 500,
            ErrorCode::StoreUnavailable => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed request: a code, a human-readable message, and for 405 the allowed methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Value of the `Allow` header (405 only).
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            allow: None,
        }
    }

    pub fn method_not_allowed(method: &str, allow: &'static str) -> ApiError {
        ApiError {
            code: ErrorCode::MethodNotAllowed,
            message: format!("method {method} is not allowed here; allowed: {allow}"),
            allow: Some(allow),
        }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// `{"error":{"code":"...","message":"..."}}`
    pub fn to_json(&self) -> String {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message.clone(),
            },
        };
        // Serialising two strings cannot fail.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_shape() {
        let err = ApiError::new(ErrorCode::InvalidPrice, "price \"x\" is bad");
        assert_eq!(
            err.to_json(),
            r#"{"error":{"code":"invalid_price","message":"price \"x\" is bad"}}"#
        );
        assert_eq!(err.status(), 400);
        assert_eq!(ErrorCode::StoreUnavailable.status(), 503);
    }
}
