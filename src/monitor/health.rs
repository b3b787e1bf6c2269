//! The health model ("know it is working"): the pure rules that turn a job's facts into healthy / warning / error with reasons, and run statistics. No I/O, no clock reads.
//!
//! # The rules
//!
//! A job's level is the worst of these, each with a reason (a sentence saying what, since
//! when, and what to do):
//!
//! - **overdue**: the schedule's slots in `(max(last_success, baseline), now - grace]` are
//!   *missed*, except a slot whose run is in progress (`running_since <= slot.at + grace`).
//!   `overdue_error_slots` or more of them is an error, `overdue_warning_slots` or more a
//!   warning. Since only `last_success` and `now` matter, slots missed while the daemon was
//!   stopped (or the machine off) count like any other. A manual-only job is never overdue.
//! - **failures**: `consecutive_failures` at `failures_error` or more is an error, at
//!   `failures_warning` or more a warning; the reason quotes the last error.
//! - **partial**: the last run was `partial` and `partial_is_warning` is set: a warning.
//! - **check**: the newest repository check failed: an error.
//! - **size**: the repository is at 90 % of `max_repository_bytes` or more: a warning; at
//!   100 % or more: an error.
//! - **room**: the storage that holds the repository (its file system, or a provider's quota,
//!   where the storage tells) has less than `min_free_space` left: a warning; less than a
//!   tenth of it: an error. Backups fail when it is full, so this comes first.
//!
//! A threshold of 0 switches its rule off.
//!
//! A run stopped by `backupctl cancel` is the user's decision: neither a success nor a
//! failure. The rules judge the runs before it (its error is never quoted), and a note says
//! "the newest run was cancelled by the user at ...". Notes are facts that do not change the
//! level.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::health::HealthConfig;
use crate::record::{Outcome, RunRecord};
use crate::schedule::Schedule;

/// How a job (or the whole daemon) is doing. Ordered: `Healthy < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing to do.
    Healthy,
    /// Look at it soon.
    Warning,
    /// Backups are not being made (or the repository is in trouble): act now.
    Error,
}

impl Level {
    /// The exit code of a health command: 0 healthy, 1 warning, 2 error (Nagios-style).
    pub fn exit_code(self) -> i32 {
        match self {
            Level::Healthy => 0,
            Level::Warning => 1,
            Level::Error => 2,
        }
    }

    /// "healthy", "warning" or "error" (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the daemon knows about a job's repository: its newest failed verification drill and
/// its size.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepoFacts<'a> {
    pub last_check_failed: Option<&'a str>,
    pub repository_bytes: Option<u64>,
    /// The room left on its storage, where the storage tells.
    pub space: Option<crate::repo::backend::Space>,
}

/// What the daemon knows about a job, for [`job_health`].
#[derive(Debug, Clone, Copy)]
pub struct JobFacts<'a> {
    /// The job's name, for the commands the reasons suggest (`backupctl history NAME`).
    pub job: &'a str,
    /// None: a manual-only job (never overdue).
    pub schedule: Option<&'a Schedule>,
    /// When the daemon first saw the job (with this schedule): slots before it are not held
    /// against it.
    pub baseline: DateTime<Utc>,
    /// The end of the newest run that was `success` or `partial`.
    pub last_success: Option<DateTime<Utc>>,
    /// Failed runs since the last success.
    pub consecutive_failures: u32,
    /// The newest run's outcome (runs cancelled by the user are passed over).
    pub last_outcome: Option<&'a Outcome>,
    /// The end of the newest run, when the user cancelled it (`backupctl cancel`).
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The newest failed run's error.
    pub last_error: Option<&'a str>,
    /// A run in progress, since then (a slot whose run is running is not missed yet).
    pub running_since: Option<DateTime<Utc>>,
    /// The newest repository check failed, with this message: an error.
    pub last_check_failed: Option<&'a str>,
    /// The repository's size, if known.
    pub repository_bytes: Option<u64>,
    /// The room left on the repository's storage, where the storage tells.
    pub space: Option<crate::repo::backend::Space>,
    /// The bytes the recent successful (or partial) runs read, oldest first (for `max_growth`).
    pub source_sizes: &'a [u64],
}

/// A job's (or the daemon's) health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobHealth {
    /// The worst of the reasons' levels (healthy with no reasons).
    pub level: Level,
    /// Every reason, most severe first, each a full sentence saying what, since when and what
    /// to do, e.g. "no successful backup for 2 slots (since 2026-12-01 02:30 UTC; 26 h ago): check
    /// `backupctl history app`".
    pub reasons: Vec<String>,
    /// Slots missed since the last success (see the module's rules).
    pub missed_slots: u32,
    /// The oldest slot missed since the last success (RFC 3339 via serde), None when not
    /// overdue.
    pub overdue_since: Option<DateTime<Utc>>,
    /// Facts that do not change the level ("the newest run was cancelled by the user at ...").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl JobHealth {
    /// Healthy, no reasons.
    pub fn healthy() -> JobHealth {
        JobHealth {
            level: Level::Healthy,
            reasons: Vec::new(),
            missed_slots: 0,
            overdue_since: None,
            notes: Vec::new(),
        }
    }
}

/// The missed slots: how many, and the oldest.
fn missed_slots(
    cfg: &HealthConfig,
    f: &JobFacts,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> (u32, Option<crate::schedule::Slot>) {
    let grace =
        chrono::Duration::from_std(cfg.grace_for(schedule, now)).unwrap_or(chrono::Duration::MAX);
    let after = f.last_success.map_or(f.baseline, |s| s.max(f.baseline));
    let Some(mut until) = now.checked_sub_signed(grace) else {
        return (0, None);
    };
    if let Some(running) = f.running_since {
        // A slot with running_since <= slot.at + grace is the running run's: only slots with
        // slot.at < running_since - grace are missed.
        if let Some(limit) = running
            .checked_sub_signed(grace)
            .and_then(|t| t.checked_sub_signed(chrono::Duration::nanoseconds(1)))
        {
            until = until.min(limit);
        } else {
            return (0, None);
        }
    }
    if until <= after {
        return (0, None);
    }
    let (first, count) = schedule.slots_between(after, until, 1);
    (
        u32::try_from(count).unwrap_or(u32::MAX),
        first.into_iter().next(),
    )
}

/// "26 h ago", "10 min ago", "3 d ago".
fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    if secs < 0 {
        return "in the future".to_string();
    }
    match secs {
        0..60 => format!("{secs} s ago"),
        60..5_400 => format!("{} min ago", secs / 60),
        5_400..259_200 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// An instant for people, with its zone: in the schedule's zone when there is one, with that
/// zone's offset then ("2026-12-01 02:35 +01:00"), else UTC ("2026-12-01 02:35 UTC").
fn when(t: DateTime<Utc>, schedule: Option<&Schedule>) -> String {
    match schedule {
        Some(s) => t
            .with_timezone(&s.tz())
            .format("%Y-%m-%d %H:%M %:z")
            .to_string(),
        None => t.format("%Y-%m-%d %H:%M UTC").to_string(),
    }
}

/// One line for a message that may have several.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// "1 slot", "2 slots".
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The level of `value` against a warning and an error threshold (0: off).
fn threshold_level(value: u32, warning: u32, error: u32) -> Level {
    if error > 0 && value >= error {
        Level::Error
    } else if warning > 0 && value >= warning {
        Level::Warning
    } else {
        Level::Healthy
    }
}

/// A reason: its level and its sentence.
type Reason = (Level, String);

/// A job's health from its facts at `now` (see the module's rules).
pub fn job_health(cfg: &HealthConfig, f: &JobFacts, now: DateTime<Utc>) -> JobHealth {
    let (missed, oldest) = match f.schedule {
        Some(schedule) => missed_slots(cfg, f, schedule, now),
        None => (0, None),
    };
    let overdue = match (f.schedule, oldest) {
        (Some(schedule), Some(oldest)) => overdue_reason(cfg, f, schedule, missed, oldest, now),
        _ => None,
    };
    let mut reasons: Vec<Reason> = [
        check_reason(f),
        failures_reason(cfg, f, now),
        overdue,
        size_reason(cfg, f),
        room_reason(cfg, f),
        partial_reason(cfg, f),
        growth_reason(cfg, f),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Stable: equal levels keep the order above.
    reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
    JobHealth {
        level: reasons.first().map_or(Level::Healthy, |r| r.0),
        reasons: reasons.into_iter().map(|r| r.1).collect(),
        missed_slots: missed,
        overdue_since: oldest.map(|s| s.at),
        notes: cancelled_note(f).into_iter().collect(),
    }
}

/// The note on a newest run the user cancelled.
fn cancelled_note(f: &JobFacts) -> Option<String> {
    let at = f.cancelled_at?;
    Some(format!(
        "the newest run was cancelled by the user at {}: not counted as a failure; health is \
         judged from the runs before it",
        when(at, f.schedule)
    ))
}

/// **check**: the newest repository check failed.
fn check_reason(f: &JobFacts) -> Option<Reason> {
    let message = f.last_check_failed?;
    Some((
        Level::Error,
        format!(
            "the newest repository check failed: {}: the repository may be damaged; \
             read the check's output and repair before relying on its snapshots, then run \
             `backupctl check` again",
            one_line(message)
        ),
    ))
}

/// **failures**: consecutive failed runs at a threshold, quoting the last error.
fn failures_reason(cfg: &HealthConfig, f: &JobFacts, now: DateTime<Utc>) -> Option<Reason> {
    let level = threshold_level(
        f.consecutive_failures,
        cfg.failures_warning,
        cfg.failures_error,
    );
    if level == Level::Healthy {
        return None;
    }
    let job = f.job;
    let n = f.consecutive_failures;
    let runs = if n == 1 {
        "the last run failed".to_string()
    } else {
        format!("the last {n} runs failed")
    };
    let since = match f.last_success {
        Some(s) => format!(" (last success {}, {})", when(s, f.schedule), ago(s, now)),
        None => " (never succeeded)".to_string(),
    };
    let error = match f.last_error {
        Some(e) => format!(": {}", one_line(e)),
        None => String::new(),
    };
    Some((
        level,
        format!(
            "{runs}{since}{error}: fix the cause, see `backupctl history {job}` and \
             `backupctl logs --job {job}`, then `backupctl run {job} --wait`"
        ),
    ))
}

/// **overdue**: `count` missed slots, the oldest `oldest`, at a threshold.
fn overdue_reason(
    cfg: &HealthConfig,
    f: &JobFacts,
    schedule: &Schedule,
    count: u32,
    oldest: crate::schedule::Slot,
    now: DateTime<Utc>,
) -> Option<Reason> {
    let level = threshold_level(count, cfg.overdue_warning_slots, cfg.overdue_error_slots);
    if count == 0 || level == Level::Healthy {
        return None;
    }
    let job = f.job;
    let last = match f.last_success {
        Some(s) => format!("last success {}, {}", when(s, Some(schedule)), ago(s, now)),
        None => "never succeeded".to_string(),
    };
    Some((
        level,
        format!(
            "no successful backup for {} (since the {} slot; {}; {last}): check \
             `backupctl status` and `backupctl history {job}` (is backupd running? did the \
             runs fail?), then `backupctl run {job} --wait`",
            plural(u64::from(count), "slot"),
            oldest.zoned_label(),
            ago(oldest.at, now),
        ),
    ))
}

/// **size**: the repository at 90 % of `max_repository_bytes` or more.
fn size_reason(cfg: &HealthConfig, f: &JobFacts) -> Option<Reason> {
    let (bytes, max) = (f.repository_bytes?, cfg.max_repository_bytes?);
    let (b, m) = (u128::from(bytes), u128::from(max));
    if b * 10 < m * 9 {
        return None;
    }
    let level = if b >= m { Level::Error } else { Level::Warning };
    let percent = (b * 100 / m.max(1)) as u64;
    Some((
        level,
        format!(
            "the repository holds {} bytes, {percent} % of max_repository_bytes ({} \
             bytes): free space with `backupctl forget ... --prune`, or raise the limit",
            bytes, max
        ),
    ))
}

/// **room**: less than `min_free_space` left on the storage (an error below a tenth of it).
fn room_reason(cfg: &HealthConfig, f: &JobFacts) -> Option<Reason> {
    let space = f.space?;
    let want = cfg.min_free_space.bytes_of(space.total);
    if want == 0 || space.available >= want {
        return None;
    }
    let level = if space.available < want / 10 {
        Level::Error
    } else {
        Level::Warning
    };
    let percent = (u128::from(space.available) * 100 / u128::from(space.total.max(1))) as u64;
    Some((
        level,
        format!(
            "the storage that holds the repository has {} bytes left of {} ({percent} %), \
             less than min_free_space ({}): backups fail once it is full; free space \
             (`backupctl forget ... --prune`, or other files on that storage), or enlarge \
             the storage or its quota",
            space.available, space.total, cfg.min_free_space
        ),
    ))
}

/// **growth**: the newest run read more than `max_growth` times the median of the
/// `growth_runs` successful runs before it (a database suddenly ten times larger is news). The
/// warning lasts until the median has caught up, or the size is back.
fn growth_reason(cfg: &HealthConfig, f: &JobFacts) -> Option<Reason> {
    let factor = cfg.max_growth?;
    let (newest, before) = f.source_sizes.split_last()?;
    let before = &before[before.len().saturating_sub(cfg.growth_runs as usize)..];
    let median = median(before)?;
    if median == 0 || (*newest as f64) <= factor * median as f64 {
        return None;
    }
    let hb = crate::size::human_bytes;
    Some((
        Level::Warning,
        format!(
            "the sources have grown to {} in the last run, {:.1} times the median of the {} runs before ({}), more than max_growth ({factor}): check what grew (`backupctl diff` of the last two snapshots of {}); if it is expected, raise max_growth",
            hb(*newest),
            *newest as f64 / median as f64,
            before.len(),
            hb(median),
            f.job
        ),
    ))
}

/// The median of `v` (the lower middle one of an even count); none of an empty list.
fn median(v: &[u64]) -> Option<u64> {
    let mut s = v.to_vec();
    s.sort_unstable();
    s.get(s.len().checked_sub(1)? / 2).copied()
}

/// **partial**: the last run was partial and `partial_is_warning` is set.
fn partial_reason(cfg: &HealthConfig, f: &JobFacts) -> Option<Reason> {
    if !cfg.partial_is_warning || f.last_outcome != Some(&Outcome::Partial) {
        return None;
    }
    let job = f.job;
    let detail = match f.last_error {
        Some(e) => format!(": {}", one_line(e)),
        None => String::new(),
    };
    Some((
        Level::Warning,
        format!(
            "the last run was partial, some files were not backed up{detail}: see \
             `backupctl history {job}` for what could not be read and fix the permissions \
             or excludes"
        ),
    ))
}

/// The daemon's health over its jobs: the worst job's level; every job's reasons, prefixed
/// with `NAME: `, the worst jobs first (a job's reasons keep their order; equal jobs keep the
/// given order); `missed_slots` the sum; `overdue_since` the oldest. No jobs: healthy.
pub fn overall(jobs: &[(String, JobHealth)]) -> JobHealth {
    let mut order: Vec<&(String, JobHealth)> = jobs.iter().collect();
    order.sort_by_key(|j| std::cmp::Reverse(j.1.level));
    JobHealth {
        level: jobs
            .iter()
            .map(|j| j.1.level)
            .max()
            .unwrap_or(Level::Healthy),
        reasons: order
            .iter()
            .flat_map(|(name, h)| h.reasons.iter().map(move |r| format!("{name}: {r}")))
            .collect(),
        missed_slots: jobs
            .iter()
            .fold(0u32, |sum, j| sum.saturating_add(j.1.missed_slots)),
        overdue_since: jobs.iter().filter_map(|j| j.1.overdue_since).min(),
        notes: jobs
            .iter()
            .flat_map(|(name, h)| h.notes.iter().map(move |n| format!("{name}: {n}")))
            .collect(),
    }
}

/// The OS-timer mode's last tick, from the `backupd.pid` a `backupd run-due` left.
#[derive(Debug, Clone, Copy)]
pub struct TimerFacts {
    /// When the OS timer last started `backupd run-due`.
    pub last_tick: DateTime<Utc>,
    /// A `backupd run-due` is running now.
    pub running: bool,
}

/// How long the OS timer, which ticks every minute, may stay silent before it counts as stopped.
pub const TIMER_SILENCE_SECS: i64 = 600;

/// The overall health in the OS-timer mode (no resident daemon, by design): the jobs' health as
/// judged from their recorded runs, a note naming the mode and its last tick, and a warning
/// when the timer has not ticked for [`TIMER_SILENCE_SECS`] and no run-due is running.
pub fn with_os_timer(mut overall: JobHealth, t: TimerFacts, now: DateTime<Utc>) -> JobHealth {
    let at = when(t.last_tick, None);
    let tick = if t.running {
        format!("`backupd run-due` is running (since {at})")
    } else {
        format!(
            "`backupd run-due` last started {at} ({})",
            ago(t.last_tick, now)
        )
    };
    overall.notes.insert(
        0,
        format!(
            "OS-timer mode, no resident backupd: {tick}; health is judged from the recorded runs"
        ),
    );
    if !t.running && (now - t.last_tick).num_seconds() > TIMER_SILENCE_SECS {
        overall.level = overall.level.max(Level::Warning);
        overall.reasons.insert(
            0,
            format!(
                "the OS timer has not started `backupd run-due` since {at} ({}), though it \
                 should every minute: no job runs meanwhile; check `backupctl schedule status`, \
                 and `backupctl schedule install` to install the timer again",
                ago(t.last_tick, now)
            ),
        );
    }
    overall
}

/// Statistics over a job's newest runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// Real runs considered (at most `n`; `skipped` records are not runs).
    pub runs: usize,
    /// Of them, `success` or `partial` (a snapshot was made).
    pub successes: usize,
    /// `successes / runs`, None without runs.
    pub success_rate: Option<f64>,
    /// Mean duration of the successful runs among them.
    pub mean_duration_seconds: Option<f64>,
    /// The newest real run's duration, whatever its outcome.
    pub last_duration_seconds: Option<f64>,
    /// Mean bytes added by the successful runs among them that report it (rounded down).
    pub mean_data_added: Option<u64>,
    /// The newest real run's bytes added, if it reports it.
    pub last_data_added: Option<u64>,
}

/// Statistics over `history` (oldest first): its newest `n` real runs, i.e. not `skipped`.
/// Means are over the successful runs (`success` or `partial`) only, since a failed run's
/// duration and size say nothing about the backup; `last_*` are the newest real run's.
pub fn run_stats(history: &[RunRecord], n: usize) -> RunStats {
    let runs: Vec<&RunRecord> = history
        .iter()
        .rev()
        .filter(|r| r.outcome != Outcome::Skipped)
        .take(n)
        .collect();
    let ok: Vec<&&RunRecord> = runs.iter().filter(|r| r.outcome.is_success()).collect();
    let mean_duration_seconds = (!ok.is_empty())
        .then(|| ok.iter().map(|r| r.duration_seconds).sum::<f64>() / ok.len() as f64);
    let added: Vec<u64> = ok.iter().filter_map(|r| r.data_added).collect();
    let mean_data_added = (!added.is_empty())
        .then(|| (added.iter().map(|&a| u128::from(a)).sum::<u128>() / added.len() as u128) as u64);
    RunStats {
        runs: runs.len(),
        successes: ok.len(),
        success_rate: (!runs.is_empty()).then(|| ok.len() as f64 / runs.len() as f64),
        mean_duration_seconds,
        last_duration_seconds: runs.first().map(|r| r.duration_seconds),
        mean_data_added,
        last_data_added: runs.first().and_then(|r| r.data_added),
    }
}

/// A job's health with the problem of its state file (`state::BadState`'s message) as its
/// first reason, an error: its history is unknown until the daemon repairs the file, or, for a
/// newer backupd's file, the job does not run.
pub fn with_state_problem(mut h: JobHealth, problem: Option<&str>) -> JobHealth {
    if let Some(p) = problem {
        h.level = Level::Error;
        h.reasons.insert(0, p.replace("\n  hint:", ";"));
    }
    h
}

/// A job's health now, from its state (`running_since`: the run in progress, if any).
pub fn of_state(
    state: &crate::state::JobState,
    cfg: &HealthConfig,
    schedule: Option<&crate::schedule::Schedule>,
    running_since: Option<DateTime<Utc>>,
    repo: RepoFacts,
    now: DateTime<Utc>,
) -> JobHealth {
    let real = |r: &&RunRecord| r.outcome != Outcome::Skipped;
    let cancelled_at = state
        .history
        .iter()
        .rfind(real)
        .filter(|r| r.outcome == Outcome::Cancelled)
        .map(|r| r.end);
    // The user's cancels are neither successes nor failures: the runs before them are judged.
    let runs: Vec<&RunRecord> = state
        .history
        .iter()
        .filter(real)
        .filter(|r| r.outcome != Outcome::Cancelled)
        .collect();
    let last = runs.last();
    let last_error = runs
        .iter()
        .rev()
        .find(|r| r.outcome != Outcome::Success)
        .filter(|_| {
            state.consecutive_failures > 0 || last.is_some_and(|l| l.outcome == Outcome::Partial)
        })
        .and_then(|r| r.error.as_deref());
    let sizes: Vec<u64> = runs
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Success | Outcome::Partial))
        .filter_map(|r| r.bytes_processed)
        .collect();
    job_health(
        cfg,
        &JobFacts {
            job: &state.job,
            schedule,
            baseline: state.baseline,
            last_success: state.last_success,
            consecutive_failures: state.consecutive_failures,
            last_outcome: last.map(|r| &r.outcome),
            cancelled_at,
            last_error,
            running_since,
            last_check_failed: repo.last_check_failed,
            repository_bytes: repo.repository_bytes,
            space: repo.space,
            source_sizes: &sizes,
        },
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::health::MinFree;
    use chrono::TimeZone;
    use std::time::Duration;

    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn daily() -> Schedule {
        Schedule::parse("30 2 * * *", Some("UTC")).unwrap()
    }

    fn facts(schedule: Option<&Schedule>) -> JobFacts<'_> {
        JobFacts {
            job: "app",
            schedule,
            baseline: t(2020, 1, 1, 0, 0),
            last_success: None,
            consecutive_failures: 0,
            last_outcome: Some(&Outcome::Success),
            cancelled_at: None,
            last_error: None,
            running_since: None,
            last_check_failed: None,
            repository_bytes: None,
            space: None,
            source_sizes: &[],
        }
    }

    fn hour_grace() -> HealthConfig {
        HealthConfig {
            grace: Some(Duration::from_secs(3600)),
            ..HealthConfig::default()
        }
    }

    fn has(h: &JobHealth, words: &[&str]) {
        let all = h.reasons.join("\n");
        for w in words {
            assert!(all.contains(w), "{w:?} not in {all:?}");
        }
    }

    #[test]
    fn a_source_grown_past_max_growth_is_a_warning_until_the_median_catches_up() {
        let cfg = HealthConfig {
            max_growth: Some(5.0),
            growth_runs: 3,
            ..HealthConfig::default()
        };
        let at = |sizes: &[u64]| {
            let f = JobFacts {
                source_sizes: sizes,
                ..facts(None)
            };
            job_health(&cfg, &f, t(2026, 12, 2, 4, 35))
        };
        assert_eq!(at(&[]).level, Level::Healthy);
        assert_eq!(at(&[100]).level, Level::Healthy);
        assert_eq!(at(&[100, 90, 110, 500]).level, Level::Healthy);
        let h = at(&[1, 100, 90, 110, 1000]);
        assert_eq!(h.level, Level::Warning, "{h:?}");
        has(
            &h,
            &[
                "grown to 1000 B",
                "10.0 times the median of the 3 runs before (100 B)",
                "max_growth (5)",
            ],
        );
        assert_eq!(at(&[100, 90, 1000, 1000, 1000]).level, Level::Healthy);
        let off = HealthConfig::default();
        let f = JobFacts {
            source_sizes: &[1, 1, 1000],
            ..facts(None)
        };
        assert_eq!(
            job_health(&off, &f, t(2026, 12, 2, 4, 35)).level,
            Level::Healthy
        );
    }

    #[test]
    fn level_codes_and_names() {
        assert_eq!(Level::Healthy.exit_code(), 0);
        assert_eq!(Level::Warning.exit_code(), 1);
        assert_eq!(Level::Error.exit_code(), 2);
        assert_eq!(Level::Warning.as_str(), "warning");
        assert_eq!(serde_json::to_string(&Level::Error).unwrap(), "\"error\"");
        assert!(Level::Healthy < Level::Warning && Level::Warning < Level::Error);
    }

    #[test]
    fn times_in_reasons_carry_the_schedules_zone() {
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let f = JobFacts {
            last_success: Some(t(2026, 12, 1, 1, 35)),
            consecutive_failures: 1,
            last_error: Some("boom"),
            ..facts(Some(&s))
        };
        let h = job_health(&hour_grace(), &f, t(2026, 12, 2, 4, 35));
        has(
            &h,
            &[
                "(last success 2026-12-01 02:35 +01:00, 27 h ago): boom",
                "since the 2026-12-02 02:30 Europe/Berlin slot",
            ],
        );
        // A manual-only job's times are in UTC, and say so.
        let f = JobFacts {
            last_success: Some(t(2026, 12, 1, 1, 35)),
            consecutive_failures: 1,
            ..facts(None)
        };
        has(
            &job_health(&hour_grace(), &f, t(2026, 12, 2, 4, 35)),
            &["last success 2026-12-01 01:35 UTC"],
        );
    }

    #[test]
    fn success_an_hour_ago_is_healthy() {
        let s = daily();
        let f = JobFacts {
            last_success: Some(t(2026, 12, 2, 2, 35)),
            ..facts(Some(&s))
        };
        let h = job_health(&hour_grace(), &f, t(2026, 12, 2, 3, 35));
        assert_eq!(h, JobHealth::healthy());
    }

    #[test]
    fn success_26_hours_ago_is_one_missed_slot_warning() {
        let s = daily();
        let f = JobFacts {
            last_success: Some(t(2026, 12, 1, 2, 35)),
            ..facts(Some(&s))
        };
        let h = job_health(&hour_grace(), &f, t(2026, 12, 2, 4, 35));
        assert_eq!(h.level, Level::Warning);
        assert_eq!(h.missed_slots, 1);
        assert_eq!(h.overdue_since, Some(t(2026, 12, 2, 2, 30)));
        assert_eq!(h.reasons.len(), 1);
        has(
            &h,
            &[
                "no successful backup for 1 slot ",
                "since the 2026-12-02 02:30 UTC slot; 2 h ago",
                "last success 2026-12-01 02:35 +00:00, 26 h ago",
                "`backupctl history app`",
            ],
        );
    }

    #[test]
    fn success_50_hours_ago_is_two_missed_slots_error() {
        let s = daily();
        let f = JobFacts {
            last_success: Some(t(2026, 11, 30, 2, 35)),
            ..facts(Some(&s))
        };
        let h = job_health(&hour_grace(), &f, t(2026, 12, 2, 4, 35));
        assert_eq!(h.level, Level::Error);
        assert_eq!(h.missed_slots, 2);
        assert_eq!(h.overdue_since, Some(t(2026, 12, 1, 2, 30)));
        has(&h, &["for 2 slots", "50 h ago", "2026-12-01 02:30"]);
    }

    #[test]
    fn downtime_of_three_intervals_counts_three_slots() {
        let s = daily();
        let f = JobFacts {
            last_success: Some(t(2026, 11, 29, 2, 35)),
            ..facts(Some(&s))
        };
        let h = job_health(&hour_grace(), &f, t(2026, 12, 2, 4, 35));
        assert_eq!(h.level, Level::Error);
        assert_eq!(h.missed_slots, 3);
        assert_eq!(h.overdue_since, Some(t(2026, 11, 30, 2, 30)));
        has(
            &h,
            &[
                "for 3 slots",
                "since the 2026-11-30 02:30 UTC slot; 50 h ago",
                "last success 2026-11-29 02:35 +00:00, 3 d ago",
            ],
        );
        // JSON: RFC 3339.
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["overdue_since"], "2026-11-30T02:30:00Z");
        assert_eq!(json["level"], "error");
    }

    #[test]
    fn a_new_job_before_its_first_slot_is_healthy() {
        let s = daily();
        let f = JobFacts {
            baseline: t(2026, 12, 1, 10, 0),
            last_outcome: None,
            ..facts(Some(&s))
        };
        let h = job_health(&HealthConfig::default(), &f, t(2026, 12, 1, 10, 10));
        assert_eq!(h, JobHealth::healthy());
    }

    #[test]
    fn a_first_slot_passed_without_a_run_is_a_warning_after_the_grace() {
        let s = daily();
        let f = JobFacts {
            baseline: t(2026, 12, 1, 10, 0),
            last_outcome: None,
            ..facts(Some(&s))
        };
        let cfg = HealthConfig::default(); // daily: 1 h grace
        let within = job_health(&cfg, &f, t(2026, 12, 2, 3, 29));
        assert_eq!(within.level, Level::Healthy);
        assert_eq!(within.missed_slots, 0);
        let h = job_health(&cfg, &f, t(2026, 12, 2, 3, 31));
        assert_eq!(h.level, Level::Warning);
        assert_eq!(h.missed_slots, 1);
        assert_eq!(h.overdue_since, Some(t(2026, 12, 2, 2, 30)));
        has(
            &h,
            &["for 1 slot", "never succeeded", "backupctl run app --wait"],
        );
    }

    #[test]
    fn the_baseline_hides_older_slots() {
        let s = daily();
        let f = JobFacts {
            baseline: t(2026, 12, 1, 10, 0),
            last_success: Some(t(2026, 11, 1, 2, 35)),
            ..facts(Some(&s))
        };
        let h = job_health(&hour_grace(), &f, t(2026, 12, 2, 4, 0));
        assert_eq!(h.missed_slots, 1);
        assert_eq!(h.level, Level::Warning);
    }

    #[test]
    fn a_run_in_progress_protects_its_slot() {
        let s = daily();
        let base = JobFacts {
            last_success: Some(t(2026, 12, 1, 2, 35)),
            ..facts(Some(&s))
        };
        let cfg = hour_grace();
        let now = t(2026, 12, 2, 4, 35);
        let running = JobFacts {
            running_since: Some(t(2026, 12, 2, 2, 30)),
            ..base
        };
        assert_eq!(job_health(&cfg, &running, now), JobHealth::healthy());
        // Started within the grace (a queued run): still its slot.
        let queued = JobFacts {
            running_since: Some(t(2026, 12, 2, 3, 30)),
            ..base
        };
        assert_eq!(job_health(&cfg, &queued, now).missed_slots, 0);
        // Started after the grace: the slot was missed, the run does not hide it.
        let late = JobFacts {
            running_since: Some(t(2026, 12, 2, 3, 31)),
            ..base
        };
        let h = job_health(&cfg, &late, now);
        assert_eq!((h.level, h.missed_slots), (Level::Warning, 1));
        // A catch-up run after downtime: the older slots stay missed until it succeeds.
        let catch_up = JobFacts {
            last_success: Some(t(2026, 11, 29, 2, 35)),
            running_since: Some(t(2026, 12, 2, 2, 0)),
            ..base
        };
        let h = job_health(&cfg, &catch_up, now);
        assert_eq!((h.level, h.missed_slots), (Level::Error, 2));
        assert_eq!(h.overdue_since, Some(t(2026, 11, 30, 2, 30)));
    }

    #[test]
    fn failures_warn_then_error_with_the_last_error() {
        let s = daily();
        let now = t(2026, 12, 2, 3, 0);
        let one = JobFacts {
            last_success: Some(t(2026, 12, 1, 2, 35)),
            consecutive_failures: 1,
            last_outcome: Some(&Outcome::Failed),
            last_error: Some("repository /srv/repo is locked\nby pid 42"),
            ..facts(Some(&s))
        };
        let h = job_health(&HealthConfig::default(), &one, now);
        assert_eq!(h.level, Level::Warning);
        assert_eq!(h.missed_slots, 0);
        has(
            &h,
            &[
                "the last run failed",
                "last success 2026-12-01 02:35 +00:00, 24 h ago",
                ": repository /srv/repo is locked by pid 42:",
                "backupctl logs --job app",
            ],
        );
        let two = JobFacts {
            consecutive_failures: 2,
            ..one
        };
        assert_eq!(
            job_health(&HealthConfig::default(), &two, now).level,
            Level::Warning
        );
        let three = JobFacts {
            consecutive_failures: 3,
            last_success: None,
            ..one
        };
        let h = job_health(&HealthConfig::default(), &three, now);
        assert_eq!(h.level, Level::Error);
        has(&h, &["the last 3 runs failed (never succeeded)", "locked"]);
    }

    #[test]
    fn partial_is_a_warning_unless_switched_off() {
        let s = daily();
        let f = JobFacts {
            last_success: Some(t(2026, 12, 2, 2, 40)),
            last_outcome: Some(&Outcome::Partial),
            last_error: Some("2 files could not be read"),
            ..facts(Some(&s))
        };
        let now = t(2026, 12, 2, 3, 0);
        let h = job_health(&HealthConfig::default(), &f, now);
        assert_eq!(h.level, Level::Warning);
        assert_eq!(h.missed_slots, 0);
        has(
            &h,
            &[
                "partial",
                "2 files could not be read",
                "backupctl history app",
            ],
        );
        let off = HealthConfig {
            partial_is_warning: false,
            ..HealthConfig::default()
        };
        assert_eq!(job_health(&off, &f, now), JobHealth::healthy());
    }

    #[test]
    fn a_failed_check_is_an_error() {
        let f = JobFacts {
            last_check_failed: Some("pack 1a2b3c is missing"),
            ..facts(None)
        };
        let h = job_health(&HealthConfig::default(), &f, t(2026, 12, 2, 3, 0));
        assert_eq!(h.level, Level::Error);
        has(
            &h,
            &["check failed", "pack 1a2b3c is missing", "backupctl check"],
        );
    }

    #[test]
    fn room_left_on_the_storage_warns_then_errs() {
        use crate::repo::backend::Space;
        let at = |cfg: &HealthConfig, available| {
            let f = JobFacts {
                space: Some(Space {
                    total: 1000,
                    available,
                }),
                ..facts(None)
            };
            job_health(cfg, &f, t(2026, 12, 2, 3, 0))
        };
        let d = HealthConfig::default();
        assert_eq!(d.min_free_space, MinFree::Percent(10));
        assert_eq!(at(&d, 100).level, Level::Healthy);
        let h = at(&d, 99);
        assert_eq!(h.level, Level::Warning);
        has(
            &h,
            &[
                "99 bytes left of 1000",
                "9 %",
                "min_free_space (10 %)",
                "quota",
            ],
        );
        assert_eq!(at(&d, 10).level, Level::Warning);
        assert_eq!(at(&d, 9).level, Level::Error);
        assert_eq!(at(&d, 0).level, Level::Error);
        // In bytes; off; unknown.
        let b = HealthConfig {
            min_free_space: MinFree::Bytes(500),
            ..HealthConfig::default()
        };
        assert_eq!(at(&b, 500).level, Level::Healthy);
        assert_eq!(at(&b, 499).level, Level::Warning);
        assert_eq!(at(&b, 49).level, Level::Error);
        let off = HealthConfig {
            min_free_space: MinFree::Percent(0),
            ..HealthConfig::default()
        };
        assert_eq!(at(&off, 0).level, Level::Healthy);
        assert_eq!(
            job_health(&d, &facts(None), t(2026, 12, 2, 3, 0)).level,
            Level::Healthy
        );
        // The config's forms, and its errors.
        let p = |t: &str| toml::from_str::<HealthConfig>(t).map(|c| c.min_free_space);
        assert_eq!(p("min_free_space = \"5%\"").unwrap(), MinFree::Percent(5));
        assert_eq!(
            p("min_free_space = \"50G\"").unwrap(),
            MinFree::Bytes(50 << 30)
        );
        assert_eq!(p("min_free_space = 0").unwrap(), MinFree::Bytes(0));
        assert!(p("min_free_space = \"150%\"")
            .unwrap_err()
            .to_string()
            .contains("0 to 100"));
        assert!(p("min_free_space = \"5 parsecs\"").is_err());
    }

    #[test]
    fn repository_size_against_the_limit() {
        let cfg = HealthConfig {
            max_repository_bytes: Some(1000),
            ..HealthConfig::default()
        };
        let at = |bytes| {
            let f = JobFacts {
                repository_bytes: Some(bytes),
                ..facts(None)
            };
            job_health(&cfg, &f, t(2026, 12, 2, 3, 0))
        };
        assert_eq!(at(899).level, Level::Healthy);
        assert_eq!(at(900).level, Level::Warning);
        let h = at(950);
        assert_eq!(h.level, Level::Warning);
        has(&h, &["95 %", "1000 bytes", "prune"]);
        assert_eq!(at(1000).level, Level::Error);
        let h = at(1010);
        assert_eq!(h.level, Level::Error);
        has(&h, &["101 %"]);
        // No limit, or size unknown: nothing.
        let f = JobFacts {
            repository_bytes: Some(u64::MAX),
            ..facts(None)
        };
        assert_eq!(
            job_health(&HealthConfig::default(), &f, t(2026, 12, 2, 3, 0)).level,
            Level::Healthy
        );
        assert_eq!(
            job_health(&cfg, &facts(None), t(2026, 12, 2, 3, 0)).level,
            Level::Healthy
        );
    }

    #[test]
    fn a_manual_job_is_never_overdue() {
        let f = JobFacts {
            last_outcome: None,
            ..facts(None)
        };
        let h = job_health(&HealthConfig::default(), &f, t(2030, 1, 1, 0, 0));
        assert_eq!(h, JobHealth::healthy());
    }

    /// Every rule firing, in both of its wordings: the whole answer pinned word for word.
    #[test]
    fn every_rule_word_for_word() {
        use crate::repo::backend::Space;
        let s = daily();
        let cfg = HealthConfig {
            max_repository_bytes: Some(1000),
            ..hour_grace()
        };
        let now = t(2026, 12, 4, 4, 35);
        let known = JobFacts {
            last_success: Some(t(2026, 12, 1, 2, 35)),
            consecutive_failures: 3,
            last_outcome: Some(&Outcome::Partial),
            last_error: Some("disk\n  on fire"),
            last_check_failed: Some("pack 1f\nis damaged"),
            repository_bytes: Some(950),
            space: Some(Space {
                total: 1000,
                available: 5,
            }),
            ..facts(Some(&s))
        };
        let never = JobFacts {
            baseline: t(2026, 12, 3, 0, 0),
            consecutive_failures: 1,
            last_outcome: Some(&Outcome::Partial),
            repository_bytes: Some(1000),
            space: Some(Space {
                total: 1000,
                available: 50,
            }),
            ..facts(Some(&s))
        };
        // Missed slots below the thresholds: counted, but no reason.
        let quiet = HealthConfig {
            overdue_warning_slots: 10,
            overdue_error_slots: 10,
            ..hour_grace()
        };
        let late = JobFacts {
            last_success: Some(t(2026, 12, 1, 2, 35)),
            ..facts(Some(&s))
        };
        let got = [
            job_health(&cfg, &known, now),
            job_health(&cfg, &never, now),
            job_health(&quiet, &late, now),
        ];
        let expected: Vec<JobHealth> = serde_json::from_str(EVERY_RULE).unwrap();
        assert_eq!(got.to_vec(), expected);
    }

    const EVERY_RULE: &str = r#"[
  {
    "level": "error",
    "reasons": [
      "the newest repository check failed: pack 1f is damaged: the repository may be damaged; read the check's output and repair before relying on its snapshots, then run `backupctl check` again",
      "the last 3 runs failed (last success 2026-12-01 02:35 +00:00, 3 d ago): disk on fire: fix the cause, see `backupctl history app` and `backupctl logs --job app`, then `backupctl run app --wait`",
      "no successful backup for 3 slots (since the 2026-12-02 02:30 UTC slot; 50 h ago; last success 2026-12-01 02:35 +00:00, 3 d ago): check `backupctl status` and `backupctl history app` (is backupd running? did the runs fail?), then `backupctl run app --wait`",
      "the storage that holds the repository has 5 bytes left of 1000 (0 %), less than min_free_space (10 %): backups fail once it is full; free space (`backupctl forget ... --prune`, or other files on that storage), or enlarge the storage or its quota",
      "the repository holds 950 bytes, 95 % of max_repository_bytes (1000 bytes): free space with `backupctl forget ... --prune`, or raise the limit",
      "the last run was partial, some files were not backed up: disk on fire: see `backupctl history app` for what could not be read and fix the permissions or excludes"
    ],
    "missed_slots": 3,
    "overdue_since": "2026-12-02T02:30:00Z"
  },
  {
    "level": "error",
    "reasons": [
      "no successful backup for 2 slots (since the 2026-12-03 02:30 UTC slot; 26 h ago; never succeeded): check `backupctl status` and `backupctl history app` (is backupd running? did the runs fail?), then `backupctl run app --wait`",
      "the repository holds 1000 bytes, 100 % of max_repository_bytes (1000 bytes): free space with `backupctl forget ... --prune`, or raise the limit",
      "the last run failed (never succeeded): fix the cause, see `backupctl history app` and `backupctl logs --job app`, then `backupctl run app --wait`",
      "the storage that holds the repository has 50 bytes left of 1000 (5 %), less than min_free_space (10 %): backups fail once it is full; free space (`backupctl forget ... --prune`, or other files on that storage), or enlarge the storage or its quota",
      "the last run was partial, some files were not backed up: see `backupctl history app` for what could not be read and fix the permissions or excludes"
    ],
    "missed_slots": 2,
    "overdue_since": "2026-12-03T02:30:00Z"
  },
  {
    "level": "healthy",
    "reasons": [],
    "missed_slots": 3,
    "overdue_since": "2026-12-02T02:30:00Z"
  }
]"#;

    #[test]
    fn reasons_are_most_severe_first() {
        let s = daily();
        let f = JobFacts {
            last_success: Some(t(2026, 12, 1, 2, 35)),
            last_outcome: Some(&Outcome::Partial),
            last_check_failed: Some("index damaged"),
            consecutive_failures: 1,
            ..facts(Some(&s))
        };
        let h = job_health(&hour_grace(), &f, t(2026, 12, 2, 4, 35));
        assert_eq!(h.level, Level::Error);
        assert_eq!(h.reasons.len(), 4);
        assert!(h.reasons[0].contains("check failed"));
        assert!(h.reasons[1].contains("the last run failed"));
        assert!(h.reasons[2].contains("1 slot"));
        assert!(h.reasons[3].contains("partial"));
    }

    #[test]
    fn zero_thresholds_switch_rules_off() {
        let s = daily();
        let cfg = HealthConfig {
            overdue_warning_slots: 0,
            overdue_error_slots: 0,
            failures_warning: 0,
            failures_error: 0,
            ..hour_grace()
        };
        let f = JobFacts {
            last_success: Some(t(2026, 11, 1, 2, 35)),
            consecutive_failures: 9,
            last_outcome: Some(&Outcome::Failed),
            ..facts(Some(&s))
        };
        let h = job_health(&cfg, &f, t(2026, 12, 2, 4, 35));
        assert_eq!(h.level, Level::Healthy);
        assert!(h.reasons.is_empty());
        assert_eq!(h.missed_slots, 31, "still counted");
    }

    #[test]
    fn default_grace_is_a_tenth_of_the_interval_within_bounds() {
        let cfg = HealthConfig::default();
        let now = t(2026, 12, 2, 4, 35);
        let g = |expr| cfg.grace_for(&Schedule::parse(expr, Some("UTC")).unwrap(), now);
        assert_eq!(g("* * * * *"), Duration::from_secs(60));
        assert_eq!(g("*/10 * * * *"), Duration::from_secs(60));
        assert_eq!(g("@hourly"), Duration::from_secs(360));
        assert_eq!(g("0 */6 * * *"), Duration::from_secs(2160));
        assert_eq!(g("@daily"), Duration::from_secs(3600));
        assert_eq!(g("@weekly"), Duration::from_secs(3600));
        let set = HealthConfig {
            grace: Some(Duration::from_secs(7)),
            ..cfg
        };
        assert_eq!(set.grace_for(&daily(), now), Duration::from_secs(7));
    }

    #[test]
    fn an_hourly_job_uses_its_six_minute_grace() {
        let s = Schedule::parse("0 * * * *", Some("UTC")).unwrap();
        let f = JobFacts {
            last_success: Some(t(2026, 12, 2, 3, 1)),
            ..facts(Some(&s))
        };
        let cfg = HealthConfig::default();
        assert_eq!(job_health(&cfg, &f, t(2026, 12, 2, 4, 5)).missed_slots, 0);
        let h = job_health(&cfg, &f, t(2026, 12, 2, 4, 7));
        assert_eq!((h.level, h.missed_slots), (Level::Warning, 1));
        let h = job_health(&cfg, &f, t(2026, 12, 2, 5, 7));
        assert_eq!((h.level, h.missed_slots), (Level::Error, 2));
        has(&h, &["since the 2026-12-02 04:00 UTC slot; 67 min ago"]);
    }

    #[test]
    fn overall_is_the_worst_with_job_names() {
        let warn = JobHealth {
            level: Level::Warning,
            reasons: vec!["w1".into()],
            missed_slots: 1,
            overdue_since: Some(t(2026, 12, 2, 2, 30)),
            notes: Vec::new(),
        };
        let err = JobHealth {
            level: Level::Error,
            reasons: vec!["e1".into(), "e2".into()],
            missed_slots: 2,
            overdue_since: Some(t(2026, 12, 1, 2, 30)),
            notes: Vec::new(),
        };
        let jobs = vec![
            ("a".to_string(), JobHealth::healthy()),
            ("b".to_string(), warn),
            ("c".to_string(), err),
        ];
        let o = overall(&jobs);
        assert_eq!(o.level, Level::Error);
        assert_eq!(o.reasons, vec!["c: e1", "c: e2", "b: w1"]);
        assert_eq!(o.missed_slots, 3);
        assert_eq!(o.overdue_since, Some(t(2026, 12, 1, 2, 30)));
        assert_eq!(overall(&jobs[..1]), JobHealth::healthy());
        assert_eq!(overall(&[]), JobHealth::healthy());
    }

    fn record(outcome: Outcome, secs: f64, added: Option<u64>) -> RunRecord {
        let mut r = RunRecord::new(
            "r",
            "app",
            "manual".into(),
            t(2026, 12, 1, 0, 0),
            outcome,
            0,
        );
        r.duration_seconds = secs;
        r.data_added = added;
        r
    }

    #[test]
    fn run_stats_over_the_newest_real_runs() {
        let history = vec![
            record(Outcome::Success, 1000.0, Some(1_000_000)), // beyond n
            record(Outcome::Success, 10.0, Some(100)),
            record(Outcome::Failed, 2.0, None),
            record(Outcome::Skipped, 0.0, None),
            record(Outcome::Partial, 20.0, Some(301)),
            record(Outcome::Interrupted, 5.0, None),
            record(Outcome::Success, 30.0, None),
            record(Outcome::Skipped, 0.0, None),
        ];
        let s = run_stats(&history, 5);
        assert_eq!(s.runs, 5);
        assert_eq!(s.successes, 3);
        assert_eq!(s.success_rate, Some(0.6));
        assert_eq!(s.mean_duration_seconds, Some(20.0));
        assert_eq!(s.last_duration_seconds, Some(30.0));
        assert_eq!(s.mean_data_added, Some(200)); // (100 + 301) / 2, rounded down
        assert_eq!(s.last_data_added, None);

        let all = run_stats(&history, 100);
        assert_eq!((all.runs, all.successes), (6, 4));

        let failed = run_stats(&[record(Outcome::Failed, 3.0, None)], 10);
        assert_eq!(failed.success_rate, Some(0.0));
        assert_eq!(failed.mean_duration_seconds, None);
        assert_eq!(failed.last_duration_seconds, Some(3.0));

        let none = run_stats(&[record(Outcome::Skipped, 0.0, None)], 10);
        assert_eq!(
            none,
            RunStats {
                runs: 0,
                successes: 0,
                success_rate: None,
                mean_duration_seconds: None,
                last_duration_seconds: None,
                mean_data_added: None,
                last_data_added: None,
            }
        );
        assert_eq!(run_stats(&history, 0).runs, 0);
    }

    fn ended(outcome: Outcome, end: DateTime<Utc>, error: Option<&str>) -> RunRecord {
        let mut r = RunRecord::new("r", "app", "scheduled".into(), end, outcome, 0);
        r.error = error.map(str::to_string);
        r
    }

    #[test]
    fn a_cancelled_run_is_judged_by_the_runs_before_it() {
        let s = daily();
        let mut st = crate::state::JobState::new("app", t(2026, 11, 1, 0, 0));
        st.last_success = Some(t(2026, 12, 2, 2, 35));
        let partial = ended(Outcome::Partial, t(2026, 12, 2, 2, 35), Some("a.db locked"));
        let cancel = Some("interrupted at a safe point");
        st.history = vec![
            partial.clone(),
            ended(Outcome::Cancelled, t(2026, 12, 2, 3, 0), cancel),
        ];
        let now = t(2026, 12, 2, 3, 35);
        let h = of_state(
            &st,
            &hour_grace(),
            Some(&s),
            None,
            RepoFacts::default(),
            now,
        );
        assert_eq!(h.level, Level::Warning, "{h:?}");
        has(&h, &["the last run was partial", "a.db locked"]);
        assert!(!h.reasons.join(" ").contains("interrupted"), "{h:?}");
        assert_eq!(
            h.notes,
            [
                "the newest run was cancelled by the user at 2026-12-02 03:00 +00:00: not counted as a \
              failure; health is judged from the runs before it"
            ]
        );
        let o = overall(&[("app".to_string(), h)]);
        assert!(
            o.notes[0].starts_with("app: the newest run was cancelled"),
            "{o:?}"
        );

        // After a success: healthy, the cancel is no failure.
        st.history[0] = ended(Outcome::Success, t(2026, 12, 2, 2, 35), None);
        let h = of_state(
            &st,
            &hour_grace(),
            Some(&s),
            None,
            RepoFacts::default(),
            now,
        );
        assert_eq!((h.level, h.reasons.len()), (Level::Healthy, 0), "{h:?}");
        assert_eq!(h.notes.len(), 1);
        // A run after the cancel: no note.
        st.history
            .push(ended(Outcome::Success, t(2026, 12, 2, 3, 10), None));
        let h = of_state(
            &st,
            &hour_grace(),
            Some(&s),
            None,
            RepoFacts::default(),
            now,
        );
        assert_eq!(h, JobHealth::healthy());
        st.history.pop();

        // After a failure: the failure's error, not the cancel's.
        st.history[0] = ended(Outcome::Failed, t(2026, 12, 2, 2, 35), Some("disk on fire"));
        st.consecutive_failures = 1;
        st.last_success = Some(t(2026, 12, 1, 2, 35));
        let h = of_state(
            &st,
            &hour_grace(),
            Some(&s),
            None,
            RepoFacts::default(),
            now,
        );
        assert_eq!(h.level, Level::Warning, "{h:?}");
        has(&h, &["the last run failed", "disk on fire"]);
        assert!(!h.reasons.join(" ").contains("interrupted"), "{h:?}");
    }

    #[test]
    fn the_os_timer_mode_is_judged_from_the_runs_and_its_ticks() {
        let now = t(2026, 12, 2, 4, 0);
        let job = JobHealth {
            notes: vec!["a note".into()],
            ..JobHealth::healthy()
        };
        let ticked = |mins: i64, running| TimerFacts {
            last_tick: now - chrono::Duration::minutes(mins),
            running,
        };
        let h = with_os_timer(job.clone(), ticked(1, false), now);
        assert_eq!((h.level, h.reasons.len()), (Level::Healthy, 0), "{h:?}");
        assert_eq!(
            h.notes,
            [
                "OS-timer mode, no resident backupd: `backupd run-due` last started \
                 2026-12-02 03:59 UTC (1 min ago); health is judged from the recorded runs",
                "a note"
            ]
        );
        // Running for hours (a long backup): no warning.
        let h = with_os_timer(job.clone(), ticked(180, true), now);
        assert_eq!(h.level, Level::Healthy);
        assert!(
            h.notes[0].contains("is running (since 2026-12-02 01:00 UTC)"),
            "{h:?}"
        );
        // Silent for 11 minutes: a warning; an error stays an error.
        let h = with_os_timer(job, ticked(11, false), now);
        assert_eq!(h.level, Level::Warning);
        has(
            &h,
            &[
                "has not started `backupd run-due` since 2026-12-02 03:49 UTC (11 min ago)",
                "`backupctl schedule status`",
            ],
        );
        let err = JobHealth {
            level: Level::Error,
            reasons: vec!["app: disk on fire".into()],
            ..JobHealth::healthy()
        };
        let h = with_os_timer(err, ticked(11, false), now);
        assert_eq!((h.level, h.reasons.len()), (Level::Error, 2));
    }

    #[test]
    fn config_from_toml() {
        let cfg: HealthConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, HealthConfig::default());
        assert_eq!(cfg.overdue_warning_slots, 1);
        assert_eq!(cfg.overdue_error_slots, 2);
        assert_eq!(cfg.failures_warning, 1);
        assert_eq!(cfg.failures_error, 3);
        assert!(cfg.partial_is_warning);
        assert_eq!((cfg.grace, cfg.max_repository_bytes), (None, None));

        let cfg: HealthConfig = toml::from_str(
            "overdue_error_slots = 4\ngrace = \"1h30m\"\nmax_repository_bytes = \"500G\"\npartial_is_warning = false",
        )
        .unwrap();
        assert_eq!(cfg.overdue_error_slots, 4);
        assert_eq!(cfg.grace, Some(Duration::from_secs(5400)));
        assert_eq!(cfg.max_repository_bytes, Some(500 << 30));
        assert!(!cfg.partial_is_warning);

        let cfg: HealthConfig = toml::from_str("grace = 90\nmax_repository_bytes = 4096").unwrap();
        assert_eq!(cfg.grace, Some(Duration::from_secs(90)));
        assert_eq!(cfg.max_repository_bytes, Some(4096));

        let e = toml::from_str::<HealthConfig>("graec = \"1h\"").unwrap_err();
        assert!(e.to_string().contains("graec"), "{e}");
        let e = toml::from_str::<HealthConfig>("max_repository_bytes = \"5GB\"").unwrap_err();
        assert!(e.to_string().contains("powers of 1024"), "{e}");
        let e = toml::from_str::<HealthConfig>("max_repository_bytes = 0").unwrap_err();
        assert!(e.to_string().contains("more than 0"), "{e}");
        assert!(toml::from_str::<HealthConfig>("grace = \"soon\"").is_err());
    }
}
