//! Running a configured backup job once: hooks, consistent sources, the backup, and a report of it all.
//!
//! A run: before-hooks → SQLite captures (retried while busy; waits reported) → the repository
//! opened and locked (shared) → command sources started → `backup_with` → the job's retention
//! (forget its snapshots it does not keep, prune if asked; exclusive lock) → after_success or
//! after_failure hooks → always-hooks.
//!
//! Outcomes:
//! - `success`: a snapshot was saved and every hook succeeded.
//! - `partial`: a partial snapshot was saved (files unreadable or read while locked) and the job
//!   allows it (`allow_partial = true`): after_success hooks run. Exit code 3.
//! - `failed`: no snapshot (a before-hook, a source or the backup failed: after_failure hooks
//!   run), or a partial snapshot the job does not allow (kept; after_failure hooks run; exit 3),
//!   or a snapshot was saved but an after_success or always hook failed: the snapshot stays, and
//!   the run is reported failed with the hook's error (exit 5; after_failure hooks do not run,
//!   since the backup itself succeeded).
//!
//! Always-hooks run at the end of every run, whatever happened. Nothing here knows the CLI.

use crate::cancel::{CancelToken, Progress};
use crate::config::{Config, JobConfig, RepositoryConfig, RetentionConfig};
use crate::engine::backup::{absolute, backup_with, BackupOptions, BackupResult};
use crate::engine::exclude::ExcludeOptions;
use crate::engine::forget::{self, GroupBy};
use crate::engine::prune::{self, PruneOptions};
use crate::error::{exit, Error, Result};
use crate::repo::backend::FileType;
use crate::repo::snapshot::SnapshotSummary;
use crate::repo::Repository;
use crate::sources::command::{self, CommandSource};
use crate::sources::hooks::{run_hooks, HookEnv, HookKind};
use crate::sources::locked::LockedFiles;
use crate::sources::sqlite::{self, SqliteOptions};
use chrono::{DateTime, Local};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Partial,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Partial => "partial",
            Outcome::Failed => "failed",
        }
    }
}

/// One consistent source of a run (a database copy or a command's output).
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// `sqlite` or `command`.
    pub kind: &'static str,
    /// The path in the snapshot.
    pub path: PathBuf,
    /// The command line (commands only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Time spent waiting for a busy or locked source, in seconds.
    pub waited_seconds: f64,
    /// How many times it was found busy.
    pub waits: u32,
    /// The size of the copy (databases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Time spent copying, in seconds (databases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub run_id: String,
    /// Why it ran (`manual`, `schedule`, ...).
    pub reason: String,
    /// The repository's location.
    pub repository: String,
    pub start: DateTime<Local>,
    pub end: DateTime<Local>,
    pub duration_seconds: f64,
    pub outcome: Outcome,
    /// The exit code `backupctl run-job` returns for this run.
    pub exit_code: i32,
    pub snapshot_id: Option<String>,
    pub parent: Option<String>,
    pub error: Option<String>,
    pub summary: Option<SnapshotSummary>,
    /// What made the snapshot partial.
    pub warnings: Vec<String>,
    pub sources: Vec<SourceReport>,
    /// What the job's retention removed after the backup (when it has one).
    pub retention: Option<RetentionReport>,
}

/// The job's retention, applied after a successful backup.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    /// The job's snapshots kept.
    pub kept: usize,
    /// The snapshots forgotten.
    pub removed: Vec<String>,
    /// What prune did, when the retention prunes.
    pub prune: Option<crate::engine::prune::PruneReport>,
}

/// A new run id: the job, the local time and a random suffix (`app-20240101T020000-3f9a`).
pub fn new_run_id(job: &str) -> String {
    format!(
        "{job}-{}-{:04x}",
        Local::now().format("%Y%m%dT%H%M%S"),
        rand::random::<u16>()
    )
}

/// Runs the job `job_name` of `cfg` once. Never panics on a failure: everything is in the
/// report.
pub fn run_job(
    cfg: &Config,
    job_name: &str,
    run_id: &str,
    reason: &str,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> JobReport {
    let start = Local::now();
    let t0 = Instant::now();
    let mut rep = JobReport {
        job: job_name.to_string(),
        run_id: run_id.to_string(),
        reason: reason.to_string(),
        repository: String::new(),
        start,
        end: start,
        duration_seconds: 0.0,
        outcome: Outcome::Failed,
        exit_code: exit::FAILURE,
        snapshot_id: None,
        parent: None,
        error: None,
        summary: None,
        warnings: Vec::new(),
        sources: Vec::new(),
        retention: None,
    };
    let finish = |mut rep: JobReport| {
        rep.end = Local::now();
        rep.duration_seconds = t0.elapsed().as_secs_f64();
        let msg = format!(
            "job {} run {}: {}{}",
            rep.job,
            rep.run_id,
            rep.outcome.as_str(),
            rep.snapshot_id
                .as_deref()
                .map(|s| format!(", snapshot {}", &s[..8.min(s.len())]))
                .unwrap_or_default()
        );
        tracing::info!("{msg}");
        rep
    };
    let job = match cfg.job(job_name) {
        Ok(j) => j,
        Err(e) => {
            rep.exit_code = e.exit_code();
            rep.error = Some(e.to_string());
            return finish(rep);
        }
    };
    let repo_cfg = cfg.repository_of(job);
    rep.repository = repo_cfg.path.clone();
    let hooks = job.hooks.hooks();
    let mut env = HookEnv {
        job: job_name.to_string(),
        run_id: run_id.to_string(),
        repository: repo_cfg.path.clone(),
        ..Default::default()
    };

    // The failure of the run so far: its message and exit code.
    let mut failure: Option<(String, i32)> = None;
    match run_hooks(
        HookKind::Before,
        &hooks.before,
        &env,
        hooks.timeout,
        progress,
    ) {
        Err(e) => failure = Some((e.to_string(), e.exit_code())),
        Ok(()) => match backup_job(job_name, job, repo_cfg, &mut rep, progress, cancel) {
            Err(e) => failure = Some((e.to_string(), e.exit_code())),
            Ok(r) => {
                rep.snapshot_id = Some(r.snapshot_id.to_hex());
                rep.parent = r.parent.map(|p| p.to_hex());
                rep.summary = Some(r.summary().clone());
                rep.warnings = r.warnings.clone();
                env.snapshot_id = rep.snapshot_id.clone();
                if r.is_partial() {
                    rep.outcome = Outcome::Partial;
                    rep.exit_code = exit::PARTIAL;
                    if !job.allow_partial {
                        failure = Some((
                            format!(
                                "snapshot {} is partial: {} file(s) could not be read consistently ({}); the job does not allow partial snapshots\n  hint: the snapshot was kept; fix the cause, or set allow_partial = true in the job",
                                r.snapshot_id.short(),
                                r.warnings.len(),
                                r.warnings.first().map(String::as_str).unwrap_or("")
                            ),
                            exit::PARTIAL,
                        ));
                    }
                } else {
                    rep.outcome = Outcome::Success;
                    rep.exit_code = exit::OK;
                }
            }
        },
    }

    if let (None, Some(ret)) = (&failure, &job.retention) {
        match apply_retention(job_name, ret, repo_cfg, progress, cancel) {
            Ok(r) => rep.retention = Some(r),
            Err(e) => {
                failure = Some((
                    format!(
                        "snapshot {} was saved, but the job's retention failed: {e}",
                        rep.snapshot_id
                            .as_deref()
                            .map_or("", |s| &s[..8.min(s.len())])
                    ),
                    e.exit_code(),
                ))
            }
        }
    }

    match &failure {
        None => {
            env.outcome = Some(rep.outcome.as_str().to_string());
            if let Err(e) = run_hooks(
                HookKind::AfterSuccess,
                &hooks.after_success,
                &env,
                hooks.timeout,
                progress,
            ) {
                failure = Some((e.to_string(), e.exit_code()));
            }
        }
        Some((msg, _)) => {
            env.outcome = Some(Outcome::Failed.as_str().to_string());
            env.error = Some(msg.clone());
            if let Err(e) = run_hooks(
                HookKind::AfterFailure,
                &hooks.after_failure,
                &env,
                hooks.timeout,
                progress,
            ) {
                if let Some((m, _)) = &mut failure {
                    m.push_str(&format!("\nalso: {e}"));
                }
            }
        }
    }

    if let Some((msg, _)) = &failure {
        env.outcome = Some(Outcome::Failed.as_str().to_string());
        env.error = Some(msg.clone());
    }
    if let Err(e) = run_hooks(
        HookKind::Always,
        &hooks.always,
        &env,
        hooks.timeout,
        progress,
    ) {
        match &mut failure {
            Some((m, _)) => m.push_str(&format!("\nalso: {e}")),
            None => failure = Some((e.to_string(), e.exit_code())),
        }
    }

    if let Some((msg, code)) = failure {
        rep.outcome = Outcome::Failed;
        rep.error = Some(msg);
        rep.exit_code = code;
    }
    finish(rep)
}

/// Forgets the job's snapshots (tag `job:NAME`) that its retention does not keep, grouped by
/// host and paths, then prunes when asked. Holds the exclusive lock throughout.
fn apply_retention(
    job_name: &str,
    ret: &RetentionConfig,
    repo_cfg: &RepositoryConfig,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RetentionReport> {
    let be = repo_cfg.backend()?;
    let pw = repo_cfg.password()?;
    let mut repo = Repository::open(be, &pw)?;
    let _lock = crate::repo::lock::lock(&repo, true, repo_cfg.lock_wait)?;
    repo.backend().check_deletable()?;
    let tag = format!("job:{job_name}");
    let mine: Vec<_> = repo
        .list_snapshots()?
        .into_iter()
        .filter(|(_, s)| s.tags.contains(&tag))
        .collect();
    let group_by = GroupBy::parse("host,paths").map_err(Error::Input)?;
    let groups = forget::plan(&mine, &ret.policy(), &group_by)?;
    let mut removed = Vec::new();
    for p in groups.iter().flat_map(|g| g.remove.iter()) {
        cancel.check()?;
        match repo.backend().remove(FileType::Snapshot, &p.id.to_hex()) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        removed.push(p.id.to_hex());
    }
    let kept = groups.iter().map(|g| g.keep.len()).sum();
    tracing::info!(
        "retention of job {job_name}: kept {kept} snapshot(s), forgot {}",
        removed.len()
    );
    let prune = if ret.prune && !removed.is_empty() {
        let r = prune::prune(&mut repo, &PruneOptions::default(), progress, cancel)?;
        tracing::info!(
            "prune after retention of job {job_name}: {} pack(s) deleted, {} repacked",
            r.packs_deleted,
            r.packs_repacked
        );
        Some(r)
    } else {
        None
    };
    Ok(RetentionReport {
        kept,
        removed,
        prune,
    })
}

/// The sources and the backup of a run (between the before- and the after-hooks).
fn backup_job(
    job_name: &str,
    job: &JobConfig,
    repo_cfg: &RepositoryConfig,
    rep: &mut JobReport,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<BackupResult> {
    let mut opts = BackupOptions {
        paths: job.paths.clone(),
        tags: job.tags.clone(),
        host: job.host.clone(),
        job: Some(job_name.to_string()),
        excludes: ExcludeOptions {
            patterns: job.exclude.clone(),
            exclude_files: Vec::new(),
            exclude_caches: job.exclude_caches,
            exact: Vec::new(),
        },
        one_file_system: job.one_file_system,
        locked_files: LockedFiles {
            action: job.locked_files.action,
            retry: job.retry.policy(job.locked_files.wait),
        },
        ..Default::default()
    };

    // Databases first: each is copied consistently (waiting while it is busy) before the lock.
    let mut captured = Vec::new();
    for s in &job.sqlite {
        let db = absolute(&s.path)?;
        let sq = SqliteOptions {
            check: s.check,
            retry: job.retry.policy(s.wait),
            staging_dir: None,
        };
        let t = Instant::now();
        let mut waits = 0u32;
        let r = sqlite::capture(&db, &sq, cancel, &mut |w| {
            waits += 1;
            let msg = w.message();
            progress.note(&msg);
            tracing::info!("{msg}");
        });
        let mut src = SourceReport {
            kind: "sqlite",
            path: db.clone(),
            command: None,
            waited_seconds: t.elapsed().as_secs_f64(),
            waits,
            bytes: None,
            copy_seconds: None,
            error: None,
        };
        match r {
            Ok(c) => {
                src.waited_seconds = c.waited.as_secs_f64();
                src.bytes = Some(c.bytes);
                src.copy_seconds = Some(c.copy_time.as_secs_f64());
                rep.sources.push(src);
                opts.excludes.exact.extend(sqlite::sibling_files(&db));
                captured.push(c);
            }
            Err(e) => {
                src.error = Some(e.to_string());
                rep.sources.push(src);
                return Err(e);
            }
        }
    }

    let be = repo_cfg.backend()?;
    let pw = repo_cfg.password()?;
    let mut repo = Repository::open(be, &pw)?;
    let _lock = crate::repo::lock::lock(&repo, false, repo_cfg.lock_wait)?;
    let mut extras: Vec<_> = captured.iter().map(|c| c.extra()).collect();
    // Commands last: they start producing as soon as they run, and the backup reads them.
    for c in &job.commands {
        let src = CommandSource {
            snapshot_path: c.path.clone(),
            shell: c.run.clone(),
            timeout: c.timeout,
        };
        rep.sources.push(SourceReport {
            kind: "command",
            path: c.path.clone(),
            command: Some(c.run.clone()),
            waited_seconds: 0.0,
            waits: 0,
            bytes: None,
            copy_seconds: None,
            error: None,
        });
        match command::start_with_cancel(&src, cancel) {
            Ok(x) => extras.push(x),
            Err(e) => {
                if let Some(s) = rep.sources.last_mut() {
                    s.error = Some(e.to_string());
                }
                return Err(e);
            }
        }
    }
    let mut r = backup_with(&mut repo, &opts, extras, progress, cancel);
    if r.is_err() && cancel.is_cancelled() {
        r = Err(Error::Interrupted);
    }
    if let Err(Error::Source { what, message }) = &r {
        for s in &mut rep.sources {
            if s.kind == "command" && what.contains(&format!("(for {})", s.path.display())) {
                s.error = Some(message.clone());
            }
        }
    }
    drop(captured);
    r
}
