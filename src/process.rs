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

/// `sh -c SHELL` in a process group of its own (so that a timeout kills all of it); on
/// Windows `cmd /C SHELL` (the text passed as it is, in cmd's syntax).
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
