//! `runtime-config.toml` (`spin up --runtime-config-file`): the key-value stores.
//!
//! Rules taken from Spin 4.1's source (`crates/runtime-config`, `crates/key-value-spin`,
//! `crates/factor-key-value/src/runtime_config/spin.rs`):
//! - the `default` label always exists: SQLite at `<state_dir>/sqlite_key_value.db` unless
//!   the file defines `[key_value_store.default]`; Spin's default state dir is
//!   `<app dir>/.spin` (the caller passes the resolved state dir);
//! - `type = "spin"`: SQLite; a relative `path` is resolved against the directory of the
//!   runtime config file; no `path` means an in-memory database;
//! - `type = "redis"`: `url` required and must be a Redis URL, credentials allowed
//!   (`redis://user:password@host:port`, as Spin takes them); see [`RedisUrl`];
//! - Spin rejects runtime config keys it does not use; so does cartlab, and it also rejects
//!   the sections Spin knows but cartlab does not implement.
//!
//! cartlab's own extension, which Spin refuses by name ([`redis_sentinel`]): Redis behind
//! Sentinel, as `type = "cartlab_redis_sentinel"` stores and `[cartlab.redis_sentinel."<address>"]`
//! for `spin:redis`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use toml::{Table, Value};

use crate::app::manifest::AppManifest;

pub mod redis_sentinel;
mod redis_url;
pub use redis_sentinel::{RedisSentinel, ReplicaWait, SentinelRoute};
pub use redis_url::{InvalidRedisUrl, RedisUrl};

pub const DEFAULT_LABEL: &str = "default";
pub const DEFAULT_SQLITE_FILE: &str = "sqlite_key_value.db";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub key_value: BTreeMap<String, StoreConfig>,
    /// `spin:redis` addresses served through Sentinel (`[cartlab.redis_sentinel."<address>"]`).
    pub redis_sentinels: Vec<SentinelRoute>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Redis {
        url: RedisUrl,
    },
    /// `type = "cartlab_redis_sentinel"`: the primary a Sentinel set names (cartlab only).
    RedisSentinel(RedisSentinel),
    /// `path: None` is an in-memory database (Spin's `type = "spin"` without `path`).
    Sqlite {
        path: Option<PathBuf>,
    },
}

impl StoreConfig {
    /// One line for start-up summaries (a Redis URL shows without its credentials).
    pub fn describe(&self) -> String {
        match self {
            StoreConfig::Redis { url } => format!("redis {url}"),
            StoreConfig::RedisSentinel(set) => set.describe(),
            StoreConfig::Sqlite { path: Some(p) } => format!("sqlite {}", p.display()),
            StoreConfig::Sqlite { path: None } => "sqlite in-memory".to_owned(),
        }
    }
}

// Top-level sections of Spin 4.1's runtime config other than `key_value_store`.
const SPIN_SECTIONS_UNSUPPORTED: &[&str] = &[
    "sqlite_database",
    "llm_compute",
    "variables_provider",
    "config_provider",
    "outbound_http",
    "outbound_networking",
    "client_tls",
    "outbound_redis",
    "outbound_pg",
    "outbound_mysql",
    "outbound_mqtt",
    "state_dir",
    "log_dir",
    "max_instance_memory",
];
// Key-value store types Spin registers that cartlab does not.
const SPIN_STORE_TYPES_UNSUPPORTED: &[&str] = &["azure_cosmos", "aws_dynamo"];

/// The file as serde reads it: only what cartlab implements; the rest is refused first, by
/// [`refuse_unsupported`], so it is named as unsupported rather than unknown.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeConfigToml {
    /// Tables, read one by one so an error can name the label.
    #[serde(default)]
    key_value_store: BTreeMap<String, Table>,
    /// cartlab's extensions.
    #[serde(default)]
    cartlab: redis_sentinel::CartlabToml,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum StoreToml {
    Redis {
        url: String,
    },
    /// SQLite, Spin's own store.
    Spin {
        path: Option<String>,
    },
    CartlabRedisSentinel(redis_sentinel::SentinelToml),
}

/// Reads the runtime config `file` (if any) and adds the `default` store when the file does
/// not define it. `state_dir` is the resolved state directory (`--state-dir`, else
/// `<manifest dir>/.spin`).
pub fn load(file: Option<&Path>, state_dir: &Path) -> Result<RuntimeConfig> {
    let mut key_value = BTreeMap::new();
    let mut redis_sentinels = Vec::new();
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read runtime config file {}", file.display()))?;
        let abs = std::path::absolute(file)
            .with_context(|| format!("cannot make {} absolute", file.display()))?;
        let base = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
        (key_value, redis_sentinels) =
            parse(&text, &base).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    }
    key_value
        .entry(DEFAULT_LABEL.to_owned())
        .or_insert_with(|| StoreConfig::Sqlite {
            path: Some(state_dir.join(DEFAULT_SQLITE_FILE)),
        });
    Ok(RuntimeConfig {
        key_value,
        redis_sentinels,
    })
}

type Parsed = (BTreeMap<String, StoreConfig>, Vec<SentinelRoute>);

fn parse(text: &str, base: &Path) -> Result<Parsed, String> {
    let doc: Table = toml::from_str(text).map_err(|e| format!("invalid TOML: {e}"))?;
    refuse_unsupported(&doc)?;
    let doc: RuntimeConfigToml = doc.try_into().map_err(|e| message(&e))?;
    let mut stores = BTreeMap::new();
    for (label, cfg) in doc.key_value_store {
        let at = format!("[key_value_store.{label}]");
        let cfg: StoreToml = Value::Table(cfg)
            .try_into()
            .map_err(|e| format!("{at}: {}", message(&e)))?;
        let store = match cfg {
            // Spin validates the URL at start-up too ("Invalid Redis URL").
            StoreToml::Redis { url } => StoreConfig::Redis {
                url: RedisUrl::parse(&url).map_err(|e| format!("{at}: field `url`: {e}"))?,
            },
            StoreToml::Spin { path } => StoreConfig::Sqlite {
                path: path.map(|p| resolve(base, Path::new(&p))),
            },
            StoreToml::CartlabRedisSentinel(fields) => {
                StoreConfig::RedisSentinel(fields.check().map_err(|e| format!("{at}: {e}"))?)
            }
        };
        stores.insert(label, store);
    }
    Ok((stores, doc.cartlab.routes()?))
}

/// The one pass over what Spin knows and cartlab does not run: sections and store types.
fn refuse_unsupported(doc: &Table) -> Result<(), String> {
    if let Some(key) = doc
        .keys()
        .find(|k| SPIN_SECTIONS_UNSUPPORTED.contains(&k.as_str()))
    {
        return Err(format!("`{key}` is not supported by cartlab up"));
    }
    let stores = doc.get("key_value_store").and_then(Value::as_table);
    for (label, cfg) in stores.into_iter().flatten() {
        let ty = cfg.get("type").and_then(Value::as_str);
        if let Some(ty) = ty.filter(|t| SPIN_STORE_TYPES_UNSUPPORTED.contains(t)) {
            return Err(format!(
                "[key_value_store.{label}]: store type `{ty}` (label `{label}`) is not supported by cartlab up (use \"redis\", \"spin\" or cartlab's \"cartlab_redis_sentinel\")"
            ));
        }
    }
    Ok(())
}

/// toml's message, with the field it names.
fn message(e: &toml::de::Error) -> String {
    match super::key_path(e).join(".") {
        path if path.is_empty() => e.message().to_owned(),
        path => format!("field `{path}`: {}", e.message()),
    }
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

impl RuntimeConfig {
    /// Spin stops at start-up when a component is granted a label no store defines.
    pub fn check_grants(&self, manifest: &AppManifest) -> Result<()> {
        for (id, component) in &manifest.components {
            for label in &component.key_value_stores {
                if !self.key_value.contains_key(label) {
                    bail!(
                        "component `{id}` is granted key-value store `{label}` (key_value_stores in {}), but no store `{label}` is defined: add [key_value_store.{label}] to the runtime config file (--runtime-config-file)",
                        manifest.path.display()
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::manifest::{AppManifest, ComponentDecl};

    fn write(dir: &Path, text: &str) -> PathBuf {
        let f = dir.join("runtime-config.toml");
        std::fs::write(&f, text).unwrap();
        f
    }

    #[test]
    fn default_store_without_file() {
        let rc = load(None, Path::new("/app/.spin")).unwrap();
        assert_eq!(
            rc.key_value,
            BTreeMap::from([(
                "default".to_owned(),
                StoreConfig::Sqlite {
                    path: Some(PathBuf::from("/app/.spin/sqlite_key_value.db"))
                }
            )])
        );
    }

    #[test]
    fn redis_and_sqlite_stores() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            r#"
[key_value_store.default]
type = "redis"
url = "redis://127.0.0.1:6379"

[key_value_store.local]
type = "spin"
path = "data/kv.db"

[key_value_store.abs]
type = "spin"
path = "/var/kv.db"

[key_value_store.mem]
type = "spin"
"#,
        );
        let rc = load(Some(&f), Path::new("/state")).unwrap();
        assert_eq!(
            rc.key_value["default"],
            StoreConfig::Redis {
                url: RedisUrl::parse("redis://127.0.0.1:6379").unwrap()
            }
        );
        assert_eq!(
            rc.key_value["local"],
            StoreConfig::Sqlite {
                path: Some(dir.path().join("data/kv.db"))
            },
            "relative to the runtime config file's directory"
        );
        assert_eq!(
            rc.key_value["abs"],
            StoreConfig::Sqlite {
                path: Some("/var/kv.db".into())
            }
        );
        assert_eq!(rc.key_value["mem"], StoreConfig::Sqlite { path: None });
        assert_eq!(rc.key_value.len(), 4);
    }

    fn err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), text);
        format!("{:#}", load(Some(&f), Path::new("/state")).unwrap_err())
    }

    #[test]
    fn errors_name_the_problem() {
        let e = err("[key_value_store.sessions]\ntype = \"memcached\"\n");
        assert!(
            e.contains("[key_value_store.sessions]: field `type`: unknown variant `memcached`"),
            "{e}"
        );
        assert!(e.contains("runtime-config.toml"), "{e}");
        let e = err("[key_value_store.x]\ntype = \"azure_cosmos\"\naccount = \"a\"\n");
        assert!(
            e.contains("`azure_cosmos`") && e.contains("not supported"),
            "{e}"
        );
        let e = err("[key_value_store.x]\ntype = \"redis\"\n");
        assert!(e.contains("missing field `url`"), "{e}");
        let e = err("[key_value_store.x]\ntype = \"redis\"\nurl = \"http://x\"\n");
        assert!(e.contains("invalid Redis URL"), "{e}");
        let e = err("[key_value_store.x]\ntype = \"redis\"\nurl = \"redis://h\"\npool = 3\n");
        assert!(e.contains("unknown field `pool`"), "{e}");
        let e = err("[key_value_store.x]\nurl = \"redis://h\"\n");
        assert!(e.contains("missing field `type`"), "{e}");
        let e = err("[[sqlite_database.default]]\ntype = \"spin\"\n");
        assert!(e.contains("`sqlite_database` is not supported"), "{e}");
        let e = err("[[variables_provider]]\ntype = \"vault\"\n");
        assert!(e.contains("`variables_provider` is not supported"), "{e}");
        let e = err("[outbound_http]\nmax_concurrent_requests = 1\n");
        assert!(e.contains("`outbound_http` is not supported"), "{e}");
        let e = err("[bogus]\n");
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = err("[key_value_store.x\n");
        assert!(e.contains("invalid TOML") && e.contains("line 1"), "{e}");
    }

    const SENTINEL_FIELDS: &str = "sentinels = [\"redis://127.0.0.1:26379\", \"redis://:pw@127.0.0.1:26380\"]\nmaster_name = \"mymaster\"\n";

    #[test]
    fn sentinel_store_and_spin_redis_routes() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            &format!(
                "[key_value_store.default]\ntype = \"cartlab_redis_sentinel\"\n{SENTINEL_FIELDS}wait_replicas = 1\n\n\
                 [key_value_store.plain]\ntype = \"cartlab_redis_sentinel\"\n{SENTINEL_FIELDS}\n\
                 [cartlab.redis_sentinel.\"redis://mymaster:6379\"]\n{SENTINEL_FIELDS}wait_replicas = 2\nwait_timeout_ms = 50\n"
            ),
        );
        let rc = load(Some(&f), Path::new("/state")).unwrap();
        let StoreConfig::RedisSentinel(set) = &rc.key_value["default"] else {
            panic!("{:?}", rc.key_value["default"]);
        };
        assert_eq!(set.master_name, "mymaster");
        assert_eq!(set.sentinels.len(), 2);
        assert_eq!(
            set.wait,
            Some(ReplicaWait {
                replicas: 1,
                timeout: std::time::Duration::from_millis(200)
            }),
            "the default timeout"
        );
        let StoreConfig::RedisSentinel(plain) = &rc.key_value["plain"] else {
            panic!("{:?}", rc.key_value["plain"]);
        };
        assert_eq!(plain.wait, None);
        assert_eq!(
            store_summary(&rc.key_value["default"]),
            "redis sentinel `mymaster` via redis://127.0.0.1:26379,redis://***@127.0.0.1:26380, writes wait for 1 replica(s) within 200 ms"
        );
        assert_eq!(rc.redis_sentinels.len(), 1);
        let route = &rc.redis_sentinels[0];
        assert_eq!(
            route.address.tcp_destination(),
            Some(("mymaster".into(), 6379))
        );
        assert_eq!(
            route.set.wait,
            Some(ReplicaWait {
                replicas: 2,
                timeout: std::time::Duration::from_millis(50)
            })
        );
        assert!(!format!("{rc:?}").contains(":pw@"), "{rc:?}");
    }

    fn store_summary(store: &StoreConfig) -> String {
        store.describe()
    }

    #[test]
    fn sentinel_errors_name_the_field() {
        let store = |fields: &str| {
            err(&format!(
                "[key_value_store.default]\ntype = \"cartlab_redis_sentinel\"\n{fields}"
            ))
        };
        let route = |fields: &str| {
            err(&format!(
                "[cartlab.redis_sentinel.\"redis://h:6379\"]\n{fields}"
            ))
        };
        for (e, wanted) in [
            (
                store("master_name = \"m\"\n"),
                "[key_value_store.default]: missing field `sentinels`",
            ),
            (
                store("sentinels = []\nmaster_name = \"m\"\n"),
                "[key_value_store.default]: field `sentinels`: list at least one",
            ),
            (
                store("sentinels = [\"redis://h:1\", \"http://h\"]\nmaster_name = \"m\"\n"),
                "field `sentinels[1]`: invalid Redis URL",
            ),
            (
                store("sentinels = [\"redis://h:1\"]\nmaster_name = \" \"\n"),
                "field `master_name`: empty",
            ),
            (
                store(&format!("{SENTINEL_FIELDS}wait_replicas = 0\n")),
                "field `wait_replicas`: 0 waits for nothing",
            ),
            (
                store(&format!("{SENTINEL_FIELDS}wait_timeout_ms = 100\n")),
                "field `wait_timeout_ms`: set `wait_replicas` too",
            ),
            (
                store(&format!(
                    "{SENTINEL_FIELDS}wait_replicas = 1\nwait_timeout_ms = 0\n"
                )),
                "field `wait_timeout_ms`: 0 is out of range 1..=500",
            ),
            (
                store(&format!(
                    "{SENTINEL_FIELDS}wait_replicas = 1\nwait_timeout_ms = 900\n"
                )),
                "out of range",
            ),
            (
                store(&format!("{SENTINEL_FIELDS}url = \"redis://h\"\n")),
                "unknown field `url`",
            ),
            (
                route("master_name = \"m\"\n"),
                "[cartlab.redis_sentinel.\"redis://h:6379\"]: missing field `sentinels`",
            ),
            (
                route(&format!("{SENTINEL_FIELDS}wait = 1\n")),
                "unknown field `wait`",
            ),
            (
                err(&format!(
                    "[cartlab.redis_sentinel.\"redis://:pw@h:6379\"]\n{SENTINEL_FIELDS}"
                )),
                "must not carry credentials",
            ),
            (
                err(&format!(
                    "[cartlab.redis_sentinel.\"h:6379\"]\n{SENTINEL_FIELDS}"
                )),
                "[cartlab.redis_sentinel]: an address: invalid Redis URL",
            ),
            (
                err(&format!(
                    "[cartlab.redis_sentinel.\"redis://h:6379\"]\n{SENTINEL_FIELDS}\n[cartlab.redis_sentinel.\"redis://h:6379/1\"]\n{SENTINEL_FIELDS}"
                )),
                "another entry already maps h:6379",
            ),
            (err("[cartlab.bogus]\n"), "unknown field `bogus`"),
            // Spin would ignore extra fields on type = "redis"; cartlab does not.
            (
                err(
                    "[key_value_store.x]\ntype = \"redis\"\nurl = \"redis://h\"\nwait_replicas = 1\n",
                ),
                "unknown field `wait_replicas`",
            ),
        ] {
            assert!(e.contains(wanted), "wanted {wanted:?} in: {e}");
            assert!(!e.contains(":pw@"), "{e}");
        }
    }

    #[test]
    fn grants_need_a_defined_store() {
        let m = AppManifest::of_components([ComponentDecl {
            id: "cart".into(),
            description: None,
            source: "/x.wasm".into(),
            key_value_stores: vec!["default".into(), "sessions".into()],
            variables: BTreeMap::new(),
            environment: BTreeMap::new(),
            allowed_outbound_hosts: vec![],
            build: None,
        }]);
        let mut rc = load(None, Path::new("/s")).unwrap();
        let e = rc.check_grants(&m).unwrap_err().to_string();
        assert!(
            e.contains("component `cart`") && e.contains("`sessions`"),
            "{e}"
        );
        rc.key_value
            .insert("sessions".into(), StoreConfig::Sqlite { path: None });
        rc.check_grants(&m).unwrap();
    }

    #[test]
    fn redis_urls_take_credentials_and_never_show_them() {
        let e = err("[key_value_store.x]\ntype = \"redis\"\nurl = \"redis://:hunter2@h:port\"\n");
        assert!(
            e.contains("invalid Redis URL") && !e.contains("hunter2"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://cart:hunter2@h:6379\"\n",
        );
        let rc = load(Some(&f), Path::new("/state")).unwrap();
        let store = &rc.key_value["default"];
        assert_eq!(
            store,
            &StoreConfig::Redis {
                url: RedisUrl::parse("redis://cart:hunter2@h:6379").unwrap()
            }
        );
        assert_eq!(store.describe(), "redis redis://***@h:6379");
        assert!(!format!("{rc:?}").contains("hunter2"), "{rc:?}");
    }
}
