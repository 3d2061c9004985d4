//! [`RedisServer`]: a real `redis-server` on a free loopback port in a private temporary
//! directory, without persistence unless asked, optionally behind a password or an ACL user.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::{free_port, scratch_dir};

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may use the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RedisAuth {
    /// Anyone (the default user without a password).
    #[default]
    Open,
    /// `--requirepass`: the default user, with this password.
    Password(String),
    /// Only this ACL user, with this password, and only on keys matching `keys` (an ACL
    /// pattern such as `cartlab:*`); the default user is off.
    AclUser {
        user: String,
        password: String,
        keys: String,
    },
}

impl RedisAuth {
    /// `redis-server` arguments that set it up.
    fn args(&self) -> Vec<String> {
        match self {
            RedisAuth::Open => Vec::new(),
            RedisAuth::Password(password) => vec!["--requirepass".into(), password.clone()],
            RedisAuth::AclUser {
                user,
                password,
                keys,
            } => vec![
                "--user".into(),
                "default".into(),
                "off".into(),
                "--user".into(),
                user.clone(),
                "on".into(),
                format!(">{password}"),
                format!("~{keys}"),
                "+@all".into(),
            ],
        }
    }

    /// `user:password@` for a URL, percent-encoded (empty for [`RedisAuth::Open`]).
    fn userinfo(&self) -> String {
        let (user, password) = match self {
            RedisAuth::Open => return String::new(),
            RedisAuth::Password(password) => ("", password),
            RedisAuth::AclUser { user, password, .. } => (user.as_str(), password),
        };
        format!(
            "{}:{}@",
            utf8_percent_encode(user, NON_ALPHANUMERIC),
            utf8_percent_encode(password, NON_ALPHANUMERIC)
        )
    }
}

pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// appendonly with fsync on every write: acknowledged writes survive `kill -9`.
    durable: bool,
    auth: RedisAuth,
    /// More `redis-server` arguments (e.g. `--replicaof`), given after the fixture's own.
    args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` (from PATH) on a free 127.0.0.1 port and waits until it
    /// answers PING.
    pub fn start() -> Self {
        Self::launch(false, RedisAuth::Open)
    }

    /// Like [`start`](Self::start), with `appendonly yes` and `appendfsync always`, so a
    /// [`restart`](Self::restart) after [`kill`](Self::kill) keeps every acknowledged write.
    pub fn start_durable() -> Self {
        Self::launch(true, RedisAuth::Open)
    }

    /// Like [`start`](Self::start), usable only with the credentials of `auth`.
    pub fn start_with_auth(auth: RedisAuth) -> Self {
        Self::launch(false, auth)
    }

    /// Like [`start`](Self::start), with more `redis-server` arguments, e.g.
    /// `["--replicaof", "127.0.0.1", "6379"]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        let mut server = Self::unstarted(false, RedisAuth::Open);
        server.args = args.iter().map(|a| (*a).to_owned()).collect();
        server.spawn();
        server
    }

    fn unstarted(durable: bool, auth: RedisAuth) -> Self {
        Self {
            port: free_port(),
            dir: scratch_dir("redis"),
            child: None,
            durable,
            auth,
            args: Vec::new(),
        }
    }

    fn launch(durable: bool, auth: RedisAuth) -> Self {
        let mut server = Self::unstarted(durable, auth);
        server.spawn();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://[user:password@]127.0.0.1:<port>`: with the credentials, percent-encoded.
    pub fn url(&self) -> String {
        format!("redis://{}127.0.0.1:{}", self.auth.userinfo(), self.port)
    }

    /// `redis://127.0.0.1:<port>`: the address without credentials.
    pub fn url_without_credentials(&self) -> String {
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

    /// Like [`restart`](Self::restart), with these extra arguments instead of the old ones.
    pub fn restart_with_args(&mut self, args: &[&str]) {
        self.kill();
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
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

    /// Runs one command on a fresh synchronous connection with the server's credentials,
    /// e.g. `server.query::<Vec<u8>>(&["GET", "k"])`. Panics on error.
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        match query(&self.url(), args) {
            Ok(v) => v,
            Err(e) => panic!("redis {args:?} on port {}: {e}", self.port),
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
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", if self.durable { "yes" } else { "no" }])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .args(self.auth.args())
            .args(&self.args);
        self.child = Some(spawn_quiet(command, "redis-server"));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_ping() {
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

    /// Whether the server answers PING to a client with its credentials.
    fn answers_ping(&self) -> bool {
        query::<String>(&self.url(), &["PING"]).is_ok_and(|reply| reply == "PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) server.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One command on a fresh connection to `url`, bounded so a dead server cannot hang a test.
/// Starts `command` (a `redis-server`, as server or sentinel) with no terminal I/O; `what`
/// names it in the panic.
pub(crate) fn spawn_quiet(mut command: Command, what: &str) -> Child {
    let spawned = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("redis-server not found: install it (apt-get install -y redis-server)")
        }
        Err(e) => panic!("cannot start {what}: {e}"),
    }
}

pub(crate) fn query<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> redis::RedisResult<T> {
    let mut conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
    let mut cmd = redis::cmd(args.first().copied().unwrap_or("PING"));
    for a in args.iter().skip(1) {
        cmd.arg(*a);
    }
    cmd.query(&mut conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_starts_kills_and_restarts() {
        let mut s = RedisServer::start();
        assert!(s.answers_ping());
        assert_eq!(s.redis_cli(&["SET", "a", "1"]), "OK");
        assert_eq!(s.redis_cli(&["GET", "a"]), "1");
        s.kill();
        assert!(!s.answers_ping());
        assert!(!s.is_running());
        s.restart();
        assert!(s.answers_ping());
        assert_eq!(
            s.redis_cli(&["GET", "a"]),
            "",
            "no persistence across restarts"
        );
        let dir = s.dir.clone();
        drop(s);
        assert!(!dir.exists());
    }

    /// A password needing percent-encoding in a URL.
    const SECRET: &str = "p@ss:w/rd%?#";

    #[test]
    fn password_server_needs_the_password() {
        let s = RedisServer::start_with_auth(RedisAuth::Password(SECRET.into()));
        assert_eq!(s.redis_cli(&["SET", "a", "1"]), "OK");
        let refused = query::<String>(&s.url_without_credentials(), &["GET", "a"]);
        assert_eq!(
            refused.map_err(|e| e.code().map(str::to_owned)),
            Err(Some("NOAUTH".into()))
        );
        let wrong = format!("redis://:wrong@127.0.0.1:{}", s.port());
        assert!(query::<String>(&wrong, &["GET", "a"]).is_err());
    }

    #[test]
    fn acl_user_is_limited_to_its_keys() {
        let s = RedisServer::start_with_auth(RedisAuth::AclUser {
            user: "cart".into(),
            password: SECRET.into(),
            keys: "cartlab:*".into(),
        });
        assert!(s.url().starts_with("redis://cart:"));
        assert_eq!(s.redis_cli(&["SET", "cartlab:a", "1"]), "OK");
        let other = query::<String>(&s.url(), &["SET", "other", "1"]);
        assert_eq!(
            other.map_err(|e| e.code().map(str::to_owned)),
            Err(Some("NOPERM".into()))
        );
        assert!(query::<String>(&s.url_without_credentials(), &["GET", "cartlab:a"]).is_err());
    }
}
