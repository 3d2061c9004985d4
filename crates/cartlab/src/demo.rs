//! `cartlab demo`: the seed lesson's journey against both carts side by side
//! — add "MacBook Pro" $2500 and "iPhone 15" $1200, read the cart, crash the
//! instance, wait, read again — with the serving instance of every step and a
//! verdict per design. Works against any host serving spin.toml's routes
//! (`cartlab up`, `spin up`, a deployed app); without a URL it starts a lab
//! host in this process for the run.

use crate::client::{Answer, CartLine, Design, Shopper};
use crate::up::{LocalHost, UpOptions};
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::time::Duration;

pub const SEED_ITEMS: [(&str, f64); 2] = [("MacBook Pro", 2500.0), ("iPhone 15", 1200.0)];

pub struct DemoOptions {
    /// A running app; `None` starts a lab host here.
    pub url: Option<String>,
    /// For the lab host started here: the manifest, runtime config, state dir.
    pub up: UpOptions,
    /// How long to wait after the crash before reading the cart again.
    pub wait: Duration,
}

/// How the journey ended for each design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdicts {
    pub stateful_survived: bool,
    pub stateless_survived: bool,
}

/// Runs the journey and prints it; an error means the journey could not be
/// run at all (host unreachable, store down, crash disabled).
pub async fn run(mut options: DemoOptions) -> anyhow::Result<Verdicts> {
    let (url, host, setting) = match options.url.take() {
        Some(url) => (url, None, "a running app".to_string()),
        None => {
            let store = choose_store(&mut options.up).await;
            let host = LocalHost::start(&options.up)
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
pub async fn choose_store(up: &mut UpOptions) -> String {
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
        Shopper::new(url, Design::Stateful)?,
        Shopper::new(url, Design::Stateless)?,
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
        for shopper in &shoppers {
            let answer = checked(shopper, "add", shopper.add(item, price).await, url)?;
            cells.push(cart_cell(&answer));
        }
        row(&format!("add {item} {}", dollars(price)), &cells);
    }
    let mut before = Vec::new();
    for shopper in &shoppers {
        let answer = checked(shopper, "read the cart", shopper.cart().await, url)?;
        before.push(answer);
    }
    row(
        "read the cart",
        &before.iter().map(cart_cell).collect::<Vec<_>>(),
    );
    let mut cells = Vec::new();
    for shopper in &shoppers {
        let answer = shopper
            .crash()
            .await
            .with_context(|| unreachable_message(url))?;
        cells.push(match answer.status {
            200 => format!("{} going down", short(&answer.server_id)),
            // The instance died before its answer was out: Spin says 500.
            500 => "instance died mid-answer (500)".to_string(),
            403 | 404 => bail!(
                "{}: POST {}/crash answered {}: crashing is disabled on this host \
                 (Spin variable crash_enabled), and the demo needs it",
                shopper.design().component(),
                shopper.design().prefix(),
                answer.describe_error()
            ),
            _ => bail!(
                "{}: crash answered {}",
                shopper.design().component(),
                answer.describe_error()
            ),
        });
    }
    row("crash the instance", &cells);
    tokio::time::sleep(wait).await;
    row(&format!("wait {wait:?}"), &[String::new(), String::new()]);
    let mut after = Vec::new();
    for shopper in &shoppers {
        after.push(checked(
            shopper,
            "read the cart",
            shopper.cart().await,
            url,
        )?);
    }
    row(
        "read the cart",
        &after.iter().map(cart_cell).collect::<Vec<_>>(),
    );
    println!();
    let mut survived = [false; 2];
    for (index, shopper) in shoppers.iter().enumerate() {
        survived[index] = holds_seed_items(after[index].cart.as_deref().unwrap_or_default());
        let new_instance = after[index].server_id != before[index].server_id;
        let why = match (survived[index], new_instance) {
            (true, true) => format!(
                "a new instance, {}, read it from the session store",
                short(&after[index].server_id)
            ),
            (true, false) => "the same instance served it: nothing was recycled".to_string(),
            (false, true) => format!(
                "it lived in {}'s memory; {} never saw it",
                short(&before[index].server_id),
                short(&after[index].server_id)
            ),
            (false, false) => "the instance forgot it".to_string(),
        };
        println!(
            "{:<16}{}  ({why})",
            format!("{}:", shopper.design().component()),
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
    shopper: &Shopper,
    step: &str,
    answer: reqwest::Result<Answer>,
    url: &str,
) -> anyhow::Result<Answer> {
    let answer = answer.with_context(|| unreachable_message(url))?;
    if answer.is_success() {
        return Ok(answer);
    }
    let component = shopper.design().component();
    if answer
        .error
        .as_ref()
        .is_some_and(|(code, _)| code == "store_unavailable")
    {
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

fn holds_seed_items(cart: &[CartLine]) -> bool {
    SEED_ITEMS.iter().all(|(item, price)| {
        cart.iter()
            .any(|line| line.item == *item && line.price == *price && line.quantity >= 1)
    })
}

fn short(server_id: &Option<String>) -> String {
    server_id
        .as_deref()
        .map_or_else(|| "?".to_string(), |id| id.chars().take(8).collect())
}

fn cart_cell(answer: &Answer) -> String {
    let lines = answer.cart.as_deref().unwrap_or_default();
    let items: u32 = lines.iter().map(|line| line.quantity).sum();
    let served = answer
        .requests_served
        .map_or_else(String::new, |n| format!(" #{n}"));
    let contents = match items {
        0 => "empty".to_string(),
        1 => format!("1 item {}", dollars(answer.total.unwrap_or(0.0))),
        n => format!("{n} items {}", dollars(answer.total.unwrap_or(0.0))),
    };
    format!("{}{served} · {contents}", short(&answer.server_id))
}

/// `$3,700` or `$12.99`.
pub fn dollars(amount: f64) -> String {
    let cents = (amount * 100.0).round() as i64;
    let (whole, fraction) = (cents / 100, cents % 100);
    let digits = whole.abs().to_string();
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if cents < 0 { "-" } else { "" };
    if fraction == 0 {
        format!("{sign}${grouped}")
    } else {
        format!("{sign}${grouped}.{:02}", fraction.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_read_like_a_price_tag() {
        assert_eq!(dollars(3700.0), "$3,700");
        assert_eq!(dollars(12.99), "$12.99");
        assert_eq!(dollars(1_000_000.5), "$1,000,000.50");
        assert_eq!(dollars(0.0), "$0");
    }

    #[test]
    fn the_cart_survived_only_if_both_seed_items_are_there() {
        let line = |item: &str, price: f64| CartLine {
            item: item.into(),
            price,
            quantity: 1,
        };
        assert!(holds_seed_items(&[
            line("MacBook Pro", 2500.0),
            line("iPhone 15", 1200.0)
        ]));
        assert!(!holds_seed_items(&[line("iPhone 15", 1200.0)]));
        assert!(!holds_seed_items(&[]));
    }
}
