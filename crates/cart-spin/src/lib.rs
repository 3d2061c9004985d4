//! The Spin side shared by both cart components: each instance's identity and
//! request count, settings from Spin variables, the HTTP request in and the
//! response out, and the crash. A component only picks its session store. With the feature
//! `redis`, also the `spin:redis` calls of cart-core's Redis store ([`redis::SpinRedis`]).

#[cfg(feature = "redis")]
pub mod redis;

use cart_core::{
    ApiError, ErrorCode, Instance, MAX_BODY_BYTES, SessionStore, Settings, VARIABLE_NAMES,
    error_response, header,
};
use spin_sdk::variables;
use spin_sdk::wasip3::http::types::{self, Fields, Method};
use spin_sdk::wasip3::wit_bindgen::StreamResult;
use spin_sdk::wasip3::{wit_future, wit_stream};
use std::sync::OnceLock;

/// The request as `wasi:http` hands it over. The adapter reads it and writes the response on
/// the `wasi:http` types themselves: building an `http::Request` and `http::Response` on the
/// way (spin-sdk's conversions) parsed every header twice and cost more guest time per request
/// than cart-core's own work.
pub use spin_sdk::wasip3::http::types::{ErrorCode as HttpErrorCode, Request, Response};

/// Exports `$handler`, an `async fn(Request) -> Response`, as the component's
/// `wasi:http/handler`: what `#[spin_sdk::http_service]` does, without its conversion of
/// the request into an `http::Request`.
#[macro_export]
macro_rules! http_handler {
    ($handler:path) => {
        struct CartHandler;
        ::spin_sdk::wasip3::http::service::export!(CartHandler);
        impl ::spin_sdk::wasip3::exports::http::handler::Guest for CartHandler {
            async fn handle(
                request: $crate::Request,
            ) -> Result<$crate::Response, $crate::HttpErrorCode> {
                Ok($handler(request).await)
            }
        }
    };
}

/// Settings from Spin variables, read once per instance.
static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Serves one request with `store` holding the sessions; `defaults` are the
/// component's settings before Spin variables apply.
pub async fn serve<S: SessionStore>(
    req: Request,
    defaults: fn() -> Settings,
    store: &S,
) -> Response {
    let instance = Instance::for_request();
    let settings = match settings(defaults).await {
        Ok(settings) => settings,
        Err(error) => return to_wasi(error_response(&instance, &error)),
    };

    let method = req.get_method();
    // Field values are bytes; a value that is not UTF-8 is one no cart header can have.
    let headers: Vec<(String, String)> = req
        .get_headers()
        .copy_all()
        .into_iter()
        .filter_map(|(name, value)| Some((name, String::from_utf8(value).ok()?)))
        .collect();
    // Spin passes the part after the wildcard route; cart-core strips the prefix
    // from a full path too, so either works.
    let path = match header(&headers, "spin-path-info") {
        Some(info) => info.to_owned(),
        None => {
            let mut path = req.get_path_with_query().unwrap_or_default();
            path.truncate(path.find('?').unwrap_or(path.len()));
            path
        }
    };
    // Only POST carries a body in this API.
    let body = if matches!(method, Method::Post) {
        let declared = header(&headers, "content-length").and_then(|v| v.trim().parse().ok());
        match read_capped(req, declared).await {
            Ok(body) => body,
            Err(e) => {
                let error = ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("could not read the request body: {e:?}"),
                );
                return to_wasi(error_response(&instance, &error));
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
            method: method_name(&method),
            path: &path,
            headers: &headers,
            body: &body,
        },
    )
    .await
    .response_or_trap();
    to_wasi(response)
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(name) => name,
    }
}

/// Reads Spin variables into settings (once per instance); a variable not mapped in spin.toml
/// keeps its default. A component that picks its store from the settings calls this first;
/// [`serve`] answers the same error if it fails.
pub async fn settings(defaults: fn() -> Settings) -> Result<&'static Settings, ApiError> {
    if let Some(settings) = SETTINGS.get() {
        return Ok(settings);
    }
    let mut settings = defaults();
    for name in VARIABLE_NAMES {
        let read = match variables::get(name).await {
            Ok(value) => Ok(Some(value)),
            Err(variables::Error::Undefined(_)) => Ok(None),
            Err(e) => Err(e),
        };
        settings.apply_read(name, read)?;
    }
    Ok(SETTINGS.get_or_init(|| settings))
}

/// Reads at most `MAX_BODY_BYTES + 1` bytes: enough for cart-core to answer 413, without
/// buffering an arbitrarily large upload. Once a body of `declared` length is whole, the read
/// stops there rather than waiting for the stream's end and the trailers.
async fn read_capped(req: Request, declared: Option<usize>) -> Result<Vec<u8>, types::ErrorCode> {
    // Dropped unwritten, this reports "handled" (`Ok`) to the host.
    let (_handled, handled_reader) = wit_future::new(|| Ok(()));
    let (mut stream, trailers) = Request::consume_body(req, handled_reader);
    let want = declared.map_or(MAX_BODY_BYTES + 1, |length| length.min(MAX_BODY_BYTES + 1));
    let mut bytes = Vec::new();
    while bytes.len() < want {
        match stream.read(Vec::with_capacity(want - bytes.len())).await {
            // Usually the whole body, read straight into its buffer.
            (StreamResult::Complete(_), chunk) if bytes.is_empty() => bytes = chunk,
            (StreamResult::Complete(_), chunk) => bytes.extend_from_slice(&chunk),
            // The writer is done: the body is whole unless the trailers say it broke off.
            (StreamResult::Dropped, _) => {
                trailers.await?;
                break;
            }
            (StreamResult::Cancelled, _) => break,
        }
    }
    Ok(bytes)
}

/// The response on `wasi:http`'s own types: the headers in one list, the body written whole
/// into its stream, and no trailers. With its length declared, a host can send head and body
/// in one write, not chunked.
fn to_wasi(response: cart_core::Response) -> Response {
    let mut entries: Vec<(String, Vec<u8>)> = Vec::with_capacity(response.headers.len() + 1);
    entries.push((
        "content-length".to_owned(),
        response.body.len().to_string().into_bytes(),
    ));
    entries.extend(
        response
            .headers
            .into_iter()
            .map(|(name, value)| (name, value.into_bytes())),
    );
    // cart-core only makes valid headers; no headers is the no-panic path for the impossible.
    let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let (mut body_writer, body) = wit_stream::new();
    let (trailers_writer, trailers) = wit_future::new(|| Ok(None));
    drop(trailers_writer);
    let (out, _sent) = Response::new(fields, Some(body), trailers);
    // Out of range is the no-panic path for the impossible: cart-core's statuses are valid.
    if out.set_status_code(response.status).is_err() {
        let _ = out.set_status_code(500);
    }
    let bytes = response.body;
    spin_sdk::wit_bindgen::spawn(async move {
        body_writer.write_all(bytes).await;
    });
    out
}
