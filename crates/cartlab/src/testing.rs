//! Test fixtures shared by unit tests and `crates/cartlab/tests/`.
//!
//! [`RedisServer`] runs a real `redis-server` on a free loopback port in a private temporary
//! directory, without persistence. It panics (failing the test) when `redis-server` is
//! missing or does not come up: tests that need Redis must never silently skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// appendonly with fsync on every write: acknowledged writes survive `kill -9`.
    durable: bool,
}

impl RedisServer {
    /// Starts `redis-server` (from PATH) on a free 127.0.0.1 port and waits until it
    /// answers PING.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), with `appendonly yes` and `appendfsync always`, so a
    /// [`restart`](Self::restart) after [`kill`](Self::kill) keeps every acknowledged write.
    pub fn start_durable() -> Self {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cartlab-redis-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {e}", dir.display());
        }
        let port = free_port();
        let mut server = Self {
            port,
            dir,
            child: None,
            durable,
        };
        server.spawn();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port; data is kept only by a durable server.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): it keeps its port and connections but never answers,
    /// like a hung Redis. Undo with [`resume`](Self::resume).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let Some(child) = self.child.as_ref() else {
            panic!("redis-server on port {} is not running", self.port);
        };
        let status = Command::new("kill")
            .arg(sig)
            .arg(child.id().to_string())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            panic!("kill {sig} {} failed: {status:?}", child.id());
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Runs one command on a fresh synchronous connection, e.g.
    /// `server.query::<Vec<u8>>(&["GET", "k"])`. Panics on error.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let result = redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut conn| {
                let mut cmd = redis::cmd(args.first().copied().unwrap_or("PING"));
                for a in args.iter().skip(1) {
                    cmd.arg(*a);
                }
                cmd.query::<T>(&mut conn)
            });
        match result {
            Ok(v) => v,
            Err(e) => panic!("redis {args:?} on {}: {e}", self.url()),
        }
    }

    /// Like [`query`](Self::query) returning the reply as bytes/text.
    pub fn redis_cli(&self, args: &[&str]) -> String {
        let v: redis::Value = self.query(args);
        match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::SimpleString(s) => s,
            redis::Value::Okay => "OK".to_owned(),
            redis::Value::Int(i) => i.to_string(),
            redis::Value::Nil => String::new(),
            other => format!("{other:?}"),
        }
    }

    fn spawn(&mut self) {
        let log = self.dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.durable { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                panic!("redis-server not found: install it (apt-get install -y redis-server)")
            }
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(self.port) {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "redis-server on port {} exited with {status}; log:\n{}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) server.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot find a free port: {e}"),
    }
}

fn ping(port: u16) -> bool {
    let url = format!("redis://127.0.0.1:{port}");
    redis::Client::open(url)
        .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
        .is_ok_and(|reply| reply == "PONG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_starts_kills_and_restarts() {
        let mut s = RedisServer::start();
        assert!(ping(s.port()));
        assert_eq!(s.redis_cli(&["SET", "a", "1"]), "OK");
        assert_eq!(s.redis_cli(&["GET", "a"]), "1");
        s.kill();
        assert!(!ping(s.port()));
        assert!(!s.is_running());
        s.restart();
        assert!(ping(s.port()));
        assert_eq!(
            s.redis_cli(&["GET", "a"]),
            "",
            "no persistence across restarts"
        );
        let dir = s.dir.clone();
        drop(s);
        assert!(!dir.exists());
    }
}
