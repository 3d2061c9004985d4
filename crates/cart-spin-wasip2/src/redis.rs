//! [`SpinRedis`]: cart-core's [`RedisCommands`] over spin-sdk 5.2's `fermyon:spin/redis`
//! (synchronous calls).

use cart_core::{RedisArg, RedisCommands, RedisReply, Settings, StoreError, redis_error};
use spin_sdk::redis::{Connection, RedisParameter, RedisResult};
use std::cell::OnceCell;
use std::time::Duration;

/// Redis at `redis_url` (with `redis_password`, if set, in the address opened, never in the
/// allowed hosts), opened when first needed. Spin gives every WASIp2 request a fresh instance,
/// so there is nothing to keep between requests: one connection a request.
pub struct SpinRedis {
    /// What `open` takes: `redis_url` with the password in it, if one is set. Never logged.
    address: String,
    password: String,
    conn: OnceCell<Connection>,
}

impl SpinRedis {
    pub fn new(settings: &Settings) -> SpinRedis {
        SpinRedis {
            address: settings.redis_address(),
            password: settings.redis_password.0.clone(),
            conn: OnceCell::new(),
        }
    }

    fn conn(&self) -> Result<&Connection, StoreError> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn);
        }
        let opened = Connection::open(&self.address).map_err(|e| self.failed(e))?;
        Ok(self.conn.get_or_init(|| opened))
    }

    fn failed(&self, e: spin_sdk::redis::Error) -> StoreError {
        redis_error(e, &self.address, &self.password)
    }
}

impl RedisCommands for SpinRedis {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()?.get(key).map_err(|e| self.failed(e))
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn()?.set(key, value).map_err(|e| self.failed(e))
    }

    async fn del(&self, key: &str) -> Result<(), StoreError> {
        let keys = [key.to_owned()];
        self.conn()?
            .del(&keys)
            .map(|_| ())
            .map_err(|e| self.failed(e))
    }

    async fn execute(
        &self,
        command: &str,
        arguments: Vec<RedisArg>,
    ) -> Result<Vec<RedisReply>, StoreError> {
        let arguments: Vec<RedisParameter> = arguments
            .into_iter()
            .map(|argument| match argument {
                RedisArg::Int64(n) => RedisParameter::Int64(n),
                RedisArg::Binary(bytes) => RedisParameter::Binary(bytes),
            })
            .collect();
        let results = self
            .conn()?
            .execute(command, &arguments)
            .map_err(|e| self.failed(e))?;
        Ok(results.into_iter().map(reply).collect())
    }

    /// Blocking is fine: a WASIp2 instance serves this one request only.
    async fn pause(&self, millis: u64) {
        std::thread::sleep(Duration::from_millis(millis))
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
