//! Operation ids: what makes a session change safe to repeat.
//!
//! Every change to a session carries an operation id, and the session record remembers the ids
//! of its [`REMEMBERED_OPS`] most recent changes. The handler applies a change only if its id is
//! not there yet, and after any write decides what happened by reading the record back. That
//! keeps sessions right on a store whose compare-and-swap answer can be wrong in both directions
//! (Spin 4.1's Redis key-value backend: `docs/spin-key-value.md`), and it is what lets a client
//! retry a change with the same `Idempotency-Key` and have it applied once.

use crate::error::{ApiError, ErrorCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// The request header a client names its operation with (IETF draft
/// `draft-ietf-httpapi-idempotency-key-header`).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The response header that marks an answer as a replay of an operation applied before.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest `Idempotency-Key` accepted, in characters.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// How many recent operations a session remembers: a retry with the same key is recognised
/// while fewer than this many other changes have been made to the session since.
pub const REMEMBERED_OPS: usize = 32;
/// Bytes in an operation id: 128 bits, random or a hash of the client's key.
const OP_ID_BYTES: usize = 16;
/// Length of an operation id's text (base64url of `OP_ID_BYTES`).
pub const OP_ID_LEN: usize = 22;
/// Length of a request fingerprint's text (hex of 8 bytes of SHA-256).
pub const FINGERPRINT_LEN: usize = 16;

/// An applied operation as the session record keeps it: its id and a fingerprint of the change
/// it made (so a key reused for another change is recognised).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpStamp {
    pub id: String,
    pub request: String,
}

impl OpStamp {
    /// True if both parts have the shape this code writes (a stored record is not trusted).
    pub fn is_well_formed(&self) -> bool {
        let id_ok = self.id.len() == OP_ID_LEN
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let request_ok = self.request.len() == FINGERPRINT_LEN
            && self.request.bytes().all(|b| b.is_ascii_hexdigit());
        id_ok && request_ok
    }
}

/// The operation one request performs on its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub stamp: OpStamp,
    /// The id came from the client's `Idempotency-Key`: finding it already applied is a replay.
    pub from_client: bool,
}

impl Operation {
    /// The operation for a change whose fingerprint is `request`: named by the client's key if
    /// it sent one, else by a fresh random id.
    pub fn new(client_key: Option<&str>, request: String) -> Result<Operation, getrandom::Error> {
        let (id, from_client) = match client_key {
            // Hashed: the record never holds what the client sent, and every id has one shape.
            Some(key) => {
                let digest = Sha256::digest(format!("cartlab idempotency key\0{key}"));
                (URL_SAFE_NO_PAD.encode(&digest[..OP_ID_BYTES]), true)
            }
            None => {
                let mut bytes = [0u8; OP_ID_BYTES];
                getrandom::fill(&mut bytes)?;
                (URL_SAFE_NO_PAD.encode(bytes), false)
            }
        };
        Ok(Operation {
            stamp: OpStamp { id, request },
            from_client,
        })
    }
}

/// A fingerprint of a change: what must match when a client repeats an `Idempotency-Key`.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    crate::hex::lower_hex(&hasher.finalize()[..FINGERPRINT_LEN / 2])
}

/// The client's `Idempotency-Key`, if it sent one: the draft's quoted string (`"abc"`) or a bare
/// token (`abc`, as most clients send it), 1 to 255 visible ASCII characters. Two different
/// keys on one request are refused.
pub fn client_key(headers: &[(String, String)]) -> Result<Option<String>, ApiError> {
    let mut found: Option<String> = None;
    for (_, value) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(IDEMPOTENCY_KEY_HEADER))
    {
        let key = parse_key(value)?;
        match &found {
            Some(earlier) if *earlier != key => {
                return Err(invalid("send one Idempotency-Key per request"));
            }
            _ => found = Some(key),
        }
    }
    Ok(found)
}

fn parse_key(value: &str) -> Result<String, ApiError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let key = match value.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .filter(|inner| !inner.contains(['"', '\\']))
            .ok_or_else(|| invalid("a quoted Idempotency-Key must be one plain quoted string"))?,
        None => value,
    };
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(invalid(&format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"
        )));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(invalid(
            "Idempotency-Key must be visible ASCII characters (a UUID is a good choice)",
        ));
    }
    Ok(key.to_owned())
}

fn invalid(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidIdempotencyKey, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|v| ("Idempotency-Key".to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn keys_bare_or_quoted() {
        assert_eq!(client_key(&[]).unwrap(), None);
        assert_eq!(
            client_key(&headers(&["abc-123"])).unwrap().as_deref(),
            Some("abc-123")
        );
        assert_eq!(
            client_key(&headers(&["\"8e03978e-40d5\""]))
                .unwrap()
                .as_deref(),
            Some("8e03978e-40d5")
        );
        assert_eq!(
            client_key(&headers(&["a b", "a b"])).unwrap().as_deref(),
            Some("a b")
        );
        for bad in ["", "\"\"", "\"a", "\"a\\\"b\"", "é", "a\u{1}b"] {
            let error = client_key(&headers(&[bad])).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidIdempotencyKey, "{bad:?}");
        }
        let long = "k".repeat(MAX_IDEMPOTENCY_KEY_CHARS + 1);
        assert!(client_key(&headers(&[&long])).is_err());
        assert!(client_key(&headers(&[&long[1..]])).is_ok());
        assert!(client_key(&headers(&["a", "b"])).is_err());
    }

    #[test]
    fn ids_have_one_shape_and_keys_map_to_one_id() {
        let fp = fingerprint(&["add", "Pen", "150", "1"]);
        assert_eq!(fp.len(), FINGERPRINT_LEN);
        let a = Operation::new(Some("key"), fp.clone()).unwrap();
        let b = Operation::new(Some("key"), fp.clone()).unwrap();
        let c = Operation::new(Some("other"), fp.clone()).unwrap();
        let r1 = Operation::new(None, fp.clone()).unwrap();
        let r2 = Operation::new(None, fp).unwrap();
        assert!(a.from_client && !r1.from_client);
        assert_eq!(a.stamp, b.stamp);
        assert_ne!(a.stamp.id, c.stamp.id);
        assert_ne!(r1.stamp.id, r2.stamp.id);
        for op in [a, c, r1, r2] {
            assert!(op.stamp.is_well_formed(), "{op:?}");
            assert!(!op.stamp.id.contains("key"));
        }
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
