//! Job hooks: shell commands run before and after a backup, with the run's facts in their environment.
//!
//! Each hook runs as `sh -c HOOK` in a process group of its own, with standard input closed.
//! Its standard output and standard error go to the progress notes line by line (the last
//! lines are kept for the error message); the daemon's progress sink logs each note once, so
//! this module logs nothing itself. A hook that exits non-zero or outlives the timeout (then
//! its whole process group is killed) is an error naming the hook.
//!
//! Environment: `BACKUPD_JOB`, `BACKUPD_RUN_ID`, `BACKUPD_EVENT` (before, success, failure,
//! always), `BACKUPD_REPOSITORY` (as status shows it, a password as `***`, unless the job's
//! `pass_repository_credentials` is set), and when known `BACKUPD_SNAPSHOT_ID`, `BACKUPD_ERROR` (the
//! run's error) and `BACKUPD_OUTCOME` (success, partial, failed; after-hooks only).

use crate::cancel::Progress;
use crate::error::POISONED;
use crate::error::{Error, Result};
use crate::process::{describe_status, read_lines, shell_command, Tail, Watchdog};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The hooks of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Hooks {
    /// Run before the backup; the first that fails aborts the run (no backup).
    pub before: Vec<String>,
    /// Run after a successful backup (a partial one too, when the job allows partial snapshots).
    pub after_success: Vec<String>,
    /// Run after a failed run (a failed before-hook or a failed backup).
    pub after_failure: Vec<String>,
    /// Run at the end of every run, whatever happened.
    pub always: Vec<String>,
    /// Each hook is killed (and fails) after this long.
    pub timeout: Duration,
}

/// The default hook timeout: 5 minutes.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            before: Vec::new(),
            after_success: Vec::new(),
            after_failure: Vec::new(),
            always: Vec::new(),
            timeout: DEFAULT_HOOK_TIMEOUT,
        }
    }
}

/// When a hook runs (its `BACKUPD_EVENT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    Before,
    AfterSuccess,
    AfterFailure,
    Always,
}

impl HookKind {
    /// The value of `BACKUPD_EVENT`.
    pub fn event(self) -> &'static str {
        match self {
            HookKind::Before => "before",
            HookKind::AfterSuccess => "success",
            HookKind::AfterFailure => "failure",
            HookKind::Always => "always",
        }
    }
    /// The name of the list in the configuration.
    pub fn config_name(self) -> &'static str {
        match self {
            HookKind::Before => "before",
            HookKind::AfterSuccess => "after_success",
            HookKind::AfterFailure => "after_failure",
            HookKind::Always => "always",
        }
    }
}

/// The facts of a run given to its hooks.
#[derive(Debug, Clone, Default)]
pub struct HookEnv {
    pub job: String,
    pub run_id: String,
    pub repository: String,
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    pub outcome: Option<String>,
}

/// Runs the hooks of one kind in order. Before-hooks stop at the first failure; the other
/// kinds all run, and the first failure is returned (the caller reports it, once); every
/// later failure is a note (`error: ...`).
pub fn run_hooks(
    kind: HookKind,
    hooks: &[String],
    env: &HookEnv,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<()> {
    let mut first_err = None;
    for h in hooks {
        if let Err(e) = run_hook(kind, h, env, timeout, progress) {
            if kind == HookKind::Before {
                return Err(e);
            }
            match first_err {
                None => first_err = Some(e),
                Some(_) => progress.note(&format!("error: {e}")),
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Runs one hook.
pub fn run_hook(
    kind: HookKind,
    hook: &str,
    env: &HookEnv,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<()> {
    let what = format!("{} hook `{hook}` of job {}", kind.config_name(), env.job);
    let mut cmd = shell_command(hook);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("BACKUPD_JOB", &env.job)
        .env("BACKUPD_RUN_ID", &env.run_id)
        .env("BACKUPD_EVENT", kind.event())
        .env("BACKUPD_REPOSITORY", &env.repository);
    for (k, v) in [
        ("BACKUPD_SNAPSHOT_ID", &env.snapshot_id),
        ("BACKUPD_ERROR", &env.error),
        ("BACKUPD_OUTCOME", &env.outcome),
    ] {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    progress.note(&format!("running {what}"));
    let mut child = cmd.spawn().map_err(|e| Error::Source {
        what: what.clone(),
        message: format!("could not be started: {e}\n  hint: check that `sh` is installed"),
    })?;
    let tail = Arc::new(Mutex::new(Tail::default()));
    let mut readers = Vec::new();
    let prefix = format!("hook {}", kind.event());
    // Lines come back through a channel: the progress sink is only borrowed, so only this
    // thread uses it.
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    for r in [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let (tail, tx) = (tail.clone(), tx.clone());
        readers.push(std::thread::spawn(move || {
            read_lines(r, |line| {
                tail.lock().expect(POISONED).push(line);
                let _ = tx.send(line.to_string());
            })
        }));
    }
    drop(tx);
    let mut watchdog = Watchdog::start(child.id(), Some(timeout));
    // The output ends when the hook (and everything it started) closed it, or was killed.
    for line in rx {
        progress.note(&format!("{prefix}: {line}"));
    }
    let status = child.wait();
    let fired = watchdog.stop();
    for r in readers {
        let _ = r.join();
    }
    let status = status.map_err(|e| Error::io(format!("wait for {what}"), e))?;
    if status.success() && !fired {
        return Ok(());
    }
    let tail = tail.lock().expect(POISONED);
    let mut message = format!(
        "failed: {}",
        describe_status(&status, if fired { Some(timeout) } else { None })
    );
    if tail.is_empty() {
        message += "; it printed nothing";
    } else {
        message += &format!("; the end of its output:\n{}", tail.indented());
    }
    message += match kind {
        HookKind::Before => {
            "\n  hint: the backup did not run; fix the hook or the service it drives"
        }
        _ => "\n  hint: fix the hook; the snapshot (if any) was kept",
    };
    Err(Error::Source { what, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::NoProgress;

    fn env() -> HookEnv {
        HookEnv {
            job: "app".into(),
            run_id: "r1".into(),
            repository: "/repo".into(),
            snapshot_id: Some("abc".into()),
            ..Default::default()
        }
    }

    #[test]
    fn env_vars_reach_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out");
        let h = format!(
            "echo \"$BACKUPD_JOB $BACKUPD_RUN_ID $BACKUPD_EVENT $BACKUPD_SNAPSHOT_ID $BACKUPD_REPOSITORY ${{BACKUPD_ERROR-none}}\" > {}",
            f.display()
        );
        run_hooks(
            HookKind::AfterSuccess,
            &[h],
            &env(),
            Duration::from_secs(30),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "app r1 success abc /repo none\n"
        );
    }

    #[test]
    fn failing_hook_names_itself_status_and_output() {
        let e = run_hooks(
            HookKind::Before,
            &[
                "echo starting; echo broken >&2; exit 4".into(),
                "touch /never".into(),
            ],
            &env(),
            Duration::from_secs(30),
            &NoProgress,
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("before hook `echo starting"), "{s}");
        assert!(
            s.contains("status 4") && s.contains("broken") && s.contains("starting"),
            "{s}"
        );
        assert_eq!(e.exit_code(), crate::error::exit::SOURCE_FAILED);
    }

    #[test]
    fn timed_out_hook_is_killed() {
        let e = run_hook(
            HookKind::Always,
            "echo waiting; sleep 60",
            &env(),
            Duration::from_millis(300),
            &NoProgress,
        )
        .unwrap_err();
        assert!(e.to_string().contains("timeout"), "{e}");
    }
}
