//! What the lab host knows about its instances, beyond what Spin shows: a
//! registry of live instances (for `/_lab/instances` and recycling on demand)
//! and a stream of lifecycle and request events (for `/_lab/events` and the
//! dashboard's timeline).

use futures::task::AtomicWaker;
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};

/// Who may use the `/_lab/` admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LabAccess {
    /// Only clients on a loopback address (the default).
    Loopback,
    /// Any client that can reach the listener.
    Any,
    /// Nobody: `/_lab/` answers 404, as under `spin up`.
    Off,
}

/// The registry and event stream of one lab host.
pub struct Lab {
    pub access: LabAccess,
    live: Mutex<Vec<Arc<InstanceHandle>>>,
    events: broadcast::Sender<LabEvent>,
    closed: watch::Sender<bool>,
}

impl Lab {
    pub fn new(access: LabAccess) -> Self {
        Self {
            access,
            live: Mutex::new(Vec::new()),
            // A dashboard that falls this far behind skips ahead (it is told so).
            events: broadcast::channel(1024).0,
            closed: watch::channel(false).0,
        }
    }

    fn live(&self) -> MutexGuard<'_, Vec<Arc<InstanceHandle>>> {
        // The list stays consistent even if a holder panicked: every change
        // is a single push or retain.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LabEvent> {
        self.events.subscribe()
    }

    /// Sends the event `make` builds to every subscriber; with none (the common case) it is
    /// never built: a request's event costs a few allocations that nobody would read.
    pub fn publish(&self, make: impl FnOnce() -> LabEvent) {
        if self.events.receiver_count() > 0 {
            let _ = self.events.send(make());
        }
    }

    /// Resolves once the host starts shutting down, so that event streams end
    /// and graceful shutdown does not wait for them.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    pub(crate) fn register(&self, handle: Arc<InstanceHandle>) {
        self.publish(|| LabEvent::InstanceStarted {
            component: handle.component.clone(),
            id: handle.id(),
            number: handle.number,
            slot: handle.slot,
            generation: handle.generation,
            server_id: handle.server_id.clone(),
            at: epoch_ms(),
        });
        self.live().push(handle);
    }

    pub(crate) fn unregister(&self, handle: &InstanceHandle, reason: RecycleReason) {
        self.live()
            .retain(|live| !(live.component == handle.component && live.number == handle.number));
        self.publish(|| LabEvent::InstanceRecycled {
            component: handle.component.clone(),
            id: handle.id(),
            number: handle.number,
            slot: handle.slot,
            reason: reason.to_string(),
            served: handle.served(),
            at: epoch_ms(),
        });
    }

    /// Live instances of one component (or all), oldest first.
    pub fn instances(&self, component: Option<&str>) -> Vec<Arc<InstanceHandle>> {
        self.live()
            .iter()
            .filter(|handle| component.is_none_or(|c| handle.component == c))
            .cloned()
            .collect()
    }

    /// Waits until the instance has been dropped (or `limit` passes).
    pub async fn wait_gone(&self, handle: &InstanceHandle, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let gone = !self
                .live()
                .iter()
                .any(|live| live.component == handle.component && live.number == handle.number);
            if gone {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One live instance, shared by the pool that runs it (and counts its requests) and the lab
/// API that lists and may retire it.
pub struct InstanceHandle {
    pub component: String,
    /// Per component, in order of creation: `stateful-cart#3`.
    pub number: u64,
    /// The pool slot it occupies (`--instances`), if any.
    pub slot: Option<usize>,
    /// How many instances the slot (or, without slots, the component) has had.
    pub generation: u64,
    pub born: Instant,
    /// The id the host hands the instance through its environment
    /// ([`INSTANCE_ID_ENV`](cart_core::contract::INSTANCE_ID_ENV)), which the component
    /// reports as its `serverId`.
    pub server_id: String,
    /// Requests the instance has taken, and of those, how many it is still answering.
    served: AtomicU64,
    in_flight: AtomicUsize,
    retiring: AtomicBool,
    /// Takes no more requests (reuse limit reached or retired).
    closed: AtomicBool,
    /// A request outlived `--request-timeout`: the instance goes for `timeout`, not a trap.
    timed_out: AtomicBool,
    waker: AtomicWaker,
}

impl InstanceHandle {
    pub fn new(
        component: &str,
        number: u64,
        slot: Option<usize>,
        generation: u64,
        server_id: String,
    ) -> Self {
        Self {
            component: component.to_string(),
            number,
            slot,
            generation,
            born: Instant::now(),
            server_id,
            served: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            retiring: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// A fresh id to hand a new instance: 8 hex digits, the shape a component picks for
    /// itself under hosts that name no instance.
    pub fn new_server_id() -> String {
        let mut bytes = [0u8; 4];
        // An id only tells instances apart in the lab; without randomness, the number does.
        if getrandom::fill(&mut bytes).is_err() {
            return String::new();
        }
        format!("{:08x}", u32::from_le_bytes(bytes))
    }

    pub fn id(&self) -> String {
        format!("{}#{}", self.component, self.number)
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Asks the instance to finish what it is serving, take nothing new, and go.
    pub fn retire(&self) {
        self.retiring.store(true, Ordering::Relaxed);
        self.waker.wake();
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed) || self.is_retiring()
    }

    pub fn is_retiring(&self) -> bool {
        self.retiring.load(Ordering::Relaxed)
    }

    /// The worker's expiry check registers here so that `retire` wakes it.
    pub(crate) fn register_waker(&self, waker: &Waker) {
        self.waker.register(waker);
    }

    /// The instance took a request (as Spin counts towards the reuse limit) ...
    pub(crate) fn request_started(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// ... and has answered it, or failed to.
    pub(crate) fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn mark_timed_out(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
    }

    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// `draining` once it takes nothing new (retired, or at its reuse limit)
    /// and is finishing what it has.
    pub fn state(&self) -> &'static str {
        if self.is_closed() {
            "draining"
        } else {
            "ready"
        }
    }
}

/// Filled in by the pool when an instance accepts the request, so that
/// [`Instances`](crate::runtime::instances::Instances) learns which instance served it.
pub type ServedBy = Arc<OnceLock<Arc<InstanceHandle>>>;

/// What `/_lab/events` streams. Field names are the dashboard's (camelCase).
#[derive(Clone, Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum LabEvent {
    InstanceStarted {
        component: String,
        id: String,
        number: u64,
        slot: Option<usize>,
        generation: u64,
        server_id: String,
        at: u64,
    },
    Request {
        component: String,
        id: Option<String>,
        number: Option<u64>,
        slot: Option<usize>,
        method: String,
        path: String,
        status: u16,
        ms: f64,
        server_id: Option<String>,
        at: u64,
    },
    InstanceRecycled {
        component: String,
        id: String,
        number: u64,
        slot: Option<usize>,
        reason: String,
        served: u64,
        at: u64,
    },
    Slot {
        component: String,
        slot: usize,
        state: &'static str,
        at: u64,
    },
}

impl LabEvent {
    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::InstanceStarted { .. } => "instance-started",
            Self::Request { .. } => "request",
            Self::InstanceRecycled { .. } => "instance-recycled",
            Self::Slot { .. } => "slot",
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
    /// Retired on request through the lab API (recycle, rolling redeploy).
    Recycled,
}

impl fmt::Display for RecycleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReuseLimit => "reuse-limit",
            Self::Idle => "idle",
            Self::Trap => "trap",
            Self::Timeout => "timeout",
            Self::Shutdown => "shutdown",
            Self::Recycled => "recycled",
        })
    }
}

pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registry_tracks_instances_and_publishes_their_lives() {
        let lab = Lab::new(LabAccess::Loopback);
        let mut events = lab.subscribe();
        let first = Arc::new(InstanceHandle::new(
            "stateful-cart",
            1,
            None,
            1,
            "abc".into(),
        ));
        let second = Arc::new(InstanceHandle::new(
            "stateless-cart",
            1,
            Some(0),
            1,
            "def".into(),
        ));
        lab.register(first.clone());
        lab.register(second.clone());
        assert_eq!(lab.instances(None).len(), 2);
        assert_eq!(lab.instances(Some("stateful-cart")).len(), 1);

        first.request_started();
        first.request_started();
        assert_eq!((first.in_flight(), first.served()), (2, 2));
        first.request_finished();
        first.request_finished();
        assert_eq!((first.in_flight(), first.served()), (0, 2));

        first.retire();
        assert_eq!(first.state(), "draining");
        lab.unregister(&first, RecycleReason::Recycled);
        assert!(lab.wait_gone(&first, Duration::from_millis(50)).await);
        assert!(!lab.wait_gone(&second, Duration::from_millis(30)).await);

        let names: Vec<_> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|event| event.name())
            .collect();
        assert_eq!(
            names,
            ["instance-started", "instance-started", "instance-recycled"]
        );
    }

    #[test]
    fn events_serialise_with_the_dashboards_field_names() {
        let event = LabEvent::InstanceRecycled {
            component: "stateful-cart".into(),
            id: "stateful-cart#2".into(),
            number: 2,
            slot: None,
            reason: "trap".into(),
            served: 3,
            at: 1,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "instance-recycled");
        assert_eq!(json["reason"], "trap");
        let request = LabEvent::Request {
            component: "c".into(),
            id: None,
            number: None,
            slot: None,
            method: "GET".into(),
            path: "/".into(),
            status: 200,
            ms: 1.5,
            server_id: Some("x".into()),
            at: 2,
        };
        assert_eq!(serde_json::to_value(&request).unwrap()["serverId"], "x");
    }
}
