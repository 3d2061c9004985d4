//! The lab host's admin API under `/_lab/`, which no app route can take:
//!
//! - `GET /_lab/instances`: every component's instances (or fleet slots) now.
//! - `POST /_lab/recycle`: retire one instance, all of them, or roll through
//!   them one by one (a rolling redeploy). Body `{"component", "instance",
//!   "mode"}`, all optional; an empty body recycles everything.
//! - `GET /_lab/events`: Server-Sent Events, a `hello` snapshot and then every
//!   instance start, request, recycle and slot change.
//!
//! Answered only to loopback clients unless `--lab-api any`.

use crate::runtime::lab::{InstanceHandle, LabAccess, LabEvent};
use crate::serve::host::{App, Body, Instances, error_response, json_response};
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How long a recycle waits for instances to finish their requests.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Largest request body the lab API reads.
const MAX_BODY: usize = 4096;

pub async fn handle(app: &App, request: Request<Incoming>, client: SocketAddr) -> Response<Body> {
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
    routing: Option<String>,
    components: Vec<ComponentView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ComponentView {
    component: String,
    slots: Option<usize>,
    instances: Vec<InstanceView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceView {
    id: Option<String>,
    number: Option<u64>,
    slot: Option<usize>,
    generation: u64,
    served: u64,
    in_flight: usize,
    /// `ready`, `draining`, or for an empty fleet slot `down` (restarting)
    /// or `empty` (its next request starts an instance).
    state: &'static str,
    server_id: Option<String>,
    age_ms: Option<u64>,
}

impl InstanceView {
    fn of(handle: &InstanceHandle) -> Self {
        Self {
            id: Some(handle.id()),
            number: Some(handle.number),
            slot: handle.slot,
            generation: handle.generation,
            served: handle.served(),
            in_flight: handle.in_flight(),
            state: handle.state(),
            server_id: handle.server_id().map(str::to_string),
            age_ms: Some(handle.born.elapsed().as_millis() as u64),
        }
    }
}

fn snapshot(app: &App) -> Snapshot {
    let mut routing = None;
    let components = app
        .components
        .iter()
        .map(|(name, runtime)| {
            let live = app.lab.instances(Some(name));
            match &runtime.instances {
                Instances::Spin(_) => ComponentView {
                    component: name.clone(),
                    slots: None,
                    instances: live.iter().map(|handle| InstanceView::of(handle)).collect(),
                },
                Instances::Fleet(fleet) => {
                    routing = Some(fleet.balancer.routing.to_string());
                    let mut instances = Vec::new();
                    for slot in &fleet.balancer.slots {
                        let in_slot: Vec<_> = live
                            .iter()
                            .filter(|handle| handle.slot == Some(slot.index))
                            .collect();
                        if in_slot.is_empty() || slot.is_down() {
                            instances.push(InstanceView {
                                id: None,
                                number: None,
                                slot: Some(slot.index),
                                generation: slot.generation(),
                                served: 0,
                                in_flight: 0,
                                state: if slot.is_down() { "down" } else { "empty" },
                                server_id: None,
                                age_ms: None,
                            });
                        }
                        instances.extend(in_slot.iter().map(|handle| InstanceView::of(handle)));
                    }
                    ComponentView {
                        component: name.clone(),
                        slots: Some(fleet.balancer.slots.len()),
                        instances,
                    }
                }
            }
        })
        .collect();
    Snapshot {
        mode: if routing.is_some() { "pool" } else { "spin" },
        routing,
        components,
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

async fn recycle_request(request: Request<Incoming>) -> Result<RecycleOrder, Response<Body>> {
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
    if body.iter().all(u8::is_ascii_whitespace) {
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

#[derive(Serialize)]
struct Recycled {
    recycled: Vec<String>,
    /// Retired but still finishing requests when the answer was sent.
    draining: Vec<String>,
}

async fn recycle(app: &App, order: RecycleOrder) -> Response<Body> {
    let mode = order.mode.unwrap_or(if order.instance.is_some() {
        RecycleMode::One
    } else {
        RecycleMode::All
    });
    if let Some(component) = &order.component
        && !app.components.contains_key(component)
    {
        return error_response(
            StatusCode::NOT_FOUND,
            "unknown_component",
            &format!("no component `{component}` in this app"),
        );
    }
    let chosen: Vec<_> = app
        .components
        .iter()
        .filter(|(name, _)| order.component.as_ref().is_none_or(|c| c == *name))
        .collect();
    let mut outcome = Recycled {
        recycled: Vec::new(),
        draining: Vec::new(),
    };
    match (mode, order.instance) {
        (RecycleMode::One, None) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "mode `one` needs `component` and `instance` (see GET /_lab/instances)",
            );
        }
        (RecycleMode::One, Some(number)) => {
            let Some(component) = &order.component else {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "`instance` numbers are per component: name the `component` too",
                );
            };
            let Some(handle) = app
                .lab
                .instances(Some(component))
                .into_iter()
                .find(|handle| handle.number == number)
            else {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "unknown_instance",
                    &format!("{component}#{number} is not alive"),
                );
            };
            retire(app, &handle);
            settle(app, &[handle], &mut outcome).await;
        }
        (_, Some(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "`instance` goes with mode `one`",
            );
        }
        (RecycleMode::All, None) => {
            let mut retired = Vec::new();
            for (name, _) in &chosen {
                // Every instance goes at once (a big-bang redeploy); in a
                // fleet each running server leaves rotation while it restarts.
                for handle in app.lab.instances(Some(name)) {
                    retire(app, &handle);
                    retired.push(handle);
                }
            }
            settle(app, &retired, &mut outcome).await;
        }
        (RecycleMode::Rolling, None) => {
            // Components roll at the same time, as one release would; within
            // a component, one instance at a time.
            let rolls = chosen
                .iter()
                .map(|(name, runtime)| roll(app, name, &runtime.instances));
            for rolled in futures::future::join_all(rolls).await {
                outcome.recycled.extend(rolled.recycled);
                outcome.draining.extend(rolled.draining);
            }
        }
    }
    json_response(StatusCode::OK, &outcome)
}

/// A rolling redeploy of one component.
async fn roll(app: &App, name: &str, instances: &Instances) -> Recycled {
    let mut outcome = Recycled {
        recycled: Vec::new(),
        draining: Vec::new(),
    };
    match instances {
        // One server at a time leaves rotation, restarts, and rejoins before
        // the next goes.
        Instances::Fleet(fleet) => {
            for slot in &fleet.balancer.slots {
                let in_slot: Vec<_> = app
                    .lab
                    .instances(Some(name))
                    .into_iter()
                    .filter(|handle| handle.slot == Some(slot.index))
                    .collect();
                // An empty slot has nothing to restart.
                if in_slot.is_empty() {
                    continue;
                }
                for handle in &in_slot {
                    retire(app, handle);
                }
                settle(app, &in_slot, &mut outcome).await;
                slot.wait_up().await;
            }
        }
        Instances::Spin(_) => {
            for handle in app.lab.instances(Some(name)) {
                handle.retire();
                settle(app, std::slice::from_ref(&handle), &mut outcome).await;
            }
        }
    }
    outcome
}

/// Retires an instance; in a fleet its slot leaves rotation while it restarts.
fn retire(app: &App, handle: &InstanceHandle) {
    handle.retire();
    if let (Some(index), Some(runtime)) = (handle.slot, app.components.get(&handle.component))
        && let Instances::Fleet(fleet) = &runtime.instances
        && let Some(slot) = fleet.balancer.slots.get(index)
    {
        slot.take_down(&app.lab);
    }
}

/// Waits for retired instances to go, sorting them into recycled or draining.
async fn settle(app: &App, handles: &[Arc<InstanceHandle>], outcome: &mut Recycled) {
    for handle in handles {
        if app.lab.wait_gone(handle, DRAIN_LIMIT).await {
            outcome.recycled.push(handle.id());
        } else {
            outcome.draining.push(handle.id());
        }
    }
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
}
