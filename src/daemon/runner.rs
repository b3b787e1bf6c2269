//! Executing one run off the event loop: a free slot among `max_parallel`, the job's repository to itself, then `job::run_job` on a blocking thread inside a `run` span.

use crate::cancel::{CancelToken, Progress};
use crate::config::Config;
use crate::job::{run_job, JobReport};
use crate::protocol::{Response, RunningInfo};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, Semaphore};

/// What a run reports back to the event loop when it ends.
pub struct RunDone {
    pub job: String,
    pub run_id: String,
    pub report: JobReport,
}

/// Shared limits: the number of runs at once, and one run at a time per repository.
#[derive(Clone)]
pub struct Limits {
    slots: Arc<Semaphore>,
    repos: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Limits {
    pub fn new(max_parallel: usize) -> Limits {
        Limits {
            slots: Arc::new(Semaphore::new(max_parallel.max(1))),
            repos: Arc::default(),
        }
    }

    /// Waits for a free run slot and then for the repository `key` to be free; both are held
    /// until the returned guards drop.
    pub async fn acquire(
        &self,
        key: &str,
    ) -> (
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedMutexGuard<()>,
    ) {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let repo = self.repo_lock(key).lock_owned().await;
        (slot, repo)
    }

    fn repo_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.repos
            .lock()
            .expect("repo lock map")
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

/// Progress of a run, visible in `backupctl status` and streamed to `run --wait` clients.
pub struct RunProgress {
    pub job: String,
    pub run_id: String,
    pub info: Arc<Mutex<RunningInfo>>,
    pub events: broadcast::Sender<Response>,
}

impl RunProgress {
    fn event(&self, message: String) {
        let _ = self.events.send(Response::Event {
            job: self.job.clone(),
            run_id: self.run_id.clone(),
            message,
        });
    }
}

impl Progress for RunProgress {
    fn phase(&self, name: &str, total: Option<u64>) {
        {
            let mut i = self.info.lock().expect("run info");
            i.phase = Some(name.to_string());
            i.total = total;
            i.done = 0;
        }
        tracing::debug!(phase = name, "run phase");
        self.event(format!("{name}..."));
    }
    fn inc(&self, n: u64) {
        self.info.lock().expect("run info").done += n;
    }
    fn note(&self, msg: &str) {
        self.info.lock().expect("run info").note = Some(msg.to_string());
        log_note(msg);
        self.event(msg.to_string());
    }
}

/// A run's note in the log, once (the code that notes something does not log it too): at the
/// level its prefix names (`error: `, `warning: `), without the prefix; else at info.
fn log_note(msg: &str) {
    if let Some(m) = msg.strip_prefix("error: ") {
        tracing::error!("{m}");
    } else if let Some(m) = msg.strip_prefix("warning: ") {
        tracing::warn!("{m}");
    } else {
        tracing::info!("{msg}");
    }
}

/// Everything a run needs; [`spawn`] consumes it.
pub struct RunSpec {
    pub config: Arc<Config>,
    pub job: String,
    pub run_id: String,
    pub reason: String,
    /// The key runs on one repository share (its location).
    pub repo_key: String,
    pub cancel: CancelToken,
    pub progress: Arc<RunProgress>,
}

/// Starts the run in the background; its end is sent to `done`.
pub fn spawn(spec: RunSpec, limits: Limits, done: mpsc::UnboundedSender<RunDone>) {
    tokio::spawn(async move {
        let RunSpec {
            config,
            job,
            run_id,
            reason,
            repo_key,
            cancel,
            progress,
        } = spec;
        set_queued(
            &progress,
            Some("waiting for a free run slot (max_parallel)".into()),
        );
        let _slot = limits
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let repo = limits.repo_lock(&repo_key);
        if repo.try_lock().is_err() {
            let msg = format!("waiting for another job on the repository {repo_key} to finish");
            tracing::info!(job = %job, run_id = %run_id, "{msg}");
            set_queued(&progress, Some(msg));
        }
        let _repo = repo.lock().await;
        set_queued(&progress, None);
        if cancel.is_cancelled() {
            let report = failed_report(
                &job,
                &run_id,
                &repo_key,
                crate::Error::Interrupted.to_string(),
                crate::error::exit::INTERRUPTED,
            );
            let _ = done.send(RunDone {
                job,
                run_id,
                report,
            });
            return;
        }
        progress.info.lock().expect("run info").started = Some(Utc::now());
        let (j, r) = (job.clone(), run_id.clone());
        let report = tokio::task::spawn_blocking(move || {
            let span = tracing::info_span!("run", job = %j, run_id = %r);
            let _e = span.enter();
            tracing::info!("run started: {reason}");
            run_job(&config, &j, &r, &reason, progress.as_ref(), &cancel)
        })
        .await;
        let report = report.unwrap_or_else(|e| {
            failed_report(
                &job,
                &run_id,
                &repo_key,
                format!(
                    "the run crashed inside backupd: {e}\n  hint: this is a bug; the repository is intact (nothing half-committed is visible); please report it with the log"
                ),
                crate::error::exit::FAILURE,
            )
        });
        let _ = done.send(RunDone {
            job,
            run_id,
            report,
        });
    });
}

/// The report of a run that never got to run its job (cancelled while queued, or crashed).
fn failed_report(job: &str, run_id: &str, repo: &str, error: String, exit_code: i32) -> JobReport {
    let now = chrono::Local::now();
    JobReport {
        job: job.to_string(),
        run_id: run_id.to_string(),
        reason: String::new(),
        repository: repo.to_string(),
        start: now,
        end: now,
        duration_seconds: 0.0,
        outcome: crate::record::Outcome::Failed,
        exit_code,
        snapshot_id: None,
        parent: None,
        error: Some(error),
        summary: None,
        warnings: Vec::new(),
        sources: Vec::new(),
        retention: None,
        verify_after: None,
        copied: None,
    }
}

fn set_queued(p: &RunProgress, why: Option<String>) {
    p.info.lock().expect("run info").queued = why;
}
