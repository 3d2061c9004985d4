//! The running host as a request sees it: the routes, each component's instances and the lab's
//! registry, and the host's own JSON errors. The HTTP front (`server`) and the lab API
//! (`lab_api`) both serve from it.

use crate::app::routes::Router;
use crate::runtime::instances::{Instances, Recycled};
use crate::runtime::lab::Lab;
use bytes::Bytes;
use cart_core::contract::{ErrorBody, ErrorDetail};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::sync::Arc;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Everything a request needs: the routes, each component's instances, and
/// the lab's registry.
pub struct App {
    /// What `/.well-known/spin/info` answers.
    pub info: AppInfo,
    pub router: Router,
    pub components: BTreeMap<String, Instances>,
    pub lab: Arc<Lab>,
}

/// The app's name and version from spin.toml, in Spin's JSON shape.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AppInfo {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl App {
    /// A rolling redeploy of one component, or of all at once as one release would roll
    /// them (within a component, one instance at a time).
    pub async fn roll(&self, component: Option<&str>) -> Recycled {
        let rolls = self
            .components
            .iter()
            .filter(|(name, _)| component.is_none_or(|c| c == name.as_str()))
            .map(|(_, instances)| instances.roll());
        let mut outcome = Recycled::default();
        for rolled in futures::future::join_all(rolls).await {
            outcome.extend(rolled);
        }
        outcome
    }
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
