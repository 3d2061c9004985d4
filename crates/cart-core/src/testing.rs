//! Test doubles and fixtures (cargo feature `testing`): cart-core's own tests and the fuzz
//! targets share them. Not for components.
//!
//! [`RecordingStore`] is the one session store tests use when they must see or steer what
//! reaches the store: it wraps the real [`MemoryStore`], counts every call, records each
//! write's TTL, and on demand makes concurrent requests interleave, refuses writes as if a
//! rival had won, ignores the version a write is conditional on (the seed's blind save), or
//! fails every call as an unreachable store would.

use crate::api::Response;
use crate::cart::MAX_LINES;
use crate::money::Cents;
use crate::session::{Lifetime, SessionId, SessionRecord};
use crate::store::{MemoryStore, SessionStore, StoreError};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

/// A unix time for fixtures (November 2023).
pub const T0: u64 = 1_700_000_000;
/// The seed session's id in [`RecordingStore::seeded`]: MacBook Pro 2500 + iPhone 15 1200.
pub const SEED: &str = "Y2FydGxhYiBob3N0aWxlLWlucHV0IHNlZWQgc2VzcyE";
/// The other seeded session: a cart with the maximum [`MAX_LINES`] lines.
pub const FULL: &str = "Y2FydGxhYiBob3N0aWxlLWlucHV0IGZ1bGwgY2FydCE";
/// Well-formed, but never stored: a forged id.
pub const FORGED: &str = "Y2FydGxhYiBob3N0aWxlOiBhIGZvcmdlZCBpZC4uLi4";
/// What an unreachable store answers, as a raw client error would say it.
pub const DOWN: &str = "connection refused (10.0.0.7:6379)";

/// How many calls of each kind reached a [`RecordingStore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub loads: u32,
    /// Conditional writes attempted (refused ones included).
    pub saves: u32,
    /// Conditional writes that wrote.
    pub written: u32,
    /// Conditional writes that lost (to a real rival or a refusal).
    pub conflicts: u32,
    /// `delete_if` and `delete` calls.
    pub deletes: u32,
}

/// A [`MemoryStore`] that records what reaches it and misbehaves on demand (see the module).
#[derive(Default)]
pub struct RecordingStore {
    inner: MemoryStore,
    /// Every call yields to the executor first, so concurrent requests interleave between
    /// their read and their conditional write; `pause(ms)` yields `ms` times.
    interleave: bool,
    /// Writes ignore the version read (an unconditional save).
    blind: bool,
    calls: Cell<Calls>,
    refuse_next: Cell<u32>,
    refuse_all: Cell<bool>,
    down: Cell<bool>,
    ttls: RefCell<Vec<u64>>,
}

impl RecordingStore {
    pub fn new() -> RecordingStore {
        RecordingStore::default()
    }

    /// Concurrent requests interleave between every store call.
    pub fn interleaved() -> RecordingStore {
        RecordingStore {
            interleave: true,
            ..RecordingStore::default()
        }
    }

    /// Interleaved, and every write is unconditional: what a store without compare-and-set
    /// does to concurrent requests.
    pub fn blind() -> RecordingStore {
        RecordingStore {
            blind: true,
            ..RecordingStore::interleaved()
        }
    }

    /// [`SEED`] and [`FULL`], both touched at `touched`, with the calls that stored them
    /// forgotten.
    pub fn seeded(touched: u64) -> RecordingStore {
        let store = RecordingStore::new();
        let mut seed = SessionRecord::new(touched);
        let mut full = SessionRecord::new(touched);
        let lines = [("MacBook Pro", 250_000), ("iPhone 15", 120_000)];
        for (item, cents) in lines {
            let added = seed.cart.add(item.into(), Cents(cents), 1);
            assert!(added.is_ok(), "the seed cart takes two lines");
        }
        for n in 0..MAX_LINES {
            let added = full.cart.add(format!("item {n}"), Cents(100), 1);
            assert!(added.is_ok(), "a cart takes MAX_LINES lines");
        }
        for (id, record) in [(SEED, seed), (FULL, full)] {
            let saved = ready(store.save_if(&fixture_id(id), &record, None, 1800));
            assert_eq!(saved, Ok(true), "seeding an empty store");
        }
        store.calls.set(Calls::default());
        store
    }

    /// The calls so far.
    pub fn calls(&self) -> Calls {
        self.calls.get()
    }

    /// The TTL (seconds) of every write that wrote, in order.
    pub fn ttls(&self) -> Vec<u64> {
        self.ttls.borrow().clone()
    }

    /// The next `n` conditional writes lose, as if a rival request had written first.
    pub fn refuse_next_writes(&self, n: u32) {
        self.refuse_next.set(n);
    }

    /// Every conditional write loses while `on`.
    pub fn refuse_all_writes(&self, on: bool) {
        self.refuse_all.set(on);
    }

    /// Every call fails with [`DOWN`] while `on`.
    pub fn set_down(&self, on: bool) {
        self.down.set(on);
    }

    /// The store this one wraps.
    pub fn inner(&self) -> &MemoryStore {
        &self.inner
    }

    /// The record held for `id`, read without recording a call.
    pub fn record(&self, id: &SessionId) -> Option<SessionRecord> {
        self.inner.records().remove(id)
    }

    /// Every record held, id text to stored JSON.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.inner
            .records()
            .into_iter()
            .map(|(id, record)| (id.as_str().to_owned(), record.to_json()))
            .collect()
    }

    fn count(&self, bump: impl FnOnce(&mut Calls)) {
        let mut calls = self.calls.get();
        bump(&mut calls);
        self.calls.set(calls);
    }

    /// Yields (if interleaving), then fails if the store is down.
    async fn enter(&self) -> Result<(), StoreError> {
        if self.interleave {
            yield_now().await;
        }
        if self.down.get() {
            return Err(StoreError(DOWN.into()));
        }
        Ok(())
    }
}

impl SessionStore for RecordingStore {
    type Version = SessionRecord;

    async fn load(
        &self,
        id: &SessionId,
    ) -> Result<Option<(SessionRecord, SessionRecord)>, StoreError> {
        self.count(|c| c.loads += 1);
        self.enter().await?;
        self.inner.load(id).await
    }

    async fn save_if(
        &self,
        id: &SessionId,
        record: &SessionRecord,
        expected: Option<SessionRecord>,
        ttl_secs: u64,
    ) -> Result<bool, StoreError> {
        self.count(|c| c.saves += 1);
        self.enter().await?;
        let refused = self.refuse_all.get() || self.refuse_next.get() > 0;
        self.refuse_next
            .set(self.refuse_next.get().saturating_sub(1));
        let expected = if self.blind {
            self.record(id)
        } else {
            expected
        };
        let saved = !refused && self.inner.save_if(id, record, expected, ttl_secs).await?;
        if saved {
            self.count(|c| c.written += 1);
            self.ttls.borrow_mut().push(ttl_secs);
        } else {
            self.count(|c| c.conflicts += 1);
        }
        Ok(saved)
    }

    async fn delete_if(&self, id: &SessionId, expected: SessionRecord) -> Result<bool, StoreError> {
        self.count(|c| c.deletes += 1);
        self.enter().await?;
        self.inner.delete_if(id, expected).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.count(|c| c.deletes += 1);
        self.enter().await?;
        self.inner.delete(id).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.enter().await?;
        self.inner.check().await
    }

    async fn sweep(&self, now_unix_secs: u64, lifetime: &Lifetime) -> Result<usize, StoreError> {
        self.enter().await?;
        self.inner.sweep(now_unix_secs, lifetime).await
    }

    async fn pause(&self, millis: u64) {
        if self.interleave {
            for _ in 0..millis {
                yield_now().await;
            }
        }
    }
}

/// A fixture id: panics (a test bug) if `text` is not a well-formed session id.
pub fn fixture_id(text: &str) -> SessionId {
    SessionId::parse(text).unwrap_or_else(|| panic!("{text:?} is not a well-formed session id"))
}

/// The value of the cookie `name` a response set, if it set one.
pub fn set_cookie_value<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    let line = response.header("set-cookie")?;
    line.strip_prefix(name)?
        .strip_prefix('=')?
        .split(';')
        .next()
}

/// The ids among `stored` that `response` shows (the id or its fingerprint) although
/// `presented` says the request did not contain them. Header values and the JSON body are
/// searched, but not `error.message` nor `cart`: they quote the client's own text, escaped
/// (`\0` + `3cc9e77` reads as a fingerprint) or unescaped.
pub fn exposed_ids<'s>(
    response: &Response,
    stored: impl IntoIterator<Item = &'s String>,
    presented: impl Fn(&str) -> bool,
) -> Vec<&'s String> {
    let mut structured: serde_json::Value =
        serde_json::from_slice(&response.body).unwrap_or_default();
    if let Some(object) = structured.as_object_mut() {
        object.remove("cart");
    }
    if let Some(error) = structured
        .get_mut("error")
        .and_then(serde_json::Value::as_object_mut)
    {
        error.remove("message");
    }
    let values: Vec<&str> = response.headers.iter().map(|(_, v)| v.as_str()).collect();
    let shown = format!("{}\n{structured}", values.join("\n"));
    stored
        .into_iter()
        .filter(|id| !presented(id.as_str()))
        .filter(|id| {
            let fingerprint = SessionId::parse(id).map(|id| id.fingerprint());
            shown.contains(id.as_str()) || fingerprint.is_some_and(|f| shown.contains(&f))
        })
        .collect()
}

/// Polls a future that must complete at once (everything in memory, not interleaved).
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an in-memory future was not ready at once"),
    }
}

/// Yields to the executor once: lets other requests run between two store calls.
pub async fn yield_now() {
    YieldNow(false).await
}

struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}
