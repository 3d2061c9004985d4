//! Per-component settings, and reading them from Spin variables' text.

use crate::session::Lifetime;
use std::fmt;

/// Default idle timeout (sliding): 30 minutes.
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 1800;
/// Default absolute session lifetime: 24 hours.
pub const DEFAULT_SESSION_MAX_AGE_SECS: u64 = 86_400;
/// Longest session lifetime a variable may ask for: one year.
pub const MAX_SESSION_TTL_SECS: u64 = 365 * 24 * 3600;
/// Default address of Redis for `session_store = "redis"`.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The Spin variables a component reads (see `spin.toml`).
pub const VARIABLE_NAMES: [&str; 6] = [
    "cookie_secure",
    "crash_enabled",
    "session_idle_secs",
    "session_max_age_secs",
    "session_store",
    "redis_url",
];

/// Where the stateless component keeps sessions (Spin variable `session_store`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreMode {
    /// `key-value`: the key-value store labelled `default`, through `wasi:keyvalue` with
    /// compare-and-swap. Correct on SQLite (and on cartlab's own Redis backend); NOT on real
    /// Spin 4.1's Redis key-value backend, whose CAS is broken.
    KeyValue,
    /// `redis`: Redis at `redis_url` through `spin:redis`: one `GET` per read, one `EVAL` of a
    /// compare-and-set Lua script per write, with a real Redis TTL.
    Redis,
}

/// How one component behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// One cookie name per component: the seed's two servers both used `connect.sid` and
    /// clobbered each other's sessions.
    pub cookie_name: String,
    /// The component's route prefix: the cookie `Path`, and stripped from request paths.
    pub base_path: String,
    /// `"stateless"` or `"stateful"`, shown as `serverKind`.
    pub server_kind: &'static str,
    /// Adds `Secure` to the cookie (set it when served over HTTPS).
    pub secure_cookie: bool,
    /// Sliding idle timeout of a session, seconds (`session_idle_secs`).
    pub session_idle_secs: u64,
    /// Absolute lifetime of a session, seconds (`session_max_age_secs`).
    pub session_max_age_secs: u64,
    /// Whether `POST /crash` may kill the instance.
    pub crash_enabled: bool,
    /// Where sessions live (stateless component only).
    pub session_store: StoreMode,
    /// Redis address for [`StoreMode::Redis`], e.g. `redis://127.0.0.1:6379`.
    pub redis_url: String,
}

impl Settings {
    /// Defaults for the key-value backed component at `/stateless`.
    pub fn stateless() -> Settings {
        Settings::defaults("stateless")
    }

    /// Defaults for the in-memory component at `/stateful`.
    pub fn stateful() -> Settings {
        Settings::defaults("stateful")
    }

    fn defaults(kind: &'static str) -> Settings {
        Settings {
            cookie_name: crate::contract::cookie_name(kind),
            base_path: format!("/{kind}"),
            server_kind: kind,
            secure_cookie: false,
            session_idle_secs: DEFAULT_SESSION_IDLE_SECS,
            session_max_age_secs: DEFAULT_SESSION_MAX_AGE_SECS,
            crash_enabled: true,
            session_store: StoreMode::KeyValue,
            redis_url: DEFAULT_REDIS_URL.to_owned(),
        }
    }

    /// The session lifetime these settings ask for.
    pub fn lifetime(&self) -> Lifetime {
        Lifetime {
            idle_secs: self.session_idle_secs,
            max_age_secs: self.session_max_age_secs,
        }
    }

    /// Applies one variable's value (one of [`VARIABLE_NAMES`]).
    pub fn apply_variable(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |expected: &'static str| ConfigError {
            variable: name.to_owned(),
            value: value.to_owned(),
            expected,
        };
        let value = value.trim();
        match name {
            "cookie_secure" => {
                self.secure_cookie = parse_bool(value).ok_or_else(|| bad("true or false"))?
            }
            "crash_enabled" => {
                self.crash_enabled = parse_bool(value).ok_or_else(|| bad("true or false"))?
            }
            "session_idle_secs" => {
                self.session_idle_secs = parse_secs(value)
                    .ok_or_else(|| bad("a whole number of seconds from 1 to 31536000"))?
            }
            "session_max_age_secs" => {
                self.session_max_age_secs = parse_secs(value)
                    .ok_or_else(|| bad("a whole number of seconds from 1 to 31536000"))?
            }
            "session_store" => {
                self.session_store = match value {
                    "key-value" => StoreMode::KeyValue,
                    "redis" => StoreMode::Redis,
                    _ => return Err(bad("key-value or redis")),
                }
            }
            "redis_url" => {
                // It is also the component's `allowed_outbound_hosts` entry, which Spin parses as
                // `scheme://host[:port]`: no path, no credentials.
                let well_formed = ["redis://", "rediss://"].iter().any(|scheme| {
                    value.strip_prefix(scheme).is_some_and(|rest| {
                        !rest.is_empty()
                            && !rest.contains(|c: char| c == '/' || c == '@' || c.is_whitespace())
                    })
                });
                if !well_formed {
                    return Err(bad("redis://host:port or rediss://host:port"));
                }
                self.redis_url = value.to_owned();
            }
            _ => return Err(bad("a known variable name")),
        }
        Ok(())
    }
}

fn parse_secs(value: &str) -> Option<u64> {
    value
        .parse::<u64>()
        .ok()
        .filter(|secs| (1..=MAX_SESSION_TTL_SECS).contains(secs))
}

fn parse_bool(value: &str) -> Option<bool> {
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A variable whose value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "variable {} is {:?}; expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_differ_per_component() {
        let (a, b) = (Settings::stateless(), Settings::stateful());
        assert_eq!(
            (a.cookie_name.as_str(), a.base_path.as_str()),
            ("cartlab_stateless", "/stateless")
        );
        assert_eq!(
            (b.cookie_name.as_str(), b.base_path.as_str()),
            ("cartlab_stateful", "/stateful")
        );
        assert_eq!(
            (a.session_idle_secs, a.crash_enabled, a.secure_cookie),
            (1800, true, false)
        );
        assert_eq!(a.session_max_age_secs, 86_400);
        assert_eq!(
            (a.session_store, a.redis_url.as_str()),
            (StoreMode::KeyValue, "redis://127.0.0.1:6379")
        );
    }

    #[test]
    fn variables_parse_or_fail_clearly() {
        let mut s = Settings::stateless();
        s.apply_variable("cookie_secure", " TRUE ").unwrap();
        s.apply_variable("crash_enabled", "false").unwrap();
        s.apply_variable("session_idle_secs", "60").unwrap();
        s.apply_variable("session_max_age_secs", "600").unwrap();
        s.apply_variable("session_store", "redis").unwrap();
        s.apply_variable("redis_url", "redis://redis.internal:6380")
            .unwrap();
        assert!(s.secure_cookie && !s.crash_enabled && s.session_idle_secs == 60);
        assert_eq!(
            s.lifetime(),
            Lifetime {
                idle_secs: 60,
                max_age_secs: 600
            }
        );
        assert_eq!(s.session_store, StoreMode::Redis);
        assert_eq!(s.redis_url, "redis://redis.internal:6380");
        s.apply_variable("session_store", "key-value").unwrap();
        assert_eq!(s.session_store, StoreMode::KeyValue);

        for (name, value) in [
            ("cookie_secure", "yes"),
            ("crash_enabled", ""),
            ("session_idle_secs", "0"),
            ("session_idle_secs", "-5"),
            ("session_max_age_secs", "31536001"),
            ("session_ttl_secs", "60"),
            ("session_store", "memory"),
            ("session_store", ""),
            ("redis_url", ""),
            ("redis_url", "http://127.0.0.1:6379"),
            ("redis_url", "redis://"),
            ("redis_url", "redis://127.0.0.1:6379/0"),
            ("redis_url", "redis://user:secret@127.0.0.1:6379"),
            ("nope", "1"),
        ] {
            let err = s.apply_variable(name, value).unwrap_err();
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains("expected"));
        }
    }
}
