//! The running host as a request sees it: the routes, each component's instances and the lab's
//! registry, and the host's own JSON errors. The HTTP front (`server`) and the lab API
//! (`lab_api`) both serve from it.

use crate::app::routes::Router;
use crate::runtime::fleet::Fleet;
use crate::runtime::lab::Lab;
use crate::runtime::pool::{ComponentPool, PoolContext};
use bytes::Bytes;
use cart_core::contract::{ErrorBody, ErrorDetail};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime_wasi_http::handler::ProxyHandler;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Everything a request needs: the routes, each component's instances, and
/// the lab's registry.
pub struct App {
    pub router: Router,
    pub components: BTreeMap<String, ComponentRuntime>,
    pub lab: Arc<Lab>,
}

/// How one component's requests find an instance.
pub struct ComponentRuntime {
    pub context: PoolContext,
    pub instances: Instances,
}

pub enum Instances {
    /// Spin's way: any free instance, new ones on demand.
    Spin(ProxyHandler<ComponentPool>),
    /// `--instances N`: long-lived instances behind a balancer.
    Fleet(Fleet),
}

/// The host's own errors use the same JSON shape as the components'.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message: message.to_string(),
        },
    };
    json_response(status, &body)
}

/// A JSON answer of the host's own (errors, the lab API), never cached.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    // Plain structs of strings and numbers: serialising cannot fail.
    let json = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(
        Full::new(Bytes::from(json))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
