//! Instance pools with Spin 4.1's reuse semantics, built on wasmtime-wasi-http's
//! `ProxyHandler` (the machinery Spin itself uses): an instance serves at most
//! `max_reuse` requests, at most `max_concurrent` at once (past that another
//! instance starts, with its own memory), is dropped after `idle_timeout`
//! without work, and is discarded when it traps. The lab host adds two things
//! Spin lacks: every instance is registered with the [`Lab`] (so it can be
//! listed and retired on demand), and a pool may be one slot of a fleet
//! (`--instances N`), in which case its instances live until recycled.

use crate::app::sampled::Sampled;
use crate::runtime::instance::{ComponentGrants, InstanceState};
use crate::runtime::lab::{InstanceHandle, Lab, RecycleReason, ServedBy};
use crate::runtime::slot::SlotState;
use std::fmt;
use std::pin::Pin;
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
use wasmtime_wasi_http::p2::bindings::ProxyPre as IncomingHandlerPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// Component instances the pooling allocator holds for all components together.
pub const POOLED_INSTANCES: u16 = 256;

/// The recycling policy of `spin up`, one per lab host.
#[derive(Clone, Debug)]
pub struct ReusePolicy {
    pub max_reuse: Sampled<u64>,
    pub max_concurrent: Sampled<u64>,
    /// `None`: instances never expire for idleness (fleet slots, by default).
    pub idle_timeout: Option<Sampled<Duration>>,
    /// `--request-timeout`: a request without a response by then fails and
    /// its instance is retired.
    pub request_timeout: Option<Duration>,
    /// `--max-component-instances`: this component's share of the engine's instance pool,
    /// so that a flood on one component cannot starve the others; `None`: no share (a
    /// fleet's slots hold one instance each).
    pub max_instances: Option<usize>,
}

impl Default for ReusePolicy {
    fn default() -> Self {
        Self {
            max_reuse: Sampled::fixed(128),
            max_concurrent: Sampled::fixed(16),
            idle_timeout: Some(Sampled::fixed(Duration::from_secs(1))),
            request_timeout: None,
            max_instances: None,
        }
    }
}

impl ReusePolicy {
    /// Every request on a fresh instance, one at a time: what Spin does with WASIp2
    /// components, and what a host that reuses no instances does with any.
    pub fn fresh_per_request(&self) -> Self {
        Self {
            max_reuse: Sampled::fixed(1),
            max_concurrent: Sampled::fixed(1),
            ..self.clone()
        }
    }

    /// What a fleet slot gets unless told otherwise: one long-lived instance
    /// that serves everything routed to it, like a server process.
    pub fn long_lived() -> Self {
        Self {
            max_reuse: Sampled::fixed(u64::MAX),
            max_concurrent: Sampled::fixed(u64::MAX),
            idle_timeout: None,
            request_timeout: None,
            max_instances: None,
        }
    }
}

/// A component's pre-instance, by the HTTP world it exports.
#[derive(Clone)]
pub enum HttpPre {
    /// `wasi:http/handler@0.3.0` (spin-sdk 7, WASIp3): instances reused as the policy says.
    Service(ServicePre<InstanceState>),
    /// `wasi:http/incoming-handler@0.2.0` (spin-sdk <= 5.2, WASIp2): Spin runs every request
    /// on a fresh instance, whatever the reuse flags say.
    IncomingHandler(IncomingHandlerPre<InstanceState>),
}

impl HttpPre {
    fn proxy(&self) -> (ProxyPre<InstanceState>, ViewFn<InstanceState>) {
        match self {
            HttpPre::Service(pre) => (
                ProxyPre::P3(pre.clone()),
                ViewFn::P3(<InstanceState as wasmtime_wasi_http::p3::WasiHttpView>::http),
            ),
            HttpPre::IncomingHandler(pre) => (
                ProxyPre::P2(pre.clone()),
                ViewFn::P2(<InstanceState as wasmtime_wasi_http::p2::WasiHttpView>::http),
            ),
        }
    }
}

/// One component's instances: the `HandlerState` the `ProxyHandler` asks for
/// new instances.
pub struct ComponentPool {
    pub component: String,
    engine: Engine,
    pre: ProxyPre<InstanceState>,
    view: ViewFn<InstanceState>,
    grants: Arc<ComponentGrants>,
    policy: ReusePolicy,
    /// Shared by all pools of a component, so instance numbers stay unique
    /// across fleet slots.
    next_number: Arc<AtomicU64>,
    shutting_down: Arc<AtomicBool>,
    lab: Arc<Lab>,
    slot: Option<Arc<SlotState>>,
    live: Arc<AtomicUsize>,
}

/// What the pools of one component share.
#[derive(Clone)]
pub struct PoolContext {
    pub engine: Engine,
    pub pre: HttpPre,
    pub grants: Arc<ComponentGrants>,
    pub lab: Arc<Lab>,
    pub next_number: Arc<AtomicU64>,
    pub shutting_down: Arc<AtomicBool>,
    /// The component's live instances, counted against its share.
    live: Arc<AtomicUsize>,
}

impl PoolContext {
    pub fn new(engine: Engine, pre: HttpPre, grants: Arc<ComponentGrants>, lab: Arc<Lab>) -> Self {
        Self {
            engine,
            pre,
            grants,
            lab,
            next_number: Arc::new(AtomicU64::new(1)),
            shutting_down: Arc::new(AtomicBool::new(false)),
            live: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Marks the component as stopping: instances dropped from now on are
    /// logged as recycled for `shutdown`, not as traps.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }
}

impl ComponentPool {
    pub fn new(context: &PoolContext, policy: ReusePolicy, slot: Option<Arc<SlotState>>) -> Self {
        let policy = match context.pre {
            HttpPre::Service(_) => policy,
            HttpPre::IncomingHandler(_) => policy.fresh_per_request(),
        };
        let (pre, view) = context.pre.proxy();
        Self {
            component: context.grants.id.clone(),
            engine: context.engine.clone(),
            pre,
            view,
            grants: context.grants.clone(),
            policy,
            next_number: context.next_number.clone(),
            shutting_down: context.shutting_down.clone(),
            lab: context.lab.clone(),
            slot,
            live: context.live.clone(),
        }
    }

    /// Counts a new instance against the component's share; `false` (counting nothing) when
    /// the share is used up.
    fn take_share(&self) -> bool {
        let Some(share) = self.policy.max_instances else {
            self.live.fetch_add(1, Ordering::AcqRel);
            return true;
        };
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < share).then_some(live + 1)
            })
            .is_ok()
    }
}

/// A component already runs its share of instances (`--max-component-instances`): the
/// request is refused at once, never queued behind the flood.
#[derive(Debug)]
pub struct ShareFull;

impl fmt::Display for ShareFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the component runs its share of instances (--max-component-instances)")
    }
}

impl std::error::Error for ShareFull {}

impl HandlerState for ComponentPool {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiry;
    type WorkerState = PooledInstance;

    async fn instantiate(
        &self,
    ) -> wasmtime::Result<Instance<InstanceState, Expiry, PooledInstance>> {
        if !self.take_share() {
            return Err(wasmtime::Error::new(ShareFull));
        }
        // Counted until the instance is dropped, or now if it never starts.
        let share = ShareHeld(self.live.clone());
        // A fleet slot holds one instance at a time and none while it restarts.
        let generation = match &self.slot {
            Some(slot) => Some(slot.begin_start()?),
            None => None,
        };
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let server_id = InstanceHandle::new_server_id();
        let mut store = Store::new(
            &self.engine,
            InstanceState::new(self.grants.clone(), &server_id),
        );
        let proxy = match self.pre.instantiate_async(&mut store).await {
            Ok(proxy) => proxy,
            Err(error) => {
                if let Some(slot) = &self.slot {
                    slot.finish_start(None);
                }
                return Err(error);
            }
        };
        let max_reuse = self.policy.max_reuse.sample();
        let max_concurrent = self.policy.max_concurrent.sample();
        let idle_timeout = self.policy.idle_timeout.map(|timeout| timeout.sample());
        let handle = Arc::new(InstanceHandle::new(
            &self.component,
            number,
            self.slot.as_ref().map(|slot| slot.index),
            generation.unwrap_or(number),
            server_id,
        ));
        if let Some(slot) = &self.slot {
            slot.finish_start(Some(handle.clone()));
        }
        self.lab.register(handle.clone());
        tracing::info!(
            component = %self.component,
            instance = number,
            slot = self.slot.as_ref().map(|slot| slot.index),
            max_reuse = %Limit(max_reuse),
            max_concurrent = %Limit(max_concurrent),
            idle_timeout = ?idle_timeout,
            "instance created"
        );
        Ok(Instance {
            store,
            proxy,
            view: self.view,
            expiration: Expiry::new(idle_timeout, self.policy.request_timeout, handle.clone()),
            state: PooledInstance {
                max_reuse: usize::try_from(max_reuse).unwrap_or(usize::MAX),
                max_concurrent: usize::try_from(max_concurrent).unwrap_or(usize::MAX),
                request_timeout: self.policy.request_timeout,
                shutting_down: self.shutting_down.clone(),
                handle,
                lab: self.lab.clone(),
                slot: self.slot.clone(),
                _share: share,
            },
        })
    }
}

/// A limit in a log line: `unlimited` rather than 18446744073709551615.
struct Limit(u64);

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == u64::MAX {
            f.write_str("unlimited")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// One live instance's limits; who it is and what it has served live in its `handle`.
pub struct PooledInstance {
    max_reuse: usize,
    max_concurrent: usize,
    request_timeout: Option<Duration>,
    shutting_down: Arc<AtomicBool>,
    handle: Arc<InstanceHandle>,
    lab: Arc<Lab>,
    slot: Option<Arc<SlotState>>,
    _share: ShareHeld,
}

/// One instance's place in its component's share, given back when dropped.
struct ShareHeld(Arc<AtomicUsize>);

impl Drop for ShareHeld {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WorkerState for PooledInstance {
    type StoreData = InstanceState;
    type RequestId = ServedBy;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_reuse || self.handle.is_retiring() {
            self.handle.close();
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
        served_by: ServedBy,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        self.handle.request_started();
        let _ = served_by.set(self.handle.clone());
        match self.request_timeout {
            Some(timeout) => {
                let handle = self.handle.clone();
                Box::pin(async move {
                    tokio::time::sleep(timeout).await;
                    handle.mark_timed_out();
                })
            }
            None => Box::pin(std::future::pending()),
        }
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        let served = self.handle.served();
        let reason = match &result {
            // The host is stopping and drops its workers (their tasks end).
            _ if self.shutting_down.load(Ordering::Relaxed) => RecycleReason::Shutdown,
            Err(_) if self.handle.timed_out() => RecycleReason::Timeout,
            Err(_) => RecycleReason::Trap,
            Ok(()) if self.handle.is_retiring() => RecycleReason::Recycled,
            Ok(()) if served >= self.max_reuse as u64 => RecycleReason::ReuseLimit,
            Ok(()) => RecycleReason::Idle,
        };
        self.lab.unregister(&self.handle, reason);
        if let Some(slot) = &self.slot {
            slot.vacate(&self.handle);
        }
        // A crashed server is out of rotation until it has restarted.
        if reason == RecycleReason::Trap
            && let Some(slot) = &self.slot
        {
            slot.take_down(&self.lab);
        }
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
            component = %self.handle.component,
            instance = self.handle.number,
            %reason,
            served,
            lived = ?self.handle.born.elapsed(),
            error,
            "instance recycled"
        );
        drop(store);
    }
}

/// Decides, from outside the guest's event loop, when an instance expires:
/// after `idle_timeout` without work, when a request outlives the request
/// timeout, or, once retired through the lab API, as soon as it is idle.
pub struct Expiry {
    idle_timeout: Option<Duration>,
    request_timeout: Option<Duration>,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed_for: Option<tokio::time::Instant>,
    handle: Arc<InstanceHandle>,
}

impl Expiry {
    fn new(
        idle_timeout: Option<Duration>,
        request_timeout: Option<Duration>,
        handle: Arc<InstanceHandle>,
    ) -> Self {
        Self {
            idle_timeout,
            request_timeout,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed_for: None,
            handle,
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
        self.handle.register_waker(cx.waker());
        if status == WorkerStatus::Idle && self.handle.is_retiring() {
            return Poll::Ready(());
        }
        let limit = match status {
            WorkerStatus::Idle => self.idle_timeout,
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
        let expired = self.timer.as_mut().poll(cx);
        // Expiring with requests unanswered is what the handler reports as a timeout.
        if expired.is_ready() && status != WorkerStatus::Idle {
            self.handle.mark_timed_out();
        }
        expired
    }
}
