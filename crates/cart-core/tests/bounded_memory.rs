//! The stateful component's `MemoryStore` stays bounded: past `max_sessions` the least
//! recently used sessions are evicted, and expired ones are swept as requests write.

use cart_core::testing::{T0, ready, set_cookie_value};
use cart_core::{Instance, MemoryStore, Request, SessionId, Settings, handle};

/// A cookie-less `POST /stateful/cart/add` at `now`: a new session; returns its id.
fn new_session(settings: &Settings, store: &MemoryStore, now: u64) -> SessionId {
    let headers = [("content-type".to_owned(), "application/json".to_owned())];
    let handled = ready(handle(
        settings,
        store,
        &Instance {
            id: "bounded1".into(),
            requests_served: 1,
        },
        now,
        Request {
            method: "POST",
            path: "/stateful/cart/add",
            headers: &headers,
            body: br#"{"item":"Pen","price":1}"#,
        },
    ));
    assert_eq!(handled.response.status, 200);
    let id = set_cookie_value(&handled.response, &settings.cookie_name).expect("a cookie");
    SessionId::parse(id).expect("a session id")
}

#[test]
fn a_hundred_thousand_cookieless_adds_keep_the_newest_sessions_within_the_cap() {
    let settings = Settings::stateful();
    let cap = settings.max_sessions;
    assert_eq!(cap, 10_000, "the default cap");
    let store = MemoryStore::new();
    store.set_max_sessions(cap);
    let mut ids = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        ids.push(new_session(&settings, &store, T0));
        assert!(store.len() <= cap, "{} sessions held", store.len());
    }
    let held = store.records();
    assert_eq!(held.len(), cap);
    let (evicted, kept) = ids.split_at(ids.len() - cap);
    assert!(
        kept.iter().all(|id| held.contains_key(id)),
        "the newest survive"
    );
    assert!(
        !evicted.iter().any(|id| held.contains_key(id)),
        "the oldest are gone"
    );
}

#[test]
fn expired_sessions_are_swept_as_new_ones_are_written() {
    let mut settings = Settings::stateful();
    settings.session_idle_secs = 100;
    let store = MemoryStore::new();
    let old: Vec<SessionId> = (0..1000)
        .map(|_| new_session(&settings, &store, T0))
        .collect();
    assert_eq!(store.len(), 1000, "all under the cap: none evicted");
    // Idle past the timeout, they are never read again; new sessions' writes sweep them.
    let later = T0 + 101;
    for _ in 0..1000 {
        new_session(&settings, &store, later);
    }
    let held = store.records();
    assert!(!old.iter().any(|id| held.contains_key(id)), "expired swept");
    assert_eq!(held.len(), 1000);
}
