//! `spin.toml` as serde reads it: the fields of Spin 4's manifest v2 (spin's
//! `crates/manifest/src/schema/v2.rs`) that cartlab implements, each struct closed with
//! `deny_unknown_fields`. Fields Spin defines but cartlab does not implement are refused
//! earlier, by [`refuse_unsupported`], so they are named as such rather than as unknown.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpinToml {
    // Checked before serde runs, for a message that says which version cartlab reads.
    #[serde(rename = "spin_manifest_version")]
    _manifest_version: Value,
    pub application: Option<ApplicationToml>,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableToml>,
    pub trigger: Option<TriggersToml>,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApplicationToml {
    pub name: String,
    pub version: Option<String>,
    #[serde(rename = "description")]
    _description: Option<String>,
    #[serde(rename = "authors", default)]
    _authors: Vec<String>,
    pub trigger: Option<AppTriggersToml>,
    #[serde(rename = "tool")]
    _tool: Option<BTreeMap<String, Table>>,
}

/// `[application.trigger.http]`; other trigger types are refused before serde.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppTriggersToml {
    pub http: Option<AppHttpToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AppHttpToml {
    pub base: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table such as { default = \"...\" }"
)]
pub(super) struct VariableToml {
    #[serde(rename = "description")]
    _description: Option<String>,
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TriggersToml {
    /// Tables, read one by one so an error can say which `[[trigger.http]]` it is in.
    #[serde(default)]
    pub http: Vec<Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpTriggerToml {
    #[serde(rename = "id")]
    _id: Option<String>,
    pub route: RouteToml,
    pub component: ComponentRefToml,
    pub executor: Option<ExecutorToml>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a route string such as \"/cart/...\"")]
pub(super) enum RouteToml {
    Path(String),
    Private {
        #[serde(rename = "private")]
        _private: bool,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a component id string")]
pub(super) enum ComponentRefToml {
    Id(String),
    /// Read only to name it as unsupported.
    Inline(#[allow(dead_code)] Table),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecutorToml {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ComponentToml {
    pub source: SourceToml,
    pub description: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    pub build: Option<BuildToml>,
    #[serde(rename = "tool")]
    _tool: Option<BTreeMap<String, Table>>,
}

/// Spin's three kinds of source; only a local path runs here.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a local path string")]
pub(super) enum SourceToml {
    Local(String),
    Remote {
        #[serde(rename = "url")]
        _url: String,
    },
    Registry {
        #[serde(rename = "package")]
        _package: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BuildToml {
    pub command: CommandsToml,
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a string or a list of strings")]
pub(super) enum CommandsToml {
    One(String),
    Many(Vec<String>),
}

// Spin 4 manifest fields that cartlab does not implement, by where they stand.
const APPLICATION_UNSUPPORTED: &[&str] = &["targets"];
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
const HTTP_TRIGGER_UNSUPPORTED: &[&str] = &["static_response", "components", "dependencies"];

/// The one pass over what Spin knows and cartlab does not run: other trigger types and
/// the fields above. Shapes it does not expect are left to serde to report.
pub(super) fn refuse_unsupported(doc: &Table) -> Result<(), String> {
    fn table<'t>(t: &'t Table, key: &str) -> Option<&'t Table> {
        t.get(key).and_then(Value::as_table)
    }
    fn refuse(t: &Table, fields: &[&str], at: &str) -> Result<(), String> {
        match t.keys().find(|k| fields.contains(&k.as_str())) {
            Some(key) => Err(format!("{at}field `{key}` is not supported by cartlab up")),
            None => Ok(()),
        }
    }

    if let Some(app) = table(doc, "application") {
        refuse(app, APPLICATION_UNSUPPORTED, "[application]: ")?;
        for ty in table(app, "trigger").into_iter().flat_map(|t| t.keys()) {
            if ty != "http" {
                return Err(format!(
                    "[application.trigger.{ty}]: trigger type `{ty}` is not supported by cartlab up (only http)"
                ));
            }
        }
    }
    if let Some(triggers) = table(doc, "trigger") {
        for (ty, list) in triggers {
            if ty != "http" {
                return Err(format!(
                    "[[trigger.{ty}]]: trigger type `{ty}` is not supported by cartlab up (only [[trigger.http]])"
                ));
            }
            for (i, t) in list.as_array().iter().flat_map(|l| l.iter()).enumerate() {
                if let Some(t) = t.as_table() {
                    let at = format!("[[trigger.http]] #{}: ", i + 1);
                    refuse(t, HTTP_TRIGGER_UNSUPPORTED, &at)?;
                }
            }
        }
    }
    for (id, comp) in table(doc, "component").into_iter().flatten() {
        if let Some(comp) = comp.as_table() {
            refuse(comp, COMPONENT_UNSUPPORTED, &format!("component `{id}`: "))?;
        }
    }
    Ok(())
}

/// Deserializes `value`; an error names the place: `at`, then the table and field that
/// toml's error reports (keys `component.cart.build` read `component `cart`: [component.cart.build]: `).
pub(super) fn read<T: DeserializeOwned>(value: Value, at: &str) -> Result<T, String> {
    value.try_into().map_err(|e: toml::de::Error| {
        let keys = crate::app::key_path(&e);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        format!("{at}{}{}", place(&keys), e.message())
    })
}

fn place(keys: &[&str]) -> String {
    let field = |rest: &[&str]| match rest {
        [] => String::new(),
        rest => format!("field `{}`: ", rest.join(".")),
    };
    match keys {
        [] => String::new(),
        ["application", rest @ ..] => format!("[application]: {}", field(rest)),
        ["variables", name, rest @ ..] => format!("variable `{name}`: {}", field(rest)),
        ["component", id, "build", rest @ ..] => {
            format!("component `{id}`: [component.{id}.build]: {}", field(rest))
        }
        ["component", id, rest @ ..] => format!("component `{id}`: {}", field(rest)),
        ["trigger", "http", rest @ ..] => format!("[[trigger.http]]: {}", field(rest)),
        rest => field(rest),
    }
}
