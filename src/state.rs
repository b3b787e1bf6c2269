//! The daemon's persistent per-job state: the last slot served, the run in progress, retries, and a bounded run history — one JSON file per job, written atomically, judged when read (`judge`: version, job name, no time from the future).
//!
//! Why JSON files and not a SQLite state database: each job's state is a few kilobytes that
//! is always read and written whole, so an atomic replace (temp file, fsync, rename, fsync of
//! the folder; `crate::fsutil::atomic_write`) gives every guarantee a database would, with one
//! file per job (a damaged file affects one job, and the daemon renames it aside and says so),
//! and a person can read it with `cat`. The file is written before a run starts (the slot is
//! claimed: a `kill -9` after that never runs the slot twice) and after it ends.

use crate::error::{Error, Result};
use crate::record::RunRecord;
use crate::schedule::{PendingRetry, RunReason, Slot};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format version of a state file.
pub const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobState {
    pub version: u32,
    pub job: String,
    /// The schedule and zone the slots below were computed with (a change rebases them).
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    /// When the daemon first saw the job with this schedule: slots before it are not missed.
    pub baseline: DateTime<Utc>,
    /// The newest slot that was run or deliberately skipped.
    pub last_slot: Option<Slot>,
    /// The run in progress, written before it starts; still here at start-up means the
    /// daemon stopped during it.
    pub running: Option<RunClaim>,
    pub retry: Option<PendingRetry>,
    pub consecutive_failures: u32,
    pub last_success: Option<DateTime<Utc>>,
    pub last_snapshot: Option<String>,
    /// The newest runs, oldest first.
    pub history: Vec<RunRecord>,
    /// The overdue episode (its oldest missed slot) an `overdue` notification was sent for.
    #[serde(default)]
    pub overdue_notified: Option<DateTime<Utc>>,
}

/// A run that has started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunClaim {
    pub run_id: String,
    pub reason: RunReason,
    pub slot: Option<Slot>,
    pub started: DateTime<Utc>,
}

impl JobState {
    pub fn new(job: &str, now: DateTime<Utc>) -> JobState {
        JobState {
            version: STATE_VERSION,
            job: job.to_string(),
            schedule: None,
            timezone: None,
            baseline: now,
            last_slot: None,
            running: None,
            retry: None,
            consecutive_failures: 0,
            last_success: None,
            last_snapshot: None,
            history: Vec::new(),
            overdue_notified: None,
        }
    }

    /// Appends a run to the history, keeping at most `keep` runs.
    pub fn push_history(&mut self, rec: RunRecord, keep: usize) {
        self.history.push(rec);
        let excess = self.history.len().saturating_sub(keep.max(1));
        self.history.drain(..excess);
    }
}

/// How far in the future a time in a state file may lie before the file is taken as damaged:
/// a day, more than any clock correction or zone mistake, less than a day's missed backups.
pub const FUTURE_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// What is wrong with a state file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateProblem {
    #[error("it does not parse as a state file ({0})")]
    Unreadable(String),
    #[error("it names job {found:?}, not {expected:?}")]
    OtherJob { found: String, expected: String },
    #[error("its {field} ({at}) is more than a day in the future")]
    FromTheFuture {
        field: &'static str,
        at: DateTime<Utc>,
    },
    #[error("its version {0} is none backupd ever wrote")]
    NoSuchVersion(u32),
    #[error("it was written by a newer backupd (state format {found}; this backupd reads format {STATE_VERSION})")]
    Newer { found: u32 },
}

impl StateProblem {
    /// Damage is repaired (moved aside, the job starts afresh); a newer format is refused.
    pub fn is_damage(&self) -> bool {
        !matches!(self, StateProblem::Newer { .. })
    }
}

/// A state file that cannot be used as it is: where, and what is wrong.
#[derive(Debug, Clone)]
pub struct BadState {
    pub path: PathBuf,
    pub problem: StateProblem,
}

impl BadState {
    /// What a reader says: the file, what is wrong, and what to do (nothing was changed).
    pub fn for_reader(&self) -> String {
        format!(
            "the state file {} is not used: {}; it was left as it is\n  hint: {}",
            self.path.display(),
            self.problem,
            self.hint()
        )
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        if self.problem.is_damage() {
            "start backupd: it moves the file aside and starts this job's schedule afresh".into()
        } else {
            format!(
                "upgrade backupd, or move {} aside to start this job's schedule afresh",
                self.path.display()
            )
        }
    }
}

/// How a job's state file was found.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one value per job, moved once: boxing buys nothing
pub enum Loaded {
    /// No file: the job has no state yet.
    Missing,
    Good(JobState),
    Bad(BadState),
}

/// Parses a state file's bytes and judges the state: its version first (a newer format may
/// not parse as this one), then the content.
fn parse(job: &str, data: &[u8], now: DateTime<Utc>) -> Result<JobState, StateProblem> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    if let Ok(v) = serde_json::from_slice::<Version>(data) {
        if v.version > STATE_VERSION {
            return Err(StateProblem::Newer { found: v.version });
        }
    }
    let st = serde_json::from_slice::<JobState>(data)
        .map_err(|e| StateProblem::Unreadable(e.to_string()))?;
    judge(job, &st, now)?;
    Ok(st)
}

/// Whether `st` is a plausible state of `job` at `now` (pure): its version, its job's name,
/// and no time in it more than [`FUTURE_TOLERANCE`] ahead of `now`.
pub fn judge(job: &str, st: &JobState, now: DateTime<Utc>) -> Result<(), StateProblem> {
    if st.version > STATE_VERSION {
        return Err(StateProblem::Newer { found: st.version });
    }
    if st.version < STATE_VERSION {
        return Err(StateProblem::NoSuchVersion(st.version));
    }
    if st.job != job {
        return Err(StateProblem::OtherJob {
            found: st.job.clone(),
            expected: job.to_string(),
        });
    }
    let times = [
        ("baseline", Some(st.baseline)),
        ("last_slot", st.last_slot.map(|s| s.at)),
        ("running.started", st.running.as_ref().map(|r| r.started)),
        ("last_success", st.last_success),
    ];
    let limit = now + FUTURE_TOLERANCE;
    match times
        .into_iter()
        .find(|(_, t)| t.is_some_and(|t| t > limit))
    {
        Some((field, Some(at))) => Err(StateProblem::FromTheFuture { field, at }),
        _ => Ok(()),
    }
}

/// A folder this user may not write, or a read-only file system.
fn is_unwritable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
    )
}

/// A write refused in the state folder: what could not be done, why, and what to do.
fn unwritable(what: &str, e: &std::io::Error, folder: &Path) -> Error {
    Error::Input(format!(
        "cannot {what}: {e}\n  hint: make {} writable by this user (or run backupd as the user that owns it), or set state_dir in the [daemon] table to a folder it may write",
        folder.display()
    ))
}

/// The folder of state files.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating it when missing) the `jobs/` folder under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<StateStore> {
        let dir = state_dir.join("jobs");
        std::fs::create_dir_all(&dir).map_err(|e| {
            if is_unwritable(&e) {
                let what = format!("create the state folder {}", dir.display());
                return unwritable(&what, &e, state_dir);
            }
            Error::Io {
                what: format!(
                    "create the state folder {} (set state_dir in the [daemon] table to use another)",
                    dir.display()
                ),
                source: e,
            }
        })?;
        Ok(StateStore { dir })
    }

    /// The store of an existing state folder, for reading only (`backupctl` without a daemon).
    pub fn at(state_dir: &Path) -> StateStore {
        StateStore {
            dir: state_dir.join("jobs"),
        }
    }

    pub fn path_of(&self, job: &str) -> PathBuf {
        self.dir.join(format!("{job}.json"))
    }

    /// The job's state as its file says, read only: nothing is moved or written, so a
    /// reader (`backupctl` without a daemon) can report a problem and leave the repair to the
    /// daemon ([`StateStore::move_aside`]). An error is a file that cannot be read at all.
    pub fn read(&self, job: &str, now: DateTime<Utc>) -> Result<Loaded> {
        let p = self.path_of(job);
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => {
                return Err(Error::Io {
                    what: format!("read the state file {} of job {job:?}", p.display()),
                    source: e,
                })
            }
        };
        Ok(match parse(job, &data, now) {
            Ok(st) => Loaded::Good(st),
            Err(problem) => Loaded::Bad(BadState { path: p, problem }),
        })
    }

    /// Moves a damaged state file aside (to `NAME.json.damaged-TIME`, kept for inspection);
    /// the daemon's repair, never a reader's. Returns where it went.
    pub fn move_aside(&self, bad: &BadState, now: DateTime<Utc>) -> Result<PathBuf> {
        let aside = bad
            .path
            .with_extension(format!("json.damaged-{}", now.format("%Y%m%dT%H%M%S")));
        std::fs::rename(&bad.path, &aside).map_err(|e| Error::Io {
            what: format!(
                "move the damaged state file {} aside to {} (make the folder writable by this user)",
                bad.path.display(),
                aside.display()
            ),
            source: e,
        })?;
        Ok(aside)
    }

    /// Writes the job's state atomically and durably.
    pub fn save(&self, st: &JobState) -> Result<()> {
        let p = self.path_of(&st.job);
        let data = serde_json::to_vec_pretty(st).expect("state serializes");
        crate::fsutil::atomic_write(&p, &data).map_err(|e| {
            if is_unwritable(&e) {
                let what = format!("save the state of job {:?} to {}", st.job, p.display());
                unwritable(&what, &e, &self.dir)
            } else if crate::fsutil::is_disk_full(&e) {
                Error::Input(format!(
                    "cannot save the state of job {:?} to {}: the disk is full\n  hint: free some space in {}; the previous state file is intact",
                    st.job,
                    p.display(),
                    self.dir.display()
                ))
            } else {
                Error::Io {
                    what: format!("write the state file {}", p.display()),
                    source: e,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: usize) -> RunRecord {
        RunRecord::new(
            &format!("r{i}"),
            "j",
            "manual".into(),
            Utc::now(),
            crate::record::Outcome::Success,
            0,
        )
    }

    #[test]
    fn save_load_roundtrip_and_bounded_history() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        assert!(matches!(
            store.read("j", Utc::now()).unwrap(),
            Loaded::Missing
        ));
        let mut st = JobState::new("j", Utc::now());
        for i in 0..7 {
            st.push_history(rec(i), 5);
        }
        assert_eq!(st.history.len(), 5);
        assert_eq!(st.history.first().unwrap().run_id, "r2");
        store.save(&st).unwrap();
        let Loaded::Good(back) = store.read("j", Utc::now()).unwrap() else {
            panic!("not read back")
        };
        assert_eq!(back.history, st.history);
        assert_eq!(back.baseline, st.baseline);
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(d.path().join("jobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["j.json".to_string()]);
    }

    #[test]
    fn a_damaged_file_is_reported_by_read_and_moved_aside_only_when_asked() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        std::fs::write(store.path_of("j"), b"{\"version\": 1, \"job\": ").unwrap();
        let Loaded::Bad(bad) = store.read("j", Utc::now()).unwrap() else {
            panic!("a damaged file reads as good")
        };
        assert!(matches!(bad.problem, StateProblem::Unreadable(_)));
        assert!(store.path_of("j").exists(), "read moves nothing");
        let aside = store.move_aside(&bad, Utc::now()).unwrap();
        assert!(
            aside.to_string_lossy().contains("j.json.damaged-"),
            "{aside:?}"
        );
        assert!(!store.path_of("j").exists());
        assert!(matches!(
            store.read("j", Utc::now()).unwrap(),
            Loaded::Missing
        ));
        let kept = std::fs::read_dir(d.path().join("jobs")).unwrap().count();
        assert_eq!(kept, 1, "the damaged file is kept for inspection");
    }

    #[test]
    fn judge_refuses_another_jobs_name_times_from_the_future_and_unknown_versions() {
        let now = Utc::now();
        let ok = JobState::new("daily", now);
        assert_eq!(judge("daily", &ok, now), Ok(()));
        assert!(matches!(
            judge("hourly", &ok, now),
            Err(StateProblem::OtherJob { .. })
        ));
        let mut soon = ok.clone();
        soon.last_success = Some(now + chrono::TimeDelta::hours(23));
        assert_eq!(judge("daily", &soon, now), Ok(()), "within the tolerance");
        let mut future = ok.clone();
        let at = now + chrono::TimeDelta::days(2);
        future.last_slot = Some(Slot {
            wall: at.naive_utc(),
            at,
            zone: None,
        });
        assert_eq!(
            judge("daily", &future, now),
            Err(StateProblem::FromTheFuture {
                field: "last_slot",
                at
            })
        );
        let mut newer = ok.clone();
        newer.version = 99;
        let p = judge("daily", &newer, now).unwrap_err();
        assert!(
            !p.is_damage() && p.to_string().contains("newer backupd"),
            "{p}"
        );
        newer.version = 0;
        assert!(judge("daily", &newer, now).unwrap_err().is_damage());
    }

    #[test]
    fn a_newer_format_that_does_not_parse_is_refused_not_damaged() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        std::fs::write(store.path_of("j"), b"{\"version\": 2, \"jobs\": []}").unwrap();
        let Loaded::Bad(bad) = store.read("j", Utc::now()).unwrap() else {
            panic!("a newer file reads as good")
        };
        assert_eq!(bad.problem, StateProblem::Newer { found: 2 });
        let hint = bad.for_reader();
        assert!(
            hint.contains("upgrade") && hint.contains("j.json"),
            "{hint}"
        );
    }

    #[test]
    fn an_outcome_this_version_does_not_know_is_kept_not_damage() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        let mut st = JobState::new("j", Utc::now());
        st.push_history(rec(0), 5);
        let text = serde_json::to_string(&st).unwrap();
        let text = text.replace("\"outcome\":\"success\"", "\"outcome\":\"timeout\"");
        std::fs::write(store.path_of("j"), &text).unwrap();
        let Loaded::Good(back) = store.read("j", Utc::now()).unwrap() else {
            panic!("not read back")
        };
        let outcome = &back.history[0].outcome;
        assert_eq!(outcome, &crate::record::Outcome::Other("timeout".into()));
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}
