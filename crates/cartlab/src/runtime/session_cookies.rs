//! The cookies the host reads around a component: a fleet's sticky routing and the
//! new-session cap both follow sessions by the cookies the components set, so both read them
//! here, with the `cookie` crate.

use cart_core::contract::COOKIE_PREFIX;
use cookie::Cookie;
use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};

/// Every cookie in a request's `Cookie` headers (several headers, `;`-separated pairs).
pub fn sent(headers: &HeaderMap) -> impl Iterator<Item = Cookie<'_>> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
}

/// A cookie an answer sets.
pub struct Set {
    /// `name=value`: what a later request presents.
    pub pair: String,
    /// The cookie starts or goes on with a session of ours (a cartlab cookie name).
    pub ours: bool,
    /// It ends the session: an empty value, or `Max-Age=0`.
    pub ends: bool,
}

/// Every cookie an answer's `Set-Cookie` headers set.
pub fn set(headers: &HeaderMap) -> impl Iterator<Item = Set> + '_ {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| Cookie::parse(value.to_str().ok()?).ok())
        .map(|cookie| Set {
            pair: pair(&cookie),
            ours: is_ours(&cookie),
            ends: cookie.value().is_empty() || cookie.max_age().is_some_and(|age| age.is_zero()),
        })
}

/// `name=value`, the key a session is known by.
pub fn pair(cookie: &Cookie<'_>) -> String {
    format!("{}={}", cookie.name(), cookie.value())
}

/// A cartlab session cookie with a value.
pub fn is_ours(cookie: &Cookie<'_>) -> bool {
    cookie.name().starts_with(COOKIE_PREFIX) && !cookie.value().is_empty()
}

/// One header, for tests of what reads them.
#[cfg(test)]
pub fn headers(name: http::HeaderName, value: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        name,
        http::HeaderValue::from_str(value).expect("a valid header value"),
    );
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_cookies_come_from_every_cookie_header() {
        let mut request = headers(COOKIE, "a=1; cartlab_stateless=abc");
        request.append(COOKIE, http::HeaderValue::from_static("b=2"));
        let pairs: Vec<_> = sent(&request).map(|cookie| pair(&cookie)).collect();
        assert_eq!(pairs, ["a=1", "cartlab_stateless=abc", "b=2"]);
        assert_eq!(sent(&request).filter(is_ours).count(), 1);
    }

    #[test]
    fn a_set_cookie_ends_the_session_when_empty_or_expired() {
        for (line, ends) in [
            ("cartlab_stateful=abc; Max-Age=1800; HttpOnly", false),
            ("cartlab_stateful=abc", false),
            ("cartlab_stateful=; Max-Age=0", true),
            ("cartlab_stateful=abc; Max-Age=0", true),
            ("cartlab_stateful=; Max-Age=1800", true),
        ] {
            let answer = headers(SET_COOKIE, line);
            let cookies: Vec<_> = set(&answer).collect();
            assert_eq!(cookies.len(), 1, "{line}");
            assert_eq!(cookies[0].ends, ends, "{line}");
            assert!(cookies[0].ours || cookies[0].ends, "{line}");
        }
        assert!(!set(&headers(SET_COOKIE, "other=1")).any(|cookie| cookie.ours));
    }
}
