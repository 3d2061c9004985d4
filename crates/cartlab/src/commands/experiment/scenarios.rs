//! The matrix: each scenario is a set of `cartlab up` flags, plus whether
//! shoppers crash instances or the fleet rolls through a redeploy.

use crate::app::sampled::Sampled;
use crate::commands::up::UpArgs;
use crate::runtime::fleet::Routing;
use std::time::Duration;

/// One cell of the matrix.
#[derive(Clone, Debug)]
pub(super) struct Scenario {
    pub(super) name: String,
    /// `--max-instance-reuse-count` and `--idle-instance-timeout`, for Spin's instances.
    pub(super) max_reuse: Option<u64>,
    pub(super) idle_timeout: Option<Duration>,
    /// `--instances 4 --routing R`: a fleet instead.
    pub(super) fleet: Option<Routing>,
    pub(super) crashes: bool,
    /// Roll every instance through a redeploy while the shoppers shop.
    pub(super) rolling_redeploy: bool,
}

pub(super) fn matrix() -> Vec<Scenario> {
    let spin = |name: &str, max_reuse: u64, idle: Duration, crashes: bool| Scenario {
        name: name.to_string(),
        max_reuse: Some(max_reuse),
        idle_timeout: Some(idle),
        fleet: None,
        crashes,
        rolling_redeploy: false,
    };
    let fleet = |name: &str, routing: Routing, crashes: bool, rolling_redeploy: bool| Scenario {
        name: name.to_string(),
        max_reuse: None,
        idle_timeout: None,
        fleet: Some(routing),
        crashes,
        rolling_redeploy,
    };
    let second = Duration::from_secs(1);
    vec![
        spin("spin reuse=128 (default)", 128, second, false),
        spin("spin reuse=8", 8, second, false),
        spin("spin reuse=1", 1, second, false),
        spin("spin idle=5ms", 128, Duration::from_millis(5), false),
        spin("spin reuse=128 +crashes", 128, second, true),
        fleet("pool=4 sticky", Routing::Sticky, false, false),
        fleet("pool=4 sticky +crashes", Routing::Sticky, true, false),
        fleet(
            "pool=4 sticky +rolling redeploy",
            Routing::Sticky,
            false,
            true,
        ),
        fleet("pool=4 round-robin", Routing::RoundRobin, false, false),
        fleet("pool=4 least-loaded", Routing::LeastLoaded, false, false),
    ]
}

impl Scenario {
    /// The lab host's flags for this scenario.
    pub(super) fn configure(&self, up: &mut UpArgs) {
        up.max_instance_reuse_count = self.max_reuse.map(Sampled::fixed);
        up.idle_instance_timeout = self.idle_timeout.map(Sampled::fixed);
        if let Some(routing) = self.fleet {
            up.instances = Some(FLEET_INSTANCES);
            up.routing = routing;
            up.restart_delay = FLEET_RESTART_DELAY;
        }
    }
}

/// The fleet scenarios' `--instances`.
pub(super) const FLEET_INSTANCES: u16 = 4;
/// The fleet scenarios' `--restart-delay`.
pub(super) const FLEET_RESTART_DELAY: Duration = Duration::from_millis(50);
