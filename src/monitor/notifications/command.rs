//! Delivery to a command: `sh -c` with the JSON body on standard input and `BACKUPD_*` in its environment, killed after its timeout.

use super::{webhook_body, Delivery, Notification, NotifyError};
use crate::process::{describe_status, read_lines, shell_command, Tail, Watchdog};
use chrono::SecondsFormat;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

/// Runs `shell` once for `n`, killed after `timeout`.
pub(super) fn run(shell: &str, timeout: Duration, n: &Notification) -> Delivery {
    let result = run_once(shell, timeout, n);
    Delivery {
        channel: "command".to_string(),
        ok: result.is_ok(),
        attempts: 1,
        error: result.err().map(|e| e.to_string()),
    }
}

/// The command as errors show it: its first 100 characters, then "…".
fn shown(shell: &str) -> String {
    if shell.chars().count() > 100 {
        format!("{}…", shell.chars().take(100).collect::<String>())
    } else {
        shell.to_string()
    }
}

/// The command's `BACKUPD_*` variables: set to what is known, the others removed (so none is
/// inherited from the daemon's environment).
fn environment(n: &Notification) -> [(&'static str, Option<String>); 10] {
    [
        ("BACKUPD_EVENT", Some(n.event.as_str().into())),
        ("BACKUPD_JOB", Some(n.job.clone())),
        ("BACKUPD_HOST", Some(n.host.clone())),
        (
            "BACKUPD_TIME",
            Some(n.time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        ),
        ("BACKUPD_MESSAGE", Some(n.message.clone())),
        ("BACKUPD_RUN_ID", n.run_id.clone()),
        ("BACKUPD_REASON", n.reason.clone()),
        ("BACKUPD_OUTCOME", n.outcome.clone()),
        ("BACKUPD_SNAPSHOT_ID", n.snapshot_id.clone()),
        ("BACKUPD_ERROR", n.error.clone()),
    ]
}

/// Starts `shell`, feeds it the body, waits for it (or the watchdog) and judges how it ended.
fn run_once(shell: &str, timeout: Duration, n: &Notification) -> Result<(), NotifyError> {
    let mut c = shell_command(shell);
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in environment(n) {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let mut child = c.spawn().map_err(|source| NotifyError::CommandSpawn {
        command: shown(shell),
        source,
    })?;
    let mut dog = Watchdog::start(child.id(), Some(timeout));
    if let Some(stdin) = child.stdin.take() {
        feed(stdin, n);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut tail = Tail::default();
            read_lines(stderr, |l| tail.push(l));
            let _ = tx.send(tail);
        });
    }
    let status = child.wait();
    let fired = dog.stop();
    // Something the command left running may hold stderr open: wait a little, not forever.
    let tail = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    let status = match status {
        Ok(s) if s.success() && !fired => return Ok(()),
        Ok(s) => describe_status(&s, fired.then_some(timeout)),
        Err(e) => format!("waiting for it failed: {e}"),
    };
    Err(NotifyError::CommandFailed {
        command: shown(shell),
        status,
        hint: if fired {
            "make it finish sooner or raise `command_timeout`"
        } else {
            "run it by hand with the JSON on standard input to see why"
        },
        stderr: if tail.is_empty() {
            String::new()
        } else {
            tail.indented()
        },
    })
}

/// Writes the JSON body and a newline to the command's standard input.
fn feed(mut stdin: std::process::ChildStdin, n: &Notification) {
    let mut body = serde_json::to_vec(&webhook_body(n)).unwrap_or_default();
    body.push(b'\n');
    // A command that does not read its input must not block us: write from a thread
    // (it ends with a broken pipe at the latest when the command's group is gone).
    std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use crate::config::notify::Event;

    #[test]
    fn the_environment_sets_what_is_known_and_removes_the_rest() {
        let env = environment(&sample());
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("BACKUPD_EVENT").as_deref(), Some("failure"));
        assert_eq!(get("BACKUPD_JOB").as_deref(), Some("app"));
        assert_eq!(get("BACKUPD_HOST").as_deref(), Some("db1"));
        assert_eq!(get("BACKUPD_TIME").as_deref(), Some("2026-03-29T02:30:00Z"));
        assert_eq!(get("BACKUPD_RUN_ID").as_deref(), Some("r-42"));
        assert_eq!(get("BACKUPD_OUTCOME").as_deref(), Some("failed"));
        assert_eq!(get("BACKUPD_SNAPSHOT_ID"), None);
        let bare = environment(&Notification::new(Event::Overdue, "app", "overdue"));
        let unset: Vec<&str> = bare
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(
            unset,
            [
                "BACKUPD_RUN_ID",
                "BACKUPD_REASON",
                "BACKUPD_OUTCOME",
                "BACKUPD_SNAPSHOT_ID",
                "BACKUPD_ERROR"
            ]
        );
    }

    #[test]
    fn long_commands_are_shown_cut() {
        assert_eq!(shown("page-me --now"), "page-me --now");
        let long = "é".repeat(101);
        assert_eq!(shown(&long), format!("{}…", "é".repeat(100)));
        assert_eq!(shown(&long[2..]), "é".repeat(100));
    }
}
