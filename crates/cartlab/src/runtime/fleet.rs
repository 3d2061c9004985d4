//! Fleets: `cartlab up --instances N` keeps N long-lived instances per
//! component behind a load balancer, the seed lesson's N servers. Spin has no
//! such thing (it routes every request to whichever instance is free); the
//! lab host adds it so that sticky routing can be tried and broken.
//!
//! Each slot is its own [`ComponentPool`] holding at most one instance at a
//! time. An instance that crashes (or is recycled through the lab API) takes
//! its slot out of rotation for `--restart-delay`, like a server restarting;
//! the balancer sends that slot's traffic elsewhere meanwhile.

use crate::runtime::lab::ServedBy;
use crate::runtime::pool::{ComponentPool, PoolContext, ReusePolicy};
use crate::runtime::session_cookies;
use crate::runtime::slot::{SlotState, SlotUnavailable};
use http::HeaderMap;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use wasmtime_wasi_http::handler::{InstantiationError, ProxyHandler};

/// How the balancer in front of a fleet picks a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Session affinity: a session stays on the slot that created it; if that
    /// slot is down, it fails over to a live one and stays there.
    Sticky,
    /// Each request to the next live slot in turn.
    RoundRobin,
    /// Each request to the live slot with the fewest requests in flight.
    LeastLoaded,
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sticky => "sticky",
            Self::RoundRobin => "round-robin",
            Self::LeastLoaded => "least-loaded",
        })
    }
}

/// `--instances`, `--routing`, `--restart-delay`.
#[derive(Clone, Copy, Debug)]
pub struct FleetOptions {
    pub instances: usize,
    pub routing: Routing,
    pub restart_delay: Duration,
}

/// Affinity entries kept at most; past it the least recently used session is forgotten (its
/// next request lands by round-robin again, as a new session's would).
const MAX_AFFINITIES: usize = 100_000;

/// The sticky table: session -> slot, forgetting the least recently used past its capacity.
struct Affinities {
    capacity: usize,
    /// Session -> (slot, when it was last used).
    pins: HashMap<String, (usize, u64)>,
    /// When each session was last used -> the session: the oldest first.
    by_use: BTreeMap<u64, String>,
    clock: u64,
}

impl Affinities {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            pins: HashMap::new(),
            by_use: BTreeMap::new(),
            clock: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pins.len()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The session's slot; using it makes it the most recently used.
    fn get(&mut self, key: &str) -> Option<usize> {
        let now = self.tick();
        let (slot, used) = self.pins.get_mut(key)?;
        let previous = std::mem::replace(used, now);
        let slot = *slot;
        if let Some(key) = self.by_use.remove(&previous) {
            self.by_use.insert(now, key);
        }
        Some(slot)
    }

    fn pin(&mut self, key: String, slot: usize) {
        let now = self.tick();
        if let Some((_, used)) = self.pins.insert(key.clone(), (slot, now)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(now, key);
        while self.pins.len() > self.capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.pins.remove(&oldest);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some((_, used)) = self.pins.remove(key) {
            self.by_use.remove(&used);
        }
    }
}

/// The load balancer in front of a fleet: pure routing over slot states.
pub struct Balancer {
    routing: Routing,
    slots: Vec<Arc<SlotState>>,
    next: AtomicUsize,
    /// `name=value` of a session cookie -> the slot it sticks to.
    affinity: Mutex<Affinities>,
}

/// Where the balancer sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub slot: usize,
    /// The session was pinned to a slot that is down.
    pub failed_over: bool,
}

impl Balancer {
    pub fn new(routing: Routing, slots: Vec<Arc<SlotState>>) -> Self {
        Self {
            routing,
            slots,
            next: AtomicUsize::new(0),
            affinity: Mutex::new(Affinities::new(MAX_AFFINITIES)),
        }
    }

    fn affinity(&self) -> MutexGuard<'_, Affinities> {
        self.affinity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Picks a live slot for a request with these headers; `None` when every
    /// slot is down.
    pub fn choose(&self, headers: &HeaderMap) -> Option<Choice> {
        let live: Vec<usize> = (0..self.slots.len())
            .filter(|&index| !self.slots[index].is_down())
            .collect();
        if live.is_empty() {
            return None;
        }
        let slot = match self.routing {
            Routing::RoundRobin => self.round_robin(&live),
            Routing::LeastLoaded => self.least_loaded(&live),
            Routing::Sticky => {
                let pinned = session_cookies::sent(headers)
                    .map(|cookie| session_cookies::pair(&cookie))
                    .find_map(|key| Some((key.clone(), self.affinity().get(&key)?)));
                match pinned {
                    Some((_, slot)) if live.contains(&slot) => slot,
                    // The pinned server is down: send the session to a live
                    // one and keep it there (the seed's balancer had no failover).
                    Some((key, _)) => {
                        let slot = self.least_loaded(&live);
                        self.pin(key, slot);
                        return Some(Choice {
                            slot,
                            failed_over: true,
                        });
                    }
                    // A new session: spread by round-robin, pin on the answer.
                    None => self.round_robin(&live),
                }
            }
        };
        Some(Choice {
            slot,
            failed_over: false,
        })
    }

    /// Sticky routing learns sessions from the cookies a slot sets, so a
    /// session stays on the instance that created it.
    pub fn learn(&self, slot: usize, response_headers: &HeaderMap) {
        if self.routing != Routing::Sticky {
            return;
        }
        for cookie in session_cookies::set(response_headers) {
            // An expired cookie ends the session: forget it.
            if cookie.ends {
                self.affinity().remove(&cookie.pair);
            } else {
                self.pin(cookie.pair, slot);
            }
        }
    }

    fn pin(&self, key: String, slot: usize) {
        self.affinity().pin(key, slot);
    }

    fn round_robin(&self, live: &[usize]) -> usize {
        live[self.next.fetch_add(1, Ordering::Relaxed) % live.len()]
    }

    fn least_loaded(&self, live: &[usize]) -> usize {
        // Ties rotate, so that sequential traffic still spreads.
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..live.len())
            .map(|offset| live[(start + offset) % live.len()])
            .min_by_key(|&index| self.slots[index].in_flight())
            .unwrap_or(live[0])
    }
}

/// A component's fleet: one pool per slot, and the balancer in front.
pub struct Fleet {
    balancer: Balancer,
    pools: Vec<ProxyHandler<ComponentPool>>,
}

impl Fleet {
    pub fn new(context: &PoolContext, policy: &ReusePolicy, options: FleetOptions) -> Self {
        let slots: Vec<Arc<SlotState>> = (0..options.instances)
            .map(|index| {
                Arc::new(SlotState::new(
                    &context.grants.id,
                    index,
                    options.restart_delay,
                ))
            })
            .collect();
        let pools = slots
            .iter()
            .map(|slot| {
                ProxyHandler::new(ComponentPool::new(
                    context,
                    policy.clone(),
                    Some(slot.clone()),
                ))
            })
            .collect();
        Self {
            balancer: Balancer::new(options.routing, slots),
            pools,
        }
    }

    pub fn routing(&self) -> Routing {
        self.balancer.routing
    }

    pub fn slots(&self) -> &[Arc<SlotState>] {
        &self.balancer.slots
    }

    /// Sends a request to the slot the balancer picks, counting it in flight there.
    /// If the slot turns out to be restarting (it crashed a moment ago), the
    /// balancer routes the request again, as a balancer retries a refused
    /// connection; if the slot's instance is momentarily busy, the request
    /// waits for it rather than starting a second instance in the slot.
    pub async fn handle(
        &self,
        served_by: ServedBy,
        mut request: wasmtime_wasi_http::handler::Request,
    ) -> wasmtime::Result<wasmtime_wasi_http::handler::Response> {
        let Some(mut choice) = self.balancer.choose(request.headers()) else {
            return Err(wasmtime::Error::new(NoLiveInstance));
        };
        let give_up = Instant::now() + BUSY_WAIT_LIMIT;
        loop {
            let slot = &self.balancer.slots[choice.slot];
            slot.request_started();
            let result = self.pools[choice.slot]
                .handle(served_by.clone(), request)
                .await;
            slot.request_ended();
            let error = match result {
                Ok(response) => {
                    self.balancer.learn(choice.slot, response.headers());
                    if choice.failed_over {
                        tracing::info!(component = %slot.component, slot = choice.slot, "sticky session failed over to a live instance");
                    }
                    return Ok(response);
                }
                Err(error) => error,
            };
            let refused = match error.downcast::<InstantiationError<ServedBy>>() {
                Ok(refused) => refused,
                Err(error) => return Err(error),
            };
            let Some(&why) = refused.error.downcast_ref::<SlotUnavailable>() else {
                return Err(refused.into());
            };
            request = refused
                .request
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match why {
                SlotUnavailable::Down => {
                    let Some(next) = self.balancer.choose(request.headers()) else {
                        return Err(wasmtime::Error::new(NoLiveInstance));
                    };
                    choice = Choice {
                        slot: next.slot,
                        failed_over: choice.failed_over || next.failed_over,
                    };
                }
                SlotUnavailable::Busy if Instant::now() < give_up => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                SlotUnavailable::Busy => return Err(wasmtime::Error::new(NoLiveInstance)),
            }
        }
    }
}

/// How long a request waits for its slot's busy instance before giving up.
const BUSY_WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Every slot is down (or none could take the request): the server answers 503.
#[derive(Debug)]
pub struct NoLiveInstance;

impl fmt::Display for NoLiveInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no live instance in the fleet")
    }
}

impl std::error::Error for NoLiveInstance {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::lab::Lab;
    use crate::runtime::session_cookies::headers;
    use http::header::{COOKIE, SET_COOKIE};

    fn balancer(routing: Routing, slots: usize) -> Balancer {
        let slots = (0..slots)
            .map(|index| Arc::new(SlotState::new("c", index, Duration::from_secs(60))))
            .collect();
        Balancer::new(routing, slots)
    }

    fn lab() -> Arc<Lab> {
        Arc::new(Lab::new(crate::runtime::lab::LabAccess::Loopback))
    }

    #[tokio::test]
    async fn sticky_keeps_a_session_where_it_was_created_and_fails_over_once() {
        let balancer = balancer(Routing::Sticky, 3);
        let first = balancer.choose(&HeaderMap::new()).unwrap();
        balancer.learn(
            first.slot,
            &headers(SET_COOKIE, "cartlab_stateful=abc; Path=/stateful; HttpOnly"),
        );
        let with_cookie = headers(COOKIE, "other=1; cartlab_stateful=abc");
        for _ in 0..5 {
            assert_eq!(balancer.choose(&with_cookie).unwrap().slot, first.slot);
        }
        balancer.slots[first.slot].take_down(&lab());
        let moved = balancer.choose(&with_cookie).unwrap();
        assert!(moved.failed_over);
        assert_ne!(moved.slot, first.slot);
        // Pinned to the new slot now, even once the old one is back.
        balancer.slots[first.slot].back_up_now();
        let after = balancer.choose(&with_cookie).unwrap();
        assert_eq!((after.slot, after.failed_over), (moved.slot, false));
        // Logging out (Max-Age=0) forgets the session.
        balancer.learn(
            after.slot,
            &headers(SET_COOKIE, "cartlab_stateful=abc; Max-Age=0"),
        );
        assert_eq!(balancer.affinity().len(), 0);
    }

    #[tokio::test]
    async fn round_robin_and_least_loaded_skip_slots_that_are_down() {
        for routing in [Routing::RoundRobin, Routing::LeastLoaded] {
            let balancer = balancer(routing, 3);
            let picks: Vec<usize> = (0..6)
                .map(|_| balancer.choose(&HeaderMap::new()).unwrap().slot)
                .collect();
            assert_eq!(picks, [0, 1, 2, 0, 1, 2], "{routing}");
            balancer.slots[1].take_down(&lab());
            let picks: Vec<usize> = (0..4)
                .map(|_| balancer.choose(&HeaderMap::new()).unwrap().slot)
                .collect();
            assert!(!picks.contains(&1), "{routing}: {picks:?}");
            balancer.slots[0].take_down(&lab());
            balancer.slots[2].take_down(&lab());
            assert_eq!(balancer.choose(&HeaderMap::new()), None);
        }
    }

    #[test]
    fn least_loaded_prefers_the_idle_slot_and_sticky_ignores_strangers() {
        let least = balancer(Routing::LeastLoaded, 3);
        for _ in 0..4 {
            least.slots[0].request_started();
        }
        least.slots[2].request_started();
        for _ in 0..5 {
            assert_eq!(least.choose(&HeaderMap::new()).unwrap().slot, 1);
        }
        // Cookies the fleet never set do not pin anything.
        let sticky = balancer(Routing::Sticky, 2);
        let stranger = headers(COOKIE, "cartlab_stateful=forged");
        let picks: Vec<usize> = (0..4)
            .map(|_| sticky.choose(&stranger).unwrap().slot)
            .collect();
        assert_eq!(picks, [0, 1, 0, 1]);
    }

    #[test]
    fn a_full_sticky_table_forgets_the_least_recently_used_sessions_only() {
        let balancer = balancer(Routing::Sticky, 4);
        let session = |n: usize| format!("cartlab_stateful=s{n}");
        // A session created first but in use all along outlives the flood.
        let regular = "cartlab_stateful=regular".to_string();
        balancer.pin(regular.clone(), 3);
        let new_sessions = 150_000;
        for n in 0..new_sessions {
            balancer.pin(session(n), n % 4);
            if n % 1_000 == 0 {
                assert_eq!(balancer.affinity().get(&regular), Some(3), "at {n}");
            }
        }
        let mut table = balancer.affinity();
        assert_eq!(table.len(), MAX_AFFINITIES);
        assert_eq!(table.get(&regular), Some(3));
        // Room for the regular one: exactly the oldest 50,001 new sessions went.
        let evicted = new_sessions - (MAX_AFFINITIES - 1);
        for n in 0..evicted {
            assert_eq!(table.get(&session(n)), None, "session {n} should be gone");
        }
        for n in evicted..new_sessions {
            assert_eq!(
                table.get(&session(n)),
                Some(n % 4),
                "session {n} lost its pin"
            );
        }
        drop(table);
        // And through the balancer: a recent session still routes to its slot.
        let recent = headers(COOKIE, &session(new_sessions - 1));
        let pinned = (new_sessions - 1) % 4;
        assert_eq!(balancer.choose(&recent).unwrap().slot, pinned);
    }
}
