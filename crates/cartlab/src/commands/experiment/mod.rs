//! `cartlab experiment`: simulated shoppers against both carts under a matrix
//! of recycling policies (Spin's reuse count and idle timeout, crashes, fleets
//! behind sticky / round-robin / least-loaded balancers, a rolling redeploy),
//! each scenario on a fresh lab host in this process. It measures what each
//! policy does to carts: a cart is intact when no item the shopper put in it
//! ever went missing.

mod plot;
mod report;
mod scenarios;
mod shopper;

pub use report::Row;
pub use shopper::Mix;

use super::AppArgs;
use super::up::UpArgs;
use crate::app::sampled::Sampled;
use crate::client::{Design, Shopper};
use crate::commands::up::load::LocalHost;
use crate::runtime::lab::LabEvent;
use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use report::{print_table, summarise, write_outputs};
use scenarios::{Scenario, matrix};
use shopper::{Outcome, shop};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
    let (json_path, csv_path) = write_outputs(&options, &store, &rows)?;
    let plot_path = options.out.join("carts-intact.svg");
    plot::plot(&rows, &plot_path)?;
    println!(
        "\nwrote {}, {} and {}",
        json_path.display(),
        csv_path.display(),
        plot_path.display()
    );
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
        let (app, done) = (host.app().clone(), done.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if !done.load(Ordering::Relaxed) {
                app.roll(None).await;
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
