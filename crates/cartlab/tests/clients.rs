//! `cartlab demo` and `cartlab experiment`, run as a user runs them: the real
//! binary against the real components, with a real redis-server (or a dead one).

mod common;

use common::{Lab, RedisServer, cartlab, redis_runtime_config, text, with_redis};
use std::process::Output;

fn assert_seed_verdicts(output: &Output) {
    let (stdout, stderr) = text(output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("stateful-cart:  CART LOST!"), "{stdout}");
    assert!(
        stdout.contains("stateless-cart: Cart survived!"),
        "{stdout}"
    );
    // Every step names the instance that served it, for both designs.
    let read_rows: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("read the cart"))
        .collect();
    assert_eq!(read_rows.len(), 2, "{stdout}");
    assert!(read_rows[0].matches("$3,700").count() == 2, "{stdout}");
    assert!(read_rows[1].contains("empty"), "{stdout}");
    assert!(read_rows[1].contains("$3,700"), "{stdout}");
}

#[test]
fn demo_against_a_running_host_loses_the_stateful_cart_and_keeps_the_stateless_one() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let lab = with_redis(&redis, dir.path(), &[]);
    let output = cartlab(&["demo", "--url", &lab.url, "--wait", "200ms"]);
    assert_seed_verdicts(&output);
    let (stdout, _) = text(&output);
    assert!(stdout.contains(&format!("against {}", lab.url)), "{stdout}");
}

#[test]
fn demo_without_a_url_starts_its_own_host_with_redis_or_the_embedded_store() {
    // As on a fresh machine: no runtime config; Redis if 127.0.0.1:6379
    // answers, else SQLite in the state dir. Either way the verdicts hold.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_str().expect("utf-8 path");
    let output = cartlab(&["demo", "--state-dir", state, "--wait", "200ms"]);
    assert_seed_verdicts(&output);
    let (stdout, _) = text(&output);
    assert!(
        stdout.contains("a lab host started for this run"),
        "{stdout}"
    );

    // With an explicit runtime config: sessions really land in that Redis.
    let redis = RedisServer::start();
    let config = redis_runtime_config(dir.path(), &redis.url());
    let output = cartlab(&[
        "demo",
        "--runtime-config-file",
        config.to_str().expect("utf-8 path"),
        "--state-dir",
        state,
        "--wait",
        "200ms",
    ]);
    assert_seed_verdicts(&output);
    let keys: Vec<String> = redis.query(&["KEYS", "cartlab:session:*"]);
    assert_eq!(keys.len(), 1, "{keys:?}");
}

#[test]
fn demo_fails_clearly_when_redis_is_dead_or_the_host_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A runtime config whose Redis is not running.
    let mut redis = RedisServer::start();
    let config = redis_runtime_config(dir.path(), &redis.url());
    redis.kill();
    let output = cartlab(&[
        "demo",
        "--runtime-config-file",
        config.to_str().expect("utf-8 path"),
        "--state-dir",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "{stdout}");
    assert!(
        stderr.contains("stateless-cart cannot reach its session store"),
        "{stderr}"
    );
    assert!(stderr.contains("503 store_unavailable"), "{stderr}");

    // A running host whose Redis dies.
    let mut redis = RedisServer::start();
    let lab: Lab = with_redis(&redis, dir.path(), &[]);
    redis.kill();
    let output = cartlab(&["demo", "--url", &lab.url]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot reach its session store"),
        "{stderr}"
    );
    drop(lab);

    // Nothing listening at all.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", free.local_addr().expect("addr"));
    drop(free);
    let output = cartlab(&["demo", "--url", &url]);
    let (_, stderr) = text(&output);
    assert!(!output.status.success());
    assert!(stderr.contains(&format!("cannot reach {url}")), "{stderr}");
}

#[test]
fn experiment_writes_table_json_csv_and_plot() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = redis_runtime_config(dir.path(), &redis.url());
    let out = dir.path().join("results");
    let output = cartlab(&[
        "experiment",
        "--shoppers",
        "4",
        "--actions",
        "5",
        "--think-time",
        "1ms",
        "--mix",
        "add=1",
        "--only",
        "spin reuse=1",
        "--only",
        "pool=4 sticky +crashes",
        "--crash-rate",
        "0.3",
        "--runtime-config-file",
        config.to_str().expect("utf-8 path"),
        "--state-dir",
        dir.path().to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("carts intact"), "{stdout}");

    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json"),
    )
    .expect("valid JSON");
    assert!(
        report["command"]
            .as_str()
            .unwrap_or("")
            .contains("experiment")
    );
    let rows = report["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4, "{report}");
    for row in rows {
        let (scenario, design) = (
            row["scenario"].as_str().unwrap(),
            row["design"].as_str().unwrap(),
        );
        assert_eq!(row["shoppers"], 4, "{row}");
        assert!(row["requests"].as_u64().unwrap() >= 24, "{row}");
        match design {
            // The store keeps every cart, whatever happens to instances.
            "stateless" => {
                assert_eq!(row["cartsIntact"], 4, "{row}");
                assert_eq!(row["itemsLost"], 0, "{row}");
            }
            // Only adds, one instance per request: every cart loses items.
            "stateful" if scenario == "spin reuse=1" => {
                assert_eq!(row["cartsIntact"], 0, "{row}");
                assert!(row["itemsLost"].as_u64().unwrap() >= 4, "{row}");
                assert_eq!(row["recyclesPer100Requests"], 100.0, "{row}");
            }
            // Crashes happened (the shoppers' choices are seeded); which
            // carts they hit depends on timing, so pools.rs checks the loss.
            "stateful" => {
                assert!(row["recycles"].as_u64().unwrap() >= 1, "{row}");
            }
            other => panic!("unexpected design {other}"),
        }
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.starts_with("scenario,design,"), "{csv}");
    let svg = std::fs::read_to_string(out.join("carts-intact.svg")).expect("plot");
    assert!(
        svg.starts_with("<svg") && svg.contains("carts intact"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}
