//! One component's instances, as the host runs them: Spin's pool of instances on demand, or a
//! fleet of long-lived ones behind a balancer (`--instances N`). Either way they answer a
//! request, describe themselves, retire one of their own and roll through a redeploy; callers
//! never need to know which kind they hold.

use crate::runtime::fleet::{Fleet, FleetOptions, NoLiveInstance, Routing};
use crate::runtime::lab::{InstanceHandle, ServedBy};
use crate::runtime::pool::{ComponentPool, PoolContext, ReusePolicy, ShareFull};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, ProxyHandler};

/// How long a recycle waits for retired instances to finish their requests.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub struct Instances {
    context: PoolContext,
    kind: Kind,
}

enum Kind {
    /// Spin's way: any free instance, new ones on demand.
    Spin(ProxyHandler<ComponentPool>),
    /// `--instances N`: long-lived instances behind a balancer.
    Fleet(Fleet),
}

/// What became of one request.
pub struct Served {
    /// The instance that took it, if one did.
    pub instance: Option<Arc<InstanceHandle>>,
    pub outcome: Result<wasmtime_wasi_http::handler::Response, Failure>,
}

/// Why a request got no answer from the component; each carries the error for the log.
#[derive(Debug)]
pub enum Failure {
    /// Every instance of a fleet is restarting (or busy past the wait limit).
    NoLiveInstance,
    /// The component already runs its share of the instance pool.
    ShareFull,
    /// No response within `--request-timeout`.
    Timeout(wasmtime::Error),
    /// No instance could be started.
    Instantiation(wasmtime::Error),
    /// The instance trapped: it is gone, as under Spin.
    Trap(wasmtime::Error),
}

impl Failure {
    fn of(error: wasmtime::Error) -> Self {
        if error.is::<NoLiveInstance>() {
            Self::NoLiveInstance
        } else if error.is::<ExpirationError>() {
            Self::Timeout(error)
        } else if let Some(refused) = error.downcast_ref::<InstantiationError<ServedBy>>() {
            if refused.error.is::<ShareFull>() {
                Self::ShareFull
            } else {
                Self::Instantiation(error)
            }
        } else {
            Self::Trap(error)
        }
    }
}

/// A component as `GET /_lab/instances` shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentView {
    pub component: String,
    pub slots: Option<usize>,
    pub instances: Vec<InstanceView>,
}

/// One instance, or an empty fleet slot.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceView {
    id: Option<String>,
    number: Option<u64>,
    slot: Option<usize>,
    generation: u64,
    served: u64,
    in_flight: usize,
    /// `ready`, `draining`, or for an empty fleet slot `down` (restarting)
    /// or `empty` (its next request starts an instance).
    state: &'static str,
    server_id: Option<String>,
    age_ms: Option<u64>,
}

impl InstanceView {
    fn of(handle: &InstanceHandle) -> Self {
        Self {
            id: Some(handle.id()),
            number: Some(handle.number),
            slot: handle.slot,
            generation: handle.generation,
            served: handle.served(),
            in_flight: handle.in_flight(),
            state: handle.state(),
            server_id: Some(handle.server_id.clone()),
            age_ms: Some(handle.born.elapsed().as_millis() as u64),
        }
    }
}

/// The instances a recycle retired: gone, or still finishing requests when it answered.
#[derive(Default, Serialize)]
pub struct Recycled {
    pub recycled: Vec<String>,
    pub draining: Vec<String>,
}

impl Recycled {
    pub fn extend(&mut self, other: Recycled) {
        self.recycled.extend(other.recycled);
        self.draining.extend(other.draining);
    }
}

impl Instances {
    /// Spin's pool, or with `fleet` a fleet of long-lived instances.
    pub fn new(context: PoolContext, policy: &ReusePolicy, fleet: Option<FleetOptions>) -> Self {
        let kind = match fleet {
            Some(options) => Kind::Fleet(Fleet::new(&context, policy, options)),
            None => Kind::Spin(ProxyHandler::new(ComponentPool::new(
                &context,
                policy.clone(),
                None,
            ))),
        };
        Self { context, kind }
    }

    pub fn component(&self) -> &str {
        &self.context.grants.id
    }

    /// The balancer's policy; `None` for Spin's pool.
    pub fn routing(&self) -> Option<Routing> {
        match &self.kind {
            Kind::Spin(_) => None,
            Kind::Fleet(fleet) => Some(fleet.routing()),
        }
    }

    /// Hands a request to an instance. The instance counts it from when it takes it until
    /// its response has started (a streamed body may still be flowing).
    pub async fn handle(&self, request: wasmtime_wasi_http::handler::Request) -> Served {
        let served_by = ServedBy::default();
        let result = match &self.kind {
            Kind::Spin(pool) => pool.handle(served_by.clone(), request).await,
            Kind::Fleet(fleet) => fleet.handle(served_by.clone(), request).await,
        };
        let instance = served_by.get().cloned();
        if let Some(instance) = &instance {
            instance.request_finished();
        }
        Served {
            instance,
            outcome: result.map_err(Failure::of),
        }
    }

    /// Live instances, oldest first.
    pub fn live(&self) -> Vec<Arc<InstanceHandle>> {
        self.context.lab.instances(Some(self.component()))
    }

    /// This component now: its instances, and in a fleet every slot (an empty one too).
    pub fn view(&self) -> ComponentView {
        let live = self.live();
        let Kind::Fleet(fleet) = &self.kind else {
            return ComponentView {
                component: self.component().to_string(),
                slots: None,
                instances: live.iter().map(|handle| InstanceView::of(handle)).collect(),
            };
        };
        let mut instances = Vec::new();
        for slot in fleet.slots() {
            let in_slot: Vec<_> = live
                .iter()
                .filter(|handle| handle.slot == Some(slot.index))
                .collect();
            if in_slot.is_empty() || slot.is_down() {
                instances.push(InstanceView {
                    id: None,
                    number: None,
                    slot: Some(slot.index),
                    generation: slot.generation(),
                    served: 0,
                    in_flight: 0,
                    state: if slot.is_down() { "down" } else { "empty" },
                    server_id: None,
                    age_ms: None,
                });
            }
            instances.extend(in_slot.iter().map(|handle| InstanceView::of(handle)));
        }
        ComponentView {
            component: self.component().to_string(),
            slots: Some(fleet.slots().len()),
            instances,
        }
    }

    /// Retires one of this component's instances; in a fleet its slot leaves rotation while
    /// it restarts.
    pub fn retire(&self, handle: &InstanceHandle) {
        handle.retire();
        if let (Kind::Fleet(fleet), Some(index)) = (&self.kind, handle.slot)
            && let Some(slot) = fleet.slots().get(index)
        {
            slot.take_down(&self.context.lab);
        }
    }

    /// Waits (up to [`DRAIN_LIMIT`]) for retired instances to go.
    pub async fn settle(&self, handles: &[Arc<InstanceHandle>]) -> Recycled {
        let mut outcome = Recycled::default();
        for handle in handles {
            if self.context.lab.wait_gone(handle, DRAIN_LIMIT).await {
                outcome.recycled.push(handle.id());
            } else {
                outcome.draining.push(handle.id());
            }
        }
        outcome
    }

    /// A rolling redeploy: one instance at a time goes; in a fleet, each slot restarts and
    /// rejoins rotation before the next goes.
    pub async fn roll(&self) -> Recycled {
        let mut outcome = Recycled::default();
        match &self.kind {
            Kind::Fleet(fleet) => {
                for slot in fleet.slots() {
                    let in_slot: Vec<_> = self
                        .live()
                        .into_iter()
                        .filter(|handle| handle.slot == Some(slot.index))
                        .collect();
                    // An empty slot has nothing to restart.
                    if in_slot.is_empty() {
                        continue;
                    }
                    for handle in &in_slot {
                        self.retire(handle);
                    }
                    outcome.extend(self.settle(&in_slot).await);
                    slot.wait_up().await;
                }
            }
            Kind::Spin(_) => {
                for handle in self.live() {
                    self.retire(&handle);
                    outcome.extend(self.settle(std::slice::from_ref(&handle)).await);
                }
            }
        }
        outcome
    }

    /// The host is stopping: instances dropped from now on go for `shutdown`, not as traps.
    pub fn begin_shutdown(&self) {
        self.context.begin_shutdown();
    }
}
