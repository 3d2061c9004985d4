//! Issue 15: `spin up`'s flags on `cartlab up`, as Spin 4.1 means them: `--find-free-port`,
//! `--key-value`, `--tls-cert`/`--tls-key`, `--build`, the component logs (`-L`,
//! `--truncate-logs`, `-q`, `--follow`), `--format json`, `--http1-max-buf-size`, the flags it
//! refuses by name, and the `/.well-known/spin/` endpoints.

mod common;

use common::{
    Design, Exited, Expect, Lab, RedisServer, json_ready, json_summary, redis_runtime_config,
    repo_root, serving_line, up_exits,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// `cartlab up` of the repository's app on a free loopback port, with `args`.
fn up(args: &[&str]) -> Lab {
    Lab::start_in(
        &repo_root(),
        &[&["--listen", "127.0.0.1:0"][..], args].concat(),
    )
}

/// `cartlab up` of the repository's app on a free loopback port, expected to fail at start.
fn fails(args: &[&str]) -> Exited {
    up_exits(
        &repo_root(),
        &[&["--listen", "127.0.0.1:0"][..], args].concat(),
    )
}

/// clap's exit status for a command line it rejects.
const USAGE_ERROR: Option<i32> = Some(2);

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The port of `http://127.0.0.1:<port>`.
fn loopback_port(url: &str) -> u16 {
    url.strip_prefix("http://127.0.0.1:")
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("not http://127.0.0.1:<port>: {url}"))
}

/// The repository's spin.toml.
fn manifest() -> toml::Table {
    let text = std::fs::read_to_string(repo_root().join("spin.toml")).expect("read spin.toml");
    toml::from_str(&text).expect("spin.toml parses")
}

/// Each component's description in spin.toml.
fn descriptions() -> BTreeMap<String, String> {
    manifest()["component"]
        .as_table()
        .expect("[component]")
        .iter()
        .map(|(id, component)| {
            let description = component["description"].as_str().expect("a description");
            (id.clone(), description.to_string())
        })
        .collect()
}

/// spin.toml's routes as Spin shows them: component id, path without `/...`, wildcard.
const ROUTES: [(&str, &str); 3] = [
    ("stateless-cart", "/stateless"),
    ("stateful-cart", "/stateful"),
    ("dashboard", "/"),
];

#[tokio::test(flavor = "multi_thread")]
async fn find_free_port_moves_a_second_host_to_a_next_port_and_without_it_the_port_is_an_error() {
    let (one, two) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let port = test_support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let first = up_at(&listen, one.path());
    let second = up_at(&listen, two.path());
    assert_eq!(
        loopback_port(&first.url),
        port,
        "the first host gets the port asked for"
    );
    let next = loopback_port(&second.url);
    assert!(
        (port + 1..=port.saturating_add(10)).contains(&next),
        "the second host moves up to 10 ports on: asked {port}, got {next}"
    );
    for lab in [&first, &second] {
        lab.shopper()
            .health(Design::Stateless)
            .await
            .succeeded(&lab.url);
    }

    let taken = up_exits(
        &repo_root(),
        &["--listen", &listen, "--state-dir", utf8(one.path())],
    );
    assert!(
        taken.stderr.contains("--find-free-port"),
        "{}",
        taken.stderr
    );

    fn up_at(listen: &str, state: &Path) -> Lab {
        Lab::start_in(
            &repo_root(),
            &[
                "--listen",
                listen,
                "--find-free-port",
                "--state-dir",
                utf8(state),
            ],
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_value_pairs_are_in_the_default_store_before_it_serves() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = redis_runtime_config(dir.path(), &redis.url());
    let lab = up(&[
        "--runtime-config-file",
        utf8(&config),
        "--state-dir",
        utf8(dir.path()),
        "--key-value",
        "greeting=hello",
        "--key-value",
        "pair=a=b",
    ]);
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    for (key, value) in [("greeting", "hello"), ("pair", "a=b")] {
        let stored: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("GET");
        assert_eq!(stored.as_deref(), Some(value), "key {key}");
    }
    drop(lab);

    let malformed = fails(&["--state-dir", utf8(dir.path()), "--key-value", "nokey"]);
    assert!(malformed.stderr.contains("nokey"), "{}", malformed.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_cert_and_key_serve_https_with_secure_cookies_and_each_needs_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("self-signed certificate");
    let cert_pem = certified.cert.pem();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, &cert_pem).expect("write the certificate");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write the key");
    let state = utf8(dir.path());

    let lab = up(&[
        "--state-dir",
        state,
        "--tls-cert",
        utf8(&cert),
        "--tls-key",
        utf8(&key),
        "--variable",
        "cookie_secure=true",
    ]);
    let address = lab
        .url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("the summary says `Serving https://...`: {}", lab.url));
    assert!(address.starts_with("127.0.0.1:"), "{address}");

    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("the certificate"),
        )
        .build()
        .expect("https client");
    let response = client
        .post(format!("{}/stateless/cart/add", lab.url))
        .json(&json!({"item": "MacBook Pro", "price": 2500}))
        .send()
        .await
        .expect("the HTTPS request is answered");
    assert_eq!(response.status(), 200);
    let cookie = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .expect("a session cookie")
        .to_str()
        .expect("ascii cookie")
        .to_string();
    assert!(
        cookie
            .split(';')
            .any(|attribute| attribute.trim().eq_ignore_ascii_case("secure")),
        "{cookie}"
    );
    let body = response.text().await.expect("body");
    assert!(body.contains("MacBook Pro"), "{body}");

    // Plain HTTP to the HTTPS port gets no cart.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
        .get(format!("http://{address}/stateless/cart"))
        .send()
        .await;
    if let Ok(answer) = plain {
        assert_ne!(
            answer.status(),
            200,
            "plain HTTP got a cart from the HTTPS port"
        );
    }
    drop(lab);

    for (given, missing) in [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")] {
        let file = if given == "--tls-cert" { &cert } else { &key };
        let alone = fails(&["--state-dir", state, given, utf8(file)]);
        assert_eq!(
            alone.status.code(),
            USAGE_ERROR,
            "{given} alone: {}",
            alone.stderr
        );
        assert!(
            alone.stderr.contains(missing),
            "{given} alone: {}",
            alone.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn build_runs_only_with_the_flag_and_a_stale_component_is_served_with_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let built = repo_root().join("target/wasm32-wasip2/release/stateful_cart.wasm");
    assert!(
        built.exists(),
        "{} is missing: run `cargo build --target wasm32-wasip2 --release`",
        built.display()
    );
    let wasm = root.join("cart.wasm");
    std::fs::copy(&built, &wasm).expect("copy the component");
    std::fs::write(
        root.join("newer.txt"),
        "a watched file, changed after the build\n",
    )
    .expect("write newer.txt");
    // The component an hour older than its watched file: stale, without waiting.
    std::fs::File::options()
        .write(true)
        .open(&wasm)
        .expect("open the component")
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .expect("age the component");
    std::fs::write(
        root.join("spin.toml"),
        r#"spin_manifest_version = 2
[application]
name = "stale"
[[trigger.http]]
route = "/stateful/..."
component = "old-cart"
[component.old-cart]
source = "cart.wasm"
[component.old-cart.build]
command = "touch built-marker"
watch = ["newer.txt"]
"#,
    )
    .expect("write spin.toml");
    let marker = root.join("built-marker");
    let listen = ["--listen", "127.0.0.1:0"];

    let lab = Lab::start_in(root, &listen);
    let read = lab.wait_for_log("stale");
    let warning = read.last().expect("the stale line");
    assert!(
        warning.contains("old-cart") && warning.to_lowercase().contains("warn"),
        "{warning}"
    );
    lab.shopper()
        .health(Design::Stateful)
        .await
        .succeeded("the stale component is served");
    assert!(!marker.exists(), "nothing is built without --build");
    drop(lab);

    let lab = Lab::start_in(root, &[&listen[..], &["--build"][..]].concat());
    assert!(marker.exists(), "--build ran the build command");
    lab.shopper()
        .health(Design::Stateful)
        .await
        .succeeded("after --build");
    drop(lab);

    std::fs::remove_file(&wasm).expect("remove the component");
    std::fs::remove_file(&marker).expect("remove the marker");
    let missing = up_exits(root, &listen);
    assert!(missing.stderr.contains("--build"), "{}", missing.stderr);
    assert!(!marker.exists(), "nothing is built without --build");
}

/// What stateless-cart writes to its stderr on every cart request when a setting is bad.
const BAD_SETTING: &str = "cartlab: bad setting";

/// A host whose stateless-cart cannot read its settings, with `args`.
fn misconfigured(args: &[&str]) -> Lab {
    up(&[&["--variable", "session_idle_secs=notanumber"][..], args].concat())
}

/// Makes stateless-cart write [`BAD_SETTING`] to its stderr once.
async fn provoke(lab: &Lab) {
    let answer = lab.shopper().cart(Design::Stateless).await.reached();
    assert_ne!(
        answer.status, 200,
        "a bad setting is an error: {}",
        answer.body
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn echoed(log: &[String]) -> bool {
    log.iter().any(|line| line.contains(BAD_SETTING))
}

#[tokio::test(flavor = "multi_thread")]
async fn log_dir_appends_component_output_and_truncate_logs_empties_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs-here");
    std::fs::create_dir_all(&logs).expect("create the log dir");
    let file = logs.join("stateless-cart_stderr.txt");
    std::fs::write(&file, "an earlier run's line\n").expect("seed the log file");
    let state = utf8(dir.path());

    // Appended to the file, and echoed (all components are followed by default).
    let lab = misconfigured(&["--state-dir", state, "-L", utf8(&logs)]);
    provoke(&lab).await;
    lab.wait_for_log(BAD_SETTING);
    assert!(lab.stop(), "clean shutdown");
    let text = read(&file);
    assert!(
        text.starts_with("an earlier run's line\n") && text.contains(BAD_SETTING),
        "{text}"
    );

    // --truncate-logs: emptied before it serves; -q: written to the file only.
    let lab = misconfigured(&[
        "--state-dir",
        state,
        "-L",
        utf8(&logs),
        "--truncate-logs",
        "-q",
    ]);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        !text.contains("an earlier run's line") && !text.contains(BAD_SETTING),
        "not truncated: {text}"
    );
    provoke(&lab).await;
    let (stopped, log) = lab.stop_with_whole_log();
    assert!(stopped, "clean shutdown");
    let text = read(&file);
    assert!(text.contains(BAD_SETTING), "{text}");
    assert!(
        !echoed(&log),
        "-q echoed component output:\n{}",
        log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn follow_limits_the_echo_and_the_log_files_default_to_the_state_dir() {
    // --follow dashboard: stateless-cart's output goes to <state dir>/logs only.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = utf8(dir.path());
    let lab = misconfigured(&["--state-dir", state, "--follow", "dashboard"]);
    provoke(&lab).await;
    let (stopped, log) = lab.stop_with_whole_log();
    assert!(stopped, "clean shutdown");
    let text = read(&dir.path().join("logs/stateless-cart_stderr.txt"));
    assert!(text.contains(BAD_SETTING), "{text}");
    assert!(
        !echoed(&log),
        "an unfollowed component was echoed:\n{}",
        log.join("\n")
    );

    let unknown = fails(&["--state-dir", state, "--follow", "nosuch"]);
    assert!(unknown.stderr.contains("nosuch"), "{}", unknown.stderr);
    let both = fails(&["--state-dir", state, "-q", "--follow", "dashboard"]);
    assert_eq!(both.status.code(), USAGE_ERROR, "{}", both.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_log_dir_writes_no_files_and_still_echoes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = misconfigured(&["--state-dir", utf8(dir.path()), "-L", ""]);
    provoke(&lab).await;
    lab.wait_for_log(BAD_SETTING);
    assert!(lab.stop(), "clean shutdown");
    let mut pending = vec![dir.path().to_path_buf()];
    while let Some(path) = pending.pop() {
        for entry in std::fs::read_dir(&path)
            .expect("read dir")
            .map(Result::unwrap)
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with("_stdout.txt") && !name.ends_with("_stderr.txt"),
                "-L \"\" wrote {}",
                entry.path().display()
            );
            if entry.file_type().expect("file type").is_dir() {
                pending.push(entry.path());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn format_json_prints_the_base_url_and_the_routes_instead_of_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let launched = Lab::launch(
        &repo_root(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            utf8(dir.path()),
            "--format",
            "json",
        ],
        json_ready,
    )
    .unwrap_or_else(|exited| panic!("cartlab up --format json did not start: {exited:?}"));
    assert!(
        serving_line(&launched.head).is_none(),
        "{:?}",
        launched.head
    );
    let summary = json_summary(&launched.head).expect("the JSON summary");
    let keys: Vec<&String> = summary.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["base_url", "routes"], "{summary:#}");
    let base_url = launched.lab.url.clone();
    loopback_port(&base_url);
    launched
        .lab
        .shopper()
        .health(Design::Stateless)
        .await
        .succeeded("base_url answers");

    let descriptions = descriptions();
    let mut routes: Vec<Value> = summary["routes"].as_array().expect("routes").clone();
    routes.sort_by_key(|route| route["id"].to_string());
    let mut expected: Vec<Value> = ROUTES
        .iter()
        .map(|(id, route)| {
            json!({"id": id, "route": route, "wildcard": true, "description": descriptions[*id]})
        })
        .collect();
    expected.sort_by_key(|route| route["id"].to_string());
    assert_eq!(routes, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_summary_describes_each_route_and_the_well_known_endpoints_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let launched = Lab::launch(
        &repo_root(),
        &["--listen", "127.0.0.1:0", "--state-dir", utf8(dir.path())],
        serving_line,
    )
    .unwrap_or_else(|exited| panic!("cartlab up did not start: {exited:?}"));
    let url = launched.lab.url.clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // The rest of the summary follows the `Serving` line.
    let descriptions = descriptions();
    let mut lines = launched.head.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !descriptions
        .values()
        .all(|description| lines.iter().any(|line| line.trim() == description))
    {
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        match launched.stdout.recv_timeout(remaining) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("the summary lacks descriptions:\n{}", lines.join("\n")),
        }
    }
    assert!(
        lines.iter().any(|line| line == "Available Routes:"),
        "{lines:#?}"
    );
    let indent = |line: &str| line.len() - line.trim_start().len();
    for (id, _) in ROUTES {
        let at = lines
            .iter()
            .position(|line| line.trim_start().starts_with(&format!("{id}: {url}")))
            .unwrap_or_else(|| panic!("no route line for {id}: {lines:#?}"));
        let below = lines.get(at + 1).map(String::as_str).unwrap_or("");
        assert_eq!(below.trim(), descriptions[id], "{lines:#?}");
        assert!(indent(below) > indent(&lines[at]), "{lines:#?}");
    }

    let client = reqwest::Client::new();
    let info = client
        .get(format!("{url}/.well-known/spin/info"))
        .send()
        .await
        .expect("info");
    assert_eq!(info.status(), 200);
    let content_type = info
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = info.json().await.expect("info is JSON");
    // The [application] of spin.toml: {"name": "cartlab", "version": "0.1.0"}.
    let application = &manifest()["application"];
    assert_eq!(
        body,
        json!({"name": application["name"].as_str(), "version": application["version"].as_str()})
    );
    assert_eq!(body, json!({"name": "cartlab", "version": "0.1.0"}));

    let health = client
        .get(format!("{url}/.well-known/spin/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.expect("body"), "OK");

    let nosuch = client
        .get(format!("{url}/.well-known/spin/nosuch"))
        .send()
        .await
        .expect("nosuch");
    assert_eq!(nosuch.status(), 404);
}

/// `GET /stateless/health` with about 20 KiB of extra header values: its status, or `None`
/// when the connection closed without one.
async fn health_with_a_big_head(url: &str) -> Option<u16> {
    let mut request = reqwest::Client::new().get(format!("{url}/stateless/health"));
    for n in 0..20 {
        request = request.header(format!("x-filler-{n}"), "a".repeat(1024));
    }
    request
        .send()
        .await
        .ok()
        .map(|answer| answer.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_max_buf_size_limits_a_request_head_and_must_be_at_least_8192() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = utf8(dir.path());

    let small = up(&["--state-dir", state, "--http1-max-buf-size", "8192"]);
    let status = health_with_a_big_head(&small.url).await;
    assert!(
        matches!(status, None | Some(431)),
        "a 20 KiB head past an 8 KiB buffer: {status:?}"
    );
    drop(small);

    let default = up(&["--state-dir", state]);
    assert_eq!(health_with_a_big_head(&default.url).await, Some(200));
    drop(default);

    let below = fails(&["--state-dir", state, "--http1-max-buf-size", "8191"]);
    assert!(
        below.stderr.contains("http1-max-buf-size"),
        "{}",
        below.stderr
    );
}

#[test]
fn spin_flags_it_does_not_implement_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = utf8(dir.path());
    let refused: [&[&str]; 9] = [
        &["--sqlite", "select 1"],
        &["--profile", "release"],
        &["--direct-mounts"],
        &["--allow-transient-write"],
        &["--experimental-wasi-otel"],
        &["--from-registry", "ghcr.io/x/y:1"],
        &["--insecure"],
        &["--cache-dir", "/tmp/x"],
        &["--temp", "/tmp/x"],
    ];
    for flag in refused {
        let exited = fails(&[&["--state-dir", state][..], flag].concat());
        assert!(
            exited.stderr.contains(flag[0]) && exited.stderr.contains("not supported"),
            "{flag:?}: {}",
            exited.stderr
        );
    }
}

/// The issue listed `--component-id` among the refused flags; cartlab up implements it
/// instead (Spin's meaning: serve only these components), so it is not ignored either.
#[tokio::test(flavor = "multi_thread")]
async fn component_id_serves_only_the_named_components() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = up(&[
        "--state-dir",
        utf8(dir.path()),
        "--component-id",
        "stateless-cart",
    ]);
    let shopper = lab.shopper();
    shopper
        .health(Design::Stateless)
        .await
        .succeeded("the named component");
    let other = shopper.health(Design::Stateful).await.reached();
    assert_eq!(other.status, 404, "{}", other.body);
    drop(lab);

    let unknown = fails(&["--state-dir", utf8(dir.path()), "--component-id", "nosuch"]);
    assert!(unknown.stderr.contains("nosuch"), "{}", unknown.stderr);
}
