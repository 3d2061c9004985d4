//! `cartlab demo`: the seed lesson's journey against both carts side by side
//! — add "MacBook Pro" $2500 and "iPhone 15" $1200, read the cart, crash the
//! instance, wait, read again — with the serving instance of every step and a
//! verdict per design. Works against any host serving spin.toml's routes
//! (`cartlab up`, `spin up`, a deployed app); without a URL it starts a lab
//! host in this process for the run.

use super::AppArgs;
use super::up::UpArgs;
use crate::app::duration::parse_duration;
use crate::client::{Answer, Design, Shopper};
use crate::commands::up::load::LocalHost;
use anyhow::{Context as _, bail};
use cart_core::Cents;
use cart_core::contract::LineView;
use std::path::PathBuf;
use std::time::Duration;

pub const SEED_ITEMS: [(&str, Cents); 2] = [
    ("MacBook Pro", Cents(250_000)),
    ("iPhone 15", Cents(120_000)),
];

/// `--wait` when not given.
pub const DEFAULT_WAIT: &str = "1s";

/// The seed journey against both carts side by side: add, crash, read.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// A running app (cartlab up, spin up, or deployed); without it a lab
    /// host is started for the run (Redis when 127.0.0.1:6379 answers).
    #[arg(long)]
    pub url: Option<String>,
    /// How long to wait after the crash before reading the carts again.
    #[arg(long, value_parser = parse_duration, default_value = DEFAULT_WAIT)]
    pub wait: Duration,
    /// For the lab host started here: the manifest, runtime config, state dir.
    #[command(flatten)]
    pub app: AppArgs,
}

impl DemoArgs {
    /// Exits non-zero when the stateless cart did not survive (or the
    /// journey could not run).
    pub async fn execute(self) -> anyhow::Result<()> {
        let verdicts = run(self).await?;
        if !verdicts.stateless_survived {
            bail!("the stateless cart did not survive the crash: that is a bug");
        }
        Ok(())
    }
}

/// How the journey ended for each design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdicts {
    pub stateful_survived: bool,
    pub stateless_survived: bool,
}

/// Runs the journey and prints it; an error means the journey could not be
/// run at all (host unreachable, store down, crash disabled).
pub async fn run(options: DemoArgs) -> anyhow::Result<Verdicts> {
    let (url, host, setting) = match options.url {
        Some(url) => (url, None, "a running app".to_string()),
        None => {
            let mut up = UpArgs::in_process(options.app);
            let store = choose_store(&mut up.app).await;
            let host = LocalHost::start(&up, false)
                .await
                .context("cannot start a lab host for the demo")?;
            let setting = format!("a lab host started for this run with Spin's defaults; {store}");
            (host.url.clone(), Some(host), setting)
        }
    };
    println!("cartlab demo: the seed journey, side by side, against {url}");
    println!("({setting})\n");
    let result = journey(&url, options.wait).await;
    if let Some(host) = host {
        host.stop().await?;
    }
    result
}

/// Picks the stores for a lab host started here and says which: the given
/// runtime config; else Redis when 127.0.0.1:6379 answers (with the
/// manifest's runtime-config.toml); else the embedded SQLite store.
pub async fn choose_store(up: &mut AppArgs) -> String {
    if let Some(file) = &up.runtime_config_file {
        return format!("stores from {}", file.display());
    }
    let manifest_dir = if up.from.is_dir() {
        up.from.clone()
    } else {
        up.from
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    let config = manifest_dir.join("runtime-config.toml");
    if config.is_file() && redis_answers("redis://127.0.0.1:6379").await {
        up.runtime_config_file = Some(config);
        "sessions in Redis at 127.0.0.1:6379".to_string()
    } else {
        "no Redis on 127.0.0.1:6379, so sessions are in the embedded SQLite store".to_string()
    }
}

async fn redis_answers(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), ping).await,
        Ok(Ok(_))
    )
}

const STEP_WIDTH: usize = 24;
const CELL_WIDTH: usize = 34;

fn row(step: &str, cells: &[String]) {
    println!(
        "{step:<STEP_WIDTH$}{:<CELL_WIDTH$}{}",
        cells[0],
        cells.get(1).map_or("", String::as_str)
    );
}

async fn journey(url: &str, wait: Duration) -> anyhow::Result<Verdicts> {
    let shoppers = [
        (Design::Stateful, Shopper::new(url)?),
        (Design::Stateless, Shopper::new(url)?),
    ];
    row(
        "step",
        &[
            "stateful-cart (memory)".into(),
            "stateless-cart (session store)".into(),
        ],
    );
    for (item, price) in SEED_ITEMS {
        let mut cells = Vec::new();
        for (design, shopper) in &shoppers {
            let answer = checked(*design, "add", shopper.add(*design, item, price).await, url)?;
            cells.push(cart_cell(&answer));
        }
        row(&format!("add {item} {}", dollars(price)), &cells);
    }
    let mut before = Vec::new();
    for (design, shopper) in &shoppers {
        let answer = checked(*design, "read the cart", shopper.cart(*design).await, url)?;
        before.push(answer);
    }
    row(
        "read the cart",
        &before.iter().map(cart_cell).collect::<Vec<_>>(),
    );
    let mut cells = Vec::new();
    for ((design, shopper), read) in shoppers.iter().zip(&before) {
        let answer = shopper
            .crash(*design)
            .await
            .with_context(|| unreachable_message(url))?;
        cells.push(match answer.status {
            // The instance traps instead of answering: the runtime says 500. It is, as far
            // as anyone outside can tell, the one that served the read just before.
            500 => format!("{} crashed (500)", short(&read.instance)),
            403 | 404 => bail!(
                "{}: POST {}/crash answered {}: crashing is disabled on this host \
                 (Spin variable crash_enabled), and the demo needs it",
                design.component(),
                design.prefix(),
                answer.describe_error()
            ),
            _ => bail!(
                "{}: crash answered {}",
                design.component(),
                answer.describe_error()
            ),
        });
    }
    row("crash the instance", &cells);
    tokio::time::sleep(wait).await;
    row(&format!("wait {wait:?}"), &[String::new(), String::new()]);
    let mut after = Vec::new();
    for (design, shopper) in &shoppers {
        after.push(checked(
            *design,
            "read the cart",
            shopper.cart(*design).await,
            url,
        )?);
    }
    row(
        "read the cart",
        &after.iter().map(cart_cell).collect::<Vec<_>>(),
    );
    println!();
    let mut survived = [false; 2];
    for (index, (design, _)) in shoppers.iter().enumerate() {
        survived[index] = after[index]
            .cart
            .as_ref()
            .is_some_and(|cart| holds_seed_items(&cart.cart));
        let new_instance = after[index].instance != before[index].instance;
        let why = match (survived[index], new_instance) {
            (true, true) => format!(
                "a new instance, {}, read it from the session store",
                short(&after[index].instance)
            ),
            (true, false) => "the same instance served it: nothing was recycled".to_string(),
            (false, true) => format!(
                "it lived in {}'s memory; {} never saw it",
                short(&before[index].instance),
                short(&after[index].instance)
            ),
            (false, false) => "the instance forgot it".to_string(),
        };
        println!(
            "{:<16}{}  ({why})",
            format!("{}:", design.component()),
            if survived[index] {
                "Cart survived!"
            } else {
                "CART LOST!"
            }
        );
    }
    Ok(Verdicts {
        stateful_survived: survived[0],
        stateless_survived: survived[1],
    })
}

/// A failed request ends the demo with a message that says what to fix.
fn checked(
    design: Design,
    step: &str,
    answer: reqwest::Result<Answer>,
    url: &str,
) -> anyhow::Result<Answer> {
    let answer = answer.with_context(|| unreachable_message(url))?;
    if answer.is_success() {
        return Ok(answer);
    }
    let component = design.component();
    if answer.error_code() == Some("store_unavailable") {
        bail!(
            "{component} cannot reach its session store ({}). Is Redis running at the address \
             in the runtime config (or the Spin variable redis_url)? The stateless cart cannot \
             work without its store.",
            answer.describe_error()
        );
    }
    bail!("{component}: {step} answered {}", answer.describe_error())
}

fn unreachable_message(url: &str) -> String {
    format!("cannot reach {url}: is the app running there (cartlab up / spin up)?")
}

fn holds_seed_items(cart: &[LineView]) -> bool {
    SEED_ITEMS.iter().all(|(item, price)| {
        cart.iter()
            .any(|line| line.item == *item && line.price.0 == *price && line.quantity >= 1)
    })
}

fn short(server_id: &str) -> String {
    match server_id {
        "" => "?".to_string(),
        id => id.chars().take(8).collect(),
    }
}

fn cart_cell(answer: &Answer) -> String {
    let (items, total) = answer
        .cart
        .as_ref()
        .map_or((0, Cents(0)), |cart| (cart.item_count, cart.total.0));
    let served = match answer.requests {
        0 => String::new(),
        n => format!(" #{n}"),
    };
    let contents = match items {
        0 => "empty".to_string(),
        1 => format!("1 item {}", dollars(total)),
        n => format!("{n} items {}", dollars(total)),
    };
    format!("{}{served} · {contents}", short(&answer.instance))
}

/// `$3,700` or `$12.99`.
pub fn dollars(amount: Cents) -> String {
    let (whole, fraction) = (amount.0 / 100, amount.0 % 100);
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    if fraction == 0 {
        format!("${grouped}")
    } else {
        format!("${grouped}.{fraction:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_read_like_a_price_tag() {
        assert_eq!(dollars(Cents(370_000)), "$3,700");
        assert_eq!(dollars(Cents(1_299)), "$12.99");
        assert_eq!(dollars(Cents(100_000_050)), "$1,000,000.50");
        assert_eq!(dollars(Cents(0)), "$0");
    }

    #[test]
    fn the_cart_survived_only_if_both_seed_items_are_there() {
        let line = |item: &str, cents: u64| LineView {
            item: item.into(),
            price: Cents(cents).into(),
            quantity: 1,
            line_total: Cents(cents).into(),
        };
        assert!(holds_seed_items(&[
            line("MacBook Pro", 250_000),
            line("iPhone 15", 120_000)
        ]));
        assert!(!holds_seed_items(&[line("iPhone 15", 120_000)]));
        assert!(!holds_seed_items(&[]));
    }
}
