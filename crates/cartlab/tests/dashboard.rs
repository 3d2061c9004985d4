//! The dashboard component: its HTTP contract, and the page itself in headless Chromium
//! (`e2e/dashboard.mjs`) against the real `cartlab up` with a real redis-server: with the lab
//! API, with it but its event feed blocked (the page polls), and without it (as under `spin up`).
//!
//! The browser tests need node, /usr/bin/chromium and `e2e/node_modules`; `./scripts/test`
//! installs them. When one is missing they fail and say how to install it: never a silent skip.

mod common;

use common::{Lab, RedisServer, redis_runtime_config, repo_root};
use std::path::{Path, PathBuf};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_chromium_with_the_lab_api() {
    run_e2e(&[], &[], "dashboard.png").await;
}

/// The browser gets a 503 for `/_lab/events` (a proxy that does not pass Server-Sent Events):
/// the page polls `/_lab/instances`, says so, and its lab controls still work. On the seed's
/// three servers behind a sticky balancer, whose snapshots also list empty and restarting slots.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_chromium_polls_when_the_lab_event_feed_is_blocked() {
    let fleet = ["--instances", "3", "--routing", "sticky"];
    run_e2e(&fleet, &["--block-events"], "dashboard-polling.png").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_chromium_without_the_lab_api_as_under_spin_up() {
    run_e2e(&["--lab-api", "off"], &[], "dashboard-spin.png").await;
}

/// Starts the lab on a real Redis with `extra` arguments, runs the browser test against it with
/// `script_args` and saves its screenshot as `target/e2e/<screenshot>`.
async fn run_e2e(extra: &[&str], script_args: &[&str], screenshot: &str) {
    if let Err(missing) = browser_prerequisites() {
        panic!(
            "the dashboard's browser test cannot run, missing:\n  {}\n\
             ./scripts/test installs all of them",
            missing.join("\n  ")
        );
    }
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = redis_runtime_config(dir.path(), &redis.url());
    let mut args = vec![
        "--runtime-config-file",
        config.to_str().expect("utf-8 path"),
        "--state-dir",
        dir.path().to_str().expect("utf-8 path"),
        // The page adds items one click at a time; on a busy machine a pause over Spin's 1 s
        // idle timeout would lose the stateful cart before the crash does. The crash is the
        // point here, so idle recycling waits.
        "--idle-instance-timeout",
        "30s",
    ];
    args.extend_from_slice(extra);
    let lab = Lab::start(&args);

    let screenshot: PathBuf = repo_root().join("target/e2e").join(screenshot);
    let node = tokio::process::Command::new("node")
        .arg(repo_root().join("e2e/dashboard.mjs"))
        .arg(&lab.url)
        .arg(&screenshot)
        .args(script_args)
        .kill_on_drop(true)
        .output();
    // The script gives up by itself after 30 s; this only guards against a hung node.
    let output = tokio::time::timeout(Duration::from_secs(90), node)
        .await
        .expect("node e2e/dashboard.mjs did not finish within 90 s")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node e2e/dashboard.mjs {} {} failed ({}):\n{stdout}{stderr}",
        lab.url,
        script_args.join(" "),
        output.status
    );
    println!("{stdout}");
    assert!(lab.stop(), "cartlab exits cleanly on SIGTERM");
}

/// What the browser test needs that cargo does not provide, as install hints.
fn browser_prerequisites() -> Result<(), Vec<&'static str>> {
    let mut missing = Vec::new();
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|output| output.status.success()) {
        missing.push("node: apt-get install -y nodejs npm");
    }
    if !Path::new(CHROMIUM).exists() {
        missing.push("/usr/bin/chromium: apt-get install -y chromium");
    }
    let playwright = repo_root().join("e2e/node_modules/playwright-core");
    if !playwright.is_dir() {
        missing.push("e2e/node_modules (playwright-core): npm ci --prefix e2e");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dashboard_serves_its_page_and_json_errors_beside_the_carts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = Lab::start(&["--state-dir", dir.path().to_str().expect("utf-8 path")]);
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", lab.url);

    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<title>cartlab dashboard"),
        ("/app.js", "text/javascript; charset=utf-8", "journey"),
        ("/app.css", "text/css; charset=utf-8", ".timeline"),
    ] {
        let response = client.get(url(path)).send().await.expect("GET");
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            let value = response.headers().get(name);
            value.and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert!(header("content-security-policy").starts_with("default-src 'self'"));
        let body = response.text().await.expect("body");
        assert!(body.contains(needle), "{path}");
    }

    let head = client.head(url("/")).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "text/html; charset=utf-8");

    let missing = client.get(url("/nope")).send().await.expect("GET");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-type"], "application/json");
    let body: serde_json::Value = missing.json().await.expect("JSON 404");
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    let post = client.post(url("/")).send().await.expect("POST");
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    let body: serde_json::Value = post.json().await.expect("JSON 405");
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");

    // The catch-all route does not shadow the carts.
    for cart in ["stateful", "stateless"] {
        let response = client.get(url(&format!("/{cart}/cart"))).send().await;
        let body: serde_json::Value = response.expect("GET").json().await.expect("cart JSON");
        assert_eq!(body["serverKind"], cart, "{body}");
    }
}
