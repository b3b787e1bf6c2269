//! The control protocol between `backupctl` and `backupd`: versioned JSON lines over a local socket.
//!
//! A connection carries one request: the client sends one [`Envelope`] line; the daemon answers
//! with one or more [`Response`] lines and closes. `run --wait` and `logs`-like streams send
//! [`Response::Event`] lines, then one final line ([`Response::Finished`] or
//! [`Response::Error`]). A daemon that gets an envelope whose `protocol` differs from its own
//! answers [`Response::Error`] with kind [`ErrorKind::Version`] and both versions, so a client
//! and daemon of different releases say so clearly instead of misreading each other.
//!
//! These types are all that the daemon and the CLI share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use crate::record::RunRecord;

/// The protocol's version. Bump it whenever a type here changes incompatibly.
pub const PROTOCOL_VERSION: u32 = 1;

/// The first (and only) line a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub protocol: u32,
    /// The client's name and version, for the daemon's log (`backupctl 0.1.0`).
    pub client: String,
    pub request: Request,
}

impl Envelope {
    pub fn new(request: Request) -> Envelope {
        Envelope {
            protocol: PROTOCOL_VERSION,
            client: format!("backupctl {}", env!("CARGO_PKG_VERSION")),
            request,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// The daemon and every job.
    Status,
    /// Run a job now (reason `manual`). With `wait`, the daemon streams events until it ends.
    /// A manual run that fails is retried (as the job's `retries` say) only with `retry`.
    Run {
        job: String,
        wait: bool,
        #[serde(default)]
        retry: bool,
    },
    /// Stop a job's current run at its next safe point.
    Cancel { job: String },
    /// Read the configuration file again (a file that fails validation is rejected).
    Reload,
    /// The newest runs of a job, newest last.
    History { job: String, limit: usize },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Status(Box<StatusReport>),
    /// A run was started (or queued behind another job on the same repository).
    Accepted {
        job: String,
        run_id: String,
    },
    /// Something happened during a run the client waits for.
    Event {
        job: String,
        run_id: String,
        message: String,
    },
    /// A run ended.
    Finished(Box<RunRecord>),
    Cancelled {
        job: String,
        run_id: String,
    },
    Reloaded {
        jobs: Vec<String>,
    },
    History {
        job: String,
        runs: Vec<RunRecord>,
    },
    Error {
        kind: ErrorKind,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Client and daemon speak different protocol versions.
    Version,
    /// The request named a job the configuration does not have.
    NoSuchJob,
    /// The job is already running (or queued).
    Busy,
    /// Nothing to cancel.
    NotRunning,
    /// The configuration file was rejected; the old one stays in force.
    Config,
    /// The request could not be read.
    BadRequest,
    /// The daemon is shutting down.
    ShuttingDown,
    Other,
}

/// What `backupctl status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusReport {
    pub daemon: DaemonInfo,
    pub jobs: Vec<JobStatus>,
    /// The worst job's health (every job's reasons, prefixed with its name).
    #[serde(default)]
    pub health: Option<crate::monitor::health::JobHealth>,
    /// Every configured repository: size, verification drills and coverage.
    #[serde(default)]
    pub repositories: Vec<RepoStatus>,
}

/// A repository as the daemon sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoStatus {
    pub name: String,
    pub location: String,
    /// Its size on its storage (all files), from the newest listing.
    pub size_bytes: Option<u64>,
    pub packs: Option<u64>,
    pub snapshots: Option<u64>,
    pub measured: Option<DateTime<Utc>>,
    /// The room left on its storage (free space, or what is left of a provider's quota) and
    /// the storage's size or quota, where the storage tells.
    #[serde(default)]
    pub free_bytes: Option<u64>,
    #[serde(default)]
    pub capacity_bytes: Option<u64>,
    /// The share of its packs re-read whole in the current read-data cycle (0.0 to 1.0).
    pub coverage: Option<f64>,
    pub cycle_start: Option<DateTime<Utc>>,
    /// When every pack had last been re-read within one cycle.
    pub last_complete_cycle: Option<DateTime<Utc>>,
    pub drills: Vec<DrillStatus>,
}

/// One verification drill of a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillStatus {
    /// check, read-data or restore-drill.
    pub kind: String,
    pub schedule: String,
    pub running: bool,
    pub next: Option<DateTime<Utc>>,
    pub last_end: Option<DateTime<Utc>>,
    pub last_ok: Option<bool>,
    pub last_summary: Option<String>,
    pub last_error: Option<String>,
    /// The end of its newest successful run.
    pub last_success: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    pub started: DateTime<Utc>,
    pub config_file: PathBuf,
    /// The last reload's error, while the previous configuration stays in force.
    pub config_error: Option<String>,
    pub state_dir: PathBuf,
    pub log_dir: Option<PathBuf>,
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub name: String,
    pub repository: String,
    /// The cron expression, or None for a job that only runs when asked.
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    /// idle, queued, running, retry-pending, or refused (its state file is a newer backupd's).
    pub state: String,
    pub running: Option<RunningInfo>,
    pub last_run: Option<RunRecord>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_snapshot: Option<String>,
    pub consecutive_failures: u32,
    pub next_run: Option<NextRun>,
    /// healthy, warning or error, with the reasons.
    #[serde(default)]
    pub health: Option<crate::monitor::health::JobHealth>,
    /// Success rate, durations and sizes over the newest runs.
    #[serde(default)]
    pub stats: Option<crate::monitor::health::RunStats>,
    /// The newest notification deliveries (a failed one stays visible here).
    #[serde(default)]
    pub notifications: Vec<DeliveryInfo>,
    /// What was wrong with the job's state file and what was done about it.
    #[serde(default)]
    pub state_problem: Option<String>,
}

/// One notification sent (or not) on one channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveryInfo {
    pub time: DateTime<Utc>,
    pub event: String,
    pub channel: String,
    pub ok: bool,
    pub attempts: u32,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NextRun {
    pub at: DateTime<Utc>,
    /// `scheduled 2026-12-02 02:30`, `retry 1 of 3 ...`.
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunningInfo {
    pub run_id: String,
    pub reason: String,
    pub started: Option<DateTime<Utc>>,
    /// Waiting for a free slot or for the repository (another job on it is running).
    pub queued: Option<String>,
    pub phase: Option<String>,
    pub done: u64,
    pub total: Option<u64>,
    /// The last note (e.g. "waiting for /srv/app.db: locked by PID 4242 ...").
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_lines() {
        let e = Envelope::new(Request::Run {
            job: "app".into(),
            wait: true,
            retry: false,
        });
        let line = serde_json::to_string(&e).unwrap();
        assert!(!line.contains('\n'));
        assert!(
            line.contains(r#""request":{"type":"run","job":"app","wait":true,"retry":false}"#),
            "{line}"
        );
        // A client that does not know `retry` asks for no retries.
        let old: Request =
            serde_json::from_str(r#"{"type":"run","job":"app","wait":true}"#).unwrap();
        assert_eq!(
            old,
            Request::Run {
                job: "app".into(),
                wait: true,
                retry: false
            }
        );
        let back: Envelope = serde_json::from_str(&line).unwrap();
        assert_eq!(back.protocol, PROTOCOL_VERSION);
        assert_eq!(back.request, e.request);
        let r = Response::Error {
            kind: ErrorKind::Version,
            message: "x".into(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"type":"error","kind":"version","message":"x"}"#);
    }
}
