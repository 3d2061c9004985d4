//! cartlab's dashboard for Spin 3.x hosts (WASIp2, spin-sdk 5.2): serves `dashboard-site`,
//! the very pages of the WASIp3 dashboard, answered the same way.

use spin_sdk::http::{IncomingRequest, IntoResponse};

#[spin_sdk::http_component]
fn handle(req: IncomingRequest) -> impl IntoResponse {
    // The route is `/...`, so Spin's `spin-path-info` is the whole path. (The body is never
    // read: the dashboard answers only GET and HEAD.)
    let path = req
        .headers()
        .get("spin-path-info")
        .into_iter()
        .find_map(|value| String::from_utf8(value).ok())
        .or_else(|| req.path_with_query())
        .unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    // A method `http` cannot parse is neither GET nor HEAD: answered 405 like any other.
    let method =
        http::Method::from_bytes(req.method().to_string().as_bytes()).unwrap_or(http::Method::POST);
    // spin-sdk 5.2 writes each header once (the dashboard repeats none) and the body in full.
    dashboard_site::respond(&method, path).map(<[u8]>::to_vec)
}
