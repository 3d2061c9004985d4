//! Requests that a web page on another site makes the user's browser send. Browsers mark them
//! (`Sec-Fetch-Site: cross-site`, an `Origin` that is not this host's); curl, the seed's Node
//! client and `cartlab demo` send neither header, so they are never mistaken for one.

use http::header::{HOST, ORIGIN};
use http::uri::Authority;
use http::{HeaderMap, Method, Uri};
use std::net::SocketAddr;

/// `Sec-Fetch-Site`, which every current browser sends (and a page cannot forge).
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// The methods that change something, which a cross-site page must not send.
pub fn changes_state(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// Why the request came from another site, if it carries a browser's sign of that.
pub fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    if headers
        .get(SEC_FETCH_SITE)
        .is_some_and(|site| site.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return Some("Sec-Fetch-Site: cross-site");
    }
    let origin = headers.get(ORIGIN)?;
    // Sandboxed frames, file: pages and some redirects send `null`: an origin we cannot trust.
    let Some(origin) = origin
        .to_str()
        .ok()
        .filter(|origin| *origin != "null")
        .and_then(|origin| origin.parse::<Uri>().ok())
    else {
        return Some("an opaque Origin");
    };
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.parse::<Authority>().ok());
    let same = match (origin.authority(), host) {
        (Some(origin_authority), Some(host)) => {
            let origin_port = origin_authority.port_u16().or(match origin.scheme_str() {
                Some("https") => Some(443),
                _ => Some(80),
            });
            // This host speaks plain HTTP: a Host without a port means 80.
            let host_port = host.port_u16().or(Some(80));
            origin_authority.host().eq_ignore_ascii_case(host.host()) && origin_port == host_port
        }
        _ => false,
    };
    (!same).then_some("an Origin that is not this host")
}

/// Whether the `Host` a request names is this machine by a loopback name (`127.0.0.1`,
/// `localhost`, `[::1]`, any port) or the address the host listens on. A page that rebinds
/// its own DNS name to 127.0.0.1 still sends its own name, so it is refused.
pub fn names_loopback(headers: &HeaderMap, listen: SocketAddr) -> bool {
    let Some(host) = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host.parse::<Authority>().ok())
    else {
        return false;
    };
    let name = host.host();
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|loopback| name.eq_ignore_ascii_case(loopback))
        || host.as_str() == listen.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn browsers_cross_site_signs_are_recognised_and_their_absence_is_not_one() {
        let host = ("host", "127.0.0.1:3000");
        assert_eq!(cross_site(&headers(&[host])), None, "curl sends neither");
        for same in [
            "http://127.0.0.1:3000",
            "http://127.0.0.1:3000/",
            "HTTP://127.0.0.1:3000",
        ] {
            assert_eq!(
                cross_site(&headers(&[host, ("origin", same)])),
                None,
                "{same}"
            );
        }
        assert_eq!(
            cross_site(&headers(&[
                ("host", "localhost"),
                ("origin", "http://localhost")
            ])),
            None
        );
        assert_eq!(
            cross_site(&headers(&[
                ("host", "[::1]:3000"),
                ("origin", "http://[::1]:3000")
            ])),
            None
        );
        for foreign in [
            "https://evil.example",
            "http://127.0.0.1:8080",
            "http://localhost:3000",
            "https://127.0.0.1",
            "null",
            "not a url at all",
        ] {
            assert!(
                cross_site(&headers(&[host, ("origin", foreign)])).is_some(),
                "{foreign}"
            );
        }
        assert!(cross_site(&headers(&[("origin", "http://127.0.0.1:3000")])).is_some());
        assert!(cross_site(&headers(&[host, ("sec-fetch-site", "cross-site")])).is_some());
        for fine in ["same-origin", "same-site", "none"] {
            assert_eq!(
                cross_site(&headers(&[host, ("sec-fetch-site", fine)])),
                None
            );
        }
        assert!(changes_state(&Method::DELETE) && !changes_state(&Method::GET));
    }

    #[test]
    fn only_loopback_host_names_or_the_listen_address_reach_the_lab() {
        let listen: SocketAddr = "10.1.2.3:3000".parse().unwrap();
        for name in [
            "127.0.0.1:3000",
            "127.0.0.1",
            "localhost:9",
            "LOCALHOST",
            "[::1]:3000",
            "10.1.2.3:3000",
        ] {
            assert!(
                names_loopback(&headers(&[("host", name)]), listen),
                "{name}"
            );
        }
        for name in [
            "rebind.evil.example:3000",
            "localhost.evil.example",
            "10.1.2.3:80",
            "127.0.0.2:3000",
        ] {
            assert!(
                !names_loopback(&headers(&[("host", name)]), listen),
                "{name}"
            );
        }
        assert!(!names_loopback(&HeaderMap::new(), listen));
    }
}
