//! `cartlab experiment`: simulated shoppers against both carts under a matrix
//! of recycling policies (Spin's reuse count and idle timeout, crashes, fleets
//! behind sticky / round-robin / least-loaded balancers, a rolling redeploy),
//! each scenario on a fresh lab host in this process. It measures what each
//! policy does to carts: a cart is intact when no item the shopper put in it
//! ever went missing.

use super::AppArgs;
use super::up::UpArgs;
use crate::client::{Answer, Design, Shopper};
use crate::fleet::Routing;
use crate::lab::LabEvent;
use crate::pool::Sampled;
use crate::up::LocalHost;
use anyhow::{Context as _, bail};
use cart_core::Cents;
use cart_core::contract::LineView;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What shoppers put in carts.
const PRODUCTS: [(&str, Cents); 6] = [
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

/// `--shoppers` when not given.
pub const DEFAULT_SHOPPERS: usize = 24;
/// `--actions` when not given.
pub const DEFAULT_ACTIONS: usize = 30;
/// `--think-time` when not given.
pub const DEFAULT_THINK_TIME: &str = "5ms..40ms";
/// `--mix` when not given.
pub const DEFAULT_MIX: &str = "add=60,view=30,remove=10";
/// `--crash-rate` when not given.
pub const DEFAULT_CRASH_RATE: f64 = 0.02;
/// `--seed` when not given.
pub const DEFAULT_SEED: u64 = 42;
/// `--out` when not given.
pub const DEFAULT_OUT: &str = "experiment-results";

/// Simulated shoppers under a matrix of recycling policies; table, JSON, CSV, plot.
#[derive(clap::Args, Clone, Debug)]
pub struct ExperimentArgs {
    /// Simulated shoppers per design in each scenario.
    #[arg(long, default_value_t = DEFAULT_SHOPPERS)]
    pub shoppers: usize,
    /// Actions each shopper takes (then it reads its cart one last time).
    #[arg(long, default_value_t = DEFAULT_ACTIONS)]
    pub actions: usize,
    /// Pause before each action (e.g. 20ms, or a range 5ms..40ms).
    #[arg(long, default_value = DEFAULT_THINK_TIME)]
    pub think_time: Sampled<Duration>,
    /// Relative weights of the actions.
    #[arg(long, default_value = DEFAULT_MIX)]
    pub mix: Mix,
    /// In the crash scenarios: the chance a shopper crashes its instance before an action.
    #[arg(long, default_value_t = DEFAULT_CRASH_RATE)]
    pub crash_rate: f64,
    /// Seed for the shoppers' choices (both designs see the same journeys).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Directory for results.json, results.csv and carts-intact.svg.
    #[arg(long, default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Run only this scenario (its exact name, or part of names: `pool`); repeatable.
    #[arg(long)]
    pub only: Vec<String>,
    /// Manifest, stores and build settings for every scenario's lab host.
    #[command(flatten)]
    pub app: AppArgs,
}

impl ExperimentArgs {
    pub async fn execute(self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.crash_rate) {
            bail!("--crash-rate is a probability, between 0 and 1");
        }
        if self.shoppers == 0 || self.actions == 0 {
            bail!("--shoppers and --actions must be at least 1");
        }
        run(self).await?;
        Ok(())
    }
}

/// One cell of the matrix.
#[derive(Clone, Debug)]
struct Scenario {
    name: String,
    /// `--max-instance-reuse-count` and `--idle-instance-timeout`, for Spin's instances.
    max_reuse: Option<u64>,
    idle_timeout: Option<Duration>,
    /// `--instances 4 --routing R`: a fleet instead.
    fleet: Option<Routing>,
    crashes: bool,
    /// Roll every instance through a redeploy while the shoppers shop.
    rolling_redeploy: bool,
}

fn matrix() -> Vec<Scenario> {
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
    fn configure(&self, up: &mut UpArgs) {
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
const FLEET_INSTANCES: u16 = 4;
/// The fleet scenarios' `--restart-delay`.
const FLEET_RESTART_DELAY: Duration = Duration::from_millis(50);

/// One row of the results: a scenario seen through one design.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub scenario: String,
    pub design: Design,
    pub shoppers: usize,
    pub carts_intact: usize,
    pub carts_intact_pct: f64,
    pub items_lost: u64,
    pub requests: u64,
    /// Answers other than 2xx (crashes' collateral, 503s), crash requests excluded.
    pub errors: u64,
    pub instances_started: u64,
    pub recycles: u64,
    pub recycles_per_100_requests: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    command: String,
    store: &'a str,
    shoppers: usize,
    actions_per_shopper: usize,
    think_time: String,
    mix: Mix,
    crash_rate: f64,
    seed: u64,
    rows: &'a [Row],
}

/// Runs the matrix, prints the table and writes JSON, CSV and the plot.
pub async fn run(options: ExperimentArgs) -> anyhow::Result<Vec<Row>> {
    let all = matrix();
    // `--only NAME` picks that scenario; a filter naming none picks every
    // scenario containing it (`--only pool` for all fleets).
    let picks = |scenario: &Scenario, filter: &str| {
        if all.iter().any(|s| s.name == filter) {
            scenario.name == filter
        } else {
            scenario.name.contains(filter)
        }
    };
    let scenarios: Vec<Scenario> = all
        .iter()
        .filter(|scenario| {
            options.only.is_empty() || options.only.iter().any(|o| picks(scenario, o))
        })
        .cloned()
        .collect();
    if scenarios.is_empty() {
        bail!("no scenario matches --only {:?}", options.only);
    }
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    let mut base = UpArgs::in_process(options.app.clone());
    let store = super::demo::choose_store(&mut base.app).await;
    eprintln!("cartlab experiment: {} scenarios; {store}", scenarios.len());
    let progress = ProgressBar::new((scenarios.len() * options.shoppers * 2) as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} shoppers  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        progress.set_message(scenario.name.clone());
        let mut up = base.clone();
        scenario.configure(&mut up);
        // Build (if stale) once, before the first scenario.
        up.app.no_build = base.app.no_build || index > 0;
        rows.extend(run_scenario(&options, &up, scenario, index as u64, &progress).await?);
    }
    progress.finish_and_clear();
    print_table(&rows);
    write_outputs(&options, &store, &rows)?;
    Ok(rows)
}

async fn run_scenario(
    options: &ExperimentArgs,
    up: &UpArgs,
    scenario: &Scenario,
    index: u64,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<Row>> {
    let host = LocalHost::start(up, false)
        .await
        .with_context(|| format!("scenario `{}`: lab host did not start", scenario.name))?;
    let mut events = host.app().lab.subscribe();
    let (stop_counting, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let counting = tokio::spawn(async move {
        // component -> (instances started, instances recycled)
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                _ = &mut stopped => return counts,
            };
            match event {
                Ok(LabEvent::InstanceStarted { component, .. }) => {
                    counts.entry(component).or_default().0 += 1;
                }
                Ok(LabEvent::InstanceRecycled { component, .. }) => {
                    counts.entry(component).or_default().1 += 1;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return counts,
            }
        }
    });
    let done = Arc::new(AtomicBool::new(false));
    let redeploy = scenario.rolling_redeploy.then(|| {
        // Start rolling a fifth of the way into the expected shopping time,
        // so that the roll (a restart delay per slot) ends while they shop.
        let mean_think = (options.think_time.low + options.think_time.high) / 2;
        let delay = mean_think * options.actions as u32 / 5;
        let (url, done) = (host.url.clone(), done.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if !done.load(Ordering::Relaxed) {
                let _ = reqwest::Client::new()
                    .post(format!("{url}/_lab/recycle"))
                    .body(r#"{"mode":"rolling"}"#)
                    .send()
                    .await;
            }
        })
    });
    let mut shoppers = Vec::new();
    for design in Design::BOTH {
        for number in 0..options.shoppers {
            let shopper = Shopper::new(&host.url)?;
            // The same seed for both designs: both see the same journeys.
            let seed = options.seed ^ (index << 32) ^ number as u64;
            let (options, progress) = (options.clone(), progress.clone());
            let crash_rate = if scenario.crashes {
                options.crash_rate
            } else {
                0.0
            };
            shoppers.push(tokio::spawn(async move {
                let outcome = shop(design, &shopper, &options, crash_rate, seed).await;
                progress.inc(1);
                (design, outcome)
            }));
        }
    }
    let mut outcomes: BTreeMap<&'static str, Vec<Outcome>> = BTreeMap::new();
    for shopper in shoppers {
        let (design, outcome) = shopper.await.context("a shopper task failed")?;
        outcomes
            .entry(design.component())
            .or_default()
            .push(outcome?);
    }
    done.store(true, Ordering::Relaxed);
    if let Some(redeploy) = redeploy {
        // A roll under way finishes (and is counted); one not begun is skipped.
        let _ = redeploy.await;
    }
    // Let the last recycles (a crash at the very end) reach the count, then
    // count nothing from the shutdown itself.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop_counting.send(());
    let counts = counting.await.context("the event counter failed")?;
    host.stop().await?;
    Ok(Design::BOTH
        .iter()
        .map(|&design| {
            let list = outcomes.remove(design.component()).unwrap_or_default();
            let (started, recycled) = counts.get(design.component()).copied().unwrap_or_default();
            summarise(&scenario.name, design, &list, started, recycled)
        })
        .collect())
}

/// What one shopper saw.
#[derive(Debug, Default)]
struct Outcome {
    intact: bool,
    items_lost: u64,
    requests: u64,
    errors: u64,
    latencies_ms: Vec<f64>,
}

enum Action {
    Add,
    View,
    Remove,
}

async fn shop(
    design: Design,
    shopper: &Shopper,
    options: &ExperimentArgs,
    crash_rate: f64,
    seed: u64,
) -> anyhow::Result<Outcome> {
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
        if crash_rate > 0.0 && rng.random_bool(crash_rate.clamp(0.0, 1.0)) {
            let _ = shopper.crash(design).await?;
            outcome.requests += 1;
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
                let answer = shopper.add(design, item, price).await?;
                if answer.is_success() {
                    *expected.entry(item.to_string()).or_default() += 1;
                }
                answer
            }
            Action::View => shopper.cart(design).await?,
            Action::Remove => {
                let items: Vec<&String> = expected.keys().collect();
                let item = items[rng.random_range(0..items.len())].clone();
                match last_seen.iter().position(|line| line.item == item) {
                    Some(index) => {
                        let answer = shopper.remove_line(design, index).await?;
                        if answer.is_success() {
                            expected.remove(&item);
                        }
                        answer
                    }
                    // Already gone from the cart it last saw: just look again.
                    None => shopper.cart(design).await?,
                }
            }
        };
        observe(&mut outcome, &mut expected, &mut last_seen, &answer);
    }
    let last = shopper.cart(design).await?;
    observe(&mut outcome, &mut expected, &mut last_seen, &last);
    Ok(outcome)
}

/// Compares an answer's cart with what the shopper expects. Anything missing
/// is lost (counted once: the shopper then believes what it sees).
fn observe(
    outcome: &mut Outcome,
    expected: &mut BTreeMap<String, u32>,
    last_seen: &mut Vec<LineView>,
    answer: &Answer,
) {
    outcome.requests += 1;
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

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn summarise(
    scenario: &str,
    design: Design,
    outcomes: &[Outcome],
    started: u64,
    recycled: u64,
) -> Row {
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .flat_map(|o| o.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let requests: u64 = outcomes.iter().map(|o| o.requests).sum();
    let intact = outcomes.iter().filter(|o| o.intact).count();
    let round = |value: f64, places: i32| {
        let scale = 10f64.powi(places);
        (value * scale).round() / scale
    };
    Row {
        scenario: scenario.to_string(),
        design,
        shoppers: outcomes.len(),
        carts_intact: intact,
        carts_intact_pct: round(100.0 * intact as f64 / outcomes.len().max(1) as f64, 1),
        items_lost: outcomes.iter().map(|o| o.items_lost).sum(),
        requests,
        errors: outcomes.iter().map(|o| o.errors).sum(),
        instances_started: started,
        recycles: recycled,
        recycles_per_100_requests: round(100.0 * recycled as f64 / requests.max(1) as f64, 2),
        p50_ms: round(percentile(&latencies, 0.50), 2),
        p99_ms: round(percentile(&latencies, 0.99), 2),
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<32} {:<10} {:>13} {:>10} {:>9} {:>7} {:>10} {:>13} {:>8} {:>8}",
        "scenario",
        "design",
        "carts intact",
        "items lost",
        "requests",
        "errors",
        "instances",
        "recycles/100",
        "p50 ms",
        "p99 ms"
    );
    for row in rows {
        println!(
            "{:<32} {:<10} {:>13} {:>10} {:>9} {:>7} {:>10} {:>13} {:>8.2} {:>8.2}",
            row.scenario,
            match row.design {
                Design::Stateful => "stateful",
                Design::Stateless => "stateless",
            },
            format!(
                "{}/{} {:.0}%",
                row.carts_intact, row.shoppers, row.carts_intact_pct
            ),
            row.items_lost,
            row.requests,
            row.errors,
            row.instances_started,
            format!("{:.2}", row.recycles_per_100_requests),
            row.p50_ms,
            row.p99_ms
        );
    }
}

fn write_outputs(options: &ExperimentArgs, store: &str, rows: &[Row]) -> anyhow::Result<()> {
    let command = std::iter::once("cartlab".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let report = Report {
        command,
        store,
        shoppers: options.shoppers,
        actions_per_shopper: options.actions,
        think_time: options.think_time.to_string(),
        mix: options.mix,
        crash_rate: options.crash_rate,
        seed: options.seed,
        rows,
    };
    let json_path = options.out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let csv_path = options.out.join("results.csv");
    std::fs::write(&csv_path, to_csv(rows))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let plot_path = options.out.join("carts-intact.svg");
    plot(rows, &plot_path)?;
    println!(
        "\nwrote {}, {} and {}",
        json_path.display(),
        csv_path.display(),
        plot_path.display()
    );
    Ok(())
}

fn to_csv(rows: &[Row]) -> String {
    let mut csv = String::from(
        "scenario,design,shoppers,carts_intact,carts_intact_pct,items_lost,requests,errors,\
         instances_started,recycles,recycles_per_100_requests,p50_ms,p99_ms\n",
    );
    for row in rows {
        // Scenario names are ours (no quotes or commas), but quote them anyway.
        csv.push_str(&format!(
            "\"{}\",{},{},{},{},{},{},{},{},{},{},{},{}\n",
            row.scenario.replace('"', "\"\""),
            match row.design {
                Design::Stateful => "stateful",
                Design::Stateless => "stateless",
            },
            row.shoppers,
            row.carts_intact,
            row.carts_intact_pct,
            row.items_lost,
            row.requests,
            row.errors,
            row.instances_started,
            row.recycles,
            row.recycles_per_100_requests,
            row.p50_ms,
            row.p99_ms
        ));
    }
    csv
}

/// Lowest recycling rate the log-scale plot shows; "no recycling" sits here.
const PLOT_FLOOR: f64 = 0.1;

/// Carts intact against recycling rate, one series per design. The rate spans
/// three orders of magnitude (a crash now and then up to one instance per
/// request), so the x axis is logarithmic.
fn plot(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let max_rate = rows
        .iter()
        .map(|row| row.recycles_per_100_requests)
        .fold(100.0_f64, f64::max)
        * 1.6;
    let root = SVGBackend::new(path, (1040, 600)).into_drawing_area();
    let draw = |result: Result<(), DrawingAreaErrorKind<std::io::Error>>| {
        result.map_err(|error| anyhow::anyhow!("plot: {error}"))
    };
    draw(root.fill(&WHITE))?;
    // Points carry scenario numbers; the key beside the chart names them.
    let (plot_area, key_area) = root.split_horizontally(770);
    let mut scenarios: Vec<&str> = Vec::new();
    for row in rows {
        if !scenarios.contains(&row.scenario.as_str()) {
            scenarios.push(&row.scenario);
        }
    }
    let number_of = |name: &str| {
        scenarios
            .iter()
            .position(|s| *s == name)
            .map_or(0, |i| i + 1)
    };
    draw(key_area.draw(&Text::new(
        "scenarios",
        (8, 60),
        ("sans-serif", 15).into_font(),
    )))?;
    for (index, name) in scenarios.iter().enumerate() {
        draw(key_area.draw(&Text::new(
            format!("{:>2}  {name}", index + 1),
            (8, 84 + 20 * index as i32),
            ("sans-serif", 13).into_font(),
        )))?;
    }
    let mut chart = ChartBuilder::on(&plot_area)
        .caption("Carts intact vs instance recycling", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d((PLOT_FLOOR..max_rate).log_scale(), -2.0..105.0)
        .map_err(|error| anyhow::anyhow!("plot: {error}"))?;
    draw(
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc(format!(
                "instance recycles per 100 requests (log scale; none is drawn at {PLOT_FLOOR})"
            ))
            .y_desc("carts intact (%)")
            .draw(),
    )?;
    let series = [
        (Design::Stateful, "stateful-cart (memory)", RED),
        (Design::Stateless, "stateless-cart (session store)", BLUE),
    ];
    for (design, label, colour) in series {
        // Scenarios that land on the same spot share one label.
        let mut spots: Vec<((f64, f64), Vec<usize>)> = Vec::new();
        for row in rows.iter().filter(|row| row.design == design) {
            let at = (
                row.recycles_per_100_requests.max(PLOT_FLOOR),
                row.carts_intact_pct,
            );
            let number = number_of(&row.scenario);
            match spots
                .iter_mut()
                .find(|(spot, _)| (spot.0 / at.0 - 1.0).abs() < 0.05 && (spot.1 - at.1).abs() < 2.0)
            {
                Some((_, numbers)) => numbers.push(number),
                None => spots.push((at, vec![number])),
            }
        }
        draw(
            chart
                .draw_series(
                    spots
                        .iter()
                        .map(|&(at, _)| Circle::new(at, 5, colour.filled())),
                )
                .map(|series| {
                    series
                        .label(label)
                        .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
                }),
        )?;
        if design == Design::Stateful {
            // Number the stateful points: they are the ones that move.
            draw(
                chart
                    .draw_series(spots.iter().map(|(at, numbers)| {
                        let label = numbers
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(",");
                        EmptyElement::at(*at)
                            + Text::new(label, (-4, -22), ("sans-serif", 13).into_font())
                    }))
                    .map(|_| ()),
            )?;
        }
    }
    draw(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw(),
    )?;
    draw(root.present())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn mixes_parse_and_need_adds() {
        let mix: Mix = "add=60,view=30,remove=10".parse().unwrap();
        assert_eq!((mix.add, mix.view, mix.remove), (60, 30, 10));
        assert!("view=1".parse::<Mix>().is_err());
        assert!("add=1,buy=2".parse::<Mix>().is_err());
        assert!("add".parse::<Mix>().is_err());
    }

    #[test]
    fn percentiles_pick_ranks() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
