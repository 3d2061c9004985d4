//! cartlab's stateless cart for Akamai Functions (Spin 4, WASIp3): the WASIp3
//! `stateless-cart`'s Redis mode and nothing else. Akamai's key-value offers
//! `wasi:keyvalue` store and batch but no atomics: no compare-and-swap, so two instances adding
//! to one cart at once would each write their own copy and one add would be lost (and it takes
//! 50 writes a second per app). This build therefore imports no key-value interface at all and
//! keeps sessions in Redis through `spin:redis`: the same `GET` / `EVAL` compare-and-set /
//! `SET ... PX` as the other builds ([`cart_core::RedisKeyValue`]). `session_store` defaults to
//! `redis`; `key-value` is refused with 500 `invalid_config`.

use cart_core::{KvSessionStore, RedisKeyValue, Settings};
use cart_spin::redis::SpinRedis;
use cart_spin::{Request, Response};

cart_spin::http_handler!(handle);

async fn handle(req: Request) -> Response {
    // On a settings error `serve` answers 500 `invalid_config` before touching the store, so
    // the defaults' address is never opened.
    let redis = match cart_spin::settings(Settings::stateless_redis_only).await {
        Ok(settings) => SpinRedis::new(settings),
        Err(_) => SpinRedis::new(&Settings::stateless_redis_only()),
    };
    let sessions = KvSessionStore(RedisKeyValue(redis));
    cart_spin::serve(req, Settings::stateless_redis_only, &sessions).await
}
