//! The Spin side shared by both cart components: each instance's identity and
//! request count, settings from Spin variables, the HTTP request in and the
//! response out, and the crash. A component only picks its session store. With the feature
//! `redis`, also the `spin:redis` calls of cart-core's Redis store ([`redis::SpinRedis`]).

#[cfg(feature = "redis")]
pub mod redis;

use bytes::Bytes;
use cart_core::{
    ApiError, ErrorCode, Instance, MAX_BODY_BYTES, SessionStore, Settings, VARIABLE_NAMES,
    error_response,
};
use http::{HeaderName, HeaderValue, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use spin_sdk::http::Request;
use spin_sdk::variables;
use std::sync::OnceLock;

/// Settings from Spin variables, read once per instance.
static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Serves one request with `store` holding the sessions; `defaults` are the
/// component's settings before Spin variables apply.
pub async fn serve<S: SessionStore>(
    req: Request,
    defaults: fn() -> Settings,
    store: &S,
) -> http::Response<Full<Bytes>> {
    let instance = Instance::for_request();
    let settings = match settings(defaults).await {
        Ok(settings) => settings,
        Err(error) => return to_http(error_response(&instance, &error)),
    };

    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    // Spin passes the part after the wildcard route; cart-core strips the prefix
    // from a full path too, so either works.
    let path = parts
        .headers
        .get("spin-path-info")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| parts.uri.path())
        .to_owned();
    // Only POST carries a body in this API.
    let body = if parts.method == http::Method::POST {
        match read_capped(body).await {
            Ok(body) => body,
            Err(e) => {
                let error = ApiError::new(
                    ErrorCode::InvalidJson,
                    format!("could not read the request body: {e:?}"),
                );
                return to_http(error_response(&instance, &error));
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
            method: parts.method.as_str(),
            path: &path,
            headers: &headers,
            body: &body,
        },
    )
    .await
    .response_or_trap();
    to_http(response)
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
/// buffering an arbitrarily large upload.
async fn read_capped<B: Body<Data = Bytes>>(body: B) -> Result<Vec<u8>, B::Error> {
    let mut body = std::pin::pin!(body);
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            bytes.extend_from_slice(&data);
            if bytes.len() > MAX_BODY_BYTES {
                break;
            }
        }
    }
    Ok(bytes)
}

fn to_http(response: cart_core::Response) -> http::Response<Full<Bytes>> {
    // With its length declared, a host can send head and body in one write, not chunked.
    let length = HeaderValue::from(response.body.len());
    let mut out = http::Response::new(Full::new(Bytes::from(response.body)));
    out.headers_mut()
        .insert(http::header::CONTENT_LENGTH, length);
    *out.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        // cart-core only makes valid headers; skipping is the no-panic path for the impossible.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}
