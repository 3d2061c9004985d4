//! [`RedisUrl`]: a Redis address as Spin takes one, in `runtime-config.toml` and in
//! `spin:redis` `open`: `redis://[user][:password@]host[:port][/db]`, user and password
//! percent-encoded (`redis://:<password>@host:port` for `requirepass`). The credentials are
//! for connecting only: the URL shows (`Display` and `Debug`) as `redis://***@host:port`,
//! so no log line, error, summary or answer to a guest carries them.

use std::fmt;

use redis::{Client, ConnectionAddr, IntoConnectionInfo};

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisUrl {
    /// Accepted by the Redis client's own parser, so connecting with it cannot fail to parse.
    url: url::Url,
}

/// Why a text is not a Redis URL. It never repeats the text, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRedisUrl(String);

impl fmt::Display for InvalidRedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid Redis URL ({}); expected redis://[user:password@]host:port",
            self.0
        )
    }
}

impl std::error::Error for InvalidRedisUrl {}

impl RedisUrl {
    pub fn parse(text: &str) -> Result<Self, InvalidRedisUrl> {
        let url = url::Url::parse(text).map_err(|e| InvalidRedisUrl(e.to_string()))?;
        // The client's rules: scheme, host, database number, the credentials' encoding.
        url.clone()
            .into_connection_info()
            .map_err(|e| InvalidRedisUrl(e.to_string()))?;
        Ok(Self { url })
    }

    pub fn scheme(&self) -> &str {
        self.url.scheme()
    }

    /// A client for this URL, credentials included. [`parse`](Self::parse) already checked
    /// what this checks; the error is passed on rather than unwrapped.
    pub fn client(&self) -> redis::RedisResult<Client> {
        Client::open(self.url.clone())
    }

    /// Whether the URL carries a user name or password.
    pub fn has_credentials(&self) -> bool {
        // Unix socket URLs carry credentials in the query (`?user=..&pass=..`).
        !self.url.username().is_empty()
            || self.url.password().is_some()
            || self
                .url
                .query_pairs()
                .any(|(k, _)| k == "user" || k == "pass")
    }

    /// The host and port the client connects to, as the client reads them (`None`: a Unix
    /// socket, no network destination).
    pub fn tcp_destination(&self) -> Option<(String, u16)> {
        match self.client().ok()?.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                Some((host.clone(), *port))
            }
            _ => None,
        }
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let has_credentials = self.has_credentials();
        let mut shown = self.url.clone();
        // These fail only for a URL without a host, which has no userinfo to clear.
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        let text = shown.as_str();
        match text.split_once("://") {
            Some((scheme, rest)) if has_credentials => write!(f, "{scheme}://***@{rest}"),
            _ => f.write_str(text),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2";

    #[test]
    fn shows_without_credentials() {
        for (text, shown) in [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://:hunter2@127.0.0.1:6379",
                "redis://***@127.0.0.1:6379",
            ),
            ("redis://cart:hunter2@h:6380/2", "redis://***@h:6380/2"),
            ("redis://cart@h", "redis://***@h"),
            ("redis://:hunter2@[::1]:6379", "redis://***@[::1]:6379"),
            ("redis://h:1/?protocol=resp3", "redis://h:1/"),
            (
                "unix:///tmp/redis.sock?pass=hunter2",
                "unix://***@/tmp/redis.sock",
            ),
        ] {
            let url = RedisUrl::parse(text).unwrap();
            assert_eq!(url.to_string(), shown, "{text}");
            assert_eq!(format!("{url:?}"), format!("RedisUrl({shown})"));
        }
    }

    #[test]
    fn connects_with_the_decoded_credentials() {
        let url = RedisUrl::parse("redis://cart:p%40ss%3Aw%2Frd@127.0.0.1:6380").unwrap();
        let client = url.client().unwrap();
        let info = client.get_connection_info().redis_settings();
        assert_eq!(info.username(), Some("cart"));
        assert_eq!(info.password(), Some("p@ss:w/rd"));
        assert_eq!(url.tcp_destination(), Some(("127.0.0.1".into(), 6380)));
        assert_eq!(url.scheme(), "redis");
        let url = RedisUrl::parse("redis://:hunter2@h").unwrap();
        assert_eq!(url.tcp_destination(), Some(("h".into(), 6379)));
        let url = RedisUrl::parse("unix:///tmp/redis.sock").unwrap();
        assert_eq!(url.tcp_destination(), None);
    }

    #[test]
    fn invalid_urls_are_errors_that_never_repeat_the_text() {
        for text in [
            "",
            "127.0.0.1:6379",
            "http://:hunter2@h:6379",
            "redis://:hunter2@h:port",
            "redis://:hunter2@h:6379/db",
            "redis://:hunter2@",
            "redis://:hunter2%FF@h:6379",
            // This host is built without TLS.
            "rediss://:hunter2@h:6379",
        ] {
            let e = RedisUrl::parse(text).unwrap_err().to_string();
            assert!(e.starts_with("invalid Redis URL"), "{text}: {e}");
            assert!(!e.contains(SECRET), "{text}: {e}");
        }
    }
}
