//! Fuzzes `cart_core::handle`: a request built from the input (method, path, Cookie,
//! Content-Type, Content-Length, other headers, body) against cart-core's
//! `testing::RecordingStore::seeded`: the seed session (MacBook Pro 2500 + iPhone 15 1200) and a
//! full cart (`MAX_LINES` lines) in a `MemoryStore` that records its calls.
//!
//! Invariants checked on every input:
//! - `handle` never panics and its future is ready at once (a `MemoryStore` never waits);
//! - the status is in 200..600 and never 5xx (a `MemoryStore` cannot fail);
//! - the body is a JSON object; an error body has string `error.code` and `error.message`,
//!   sets no cookie and leaves every stored record byte-identical (no write, no delete);
//! - a response never shows a stored session id, or its fingerprint, that the request did not
//!   contain itself (anywhere: method, path, headers or body);
//! - no id the request presented is ever adopted: every session created is a fresh id;
//! - a live `Set-Cookie` names a session that is in the store afterwards.

#![no_main]

use arbitrary::Arbitrary;
use cart_core::testing::{
    FORGED, FULL, RecordingStore, SEED, T0, exposed_ids, ready, set_cookie_value,
};
use cart_core::{Instance, Request, Settings, handle};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = T0 + 60;
const COOKIE: &str = "cartlab_stateless";

#[derive(Arbitrary, Debug)]
enum Method<'a> {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
    Other(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Path<'a> {
    Known(u8),
    /// `/stateless/cart/items/{n}` (or without the prefix).
    Line(bool, &'a str),
    /// `/stateless{raw}`.
    UnderPrefix(&'a str),
    Raw(&'a str),
}

const KNOWN_PATHS: &[&str] = &[
    "/stateless/cart/add",
    "/stateless/cart",
    "/stateless/",
    "/stateless",
    "/stateless/health",
    "/stateless/crash",
    "/cart/add",
    "/cart",
    "/stateless/cart/items/0",
    "/stateless/cart/items/1",
    "/stateless/cart/add?x=1",
];

#[derive(Arbitrary, Debug)]
enum Cookie<'a> {
    None,
    Seed,
    Full,
    Forged,
    /// `cartlab_stateless={raw}`.
    Value(&'a str),
    /// `{raw}; cartlab_stateless={SEED}`.
    BeforeSeed(&'a str),
    /// Several `Cookie` headers, raw.
    Headers(Vec<&'a str>),
}

#[derive(Arbitrary, Debug)]
enum ContentType<'a> {
    None,
    Json,
    JsonCharset,
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Text<'a> {
    /// A JSON string holding this text (escaped by serde_json).
    Quoted(&'a str),
    /// This text, verbatim, as the JSON value.
    Raw(&'a str),
    Number(u64, u8),
}

impl Text<'_> {
    fn json(&self) -> String {
        match self {
            Text::Quoted(s) => serde_json::to_string(s).unwrap(),
            Text::Raw(s) => (*s).to_owned(),
            // A plain JSON number with 0 to 3 decimals: reaches the price and quantity rules.
            Text::Number(n, decimals) => {
                let decimals = usize::from(decimals % 4);
                let scale = 10u64.pow(decimals as u32);
                match decimals {
                    0 => n.to_string(),
                    _ => format!("{}.{:0decimals$}", n / scale, n % scale),
                }
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    Raw(&'a [u8]),
    Add {
        item: Option<Text<'a>>,
        price: Option<Text<'a>>,
        quantity: Option<Text<'a>>,
        extra: Option<(&'a str, Text<'a>)>,
    },
}

impl Body<'_> {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Raw(bytes) => bytes.to_vec(),
            Body::Add {
                item,
                price,
                quantity,
                extra,
            } => {
                let mut fields = Vec::new();
                for (name, value) in [("item", item), ("price", price), ("quantity", quantity)] {
                    if let Some(value) = value {
                        fields.push(format!("\"{name}\":{}", value.json()));
                    }
                }
                if let Some((name, value)) = extra {
                    fields.push(format!(
                        "{}:{}",
                        serde_json::to_string(name).unwrap(),
                        value.json()
                    ));
                }
                format!("{{{}}}", fields.join(",")).into_bytes()
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Method<'a>,
    path: Path<'a>,
    cookie: Cookie<'a>,
    content_type: ContentType<'a>,
    content_length: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: Body<'a>,
}

fuzz_target!(|input: Input<'_>| {
    let method = match input.method {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Head => "HEAD",
        Method::Options => "OPTIONS",
        Method::Other(m) => m,
    };
    let path = match input.path {
        Path::Known(n) => KNOWN_PATHS[usize::from(n) % KNOWN_PATHS.len()].to_owned(),
        Path::Line(prefixed, n) => {
            format!(
                "{}/cart/items/{n}",
                if prefixed { "/stateless" } else { "" }
            )
        }
        Path::UnderPrefix(rest) => format!("/stateless{rest}"),
        Path::Raw(raw) => raw.to_owned(),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    match input.cookie {
        Cookie::None => {}
        Cookie::Seed => headers.push(("Cookie".into(), format!("{COOKIE}={SEED}"))),
        Cookie::Full => headers.push(("Cookie".into(), format!("{COOKIE}={FULL}"))),
        Cookie::Forged => headers.push(("Cookie".into(), format!("{COOKIE}={FORGED}"))),
        Cookie::Value(v) => headers.push(("cookie".into(), format!("{COOKIE}={v}"))),
        Cookie::BeforeSeed(v) => {
            headers.push(("cookie".into(), format!("{v}; {COOKIE}={SEED}")));
        }
        Cookie::Headers(values) => {
            headers.extend(
                values
                    .iter()
                    .map(|v| ("cookie".to_owned(), (*v).to_owned())),
            );
        }
    }
    match input.content_type {
        ContentType::None => {}
        ContentType::Json => headers.push(("content-type".into(), "application/json".into())),
        ContentType::JsonCharset => headers.push((
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )),
        ContentType::Raw(v) => headers.push(("content-type".into(), v.into())),
    }
    if let Some(length) = input.content_length {
        headers.push(("content-length".into(), length.into()));
    }
    headers.extend(
        input
            .headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
    );
    let body = input.body.bytes();

    let store = RecordingStore::seeded(T0);
    let before = store.snapshot();
    let handled = ready(handle(
        &Settings::stateless(),
        &store,
        &Instance {
            id: "fuzz0001".into(),
            requests_served: 1,
        },
        NOW,
        Request {
            method,
            path: &path,
            headers: &headers,
            body: &body,
        },
    ));
    let after = store.snapshot();
    let response = handled.response;

    assert!((200..600).contains(&response.status), "{}", response.status);
    assert!(
        response.status < 500,
        "5xx from a MemoryStore: {response:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&response.body).expect("the body is JSON");
    assert!(json.is_object(), "the body is a JSON object");
    let set_cookie = response.header("set-cookie");
    if response.status >= 400 {
        let error = &json["error"];
        assert!(error["code"].is_string(), "error.code: {json}");
        assert!(error["message"].is_string(), "error.message: {json}");
        assert!(set_cookie.is_none(), "an error set a cookie");
        let calls = store.calls();
        assert_eq!((calls.saves, calls.deletes), (0, 0), "an error wrote to the store");
        assert_eq!(before, after, "an error changed the store");
    } else {
        assert!(
            json.get("error").is_none(),
            "a success with an error: {json}"
        );
    }

    // What the client sent itself may come back (e.g. a path in a 404 message): that is no leak.
    let body_text = String::from_utf8_lossy(&body);
    let presented = |text: &str| {
        headers
            .iter()
            .any(|(n, v)| n.contains(text) || v.contains(text))
            || path.contains(text)
            || method.contains(text)
            || body_text.contains(text)
    };
    let exposed = exposed_ids(&response, before.keys(), presented);
    assert!(exposed.is_empty(), "exposed stored sessions: {exposed:?}");
    for id in after.keys().filter(|id| !before.contains_key(*id)) {
        assert!(!presented(id), "a presented id was adopted");
    }
    if let Some(value) = set_cookie_value(&response, COOKIE) {
        if !value.is_empty() {
            assert!(after.contains_key(value), "cookie for a session not stored");
        }
    }
});
