//! Command sources: a command's standard output, streamed into the snapshot as a file.
//!
//! The command runs as `sh -c SHELL` in its own process group with its standard output piped
//! into the backup (read chunk by chunk: memory stays bounded whatever the size). A thread reads
//! its standard error line by line (so the command never blocks on a full pipe), logs each line
//! and keeps the tail for the error message. A watchdog kills the whole process group at the
//! timeout. After the end of the stream the exit status decides whether the source succeeded.

use crate::cancel::CancelToken;
use crate::error::POISONED;
use crate::error::{Error, Result};
use crate::process::{describe_status, kill_group, read_lines, shell_command, Tail, Watchdog};
use crate::sources::extra::{ExtraContent, ExtraFile, StreamSource};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A command whose standard output is stored at `snapshot_path`.
#[derive(Debug, Clone)]
pub struct CommandSource {
    /// Absolute path of the file in the snapshot (e.g. /dumps/app.sql).
    pub snapshot_path: PathBuf,
    /// Run with `sh -c`.
    pub shell: String,
    /// Killed (and failed) after this long; none by default.
    pub timeout: Option<Duration>,
}

/// The command's standard output, read so that a cancel is seen within 200 ms even while the
/// command writes nothing: the command is then killed and the read fails.
struct CancellableStdout {
    inner: ChildStdout,
    cancel: CancelToken,
    pid: u32,
}

impl Read for CancellableStdout {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Without poll (Windows) a cancel is seen between reads only.
        #[cfg(not(unix))]
        if self.cancel.is_cancelled() {
            kill_group(self.pid);
            return Err(std::io::Error::other("interrupted: the command was killed"));
        }
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            loop {
                if self.cancel.is_cancelled() {
                    kill_group(self.pid);
                    return Err(std::io::Error::other("interrupted: the command was killed"));
                }
                let mut pfd = libc::pollfd {
                    fd: self.inner.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                let n = unsafe { libc::poll(&mut pfd, 1, 200) };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n > 0 {
                    break;
                }
            }
        }
        self.inner.read(buf)
    }
}

/// A running command source.
struct Running {
    shell: String,
    timeout: Option<Duration>,
    child: Child,
    stdout: Option<CancellableStdout>,
    stderr_thread: Option<JoinHandle<()>>,
    tail: Arc<Mutex<Tail>>,
    watchdog: Watchdog,
    done: bool,
    /// Read once the command's output is closed.
    empty: std::io::Empty,
}

impl StreamSource for Running {
    fn reader(&mut self) -> &mut dyn Read {
        match &mut self.stdout {
            Some(s) => s,
            None => &mut self.empty,
        }
    }

    fn finish(&mut self) -> std::result::Result<(), String> {
        // Closing our end first: a command still writing gets SIGPIPE instead of blocking.
        drop(self.stdout.take());
        let status = self.child.wait();
        let fired = self.watchdog.stop();
        self.done = true;
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        let status = status.map_err(|e| format!("could not wait for the command: {e}"))?;
        if status.success() && !fired {
            return Ok(());
        }
        let tail = self.tail.lock().expect(POISONED);
        let mut msg = format!(
            "the command `{}` failed: {}",
            self.shell,
            describe_status(&status, if fired { self.timeout } else { None })
        );
        if tail.is_empty() {
            msg += "; it wrote nothing to its standard error";
        } else {
            msg += &format!("; the end of its standard error:\n{}", tail.indented());
        }
        msg += "\n  hint: run the command by hand to see why; nothing was committed";
        Err(msg)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            // The backup stopped before the end of the stream: the command must not linger.
            drop(self.stdout.take());
            kill_group(self.child.id());
            let _ = self.child.wait();
            self.watchdog.stop();
            if let Some(t) = self.stderr_thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Starts the command and returns it as an extra file whose stream is its standard output; the
/// command's exit status (and the tail of its standard error) decide, after the end of the
/// stream, whether the source succeeded.
pub fn start(src: &CommandSource) -> Result<ExtraFile> {
    start_with_cancel(src, &CancelToken::new())
}

/// [`start`], with the command killed (and the stream failed) once `cancel` is set.
pub fn start_with_cancel(src: &CommandSource, cancel: &CancelToken) -> Result<ExtraFile> {
    let what = format!(
        "command `{}` (for {})",
        src.shell,
        src.snapshot_path.display()
    );
    if !src.snapshot_path.is_absolute() {
        return Err(Error::Input(format!(
            "{what}: the snapshot path must be absolute, e.g. /dumps/app.sql"
        )));
    }
    let mut child = shell_command(&src.shell)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Source {
            what: what.clone(),
            message: format!(
                "could not be started: {e}\n  hint: check that `sh` is installed and the PATH"
            ),
        })?;
    let stdout = child.stdout.take().map(|inner| CancellableStdout {
        inner,
        cancel: cancel.clone(),
        pid: child.id(),
    });
    let stderr = child.stderr.take().expect("stderr is piped");
    let tail = Arc::new(Mutex::new(Tail::default()));
    let tail2 = tail.clone();
    let shell = src.shell.clone();
    let stderr_thread = std::thread::spawn(move || {
        read_lines(stderr, |line| {
            tracing::info!(command = %shell, "stderr: {line}");
            tail2.lock().expect(POISONED).push(line);
        })
    });
    let watchdog = Watchdog::start(child.id(), src.timeout);
    let running = Running {
        shell: src.shell.clone(),
        timeout: src.timeout,
        child,
        stdout,
        stderr_thread: Some(stderr_thread),
        tail,
        watchdog,
        done: false,
        empty: std::io::empty(),
    };
    Ok(ExtraFile {
        snapshot_path: src.snapshot_path.clone(),
        content: ExtraContent::Stream(Box::new(running)),
        describe: what,
        required: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(shell: &str, timeout: Option<Duration>) -> (Vec<u8>, std::result::Result<(), String>) {
        let e = start(&CommandSource {
            snapshot_path: "/x".into(),
            shell: shell.into(),
            timeout,
        })
        .unwrap();
        let ExtraContent::Stream(mut s) = e.content else {
            panic!("a stream")
        };
        let mut out = Vec::new();
        let _ = s.reader().read_to_end(&mut out);
        let r = s.finish();
        (out, r)
    }

    #[test]
    fn output_is_streamed_and_success_is_ok() {
        let (out, r) = run("printf 'a\\nb\\n'; echo note >&2", None);
        assert_eq!(out, b"a\nb\n");
        r.unwrap();
    }

    #[test]
    fn failure_reports_status_and_stderr_tail() {
        let (_, r) = run(
            "for i in $(seq 1 100); do echo line$i >&2; done; exit 3",
            None,
        );
        let e = r.unwrap_err();
        assert!(e.contains("status 3"), "{e}");
        assert!(e.contains("line100") && e.contains("line81"), "{e}");
        assert!(!e.contains("line80\n"), "{e}");
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let (_, r) = run("sleep 30 | cat", Some(Duration::from_millis(300)));
        let e = r.unwrap_err();
        assert!(e.contains("timeout"), "{e}");
    }

    #[test]
    fn cancel_kills_a_silent_command() {
        let cancel = CancelToken::new();
        let e = start_with_cancel(
            &CommandSource {
                snapshot_path: "/x".into(),
                shell: "sleep 30".into(),
                timeout: None,
            },
            &cancel,
        )
        .unwrap();
        let ExtraContent::Stream(mut s) = e.content else {
            panic!("a stream")
        };
        let c2 = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            c2.cancel();
        });
        let mut out = Vec::new();
        let r = s.reader().read_to_end(&mut out);
        assert!(r.unwrap_err().to_string().contains("interrupted"));
        assert!(s.finish().is_err());
    }
}
