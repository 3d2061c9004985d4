//! The results: a row per scenario and design, printed as a table and
//! written as JSON and CSV (`plot` draws the SVG from the same rows).

use super::ExperimentArgs;
use super::infer::InstanceCounts;
use super::shopper::{Mix, Outcome};
use crate::client::Design;
use anyhow::Context as _;
use serde::Serialize;
use std::path::PathBuf;

/// One row of the results: a scenario (or a `--url` target) seen through one design.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The scenario's name, or the `--url` target's label.
    pub scenario: String,
    pub design: Design,
    pub shoppers: usize,
    pub carts_intact: usize,
    pub carts_intact_pct: f64,
    pub items_lost: u64,
    pub requests: u64,
    /// Answers other than 2xx (crashes' collateral, 503s), crash requests excluded.
    pub errors: u64,
    /// Of `errors`, requests with no HTTP answer at all: a target that is down, not one
    /// that answers 5xx.
    pub unanswered: u64,
    /// From the lab host's events; with `--url`, inferred (distinct instances that answered).
    pub instances_started: u64,
    /// From the lab host's events; with `--url`, inferred (see `infer`).
    pub recycles: u64,
    pub recycles_per_100_requests: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Crash requests the instance trapped on (500).
    pub crashes: u64,
    /// Crash requests the host refused (403 `crash_disabled`, 404, 405); after the first,
    /// shoppers send no more.
    pub crashes_refused: u64,
}

/// What results.json says about one `--url` target.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TargetReport {
    pub(super) label: String,
    pub(super) url: String,
    /// The crash rate asked for (0: no crashes sent).
    pub(super) crash_rate: f64,
    /// Component -> the answer of its first refused crash (`403 crash_disabled: ...`).
    pub(super) crashes_refused_by: std::collections::BTreeMap<String, String>,
}

/// How a run was set up, beside its rows.
pub(super) struct RunInfo {
    /// Where the sessions lived (the lab hosts' stores), or what is known of it.
    pub(super) store: String,
    /// The crash rate in effect (the crash scenarios', or the targets').
    pub(super) crash_rate: f64,
    pub(super) instance_counts: InstanceCounts,
    /// Empty for the scenario matrix.
    pub(super) targets: Vec<TargetReport>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Report<'a> {
    command: String,
    store: &'a str,
    shoppers: usize,
    actions_per_shopper: usize,
    think_time: String,
    mix: Mix,
    crash_rate: f64,
    seed: u64,
    instance_counts: &'a InstanceCounts,
    #[serde(skip_serializing_if = "<[TargetReport]>::is_empty")]
    targets: &'a [TargetReport],
    rows: &'a [Row],
}

pub(super) fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub(super) fn summarise(
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
        unanswered: outcomes.iter().map(|o| o.unanswered).sum(),
        instances_started: started,
        recycles: recycled,
        recycles_per_100_requests: round(100.0 * recycled as f64 / requests.max(1) as f64, 2),
        p50_ms: round(percentile(&latencies, 0.50), 2),
        p99_ms: round(percentile(&latencies, 0.99), 2),
        crashes: outcomes.iter().map(|o| o.crashes).sum(),
        crashes_refused: outcomes.iter().map(|o| o.crashes_refused).sum(),
    }
}

pub(super) fn print_table(rows: &[Row]) {
    println!(
        "{:<32} {:<10} {:>13} {:>10} {:>9} {:>7} {:>10} {:>10} {:>13} {:>8} {:>8}",
        "scenario",
        "design",
        "carts intact",
        "items lost",
        "requests",
        "errors",
        "unanswered",
        "instances",
        "recycles/100",
        "p50 ms",
        "p99 ms"
    );
    for row in rows {
        println!(
            "{:<32} {:<10} {:>13} {:>10} {:>9} {:>7} {:>10} {:>10} {:>13} {:>8.2} {:>8.2}",
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
            row.unanswered,
            row.instances_started,
            format!("{:.2}", row.recycles_per_100_requests),
            row.p50_ms,
            row.p99_ms
        );
    }
}

/// With `--url`: how the counts were made, and each target's URL and crashes.
pub(super) fn print_targets(info: &RunInfo) {
    if info.targets.is_empty() {
        return;
    }
    println!(
        "\ninstances and recycles are {} from the serverId and requestsServed the carts \
         report (see --help)",
        info.instance_counts.source
    );
    let width = info
        .targets
        .iter()
        .map(|target| target.label.chars().count())
        .max()
        .unwrap_or(0);
    for target in &info.targets {
        let crashes = if target.crash_rate <= 0.0 {
            "no crashes".to_string()
        } else if target.crashes_refused_by.is_empty() {
            format!("crash rate {}", target.crash_rate)
        } else {
            let refusals: Vec<String> = target
                .crashes_refused_by
                .iter()
                .map(|(component, answer)| format!("{component} refused ({answer})"))
                .collect();
            format!(
                "crash rate {}, but {}: shopped without crashes there",
                target.crash_rate,
                refusals.join(", ")
            )
        };
        println!("{:<width$}  {}  {crashes}", target.label, target.url);
    }
}

/// Writes `results.json` and `results.csv` into the output folder; returns their paths.
pub(super) fn write_outputs(
    options: &ExperimentArgs,
    info: &RunInfo,
    rows: &[Row],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let command = std::iter::once("cartlab".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let report = Report {
        command,
        store: &info.store,
        shoppers: options.shoppers,
        actions_per_shopper: options.actions,
        think_time: options.think_time.to_string(),
        mix: options.mix,
        crash_rate: info.crash_rate,
        seed: options.seed,
        instance_counts: &info.instance_counts,
        targets: &info.targets,
        rows,
    };
    let json_path = options.out.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let csv_path = options.out.join("results.csv");
    std::fs::write(&csv_path, to_csv(rows))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    Ok((json_path, csv_path))
}

pub(super) fn to_csv(rows: &[Row]) -> String {
    let mut csv = String::from(
        "scenario,design,shoppers,carts_intact,carts_intact_pct,items_lost,requests,errors,\
         unanswered,instances_started,recycles,recycles_per_100_requests,p50_ms,p99_ms,crashes,\
         crashes_refused\n",
    );
    for row in rows {
        // Scenario names are ours, labels the user's: quoted, quotes doubled.
        csv.push_str(&format!(
            "\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
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
            row.unanswered,
            row.instances_started,
            row.recycles,
            row.recycles_per_100_requests,
            row.p50_ms,
            row.p99_ms,
            row.crashes,
            row.crashes_refused
        ));
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
