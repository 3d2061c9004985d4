//! `cartlab cluster`: three real `cartlab up` processes behind a real HAProxy, sharing one
//! real redis-server, 24 shoppers per design through HAProxy's front; `kill -9` of one member
//! mid-run is the seed's server crash for real. Every stateless cart survives it; under
//! sticky routing the stateful carts on the killed member are lost and those on the others
//! kept; under round-robin the stateful carts are lost without any crash.
//!
//! Which member served an answer is read from the answer itself: HAProxy prefixes the
//! `x-cartlab-instance` header with the server's name (`m2/637b8e92`). That names the
//! member of every answer, so a stateful shopper's member is the one that served all its
//! answers before the kill (the test checks there is one). The `SERVERID` cookie says the
//! same under sticky routing, but it is rewritten when HAProxy redispatches a shopper after
//! the kill, and the shopper's cookie jar is private to `Shopper`.
//!
//! Each member runs `--instances 1`: one long-lived instance per component, the seed's one
//! server process, so a stateful cart on a surviving member is certainly still in memory.
//! The kill happens while every shopper is between actions (all have their first items, none
//! has a request in flight), and the shoppers go on only once the cluster has logged the
//! member's death and HAProxy has marked it DOWN: so no answer is a casualty of the
//! moment of the kill, and the counts below are certain, not likely.
//!
//! haproxy must be installed (Debian's `haproxy`; scripts/test installs it): without it this
//! test fails, saying so. It never skips.

mod common;

use common::{Cents, Design, RedisServer, Shopper, drain_output, redis_runtime_config, repo_root};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MEMBERS: usize = 3;
const SHOPPERS: usize = 24;
const ADDS_BEFORE_KILL: usize = 4;
const ADDS_AFTER_KILL: usize = 2;

/// Debian's haproxy lives in /usr/sbin, which a PATH may lack.
fn haproxy() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "haproxy is not installed (not on PATH, nor in /usr/sbin): this test needs it \
                 and does not skip. Install it: `apt-get install haproxy` (scripts/test does)"
            )
        })
}

struct MemberLine {
    name: String,
    pid: u32,
    url: String,
}

/// A running `cartlab cluster`, stopped with SIGTERM when dropped (also on a panic).
struct Cluster {
    child: Child,
    front: String,
    members: Vec<MemberLine>,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Cluster {
    fn start(routing: &str, config: &Path, state_dir: &Path) -> Cluster {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cartlab"))
            .args(["cluster", "--members", &MEMBERS.to_string()])
            .args(["--routing", routing, "--listen", "127.0.0.1:0"])
            .arg("--runtime-config-file")
            .arg(config)
            .arg("--haproxy")
            .arg(haproxy())
            .args(["--", "--instances", "1", "--state-dir"])
            .arg(state_dir)
            .current_dir(repo_root())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cartlab cluster");
        let (out_rx, err_rx) = drain_output(&mut child, "cluster");
        let mut cluster = Cluster {
            child,
            front: String::new(),
            members: Vec::new(),
            log: err_rx,
            seen: Vec::new(),
        };
        // Members compile the components on a cold wasmtime cache.
        let deadline = Instant::now() + Duration::from_secs(300);
        while cluster.members.len() < MEMBERS {
            let line = match out_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => line,
                Err(_) => {
                    if let Ok(Some(status)) = cluster.child.try_wait() {
                        panic!("cartlab cluster exited at start ({status}); its log is above");
                    }
                    assert!(Instant::now() < deadline, "cartlab cluster did not start");
                    continue;
                }
            };
            if let Some(url) = line.strip_prefix("Serving ") {
                assert!(cluster.front.is_empty(), "one Serving line: {line}");
                cluster.front = url.trim().to_string();
            } else if let Some(rest) = line.strip_prefix("Member ") {
                assert!(!cluster.front.is_empty(), "the Serving line comes first");
                // `Member m1: pid 1234, http://127.0.0.1:40001`
                let (name, rest) = rest.split_once(": pid ").expect("member line");
                let (pid, url) = rest.split_once(", ").expect("member line");
                cluster.members.push(MemberLine {
                    name: name.to_string(),
                    pid: pid.parse().expect("member pid"),
                    url: url.to_string(),
                });
            }
        }
        assert!(
            cluster.front.starts_with("http://127.0.0.1:"),
            "{}",
            cluster.front
        );
        cluster
    }

    fn member(&self, name: &str) -> &MemberLine {
        self.members
            .iter()
            .find(|member| member.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Waits for a stderr line (of the cluster, its members or HAProxy) matching `what`.
    fn wait_for_log(&mut self, description: &str, what: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|line| what(line)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(remaining) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if what(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("the cluster never logged {description}"),
            }
        }
    }

    /// HAProxy's pid, from the cluster's ready line.
    fn haproxy_pid(&mut self) -> String {
        self.wait_for_log("that it is ready", |line| line.contains("haproxy_pid="))
            .split("haproxy_pid=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .expect("haproxy pid")
    }

    /// The pids of everything the cluster started: members, then HAProxy.
    fn children(&mut self) -> Vec<String> {
        let haproxy = self.haproxy_pid();
        let members = self.members.iter().map(|member| member.pid.to_string());
        members.chain([haproxy]).collect()
    }

    /// SIGTERM, and the cluster must stop everything it started and exit 0.
    fn stop(mut self) {
        let children = self.children();
        let scratch = std::env::temp_dir().join(format!("cartlab-cluster-{}", self.child.id()));
        assert!(
            scratch.is_dir(),
            "the cluster's haproxy config is in {}",
            scratch.display()
        );
        let status = self.terminate().expect("cartlab cluster stops on SIGTERM");
        assert!(
            !scratch.exists(),
            "{} outlived the cluster",
            scratch.display()
        );
        assert!(status.success(), "cartlab cluster exited with {status}");
        for pid in children {
            assert!(gone(&pid), "process {pid} outlived cartlab cluster");
        }
    }

    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Whether process `pid` has ended (a zombie has: it waits only for its reaper).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) state ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

#[test]
fn kill_9_of_the_cluster_takes_its_members_and_haproxy_with_it() {
    let (_redis, dir, config) = setup();
    let mut cluster = Cluster::start("sticky", &config, dir.path());
    let children = cluster.children();
    assert!(children.iter().all(|pid| !gone(pid)), "{children:?} run");
    let pid = cluster.child.id();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = cluster.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !children.iter().all(|pid| gone(pid)) {
        assert!(
            Instant::now() < deadline,
            "outlived kill -9 of cartlab cluster: {:?}",
            children.iter().filter(|pid| !gone(pid)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("kill -9 of the cluster: members and haproxy {children:?} gone");
    // What a killed cluster cannot clean up, its HAProxy config, the next cluster does.
    let scratch = std::env::temp_dir().join(format!("cartlab-cluster-{pid}"));
    let next = Cluster::start("sticky", &config, dir.path());
    assert!(
        !scratch.exists(),
        "the next cluster removes {}",
        scratch.display()
    );
    next.stop();
}

/// One shopper's journey and what it saw.
struct Run {
    design: Design,
    index: usize,
    shopper: Shopper,
    /// Items whose add was answered 2xx, in order.
    added: Vec<String>,
    /// The member of each answer before the kill, and after.
    members_before: Vec<String>,
    members_after: Vec<String>,
    /// The items missing from the cart read at the end (a failed read misses all).
    missing: Vec<String>,
    final_member: String,
}

impl Run {
    fn intact(&self) -> bool {
        self.missing.is_empty()
    }

    /// The one member that served every answer before the kill, if there was one.
    fn pinned(&self) -> Option<&str> {
        let first = self.members_before.first()?;
        self.members_before
            .iter()
            .all(|member| member == first)
            .then_some(first.as_str())
    }
}

/// The member named by HAProxy in front of the instance id (`m2/637b8e92`).
fn member_of(instance: &str) -> String {
    let (member, _) = instance
        .split_once('/')
        .unwrap_or_else(|| panic!("instance `{instance}` is not prefixed with its member"));
    member.to_string()
}

/// Short think times, different per shopper and step, so that requests interleave.
async fn think(run: &Run, step: usize) {
    let ms = 2 + (run.index * 7 + step * 3 + usize::from(run.design == Design::Stateful)) % 11;
    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
}

async fn add_items(run: &mut Run, steps: std::ops::Range<usize>, before_kill: bool) {
    for step in steps {
        think(run, step).await;
        let item = format!("{}-{}-item-{step}", run.design, run.index);
        let answer = run
            .shopper
            .add(run.design, &item, Cents(100 + step as u64))
            .await
            .expect("the front answers");
        // Before the kill every member is up; after it HAProxy has taken the dead one out,
        // so a stateless add always succeeds. A stateful add on a member that does not have
        // the session starts a new one.
        if before_kill || run.design == Design::Stateless {
            assert!(
                answer.is_success(),
                "{} shopper {} add {step}: {}",
                run.design,
                run.index,
                answer.describe_error()
            );
        }
        let member = member_of(&answer.instance);
        if before_kill {
            run.members_before.push(member);
        } else {
            run.members_after.push(member);
        }
        if answer.is_success() {
            run.added.push(item);
        }
    }
}

async fn read_cart(run: &mut Run) {
    let answer = run
        .shopper
        .cart(run.design)
        .await
        .expect("the front answers");
    if run.design == Design::Stateless {
        assert_eq!(answer.status, 200, "stateless read: {}", answer.body);
    }
    let items: BTreeSet<String> = answer.items().into_iter().collect();
    run.missing = run
        .added
        .iter()
        .filter(|item| !answer.is_success() || !items.contains(*item))
        .cloned()
        .collect();
    run.final_member = if answer.instance.is_empty() {
        String::new()
    } else {
        member_of(&answer.instance)
    };
}

/// The whole journey: 24 shoppers per design add items, one member is killed with -9 while
/// they are between actions, they add more, then each reads its cart.
async fn shop_and_kill(
    cluster: &mut Cluster,
    choose_victim: impl FnOnce(&[Run]) -> String,
) -> (Vec<Run>, String) {
    let mut runs: Vec<Run> = Design::BOTH
        .into_iter()
        .flat_map(|design| (0..SHOPPERS).map(move |index| (design, index)))
        .map(|(design, index)| Run {
            design,
            index,
            shopper: Shopper::new(&cluster.front).expect("http client"),
            added: Vec::new(),
            members_before: Vec::new(),
            members_after: Vec::new(),
            missing: Vec::new(),
            final_member: String::new(),
        })
        .collect();
    futures::future::join_all(
        runs.iter_mut()
            .map(|run| add_items(run, 0..ADDS_BEFORE_KILL, true)),
    )
    .await;

    let victim = choose_victim(&runs);
    let pid = cluster.member(&victim).pid.to_string();
    eprintln!(
        "kill -9 {pid} (member {victim}, {})",
        cluster.member(&victim).url
    );
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success(), "kill -9 {pid}");
    tokio::task::block_in_place(|| {
        let member = format!("member={victim}");
        cluster.wait_for_log("the member's death", |line| {
            line.contains("member exited") && line.contains(&member) && line.contains("SIGKILL")
        });
        let down = format!("Server members/{victim} is DOWN");
        cluster.wait_for_log("HAProxy marking the member DOWN", |line| {
            line.contains(&down)
        });
    });

    futures::future::join_all(runs.iter_mut().map(|run| async move {
        add_items(
            run,
            ADDS_BEFORE_KILL..ADDS_BEFORE_KILL + ADDS_AFTER_KILL,
            false,
        )
        .await;
        read_cart(run).await;
    }))
    .await;
    for run in &runs {
        assert!(
            run.members_after
                .iter()
                .chain([&run.final_member])
                .all(|member| *member != victim),
            "{} shopper {} was served by the killed member {victim} after it was DOWN",
            run.design,
            run.index
        );
    }
    (runs, victim)
}

fn setup() -> (RedisServer, tempfile::TempDir, PathBuf) {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = redis_runtime_config(dir.path(), &redis.url());
    (redis, dir, config)
}

fn count(runs: &[Run], design: Design, pick: impl Fn(&Run) -> bool) -> (usize, usize, usize) {
    let picked: Vec<&Run> = runs
        .iter()
        .filter(|run| run.design == design && pick(run))
        .collect();
    let intact = picked.iter().filter(|run| run.intact()).count();
    let lost_items = picked.iter().map(|run| run.missing.len()).sum();
    (picked.len(), intact, lost_items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cluster_kill_9_loses_only_the_killed_members_stateful_carts() {
    let (_redis, dir, config) = setup();
    let mut cluster = Cluster::start("sticky", &config, dir.path());
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();

    let (runs, victim) = shop_and_kill(&mut cluster, |runs| {
        // Sticky: every answer before the kill came from one member.
        for run in runs {
            assert!(
                run.pinned().is_some(),
                "{} shopper {} was not kept on one member: {:?}",
                run.design,
                run.index,
                run.members_before
            );
        }
        // The member holding the most stateful carts (the first of a tie).
        let mut pins: BTreeMap<&str, usize> = BTreeMap::new();
        for run in runs.iter().filter(|run| run.design == Design::Stateful) {
            *pins.entry(run.pinned().unwrap_or_default()).or_default() += 1;
        }
        let most = pins.values().copied().max().unwrap_or_default();
        pins.into_iter()
            .find(|(_, n)| *n == most)
            .map(|(name, _)| name.to_string())
            .expect("a member with stateful carts")
    })
    .await;

    eprintln!("\nsticky, {MEMBERS} members, {SHOPPERS} shoppers per design, kill -9 {victim}:");
    eprintln!(
        "{:<12} {:>15} {:>15} {:>19} {:>16}",
        "member", "stateful carts", "stateful intact", "stateful items lost", "stateless intact"
    );
    for name in &names {
        let on = |run: &Run| run.pinned() == Some(name.as_str());
        let (stateful, stateful_intact, stateful_lost) = count(&runs, Design::Stateful, on);
        let (stateless, stateless_intact, _) = count(&runs, Design::Stateless, on);
        let killed = if *name == victim { " (killed)" } else { "" };
        eprintln!(
            "{:<12} {stateful:>15} {:>15} {stateful_lost:>19} {:>16}",
            format!("{name}{killed}"),
            format!("{stateful_intact}/{stateful}"),
            format!("{stateless_intact}/{stateless}"),
        );
    }
    let (_, stateful_intact, stateful_lost) = count(&runs, Design::Stateful, |_| true);
    let (_, stateless_intact, stateless_lost) = count(&runs, Design::Stateless, |_| true);
    eprintln!(
        "total: stateless {stateless_intact}/{SHOPPERS} intact ({stateless_lost} items lost), \
         stateful {stateful_intact}/{SHOPPERS} intact ({stateful_lost} items lost)\n"
    );

    for run in &runs {
        let pinned = run.pinned().unwrap_or_default();
        match run.design {
            Design::Stateless => assert!(
                run.intact(),
                "stateless shopper {} (on {pinned}) lost {:?}",
                run.index,
                run.missing
            ),
            Design::Stateful if pinned == victim => {
                let before_kill: Vec<_> = run.added[..ADDS_BEFORE_KILL].to_vec();
                assert!(
                    before_kill.iter().all(|item| run.missing.contains(item)),
                    "stateful shopper {} was on the killed {victim}, yet its cart kept {:?} (missing {:?})",
                    run.index,
                    before_kill,
                    run.missing
                );
            }
            Design::Stateful => {
                assert!(
                    run.intact(),
                    "stateful shopper {} on the surviving {pinned} lost {:?}",
                    run.index,
                    run.missing
                );
                assert_eq!(run.final_member, pinned, "still on its member");
            }
        }
    }
    let on_victim = count(&runs, Design::Stateful, |run| run.pinned() == Some(&victim)).0;
    assert!(
        on_victim > 0 && on_victim < SHOPPERS,
        "{on_victim} carts on {victim}"
    );
    assert_eq!(stateful_intact, SHOPPERS - on_victim);
    cluster.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_cluster_keeps_stateless_carts_and_loses_stateful_ones() {
    let (_redis, dir, config) = setup();
    let mut cluster = Cluster::start("round-robin", &config, dir.path());
    let victim = cluster.members[1].name.clone();

    let (runs, victim) = shop_and_kill(&mut cluster, |runs| {
        // Round-robin: the requests went to every member.
        let served: BTreeSet<&String> = runs.iter().flat_map(|run| &run.members_before).collect();
        assert_eq!(served.len(), MEMBERS, "members that served: {served:?}");
        victim
    })
    .await;

    let (_, stateful_intact, stateful_lost) = count(&runs, Design::Stateful, |_| true);
    let (_, stateless_intact, stateless_lost) = count(&runs, Design::Stateless, |_| true);
    let spread = |design: Design| {
        runs.iter()
            .filter(|run| run.design == design && run.pinned().is_none())
            .count()
    };
    let touched_victim = |design: Design| {
        runs.iter()
            .filter(|run| run.design == design && run.members_before.contains(&victim))
            .count()
    };
    eprintln!(
        "\nround-robin, {MEMBERS} members, {SHOPPERS} shoppers per design, kill -9 {victim}:"
    );
    eprintln!(
        "{:<10} {:>12} {:>10} {:>30} {:>27}",
        "design",
        "carts intact",
        "items lost",
        "served by >1 member (pre-kill)",
        "served by the killed member"
    );
    for (design, intact, lost) in [
        (Design::Stateful, stateful_intact, stateful_lost),
        (Design::Stateless, stateless_intact, stateless_lost),
    ] {
        eprintln!(
            "{:<10} {:>12} {lost:>10} {:>30} {:>27}",
            design.to_string(),
            format!("{intact}/{SHOPPERS}"),
            format!("{}/{SHOPPERS}", spread(design)),
            format!("{}/{SHOPPERS}", touched_victim(design)),
        );
    }
    eprintln!();

    for run in runs.iter().filter(|run| run.design == Design::Stateless) {
        assert!(
            run.intact(),
            "stateless shopper {} lost {:?}",
            run.index,
            run.missing
        );
    }
    assert!(
        stateful_intact < SHOPPERS,
        "round-robin over {MEMBERS} processes kept every stateful cart"
    );
    // A stateful cart that two members served is lost: neither has all of it.
    for run in runs.iter().filter(|run| run.design == Design::Stateful) {
        let members: BTreeSet<&String> = run
            .members_before
            .iter()
            .chain(&run.members_after)
            .chain([&run.final_member])
            .collect();
        if members.len() > 1 {
            assert!(
                !run.intact(),
                "stateful shopper {} was served by {members:?} and kept its cart",
                run.index
            );
        }
    }
    cluster.stop();
}
