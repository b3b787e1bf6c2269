//! The daemon's persistent per-job state: the last slot served, the run in progress, retries, and a bounded run history — one JSON file per job, written atomically.
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

/// The folder of state files.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// Opens (creating it when missing) the `jobs/` folder under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<StateStore> {
        let dir = state_dir.join("jobs");
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
            what: format!(
                "create the state folder {} (set state_dir in the [daemon] table to use another)",
                dir.display()
            ),
            source: e,
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

    /// The job's state; None when it has none yet. A damaged file is renamed aside (to
    /// `NAME.json.damaged-TIME`) and reported as the error, so the caller can start anew and say
    /// so; the damaged file is kept for inspection.
    pub fn load(&self, job: &str) -> Result<Option<JobState>> {
        let p = self.path_of(job);
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io {
                    what: format!("read the state file {}", p.display()),
                    source: e,
                })
            }
        };
        match serde_json::from_slice::<JobState>(&data) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                let aside = p.with_extension(format!(
                    "json.damaged-{}",
                    Utc::now().format("%Y%m%dT%H%M%S")
                ));
                let _ = std::fs::rename(&p, &aside);
                Err(Error::Input(format!(
                    "the state file {} of job {job:?} is damaged ({e}); it was moved to {} and the job starts with a fresh state (no catch-up for slots missed before now)",
                    p.display(),
                    aside.display()
                )))
            }
        }
    }

    /// Writes the job's state atomically and durably.
    pub fn save(&self, st: &JobState) -> Result<()> {
        let p = self.path_of(&st.job);
        let data = serde_json::to_vec_pretty(st).expect("state serializes");
        crate::fsutil::atomic_write(&p, &data).map_err(|e| {
            if crate::fsutil::is_disk_full(&e) {
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
        assert!(store.load("j").unwrap().is_none());
        let mut st = JobState::new("j", Utc::now());
        for i in 0..7 {
            st.push_history(rec(i), 5);
        }
        assert_eq!(st.history.len(), 5);
        assert_eq!(st.history.first().unwrap().run_id, "r2");
        store.save(&st).unwrap();
        let back = store.load("j").unwrap().unwrap();
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
    fn a_damaged_file_is_moved_aside_and_reported() {
        let d = tempfile::tempdir().unwrap();
        let store = StateStore::open(d.path()).unwrap();
        std::fs::write(store.path_of("j"), b"{\"version\": 1, \"job\": ").unwrap();
        let e = store.load("j").unwrap_err().to_string();
        assert!(e.contains("is damaged") && e.contains("damaged-"), "{e}");
        assert!(!store.path_of("j").exists());
        assert!(store.load("j").unwrap().is_none());
        let kept = std::fs::read_dir(d.path().join("jobs")).unwrap().count();
        assert_eq!(kept, 1, "the damaged file is kept for inspection");
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
        let back = store.load("j").unwrap().unwrap();
        let outcome = &back.history[0].outcome;
        assert_eq!(outcome, &crate::record::Outcome::Other("timeout".into()));
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}
