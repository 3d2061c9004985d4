//! The `cartlab` subcommands: each a clap `Args` struct that is its own
//! configuration (its doc comments are the `--help`), with an `execute`.

pub mod cluster;
pub mod demo;
pub mod experiment;
pub mod up;

use std::path::PathBuf;

/// The manifest `--from` names when it is not given, as in `spin up`.
pub const DEFAULT_MANIFEST: &str = "spin.toml";

/// The app to load, as `spin up` names it.
#[derive(clap::Args, Clone, Debug)]
pub struct AppArgs {
    /// The application manifest, or a directory holding spin.toml.
    #[arg(short = 'f', long = "from", aliases = ["from-file", "file"], default_value = DEFAULT_MANIFEST)]
    pub from: PathBuf,
    /// Runtime config (key-value stores); without one, `default` is SQLite in the state dir.
    #[arg(long, env = "RUNTIME_CONFIG_FILE")]
    pub runtime_config_file: Option<PathBuf>,
    /// Where the embedded stores live [default: `.spin` beside the manifest].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Application variable KEY=VALUE, KEY=@file or @file.json/@file.toml
    /// (beside SPIN_VARIABLE_* environment variables).
    #[arg(long = "variable", value_parser = crate::app::variables::parse_variable_source)]
    pub variables: Vec<crate::app::variables::VariableSource>,
    /// Environment variable KEY=VALUE for every component.
    #[arg(short = 'e', long = "env", value_parser = crate::app::variables::parse_key_value)]
    pub env: Vec<(String, String)>,
    /// Run the manifest's build commands for components whose .wasm is missing or older than
    /// their `watch` files before loading, like `spin up --build`. Without it nothing is built
    /// and a stale component is served as it is (with a warning).
    #[arg(long, env = "SPIN_ALWAYS_BUILD", value_parser = clap::builder::BoolishValueParser::new())]
    pub build: bool,
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
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
