//! Where a component's stdout and stderr go, as in `spin up`: appended to
//! `<log dir>/<component>_stdout.txt` and `<component>_stderr.txt`, and echoed to the host's
//! stderr for the components followed (all of them unless `--follow` names some, none with
//! `--quiet`). The files are opened once per component and shared by its instances; writes
//! are small and synchronous, as Spin's are.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Whose output is echoed to the host's stderr.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowComponents {
    None,
    All,
    Named(BTreeSet<String>),
}

impl FollowComponents {
    fn follows(&self, component: &str) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Named(names) => names.contains(component),
        }
    }
}

/// `-L/--log-dir`, `--truncate-logs`, `--follow` and `--quiet`, resolved.
#[derive(Clone, Debug)]
pub struct GuestOutput {
    pub log_dir: Option<PathBuf>,
    pub truncate: bool,
    pub follow: FollowComponents,
}

impl GuestOutput {
    /// No files, no echo: for hosts whose own output is the point (`demo`, `experiment`).
    pub fn silent() -> Self {
        Self {
            log_dir: None,
            truncate: false,
            follow: FollowComponents::None,
        }
    }

    /// Checks `--follow` against the app's components, creates the log directory and, with
    /// `--truncate-logs`, empties the log files in it. Before any instance writes.
    pub fn prepare<'a>(
        &self,
        components: impl Iterator<Item = &'a str> + Clone,
    ) -> anyhow::Result<()> {
        if let FollowComponents::Named(names) = &self.follow {
            let known: BTreeSet<&str> = components.clone().collect();
            let unknown: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|name| !known.contains(name))
                .collect();
            if !unknown.is_empty() {
                anyhow::bail!(
                    "--follow names components that are not in the app: {}; the app has: {}",
                    unknown.join(", "),
                    known.into_iter().collect::<Vec<_>>().join(", ")
                );
            }
        }
        let Some(dir) = &self.log_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the log directory {}", dir.display()))?;
        if self.truncate {
            for component in components {
                for stream in STREAMS {
                    let path = log_file(dir, component, stream);
                    if path.exists() {
                        std::fs::File::create(&path)
                            .with_context(|| format!("cannot truncate {}", path.display()))?;
                    }
                }
            }
        }
        tracing::info!(dir = %dir.display(), "component output is logged to files");
        Ok(())
    }

    /// The stdout and stderr of `component`'s instances.
    pub fn sinks(&self, component: &str) -> anyhow::Result<ComponentOutput> {
        let echo = self.follow.follows(component);
        let sink = |stream: &str| -> anyhow::Result<OutputSink> {
            let file = match &self.log_dir {
                Some(dir) => {
                    let path = log_file(dir, component, stream);
                    let file = std::fs::File::options()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .with_context(|| format!("cannot open the log file {}", path.display()))?;
                    Some(Arc::new(file))
                }
                None => None,
            };
            Ok(OutputSink { file, echo })
        };
        Ok(ComponentOutput {
            stdout: sink(STDOUT)?,
            stderr: sink(STDERR)?,
        })
    }
}

const STDOUT: &str = "stdout";
const STDERR: &str = "stderr";
const STREAMS: [&str; 2] = [STDOUT, STDERR];

/// Spin's name for a component's log file.
fn log_file(dir: &Path, component: &str, stream: &str) -> PathBuf {
    dir.join(format!("{component}_{stream}.txt"))
}

/// One component's two output streams.
#[derive(Clone, Debug)]
pub struct ComponentOutput {
    pub stdout: OutputSink,
    pub stderr: OutputSink,
}

impl ComponentOutput {
    pub fn silent() -> Self {
        let none = OutputSink {
            file: None,
            echo: false,
        };
        Self {
            stdout: none.clone(),
            stderr: none,
        }
    }
}

/// An instance's stdout or stderr: the log file (if any), then the host's stderr (if followed).
#[derive(Clone, Debug)]
pub struct OutputSink {
    file: Option<Arc<std::fs::File>>,
    echo: bool,
}

impl OutputSink {
    fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        if let Some(file) = &self.file {
            (&**file).write_all(bytes)?;
        }
        if self.echo {
            // A closed terminal must not fail the guest's write.
            let _ = std::io::stderr().lock().write_all(bytes);
        }
        Ok(())
    }
}

impl IsTerminal for OutputSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputSink {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for OutputSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_all(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_follow_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let output = GuestOutput {
            log_dir: Some(dir.path().join("logs")),
            truncate: false,
            follow: FollowComponents::Named(["b".to_string()].into()),
        };
        output.prepare(["a", "b"].into_iter()).unwrap();
        let sinks = output.sinks("a").unwrap();
        assert!(!sinks.stdout.echo && sinks.stdout.file.is_some());
        assert!(output.sinks("b").unwrap().stderr.echo);
        sinks.stderr.write_all(b"one\n").unwrap();
        sinks.stderr.write_all(b"two\n").unwrap();
        let path = dir.path().join("logs/a_stderr.txt");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert!(dir.path().join("logs/a_stdout.txt").exists());

        let truncating = GuestOutput {
            truncate: true,
            ..output.clone()
        };
        truncating.prepare(["a", "b"].into_iter()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");

        let unknown = GuestOutput {
            follow: FollowComponents::Named(["c".to_string()].into()),
            ..output
        };
        let error = unknown
            .prepare(["a", "b"].into_iter())
            .unwrap_err()
            .to_string();
        assert!(error.contains("c") && error.contains("a, b"), "{error}");
    }
}
