//! A shared Redis behind a password (`requirepass`) or an ACL user limited to `cartlab:*`
//! keys: `cartlab up` connects with the credentials in the runtime config's URL and serves
//! the stateless cart; without them, or with wrong ones, it answers a prompt 503. Neither
//! its log nor any answer ever shows the credentials.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Design, Expect, Lab, MACBOOK, RedisServer, redis_runtime_config, with_redis};
use test_support::RedisAuth;

/// Needs percent-encoding in a URL; `MARK` is in it and in its encoded form.
const SECRET: &str = "cart-s3cret/:@pw";
const MARK: &str = "s3cret";

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(MARK), "{what} shows the credentials: {text}");
}

/// Serves `add` then `cart`, and the item is there; answers the session cookie's id.
async fn serves_the_stateless_cart(lab: &Lab) -> String {
    let shopper = lab.shopper();
    shopper
        .add(Design::Stateless, MACBOOK.0, MACBOOK.1)
        .await
        .succeeded("add");
    let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
    assert_eq!(cart.items(), [MACBOOK.0]);
    let cookie = shopper.cookie(Design::Stateless).expect("a session cookie");
    cookie
        .split_once('=')
        .map(|(_, id)| id.to_string())
        .expect("name=value")
}

/// What `redis-cli --scan` finds, and every value, hold no session id from a cookie: whoever
/// reads the store cannot take over a session.
fn assert_store_holds_no_id(redis: &RedisServer, id: &str) {
    let keys: Vec<String> = redis.query(&["KEYS", "*"]);
    assert!(!keys.is_empty(), "the session is stored");
    for key in &keys {
        assert!(!key.contains(id), "key {key} holds the cookie's id");
        let kind: String = redis.query(&["TYPE", key]);
        if kind == "string" {
            let value: Vec<u8> = redis.query(&["GET", key]);
            assert!(
                !String::from_utf8_lossy(&value).contains(id),
                "the value of {key} holds the cookie's id"
            );
        }
    }
}

/// `add` and `health` (both reach the store; a cart without a session does not) answer 503
/// `store_unavailable` promptly, and the answers do not show the credentials.
async fn refuses_promptly(lab: &Lab) {
    let shopper = lab.shopper();
    let answers = [
        shopper.add(Design::Stateless, MACBOOK.0, MACBOOK.1).await,
        shopper.health(Design::Stateless).await,
    ];
    for answer in answers {
        let answer = answer.reached();
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert_eq!(answer.error_code(), Some("store_unavailable"));
        assert!(
            answer.elapsed < Duration::from_secs(3),
            "took {:?}",
            answer.elapsed
        );
        assert_hidden("a 503 body", &answer.body.to_string());
    }
}

/// Stops `lab`; no log line shows the credentials.
fn stop_and_check_log(lab: Lab) -> Vec<String> {
    let (stopped, log) = lab.stop_with_log();
    assert!(stopped, "cartlab up stopped cleanly");
    for line in &log {
        assert_hidden("a log line", line);
    }
    log
}

/// `cartlab up` with the key-value store `default` at `url`.
fn lab_at(url: &str, dir: &Path) -> Lab {
    let config = redis_runtime_config(dir, url);
    Lab::start(&[
        "--runtime-config-file",
        config.to_str().expect("utf-8 path"),
        "--state-dir",
        dir.to_str().expect("utf-8 path"),
    ])
}

/// With the credentials the cart works, and the start-up summary shows the store as
/// `redis://***@host:port`; without them, or with a wrong password, prompt 503s.
async fn credentials_are_used_and_hidden(redis: RedisServer) {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(redis.url().contains("s3cret"), "{}", redis.url());
    let lab = with_redis(&redis, dir.path(), &[]);
    let id = serves_the_stateless_cart(&lab).await;
    assert_store_holds_no_id(&redis, &id);
    let log = stop_and_check_log(lab);
    let shown = format!("redis://***@127.0.0.1:{}", redis.port());
    assert!(
        log.iter().any(|line| line.contains(&shown)),
        "the summary names the store as {shown}: {log:#?}"
    );
    let sessions: Vec<String> = redis.query(&["KEYS", "cartlab:session:*"]);
    assert_eq!(sessions.len(), 1, "{sessions:?}");

    let wrong = format!("redis://:not-the-{MARK}@127.0.0.1:{}", redis.port());
    for url in [redis.url_without_credentials(), wrong] {
        let lab = lab_at(&url, dir.path());
        refuses_promptly(&lab).await;
        stop_and_check_log(lab);
    }
}

#[tokio::test]
async fn redis_with_requirepass() {
    let redis = RedisServer::start_with_auth(RedisAuth::Password(SECRET.into()));
    credentials_are_used_and_hidden(redis).await;
}

#[tokio::test]
async fn redis_acl_user_limited_to_cartlab_keys() {
    let redis = RedisServer::start_with_auth(RedisAuth::AclUser {
        user: "cart".into(),
        password: SECRET.into(),
        keys: "cartlab:*".into(),
    });
    credentials_are_used_and_hidden(redis).await;
}

/// `session_store=redis` (spin:redis): the password is the secret variable `redis_password`,
/// and `redis_url` (the `allowed_outbound_hosts` entry) carries no credentials.
#[tokio::test]
async fn spin_redis_mode_with_the_redis_password_variable() {
    let redis = RedisServer::start_with_auth(RedisAuth::Password(SECRET.into()));
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8 path");
    let url = format!("redis_url={}", redis.url_without_credentials());
    let password = format!("redis_password={SECRET}");
    let base = [
        "--state-dir",
        state,
        "--variable",
        "session_store=redis",
        "--variable",
        &url,
    ];
    let lab = Lab::start(&[&base[..], &["--variable", &password]].concat());
    let id = serves_the_stateless_cart(&lab).await;
    assert_store_holds_no_id(&redis, &id);
    stop_and_check_log(lab);

    let lab = Lab::start(&base);
    refuses_promptly(&lab).await;
    stop_and_check_log(lab);
}
