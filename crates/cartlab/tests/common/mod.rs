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
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the test stops listening: a closed pipe
            // would make the host's next write fail.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[cartlab] {line}");
                let _ = err_tx.send(line);
            }
        });
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
