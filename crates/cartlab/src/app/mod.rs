//! What the user wrote: `spin.toml`, `runtime-config.toml` and variable values, read and
//! checked once at start-up. Nothing here knows the server, the pool or the stores.

pub mod duration;
pub mod expressions;
pub mod manifest;
pub mod routes;
pub mod runtime_config;
pub mod sampled;
pub mod variables;

/// The keys toml names for a deserialize error, outermost first (`component`, `cart`,
/// `build`): toml shows them only in its Display, as a last line "in `a.b`".
fn key_path(e: &toml::de::Error) -> Vec<String> {
    let shown = e.to_string();
    let path = shown
        .lines()
        .find_map(|l| l.strip_prefix("in `").and_then(|l| l.strip_suffix('`')));
    path.map(|p| p.split('.').map(str::to_owned).collect())
        .unwrap_or_default()
}
