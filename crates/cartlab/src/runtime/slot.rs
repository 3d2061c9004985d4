//! One slot of a fleet (`--instances N`): the life of the one "server" it stands for, shared
//! by the slot's pool, which starts at most one instance in it at a time, and the fleet's
//! balancer, which routes around a slot that is down.

use crate::runtime::lab::{InstanceHandle, Lab, LabEvent, epoch_ms};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One slot's life, shared by its pool (which starts at most one instance in
/// it at a time, and takes it down on a crash) and the balancer (which routes
/// around it).
pub struct SlotState {
    pub component: String,
    pub index: usize,
    restart_delay: Duration,
    generation: AtomicU64,
    life: Mutex<SlotLife>,
    in_flight: AtomicUsize,
}

#[derive(Default)]
struct SlotLife {
    down_until: Option<Instant>,
    /// The instance serving in this slot, or `starting` while one is made.
    occupant: Option<Arc<InstanceHandle>>,
    starting: bool,
}

/// Why a slot's pool would not start an instance; the fleet then routes the
/// request again (`Down`) or waits for the slot's instance to take it (`Busy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotUnavailable {
    Down,
    Busy,
}

impl fmt::Display for SlotUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Down => "the slot is restarting",
            Self::Busy => "the slot already has an instance",
        })
    }
}

impl std::error::Error for SlotUnavailable {}

impl SlotState {
    pub(crate) fn new(component: &str, index: usize, restart_delay: Duration) -> Self {
        Self {
            component: component.to_string(),
            index,
            restart_delay,
            generation: AtomicU64::new(0),
            life: Mutex::new(SlotLife::default()),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn life(&self) -> MutexGuard<'_, SlotLife> {
        self.life
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A request routed here starts (the balancer's load figure) ...
    pub(crate) fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// ... and ends, whatever its outcome.
    pub(crate) fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn is_down(&self) -> bool {
        self.life()
            .down_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// Reserves the slot for a new instance: one server per slot. wasmtime's
    /// pool would start a second instance whenever the first is momentarily
    /// unavailable (or has just crashed); a fleet slot refuses instead.
    pub(crate) fn begin_start(&self) -> Result<u64, SlotUnavailable> {
        let mut life = self.life();
        if life.down_until.is_some_and(|until| Instant::now() < until) {
            return Err(SlotUnavailable::Down);
        }
        let occupied = life
            .occupant
            .as_ref()
            .is_some_and(|occupant| !occupant.is_closed());
        if life.starting || occupied {
            return Err(SlotUnavailable::Busy);
        }
        life.starting = true;
        Ok(self.generation.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Ends `begin_start`: the new instance (or none, if it failed) occupies the slot.
    pub(crate) fn finish_start(&self, occupant: Option<Arc<InstanceHandle>>) {
        let mut life = self.life();
        life.starting = false;
        if occupant.is_some() {
            life.occupant = occupant;
        }
    }

    pub(crate) fn vacate(&self, handle: &InstanceHandle) {
        let mut life = self.life();
        if life
            .occupant
            .as_ref()
            .is_some_and(|occupant| occupant.number == handle.number)
        {
            life.occupant = None;
        }
    }

    /// Out of rotation for the restart delay; the lab hears when it is back.
    pub fn take_down(self: &Arc<Self>, lab: &Arc<Lab>) {
        self.life().down_until = Some(Instant::now() + self.restart_delay);
        lab.publish(|| LabEvent::Slot {
            component: self.component.clone(),
            slot: self.index,
            state: "down",
            at: epoch_ms(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (slot, lab) = (self.clone(), lab.clone());
            runtime.spawn(async move {
                tokio::time::sleep(slot.restart_delay).await;
                if !slot.is_down() {
                    lab.publish(|| LabEvent::Slot {
                        component: slot.component.clone(),
                        slot: slot.index,
                        state: "up",
                        at: epoch_ms(),
                    });
                }
            });
        }
    }

    /// Back in rotation at once, as if the restart delay had passed.
    #[cfg(test)]
    pub(crate) fn back_up_now(&self) {
        self.life().down_until = None;
    }

    /// Waits until the slot is back in rotation.
    pub async fn wait_up(&self) {
        loop {
            let remaining = self
                .life()
                .down_until
                .map(|until| until.saturating_duration_since(Instant::now()));
            match remaining {
                Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                _ => return,
            }
        }
    }
}
