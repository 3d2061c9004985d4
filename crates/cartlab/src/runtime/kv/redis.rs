//! Redis key-value backend, storing like Spin's (`crates/key-value-redis`): each key under
//! its own name (no prefix, the label is ignored), plain GET / DEL / EXISTS.
//! `get_keys` uses SCAN rather than Spin's KEYS so a large database is not blocked.
//!
//! Writes keep a TTL the key already has (`SET ... KEEPTTL`, so Redis >= 6): key-value has no
//! expiry of its own, and a write through it should not cancel one set outside it. Spin 4.1's
//! plain `SET` drops the TTL; `cartlab up --kv-faults spin-4.1` reproduces that ([`SetTtl`]).
//!
//! Availability: nothing connects at start-up. A `ConnectionManager` is created lazily and
//! every operation is bounded (connect 500 ms, whole operation 800 ms, so a request that
//! fails on its first store call is answered within 1 s): a dead or hung Redis gives a
//! prompt [`KvError::Unavailable`], never a hang. After a connection-level failure the
//! manager is dropped and the next operation builds a new one, so the backend recovers by
//! itself when Redis returns, without relying on the manager's own retry/back-off timing.
//!
//! Behind Sentinel (`type = "cartlab_redis_sentinel"`, [`sentinel`]) that new manager goes to
//! the primary the sentinels name now, and a node that answers as a replica (`READONLY`)
//! counts as a failed connection, so the backend follows a promoted replica by itself. With
//! `wait_replicas`, every operation is followed by `WAIT` on the same connection and fails
//! ([`KvError::Unavailable`]) unless that many replicas have everything written through it:
//! a write counts only once confirmed, and a read never hands out a value that is not (a
//! refused write is still on the primary, and reading it back must not make it look done).

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisConnectionInfo, RedisError, Script};

use super::faults::{FaultKind, SetTtl};
use super::{KeyPage, KeyValues, KvBackend, KvError};
use crate::app::runtime_config::{RedisSentinel, RedisUrl};

pub mod sentinel;
use sentinel::{NotReplicated, is_failover_error, wait_for_replicas};

pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Upper bound for one operation (one SCAN batch for `get_keys`), connect included. It is
/// the only bound on a reply: every command runs within it ([`within_deadline`]), so the
/// connections set no response timeout of their own (a second timer on every call).
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(800);
const SCAN_COUNT: usize = 1000;

pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    shown: String,
    ttl: SetTtl,
}

/// Where the backend connects.
enum Target {
    /// One Redis at a fixed address.
    Single {
        client: Client,
        manager: Mutex<Option<ConnectionManager>>,
    },
    /// The primary a Sentinel set names, looked up again whenever the manager is remade.
    /// `connecting` is held while one is made, so a failover costs one lookup, not one per
    /// request.
    Sentinel {
        set: RedisSentinel,
        /// Credentials and database for the primary (none: the sentinels' defaults).
        node: RedisConnectionInfo,
        manager: Mutex<Option<ConnectionManager>>,
        connecting: tokio::sync::Mutex<()>,
    },
}

/// Why one operation failed.
enum Failure {
    Redis(RedisError),
    NotReplicated(NotReplicated),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

impl From<NotReplicated> for Failure {
    fn from(e: NotReplicated) -> Self {
        Failure::NotReplicated(e)
    }
}

impl RedisBackend {
    /// Does not connect; credentials in `url` are sent when it does. Writes keep the keys'
    /// TTLs.
    pub fn new(url: &RedisUrl) -> Result<Self> {
        Self::with_ttl(url, SetTtl::Keep)
    }

    /// Like [`new`](Self::new), with the given treatment of TTLs on writes.
    pub fn with_ttl(url: &RedisUrl, ttl: SetTtl) -> Result<Self> {
        let client = url
            .client()
            .with_context(|| format!("invalid Redis URL {url}"))?;
        let info = client.get_connection_info();
        let shown = format!("redis {}", info.addr());
        Ok(Self {
            inner: Arc::new(Inner {
                target: Target::Single {
                    client,
                    manager: Mutex::new(None),
                },
                shown,
                ttl,
            }),
        })
    }

    /// The primary of a Sentinel set. Does not connect (not even to the sentinels).
    pub fn sentinel(set: &RedisSentinel, ttl: SetTtl) -> Self {
        Self {
            inner: Arc::new(Inner {
                shown: format!("redis sentinel `{}`", set.master_name),
                target: Target::Sentinel {
                    set: set.clone(),
                    node: RedisConnectionInfo::default(),
                    manager: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                },
                ttl,
            }),
        }
    }

    fn run<T, F, Fut>(&self, op: F) -> BoxFuture<'static, Result<T, KvError>>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, RedisError>> + Send,
    {
        let inner = self.inner.clone();
        Box::pin(async move { inner.run(op).await })
    }
}

impl Inner {
    /// The script flag for [`CAS_SCRIPT`] and [`SET_SCRIPT`].
    fn ttl_flag(&self) -> &'static str {
        match self.ttl {
            SetTtl::Keep => "keepttl",
            SetTtl::Wipe(_) => "wipe",
        }
    }

    /// Reports TTLs a write dropped (only under [`SetTtl::Wipe`]).
    fn report_wiped(&self, op: &'static str, wiped: i64) {
        if let SetTtl::Wipe(reporter) = &self.ttl {
            for _ in 0..wiped {
                reporter.record(FaultKind::TtlWiped, op);
            }
        }
    }

    /// The manager, made if there is none (bounded by the caller's deadline).
    async fn manager(&self) -> Result<ConnectionManager, RedisError> {
        match &self.target {
            Target::Single { client, manager } => {
                let mut slot = lock(manager);
                if let Some(m) = slot.as_ref() {
                    return Ok(m.clone());
                }
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(None)
                    // One attempt per manager: retries would hold requests past the deadline.
                    .set_number_of_retries(0);
                let m = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
                *slot = Some(m.clone());
                Ok(m)
            }
            Target::Sentinel {
                set,
                node,
                manager,
                connecting,
            } => {
                if let Some(m) = lock(manager).as_ref() {
                    return Ok(m.clone());
                }
                let _connecting = connecting.lock().await;
                // Made by the request that held `connecting` before this one?
                if let Some(m) = lock(manager).as_ref() {
                    return Ok(m.clone());
                }
                let m = sentinel::primary_manager(set, node).await?;
                *lock(manager) = Some(m.clone());
                Ok(m)
            }
        }
    }

    /// Forget the manager so the next operation reconnects from scratch.
    fn reset(&self) {
        match &self.target {
            Target::Single { manager, .. } | Target::Sentinel { manager, .. } => {
                *lock(manager) = None;
            }
        }
    }

    /// Whether `e` means the connection (or, behind Sentinel, the node) is no good any more.
    fn reconnects_after(&self, e: &RedisError) -> bool {
        match self.target {
            Target::Single { .. } => is_unavailable(e),
            Target::Sentinel { .. } => is_failover_error(e),
        }
    }

    fn replica_wait(&self) -> Option<crate::app::runtime_config::ReplicaWait> {
        match &self.target {
            Target::Single { .. } => None,
            Target::Sentinel { set, .. } => set.wait,
        }
    }

    /// One SCAN batch from `cursor`: the next cursor (0: no more) and the keys.
    async fn scan(&self, cursor: u64) -> Result<(u64, Vec<String>), KvError> {
        self.run(move |mut c| async move {
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .query_async(&mut c)
                .await
        })
        .await
    }

    /// Runs `op` within the deadline (connecting and the `WAIT` included).
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let result = within_deadline(async {
            let mut manager = self.manager().await?;
            let value = op(manager.clone()).await?;
            // After a read too: what it returns may be a write not yet confirmed (one that
            // was refused), and a guest that reads its write back must not take it as done.
            if let Some(wait) = self.replica_wait() {
                wait_for_replicas::<Failure>(&mut manager, wait).await?;
            }
            Ok::<_, Failure>(value)
        })
        .await;
        match result {
            Ok(v) => Ok(v),
            Err(Failure::Redis(e)) if self.reconnects_after(&e) => {
                self.reset();
                Err(KvError::Unavailable(format!("{}: {e}", self.shown)))
            }
            Err(Failure::Redis(e)) => Err(KvError::Other(format!("{}: {e}", self.shown))),
            // The connection is kept: its next WAIT still covers the refused write.
            Err(Failure::NotReplicated(e)) => {
                Err(KvError::Unavailable(format!("{}: {e}", self.shown)))
            }
        }
    }
}

/// The manager slot; it holds no invariant a panic elsewhere could break.
fn lock(
    slot: &Mutex<Option<ConnectionManager>>,
) -> std::sync::MutexGuard<'_, Option<ConnectionManager>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Bounds one Redis operation (connect included) by [`OPERATION_TIMEOUT`]; a timeout
/// becomes an I/O error, so [`is_unavailable`] treats it as an outage. Shared with
/// `spin:redis`, whose connections must not hang either.
pub async fn within_deadline<T, E: From<RedisError>>(
    op: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(OPERATION_TIMEOUT, op).await {
        Ok(result) => result,
        Err(_) => Err(E::from(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} ms", OPERATION_TIMEOUT.as_millis()),
        )))),
    }
}

/// Connection settings for a fresh multiplexed connection with the same bounds as the
/// key-value backend's manager.
pub fn connection_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None)
}

/// Compare-and-swap in one atomic server-side step (no WATCH/MULTI round trips).
/// KEYS[1]: key; ARGV[1]: "1" if a value is expected, "0" if the key must be absent;
/// ARGV[2]: expected bytes; ARGV[3]: new value; ARGV[4]: "keepttl" to keep the key's TTL,
/// "wipe" for a plain SET. Returns 0 if not written, 1 if written, 2 if written and a TTL
/// was dropped.
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[4] == 'keepttl' then
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
  return 1
end
local had_ttl = redis.call('PTTL', KEYS[1]) >= 0
redis.call('SET', KEYS[1], ARGV[3])
if had_ttl then return 2 end
return 1
";

/// Sets every key in KEYS to the value at the same position in ARGV[2..] atomically;
/// ARGV[1] as in [`CAS_SCRIPT`]. Returns how many TTLs were dropped. Used under "wipe", to
/// know whether a TTL was lost; keeping TTLs, `set_many` is `SET KEEPTTL`s in one `MULTI`
/// (MSET has no KEEPTTL), which costs Redis less than a script.
const SET_SCRIPT: &str = r"
local wiped = 0
for i, key in ipairs(KEYS) do
  if ARGV[1] == 'keepttl' then
    redis.call('SET', key, ARGV[i + 1], 'KEEPTTL')
  else
    if redis.call('PTTL', key) >= 0 then wiped = wiped + 1 end
    redis.call('SET', key, ARGV[i + 1])
  end
end
return wiped
";

// The scripts go by their SHA-1 (`EVALSHA`; the whole script only when Redis does not have
// it yet): a few hundred bytes less to send and hash on every write.
static CAS: LazyLock<Script> = LazyLock::new(|| Script::new(CAS_SCRIPT));
static SET: LazyLock<Script> = LazyLock::new(|| Script::new(SET_SCRIPT));

/// INCRBY's answer to a value that is not a decimal `i64` (overflow has its own text).
fn is_not_a_counter(e: &RedisError) -> bool {
    e.code() == Some("ERR") && e.detail() == Some("value is not an integer or out of range")
}

pub fn is_unavailable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
}

impl KvBackend for RedisBackend {
    fn get(&self, key: String) -> BoxFuture<'static, Result<Option<Vec<u8>>, KvError>> {
        self.run(move |mut c| async move { redis::cmd("GET").arg(key).query_async(&mut c).await })
    }

    fn set(&self, key: String, value: Vec<u8>) -> BoxFuture<'static, Result<(), KvError>> {
        if let SetTtl::Keep = self.inner.ttl {
            return self.run(move |mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("KEEPTTL")
                    .query_async(&mut c)
                    .await
            });
        }
        let inner = self.inner.clone();
        let flag = self.inner.ttl_flag();
        Box::pin(async move {
            let wiped: i64 = inner
                .run(move |mut c| async move {
                    SET.key(key).arg(flag).arg(value).invoke_async(&mut c).await
                })
                .await?;
            inner.report_wiped("set", wiped);
            Ok(())
        })
    }

    fn delete(&self, key: String) -> BoxFuture<'static, Result<(), KvError>> {
        self.run(move |mut c| async move {
            redis::cmd("DEL")
                .arg(key)
                .query_async::<i64>(&mut c)
                .await
                .map(drop)
        })
    }

    fn exists(&self, key: String) -> BoxFuture<'static, Result<bool, KvError>> {
        self.run(
            move |mut c| async move { redis::cmd("EXISTS").arg(key).query_async(&mut c).await },
        )
    }

    fn get_keys(&self) -> BoxFuture<'static, Result<Vec<String>, KvError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            // SCAN may return a key more than once; the set removes repeats and sorts.
            let mut keys = BTreeSet::new();
            let mut cursor = 0;
            loop {
                let (next, batch) = inner.scan(cursor).await?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok(keys.into_iter().collect())
        })
    }

    fn list_keys(&self, cursor: Option<String>) -> BoxFuture<'static, Result<KeyPage, KvError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let start: u64 = match cursor.as_deref() {
                None => 0,
                Some(c) => c
                    .parse()
                    .map_err(|_| KvError::Other(format!("invalid list-keys cursor {c:?}")))?,
            };
            let (next, keys) = inner.scan(start).await?;
            Ok(KeyPage {
                keys,
                cursor: (next != 0).then(|| next.to_string()),
            })
        })
    }

    fn increment(&self, key: String, delta: i64) -> BoxFuture<'static, Result<i64, KvError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            // Plain INCRBY: its own parser is the counter format. Redis answers a value that is
            // not a counter with a generic `ERR`, told from overflow and the rest by its text
            // (the same since Redis 1.0); such a value is left alone.
            let counted: Option<i64> = inner
                .run(move |mut c| async move {
                    match redis::cmd("INCRBY")
                        .arg(key)
                        .arg(delta)
                        .query_async(&mut c)
                        .await
                    {
                        Ok(counted) => Ok(Some(counted)),
                        Err(e) if is_not_a_counter(&e) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            counted.ok_or(KvError::NotACounter)
        })
    }

    fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> BoxFuture<'static, Result<bool, KvError>> {
        let inner = self.inner.clone();
        let ttl_flag = self.inner.ttl_flag();
        Box::pin(async move {
            let written: i64 = inner
                .run(move |mut c| async move {
                    let (flag, expected) = match expected {
                        Some(v) => ("1", v),
                        None => ("0", Vec::new()),
                    };
                    CAS.key(key)
                        .arg(flag)
                        .arg(expected)
                        .arg(new)
                        .arg(ttl_flag)
                        .invoke_async(&mut c)
                        .await
                })
                .await?;
            if written == 2 {
                inner.report_wiped("compare_and_swap", 1);
            }
            Ok(written != 0)
        })
    }

    fn get_many(&self, keys: Vec<String>) -> BoxFuture<'static, Result<KeyValues, KvError>> {
        if keys.is_empty() {
            return Box::pin(async { Ok(Vec::new()) });
        }
        self.run(move |mut c| async move {
            let values: Vec<Option<Vec<u8>>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
            Ok(keys.into_iter().zip(values).collect())
        })
    }

    fn set_many(
        &self,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<(), KvError>> {
        if key_values.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        if let SetTtl::Keep = self.inner.ttl {
            return self.run(move |mut c| async move {
                let mut transaction = redis::pipe();
                transaction.atomic();
                for (key, value) in key_values {
                    transaction
                        .cmd("SET")
                        .arg(key)
                        .arg(value)
                        .arg("KEEPTTL")
                        .ignore();
                }
                transaction.query_async(&mut c).await
            });
        }
        let inner = self.inner.clone();
        let flag = self.inner.ttl_flag();
        Box::pin(async move {
            let wiped: i64 = inner
                .run(move |mut c| async move {
                    let mut invocation = SET.prepare_invoke();
                    for (key, _) in &key_values {
                        invocation.key(key);
                    }
                    invocation.arg(flag);
                    for (_, value) in key_values {
                        invocation.arg(value);
                    }
                    invocation.invoke_async(&mut c).await
                })
                .await?;
            inner.report_wiped("set_many", wiped);
            Ok(())
        })
    }

    fn delete_many(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), KvError>> {
        if keys.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.run(move |mut c| async move {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<i64>(&mut c)
                .await
                .map(drop)
        })
    }

    fn describe(&self) -> String {
        self.inner.shown.clone()
    }
}

#[cfg(test)]
mod tests;
