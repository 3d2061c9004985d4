//! Spin application manifest (`spin.toml`, manifest version 2).
//!
//! Read in three steps, each error naming the file, the place (component, trigger,
//! variable) and the field: the version; one pass that refuses what Spin defines but
//! cartlab does not implement (never silently ignored); then serde into [`schema`]'s
//! closed types, and the checks serde cannot make (names, templates, routes).

mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use toml::{Table, Value};

use crate::app::expressions::{Template, validate_id, validate_manifest_name};
use crate::app::routes::{HttpRoute, Router};
use schema::{
    BuildToml, CommandsToml, ComponentRefToml, ComponentToml, HttpTriggerToml, RouteToml,
    SourceToml, SpinToml,
};

/// The manifest file name `spin up` looks for in a directory.
pub const MANIFEST_FILE: &str = "spin.toml";

#[derive(Debug, Clone)]
pub struct AppManifest {
    /// The manifest file, absolute.
    pub path: PathBuf,
    /// Its directory: component sources and build workdirs are relative to it.
    pub dir: PathBuf,
    pub name: String,
    pub version: Option<String>,
    pub variables: BTreeMap<String, VariableDecl>,
    /// The `[[trigger.http]]` routes, checked; [`Router::routes`] lists them in manifest order.
    pub router: Router,
    pub components: BTreeMap<String, ComponentDecl>,
}

impl AppManifest {
    /// `--component-id`: only these components and their routes, as `spin up -c` runs them.
    pub fn retain_components(mut self, ids: &[String]) -> Result<Self> {
        let unknown: Vec<&str> = ids
            .iter()
            .filter(|id| !self.components.contains_key(id.as_str()))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            bail!(
                "--component-id names components that are not in the app: {}; the app has: {}",
                unknown.join(", "),
                self.components
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        self.components.retain(|id, _| ids.contains(id));
        let routes: Vec<HttpRoute> = self
            .router
            .routes()
            .filter(|route| ids.contains(&route.component))
            .cloned()
            .collect();
        self.router = Router::new(&routes)?;
        Ok(self)
    }
}

#[cfg(test)]
impl AppManifest {
    /// An app `a` at `/app/spin.toml` with these components and nothing else, for unit tests.
    pub(crate) fn of_components(components: impl IntoIterator<Item = ComponentDecl>) -> Self {
        Self {
            path: "/app/spin.toml".into(),
            dir: "/app".into(),
            name: "a".into(),
            version: None,
            variables: BTreeMap::new(),
            router: Router::default(),
            components: components
                .into_iter()
                .map(|component| (component.id.clone(), component))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    pub default: Option<String>,
    pub required: bool,
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDecl {
    pub id: String,
    /// Printed under the component's routes at start-up, as Spin does.
    pub description: Option<String>,
    /// Absolute, resolved against the manifest directory.
    pub source: PathBuf,
    pub key_value_stores: Vec<String>,
    /// Raw templates, e.g. `"{{ api_key }}"`.
    pub variables: BTreeMap<String, String>,
    pub environment: BTreeMap<String, String>,
    pub allowed_outbound_hosts: Vec<String>,
    pub build: Option<BuildDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildDecl {
    /// Spin accepts one command or a list run in order; a single command is a list of one.
    pub commands: Vec<String>,
    /// Absolute: the manifest directory joined with the (relative) `workdir`.
    pub workdir: PathBuf,
    /// Globs relative to `workdir`.
    pub watch: Vec<String>,
}

/// Loads `from`: a `spin.toml` or a directory containing one (like `spin up -f`).
pub fn load(from: &Path) -> Result<AppManifest> {
    let path = if from.is_dir() {
        from.join(MANIFEST_FILE)
    } else {
        from.to_path_buf()
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read application manifest {}", path.display()))?;
    let shown = path.display().to_string();
    let abs = std::path::absolute(&path)
        .with_context(|| format!("cannot make {} absolute", path.display()))?;
    parse(&text, &abs, &shown)
}

/// Parses manifest text. `path` (absolute) gives the base directory; `shown` is how errors
/// name the file.
pub fn parse(text: &str, path: &Path, shown: &str) -> Result<AppManifest> {
    parse_inner(text, path).map_err(|e| anyhow!("{shown}: {e}"))
}

fn parse_inner(text: &str, path: &Path) -> Result<AppManifest, String> {
    let dir = path
        .parent()
        .ok_or_else(|| "manifest path has no parent directory".to_owned())?
        .to_path_buf();
    let doc: Table = toml::from_str(text).map_err(|e| format!("invalid TOML: {e}"))?;

    match doc.get("spin_manifest_version") {
        None => {
            return Err(
                "missing field `spin_manifest_version` (cartlab up reads Spin manifest version 2: `spin_manifest_version = 2`)"
                    .into(),
            );
        }
        Some(Value::Integer(2)) => {}
        Some(other) => {
            return Err(format!(
                "field `spin_manifest_version`: {other} is not supported; cartlab up reads Spin manifest version 2 (`spin_manifest_version = 2`)"
            ));
        }
    }
    schema::refuse_unsupported(&doc)?;
    let spin: SpinToml = schema::read(Value::Table(doc), "")?;

    let app = spin
        .application
        .ok_or_else(|| "missing table [application]".to_owned())?;
    if let Some(base) = app.trigger.and_then(|t| t.http).and_then(|h| h.base)
        && base != "/"
    {
        return Err(format!(
            "[application.trigger.http]: field `base` = {base:?} is not supported by cartlab up (only \"/\")"
        ));
    }

    let mut variables = BTreeMap::new();
    for (name, decl) in spin.variables {
        let at = format!("variable `{name}`: ");
        validate_manifest_name(&name).map_err(|e| format!("{at}invalid name: {e}"))?;
        // Spin's loader: "must be `required` OR have a `default`".
        if decl.required == decl.default.is_some() {
            return Err(format!(
                "{at}must be `required` OR have a `default` (exactly one of them)"
            ));
        }
        let decl = VariableDecl {
            default: decl.default,
            required: decl.required,
            secret: decl.secret,
        };
        variables.insert(name, decl);
    }

    let mut components = BTreeMap::new();
    for (id, comp) in spin.component {
        let at = format!("component `{id}`: ");
        validate_id(&id, '-', false).map_err(|e| format!("{at}invalid component id: {e}"))?;
        let decl = component(&id, comp, &dir, &variables, &at)?;
        components.insert(id, decl);
    }

    let triggers = spin
        .trigger
        .ok_or_else(|| "missing [[trigger.http]]: cartlab up serves HTTP triggers".to_owned())?;
    let mut routes = Vec::new();
    for (i, t) in triggers.http.into_iter().enumerate() {
        let at = format!("[[trigger.http]] #{}: ", i + 1);
        let t: HttpTriggerToml = schema::read(Value::Table(t), &at)?;
        routes.push(http_route(t, &components, &at)?);
    }
    if routes.is_empty() {
        return Err("no [[trigger.http]] routes".into());
    }
    // Route syntax, duplicates: the router is the one authority, built once, here.
    let router = Router::new(&routes).map_err(|e| format!("{e:#}"))?;

    Ok(AppManifest {
        path: path.to_path_buf(),
        dir,
        name: app.name,
        version: app.version.filter(|v| !v.is_empty()),
        variables,
        router,
        components,
    })
}

fn component(
    id: &str,
    comp: ComponentToml,
    dir: &Path,
    app_vars: &BTreeMap<String, VariableDecl>,
    at: &str,
) -> Result<ComponentDecl, String> {
    let source = match comp.source {
        SourceToml::Local(s) => dir.join(s),
        SourceToml::Remote { .. } => {
            return Err(format!(
                "{at}field `source` = {{ url, digest }} (a remote component) is not supported by cartlab up: use a local path"
            ));
        }
        SourceToml::Registry { .. } => {
            return Err(format!(
                "{at}field `source` = {{ package, version }} (a registry component) is not supported by cartlab up: use a local path"
            ));
        }
    };

    for label in &comp.key_value_stores {
        // Spin accepts kebab-case or snake_case labels.
        if validate_id(label, '-', false).is_err() && validate_id(label, '_', false).is_err() {
            return Err(format!(
                "{at}field `key_value_stores`: invalid label {label:?}: expected kebab-case or snake_case"
            ));
        }
    }

    for (name, raw) in &comp.variables {
        let vat = format!("{at}variable `{name}`: ");
        validate_manifest_name(name).map_err(|e| format!("{vat}invalid name: {e}"))?;
        let template = Template::parse(raw).map_err(|e| format!("{vat}{e}"))?;
        for used in template.variables() {
            if !app_vars.contains_key(used) {
                return Err(format!(
                    "{vat}template {raw:?} refers to `{used}`, which is not declared in [variables]"
                ));
            }
        }
    }

    let build = comp
        .build
        .map(|b| build(b, dir, &format!("{at}[component.{id}.build]: ")))
        .transpose()?;

    Ok(ComponentDecl {
        id: id.to_owned(),
        description: comp.description,
        source,
        key_value_stores: comp.key_value_stores,
        variables: comp.variables,
        environment: comp.environment,
        allowed_outbound_hosts: comp.allowed_outbound_hosts,
        build,
    })
}

fn build(b: BuildToml, dir: &Path, at: &str) -> Result<BuildDecl, String> {
    let commands = match b.command {
        CommandsToml::One(c) => vec![c],
        CommandsToml::Many(cs) => cs,
    };
    let workdir = match b.workdir {
        None => dir.to_path_buf(),
        // Spin: "The workdir specified in the application file must be relative."
        Some(w) if Path::new(&w).has_root() => {
            return Err(format!("{at}field `workdir` must be relative, got {w:?}"));
        }
        Some(w) => dir.join(w),
    };
    Ok(BuildDecl {
        commands,
        workdir,
        watch: b.watch,
    })
}

fn http_route(
    t: HttpTriggerToml,
    components: &BTreeMap<String, ComponentDecl>,
    at: &str,
) -> Result<HttpRoute, String> {
    let route = match t.route {
        RouteToml::Path(r) => r,
        RouteToml::Private { .. } => {
            return Err(format!(
                "{at}field `route` = {{ private = true }} (a private endpoint) is not supported by cartlab up"
            ));
        }
    };
    let at = format!("{at}route {route:?}: ");
    let component = match t.component {
        ComponentRefToml::Id(c) => c,
        ComponentRefToml::Inline(_) => {
            return Err(format!(
                "{at}field `component` as an inline table is not supported by cartlab up: declare [component.<id>] and name it"
            ));
        }
    };
    if !components.contains_key(&component) {
        return Err(format!(
            "{at}component `{component}` is not defined (no [component.{component}])"
        ));
    }
    match t.executor.map(|e| e.kind).as_deref() {
        None | Some("spin" | "http") => {}
        Some("wagi") => {
            return Err(format!(
                "{at}field `executor` = {{ type = \"wagi\" }} is not supported by cartlab up"
            ));
        }
        Some(other) => return Err(format!("{at}field `executor`: unknown type {other:?}")),
    }
    Ok(HttpRoute { route, component })
}
