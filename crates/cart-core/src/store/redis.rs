//! [`RedisKeyValue`]: the [`KeyValue`] store of `session_store = "redis"`, over the
//! `spin:redis` calls an SDK adapter makes ([`RedisCommands`]), so every build (spin-sdk 7 and
//! 5.2) sends Redis the same commands: reads are one `GET`; a new session is one
//! `SET ... PX <lifetime in ms>`; other writes are one `EVAL` of [`CAS_SCRIPT`], which compares
//! the stored value with the one read and `SET`s the new record with `PX <remaining lifetime in
//! ms>` atomically: one round trip, an answer that can be trusted, a real Redis TTL equal to
//! the cookie's `Max-Age`.

use crate::store::{KeyValue, StoreError};

/// The compare-and-set write. `KEYS[1]`: the session key; `ARGV[1]`: the value read (empty:
/// the key must be absent; no record is empty); `ARGV[2]`: the new value; `ARGV[3]`: its TTL in
/// milliseconds. Returns 1 if written, 0 if the value had changed.
pub const CAS_SCRIPT: &str = "\
local current = redis.call('GET', KEYS[1])
if current == false then current = '' end
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1";

/// One argument of a command: `spin:redis`'s `redis-parameter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisArg {
    Int64(i64),
    Binary(Vec<u8>),
}

/// One value of a reply: `spin:redis`'s `redis-result`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisReply {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

/// The `spin:redis` calls [`RedisKeyValue`] makes, on one connection: what each SDK adapter
/// implements. `get`, `set` and `del` are the interface's own functions, kept as such rather
/// than sent through `execute`, so hosts see the calls they always saw.
#[allow(async_fn_in_trait)]
pub trait RedisCommands {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    async fn del(&self, key: &str) -> Result<(), StoreError>;
    async fn execute(
        &self,
        command: &str,
        arguments: Vec<RedisArg>,
    ) -> Result<Vec<RedisReply>, StoreError>;
    /// Waits before a retry after a conflict, without blocking other requests the instance
    /// may be serving.
    async fn pause(&self, millis: u64);
}

/// Sessions in Redis: a [`KeyValue`] whose compare-and-set is [`CAS_SCRIPT`] and whose keys
/// expire by Redis TTL.
pub struct RedisKeyValue<C>(pub C);

fn key_arg(key: &str) -> RedisArg {
    RedisArg::Binary(key.as_bytes().to_vec())
}

fn millis_arg(ttl_ms: u64) -> RedisArg {
    RedisArg::Int64(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
}

impl<C: RedisCommands> KeyValue for RedisKeyValue<C> {
    /// The bytes `GET` returned (`None`: absent).
    type Cas = Option<Vec<u8>>;

    async fn get_cas(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::Cas), StoreError> {
        let value = self.0.get(key).await?;
        Ok((value.clone(), value))
    }

    async fn set_if(
        &self,
        key: &str,
        cas: Option<Self::Cas>,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let expected = cas.flatten().unwrap_or_default();
        let arguments = vec![
            RedisArg::Binary(CAS_SCRIPT.as_bytes().to_vec()),
            RedisArg::Int64(1),
            key_arg(key),
            RedisArg::Binary(expected),
            RedisArg::Binary(value.to_vec()),
            millis_arg(ttl_ms),
        ];
        match self.0.execute("EVAL", arguments).await?.as_slice() {
            [RedisReply::Int64(1)] => Ok(true),
            [RedisReply::Int64(0)] => Ok(false),
            _ => Err(StoreError(
                "unexpected reply to the compare-and-set script".into(),
            )),
        }
    }

    fn confirms_swaps(&self) -> bool {
        true
    }

    fn expires_keys(&self) -> bool {
        true
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key).await
    }

    async fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StoreError> {
        let Some(ttl_ms) = ttl_ms else {
            return self.0.set(key, value).await;
        };
        let arguments = vec![
            key_arg(key),
            RedisArg::Binary(value.to_vec()),
            RedisArg::Binary(b"PX".to_vec()),
            millis_arg(ttl_ms),
        ];
        match self.0.execute("SET", arguments).await?.as_slice() {
            [RedisReply::Status(_)] => Ok(()),
            _ => Err(StoreError("unexpected reply to SET".into())),
        }
    }

    async fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut arguments = Vec::with_capacity(entries.len() * 2);
        for (key, value) in entries {
            arguments.push(key_arg(key));
            arguments.push(RedisArg::Binary(value.to_vec()));
        }
        self.0.execute("MSET", arguments).await.map(|_| ())
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let arguments = vec![key_arg(key), RedisArg::Int64(delta)];
        match self.0.execute("INCRBY", arguments).await?.as_slice() {
            [RedisReply::Int64(n)] => Ok(*n),
            _ => Err(StoreError("unexpected reply to INCRBY".into())),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.del(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let replies = self.0.execute("EXISTS", vec![key_arg(key)]).await?;
        Ok(matches!(replies.as_slice(), [RedisReply::Int64(n)] if *n > 0))
    }

    async fn pause(&self, millis: u64) {
        self.0.pause(millis).await
    }
}

/// A failed `spin:redis` call as a [`StoreError`], with the secret out of it: a host may quote
/// the address it was given, which holds the password.
pub fn redis_error(detail: impl std::fmt::Debug, address: &str, password: &str) -> StoreError {
    let text = format!("redis: {detail:?}");
    if password.is_empty() {
        return StoreError(text);
    }
    StoreError(
        text.replace(address, "(the redis_url address)")
            .replace(password, "***"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{SessionId, SessionRecord};
    use crate::store::SessionStore;
    use crate::{KvSessionStore, session_key};
    use futures::executor::block_on;
    use std::cell::RefCell;

    /// Records each call as text and answers from `replies`, in order.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
        replies: RefCell<Vec<Vec<RedisReply>>>,
    }

    fn text(argument: &RedisArg) -> String {
        match argument {
            RedisArg::Int64(n) => n.to_string(),
            RedisArg::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }

    impl RedisCommands for Recorder {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.calls.borrow_mut().push(format!("get {key}"));
            Ok(Some(b"stored".to_vec()))
        }
        async fn set(&self, key: &str, _value: &[u8]) -> Result<(), StoreError> {
            self.calls.borrow_mut().push(format!("set {key}"));
            Ok(())
        }
        async fn del(&self, key: &str) -> Result<(), StoreError> {
            self.calls.borrow_mut().push(format!("del {key}"));
            Ok(())
        }
        async fn execute(
            &self,
            command: &str,
            arguments: Vec<RedisArg>,
        ) -> Result<Vec<RedisReply>, StoreError> {
            let arguments: Vec<String> = arguments.iter().map(text).collect();
            let call = format!("{command} {}", arguments.join(" "));
            self.calls.borrow_mut().push(call);
            Ok(self.replies.borrow_mut().remove(0))
        }
        async fn pause(&self, _millis: u64) {}
    }

    #[test]
    fn sessions_in_redis_are_one_set_px_and_compare_and_set_evals() {
        block_on(async {
            let store = KvSessionStore(RedisKeyValue(Recorder::default()));
            let replies = vec![
                vec![RedisReply::Status("OK".into())],
                vec![RedisReply::Int64(1)],
                vec![RedisReply::Int64(0)],
                vec![RedisReply::Nil],
            ];
            *store.0.0.replies.borrow_mut() = replies;
            let id = SessionId::generate().unwrap();
            let key = session_key(&id);
            let record = SessionRecord::new(1);
            let json = record.to_json();
            store.create(&id, &record, 60, 0).await.unwrap();
            // What `get` answers is no record: a read, no write.
            assert!(store.load(&id).await.unwrap().is_none());
            assert!(store.save_if(&id, &record, None, 5).await.unwrap());
            assert!(!store.save_if(&id, &record, None, 5).await.unwrap());
            let wrong = store.save_if(&id, &record, None, 5).await.unwrap_err();
            assert!(wrong.0.contains("compare-and-set"), "{wrong}");
            store.delete(&id).await.unwrap();
            assert_eq!(
                *store.0.0.calls.borrow(),
                [
                    format!("SET {key} {json} PX 60000"),
                    format!("get {key}"),
                    format!("EVAL {CAS_SCRIPT} 1 {key}  {json} 5000"),
                    format!("EVAL {CAS_SCRIPT} 1 {key}  {json} 5000"),
                    format!("EVAL {CAS_SCRIPT} 1 {key}  {json} 5000"),
                    format!("del {key}"),
                ]
            );
        });
    }

    #[test]
    fn the_secret_never_reaches_a_redis_error() {
        let address = "redis://:hunter2@cache:6379";
        let error = redis_error(format!("cannot open {address}"), address, "hunter2");
        assert!(!error.0.contains("hunter2"), "{error}");
        assert!(error.0.contains("(the redis_url address)"), "{error}");
        let plain = redis_error("refused", "redis://cache:6379", "");
        assert_eq!(plain.0, "redis: \"refused\"");
    }
}
