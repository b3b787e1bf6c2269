//! Child processes: `sh -c` (or `cmd /C`) commands in their own process group, killing a group, a watchdog for timeouts, how a command ended, and the tail of its output.

use crate::error::POISONED;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
pub fn read_lines(r: impl Read, mut each: impl FnMut(&str)) {
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
pub fn kill_group(pid: u32) {
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

/// `sh -c SHELL` in a process group of its own (so that a timeout kills all of it), which dies
/// with this process (see [`GUARD`]); on Windows `cmd /C SHELL` (the text passed as it is, in
/// cmd's syntax; nothing kills it when this process dies: job objects are not used).
pub fn shell_command(shell: &str) -> Command {
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
        c.arg("-c").arg(GUARD).arg("backupd-command").arg(shell);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            c.process_group(0);
            let fd = lifeline::read_fd();
            // SAFETY: the closure only calls dup2 and fcntl, which are async-signal-safe.
            unsafe { c.pre_exec(move || lifeline::install(fd)) };
        }
        c
    }
}

/// The group leader of every command (`sh -c GUARD backupd-command SHELL`): a watcher in the
/// background waits on the lifeline (fd 9) and kills the whole process group when it reads its
/// end, which happens only when every copy of the write end is closed, i.e. when this process
/// died, however (`kill -9` too). The command runs in the foreground as `sh -c "$1"` without
/// fd 9 and keeps its standard input; once it ends the watcher is stopped and the leader exits
/// with the command's status (a command killed by signal N is reported as status 128+N).
/// Without fd 9 (which `shell_command` always sets up) the command runs unguarded.
#[cfg(not(windows))]
pub const GUARD: &str = "w=; if true 2>/dev/null <&9; then \
     (read _ <&9; kill -s KILL 0) </dev/null >/dev/null 2>&1 & w=$!; fi; \
     sh -c \"$1\" 9<&-; s=$?; [ -n \"$w\" ] && kill \"$w\" 2>/dev/null; exit \"$s\"";

/// The lifeline: one pipe for the whole process. This process holds the write end (close-on-exec,
/// never written, never closed) for as long as it lives; each command's leader gets the read
/// end as fd 9. When this process dies the kernel closes the write end and every watcher reads
/// end-of-file. Unlike `PR_SET_PDEATHSIG` it does not depend on which thread spawned the
/// command (a thread that ends would fire it), it reaches the command's own children (the
/// watcher kills the group) and it works on every Unix (macOS too); between the fork and the
/// watcher's read there is no window: a pipe without writers reads as end-of-file at once.
#[cfg(unix)]
mod lifeline {
    use std::io::{PipeReader, PipeWriter};
    use std::os::fd::{AsRawFd, RawFd};
    use std::sync::OnceLock;

    /// The descriptor the leader reads the lifeline from (dash redirects only fds 0 to 9).
    const FD: RawFd = 9;

    static PIPE: OnceLock<Option<(PipeReader, PipeWriter)>> = OnceLock::new();

    /// The read end (made on first use), or -1 when the pipe could not be made.
    pub(super) fn read_fd() -> RawFd {
        PIPE.get_or_init(|| std::io::pipe().ok())
            .as_ref()
            .map_or(-1, |(r, _)| r.as_raw_fd())
    }

    /// In the child, between fork and exec: the read end becomes fd 9 (inherited by `sh`).
    pub(super) fn install(fd: RawFd) -> std::io::Result<()> {
        if fd < 0 {
            return Err(std::io::Error::other(
                "the lifeline pipe (which makes commands die with backupd) could not be made: \
                 too many open files?",
            ));
        }
        // SAFETY: plain descriptor calls; dup2 clears close-on-exec on the copy, fcntl on the
        // descriptor itself when it already is fd 9.
        let r = unsafe {
            if fd == FD {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, FD)
            }
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Kills a process group when its deadline passes, unless stopped first.
pub struct Watchdog {
    state: Arc<(Mutex<bool>, Condvar)>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(pid: u32, timeout: Option<Duration>) -> Watchdog {
        let state = Arc::new((Mutex::new(false), Condvar::new()));
        let fired = Arc::new(AtomicBool::new(false));
        let thread = timeout.map(|t| {
            let (state, fired) = (state.clone(), fired.clone());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + t;
                let (m, cv) = &*state;
                let mut stopped = m.lock().expect(POISONED);
                while !*stopped {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        fired.store(true, Ordering::SeqCst);
                        kill_group(pid);
                        return;
                    }
                    stopped = cv.wait_timeout(stopped, deadline - now).expect(POISONED).0;
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
    pub fn stop(&mut self) -> bool {
        {
            let (m, cv) = &*self.state;
            *m.lock().expect(POISONED) = true;
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
pub fn describe_status(status: &ExitStatus, timed_out: Option<Duration>) -> String {
    if let Some(t) = timed_out {
        return format!("it was killed after its timeout of {}", human_duration(t));
    }
    match status.code() {
        Some(127) => {
            "it exited with status 127 (command not found: check the program's name and PATH)"
                .into()
        }
        Some(126) => "it exited with status 126 (the program is not executable)".into(),
        // The leader's status for a command killed by a signal (see GUARD).
        Some(c) if (129..=192).contains(&c) => format!(
            "it exited with status {c} (as the shell reports a command killed by signal {})",
            c - 128
        ),
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
pub fn human_duration(d: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_guarded_command_keeps_its_input_output_status_and_group() {
        use std::io::Write;
        use std::process::Stdio;
        let mut c = shell_command("read x; echo \"got $x $0\"; ps -o pgid= -p $$; exit 3")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(b"hi\n").unwrap();
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("got hi sh"));
        let pgid: u32 = lines.next().unwrap().trim().parse().unwrap();
        assert_ne!(
            pgid,
            std::process::id(),
            "the command runs in a group of its own"
        );
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn a_status_above_128_names_the_signal() {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            let s = ExitStatus::from_raw(137 << 8);
            assert!(describe_status(&s, None).contains("killed by signal 9"));
        }
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
