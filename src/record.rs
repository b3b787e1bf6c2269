//! The record of one run: what the history, the state files, health and every report keep of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One run, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub job: String,
    /// Why it ran, in words: `scheduled 2026-12-01 02:30`, `catch-up for ... missed while
    /// backupd was stopped`, `manual`, `retry 2 of 3 ...`.
    pub reason: String,
    /// The slot it served, if any (`2026-12-01 02:30`, the schedule's wall time).
    pub slot: Option<String>,
    /// For a catch-up: how many slots it stands for, and the oldest of them.
    #[serde(default)]
    pub missed: usize,
    #[serde(default)]
    pub first_missed: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub duration_seconds: f64,
    /// success, partial, failed, interrupted, or skipped (a missed slot not caught up).
    pub outcome: String,
    pub exit_code: i32,
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    pub files_new: Option<u64>,
    pub files_changed: Option<u64>,
    pub data_added: Option<u64>,
    pub bytes_processed: Option<u64>,
    pub warnings: usize,
}

impl RunRecord {
    /// A record with no slot, no snapshot, no error and no counts, that ended when it began.
    pub fn new(
        run_id: &str,
        job: &str,
        reason: String,
        start: DateTime<Utc>,
        outcome: &str,
        exit_code: i32,
    ) -> RunRecord {
        RunRecord {
            run_id: run_id.to_string(),
            job: job.to_string(),
            reason,
            slot: None,
            missed: 0,
            first_missed: None,
            start,
            end: start,
            duration_seconds: 0.0,
            outcome: outcome.to_string(),
            exit_code,
            snapshot_id: None,
            error: None,
            files_new: None,
            files_changed: None,
            data_added: None,
            bytes_processed: None,
            warnings: 0,
        }
    }
}
