//! Shared fixtures for the lab host's integration tests: the real `cartlab`
//! binary serving the real .wasm components over loopback HTTP, and a real
//! redis-server on a free port (from `cartlab::testing`).

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use cartlab::testing::RedisServer;

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

/// A shopper: one cookie jar, like `curl -c jar -b jar`.
pub struct Shopper {
    client: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    base: String,
}

/// What a component answered.
pub struct Answer {
    pub status: u16,
    pub instance: String,
    pub requests: u64,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn total(&self) -> f64 {
        self.body["total"].as_f64().unwrap_or(f64::NAN)
    }
    pub fn items(&self) -> Vec<String> {
        self.body["cart"]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|line| line["item"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Shopper {
    pub fn new(lab: &Lab) -> Shopper {
        Self::at(&lab.url)
    }

    pub fn at(base: &str) -> Shopper {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Shopper {
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            jar,
            base: base.to_string(),
        }
    }

    /// The `name=value` cookie the jar would send to `component`'s routes.
    pub fn cookie(&self, component: &str) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = format!("{}/{component}/cart", self.base).parse().ok()?;
        let header = self.jar.cookies(&url)?;
        let name = format!("cartlab_{component}=");
        header
            .to_str()
            .ok()?
            .split("; ")
            .find(|pair| pair.starts_with(&name))
            .map(str::to_string)
    }

    /// The same shopper (same cookie jar) talking to another address.
    pub fn rebase(&self, base: &str) -> Shopper {
        Shopper {
            client: self.client.clone(),
            jar: self.jar.clone(),
            base: base.to_string(),
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        self.send_keyed(method, path, body, None).await
    }

    /// [`Shopper::send`] with an `Idempotency-Key`, so that a retry applies the change once.
    pub async fn send_keyed(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let instance = header("x-cartlab-instance");
        let requests = header("x-cartlab-requests").parse().unwrap_or(0);
        let retry_after = Some(header("retry-after")).filter(|value| !value.is_empty());
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            instance,
            requests,
            retry_after,
            body,
        }
    }

    pub async fn add(&self, component: &str, item: &str, price: u64) -> Answer {
        let answer = self
            .send(
                reqwest::Method::POST,
                &format!("/{component}/cart/add"),
                Some(serde_json::json!({ "item": item, "price": price })),
            )
            .await;
        assert_eq!(answer.status, 200, "add {item}: {}", answer.body);
        answer
    }

    pub async fn cart(&self, component: &str) -> Answer {
        let answer = self
            .send(reqwest::Method::GET, &format!("/{component}/cart"), None)
            .await;
        assert_eq!(answer.status, 200, "cart: {}", answer.body);
        answer
    }

    pub async fn crash(&self, component: &str) -> Answer {
        self.send(reqwest::Method::POST, &format!("/{component}/crash"), None)
            .await
    }

    pub async fn health(&self, component: &str) -> Answer {
        self.send(reqwest::Method::GET, &format!("/{component}/health"), None)
            .await
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

pub const MACBOOK: (&str, u64) = ("MacBook Pro", 2500);
pub const IPHONE: (&str, u64) = ("iPhone 15", 1200);

/// The seed journey's two adds.
pub async fn seed_cart(shopper: &Shopper, component: &str) {
    shopper.add(component, MACBOOK.0, MACBOOK.1).await;
    shopper.add(component, IPHONE.0, IPHONE.1).await;
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
