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

/// Serves `add` then `cart`, and the item is there.
async fn serves_the_stateless_cart(lab: &Lab) {
    let shopper = lab.shopper();
    shopper
        .add(Design::Stateless, MACBOOK.0, MACBOOK.1)
        .await
        .succeeded("add");
    let cart = shopper.cart(Design::Stateless).await.succeeded("cart");
    assert_eq!(cart.items(), [MACBOOK.0]);
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
    serves_the_stateless_cart(&lab).await;
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
