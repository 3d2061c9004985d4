//! The HTTP behaviour of `cart_core::handle`, end to end over in-memory stores.

use cart_core::testing::{RecordingStore, set_cookie_value};
use cart_core::{
    Handled, Instance, MemoryStore, Request, Response, SessionId, SessionStore, Settings, handle,
};
use futures::executor::block_on;
use serde_json::{Value, json};

const T0: u64 = 1_700_000_000;

fn instance() -> Instance {
    Instance {
        id: "test0001".into(),
        requests_served: 7,
    }
}

fn json_headers() -> Vec<(String, String)> {
    vec![("content-type".into(), "application/json".into())]
}

fn send<S: SessionStore>(
    settings: &Settings,
    store: &S,
    now: u64,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Handled {
    block_on(handle(
        settings,
        store,
        &instance(),
        now,
        Request {
            method,
            path,
            headers,
            body,
        },
    ))
}

fn body(response: &Response) -> Value {
    serde_json::from_slice(&response.body).expect("every body is JSON")
}

fn text(response: &Response) -> &str {
    std::str::from_utf8(&response.body).unwrap()
}

fn error_code(response: &Response) -> String {
    body(response)["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A client with a cookie jar, like the seed's test client.
struct Client<'a, S> {
    settings: &'a Settings,
    store: &'a S,
    now: u64,
    /// What the client sends as `Cookie` (the seed's client echoes the whole Set-Cookie line).
    cookie: Option<String>,
    echo_whole_set_cookie: bool,
}

impl<'a, S: SessionStore> Client<'a, S> {
    fn new(settings: &'a Settings, store: &'a S) -> Self {
        Client {
            settings,
            store,
            now: T0,
            cookie: None,
            echo_whole_set_cookie: false,
        }
    }

    fn request(&mut self, method: &str, path: &str, body: Option<Value>) -> Response {
        let mut headers = Vec::new();
        if let Some(cookie) = &self.cookie {
            headers.push(("cookie".to_owned(), cookie.clone()));
        }
        let bytes = match body {
            Some(b) => {
                headers.push(("content-type".into(), "application/json".into()));
                serde_json::to_vec(&b).unwrap()
            }
            None => Vec::new(),
        };
        let full_path = format!("{}{path}", self.settings.base_path);
        let handled = send(
            self.settings,
            self.store,
            self.now,
            method,
            &full_path,
            &headers,
            &bytes,
        );
        assert!(!handled.crash || path == "/crash");
        if let Some(line) = handled.response.header("set-cookie") {
            self.cookie = if self.echo_whole_set_cookie {
                Some(line.to_owned())
            } else {
                set_cookie_value(&handled.response, &self.settings.cookie_name)
                    .map(|v| format!("{}={v}", self.settings.cookie_name))
            };
        }
        handled.response
    }

    fn add(&mut self, item: &str, price: Value) -> Response {
        self.request(
            "POST",
            "/cart/add",
            Some(json!({ "item": item, "price": price })),
        )
    }

    fn cart(&mut self) -> Response {
        self.request("GET", "/cart", None)
    }
}

// ---- the seed journey ------------------------------------------------------------------------

#[test]
fn seed_journey_totals_3700_for_both_components() {
    for settings in [Settings::stateless(), Settings::stateful()] {
        let store = MemoryStore::new();
        let mut client = Client::new(&settings, &store);
        client.echo_whole_set_cookie = true; // exactly what the seed's test client does

        let first = client.add("MacBook Pro", json!(2500));
        assert_eq!(first.status, 200);
        let fingerprint = body(&first)["sessionId"].as_str().unwrap().to_owned();
        assert_eq!(fingerprint.len(), 8);

        let second = client.add("iPhone 15", json!(1200));
        assert_eq!(second.status, 200);
        assert_eq!(
            body(&second)["sessionId"],
            fingerprint.as_str(),
            "same session"
        );

        let cart = client.cart();
        assert_eq!(cart.status, 200);
        assert_eq!(
            body(&cart),
            json!({
                "serverId": "test0001",
                "serverKind": settings.server_kind,
                "requestsServed": 7,
                "sessionId": fingerprint,
                "cart": [
                    {"item": "MacBook Pro", "price": 2500, "quantity": 1, "lineTotal": 2500},
                    {"item": "iPhone 15", "price": 1200, "quantity": 1, "lineTotal": 1200}
                ],
                "itemCount": 2,
                "total": 3700
            })
        );
        assert!(text(&cart).contains(r#""total":3700}"#));
        assert_eq!(store.len(), 1);
    }
}

#[test]
fn cart_is_lost_with_instance_memory_but_survives_in_a_shared_store() {
    // Stateful: the crashed instance's MemoryStore is gone; a new instance has an empty one.
    let settings = Settings::stateful();
    let crashed = MemoryStore::new();
    let mut client = Client::new(&settings, &crashed);
    client.add("MacBook Pro", json!(2500));
    client.add("iPhone 15", json!(1200));
    let crash = client.request("POST", "/crash", None);
    assert_eq!(body(&crash)["message"], "Server is going down!");
    let fresh = MemoryStore::new();
    client.store = &fresh;
    let after = body(&client.cart());
    assert_eq!(after["cart"], json!([]));
    assert_eq!(after["sessionId"], Value::Null);

    // Stateless: a new instance opens the same key-value store and finds the cart.
    let settings = Settings::stateless();
    // A key-value store outliving instances, like Redis or SQLite behind Spin.
    let kv = cart_core::MemoryKeyValue::default();
    let before = cart_core::KvSessionStore(kv.clone());
    let mut client = Client::new(&settings, &before);
    client.add("MacBook Pro", json!(2500));
    client.add("iPhone 15", json!(1200));
    let after_crash = cart_core::KvSessionStore(kv.clone());
    client.store = &after_crash;
    assert_eq!(body(&client.cart())["total"], 3700);
    // One session, and its place in the expiry queue (key-value has no TTL).
    let keys = kv.keys_now();
    let sessions: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("cartlab:session:"))
        .collect();
    assert_eq!(sessions.len(), 1, "{keys:?}");
    assert_eq!(
        keys.len(),
        3,
        "the session, cartlab:expiry:last and its slot: {keys:?}"
    );
}

// ---- cookies and sessions --------------------------------------------------------------------

#[test]
fn set_cookie_has_the_component_name_path_and_lifetime() {
    for (settings, name, path) in [
        (Settings::stateless(), "cartlab_stateless", "/stateless"),
        (Settings::stateful(), "cartlab_stateful", "/stateful"),
    ] {
        let store = MemoryStore::new();
        let response = Client::new(&settings, &store).add("Pen", json!(1));
        let id = set_cookie_value(&response, name).unwrap();
        assert!(SessionId::parse(id).is_some());
        assert_eq!(
            response.header("set-cookie").unwrap(),
            format!("{name}={id}; Path={path}; Max-Age=1800; HttpOnly; SameSite=Lax")
        );
        // The body shows a fingerprint, never the secret.
        let fingerprint = body(&response)["sessionId"].as_str().unwrap().to_owned();
        assert_eq!(fingerprint, SessionId::parse(id).unwrap().fingerprint());
        assert!(!text(&response).contains(id));
    }

    let mut settings = Settings::stateless();
    settings.secure_cookie = true;
    settings.session_idle_secs = 60;
    let store = MemoryStore::new();
    let line = Client::new(&settings, &store).add("Pen", json!(1));
    assert!(
        line.header("set-cookie")
            .unwrap()
            .ends_with("; Max-Age=60; HttpOnly; SameSite=Lax; Secure")
    );
}

#[test]
fn echoed_set_cookie_line_as_cookie_header_keeps_the_session() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let mut client = Client::new(&settings, &store);
    let first = client.add("MacBook Pro", json!(2500));
    let echoed = first.header("set-cookie").unwrap().to_owned();
    assert!(echoed.contains("; Path=/stateless; Max-Age=1800; HttpOnly; SameSite=Lax"));
    let headers = vec![("Cookie".to_owned(), echoed)];
    let cart = send(&settings, &store, T0, "GET", "/cart", &headers, b"").response;
    assert_eq!(body(&cart)["total"], 2500);
    assert_eq!(body(&cart)["sessionId"], body(&first)["sessionId"]);
}

#[test]
fn cookies_from_several_headers_first_well_formed_value_wins() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let mut client = Client::new(&settings, &store);
    client.add("Pen", json!(1));
    let good = client.cookie.clone().unwrap();
    let headers = vec![
        (
            "cookie".to_owned(),
            "theme=dark; cartlab_stateless=not-an-id".to_owned(),
        ),
        (
            "Cookie".to_owned(),
            format!("  {good} ; cartlab_stateful=x"),
        ),
    ];
    let cart = send(&settings, &store, T0, "GET", "/cart", &headers, b"").response;
    assert_eq!(body(&cart)["total"], 1);
}

#[test]
fn the_other_components_cookie_is_not_ours() {
    let (stateless, stateful) = (Settings::stateless(), Settings::stateful());
    let store = MemoryStore::new();
    let mut client = Client::new(&stateless, &store);
    client.add("Pen", json!(1));
    let value = client
        .cookie
        .clone()
        .unwrap()
        .replace("cartlab_stateless", "cartlab_stateful");
    let headers = vec![("cookie".to_owned(), value)];
    let cart = send(&stateless, &store, T0, "GET", "/cart", &headers, b"").response;
    assert_eq!(body(&cart)["sessionId"], Value::Null);
    let cart = send(&stateful, &store, T0, "GET", "/cart", &headers, b"").response;
    assert_eq!(
        body(&cart)["total"],
        1,
        "same store, stateful's cookie name"
    );
}

#[test]
fn unknown_well_formed_id_is_never_adopted() {
    let settings = Settings::stateless();
    let store = RecordingStore::new();
    let planted = SessionId::generate().unwrap();
    let headers = [
        json_headers(),
        vec![(
            "cookie".into(),
            format!("cartlab_stateless={}", planted.as_str()),
        )],
    ]
    .concat();
    let added = send(
        &settings,
        &store,
        T0,
        "POST",
        "/cart/add",
        &headers,
        br#"{"item":"Pen","price":1}"#,
    )
    .response;
    assert_eq!(added.status, 200);
    let issued = set_cookie_value(&added, "cartlab_stateless").unwrap();
    assert_ne!(issued, planted.as_str());
    assert_eq!(store.calls().loads, 1, "looked the planted id up once");
    assert!(store.record(&planted).is_none());
    let issued = SessionId::parse(issued).unwrap();
    assert!(store.record(&issued).is_some());
}

#[test]
fn malformed_ids_never_reach_the_store() {
    let settings = Settings::stateless();
    for bad in [
        "x",
        "s%3AabcdefghijklmnopqrstuvwxyzABCDEFGHIJ.signature", // connect.sid style
        &"A".repeat(44),
        &format!("{}+", "A".repeat(42)),
        &format!("{}B", "A".repeat(42)), // non-canonical base64url
    ] {
        let store = RecordingStore::new();
        let cookie = vec![("cookie".to_owned(), format!("cartlab_stateless={bad}"))];
        let cart = send(&settings, &store, T0, "GET", "/cart", &cookie, b"").response;
        assert_eq!(body(&cart)["sessionId"], Value::Null);
        assert_eq!(cart.header("set-cookie"), None);

        let headers = [json_headers(), cookie].concat();
        let added = send(
            &settings,
            &store,
            T0,
            "POST",
            "/cart/add",
            &headers,
            br#"{"item":"Pen","price":1}"#,
        )
        .response;
        let issued = set_cookie_value(&added, "cartlab_stateless").unwrap();
        assert_ne!(issued, bad);
        assert!(SessionId::parse(issued).is_some());
        assert_eq!(store.calls().loads, 0, "{bad}: no lookup of a malformed id");
        assert_eq!(store.calls().saves, 1);
    }
}

#[test]
fn reading_the_cart_creates_no_session() {
    let settings = Settings::stateless();
    let store = RecordingStore::new();
    let cart = send(&settings, &store, T0, "GET", "/cart", &[], b"").response;
    assert_eq!(cart.status, 200);
    assert_eq!(cart.header("set-cookie"), None);
    assert_eq!(
        body(&cart),
        json!({"serverId": "test0001", "serverKind": "stateless", "requestsServed": 7,
               "sessionId": null, "cart": [], "itemCount": 0, "total": 0})
    );
    assert_eq!((store.calls().loads, store.calls().saves), (0, 0));
}

#[test]
fn activity_slides_the_expiry_and_idle_sessions_expire() {
    let settings = Settings::stateless(); // 1800 s
    let store = MemoryStore::new();
    let mut client = Client::new(&settings, &store);
    client.add("Pen", json!(1));

    client.now = T0 + 1800; // exactly at the limit: still alive, and touched again
    let cart = client.cart();
    assert_eq!(body(&cart)["total"], 1);
    assert!(cart.header("set-cookie").unwrap().contains("Max-Age=1800"));

    client.now = T0 + 3600; // 1800 after the last touch: alive
    assert_eq!(body(&client.cart())["total"], 1);

    client.now = T0 + 3600 + 1801; // idle too long
    let old_cookie = client.cookie.clone();
    let expired = client.cart();
    assert_eq!(body(&expired)["sessionId"], Value::Null);
    assert_eq!(body(&expired)["cart"], json!([]));
    assert!(store.is_empty(), "the expired record is deleted");

    let added = client.add("Cup", json!(2));
    assert_ne!(
        client.cookie, old_cookie,
        "a fresh session, not the expired id"
    );
    assert_eq!(body(&added)["total"], 2);
}

// ---- validation ------------------------------------------------------------------------------

#[test]
fn every_add_validation_rule() {
    let long = "x".repeat(101);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("empty body", String::new(), 400, "invalid_json"),
        ("blank body", "  \n ".into(), 400, "invalid_json"),
        ("not json", "item=Pen".into(), 400, "invalid_json"),
        (
            "truncated",
            r#"{"item":"Pen","price":1"#.into(),
            400,
            "invalid_json",
        ),
        ("array", "[1]".into(), 400, "invalid_json"),
        ("string", r#""Pen""#.into(), 400, "invalid_json"),
        (
            "duplicate field",
            r#"{"item":"a","item":"b","price":1}"#.into(),
            400,
            "invalid_json",
        ),
        ("no item", r#"{"price":1}"#.into(), 400, "invalid_item"),
        (
            "null item",
            r#"{"item":null,"price":1}"#.into(),
            400,
            "invalid_item",
        ),
        (
            "numeric item",
            r#"{"item":12,"price":1}"#.into(),
            400,
            "invalid_item",
        ),
        (
            "empty item",
            r#"{"item":"","price":1}"#.into(),
            400,
            "invalid_item",
        ),
        (
            "blank item",
            r#"{"item":"   ","price":1}"#.into(),
            400,
            "invalid_item",
        ),
        (
            "101 chars",
            format!(r#"{{"item":"{long}","price":1}}"#),
            400,
            "invalid_item",
        ),
        (
            "newline",
            r#"{"item":"a\nb","price":1}"#.into(),
            400,
            "invalid_item",
        ),
        (
            "nul",
            r#"{"item":"a\u0000b","price":1}"#.into(),
            400,
            "invalid_item",
        ),
        ("no price", r#"{"item":"Pen"}"#.into(), 400, "invalid_price"),
        (
            "null price",
            r#"{"item":"Pen","price":null}"#.into(),
            400,
            "invalid_price",
        ),
        (
            "string price",
            r#"{"item":"Pen","price":"12"}"#.into(),
            400,
            "invalid_price",
        ),
        (
            "bool price",
            r#"{"item":"Pen","price":true}"#.into(),
            400,
            "invalid_price",
        ),
        (
            "3 decimals",
            r#"{"item":"Pen","price":12.999}"#.into(),
            400,
            "invalid_price",
        ),
        (
            "negative",
            r#"{"item":"Pen","price":-1}"#.into(),
            400,
            "invalid_price",
        ),
        (
            "too much",
            r#"{"item":"Pen","price":1000000.01}"#.into(),
            400,
            "invalid_price",
        ),
        (
            "huge exp",
            r#"{"item":"Pen","price":1e400}"#.into(),
            400,
            "invalid_price",
        ),
        (
            "qty 0",
            r#"{"item":"Pen","price":1,"quantity":0}"#.into(),
            400,
            "invalid_quantity",
        ),
        (
            "qty 100",
            r#"{"item":"Pen","price":1,"quantity":100}"#.into(),
            400,
            "invalid_quantity",
        ),
        (
            "qty -1",
            r#"{"item":"Pen","price":1,"quantity":-1}"#.into(),
            400,
            "invalid_quantity",
        ),
        (
            "qty 1.5",
            r#"{"item":"Pen","price":1,"quantity":1.5}"#.into(),
            400,
            "invalid_quantity",
        ),
        (
            "qty 1.0",
            r#"{"item":"Pen","price":1,"quantity":1.0}"#.into(),
            400,
            "invalid_quantity",
        ),
        (
            "qty str",
            r#"{"item":"Pen","price":1,"quantity":"2"}"#.into(),
            400,
            "invalid_quantity",
        ),
        (
            "qty huge",
            r#"{"item":"Pen","price":1,"quantity":99999999999999999999}"#.into(),
            400,
            "invalid_quantity",
        ),
    ];
    let settings = Settings::stateless();
    for (name, json, status, code) in cases {
        let store = RecordingStore::new();
        let response = send(
            &settings,
            &store,
            T0,
            "POST",
            "/cart/add",
            &json_headers(),
            json.as_bytes(),
        )
        .response;
        assert_eq!(
            (response.status, error_code(&response).as_str()),
            (status, code),
            "{name}"
        );
        assert!(
            !body(&response)["error"]["message"]
                .as_str()
                .unwrap()
                .is_empty()
        );
        assert_eq!(response.header("set-cookie"), None, "{name}");
        assert_eq!(
            (store.calls().loads, store.calls().saves),
            (0, 0),
            "{name}: store untouched"
        );
    }
}

#[test]
fn accepted_add_bodies() {
    let settings = Settings::stateless();
    let cases = [
        (
            r#"{"item":"Pen","price":1,"quantity":99}"#,
            "Pen",
            json!(1),
            99,
            json!(99),
        ),
        (
            r#"{"item":"  Pen  ","price":12.99}"#,
            "Pen",
            json!(12.99),
            1,
            json!(12.99),
        ),
        (
            r#"{"item":"Pen","price":0.5,"quantity":null}"#,
            "Pen",
            json!(0.5),
            1,
            json!(0.5),
        ),
        (
            r#"{"item":"Pen","price":0,"extra":true}"#,
            "Pen",
            json!(0),
            1,
            json!(0),
        ),
        (
            r#"{"item":"Pen","price":1000000}"#,
            "Pen",
            json!(1000000),
            1,
            json!(1000000),
        ),
        (
            r#"{"item":"Pen","price":1e3}"#,
            "Pen",
            json!(1000),
            1,
            json!(1000),
        ),
        (
            r#"{"item":"Pen","price":0.10,"quantity":3}"#,
            "Pen",
            json!(0.1),
            3,
            json!(0.3),
        ),
    ];
    for (json, item, price, quantity, total) in cases {
        let store = MemoryStore::new();
        let response = send(
            &settings,
            &store,
            T0,
            "POST",
            "/cart/add",
            &json_headers(),
            json.as_bytes(),
        )
        .response;
        assert_eq!(response.status, 200, "{json}: {}", text(&response));
        let b = body(&response);
        assert_eq!(b["cart"][0]["item"], item, "{json}");
        assert_eq!(b["cart"][0]["price"], price, "{json}");
        assert_eq!(b["cart"][0]["quantity"], quantity, "{json}");
        assert_eq!(b["total"], total, "{json}");
    }
    // The name is at most 100 characters, not bytes.
    let store = MemoryStore::new();
    let name = "é".repeat(100);
    let json = format!(r#"{{"item":"{name}","price":1}}"#);
    let response = send(
        &settings,
        &store,
        T0,
        "POST",
        "/cart/add",
        &json_headers(),
        json.as_bytes(),
    )
    .response;
    assert_eq!(response.status, 200);
}

#[test]
fn money_is_exact_where_floats_are_not() {
    let settings = Settings::stateful();
    let store = MemoryStore::new();
    let mut client = Client::new(&settings, &store);
    client.request(
        "POST",
        "/cart/add",
        Some(json!({"item": "A", "price": 0.1, "quantity": 3})),
    );
    let response = client.add("B", json!(0.2));
    // 0.1 * 3 + 0.2 in f64 is 0.5000000000000001.
    assert!(
        text(&response).contains(r#""lineTotal":0.3}"#),
        "{}",
        text(&response)
    );
    assert!(
        text(&response).ends_with(r#""itemCount":4,"total":0.5}"#),
        "{}",
        text(&response)
    );
    let response = client.add("C", json!(12.99));
    assert!(
        text(&response).ends_with(r#""total":13.49}"#),
        "{}",
        text(&response)
    );
}

#[test]
fn content_type_must_be_json() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let body_bytes = br#"{"item":"Pen","price":1}"#;
    for (content_type, status) in [
        (None, 415),
        (Some("text/plain"), 415),
        (Some("application/x-www-form-urlencoded"), 415),
        (Some("application/jsonx"), 415),
        (Some("application/json"), 200),
        (Some("application/json; charset=utf-8"), 200),
        (Some("Application/JSON ;charset=UTF-8"), 200),
    ] {
        let headers: Vec<(String, String)> = content_type
            .map(|ct| vec![("Content-Type".to_owned(), ct.to_owned())])
            .unwrap_or_default();
        let response = send(
            &settings,
            &store,
            T0,
            "POST",
            "/cart/add",
            &headers,
            body_bytes,
        )
        .response;
        assert_eq!(response.status, status, "{content_type:?}");
        if status == 415 {
            assert_eq!(error_code(&response), "unsupported_media_type");
        }
    }
}

#[test]
fn bodies_over_16_kib_are_refused() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let small = br#"{"item":"Pen","price":1}"#.to_vec();
    let mut exactly = small.clone();
    exactly.resize(16 * 1024, b' ');
    let ok = send(
        &settings,
        &store,
        T0,
        "POST",
        "/cart/add",
        &json_headers(),
        &exactly,
    )
    .response;
    assert_eq!(ok.status, 200);

    let mut over = exactly.clone();
    over.push(b' ');
    let big = send(
        &settings,
        &store,
        T0,
        "POST",
        "/cart/add",
        &json_headers(),
        &over,
    )
    .response;
    assert_eq!(
        (big.status, error_code(&big).as_str()),
        (413, "payload_too_large")
    );

    let headers = [
        json_headers(),
        vec![("content-length".into(), "16385".into())],
    ]
    .concat();
    let declared = send(&settings, &store, T0, "POST", "/cart/add", &headers, &small).response;
    assert_eq!(
        (declared.status, error_code(&declared).as_str()),
        (413, "payload_too_large")
    );
}

#[test]
fn cart_limits_lines_and_merged_quantities() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let mut client = Client::new(&settings, &store);
    let max = cart_core::cart::MAX_LINES;
    assert_eq!(max, 100);
    for n in 0..max {
        assert_eq!(client.add(&format!("item {n}"), json!(1)).status, 200);
    }
    let full = client.add(&format!("item {max}"), json!(1));
    assert_eq!(
        (full.status, error_code(&full).as_str()),
        (409, "cart_full")
    );

    let merged = client.request(
        "POST",
        "/cart/add",
        Some(json!({"item": "item 0", "price": 1, "quantity": 98})),
    );
    assert_eq!(body(&merged)["cart"][0]["quantity"], 99);
    assert_eq!(body(&merged)["cart"].as_array().unwrap().len(), max);
    let over = client.add("item 0", json!(1));
    assert_eq!(
        (over.status, error_code(&over).as_str()),
        (409, "quantity_limit")
    );
    assert_eq!(
        body(&client.cart())["itemCount"],
        99 + max - 1,
        "failed adds changed nothing"
    );
}

// ---- routes ----------------------------------------------------------------------------------

#[test]
fn routing_for_both_components() {
    for settings in [Settings::stateless(), Settings::stateful()] {
        let store = MemoryStore::new();
        let base = settings.base_path.clone();
        for path in [
            "/health".to_owned(),
            format!("{base}/health"),
            format!("{base}/health?x=1"),
        ] {
            let r = send(&settings, &store, T0, "GET", &path, &[], b"").response;
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(body(&r)["status"], "healthy");
            assert_eq!(body(&r)["serverKind"], settings.server_kind);
        }
        for path in ["/", "", base.as_str()] {
            let r = send(&settings, &store, T0, "GET", path, &[], b"").response;
            assert_eq!(r.status, 200, "{path:?}");
            let routes = body(&r)["routes"].clone();
            assert!(
                routes
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("POST {base}/cart/add")))
            );
        }
        for path in [
            "/nope",
            "/cart/",
            "/cart/add/x",
            "/cart/items",
            "/cart/items/",
            "/cart/items/1/x",
            "/crash/now",
        ] {
            let r = send(&settings, &store, T0, "GET", path, &[], b"").response;
            assert_eq!(
                (r.status, error_code(&r).as_str()),
                (404, "not_found"),
                "{path}"
            );
        }
        for (method, path, allow) in [
            ("GET", "/cart/add", "POST"),
            ("PUT", "/cart", "GET, DELETE"),
            ("POST", "/cart", "GET, DELETE"),
            ("POST", "/health", "GET"),
            ("HEAD", "/health", "GET"),
            ("GET", "/crash", "POST"),
            ("GET", "/cart/items/0", "DELETE"),
            ("DELETE", "/", "GET"),
        ] {
            let r = send(&settings, &store, T0, method, path, &[], b"").response;
            assert_eq!(
                (r.status, error_code(&r).as_str()),
                (405, "method_not_allowed"),
                "{method} {path}"
            );
            assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        }
    }
    // The other component's prefix is not ours.
    let r = send(
        &Settings::stateful(),
        &MemoryStore::new(),
        T0,
        "GET",
        "/stateless/cart",
        &[],
        b"",
    )
    .response;
    assert_eq!(r.status, 404);
}

#[test]
fn every_response_names_the_instance() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let requests: [(&str, &str, &[u8]); 6] = [
        ("GET", "/cart", b""),
        ("GET", "/nope", b""),
        ("GET", "/cart/add", b""),
        ("POST", "/cart/add", b"{"),
        ("GET", "/health", b""),
        ("POST", "/crash", b""),
    ];
    for (method, path, bytes) in requests {
        let r = send(&settings, &store, T0, method, path, &json_headers(), bytes).response;
        assert_eq!(
            r.header("x-cartlab-instance"),
            Some("test0001"),
            "{method} {path}"
        );
        assert_eq!(r.header("x-cartlab-requests"), Some("7"), "{method} {path}");
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        assert_eq!(
            r.header("cache-control"),
            Some("no-store"),
            "{method} {path}"
        );
    }
    let err = cart_core::error_response(
        &instance(),
        &cart_core::ApiError::new(cart_core::ErrorCode::InvalidConfig, "variable x is bad"),
    );
    assert_eq!(err.status, 500);
    assert_eq!(err.header("x-cartlab-instance"), Some("test0001"));
    assert_eq!(error_code(&err), "invalid_config");
}

#[test]
fn delete_a_line_by_its_0_based_index() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let mut client = Client::new(&settings, &store);
    client.add("A", json!(1));
    client.add("B", json!(2));
    client.add("C", json!(4));

    let removed = client.request("DELETE", "/cart/items/1", None);
    assert_eq!(removed.status, 200);
    let b = body(&removed);
    assert_eq!(
        b["cart"],
        json!([
            {"item": "A", "price": 1, "quantity": 1, "lineTotal": 1},
            {"item": "C", "price": 4, "quantity": 1, "lineTotal": 4}
        ])
    );
    assert_eq!(b["total"], 5);
    assert!(removed.header("set-cookie").is_some());

    for n in ["2", "99999999999999999999999", "-1", "abc", "1.0", "+1"] {
        let r = client.request("DELETE", &format!("/cart/items/{n}"), None);
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (404, "no_such_line"),
            "{n}"
        );
    }
    assert_eq!(body(&client.cart())["total"], 5);

    let mut stranger = Client::new(&settings, &store);
    let r = stranger.request("DELETE", "/cart/items/0", None);
    assert_eq!((r.status, error_code(&r).as_str()), (404, "no_such_line"));
}

#[test]
fn delete_cart_forgets_the_session() {
    let settings = Settings::stateful();
    let store = MemoryStore::new();
    let mut client = Client::new(&settings, &store);
    client.add("A", json!(1));
    let old_cookie = client.cookie.clone().unwrap();

    let cleared = client.request("DELETE", "/cart", None);
    assert_eq!(cleared.status, 200);
    assert_eq!(body(&cleared)["cart"], json!([]));
    assert_eq!(body(&cleared)["sessionId"], Value::Null);
    assert_eq!(
        cleared.header("set-cookie"),
        Some("cartlab_stateful=; Path=/stateful; Max-Age=0; HttpOnly; SameSite=Lax")
    );
    assert!(store.is_empty());

    let headers = vec![("cookie".to_owned(), old_cookie)];
    let after = send(&settings, &store, T0, "GET", "/cart", &headers, b"").response;
    assert_eq!(body(&after)["sessionId"], Value::Null);
    // Idempotent without a session.
    let again = send(&settings, &store, T0, "DELETE", "/cart", &[], b"").response;
    assert_eq!(again.status, 200);
}

// ---- crash and health ------------------------------------------------------------------------

#[test]
fn crash_asks_for_a_trap_and_says_what_goes_down() {
    let settings = Settings::stateless();
    let store = MemoryStore::new();
    let handled = send(&settings, &store, T0, "POST", "/crash", &[], b"");
    assert!(handled.crash);
    assert_eq!(
        body(&handled.response),
        json!({"message": "Server is going down!", "serverId": "test0001",
               "serverKind": "stateless", "requestsServed": 7})
    );

    let mut off = Settings::stateless();
    off.crash_enabled = false;
    let refused = send(&off, &store, T0, "POST", "/crash", &[], b"");
    assert!(!refused.crash);
    assert_eq!(
        (
            refused.response.status,
            error_code(&refused.response).as_str()
        ),
        (403, "crash_disabled")
    );
    assert!(!send(&settings, &store, T0, "GET", "/crash", &[], b"").crash);
}

#[test]
fn a_failing_store_is_503_everywhere() {
    let settings = Settings::stateless();
    let valid_cookie = format!(
        "cartlab_stateless={}",
        SessionId::generate().unwrap().as_str()
    );
    let headers = [json_headers(), vec![("cookie".into(), valid_cookie)]].concat();
    let down = RecordingStore::new();
    down.set_down(true);
    for (method, path, bytes) in [
        ("GET", "/health", &b""[..]),
        ("GET", "/cart", b""),
        ("POST", "/cart/add", br#"{"item":"Pen","price":1}"#),
        ("DELETE", "/cart/items/0", b""),
        ("DELETE", "/cart", b""),
    ] {
        let r = send(&settings, &down, T0, method, path, &headers, bytes).response;
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (503, "store_unavailable"),
            "{method} {path}"
        );
        assert_eq!(r.header("retry-after"), Some("1"), "{method} {path}");
        assert_eq!(r.header("set-cookie"), None);
    }
    // Without a session cookie, adding still needs the store to save.
    let r = send(
        &settings,
        &down,
        T0,
        "POST",
        "/cart/add",
        &json_headers(),
        br#"{"item":"Pen","price":1}"#,
    )
    .response;
    assert_eq!(r.status, 503);
}

#[test]
fn the_store_holds_a_hash_of_the_session_id_never_the_id() {
    let settings = Settings::stateless();
    let kv = cart_core::MemoryKeyValue::default();
    let store = cart_core::KvSessionStore(kv.clone());
    let mut client = Client::new(&settings, &store);
    client.add("MacBook Pro", json!(2500));
    client.add("iPhone 15", json!(1200));
    let cookie = client.cookie.clone().expect("a session cookie");
    let id = cookie.split_once('=').expect("name=value").1;
    assert_eq!(body(&client.cart())["total"], 3700, "the session is found");
    let keys = kv.keys_now();
    assert!(
        keys.iter().any(|k| k.starts_with("cartlab:session:")),
        "{keys:?}"
    );
    for key in &keys {
        assert!(!key.contains(id), "key {key} holds the session id");
        let value = String::from_utf8_lossy(&kv.value_now(key).unwrap_or_default()).into_owned();
        assert!(!value.contains(id), "the value under {key} holds the id");
    }
}

#[test]
fn a_5xx_body_says_what_failed_and_keeps_the_details_for_the_log() {
    let down = RecordingStore::new();
    down.set_down(true);
    let r = send(
        &Settings::stateless(),
        &down,
        T0,
        "GET",
        "/health",
        &[],
        b"",
    )
    .response;
    assert_eq!(r.status, 503);
    let message = body(&r)["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(message.contains("session store"), "{message}");
    for detail in [cart_core::testing::DOWN, "10.0.0.7", "refused"] {
        assert!(
            !text(&r).contains(detail),
            "the body shows {detail:?}: {message}"
        );
    }
}
