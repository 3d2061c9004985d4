//! `cartlab experiment`: simulated shoppers against both carts under a matrix
//! of recycling policies (Spin's reuse count and idle timeout, crashes, fleets
//! behind sticky / round-robin / least-loaded balancers, a rolling redeploy),
//! each scenario on a fresh lab host in this process, or, with `--url`, against
//! running apps the user started (`targets`), whose instance counts are inferred
//! from the carts' answers (`infer`). It measures what each policy does to
//! carts: a cart is intact when no item the shopper put in it ever went missing.

mod infer;
mod plot;
mod report;
mod scenarios;
mod shopper;
mod targets;

pub use report::Row;
pub use shopper::Mix;
pub use targets::Target;

use super::AppArgs;
use super::up::UpArgs;
use crate::app::sampled::Sampled;
use crate::client::{Design, Shopper};
use crate::commands::up::load::LocalHost;
use crate::runtime::lab::LabEvent;
use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use report::{RunInfo, TargetReport, print_table, print_targets, summarise, write_outputs};
use scenarios::{Scenario, matrix};
use shopper::{Crashes, Outcome, shop};
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
/// `--crash-rate` in the matrix's `+crashes` scenarios when not given (with `--url`: 0).
pub const DEFAULT_CRASH_RATE: f64 = 0.02;
/// `--seed` when not given.
pub const DEFAULT_SEED: u64 = 42;
/// `--out` when not given.
pub const DEFAULT_OUT: &str = "experiment-results";

/// Simulated shoppers under a matrix of recycling policies, or against running
/// apps (`--url`); table, JSON, CSV, plot.
#[derive(clap::Args, Clone, Debug)]
pub struct ExperimentArgs {
    /// Simulated shoppers per design in each scenario (or --url target).
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
    /// The chance a shopper crashes its instance (POST .../crash) before an action
    /// [default: 0.02 in the `+crashes` scenarios; with --url: no crashes].
    ///
    /// In the matrix only the `+crashes` scenarios crash. With --url shoppers crash
    /// instances only when this is given (above 0), on every target. A target that
    /// refuses a crash (403 `crash_disabled`, the Spin variable crash_enabled=false; or
    /// 404/405) is shopped at without crashes from its first refusal on, with the same
    /// journeys; the notes under the table and results.json (`crashesRefused`,
    /// `targets[].crashesRefusedBy`) say so.
    #[arg(long, value_name = "P")]
    pub crash_rate: Option<f64>,
    /// Seed for the shoppers' choices (both designs see the same journeys, and with --url
    /// every target does).
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Directory for results.json, results.csv and carts-intact.svg.
    #[arg(long, default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Run only this scenario (its exact name, or part of names: `pool`); repeatable
    /// [default: every scenario]. Not with --url.
    #[arg(long)]
    pub only: Vec<String>,
    /// A running app to shop at instead of the scenario matrix, as LABEL=URL (e.g.
    /// spin-default=http://127.0.0.1:3000); repeatable [default: none, the matrix on lab
    /// hosts started here].
    ///
    /// Real `spin up` with any flags, `cartlab up`, a deployed host, a fleet: the same
    /// seeded shoppers (the same journeys at every target, one target after another), the
    /// same table, JSON, CSV and plot, a row pair per target under its label. The URL is
    /// the app's root: http or https, a host, a port, no path; labels are 1-32
    /// characters and unique. Traffic goes to these URLs only: no lab host is
    /// started, no Redis is probed, redirects are not followed. Before shopping, each
    /// target must answer GET /stateful/health and /stateless/health as cartlab's carts
    /// do.
    ///
    /// Instance counts are INFERRED from the serverId (x-cartlab-instance) and
    /// requestsServed (x-cartlab-requests) each cart answer reports, not seen: an
    /// instance is a distinct serverId (one whose requestsServed repeats a value
    /// already seen has started over, and counts again); a recycle is an instance whose
    /// last answer came before the first answer of an instance new to the run. The last
    /// instances standing count as running (under reuse 1, n instances show n-1
    /// recycles). results.json says `instanceCounts.source: "inferred"`.
    ///
    /// Crashes: none unless --crash-rate is given (see there). Not with --only, nor
    /// with the lab host's settings (--from, --state-dir, --variable, --env);
    /// --runtime-config-file and --build (which may come from the environment) are
    /// ignored, with a warning.
    #[arg(
        long = "url",
        value_name = "LABEL=URL",
        conflicts_with_all = ["only", "from", "state_dir", "variables", "env"],
    )]
    pub urls: Vec<Target>,
    /// Manifest, stores and build settings for every scenario's lab host.
    #[command(flatten)]
    pub app: AppArgs,
}

impl ExperimentArgs {
    pub async fn execute(self) -> anyhow::Result<()> {
        run(self).await?;
        Ok(())
    }

    fn check(&self) -> anyhow::Result<()> {
        if self
            .crash_rate
            .is_some_and(|rate| !(0.0..=1.0).contains(&rate))
        {
            bail!("--crash-rate is a probability, between 0 and 1");
        }
        if self.shoppers == 0 || self.actions == 0 {
            bail!("--shoppers and --actions must be at least 1");
        }
        Ok(())
    }
}

/// Runs the matrix (or the `--url` targets), prints the table and writes
/// JSON, CSV and the plot.
pub async fn run(options: ExperimentArgs) -> anyhow::Result<Vec<Row>> {
    options.check()?;
    let (rows, info) = if options.urls.is_empty() {
        run_matrix(&options).await?
    } else {
        run_targets(&options).await?
    };
    print_table(&rows);
    print_targets(&info);
    let (json_path, csv_path) = write_outputs(&options, &info, &rows)?;
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

fn progress_bar(shoppers: usize) -> ProgressBar {
    let progress = ProgressBar::new(shoppers as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} shoppers  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress
}

async fn run_matrix(options: &ExperimentArgs) -> anyhow::Result<(Vec<Row>, RunInfo)> {
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
    let crash_rate = options.crash_rate.unwrap_or(DEFAULT_CRASH_RATE);
    let mut base = UpArgs::in_process(options.app.clone());
    let store = super::demo::choose_store(&mut base.app).await;
    eprintln!("cartlab experiment: {} scenarios; {store}", scenarios.len());
    let progress = progress_bar(scenarios.len() * options.shoppers * 2);
    let mut rows = Vec::new();
    for (index, scenario) in scenarios.iter().enumerate() {
        progress.set_message(scenario.name.clone());
        let mut up = base.clone();
        scenario.configure(&mut up);
        // With --build, build once, before the first scenario.
        up.app.build = base.app.build && index == 0;
        let rate = if scenario.crashes { crash_rate } else { 0.0 };
        rows.extend(run_scenario(options, &up, scenario, index as u64, rate, &progress).await?);
    }
    progress.finish_and_clear();
    let info = RunInfo {
        store,
        crash_rate,
        instance_counts: infer::FROM_LAB_EVENTS,
        targets: Vec::new(),
    };
    Ok((rows, info))
}

async fn run_targets(options: &ExperimentArgs) -> anyhow::Result<(Vec<Row>, RunInfo)> {
    targets::check_labels(&options.urls)?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    if let Some(file) = &options.app.runtime_config_file {
        eprintln!(
            "warning: --runtime-config-file {} is ignored with --url: the targets have their \
             own stores",
            file.display()
        );
    }
    if options.app.build {
        eprintln!("warning: --build is ignored with --url: no lab host is started");
    }
    let crash_rate = options.crash_rate.unwrap_or(0.0);
    let labels: Vec<&str> = options.urls.iter().map(|t| t.label.as_str()).collect();
    eprintln!(
        "cartlab experiment: {} target{} ({}); {}; instance counts inferred from the carts' \
         answers",
        labels.len(),
        if labels.len() == 1 { "" } else { "s" },
        labels.join(", "),
        if crash_rate > 0.0 {
            format!("crash rate {crash_rate}")
        } else {
            "no crashes".to_string()
        }
    );
    // Every target answers before any shopping: a typo in the last URL fails fast.
    for target in &options.urls {
        targets::preflight(target).await?;
    }
    let progress = progress_bar(options.urls.len() * options.shoppers * 2);
    let mut rows = Vec::new();
    let mut reports = Vec::new();
    for target in &options.urls {
        progress.set_message(target.label.clone());
        // Seed index 0 for every target: the same journeys everywhere.
        let shopped = shop_all(&target.url, true, options, crash_rate, 0, &progress)
            .await
            .with_context(|| format!("target `{}` ({})", target.label, target.url))?;
        let mut refused = BTreeMap::new();
        for mut design in shopped {
            let sightings = design
                .outcomes
                .iter_mut()
                .flat_map(|outcome| std::mem::take(&mut outcome.sightings))
                .collect();
            let counts = infer::infer(sightings);
            rows.push(summarise(
                &target.label,
                design.design,
                &design.outcomes,
                counts.instances,
                counts.recycles,
            ));
            if let Some(refusal) = design.crashes.refusal() {
                refused.insert(design.design.component().to_string(), refusal.to_string());
            }
        }
        reports.push(TargetReport {
            label: target.label.clone(),
            url: target.url.clone(),
            crash_rate,
            crashes_refused_by: refused,
        });
    }
    progress.finish_and_clear();
    let info = RunInfo {
        store: "each target's own (not visible from outside)".to_string(),
        crash_rate,
        instance_counts: infer::INFERRED,
        targets: reports,
    };
    Ok((rows, info))
}

/// What the shoppers of one design did at one host.
struct Shopped {
    design: Design,
    outcomes: Vec<Outcome>,
    crashes: Arc<Crashes>,
}

/// Every shopper of both designs at `url` at once, `--shoppers` per design; the same
/// seeds for both designs. `pinned`: follow no redirect.
async fn shop_all(
    url: &str,
    pinned: bool,
    options: &ExperimentArgs,
    crash_rate: f64,
    seed_index: u64,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<Shopped>> {
    let mut tasks = Vec::new();
    let mut shopped = Vec::new();
    for design in Design::BOTH {
        let crashes = Arc::new(Crashes::at_rate(crash_rate));
        for number in 0..options.shoppers {
            let shopper = if pinned {
                Shopper::without_redirects(url)?
            } else {
                Shopper::new(url)?
            };
            // The same seed for both designs: both see the same journeys.
            let seed = options.seed ^ (seed_index << 32) ^ number as u64;
            let (options, progress, crashes) = (options.clone(), progress.clone(), crashes.clone());
            tasks.push(tokio::spawn(async move {
                let outcome = shop(design, &shopper, &options, &crashes, seed).await;
                progress.inc(1);
                (design, outcome)
            }));
        }
        shopped.push(Shopped {
            design,
            outcomes: Vec::new(),
            crashes,
        });
    }
    for task in tasks {
        let (design, outcome) = task.await.context("a shopper task failed")?;
        if let Some(entry) = shopped.iter_mut().find(|s| s.design == design) {
            entry.outcomes.push(outcome);
        }
    }
    Ok(shopped)
}

async fn run_scenario(
    options: &ExperimentArgs,
    up: &UpArgs,
    scenario: &Scenario,
    index: u64,
    crash_rate: f64,
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
    let shopped = shop_all(&host.url, false, options, crash_rate, index, progress).await;
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
    let shopped = shopped.with_context(|| format!("scenario `{}`", scenario.name))?;
    Ok(shopped
        .iter()
        .map(|design| {
            if let Some(refusal) = design.crashes.refusal() {
                progress.suspend(|| {
                    eprintln!(
                        "scenario `{}`: {} refused crashes ({refusal}); shopped without them",
                        scenario.name,
                        design.design.component()
                    )
                });
            }
            let (started, recycled) = counts
                .get(design.design.component())
                .copied()
                .unwrap_or_default();
            summarise(
                &scenario.name,
                design.design,
                &design.outcomes,
                started,
                recycled,
            )
        })
        .collect())
}
