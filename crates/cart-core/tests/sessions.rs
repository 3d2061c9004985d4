//! The session design under contention and over time: compare-and-set retries, 409 when they
//! run out, 64 concurrent adds on one session, sliding and absolute expiry, cookie `Max-Age`
//! equal to the TTL the store is given.

use cart_core::testing::{RecordingStore, fixture_id, ready, yield_now};
use cart_core::{
    Handled, Instance, MAX_ATTEMPTS, MemoryKeyValue, MemoryStore, Request, SessionId,
    SessionRecord, SessionStore, Settings, StoreError, handle,
};
use futures::executor::block_on;
use futures::future::join_all;
use serde_json::{Value, json};
use std::cell::{Cell, RefCell};

use cart_core::testing::T0;

fn instance() -> Instance {
    Instance {
        id: "sess0001".into(),
        requests_served: 1,
    }
}

async fn request<S: SessionStore>(
    settings: &Settings,
    store: &S,
    now: u64,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> Handled {
    request_with(settings, store, now, method, path, cookie, None, body).await
}

#[allow(clippy::too_many_arguments)]
async fn request_with<S: SessionStore>(
    settings: &Settings,
    store: &S,
    now: u64,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    idempotency_key: Option<&str>,
    body: &str,
) -> Handled {
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(cookie) = cookie {
        headers.push(("cookie".to_owned(), cookie.to_owned()));
    }
    if let Some(key) = idempotency_key {
        headers.push(("idempotency-key".to_owned(), key.to_owned()));
    }
    handle(
        settings,
        store,
        &instance(),
        now,
        Request {
            method,
            path,
            headers: &headers,
            body: body.as_bytes(),
        },
    )
    .await
}

fn add_body(item: &str) -> String {
    json!({"item": item, "price": 1}).to_string()
}

/// A cookie-less `POST /stateless/cart/add` of `item` at `T0`: starts a session.
fn first_add<S: SessionStore>(settings: &Settings, store: &S, item: &str) -> Handled {
    block_on(request(
        settings,
        store,
        T0,
        "POST",
        "/stateless/cart/add",
        None,
        &add_body(item),
    ))
}

/// 64 concurrent adds of `item 0` .. `item 63` to the session of `cookie`, at `T0`.
fn sixty_four_adds<S: SessionStore>(settings: &Settings, store: &S, cookie: &str) -> Vec<Handled> {
    let bodies: Vec<String> = (0..64).map(|n| add_body(&format!("item {n}"))).collect();
    block_on(join_all(bodies.iter().map(|b| {
        request(
            settings,
            store,
            T0,
            "POST",
            "/stateless/cart/add",
            Some(cookie),
            b,
        )
    })))
}

/// `GET /stateless/cart` with `cookie` at `now`.
fn read_cart<S: SessionStore>(settings: &Settings, store: &S, now: u64, cookie: &str) -> Handled {
    block_on(request(
        settings,
        store,
        now,
        "GET",
        "/stateless/cart",
        Some(cookie),
        "",
    ))
}

fn body(handled: &Handled) -> Value {
    serde_json::from_slice(&handled.response.body).unwrap()
}

/// `name=value` from a response's Set-Cookie, and its Max-Age.
fn cookie_and_max_age(handled: &Handled) -> (String, u64) {
    let line = handled.response.header("set-cookie").unwrap();
    let pair = line.split(';').next().unwrap().to_owned();
    let max_age = line
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    (pair, max_age)
}

/// The session id in a `name=value` cookie.
fn cookie_id(cookie: &str) -> SessionId {
    fixture_id(cookie.split_once('=').unwrap().1)
}

fn start_session<S: SessionStore>(settings: &Settings, store: &S, now: u64) -> String {
    let first = block_on(request(
        settings,
        store,
        now,
        "POST",
        "/stateless/cart/add",
        None,
        &add_body("first"),
    ));
    assert_eq!(first.response.status, 200);
    cookie_and_max_age(&first).0
}

#[test]
fn sixty_four_concurrent_adds_on_one_session_make_64_lines() {
    let settings = Settings::stateless();
    for round in 0..5 {
        let store = RecordingStore::interleaved();
        let cookie = start_session(&settings, &store, T0);
        let responses = sixty_four_adds(&settings, &store, &cookie);
        for r in &responses {
            assert_eq!(r.response.status, 200, "round {round}: {}", body(r));
        }
        assert!(
            store.calls().conflicts > 0,
            "round {round}: the requests really interleaved"
        );
        let cart = read_cart(&settings, &store, T0, &cookie);
        let lines = body(&cart)["cart"].as_array().unwrap().len();
        assert_eq!(lines, 65, "round {round}: the first line and 64 adds");
        assert_eq!(store.inner().len(), 1);
    }
}

#[test]
fn without_the_cas_the_same_interleaving_loses_updates() {
    // The seed's unconditional save, simulated: a store that ignores `expected`.
    let settings = Settings::stateless();
    let store = RecordingStore::blind();
    let cookie = start_session(&settings, &store, T0);
    let bodies: Vec<String> = (0..64).map(|n| add_body(&format!("item {n}"))).collect();
    block_on(join_all(bodies.iter().map(|b| {
        request(
            &settings,
            &store,
            T0,
            "POST",
            "/stateless/cart/add",
            Some(&cookie),
            b,
        )
    })));
    let record = store.record(&cookie_id(&cookie)).unwrap();
    assert!(
        record.cart.lines().len() < 10,
        "{}",
        record.cart.lines().len()
    );
}

#[test]
fn conflicts_are_retried_until_a_write_succeeds() {
    let settings = Settings::stateless();
    let store = RecordingStore::interleaved();
    let cookie = start_session(&settings, &store, T0);
    store.refuse_next_writes(MAX_ATTEMPTS - 1);
    let before = store.calls().saves;
    let added = block_on(request(
        &settings,
        &store,
        T0,
        "POST",
        "/stateless/cart/add",
        Some(&cookie),
        &add_body("Pen"),
    ));
    assert_eq!(added.response.status, 200);
    assert_eq!(store.calls().saves - before, MAX_ATTEMPTS);
    assert_eq!(body(&added)["cart"].as_array().unwrap().len(), 2);
}

#[test]
fn a_session_that_always_conflicts_gets_409_and_nothing_changes() {
    let settings = Settings::stateless();
    let store = RecordingStore::interleaved();
    let cookie = start_session(&settings, &store, T0);
    let before = store.record(&cookie_id(&cookie)).unwrap();
    store.refuse_all_writes(true);
    let attempts = store.calls().saves;
    for (method, path, body_text) in [
        ("POST", "/stateless/cart/add", add_body("Pen")),
        // Late enough that the read slides the session (a write).
        ("GET", "/stateless/cart", String::new()),
        ("DELETE", "/stateless/cart/items/0", String::new()),
    ] {
        let r = block_on(request(
            &settings,
            &store,
            T0 + 500,
            method,
            path,
            Some(&cookie),
            &body_text,
        ));
        assert_eq!(r.response.status, 409, "{method} {path}");
        assert_eq!(body(&r)["error"]["code"], "conflict");
        assert_eq!(r.response.header("retry-after"), Some("1"));
        assert_eq!(r.response.header("set-cookie"), None);
    }
    assert_eq!(store.calls().saves - attempts, 3 * MAX_ATTEMPTS);
    let after = store.record(&cookie_id(&cookie)).unwrap();
    assert_eq!(after, before);
    // A new session is created under a fresh random id, which nothing can race: a store
    // refusing that write is broken, 503, and no cookie is given.
    let r = first_add(&settings, &store, "Pen");
    assert_eq!(r.response.status, 503);
    assert_eq!(body(&r)["error"]["code"], "store_unavailable");
    assert_eq!(r.response.header("set-cookie"), None);
    store.refuse_all_writes(false);
}

#[test]
fn idle_expiry_slides_and_max_age_is_what_the_store_is_given() {
    let mut settings = Settings::stateless();
    settings.session_idle_secs = 100;
    settings.session_max_age_secs = 1000;
    let store = RecordingStore::interleaved();
    let cookie = start_session(&settings, &store, T0);
    assert_eq!(store.ttls(), [100]);
    let get = |now| {
        block_on(request(
            &settings,
            &store,
            now,
            "GET",
            "/stateless/cart",
            Some(&cookie),
            "",
        ))
    };
    // Each use slides the idle deadline: Max-Age stays 100, the store TTL too.
    for now in [T0 + 100, T0 + 200, T0 + 300] {
        let r = get(now);
        assert_eq!(body(&r)["cart"].as_array().unwrap().len(), 1, "{now}");
        assert_eq!(cookie_and_max_age(&r).1, 100);
        assert_eq!(store.ttls().last(), Some(&100));
    }
    // Idle 101 s: expired, never served, deleted.
    let r = get(T0 + 401);
    assert_eq!(body(&r)["sessionId"], Value::Null);
    assert_eq!(body(&r)["cart"], json!([]));
    assert!(store.inner().is_empty());
}

#[test]
fn absolute_lifetime_caps_the_session_however_active() {
    let mut settings = Settings::stateless();
    settings.session_idle_secs = 100;
    settings.session_max_age_secs = 250;
    let store = RecordingStore::interleaved();
    let cookie = start_session(&settings, &store, T0);
    let get = |now| {
        block_on(request(
            &settings,
            &store,
            now,
            "GET",
            "/stateless/cart",
            Some(&cookie),
            "",
        ))
    };
    for (now, max_age) in [(T0 + 90, 100), (T0 + 180, 70), (T0 + 249, 1)] {
        let r = get(now);
        assert_eq!(body(&r)["cart"].as_array().unwrap().len(), 1, "{now}");
        assert_eq!(cookie_and_max_age(&r).1, max_age, "{now}");
        assert_eq!(store.ttls().last(), Some(&max_age), "{now}");
    }
    let r = get(T0 + 250);
    assert_eq!(body(&r)["sessionId"], Value::Null);
    assert!(store.inner().is_empty());
    // An add with the dead cookie starts a new session under a new id.
    let added = block_on(request(
        &settings,
        &store,
        T0 + 250,
        "POST",
        "/stateless/cart/add",
        Some(&cookie),
        &add_body("Pen"),
    ));
    let (new_cookie, max_age) = cookie_and_max_age(&added);
    assert_ne!(new_cookie, cookie);
    assert_eq!(max_age, 100);
    assert_eq!(body(&added)["cart"].as_array().unwrap().len(), 1);
}

#[test]
fn an_expired_record_that_changed_meanwhile_is_not_deleted() {
    // delete_if refuses when the record is no longer the one read as expired.
    let store = MemoryStore::new();
    let id = SessionId::generate().unwrap();
    assert!(block_on(store.save_if(&id, &SessionRecord::new(1), None, 60)).unwrap());
    let (_, stale) = block_on(store.load(&id)).unwrap().unwrap();
    let (_, current) = block_on(store.load(&id)).unwrap().unwrap();
    let mut touched = SessionRecord::new(1);
    touched.touched = 50;
    assert!(block_on(store.save_if(&id, &touched, Some(current), 60)).unwrap());
    assert!(!block_on(store.delete_if(&id, stale)).unwrap());
    assert_eq!(store.len(), 1);
}

#[test]
fn v1_records_are_read_and_written_as_v1() {
    let json = r#"{"v":1,"created":100,"touched":150,"cart":[{"item":"Pen","price_cents":100,"quantity":2}]}"#;
    let record = SessionRecord::from_json(json).unwrap();
    assert_eq!(record.to_json(), json);
}

/// A byte store with value-comparing CAS (like Spin's SQLite backend and the Redis Lua script)
/// that yields inside every operation, and records each write's TTL. With `lies`, its swaps
/// answer like Spin 4.1's Redis backend: a committed swap reports failure, a swap that lost its
/// race reports success. With `error_one_in`, every n-th operation (counted over all of them)
/// fails, half before and half after doing its work.
#[derive(Default)]
struct InterleavingKv {
    /// The real in-memory store; this one adds yields, TTL records, lies and faults.
    inner: MemoryKeyValue,
    ttls_ms: RefCell<Vec<u64>>,
    lies: bool,
    error_one_in: u32,
    ops: Cell<u32>,
    false_failures: Cell<u32>,
    false_successes: Cell<u32>,
    errors: Cell<u32>,
}

/// What a fault-injecting operation does with the work it was asked for.
enum Fault {
    None,
    Before,
    After,
}

impl InterleavingKv {
    fn lying() -> InterleavingKv {
        InterleavingKv {
            lies: true,
            ..InterleavingKv::default()
        }
    }

    fn fault(&self) -> Fault {
        self.ops.set(self.ops.get() + 1);
        let n = self.ops.get();
        if self.error_one_in == 0 || !n.is_multiple_of(self.error_one_in) {
            return Fault::None;
        }
        self.errors.set(self.errors.get() + 1);
        if (n / self.error_one_in).is_multiple_of(2) {
            Fault::Before
        } else {
            Fault::After
        }
    }

    /// Yields, then runs one operation of the inner store (always ready at once) under the
    /// fault plan.
    async fn faulty<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        yield_now().await;
        match self.fault() {
            Fault::None => ready(work),
            Fault::Before => Err(StoreError("injected before".into())),
            Fault::After => {
                ready(work)?;
                Err(StoreError("injected after".into()))
            }
        }
    }

    fn session_keys(&self) -> Vec<String> {
        self.inner
            .keys_now()
            .into_iter()
            .filter(|k| k.starts_with("cartlab:session:"))
            .collect()
    }
}

impl cart_core::KeyValue for InterleavingKv {
    type Cas = Option<Vec<u8>>;
    async fn get_cas(&self, key: &str) -> Result<(Option<Vec<u8>>, Self::Cas), StoreError> {
        self.faulty(self.inner.get_cas(key)).await
    }
    async fn set_if(
        &self,
        key: &str,
        cas: Option<Self::Cas>,
        value: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, StoreError> {
        let swapped = self
            .faulty(self.inner.set_if(key, cas, value, ttl_ms))
            .await?;
        if swapped {
            self.ttls_ms.borrow_mut().push(ttl_ms);
        }
        if self.lies {
            let counter = if swapped {
                &self.false_failures
            } else {
                &self.false_successes
            };
            counter.set(counter.get() + 1);
            return Ok(!swapped);
        }
        Ok(swapped)
    }
    fn confirms_swaps(&self) -> bool {
        !self.lies
    }
    fn expires_keys(&self) -> bool {
        false
    }
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.faulty(self.inner.get(key)).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), StoreError> {
        self.faulty(self.inner.set(key, value, ttl_ms)).await
    }
    async fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), StoreError> {
        self.faulty(self.inner.set_many(entries)).await
    }
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.faulty(self.inner.increment(key, delta)).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.faulty(self.inner.delete(key)).await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.faulty(self.inner.exists(key)).await
    }
    async fn pause(&self, millis: u64) {
        for _ in 0..millis {
            yield_now().await;
        }
    }
}

#[test]
fn kv_store_sixty_four_concurrent_adds_and_ttl_in_ms() {
    let mut settings = Settings::stateless();
    settings.session_idle_secs = 600;
    for round in 0..5 {
        let store = cart_core::KvSessionStore(InterleavingKv::default());
        let first = first_add(&settings, &store, "first");
        let (cookie, max_age) = cookie_and_max_age(&first);
        assert_eq!(max_age, 600);
        let responses = sixty_four_adds(&settings, &store, &cookie);
        assert!(responses.iter().all(|r| r.response.status == 200));
        let ttls = store.0.ttls_ms.borrow().clone();
        assert!(
            ttls.len() >= 64 && ttls.iter().all(|&ttl| ttl == 600_000),
            "every swap's TTL = Max-Age, in ms: {ttls:?}"
        );
        let cart = read_cart(&settings, &store, T0 + 1, &cookie);
        assert_eq!(
            body(&cart)["cart"].as_array().unwrap().len(),
            65,
            "round {round}"
        );
        // Idle too long: not served, and the key is gone (tombstoned by CAS, then deleted).
        let expired = read_cart(&settings, &store, T0 + 1 + 601, &cookie);
        assert_eq!(body(&expired)["sessionId"], Value::Null);
        assert!(store.0.session_keys().is_empty());
    }
}

/// Item names in a cart answer.
fn items(handled: &Handled) -> Vec<String> {
    body(handled)["cart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["item"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn on_a_store_whose_swaps_lie_64_concurrent_adds_land_exactly_once() {
    let settings = Settings::stateless();
    for round in 0..10 {
        let store = cart_core::KvSessionStore(InterleavingKv::lying());
        let first = first_add(&settings, &store, "first");
        assert_eq!(first.response.status, 200, "{}", body(&first));
        assert_eq!(items(&first), ["first"]);
        let cookie = cookie_and_max_age(&first).0;
        let responses = sixty_four_adds(&settings, &store, &cookie);
        for r in &responses {
            assert_eq!(r.response.status, 200, "round {round}: {}", body(r));
        }
        let cart = read_cart(&settings, &store, T0, &cookie);
        let mut names = items(&cart);
        assert_eq!(names.len(), 65, "round {round}");
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 65, "round {round}: no item twice");
        assert!(
            store.0.false_failures.get() > 0 && store.0.false_successes.get() > 0,
            "round {round}: both lies were told ({} false failures, {} false successes)",
            store.0.false_failures.get(),
            store.0.false_successes.get()
        );
    }
}

#[test]
fn store_errors_before_or_after_a_write_never_apply_an_add_twice() {
    let settings = Settings::stateless();
    let store = cart_core::KvSessionStore(InterleavingKv {
        lies: true,
        error_one_in: 20,
        ..InterleavingKv::default()
    });
    // The first add may itself meet an injected error: retry it until one answers.
    let cookie = (0..10)
        .find_map(|_| {
            let first = first_add(&settings, &store, "first");
            (first.response.status == 200).then(|| cookie_and_max_age(&first).0)
        })
        .expect("a session");
    let responses = sixty_four_adds(&settings, &store, &cookie);
    let mut answered = Vec::new();
    for (n, r) in responses.iter().enumerate() {
        match r.response.status {
            200 => answered.push(format!("item {n}")),
            503 | 409 => {}
            other => panic!("unexpected {other}: {}", body(r)),
        }
    }
    assert!(store.0.errors.get() > 10, "{} errors", store.0.errors.get());
    assert!(
        answered.len() > 32,
        "most adds got through: {}",
        answered.len()
    );
    let cart = (0..10)
        .map(|_| read_cart(&settings, &store, T0, &cookie))
        .find(|r| r.response.status == 200)
        .expect("a read");
    let names = items(&cart);
    for item in &answered {
        assert_eq!(
            names.iter().filter(|n| *n == item).count(),
            1,
            "{item} answered 200: in the cart exactly once"
        );
    }
    let mut distinct = names.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), names.len(), "no item twice: {names:?}");
}

#[test]
fn a_repeated_idempotency_key_replays_and_a_reused_one_is_refused() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let send = |path: &str, cookie: Option<&str>, key: Option<&str>, body: &str| {
        let method = if path.ends_with("/add") {
            "POST"
        } else {
            "DELETE"
        };
        block_on(request_with(
            &settings, &store, T0, method, path, cookie, key, body,
        ))
    };
    let pen = add_body("Pen");
    let first = send("/stateless/cart/add", None, Some("add-pen-1"), &pen);
    assert_eq!(first.response.status, 200);
    assert_eq!(first.response.header("idempotent-replayed"), None);
    let cookie = cookie_and_max_age(&first).0;
    let again = send(
        "/stateless/cart/add",
        Some(&cookie),
        Some("add-pen-1"),
        &pen,
    );
    assert_eq!(again.response.status, 200, "{}", body(&again));
    assert_eq!(again.response.header("idempotent-replayed"), Some("true"));
    assert_eq!(items(&again), ["Pen"]);
    assert_eq!(body(&again)["cart"][0]["quantity"], 1, "added once");
    assert!(again.response.header("set-cookie").is_some());

    // The quoted form of the same key is the same key.
    let quoted = send(
        "/stateless/cart/add",
        Some(&cookie),
        Some("\"add-pen-1\""),
        &pen,
    );
    assert_eq!(quoted.response.header("idempotent-replayed"), Some("true"));

    let reused = send(
        "/stateless/cart/add",
        Some(&cookie),
        Some("add-pen-1"),
        &add_body("Cup"),
    );
    assert_eq!(reused.response.status, 422);
    assert_eq!(body(&reused)["error"]["code"], "idempotency_key_reused");

    // Without a key, the same body is a new change each time.
    send("/stateless/cart/add", Some(&cookie), None, &add_body("Cup"));
    let removed = send("/stateless/cart/items/0", Some(&cookie), Some("rm-1"), "");
    assert_eq!(items(&removed), ["Cup"]);
    let removed_again = send("/stateless/cart/items/0", Some(&cookie), Some("rm-1"), "");
    assert_eq!(
        removed_again.response.header("idempotent-replayed"),
        Some("true")
    );
    assert_eq!(items(&removed_again), ["Cup"], "line 0 removed once");

    let bad = send("/stateless/cart/add", Some(&cookie), Some("é"), &pen);
    assert_eq!(bad.response.status, 400);
    assert_eq!(body(&bad)["error"]["code"], "invalid_idempotency_key");
}

#[test]
fn on_a_lying_store_reads_slide_the_session_without_conflicts() {
    let mut settings = Settings::stateless();
    settings.session_idle_secs = 100;
    let store = cart_core::KvSessionStore(InterleavingKv::lying());
    let first = first_add(&settings, &store, "Pen");
    let cookie = cookie_and_max_age(&first).0;
    let writes = store.0.ttls_ms.borrow().len();
    // Within a tenth of the idle timeout a read writes nothing; later it slides the session.
    for (now, max_age, writes_after) in [(T0 + 5, 95, writes), (T0 + 50, 100, writes + 1)] {
        let r = block_on(request(
            &settings,
            &store,
            now,
            "GET",
            "/stateless/cart",
            Some(&cookie),
            "",
        ));
        assert_eq!(r.response.status, 200, "{}", body(&r));
        assert_eq!(items(&r), ["Pen"]);
        assert_eq!(cookie_and_max_age(&r).1, max_age, "{now}");
        assert_eq!(store.0.ttls_ms.borrow().len(), writes_after, "{now}");
    }
}
