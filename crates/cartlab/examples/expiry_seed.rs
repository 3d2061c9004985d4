//! Fills a Redis key-value store with sessions exactly as the stateless cart writes them in
//! `key-value` mode, queued for expiry as it queues them: `expired` sessions whose deadline has
//! passed first (they were created earlier), then `live` ones in use now. For
//! `bench/expiry.py`; records and queue entries come from `cart-core`, the cart's own code.
//!
//!   cargo run --release -p cartlab --example expiry_seed -- REDIS_URL LIVE EXPIRED IDLE_SECS

use cart_core::expiry::{Entry, QUEUE_LAST, slot_key};
use cart_core::{Cents, Lifetime, SessionId, SessionRecord, session_key};
use std::time::{SystemTime, UNIX_EPOCH};

const BATCH: usize = 10_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, live, expired, idle] = args.as_slice() else {
        anyhow::bail!("usage: expiry_seed REDIS_URL LIVE EXPIRED IDLE_SECS");
    };
    let (live, expired, idle): (usize, usize, u64) =
        (live.parse()?, expired.parse()?, idle.parse()?);
    let lifetime = Lifetime {
        idle_secs: idle,
        max_age_secs: cart_core::settings::DEFAULT_SESSION_MAX_AGE_SECS,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut redis = redis::Client::open(url.as_str())?.get_connection()?;
    let mut slot: i64 = redis::cmd("GET")
        .arg(QUEUE_LAST)
        .query::<Option<i64>>(&mut redis)?
        .unwrap_or(0);
    // Expired ones were last used two idle timeouts ago; live ones just now.
    let plan = [(expired, now.saturating_sub(2 * idle)), (live, now)];
    for (count, touched) in plan {
        let mut written = 0;
        while written < count {
            let mut pipe = redis::pipe();
            for _ in 0..BATCH.min(count - written) {
                let id =
                    SessionId::generate().map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                let mut record = SessionRecord::new(touched);
                record.cart.add("MacBook Pro".into(), Cents(250_000), 1)?;
                let entry = Entry {
                    key: session_key(&id),
                    due: record.deadline(&lifetime),
                };
                slot += 1;
                pipe.cmd("SET")
                    .arg(&entry.key)
                    .arg(record.to_json())
                    .ignore();
                pipe.cmd("SET")
                    .arg(slot_key(slot))
                    .arg(serde_json::to_string(&entry)?)
                    .ignore();
                written += 1;
            }
            pipe.query::<()>(&mut redis)?;
        }
    }
    redis::cmd("SET")
        .arg(QUEUE_LAST)
        .arg(slot)
        .query::<()>(&mut redis)?;
    println!("seeded {expired} expired and {live} live sessions; queue slots 1..={slot}");
    Ok(())
}
