//! `cartlab`: the lab host and tools for the sticky-session lesson.

use anyhow::Context as _;
use cartlab::fleet::{FleetOptions, Routing};
use cartlab::lab::LabAccess;
use cartlab::pool::{ReusePolicy, Sampled, parse_duration};
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
}

/// Flags keep `spin up`'s names, defaults and `A..B` range syntax.
#[derive(Args)]
struct UpArgs {
    /// The application manifest, or a directory holding spin.toml.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Runtime config (key-value stores); without one, `default` is SQLite in the state dir.
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Where the embedded stores live (default: `.spin` beside the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
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
    /// Application variable KEY=VALUE, KEY=@file or @file.json/@file.toml
    /// (beside SPIN_VARIABLE_* environment variables).
    #[arg(long = "variable", value_parser = cartlab::variables::parse_variable_source)]
    variables: Vec<cartlab::variables::VariableSource>,
    /// Environment variable KEY=VALUE for every component.
    #[arg(short = 'e', long = "env", value_parser = cartlab::variables::parse_key_value)]
    env: Vec<(String, String)>,
    /// Do not build components whose .wasm is missing or older than their sources.
    #[arg(long)]
    no_build: bool,
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
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
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

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let policy = reuse_policy(&args)?;
    let options = UpOptions {
        from: args.from,
        runtime_config_file: args.runtime_config_file,
        state_dir: args.state_dir,
        policy,
        fleet: args.instances.map(|instances| FleetOptions {
            instances: usize::from(instances),
            routing: args.routing,
            restart_delay: args.restart_delay,
        }),
        lab_access: args.lab_api,
        variables: cartlab::variables::collect_cli_variables(&args.variables)?,
        environment: args.env,
        build: !args.no_build,
        disable_pooling: args.disable_pooling,
        disable_cache: args.disable_cache,
        max_instance_memory: args.max_instance_memory,
    };
    let loaded = load(&options).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    for (label, store) in &loaded.stores {
        tracing::info!(%label, store = %store.describe(), "key-value store");
    }
    tracing::info!(
        app = %loaded.manifest.name,
        max_instance_reuse_count = %options.policy.max_reuse,
        max_instance_concurrent_reuse_count = %options.policy.max_concurrent,
        idle_instance_timeout = ?options.policy.idle_timeout.map(|timeout| timeout.to_string()),
        instances = ?options.fleet.map(|fleet| fleet.instances),
        routing = ?options.fleet.map(|fleet| fleet.routing.to_string()),
        lab_api = ?options.lab_access,
        "cartlab up ready"
    );
    // The same summary `spin up` prints; tests read the address from it. A
    // closed stdout must not take the host down, so write errors are ignored.
    let mut summary = format!("Serving http://{address}\nAvailable Routes:\n");
    for route in &loaded.manifest.routes {
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
