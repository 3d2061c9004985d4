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

use std::collections::HashMap;
use std::sync::Mutex;

use redis::RedisError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::app::runtime_config::RedisUrl;
use crate::runtime::kv::redis::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT, is_unavailable};

/// One shared connection per Redis address (credentials included: they choose the user).
#[derive(Default)]
pub struct SharedRedis {
    managers: Mutex<HashMap<RedisUrl, ConnectionManager>>,
}

impl SharedRedis {
    /// The shared connection to `url`, connecting if there is none (bounded by the caller).
    pub async fn connection(&self, url: &RedisUrl) -> Result<ConnectionManager, RedisError> {
        if let Some(manager) = self.lock().get(url) {
            return Ok(manager.clone());
        }
        let client = url.client()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            // A failed connection is forgotten and remade by the next request instead.
            .set_number_of_retries(0);
        let manager = ConnectionManager::new_with_config(client, config).await?;
        // Two requests may have connected at once: the first one kept wins.
        Ok(self.lock().entry(url.clone()).or_insert(manager).clone())
    }

    /// After `error` on the shared connection to `url`: forget it if the connection itself
    /// failed, so the next `open` connects afresh (and service resumes once Redis is back).
    pub fn failed(&self, url: &RedisUrl, error: &RedisError) {
        if is_unavailable(error) {
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

#[cfg(test)]
mod tests {
    use super::shares_connection;

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
