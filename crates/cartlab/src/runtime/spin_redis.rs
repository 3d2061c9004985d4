//! `spin:redis/redis@3.0.0`: outbound Redis, as Spin provides it. `open(address)` is
//! allowed only for addresses matching the component's `allowed_outbound_hosts`
//! (else `invalid-address`, as in Spin). The address may carry credentials
//! (`redis://:<password>@host:port`, percent-encoded): they are sent to Redis, play no part in
//! the check, and never appear in logs or errors.
//! Unlike Spin, connecting and every command are bounded (the key-value backend's
//! timeouts), so a dead or hung Redis gives a prompt `other(..)` error, never a hang; and
//! a connection is not a new TCP connection per `open` but the host's shared one, until the
//! guest sends a command that keeps state on it ([`connections`]).
//! An address the runtime config maps to a Sentinel set (a cartlab extension) reaches the
//! current primary instead, and commands on data then wait for replicas where it asks for
//! that (`WAIT`, outside `MULTI` only: a `WAIT` queued in a transaction would change `EXEC`'s
//! reply); see [`connections`].

mod connections;
pub use connections::{SharedRedis, waits_for_replicas};

use std::sync::Arc;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::{Cmd, RedisError, Value};
use wasmtime::component::{Accessor, Resource};

use crate::app::runtime_config::{RedisUrl, ReplicaWait};
use crate::runtime::bindings::redis as wit;
use crate::runtime::instance::{ComponentGrants, InstanceState};
use crate::runtime::kv::redis::sentinel::wait_for_replicas;
use crate::runtime::kv::redis::within_deadline;
use crate::runtime::spin_host::SpinHost;
use connections::shares_connection;

/// An open `spin:redis/redis.connection`.
pub struct RedisConnection {
    url: RedisUrl,
    /// The host's connection to `url`, shared with other guests, while `private` is `None`.
    shared: ConnectionManager,
    /// This guest's own connection, from its first command that keeps connection state.
    private: Option<MultiplexedConnection>,
    /// Between a `MULTI` and its `EXEC`/`DISCARD` (on the private connection).
    in_transaction: bool,
    /// What a write waits for (its Sentinel set's `wait_replicas`), looked up once at `open`.
    wait: Option<ReplicaWait>,
}

pub(crate) type WitResult<T> = wasmtime::Result<Result<T, wit::Error>>;

pub(crate) fn other(e: RedisError) -> wit::Error {
    wit::Error::Other(e.to_string())
}

/// The WIT's `type-error`: a reply of the wrong type for the call, or Redis's `WRONGTYPE`
/// (the key holds another kind of value), told by the reply's error code.
pub(crate) fn typed(e: RedisError) -> wit::Error {
    if e.kind() == redis::ErrorKind::UnexpectedReturnType || e.code() == Some("WRONGTYPE") {
        wit::Error::TypeError
    } else {
        other(e)
    }
}

/// Maps a Redis reply onto `list<redis-result>` the way Spin does: arrays (and sets)
/// are flattened into the list; nil -> `nil`; OK and other simple strings -> `status`;
/// integers and booleans -> `int64`; bulk strings, doubles and big numbers -> `binary`
/// (the latter two as decimal text). Maps, attributes, verbatim strings and push
/// messages are refused, as Spin refuses them; an error nested in an array (e.g. in an
/// `EXEC` reply) is returned as an error.
pub fn redis_results(value: Value) -> Result<Vec<wit::RedisResult>, String> {
    fn append(out: &mut Vec<wit::RedisResult>, value: Value) -> Result<(), String> {
        match value {
            Value::Nil => out.push(wit::RedisResult::Nil),
            Value::Okay => out.push(wit::RedisResult::Status("OK".into())),
            Value::SimpleString(s) => out.push(wit::RedisResult::Status(s)),
            Value::Int(i) => out.push(wit::RedisResult::Int64(i)),
            Value::Boolean(b) => out.push(wit::RedisResult::Int64(i64::from(b))),
            Value::BulkString(bytes) => out.push(wit::RedisResult::Binary(bytes)),
            Value::Double(d) => out.push(wit::RedisResult::Binary(d.to_string().into_bytes())),
            Value::BigNumber(n) => out.push(wit::RedisResult::Binary(n.to_string().into_bytes())),
            Value::Array(items) | Value::Set(items) => {
                for item in items {
                    append(out, item)?;
                }
            }
            Value::ServerError(e) => return Err(e.to_string()),
            Value::Map(_) => return Err("Redis map replies are not supported".into()),
            Value::Attribute { .. } => {
                return Err("Redis attribute replies are not supported".into());
            }
            Value::VerbatimString { .. } => {
                return Err("Redis verbatim string replies are not supported".into());
            }
            Value::Push { .. } => return Err("Redis push messages are not supported".into()),
            // `redis::Value` is non-exhaustive: a reply kind added later is refused too.
            _ => return Err("unsupported Redis reply".into()),
        }
        Ok(())
    }
    let mut out = Vec::new();
    append(&mut out, value)?;
    Ok(out)
}

/// Builds the command `execute` sends: the name, then each argument as given.
pub fn execute_command(command: &str, arguments: Vec<wit::RedisParameter>) -> redis::Cmd {
    let mut cmd = redis::cmd(command);
    for argument in arguments {
        match argument {
            wit::RedisParameter::Int64(i) => cmd.arg(i),
            wit::RedisParameter::Binary(bytes) => cmd.arg(bytes),
        };
    }
    cmd
}

/// A new multiplexed connection to `url` (its credentials sent), within the deadline.
async fn connect(
    shared: &SharedRedis,
    url: &RedisUrl,
) -> Result<MultiplexedConnection, wit::Error> {
    within_deadline(shared.private_connection(url))
        .await
        .map_err(other)
}

/// Sends `cmd` on `conn` and then, if `wait` says so, `WAIT` on the same connection, all
/// within one deadline.
async fn send<R: redis::FromRedisValue>(
    conn: &mut impl ConnectionLike,
    cmd: &redis::Cmd,
    wait: Option<ReplicaWait>,
) -> Result<R, RedisError> {
    within_deadline(async {
        let reply = cmd.query_async(conn).await?;
        if let Some(wait) = wait {
            wait_for_replicas::<RedisError>(conn, wait).await?;
        }
        Ok(reply)
    })
    .await
}

/// Where a command goes out.
enum Route {
    /// The host's connection to the guest's address, shared with other guests.
    Shared(ConnectionManager),
    /// The guest's own connection.
    Private(MultiplexedConnection),
    /// A private connection to this address, to be made first.
    Connect(RedisUrl, Arc<SharedRedis>),
}

/// How [`run`] reaches the guest's open connections: through a WASIp3 `Accessor` between
/// awaits, or through a WASIp2 guest's own store, borrowed for the whole (synchronous) call.
pub(crate) trait GuestConnections {
    fn with_state<R>(
        &mut self,
        f: impl FnOnce(&mut InstanceState) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R>;
}

impl GuestConnections for &mut InstanceState {
    fn with_state<R>(
        &mut self,
        f: impl FnOnce(&mut InstanceState) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        f(self)
    }
}

impl<T> GuestConnections for &Accessor<T, SpinHost> {
    fn with_state<R>(
        &mut self,
        f: impl FnOnce(&mut InstanceState) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        self.with(|mut access| f(access.get()))
    }
}

/// Runs `cmd` (named `command`) on the guest's connection within the deadline, first moving
/// the guest to a private connection if the command keeps state on it; `error` maps a
/// failure.
pub(crate) async fn run<R: redis::FromRedisValue>(
    mut guest: impl GuestConnections,
    connection: &Resource<RedisConnection>,
    command: &str,
    cmd: &redis::Cmd,
    error: fn(RedisError) -> wit::Error,
) -> WitResult<R> {
    let (route, wait) = guest.with_state(|state| {
        let open = state.table.get(connection)?;
        let shared_redis = &state.component.shared_redis;
        // Inside MULTI a command is only queued: the WAIT follows its EXEC.
        let queued = open.in_transaction && !command.eq_ignore_ascii_case("EXEC");
        let wait = open.wait.filter(|_| !queued && waits_for_replicas(command));
        let route = match &open.private {
            Some(private) => Route::Private(private.clone()),
            None if shares_connection(command) => Route::Shared(open.shared.clone()),
            None => Route::Connect(open.url.clone(), shared_redis.clone()),
        };
        Ok((route, wait))
    })?;
    let result = match route {
        Route::Shared(mut conn) => {
            let result = send(&mut conn, cmd, wait).await;
            if let Err(e) = &result {
                guest.with_state(|state| {
                    let open = state.table.get(connection)?;
                    state.component.shared_redis.failed(&open.url, e);
                    Ok(())
                })?;
            }
            result
        }
        Route::Private(mut conn) => send(&mut conn, cmd, wait).await,
        Route::Connect(url, shared_redis) => {
            let mut private = match connect(&shared_redis, &url).await {
                Ok(private) => private,
                Err(e) => return Ok(Err(e)),
            };
            guest.with_state(|state| {
                state.table.get_mut(connection)?.private = Some(private.clone());
                Ok(())
            })?;
            send(&mut private, cmd, wait).await
        }
    };
    let ends_transaction = ["EXEC", "DISCARD", "RESET"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(command));
    let begins_transaction = command.eq_ignore_ascii_case("MULTI") && result.is_ok();
    if begins_transaction || ends_transaction {
        guest.with_state(|state| {
            state.table.get_mut(connection)?.in_transaction = begins_transaction;
            Ok(())
        })?;
    }
    Ok(result.map_err(error))
}

/// `open(address)`: Spin answers an address that does not parse, or one outside
/// allowed_outbound_hosts, with `invalid-address`; otherwise the host's shared connection to
/// it (connecting within the deadline if there is none yet).
pub(crate) async fn open(
    component: &ComponentGrants,
    address: &str,
) -> Result<RedisConnection, wit::Error> {
    let Ok(url) = RedisUrl::parse(address) else {
        return Err(wit::Error::InvalidAddress);
    };
    if !component.allowed_outbound_hosts.allows_redis(&url) {
        tracing::warn!(
            destination = %url,
            "spin:redis: connection refused: destination not in allowed_outbound_hosts"
        );
        return Err(wit::Error::InvalidAddress);
    }
    let shared = within_deadline(component.shared_redis.connection(&url))
        .await
        .map_err(other)?;
    Ok(RedisConnection {
        wait: component.shared_redis.replica_wait(&url),
        url,
        shared,
        private: None,
        in_transaction: false,
    })
}

impl wit::Host for &mut InstanceState {}

impl wit::HostConnection for &mut InstanceState {}

impl<T> wit::HostConnectionWithStore<T> for SpinHost {
    fn drop(
        mut access: wasmtime::component::Access<'_, T, Self>,
        connection: Resource<RedisConnection>,
    ) -> wasmtime::Result<()> {
        access.get().table.delete(connection)?;
        Ok(())
    }

    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> WitResult<Resource<RedisConnection>> {
        let component = accessor.with(|mut access| access.get().component.clone());
        let opened = match open(&component, &address).await {
            Ok(opened) => opened,
            Err(e) => return Ok(Err(e)),
        };
        accessor.with(|mut access| {
            Ok(access
                .get()
                .table
                .push(opened)
                .map_err(|_| wit::Error::TooManyConnections))
        })
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> WitResult<()> {
        let published: Result<i64, _> = run(
            accessor,
            &connection,
            "PUBLISH",
            &Cmd::publish(channel, payload),
            other,
        )
        .await?;
        Ok(published.map(drop))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> WitResult<Option<Vec<u8>>> {
        run(accessor, &connection, "GET", &Cmd::get(key), other).await
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> WitResult<()> {
        run(accessor, &connection, "SET", &Cmd::set(key, value), other).await
    }

    async fn incr(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> WitResult<i64> {
        // Plain INCR, as Spin sends it: a string that is not a number is Redis's own
        // error (`other`, as under Spin); another kind of value is a `type-error`.
        run(accessor, &connection, "INCR", &Cmd::incr(key, 1), typed).await
    }

    async fn del(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> WitResult<u32> {
        run(accessor, &connection, "DEL", &Cmd::del(keys), other).await
    }

    async fn sadd(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> WitResult<u32> {
        run(
            accessor,
            &connection,
            "SADD",
            &Cmd::sadd(key, values),
            typed,
        )
        .await
    }

    async fn smembers(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> WitResult<Vec<String>> {
        run(
            accessor,
            &connection,
            "SMEMBERS",
            &Cmd::smembers(key),
            typed,
        )
        .await
    }

    async fn srem(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> WitResult<u32> {
        run(
            accessor,
            &connection,
            "SREM",
            &Cmd::srem(key, values),
            typed,
        )
        .await
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        connection: Resource<RedisConnection>,
        command: String,
        arguments: Vec<wit::RedisParameter>,
    ) -> WitResult<Vec<wit::RedisResult>> {
        let cmd = execute_command(&command, arguments);
        let reply: Result<Value, _> = run(accessor, &connection, &command, &cmd, other).await?;
        Ok(reply.and_then(|value| redis_results(value).map_err(wit::Error::Other)))
    }
}

#[cfg(test)]
mod tests;
