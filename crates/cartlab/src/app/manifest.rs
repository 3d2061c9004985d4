//! Spin application manifest (`spin.toml`, manifest version 2).
//!
//! The file is parsed by `toml` into a table, then each table is checked key by key against
//! the fields Spin 4 defines, so every error names the file, the place (component, trigger,
//! variable) and the field; values are deserialized with serde. A field Spin defines but
//! cartlab does not implement is a start-up error, never silently ignored. Field lists
//! follow spin's `crates/manifest/src/schema/v2.rs` and `crates/http/src/config.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::app::variables::{Template, validate_id, validate_manifest_name};

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
    /// In manifest order.
    pub routes: Vec<HttpRoute>,
    pub components: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableDecl {
    pub default: Option<String>,
    pub required: bool,
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// As written, e.g. `/stateless/...` or `/exact`.
    pub route: String,
    pub component: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentDecl {
    pub id: String,
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

// Spin 4 manifest fields that cartlab does not implement: named so the error says
// "not supported" rather than "unknown".
const TOP_FIELDS: &[&str] = &[
    "spin_manifest_version",
    "application",
    "variables",
    "trigger",
    "component",
];
const APP_FIELDS: &[&str] = &[
    "name",
    "version",
    "description",
    "authors",
    "trigger",
    "tool",
];
const APP_UNSUPPORTED: &[&str] = &["targets"];
const VARIABLE_FIELDS: &[&str] = &["description", "required", "default", "secret"];
const COMPONENT_FIELDS: &[&str] = &[
    "source",
    "description",
    "variables",
    "environment",
    "allowed_outbound_hosts",
    "key_value_stores",
    "build",
    "tool",
];
const COMPONENT_UNSUPPORTED: &[&str] = &[
    "files",
    "exclude_files",
    "allowed_http_hosts",
    "sqlite_databases",
    "ai_models",
    "targets",
    "dependencies_inherit_configuration",
    "dependencies",
    "profile",
];
const BUILD_FIELDS: &[&str] = &["command", "workdir", "watch"];
const HTTP_TRIGGER_FIELDS: &[&str] = &["id", "component", "route", "executor"];
const HTTP_TRIGGER_UNSUPPORTED: &[&str] = &["static_response", "components", "dependencies"];

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
    check_keys(&doc, TOP_FIELDS, &[], "")?;

    // [application]
    let app = table_field(&doc, "application", "")?
        .ok_or_else(|| "missing table [application]".to_owned())?;
    check_keys(app, APP_FIELDS, APP_UNSUPPORTED, "[application]: ")?;
    let name: String = field(app, "name", "[application]: ")?
        .ok_or_else(|| "[application]: missing field `name`".to_owned())?;
    let version: Option<String> = field(app, "version", "[application]: ")?;
    let _: Option<String> = field(app, "description", "[application]: ")?;
    let _: Option<Vec<String>> = field(app, "authors", "[application]: ")?;
    let _: Option<BTreeMap<String, Table>> = field(app, "tool", "[application]: ")?;
    if let Some(triggers) = table_field(app, "trigger", "[application]: ")? {
        for (ty, cfg) in triggers {
            let at = format!("[application.trigger.{ty}]: ");
            if ty != "http" {
                return Err(format!(
                    "{at}trigger type `{ty}` is not supported by cartlab up (only http)"
                ));
            }
            let cfg = cfg
                .as_table()
                .ok_or_else(|| format!("{at}expected a table"))?;
            check_keys(cfg, &["base"], &[], &at)?;
            if let Some(base) = field::<String>(cfg, "base", &at)?
                && base != "/"
            {
                return Err(format!(
                    "{at}field `base` = {base:?} is not supported by cartlab up (only \"/\")"
                ));
            }
        }
    }

    // [variables]
    let mut variables = BTreeMap::new();
    if let Some(vars) = table_field(&doc, "variables", "")? {
        for (vname, decl) in vars {
            let at = format!("variable `{vname}`: ");
            validate_manifest_name(vname).map_err(|e| format!("{at}invalid name: {e}"))?;
            let decl = decl
                .as_table()
                .ok_or_else(|| format!("{at}expected a table such as {{ default = \"...\" }}"))?;
            check_keys(decl, VARIABLE_FIELDS, &[], &at)?;
            let _: Option<String> = field(decl, "description", &at)?;
            let default: Option<String> = field(decl, "default", &at)?;
            let required = field::<bool>(decl, "required", &at)?.unwrap_or(false);
            let secret = field::<bool>(decl, "secret", &at)?.unwrap_or(false);
            // Spin's loader: "must be `required` OR have a `default`".
            if required == default.is_some() {
                return Err(format!(
                    "{at}must be `required` OR have a `default` (exactly one of them)"
                ));
            }
            variables.insert(
                vname.clone(),
                VariableDecl {
                    default,
                    required,
                    secret,
                },
            );
        }
    }

    // [component.<id>]
    let mut components = BTreeMap::new();
    if let Some(comps) = table_field(&doc, "component", "")? {
        for (id, comp) in comps {
            let at = format!("component `{id}`: ");
            validate_id(id, '-', false).map_err(|e| format!("{at}invalid component id: {e}"))?;
            let comp = comp
                .as_table()
                .ok_or_else(|| format!("{at}expected a table"))?;
            let decl = parse_component(id, comp, &dir, &variables, &at)?;
            components.insert(id.clone(), decl);
        }
    }

    // [[trigger.http]]
    let triggers = table_field(&doc, "trigger", "")?
        .ok_or_else(|| "missing [[trigger.http]]: cartlab up serves HTTP triggers".to_owned())?;
    let mut routes = Vec::new();
    for (ty, list) in triggers {
        if ty != "http" {
            return Err(format!(
                "[[trigger.{ty}]]: trigger type `{ty}` is not supported by cartlab up (only [[trigger.http]])"
            ));
        }
        let list = list.as_array().ok_or_else(|| {
            "`trigger.http` must be an array of tables: [[trigger.http]]".to_owned()
        })?;
        for (i, t) in list.iter().enumerate() {
            let at = format!("[[trigger.http]] #{}: ", i + 1);
            let t = t
                .as_table()
                .ok_or_else(|| format!("{at}expected a table"))?;
            routes.push(parse_http_trigger(t, &components, &at)?);
        }
    }
    if routes.is_empty() {
        return Err("no [[trigger.http]] routes".into());
    }
    // Route syntax, duplicates: the router is the one authority.
    crate::app::routes::Router::new(&routes).map_err(|e| format!("{e:#}"))?;

    Ok(AppManifest {
        path: path.to_path_buf(),
        dir,
        name,
        version: version.filter(|v| !v.is_empty()),
        variables,
        routes,
        components,
    })
}

fn parse_component(
    id: &str,
    comp: &Table,
    dir: &Path,
    app_vars: &BTreeMap<String, VariableDecl>,
    at: &str,
) -> Result<ComponentDecl, String> {
    check_keys(comp, COMPONENT_FIELDS, COMPONENT_UNSUPPORTED, at)?;
    let _: Option<String> = field(comp, "description", at)?;
    let _: Option<BTreeMap<String, Table>> = field(comp, "tool", at)?;

    let source = match comp.get("source") {
        None => return Err(format!("{at}missing field `source`")),
        Some(Value::String(s)) => dir.join(s),
        Some(Value::Table(t)) if t.contains_key("url") => {
            return Err(format!(
                "{at}field `source` = {{ url, digest }} (a remote component) is not supported by cartlab up: use a local path"
            ));
        }
        Some(Value::Table(t)) if t.contains_key("package") => {
            return Err(format!(
                "{at}field `source` = {{ package, version }} (a registry component) is not supported by cartlab up: use a local path"
            ));
        }
        Some(other) => {
            return Err(format!(
                "{at}field `source`: expected a path string, got {other}"
            ));
        }
    };

    let key_value_stores: Vec<String> = field(comp, "key_value_stores", at)?.unwrap_or_default();
    for label in &key_value_stores {
        // Spin accepts kebab-case or snake_case labels.
        if validate_id(label, '-', false).is_err() && validate_id(label, '_', false).is_err() {
            return Err(format!(
                "{at}field `key_value_stores`: invalid label {label:?}: expected kebab-case or snake_case"
            ));
        }
    }

    let variables: BTreeMap<String, String> = field(comp, "variables", at)?.unwrap_or_default();
    for (name, raw) in &variables {
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

    let environment: BTreeMap<String, String> = field(comp, "environment", at)?.unwrap_or_default();
    let allowed_outbound_hosts: Vec<String> =
        field(comp, "allowed_outbound_hosts", at)?.unwrap_or_default();

    let build = match table_field(comp, "build", at)? {
        None => None,
        Some(b) => {
            let bat = format!("{at}[component.{id}.build]: ");
            check_keys(b, BUILD_FIELDS, &[], &bat)?;
            let commands = match b.get("command") {
                Some(Value::String(c)) => vec![c.clone()],
                Some(v @ Value::Array(_)) => v
                    .clone()
                    .try_into::<Vec<String>>()
                    .map_err(|e| format!("{bat}field `command`: {}", e.message()))?,
                Some(other) => {
                    return Err(format!(
                        "{bat}field `command`: expected a string or a list of strings, got {other}"
                    ));
                }
                None => return Err(format!("{bat}missing field `command`")),
            };
            let workdir = match field::<String>(b, "workdir", &bat)? {
                None => dir.to_path_buf(),
                // Spin: "The workdir specified in the application file must be relative."
                Some(w) if Path::new(&w).has_root() => {
                    return Err(format!("{bat}field `workdir` must be relative, got {w:?}"));
                }
                Some(w) => dir.join(w),
            };
            let watch: Vec<String> = field(b, "watch", &bat)?.unwrap_or_default();
            Some(BuildDecl {
                commands,
                workdir,
                watch,
            })
        }
    };

    Ok(ComponentDecl {
        id: id.to_owned(),
        source,
        key_value_stores,
        variables,
        environment,
        allowed_outbound_hosts,
        build,
    })
}

fn parse_http_trigger(
    t: &Table,
    components: &BTreeMap<String, ComponentDecl>,
    at: &str,
) -> Result<HttpRoute, String> {
    check_keys(t, HTTP_TRIGGER_FIELDS, HTTP_TRIGGER_UNSUPPORTED, at)?;
    let _: Option<String> = field(t, "id", at)?;
    let route = match t.get("route") {
        None => return Err(format!("{at}missing field `route`")),
        Some(Value::String(r)) => r.clone(),
        Some(Value::Table(_)) => {
            return Err(format!(
                "{at}field `route` = {{ private = true }} (a private endpoint) is not supported by cartlab up"
            ));
        }
        Some(other) => return Err(format!("{at}field `route`: expected a string, got {other}")),
    };
    let at = format!("{at}route {route:?}: ");
    let component = match t.get("component") {
        None => return Err(format!("{at}missing field `component`")),
        Some(Value::String(c)) => c.clone(),
        Some(Value::Table(_)) => {
            return Err(format!(
                "{at}field `component` as an inline table is not supported by cartlab up: declare [component.<id>] and name it"
            ));
        }
        Some(other) => {
            return Err(format!(
                "{at}field `component`: expected a component id string, got {other}"
            ));
        }
    };
    if !components.contains_key(&component) {
        return Err(format!(
            "{at}component `{component}` is not defined (no [component.{component}])"
        ));
    }
    if let Some(exec) = table_field(t, "executor", &at)? {
        check_keys(exec, &["type"], &[], &format!("{at}executor: "))?;
        match field::<String>(exec, "type", &at)?.as_deref() {
            Some("spin" | "http") => {}
            Some("wagi") => {
                return Err(format!(
                    "{at}field `executor` = {{ type = \"wagi\" }} is not supported by cartlab up"
                ));
            }
            Some(other) => return Err(format!("{at}field `executor`: unknown type {other:?}")),
            None => return Err(format!("{at}field `executor`: missing `type`")),
        }
    }
    Ok(HttpRoute { route, component })
}

fn check_keys(
    table: &Table,
    supported: &[&str],
    unsupported: &[&str],
    at: &str,
) -> Result<(), String> {
    for key in table.keys() {
        if supported.contains(&key.as_str()) {
            continue;
        }
        if unsupported.contains(&key.as_str()) {
            return Err(format!("{at}field `{key}` is not supported by cartlab up"));
        }
        return Err(format!(
            "{at}unknown field `{key}` (expected one of: {})",
            supported.join(", ")
        ));
    }
    Ok(())
}

/// Deserializes `table[key]` with serde, naming the field on a type error.
fn field<T: DeserializeOwned>(table: &Table, key: &str, at: &str) -> Result<Option<T>, String> {
    table
        .get(key)
        .map(|v| {
            v.clone()
                .try_into::<T>()
                .map_err(|e| format!("{at}field `{key}`: {}", e.message()))
        })
        .transpose()
}

fn table_field<'a>(table: &'a Table, key: &str, at: &str) -> Result<Option<&'a Table>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(Value::Table(t)) => Ok(Some(t)),
        Some(other) => Err(format!(
            "{at}field `{key}`: expected a table, got {}",
            other.type_str()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
spin_manifest_version = 2

[application]
name = "cart"
version = "0.1.0"
description = "carts"
authors = ["me"]

[application.trigger.http]
base = "/"

[variables]
redis_prefix = { default = "cart" }
api_key = { required = true, secret = true }

[[trigger.http]]
route = "/stateless/..."
component = "stateless-cart"

[[trigger.http]]
id = "sf"
route = "/stateful/..."
component = "stateful-cart"
executor = { type = "spin" }

[component.stateless-cart]
source = "target/wasm32-wasip2/release/stateless_cart.wasm"
key_value_stores = ["default"]
allowed_outbound_hosts = []
environment = { RUST_LOG = "info" }
[component.stateless-cart.variables]
prefix = "{{ redis_prefix }}:"
key = "{{api_key}}"
[component.stateless-cart.build]
command = "cargo build --target wasm32-wasip2 --release -p stateless-cart"
watch = ["src/**/*.rs", "Cargo.toml"]

[component.stateful-cart]
source = "target/wasm32-wasip2/release/stateful_cart.wasm"
[component.stateful-cart.build]
command = ["echo one", "echo two"]
workdir = "components/stateful-cart"
"#;

    fn p(text: &str) -> Result<AppManifest> {
        parse(text, Path::new("/app/spin.toml"), "spin.toml")
    }

    fn err(text: &str) -> String {
        format!("{:#}", p(text).unwrap_err())
    }

    /// GOOD with `from` replaced by `to` (asserting the replacement happened).
    fn edit(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "fixture lacks {from:?}");
        GOOD.replacen(from, to, 1)
    }

    #[test]
    fn parses_the_app_shape() {
        let m = p(GOOD).unwrap();
        assert_eq!(m.name, "cart");
        assert_eq!(m.version.as_deref(), Some("0.1.0"));
        assert_eq!(m.dir, Path::new("/app"));
        assert_eq!(
            m.routes,
            vec![
                HttpRoute {
                    route: "/stateless/...".into(),
                    component: "stateless-cart".into()
                },
                HttpRoute {
                    route: "/stateful/...".into(),
                    component: "stateful-cart".into()
                },
            ]
        );
        let sl = &m.components["stateless-cart"];
        assert_eq!(
            sl.source,
            Path::new("/app/target/wasm32-wasip2/release/stateless_cart.wasm")
        );
        assert_eq!(sl.key_value_stores, ["default"]);
        assert_eq!(sl.variables["prefix"], "{{ redis_prefix }}:");
        assert_eq!(sl.environment["RUST_LOG"], "info");
        let b = sl.build.as_ref().unwrap();
        assert_eq!(b.workdir, Path::new("/app"));
        assert_eq!(b.watch, ["src/**/*.rs", "Cargo.toml"]);
        let sf = &m.components["stateful-cart"];
        assert!(sf.key_value_stores.is_empty());
        let b = sf.build.as_ref().unwrap();
        assert_eq!(b.commands, ["echo one", "echo two"]);
        assert_eq!(b.workdir, Path::new("/app/components/stateful-cart"));
        assert_eq!(
            m.variables["api_key"],
            VariableDecl {
                default: None,
                required: true,
                secret: true
            }
        );
    }

    #[test]
    fn bad_toml_reports_line_and_column() {
        let e = err("spin_manifest_version = 2\n[application\nname = 1");
        assert!(e.starts_with("spin.toml: invalid TOML"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn manifest_version_must_be_2() {
        let e = err(&edit(
            "spin_manifest_version = 2",
            "spin_manifest_version = \"1\"",
        ));
        assert!(e.contains("`spin_manifest_version`"), "{e}");
        let e = err(&edit("spin_manifest_version = 2", ""));
        assert!(e.contains("missing field `spin_manifest_version`"), "{e}");
    }

    #[test]
    fn unsupported_component_fields_are_named() {
        for (field, line) in [
            ("files", "files = [\"static/**\"]"),
            ("sqlite_databases", "sqlite_databases = [\"default\"]"),
            ("ai_models", "ai_models = [\"llama2-chat\"]"),
            (
                "allowed_http_hosts",
                "allowed_http_hosts = [\"example.com\"]",
            ),
            ("dependencies", "dependencies = { \"a:b/c\" = \"1.0\" }"),
        ] {
            let text = edit(
                "[component.stateful-cart]\n",
                &format!("[component.stateful-cart]\n{line}\n"),
            );
            let e = err(&text);
            assert_eq!(
                e,
                format!(
                    "spin.toml: component `stateful-cart`: field `{field}` is not supported by cartlab up"
                )
            );
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = err(&edit(
            "allowed_outbound_hosts = []",
            "alowed_outbound_hosts = []",
        ));
        assert!(
            e.starts_with(
                "spin.toml: component `stateless-cart`: unknown field `alowed_outbound_hosts`"
            ),
            "{e}"
        );
        let e = err(&edit("authors = [\"me\"]", "author = \"me\""));
        assert!(e.contains("[application]: unknown field `author`"), "{e}");
        let e = err(&edit("executor = { type = \"spin\" }", "exec = 1"));
        assert!(e.contains("unknown field `exec`"), "{e}");
        let e = err(&format!("{GOOD}\n[extra]\nx = 1\n"));
        assert!(e.contains("unknown field `extra`"), "{e}");
        let e = err(&edit("watch = [", "whatch = ["));
        assert!(
            e.contains("[component.stateless-cart.build]: unknown field `whatch`"),
            "{e}"
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = err(&edit("version = \"0.1.0\"", "version = 1"));
        assert!(e.contains("[application]: field `version`"), "{e}");
        let e = err(&edit(
            "key_value_stores = [\"default\"]",
            "key_value_stores = \"default\"",
        ));
        assert!(e.contains("field `key_value_stores`"), "{e}");
    }

    #[test]
    fn unsupported_sources_and_triggers() {
        let e = err(&edit(
            "source = \"target/wasm32-wasip2/release/stateful_cart.wasm\"",
            "source = { url = \"https://x/y.wasm\", digest = \"sha256:00\" }",
        ));
        assert!(
            e.contains("component `stateful-cart`: field `source` = { url, digest }"),
            "{e}"
        );
        let e = err(&format!(
            "{GOOD}\n[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"stateful-cart\"\n"
        ));
        assert!(
            e.contains("[[trigger.redis]]") && e.contains("not supported"),
            "{e}"
        );
        let e = err(&edit(
            "executor = { type = \"spin\" }",
            "executor = { type = \"wagi\" }",
        ));
        assert!(e.contains("wagi") && e.contains("not supported"), "{e}");
        let e = err(&edit(
            "id = \"sf\"",
            "id = \"sf\"\nstatic_response = { status_code = 200 }",
        ));
        assert!(
            e.contains("field `static_response` is not supported"),
            "{e}"
        );
        let e = err(&edit(
            "route = \"/stateful/...\"",
            "route = { private = true }",
        ));
        assert!(e.contains("private"), "{e}");
        let e = err(&edit("base = \"/\"", "base = \"/api\""));
        assert!(e.contains("field `base`"), "{e}");
        let e = err(&edit("authors = [\"me\"]", "targets = [\"spin-up:3.3\"]"));
        assert!(e.contains("field `targets` is not supported"), "{e}");
    }

    #[test]
    fn route_to_unknown_component() {
        let e = err(&edit(
            "component = \"stateful-cart\"",
            "component = \"nope\"",
        ));
        assert!(e.contains("component `nope` is not defined"), "{e}");
    }

    #[test]
    fn duplicate_routes() {
        let e = err(&edit(
            "route = \"/stateful/...\"",
            "route = \"/stateless/...\"",
        ));
        assert!(
            e.contains("duplicate") && e.contains("/stateless/..."),
            "{e}"
        );
    }

    #[test]
    fn undeclared_template_variable() {
        let e = err(&edit("{{api_key}}", "{{ apikey }}"));
        assert!(
            e.contains("component `stateless-cart`: variable `key`")
                && e.contains("`apikey`, which is not declared"),
            "{e}"
        );
        let e = err(&edit("{{api_key}}", "{{ api_key"));
        assert!(e.contains("unmatched"), "{e}");
    }

    #[test]
    fn variable_names_and_decls() {
        let e = err(&edit("api_key = {", "Api_Key = {"));
        assert!(e.contains("variable `Api_Key`: invalid name"), "{e}");
        let e = err(&edit("api_key = {", "2key = {"));
        assert!(e.contains("variable `2key`: invalid name"), "{e}");
        let e = err(&edit("prefix = \"{{", "Prefix = \"{{"));
        assert!(e.contains("variable `Prefix`: invalid name"), "{e}");
        let e = err(&edit(
            "{ required = true, secret = true }",
            "{ required = true, default = \"x\" }",
        ));
        assert!(e.contains("`required` OR have a `default`"), "{e}");
        let e = err(&edit(
            "{ default = \"cart\" }",
            "{ description = \"no value\" }",
        ));
        assert!(e.contains("`required` OR have a `default`"), "{e}");
    }

    #[test]
    fn key_value_labels_and_component_ids() {
        let e = err(&edit("[\"default\"]", "[\"Bad Label\"]"));
        assert!(e.contains("invalid label \"Bad Label\""), "{e}");
        assert!(
            p(&edit(
                "[\"default\"]",
                "[\"default\", \"my_store\", \"other-store\"]"
            ))
            .is_ok()
        );
        let text = GOOD
            .replace("stateful-cart", "stateful_cart")
            .replace("stateful_cart.wasm", "x.wasm");
        let e = err(&text);
        assert!(
            e.contains("component `stateful_cart`: invalid component id"),
            "{e}"
        );
    }

    #[test]
    fn absolute_workdir_rejected() {
        let e = err(&edit(
            "workdir = \"components/stateful-cart\"",
            "workdir = \"/abs\"",
        ));
        assert!(e.contains("field `workdir` must be relative"), "{e}");
    }

    #[test]
    fn load_accepts_dir_or_file_and_the_real_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spin.toml"), GOOD).unwrap();
        let a = load(dir.path()).unwrap();
        let b = load(&dir.path().join("spin.toml")).unwrap();
        assert_eq!(a.path, b.path);
        assert_eq!(a.dir, dir.path());
        let e = format!("{:#}", load(&dir.path().join("nope.toml")).unwrap_err());
        assert!(e.contains("nope.toml"), "{e}");

        // The project's own spin.toml, once it exists, must load.
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spin.toml");
        if real.exists() {
            let m = load(&real).unwrap();
            let comp_of = |r: &str| {
                m.routes
                    .iter()
                    .find(|x| x.route == r)
                    .map(|x| x.component.clone())
            };
            assert_eq!(comp_of("/stateless/...").as_deref(), Some("stateless-cart"));
            assert_eq!(comp_of("/stateful/...").as_deref(), Some("stateful-cart"));
            assert!(
                m.components["stateless-cart"]
                    .key_value_stores
                    .contains(&"default".to_owned())
            );
        }
    }
}
