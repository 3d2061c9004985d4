//! The server's limits (`cartlab up` flags): how long a client may take to send a request, how
//! long an idle connection stays open, and how many connections and requests the host takes on
//! at once. Past a limit the host answers a prompt 503 with `Retry-After`, never a hang.

use crate::app::duration::parse_duration;
use std::time::Duration;

/// `--header-read-timeout` when not given.
pub const DEFAULT_HEADER_READ_TIMEOUT: &str = "10s";
/// `--keep-alive-timeout` when not given.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: &str = "5s";
/// `--request-body-timeout` when not given.
pub const DEFAULT_REQUEST_BODY_TIMEOUT: &str = "10s";
/// `--max-connections` when not given.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// `--max-requests-in-flight` when not given.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 1024;
/// How much of a request body the host reads before it hands the request to an instance: a
/// body that trickles in holds a connection, not an instance. A larger body streams on.
pub const PREFETCHED_BODY: usize = 64 * 1024;
/// Refused connections being answered at once; past it a refused connection is just closed.
pub const MAX_REFUSING: usize = 256;
/// Descriptors kept free beside the connections (stores, compiled code, refusals, logs).
const RESERVED_DESCRIPTORS: usize = MAX_REFUSING + 128;

#[derive(clap::Args, Clone, Debug)]
pub struct ServeLimits {
    /// A request's head (request line and headers) must have arrived this long after the
    /// connection began waiting for it (on a kept-alive connection: after the previous
    /// response), or the connection is closed.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_HEADER_READ_TIMEOUT)]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight that sends nothing for this long is closed
    /// (at most --header-read-timeout).
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_KEEP_ALIVE_TIMEOUT)]
    pub keep_alive_timeout: Duration,
    /// A request body must have arrived whole this long after its head. The host reads the
    /// first 64 KiB itself before an instance sees the request (a slow body holds a
    /// connection, not an instance) and answers 408 if that part is late; past it the
    /// component sees the body fail and answers for itself.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_REQUEST_BODY_TIMEOUT)]
    pub request_body_timeout: Duration,
    /// Open connections at most (fewer if the open-file limit, `ulimit -n`, is lower); a
    /// connection past it is answered 503 with Retry-After and Connection: close.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    pub max_connections: usize,
    /// Requests handed to components at once (the lab API and the health check aside); a
    /// request past it is answered 503 `overloaded` with Retry-After.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUESTS_IN_FLIGHT, value_parser = at_least_one)]
    pub max_requests_in_flight: usize,
    /// Sessions one client address may start per minute; past it, its requests without a
    /// session cookie get 429 with Retry-After while its sessions go on. For a host reachable
    /// by others: without it one client can fill the session store [default: no cap].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_new_sessions_per_minute: Option<u32>,
    /// Largest buffer for one HTTP/1 connection's request head, in bytes: a head past it is
    /// answered 431; at least 8192 [default: hyper's, about 400 KiB].
    #[arg(long, env = "SPIN_HTTP1_MAX_BUF_SIZE", value_parser = http1_buf_size)]
    pub http1_max_buf_size: Option<usize>,
}

/// hyper's least HTTP/1 buffer (it refuses a smaller one).
const MIN_HTTP1_BUF_SIZE: usize = 8192;

/// `--http1-max-buf-size`: a byte count hyper accepts.
fn http1_buf_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(size) if size >= MIN_HTTP1_BUF_SIZE => Ok(size),
        Ok(_) => Err(format!("must be at least {MIN_HTTP1_BUF_SIZE}")),
        Err(_) => Err(format!("`{text}` is not a whole number of bytes")),
    }
}

/// A count flag: a whole number, at least 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(value) => Ok(value),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

impl Default for ServeLimits {
    fn default() -> Self {
        let duration = |text| parse_duration(text).expect("the default durations parse");
        Self {
            header_read_timeout: duration(DEFAULT_HEADER_READ_TIMEOUT),
            keep_alive_timeout: duration(DEFAULT_KEEP_ALIVE_TIMEOUT),
            request_body_timeout: duration(DEFAULT_REQUEST_BODY_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
            max_new_sessions_per_minute: None,
            http1_max_buf_size: None,
        }
    }
}

impl ServeLimits {
    /// A start-up error for limits that contradict each other.
    pub fn check(&self) -> anyhow::Result<()> {
        // hyper counts the header-read timeout from the end of the previous response, so an
        // idle connection never outlives it.
        if self.keep_alive_timeout > self.header_read_timeout {
            anyhow::bail!(
                "--keep-alive-timeout ({:?}) cannot exceed --header-read-timeout ({:?}): an idle connection is closed by the header-read timeout first",
                self.keep_alive_timeout,
                self.header_read_timeout
            );
        }
        for (flag, value) in [
            ("--header-read-timeout", self.header_read_timeout),
            ("--keep-alive-timeout", self.keep_alive_timeout),
            ("--request-body-timeout", self.request_body_timeout),
        ] {
            if value.is_zero() {
                anyhow::bail!("{flag} must be longer than 0");
            }
        }
        Ok(())
    }

    /// `--max-connections`, lowered to fit the open-file limit: past that limit `accept`
    /// fails and clients would wait in the kernel's queue instead of getting a 503.
    pub fn connections_that_fit(&self) -> usize {
        let Some(open_files) = open_file_limit() else {
            return self.max_connections;
        };
        let fit = open_files.saturating_sub(RESERVED_DESCRIPTORS).max(1);
        if fit < self.max_connections {
            tracing::warn!(
                max_connections = self.max_connections,
                open_file_limit = open_files,
                using = fit,
                "--max-connections lowered to fit the open-file limit (raise it with ulimit -n)"
            );
            return fit;
        }
        self.max_connections
    }
}

/// The soft open-file limit (`ulimit -n`), where the system tells it; `None` when unlimited
/// or unknown.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

fn parse_open_file_limit(limits: &str) -> Option<usize> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_read_from_procs_table() {
        let table = "Limit                     Soft Limit           Hard Limit           Units\n\
                     Max processes             127573               127573               processes\n\
                     Max open files            1024                 524288               files\n";
        assert_eq!(parse_open_file_limit(table), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_file_limit(unlimited), None);
        assert_eq!(parse_open_file_limit(""), None);
    }

    #[test]
    fn limits_that_contradict_each_other_are_refused() {
        assert!(ServeLimits::default().check().is_ok());
        let idle_longer = ServeLimits {
            keep_alive_timeout: Duration::from_secs(20),
            ..ServeLimits::default()
        };
        assert!(idle_longer.check().is_err());
        let zero = ServeLimits {
            request_body_timeout: Duration::ZERO,
            ..ServeLimits::default()
        };
        assert!(zero.check().is_err());
    }
}
