//! The cartlab runtime-config extension for Redis behind Sentinel (not read by Spin).
//!
//! Two places take a Sentinel set, both with the same fields:
//! - `[key_value_store.<label>]` with `type = "cartlab_redis_sentinel"`: the key-value store;
//! - `[cartlab.redis_sentinel."<address>"]`: `spin:redis` connections the guest opens to
//!   `<address>` (a `redis://host:port` it has in `allowed_outbound_hosts`) go to the primary
//!   the Sentinel set names instead, so the guest keeps opening one address across failovers.
//!
//! Spin refuses both by name rather than ignoring them: an unknown store type stops it ("the
//! store type 'cartlab_redis_sentinel' was not registered with the config resolver") and so
//! does an unknown top-level key ("unused runtime config key(s): cartlab"). Extra fields on
//! `type = "redis"` would instead be ignored by Spin, which is why this is a type of its own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::RedisUrl;

/// The write acknowledgement cartlab waits for after every write (`WAIT replicas timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaWait {
    pub replicas: u32,
    pub timeout: Duration,
}

/// Longest `wait_timeout_ms`: the write and its `WAIT` share one 800 ms operation deadline.
pub const MAX_WAIT_TIMEOUT_MS: u64 = 500;
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 200;

/// A Sentinel set watching one primary, and what a write must wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSentinel {
    /// The sentinels' addresses (credentials, if any, are the sentinels' own).
    pub sentinels: Vec<RedisUrl>,
    /// The name the sentinels monitor the primary under (`sentinel monitor <name> ...`).
    pub master_name: String,
    /// `None`: a write is done when the primary has it (asynchronous replication).
    pub wait: Option<ReplicaWait>,
}

impl RedisSentinel {
    /// One line for summaries and logs.
    pub fn describe(&self) -> String {
        let sentinels: Vec<String> = self.sentinels.iter().map(ToString::to_string).collect();
        let wait = match self.wait {
            Some(w) => format!(
                ", writes wait for {} replica(s) within {} ms",
                w.replicas,
                w.timeout.as_millis()
            ),
            None => String::new(),
        };
        format!(
            "redis sentinel `{}` via {}{wait}",
            self.master_name,
            sentinels.join(",")
        )
    }
}

/// `spin:redis` connections to `address` go to the primary of `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelRoute {
    pub address: RedisUrl,
    pub set: RedisSentinel,
}

/// The fields, as both places spell them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SentinelToml {
    sentinels: Vec<String>,
    master_name: String,
    wait_replicas: Option<u32>,
    wait_timeout_ms: Option<u64>,
}

/// The top-level `[cartlab]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CartlabToml {
    #[serde(default)]
    redis_sentinel: BTreeMap<String, toml::Table>,
}

impl SentinelToml {
    /// Checks the fields; errors name the field.
    pub(super) fn check(self) -> Result<RedisSentinel, String> {
        if self.sentinels.is_empty() {
            return Err("field `sentinels`: list at least one sentinel (redis://host:port)".into());
        }
        let sentinels = self
            .sentinels
            .iter()
            .enumerate()
            .map(|(i, text)| {
                RedisUrl::parse(text).map_err(|e| format!("field `sentinels[{i}]`: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.master_name.trim().is_empty() {
            return Err(
                "field `master_name`: empty (the name in `sentinel monitor <name> ...`)".into(),
            );
        }
        let wait = match (self.wait_replicas, self.wait_timeout_ms) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err("field `wait_timeout_ms`: set `wait_replicas` too (it is the timeout of that wait)".into());
            }
            (Some(0), _) => {
                return Err(
                    "field `wait_replicas`: 0 waits for nothing; omit it to not wait".into(),
                );
            }
            (Some(replicas), timeout) => {
                let ms = timeout.unwrap_or(DEFAULT_WAIT_TIMEOUT_MS);
                // WAIT 0 blocks forever; past the cap the write's deadline would end first.
                if !(1..=MAX_WAIT_TIMEOUT_MS).contains(&ms) {
                    return Err(format!(
                        "field `wait_timeout_ms`: {ms} is out of range 1..={MAX_WAIT_TIMEOUT_MS}"
                    ));
                }
                Some(ReplicaWait {
                    replicas,
                    timeout: Duration::from_millis(ms),
                })
            }
        };
        Ok(RedisSentinel {
            sentinels,
            master_name: self.master_name,
            wait,
        })
    }
}

impl CartlabToml {
    /// The `spin:redis` routes; `[cartlab.redis_sentinel."<address>"]` names each in errors.
    pub(super) fn routes(self) -> Result<Vec<SentinelRoute>, String> {
        let mut routes: Vec<SentinelRoute> = Vec::new();
        for (address, table) in self.redis_sentinel {
            // The key may hold a password: errors show it parsed (hidden), or not at all.
            let url = RedisUrl::parse(&address)
                .map_err(|e| format!("[cartlab.redis_sentinel]: an address: {e}"))?;
            let at = format!("[cartlab.redis_sentinel.\"{url}\"]");
            if url.has_credentials() {
                return Err(format!(
                    "{at}: the address must not carry credentials: the guest's own (in the address it opens) are sent to the primary"
                ));
            }
            let Some(destination) = url.tcp_destination() else {
                return Err(format!("{at}: the address must be redis://host:port"));
            };
            if routes
                .iter()
                .any(|r| r.address.tcp_destination().as_ref() == Some(&destination))
            {
                return Err(format!(
                    "{at}: another entry already maps {}:{}",
                    destination.0, destination.1
                ));
            }
            let fields: SentinelToml = toml::Value::Table(table)
                .try_into()
                .map_err(|e| format!("{at}: {}", super::message(&e)))?;
            let set = fields.check().map_err(|e| format!("{at}: {e}"))?;
            routes.push(SentinelRoute { address: url, set });
        }
        Ok(routes)
    }
}
