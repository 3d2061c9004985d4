//! `cartlab cluster`: the seed's servers for real. N `cartlab up` processes (this same
//! binary) on loopback, HAProxy in front of them with sticky (cookie) or round-robin
//! routing, and one Redis for the stateless carts' sessions. `kill -9` of a member is a
//! server crashing: the stateful carts in its memory are gone, the stateless ones are served
//! by the others. The in-process fleets (`cartlab up --instances N`) stay as they are; this
//! is the same lesson with processes, sockets and a real balancer.

use super::DEFAULT_MANIFEST;
use crate::app::runtime_config::{self, DEFAULT_LABEL, RedisUrl, StoreConfig};
use anyhow::{Context as _, bail};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// `--members` when not given.
pub const DEFAULT_MEMBERS: u16 = 3;
/// `--listen` when not given: HAProxy's front, where `cartlab up` would listen.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// `--haproxy` when not given: looked up on PATH, then in /usr/sbin and /usr/local/sbin
/// (Debian installs it in /usr/sbin, which a user's PATH often lacks).
pub const DEFAULT_HAPROXY: &str = "haproxy";
/// The Redis a cluster uses without `--runtime-config-file`: runtime-config.toml's.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The cookie HAProxy pins a client to a member with, under sticky routing.
pub const STICKY_COOKIE: &str = "SERVERID";
/// The header HAProxy adds to every answer: the member (HAProxy server) that served it.
pub const MEMBER_HEADER: &str = "x-cartlab-member";

/// How long a member may take to print its `Serving` line (a cold wasmtime cache compiles
/// every component first).
const MEMBER_START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long HAProxy may take to accept connections on the front address.
const HAPROXY_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a member or HAProxy gets to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long Redis gets to answer PING before the cluster refuses to start.
const REDIS_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// `cartlab up` flags the cluster sets for every member itself.
const RESERVED_UP_FLAGS: &[&str] = &[
    "--listen",
    "--find-free-port",
    "--from",
    "--from-file",
    "--file",
    "--runtime-config-file",
    "--format",
    "--tls-cert",
    "--tls-key",
];

/// How HAProxy picks a member for a request.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterRouting {
    /// A client stays on the member that served its first request: HAProxy inserts a
    /// `SERVERID` cookie naming it (`cookie SERVERID insert indirect nocache`). When that
    /// member is down, the request goes to another (`option redispatch`) and the cookie is
    /// rewritten.
    Sticky,
    /// Each request to the next live member (`balance roundrobin`, no cookie).
    RoundRobin,
}

impl std::fmt::Display for ClusterRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sticky => "sticky",
            Self::RoundRobin => "round-robin",
        })
    }
}

/// `cartlab cluster`'s flags; its `--help` text is on the `Cluster` subcommand in main.rs.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// How many `cartlab up` processes to run behind HAProxy (1 to 32).
    #[arg(long, default_value_t = DEFAULT_MEMBERS, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub members: u16,
    /// How HAProxy routes requests to the members.
    #[arg(long, value_enum, default_value_t = ClusterRouting::Sticky)]
    pub routing: ClusterRouting,
    /// HAProxy's front address, a loopback one (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The application manifest every member loads, or a directory holding spin.toml.
    #[arg(short = 'f', long = "from", aliases = ["from-file", "file"], default_value = DEFAULT_MANIFEST)]
    pub from: PathBuf,
    /// Runtime config every member gets. Its key-value store `default` must be Redis, shared
    /// by all members, or a stateless cart would live in one member's SQLite only
    /// [default: Redis at redis://127.0.0.1:6379, as runtime-config.toml].
    #[arg(long, env = "RUNTIME_CONFIG_FILE")]
    pub runtime_config_file: Option<PathBuf>,
    /// The haproxy binary [default: `haproxy` on PATH, else /usr/sbin/haproxy].
    #[arg(long, value_name = "PATH")]
    pub haproxy: Option<PathBuf>,
    /// Flags for every `cartlab up`, after `--` (e.g. `-- --instances 1`); not --listen,
    /// --find-free-port, --from, --runtime-config-file, --format or --tls-*, which the
    /// cluster sets [default: none].
    #[arg(last = true, value_name = "UP_FLAGS")]
    pub up_args: Vec<String>,
}

/// One running `cartlab up`.
struct Member {
    name: String,
    pid: u32,
    addr: SocketAddr,
}

impl ClusterArgs {
    /// Starts the members and HAProxy, prints the addresses, serves until SIGINT or SIGTERM.
    pub async fn execute(self) -> anyhow::Result<()> {
        if !self.listen.ip().is_loopback() {
            bail!(
                "--listen {}: cartlab cluster serves on loopback only (e.g. 127.0.0.1:3000)",
                self.listen
            );
        }
        refuse_reserved_flags(&self.up_args)?;
        let haproxy = find_haproxy(self.haproxy.as_deref())?;
        let version = haproxy_version(&haproxy).await?;
        tracing::info!(haproxy = %haproxy.display(), %version, "haproxy found");
        let scratch = ScratchDir::create()?;
        let (config_file, redis) = self.runtime_config(&scratch.path)?;
        ping_redis(&redis).await?;
        tracing::info!(redis = %redis, "Redis answers; every member keeps its stateless sessions there");

        let exe = std::env::current_exe()
            .context("cannot find the cartlab binary to start the members with")?;
        let stopping = Arc::new(AtomicBool::new(false));
        let live = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut supervisors = tokio::task::JoinSet::new();
        let mut starting = Vec::new();
        for number in 1..=self.members {
            let name = format!("m{number}");
            let child = self
                .spawn_member(&exe, &config_file)
                .with_context(|| format!("cannot start member {name} ({})", exe.display()))?;
            starting.push((name, child));
        }
        let started = futures::future::join_all(
            starting
                .into_iter()
                .map(|(name, child)| await_serving(name, child)),
        )
        .await;
        let mut members = Vec::new();
        let mut failure = None;
        for result in started {
            match result {
                Ok((member, child)) => {
                    live.fetch_add(1, Ordering::SeqCst);
                    supervisors.spawn(supervise_member(
                        member.name.clone(),
                        child,
                        stop_rx.clone(),
                        stopping.clone(),
                        live.clone(),
                    ));
                    members.push(member);
                }
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        if let Some(error) = failure {
            stop(&stop_tx, &stopping, &mut supervisors).await;
            return Err(error);
        }

        let front = front_address(self.listen)?;
        let config = haproxy_config(front, self.routing, &members);
        let cfg_path = scratch.path.join("haproxy.cfg");
        std::fs::write(&cfg_path, &config)
            .with_context(|| format!("cannot write {}", cfg_path.display()))?;
        let result = self
            .serve(&haproxy, &cfg_path, front, &members, &stop_tx, &stopping)
            .await;
        stop(&stop_tx, &stopping, &mut supervisors).await;
        if result.is_ok() {
            tracing::info!("stopped");
        }
        result
    }

    /// Checks and starts HAProxy, prints the addresses, and waits for a signal (or for
    /// HAProxy to die, which ends the cluster).
    async fn serve(
        &self,
        haproxy: &Path,
        cfg_path: &Path,
        front: SocketAddr,
        members: &[Member],
        stop_tx: &watch::Sender<bool>,
        stopping: &AtomicBool,
    ) -> anyhow::Result<()> {
        check_haproxy_config(haproxy, cfg_path).await?;
        let mut proxy = Command::new(haproxy);
        proxy
            .arg("-db")
            .arg("-f")
            .arg(cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        dies_with_cluster(&mut proxy);
        let mut proxy = proxy
            .spawn()
            .with_context(|| format!("cannot start {}", haproxy.display()))?;
        forward_lines(proxy.stdout.take(), "haproxy".into());
        forward_lines(proxy.stderr.take(), "haproxy".into());
        wait_for_front(&mut proxy, front).await?;
        let proxy_pid = proxy.id().unwrap_or_default();

        let mut summary = format!("Serving http://{front}\n");
        for member in members {
            let _ = writeln!(
                summary,
                "Member {}: pid {}, http://{}",
                member.name, member.pid, member.addr
            );
        }
        let mut stdout = std::io::stdout().lock();
        // A closed stdout must not take the cluster down.
        let _ = stdout.write_all(summary.as_bytes());
        let _ = stdout.flush();
        drop(stdout);
        tracing::info!(
            members = members.len(),
            routing = %self.routing,
            haproxy_pid = proxy_pid,
            config = %cfg_path.display(),
            "cartlab cluster ready: `kill -9` a member's pid to crash it; Ctrl-C stops the cluster"
        );

        tokio::select! {
            _ = super::shutdown_signal() => {
                stopping.store(true, Ordering::SeqCst);
                let _ = stop_tx.send(true);
                terminate(&mut proxy, "haproxy").await;
                Ok(())
            }
            status = proxy.wait() => {
                stopping.store(true, Ordering::SeqCst);
                let _ = stop_tx.send(true);
                match status {
                    Ok(status) => bail!("haproxy exited unexpectedly ({status}); its log is above. The members are stopped"),
                    Err(error) => bail!("lost track of haproxy: {error}"),
                }
            }
        }
    }

    /// The runtime config file for the members and its Redis: the given one, refused unless
    /// its `default` store is Redis, or one written to `dir` for [`DEFAULT_REDIS_URL`].
    fn runtime_config(&self, dir: &Path) -> anyhow::Result<(PathBuf, RedisUrl)> {
        let Some(file) = &self.runtime_config_file else {
            let file = dir.join("runtime-config.toml");
            std::fs::write(
                &file,
                format!(
                    "[key_value_store.{DEFAULT_LABEL}]\ntype = \"redis\"\nurl = \"{DEFAULT_REDIS_URL}\"\n"
                ),
            )
            .with_context(|| format!("cannot write {}", file.display()))?;
            let url = RedisUrl::parse(DEFAULT_REDIS_URL)
                .context("the default Redis URL does not parse")?;
            return Ok((file, url));
        };
        let loaded = runtime_config::load(Some(file), dir)?;
        match loaded.key_value.get(DEFAULT_LABEL) {
            Some(StoreConfig::Redis { url }) => {
                let file = std::path::absolute(file)
                    .with_context(|| format!("cannot make {} absolute", file.display()))?;
                Ok((file, url.clone()))
            }
            Some(StoreConfig::RedisSentinel(_)) => bail!(
                "{}: the key-value store `{DEFAULT_LABEL}` is behind Sentinel \
                 (type = \"cartlab_redis_sentinel\"), which cartlab cluster does not support: \
                 it needs one Redis URL",
                file.display()
            ),
            Some(StoreConfig::Sqlite { .. }) | None => bail!(
                "{}: the key-value store `{DEFAULT_LABEL}` is not Redis. cartlab cluster needs it \
                 in one Redis shared by every member (`[key_value_store.{DEFAULT_LABEL}]` with \
                 type = \"redis\", as in runtime-config.toml): in SQLite each member would keep \
                 its own sessions, and no stateless cart would survive its member",
                file.display()
            ),
        }
    }

    fn spawn_member(&self, exe: &Path, config_file: &Path) -> anyhow::Result<Child> {
        let mut member = Command::new(exe);
        member
            .arg("up")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--from")
            .arg(&self.from)
            .arg("--runtime-config-file")
            .arg(config_file)
            .args(&self.up_args)
            // The flag above wins over the variable, but keep the member's view simple.
            .env_remove("SPIN_HTTP_LISTEN_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C reaches the cluster only, which stops the
            // members in order; `kill -9 PID` reaches that member only.
            .process_group(0)
            .kill_on_drop(true);
        dies_with_cluster(&mut member);
        Ok(member.spawn()?)
    }
}

/// `kill -9` of the cluster runs none of its clean-up, and its own process group keeps a
/// child out of reach of a signal to the cluster's: on Linux the kernel sends the child
/// SIGKILL when the thread that started it ends (a runtime thread, which lives as long as
/// the cluster), so that no member or HAProxy is left holding its port.
fn dies_with_cluster(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let cluster = std::process::id();
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls
        // (prctl, getppid) and allocates nothing on success.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The cluster may have died before prctl took effect.
                if u32::try_from(libc::getppid()).ok() != Some(cluster) {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// A member's pass-through flags may not move or change what the cluster relies on.
fn refuse_reserved_flags(up_args: &[String]) -> anyhow::Result<()> {
    for arg in up_args {
        let flag = arg.split_once('=').map_or(arg.as_str(), |(flag, _)| flag);
        let short_from = arg.starts_with("-f") && !arg.starts_with("--");
        if RESERVED_UP_FLAGS.contains(&flag) || short_from {
            bail!(
                "`{arg}` after `--`: cartlab cluster sets it for every member itself \
                 (use cartlab cluster's own --listen, --from, --runtime-config-file; members \
                 serve plain HTTP on 127.0.0.1 ports of their own)"
            );
        }
    }
    Ok(())
}

/// `--haproxy`, or `haproxy` on PATH, or Debian's /usr/sbin/haproxy.
fn find_haproxy(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let fallbacks = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")];
    on_path
        .iter()
        .chain(fallbacks.iter())
        .map(|dir| dir.join(DEFAULT_HAPROXY))
        .find(|candidate| candidate.is_file())
        .context(
            "haproxy is not installed (not on PATH, nor in /usr/sbin or /usr/local/sbin): \
             install it (Debian: `apt-get install haproxy`) or pass --haproxy PATH",
        )
}

/// Runs `haproxy ARGS` to its end; a binary that cannot run says how to get one.
async fn run_haproxy(
    haproxy: &Path,
    args: &[&std::ffi::OsStr],
) -> anyhow::Result<std::process::Output> {
    Command::new(haproxy)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| {
            format!(
                "cannot run {} (install haproxy, e.g. `apt-get install haproxy`, or pass --haproxy PATH)",
                haproxy.display()
            )
        })
}

/// `haproxy -v`'s first line: that the binary runs, before any member is started.
async fn haproxy_version(haproxy: &Path) -> anyhow::Result<String> {
    let output = run_haproxy(haproxy, &["-v".as_ref()]).await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap_or_default().trim().to_string();
    if !output.status.success() || !first.contains("HAProxy") {
        bail!(
            "{} -v did not answer as HAProxy does ({}): pass --haproxy PATH to an haproxy binary",
            haproxy.display(),
            output.status
        );
    }
    Ok(first)
}

/// Asks Redis for PING, so that a cluster without its Redis fails now, saying so, rather
/// than on every stateless request.
async fn ping_redis(url: &RedisUrl) -> anyhow::Result<()> {
    let unreachable = |why: String| {
        anyhow::anyhow!(
            "Redis at {url} does not answer ({why}). cartlab cluster keeps the stateless carts' \
             sessions there: start redis-server, or point --runtime-config-file at a Redis that runs"
        )
    };
    let client = url.client().map_err(|e| unreachable(e.to_string()))?;
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(REDIS_PING_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            REDIS_PING_TIMEOUT.as_secs()
        ))),
    }
}

/// Reads the member's stdout until its `Serving http://ADDR` line; the rest of its stdout is
/// drained and dropped, its stderr forwarded with its name.
async fn await_serving(name: String, mut child: Child) -> anyhow::Result<(Member, Child)> {
    forward_lines(child.stderr.take(), name.clone());
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("member {name}: no stdout to read its address from"))?;
    let mut lines = BufReader::new(stdout).lines();
    let serving = async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("Serving ") {
                return Ok(Some(url.trim().to_string()));
            }
        }
        Ok::<_, std::io::Error>(None)
    };
    let url = match tokio::time::timeout(MEMBER_START_TIMEOUT, serving).await {
        Ok(Ok(Some(url))) => url,
        Ok(Ok(None)) | Ok(Err(_)) => {
            let status = child.wait().await.map(|s| s.to_string());
            bail!(
                "member {name} exited before serving ({}); its log is above",
                status.unwrap_or_else(|e| e.to_string())
            )
        }
        Err(_) => bail!(
            "member {name} printed no `Serving` line within {}s",
            MEMBER_START_TIMEOUT.as_secs()
        ),
    };
    // Keep draining: a closed pipe would fail the member's next write.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = url
        .strip_prefix("http://")
        .and_then(|addr| addr.parse::<SocketAddr>().ok())
        .with_context(|| {
            format!("member {name} serves at `{url}`, not an http://IP:PORT address")
        })?;
    let pid = child
        .id()
        .with_context(|| format!("member {name} exited right after starting"))?;
    tracing::info!(member = %name, pid, url = %url, "member serving");
    Ok((Member { name, pid, addr }, child))
}

/// Watches one member: logs an exit nobody asked for (a `kill -9` is the point: the
/// cluster keeps running), and on the stop signal stops it.
async fn supervise_member(
    name: String,
    mut child: Child,
    mut stop_rx: watch::Receiver<bool>,
    stopping: Arc<AtomicBool>,
    live: Arc<AtomicUsize>,
) {
    let pid = child.id().unwrap_or_default();
    tokio::select! {
        status = child.wait() => {
            if stopping.load(Ordering::SeqCst) {
                return;
            }
            let left = live.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
            let status = status.map_or_else(|e| e.to_string(), |s: ExitStatus| s.to_string());
            tracing::warn!(
                member = %name,
                pid,
                status = %status,
                members_left = left,
                "member exited: its stateful carts are gone; HAProxy takes it out of rotation and the others serve"
            );
            if left == 0 {
                tracing::error!("every member is down: HAProxy answers 503 until the cluster is restarted");
            }
        }
        _ = stop_requested(&mut stop_rx) => {
            terminate(&mut child, &name).await;
        }
    }
}

/// Resolves once the stop flag is set (or its sender is gone).
async fn stop_requested(stop_rx: &mut watch::Receiver<bool>) {
    loop {
        let stop = *stop_rx.borrow_and_update();
        if stop || stop_rx.changed().await.is_err() {
            return;
        }
    }
}

/// SIGTERM (through `kill`, for a graceful stop), then SIGKILL after [`STOP_TIMEOUT`].
async fn terminate(child: &mut Child, name: &str) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(_) => tracing::debug!(process = name, "stopped"),
        Err(_) => {
            tracing::warn!(
                process = name,
                "did not stop within {}s of SIGTERM: killing it",
                STOP_TIMEOUT.as_secs()
            );
            let _ = child.kill().await;
        }
    }
}

/// Tells every member to stop and waits until they have.
async fn stop(
    stop_tx: &watch::Sender<bool>,
    stopping: &AtomicBool,
    supervisors: &mut tokio::task::JoinSet<()>,
) {
    stopping.store(true, Ordering::SeqCst);
    let _ = stop_tx.send(true);
    while supervisors.join_next().await.is_some() {}
}

/// Copies a child's output to stderr line by line, each line prefixed with `[name]`.
fn forward_lines(stream: Option<impl AsyncRead + Unpin + Send + 'static>, name: String) {
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "[{name}] {line}");
        }
    });
}

/// The front address with a port: HAProxy needs a number, so port 0 becomes a free port
/// found by binding one and letting it go.
fn front_address(listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    if listen.port() != 0 {
        return Ok(listen);
    }
    let probe = std::net::TcpListener::bind(SocketAddr::new(listen.ip(), 0))
        .with_context(|| format!("cannot find a free port on {}", listen.ip()))?;
    probe
        .local_addr()
        .context("cannot read the free port's address")
}

/// `haproxy -c -f cfg`: the configuration checked before it is used.
async fn check_haproxy_config(haproxy: &Path, cfg_path: &Path) -> anyhow::Result<()> {
    let output = run_haproxy(
        haproxy,
        &["-c".as_ref(), "-f".as_ref(), cfg_path.as_os_str()],
    )
    .await?;
    if !output.status.success() {
        bail!(
            "haproxy refused the configuration {} ({}):\n{}{}",
            cfg_path.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// Waits until Spin's health endpoint answers 200 through HAProxy's front (a member
/// answers it), or fails if HAProxy exits.
async fn wait_for_front(proxy: &mut Child, front: SocketAddr) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .build()
        .context("cannot build an HTTP client to check HAProxy with")?;
    let health = format!("http://{front}/.well-known/spin/health");
    let deadline = tokio::time::Instant::now() + HAPROXY_START_TIMEOUT;
    loop {
        let answer = client.get(&health).send().await;
        if answer.is_ok_and(|answer| answer.status().is_success()) {
            return Ok(());
        }
        if let Ok(Some(status)) = proxy.try_wait() {
            bail!("haproxy exited at start ({status}); its log is above (is {front} taken?)");
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{health} did not answer 200 through haproxy within {}s",
                HAPROXY_START_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// HAProxy's configuration: one frontend on `front`, one backend with a server per member,
/// health-checked every 200 ms on Spin's health endpoint.
fn haproxy_config(front: SocketAddr, routing: ClusterRouting, members: &[Member]) -> String {
    let bind = match front.ip() {
        IpAddr::V6(ip) => format!("[{ip}]:{}", front.port()),
        IpAddr::V4(ip) => format!("{ip}:{}", front.port()),
    };
    let mut cfg = String::new();
    let _ = write!(
        cfg,
        "\
# Written by cartlab cluster (pid {pid}): {n} cartlab up processes, {routing} routing.
global
    # State changes (a member DOWN or UP) and abnormal requests, on haproxy's stderr.
    log stderr format raw local0 info

defaults
    mode http
    log global
    option httplog
    option dontlog-normal
    # Loopback: a live member accepts at once. HAProxy waits this long (at most 1s) before
    # retrying a refused connection, so it is short: a killed member costs 200 ms, not 2 s.
    timeout connect 100ms
    timeout client 35s
    # A member answers within its --request-timeout (30s by default).
    timeout server 35s
    timeout http-request 10s
    timeout http-keep-alive 5s
    timeout check 1s
    # A member that refuses connections (killed) is retried, the last time on another one.
    retries 2
    option redispatch
    # A member leaves rotation after one failed check, 200 ms apart, and comes back after two.
    default-server check inter 200ms fall 1 rise 2

frontend cartlab
    bind {bind}
    default_backend members

backend members
    balance roundrobin
    option httpchk GET /.well-known/spin/health
    http-check expect status 200
",
        pid = std::process::id(),
        n = members.len(),
    );
    if routing == ClusterRouting::Sticky {
        let _ = writeln!(
            cfg,
            "    # Sticky: the member's name in a cookie, added by HAProxy, never seen by the member.\n    cookie {STICKY_COOKIE} insert indirect nocache"
        );
    }
    let _ = writeln!(
        cfg,
        "    # Which member answered, on every answer; and in front of the instance id (m2/637b8e92).
    http-response set-header {MEMBER_HEADER} %s
    http-response set-header x-cartlab-instance \"%s/%[res.hdr(x-cartlab-instance)]\" if {{ res.hdr(x-cartlab-instance) -m found }}"
    );
    for member in members {
        let addr = match member.addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]:{}", member.addr.port()),
            IpAddr::V4(ip) => format!("{ip}:{}", member.addr.port()),
        };
        let cookie = match routing {
            ClusterRouting::Sticky => format!(" cookie {}", member.name),
            ClusterRouting::RoundRobin => String::new(),
        };
        let _ = writeln!(cfg, "    server {} {addr}{cookie}", member.name);
    }
    cfg
}

/// The directory for the HAProxy config and the default runtime config, removed on exit.
struct ScratchDir {
    path: PathBuf,
}

/// A scratch directory is `cartlab-cluster-<pid>` in the temp dir.
const SCRATCH_PREFIX: &str = "cartlab-cluster-";

impl ScratchDir {
    fn create() -> anyhow::Result<ScratchDir> {
        let temp = std::env::temp_dir();
        remove_orphans(&temp);
        let path = temp.join(format!("{SCRATCH_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

/// Removes the scratch directories of clusters that are gone without removing theirs (a
/// `kill -9` leaves no time to). A directory whose pid runs is left alone, whatever runs it.
fn remove_orphans(temp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(SCRATCH_PREFIX))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => {
                    tracing::info!(dir = %entry.path().display(), "removed a killed cluster's scratch dir")
                }
                Err(error) => {
                    tracing::debug!(%error, dir = %entry.path().display(), "could not remove a killed cluster's scratch dir")
                }
            }
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
