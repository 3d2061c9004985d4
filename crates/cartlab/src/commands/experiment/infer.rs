//! Instance counts for hosts cartlab does not run (`--url`): inferred from what the carts
//! themselves report on every answer, the instance's `serverId` (`x-cartlab-instance`) and
//! its `requestsServed` (`x-cartlab-requests`). Nothing of the host is asked.
//!
//! - An **instance** is one life of a `serverId`. Ids are unique per instance under Spin
//!   (random) and the lab host (named); a host that hands out the same id again is caught by
//!   `requestsServed`: an instance's count never repeats a value, so a count already seen
//!   under that id means the id started over, and that is a new instance.
//! - A **recycle** is inferred when an instance stops appearing and was replaced: its last
//!   answer came before the first answer of an instance new to the run (or its id started
//!   over). Instances still answering after the last new one appeared count as running at
//!   the end. So the last instances standing are never counted as recycled (under reuse 1,
//!   n instances show n - 1 recycles), an instance that died unseen while the others took
//!   its traffic is missed, and one that merely fell idle before a new one started is
//!   counted. An instance whose only answer was a crash (the runtime's 500, which names
//!   no instance) is never seen at all.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// How `instancesStarted` and `recycles` were counted, for results.json.
#[derive(Clone, Debug, serde::Serialize)]
pub(super) struct InstanceCounts {
    /// `lab-events` (the lab host's own lifecycle events) or `inferred`.
    pub(super) source: &'static str,
    pub(super) how: &'static str,
}

pub(super) const FROM_LAB_EVENTS: InstanceCounts = InstanceCounts {
    source: "lab-events",
    how: "counted from the lab host's instance-started and instance-recycled events \
          during the shopping",
};

pub(super) const INFERRED: InstanceCounts = InstanceCounts {
    source: "inferred",
    how: "inferred from the serverId and requestsServed each cart answer reports \
          (x-cartlab-instance, x-cartlab-requests): instancesStarted = distinct instances \
          that answered (a serverId whose requestsServed repeats a value already seen \
          started over, and counts again); recycles = instances whose last answer came \
          before the first answer of an instance new to the run. The last instances \
          standing count as running, not recycled",
};

/// One answer's instance, as the component reported it.
#[derive(Clone, Debug)]
pub(super) struct Sighting {
    /// When the answer arrived.
    pub(super) at: Instant,
    pub(super) server_id: String,
    /// 0 when the answer did not say.
    pub(super) requests_served: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Inferred {
    pub(super) instances: u64,
    pub(super) recycles: u64,
}

struct Life {
    first: Instant,
    last: Instant,
    counts: HashSet<u64>,
}

impl Life {
    fn new(sighting: &Sighting) -> Life {
        Life {
            first: sighting.at,
            last: sighting.at,
            counts: HashSet::from_iter(
                (sighting.requests_served > 0).then_some(sighting.requests_served),
            ),
        }
    }
}

/// Instances and recycles from one design's sightings on one host (any order).
pub(super) fn infer(mut sightings: Vec<Sighting>) -> Inferred {
    sightings.sort_by_key(|sighting| sighting.at);
    let mut open: HashMap<String, Life> = HashMap::new();
    let mut ended: Vec<Life> = Vec::new();
    for sighting in &sightings {
        match open.get_mut(&sighting.server_id) {
            Some(life)
                if sighting.requests_served > 0
                    && life.counts.contains(&sighting.requests_served) =>
            {
                ended.push(std::mem::replace(life, Life::new(sighting)));
            }
            Some(life) => {
                life.last = sighting.at;
                if sighting.requests_served > 0 {
                    life.counts.insert(sighting.requests_served);
                }
            }
            None => {
                open.insert(sighting.server_id.clone(), Life::new(sighting));
            }
        }
    }
    let lives: Vec<&Life> = ended.iter().chain(open.values()).collect();
    let Some(latest_start) = lives.iter().map(|life| life.first).max() else {
        return Inferred {
            instances: 0,
            recycles: 0,
        };
    };
    Inferred {
        instances: lives.len() as u64,
        recycles: lives.iter().filter(|life| life.last < latest_start).count() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sightings at 1 ms steps: `(serverId, requestsServed)`.
    fn seen(answers: &[(&str, u64)]) -> Vec<Sighting> {
        let start = Instant::now();
        answers
            .iter()
            .enumerate()
            .map(|(index, &(id, served))| Sighting {
                at: start + Duration::from_millis(index as u64),
                server_id: id.to_string(),
                requests_served: served,
            })
            .collect()
    }

    fn counts(instances: u64, recycles: u64) -> Inferred {
        Inferred {
            instances,
            recycles,
        }
    }

    #[test]
    fn one_instance_serving_everything_is_never_recycled() {
        let answers: Vec<(&str, u64)> = (1..=20).map(|n| ("a", n)).collect();
        assert_eq!(infer(seen(&answers)), counts(1, 0));
    }

    #[test]
    fn a_new_instance_per_request_recycles_all_but_the_last() {
        let answers = [("a", 1), ("b", 1), ("c", 1), ("d", 1)];
        assert_eq!(infer(seen(&answers)), counts(4, 3));
    }

    #[test]
    fn instances_side_by_side_to_the_end_are_both_running() {
        let answers = [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)];
        assert_eq!(infer(seen(&answers)), counts(2, 0));
        // `a` stops appearing and `c` takes over: `a` was recycled, `b` was not.
        let answers = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("c", 2)];
        assert_eq!(infer(seen(&answers)), counts(3, 1));
    }

    #[test]
    fn an_id_whose_count_starts_over_is_a_new_instance() {
        // Another client's requests leave gaps; answers of one life may arrive out of order.
        let answers = [("a", 1), ("a", 3), ("a", 2), ("a", 7), ("a", 1), ("a", 2)];
        assert_eq!(infer(seen(&answers)), counts(2, 1));
    }

    #[test]
    fn answers_in_any_order_and_without_a_count() {
        let mut answers = seen(&[("a", 1), ("b", 0), ("b", 0), ("c", 1)]);
        answers.reverse();
        assert_eq!(infer(answers), counts(3, 2));
        assert_eq!(infer(Vec::new()), counts(0, 0));
    }
}
