//! cartlab's stateless cart: sessions live outside the instance, so any instance can serve any
//! request and a crashed instance loses nothing. The logic is in `cart-core` (the
//! compare-and-set retry loop, the operation ids that make every change safe to repeat, the
//! expiry rules), the Spin plumbing in `cart-spin`; this file only provides the two byte stores
//! sessions can live in, chosen by the Spin variable `session_store`:
//!
//! - `key-value` (default): the key-value store labelled `default`, through `wasi:keyvalue`
//!   (`store` + `atomics`), on whatever backs it: SQLite (Spin's default) or Redis
//!   (`runtime-config.toml`). Its compare-and-swap answer is not trusted
//!   ([`KeyValue::confirms_swaps`] is false): Spin 4.1's Redis backend reports every committed
//!   swap as failed and can report a lost one as success, so cart-core reads every write back
//!   (docs/spin-key-value.md). Key-value has no TTL: sessions are queued by deadline in the
//!   store itself and swept a few at a time (`cart_core::expiry`).
//! - `redis`: Redis at `redis_url` through `spin:redis` (needs the address in
//!   `allowed_outbound_hosts`; the secret variable `redis_password`, if set, goes into the
//!   address opened, never into the allowed hosts), the fast path: reads are one `GET`; a
//!   new session is one `SET ... PX <lifetime in ms>`; other writes are one `EVAL` of
//!   [`CAS_SCRIPT`], which compares the stored value with the one read and `SET`s the new
//!   record with `PX <remaining lifetime in ms>` atomically: one round trip, an answer that
//!   can be trusted, a real Redis TTL equal to the cookie's `Max-Age`. The connection is
//!   opened once per instance, not per request.

use cart_core::{KeyValue, KvSessionStore, Settings, StoreError, StoreMode};
use spin_sdk::experimental::wasi::keyvalue::{atomics, batch, store as wasi_kv};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

#[spin_sdk::http_service]
async fn handle(req: Request) -> impl IntoResponse {
    // On a settings error `serve` answers 500 `invalid_config` before touching any store.
    let backend = match cart_spin::settings(Settings::stateless).await {
        Ok(settings) if settings.session_store == StoreMode::Redis => {
            Backend::Redis(RedisKv::new(settings))
        }
        _ => Backend::Wasi(WasiKv::default()),
    };
    let sessions = KvSessionStore(backend);
    cart_spin::serve(req, Settings::stateless, &sessions).await
}

/// The compare-and-set write of the `redis` mode. `KEYS[1]`: the session key; `ARGV[1]`: the
/// value read (empty: the key must be absent; no record is empty); `ARGV[2]`: the new value;
/// `ARGV[3]`: its TTL in milliseconds. Returns 1 if written, 0 if the value had changed.
pub const CAS_SCRIPT: &str = "\
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1";

/// One of the two byte stores, for this request.
enum Backend {
    Wasi(WasiKv),
    Redis(RedisKv),
}

/// What a conditional write compares against.
enum Token {
    /// A `wasi:keyvalue` CAS handle, whose `current` was read.
    Wasi(atomics::Cas),
    /// The bytes `GET` returned (`None`: absent).
    Redis(Option<Vec<u8>>),
}

fn mismatch() -> StoreError {
    StoreError("internal: a CAS token from the other store mode".into())
}

impl KeyValue for Backend {
    type Cas = Token;

    async fn get_cas(&self, key: &str) -> Result<(Option<Vec<u8>>, Token), StoreError> {
        match self {
            Backend::Wasi(kv) => {
                let (value, cas) = kv.get_cas(key)?;
                Ok((value, Token::Wasi(cas)))
            }
            Backend::Redis(kv) => {
                let value = kv.conn().await?.get(key).await.map_err(|e| kv.failed(e))?;
                Ok((value.clone(), Token::Redis(value)))
            }
        }
    }

    async fn set_if(
        &self,
        key: &str,
        cas: Option<Token>,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        match self {
            Backend::Wasi(kv) => {
                let cas = match cas {
                    Some(Token::Wasi(cas)) => cas,
                    Some(Token::Redis(_)) => return Err(mismatch()),
                    None => {
                        // Create only if absent: a CAS whose `current` saw no value.
                        let (current, cas) = kv.get_cas(key)?;
                        if current.is_some() {
                            return Ok(false);
                        }
                        cas
                    }
                };
                match atomics::swap(cas, value) {
                    Ok(()) => Ok(true),
                    Err(atomics::CasError::CasFailed(_)) => Ok(false),
                    Err(atomics::CasError::StoreError(e)) => Err(wasi_error(e)),
                }
            }
            Backend::Redis(kv) => {
                let expected = match cas {
                    Some(Token::Redis(bytes)) => bytes.unwrap_or_default(),
                    Some(Token::Wasi(_)) => return Err(mismatch()),
                    None => Vec::new(),
                };
                let ttl_ms = i64::try_from(ttl_ms).unwrap_or(i64::MAX);
                let result = kv
                    .conn()
                    .await?
                    .execute(
                        "EVAL",
                        [
                            RedisParameter::Binary(CAS_SCRIPT.as_bytes().to_vec()),
                            RedisParameter::Int64(1),
                            RedisParameter::Binary(key.as_bytes().to_vec()),
                            RedisParameter::Binary(expected),
                            RedisParameter::Binary(value.to_vec()),
                            RedisParameter::Int64(ttl_ms),
                        ],
                    )
                    .await
                    .map_err(|e| kv.failed(e))?;
                match result.as_slice() {
                    [RedisResult::Int64(1)] => Ok(true),
                    [RedisResult::Int64(0)] => Ok(false),
                    _ => Err(StoreError(
                        "unexpected reply to the compare-and-set script".into(),
                    )),
                }
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Backend::Wasi(kv) => kv.bucket()?.delete(key).map_err(wasi_error),
            Backend::Redis(kv) => kv
                .conn()
                .await?
                .del([key])
                .await
                .map(|_| ())
                .map_err(|e| kv.failed(e)),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Backend::Wasi(kv) => kv.bucket()?.exists(key).map_err(wasi_error),
            Backend::Redis(kv) => {
                let result = kv
                    .conn()
                    .await?
                    .execute("EXISTS", [RedisParameter::Binary(key.as_bytes().to_vec())])
                    .await
                    .map_err(|e| kv.failed(e))?;
                Ok(matches!(result.as_slice(), [RedisResult::Int64(n)] if *n > 0))
            }
        }
    }

    fn confirms_swaps(&self) -> bool {
        matches!(self, Backend::Redis(_))
    }

    fn expires_keys(&self) -> bool {
        matches!(self, Backend::Redis(_))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Backend::Wasi(kv) => kv.bucket()?.get(key).map_err(wasi_error),
            Backend::Redis(kv) => kv.conn().await?.get(key).await.map_err(|e| kv.failed(e)),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StoreError> {
        match (self, ttl_ms) {
            (Backend::Wasi(kv), _) => kv.bucket()?.set(key, value).map_err(wasi_error),
            (Backend::Redis(kv), None) => kv
                .conn()
                .await?
                .set(key, value)
                .await
                .map_err(|e| kv.failed(e)),
            (Backend::Redis(kv), Some(ttl_ms)) => {
                let result = kv
                    .conn()
                    .await?
                    .execute(
                        "SET",
                        [
                            RedisParameter::Binary(key.as_bytes().to_vec()),
                            RedisParameter::Binary(value.to_vec()),
                            RedisParameter::Binary(b"PX".to_vec()),
                            RedisParameter::Int64(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
                        ],
                    )
                    .await
                    .map_err(|e| kv.failed(e))?;
                match result.as_slice() {
                    [RedisResult::Status(_)] => Ok(()),
                    _ => Err(StoreError("unexpected reply to SET".into())),
                }
            }
        }
    }

    /// `wasi:keyvalue/batch`'s `set-many`: `MSET` on Spin's Redis backend, one transaction on
    /// its SQLite one. (The draft lets a failure leave some keys written: the expiry queue's
    /// slot comes first, and a slot whose session is missing is simply dropped by a sweep.)
    async fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let owned = || {
            entries
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.to_vec()))
                .collect::<Vec<_>>()
        };
        match self {
            Backend::Wasi(kv) => batch::set_many(kv.bucket()?, &owned()).map_err(wasi_error),
            Backend::Redis(kv) => {
                let mut arguments = Vec::with_capacity(entries.len() * 2);
                for (key, value) in owned() {
                    arguments.push(RedisParameter::Binary(key.into_bytes()));
                    arguments.push(RedisParameter::Binary(value));
                }
                kv.conn()
                    .await?
                    .execute("MSET", arguments)
                    .await
                    .map(|_| ())
                    .map_err(|e| kv.failed(e))
            }
        }
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        match self {
            Backend::Wasi(kv) => atomics::increment(kv.bucket()?, key, delta).map_err(wasi_error),
            Backend::Redis(kv) => {
                let result = kv
                    .conn()
                    .await?
                    .execute(
                        "INCRBY",
                        [
                            RedisParameter::Binary(key.as_bytes().to_vec()),
                            RedisParameter::Int64(delta),
                        ],
                    )
                    .await
                    .map_err(|e| kv.failed(e))?;
                match result.as_slice() {
                    [RedisResult::Int64(n)] => Ok(*n),
                    _ => Err(StoreError("unexpected reply to INCRBY".into())),
                }
            }
        }
    }

    async fn pause(&self, millis: u64) {
        spin_sdk::time::sleep(Duration::from_millis(millis)).await
    }
}

/// `wasi:keyvalue` store `default`, opened once per instance: the handle stays valid for the
/// instance's life, so later requests skip the `open`. (These calls are synchronous.)
#[derive(Default)]
struct WasiKv {
    bucket: OnceCell<Rc<wasi_kv::Bucket>>,
}

thread_local! {
    /// This instance's open bucket (a wasm instance has one thread).
    static BUCKET: RefCell<Option<Rc<wasi_kv::Bucket>>> = const { RefCell::new(None) };
    /// This instance's Redis connection and the address it went to.
    static CONNECTION: RefCell<Option<(String, Rc<Connection>)>> = const { RefCell::new(None) };
}

impl WasiKv {
    fn bucket(&self) -> Result<&wasi_kv::Bucket, StoreError> {
        if let Some(bucket) = self.bucket.get() {
            return Ok(bucket);
        }
        let bucket = match BUCKET.with_borrow(Clone::clone) {
            Some(bucket) => bucket,
            None => {
                let opened = Rc::new(wasi_kv::open("default").map_err(wasi_error)?);
                BUCKET.set(Some(opened.clone()));
                opened
            }
        };
        Ok(self.bucket.get_or_init(|| bucket))
    }

    /// A CAS handle on `key` and the value it saw. (`current` must be called: Spin's SQLite
    /// backend remembers the value to compare against there.)
    fn get_cas(&self, key: &str) -> Result<(Option<Vec<u8>>, atomics::Cas), StoreError> {
        let cas = atomics::Cas::new(self.bucket()?, key).map_err(wasi_error)?;
        let current = cas.current().map_err(wasi_error)?;
        Ok((current, cas))
    }
}

fn wasi_error(e: wasi_kv::Error) -> StoreError {
    StoreError(format!("key-value: {e:?}"))
}

/// Redis through `spin:redis`, connected once per instance and kept while it works: on real
/// Spin each `open` is a new TCP connection, which per request cost more than the command.
/// (`spin:redis` connections are multiplexed, so the instance's concurrent requests share
/// it.) A command that fails forgets it, so the next request connects afresh and service
/// resumes by itself once Redis is back.
struct RedisKv {
    /// What `open` takes: `redis_url` with the password in it, if one is set. Never logged.
    address: String,
    password: String,
    conn: OnceCell<Rc<Connection>>,
}

impl RedisKv {
    fn new(settings: &Settings) -> RedisKv {
        RedisKv {
            address: settings.redis_address(),
            password: settings.redis_password.0.clone(),
            conn: OnceCell::new(),
        }
    }

    async fn conn(&self) -> Result<&Connection, StoreError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let kept = CONNECTION.with_borrow(|kept| match kept {
            Some((address, conn)) if *address == self.address => Some(conn.clone()),
            _ => None,
        });
        let conn = match kept {
            Some(conn) => conn,
            None => {
                let opened = Rc::new(Connection::open(&self.address).await.map_err(|e| {
                    // The host may quote the address it was given: the error must not carry
                    // the secret.
                    let StoreError(text) = redis_error(e);
                    let text = if self.password.is_empty() {
                        text
                    } else {
                        text.replace(&self.address, "(the redis_url address)")
                            .replace(&self.password, "***")
                    };
                    StoreError(text)
                })?);
                CONNECTION.set(Some((self.address.clone(), opened.clone())));
                opened
            }
        };
        Ok(self.conn.get_or_init(|| conn))
    }

    /// A command failed: the connection may be broken, so the next request opens another.
    fn failed(&self, e: spin_sdk::redis::Error) -> StoreError {
        CONNECTION.set(None);
        redis_error(e)
    }
}

fn redis_error(e: spin_sdk::redis::Error) -> StoreError {
    StoreError(format!("redis: {e:?}"))
}
