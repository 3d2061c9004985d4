//! `cartlab`: the lab host and tools for the sticky-session lesson. This file
//! only parses the command line, sets up logging and dispatches; the commands
//! live in `cartlab::commands`.

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
    Up(UpArgs),
    /// The seed journey against both carts side by side: add, crash, read.
    Demo(DemoArgs),
    /// Simulated shoppers under a matrix of recycling policies; table, JSON, CSV, plot.
    Experiment(ExperimentArgs),
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
        }
    }

    async fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Up(args) => args.execute().await,
            Command::Demo(args) => args.execute().await,
            Command::Experiment(args) => args.execute().await,
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
    let runtime = match tokio::runtime::Runtime::new() {
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
