//! `--host-profile`: which Spin host family the lab host stands in for, so that "it links
//! there" is checked here before anyone deploys. A profile is what that host family gives a
//! component (the interfaces it may import, the HTTP worlds it may export) and whether it
//! reuses instances. The lists are Spin's own `platform` worlds (`wit/world.wit` of Spin
//! 4.1 and of Spin 3.6.3, the one containerd-shim-spin v0.24 embeds); Akamai Functions is
//! Spin 4 without `wasi:keyvalue/atomics` and without instance reuse. The lab host itself
//! implements fewer interfaces than any of them (no SQLite, Postgres, MySQL, MQTT, LLM):
//! those the linker refuses afterwards, whatever the profile.

use std::fmt;

/// Lab only: the Spin host family `cartlab up` behaves as.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostProfile {
    /// Spin >= 4.1: WASIp3 (`wasi:http/handler@0.3.0`) and WASIp2 components, WASIp3
    /// instances reused.
    #[default]
    #[value(name = "spin-4.1")]
    Spin41,
    /// Spin 3.x (SpinKube's containerd-shim-spin v0.24 = Spin 3.6.3, Fermyon Cloud): WASIp2
    /// components only, a fresh instance per request.
    #[value(name = "spin-3")]
    Spin3,
    /// Akamai Functions (Spin 4): no `wasi:keyvalue/atomics`, no instance reuse.
    #[value(name = "akamai")]
    Akamai,
}

/// An interface a host family provides: `namespace:package/interface` (`*` for any
/// interface of the package) and the versions accepted (a trailing `*`: any with that
/// prefix).
struct Provided(&'static str, &'static str);

/// WASI 0.2 as Spin 3 and 4 link it (wasi:cli/imports, outgoing HTTP).
const WASI_P2: &[Provided] = &[
    Provided("wasi:cli/*", "0.2.*"),
    Provided("wasi:clocks/*", "0.2.*"),
    Provided("wasi:filesystem/*", "0.2.*"),
    Provided("wasi:io/*", "0.2.*"),
    Provided("wasi:random/*", "0.2.*"),
    Provided("wasi:sockets/*", "0.2.*"),
    Provided("wasi:http/types", "0.2.*"),
    Provided("wasi:http/outgoing-handler", "0.2.*"),
];

/// What Spin 3 and 4 both add (`fermyon:spin/platform@2.0.0`, wasi:keyvalue, wasi:config).
const SPIN_COMMON: &[Provided] = &[
    Provided("fermyon:spin/*", "2.0.0"),
    Provided("wasi:keyvalue/store", "0.2.0-draft2"),
    Provided("wasi:keyvalue/batch", "0.2.0-draft2"),
    Provided("wasi:keyvalue/atomics", "0.2.0-draft2"),
    Provided("wasi:config/store", "0.2.0-draft-2024-09-27"),
];

/// Spin 4.1 only: WASI 0.3 and the `spin:*@3.0.0` interfaces.
const SPIN_4: &[Provided] = &[
    Provided("wasi:cli/*", "0.3.0"),
    Provided("wasi:clocks/*", "0.3.0"),
    Provided("wasi:filesystem/*", "0.3.0"),
    Provided("wasi:random/*", "0.3.0"),
    Provided("wasi:sockets/*", "0.3.0"),
    Provided("wasi:http/types", "0.3.0"),
    Provided("wasi:http/client", "0.3.0"),
    Provided("spin:key-value/key-value", "3.0.0"),
    Provided("spin:variables/variables", "3.0.0"),
    Provided("spin:redis/redis", "3.0.0"),
    Provided("spin:mqtt/mqtt", "3.0.0"),
    Provided("spin:mysql/mysql", "3.0.0"),
    Provided("spin:postgres/postgres", "3.0.0"),
    Provided("spin:postgres/postgres", "4.2.0"),
    Provided("spin:sqlite/sqlite", "3.1.0"),
];

/// Spin 3.6 only.
const SPIN_3: &[Provided] = &[
    Provided("spin:postgres/postgres", "3.0.0"),
    Provided("spin:postgres/postgres", "4.0.0"),
    Provided("spin:sqlite/sqlite", "3.0.0"),
];

const ATOMICS: &str = "wasi:keyvalue/atomics";

/// The HTTP world a component exports, as far as a profile cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpWorld {
    /// `wasi:http/handler@0.3.0`: WASIp3, spin-sdk 7.
    Handler,
    /// `wasi:http/incoming-handler@0.2.x`: WASIp2, spin-sdk <= 5.2.
    IncomingHandler,
}

impl HostProfile {
    fn label(self) -> &'static str {
        match self {
            HostProfile::Spin41 => "Spin 4.1",
            HostProfile::Spin3 => "Spin 3.x (SpinKube, Fermyon Cloud)",
            HostProfile::Akamai => "Akamai Functions",
        }
    }

    /// Whether instances serve more than one request (WASIp3 components only, everywhere).
    pub fn reuses_instances(self) -> bool {
        self != HostProfile::Akamai
    }

    /// Whether this host family provides the import `name` (`ns:pkg/iface@version`).
    pub fn provides(self, name: &str) -> bool {
        let Some((interface, version)) = name.split_once('@') else {
            // An unversioned import is no Spin interface: the linker decides.
            return true;
        };
        let lists: &[&[Provided]] = match self {
            HostProfile::Spin41 | HostProfile::Akamai => &[WASI_P2, SPIN_COMMON, SPIN_4],
            HostProfile::Spin3 => &[WASI_P2, SPIN_COMMON, SPIN_3],
        };
        if self == HostProfile::Akamai && interface == ATOMICS {
            return false;
        }
        lists
            .iter()
            .flat_map(|list| list.iter())
            .any(|Provided(pattern, versions)| {
                matches(pattern, interface, '*') && matches(versions, version, '*')
            })
    }

    /// Whether this host family runs components exporting `world`.
    pub fn runs(self, world: HttpWorld) -> bool {
        !(self == HostProfile::Spin3 && world == HttpWorld::Handler)
    }

    /// Checks a component's imports and HTTP world against the profile: the first thing the
    /// host family would refuse to link, in its users' terms.
    pub fn check<'a>(
        self,
        component: &str,
        world: HttpWorld,
        imports: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ProfileRefusal> {
        if !self.runs(world) {
            return Err(ProfileRefusal {
                component: component.to_owned(),
                profile: self,
                what: "exports wasi:http/handler@0.3.0 (WASIp3, spin-sdk 7), which runs on Spin >= 4.1 only; build it with spin-sdk 5.2 (deploy/spin3/spin.toml)".into(),
            });
        }
        match imports.into_iter().find(|name| !self.provides(name)) {
            Some(name) => Err(ProfileRefusal {
                component: component.to_owned(),
                profile: self,
                what: format!("imports {name}, which this host family does not provide"),
            }),
            None => Ok(()),
        }
    }
}

/// `pattern` equals `text`, or ends with `wildcard` and `text` starts with what precedes it.
fn matches(pattern: &str, text: &str, wildcard: char) -> bool {
    match pattern.strip_suffix(wildcard) {
        Some(prefix) => text.starts_with(prefix),
        None => pattern == text,
    }
}

impl fmt::Display for HostProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostProfile::Spin41 => "spin-4.1",
            HostProfile::Spin3 => "spin-3",
            HostProfile::Akamai => "akamai",
        })
    }
}

/// A component the chosen host family would not run.
#[derive(Debug)]
pub struct ProfileRefusal {
    component: String,
    profile: HostProfile,
    what: String,
}

impl fmt::Display for ProfileRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "component `{}` {}: it would not link on {} (--host-profile {})",
            self.component,
            self.what,
            self.profile.label(),
            self.profile
        )
    }
}

impl std::error::Error for ProfileRefusal {}

#[cfg(test)]
mod tests {
    use super::{HostProfile, HttpWorld};

    #[test]
    fn akamai_lacks_atomics_only() {
        let atomics = "wasi:keyvalue/atomics@0.2.0-draft2";
        assert!(HostProfile::Spin41.provides(atomics));
        assert!(HostProfile::Spin3.provides(atomics));
        assert!(!HostProfile::Akamai.provides(atomics));
        for name in [
            "wasi:keyvalue/store@0.2.0-draft2",
            "spin:redis/redis@3.0.0",
            "wasi:cli/environment@0.2.6",
        ] {
            assert!(HostProfile::Akamai.provides(name), "{name}");
        }
    }

    #[test]
    fn spin3_runs_wasip2_only() {
        assert!(!HostProfile::Spin3.runs(HttpWorld::Handler));
        assert!(HostProfile::Spin3.runs(HttpWorld::IncomingHandler));
        assert!(HostProfile::Spin41.runs(HttpWorld::Handler));
        for name in [
            "spin:key-value/key-value@3.0.0",
            "wasi:http/types@0.3.0",
            "wasi:cli/stdout@0.3.0",
        ] {
            assert!(!HostProfile::Spin3.provides(name), "{name}");
            assert!(HostProfile::Spin41.provides(name), "{name}");
        }
        assert!(HostProfile::Spin3.provides("fermyon:spin/variables@2.0.0"));
        assert!(HostProfile::Spin3.provides("wasi:http/types@0.2.0"));
    }

    #[test]
    fn refusals_name_the_import_and_the_flag() {
        let refusal = HostProfile::Akamai
            .check(
                "stateless-cart",
                HttpWorld::Handler,
                ["wasi:io/poll@0.2.6", "wasi:keyvalue/atomics@0.2.0-draft2"],
            )
            .expect_err("atomics is refused");
        let text = refusal.to_string();
        assert!(
            text.contains("wasi:keyvalue/atomics@0.2.0-draft2"),
            "{text}"
        );
        assert!(text.contains("--host-profile akamai"), "{text}");
    }
}
