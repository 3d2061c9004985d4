//! Session ids and the session record kept in the store.

use crate::cart::{Cart, CartLine};
use crate::idempotency::{OpStamp, REMEMBERED_OPS};
use crate::money::Cents;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Random bytes in a session id: 256 bits, well past the 128 needed to make guessing hopeless.
pub const SESSION_ID_BYTES: usize = 32;
/// Length of a session id's text: base64url without padding of [`SESSION_ID_BYTES`].
pub const SESSION_ID_LEN: usize = 43;
/// Version written into (and required of) every stored [`SessionRecord`].
pub const RECORD_VERSION: u32 = 1;

/// A session id: the secret value of the session cookie.
///
/// Only ever built by [`SessionId::generate`] or by [`SessionId::parse`], which checks the
/// format before anything else looks at it. `Debug` shows only the fingerprint, so ids do not
/// leak into logs.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id from the OS CSPRNG (`wasi:random` on wasm32-wasip2).
    pub fn generate() -> Result<SessionId, getrandom::Error> {
        let mut bytes = [0u8; SESSION_ID_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(SessionId(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts `text` only if it is exactly what [`SessionId::generate`] produces: 43 characters
    /// of the base64url alphabet that decode canonically to 32 bytes.
    pub fn parse(text: &str) -> Option<SessionId> {
        let well_formed = text.len() == SESSION_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return None;
        }
        // The decoder rejects non-zero trailing bits, so each id has exactly one spelling.
        match URL_SAFE_NO_PAD.decode(text) {
            Ok(bytes) if bytes.len() == SESSION_ID_BYTES => Some(SessionId(text.to_owned())),
            _ => None,
        }
    }

    /// The secret text, for the cookie and the store key only.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short, non-secret name for this session: the first 8 hex digits of SHA-256(id).
    /// Shown in responses as `sessionId` so users can tell sessions apart.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        crate::hex::lower_hex(&digest[..4])
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({}…)", self.fingerprint())
    }
}

/// How long sessions live: a sliding idle timeout and an absolute lifetime, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// A session unused for longer than this expires (activity slides it).
    pub idle_secs: u64,
    /// A session expires this long after it was created, however active.
    pub max_age_secs: u64,
}

/// What a session holds: its cart, when it was created and last used (unix seconds), and the
/// operations most recently applied to it (oldest first, at most [`REMEMBERED_OPS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionRecord {
    pub created: u64,
    pub touched: u64,
    pub cart: Cart,
    pub ops: Vec<OpStamp>,
}

/// Why a stored record could not be read.
#[derive(Debug)]
pub enum RecordError {
    /// Not JSON of the expected shape.
    Malformed(serde_json::Error),
    /// A `v` this code does not know.
    UnknownVersion(u32),
    /// Well-formed, but its cart breaks the cart limits.
    InvalidCart(crate::cart::CartError),
    /// Its list of applied operations is too long or holds malformed ids.
    InvalidOps,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Malformed(e) => write!(f, "malformed session record: {e}"),
            RecordError::UnknownVersion(v) => write!(f, "unknown session record version {v}"),
            RecordError::InvalidCart(e) => write!(f, "session record has an invalid cart: {e}"),
            RecordError::InvalidOps => f.write_str("session record has invalid operation ids"),
        }
    }
}

impl std::error::Error for RecordError {}

/// The stored form: `{"v":1,"created":..,"touched":..,"cart":[{"item","price_cents","quantity"}],
/// "ops":[["<op id>","<fingerprint>"],..]}` (`ops` left out while empty; records written before
/// it existed read as having none).
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    v: u32,
    created: u64,
    touched: u64,
    cart: Vec<StoredLine>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ops: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct StoredLine {
    item: String,
    price_cents: u64,
    quantity: u32,
}

impl SessionRecord {
    /// A new, empty session.
    pub fn new(now_unix_secs: u64) -> SessionRecord {
        SessionRecord {
            created: now_unix_secs,
            touched: now_unix_secs,
            cart: Cart::new(),
            ops: Vec::new(),
        }
    }

    /// The stamp of operation `id`, if it is among those applied to this session.
    pub fn applied(&self, id: &str) -> Option<&OpStamp> {
        self.ops.iter().find(|op| op.id == id)
    }

    /// Records that `stamp`'s operation has been applied, forgetting the oldest beyond
    /// [`REMEMBERED_OPS`].
    pub fn remember(&mut self, stamp: OpStamp) {
        self.ops.push(stamp);
        let excess = self.ops.len().saturating_sub(REMEMBERED_OPS);
        self.ops.drain(..excess);
    }

    /// When this session expires (unix seconds): the sooner of the idle deadline
    /// (`touched + idle_secs`) and the absolute one (`created + max_age_secs`).
    pub fn deadline(&self, lifetime: &Lifetime) -> u64 {
        let idle_end = self.touched.saturating_add(lifetime.idle_secs);
        let absolute_end = self.created.saturating_add(lifetime.max_age_secs);
        idle_end.min(absolute_end)
    }

    /// True once the session has been idle longer than `lifetime.idle_secs`, or has reached
    /// its absolute lifetime (`created + max_age_secs`). Checked on every read: an expired
    /// session is never served, whatever the store still holds.
    pub fn is_expired(&self, now_unix_secs: u64, lifetime: &Lifetime) -> bool {
        let idle_over = self.touched.saturating_add(lifetime.idle_secs) < now_unix_secs;
        // An overflowing deadline never comes.
        let too_old = self
            .created
            .checked_add(lifetime.max_age_secs)
            .is_some_and(|deadline| deadline <= now_unix_secs);
        idle_over || too_old
    }

    /// Seconds this session has left at `now`: until its [`SessionRecord::deadline`]. Right
    /// after a touch this is `min(idle_secs, created + max_age_secs - now)`, and it is what the cookie's
    /// `Max-Age` and a store's native TTL are set to, so the two stay in step. At least 1 for a
    /// session that is not expired.
    pub fn remaining_secs(&self, now_unix_secs: u64, lifetime: &Lifetime) -> u64 {
        self.deadline(lifetime).saturating_sub(now_unix_secs)
    }

    /// The versioned JSON stored under the session's [`crate::store::session_key`].
    pub fn to_json(&self) -> String {
        let stored = StoredRecord {
            v: RECORD_VERSION,
            created: self.created,
            touched: self.touched,
            cart: self
                .cart
                .lines()
                .iter()
                .map(|line| StoredLine {
                    item: line.item.clone(),
                    price_cents: line.price.0,
                    quantity: line.quantity,
                })
                .collect(),
            ops: self
                .ops
                .iter()
                .map(|op| (op.id.clone(), op.request.clone()))
                .collect(),
        };
        // Serialising plain strings and integers cannot fail.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Reads a stored record, checking its version and the cart limits.
    pub fn from_json(json: impl AsRef<[u8]>) -> Result<SessionRecord, RecordError> {
        let stored: StoredRecord =
            serde_json::from_slice(json.as_ref()).map_err(RecordError::Malformed)?;
        if stored.v != RECORD_VERSION {
            return Err(RecordError::UnknownVersion(stored.v));
        }
        let lines = stored
            .cart
            .into_iter()
            .map(|line| CartLine {
                item: line.item,
                price: Cents(line.price_cents),
                quantity: line.quantity,
            })
            .collect();
        let ops: Vec<OpStamp> = stored
            .ops
            .into_iter()
            .map(|(id, request)| OpStamp { id, request })
            .collect();
        if ops.len() > REMEMBERED_OPS || !ops.iter().all(OpStamp::is_well_formed) {
            return Err(RecordError::InvalidOps);
        }
        Ok(SessionRecord {
            created: stored.created,
            touched: stored.touched,
            cart: Cart::from_lines(lines).map_err(RecordError::InvalidCart)?,
            ops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_are_43_url_safe_chars_and_unique() {
        let ids: HashSet<String> = (0..1000)
            .map(|_| SessionId::generate().unwrap().as_str().to_owned())
            .collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), SESSION_ID_LEN);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(
                SessionId::parse(id).as_ref().map(SessionId::as_str),
                Some(id.as_str())
            );
        }
    }

    #[test]
    fn parse_refuses_malformed_ids() {
        let good = SessionId::generate().unwrap().as_str().to_owned();
        let mut non_canonical = good[..42].to_owned();
        non_canonical.push('B'); // 'B' sets a trailing bit a real id never has
        let cases = [
            String::new(),
            "abc".to_owned(),
            good[..42].to_owned(),
            format!("{good}A"),
            format!("{}+", &good[..42]),
            format!("{}/", &good[..42]),
            format!("{}=", &good[..42]),
            format!("{} ", &good[..42]),
            format!("{}é", &good[..41]),
            "s%3Aabcdefghijklmnopqrstuvwxyz0123456789ABCD".to_owned(), // connect.sid style
            non_canonical,
        ];
        for case in cases {
            assert!(SessionId::parse(&case).is_none(), "{case:?}");
        }
        assert!(SessionId::parse(&"A".repeat(43)).is_some());
    }

    #[test]
    fn fingerprint_is_8_hex_and_not_the_id() {
        let id = SessionId::parse(&"A".repeat(43)).unwrap();
        let fp = id.fingerprint();
        assert_eq!(fp.len(), 8);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!id.as_str().contains(&fp));
        // First 8 hex of SHA-256("A" x 43), computed independently with Python's hashlib.
        assert_eq!(fp, "0f007385");
        assert!(!format!("{id:?}").contains(id.as_str()));
    }

    #[test]
    fn record_json_round_trip_and_versioning() {
        let mut record = SessionRecord::new(100);
        record.touched = 150;
        record
            .cart
            .add("MacBook Pro".into(), Cents(250_000), 1)
            .unwrap();
        let json = record.to_json();
        assert_eq!(
            json,
            r#"{"v":1,"created":100,"touched":150,"cart":[{"item":"MacBook Pro","price_cents":250000,"quantity":1}]}"#
        );
        assert_eq!(SessionRecord::from_json(&json).unwrap(), record);
        assert!(matches!(
            SessionRecord::from_json(json.replace("\"v\":1", "\"v\":2")),
            Err(RecordError::UnknownVersion(2))
        ));
        assert!(matches!(
            SessionRecord::from_json("{}"),
            Err(RecordError::Malformed(_))
        ));
        assert!(matches!(
            SessionRecord::from_json(json.replace("\"quantity\":1", "\"quantity\":500")),
            Err(RecordError::InvalidCart(_))
        ));
    }

    #[test]
    fn records_remember_a_bounded_list_of_operations() {
        let mut record = SessionRecord::new(1);
        let stamps: Vec<OpStamp> = (0..REMEMBERED_OPS + 3)
            .map(|n| {
                crate::idempotency::Operation::new(
                    None,
                    crate::idempotency::fingerprint(&[&n.to_string()]),
                )
                .unwrap()
                .stamp
            })
            .collect();
        for stamp in &stamps {
            record.remember(stamp.clone());
        }
        assert_eq!(record.ops.len(), REMEMBERED_OPS);
        assert!(
            record.applied(&stamps[2].id).is_none(),
            "the oldest are forgotten"
        );
        assert_eq!(record.applied(&stamps[3].id), Some(&stamps[3]));
        let json = record.to_json();
        assert!(json.contains(&format!(r#"["{}","{}"]"#, stamps[3].id, stamps[3].request)));
        assert_eq!(SessionRecord::from_json(&json).unwrap(), record);

        // A stored list that is too long, or holds ids of another shape, is not trusted.
        let mut too_many = record.clone();
        too_many.ops.push(stamps[0].clone());
        assert!(matches!(
            SessionRecord::from_json(too_many.to_json()),
            Err(RecordError::InvalidOps)
        ));
        let forged = json.replace(&stamps[3].id, "short");
        assert!(matches!(
            SessionRecord::from_json(forged),
            Err(RecordError::InvalidOps)
        ));
    }

    const LIFE: Lifetime = Lifetime {
        idle_secs: 1_800,
        max_age_secs: 86_400,
    };

    #[test]
    fn expiry_is_strictly_after_ttl() {
        let record = SessionRecord::new(1_000);
        assert!(!record.is_expired(1_000 + 1_800, &LIFE));
        assert!(record.is_expired(1_000 + 1_801, &LIFE));
        assert!(!SessionRecord::new(u64::MAX).is_expired(u64::MAX, &LIFE));
    }

    #[test]
    fn absolute_lifetime_ends_however_active() {
        let mut record = SessionRecord::new(1_000);
        record.touched = 1_000 + 86_399;
        assert!(!record.is_expired(1_000 + 86_399, &LIFE));
        assert_eq!(record.remaining_secs(1_000 + 86_399, &LIFE), 1);
        assert!(record.is_expired(1_000 + 86_400, &LIFE));
        assert_eq!(record.remaining_secs(1_000 + 86_400, &LIFE), 0);
    }

    #[test]
    fn remaining_is_the_sooner_deadline() {
        let mut record = SessionRecord::new(0);
        assert_eq!(record.remaining_secs(0, &LIFE), 1_800);
        record.touched = 85_000;
        assert_eq!(record.remaining_secs(85_000, &LIFE), 1_400);
        assert_eq!(record.remaining_secs(85_100, &LIFE), 1_300);
        record.touched = 10_000;
        assert_eq!(record.remaining_secs(10_100, &LIFE), 1_700);
        assert_eq!(record.remaining_secs(20_000, &LIFE), 0);
    }
}
