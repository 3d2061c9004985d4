//! A web page the user visits cannot crash their carts' instances or drive the lab API
//! through their browser (cross-site requests, DNS rebinding), while curl-like clients, which
//! send no browser headers, and the dashboard's own same-origin requests work as before.

mod common;

use common::{Design, Expect, IPHONE, Lab, MACBOOK};
use reqwest::Method;
use serde_json::Value;

const EVIL: &str = "https://evil.example";

/// One request with exactly these extra headers; the status and the JSON error code.
async fn send(
    lab: &Lab,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", lab.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("the request reached the host");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `stateful-cart`'s instances as `id -> served`.
async fn stateful_instances(lab: &Lab) -> Vec<(String, u64)> {
    let (status, snapshot) = send(lab, Method::GET, "/_lab/instances", &[], None).await;
    assert_eq!(status, 200, "{snapshot}");
    snapshot["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|entry| entry["component"] == "stateful-cart")
        .flat_map(|entry| entry["instances"].as_array().cloned().unwrap_or_default())
        .map(|instance| {
            (
                instance["id"].as_str().unwrap_or_default().to_string(),
                instance["served"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn other_sites_pages_change_nothing_and_curl_still_does_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().to_str().expect("utf-8 path");
    let lab = Lab::start(&["--state-dir", state_dir, "--idle-instance-timeout", "60s"]);
    let shopper = lab.shopper();
    let added = shopper
        .add(Design::Stateful, MACBOOK.0, MACBOOK.1)
        .await
        .succeeded("add");
    let before = stateful_instances(&lab).await;
    assert_eq!(before.len(), 1, "{before:?}");

    // The issue's three requests, as a hostile page makes the browser send them.
    let cross_site = [("origin", EVIL), ("sec-fetch-site", "cross-site")];
    let (status, body) = send(&lab, Method::POST, "/stateful/crash", &cross_site, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("cross_site_request")),
        "{body}"
    );
    let (status, body) = send(
        &lab,
        Method::POST,
        "/_lab/recycle",
        &[("origin", EVIL)],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("cross_site_request")),
        "{body}"
    );
    let rebound = [("host", "rebind.evil.example:3000")];
    let (status, body) = send(&lab, Method::GET, "/_lab/instances", &rebound, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("host_not_loopback")),
        "{body}"
    );
    // Each sign alone is enough, and so is another port on the same machine.
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("origin", "null")][..],
        &[("origin", "http://127.0.0.1:8080")][..],
    ] {
        let (status, body) = send(&lab, Method::POST, "/stateful/crash", headers, None).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
        let (status, body) = send(
            &lab,
            Method::DELETE,
            "/stateful/cart/items/0",
            headers,
            None,
        )
        .await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    // The lab's read-outs refuse other sites too; a rebinding page sends its own Host.
    for path in ["/_lab/instances", "/_lab/events"] {
        let (status, body) = send(&lab, Method::GET, path, &[("origin", EVIL)], None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("cross_site_request")),
            "{path}: {body}"
        );
    }
    let rebinding = [
        ("host", "rebind.evil.example:3000"),
        ("origin", "http://rebind.evil.example:3000"),
        ("content-type", "application/json"),
    ];
    let (status, body) = send(&lab, Method::POST, "/_lab/recycle", &rebinding, Some("{}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("host_not_loopback")),
        "{body}"
    );
    // A form's body (what a page can post without asking) is not a recycle order.
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let (status, body) = send(&lab, Method::POST, "/_lab/recycle", &form, Some("mode=all")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let (status, body) = send(
        &lab,
        Method::POST,
        "/_lab/recycle",
        &[],
        Some(r#"{"mode":"all"}"#),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "an order without a content type: {body}"
    );

    // Nothing changed: the same instance, which served nothing more, still holds the cart.
    assert_eq!(stateful_instances(&lab).await, before);
    let cart = shopper.cart(Design::Stateful).await.succeeded("cart");
    assert_eq!(cart.instance, added.instance);
    assert_eq!(cart.items(), [MACBOOK.0]);

    // The dashboard's own requests are same-origin: they work.
    let origin = lab.url.clone();
    let same_origin = [
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
        ("content-type", "application/json"),
    ];
    let (status, body) = send(
        &lab,
        Method::POST,
        "/stateful/cart/add",
        &same_origin,
        Some(r#"{"item":"iPhone 15","price":1200}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(&lab, Method::GET, "/_lab/instances", &same_origin, None).await;
    assert_eq!(status, 200, "{body}");
    let port = lab.url.rsplit(':').next().expect("port");
    let localhost = format!("localhost:{port}");
    let (status, body) = send(
        &lab,
        Method::GET,
        "/_lab/instances",
        &[("host", &localhost)],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Without browser headers, as curl sends them, the same requests still work.
    let order = [("content-type", "application/json")];
    let (status, body) = send(
        &lab,
        Method::POST,
        "/_lab/recycle",
        &order,
        Some(r#"{"component":"stateful-cart"}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["recycled"][0].as_str(),
        Some(before[0].0.as_str()),
        "{body}"
    );
    shopper
        .add(Design::Stateful, IPHONE.0, IPHONE.1)
        .await
        .succeeded("add");
    let (status, body) = send(&lab, Method::POST, "/_lab/recycle", &[], None).await;
    assert_eq!(status, 200, "an empty order recycles everything: {body}");
    assert!(
        !body["recycled"].as_array().expect("recycled").is_empty(),
        "{body}"
    );
    shopper.crash(Design::Stateful).await.trapped();
    assert!(
        shopper
            .cart(Design::Stateful)
            .await
            .succeeded("cart")
            .items()
            .is_empty()
    );
}

/// `--max-new-sessions-per-minute 3`: one address starts three sessions (on either
/// component), then its cookie-less requests get 429 with Retry-After, while the sessions it
/// has go on. Without the flag nothing is capped (every other test starts many more).
#[tokio::test]
async fn an_address_starts_its_share_of_sessions_and_its_carts_go_on() {
    let lab = Lab::start(&["--max-new-sessions-per-minute", "3"]);
    let shoppers: Vec<_> = (0..5).map(|_| lab.shopper()).collect();
    let designs = [
        Design::Stateless,
        Design::Stateful,
        Design::Stateless,
        Design::Stateful,
        Design::Stateless,
    ];
    let mut statuses = Vec::new();
    for (shopper, design) in shoppers.iter().zip(designs) {
        let answer = shopper.add(design, MACBOOK.0, MACBOOK.1).await.reached();
        if answer.status == 429 {
            assert_eq!(answer.error_code(), Some("too_many_new_sessions"));
            let after: u64 = answer
                .retry_after
                .as_deref()
                .and_then(|text| text.parse().ok())
                .expect("a Retry-After in seconds");
            assert!((1..=60).contains(&after), "{after}");
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // The first three keep shopping.
    for (shopper, design) in shoppers.iter().zip(designs).take(3) {
        shopper
            .add(design, IPHONE.0, IPHONE.1)
            .await
            .succeeded("add");
        let cart = shopper.cart(design).await.succeeded("cart");
        assert_eq!(cart.items(), [MACBOOK.0, IPHONE.0]);
    }
    assert!(lab.stop());
}
