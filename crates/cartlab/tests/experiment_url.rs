//! `cartlab experiment --url LABEL=URL`: the shoppers against running apps the test
//! started itself, two real `cartlab up` processes serving the real .wasm on free loopback
//! ports, each with its own embedded SQLite store. Instance counts come from the carts'
//! answers (inferred), not from the hosts.

mod common;

use common::{Lab, cartlab, text};
use serde_json::Value;
use std::path::Path;
use std::sync::Mutex;

/// The tests here share two cores with the hosts they start: one at a time, so that a
/// shopper's think time is never eaten by another test's hosts.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A lab host on a free port with its stores in `dir`.
fn lab(dir: &Path, extra: &[&str]) -> Lab {
    let mut args = vec!["--state-dir", dir.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    Lab::start(&args)
}

/// Runs the experiment against `a` and `b`; results.json.
fn experiment(a: &Lab, b: &Lab, out: &Path, extra: &[&str]) -> (String, Value) {
    let (url_a, url_b) = (format!("a={}", a.url), format!("b={}", b.url));
    let mut args = vec![
        "experiment",
        "--url",
        &url_a,
        "--url",
        &url_b,
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let output = cartlab(&args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json"),
    )
    .expect("valid JSON");
    for file in ["results.csv", "carts-intact.svg"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    (stdout, report)
}

/// The row for a label and a design.
fn row<'a>(report: &'a Value, label: &str, design: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["scenario"] == label && row["design"] == design)
        .unwrap_or_else(|| panic!("no row for {label} {design}: {report}"))
}

fn number(row: &Value, field: &str) -> u64 {
    row[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {row}"))
}

#[test]
fn reuse_one_loses_every_stateful_cart_and_the_default_keeps_it() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let reuse_one = lab(&dir_a, &["--max-instance-reuse-count", "1"]);
    let default = lab(&dir_b, &[]);
    let out = dir.path().join("results");
    // One shopper per design: the stateful cart's requests then come one at a time, so
    // under the default reuse one instance serves them all (a second shopper's request
    // landing while the instance is busy would start another instance, and that is
    // timing). Only adds: under reuse 1 the second add meets a new instance, so the cart
    // is lost for certain.
    let (stdout, report) = experiment(
        &reuse_one,
        &default,
        &out,
        &[
            "--shoppers",
            "1",
            "--actions",
            "12",
            "--mix",
            "add=1",
            "--think-time",
            "20ms",
        ],
    );

    // The table shows both targets, and says how it counted.
    for label in ["a ", "b "] {
        assert!(
            stdout.lines().any(|line| line.starts_with(label)),
            "{stdout}"
        );
    }
    assert!(stdout.contains("inferred"), "{stdout}");
    assert_eq!(report["instanceCounts"]["source"], "inferred", "{report}");
    assert_eq!(report["crashRate"], 0.0, "{report}");
    let labels: Vec<&str> = report["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|target| target["label"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(labels, ["a", "b"], "{report}");
    assert_eq!(report["rows"].as_array().expect("rows").len(), 4);

    for label in ["a", "b"] {
        let stateless = row(&report, label, "stateless");
        assert_eq!(number(stateless, "cartsIntact"), 1, "{stateless}");
        assert_eq!(number(stateless, "itemsLost"), 0, "{stateless}");
        for design in ["stateful", "stateless"] {
            let row = row(&report, label, design);
            // 12 adds and the last read; no crashes were asked for.
            assert_eq!(number(row, "requests"), 13, "{row}");
            assert_eq!(number(row, "crashes"), 0, "{row}");
            assert_eq!(number(row, "crashesRefused"), 0, "{row}");
        }
    }
    let (lost, kept) = (row(&report, "a", "stateful"), row(&report, "b", "stateful"));
    assert_eq!(number(lost, "cartsIntact"), 0, "{lost}");
    assert!(number(lost, "itemsLost") >= 10, "{lost}");
    assert_eq!(number(kept, "cartsIntact"), 1, "{kept}");
    assert_eq!(number(kept, "itemsLost"), 0, "{kept}");
    // Inferred from serverId / requestsServed: a new instance for each of the 13
    // answers, all but the last replaced; one instance under the default, never recycled.
    assert_eq!(
        (number(lost, "instancesStarted"), number(lost, "recycles")),
        (13, 12),
        "{lost}"
    );
    assert_eq!(
        (number(kept, "instancesStarted"), number(kept, "recycles")),
        (1, 0),
        "{kept}"
    );

    assert!(reuse_one.stop(), "reuse-1 host did not stop cleanly");
    assert!(default.stop(), "default host did not stop cleanly");
}

#[test]
fn crashes_only_where_the_target_allows_them() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let refuses = lab(&dir_a, &["--variable", "crash_enabled=false"]);
    let allows = lab(&dir_b, &[]);
    let out = dir.path().join("results");
    let (stdout, report) = experiment(
        &refuses,
        &allows,
        &out,
        &[
            "--shoppers",
            "3",
            "--actions",
            "8",
            "--mix",
            "add=1",
            "--think-time",
            "5ms",
            "--crash-rate",
            "0.5",
        ],
    );
    assert_eq!(report["crashRate"], 0.5, "{report}");
    assert!(stdout.contains("refused (403 crash_disabled"), "{stdout}");
    let targets = report["targets"].as_array().expect("targets");
    let refused = &targets[0]["crashesRefusedBy"];
    for component in ["stateful-cart", "stateless-cart"] {
        let answer = refused[component].as_str().unwrap_or("");
        assert!(answer.starts_with("403 crash_disabled"), "{report}");
    }
    assert_eq!(targets[1]["crashesRefusedBy"], serde_json::json!({}));
    for design in ["stateful", "stateless"] {
        // The seeded shoppers want to crash about half the time: the first want on the
        // refusing target is refused, and the rest are never sent.
        let a = row(&report, "a", design);
        assert_eq!(number(a, "crashes"), 0, "{a}");
        let refusals = number(a, "crashesRefused");
        assert!((1..=3).contains(&refusals), "{a}");
        let b = row(&report, "b", design);
        assert!(number(b, "crashes") >= 1, "{b}");
        assert_eq!(number(b, "crashesRefused"), 0, "{b}");
    }
    // Crashes cost the stateless cart requests, never a cart.
    for label in ["a", "b"] {
        let stateless = row(&report, label, "stateless");
        assert_eq!(number(stateless, "cartsIntact"), 3, "{stateless}");
        assert_eq!(number(stateless, "itemsLost"), 0, "{stateless}");
    }
    assert!(refuses.stop());
    assert!(allows.stop());
}

#[test]
fn bad_targets_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("results");
    let out = out.to_str().expect("utf-8 path");
    let fails = |args: &[&str]| {
        let output = cartlab(&[&["experiment", "--out", out], args].concat());
        let (stdout, stderr) = text(&output);
        assert!(!output.status.success(), "{stdout}\n{stderr}");
        stderr
    };
    // Nothing listens on a port we just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dead = format!("a=http://127.0.0.1:{port}");
    let stderr = fails(&["--url", &dead, "--only", "pool"]);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let stderr = fails(&["--url", &dead, "--url", &dead]);
    assert!(stderr.contains("more than one --url"), "{stderr}");
    let stderr = fails(&["--url", "http://127.0.0.1:3000"]);
    assert!(stderr.contains("LABEL=URL"), "{stderr}");
    let stderr = fails(&["--url", "a=ftp://127.0.0.1:3000"]);
    assert!(stderr.contains("only http and https"), "{stderr}");
    let stderr = fails(&["--url", &dead]);
    assert!(stderr.contains("cannot reach"), "{stderr}");
    assert!(
        !Path::new(out).join("results.json").exists(),
        "no results without a run"
    );
}

/// Requests the stateless cart at `url` has served, from its lab API (health probes included).
fn stateless_served(url: &str) -> u64 {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let shopper = cartlab::client::Shopper::new(url).expect("shopper");
    let answer = runtime.block_on(shopper.send(reqwest::Method::GET, "/_lab/instances", None));
    let Ok(answer) = answer else { return 0 };
    answer.body["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|component| component["component"] == "stateless-cart")
        .flat_map(|component| component["instances"].as_array().into_iter().flatten())
        .filter_map(|instance| instance["served"].as_u64())
        .sum()
}

#[test]
fn a_target_killed_mid_run_is_counted_as_errors_not_an_abort() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("tempdir");
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let kept = lab(&dir_a, &[]);
    let killed = lab(&dir_b, &[]);
    let out = dir.path().join("results");
    // `kill -9` of b once its shoppers are a few requests in (past the health probes): 30
    // actions 30 ms apart leave at least 0.8 s of shopping after that.
    let (pid, url) = (killed.pid(), killed.url.clone());
    let (stdout, report) = std::thread::scope(|scope| {
        scope.spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while stateless_served(&url) < 4 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let status = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill -9 {pid}");
        });
        experiment(
            &kept,
            &killed,
            &out,
            &[
                "--shoppers",
                "1",
                "--actions",
                "30",
                "--mix",
                "add=1",
                "--think-time",
                "30ms",
            ],
        )
    });
    for design in ["stateful", "stateless"] {
        // Every request was made and counted: 30 adds and the last read.
        let a = row(&report, "a", design);
        assert_eq!(number(a, "requests"), 31, "{a}");
        assert_eq!(number(a, "errors"), 0, "{a}");
        assert_eq!(number(a, "unanswered"), 0, "{a}");
        let b = row(&report, "b", design);
        assert_eq!(number(b, "requests"), 31, "{b}");
        assert!(number(b, "errors") >= 20, "{b}\n{stdout}");
        // A dead target answers nothing: every error is a request left unanswered.
        assert_eq!(number(b, "unanswered"), number(b, "errors"), "{b}");
    }
    assert!(kept.stop());
}
