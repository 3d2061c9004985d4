//! The cartlab dashboard's site: one hand-written page (HTML, CSS and JavaScript in
//! `components/dashboard/assets`, embedded at build time) that drives both carts from the
//! browser, and how each request for it is answered. Both dashboard builds (spin-sdk 7 in
//! `components/dashboard`, spin-sdk 5.2 in `components/wasip2/dashboard`) serve exactly this.
//! Static files only: no state, no key-value, no outbound connections.

use http::{HeaderValue, Method, Response, StatusCode, header};

/// A response body: an embedded file, or a fixed JSON error.
pub type Body = &'static [u8];

/// Every file the dashboard serves: path, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 6] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("../../../components/dashboard/assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../components/dashboard/assets/app.js"),
    ),
    (
        "/timeline.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../components/dashboard/assets/timeline.js"),
    ),
    (
        "/lab.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../components/dashboard/assets/lab.js"),
    ),
    (
        "/page.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../components/dashboard/assets/page.js"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../components/dashboard/assets/app.css"),
    ),
];

/// The page loads nothing from anywhere else (no CDN, no fonts) and talks only to this origin.
/// `data:` images: the empty inline favicon.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The answer to `method` on `path` (the whole path: the dashboard's route is `/...`).
pub fn respond(method: &Method, path: &str) -> Response<Body> {
    let path = if path.is_empty() { "/" } else { path };
    let asset = ASSETS.iter().find(|(p, _, _)| *p == path);
    let mut response = if method != Method::GET && method != Method::HEAD {
        let mut response = json(
            StatusCode::METHOD_NOT_ALLOWED,
            br#"{"error":{"code":"method_not_allowed","message":"the dashboard only answers GET and HEAD"}}"#,
        );
        let allow = HeaderValue::from_static("GET, HEAD");
        response.headers_mut().insert(header::ALLOW, allow);
        response
    } else if let Some((_, content_type, bytes)) = asset {
        let mut response = with_headers(StatusCode::OK, content_type, bytes);
        // Always revalidate: a rebuilt component must never meet a stale app.js.
        let no_cache = HeaderValue::from_static("no-cache");
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, no_cache);
        response
    } else {
        json(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"not_found","message":"no such page: the dashboard serves /, /app.js, /lab.js, /timeline.js, /page.js and /app.css"}}"#,
        )
    };
    if method == Method::HEAD {
        // The runtime holds a body to its declared length: an empty one declares none.
        response.headers_mut().remove(header::CONTENT_LENGTH);
        *response.body_mut() = &[];
    }
    response
}

fn json(status: StatusCode, body: &'static [u8]) -> Response<Body> {
    with_headers(status, "application/json", body)
}

fn with_headers(
    status: StatusCode,
    content_type: &'static str,
    body: &'static [u8],
) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Declared, so the host can send it in one piece rather than chunked.
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let nosniff = HeaderValue::from_static("nosniff");
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, nosniff);
    let csp = HeaderValue::from_static(CONTENT_SECURITY_POLICY);
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    response
}
