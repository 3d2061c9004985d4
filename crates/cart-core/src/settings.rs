//! Per-component settings, and reading them from Spin variables' text.

use crate::error::{ApiError, ErrorCode};
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
/// Default cap on the sessions the stateful component holds in memory.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// Largest cap `max_sessions` may ask for: about 1 GB of carts at most in one instance.
pub const MAX_SESSIONS_LIMIT: usize = 1_000_000;
/// The Spin variables a component reads (see `spin.toml`); one not mapped into a component
/// keeps its default there.
pub const VARIABLE_NAMES: [&str; 8] = [
    "cookie_secure",
    "crash_enabled",
    "session_idle_secs",
    "session_max_age_secs",
    "session_store",
    "redis_url",
    "redis_password",
    "max_sessions",
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
    /// The build has no key-value store (Akamai Functions' build): `session_store` may only
    /// be `redis`.
    pub redis_only: bool,
    /// Redis address for [`StoreMode::Redis`], e.g. `redis://127.0.0.1:6379`.
    pub redis_url: String,
    /// Redis password (`redis_password`, a secret variable; empty: none).
    pub redis_password: Secret,
    /// Most sessions held in instance memory (stateful component only): past it the least
    /// recently used go first.
    pub max_sessions: usize,
}

/// A secret setting: never shown by `Debug` (nor anywhere else but where it is used).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl Settings {
    /// Defaults for the key-value backed component at `/stateless`.
    pub fn stateless() -> Settings {
        Settings::defaults("stateless")
    }

    /// Defaults for the stateless build that keeps sessions in Redis only (Akamai Functions:
    /// its key-value has no atomics, so no compare-and-swap, so concurrent adds would
    /// overwrite each other).
    pub fn stateless_redis_only() -> Settings {
        Settings {
            session_store: StoreMode::Redis,
            redis_only: true,
            ..Settings::stateless()
        }
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
            redis_only: false,
            redis_url: DEFAULT_REDIS_URL.to_owned(),
            redis_password: Secret::default(),
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }

    /// The address to open Redis at: [`Settings::redis_url`], with the password (if any) as
    /// `redis://:<password>@host:port`, percent-encoded. Holds the secret: never log it.
    pub fn redis_address(&self) -> String {
        let password = &self.redis_password.0;
        match self.redis_url.split_once("://") {
            Some((scheme, rest)) if !password.is_empty() => {
                format!("{scheme}://:{}@{rest}", percent_encode(password))
            }
            _ => self.redis_url.clone(),
        }
    }

    /// The session lifetime these settings ask for.
    pub fn lifetime(&self) -> Lifetime {
        Lifetime {
            idle_secs: self.session_idle_secs,
            max_age_secs: self.session_max_age_secs,
        }
    }

    /// Applies one variable as an adapter read it from its host: `Ok(None)` if it is undefined
    /// (the default stays); `Err` if the host could not read it (the host's words go to the
    /// log only: the answer names the variable).
    pub fn apply_read<E: fmt::Debug>(
        &mut self,
        name: &str,
        read: Result<Option<String>, E>,
    ) -> Result<(), ApiError> {
        match read {
            Ok(Some(value)) => Ok(self.apply_variable(name, &value)?),
            Ok(None) => Ok(()),
            Err(e) => {
                eprintln!("cartlab: cannot read Spin variable {name}: {e:?}");
                Err(ApiError::new(
                    ErrorCode::InvalidConfig,
                    format!("this component cannot read its settings (Spin variable {name})"),
                ))
            }
        }
    }

    /// Applies one variable's value (one of [`VARIABLE_NAMES`]).
    pub fn apply_variable(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let bad = |expected: &'static str| ConfigError {
            variable: name.to_owned(),
            expected,
        };
        if name == "redis_password" {
            // Any text, as given: spaces may be part of a password.
            self.redis_password = Secret(value.to_owned());
            return Ok(());
        }
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
                    "key-value" if self.redis_only => {
                        return Err(bad(
                            "redis: this build keeps sessions in Redis only (its host's \
                             key-value has no compare-and-swap, so concurrent writes would be lost)",
                        ));
                    }
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
            "max_sessions" => {
                self.max_sessions = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_SESSIONS_LIMIT).contains(n))
                    .ok_or_else(|| bad("a whole number of sessions from 1 to 1000000"))?
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

/// `text` with every byte but RFC 3986's unreserved characters as `%XX`: safe in a URL's
/// userinfo.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A variable whose value cannot be used. It does not hold the value: a rejected value may
/// be a secret put in the wrong variable (a password in `redis_url`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Spin variable {} has a value this component cannot use; expected {}",
            self.variable, self.expected
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
        assert_eq!((a.redis_password.0.as_str(), a.max_sessions), ("", 10_000));
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
        s.apply_variable("max_sessions", "250").unwrap();
        assert_eq!(s.max_sessions, 250);
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
            ("max_sessions", "0"),
            ("max_sessions", "1000001"),
            ("max_sessions", "ten"),
            ("nope", "1"),
        ] {
            let err = s.apply_variable(name, value).unwrap_err();
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains("expected"));
            assert!(!err.to_string().contains("secret"), "never echoed: {err}");
        }
    }

    #[test]
    fn the_redis_only_build_refuses_key_value() {
        let mut s = Settings::stateless_redis_only();
        assert_eq!(
            (s.session_store, s.server_kind),
            (StoreMode::Redis, "stateless")
        );
        assert_eq!(
            s.cookie_name,
            Settings::stateless().cookie_name,
            "same cookie"
        );
        let err = s.apply_variable("session_store", "key-value").unwrap_err();
        assert!(err.to_string().contains("Redis only"), "{err}");
        assert_eq!(s.session_store, StoreMode::Redis);
        s.apply_variable("session_store", "redis").unwrap();
        let mut other = Settings::stateless();
        other.apply_variable("session_store", "key-value").unwrap();
    }

    #[test]
    fn the_redis_password_goes_into_the_address_encoded_and_nowhere_else() {
        let mut s = Settings::stateless();
        assert_eq!(s.redis_address(), "redis://127.0.0.1:6379", "no password");
        s.apply_variable("redis_url", "rediss://cache.internal:6380")
            .unwrap();
        s.apply_variable("redis_password", " p@ss:w/rd é%").unwrap();
        assert_eq!(
            s.redis_address(),
            "rediss://:%20p%40ss%3Aw%2Frd%20%C3%A9%25@cache.internal:6380"
        );
        assert_eq!(
            s.redis_url, "rediss://cache.internal:6380",
            "the allowed host"
        );
        assert!(!format!("{s:?}").contains("ss:w"), "Debug hides it");
        s.apply_variable("redis_password", "").unwrap();
        assert_eq!(s.redis_address(), "rediss://cache.internal:6380");
    }
}
