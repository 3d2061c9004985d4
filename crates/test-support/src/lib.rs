//! Fixtures shared by cartlab's unit tests and `crates/cartlab/tests/`: real servers on free
//! loopback ports, one module per server. A fixture panics (failing the test) when its
//! server is missing or does not come up: tests that need a server never silently skip.

pub mod redis_sentinel;
pub mod redis_server;

pub use redis_sentinel::{MASTER_NAME, SentinelSet};
pub use redis_server::{RedisAuth, RedisServer};

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// A free 127.0.0.1 port (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot find a free port: {e}"),
    }
}

/// A fresh private directory under the system temp dir, named `cartlab-<what>-<pid>-<n>`;
/// the fixture that asked for it removes it.
pub fn scratch_dir(what: &str) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cartlab-{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}
