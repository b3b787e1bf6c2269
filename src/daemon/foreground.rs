//! Recording a run made outside the daemon (`backupctl run-job`) in its job's state file, as the daemon records its own runs (`outcome::settle`), under the state folder's lock.
//!
//! The daemon and `backupd run-due` hold the state folder's lock (`backupd.pid`) for as long as
//! they run and keep each job's state in memory, so a state file written beside them would be
//! overwritten. A foreground run therefore takes the same lock, only to load, settle and save
//! (the run itself goes on without it); when a daemon or run-due holds it, the run is not
//! recorded, and [`Recorded::No`] says so and how to run it through the daemon instead. A
//! recorded run is a manual run: it counts for health and history like the daemon's, is not
//! retried, sends no notification, and leaves a run the daemon was in the middle of (its
//! claim) for the daemon to settle. A damaged state file, or one of a newer backupd, is not
//! repaired here (only the daemon does that): the run is not recorded, and the reason says why.

use super::outcome::{self, FinishedRun, Policy, Stopped};
use super::{InstanceLock, LockError};
use crate::config::Config;
use crate::job::JobReport;
use crate::schedule::RunReason;
use crate::state::{JobState, Loaded, RunClaim, StateStore};
use chrono::Utc;

/// Whether a foreground run was recorded.
#[derive(Debug)]
pub(crate) enum Recorded {
    /// In the job's state file.
    Yes,
    /// Not recorded: why, and what to do (a sentence with a `\n  hint:` line).
    No(String),
}

/// Records the run `rep` of `job` (stopped by the user when `cancelled`) in the job's state
/// file under the state folder's lock.
pub(crate) fn record_foreground_run(cfg: &Config, rep: &JobReport, cancelled: bool) -> Recorded {
    let state_dir = cfg.paths().state_dir;
    let not = |why: String| {
        Recorded::No(format!(
            "run {} of job {} is not recorded in its history (health and status do not see it): {why}",
            rep.run_id, rep.job
        ))
    };
    let store = match StateStore::open(&state_dir) {
        Ok(s) => s,
        Err(e) => return not(format!("{e}\n  hint: run backupctl as the user backupd runs as, or set state_dir in the [daemon] table to a folder you may write")),
    };
    let _lock = match InstanceLock::for_record(&state_dir, &rep.job) {
        Ok(l) => l,
        Err(LockError::Held(why) | LockError::Io(why)) => return not(why),
    };
    let now = Utc::now();
    // Only the daemon repairs a state file: a bad one is reported and left alone.
    let before = match store.read(&rep.job, now) {
        Ok(Loaded::Good(s)) => s,
        Ok(Loaded::Missing) => JobState::new(&rep.job, now),
        Ok(Loaded::Bad(bad)) => return not(bad.for_reader()),
        Err(e) => return not(e.to_string()),
    };
    let state = settled(cfg, &before, rep, cancelled, now);
    match store.save(&state) {
        Ok(()) => Recorded::Yes,
        Err(e) => not(e.to_string()),
    }
}

/// The job's state after the foreground run `rep`: the daemon's settlement of a manual run,
/// with the run's own reason, and the daemon's claim (a run it was in the middle of) kept.
fn settled(
    cfg: &Config,
    before: &JobState,
    rep: &JobReport,
    cancelled: bool,
    now: chrono::DateTime<Utc>,
) -> JobState {
    let claim = RunClaim {
        run_id: rep.run_id.clone(),
        reason: RunReason::Manual { retry: false },
        slot: None,
        started: rep.start.with_timezone(&Utc),
    };
    let run = FinishedRun {
        job: &rep.job,
        run_id: &rep.run_id,
        claim: &claim,
        report: rep,
        stopped: Stopped::of(cancelled, false),
    };
    let policy = Policy {
        retries: cfg
            .jobs
            .get(&rep.job)
            .map(|j| j.retries.policy())
            .unwrap_or_default(),
        history_keep: cfg.daemon.history_keep,
    };
    let mut state = outcome::settle(before, &run, &policy, now).state;
    state.running = before.running.clone();
    if let Some(last) = state.history.last_mut() {
        if !rep.reason.is_empty() {
            last.reason = rep.reason.clone();
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;
    use crate::record::Outcome;
    use chrono::Local;
    use std::path::Path;

    fn config(dir: &Path) -> Config {
        std::fs::write(dir.join("pw"), "pw\n").unwrap();
        let text = format!(
            "[daemon]\nstate_dir = {:?}\n\n[repositories.r]\npath = {:?}\npassword_file = {:?}\n\n[jobs.app]\nrepository = \"r\"\npaths = [\"/srv\"]\nschedule = \"0 3 * * *\"\n",
            dir.join("state").display().to_string(),
            dir.join("repo").display().to_string(),
            dir.join("pw").display().to_string()
        );
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn report(outcome: Outcome, exit_code: i32, error: Option<&str>) -> JobReport {
        let start = Local::now();
        JobReport {
            job: "app".into(),
            run_id: "app-fg".into(),
            reason: "manual".into(),
            repository: "/repo".into(),
            start,
            end: start,
            duration_seconds: 1.0,
            snapshot_id: (outcome == Outcome::Success).then(|| "0123456789abcdef".into()),
            outcome,
            exit_code,
            parent: None,
            error: error.map(str::to_string),
            summary: None,
            warnings: Vec::new(),
            sources: Vec::new(),
            retention: None,
            verify_after: None,
            copied: None,
        }
    }

    #[test]
    fn a_foreground_run_leaves_a_damaged_state_file_to_the_daemon() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        let jobs = d.path().join("state/jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        std::fs::write(jobs.join("app.json"), "{\"version\": 1, \"job\": ").unwrap();
        let r = record_foreground_run(&cfg, &report(Outcome::Success, exit::OK, None), false);
        match r {
            Recorded::No(why) => assert!(
                why.contains("app.json") && why.contains("left as it is"),
                "{why}"
            ),
            Recorded::Yes => panic!("recorded over a damaged state file"),
        }
        let names: Vec<_> = std::fs::read_dir(&jobs).unwrap().collect();
        assert_eq!(names.len(), 1, "nothing was moved or written");
        assert!(jobs.join("app.json").exists());
    }

    #[test]
    fn a_failed_foreground_run_counts_is_not_retried_and_keeps_the_daemons_claim() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        let mut before = JobState::new("app", Utc::now());
        before.running = Some(RunClaim {
            run_id: "app-daemon".into(),
            reason: RunReason::Manual { retry: false },
            slot: None,
            started: Utc::now(),
        });
        let rep = report(Outcome::Failed, exit::FAILURE, Some("no such path"));
        let st = settled(&cfg, &before, &rep, false, Utc::now());
        assert_eq!(st.consecutive_failures, 1);
        assert!(st.retry.is_none(), "a manual run is not retried");
        assert_eq!(
            st.running.as_ref().map(|c| c.run_id.as_str()),
            Some("app-daemon")
        );
        let rec = st.history.last().unwrap();
        assert_eq!(
            (rec.run_id.as_str(), &rec.outcome),
            ("app-fg", &Outcome::Failed)
        );

        // A run the user stopped (Ctrl-C) is cancelled, not a failure.
        let rep = report(Outcome::Failed, exit::INTERRUPTED, Some("interrupted"));
        let st = settled(&cfg, &st, &rep, true, Utc::now());
        assert_eq!(st.history.last().unwrap().outcome, Outcome::Cancelled);
        assert_eq!(st.consecutive_failures, 1);
    }

    #[test]
    fn a_foreground_run_is_saved_in_the_state_file_with_its_reason() {
        let d = tempfile::tempdir().unwrap();
        let cfg = config(d.path());
        let mut rep = report(Outcome::Success, exit::OK, None);
        rep.reason = "before the upgrade".into();
        let r = record_foreground_run(&cfg, &rep, false);
        assert!(matches!(r, Recorded::Yes), "{r:?}");
        let Loaded::Good(st) = StateStore::at(&d.path().join("state"))
            .read("app", Utc::now())
            .unwrap()
        else {
            panic!("no state saved")
        };
        assert_eq!(st.history.len(), 1);
        assert_eq!(st.history[0].reason, "before the upgrade");
        assert!(st.last_success.is_some());
        // The schedule is left for the daemon to see first (it rebases a state without one).
        assert!(st.schedule.is_none());
    }
}
