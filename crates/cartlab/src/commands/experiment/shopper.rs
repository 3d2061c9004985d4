//! The simulated shopper: a journey of adds, views and removes against one
//! design through `cartlab::client`, noting every item that goes missing.

use super::ExperimentArgs;
use super::infer::Sighting;
use crate::client::{Answer, Design, Shopper};
use anyhow::{Context as _, bail};
use cart_core::Cents;
use cart_core::contract::LineView;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

/// What shoppers put in carts.
pub(super) const PRODUCTS: [(&str, Cents); 6] = [
    ("MacBook Pro", Cents(250_000)),
    ("iPhone 15", Cents(120_000)),
    ("AirPods Pro", Cents(24_900)),
    ("USB-C cable", Cents(1_999)),
    ("iPad Air", Cents(59_900)),
    ("Magic Mouse", Cents(7_900)),
];

/// Relative weights of a shopper's actions.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Mix {
    pub add: u32,
    pub view: u32,
    pub remove: u32,
}

impl std::str::FromStr for Mix {
    type Err = anyhow::Error;

    /// `add=60,view=30,remove=10`
    fn from_str(text: &str) -> anyhow::Result<Self> {
        let mut mix = Mix {
            add: 0,
            view: 0,
            remove: 0,
        };
        for part in text.split(',') {
            let (name, weight) = part
                .split_once('=')
                .with_context(|| format!("`{part}`: write action=weight, e.g. add=60"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("`{weight}` is not a whole number"))?;
            match name.trim() {
                "add" => mix.add = weight,
                "view" => mix.view = weight,
                "remove" => mix.remove = weight,
                other => bail!("unknown action `{other}` (add, view, remove)"),
            }
        }
        if mix.add == 0 {
            bail!("the mix needs some `add`: carts must fill up to be lost");
        }
        Ok(mix)
    }
}

/// What one shopper saw.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) intact: bool,
    pub(super) items_lost: u64,
    pub(super) requests: u64,
    pub(super) errors: u64,
    /// Of the errors, requests that got no HTTP answer at all (refused, reset, timed out).
    pub(super) unanswered: u64,
    pub(super) latencies_ms: Vec<f64>,
    /// Crash requests the instance trapped on (answered 500).
    pub(super) crashes: u64,
    /// Crash requests the host refused (403 `crash_disabled`, 404, 405).
    pub(super) crashes_refused: u64,
    /// The instance of every answer that named one, for `--url`'s inferred counts.
    pub(super) sightings: Vec<Sighting>,
}

/// The crash action for one design on one host: how often shoppers take it, and whether
/// the host refused it.
#[derive(Debug, Default)]
pub(super) struct Crashes {
    rate: f64,
    /// The first refusal's answer (`403 crash_disabled: ...`). From then on shoppers still
    /// roll for a crash, so that their journeys stay those of a host that allows it, but
    /// send none.
    refused: OnceLock<String>,
}

impl Crashes {
    pub(super) fn at_rate(rate: f64) -> Crashes {
        Crashes {
            rate: rate.clamp(0.0, 1.0),
            refused: OnceLock::new(),
        }
    }

    /// How the host answered the first crash it refused, if it refused one.
    pub(super) fn refusal(&self) -> Option<&str> {
        self.refused.get().map(String::as_str)
    }
}

/// A crash answer that means "not here": the component's 403 `crash_disabled` (Spin
/// variable `crash_enabled = false`), or a host without the route or the method.
pub(super) fn is_refusal(status: u16) -> bool {
    (403..=405).contains(&status)
}

pub(super) enum Action {
    Add,
    View,
    Remove,
}

/// A request that got no HTTP answer (the target stopped, or reset the connection) is a
/// failed request of the run, like a 503: the shopper goes on, as a user would try again.
async fn answered(request: impl Future<Output = reqwest::Result<Answer>>) -> Answer {
    let started = Instant::now();
    match request.await {
        Ok(answer) => answer,
        Err(error) => Answer::unreachable(&error, started.elapsed()),
    }
}

pub(super) async fn shop(
    design: Design,
    shopper: &Shopper,
    options: &ExperimentArgs,
    crashes: &Crashes,
    seed: u64,
) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut outcome = Outcome {
        intact: true,
        ..Outcome::default()
    };
    // What the shopper believes is in the cart, and the last cart it saw.
    let mut expected: BTreeMap<String, u32> = BTreeMap::new();
    let mut last_seen: Vec<LineView> = Vec::new();
    let total_weight = options.mix.add + options.mix.view + options.mix.remove;
    for _ in 0..options.actions {
        tokio::time::sleep(options.think_time.sample()).await;
        let wants_crash = crashes.rate > 0.0 && rng.random_bool(crashes.rate);
        if wants_crash && crashes.refusal().is_none() {
            let answer = answered(shopper.crash(design)).await;
            outcome.requests += 1;
            sight(&mut outcome, &answer);
            if answer.status == 500 {
                outcome.crashes += 1;
            } else if is_refusal(answer.status) {
                outcome.crashes_refused += 1;
                let _ = crashes.refused.set(answer.describe_error());
            }
        }
        let roll = rng.random_range(0..total_weight);
        let action = if roll < options.mix.add {
            Action::Add
        } else if roll < options.mix.add + options.mix.view || expected.is_empty() {
            Action::View
        } else {
            Action::Remove
        };
        let answer = match action {
            Action::Add => {
                let (item, price) = PRODUCTS[rng.random_range(0..PRODUCTS.len())];
                let answer = answered(shopper.add(design, item, price)).await;
                if answer.is_success() {
                    *expected.entry(item.to_string()).or_default() += 1;
                }
                answer
            }
            Action::View => answered(shopper.cart(design)).await,
            Action::Remove => {
                let items: Vec<&String> = expected.keys().collect();
                let item = items[rng.random_range(0..items.len())].clone();
                match last_seen.iter().position(|line| line.item == item) {
                    Some(index) => {
                        let answer = answered(shopper.remove_line(design, index)).await;
                        if answer.is_success() {
                            expected.remove(&item);
                        }
                        answer
                    }
                    // Already gone from the cart it last saw: just look again.
                    None => answered(shopper.cart(design)).await,
                }
            }
        };
        observe(&mut outcome, &mut expected, &mut last_seen, &answer);
    }
    let last = answered(shopper.cart(design)).await;
    observe(&mut outcome, &mut expected, &mut last_seen, &last);
    outcome
}

/// Compares an answer's cart with what the shopper expects. Anything missing
/// is lost (counted once: the shopper then believes what it sees).
pub(super) fn observe(
    outcome: &mut Outcome,
    expected: &mut BTreeMap<String, u32>,
    last_seen: &mut Vec<LineView>,
    answer: &Answer,
) {
    outcome.requests += 1;
    sight(outcome, answer);
    outcome
        .latencies_ms
        .push(answer.elapsed.as_secs_f64() * 1000.0);
    let Some(cart) = answer
        .cart
        .as_ref()
        .map(|view| &view.cart)
        .filter(|_| answer.is_success())
    else {
        outcome.errors += 1;
        if answer.status == 0 {
            outcome.unanswered += 1;
        }
        return;
    };
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for line in cart {
        *seen.entry(line.item.clone()).or_default() += line.quantity;
    }
    let missing: u64 = expected
        .iter()
        .map(|(item, &quantity)| u64::from(quantity.saturating_sub(*seen.get(item).unwrap_or(&0))))
        .sum();
    if missing > 0 {
        outcome.intact = false;
        outcome.items_lost += missing;
    }
    *expected = seen;
    *last_seen = cart.clone();
}

/// Notes the instance that answered, when the answer names one.
fn sight(outcome: &mut Outcome, answer: &Answer) {
    if !answer.instance.is_empty() {
        outcome.sightings.push(Sighting {
            at: Instant::now(),
            server_id: answer.instance.clone(),
            requests_served: answer.requests,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(status: u16, items: &[(&str, u32)]) -> Answer {
        let lines: Vec<LineView> = items
            .iter()
            .map(|&(item, quantity)| LineView {
                item: item.into(),
                price: Cents(100).into(),
                quantity,
                line_total: Cents(100 * u64::from(quantity)).into(),
            })
            .collect();
        let total = Cents(lines.iter().map(|line| line.line_total.0.0).sum());
        Answer {
            status,
            instance: "a".into(),
            requests: 1,
            retry_after: None,
            body: serde_json::Value::Null,
            cart: (status == 200).then(|| cart_core::contract::CartView {
                server_id: "a".into(),
                server_kind: "stateless".into(),
                requests_served: 1,
                session_id: None,
                item_count: lines.iter().map(|line| u64::from(line.quantity)).sum(),
                cart: lines,
                total: total.into(),
            }),
            error: None,
            elapsed: Duration::from_millis(2),
        }
    }

    #[test]
    fn a_cart_is_lost_when_anything_expected_goes_missing_and_counted_once() {
        let mut outcome = Outcome {
            intact: true,
            ..Outcome::default()
        };
        let mut expected = BTreeMap::from([("A".to_string(), 2), ("B".to_string(), 1)]);
        let mut seen = Vec::new();
        observe(
            &mut outcome,
            &mut expected,
            &mut seen,
            &answer(200, &[("A", 2), ("B", 1)]),
        );
        assert!(outcome.intact);
        // An extra item (an add whose answer was lost) is not a loss.
        observe(
            &mut outcome,
            &mut expected,
            &mut seen,
            &answer(200, &[("A", 2), ("B", 1), ("C", 1)]),
        );
        assert!(outcome.intact);
        observe(
            &mut outcome,
            &mut expected,
            &mut seen,
            &answer(200, &[("A", 1)]),
        );
        assert!(!outcome.intact);
        assert_eq!(outcome.items_lost, 3);
        // The shopper now believes the cart it saw: the same loss is not counted twice.
        observe(
            &mut outcome,
            &mut expected,
            &mut seen,
            &answer(200, &[("A", 1)]),
        );
        assert_eq!(outcome.items_lost, 3);
        observe(&mut outcome, &mut expected, &mut seen, &answer(503, &[]));
        assert_eq!((outcome.requests, outcome.errors), (5, 1));
        // Every answer named its instance, the failed one too: all are sightings.
        assert_eq!(outcome.sightings.len(), 5);
        assert!(outcome.sightings.iter().all(|s| s.server_id == "a"));
    }

    #[test]
    fn mixes_parse_and_need_adds() {
        let mix: Mix = "add=60,view=30,remove=10".parse().unwrap();
        assert_eq!((mix.add, mix.view, mix.remove), (60, 30, 10));
        assert!("view=1".parse::<Mix>().is_err());
        assert!("add=1,buy=2".parse::<Mix>().is_err());
        assert!("add".parse::<Mix>().is_err());
    }
}
