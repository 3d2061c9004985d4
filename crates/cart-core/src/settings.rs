//! Per-component settings, and reading them from Spin variables' text.

use std::fmt;

/// Default session lifetime and cookie `Max-Age`: 30 minutes.
pub const DEFAULT_SESSION_TTL_SECS: u64 = 1800;
/// Longest session lifetime a variable may ask for: one year.
pub const MAX_SESSION_TTL_SECS: u64 = 365 * 24 * 3600;
/// The Spin variables a component reads (see `spin.toml`).
pub const VARIABLE_NAMES: [&str; 3] = ["cookie_secure", "session_ttl_secs", "crash_enabled"];

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
    /// Idle lifetime of a session, and the cookie's `Max-Age`.
    pub session_ttl_secs: u64,
    /// Whether `POST /crash` may kill the instance.
    pub crash_enabled: bool,
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
            cookie_name: format!("cartlab_{kind}"),
            base_path: format!("/{kind}"),
            server_kind: kind,
            secure_cookie: false,
            session_ttl_secs: DEFAULT_SESSION_TTL_SECS,
            crash_enabled: true,
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
            "session_ttl_secs" => {
                self.session_ttl_secs = value
                    .parse::<u64>()
                    .ok()
                    .filter(|ttl| (1..=MAX_SESSION_TTL_SECS).contains(ttl))
                    .ok_or_else(|| bad("a whole number of seconds from 1 to 31536000"))?
            }
            _ => return Err(bad("a known variable name")),
        }
        Ok(())
    }
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
            (a.session_ttl_secs, a.crash_enabled, a.secure_cookie),
            (1800, true, false)
        );
    }

    #[test]
    fn variables_parse_or_fail_clearly() {
        let mut s = Settings::stateless();
        s.apply_variable("cookie_secure", " TRUE ").unwrap();
        s.apply_variable("crash_enabled", "false").unwrap();
        s.apply_variable("session_ttl_secs", "60").unwrap();
        assert!(s.secure_cookie && !s.crash_enabled && s.session_ttl_secs == 60);

        for (name, value) in [
            ("cookie_secure", "yes"),
            ("crash_enabled", ""),
            ("session_ttl_secs", "0"),
            ("session_ttl_secs", "-5"),
            ("session_ttl_secs", "31536001"),
            ("nope", "1"),
        ] {
            let err = s.apply_variable(name, value).unwrap_err();
            assert_eq!(err.variable, name);
            assert!(err.to_string().contains("expected"));
        }
    }
}
