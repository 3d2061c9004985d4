//! `cartlab`: the lab host and tools for the sticky-session lesson.

use anyhow::Context as _;
use cartlab::app::duration::parse_duration;
use cartlab::fleet::{FleetOptions, Routing};
use cartlab::kv::faults::FaultSpec;
use cartlab::lab::LabAccess;
use cartlab::pool::{ReusePolicy, Sampled};
use cartlab::up::{UpOptions, load};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "cartlab",
    version,
    about = "Run, break and measure the cartlab Spin app"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run spin.toml's components on wasmtime, like `spin up`.
    Up(UpArgs),
    /// The seed journey against both carts side by side: add, crash, read.
    Demo(DemoArgs),
    /// Simulated shoppers under a matrix of recycling policies; table, JSON, CSV, plot.
    Experiment(ExperimentArgs),
}

/// The app to load, as `spin up` names it.
#[derive(Args, Clone)]
struct AppArgs {
    /// The application manifest, or a directory holding spin.toml.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Runtime config (key-value stores); without one, `default` is SQLite in the state dir.
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Where the embedded stores live (default: `.spin` beside the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Application variable KEY=VALUE, KEY=@file or @file.json/@file.toml
    /// (beside SPIN_VARIABLE_* environment variables).
    #[arg(long = "variable", value_parser = cartlab::app::variables::parse_variable_source)]
    variables: Vec<cartlab::app::variables::VariableSource>,
    /// Environment variable KEY=VALUE for every component.
    #[arg(short = 'e', long = "env", value_parser = cartlab::app::variables::parse_key_value)]
    env: Vec<(String, String)>,
    /// Do not build components whose .wasm is missing or older than their sources.
    #[arg(long)]
    no_build: bool,
}

impl AppArgs {
    /// Options for a lab host with Spin's defaults.
    fn options(&self) -> anyhow::Result<UpOptions> {
        Ok(UpOptions {
            from: self.from.clone(),
            runtime_config_file: self.runtime_config_file.clone(),
            state_dir: self.state_dir.clone(),
            policy: ReusePolicy::default(),
            fleet: None,
            lab_access: LabAccess::Loopback,
            guest_output: false,
            variables: cartlab::app::variables::collect_cli_variables(&self.variables)?,
            environment: self.env.clone(),
            build: !self.no_build,
            disable_pooling: false,
            disable_cache: false,
            max_instance_memory: None,
            kv_faults: FaultSpec::default(),
        })
    }
}

#[derive(Args)]
struct DemoArgs {
    /// A running app (cartlab up, spin up, or deployed); without it a lab
    /// host is started for the run (Redis when 127.0.0.1:6379 answers).
    #[arg(long)]
    url: Option<String>,
    /// How long to wait after the crash before reading the carts again.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    wait: Duration,
    #[command(flatten)]
    app: AppArgs,
}

#[derive(Args)]
struct ExperimentArgs {
    /// Simulated shoppers per design in each scenario.
    #[arg(long, default_value_t = 24)]
    shoppers: usize,
    /// Actions each shopper takes (then it reads its cart one last time).
    #[arg(long, default_value_t = 30)]
    actions: usize,
    /// Pause before each action (e.g. 20ms, or a range 5ms..40ms).
    #[arg(long, default_value = "5ms..40ms")]
    think_time: Sampled<Duration>,
    /// Relative weights of the actions.
    #[arg(long, default_value = "add=60,view=30,remove=10")]
    mix: cartlab::experiment::Mix,
    /// In the crash scenarios: the chance a shopper crashes its instance before an action.
    #[arg(long, default_value_t = 0.02)]
    crash_rate: f64,
    /// Seed for the shoppers' choices (both designs see the same journeys).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Directory for results.json, results.csv and carts-intact.svg.
    #[arg(long, default_value = "experiment-results")]
    out: PathBuf,
    /// Run only this scenario (its exact name, or part of names: `pool`); repeatable.
    #[arg(long)]
    only: Vec<String>,
    #[command(flatten)]
    app: AppArgs,
}

/// Flags keep `spin up`'s names, defaults and `A..B` range syntax.
#[derive(Args)]
struct UpArgs {
    #[command(flatten)]
    app: AppArgs,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Requests one instance serves before it is recycled (N or A..B) [default: 128;
    /// with --instances: unlimited].
    #[arg(long)]
    max_instance_reuse_count: Option<Sampled<u64>>,
    /// Requests in flight on one instance; past it another instance starts (N or A..B)
    /// [default: 16; not with --instances].
    #[arg(long)]
    max_instance_concurrent_reuse_count: Option<Sampled<u64>>,
    /// An instance idle longer than this is dropped (e.g. 1s, 500ms, or A..B) [default: 1s;
    /// with --instances: never].
    #[arg(long)]
    idle_instance_timeout: Option<Sampled<Duration>>,
    /// A request without a response after this long fails with 500.
    #[arg(long, value_parser = parse_duration)]
    request_timeout: Option<Duration>,
    /// Allocate instance memory on demand instead of from a pool.
    #[arg(long)]
    disable_pooling: bool,
    /// Compile components afresh instead of using wasmtime's compilation cache.
    #[arg(long)]
    disable_cache: bool,
    /// Largest linear memory an instance may have, in bytes.
    #[arg(long)]
    max_instance_memory: Option<usize>,
    /// Lab only: keep N long-lived instances per component behind a load
    /// balancer (the seed's N servers) instead of Spin's instances on demand.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    instances: Option<u16>,
    /// Lab only, with --instances: how the balancer picks an instance.
    #[arg(long, value_enum, default_value_t = Routing::Sticky, requires = "instances")]
    routing: Routing,
    /// Lab only, with --instances: how long a crashed or recycled instance
    /// stays out of rotation before its replacement may start.
    #[arg(long, value_parser = parse_duration, default_value = "1s", requires = "instances")]
    restart_delay: Duration,
    /// Who may use the /_lab/ admin API (instances, recycling, events).
    #[arg(long, value_enum, default_value_t = LabAccess::Loopback)]
    lab_api: LabAccess,
    /// Lab only: key-value stores misbehave on purpose, a comma-separated list of
    /// `spin-4.1` (redis stores answer compare-and-swap inverted and `set` wipes the TTL,
    /// like Spin 4.1's Redis backend), `error-rate=P` (each operation fails with
    /// probability P; writes before or after being applied), `slow-writes=DURATION` (each
    /// write is applied, then answered after DURATION) [default: none].
    #[arg(long, value_name = "SPEC", value_parser = clap::value_parser!(FaultSpec))]
    kv_faults: Option<FaultSpec>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The host's lifecycle log is the point of `up`; for the clients it is
    // noise, and so are the experiment's expected casualties (requests in
    // flight on a crashing instance).
    let default_level = match cli.command {
        Command::Up(_) => "info",
        Command::Demo(_) => "warn",
        Command::Experiment(_) => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(args).await,
            Command::Demo(args) => demo(args).await,
            Command::Experiment(args) => experiment(args).await,
        }
    });
    // Ends the instance workers still alive (each logs its shutdown).
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Spin's defaults, or a fleet's: one long-lived instance per slot unless
/// the reuse flags say otherwise.
fn reuse_policy(args: &UpArgs) -> anyhow::Result<ReusePolicy> {
    let base = if args.instances.is_some() {
        if args.max_instance_concurrent_reuse_count.is_some() {
            anyhow::bail!(
                "--max-instance-concurrent-reuse-count does not apply with --instances: each slot is one instance"
            );
        }
        ReusePolicy::long_lived()
    } else {
        ReusePolicy::default()
    };
    Ok(ReusePolicy {
        max_reuse: args.max_instance_reuse_count.unwrap_or(base.max_reuse),
        max_concurrent: args
            .max_instance_concurrent_reuse_count
            .unwrap_or(base.max_concurrent),
        idle_timeout: args.idle_instance_timeout.or(base.idle_timeout),
        request_timeout: args.request_timeout,
    })
}

/// Exits non-zero when the stateless cart did not survive (or the journey
/// could not run).
async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let verdicts = cartlab::demo::run(cartlab::demo::DemoOptions {
        url: args.url,
        up: args.app.options()?,
        wait: args.wait,
    })
    .await?;
    if !verdicts.stateless_survived {
        anyhow::bail!("the stateless cart did not survive the crash: that is a bug");
    }
    Ok(())
}

async fn experiment(args: ExperimentArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.crash_rate) {
        anyhow::bail!("--crash-rate is a probability, between 0 and 1");
    }
    if args.shoppers == 0 || args.actions == 0 {
        anyhow::bail!("--shoppers and --actions must be at least 1");
    }
    cartlab::experiment::run(cartlab::experiment::ExperimentOptions {
        up: args.app.options()?,
        shoppers: args.shoppers,
        actions: args.actions,
        think_time: args.think_time,
        mix: args.mix,
        crash_rate: args.crash_rate,
        seed: args.seed,
        out: args.out,
        only: args.only,
    })
    .await?;
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let options = UpOptions {
        policy: reuse_policy(&args)?,
        fleet: args.instances.map(|instances| FleetOptions {
            instances: usize::from(instances),
            routing: args.routing,
            restart_delay: args.restart_delay,
        }),
        lab_access: args.lab_api,
        guest_output: true,
        disable_pooling: args.disable_pooling,
        disable_cache: args.disable_cache,
        max_instance_memory: args.max_instance_memory,
        kv_faults: args.kv_faults.unwrap_or_default(),
        ..args.app.options()?
    };
    let loaded = load(&options).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
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
    tracing::info!(
        app = %loaded.manifest.name,
        max_instance_reuse_count = %options.policy.max_reuse,
        max_instance_concurrent_reuse_count = %options.policy.max_concurrent,
        idle_instance_timeout = ?options.policy.idle_timeout.map(|timeout| timeout.to_string()),
        instances = ?options.fleet.map(|fleet| fleet.instances),
        routing = ?options.fleet.map(|fleet| fleet.routing.to_string()),
        lab_api = ?options.lab_access,
        kv_faults = %options.kv_faults,
        "cartlab up ready"
    );
    // The same summary `spin up` prints; tests read the address from it. A
    // closed stdout must not take the host down, so write errors are ignored.
    let mut summary = format!("Serving http://{address}\nAvailable Routes:\n");
    for route in loaded.manifest.router.routes() {
        let (shown, wildcard) = match route.route.strip_suffix("/...") {
            Some(prefix) => (prefix, " (wildcard)"),
            None => (route.route.as_str(), ""),
        };
        summary.push_str(&format!(
            "  {}: http://{address}{shown}{wildcard}\n",
            route.component
        ));
    }
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(summary.as_bytes());
        let _ = stdout.flush();
    }
    cartlab::server::serve(
        loaded.app.clone(),
        listener,
        shutdown_signal(),
        Duration::from_secs(5),
    )
    .await?;
    for runtime in loaded.app.components.values() {
        runtime.context.begin_shutdown();
    }
    if let Some(faults) = &loaded.faults {
        faults.log_summary();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down");
}
