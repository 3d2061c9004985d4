//! The HTTP front of the lab host: accepts connections on loopback, routes each
//! request by spin.toml's routes, adds the headers Spin adds, hands it to the
//! component's [`Instances`](crate::runtime::instances::Instances), and answers the
//! host's own errors. `/_lab/` is the lab host's own and never reaches a component.
//! It holds the line against hostile traffic within [`ServeLimits`]: slow clients are
//! timed out, a body is read ahead before any instance sees it, other sites' pages may
//! not change anything, and past a limit the answer is a prompt 503 with `Retry-After`.

use crate::app::routes::{LAB_PREFIX, RouteMatch, WELL_KNOWN_PREFIX};
use crate::runtime::instances::{Failure, Served};
use crate::runtime::lab::{LabEvent, epoch_ms};
use crate::serve::connection::{Activity, Holding, IdleClosing};
use crate::serve::cross_site::{changes_state, cross_site};
use crate::serve::host::{App, Body, error_response};
use crate::serve::limits::{MAX_REFUSING, ServeLimits};
use crate::serve::new_sessions::{Admission, NewSessions};
use crate::serve::request_body::{BodyError, RequestBody};
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use wasmtime_wasi_http::handler::ErrorCode as HandlerErrorCode;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

/// What every connection's requests share: the app and the host's limits.
struct Front {
    app: Arc<App>,
    limits: ServeLimits,
    local: SocketAddr,
    /// `http` or, with `--tls-cert`, `https`: the scheme of the URL components see.
    scheme: &'static str,
    /// Room for requests handed to components (`--max-requests-in-flight`).
    in_flight: Arc<Semaphore>,
    /// `--max-new-sessions-per-minute`, when given.
    new_sessions: Option<NewSessions>,
}

/// Serves within `limits` until `shutdown` resolves, then lets in-flight requests finish
/// (for at most `grace`). With `tls`, every connection is HTTPS.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
) -> anyhow::Result<()> {
    limits.check()?;
    let connections = Arc::new(Semaphore::new(limits.connections_that_fit()));
    let front = Arc::new(Front {
        app: app.clone(),
        local: listener.local_addr()?,
        scheme: if tls.is_some() { "https" } else { "http" },
        in_flight: Arc::new(Semaphore::new(limits.max_requests_in_flight)),
        new_sessions: limits.max_new_sessions_per_minute.map(NewSessions::new),
        limits,
    });
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of file descriptors and the like: keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A streamed response ends with a small final write; with Nagle on,
        // it waits for the client's delayed ACK (~40 ms per request).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let Ok(place) = connections.clone().try_acquire_owned() else {
            // Past the limit a client learns so at once; past the refusals too, it is
            // simply closed rather than left waiting.
            if let Ok(refusal) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let (front, watcher) = (front.clone(), graceful.watcher());
        match &tls {
            None => {
                tokio::spawn(serve_connection(front, stream, client, watcher, place));
            }
            Some(acceptor) => {
                let accepting = acceptor.accept(stream);
                tokio::spawn(async move {
                    // A client that never finishes its handshake is bounded like one that
                    // never sends its request's head.
                    match tokio::time::timeout(front.limits.header_read_timeout, accepting).await {
                        Ok(Ok(stream)) => {
                            serve_connection(front, stream, client, watcher, place).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %client, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    // Event streams never end by themselves; end them so shutdown is prompt.
    app.lab.close();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("in-flight requests did not finish within {grace:?}");
        }
    }
    Ok(())
}

/// Serves one connection within the limits until it closes or the host stops; it holds its
/// place among `--max-connections` until then.
async fn serve_connection<S>(
    front: Arc<Front>,
    stream: S,
    client: SocketAddr,
    watcher: Watcher,
    place: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let service = {
        let (front, activity) = (front.clone(), activity.clone());
        hyper::service::service_fn(move |request| {
            let (front, in_flight) = (front.clone(), activity.begin());
            async move {
                let response = handle(&front, request, client).await;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Holding::boxed(body, in_flight)),
                )
            }
        })
    };
    let io = IdleClosing::new(stream, activity, front.limits.keep_alive_timeout);
    let mut builder = hyper::server::conn::http1::Builder::new();
    if let Some(size) = front.limits.http1_max_buf_size {
        builder.max_buf_size(size);
    }
    let connection = builder
        .timer(TokioTimer::new())
        .header_read_timeout(front.limits.header_read_timeout)
        // A client that shuts down its sending side after its request (`nc -N`, some
        // HTTP/1.0 clients) still gets the answer. Without it hyper drops the request the
        // moment the client's side ends, while the instance goes on with it: a crash the
        // client never hears of, still taking down what else is in flight there.
        .half_close(true)
        .serve_connection(TokioIo::new(io), service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%error, "connection ended with an error");
    }
    drop(place);
}

/// Answers a connection past `--max-connections`: one 503, then closed.
async fn refuse(stream: TcpStream) {
    let service = hyper::service::service_fn(|_request| async {
        let mut response = unavailable(
            "too_many_connections",
            "the host has as many connections open as --max-connections allows; retry shortly",
        );
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "refused connection ended with an error");
    }
}

/// How long a refused connection may take to send the head its 503 answers.
const REFUSAL_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// A 503 of the host's own, with `Retry-After`.
fn unavailable(code: &str, message: &str) -> Response<Body> {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn handle(front: &Front, request: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let app = &front.app;
    let path = request.uri().path().to_string();
    if let Some(name) = path.strip_prefix(WELL_KNOWN_PREFIX) {
        return well_known(app, name);
    }
    if changes_state(request.method())
        && let Some(sign) = cross_site(request.headers())
    {
        return error_response(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            &format!(
                "{} {path} from another site ({sign}) is refused: a web page may not change carts or instances here",
                request.method()
            ),
        );
    }
    let (parts, body) = request.into_parts();
    let body = match RequestBody::prefetch(body, front.limits.request_body_timeout).await {
        Ok(body) => body,
        Err(error) => return unreadable_body(&error),
    };
    let request = Request::from_parts(parts, body);
    if path
        .strip_prefix(LAB_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    {
        return crate::serve::lab_api::handle(app, request, front.local, client).await;
    }
    let Some(matched) = app.router.route(&path) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no route in spin.toml matches {path}"),
        );
    };
    let Some(instances) = app.components.get(&matched.component) else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no_component",
            "route names a component that is not loaded",
        );
    };
    let Ok(room) = front.in_flight.clone().try_acquire_owned() else {
        return unavailable(
            "overloaded",
            "the host has as many requests in flight as --max-requests-in-flight allows; retry shortly",
        );
    };
    let admission = match &front.new_sessions {
        Some(cap) => cap.admit(client.ip(), request.headers()),
        None => Admission::Free,
    };
    if let Admission::Refused(after) = admission {
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_new_sessions",
            "this address has started as many sessions this minute as --max-new-sessions-per-minute allows; retry later",
        );
        if let Ok(seconds) = HeaderValue::from_str(&after.as_secs().max(1).to_string()) {
            response.headers_mut().insert(RETRY_AFTER, seconds);
        }
        return response;
    }
    let request = for_component(request, &matched, (front.scheme, front.local), client);
    let method = request.method().clone();
    let started = Instant::now();
    let Served { instance, outcome } = instances.handle(request).await;
    if let (Admission::Counted(address), Some(cap), Ok(response)) =
        (&admission, &front.new_sessions, &outcome)
    {
        cap.answered(*address, response.headers());
    }
    let response = match outcome {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body.map_err(|error| std::io::Error::other(format!("{error:#}")));
            match gather(body).await {
                Ok(Gathered::Whole(bytes)) => {
                    let body = Full::new(bytes).map_err(|never| match never {});
                    Response::from_parts(parts, body.boxed_unsync())
                }
                // The component is still at work while its body streams.
                Ok(Gathered::Streaming(body)) => {
                    Response::from_parts(parts, Holding::boxed(body, room))
                }
                Err(error) => {
                    tracing::warn!(component = %matched.component, %method, %path, %error, "response body broke off");
                    error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "component_body_failed",
                        "the component's response broke off before its end",
                    )
                }
            }
        }
        Err(failure) => {
            let (status, code, message, error) = match failure {
                Failure::ShareFull => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "component_busy",
                    "this component runs as many instances as --max-component-instances allows; retry shortly",
                    None,
                ),
                Failure::NoLiveInstance => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_live_instance",
                    "every instance of this component is restarting; retry shortly",
                    None,
                ),
                Failure::Timeout(error) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "request_timeout",
                    "the component did not answer within --request-timeout",
                    Some(error),
                ),
                Failure::Instantiation(error) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "instantiation_failed",
                    "could not start a component instance",
                    Some(error),
                ),
                // A trap: Spin answers 500 and the instance is gone.
                Failure::Trap(error) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "component_trapped",
                    "the component instance trapped; it has been discarded",
                    Some(error),
                ),
            };
            if let Some(error) = error {
                tracing::warn!(component = %matched.component, %method, %path, error = %format!("{error:#}"), "request failed");
            }
            if status == StatusCode::SERVICE_UNAVAILABLE {
                unavailable(code, message)
            } else {
                error_response(status, code, message)
            }
        }
    };
    app.lab.publish(|| LabEvent::Request {
        component: matched.component.clone(),
        id: instance.as_ref().map(|instance| instance.id()),
        number: instance.as_ref().map(|instance| instance.number),
        slot: instance.as_ref().and_then(|instance| instance.slot),
        method: method.to_string(),
        path,
        status: response.status().as_u16(),
        ms: started.elapsed().as_secs_f64() * 1000.0,
        server_id: instance.as_ref().map(|instance| instance.server_id.clone()),
        at: epoch_ms(),
    });
    response
}

/// `/.well-known/spin/health` (liveness: `OK`) and `/.well-known/spin/info` (the app's name
/// and version, pretty JSON), as Spin answers them.
fn well_known(app: &App, name: &str) -> Response<Body> {
    let full = |bytes: Bytes| {
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync()
    };
    match name {
        "health" => Response::new(full(Bytes::from_static(b"OK"))),
        "info" => {
            // A struct of strings: serialising cannot fail.
            let json = serde_json::to_vec_pretty(&app.info).unwrap_or_default();
            let mut response = Response::new(full(Bytes::from(json)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Spin answers no {WELL_KNOWN_PREFIX}{name}"),
        ),
    }
}

/// A response body of declared length (`content-length`) up to this is gathered before
/// anything is written, so that head and body leave in one write (one loopback packet, one
/// wake-up of the client) instead of head, body and end apart. Longer and unsized bodies
/// stream as they come: a component may send a body that never ends.
const GATHERED_BODY: u64 = 64 * 1024;

/// A response body, gathered or still streaming.
enum Gathered<B> {
    Whole(Bytes),
    Streaming(B),
}

/// Gathers `body` if it declares a length within [`GATHERED_BODY`]. (It cannot hang: the
/// component's `--request-timeout` ends a body that stops short of its length.)
async fn gather<B>(body: B) -> Result<Gathered<B>, B::Error>
where
    B: hyper::body::Body<Data = Bytes>,
{
    match body.size_hint().exact() {
        Some(length) if length <= GATHERED_BODY => {
            Ok(Gathered::Whole(body.collect().await?.to_bytes()))
        }
        _ => Ok(Gathered::Streaming(body)),
    }
}

/// The host's answer when a body could not be read before any instance saw the request; the
/// connection cannot carry another request after a body it did not read to the end.
fn unreadable_body(error: &BodyError) -> Response<Body> {
    let mut response = match error {
        BodyError::TimedOut => error_response(
            StatusCode::REQUEST_TIMEOUT,
            "request_body_timeout",
            "the request body did not arrive whole within --request-body-timeout",
        ),
        BodyError::Broken(_) => error_response(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "the request body could not be read",
        ),
    };
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A header Spin adds, under `spin-<name>` and its `x-<name>` twin (`const`: built once).
const fn spin_header(spin: &'static str, x: &'static str) -> [HeaderName; 2] {
    [HeaderName::from_static(spin), HeaderName::from_static(x)]
}

/// Rewrites an incoming request the way Spin presents it to a component: an
/// absolute URI and the `spin-*` headers (with their `x-*` twins). Values a
/// client sent under those names are replaced, never trusted.
fn for_component(
    request: Request<RequestBody>,
    matched: &RouteMatch,
    (scheme, local): (&str, SocketAddr),
    client: SocketAddr,
) -> Request<UnsyncBoxBody<Bytes, HandlerErrorCode>> {
    let (mut parts, body) = request.into_parts();
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| local.to_string());
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let full_url = format!("{scheme}://{authority}{path_and_query}");
    if let Ok(uri) = full_url.parse() {
        parts.uri = uri;
    }
    let client = client.to_string();
    let spin_headers = [
        (
            const { spin_header("spin-full-url", "x-full-url") },
            full_url.as_str(),
        ),
        (
            const { spin_header("spin-path-info", "x-path-info") },
            matched.path_info.as_str(),
        ),
        (
            const { spin_header("spin-matched-route", "x-matched-route") },
            matched.matched_route.as_str(),
        ),
        (
            const { spin_header("spin-base-path", "x-base-path") },
            matched.base_path.as_str(),
        ),
        (
            const { spin_header("spin-raw-component-route", "x-raw-component-route") },
            matched.raw_component_route.as_str(),
        ),
        (
            const { spin_header("spin-component-route", "x-component-route") },
            matched.component_route.as_str(),
        ),
        (
            const { spin_header("spin-client-addr", "x-client-addr") },
            client.as_str(),
        ),
    ];
    for (name, value) in matched.param_headers() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            parts.headers.insert(name, value);
        }
    }
    parts.headers.reserve(2 * spin_headers.len());
    for ([spin, x], value) in spin_headers {
        let Ok(value) = HeaderValue::from_str(value) else {
            continue;
        };
        parts.headers.insert(spin, value.clone());
        parts.headers.insert(x, value);
    }
    let body = body
        .map_err(|error| {
            HandlerErrorCode::from(match error {
                BodyError::TimedOut => ErrorCode::ConnectionReadTimeout,
                BodyError::Broken(_) => ErrorCode::HttpProtocolError,
            })
        })
        .boxed_unsync();
    Request::from_parts(parts, body)
}
