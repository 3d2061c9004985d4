//! Shared fixtures for the lab host's integration tests: the real `cartlab`
//! binary serving the real .wasm components over loopback HTTP, and a real
//! redis-server on a free port (from `test_support`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use cart_core::Cents;
pub use cartlab::client::{Answer, Design, Shopper};
pub use test_support::RedisServer;

/// The repository root, where spin.toml lives.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Drains a child's stdout and stderr on their own threads, as lines: stderr is echoed with
/// `tag` for the test's log. They keep draining after the test stops listening, since a
/// closed pipe would make the child's next write fail.
pub fn drain_output(
    child: &mut Child,
    tag: &'static str,
) -> (mpsc::Receiver<String>, mpsc::Receiver<String>) {
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (out_tx, out_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[{tag}] {line}");
            let _ = err_tx.send(line);
        }
    });
    (out_rx, err_rx)
}

/// A running `cartlab up`, stopped with SIGTERM when dropped.
pub struct Lab {
    child: Child,
    pub url: String,
    pub stderr: mpsc::Receiver<String>,
}

impl Lab {
    /// Starts `cartlab up` on a free loopback port with the given extra flags.
    pub fn start(args: &[&str]) -> Lab {
        Self::try_start(args).unwrap_or_else(|error| panic!("cartlab up did not start: {error}"))
    }

    pub fn try_start(args: &[&str]) -> Result<Lab, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cartlab"))
            .arg("up")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .args(args)
            .current_dir(repo_root())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let (line_rx, err_rx) = drain_output(&mut child, "cartlab");
        // Building stale components may take a while on a cold machine.
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            match line_rx.recv_timeout(remaining.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("Serving ") {
                        return Ok(Lab {
                            child,
                            url: url.trim().to_string(),
                            stderr: err_rx,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        let log: Vec<String> = err_rx.try_iter().collect();
                        return Err(format!("exited with {status}: {}", log.join("\n")));
                    }
                    if remaining.is_zero() {
                        let _ = child.kill();
                        return Err("no `Serving` line within 600 s".into());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().map_err(|e| e.to_string())?;
                    std::thread::sleep(Duration::from_millis(100));
                    let log: Vec<String> = err_rx.try_iter().collect();
                    return Err(format!("exited with {status}: {}", log.join("\n")));
                }
            }
        }
    }

    /// The host's process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the host with SIGTERM and returns its exit status success.
    pub fn stop(mut self) -> bool {
        self.terminate()
    }

    /// Stops the host with SIGTERM; its exit status success and its whole log.
    pub fn stop_with_log(mut self) -> (bool, Vec<String>) {
        let stopped = self.terminate();
        std::thread::sleep(Duration::from_millis(100));
        (stopped, self.stderr.try_iter().collect())
    }

    fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// A new shopper (an empty cookie jar) at this host.
    pub fn shopper(&self) -> Shopper {
        Shopper::new(&self.url).expect("http client")
    }

    /// Log lines the host has written to stderr so far.
    pub fn log(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Runs `cartlab ARGS` in the repository to its end.
pub fn cartlab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cartlab"))
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("run cartlab")
}

/// A finished command's stdout and stderr, as text.
pub fn text(output: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `cartlab up` expecting it to fail at start-up; returns its stderr.
pub fn start_up_error(args: &[&str], dir: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_cartlab"))
        .arg("up")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run cartlab");
    assert!(
        !output.status.success(),
        "cartlab up should have failed; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What the tests want of an answer: that the host was reached, or that it said 200.
pub trait Expect {
    fn reached(self) -> Answer;
    fn succeeded(self, what: &str) -> Answer;
    /// `POST /crash`: the instance trapped instead of answering, and the host said so.
    fn trapped(self) -> Answer;
}

impl Expect for reqwest::Result<Answer> {
    fn reached(self) -> Answer {
        self.expect("the request reached the host")
    }

    fn succeeded(self, what: &str) -> Answer {
        let answer = self.reached();
        assert_eq!(answer.status, 200, "{what}: {}", answer.body);
        answer
    }

    fn trapped(self) -> Answer {
        let answer = self.reached();
        assert_eq!(
            (answer.status, answer.error_code()),
            (500, Some("component_trapped")),
            "crash: {}",
            answer.body
        );
        answer
    }
}

/// Writes a runtime config pointing `default` at the given Redis.
pub fn redis_runtime_config(dir: &Path, redis_url: &str) -> PathBuf {
    let path = dir.join("runtime-config.toml");
    std::fs::write(
        &path,
        format!("[key_value_store.default]\ntype = \"redis\"\nurl = \"{redis_url}\"\n"),
    )
    .expect("write runtime config");
    path
}

pub const MACBOOK: (&str, Cents) = ("MacBook Pro", Cents(250_000));
pub const IPHONE: (&str, Cents) = ("iPhone 15", Cents(120_000));
/// What the two seed items cost together.
pub const SEED_TOTAL: Cents = Cents(370_000);

/// The seed journey's two adds.
pub async fn seed_cart(shopper: &Shopper, design: Design) {
    shopper
        .add(design, MACBOOK.0, MACBOOK.1)
        .await
        .succeeded("add");
    shopper
        .add(design, IPHONE.0, IPHONE.1)
        .await
        .succeeded("add");
}

/// `cartlab up` with `default` in the given Redis and its state in `dir`.
pub fn with_redis(redis: &RedisServer, dir: &Path, extra: &[&str]) -> Lab {
    let config = redis_runtime_config(dir, &redis.url());
    let mut args = vec![
        "--runtime-config-file",
        config.to_str().expect("utf-8 path"),
        "--state-dir",
        dir.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    Lab::start(&args)
}

/// How long a host launched by [`Lab::launch`] may take to become ready (or to exit).
const LAUNCH_WITHIN: Duration = Duration::from_secs(120);
/// How long the output of a host that has exited may take to be read to its end.
const DRAIN_WITHIN: Duration = Duration::from_secs(10);

/// A `cartlab up` that exited (or never became ready) instead of serving.
#[derive(Debug)]
pub struct Exited {
    pub status: std::process::ExitStatus,
    /// It neither served nor exited within [`LAUNCH_WITHIN`], and was killed.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// A host started by [`Lab::launch`]: the stdout lines up to the one that made it ready, and
/// the rest of its stdout as it comes.
pub struct Launched {
    pub lab: Lab,
    pub head: Vec<String>,
    pub stdout: mpsc::Receiver<String>,
}

/// Ready when a line `Serving <url>` has been printed (the plain summary).
pub fn serving_line(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .find_map(|line| line.strip_prefix("Serving "))
        .map(|url| url.trim().to_string())
}

/// The first JSON object printed on stdout (`--format json`), once it is complete.
pub fn json_summary(lines: &[String]) -> Option<serde_json::Value> {
    let start = lines
        .iter()
        .position(|line| line.trim_start().starts_with('{'))?;
    serde_json::from_str::<serde_json::Value>(&lines[start..].join("\n"))
        .ok()
        .filter(serde_json::Value::is_object)
}

/// Ready when the `--format json` summary is complete; the URL is its `base_url`.
pub fn json_ready(lines: &[String]) -> Option<String> {
    json_summary(lines).map(|summary| summary["base_url"].as_str().unwrap_or("").to_string())
}

/// Every line a reader sends until it ends (its process has exited), within [`DRAIN_WITHIN`].
fn drain(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let deadline = std::time::Instant::now() + DRAIN_WITHIN;
    let mut all = Vec::new();
    while let Ok(line) =
        lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        all.push(line);
    }
    all
}

impl Lab {
    /// Starts `cartlab up` in `dir` with exactly `args` (no `--listen` added: pass one), and
    /// waits until `ready` finds the URL in the stdout lines printed so far. The environment
    /// variables that stand for flags or variables (`SPIN_*`, `RUNTIME_CONFIG_FILE`, wasmtime's
    /// cache ones) are removed: only `args` configure it.
    pub fn launch(
        dir: &Path,
        args: &[&str],
        ready: impl Fn(&[String]) -> Option<String>,
    ) -> Result<Launched, Exited> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cartlab"));
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("SPIN_")
                || [
                    "RUNTIME_CONFIG_FILE",
                    "DISABLE_WASMTIME_CACHE",
                    "WASMTIME_CACHE_FILE",
                ]
                .contains(&text.as_ref())
            {
                command.env_remove(&name);
            }
        }
        let mut child = command
            .arg("up")
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cartlab");
        let (line_rx, err_rx) = drain_output(&mut child, "cartlab");
        let deadline = std::time::Instant::now() + LAUNCH_WITHIN;
        let mut head = Vec::new();
        let mut timed_out = false;
        loop {
            match line_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    head.push(line);
                    if let Some(url) = ready(&head) {
                        return Ok(Launched {
                            lab: Lab {
                                child,
                                url,
                                stderr: err_rx,
                            },
                            head,
                            stdout: line_rx,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    if std::time::Instant::now() >= deadline {
                        timed_out = true;
                        let _ = child.kill();
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait().expect("wait for cartlab");
        head.extend(drain(&line_rx));
        Err(Exited {
            status,
            timed_out,
            stdout: head.join("\n"),
            stderr: drain(&err_rx).join("\n"),
        })
    }

    /// Starts `cartlab up` in `dir` with exactly `args` (pass a `--listen`); ready at `Serving`.
    pub fn try_start_in(dir: &Path, args: &[&str]) -> Result<Lab, Exited> {
        Self::launch(dir, args, serving_line).map(|launched| launched.lab)
    }

    pub fn start_in(dir: &Path, args: &[&str]) -> Lab {
        Self::try_start_in(dir, args).unwrap_or_else(|exited| {
            panic!(
                "cartlab up {args:?} did not start ({}{}): {}",
                exited.status,
                if exited.timed_out { ", timed out" } else { "" },
                exited.stderr
            )
        })
    }

    /// Reads the host's stderr until a line contains `needle`; the lines read, that one last.
    /// Panics if none does within 30 s.
    pub fn wait_for_log(&self, needle: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(remaining) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    seen.push(line);
                    if hit {
                        return seen;
                    }
                }
                Err(_) => panic!(
                    "no log line containing {needle:?} within 30 s; read:\n{}",
                    seen.join("\n")
                ),
            }
        }
    }

    /// Stops the host with SIGTERM; its exit status success and the rest of its log, read to
    /// its end (not just what arrived within a moment).
    pub fn stop_with_whole_log(mut self) -> (bool, Vec<String>) {
        let stopped = self.terminate();
        (stopped, drain(&self.stderr))
    }
}

/// Runs `cartlab up` in `dir` with exactly `args`, expecting it to fail at start-up: panics if
/// it starts serving (plain or JSON summary) or neither serves nor exits.
pub fn up_exits(dir: &Path, args: &[&str]) -> Exited {
    match Lab::launch(dir, args, |lines| {
        serving_line(lines).or_else(|| json_ready(lines))
    }) {
        Ok(launched) => panic!(
            "cartlab up {args:?} should have failed at start-up, but it serves {}",
            launched.lab.url
        ),
        Err(exited) => {
            assert!(
                !exited.timed_out,
                "cartlab up {args:?} neither served nor exited; stderr: {}",
                exited.stderr
            );
            assert!(
                !exited.status.success(),
                "cartlab up {args:?} should have failed; stdout: {}",
                exited.stdout
            );
            exited
        }
    }
}
