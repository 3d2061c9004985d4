//! The `spin up` flags `cartlab up` does not implement. Each is accepted by the parser only to
//! be refused by name, with the reason: a Spin user's flag is never silently ignored.

use clap::Args;

const PROFILE: &str = "build profiles ([component.<id>.profile.<name>]) are not implemented: cartlab serves each component's `source`";
const INSECURE: &str = "registry apps are not supported (local manifests only), so there is no registry certificate to ignore";
const FROM_REGISTRY: &str =
    "registry apps are not supported: pull the app and pass its spin.toml with --from";
const CACHE_DIR: &str =
    "it holds components downloaded from registries, and cartlab loads local files only";
const TEMP: &str = "it holds copies of the components' `files` mounts, which cartlab does not support (spin.toml `files` is refused)";
const DIRECT_MOUNTS: &str = "spin.toml `files` mounts are not supported (the field is refused), so there is nothing to mount";
const SQLITE: &str =
    "cartlab gives components no SQLite databases (`sqlite_databases` is refused in spin.toml)";
const ALLOW_TRANSIENT_WRITE: &str =
    "spin.toml `files` mounts are not supported, so there is nothing to make writable";
const EXPERIMENTAL_WASI_OTEL: &str = "wasi:otel is not provided by the lab host";

/// Spin flags refused with their reason (shown in `--help` under their own heading).
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "spin up flags cartlab up does not support (each fails, saying why)")]
pub struct UnsupportedFlags {
    #[arg(long, value_name = "PROFILE", help = PROFILE)]
    profile: Option<String>,
    #[arg(short = 'k', long, help = INSECURE)]
    insecure: bool,
    #[arg(long, value_name = "REFERENCE", help = FROM_REGISTRY)]
    from_registry: Option<String>,
    #[arg(long, value_name = "DIR", help = CACHE_DIR)]
    cache_dir: Option<String>,
    #[arg(long, alias = "tmp", value_name = "DIR", help = TEMP)]
    temp: Option<String>,
    #[arg(long, help = DIRECT_MOUNTS)]
    direct_mounts: bool,
    #[arg(long, value_name = "STATEMENT", help = SQLITE)]
    sqlite: Vec<String>,
    #[arg(long, help = ALLOW_TRANSIENT_WRITE)]
    allow_transient_write: bool,
    #[arg(long, help = EXPERIMENTAL_WASI_OTEL)]
    experimental_wasi_otel: bool,
}

impl UnsupportedFlags {
    /// Every refused flag on the command line, with its reason.
    fn given(&self) -> Vec<(&'static str, &'static str)> {
        [
            ("--profile", PROFILE, self.profile.is_some()),
            ("--insecure", INSECURE, self.insecure),
            (
                "--from-registry",
                FROM_REGISTRY,
                self.from_registry.is_some(),
            ),
            ("--cache-dir", CACHE_DIR, self.cache_dir.is_some()),
            ("--temp", TEMP, self.temp.is_some()),
            ("--direct-mounts", DIRECT_MOUNTS, self.direct_mounts),
            ("--sqlite", SQLITE, !self.sqlite.is_empty()),
            (
                "--allow-transient-write",
                ALLOW_TRANSIENT_WRITE,
                self.allow_transient_write,
            ),
            (
                "--experimental-wasi-otel",
                EXPERIMENTAL_WASI_OTEL,
                self.experimental_wasi_otel,
            ),
        ]
        .into_iter()
        .filter(|(_, _, given)| *given)
        .map(|(flag, why, _)| (flag, why))
        .collect()
    }

    /// A start-up error naming each refused flag given, and why.
    pub fn refuse(&self) -> anyhow::Result<()> {
        let given = self.given();
        if given.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = given
            .iter()
            .map(|(flag, why)| format!("{flag} is not supported by cartlab up: {why}"))
            .collect();
        anyhow::bail!("{}", lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        flags: UnsupportedFlags,
    }

    #[test]
    fn each_refused_flag_is_named_with_its_reason() {
        let none = Cli::parse_from(["up"]).flags;
        assert!(none.refuse().is_ok());
        let cases: &[&[&str]] = &[
            &["--profile", "release"],
            &["-k"],
            &["--from-registry", "ghcr.io/x/y:1"],
            &["--cache-dir", "/tmp/c"],
            &["--tmp", "/tmp/t"],
            &["--direct-mounts"],
            &["--sqlite", "select 1"],
            &["--allow-transient-write"],
            &["--experimental-wasi-otel"],
        ];
        let mut named = std::collections::BTreeSet::new();
        for case in cases {
            let flags = Cli::parse_from(std::iter::once("up").chain(case.iter().copied())).flags;
            let error = flags.refuse().expect_err("refused").to_string();
            assert_eq!(flags.given().len(), 1, "{case:?}");
            let (flag, why) = flags.given()[0];
            assert!(error.contains(flag) && error.contains(why), "{error}");
            assert!(error.contains("not supported"), "{error}");
            named.insert(flag);
        }
        // Every flag of the table is reachable from the command line.
        assert_eq!(named.len(), cases.len());
        let two = Cli::parse_from(["up", "--sqlite", "x", "--insecure"]).flags;
        let error = two.refuse().expect_err("refused").to_string();
        assert!(
            error.contains("--sqlite") && error.contains("--insecure"),
            "{error}"
        );
    }
}
