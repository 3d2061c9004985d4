//! The spin-sdk 5.2 (WASIp2, `wasi:http/incoming-handler@0.2.0`) twin of `cart-spin`, for
//! Spin 3.x hosts (SpinKube, Fermyon Cloud): each instance's identity and request count,
//! settings from Spin variables, the request in and the response out, and the crash. Same
//! API, same responses, same cookies: everything else is cart-core's. (Spin gives every
//! WASIp2 request a fresh instance, so here each instance serves exactly one.) With the
//! feature `redis`, also the `spin:redis` calls of cart-core's Redis store
//! ([`redis::SpinRedis`]).

#[cfg(feature = "redis")]
pub mod redis;

use cart_core::{
    ApiError, ErrorCode, Instance, MAX_BODY_BYTES, SessionStore, Settings, VARIABLE_NAMES,
    error_response,
};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use spin_sdk::variables;
use std::sync::OnceLock;
use wasi::io::streams::StreamError;

/// Settings from Spin variables, read once per instance.
static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Serves one request with `store` holding the sessions; `defaults` are the component's
/// settings before Spin variables apply. The component's `#[http_component]` passes both
/// halves of the exchange: answering through `out` keeps every header cart-core makes
/// (spin-sdk's own `Response` keeps one value per header name).
pub async fn serve<S: SessionStore>(
    req: IncomingRequest,
    out: ResponseOutparam,
    defaults: fn() -> Settings,
    store: &S,
) {
    let instance = Instance::for_request();
    let settings = match settings(defaults) {
        Ok(settings) => settings,
        Err(error) => return send(out, error_response(&instance, &error)),
    };

    // As `http::HeaderValue::to_str` reads them in cart-spin: visible ASCII and tabs only.
    let headers: Vec<(String, String)> = req
        .headers()
        .entries()
        .into_iter()
        .filter(|(_, value)| value.iter().all(|&b| b == b'\t' || (32..127).contains(&b)))
        .filter_map(|(name, value)| Some((name, String::from_utf8(value).ok()?)))
        .collect();
    // Spin passes the part after the wildcard route; cart-core strips the prefix from a full
    // path too, and ignores a query string.
    let path = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("spin-path-info"))
        .map(|(_, value)| value.clone())
        .or_else(|| req.path_with_query())
        .unwrap_or_else(|| "/".to_owned());
    let method = req.method().to_string();
    // Only POST carries a body in this API.
    let body = if method == "POST" {
        match read_capped(&req) {
            Ok(body) => body,
            Err(e) => {
                let error = ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("could not read the request body: {e}"),
                );
                return send(out, error_response(&instance, &error));
            }
        }
    } else {
        Vec::new()
    };

    let response = cart_core::handle(
        settings,
        store,
        &instance,
        cart_core::now_unix_secs(),
        cart_core::Request {
            method: &method,
            path: &path,
            headers: &headers,
            body: &body,
        },
    )
    .await
    .response_or_trap();
    send(out, response)
}

/// Reads Spin variables into settings (once per instance); a variable not mapped in the
/// manifest keeps its default. A component that picks its store from the settings calls this
/// first; [`serve`] answers the same error if it fails.
pub fn settings(defaults: fn() -> Settings) -> Result<&'static Settings, ApiError> {
    if let Some(settings) = SETTINGS.get() {
        return Ok(settings);
    }
    let mut settings = defaults();
    for name in VARIABLE_NAMES {
        let read = match variables::get(name) {
            Ok(value) => Ok(Some(value)),
            Err(variables::Error::Undefined(_)) => Ok(None),
            Err(e) => Err(e),
        };
        settings.apply_read(name, read)?;
    }
    Ok(SETTINGS.get_or_init(|| settings))
}

/// Reads at most `MAX_BODY_BYTES` and a chunk: enough for cart-core to answer 413, without
/// buffering an arbitrarily large upload.
fn read_capped(req: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = req
        .consume()
        .map_err(|()| "the body was already taken".to_owned())?;
    let stream = body
        .stream()
        .map_err(|()| "the body stream was already taken".to_owned())?;
    let mut bytes = Vec::new();
    while bytes.len() <= MAX_BODY_BYTES {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    Ok(bytes)
}

/// Answers `response`, its length declared (so a host can send head and body in one write).
fn send(out: ResponseOutparam, response: cart_core::Response) {
    let headers = Fields::new();
    let length = response.body.len().to_string();
    let declared = [("content-length".to_owned(), length)];
    for (name, value) in declared.into_iter().chain(response.headers) {
        // cart-core only makes valid headers; skipping is the no-panic path for the impossible.
        let _ = headers.append(&name, value.as_bytes());
    }
    let outgoing = OutgoingResponse::new(headers);
    if outgoing.set_status_code(response.status).is_err() {
        let _ = outgoing.set_status_code(500);
    }
    let Ok(body) = outgoing.body() else {
        return eprintln!("cartlab: the response body was already taken");
    };
    out.set(outgoing);
    if let Err(e) = write_all(&body, &response.body) {
        return eprintln!("cartlab: could not send the response body: {e}");
    }
    if let Err(e) = OutgoingBody::finish(body, None) {
        eprintln!("cartlab: could not finish the response: {e:?}");
    }
}

fn write_all(body: &OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body
        .write()
        .map_err(|()| "the body stream was already taken".to_owned())?;
    // `blocking-write-and-flush` takes at most 4096 bytes a call.
    for chunk in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}
