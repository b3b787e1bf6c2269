//! Command sources: a command's standard output, streamed into the snapshot as a file.
//!
//! The command runs as `sh -c SHELL` in its own process group with its standard output piped
//! into the backup (read chunk by chunk: memory stays bounded whatever the size). A thread reads
//! its standard error line by line (so the command never blocks on a full pipe), logs each line
//! and keeps the tail for the error message. A watchdog kills the whole process group at the
//! timeout. After the end of the stream the exit status decides whether the source succeeded.

use crate::engine::backup::{ExtraContent, ExtraFile, StreamSource};
use crate::engine::CancelToken;
use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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

/// At most this many lines of a command's output are kept for its error message...
pub const TAIL_LINES: usize = 20;
/// ...and at most this many bytes.
pub const TAIL_BYTES: usize = 4096;

/// The last lines of a command's output (at most [`TAIL_LINES`] lines and [`TAIL_BYTES`] bytes).
#[derive(Debug, Default, Clone)]
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    pub fn push(&mut self, line: &str) {
        let mut line = line.to_string();
        if line.len() > TAIL_BYTES {
            let mut cut = line.len() - TAIL_BYTES;
            while !line.is_char_boundary(cut) {
                cut += 1;
            }
            line = format!("…{}", &line[cut..]);
        }
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || (self.bytes > TAIL_BYTES && self.lines.len() > 1) {
            let l = self.lines.pop_front().expect("not empty");
            self.bytes -= l.len();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, each indented by four spaces, newline-separated.
    pub fn indented(&self) -> String {
        self.lines
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads `r` line by line (lossy UTF-8, without the line end), calling `each` per line, until
/// the end or an error.
pub(crate) fn read_lines(r: impl Read, mut each: impl FnMut(&str)) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let s = String::from_utf8_lossy(&buf);
                each(s.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Kills a process group (the command and everything it started): SIGKILL to the group on
/// Unix; on Windows `taskkill /T /F` (the process tree).
pub(crate) fn kill_group(pid: u32) {
    #[cfg(unix)]
    {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    #[cfg(windows)]
    {
        let _ = Command::new("taskkill")
            .args(["/T", "/F", "/PID", &pid.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// `sh -c SHELL` in a process group of its own (so that a timeout kills all of it); on
/// Windows `cmd /C SHELL` (the text passed as it is, in cmd's syntax).
pub(crate) fn shell_command(shell: &str) -> Command {
    #[cfg(windows)]
    {
        use std::os::windows::process::CommandExt;
        let mut c = Command::new("cmd");
        c.arg("/C").raw_arg(shell);
        c
    }
    #[cfg(not(windows))]
    {
        let mut c = Command::new("sh");
        c.arg("-c").arg(shell);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            c.process_group(0);
        }
        c
    }
}

/// Kills a process group when its deadline passes, unless stopped first.
pub(crate) struct Watchdog {
    state: Arc<(Mutex<bool>, Condvar)>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub(crate) fn start(pid: u32, timeout: Option<Duration>) -> Watchdog {
        let state = Arc::new((Mutex::new(false), Condvar::new()));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = timeout.map(|t| {
            let (state, fired) = (state.clone(), fired.clone());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + t;
                let (m, cv) = &*state;
                let mut stopped = m.lock().unwrap();
                while !*stopped {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        fired.store(true, Ordering::SeqCst);
                        kill_group(pid);
                        return;
                    }
                    stopped = cv.wait_timeout(stopped, deadline - now).unwrap().0;
                }
            })
        });
        Watchdog {
            state,
            fired,
            thread,
        }
    }

    /// Stops the watchdog; true if it had fired (the command was killed at its timeout).
    pub(crate) fn stop(&mut self) -> bool {
        {
            let (m, cv) = &*self.state;
            *m.lock().unwrap() = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Describes how a command ended, with a hint for the usual causes.
pub(crate) fn describe_status(status: &ExitStatus, timed_out: Option<Duration>) -> String {
    if let Some(t) = timed_out {
        return format!("it was killed after its timeout of {}", human_duration(t));
    }
    match status.code() {
        Some(127) => {
            "it exited with status 127 (command not found: check the program's name and PATH)"
                .into()
        }
        Some(126) => "it exited with status 126 (the program is not executable)".into(),
        Some(c) => format!("it exited with status {c}"),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                if let Some(s) = status.signal() {
                    return format!("it was killed by signal {s}");
                }
            }
            format!("it ended with {status}")
        }
    }
}

/// `90s` → "1m30s".
pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 || out.is_empty() {
        out += &format!("{s}s");
    }
    out
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
        let tail = self.tail.lock().unwrap();
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
            tail2.lock().unwrap().push(line);
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

    #[test]
    fn tail_keeps_at_most_4_kib() {
        let mut t = Tail::default();
        for i in 0..10 {
            t.push(&format!("{i}{}", "x".repeat(1000)));
        }
        assert!(t.bytes <= TAIL_BYTES);
        assert!(t.indented().contains("9xxx"));
        assert!(!t.indented().contains("    5x"));
    }
}
