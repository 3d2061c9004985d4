//! The lab host's admin API under `/_lab/`, which no app route can take:
//!
//! - `GET /_lab/instances`: every component's instances (or fleet slots) now.
//! - `POST /_lab/recycle`: retire one instance, all of them, or roll through
//!   them one by one (a rolling redeploy). Body `{"component", "instance",
//!   "mode"}`, all optional; an empty body recycles everything.
//! - `GET /_lab/events`: Server-Sent Events, a `hello` snapshot and then every
//!   instance start, request, recycle and slot change.
//!
//! Answered only to loopback clients unless `--lab-api any`. A web page cannot use it: it
//! refuses a request with a browser's cross-site signs (any method), and under the default
//! `--lab-api loopback` also one whose `Host` is not a loopback name (a page that rebinds its
//! DNS name to 127.0.0.1). A recycle order is JSON (`Content-Type: application/json`), which a
//! cross-site form cannot send; a bodiless `POST` without a content type still recycles
//! everything, because a browser sends any cross-site `POST` with an `Origin`, refused above.

use crate::runtime::fleet::Routing;
use crate::runtime::instances::{ComponentView, Instances, Recycled};
use crate::runtime::lab::{LabAccess, LabEvent};
use crate::serve::cross_site::{cross_site, names_loopback};
use crate::serve::host::{App, Body, error_response, json_response};
use crate::serve::request_body::RequestBody;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Largest request body the lab API reads.
const MAX_BODY: usize = 4096;

pub async fn handle(
    app: &App,
    request: Request<RequestBody>,
    listen: SocketAddr,
    client: SocketAddr,
) -> Response<Body> {
    if app.lab.access == LabAccess::Off {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "the lab API is off (--lab-api off)",
        );
    }
    if !may_use(app.lab.access, client) {
        return error_response(
            StatusCode::FORBIDDEN,
            "lab_api_forbidden",
            "the lab API answers loopback clients only (start with --lab-api any to change that)",
        );
    }
    if let Some(sign) = cross_site(request.headers()) {
        return error_response(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            &format!("the lab API does not answer other sites' pages ({sign})"),
        );
    }
    if app.lab.access == LabAccess::Loopback && !names_loopback(request.headers(), listen) {
        return error_response(
            StatusCode::FORBIDDEN,
            "host_not_loopback",
            "the lab API answers requests for 127.0.0.1, localhost, [::1] or the listen address only (start with --lab-api any to change that)",
        );
    }
    let path = request.uri().path().trim_end_matches('/').to_string();
    match (request.method().clone(), path.as_str()) {
        (Method::GET, "/_lab/instances") => json_response(StatusCode::OK, &snapshot(app)),
        (Method::GET, "/_lab/events") => events(app),
        (Method::POST, "/_lab/recycle") => match recycle_request(request).await {
            Ok(order) => recycle(app, order).await,
            Err(response) => response,
        },
        (_, "/_lab/instances" | "/_lab/events" | "/_lab/recycle") => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET /_lab/instances, GET /_lab/events, POST /_lab/recycle",
        ),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "the lab API has /_lab/instances, /_lab/events and /_lab/recycle",
        ),
    }
}

/// Whether a client may use the lab API under this access setting.
fn may_use(access: LabAccess, client: SocketAddr) -> bool {
    match access {
        LabAccess::Off => false,
        LabAccess::Any => true,
        // `::ffff:127.0.0.1` is loopback too.
        LabAccess::Loopback => client.ip().to_canonical().is_loopback(),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    /// `spin` (instances on demand) or `pool` (`--instances N` fleets).
    mode: &'static str,
    routing: Option<Routing>,
    components: Vec<ComponentView>,
}

fn snapshot(app: &App) -> Snapshot {
    // One routing for the whole host (`--routing`).
    let routing = app.components.values().find_map(Instances::routing);
    Snapshot {
        mode: if routing.is_some() { "pool" } else { "spin" },
        routing,
        components: app.components.values().map(Instances::view).collect(),
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RecycleMode {
    One,
    All,
    Rolling,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecycleOrder {
    component: Option<String>,
    instance: Option<u64>,
    mode: Option<RecycleMode>,
}

async fn recycle_request(request: Request<RequestBody>) -> Result<RecycleOrder, Response<Body>> {
    let typed = request.headers().get(CONTENT_TYPE).map(is_json);
    if typed == Some(false) {
        return Err(not_json());
    }
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("a recycle order is at most {MAX_BODY} bytes of JSON"),
            )
        })?
        .to_bytes();
    let empty = body.iter().all(u8::is_ascii_whitespace);
    if !empty && typed.is_none() {
        return Err(not_json());
    }
    if empty {
        return Ok(RecycleOrder {
            component: None,
            instance: None,
            mode: None,
        });
    }
    serde_json::from_slice(&body).map_err(|error| {
        error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!(
                "expected {{\"component\"?, \"instance\"?, \"mode\"?: \"one\"|\"all\"|\"rolling\"}}: {error}"
            ),
        )
    })
}

/// `application/json`, with or without parameters such as `charset`.
fn is_json(content_type: &HeaderValue) -> bool {
    content_type
        .to_str()
        .ok()
        .and_then(|text| text.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn not_json() -> Response<Body> {
    error_response(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "a recycle order is JSON: send it with Content-Type: application/json",
    )
}

async fn recycle(app: &App, order: RecycleOrder) -> Response<Body> {
    let mode = order.mode.unwrap_or(if order.instance.is_some() {
        RecycleMode::One
    } else {
        RecycleMode::All
    });
    let chosen: Vec<&Instances> = match &order.component {
        Some(component) => match app.components.get(component) {
            Some(instances) => vec![instances],
            None => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "unknown_component",
                    &format!("no component `{component}` in this app"),
                );
            }
        },
        None => app.components.values().collect(),
    };
    let outcome = match (mode, order.instance) {
        (RecycleMode::One, None) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "mode `one` needs `component` and `instance` (see GET /_lab/instances)",
            );
        }
        (RecycleMode::One, Some(number)) => {
            let (Some(component), [instances]) = (&order.component, chosen.as_slice()) else {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "`instance` numbers are per component: name the `component` too",
                );
            };
            let Some(handle) = instances
                .live()
                .into_iter()
                .find(|handle| handle.number == number)
            else {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "unknown_instance",
                    &format!("{component}#{number} is not alive"),
                );
            };
            instances.retire(&handle);
            instances.settle(&[handle]).await
        }
        (_, Some(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "`instance` goes with mode `one`",
            );
        }
        (RecycleMode::All, None) => {
            // Every instance goes at once (a big-bang redeploy); in a fleet each
            // running server leaves rotation while it restarts.
            let retired: Vec<_> = chosen
                .iter()
                .map(|instances| {
                    let live = instances.live();
                    for handle in &live {
                        instances.retire(handle);
                    }
                    (instances, live)
                })
                .collect();
            let mut outcome = Recycled::default();
            for (instances, live) in retired {
                outcome.extend(instances.settle(&live).await);
            }
            outcome
        }
        (RecycleMode::Rolling, None) => app.roll(order.component.as_deref()).await,
    };
    json_response(StatusCode::OK, &outcome)
}

fn events(app: &App) -> Response<Body> {
    struct Feed {
        hello: Option<Bytes>,
        events: tokio::sync::broadcast::Receiver<LabEvent>,
        closed: tokio::sync::watch::Receiver<bool>,
    }
    enum Next {
        Event(LabEvent),
        Lagged(u64),
        KeepAlive,
        End,
    }
    let feed = Feed {
        hello: Some(sse_frame("hello", &snapshot(app))),
        events: app.lab.subscribe(),
        closed: app.lab.closed(),
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        if let Some(hello) = feed.hello.take() {
            return Some((Ok(Frame::data(hello)), feed));
        }
        let next = tokio::select! {
            received = feed.events.recv() => match received {
                Ok(event) => Next::Event(event),
                Err(RecvError::Lagged(skipped)) => Next::Lagged(skipped),
                Err(RecvError::Closed) => Next::End,
            },
            _ = feed.closed.wait_for(|closed| *closed) => Next::End,
            // Proxies and browsers drop streams that stay silent too long.
            () = tokio::time::sleep(Duration::from_secs(15)) => Next::KeepAlive,
        };
        let bytes = match next {
            Next::Event(event) => sse_frame(event.name(), &event),
            Next::Lagged(skipped) => {
                sse_frame("lagged", &serde_json::json!({ "skipped": skipped }))
            }
            Next::KeepAlive => Bytes::from_static(b": keep-alive\n\n"),
            Next::End => return None,
        };
        Some((Ok::<_, std::io::Error>(Frame::data(bytes)), feed))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn sse_frame(name: &str, data: &impl Serialize) -> Bytes {
    // serde_json never writes a raw newline, so one `data:` line suffices.
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".to_string());
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_clients_may_use_the_lab_api_by_default() {
        let client = |text: &str| text.parse::<SocketAddr>().unwrap();
        for local in ["127.0.0.1:5000", "[::1]:5000", "[::ffff:127.0.0.1]:5000"] {
            assert!(may_use(LabAccess::Loopback, client(local)), "{local}");
        }
        for remote in [
            "10.0.0.7:5000",
            "[2001:db8::1]:5000",
            "[::ffff:10.0.0.7]:5000",
        ] {
            assert!(!may_use(LabAccess::Loopback, client(remote)), "{remote}");
            assert!(may_use(LabAccess::Any, client(remote)), "{remote}");
        }
        assert!(!may_use(LabAccess::Off, client("127.0.0.1:1")));
    }

    #[test]
    fn recycle_orders_must_be_typed_as_json() {
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;x=y",
        ] {
            assert!(is_json(&HeaderValue::from_static(json)), "{json}");
        }
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
        ] {
            assert!(!is_json(&HeaderValue::from_static(other)), "{other}");
        }
    }
}
