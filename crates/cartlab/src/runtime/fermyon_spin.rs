//! `fermyon:spin@2.0.0` (key-value, variables, redis): the Spin interfaces of WASIp2
//! guests (spin-sdk <= 5.2). The same operations over the same backends and grants as
//! `spin:*@3.0.0` ([`spin_host`](crate::runtime::spin_host),
//! [`spin_redis`](crate::runtime::spin_redis)); only the calling convention differs: a
//! WASIp2 call is synchronous for the guest, so the host borrows the instance's state for
//! the whole call instead of reaching it through an `Accessor`.

use ::redis::{Cmd, Value};
use wasmtime::component::Resource;

use crate::runtime::bindings::{key_value, key_value_v2, redis, redis_v2, variables, variables_v2};
use crate::runtime::instance::InstanceState;
use crate::runtime::spin_host::{OpenStore, kv_error};
use crate::runtime::spin_redis::{
    RedisConnection, WitResult, execute_command, other, redis_results, run, typed,
};

type KvResult<T> = wasmtime::Result<Result<T, key_value_v2::Error>>;
type RedisResult<T> = wasmtime::Result<Result<T, redis_v2::Error>>;

// The @2.0.0 types are the @3.0.0 ones under another name: converted case by case.

impl From<variables::Error> for variables_v2::Error {
    fn from(error: variables::Error) -> Self {
        match error {
            variables::Error::InvalidName(s) => Self::InvalidName(s),
            variables::Error::Undefined(s) => Self::Undefined(s),
            variables::Error::Provider(s) => Self::Provider(s),
            variables::Error::Other(s) => Self::Other(s),
        }
    }
}

impl From<key_value::Error> for key_value_v2::Error {
    fn from(error: key_value::Error) -> Self {
        match error {
            key_value::Error::StoreTableFull => Self::StoreTableFull,
            key_value::Error::NoSuchStore => Self::NoSuchStore,
            key_value::Error::AccessDenied => Self::AccessDenied,
            key_value::Error::Other(s) => Self::Other(s),
        }
    }
}

impl From<redis::Error> for redis_v2::Error {
    fn from(error: redis::Error) -> Self {
        match error {
            redis::Error::InvalidAddress => Self::InvalidAddress,
            redis::Error::TooManyConnections => Self::TooManyConnections,
            redis::Error::TypeError => Self::TypeError,
            redis::Error::Other(s) => Self::Other(s),
        }
    }
}

impl From<redis_v2::RedisParameter> for redis::RedisParameter {
    fn from(parameter: redis_v2::RedisParameter) -> Self {
        match parameter {
            redis_v2::RedisParameter::Int64(i) => Self::Int64(i),
            redis_v2::RedisParameter::Binary(bytes) => Self::Binary(bytes),
        }
    }
}

impl From<redis::RedisResult> for redis_v2::RedisResult {
    fn from(result: redis::RedisResult) -> Self {
        match result {
            redis::RedisResult::Nil => Self::Nil,
            redis::RedisResult::Status(s) => Self::Status(s),
            redis::RedisResult::Int64(i) => Self::Int64(i),
            redis::RedisResult::Binary(bytes) => Self::Binary(bytes),
        }
    }
}

/// A `spin:redis@3.0.0`-typed answer in `fermyon:spin/redis@2.0.0` terms.
fn v2<T>(answer: WitResult<T>) -> RedisResult<T> {
    Ok(answer?.map_err(Into::into))
}

impl variables_v2::Host for &mut InstanceState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables_v2::Error>> {
        Ok(self.component.variable(&name).map_err(Into::into))
    }
}

impl key_value_v2::Host for &mut InstanceState {}

impl key_value_v2::HostStore for &mut InstanceState {
    async fn open(&mut self, label: String) -> KvResult<Resource<OpenStore>> {
        // Spin: a label the manifest did not grant opens as access-denied.
        let Some(backend) = self.component.key_value_store(&label) else {
            return Ok(Err(key_value_v2::Error::AccessDenied));
        };
        Ok(self
            .table
            .push(OpenStore::new(backend))
            .map_err(|_| key_value_v2::Error::StoreTableFull))
    }

    async fn get(&mut self, store: Resource<OpenStore>, key: String) -> KvResult<Option<Vec<u8>>> {
        let backend = self.table.get(&store)?.backend();
        Ok(backend.get(key).await.map_err(|e| kv_error(e).into()))
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> KvResult<()> {
        let backend = self.table.get(&store)?.backend();
        Ok(backend
            .set(key, value)
            .await
            .map_err(|e| kv_error(e).into()))
    }

    async fn delete(&mut self, store: Resource<OpenStore>, key: String) -> KvResult<()> {
        let backend = self.table.get(&store)?.backend();
        Ok(backend.delete(key).await.map_err(|e| kv_error(e).into()))
    }

    async fn exists(&mut self, store: Resource<OpenStore>, key: String) -> KvResult<bool> {
        let backend = self.table.get(&store)?.backend();
        Ok(backend.exists(key).await.map_err(|e| kv_error(e).into()))
    }

    async fn get_keys(&mut self, store: Resource<OpenStore>) -> KvResult<Vec<String>> {
        let backend = self.table.get(&store)?.backend();
        Ok(backend.get_keys().await.map_err(|e| kv_error(e).into()))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl redis_v2::Host for &mut InstanceState {}

impl redis_v2::HostConnection for &mut InstanceState {
    async fn open(&mut self, address: String) -> RedisResult<Resource<RedisConnection>> {
        let component = self.component.clone();
        Ok(
            match crate::runtime::spin_redis::open(&component, &address).await {
                Ok(opened) => self
                    .table
                    .push(opened)
                    .map_err(|_| redis_v2::Error::TooManyConnections),
                Err(e) => Err(e.into()),
            },
        )
    }

    async fn publish(
        &mut self,
        connection: Resource<RedisConnection>,
        channel: String,
        payload: Vec<u8>,
    ) -> RedisResult<()> {
        let cmd = Cmd::publish(channel, payload);
        let published: Result<i64, _> =
            run(&mut **self, &connection, "PUBLISH", &cmd, other).await?;
        Ok(published.map(drop).map_err(Into::into))
    }

    async fn get(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> RedisResult<Option<Vec<u8>>> {
        v2(run(&mut **self, &connection, "GET", &Cmd::get(key), other).await)
    }

    async fn set(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        value: Vec<u8>,
    ) -> RedisResult<()> {
        v2(run(
            &mut **self,
            &connection,
            "SET",
            &Cmd::set(key, value),
            other,
        )
        .await)
    }

    async fn incr(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> RedisResult<i64> {
        v2(run(&mut **self, &connection, "INCR", &Cmd::incr(key, 1), typed).await)
    }

    async fn del(
        &mut self,
        connection: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> RedisResult<u32> {
        v2(run(&mut **self, &connection, "DEL", &Cmd::del(keys), other).await)
    }

    async fn sadd(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> RedisResult<u32> {
        v2(run(
            &mut **self,
            &connection,
            "SADD",
            &Cmd::sadd(key, values),
            typed,
        )
        .await)
    }

    async fn smembers(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
    ) -> RedisResult<Vec<String>> {
        v2(run(
            &mut **self,
            &connection,
            "SMEMBERS",
            &Cmd::smembers(key),
            typed,
        )
        .await)
    }

    async fn srem(
        &mut self,
        connection: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> RedisResult<u32> {
        v2(run(
            &mut **self,
            &connection,
            "SREM",
            &Cmd::srem(key, values),
            typed,
        )
        .await)
    }

    async fn execute(
        &mut self,
        connection: Resource<RedisConnection>,
        command: String,
        arguments: Vec<redis_v2::RedisParameter>,
    ) -> RedisResult<Vec<redis_v2::RedisResult>> {
        let cmd = execute_command(&command, arguments.into_iter().map(Into::into).collect());
        let reply: Result<Value, _> = run(&mut **self, &connection, &command, &cmd, other).await?;
        Ok(
            match reply.and_then(|value| redis_results(value).map_err(redis::Error::Other)) {
                Ok(results) => Ok(results.into_iter().map(Into::into).collect()),
                Err(e) => Err(e.into()),
            },
        )
    }

    async fn drop(&mut self, connection: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}
