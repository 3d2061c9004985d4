//! `--max-new-sessions-per-minute`: a cap on the sessions one client address may start per
//! minute, for anyone exposing the host beyond their own machine. Every cookie-less add
//! stores a session; without a cap one client can fill a store. Off by default, so load
//! tests and the lab's own shoppers (all on 127.0.0.1) are unaffected.
//!
//! A request that carries no cartlab session cookie may start a session; once its address
//! has started its share this minute, such requests are answered 429 with `Retry-After`,
//! while requests of sessions it already has go on as before. A session counts as started
//! when a component answers with a live session cookie the request did not carry.

use crate::runtime::session_cookies;
use http::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the cap counts over.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it, windows that have ended are forgotten first, then
/// all (a flood of addresses then starts afresh, which errs on the side of serving).
const MAX_ADDRESSES: usize = 100_000;

pub struct NewSessions {
    per_minute: u32,
    started: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    began: Instant,
    count: u32,
}

/// Whether a request may go on, and if it may start a session, whose count it joins.
pub enum Admission {
    /// It carries a session cookie, or the cap is off: nothing to count.
    Free,
    /// It may start a session for this address.
    Counted(IpAddr),
    /// Its address has started its share this minute: answer 429 after this long.
    Refused(Duration),
}

impl NewSessions {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            started: Mutex::new(HashMap::new()),
        }
    }

    fn started(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn admit(&self, client: IpAddr, request: &HeaderMap) -> Admission {
        if has_session_cookie(request) {
            return Admission::Free;
        }
        let now = Instant::now();
        match self.started().get(&client) {
            Some(window)
                if now.duration_since(window.began) < WINDOW && window.count >= self.per_minute =>
            {
                Admission::Refused(WINDOW.saturating_sub(now.duration_since(window.began)))
            }
            _ => Admission::Counted(client),
        }
    }

    /// Counts a session the answer started (a live session cookie).
    pub fn answered(&self, client: IpAddr, response: &HeaderMap) {
        if !starts_a_session(response) {
            return;
        }
        let now = Instant::now();
        let mut started = self.started();
        if started.len() >= MAX_ADDRESSES && !started.contains_key(&client) {
            started.retain(|_, window| now.duration_since(window.began) < WINDOW);
            if started.len() >= MAX_ADDRESSES {
                started.clear();
            }
        }
        let window = started.entry(client).or_insert(Window {
            began: now,
            count: 0,
        });
        if now.duration_since(window.began) >= WINDOW {
            *window = Window {
                began: now,
                count: 0,
            };
        }
        window.count = window.count.saturating_add(1);
    }
}

fn has_session_cookie(headers: &HeaderMap) -> bool {
    session_cookies::sent(headers).any(|cookie| session_cookies::is_ours(&cookie))
}

fn starts_a_session(headers: &HeaderMap) -> bool {
    session_cookies::set(headers).any(|cookie| cookie.ours && !cookie.ends)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::session_cookies::headers;
    use http::header::{COOKIE, SET_COOKIE};

    #[test]
    fn an_address_starts_its_share_then_only_its_sessions_go_on() {
        let cap = NewSessions::new(2);
        let (one, two): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let started = headers(SET_COOKIE, "cartlab_stateless=abc; Max-Age=1800; HttpOnly");
        for _ in 0..2 {
            assert!(matches!(
                cap.admit(one, &HeaderMap::new()),
                Admission::Counted(_)
            ));
            cap.answered(one, &started);
        }
        assert!(
            matches!(cap.admit(one, &HeaderMap::new()), Admission::Refused(after) if after <= WINDOW)
        );
        // Its sessions go on; other addresses and other cookies are not its share.
        let own = headers(COOKIE, "theme=dark; cartlab_stateless=abc");
        assert!(matches!(cap.admit(one, &own), Admission::Free));
        assert!(matches!(
            cap.admit(one, &headers(COOKIE, "theme=dark")),
            Admission::Refused(_)
        ));
        assert!(matches!(
            cap.admit(two, &HeaderMap::new()),
            Admission::Counted(_)
        ));
        // An answer that starts no session (an error, a logout) is not counted.
        cap.answered(two, &HeaderMap::new());
        cap.answered(two, &headers(SET_COOKIE, "cartlab_stateless=; Max-Age=0"));
        assert!(matches!(
            cap.admit(two, &HeaderMap::new()),
            Admission::Counted(_)
        ));
    }
}
