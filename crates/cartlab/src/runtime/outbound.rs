//! `allowed_outbound_hosts`, checked the way Spin checks it: each entry is
//! `scheme://host[:port]` where scheme, host and port may be `*`, host may be
//! `*.domain`, port may be a range `a..b`, and a missing port means the scheme's
//! well-known port. Entries may contain `{{ variable }}` templates, which Spin
//! resolves from the application variables; cartlab resolves them once at start-up,
//! so a bad entry stops `cartlab up` instead of failing at the first connection.
//!
//! Not supported (Spin accepts them): CIDR hosts and `self` / service chaining.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use crate::app::expressions::Template;
use crate::app::runtime_config::RedisUrl;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Any,
    /// `*.example.com`, stored as `.example.com`.
    Subdomain(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Port {
    Any,
    One(u16),
    Range(u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `None`: any scheme.
    scheme: Option<String>,
    host: Host,
    port: Port,
}

/// A component's resolved `allowed_outbound_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
}

fn well_known_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "redis" => 6379,
        "rediss" => 6379,
        "http" => 80,
        "https" => 443,
        "postgres" => 5432,
        "mysql" => 3306,
        "mqtt" => 1883,
        _ => return None,
    })
}

impl AllowedHosts {
    /// Renders templates with the application variables and parses every entry.
    pub fn parse(raw: &[String], app_variables: &BTreeMap<String, String>) -> Result<Self> {
        let mut entries = Vec::with_capacity(raw.len());
        for entry in raw {
            let rendered = Template::parse(entry)
                .and_then(|t| t.render(app_variables))
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("allowed_outbound_hosts entry {entry:?}"))?;
            // Credentials belong in the address a component opens, never here; the entry
            // is not repeated, as it would show them.
            if rendered.contains('@') {
                bail!(
                    "an allowed_outbound_hosts entry must be scheme://host[:port], without credentials (user:password@)"
                );
            }
            let parsed = parse_entry(&rendered)
                .with_context(|| format!("allowed_outbound_hosts entry {entry:?}"))?;
            entries.push(parsed);
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any entry allows this scheme at all (for start-up notes).
    pub fn mentions_scheme(&self, scheme: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.scheme.as_deref().is_none_or(|s| s == scheme))
    }

    /// Whether a connection to `host:port` over `scheme` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.entries.iter().any(|e| {
            e.scheme.as_deref().is_none_or(|s| s == scheme)
                && match &e.host {
                    Host::Any => true,
                    Host::Subdomain(suffix) => host.ends_with(suffix.as_str()),
                    Host::Exact(h) => h.eq_ignore_ascii_case(host),
                }
                && match e.port {
                    Port::Any => true,
                    Port::One(p) => p == port,
                    Port::Range(a, b) => (a..b).contains(&port),
                }
        })
    }

    /// `spin:redis` `open(address)`: the host and port the Redis client will connect to;
    /// credentials in the address play no part.
    pub fn allows_redis(&self, url: &RedisUrl) -> bool {
        // Unix sockets are not network destinations Spin can allow.
        url.tcp_destination()
            .is_some_and(|(host, port)| self.allows(url.scheme(), &host, port))
    }
}

fn parse_entry(entry: &str) -> Result<Entry> {
    let entry = entry.trim();
    let Some((scheme, rest)) = entry.split_once("://") else {
        bail!("expected <scheme>://<host>[:<port>] (e.g. \"redis://127.0.0.1:6379\")");
    };
    let scheme = match scheme {
        "*" => None,
        s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => {
            Some(s.to_ascii_lowercase())
        }
        s => bail!("invalid scheme {s:?}"),
    };
    let rest = match rest.split_once('/') {
        Some((_, path)) if !path.is_empty() => bail!("must not contain a path"),
        Some((authority, _)) => authority,
        None => rest,
    };
    let (host, port) = match rest.rsplit_once(':') {
        // An IPv6 literal without port: the last ':' is inside the brackets.
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    let host = if host == "*" {
        Host::Any
    } else if let Some(domain) = host.strip_prefix("*.") {
        if domain.is_empty() || domain.contains('*') {
            bail!("wildcards are allowed only as a leading `*.`");
        }
        Host::Subdomain(format!(".{}", domain.to_ascii_lowercase()))
    } else if host.is_empty() || host.contains('*') {
        bail!("invalid host {host:?}");
    } else if host == "self" || host == "self.alt" || host.ends_with(".spin.internal") {
        bail!("service chaining (`self`, `*.spin.internal`) is not supported by cartlab up");
    } else {
        Host::Exact(host.to_ascii_lowercase())
    };
    let port = match port {
        Some("*") => Port::Any,
        Some(p) => match p.split_once("..") {
            Some((a, b)) => Port::Range(
                a.parse()
                    .with_context(|| format!("invalid port range {p:?}"))?,
                b.parse()
                    .with_context(|| format!("invalid port range {p:?}"))?,
            ),
            None => Port::One(p.parse().with_context(|| format!("invalid port {p:?}"))?),
        },
        None => match scheme.as_deref().and_then(well_known_port) {
            Some(p) => Port::One(p),
            None => bail!("no port given and the scheme has no well-known port"),
        },
    };
    Ok(Entry { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(raw: &[&str]) -> AllowedHosts {
        let vars = BTreeMap::from([
            ("redis_host".to_owned(), "10.0.0.5".to_owned()),
            (
                "redis_url".to_owned(),
                "redis://cache.internal:6380".to_owned(),
            ),
        ]);
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&raw, &vars).unwrap()
    }

    /// Whether `spin:redis` may open `address` (an address that does not parse may not).
    fn allows(hosts: &AllowedHosts, address: &str) -> bool {
        RedisUrl::parse(address).is_ok_and(|url| hosts.allows_redis(&url))
    }

    #[test]
    fn exact_wildcards_templates() {
        let h = hosts(&["redis://127.0.0.1:6379"]);
        assert!(allows(&h, "redis://127.0.0.1:6379"));
        assert!(allows(&h, "redis://127.0.0.1:6379/0"));
        assert!(allows(&h, "redis://127.0.0.1"), "default port 6379");
        assert!(!allows(&h, "redis://127.0.0.1:6380"));
        assert!(!allows(&h, "redis://localhost:6379"));
        assert!(!allows(&h, "rediss://127.0.0.1:6379"), "scheme must match");
        assert!(!allows(&h, "127.0.0.1:6379"), "no scheme: invalid");

        let h = hosts(&["redis://127.0.0.1:*"]);
        assert!(allows(&h, "redis://127.0.0.1:1234"));
        assert!(!allows(&h, "redis://127.0.0.2:1234"));

        let h = hosts(&["redis://*:*"]);
        assert!(allows(&h, "redis://anything.example:1"));
        assert!(!h.allows("rediss", "anything.example", 1));

        let h = hosts(&["*://*:*"]);
        assert!(h.allows("rediss", "anything.example", 1));
        assert!(allows(&h, "redis://anything.example:1"));

        let h = hosts(&["redis://*.example.com:6379", "redis://h:7000..7002"]);
        assert!(allows(&h, "redis://a.example.com"));
        assert!(!allows(&h, "redis://example.com"));
        assert!(allows(&h, "redis://h:7001"));
        assert!(!allows(&h, "redis://h:7002"));

        let h = hosts(&["redis://{{ redis_host }}:6379", "{{redis_url}}"]);
        assert!(allows(&h, "redis://10.0.0.5:6379"));
        assert!(allows(&h, "redis://cache.internal:6380"));
        assert!(!allows(&h, "redis://127.0.0.1:6379"));

        // Credentials in the address play no part in the check.
        let h = hosts(&["redis://127.0.0.1:6379"]);
        assert!(allows(&h, "redis://:p%40ss@127.0.0.1:6379"));
        assert!(allows(&h, "redis://cart:pass@127.0.0.1"));
        assert!(!allows(&h, "redis://:pass@127.0.0.1:6380"));
        assert!(!allows(&h, "redis://127.0.0.1:6379@evil.example:6379"));

        let none = AllowedHosts::default();
        assert!(none.is_empty());
        assert!(!allows(&none, "redis://127.0.0.1:6379"));
    }

    #[test]
    fn entries_with_credentials_are_errors_that_do_not_show_them() {
        let vars = BTreeMap::from([("url".to_owned(), "redis://:hunter2@h:6379".to_owned())]);
        for entry in ["redis://:hunter2@h:6379", "{{ url }}", "redis://cart@h"] {
            let e = AllowedHosts::parse(&[entry.to_owned()], &vars).unwrap_err();
            let e = format!("{e:#}");
            assert!(
                e.contains("without credentials") && !e.contains("hunter2"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_entries_are_errors() {
        let vars = BTreeMap::new();
        for bad in [
            "127.0.0.1:6379",
            "redis://",
            "redis://a.*.com",
            "redis://h:port",
            "redis://h:6379/path",
            "ftp://h",
            "redis://{{ undefined }}",
            "http://self",
        ] {
            assert!(
                AllowedHosts::parse(&[bad.to_owned()], &vars).is_err(),
                "{bad} should be rejected"
            );
        }
    }
}
