//! Spin application variables: `[variables]` in spin.toml, `[component.x.variables]`
//! templates, and the value sources `spin up` uses.
//!
//! Priority of value sources is Spin's: `--variable KEY=VALUE` (Spin inserts its static
//! provider first), then the environment variable `SPIN_VARIABLE_<NAME UPPERCASE>`, then the
//! manifest `default`. A variable without a default (Spin requires such a variable to be
//! marked `required`) that no source resolves stops start-up, as in Spin.
//!
//! Not implemented: Spin's env provider also falls back to a `.env` file in the current
//! directory, and the runtime-config `[[variables_provider]]` sources (Vault, Azure). The
//! runtime config rejects the latter; the `.env` fallback is simply absent.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};

use crate::app::expressions::{Template, validate_key};
use crate::app::manifest::AppManifest;

/// The prefix of Spin's environment-variable provider.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// The environment variable that feeds application variable `name`.
pub fn env_name(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase())
}

/// The errors of `spin:variables/variables@3.0.0#get` that a lookup can produce; the
/// payload is the message Spin puts in the WIT variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableError {
    /// `error::invalid-name(string)`
    InvalidName(String),
    /// `error::undefined(string)`
    Undefined(String),
}

impl fmt::Display for VariableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName(m) => write!(f, "invalid variable name: {m}"),
            Self::Undefined(m) => write!(f, "undefined variable: {m}"),
        }
    }
}

impl std::error::Error for VariableError {}

/// Every component's variables, resolved once at start-up (the sources cannot change while
/// cartlab runs: the CLI is fixed and the environment is read at start-up).
#[derive(Clone, Default)]
pub struct Variables {
    /// component id -> variable name -> resolved value
    components: BTreeMap<String, BTreeMap<String, String>>,
    /// application variable name -> resolved value (templates in
    /// `allowed_outbound_hosts` refer to these, as in Spin)
    app: BTreeMap<String, String>,
}

// Values may be secrets: never print them.
impl fmt::Debug for Variables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (component, vars) in &self.components {
            m.entry(component, &vars.keys().collect::<Vec<_>>());
        }
        m.finish()
    }
}

impl Variables {
    /// Resolves every application variable from `cli` (the `--variable` map), then
    /// `env("SPIN_VARIABLE_<NAME>")`, then the manifest default, and renders every
    /// component's templates. Fails naming the variables no source resolves.
    pub fn resolve(
        manifest: &AppManifest,
        cli: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            let value = cli
                .get(name)
                .cloned()
                .or_else(|| env(&env_name(name)))
                .or_else(|| decl.default.clone());
            match value {
                Some(v) => {
                    values.insert(name.clone(), v);
                }
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            let how = missing
                .iter()
                .map(|n| format!("`--variable {n}=...` or {}", env_name(n)))
                .collect::<Vec<_>>()
                .join("; ");
            bail!(
                "{}: no value for required application variable(s) {}: set {how}",
                manifest.path.display(),
                missing
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        // Spin ignores --variable keys that no [variables] entry declares; so do we, but say so.
        for key in cli.keys().filter(|k| !manifest.variables.contains_key(*k)) {
            tracing::warn!(
                variable = %key,
                "--variable {key}=... names no application variable in [variables]; ignored"
            );
        }

        let mut components = BTreeMap::new();
        for (id, component) in &manifest.components {
            let mut resolved = BTreeMap::new();
            for (name, raw) in &component.variables {
                // The manifest loader validated templates already; re-check so this
                // function is safe on a hand-built manifest too.
                let rendered = Template::parse(raw)
                    .and_then(|t| t.render(&values))
                    .map_err(|e| anyhow!("component `{id}`: variable `{name}`: {e}"))?;
                resolved.insert(name.clone(), rendered);
            }
            components.insert(id.clone(), resolved);
        }
        Ok(Self {
            components,
            app: values,
        })
    }

    /// What `spin:variables/get(name)` returns to component `component`.
    pub fn component_value(&self, component: &str, name: &str) -> Result<String, VariableError> {
        validate_key(name).map_err(VariableError::InvalidName)?;
        let vars = self.components.get(component).ok_or_else(|| {
            VariableError::Undefined(format!("no variable for component {component:?}"))
        })?;
        vars.get(name).cloned().ok_or_else(|| {
            VariableError::Undefined(format!("no variable for {component:?}.{name:?}"))
        })
    }

    /// The resolved application variables (`[variables]`).
    pub fn app_values(&self) -> &BTreeMap<String, String> {
        &self.app
    }

    /// All of a component's resolved variables (for `wasi:config/store#get-all`-like uses).
    pub fn component_values(&self, component: &str) -> Option<&BTreeMap<String, String>> {
        self.components.get(component)
    }
}

/// clap `value_parser` for `KEY=VALUE` pairs (`-e/--env`): splits at the first `=`; the
/// value may be empty or contain `=`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// One `--variable` argument, with the forms `spin up` accepts: `key=value`, `key=@file`
/// (value is the file's content), `@file.json` / `@file.toml` (a map of names to string
/// values). Relative paths are relative to the current directory, as in Spin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VariableSource {
    Literal(String, String),
    FileContent(String, PathBuf),
    JsonFile(PathBuf),
    TomlFile(PathBuf),
}

impl FromStr for VariableSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix('@') {
            let path = PathBuf::from(path);
            match path.extension().and_then(|e| e.to_str()) {
                Some("json") => Ok(Self::JsonFile(path)),
                Some("toml") => Ok(Self::TomlFile(path)),
                _ => Err(format!(
                    "variable files must end in .json or .toml, got {s:?}"
                )),
            }
        } else if let Some((key, value)) = s.split_once('=') {
            if key.is_empty() {
                return Err(format!("expected KEY=VALUE, got {s:?}"));
            }
            match value.strip_prefix('@') {
                Some(path) => Ok(Self::FileContent(key.to_owned(), PathBuf::from(path))),
                None => Ok(Self::Literal(key.to_owned(), value.to_owned())),
            }
        } else {
            Err(format!(
                "variables must be in the form 'key=value', 'key=@file' or '@file.json'/'@file.toml', got {s:?}"
            ))
        }
    }
}

/// clap `value_parser` for `--variable`.
pub fn parse_variable_source(s: &str) -> Result<VariableSource, String> {
    s.parse()
}

impl VariableSource {
    fn read(&self) -> Result<BTreeMap<String, String>> {
        match self {
            Self::Literal(k, v) => Ok(BTreeMap::from([(k.clone(), v.clone())])),
            Self::FileContent(k, path) => {
                let v = std::fs::read_to_string(path)
                    .with_context(|| format!("--variable {k}=@{}: cannot read", path.display()))?;
                Ok(BTreeMap::from([(k.clone(), v)]))
            }
            Self::JsonFile(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("--variable @{}: cannot read", path.display()))?;
                serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "--variable @{}: expected a JSON object of string values",
                        path.display()
                    )
                })
            }
            Self::TomlFile(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--variable @{}: cannot read", path.display()))?;
                toml::from_str(&text).with_context(|| {
                    format!(
                        "--variable @{}: expected a TOML table of string values",
                        path.display()
                    )
                })
            }
        }
    }
}

/// Merges `--variable` arguments in order; a later value for the same key wins (Spin's rule).
pub fn collect_cli_variables(sources: &[VariableSource]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for source in sources {
        out.extend(source.read()?);
    }
    Ok(out)
}
