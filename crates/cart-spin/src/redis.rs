//! [`SpinRedis`]: cart-core's [`RedisCommands`] over spin-sdk 7's `spin:redis`.

use cart_core::{RedisArg, RedisCommands, RedisReply, Settings, StoreError, redis_error};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::Duration;

thread_local! {
    /// This instance's Redis connection and the address it went to (a wasm instance has one
    /// thread).
    static CONNECTION: RefCell<Option<(String, Rc<Connection>)>> = const { RefCell::new(None) };
}

/// Redis at `redis_url` (with `redis_password`, if set, in the address opened, never in the
/// allowed hosts), connected once per instance and kept while it works: on real Spin each
/// `open` is a new TCP connection, which per request cost more than the command.
/// (`spin:redis` connections are multiplexed, so the instance's concurrent requests share it.)
/// A command that fails forgets it, so the next request connects afresh and service resumes by
/// itself once Redis is back.
pub struct SpinRedis {
    /// What `open` takes: `redis_url` with the password in it, if one is set. Never logged.
    address: String,
    password: String,
    conn: OnceCell<Rc<Connection>>,
}

impl SpinRedis {
    pub fn new(settings: &Settings) -> SpinRedis {
        SpinRedis {
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
                let opened = Connection::open(&self.address)
                    .await
                    .map_err(|e| redis_error(e, &self.address, &self.password))?;
                let opened = Rc::new(opened);
                CONNECTION.set(Some((self.address.clone(), opened.clone())));
                opened
            }
        };
        Ok(self.conn.get_or_init(|| conn))
    }

    /// A command failed: the connection may be broken, so the next request opens another.
    fn failed(&self, e: spin_sdk::redis::Error) -> StoreError {
        CONNECTION.set(None);
        redis_error(e, &self.address, &self.password)
    }
}

impl RedisCommands for SpinRedis {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()
            .await?
            .get(key)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.set(key, value).await.map_err(|e| self.failed(e))
    }

    async fn del(&self, key: &str) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        conn.del([key])
            .await
            .map(|_| ())
            .map_err(|e| self.failed(e))
    }

    async fn execute(
        &self,
        command: &str,
        arguments: Vec<RedisArg>,
    ) -> Result<Vec<RedisReply>, StoreError> {
        let arguments = arguments.into_iter().map(|argument| match argument {
            RedisArg::Int64(n) => RedisParameter::Int64(n),
            RedisArg::Binary(bytes) => RedisParameter::Binary(bytes),
        });
        let conn = self.conn().await?;
        let results = conn
            .execute(command, arguments)
            .await
            .map_err(|e| self.failed(e))?;
        Ok(results.into_iter().map(reply).collect())
    }

    async fn pause(&self, millis: u64) {
        spin_sdk::time::sleep(Duration::from_millis(millis)).await
    }
}

fn reply(result: RedisResult) -> RedisReply {
    match result {
        RedisResult::Nil => RedisReply::Nil,
        RedisResult::Status(status) => RedisReply::Status(status),
        RedisResult::Int64(n) => RedisReply::Int64(n),
        RedisResult::Binary(bytes) => RedisReply::Binary(bytes),
    }
}
