//! cartlab's dashboard (spin-sdk 7): serves `dashboard-site`, one hand-written page (its files
//! in `assets/`, embedded at build time) that drives both carts from the browser and draws
//! which instance served each request. Static files only: no state, no key-value, no outbound
//! connections.

use http::Response;
use spin_sdk::http::{FullBody, Request};

#[spin_sdk::http_service]
async fn handle(req: Request) -> Response<FullBody<dashboard_site::Body>> {
    // The route is `/...`, so Spin's `spin-path-info` is the whole path.
    let path = req
        .headers()
        .get("spin-path-info")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_else(|| req.uri().path());
    dashboard_site::respond(req.method(), path).map(FullBody::new)
}
