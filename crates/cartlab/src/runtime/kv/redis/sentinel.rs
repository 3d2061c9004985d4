//! Redis behind Sentinel, for the key-value backend and `spin:redis`: finding the current
//! primary, connecting to it, and waiting for replicas after a write.
//!
//! Resolution asks every sentinel at once (each bounded by [`SENTINEL_TIMEOUT`]) for
//! `SENTINEL MASTER <name>` and takes the answer with the highest `config-epoch`, so one
//! sentinel that has not yet heard of a failover does not send writes to the old primary.
//! The node it names must say `ROLE` master, else connecting fails like a dropped connection
//! and the caller resolves again next time. Nothing here retries: the callers drop a
//! connection after [`is_failover_error`] and resolve afresh on the next operation.
//!
//! `WAIT n timeout` after a command makes it count only once `n` replicas have everything
//! written on that connection ([`wait_for_replicas`]). It does not make Redis strongly consistent: a write refused for
//! too few acknowledgements is still on the primary (and may be replicated later), and with
//! more replicas than `n` Sentinel may promote one that did not acknowledge it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use futures::future::join_all;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::{
    Client, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisConnectionInfo, RedisError,
};

use super::{CONNECT_TIMEOUT, connection_config, is_unavailable};
use crate::app::runtime_config::{RedisSentinel, ReplicaWait};

/// How long one sentinel may take to connect and answer.
pub const SENTINEL_TIMEOUT: Duration = Duration::from_millis(300);

/// An error as the callers treat a dead connection: they drop it and reconnect next time.
fn outage(message: String) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        message,
    ))
}

/// A connection error, or a node that is no longer the primary (`READONLY` on a write,
/// `MASTERDOWN`/`LOADING` while it resyncs): drop the connection and resolve again. A
/// [`NotReplicated`] is not one: the connection is kept so that its next `WAIT` still covers
/// the refused write.
pub fn is_failover_error(e: &RedisError) -> bool {
    is_unavailable(e) || matches!(e.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

/// What one sentinel says about the primary.
struct Answer {
    epoch: u64,
    host: String,
    port: u16,
}

async fn ask(
    sentinel: &crate::app::runtime_config::RedisUrl,
    name: &str,
) -> Result<Answer, String> {
    let query = async {
        let client = sentinel.client().map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&connection_config())
            .await
            .map_err(|e| e.to_string())?;
        let fields: HashMap<String, String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(name)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let field = |key: &str| {
            fields
                .get(key)
                .ok_or_else(|| format!("SENTINEL MASTER reply without `{key}`"))
        };
        Ok(Answer {
            epoch: field("config-epoch")?
                .parse()
                .map_err(|_| "bad config-epoch".to_owned())?,
            host: field("ip")?.clone(),
            port: field("port")?.parse().map_err(|_| "bad port".to_owned())?,
        })
    };
    match tokio::time::timeout(SENTINEL_TIMEOUT, query).await {
        Ok(answer) => answer,
        Err(_) => Err(format!(
            "no answer within {} ms",
            SENTINEL_TIMEOUT.as_millis()
        )),
    }
}

/// The address of the primary of `set`, by the newest configuration a sentinel reports.
pub async fn resolve(set: &RedisSentinel) -> Result<(String, u16), RedisError> {
    let answers = join_all(set.sentinels.iter().map(|s| ask(s, &set.master_name))).await;
    let mut errors = Vec::new();
    let mut best: Option<Answer> = None;
    for (sentinel, answer) in set.sentinels.iter().zip(answers) {
        match answer {
            Ok(a) if best.as_ref().is_none_or(|b| a.epoch > b.epoch) => best = Some(a),
            Ok(_) => {}
            Err(e) => errors.push(format!("{sentinel}: {e}")),
        }
    }
    match best {
        Some(a) => Ok((a.host, a.port)),
        None => Err(outage(format!(
            "no sentinel named the primary of `{}`: {}",
            set.master_name,
            errors.join("; ")
        ))),
    }
}

/// A client for the current primary of `set`, with `node`'s credentials and database.
async fn primary_client(
    set: &RedisSentinel,
    node: &RedisConnectionInfo,
) -> Result<Client, RedisError> {
    let (host, port) = resolve(set).await?;
    // Once per new connection: after a failover, the first line names the promoted node.
    tracing::info!(master = %set.master_name, primary = %format!("{host}:{port}"), "redis sentinel: connecting to the primary");
    let info = ConnectionAddr::Tcp(host, port)
        .into_connection_info()?
        .set_redis_settings(node.clone());
    Client::open(info)
}

/// Fails (as an outage) unless the node answers `ROLE` as a master.
async fn check_primary(
    conn: &mut impl ConnectionLike,
    set: &RedisSentinel,
) -> Result<(), RedisError> {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(conn).await?;
    match role.first() {
        Some(redis::Value::BulkString(b)) if b == b"master" => Ok(()),
        _ => Err(outage(format!(
            "the node the sentinels name as primary of `{}` is not a primary (failover in progress)",
            set.master_name
        ))),
    }
}

/// A connection manager on the current primary of `set`, with the key-value backend's
/// bounds and no retries of its own (the caller drops it on failure). Bounded by the caller.
pub async fn primary_manager(
    set: &RedisSentinel,
    node: &RedisConnectionInfo,
) -> Result<ConnectionManager, RedisError> {
    let client = primary_client(set, node).await?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None)
        .set_number_of_retries(0);
    let mut manager = ConnectionManager::new_with_config(client, config).await?;
    check_primary(&mut manager, set).await?;
    Ok(manager)
}

/// A new connection of its own on the current primary of `set`. Bounded by the caller.
pub async fn primary_connection(
    set: &RedisSentinel,
    node: &RedisConnectionInfo,
) -> Result<MultiplexedConnection, RedisError> {
    let client = primary_client(set, node).await?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&connection_config())
        .await?;
    check_primary(&mut conn, set).await?;
    Ok(conn)
}

/// Writes that reached the primary but not enough replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReplicated {
    pub acknowledged: i64,
    pub wait: ReplicaWait,
}

impl fmt::Display for NotReplicated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not confirmed: {} of {} replica(s) acknowledged this connection's writes within {} ms (a refused write is on the primary, and may or may not survive a failover)",
            self.acknowledged,
            self.wait.replicas,
            self.wait.timeout.as_millis()
        )
    }
}

impl From<NotReplicated> for RedisError {
    /// A client-side error: not a connection failure, so the connection is kept.
    fn from(e: NotReplicated) -> Self {
        RedisError::from((ErrorKind::Client, "WAIT", e.to_string()))
    }
}

/// `WAIT replicas timeout` on `conn`: Redis counts the replicas that have everything this
/// connection wrote so far (on a connection that wrote nothing, any connected replica).
pub async fn wait_for_replicas<E: From<RedisError> + From<NotReplicated>>(
    conn: &mut impl ConnectionLike,
    wait: ReplicaWait,
) -> Result<(), E> {
    let timeout_ms = u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX);
    let acknowledged: i64 = redis::cmd("WAIT")
        .arg(wait.replicas)
        .arg(timeout_ms)
        .query_async(conn)
        .await?;
    if acknowledged >= i64::from(wait.replicas) {
        Ok(())
    } else {
        Err(NotReplicated { acknowledged, wait }.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failover_errors_send_the_caller_back_to_the_sentinels() {
        let wait = ReplicaWait {
            replicas: 1,
            timeout: Duration::from_millis(200),
        };
        let not_confirmed = RedisError::from(NotReplicated {
            acknowledged: 0,
            wait,
        });
        assert!(!is_failover_error(&not_confirmed), "{not_confirmed}");
        assert!(
            not_confirmed.to_string().contains("0 of 1 replica(s)"),
            "{not_confirmed}"
        );
        assert!(is_failover_error(&outage("x".into())));
        let wrong_type = RedisError::from((ErrorKind::Client, "other", "detail".to_owned()));
        assert!(!is_failover_error(&wrong_type));
    }
}
