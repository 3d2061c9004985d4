//! [`SentinelSet`]: a real Redis primary, one replica (`--replicaof`) and three sentinels
//! (`redis-server <config> --sentinel`, the same binary as `redis-sentinel`) on free loopback
//! ports, with a quorum of 2 and short timeouts (down after 500 ms) so a failover takes about
//! two seconds. Everything is killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::redis_server::{query, spawn_quiet};
use crate::{RedisServer, free_port, scratch_dir};

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "mymaster";
const DOWN_AFTER_MS: u64 = 500;
const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// Sentinels find each other through the primary every 2 s; the replica syncs at once.
const READY_WITHIN: Duration = Duration::from_secs(20);
const SENTINELS: usize = 3;

/// Node settings: a full sync starts at once (Redis 7 waits 5 s by default, for more
/// replicas to join the same transfer).
const NODE_ARGS: &[&str] = &["--repl-diskless-sync-delay", "0"];

struct Sentinel {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Sentinel {
    fn start(primary_port: u16) -> Self {
        let port = free_port();
        let dir = scratch_dir("sentinel");
        let config = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {log}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.display(),
            log = dir.join("sentinel.log").display(),
        );
        if let Err(e) = std::fs::write(&config, text) {
            panic!("cannot write {}: {e}", config.display());
        }
        let mut command = Command::new("redis-server");
        command.arg(&config).arg("--sentinel");
        let child = spawn_quiet(command, "redis-server --sentinel");
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sentinel.log")).unwrap_or_default()
    }

    /// `SENTINEL MASTER` fields, or `None` if this sentinel does not answer.
    fn master(&self) -> Option<std::collections::HashMap<String, String>> {
        query(&self.url(), &["SENTINEL", "MASTER", MASTER_NAME]).ok()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct SentinelSet {
    /// Started as the primary (index 0) and its replica (index 1); roles change on failover.
    nodes: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

impl SentinelSet {
    /// Starts the nodes and sentinels, and waits until the replica is in sync and every
    /// sentinel knows the replica and the two other sentinels (a failover needs both).
    pub fn start() -> Self {
        let primary = RedisServer::start_with_args(NODE_ARGS);
        let port = primary.port().to_string();
        let replica_args: Vec<&str> = NODE_ARGS
            .iter()
            .copied()
            .chain(["--replicaof", "127.0.0.1", &port])
            .collect();
        let replica = RedisServer::start_with_args(&replica_args);
        let sentinels = (0..SENTINELS)
            .map(|_| Sentinel::start(primary.port()))
            .collect();
        let set = Self {
            nodes: vec![primary, replica],
            sentinels,
        };
        set.wait_until(
            "the replica in sync and every sentinel aware of it and of the others",
            || {
                set.replica_in_sync(set.nodes[1].port())
                    && set.sentinels.iter().all(|s| {
                        s.master().is_some_and(|m| {
                            m.get("num-slaves").map(String::as_str) == Some("1")
                                && m.get("num-other-sentinels").map(String::as_str)
                                    == Some(&(SENTINELS - 1).to_string())
                        })
                    })
            },
        );
        set
    }

    /// `redis://127.0.0.1:<port>` of each sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Sentinel::url).collect()
    }

    /// The primary's port as every sentinel reports it (`SENTINEL get-master-addr-by-name`),
    /// or `None` while they disagree or one does not answer.
    pub fn agreed_primary(&self) -> Option<u16> {
        let mut ports = self.sentinels.iter().map(|s| {
            query::<(String, u16)>(
                &s.url(),
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
            )
            .ok()
            .map(|(_, port)| port)
        });
        let first = ports.next()??;
        ports.all(|p| p == Some(first)).then_some(first)
    }

    /// The nodes' ports (primary and replica, in no particular order after a failover).
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// Asks a sentinel to fail over now (`SENTINEL FAILOVER`), without the primary failing.
    pub fn force_failover(&self) {
        if let Err(e) = query::<()>(
            &self.sentinels[0].url(),
            &["SENTINEL", "FAILOVER", MASTER_NAME],
        ) {
            panic!("SENTINEL FAILOVER: {e}");
        }
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        match self.nodes.iter().find(|n| n.port() == port) {
            Some(n) => n,
            None => panic!("no node on port {port}"),
        }
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        match self.nodes.iter_mut().find(|n| n.port() == port) {
            Some(n) => n,
            None => panic!("no node on port {port}"),
        }
    }

    /// Kills the node on `port` with SIGKILL (`kill -9`).
    pub fn kill(&mut self, port: u16) {
        self.node_mut(port).kill();
    }

    /// Waits until every sentinel names a primary other than `old`; returns its port.
    pub fn wait_for_promotion(&self, old: u16, within: Duration) -> u16 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(port) = self.agreed_primary().filter(|p| *p != old) {
                return port;
            }
            if Instant::now() > deadline {
                panic!(
                    "no promotion within {within:?}; sentinel log:\n{}",
                    self.sentinels[0].log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the killed node on `port` again, empty, as a replica of `primary` (as an
    /// orchestrator brings back a lost replica); [`replica_in_sync`](Self::replica_in_sync)
    /// tells when it has caught up.
    pub fn rejoin_as_replica(&mut self, port: u16, primary: u16) {
        let primary = primary.to_string();
        let args: Vec<&str> = NODE_ARGS
            .iter()
            .copied()
            .chain(["--replicaof", "127.0.0.1", &primary])
            .collect();
        self.node_mut(port).restart_with_args(&args);
    }

    /// Whether the replica on `port` has a live link to its primary and the primary counts it
    /// for `WAIT` (the replica's side comes up before the primary marks it online).
    pub fn replica_in_sync(&self, port: u16) -> bool {
        let Ok(info) = query::<String>(
            &format!("redis://127.0.0.1:{port}"),
            &["INFO", "replication"],
        ) else {
            return false;
        };
        let primary = info
            .lines()
            .find_map(|line| line.strip_prefix("master_port:"))
            .and_then(|p| p.trim().parse::<u16>().ok());
        let Some(primary) = primary.filter(|_| info.contains("master_link_status:up")) else {
            return false;
        };
        query::<i64>(
            &format!("redis://127.0.0.1:{primary}"),
            &["WAIT", "1", "100"],
        )
        .is_ok_and(|acknowledged| acknowledged >= 1)
    }

    fn wait_until(&self, what: &str, ready: impl Fn() -> bool) {
        let deadline = Instant::now() + READY_WITHIN;
        while !ready() {
            if Instant::now() > deadline {
                panic!(
                    "not ready within {READY_WITHIN:?} ({what}); sentinel log:\n{}",
                    self.sentinels[0].log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_promote_the_replica_when_the_primary_is_killed() {
        let mut set = SentinelSet::start();
        let old = set
            .agreed_primary()
            .expect("the sentinels agree on a primary");
        set.node(old).query::<()>(&["SET", "k", "v"]);
        let acked: i64 = set.node(old).query(&["WAIT", "1", "1000"]);
        assert_eq!(acked, 1);
        set.kill(old);
        let new = set.wait_for_promotion(old, Duration::from_secs(15));
        assert_ne!(new, old);
        assert_eq!(
            set.node(new).redis_cli(&["GET", "k"]),
            "v",
            "the write WAIT confirmed survives"
        );
        set.rejoin_as_replica(old, new);
        set.wait_until("the old primary back as a replica", || {
            set.replica_in_sync(old)
        });
        assert_eq!(set.node(old).redis_cli(&["GET", "k"]), "v");
    }
}
