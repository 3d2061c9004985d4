//! `cartlab up`: run spin.toml's components on wasmtime, like `spin up`.
//! [`UpArgs`] is both the command line and the lab host's configuration:
//! `demo` and `experiment` build one with [`UpArgs::in_process`] for the
//! hosts they start here.

pub mod load;

use super::AppArgs;
use crate::app::duration::parse_duration;
use crate::app::manifest::AppManifest;
use crate::app::sampled::Sampled;
use crate::commands::up::load::LocalHost;
use crate::runtime::fleet::{FleetOptions, Routing};
use crate::runtime::kv::faults::FaultSpec;
use crate::runtime::lab::LabAccess;
use crate::runtime::pool::{POOLED_INSTANCES, ReusePolicy};
use crate::serve::limits::ServeLimits;
use std::net::SocketAddr;
use std::time::Duration;

/// `--listen` when not given, as in `spin up`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// `--routing` when not given.
pub const DEFAULT_ROUTING: Routing = Routing::Sticky;
/// `--restart-delay` when not given.
pub const DEFAULT_RESTART_DELAY: &str = "1s";
/// `--lab-api` when not given.
pub const DEFAULT_LAB_API: LabAccess = LabAccess::Loopback;
/// `--request-timeout` when not given.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
/// `--max-component-instances` when not given: a quarter of the pool, so that even three
/// flooded components leave room for a fourth.
pub const DEFAULT_MAX_COMPONENT_INSTANCES: u16 = POOLED_INSTANCES / 4;

/// Flags keep `spin up`'s names, defaults and `A..B` range syntax.
#[derive(clap::Args, Clone, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub app: AppArgs,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Requests one instance serves before it is recycled (N or A..B) [default: 128;
    /// with --instances: unlimited].
    #[arg(long)]
    pub max_instance_reuse_count: Option<Sampled<u64>>,
    /// Requests in flight on one instance; past it another instance starts (N or A..B)
    /// [default: 16; not with --instances].
    #[arg(long)]
    pub max_instance_concurrent_reuse_count: Option<Sampled<u64>>,
    /// An instance idle longer than this is dropped (e.g. 1s, 500ms, or A..B) [default: 1s;
    /// with --instances: never].
    #[arg(long)]
    pub idle_instance_timeout: Option<Sampled<Duration>>,
    /// A request without a response after this long fails with 500, and its instance is
    /// recycled.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_REQUEST_TIMEOUT)]
    pub request_timeout: Duration,
    /// Instances one component may run at once, its share of the pool of 256 that all
    /// components draw from: past it the component's requests get a prompt 503, and the
    /// other components keep theirs [default: 64; not with --instances].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(POOLED_INSTANCES)))]
    pub max_component_instances: Option<u16>,
    #[command(flatten)]
    pub limits: ServeLimits,
    /// Allocate instance memory on demand instead of from a pool.
    #[arg(long)]
    pub disable_pooling: bool,
    /// Compile components afresh instead of using wasmtime's compilation cache.
    #[arg(long)]
    pub disable_cache: bool,
    /// Lab only: write /tmp/perf-<pid>.map, so that `perf report` names the functions of
    /// the components as well as the host's (wasmtime's perfmap profiler; for
    /// `bench/harness.py profile`).
    #[arg(long)]
    pub perfmap: bool,
    /// Largest linear memory an instance may have, in bytes [default: 256 MiB].
    #[arg(long)]
    pub max_instance_memory: Option<usize>,
    /// Lab only: keep N long-lived instances per component behind a load
    /// balancer (the seed's N servers) instead of Spin's instances on demand.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub instances: Option<u16>,
    /// Lab only, with --instances: how the balancer picks an instance.
    #[arg(long, value_enum, default_value_t = DEFAULT_ROUTING, requires = "instances")]
    pub routing: Routing,
    /// Lab only, with --instances: how long a crashed or recycled instance
    /// stays out of rotation before its replacement may start.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_RESTART_DELAY, requires = "instances")]
    pub restart_delay: Duration,
    /// Who may use the /_lab/ admin API (instances, recycling, events).
    #[arg(long, value_enum, default_value_t = DEFAULT_LAB_API)]
    pub lab_api: LabAccess,
    /// Lab only: key-value stores misbehave on purpose, a comma-separated list of
    /// `spin-4.1` (redis stores answer compare-and-swap inverted and `set` wipes the TTL,
    /// like Spin 4.1's Redis backend), `error-rate=P` (each operation fails with
    /// probability P; writes before or after being applied), `slow-writes=DURATION` (each
    /// write is applied, then answered after DURATION) [default: none].
    #[arg(long, value_name = "SPEC", value_parser = clap::value_parser!(FaultSpec))]
    pub kv_faults: Option<FaultSpec>,
}

impl UpArgs {
    /// A host for this process's own use (`demo`, `experiment`): every flag
    /// at its default but a free loopback port.
    pub fn in_process(app: AppArgs) -> Self {
        Self {
            app,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_instance_reuse_count: None,
            max_instance_concurrent_reuse_count: None,
            idle_instance_timeout: None,
            request_timeout: parse_duration(DEFAULT_REQUEST_TIMEOUT)
                .expect("the default request timeout parses"),
            max_component_instances: None,
            limits: ServeLimits::default(),
            disable_pooling: false,
            disable_cache: false,
            perfmap: false,
            max_instance_memory: None,
            instances: None,
            routing: DEFAULT_ROUTING,
            restart_delay: parse_duration(DEFAULT_RESTART_DELAY)
                .expect("the default restart delay parses"),
            lab_api: DEFAULT_LAB_API,
            kv_faults: None,
        }
    }

    /// Spin's defaults, or a fleet's: one long-lived instance per slot unless
    /// the reuse flags say otherwise.
    pub fn reuse_policy(&self) -> anyhow::Result<ReusePolicy> {
        let base = if self.instances.is_some() {
            if self.max_instance_concurrent_reuse_count.is_some() {
                anyhow::bail!(
                    "--max-instance-concurrent-reuse-count does not apply with --instances: each slot is one instance"
                );
            }
            if self.max_component_instances.is_some() {
                anyhow::bail!(
                    "--max-component-instances does not apply with --instances: a fleet runs one instance per slot"
                );
            }
            ReusePolicy::long_lived()
        } else {
            ReusePolicy::default()
        };
        Ok(ReusePolicy {
            max_reuse: self.max_instance_reuse_count.unwrap_or(base.max_reuse),
            max_concurrent: self
                .max_instance_concurrent_reuse_count
                .unwrap_or(base.max_concurrent),
            idle_timeout: self.idle_instance_timeout.or(base.idle_timeout),
            request_timeout: Some(self.request_timeout),
            max_instances: self.instances.is_none().then(|| {
                usize::from(
                    self.max_component_instances
                        .unwrap_or(DEFAULT_MAX_COMPONENT_INSTANCES),
                )
            }),
        })
    }

    /// `--instances N`: long-lived instances behind a balancer instead of
    /// Spin's instances on demand.
    pub fn fleet(&self) -> Option<FleetOptions> {
        self.instances.map(|instances| FleetOptions {
            instances: usize::from(instances),
            routing: self.routing,
            restart_delay: self.restart_delay,
        })
    }

    pub fn kv_faults(&self) -> FaultSpec {
        self.kv_faults.unwrap_or_default()
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn execute(self) -> anyhow::Result<()> {
        let policy = self.reuse_policy()?;
        let host = LocalHost::start(&self, true).await?;
        let loaded = &host.loaded;
        for (label, store) in &loaded.stores {
            match &loaded.faults {
                Some(faults) => tracing::info!(
                    %label,
                    store = %store.describe(),
                    faults = %faults.applied_to(store),
                    "key-value store"
                ),
                None => tracing::info!(%label, store = %store.describe(), "key-value store"),
            }
        }
        let fleet = self.fleet();
        tracing::info!(
            app = %loaded.manifest.name,
            max_instance_reuse_count = %policy.max_reuse,
            max_instance_concurrent_reuse_count = %policy.max_concurrent,
            idle_instance_timeout = ?policy.idle_timeout.map(|timeout| timeout.to_string()),
            instances = ?fleet.map(|fleet| fleet.instances),
            routing = ?fleet.map(|fleet| fleet.routing.to_string()),
            lab_api = ?self.lab_api,
            kv_faults = %self.kv_faults(),
            limits = ?self.limits,
            "cartlab up ready"
        );
        print_summary(host.address, &loaded.manifest);
        super::shutdown_signal().await;
        host.stop().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The same summary `spin up` prints; tests read the address from it. A
/// closed stdout must not take the host down, so write errors are ignored.
fn print_summary(address: SocketAddr, manifest: &AppManifest) {
    use std::io::Write as _;
    let mut summary = format!("Serving http://{address}\nAvailable Routes:\n");
    for route in manifest.router.routes() {
        let (shown, wildcard) = match route.route.strip_suffix("/...") {
            Some(prefix) => (prefix, " (wildcard)"),
            None => (route.route.as_str(), ""),
        };
        summary.push_str(&format!(
            "  {}: http://{address}{shown}{wildcard}\n",
            route.component
        ));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(summary.as_bytes());
    let _ = stdout.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        up: UpArgs,
    }

    #[test]
    fn in_process_args_are_the_command_lines_defaults_on_a_free_port() {
        let mut parsed = Cli::parse_from(["cartlab-up"]).up;
        assert_eq!(parsed.listen, DEFAULT_LISTEN.parse().unwrap());
        parsed.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let built = UpArgs::in_process(parsed.app.clone());
        assert_eq!(format!("{built:?}"), format!("{parsed:?}"));
    }
}
