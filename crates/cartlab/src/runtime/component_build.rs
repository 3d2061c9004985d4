//! Components' builds, as `spin up` treats them: built only when asked (`--build`, which runs
//! every component's build commands like `spin build`); otherwise what is on disk is served,
//! with a warning for a component whose source `.wasm` is older than the newest file matching
//! its `watch` globs (relative to the build workdir, as in `spin watch`). Commands run like
//! Spin's: through the shell (`sh -c`), in the workdir, one after the other, stopping at the
//! first failure; their output goes to cartlab's stdout/stderr.
//!
//! Blocking (it waits for the build): call it before starting the runtime or from
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

use crate::app::manifest::{AppManifest, BuildDecl, ComponentDecl};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildNeed {
    UpToDate,
    /// The source `.wasm` does not exist.
    Missing,
    /// `newer` (matched by a watch glob) was modified after the source.
    Stale {
        newer: PathBuf,
    },
}

/// `--build`: runs every component's build commands, then checks that each source exists.
pub fn build_all(manifest: &AppManifest) -> Result<()> {
    for component in manifest.components.values() {
        if let Some(build) = &component.build {
            run_build(component, build)?;
        }
    }
    check_built(manifest)
}

/// Without `--build`: every source must exist; a stale one is served as it is, with a warning.
pub fn check_built(manifest: &AppManifest) -> Result<()> {
    for component in manifest.components.values() {
        let id = &component.id;
        let Some(build) = &component.build else {
            if !component.source.exists() {
                bail!(
                    "component `{id}`: source `{}` not found (and no [component.{id}.build] to make it)",
                    component.source.display()
                );
            }
            continue;
        };
        let need = build_need(&component.source, build)
            .with_context(|| format!("component `{id}`: cannot check whether it needs a build"))?;
        match need {
            BuildNeed::UpToDate => tracing::debug!(component = %id, "component is up to date"),
            BuildNeed::Missing => bail!(
                "component `{id}`: source `{}` not found; build it with `cartlab up --build` (or `spin build`)",
                component.source.display()
            ),
            BuildNeed::Stale { newer } => tracing::warn!(
                component = %id,
                newer = %newer.display(),
                source = %component.source.display(),
                "component is stale: a watched file is newer than its source; serving it as it is (rebuild with --build)"
            ),
        }
    }
    Ok(())
}

fn run_build(component: &ComponentDecl, build: &BuildDecl) -> Result<()> {
    let id = &component.id;
    for command in &build.commands {
        tracing::info!(
            component = %id,
            workdir = %build.workdir.display(),
            "building component: {command}"
        );
        let status = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&build.workdir)
            .status()
            .with_context(|| {
                format!(
                    "component `{id}`: cannot run build command `{command}` in {}",
                    build.workdir.display()
                )
            })?;
        if !status.success() {
            bail!(
                "component `{id}`: build command `{command}` (in {}) failed with {status}",
                build.workdir.display()
            );
        }
    }
    if !component.source.exists() {
        bail!(
            "component `{id}`: the build succeeded but did not produce source `{}`",
            component.source.display()
        );
    }
    Ok(())
}

/// Decides whether `source` must be (re)built according to `build.watch`.
pub fn build_need(source: &Path, build: &BuildDecl) -> Result<BuildNeed> {
    let source_mtime = match std::fs::metadata(source) {
        Ok(m) => m.modified()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BuildNeed::Missing),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot stat {}", source.display()));
        }
    };
    let newest = newest_watched(&build.workdir, &build.watch, source)?;
    Ok(match newest {
        Some((mtime, path)) if mtime > source_mtime => BuildNeed::Stale { newer: path },
        _ => BuildNeed::UpToDate,
    })
}

/// The most recently modified file matching any glob (relative to `workdir`), ignoring
/// `exclude` (the build output itself, should a broad glob match it).
fn newest_watched(
    workdir: &Path,
    globs: &[String],
    exclude: &Path,
) -> Result<Option<(SystemTime, PathBuf)>> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let base = glob::Pattern::escape(&workdir.to_string_lossy());
    for g in globs {
        let pattern = if Path::new(g).is_absolute() {
            g.clone()
        } else {
            format!("{}/{g}", base.trim_end_matches('/'))
        };
        let paths = glob::glob(&pattern).with_context(|| format!("invalid watch glob {g:?}"))?;
        for entry in paths {
            // Unreadable directories are skipped rather than failing start-up.
            let Ok(path) = entry else { continue };
            if path == exclude {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified()?;
            if newest.as_ref().is_none_or(|(t, _)| mtime > *t) {
                newest = Some((mtime, path));
            }
        }
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs::{File, FileTimes};
    use std::time::Duration;

    fn touch(path: &Path, secs_ago: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
        let t = SystemTime::now() - Duration::from_secs(secs_ago);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }

    fn build(workdir: &Path, watch: &[&str], commands: &[&str]) -> BuildDecl {
        BuildDecl {
            commands: commands.iter().map(|s| s.to_string()).collect(),
            workdir: workdir.to_path_buf(),
            watch: watch.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn staleness() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let wasm = d.join("target/app.wasm");
        let b = build(d, &["src/**/*.rs", "Cargo.toml"], &[]);

        assert_eq!(build_need(&wasm, &b).unwrap(), BuildNeed::Missing);

        touch(&d.join("src/lib.rs"), 100);
        touch(&d.join("src/deep/mod.rs"), 90);
        touch(&d.join("Cargo.toml"), 80);
        touch(&wasm, 50);
        assert_eq!(build_need(&wasm, &b).unwrap(), BuildNeed::UpToDate);

        // An unwatched file changing does not matter.
        touch(&d.join("README.md"), 1);
        assert_eq!(build_need(&wasm, &b).unwrap(), BuildNeed::UpToDate);

        touch(&d.join("src/deep/mod.rs"), 10);
        assert_eq!(
            build_need(&wasm, &b).unwrap(),
            BuildNeed::Stale {
                newer: d.join("src/deep/mod.rs")
            }
        );

        // No watch globs: only "missing" triggers a build.
        let nowatch = build(d, &[], &[]);
        assert_eq!(build_need(&wasm, &nowatch).unwrap(), BuildNeed::UpToDate);

        // Globs may leave the workdir (`../shared/...`, as the app's spin.toml does).
        let sub = build(&d.join("src"), &["../shared/**/*.rs"], &[]);
        assert_eq!(build_need(&wasm, &sub).unwrap(), BuildNeed::UpToDate);
        touch(&d.join("shared/x/lib.rs"), 5);
        match build_need(&wasm, &sub).unwrap() {
            BuildNeed::Stale { newer } => assert!(newer.ends_with("shared/x/lib.rs"), "{newer:?}"),
            other => panic!("expected stale, got {other:?}"),
        }

        // A glob matching the output itself does not make it stale forever.
        touch(&wasm, 0);
        let all = build(d, &["**/*"], &[]);
        assert_eq!(build_need(&wasm, &all).unwrap(), BuildNeed::UpToDate);
    }

    fn manifest_with(component: ComponentDecl) -> AppManifest {
        AppManifest::of_components([component])
    }

    fn component(source: PathBuf, build: Option<BuildDecl>) -> ComponentDecl {
        ComponentDecl {
            id: "cart".into(),
            description: None,
            source,
            key_value_stores: vec![],
            variables: BTreeMap::new(),
            environment: BTreeMap::new(),
            allowed_outbound_hosts: vec![],
            build,
        }
    }

    #[test]
    fn missing_source_without_build_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest_with(component(dir.path().join("nope.wasm"), None));
        for e in [check_built(&m), build_all(&m)] {
            let e = e.unwrap_err().to_string();
            assert!(
                e.contains("component `cart`") && e.contains("nope.wasm"),
                "{e}"
            );
        }
        let with_build = manifest_with(component(
            dir.path().join("nope.wasm"),
            Some(build(dir.path(), &[], &["true"])),
        ));
        let e = check_built(&with_build).unwrap_err().to_string();
        assert!(e.contains("--build"), "{e}");
    }

    #[test]
    fn build_runs_commands_in_workdir_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let wasm = d.join("out.wasm");
        let ok = build(d, &[], &["echo step1 > log", "cp log out.wasm"]);
        build_all(&manifest_with(component(wasm.clone(), Some(ok.clone())))).unwrap();
        assert_eq!(std::fs::read_to_string(&wasm).unwrap(), "step1\n");

        // Asked to build, it builds, as `spin build` does, up to date or not; unasked, never.
        let marker = build(d, &[], &["touch ran"]);
        check_built(&manifest_with(component(
            wasm.clone(),
            Some(marker.clone()),
        )))
        .unwrap();
        assert!(!d.join("ran").exists());
        build_all(&manifest_with(component(wasm.clone(), Some(marker)))).unwrap();
        assert!(d.join("ran").exists());

        let missing = d.join("other.wasm");
        let failing = build(d, &[], &["exit 3", "touch never"]);
        let e = format!(
            "{:#}",
            build_all(&manifest_with(component(missing.clone(), Some(failing)))).unwrap_err()
        );
        assert!(e.contains("`exit 3`") && e.contains("3"), "{e}");
        assert!(
            !d.join("never").exists(),
            "stops at the first failing command"
        );

        let noop = build(d, &[], &["true"]);
        let e = build_all(&manifest_with(component(missing, Some(noop))))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not produce"), "{e}");
    }
}
