//! `cartlab up`: run spin.toml's components on wasmtime, like `spin up`.
//! [`UpArgs`] is both the command line and the lab host's configuration:
//! `demo` and `experiment` build one with [`UpArgs::in_process`] for the
//! hosts they start here.

pub mod load;
pub mod unsupported;

use super::AppArgs;
use crate::app::duration::parse_duration;
use crate::app::manifest::AppManifest;
use crate::app::sampled::Sampled;
use crate::commands::up::load::LocalHost;
use crate::runtime::fleet::{FleetOptions, Routing};
use crate::runtime::guest_output::{FollowComponents, GuestOutput};
use crate::runtime::host_profile::HostProfile;
use crate::runtime::kv::faults::FaultSpec;
use crate::runtime::lab::LabAccess;
use crate::runtime::pool::{POOLED_INSTANCES, ReusePolicy};
use crate::serve::limits::ServeLimits;
use clap::builder::TypedValueParser as _;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    #[arg(long, env = "SPIN_HTTP_LISTEN_ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// When --listen's port is taken, listen on the next free one (up to 10 ports on).
    #[arg(long)]
    pub find_free_port: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key [default: plain HTTP].
    #[arg(long, env = "SPIN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key for --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SPIN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Set KEY=VALUE in the key-value store `default` before serving, overwriting what is
    /// there (repeatable).
    #[arg(long = "key-value", value_name = "KEY=VALUE", value_parser = crate::app::variables::parse_key_value)]
    pub key_values: Vec<(String, String)>,
    /// Serve only this component and its routes (repeatable) [default: every component].
    #[arg(short = 'c', long = "component-id", value_name = "COMPONENT")]
    pub component_ids: Vec<String>,
    /// How the start-up summary (address and routes) is printed on stdout.
    #[arg(long, value_enum, default_value_t = SummaryFormat::Plain)]
    pub format: SummaryFormat,
    /// Directory for each component's output, `<component>_stdout.txt` and
    /// `<component>_stderr.txt`, appended to; `""` writes no files [default: `logs` in the
    /// state dir].
    #[arg(short = 'L', long = "log-dir", env = "SPIN_LOG_DIR", value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    pub log_dir: Option<PathBuf>,
    /// Empty the component log files before serving.
    #[arg(long)]
    pub truncate_logs: bool,
    /// Echo only these components' output to stderr (repeatable) [default: every component's].
    #[arg(long = "follow", value_name = "COMPONENT")]
    pub follow: Vec<String>,
    /// Echo no component output to stderr (the log files still get it).
    #[arg(short = 'q', long, alias = "shush", conflicts_with = "follow")]
    pub quiet: bool,
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
    #[arg(long, env = "DISABLE_WASMTIME_CACHE", value_parser = clap::builder::BoolishValueParser::new(), conflicts_with = "cache")]
    pub disable_cache: bool,
    /// wasmtime's cache configuration file (TOML) [default: wasmtime's own default cache].
    #[arg(long, env = "WASMTIME_CACHE_FILE")]
    pub cache: Option<PathBuf>,
    /// Keep the components' DWARF debug info, for debugging them with gdb or lldb.
    #[arg(long)]
    pub debug_info: bool,
    /// Lab only: write /tmp/perf-<pid>.map, so that `perf report` names the functions of
    /// the components as well as the host's (wasmtime's perfmap profiler; for
    /// `bench/harness.py profile`).
    #[arg(long)]
    pub perfmap: bool,
    /// Largest linear memory an instance may have, in bytes [default: 256 MiB].
    #[arg(long, env = "SPIN_MAX_INSTANCE_MEMORY")]
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
    /// Lab only: behave as this Spin host family: refuse to start a component whose imports
    /// or HTTP world it lacks, and reuse instances only where it does.
    #[arg(long, value_enum, default_value_t = HostProfile::default())]
    pub host_profile: HostProfile,
    #[command(flatten)]
    pub unsupported: unsupported::UnsupportedFlags,
}

/// `--format`: the start-up summary's shape, as in `spin up`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SummaryFormat {
    /// `Serving URL`, then each route with its component and description.
    Plain,
    /// One JSON object: `base_url` and `routes` (`id`, `route`, `wildcard`, `description`).
    Json,
}

impl UpArgs {
    /// A host for this process's own use (`demo`, `experiment`): every flag
    /// at its default but a free loopback port.
    pub fn in_process(app: AppArgs) -> Self {
        Self {
            app,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            find_free_port: false,
            tls_cert: None,
            tls_key: None,
            key_values: Vec::new(),
            component_ids: Vec::new(),
            format: SummaryFormat::Plain,
            log_dir: None,
            truncate_logs: false,
            follow: Vec::new(),
            quiet: false,
            max_instance_reuse_count: None,
            max_instance_concurrent_reuse_count: None,
            idle_instance_timeout: None,
            request_timeout: parse_duration(DEFAULT_REQUEST_TIMEOUT)
                .expect("the default request timeout parses"),
            max_component_instances: None,
            limits: ServeLimits::default(),
            disable_pooling: false,
            disable_cache: false,
            cache: None,
            debug_info: false,
            perfmap: false,
            max_instance_memory: None,
            instances: None,
            routing: DEFAULT_ROUTING,
            restart_delay: parse_duration(DEFAULT_RESTART_DELAY)
                .expect("the default restart delay parses"),
            lab_api: DEFAULT_LAB_API,
            kv_faults: None,
            host_profile: HostProfile::default(),
            unsupported: Default::default(),
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
        let policy = ReusePolicy {
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
        };
        Ok(if self.host_profile.reuses_instances() {
            policy
        } else {
            policy.fresh_per_request()
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

    /// Where the components' output goes: `-L` (default `logs` in `state_dir`), `--follow`,
    /// `--quiet`, `--truncate-logs`.
    pub fn guest_output(&self, state_dir: &std::path::Path) -> GuestOutput {
        let log_dir = match &self.log_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(dir.clone()),
            None => Some(state_dir.join("logs")),
        };
        let follow = if self.quiet {
            FollowComponents::None
        } else if self.follow.is_empty() {
            FollowComponents::All
        } else {
            FollowComponents::Named(self.follow.iter().cloned().collect())
        };
        GuestOutput {
            log_dir,
            truncate: self.truncate_logs,
            follow,
        }
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
            host_profile = %self.host_profile,
            limits = ?self.limits,
            "cartlab up ready"
        );
        print_summary(&host.url, &loaded.manifest, self.format);
        super::shutdown_signal().await;
        host.stop().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `--format json`: Spin's fields, in Spin's order.
#[derive(serde::Serialize)]
struct JsonSummary<'a> {
    base_url: &'a str,
    routes: Vec<JsonRoute<'a>>,
}

#[derive(serde::Serialize)]
struct JsonRoute<'a> {
    id: &'a str,
    route: &'a str,
    wildcard: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

/// The summary `spin up` prints, in its `--format`; tests read the address from it. A closed
/// stdout must not take the host down, so write errors are ignored.
fn print_summary(url: &str, manifest: &AppManifest, format: SummaryFormat) {
    use std::io::Write as _;
    let description = |component: &str| {
        manifest
            .components
            .get(component)
            .and_then(|decl| decl.description.clone())
    };
    let summary = match format {
        SummaryFormat::Plain => {
            let mut summary = format!("Serving {url}\nAvailable Routes:\n");
            for route in manifest.router.routes() {
                let (shown, wildcard) = match route.route.strip_suffix("/...") {
                    Some(prefix) => (prefix, " (wildcard)"),
                    None => (route.route.as_str(), ""),
                };
                summary.push_str(&format!("  {}: {url}{shown}{wildcard}\n", route.component));
                if let Some(text) = description(&route.component) {
                    summary.push_str(&format!("    {text}\n"));
                }
            }
            summary
        }
        SummaryFormat::Json => {
            let routes = manifest
                .router
                .routes()
                .map(|route| {
                    let (path, wildcard) = match route.route.strip_suffix("/...") {
                        Some("") => ("/", true),
                        Some(prefix) => (prefix, true),
                        None => (route.route.as_str(), false),
                    };
                    JsonRoute {
                        id: &route.component,
                        route: path,
                        wildcard,
                        description: description(&route.component),
                    }
                })
                .collect();
            let summary = JsonSummary {
                base_url: url,
                routes,
            };
            // Strings and booleans: serialising cannot fail.
            format!(
                "{}\n",
                serde_json::to_string_pretty(&summary).unwrap_or_default()
            )
        }
    };
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
