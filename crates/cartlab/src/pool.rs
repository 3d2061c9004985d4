//! Instance pools with Spin 4.1's reuse semantics, built on wasmtime-wasi-http's
//! `ProxyHandler` (the machinery Spin itself uses): an instance serves at most
//! `max_reuse` requests, at most `max_concurrent` at once (past that another
//! instance starts, with its own memory), is dropped after `idle_timeout`
//! without work, and is discarded when it traps.

use crate::instance::{ComponentGrants, InstanceState};
use anyhow::{Context as _, bail};
use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, ViewFn, WorkerExpiration, WorkerState,
    WorkerStatus,
};
use wasmtime_wasi_http::p3::WasiHttpView;

/// A flag value that is either one value or a range `A..B` (inclusive) from
/// which each new instance draws its own value, as `spin up` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampled<T> {
    pub low: T,
    pub high: T,
}

impl<T: Copy + PartialOrd> Sampled<T> {
    pub fn fixed(value: T) -> Self {
        Self {
            low: value,
            high: value,
        }
    }
}

impl Sampled<u64> {
    pub fn sample(&self) -> u64 {
        if self.low == self.high {
            return self.low;
        }
        self.low + random_u64() % (self.high - self.low + 1)
    }
}

impl Sampled<Duration> {
    pub fn sample(&self) -> Duration {
        let span = (self.high - self.low).as_millis() as u64;
        if span == 0 {
            return self.low;
        }
        self.low + Duration::from_millis(random_u64() % (span + 1))
    }
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // Sampling limits is not security-sensitive; a failed read just means no jitter.
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

fn split_range(text: &str) -> (&str, Option<&str>) {
    match text.split_once("..") {
        Some((low, high)) => (low.trim(), Some(high.trim())),
        None => (text.trim(), None),
    }
}

impl FromStr for Sampled<u64> {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let parse = |part: &str| -> anyhow::Result<u64> {
            let value: u64 = part
                .parse()
                .with_context(|| format!("`{part}` is not a whole number"))?;
            if value == 0 {
                bail!("must be at least 1");
            }
            Ok(value)
        };
        let (low, high) = split_range(text);
        let low = parse(low)?;
        let high = high.map(parse).transpose()?.unwrap_or(low);
        if high < low {
            bail!("range `{text}` is empty: write it low..high");
        }
        Ok(Self { low, high })
    }
}

/// Durations as Spin writes them: `1s`, `250ms`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((text, ""), |at| text.split_at(at));
    let value: f64 = number
        .parse()
        .with_context(|| format!("`{text}` is not a duration (try 1s, 500ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => bail!("unknown duration unit `{other}` in `{text}` (use ms, s, m or h)"),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        bail!("`{text}` is not a valid duration");
    }
    Ok(Duration::from_secs_f64(seconds))
}

impl FromStr for Sampled<Duration> {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let (low, high) = split_range(text);
        let low = parse_duration(low)?;
        let high = high.map(parse_duration).transpose()?.unwrap_or(low);
        if high < low {
            bail!("range `{text}` is empty: write it low..high");
        }
        Ok(Self { low, high })
    }
}

impl<T: fmt::Debug + PartialEq> fmt::Display for Sampled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{:?}", self.low)
        } else {
            write!(f, "{:?}..{:?}", self.low, self.high)
        }
    }
}

/// The recycling policy of `spin up`, one per lab host.
#[derive(Clone, Debug)]
pub struct ReusePolicy {
    pub max_reuse: Sampled<u64>,
    pub max_concurrent: Sampled<u64>,
    pub idle_timeout: Sampled<Duration>,
    /// `--request-timeout`: a request without a response by then fails and
    /// its instance is retired.
    pub request_timeout: Option<Duration>,
}

impl Default for ReusePolicy {
    fn default() -> Self {
        Self {
            max_reuse: Sampled::fixed(128),
            max_concurrent: Sampled::fixed(16),
            idle_timeout: Sampled::fixed(Duration::from_secs(1)),
            request_timeout: None,
        }
    }
}

/// Why an instance went away: the lifecycle log and the lab API say this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecycleReason {
    ReuseLimit,
    Idle,
    Trap,
    Timeout,
    Shutdown,
}

impl fmt::Display for RecycleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReuseLimit => "reuse-limit",
            Self::Idle => "idle",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Shutdown => "shutdown",
        })
    }
}

/// One component's instances: the `HandlerState` the `ProxyHandler` asks for
/// new instances.
pub struct ComponentPool {
    pub component: String,
    engine: Engine,
    pre: ProxyPre<InstanceState>,
    grants: Arc<ComponentGrants>,
    policy: ReusePolicy,
    next_number: AtomicU64,
    live: Arc<AtomicUsize>,
    shutting_down: Arc<AtomicBool>,
}

impl ComponentPool {
    pub fn new(
        engine: Engine,
        pre: ProxyPre<InstanceState>,
        grants: Arc<ComponentGrants>,
        policy: ReusePolicy,
    ) -> Self {
        Self {
            component: grants.id.clone(),
            engine,
            pre,
            grants,
            policy,
            next_number: AtomicU64::new(1),
            live: Arc::new(AtomicUsize::new(0)),
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the pool as stopping: instances dropped from now on are logged
    /// as recycled for `shutdown`, not as traps.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Instances alive right now.
    pub fn live_instances(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

impl HandlerState for ComponentPool {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = PooledInstance;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<InstanceState, Expiry, PooledInstance>> {
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let mut store = Store::new(&self.engine, InstanceState::new(self.grants.clone()));
        let proxy = self.pre.instantiate_async(&mut store).await?;
        let max_reuse = self.policy.max_reuse.sample();
        let max_concurrent = self.policy.max_concurrent.sample();
        let idle_timeout = self.policy.idle_timeout.sample();
        self.live.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            component = %self.component,
            instance = number,
            max_reuse,
            max_concurrent,
            idle_timeout = ?idle_timeout,
            "instance created"
        );
        Ok(Instance {
            store,
            proxy,
            view: ViewFn::P3(<InstanceState as WasiHttpView>::http),
            expiration: Expiry::new(idle_timeout, self.policy.request_timeout),
            state: PooledInstance {
                component: self.component.clone(),
                number,
                max_reuse: usize::try_from(max_reuse).unwrap_or(usize::MAX),
                max_concurrent: usize::try_from(max_concurrent).unwrap_or(usize::MAX),
                served: AtomicUsize::new(0),
                request_timeout: self.policy.request_timeout,
                born: Instant::now(),
                live: self.live.clone(),
                shutting_down: self.shutting_down.clone(),
            },
        })
    }
}

/// One live instance's bookkeeping.
pub struct PooledInstance {
    component: String,
    number: u64,
    max_reuse: usize,
    max_concurrent: usize,
    served: AtomicUsize,
    request_timeout: Option<Duration>,
    born: Instant,
    live: Arc<AtomicUsize>,
    shutting_down: Arc<AtomicBool>,
}

impl WorkerState for PooledInstance {
    type StoreData = InstanceState;
    type RequestId = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        self.served.store(total, Ordering::Relaxed);
        if total >= self.max_reuse {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        _store: StoreContextMut<'_, InstanceState>,
        _id: (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        match self.request_timeout {
            Some(timeout) => Box::pin(tokio::time::sleep(timeout)),
            None => Box::pin(std::future::pending()),
        }
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        let served = self.served.load(Ordering::Relaxed);
        let reason = match &result {
            // The host is stopping and drops its workers (their tasks end).
            _ if self.shutting_down.load(Ordering::Relaxed) => RecycleReason::Shutdown,
            Err(error) if error.to_string().contains("timed out") => RecycleReason::Timeout,
            Err(_) => RecycleReason::Trap,
            Ok(()) if served >= self.max_reuse => RecycleReason::ReuseLimit,
            Ok(()) => RecycleReason::Idle,
        };
        self.live.fetch_sub(1, Ordering::Relaxed);
        // A trap's message ends with its cause; the wasm backtrace before it
        // is noise in a lifecycle log.
        let error = result
            .err()
            .filter(|_| reason != RecycleReason::Shutdown)
            .map(|error| {
                let text = format!("{error:#}");
                match text.find("wasm trap:") {
                    Some(at) => text[at..].to_string(),
                    None => text,
                }
            });
        tracing::info!(
            component = %self.component,
            instance = self.number,
            %reason,
            served,
            lived = ?self.born.elapsed(),
            error,
            "instance recycled"
        );
        drop(store);
    }
}

/// Decides, from outside the guest's event loop, when an instance expires:
/// after `idle_timeout` without work, or when a request outlives the request
/// timeout.
pub struct Expiry {
    idle_timeout: Duration,
    request_timeout: Option<Duration>,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed_for: Option<tokio::time::Instant>,
}

impl Expiry {
    fn new(idle_timeout: Duration, request_timeout: Option<Duration>) -> Self {
        Self {
            idle_timeout,
            request_timeout,
            timer: Box::pin(tokio::time::sleep(idle_timeout)),
            armed_for: None,
        }
    }
}

impl WorkerExpiration for Expiry {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let limit = match status {
            WorkerStatus::Idle => Some(self.idle_timeout),
            WorkerStatus::Requests => self.request_timeout,
            // Work the guest does after answering is not bounded, as in Spin.
            WorkerStatus::PostReturn => None,
        };
        let Some(limit) = limit else {
            self.armed_for = None;
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(start + limit);
        if self.armed_for != Some(deadline) {
            self.armed_for = Some(deadline);
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_as_spin_writes_them() {
        assert_eq!("128".parse::<Sampled<u64>>().unwrap(), Sampled::fixed(128));
        let range: Sampled<u64> = "1..10".parse().unwrap();
        assert_eq!((range.low, range.high), (1, 10));
        for _ in 0..200 {
            let value = range.sample();
            assert!((1..=10).contains(&value), "{value}");
        }
        assert!("0".parse::<Sampled<u64>>().is_err());
        assert!("5..2".parse::<Sampled<u64>>().is_err());
        assert!("x".parse::<Sampled<u64>>().is_err());
    }

    #[test]
    fn durations_parse_as_spin_writes_them() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("").is_err());
        let range: Sampled<Duration> = "1s..3s".parse().unwrap();
        for _ in 0..100 {
            let value = range.sample();
            assert!(value >= Duration::from_secs(1) && value <= Duration::from_secs(3));
        }
    }
}
