//! Spin's HTTP route matching (spin `crates/routes`, which uses the `routefinder` crate).
//!
//! Behaviour reproduced:
//! - a route is made absolute and one trailing `/` is dropped (`/foo/` is `/foo`);
//! - `/prefix/...` (or `/prefix/*`) is a trailing wildcard: it matches `/prefix`,
//!   `/prefix/` and `/prefix/anything`, not `/prefixx`; `/...` matches everything;
//! - `:name` segments match one non-empty segment and are reported as
//!   `spin-path-match-<name>`;
//! - matching goes segment by segment preferring, at each segment, a literal over a
//!   `:param` over a wildcard, backtracking when a branch fails; so an exact route beats a
//!   wildcard and the longest wildcard prefix wins;
//! - request paths ignore leading/trailing and repeated slashes for matching (`/a//b/`
//!   matches `/a/b`), and `spin-path-info` keeps a trailing slash (`/prefix/` -> `/`).
//!
//! Differences: routefinder also splits segments at `.`, which makes e.g. `/files/:name`
//! not match `/files/a.txt` in Spin; here `.` is an ordinary character. Spin logs duplicate
//! routes and keeps the last; cartlab refuses to start.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// The base path: cartlab supports only Spin's default `base = "/"`.
pub const BASE_PATH: &str = "/";

/// The lab API's URL prefix; no app route may take it.
pub const LAB_PREFIX: &str = "/_lab";

/// Routes under this prefix are handled by the Spin runtime itself.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// One `[[trigger.http]]` as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    /// As written, e.g. `/stateless/...` or `/exact`.
    pub route: String,
    pub component: String,
}

/// Built once, by the manifest loader: building it is what checks the routes.
#[derive(Debug, Clone, Default)]
pub struct Router {
    root: Node,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    declared: HttpRoute,
    /// Absolutized with the base, trailing slash dropped: Spin's `based_route`.
    based_route: String,
    params: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    statics: BTreeMap<String, Node>,
    param: Option<Box<Node>>,
    /// Entry index of an exact route ending here.
    exact: Option<usize>,
    /// Entry index of a wildcard route whose prefix ends here.
    wildcard: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub component: String,
    /// `spin-matched-route`: the based route, e.g. `/stateless/...` (empty for route `/`,
    /// as in Spin).
    pub matched_route: String,
    /// `spin-component-route`: the raw route without a trailing `/...`, e.g. `/stateless`.
    pub component_route: String,
    /// `spin-raw-component-route`: the route as written, e.g. `/stateless/...`.
    pub raw_component_route: String,
    /// `spin-base-path`: always `/`.
    pub base_path: String,
    /// `spin-path-info`: the part matched by the wildcard (`/cart/add`, `/`, or empty).
    pub path_info: String,
    /// `:name` captures in route order; header `spin-path-match-<name>` each.
    pub params: Vec<(String, String)>,
}

impl RouteMatch {
    /// `(header-name, value)` for each `:name` capture, named like Spin's
    /// (`SPIN_PATH_MATCH_<NAME>` lowercased with `-` for `_`).
    pub fn param_headers(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(name, value)| {
                (
                    format!(
                        "spin-path-match-{}",
                        name.to_ascii_lowercase().replace('_', "-")
                    ),
                    value.clone(),
                )
            })
            .collect()
    }
}

impl Router {
    pub fn new(routes: &[HttpRoute]) -> Result<Self> {
        let mut router = Router {
            root: Node::default(),
            entries: Vec::new(),
        };
        // normalized pattern -> route as written, for duplicate detection
        let mut seen: BTreeMap<(Vec<String>, bool), &str> = BTreeMap::new();
        for r in routes {
            let based_route = based(&r.route);
            let (prefix, wildcard) = match based_route
                .strip_suffix("/...")
                .or_else(|| based_route.strip_suffix("/*"))
            {
                Some(p) => (p, true),
                None => (based_route.as_str(), false),
            };
            let mut segments = Vec::new();
            let mut params = Vec::new();
            for seg in prefix.split('/').filter(|s| !s.is_empty()) {
                if seg.starts_with('*') {
                    bail!(
                        "route {:?} (component `{}`): `*` is only allowed as the last segment (`/...` or `/*`)",
                        r.route,
                        r.component
                    );
                }
                if let Some(name) = seg.strip_prefix(':') {
                    if name.is_empty() {
                        bail!(
                            "route {:?} (component `{}`): params must be named (`:name`)",
                            r.route,
                            r.component
                        );
                    }
                    params.push(name.to_owned());
                    segments.push(Seg::Param);
                } else {
                    segments.push(Seg::Exact(seg.to_owned()));
                }
            }
            let key = (
                segments
                    .iter()
                    .map(|s| match s {
                        Seg::Exact(e) => e.clone(),
                        Seg::Param => ":".to_owned(),
                    })
                    .collect::<Vec<_>>(),
                wildcard,
            );
            if let Some(first) = seen.insert(key, &r.route) {
                bail!(
                    "duplicate route: {:?} (component `{}`) matches the same paths as {:?}",
                    r.route,
                    r.component,
                    first
                );
            }
            if based_route == LAB_PREFIX || based_route.starts_with(&format!("{}/", LAB_PREFIX)) {
                bail!(
                    "route {:?} (component `{}`): {}/ is reserved for the lab host's admin API",
                    r.route,
                    r.component,
                    LAB_PREFIX
                );
            }
            if based_route.starts_with(WELL_KNOWN_PREFIX) {
                tracing::warn!(
                    route = %r.route,
                    "routes under {WELL_KNOWN_PREFIX} are reserved by Spin and will never be reached there"
                );
            }

            let index = router.entries.len();
            let mut node = &mut router.root;
            for seg in segments {
                node = match seg {
                    Seg::Exact(e) => node.statics.entry(e).or_default(),
                    Seg::Param => node.param.get_or_insert_with(Default::default),
                };
            }
            if wildcard {
                node.wildcard = Some(index);
            } else {
                node.exact = Some(index);
            }
            router.entries.push(Entry {
                declared: r.clone(),
                based_route,
                params,
            });
        }
        Ok(router)
    }

    /// Matches a request path (no query string).
    pub fn route(&self, path: &str) -> Option<RouteMatch> {
        // Segments with their byte offsets, so a wildcard can return the rest of the path
        // as written (Spin passes routefinder's wildcard capture through unchanged).
        let mut segs = Vec::new();
        let mut offset = 0;
        for part in path.split('/') {
            if !part.is_empty() {
                segs.push((offset, part));
            }
            offset += part.len() + 1;
        }
        let mut captures = Vec::new();
        let (index, rest_at) = self.root.find(&segs, 0, &mut captures)?;
        let entry = &self.entries[index];

        let path_info = match rest_at {
            None => String::new(),
            Some(i) => {
                let rest = match segs.get(i) {
                    Some(&(start, _)) => path[start..].trim_end_matches('/'),
                    None => "",
                };
                match (rest.is_empty(), path.ends_with('/')) {
                    (true, false) => String::new(),
                    (true, true) => "/".to_owned(),
                    (false, false) => format!("/{rest}"),
                    (false, true) => format!("/{rest}/"),
                }
            }
        };
        let component_route = entry
            .declared
            .route
            .strip_suffix("/...")
            .unwrap_or(&entry.declared.route)
            .to_owned();
        Some(RouteMatch {
            component: entry.declared.component.clone(),
            matched_route: entry.based_route.clone(),
            component_route,
            raw_component_route: entry.declared.route.clone(),
            base_path: BASE_PATH.to_owned(),
            path_info,
            params: entry
                .params
                .iter()
                .cloned()
                .zip(captures.into_iter().map(str::to_owned))
                .collect(),
        })
    }

    /// The routes as declared, in manifest order, for summaries.
    pub fn routes(&self) -> impl Iterator<Item = &HttpRoute> {
        self.entries.iter().map(|e| &e.declared)
    }
}

enum Seg {
    Exact(String),
    Param,
}

impl Node {
    /// Depth-first: literal child, then param child, then this node's wildcard.
    /// Returns the entry index and, for a wildcard, the index of the first unmatched segment.
    fn find<'p>(
        &self,
        segs: &[(usize, &'p str)],
        at: usize,
        captures: &mut Vec<&'p str>,
    ) -> Option<(usize, Option<usize>)> {
        match segs.get(at) {
            None => {
                if let Some(i) = self.exact {
                    return Some((i, None));
                }
            }
            Some(&(_, seg)) => {
                if let Some(found) = self
                    .statics
                    .get(seg)
                    .and_then(|child| child.find(segs, at + 1, captures))
                {
                    return Some(found);
                }
                if let Some(child) = &self.param {
                    captures.push(seg);
                    if let Some(found) = child.find(segs, at + 1, captures) {
                        return Some(found);
                    }
                    captures.pop();
                }
            }
        }
        self.wildcard.map(|i| (i, Some(at)))
    }
}

/// Spin's `sanitize_with_base("/", route)`: absolute, one trailing slash removed.
fn based(route: &str) -> String {
    let abs = if route.starts_with('/') {
        route.to_owned()
    } else {
        format!("/{route}")
    };
    match abs.strip_suffix('/') {
        Some(s) => s.to_owned(),
        None => abs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(route, component)` pairs as the manifest would declare them.
    fn declared(routes: &[(&str, &str)]) -> Vec<HttpRoute> {
        routes
            .iter()
            .map(|(r, c)| HttpRoute {
                route: (*r).into(),
                component: (*c).into(),
            })
            .collect()
    }

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::new(&declared(routes)).unwrap()
    }

    fn comp(r: &Router, path: &str) -> Option<String> {
        r.route(path).map(|m| m.component)
    }

    #[test]
    fn app_routes_and_headers() {
        let r = router(&[("/stateless/...", "sl"), ("/stateful/...", "sf")]);
        let m = r.route("/stateless/cart/add").unwrap();
        assert_eq!(
            m,
            RouteMatch {
                component: "sl".into(),
                matched_route: "/stateless/...".into(),
                component_route: "/stateless".into(),
                raw_component_route: "/stateless/...".into(),
                base_path: "/".into(),
                path_info: "/cart/add".into(),
                params: vec![],
            }
        );
        assert_eq!(r.route("/stateless").unwrap().path_info, "");
        assert_eq!(r.route("/stateless/").unwrap().path_info, "/");
        assert_eq!(r.route("/stateless/cart/").unwrap().path_info, "/cart/");
        assert_eq!(comp(&r, "/stateful/cart").as_deref(), Some("sf"));
        assert_eq!(comp(&r, "/statelessx"), None);
        assert_eq!(comp(&r, "/statelessx/cart"), None);
        assert_eq!(comp(&r, "/"), None);
        assert_eq!(comp(&r, "/other"), None);
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        // Order of declaration must not matter.
        for routes in [
            vec![
                ("/...", "all"),
                ("/one", "one_exact"),
                ("/one/...", "one_wild"),
                ("/one/two/...", "two_wild"),
            ],
            vec![
                ("/one/two/...", "two_wild"),
                ("/one/...", "one_wild"),
                ("/one", "one_exact"),
                ("/...", "all"),
            ],
        ] {
            let r = router(&routes);
            assert_eq!(comp(&r, "/one").as_deref(), Some("one_exact"));
            assert_eq!(comp(&r, "/one/").as_deref(), Some("one_exact"));
            assert_eq!(comp(&r, "/one/x").as_deref(), Some("one_wild"));
            assert_eq!(comp(&r, "/one/two").as_deref(), Some("two_wild"));
            assert_eq!(comp(&r, "/one/two/three").as_deref(), Some("two_wild"));
            assert_eq!(comp(&r, "/one/twox").as_deref(), Some("one_wild"));
            assert_eq!(comp(&r, "/onex").as_deref(), Some("all"));
            assert_eq!(comp(&r, "/").as_deref(), Some("all"));
            assert_eq!(r.route("/one/two/three").unwrap().path_info, "/three");
        }
    }

    #[test]
    fn root_wildcard_and_root_exact() {
        let r = router(&[("/...", "all")]);
        let m = r.route("/a/b").unwrap();
        assert_eq!(m.path_info, "/a/b");
        assert_eq!(m.component_route, "");
        assert_eq!(m.matched_route, "/...");
        assert_eq!(r.route("/").unwrap().path_info, "/");
        assert_eq!(r.route("").unwrap().path_info, "");

        let r = router(&[("/", "root"), ("/...", "all")]);
        let m = r.route("/").unwrap();
        assert_eq!(m.component, "root");
        assert_eq!(m.matched_route, "", "Spin's based route for `/` is empty");
        assert_eq!(comp(&r, "/x").as_deref(), Some("all"));
    }

    #[test]
    fn backtracks_from_a_failed_literal_branch() {
        let r = router(&[("/a/b/c", "abc"), ("/a/...", "a_wild")]);
        assert_eq!(comp(&r, "/a/b/c").as_deref(), Some("abc"));
        let m = r.route("/a/b/d").unwrap();
        assert_eq!(m.component, "a_wild");
        assert_eq!(m.path_info, "/b/d");
    }

    #[test]
    fn params() {
        let r = router(&[
            ("/users/:user_id/carts/:cart", "cart"),
            ("/users/:id/...", "user_wild"),
            ("/users/me", "me"),
        ]);
        let m = r.route("/users/42/carts/abc").unwrap();
        assert_eq!(m.component, "cart");
        assert_eq!(
            m.params,
            vec![
                ("user_id".to_owned(), "42".to_owned()),
                ("cart".to_owned(), "abc".to_owned())
            ]
        );
        assert_eq!(
            m.param_headers(),
            vec![
                ("spin-path-match-user-id".to_owned(), "42".to_owned()),
                ("spin-path-match-cart".to_owned(), "abc".to_owned())
            ]
        );
        assert_eq!(comp(&r, "/users/me").as_deref(), Some("me"));
        let m = r.route("/users/7/x/y").unwrap();
        assert_eq!(m.component, "user_wild");
        // The failed `/carts/:cart` branch must not leave a stale capture behind.
        assert_eq!(m.params, vec![("id".to_owned(), "7".to_owned())]);
        assert_eq!(m.path_info, "/x/y");
        assert_eq!(comp(&r, "/users"), None);
    }

    #[test]
    fn route_normalisation_and_slashes() {
        let r = router(&[("exact/", "e"), ("/w/*", "w")]);
        let m = r.route("/exact").unwrap();
        assert_eq!(m.component, "e");
        assert_eq!(m.matched_route, "/exact");
        assert_eq!(m.raw_component_route, "exact/");
        assert_eq!(m.path_info, "");
        assert_eq!(comp(&r, "//exact//").as_deref(), Some("e"));
        let m = r.route("/w//a//b").unwrap();
        assert_eq!(m.component, "w");
        assert_eq!(m.path_info, "/a//b");
        assert_eq!(m.component_route, "/w/*", "Spin strips only `/...`");
    }

    #[test]
    fn bad_and_duplicate_routes() {
        let mk = |routes: &[(&str, &str)]| Router::new(&declared(routes));
        let e = mk(&[("/a/:/b", "x")]).unwrap_err().to_string();
        assert!(e.contains("params must be named"), "{e}");
        let e = mk(&[("/a/*/b", "x")]).unwrap_err().to_string();
        assert!(e.contains("last segment"), "{e}");
        let e = mk(&[("/a/...", "x"), ("/a/*", "y")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate route"), "{e}");
        let e = mk(&[("/a", "x"), ("/a/", "y")]).unwrap_err().to_string();
        assert!(e.contains("duplicate route"), "{e}");
        let e = mk(&[("/u/:a", "x"), ("/u/:b", "y")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("duplicate route"), "{e}");
        assert!(mk(&[("/a", "x"), ("/a/...", "y")]).is_ok());
    }
}
