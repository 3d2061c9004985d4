use super::*;
use test_support::{RedisAuth, RedisServer};
use wit::{RedisParameter as P, RedisResult as R};

// The generated type has no PartialEq; tests compare results by value.
impl PartialEq for R {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (R::Nil, R::Nil) => true,
            (R::Status(a), R::Status(b)) => a == b,
            (R::Int64(a), R::Int64(b)) => a == b,
            (R::Binary(a), R::Binary(b)) => a == b,
            _ => false,
        }
    }
}

#[test]
fn reply_mapping_matches_spin() {
    assert_eq!(redis_results(Value::Nil).unwrap(), [R::Nil]);
    assert_eq!(
        redis_results(Value::Okay).unwrap(),
        [R::Status("OK".into())]
    );
    assert_eq!(
        redis_results(Value::SimpleString("QUEUED".into())).unwrap(),
        [R::Status("QUEUED".into())]
    );
    assert_eq!(redis_results(Value::Int(-3)).unwrap(), [R::Int64(-3)]);
    assert_eq!(redis_results(Value::Boolean(true)).unwrap(), [R::Int64(1)]);
    assert_eq!(
        redis_results(Value::BulkString(vec![0, 255])).unwrap(),
        [R::Binary(vec![0, 255])]
    );
    assert_eq!(
        redis_results(Value::Double(1.5)).unwrap(),
        [R::Binary(b"1.5".to_vec())]
    );
    // Arrays flatten, nested ones too; an empty array is an empty list.
    assert_eq!(
        redis_results(Value::Array(vec![
            Value::Int(1),
            Value::Nil,
            Value::Array(vec![Value::BulkString(b"x".to_vec()), Value::Okay]),
        ]))
        .unwrap(),
        [
            R::Int64(1),
            R::Nil,
            R::Binary(b"x".to_vec()),
            R::Status("OK".into())
        ]
    );
    assert_eq!(redis_results(Value::Array(Vec::new())).unwrap(), []);
    assert!(redis_results(Value::Map(vec![(Value::Int(1), Value::Int(2))])).is_err());
}

async fn execute(
    conn: &MultiplexedConnection,
    command: &str,
    args: Vec<P>,
) -> Result<Vec<R>, String> {
    let value: Value =
        within_deadline(execute_command(command, args).query_async(&mut conn.clone()))
            .await
            .map_err(|e| e.to_string())?;
    redis_results(value)
}

async fn connect_to(server: &RedisServer) -> MultiplexedConnection {
    connect(
        &SharedRedis::default(),
        &RedisUrl::parse(&server.url()).unwrap(),
    )
    .await
    .unwrap()
}

fn bin(s: &str) -> P {
    P::Binary(s.as_bytes().to_vec())
}

/// A versioned compare-and-set plus PEXPIRE in one EVAL, the shape the session
/// store uses: returns the new version, or 0 if the expected version is stale.
const VERSIONED_SET: &str = r"
local current = redis.call('HGET', KEYS[1], 'v')
if (current or '0') ~= ARGV[1] then return 0 end
local next = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'v', next, 'data', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return next
";

#[tokio::test]
async fn execute_passes_commands_through_including_eval() {
    let server = RedisServer::start();
    let conn = connect_to(&server).await;

    assert_eq!(
        execute(
            &conn,
            "SET",
            vec![bin("k"), bin("v"), bin("PX"), P::Int64(60_000)]
        )
        .await
        .unwrap(),
        [R::Status("OK".into())]
    );
    assert_eq!(
        execute(&conn, "GET", vec![bin("k")]).await.unwrap(),
        [R::Binary(b"v".to_vec())]
    );
    assert_eq!(
        execute(&conn, "GET", vec![bin("nope")]).await.unwrap(),
        [R::Nil]
    );
    let ttl = execute(&conn, "PTTL", vec![bin("k")]).await.unwrap();
    assert!(
        matches!(ttl[..], [R::Int64(ms)] if ms > 0 && ms <= 60_000),
        "{ttl:?}"
    );
    assert_eq!(
        execute(&conn, "MGET", vec![bin("k"), bin("nope")])
            .await
            .unwrap(),
        [R::Binary(b"v".to_vec()), R::Nil]
    );

    let eval = |expected: i64, data: &str| {
        vec![
            bin(VERSIONED_SET),
            P::Int64(1),
            bin("session:s1"),
            P::Int64(expected),
            bin(data),
            P::Int64(30_000),
        ]
    };
    assert_eq!(
        execute(&conn, "EVAL", eval(0, "a")).await.unwrap(),
        [R::Int64(1)]
    );
    assert_eq!(
        execute(&conn, "EVAL", eval(1, "b")).await.unwrap(),
        [R::Int64(2)]
    );
    // A stale version is refused and changes nothing.
    assert_eq!(
        execute(&conn, "EVAL", eval(1, "c")).await.unwrap(),
        [R::Int64(0)]
    );
    assert_eq!(
        execute(&conn, "HGET", vec![bin("session:s1"), bin("data")])
            .await
            .unwrap(),
        [R::Binary(b"b".to_vec())]
    );
    let ttl = execute(&conn, "PTTL", vec![bin("session:s1")])
        .await
        .unwrap();
    assert!(
        matches!(ttl[..], [R::Int64(ms)] if ms > 0 && ms <= 30_000),
        "{ttl:?}"
    );

    // Script errors and unknown commands are errors, not results.
    assert!(
        execute(
            &conn,
            "EVAL",
            vec![bin("return redis.call('NOPE')"), P::Int64(0)]
        )
        .await
        .is_err()
    );
    assert!(execute(&conn, "NOTACOMMAND", vec![]).await.is_err());

    // MULTI/EXEC through execute: EXEC's reply array flattens.
    assert_eq!(
        execute(&conn, "MULTI", vec![]).await.unwrap(),
        [R::Status("OK".into())]
    );
    assert_eq!(
        execute(&conn, "INCR", vec![bin("n")]).await.unwrap(),
        [R::Status("QUEUED".into())]
    );
    assert_eq!(execute(&conn, "EXEC", vec![]).await.unwrap(), [R::Int64(1)]);
}

#[tokio::test]
async fn commands_fail_promptly_when_redis_hangs() {
    let server = RedisServer::start();
    let conn = connect_to(&server).await;
    server.pause();
    let t = std::time::Instant::now();
    let r = execute(&conn, "GET", vec![bin("k")]).await;
    let took = t.elapsed();
    server.resume();
    assert!(r.is_err());
    assert!(
        took < std::time::Duration::from_millis(1500),
        "took {took:?}"
    );
}

#[tokio::test]
async fn incr_answers_type_error_for_a_value_of_the_wrong_type() {
    let server = RedisServer::start();
    let mut conn = connect_to(&server).await;
    let incr = async |conn: &mut MultiplexedConnection, key: &str| {
        let counted: Result<i64, RedisError> = Cmd::incr(key, 1).query_async(conn).await;
        counted.map_err(typed)
    };
    assert!(matches!(incr(&mut conn, "new").await, Ok(1)));
    server.redis_cli(&["SET", "n", "-42"]);
    assert!(matches!(incr(&mut conn, "n").await, Ok(-41)));
    // A string that is not a number: Redis's own error, and the value is left alone.
    for text in ["abc", "1.5", ""] {
        server.redis_cli(&["SET", "s", text]);
        assert!(
            matches!(incr(&mut conn, "s").await, Err(wit::Error::Other(_))),
            "{text:?}"
        );
        assert_eq!(server.redis_cli(&["GET", "s"]), text);
    }
    // Another kind of value: Redis's WRONGTYPE.
    server.redis_cli(&["LPUSH", "list", "x"]);
    assert!(matches!(
        incr(&mut conn, "list").await,
        Err(wit::Error::TypeError)
    ));
    // Overflow is not a type error.
    server.redis_cli(&["SET", "max", &i64::MAX.to_string()]);
    assert!(matches!(
        incr(&mut conn, "max").await,
        Err(wit::Error::Other(_))
    ));
}

/// A password that must be percent-encoded in an address, and must never be shown.
const SECRET: &str = "s3cr@t:/pw";

/// `open`'s connection with the address the guest gave, and its GET of `key`.
async fn open_and_get(address: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    let url = RedisUrl::parse(address).map_err(|e| e.to_string())?;
    let mut conn = connect(&SharedRedis::default(), &url)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let got = within_deadline(redis::cmd("GET").arg(key).query_async(&mut conn)).await;
    got.map_err(|e| format!("{:?}", other(e)))
}

#[tokio::test]
async fn open_sends_the_credentials_of_the_address() {
    let server = RedisServer::start_with_auth(RedisAuth::Password(SECRET.into()));
    server.redis_cli(&["SET", "cartlab:k", "v"]);
    assert!(server.url().contains("s3cr%40t%3A%2Fpw"), "percent-encoded");
    assert_eq!(
        open_and_get(&server.url(), "cartlab:k").await,
        Ok(Some(b"v".to_vec()))
    );
    // Without the password, or with a wrong one: refused promptly, and no error shows it.
    let wrong = format!("redis://:{}@127.0.0.1:{}", "x%2Fy", server.port());
    for address in [server.url_without_credentials(), wrong] {
        let t = std::time::Instant::now();
        let e = open_and_get(&address, "cartlab:k").await.unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_millis(1500));
        assert!(!e.contains("s3cr") && !e.contains("x/y"), "{e}");
    }
}

#[tokio::test]
async fn open_as_an_acl_user_reaches_only_its_keys() {
    let server = RedisServer::start_with_auth(RedisAuth::AclUser {
        user: "cart".into(),
        password: SECRET.into(),
        keys: "cartlab:*".into(),
    });
    assert_eq!(open_and_get(&server.url(), "cartlab:k").await, Ok(None));
    assert!(open_and_get(&server.url(), "other").await.is_err());
    assert!(
        open_and_get(&server.url_without_credentials(), "cartlab:k")
            .await
            .is_err()
    );
}
