//! `cartlab`: the lab host and tools for the sticky-session lesson. This file
//! only parses the command line, sets up logging and dispatches; the commands
//! live in `cartlab::commands`.

use cartlab::commands::cluster::ClusterArgs;
use cartlab::commands::demo::DemoArgs;
use cartlab::commands::experiment::ExperimentArgs;
use cartlab::commands::up::UpArgs;
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// How long the instance workers still alive get to end (each logs its shutdown).
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

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
    // Boxed: the flags of `up` outweigh the others' many times over.
    Up(Box<UpArgs>),
    /// The seed journey against both carts side by side: add, crash, read.
    Demo(DemoArgs),
    /// Simulated shoppers under a matrix of recycling policies, or against running apps
    /// (--url); table, JSON, CSV, plot.
    Experiment(ExperimentArgs),
    /// N `cartlab up` processes behind HAProxy (sticky or round-robin) sharing one Redis:
    /// `kill -9` one and see which carts survive.
    ///
    /// Prints `Serving http://ADDR` (HAProxy's front) first, then one line per member,
    /// `Member NAME: pid PID, http://127.0.0.1:PORT`: NAME is its HAProxy server name and
    /// sticky cookie value, the URL reaches it directly. `kill -9 PID` crashes that member;
    /// HAProxy's health check (GET /.well-known/spin/health every 200 ms) takes it out of
    /// rotation and the cluster keeps serving on the others. Every answer through the front
    /// carries `x-cartlab-member: NAME`, and its `x-cartlab-instance` is prefixed with `NAME/`
    /// (`m2/637b8e92`), so a client (`cartlab experiment --url`, a test) sees which member
    /// served it. Ctrl-C or SIGTERM stops HAProxy and the members.
    ///
    /// Each member is a plain `cartlab up` (Spin's instances on demand). For the seed's
    /// servers, one long-lived instance per component in each process, pass `-- --instances 1`.
    Cluster(ClusterArgs),
}

impl Command {
    /// The host's lifecycle log is the point of `up`; for the clients it is
    /// noise, and so are the experiment's expected casualties (requests in
    /// flight on a crashing instance).
    fn default_log_level(&self) -> &'static str {
        match self {
            Command::Up(_) => "info",
            Command::Demo(_) => "warn",
            Command::Experiment(_) => "error",
            Command::Cluster(_) => "info",
        }
    }

    async fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Up(args) => args.execute().await,
            Command::Demo(args) => args.execute().await,
            Command::Experiment(args) => args.execute().await,
            Command::Cluster(args) => args.execute().await,
        }
    }
}

/// Measured in `bench/results/`: glibc's malloc and free were a tenth of the host's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = cli.command.default_log_level();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // On one CPU (a pinned process, a one-core container) a work-stealing pool has no one to
    // steal from: its queues and wake-ups are pure cost.
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let built = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match built {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("Error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli.command.execute());
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
