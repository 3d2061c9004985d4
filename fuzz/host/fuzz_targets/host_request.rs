//! Fuzzes the lab host's whole request path: each input becomes one HTTP/1.1 request (method,
//! path, headers such as Host, Origin, Sec-Fetch-Site, Cookie, Content-Type, Content-Length,
//! Transfer-Encoding and Idempotency-Key, and a body; or raw bytes) sent over real loopback TCP
//! to a lab host running this repository's spin.toml with the real components (SQLite
//! key-value in a scratch state directory), the lab API on.
//!
//! Invariants checked on every input:
//! - the host never panics (libfuzzer-sys aborts on a panic in any thread) and never hangs:
//!   every request is answered, or its connection closed, within `ANSWER_LIMIT`;
//! - a well-formed request gets a well-formed HTTP/1.1 response;
//! - every JSON error body is `{"error":{"code":"...","message":"..."}}`;
//! - a 5xx is one of the answers the host documents for overload, recycling or a crash, never
//!   anything else (a 500 from a component other than its own crash is a bug);
//! - a state-changing request that carries `Sec-Fetch-Site: cross-site` is refused with 403
//!   (the health probe aside), however the rest of it looks.

#![no_main]

use arbitrary::Arbitrary;
use cartlab::commands::AppArgs;
use cartlab::commands::up::UpArgs;
use cartlab::commands::up::load::LocalHost;
use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Longer than every timeout the host is started with: past it, the host hung.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/app.js",
    "/.well-known/spin/health",
    "/.well-known/spin/info",
    "/_lab",
    "/_lab/",
    "/_lab/instances",
    "/_lab/events",
    "/_lab/recycle",
    "/_lab/recycle/",
    "/stateless",
    "/stateless/",
    "/stateless/cart",
    "/stateless/cart/add",
    "/stateless/cart/items/0",
    "/stateless/cart/items/1",
    "/stateless/health",
    "/stateless/crash",
    "/stateful",
    "/stateful/cart",
    "/stateful/cart/add",
    "/stateful/cart/items/0",
    "/stateful/health",
    "/stateful/crash",
];

const HEADERS: &[&str] = &[
    "host",
    "origin",
    "sec-fetch-site",
    "cookie",
    "content-type",
    "content-length",
    "transfer-encoding",
    "idempotency-key",
    "expect",
    "connection",
    "accept",
    "spin-path-info",
    "spin-full-url",
    "x-cartlab-instance",
    "referer",
];

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
    Other(String),
}

impl Method {
    fn text(&self) -> &str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
            Self::Options => "OPTIONS",
            Self::Other(text) => text,
        }
    }

    fn changes_state(&self) -> bool {
        matches!(self, Self::Post | Self::Put | Self::Patch | Self::Delete)
    }
}

#[derive(Arbitrary, Debug)]
enum Value {
    Text(String),
    /// The session cookie a component set on an earlier input, so sessions are reached.
    KnownCookie,
    SameOrigin,
    CrossSite,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Bytes(Vec<u8>),
    /// An add-item order with fuzzed fields: `{"item": ..., "price": <text>, ...}`.
    Add {
        item: String,
        price: String,
        quantity: Option<String>,
    },
    Recycle {
        component: Option<String>,
        instance: Option<String>,
        mode: Option<String>,
    },
}

#[derive(Arbitrary, Debug)]
enum Input {
    Request {
        method: Method,
        path: u8,
        suffix: String,
        headers: Vec<(u8, Value)>,
        body: Body,
        /// A `Content-Length` that does not match the body, or none at all.
        length: Option<Option<u16>>,
    },
    Raw(Vec<u8>),
}

struct Harness {
    _runtime: tokio::runtime::Runtime,
    _host: LocalHost,
    address: SocketAddr,
    cookie: Mutex<String>,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // A Rust program ignores SIGPIPE before `main`; libFuzzer's `main` does not, and the
        // host writing to a connection the client closed would kill the process.
        // SAFETY: setting a signal's disposition to SIG_IGN before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
        let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let state = here.join("state");
        let _ = std::fs::remove_dir_all(&state);
        let mut options = UpArgs::in_process(AppArgs {
            from: here.join("../../spin.toml"),
            runtime_config_file: None,
            state_dir: Some(state),
            variables: Vec::new(),
            env: Vec::new(),
            // `cargo build --target wasm32-wasip2 --release` at the root builds them.
            build: false,
        });
        options.limits.header_read_timeout = Duration::from_secs(2);
        options.limits.keep_alive_timeout = Duration::from_secs(1);
        options.limits.request_body_timeout = Duration::from_secs(2);
        options.request_timeout = Duration::from_secs(5);
        report_recent_on_panic();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let host = runtime
            // CARTLAB_FUZZ_GUEST_OUTPUT=1: the components' stderr (a trap's panic message) too.
            .block_on(LocalHost::start(
                &options,
                std::env::var_os("CARTLAB_FUZZ_GUEST_OUTPUT").is_some(),
            ))
            .expect("the lab host starts (are the components built?)");
        Harness {
            address: host.address,
            _host: host,
            _runtime: runtime,
            cookie: Mutex::new(String::new()),
        }
    })
}

/// No CR or LF in a header: a structured request stays one well-formed request.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
        .collect()
}

/// A JSON string literal of arbitrary text.
fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string())
}

struct Built {
    bytes: Vec<u8>,
    /// One complete request, so the host must answer it.
    well_formed: bool,
    cross_site_change: bool,
    path: String,
}

fn build(input: &Input, harness: &Harness) -> Built {
    let (method, path, suffix, headers, body, length) = match input {
        Input::Raw(bytes) => {
            return Built {
                bytes: bytes.clone(),
                well_formed: false,
                cross_site_change: false,
                path: String::new(),
            };
        }
        Input::Request {
            method,
            path,
            suffix,
            headers,
            body,
            length,
        } => (method, path, suffix, headers, body, length),
    };
    let base = PATHS[usize::from(*path) % PATHS.len()];
    let suffix: String = clean(suffix)
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    let path = format!("{base}{suffix}");
    let body = match body {
        Body::Bytes(bytes) => bytes.clone(),
        Body::Add {
            item,
            price,
            quantity,
        } => {
            let mut text = format!(
                "{{\"item\":{},\"price\":{}",
                json_string(item),
                clean(price)
            );
            if let Some(quantity) = quantity {
                text.push_str(&format!(",\"quantity\":{}", clean(quantity)));
            }
            text.push('}');
            text.into_bytes()
        }
        Body::Recycle {
            component,
            instance,
            mode,
        } => {
            let mut fields = Vec::new();
            if let Some(component) = component {
                fields.push(format!("\"component\":{}", json_string(component)));
            }
            if let Some(instance) = instance {
                fields.push(format!("\"instance\":{}", clean(instance)));
            }
            if let Some(mode) = mode {
                fields.push(format!("\"mode\":{}", json_string(mode)));
            }
            format!("{{{}}}", fields.join(",")).into_bytes()
        }
    };
    let host = harness.address.to_string();
    let mut head = format!("{} {path} HTTP/1.1\r\n", clean(method.text()));
    let mut named_host = false;
    let mut named_length = false;
    let mut framing_changed = false;
    let mut cross_site = false;
    for (name, value) in headers.iter().take(16) {
        let name = HEADERS[usize::from(*name) % HEADERS.len()];
        let value = match value {
            Value::Text(text) => clean(text),
            Value::KnownCookie => harness
                .cookie
                .lock()
                .map(|cookie| cookie.clone())
                .unwrap_or_default(),
            Value::SameOrigin if name == "host" => host.clone(),
            Value::SameOrigin => format!("http://{host}"),
            Value::CrossSite if name == "sec-fetch-site" => {
                cross_site = true;
                "cross-site".to_string()
            }
            Value::CrossSite => "https://evil.example".to_string(),
        };
        match name {
            "host" => named_host = true,
            "content-length" => named_length = true,
            "transfer-encoding" | "expect" | "connection" => framing_changed = true,
            _ => {}
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !named_host {
        head.push_str(&format!("host: {host}\r\n"));
    }
    match length {
        None if !named_length => head.push_str(&format!("content-length: {}\r\n", body.len())),
        // Never longer than the body: the host would wait out its body timeout.
        Some(Some(length)) => head.push_str(&format!(
            "content-length: {}\r\n",
            usize::from(*length).min(body.len())
        )),
        _ => {}
    }
    head.push_str("connection: close\r\n\r\n");
    let well_formed = !named_length
        && !framing_changed
        && matches!(length, None)
        && !matches!(method, Method::Other(_))
        && httparse::Request::new(&mut [httparse::EMPTY_HEADER; 40])
            .parse(head.as_bytes())
            .is_ok_and(|status| status.is_complete());
    // A duplicate or odd Sec-Fetch-Site makes the header's meaning unclear: only a clean
    // single `cross-site` must be refused.
    let sec_fetch_sites = headers
        .iter()
        .take(16)
        .filter(|(name, _)| HEADERS[usize::from(*name) % HEADERS.len()] == "sec-fetch-site")
        .count();
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    Built {
        bytes,
        well_formed,
        cross_site_change: cross_site && sec_fetch_sites == 1 && method.changes_state(),
        path,
    }
}

/// The whole answer, or what arrived before an event stream began (it never ends).
/// A request that is not known to be whole is followed by the end of the client's stream,
/// as a client that gives up would do, so that the host need not wait out its timeouts (it
/// then closes without answering, since it does not serve half-closed connections).
fn exchange(address: SocketAddr, request: &[u8], well_formed: bool) -> Vec<u8> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).expect("connect to the lab host");
    stream
        .set_read_timeout(Some(ANSWER_LIMIT))
        .expect("read timeout");
    // The host may close early (a refused body); what it answered is still read.
    let _ = stream.write_all(request);
    if !well_formed {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return answer,
            Ok(n) => {
                answer.extend_from_slice(&chunk[..n]);
                let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n");
                if head_end.is_some()
                    && String::from_utf8_lossy(&answer)
                        .to_ascii_lowercase()
                        .contains("content-type: text/event-stream")
                {
                    return answer;
                }
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return answer;
            }
            Err(error) => panic!(
                "the host did not answer within {ANSWER_LIMIT:?} ({error}, after {:?}): {}",
                started.elapsed(),
                String::from_utf8_lossy(request)
            ),
        }
    }
}

/// A chunked body's data, or `None` if it was cut short or its framing is broken.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(data);
        }
        if rest.len() < size + 2 {
            return None;
        }
        data.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// 5xx answers the host documents; anything else is a bug.
const DOCUMENTED_5XX: &[&str] = &[
    "overloaded",
    "component_busy",
    "no_live_instance",
    "too_many_connections",
    "instantiation_failed",
];

fn check(built: &Built, answer: &[u8], harness: &Harness) {
    if answer.is_empty() {
        assert!(
            !built.well_formed,
            "a well-formed request got no answer: {}",
            String::from_utf8_lossy(&built.bytes)
        );
        return;
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(answer) {
        Ok(httparse::Status::Complete(head)) => head,
        other => panic!(
            "not an HTTP response ({other:?}): {}",
            String::from_utf8_lossy(answer)
        ),
    };
    let status = response.code.unwrap_or_default();
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let chunked = header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let streaming = header("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
    let body = if streaming {
        // Only its start was read: the stream never ends.
        Vec::new()
    } else if chunked {
        match dechunk(&answer[head..]) {
            Some(body) => body,
            // The client ended its stream early, and the host stopped mid-answer.
            None if !built.well_formed => return,
            None => panic!(
                "a chunked answer cut short or broken: {}",
                String::from_utf8_lossy(answer)
            ),
        }
    } else {
        answer[head..].to_vec()
    };
    let json = header("content-type").is_some_and(|t| t.starts_with("application/json"));
    let mut code = None;
    if status >= 400 && json && !body.is_empty() {
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "error body is not JSON ({e}): {}",
                String::from_utf8_lossy(answer)
            )
        });
        let error = &value["error"];
        assert!(
            error["code"].is_string() && error["message"].is_string(),
            "error body without code and message: {value}"
        );
        code = error["code"].as_str().map(str::to_string);
    }
    if status >= 500 {
        let crash = built.path.contains("/crash") || built.path.starts_with("/_lab/recycle");
        let documented = code
            .as_deref()
            .is_some_and(|code| DOCUMENTED_5XX.contains(&code) || crash);
        assert!(
            documented,
            "an undocumented {status}: {}\nfor: {}",
            String::from_utf8_lossy(answer),
            String::from_utf8_lossy(&built.bytes)
        );
    }
    // hyper itself answers a request line it cannot take (a bad URI) with a bare 400 before
    // any of the host's code runs; that refuses the request too.
    let refused_by_http = status == 400 && code.is_none();
    if built.well_formed
        && built.cross_site_change
        && !refused_by_http
        && !built.path.starts_with("/.well-known/spin/health")
    {
        assert_eq!(
            status,
            403,
            "a cross-site change was not refused: {}",
            String::from_utf8_lossy(&built.bytes)
        );
    }
    if let Some(cookie) = header("set-cookie")
        && let Some(pair) = cookie.split(';').next()
        && let Ok(mut known) = harness.cookie.lock()
    {
        *known = pair.to_string();
    }
}

/// The last requests before this one and the start of their answers: the host keeps state
/// between inputs (instances, sessions), so a failure may be the doing of an earlier request.
static RECENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
const RECENT_KEPT: usize = 8;

fn remember(built: &Built, answer: &[u8]) {
    let shown = |bytes: &[u8], limit: usize| {
        String::from_utf8_lossy(&bytes[..bytes.len().min(limit)])
            .escape_debug()
            .to_string()
    };
    let line = format!("{} -> {}", shown(&built.bytes, 160), shown(answer, 60));
    if let Ok(mut recent) = RECENT.lock() {
        if recent.len() == RECENT_KEPT {
            recent.pop_front();
        }
        recent.push_back(line);
    }
}

/// Prints [`RECENT`] before a failure's own message.
fn report_recent_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(recent) = RECENT.try_lock() {
            eprintln!(
                "the {} requests before this one, oldest first:",
                recent.len()
            );
            for line in recent.iter() {
                eprintln!("  {line}");
            }
        }
        default(info);
    }));
}

fuzz_target!(|input: Input| {
    let harness = harness();
    let built = build(&input, harness);
    let answer = exchange(harness.address, &built.bytes, built.well_formed);
    check(&built, &answer, harness);
    remember(&built, &answer);
});
