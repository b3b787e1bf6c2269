//! What a run's end does to its job, decided without I/O: the job's new state, the record the history keeps, and the notifications that fire ([`settle`], and [`settle_lost`] for a run the daemon died during).
//!
//! The event loop (`core`) gathers the facts (the job's state, the run's report, how it was
//! stopped, the retry policy, the time), calls these functions, and only then does I/O: it
//! writes the state file, sends the notifications, logs and rewrites the metrics.

use crate::config::notify::Event;
use crate::error::exit;
use crate::job::JobReport;
use crate::record::{Outcome, RunRecord};
use crate::schedule::{PendingRetry, RetryPolicy, RunReason};
use crate::state::{JobState, RunClaim};
use chrono::{DateTime, Utc};

/// Who stopped a run before its end, if anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Nobody: the run ended by itself.
    No,
    /// The daemon is stopping (the run is resumed at the next start).
    ByShutdown,
    /// `backupctl cancel` (it wins over a shutdown that came after it).
    ByUser,
}

impl Stopped {
    /// From the run's two flags: a user's cancel wins over the daemon's stop.
    pub fn of(cancelled_by_user: bool, stopping: bool) -> Stopped {
        match (cancelled_by_user, stopping) {
            (true, _) => Stopped::ByUser,
            (false, true) => Stopped::ByShutdown,
            (false, false) => Stopped::No,
        }
    }
}

/// A run that ended, as the event loop knows it.
#[derive(Debug, Clone, Copy)]
pub struct FinishedRun<'a> {
    pub job: &'a str,
    pub run_id: &'a str,
    /// What the daemon wrote before the run started: why it ran, for which slot.
    pub claim: &'a RunClaim,
    pub report: &'a JobReport,
    pub stopped: Stopped,
}

/// The job's settings [`settle`] applies.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub retries: RetryPolicy,
    /// How many runs the history keeps.
    pub history_keep: usize,
}

/// Which way a run's end went, for the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Success or partial: the failures are reset and any pending retry dropped.
    Succeeded,
    /// Stopped by `backupctl cancel` (or failed after it): no retry is scheduled (a pending one
    /// stays). A run the cancel stopped is not counted as a failure.
    CancelledByUser,
    /// A manual run failed: manual runs are not retried (a pending retry of a slot stays).
    NotRetried,
    /// Failed while the daemon stops (or it died): resumed by a retry due at once.
    Resumes,
    /// Failed: this retry is pending.
    Retry(PendingRetry),
    /// Failed, and no retries are left; the next regular slot runs as scheduled.
    GaveUp,
}

/// One notification to send: the event and its sentence for people.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event: Event,
    pub message: String,
}

/// What a run's end does: [`settle`]'s answer.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The job's state after the run (the record already in its history).
    pub state: JobState,
    /// The record appended to the history.
    pub record: RunRecord,
    pub verdict: Verdict,
    /// The notifications to send, in order.
    pub notices: Vec<Notice>,
}

/// Settles a finished run: the job's state before it, the run, the job's policy and the time
/// it ended give the new state, the history record and the notifications.
pub fn settle(
    before: &JobState,
    run: &FinishedRun,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Settlement {
    let rep = run.report;
    let record = record_of(run, now);
    let ok = rep.outcome != Outcome::Failed && rep.error.is_none();
    let mut state = before.clone();
    state.running = None;
    if rep.snapshot_id.is_some() {
        state.last_snapshot = rep.snapshot_id.clone();
    }
    let verdict = if ok {
        state.consecutive_failures = 0;
        state.last_success = Some(now);
        state.retry = None;
        state.overdue_notified = None;
        Verdict::Succeeded
    } else {
        // A run the user's cancel stopped is the user's decision, not a failure.
        if record.outcome != Outcome::Cancelled {
            state.consecutive_failures += 1;
        }
        let verdict = failure_verdict(run, &policy.retries, now);
        match &verdict {
            Verdict::Retry(r) => state.retry = Some(r.clone()),
            Verdict::GaveUp => state.retry = None,
            Verdict::Resumes => {
                let error = rep.error.as_deref().unwrap_or("failed");
                state.retry = Some(resume_retry(policy.retries.attempts, run.claim, error, now));
            }
            Verdict::CancelledByUser | Verdict::NotRetried | Verdict::Succeeded => {}
        }
        verdict
    };
    state.push_history(record.clone(), policy.history_keep);
    let notices = notices_of(run, &record, before, &state, &verdict);
    Settlement {
        state,
        record,
        verdict,
        notices,
    }
}

/// Where a failed run goes: nowhere after a user's cancel, back at the next start after the
/// daemon's stop, nowhere for a manual run, else the retry the policy gives (a failed retry
/// earns the next one).
fn failure_verdict(run: &FinishedRun, retries: &RetryPolicy, now: DateTime<Utc>) -> Verdict {
    match run.stopped {
        Stopped::ByUser => return Verdict::CancelledByUser,
        Stopped::ByShutdown => return Verdict::Resumes,
        Stopped::No => {}
    }
    if matches!(run.claim.reason, RunReason::Manual { retry: false }) {
        return Verdict::NotRetried;
    }
    let previous = match &run.claim.reason {
        RunReason::Retry {
            number,
            of,
            slot,
            last_error,
        } => Some(PendingRetry {
            number: *number,
            of: *of,
            due: now,
            slot: *slot,
            last_error: last_error.clone(),
        }),
        _ => None,
    };
    let error = first_line(run.report.error.as_deref().unwrap_or("failed"));
    match retries.after_failure(run.claim.slot, previous.as_ref(), now, &error) {
        Some(r) => Verdict::Retry(r),
        None => Verdict::GaveUp,
    }
}

/// The history record of a finished run.
fn record_of(run: &FinishedRun, now: DateTime<Utc>) -> RunRecord {
    let rep = run.report;
    let interrupted = rep.exit_code == exit::INTERRUPTED;
    let outcome = match (interrupted, run.stopped) {
        (true, Stopped::ByUser) => Outcome::Cancelled,
        (true, _) => Outcome::Interrupted,
        (false, _) => rep.outcome.clone(),
    };
    let (missed, first_missed) = missed_of(&run.claim.reason);
    let sum = rep.summary.as_ref();
    RunRecord {
        run_id: run.run_id.to_string(),
        job: run.job.to_string(),
        reason: run.claim.reason.describe(),
        slot: run.claim.slot.map(|s| s.label()),
        missed,
        first_missed,
        // When the run itself began (after waiting for a run slot or the repository).
        start: rep.start.with_timezone(&Utc),
        end: now,
        duration_seconds: rep.duration_seconds,
        outcome,
        exit_code: rep.exit_code,
        snapshot_id: rep.snapshot_id.clone(),
        error: rep.error.clone(),
        files_new: sum.map(|s| s.files_new),
        files_changed: sum.map(|s| s.files_changed),
        data_added: sum
            .map(|s| s.data_added)
            .or(rep.copied.as_ref().map(|c| c.bytes_copied)),
        bytes_processed: sum.map(|s| s.total_bytes_processed),
        warnings: rep.warnings.len(),
        copied: rep.copied.as_ref().map(|c| c.copied.len()),
    }
}

/// The notifications a run's end sends: none after a user's cancel or a failure the daemon's
/// stop caused; success (or warning, for a partial snapshot) and recovered (after failures or
/// an overdue notice); or failure, saying which retry follows.
fn notices_of(
    run: &FinishedRun,
    rec: &RunRecord,
    before: &JobState,
    after: &JobState,
    verdict: &Verdict,
) -> Vec<Notice> {
    let job = &what(run.job);
    let ok = *verdict == Verdict::Succeeded;
    let notice = |event, message| Notice { event, message };
    match (run.stopped, ok) {
        (Stopped::ByUser, _) | (Stopped::ByShutdown, false) => Vec::new(),
        (_, true) => {
            let mut v = Vec::new();
            if run.report.outcome == Outcome::Partial {
                v.push(notice(Event::Warning, format!("{job} made a partial snapshot ({}): {} file(s) could not be read consistently", rec.reason, rec.warnings)));
            } else {
                v.push(notice(
                    Event::Success,
                    format!(
                        "{job} succeeded ({}) in {:.1} s",
                        rec.reason, rec.duration_seconds
                    ),
                ));
            }
            let prior_failures = before.consecutive_failures;
            if prior_failures > 0 || before.overdue_notified.is_some() {
                v.push(notice(
                    Event::Recovered,
                    format!(
                        "{job} recovered: it succeeded again after {prior_failures} failed run(s)"
                    ),
                ));
            }
            v
        }
        (_, false) => {
            let retry_note = match &after.retry {
                _ if *verdict == Verdict::NotRetried => "; not retried (a manual run)".to_string(),
                Some(r) => format!(
                    "; retry {} of {} at {}",
                    r.number,
                    r.of,
                    r.due.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => "; no retries left".to_string(),
            };
            vec![notice(
                Event::Failure,
                format!(
                    "{job} failed ({}): {}{retry_note}",
                    rec.reason,
                    first_line(rec.error.as_deref().unwrap_or("failed")),
                ),
            )]
        }
    }
}

/// Settles a run that was in progress when the daemon stopped without recording its end
/// (killed, crashed, power loss): recorded as interrupted, counted as a failure, and resumed
/// by a retry due at once. No notification is sent.
pub fn settle_lost(
    before: &JobState,
    claim: &RunClaim,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Settlement {
    let error = format!(
        "backupd stopped during this run (started {}; it was killed, crashed or the machine went down); nothing half-written is visible in the repository",
        claim.started.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let (missed, first_missed) = missed_of(&claim.reason);
    let record = RunRecord {
        slot: claim.slot.map(|s| s.label()),
        missed,
        first_missed,
        end: now,
        duration_seconds: (now - claim.started).num_milliseconds() as f64 / 1000.0,
        error: Some(error.clone()),
        ..RunRecord::new(
            &claim.run_id,
            &before.job,
            claim.reason.describe(),
            claim.started,
            Outcome::Interrupted,
            exit::INTERRUPTED,
        )
    };
    let mut state = before.clone();
    state.running = None;
    state.push_history(record.clone(), policy.history_keep);
    state.consecutive_failures += 1;
    state.retry = Some(resume_retry(policy.retries.attempts, claim, &error, now));
    Settlement {
        state,
        record,
        verdict: Verdict::Resumes,
        notices: Vec::new(),
    }
}

/// The retry that resumes a run the daemon's stop (or crash) interrupted: due at once, and
/// always at least one, whatever the job's retry settings.
fn resume_retry(attempts: u32, claim: &RunClaim, error: &str, now: DateTime<Utc>) -> PendingRetry {
    let number = match &claim.reason {
        RunReason::Retry { number, .. } => *number,
        _ => 1,
    };
    PendingRetry {
        number,
        of: attempts.max(number),
        due: now,
        slot: claim.slot,
        last_error: first_line(error),
    }
}

/// A job as notifications name it: "backup job app", or "destination offsite of job app"
/// for a destination job (`app@offsite`).
pub fn what(job: &str) -> String {
    match job.split_once(crate::config::destinations::SEPARATOR) {
        Some((j, repo)) => format!("destination {repo} of job {j}"),
        None => format!("backup job {job}"),
    }
}

/// The first line of an error (what retries and notifications show).
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// How many slots a run stands for (a catch-up: all it coalesced) and the oldest of them.
fn missed_of(r: &RunReason) -> (usize, Option<String>) {
    match r {
        RunReason::CatchUp {
            missed,
            first_missed,
            ..
        } => (*missed, Some(first_missed.label())),
        _ => (0, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::snapshot::SnapshotSummary;
    use crate::schedule::Slot;
    use chrono::{Local, NaiveDate, TimeZone};
    use std::time::Duration;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap()
    }

    fn slot(h: u32, m: u32) -> Slot {
        Slot {
            wall: NaiveDate::from_ymd_opt(2026, 3, 1)
                .unwrap()
                .and_hms_opt(h, m, 0)
                .unwrap(),
            at: t(h, m),
            zone: None,
        }
    }

    fn policy(attempts: u32) -> Policy {
        Policy {
            retries: RetryPolicy {
                attempts,
                delay: Duration::from_secs(300),
                factor: 2.0,
                max_delay: Duration::from_secs(3600),
            },
            history_keep: 50,
        }
    }

    fn state() -> JobState {
        JobState::new("app", t(0, 0))
    }

    fn claim(reason: RunReason, slot: Option<Slot>) -> RunClaim {
        RunClaim {
            run_id: "app-1".into(),
            reason,
            slot,
            started: t(2, 30),
        }
    }

    fn scheduled() -> RunClaim {
        claim(
            RunReason::Scheduled { slot: slot(2, 30) },
            Some(slot(2, 30)),
        )
    }

    fn retry_claim(number: u32, of: u32) -> RunClaim {
        let reason = RunReason::Retry {
            number,
            of,
            slot: Some(slot(2, 30)),
            last_error: "disk on fire".into(),
        };
        claim(reason, Some(slot(2, 30)))
    }

    fn report(outcome: Outcome, exit_code: i32, error: Option<&str>) -> JobReport {
        let start = t(2, 31).with_timezone(&Local);
        let snapshot_id = (outcome != Outcome::Failed).then(|| "0123456789abcdef".into());
        JobReport {
            job: "app".into(),
            run_id: "app-1".into(),
            reason: String::new(),
            repository: "/repo".into(),
            start,
            end: start,
            duration_seconds: 12.5,
            outcome,
            exit_code,
            snapshot_id,
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

    fn success() -> JobReport {
        report(Outcome::Success, exit::OK, None)
    }

    fn failure() -> JobReport {
        report(
            Outcome::Failed,
            exit::FAILURE,
            Some("the repository is gone\n  hint: look"),
        )
    }

    fn interrupted() -> JobReport {
        report(
            Outcome::Failed,
            exit::INTERRUPTED,
            Some("interrupted at a safe point"),
        )
    }

    fn run<'a>(claim: &'a RunClaim, report: &'a JobReport, stopped: Stopped) -> FinishedRun<'a> {
        FinishedRun {
            job: "app",
            run_id: "app-1",
            claim,
            report,
            stopped,
        }
    }

    fn events(s: &Settlement) -> Vec<Event> {
        s.notices.iter().map(|n| n.event).collect()
    }

    fn now() -> DateTime<Utc> {
        t(2, 45)
    }

    fn pending(number: u32, of: u32, slot: Option<Slot>) -> PendingRetry {
        PendingRetry {
            number,
            of,
            due: t(5, 0),
            slot,
            last_error: "earlier".into(),
        }
    }

    #[test]
    fn stopped_user_cancel_wins_over_shutdown() {
        assert_eq!(Stopped::of(true, true), Stopped::ByUser);
        assert_eq!(Stopped::of(true, false), Stopped::ByUser);
        assert_eq!(Stopped::of(false, true), Stopped::ByShutdown);
        assert_eq!(Stopped::of(false, false), Stopped::No);
    }

    #[test]
    fn success_resets_the_failures_records_the_success_and_fires_success() {
        let mut before = state();
        before.running = Some(scheduled());
        let (c, r) = (scheduled(), success());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(3), now());
        assert_eq!(s.verdict, Verdict::Succeeded);
        assert!(s.state.running.is_none());
        assert_eq!(s.state.consecutive_failures, 0);
        assert_eq!(s.state.last_success, Some(now()));
        assert_eq!(s.state.last_snapshot.as_deref(), Some("0123456789abcdef"));
        assert!(s.state.retry.is_none());
        assert_eq!(s.state.history, vec![s.record.clone()]);
        assert_eq!(events(&s), vec![Event::Success]);
        assert_eq!(
            s.notices[0].message,
            "backup job app succeeded (scheduled 2026-03-01 02:30) in 12.5 s"
        );
    }

    #[test]
    fn success_after_failures_fires_success_then_recovered() {
        let mut before = state();
        before.consecutive_failures = 2;
        before.retry = Some(pending(1, 3, Some(slot(2, 30))));
        let (c, r) = (retry_claim(2, 3), success());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(3), now());
        assert_eq!(s.state.consecutive_failures, 0);
        assert!(s.state.retry.is_none());
        assert_eq!(events(&s), vec![Event::Success, Event::Recovered]);
        assert_eq!(
            s.notices[1].message,
            "backup job app recovered: it succeeded again after 2 failed run(s)"
        );
    }

    #[test]
    fn success_after_an_overdue_notice_fires_recovered_and_ends_the_episode() {
        let mut before = state();
        before.overdue_notified = Some(t(1, 0));
        let (c, r) = (scheduled(), success());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(0), now());
        assert!(s.state.overdue_notified.is_none());
        assert_eq!(events(&s), vec![Event::Success, Event::Recovered]);
        assert!(s.notices[1].message.contains("after 0 failed run(s)"));
    }

    #[test]
    fn failure_keeps_the_overdue_episode() {
        let mut before = state();
        before.overdue_notified = Some(t(1, 0));
        let (c, r) = (scheduled(), failure());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(0), now());
        assert_eq!(s.state.overdue_notified, Some(t(1, 0)));
    }

    #[test]
    fn partial_counts_as_a_success_and_fires_warning_instead_of_success() {
        let mut before = state();
        before.consecutive_failures = 1;
        let mut r = report(Outcome::Partial, exit::PARTIAL, None);
        r.warnings = vec!["a.db locked".into(), "b.db locked".into()];
        let c = scheduled();
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(3), now());
        assert_eq!(s.verdict, Verdict::Succeeded);
        assert_eq!(s.record.outcome, Outcome::Partial);
        assert_eq!(s.record.warnings, 2);
        assert_eq!(s.state.consecutive_failures, 0);
        assert_eq!(s.state.last_success, Some(now()));
        assert_eq!(events(&s), vec![Event::Warning, Event::Recovered]);
        assert_eq!(s.notices[0].message, "backup job app made a partial snapshot (scheduled 2026-03-01 02:30): 2 file(s) could not be read consistently");
    }

    #[test]
    fn failure_with_retries_left_schedules_retry_1_at_the_policy_delay() {
        let (c, r) = (scheduled(), failure());
        let s = settle(&state(), &run(&c, &r, Stopped::No), &policy(3), now());
        let want = PendingRetry {
            number: 1,
            of: 3,
            due: now() + chrono::Duration::seconds(300),
            slot: Some(slot(2, 30)),
            last_error: "the repository is gone".into(),
        };
        assert_eq!(s.verdict, Verdict::Retry(want.clone()));
        assert_eq!(s.state.retry, Some(want));
        assert_eq!(s.state.consecutive_failures, 1);
        assert!(s.state.last_success.is_none());
        assert_eq!(s.record.outcome, Outcome::Failed);
        assert_eq!(events(&s), vec![Event::Failure]);
        assert_eq!(s.notices[0].message, "backup job app failed (scheduled 2026-03-01 02:30): the repository is gone; retry 1 of 3 at 2026-03-01 02:50:00 UTC");
    }

    #[test]
    fn failed_retry_schedules_the_next_one_with_the_grown_delay() {
        let mut before = state();
        before.consecutive_failures = 1;
        let (c, r) = (retry_claim(1, 3), failure());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(3), now());
        let Verdict::Retry(next) = &s.verdict else {
            panic!("{:?}", s.verdict)
        };
        assert_eq!((next.number, next.of), (2, 3));
        assert_eq!(next.due, now() + chrono::Duration::seconds(600));
        assert_eq!(next.slot, Some(slot(2, 30)));
        assert_eq!(s.state.consecutive_failures, 2);
        assert_eq!(s.record.reason, "retry 1 of 3 for 2026-03-01 02:30");
    }

    #[test]
    fn failure_with_retries_exhausted_gives_up_and_fires_failure() {
        let mut before = state();
        before.consecutive_failures = 3;
        let (c, r) = (retry_claim(3, 3), failure());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(3), now());
        assert_eq!(s.verdict, Verdict::GaveUp);
        assert!(s.state.retry.is_none());
        assert_eq!(s.state.consecutive_failures, 4);
        assert_eq!(events(&s), vec![Event::Failure]);
        assert!(
            s.notices[0]
                .message
                .ends_with(": the repository is gone; no retries left"),
            "{}",
            s.notices[0].message
        );
    }

    #[test]
    fn failure_with_no_retries_configured_gives_up_at_once() {
        let (c, r) = (scheduled(), failure());
        let s = settle(&state(), &run(&c, &r, Stopped::No), &policy(0), now());
        assert_eq!(s.verdict, Verdict::GaveUp);
        assert!(s.state.retry.is_none());
    }

    #[test]
    fn an_error_on_a_successful_outcome_is_a_failure_that_keeps_its_snapshot() {
        // An after_success hook failed: the snapshot stays and the run is failed.
        let mut r = report(Outcome::Success, exit::SOURCE_FAILED, Some("hook failed"));
        r.snapshot_id = Some("feedfacecafebeef".into());
        let c = scheduled();
        let mut before = state();
        before.last_snapshot = Some("older".into());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(1), now());
        assert!(matches!(s.verdict, Verdict::Retry(_)));
        assert_eq!(s.state.consecutive_failures, 1);
        assert_eq!(s.state.last_snapshot.as_deref(), Some("feedfacecafebeef"));
        assert_eq!(s.record.outcome, Outcome::Success);
        assert_eq!(events(&s), vec![Event::Failure]);
    }

    #[test]
    fn a_failure_without_a_snapshot_keeps_the_last_one() {
        let mut before = state();
        before.last_snapshot = Some("older".into());
        let (c, r) = (scheduled(), failure());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(1), now());
        assert_eq!(s.state.last_snapshot.as_deref(), Some("older"));
    }

    #[test]
    fn user_cancel_records_cancelled_is_no_failure_schedules_no_retry_and_notifies_nothing() {
        let mut before = state();
        before.consecutive_failures = 1;
        before.last_success = Some(t(1, 0));
        let (c, r) = (scheduled(), interrupted());
        let s = settle(&before, &run(&c, &r, Stopped::ByUser), &policy(3), now());
        assert_eq!(s.verdict, Verdict::CancelledByUser);
        assert_eq!(s.record.outcome, Outcome::Cancelled);
        assert_eq!(s.record.exit_code, exit::INTERRUPTED);
        assert!(s.state.retry.is_none());
        // The user's decision, not a failure: the count and the last success stay as they were.
        assert_eq!(s.state.consecutive_failures, 1);
        assert_eq!(s.state.last_success, Some(t(1, 0)));
        assert!(s.notices.is_empty());
    }

    #[test]
    fn user_cancel_of_a_manual_run_keeps_the_pending_retry() {
        let mut before = state();
        before.retry = Some(pending(1, 3, Some(slot(2, 30))));
        let (c, r) = (
            claim(RunReason::Manual { retry: false }, None),
            interrupted(),
        );
        let s = settle(&before, &run(&c, &r, Stopped::ByUser), &policy(3), now());
        assert_eq!(s.state.retry, before.retry);
    }

    #[test]
    fn user_cancel_after_the_last_safe_point_records_the_success_but_notifies_nothing() {
        let mut before = state();
        before.consecutive_failures = 2;
        let (c, r) = (scheduled(), success());
        let s = settle(&before, &run(&c, &r, Stopped::ByUser), &policy(3), now());
        assert_eq!(s.verdict, Verdict::Succeeded);
        assert_eq!(s.record.outcome, Outcome::Success);
        assert_eq!(s.state.consecutive_failures, 0);
        // today: no success and no recovered notification, although the run succeeded.
        assert!(s.notices.is_empty());
    }

    #[test]
    fn user_cancel_that_failed_otherwise_is_recorded_failed_not_cancelled() {
        let (c, r) = (scheduled(), failure());
        let s = settle(&state(), &run(&c, &r, Stopped::ByUser), &policy(3), now());
        assert_eq!(s.record.outcome, Outcome::Failed);
        assert_eq!(s.verdict, Verdict::CancelledByUser);
        assert!(s.state.retry.is_none());
        assert!(s.notices.is_empty());
    }

    #[test]
    fn shutdown_interrupt_resumes_with_retry_1_due_now_even_with_no_retries_configured() {
        let (c, r) = (scheduled(), interrupted());
        let s = settle(
            &state(),
            &run(&c, &r, Stopped::ByShutdown),
            &policy(0),
            now(),
        );
        assert_eq!(s.verdict, Verdict::Resumes);
        assert_eq!(s.record.outcome, Outcome::Interrupted);
        assert_eq!(
            s.state.retry,
            Some(PendingRetry {
                number: 1,
                of: 1,
                due: now(),
                slot: Some(slot(2, 30)),
                last_error: "interrupted at a safe point".into(),
            })
        );
        assert_eq!(s.state.consecutive_failures, 1);
        assert!(s.notices.is_empty());
    }

    #[test]
    fn shutdown_interrupt_of_a_retry_resumes_the_same_retry() {
        let (c, r) = (retry_claim(2, 3), interrupted());
        let s = settle(
            &state(),
            &run(&c, &r, Stopped::ByShutdown),
            &policy(3),
            now(),
        );
        let retry = s.state.retry.expect("resumed");
        assert_eq!((retry.number, retry.of, retry.due), (2, 3, now()));
    }

    #[test]
    fn shutdown_during_a_run_that_failed_anyway_resumes_it_without_a_notification() {
        let (c, r) = (scheduled(), failure());
        let s = settle(
            &state(),
            &run(&c, &r, Stopped::ByShutdown),
            &policy(3),
            now(),
        );
        assert_eq!(s.record.outcome, Outcome::Failed);
        assert_eq!(s.verdict, Verdict::Resumes);
        assert_eq!(s.state.retry.as_ref().map(|r| r.due), Some(now()));
        assert!(s.notices.is_empty());
    }

    #[test]
    fn shutdown_during_a_run_that_succeeded_notifies_the_success() {
        let (c, r) = (scheduled(), success());
        let s = settle(
            &state(),
            &run(&c, &r, Stopped::ByShutdown),
            &policy(3),
            now(),
        );
        assert_eq!(s.verdict, Verdict::Succeeded);
        assert_eq!(events(&s), vec![Event::Success]);
    }

    #[test]
    fn interrupted_exit_without_a_cancel_is_an_ordinary_failure() {
        let (c, r) = (scheduled(), interrupted());
        let s = settle(&state(), &run(&c, &r, Stopped::No), &policy(2), now());
        assert_eq!(s.record.outcome, Outcome::Interrupted);
        assert!(matches!(s.verdict, Verdict::Retry(_)));
        assert_eq!(events(&s), vec![Event::Failure]);
    }

    #[test]
    fn a_failed_manual_run_is_not_retried() {
        let (c, r) = (claim(RunReason::Manual { retry: false }, None), failure());
        let s = settle(&state(), &run(&c, &r, Stopped::No), &policy(2), now());
        assert!(s.state.retry.is_none(), "{:?}", s.state.retry);
        assert_eq!(s.state.consecutive_failures, 1);
        assert_eq!(events(&s), vec![Event::Failure]);
        assert_eq!(
            s.notices[0].message,
            "backup job app failed (manual): the repository is gone; not retried (a manual run)"
        );
    }

    #[test]
    fn a_failed_manual_run_keeps_the_pending_retry_of_a_slot() {
        let mut before = state();
        before.retry = Some(pending(2, 3, Some(slot(2, 30))));
        let (c, r) = (claim(RunReason::Manual { retry: false }, None), failure());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(3), now());
        assert_eq!(s.state.retry, before.retry);
        assert!(
            s.notices[0]
                .message
                .ends_with("; not retried (a manual run)"),
            "{}",
            s.notices[0].message
        );
    }

    #[test]
    fn a_failed_manual_run_the_user_asked_to_retry_is_retried() {
        let reason = RunReason::Manual { retry: true };
        let (c, r) = (claim(reason, None), failure());
        let s = settle(&state(), &run(&c, &r, Stopped::No), &policy(2), now());
        let retry = s.state.retry.expect("retried");
        assert_eq!((retry.number, retry.of, retry.slot), (1, 2, None));
        assert!(s.notices[0]
            .message
            .ends_with("; retry 1 of 2 at 2026-03-01 02:50:00 UTC"));
    }

    #[test]
    fn a_failed_catch_up_run_is_retried() {
        let reason = RunReason::CatchUp {
            slot: slot(2, 30),
            missed: 2,
            first_missed: slot(1, 30),
            cause: "while backupd was stopped".into(),
        };
        let (c, r) = (claim(reason, Some(slot(2, 30))), failure());
        let s = settle(&state(), &run(&c, &r, Stopped::No), &policy(2), now());
        let retry = s.state.retry.expect("retried");
        assert_eq!(
            (retry.number, retry.of, retry.slot),
            (1, 2, Some(slot(2, 30)))
        );
    }

    #[test]
    fn successful_manual_run_drops_a_pending_retry() {
        let mut before = state();
        before.retry = Some(pending(1, 3, Some(slot(2, 30))));
        let (c, r) = (claim(RunReason::Manual { retry: false }, None), success());
        let s = settle(&before, &run(&c, &r, Stopped::No), &policy(3), now());
        assert!(s.state.retry.is_none());
    }

    #[test]
    fn the_record_carries_the_report_and_the_claim() {
        let first = slot(0, 30);
        let reason = RunReason::CatchUp {
            slot: slot(2, 30),
            missed: 3,
            first_missed: first,
            cause: "while backupd was stopped".into(),
        };
        let c = claim(reason, Some(slot(2, 30)));
        let mut r = success();
        r.summary = Some(SnapshotSummary {
            files_new: 4,
            files_changed: 5,
            data_added: 6,
            total_bytes_processed: 7,
            ..Default::default()
        });
        let s = settle(&state(), &run(&c, &r, Stopped::No), &policy(0), now());
        let rec = &s.record;
        assert_eq!((rec.run_id.as_str(), rec.job.as_str()), ("app-1", "app"));
        assert_eq!(rec.slot.as_deref(), Some("2026-03-01 02:30"));
        assert_eq!(
            (rec.missed, rec.first_missed.as_deref()),
            (3, Some("2026-03-01 00:30"))
        );
        assert_eq!((rec.start, rec.end), (t(2, 31), now()));
        assert_eq!(rec.duration_seconds, 12.5);
        assert_eq!(rec.exit_code, exit::OK);
        assert_eq!(rec.snapshot_id.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            (
                rec.files_new,
                rec.files_changed,
                rec.data_added,
                rec.bytes_processed
            ),
            (Some(4), Some(5), Some(6), Some(7))
        );
    }

    #[test]
    fn the_history_keeps_at_most_history_keep_runs() {
        let mut before = state();
        let (c, r) = (scheduled(), success());
        let p = Policy {
            history_keep: 2,
            ..policy(0)
        };
        for _ in 0..3 {
            before = settle(&before, &run(&c, &r, Stopped::No), &p, now()).state;
        }
        assert_eq!(before.history.len(), 2);
    }

    #[test]
    fn a_lost_run_is_recorded_interrupted_and_resumed_at_once() {
        let mut before = state();
        before.running = Some(retry_claim(2, 2));
        let c = retry_claim(2, 2);
        let s = settle_lost(&before, &c, &policy(1), now());
        assert_eq!(s.verdict, Verdict::Resumes);
        assert!(s.state.running.is_none());
        assert_eq!(s.record.outcome, Outcome::Interrupted);
        assert_eq!(s.record.exit_code, exit::INTERRUPTED);
        assert_eq!((s.record.start, s.record.end), (t(2, 30), now()));
        assert_eq!(s.record.duration_seconds, 900.0);
        assert!(s
            .record
            .error
            .as_deref()
            .unwrap()
            .starts_with("backupd stopped during this run (started 2026-03-01 02:30:00 UTC;"));
        assert_eq!(s.state.consecutive_failures, 1);
        let retry = s.state.retry.expect("resumed");
        // The retry number is kept, and `of` never falls below it.
        assert_eq!((retry.number, retry.of, retry.due), (2, 2, now()));
        assert!(retry
            .last_error
            .starts_with("backupd stopped during this run"));
        assert!(s.notices.is_empty());
    }
}
