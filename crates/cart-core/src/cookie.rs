//! The session cookie: reading it from `Cookie` headers and writing `Set-Cookie`.
//!
//! Parsing is deliberately forgiving (RFC 6265 section 5.4 style): several `Cookie` headers,
//! `;`-separated pairs, stray whitespace, duplicate names, and clients that echo a whole
//! `Set-Cookie` line back (`name=id; Path=/x; Max-Age=1800; HttpOnly; SameSite=Lax`) all work,
//! because only pairs named like our cookie are looked at; attributes are other names or bare
//! flags and are skipped. Every value found is still just a candidate: the caller validates its
//! format before any store lookup.

use crate::session::SessionId;
use crate::settings::Settings;

/// Every value sent for cookie `name`, in order, across all `Cookie` headers.
pub fn cookie_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(header, _)| header.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, value)| value.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| key.trim() == name)
        .map(|(_, value)| {
            let value = value.trim();
            // RFC 6265 allows a value in double quotes.
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
        .collect()
}

/// The session id the client presents: the first well-formed value of our cookie.
/// Malformed values are dropped here, before anything could look them up.
pub fn presented_session_id(headers: &[(String, String)], name: &str) -> Option<SessionId> {
    cookie_values(headers, name)
        .into_iter()
        .find_map(SessionId::parse)
}

/// `Set-Cookie` for a live session; sent on every request that uses the session, so the
/// `Max-Age` slides with activity. `max_age_secs` is the session's remaining lifetime
/// ([`crate::SessionRecord::remaining_secs`]), the same number the store's TTL is set to.
pub fn session_cookie(settings: &Settings, id: &SessionId, max_age_secs: u64) -> String {
    cookie_line(settings, id.as_str(), max_age_secs)
}

/// `Set-Cookie` that makes the browser forget the session cookie.
pub fn expired_session_cookie(settings: &Settings) -> String {
    cookie_line(settings, "", 0)
}

fn cookie_line(settings: &Settings, value: &str, max_age: u64) -> String {
    let mut line = format!(
        "{}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax",
        settings.cookie_name, settings.base_path
    );
    if settings.secure_cookie {
        line.push_str("; Secure");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|v| ("Cookie".to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn finds_values_across_headers_pairs_and_whitespace() {
        let h = headers(&[
            "other=1;cartlab_stateless=first",
            "  cartlab_stateless = second ; x=y",
            "cartlab_stateful=nope; cartlab_stateless=\"third\"",
        ]);
        assert_eq!(
            cookie_values(&h, "cartlab_stateless"),
            ["first", "second", "third"]
        );
        assert!(cookie_values(&h, "connect.sid").is_empty());
    }

    #[test]
    fn echoed_set_cookie_line_yields_just_the_value() {
        let h = headers(&[
            "cartlab_stateless=abc; Path=/stateless; Max-Age=1800; HttpOnly; SameSite=Lax",
        ]);
        assert_eq!(cookie_values(&h, "cartlab_stateless"), ["abc"]);
    }

    #[test]
    fn presented_id_is_the_first_well_formed_value() {
        let good = SessionId::generate().unwrap();
        let h = headers(&[&format!(
            "cartlab_stateless=bogus; cartlab_stateless={}",
            good.as_str()
        )]);
        assert_eq!(presented_session_id(&h, "cartlab_stateless"), Some(good));
        assert_eq!(
            presented_session_id(&headers(&["cartlab_stateless=bogus"]), "cartlab_stateless"),
            None
        );
    }

    #[test]
    fn set_cookie_lines() {
        let mut settings = Settings::stateless();
        let id = SessionId::parse(&"A".repeat(43)).unwrap();
        assert_eq!(
            session_cookie(&settings, &id, 1800),
            format!(
                "cartlab_stateless={}; Path=/stateless; Max-Age=1800; HttpOnly; SameSite=Lax",
                "A".repeat(43)
            )
        );
        settings.secure_cookie = true;
        assert_eq!(
            expired_session_cookie(&settings),
            "cartlab_stateless=; Path=/stateless; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(session_cookie(&settings, &id, 60).contains("; Max-Age=60;"));
    }
}
