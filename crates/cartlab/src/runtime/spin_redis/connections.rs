//! The host's Redis connections for `spin:redis`, kept across requests and instances.
//!
//! Spin opens a new TCP connection for every `open`; a component that opens one per request
//! pays a connect (and the client's handshake commands) on every request. Here `open` hands
//! out the process's one multiplexed connection to that address (a [`ConnectionManager`], made
//! on first use and remade after a connection-level failure), which is what the guest sees on
//! Spin as long as it sends only commands that keep no state on the connection. The first
//! command that would (`MULTI`, `WATCH`, `SELECT`, `CLIENT ...`, anything not known to be
//! stateless: [`shares_connection`]) moves that guest connection to a private one of its own,
//! as Spin's always is, for the rest of its life.
//!
//! An address mapped to a Sentinel set (`[cartlab.redis_sentinel."<address>"]` in the runtime
//! config) is not connected to: its connections go to the primary the sentinels name when
//! they are made, with the guest's credentials and database, and are remade (looking the
//! primary up again) after a connection failure or a `READONLY` answer, so the guest keeps
//! opening one address across failovers. With `wait_replicas`, each command on data the guest
//! sends ([`waits_for_replicas`]) is followed by `WAIT` on the same connection.

use std::collections::HashMap;
use std::sync::Mutex;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{RedisConnectionInfo, RedisError};

use crate::app::runtime_config::{RedisSentinel, RedisUrl, ReplicaWait, SentinelRoute};
use crate::runtime::kv::redis::sentinel::{self, is_failover_error};
use crate::runtime::kv::redis::{CONNECT_TIMEOUT, connection_config, is_unavailable};

/// One shared connection per Redis address (credentials included: they choose the user).
#[derive(Default)]
pub struct SharedRedis {
    managers: Mutex<HashMap<RedisUrl, ConnectionManager>>,
    sentinels: Vec<SentinelRoute>,
}

/// The guest's credentials and database, for the node a Sentinel set names.
fn node(url: &RedisUrl) -> Result<RedisConnectionInfo, RedisError> {
    Ok(url.client()?.get_connection_info().redis_settings().clone())
}

impl SharedRedis {
    /// Connections to the addresses of `routes` go through their Sentinel sets.
    pub fn with_sentinels(routes: Vec<SentinelRoute>) -> Self {
        Self {
            managers: Mutex::default(),
            sentinels: routes,
        }
    }

    /// The Sentinel set serving `url`'s host and port, if one does.
    fn sentinel(&self, url: &RedisUrl) -> Option<&RedisSentinel> {
        // Finding the destination parses the URL: not for every command without Sentinel.
        if self.sentinels.is_empty() {
            return None;
        }
        let destination = url.tcp_destination()?;
        self.sentinels
            .iter()
            .find(|route| route.address.tcp_destination().as_ref() == Some(&destination))
            .map(|route| &route.set)
    }

    /// The shared connection to `url`, connecting if there is none (bounded by the caller).
    pub async fn connection(&self, url: &RedisUrl) -> Result<ConnectionManager, RedisError> {
        if let Some(manager) = self.lock().get(url) {
            return Ok(manager.clone());
        }
        let manager = match self.sentinel(url) {
            Some(set) => sentinel::primary_manager(set, &node(url)?).await?,
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(None)
                    // A failed connection is forgotten and remade by the next request instead.
                    .set_number_of_retries(0);
                ConnectionManager::new_with_config(url.client()?, config).await?
            }
        };
        // Two requests may have connected at once: the first one kept wins.
        Ok(self.lock().entry(url.clone()).or_insert(manager).clone())
    }

    /// A new connection of the guest's own to `url` (through its Sentinel set if it has one),
    /// bounded by the caller.
    pub async fn private_connection(
        &self,
        url: &RedisUrl,
    ) -> Result<MultiplexedConnection, RedisError> {
        match self.sentinel(url) {
            Some(set) => sentinel::primary_connection(set, &node(url)?).await,
            None => {
                url.client()?
                    .get_multiplexed_async_connection_with_config(&connection_config())
                    .await
            }
        }
    }

    /// What a write to `url` waits for: `None` unless its Sentinel set has `wait_replicas`.
    pub fn replica_wait(&self, url: &RedisUrl) -> Option<ReplicaWait> {
        self.sentinel(url).and_then(|set| set.wait)
    }

    /// After `error` on the shared connection to `url`: forget it if the connection itself
    /// failed (behind Sentinel: or the node is no longer the primary), so the next `open`
    /// connects afresh (and service resumes once Redis, or a promoted replica, is there).
    pub fn failed(&self, url: &RedisUrl, error: &RedisError) {
        let broken = match self.sentinel(url) {
            Some(_) => is_failover_error(error),
            None => is_unavailable(error),
        };
        if broken {
            self.lock().remove(url);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RedisUrl, ConnectionManager>> {
        // The map holds no invariant a panic elsewhere could break.
        self.managers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether `command` leaves the connection as it found it, so that it can run on a connection
/// shared with other guests. Unknown commands are assumed to keep state (a private connection
/// costs a connect, never correctness).
pub fn shares_connection(command: &str) -> bool {
    const STATELESS: &[&str] = &[
        "APPEND",
        "DECR",
        "DECRBY",
        "DEL",
        "EVAL",
        "EVALSHA",
        "EXISTS",
        "EXPIRE",
        "EXPIREAT",
        "GET",
        "GETDEL",
        "GETEX",
        "GETRANGE",
        "GETSET",
        "HDEL",
        "HEXISTS",
        "HGET",
        "HGETALL",
        "HINCRBY",
        "HKEYS",
        "HLEN",
        "HMGET",
        "HSET",
        "HVALS",
        "INCR",
        "INCRBY",
        "INCRBYFLOAT",
        "LINDEX",
        "LLEN",
        "LPOP",
        "LPUSH",
        "LRANGE",
        "LREM",
        "LTRIM",
        "MGET",
        "MSET",
        "MSETNX",
        "PERSIST",
        "PEXPIRE",
        "PEXPIREAT",
        "PING",
        "PTTL",
        "PUBLISH",
        "RPOP",
        "RPUSH",
        "SADD",
        "SCARD",
        "SET",
        "SETEX",
        "SETNX",
        "SISMEMBER",
        "SMEMBERS",
        "SREM",
        "STRLEN",
        "TTL",
        "TYPE",
        "UNLINK",
        "ZADD",
        "ZCARD",
        "ZRANGE",
        "ZREM",
        "ZSCORE",
    ];
    STATELESS
        .iter()
        .any(|known| known.eq_ignore_ascii_case(command))
}

/// Whether `command` is followed by `WAIT` where the runtime config asks for it: every
/// command that reads or writes data, reads included, since a read may return a write that
/// was refused for want of replicas (it is still on the primary), and a guest that reads its
/// write back must not take it as done. Only commands that touch no data are not.
pub fn waits_for_replicas(command: &str) -> bool {
    const NO_DATA: &[&str] = &[
        "AUTH", "CLIENT", "DISCARD", "ECHO", "HELLO", "INFO", "MULTI", "PING", "QUIT", "RESET",
        "ROLE", "SELECT", "TIME", "UNWATCH", "WAIT", "WATCH",
    ];
    !NO_DATA.iter().any(|c| c.eq_ignore_ascii_case(command))
}

#[cfg(test)]
mod tests {
    use super::{shares_connection, waits_for_replicas};

    #[test]
    fn every_command_on_data_waits_for_replicas() {
        for data in [
            "SET", "eval", "EVALSHA", "DEL", "INCRBY", "MSET", "EXPIRE", "EXEC", "FCALL", "GET",
            "mget", "EVAL_RO", "",
        ] {
            assert!(waits_for_replicas(data), "{data}");
        }
        for no_data in ["MULTI", "WATCH", "PING", "WAIT", "select"] {
            assert!(!waits_for_replicas(no_data), "{no_data}");
        }
    }

    #[test]
    fn only_commands_known_to_keep_no_connection_state_share() {
        for shared in ["GET", "set", "Eval", "PEXPIRE", "publish"] {
            assert!(shares_connection(shared), "{shared}");
        }
        for private in [
            "MULTI",
            "exec",
            "WATCH",
            "UNWATCH",
            "DISCARD",
            "SELECT",
            "CLIENT",
            "HELLO",
            "AUTH",
            "RESET",
            "SUBSCRIBE",
            "MONITOR",
            "READONLY",
            "QUIT",
            "",
            "NOSUCHCOMMAND",
        ] {
            assert!(!shares_connection(private), "{private}");
        }
    }
}
