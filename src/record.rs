//! The record of one run: what the history, the state files, health and every report keep of it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// How a run ended, as the history, the state files, the socket and every report spell it
/// (lowercase: `success`, `partial`, ...).
///
/// A run of a job ([`crate::job`]) ends in `Success`, `Partial` or `Failed`; the daemon records
/// a run it stopped as `Cancelled` (by `backupctl cancel`) or `Interrupted` (by its own stop,
/// or its death), and a missed slot it did not catch up as `Skipped`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A snapshot was saved and every hook succeeded.
    Success,
    /// A partial snapshot was saved (some files could not be read consistently).
    Partial,
    /// No snapshot, a partial one the job does not allow, or a hook failed.
    Failed,
    /// Stopped by `backupctl cancel`.
    Cancelled,
    /// Stopped because backupd stopped (or died) during it.
    Interrupted,
    /// A missed slot that was not caught up (`catch_up = skip`).
    Skipped,
    /// A word this version does not know, read from a state file or the socket (a newer
    /// backupd's, or a hand edit): kept as read and written back unchanged, neither a success
    /// nor a skip. This version never makes one; [`Outcome::parse`] does not for the words
    /// above.
    Other(String),
}

impl Outcome {
    /// The outcomes this version knows, in declaration order.
    pub const KNOWN: [Outcome; 6] = [
        Outcome::Success,
        Outcome::Partial,
        Outcome::Failed,
        Outcome::Cancelled,
        Outcome::Interrupted,
        Outcome::Skipped,
    ];

    /// The outcome's word, as files and reports spell it.
    pub fn as_str(&self) -> &str {
        match self {
            Outcome::Success => "success",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Interrupted => "interrupted",
            Outcome::Skipped => "skipped",
            Outcome::Other(s) => s,
        }
    }

    /// The outcome a word names; a word this version does not know is kept as [`Outcome::Other`].
    pub fn parse(word: &str) -> Outcome {
        Outcome::KNOWN
            .into_iter()
            .find(|o| o.as_str() == word)
            .unwrap_or_else(|| Outcome::Other(word.to_string()))
    }

    /// `success` or `partial`: the run made a snapshot the job accepts as a backup.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success | Outcome::Partial)
    }
}

impl fmt::Display for Outcome {
    /// The word, padded as the format asks (`{:<11}` in the history's lines).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// As a plain string (the history and the state files have always held one).
impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// From any string, as the `String` this field was before: nothing a file holds is rejected.
impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Outcome, D::Error> {
        String::deserialize(d).map(|s| Outcome::parse(&s))
    }
}

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
    pub outcome: Outcome,
    pub exit_code: i32,
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    pub files_new: Option<u64>,
    pub files_changed: Option<u64>,
    pub data_added: Option<u64>,
    pub bytes_processed: Option<u64>,
    pub warnings: usize,
    /// A destination job's run: how many snapshots it copied (`data_added` is the bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied: Option<usize>,
}

impl RunRecord {
    /// A record with no slot, no snapshot, no error and no counts, that ended when it began.
    pub fn new(
        run_id: &str,
        job: &str,
        reason: String,
        start: DateTime<Utc>,
        outcome: Outcome,
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
            outcome,
            exit_code,
            snapshot_id: None,
            error: None,
            files_new: None,
            files_changed: None,
            data_added: None,
            bytes_processed: None,
            warnings: 0,
            copied: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_round_trips_as_its_lowercase_word() {
        let words = [
            "success",
            "partial",
            "failed",
            "cancelled",
            "interrupted",
            "skipped",
        ];
        for (o, word) in Outcome::KNOWN.into_iter().zip(words) {
            let json = serde_json::to_string(&o).unwrap();
            assert_eq!(json, format!("\"{word}\""));
            assert_eq!(serde_json::from_str::<Outcome>(&json).unwrap(), o);
            assert_eq!((o.as_str(), o.to_string()), (word, word.to_string()));
        }
    }

    #[test]
    fn an_unknown_word_is_kept_and_written_back_unchanged() {
        let o: Outcome = serde_json::from_str("\"exploded\"").unwrap();
        assert_eq!(o, Outcome::Other("exploded".into()));
        assert_eq!(serde_json::to_string(&o).unwrap(), "\"exploded\"");
        assert!(!o.is_success());
        // Case matters, as it did for the String this was.
        assert_eq!(Outcome::parse("Success"), Outcome::Other("Success".into()));
    }

    #[test]
    fn only_a_string_is_an_outcome() {
        assert!(serde_json::from_str::<Outcome>("3").is_err());
        assert!(serde_json::from_str::<Outcome>("null").is_err());
    }

    #[test]
    fn display_pads_like_a_str() {
        assert_eq!(format!("[{:<11}]", Outcome::Failed), "[failed     ]");
    }

    #[test]
    fn only_success_and_partial_are_successes() {
        let ok: Vec<&str> = Outcome::KNOWN
            .iter()
            .filter(|o| o.is_success())
            .map(Outcome::as_str)
            .collect();
        assert_eq!(ok, ["success", "partial"]);
    }
}
