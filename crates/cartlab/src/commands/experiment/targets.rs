//! `--url LABEL=URL`: running apps the user started (real `spin up` with any flags, a lab
//! host, a deployed host, a fleet) in place of the scenario matrix. Only the URLs given
//! see traffic, redirects are answers rather than followed, and instance counts are
//! inferred from the carts' answers (`infer`).

use crate::client::{Design, Shopper};
use anyhow::{Context as _, bail};
use cart_core::contract::INSTANCE_HEADER;
use std::collections::HashSet;

/// Labels longer than this would push the table's columns apart.
pub(super) const MAX_LABEL_CHARS: usize = 32;

/// One `--url`: a table label and the app's root URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub label: String,
    /// Normalised: `scheme://host[:port]`, no trailing slash.
    pub url: String,
}

impl std::str::FromStr for Target {
    type Err = anyhow::Error;

    /// `spin-default=http://127.0.0.1:3000`
    fn from_str(text: &str) -> anyhow::Result<Target> {
        let example = "e.g. --url spin-default=http://127.0.0.1:3000";
        let Some((label, url)) = text.split_once('=') else {
            bail!("`{text}`: write LABEL=URL, {example}");
        };
        let label = label.trim();
        if label.is_empty() {
            bail!("`{text}`: the label before `=` is empty; {example}");
        }
        if label.contains("://") {
            bail!("`{text}`: write the label first, then `=`, then the URL; {example}");
        }
        if label.chars().count() > MAX_LABEL_CHARS {
            bail!("label `{label}` is longer than {MAX_LABEL_CHARS} characters");
        }
        if label.chars().any(char::is_control) {
            bail!("label {label:?} holds a control character");
        }
        Ok(Target {
            label: label.to_string(),
            // clap shows an error's message, not its chain: one message that says it all.
            url: app_root(url.trim()).map_err(|error| anyhow::anyhow!("`{url}`: {error}"))?,
        })
    }
}

/// Checks a target URL and returns it as `scheme://host[:port]`.
fn app_root(text: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(text).map_err(|error| {
        anyhow::anyhow!(
            "not a URL ({error}): write it whole, with its scheme, e.g. http://127.0.0.1:3000"
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("the scheme is `{}`: only http and https", url.scheme());
    }
    let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
        bail!("the URL names no host");
    };
    if !url.username().is_empty() || url.password().is_some() {
        bail!("credentials in the URL are not supported (they would be written to results.json)");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        bail!(
            "give the app's root URL (scheme, host and port only): the carts are at \
             /stateful/... and /stateless/... under it"
        );
    }
    Ok(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// Every label names one target.
pub(super) fn check_labels(targets: &[Target]) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    for target in targets {
        if !seen.insert(target.label.as_str()) {
            bail!(
                "the label `{}` is given to more than one --url: each target needs its own",
                target.label
            );
        }
    }
    Ok(())
}

/// Before any shopper: both carts answer at the target, and answer as cartlab's carts do
/// (naming their instance). One `GET /stateful/health` and one `GET /stateless/health`.
pub(super) async fn preflight(target: &Target) -> anyhow::Result<()> {
    let shopper = Shopper::without_redirects(&target.url)?;
    let label = &target.label;
    for design in Design::BOTH {
        let path = format!("{}{}/health", target.url, design.prefix());
        let answer = shopper.health(design).await.with_context(|| {
            format!("target `{label}`: cannot reach {path}: is the app running there?")
        })?;
        if (300..400).contains(&answer.status) {
            bail!(
                "target `{label}`: {path} answered {} (a redirect); cartlab sends traffic only \
                 to the URLs given and follows no redirect: give the address it redirects to",
                answer.status
            );
        }
        if answer.error_code() == Some("store_unavailable") {
            bail!(
                "target `{label}`: {} cannot reach its session store ({})",
                design.component(),
                answer.describe_error()
            );
        }
        if answer.instance.is_empty() {
            bail!(
                "target `{label}`: {path} answered {} without an {INSTANCE_HEADER} header: \
                 is cartlab's spin.toml app running there?",
                answer.describe_error()
            );
        }
        if !answer.is_success() {
            bail!(
                "target `{label}`: {path} answered {}",
                answer.describe_error()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Target> {
        text.parse()
    }

    #[test]
    fn targets_are_label_equals_root_url() {
        let target = parse("spin-default=http://127.0.0.1:3000").unwrap();
        assert_eq!(target.label, "spin-default");
        assert_eq!(target.url, "http://127.0.0.1:3000");
        // A trailing slash is the root; https without a port; an IPv6 host.
        assert_eq!(
            parse("a=http://127.0.0.1:3001/").unwrap().url,
            "http://127.0.0.1:3001"
        );
        assert_eq!(
            parse("deployed=https://carts.example.com").unwrap().url,
            "https://carts.example.com"
        );
        assert_eq!(
            parse("v6=http://[::1]:3000").unwrap().url,
            "http://[::1]:3000"
        );
        // The URL may hold `=`; the label ends at the first.
        assert_eq!(parse(" b = http://h:1 ").unwrap().label, "b");
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        let error = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(error("http://127.0.0.1:3000").contains("LABEL=URL"));
        assert!(error("=http://127.0.0.1:3000").contains("label"));
        assert!(error("http://x=y").contains("label first"));
        assert!(error("a=127.0.0.1:3000").contains("scheme"));
        assert!(error("a=ftp://127.0.0.1").contains("only http and https"));
        assert!(error("a=localhost:3000").contains("scheme"));
        assert!(error("a=nonsense").contains("not a URL"));
        assert!(error("a=http://127.0.0.1:3000/stateful").contains("root URL"));
        assert!(error("a=http://127.0.0.1:3000/?x=1").contains("root URL"));
        assert!(error("a=http://u:p@127.0.0.1:3000").contains("credentials"));
        assert!(error(&format!("{}=http://h", "x".repeat(33))).contains("longer"));
    }

    #[test]
    fn labels_are_unique() {
        let targets = |labels: &[&str]| -> Vec<Target> {
            labels
                .iter()
                .map(|label| parse(&format!("{label}=http://127.0.0.1:3000")).unwrap())
                .collect()
        };
        assert!(check_labels(&targets(&["a", "b"])).is_ok());
        let error = check_labels(&targets(&["a", "b", "a"])).unwrap_err();
        assert!(error.to_string().contains("`a`"), "{error}");
    }
}
