//! Running a configured backup job once: hooks, consistent sources, the backup, and a report of it all.
//!
//! A run: before-hooks → SQLite captures (retried while busy; waits reported) → the repository
//! opened and locked (shared) → command sources started → `backup_with` → the job's retention
//! (forget its snapshots it does not keep, prune if asked; exclusive lock) → after_success or
//! after_failure hooks → always-hooks. With `verify_after`, the packs the backup wrote are read
//! back from the storage before the run can succeed.
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
//!
//! A destination job (`app@offsite`, see `config::destinations`) runs [`copy`] instead: no
//! hooks, no sources; it copies the job's snapshots its repository is missing.

mod copy;

use crate::cancel::{CancelToken, Progress};
use crate::config::{Config, JobConfig, RepositoryConfig, RetentionConfig, SizeLimitPolicy};
use crate::engine::backup::{absolute, backup_with, BackupOptions, BackupResult};
use crate::engine::check::{read_back, ReadBack, VerifyAfter};
use crate::engine::exclude::ExcludeOptions;
use crate::engine::forget::{self, GroupBy};
use crate::engine::measure::source_bytes;
use crate::engine::prune::{self, PruneOptions};
use crate::error::{exit, Error, Result};
use crate::record::Outcome;
use crate::repo::backend::FileType;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::snapshot::SnapshotSummary;
use crate::sources::command::CommandSource;
use crate::sources::hooks::{run_hooks, HookEnv, HookKind, Hooks};
use crate::sources::locked::LockedFiles;
use crate::sources::prepare::{attribute_failure, prepare, SourceSpecs, SqliteSpec};
use crate::sources::retry::Waiting;
use crate::sources::sqlite::SqliteOptions;
use chrono::{DateTime, Local};
use serde::Serialize;
use std::time::Instant;

pub(crate) use crate::sources::prepare::SourceReport;

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct JobReport {
    pub job: String,
    pub run_id: String,
    /// Why it ran (`manual`, `schedule`, ...).
    pub reason: String,
    /// The repository's location.
    pub repository: String,
    pub start: DateTime<Local>,
    pub end: DateTime<Local>,
    pub duration_seconds: f64,
    /// `success`, `partial` or `failed`: the outcomes a run of a job ends in.
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
    /// What reading back the run's new packs found and cost (`verify_after`; none when off).
    pub verify_after: Option<ReadBack>,
    /// A destination job's copies (none for a backup).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copied: Option<copy::CopiedReport>,
}

/// The job's retention, applied after a successful backup.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RetentionReport {
    /// The job's snapshots kept.
    pub kept: usize,
    /// The snapshots forgotten.
    pub removed: Vec<String>,
    /// What prune did, when the retention prunes.
    pub prune: Option<crate::engine::prune::PruneReport>,
    /// Why the retention was not applied this run (the repository was locked, e.g. by a copy
    /// to another destination reading it): the next run applies it. Forgetting later never
    /// loses data, so this does not fail the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postponed: Option<String>,
}

/// A new run id: the job, the local time and a random suffix (`app-20240101T020000-3f9a`).
pub(crate) fn new_run_id(job: &str) -> String {
    format!(
        "{job}-{}-{:04x}",
        Local::now().format("%Y%m%dT%H%M%S"),
        rand::random::<u16>()
    )
}

impl JobReport {
    /// The report of a run that starts now; failed until something succeeds.
    fn started(job: &str, run_id: &str, reason: &str) -> JobReport {
        let start = Local::now();
        JobReport {
            job: job.to_string(),
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
            verify_after: None,
            copied: None,
        }
    }

    /// Records a destination job's copies: a success, its snapshot the newest copy.
    fn record_copies(&mut self, c: copy::CopiedReport) {
        if let Some((_, newest)) = c.copied.last() {
            self.snapshot_id = Some(newest.clone());
        }
        self.outcome = Outcome::Success;
        self.exit_code = exit::OK;
        self.copied = Some(c);
    }

    /// The first 8 characters of the snapshot's id ("" without a snapshot).
    fn short_snapshot(&self) -> &str {
        self.snapshot_id
            .as_deref()
            .map_or("", |s| &s[..8.min(s.len())])
    }

    /// Records the snapshot a backup saved and decides the outcome: success, or partial (which
    /// fails the run unless the job allows partial snapshots).
    fn record_backup(&mut self, r: &BackupResult, allow_partial: bool) -> Option<Failure> {
        self.snapshot_id = Some(r.snapshot_id.to_hex());
        self.parent = r.parent.map(|p| p.to_hex());
        self.summary = Some(r.summary().clone());
        self.warnings = r.warnings.clone();
        if !r.is_partial() {
            self.outcome = Outcome::Success;
            self.exit_code = exit::OK;
            return None;
        }
        self.outcome = Outcome::Partial;
        self.exit_code = exit::PARTIAL;
        (!allow_partial).then(|| Failure {
            message: format!(
                "snapshot {} is partial: {} file(s) could not be read consistently ({}); the job does not allow partial snapshots\n  hint: the snapshot was kept; fix the cause, or set allow_partial = true in the job",
                r.snapshot_id.short(),
                r.warnings.len(),
                r.warnings.first().map(String::as_str).unwrap_or("")
            ),
            code: exit::PARTIAL,
        })
    }

    /// After a saved snapshot: the run fails when reading back its new packs found damage.
    fn judge_read_back(&self) -> Option<Failure> {
        let rb = self.verify_after.as_ref()?;
        let first = rb.damaged.first()?;
        Some(Failure {
            message: format!(
                "snapshot {} was saved, but reading back the {} pack(s) it wrote found {} damaged: {first}\n  hint: the storage lost or changed data after it was written; run `backupctl check --read-data` on the repository, and check the storage before trusting it",
                self.short_snapshot(),
                rb.packs_read,
                rb.damaged.len(),
            ),
            code: exit::DAMAGED,
        })
    }

    /// The report as the run ends: its end, its duration, and the failure if there is one.
    fn finish(mut self, failure: Option<Failure>, t0: Instant) -> JobReport {
        if let Some(f) = failure {
            self.outcome = Outcome::Failed;
            self.error = Some(f.message);
            self.exit_code = f.code;
        }
        self.end = Local::now();
        self.duration_seconds = t0.elapsed().as_secs_f64();
        // No log line here: the daemon logs the run's end once it has settled its outcome as
        // the history records it (a run stopped by SIGTERM is `interrupted`, not `failed`).
        self
    }
}

/// What failed a run so far: the message and the exit code.
#[derive(Debug, Clone, PartialEq)]
struct Failure {
    message: String,
    code: i32,
}

impl Failure {
    fn of(e: &Error) -> Failure {
        Failure {
            message: e.to_string(),
            code: e.exit_code(),
        }
    }

    /// A later error (an after_failure or always hook's) joins the message; the code stays.
    fn also(&mut self, e: &Error) {
        self.message.push_str(&format!("\nalso: {e}"));
    }
}

/// Runs the job `job_name` of `cfg` once. Never panics on a failure: everything is in the
/// report.
pub(crate) fn run_job(
    cfg: &Config,
    job_name: &str,
    run_id: &str,
    reason: &str,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> JobReport {
    let t0 = Instant::now();
    let mut rep = JobReport::started(job_name, run_id, reason);
    let job = match cfg.job(job_name) {
        Ok(j) => j,
        Err(e) => return rep.finish(Some(Failure::of(&e)), t0),
    };
    let repo_cfg = cfg.repository_of(job);
    rep.repository = repo_cfg.path.shown();
    if let Some(d) = &job.destination_of {
        let failure = copy::run(cfg, job_name, job, d, &mut rep, progress, cancel);
        return rep.finish(failure, t0);
    }
    let hooks = job.hooks.hooks();
    let mut env = HookEnv {
        job: job_name.to_string(),
        run_id: run_id.to_string(),
        repository: match job.hooks.pass_repository_credentials {
            true => repo_cfg.path.expose().to_string(),
            false => repo_cfg.path.shown(),
        },
        ..Default::default()
    };
    let mut failure = match run_hooks(
        HookKind::Before,
        &hooks.before,
        &env,
        hooks.timeout,
        progress,
    ) {
        Err(e) => Some(Failure::of(&e)),
        Ok(()) => match backup_job(job_name, job, repo_cfg, &mut rep, progress, cancel) {
            Err(e) => Some(Failure::of(&e)),
            Ok(r) => {
                env.snapshot_id = Some(r.snapshot_id.to_hex());
                let f = rep.record_backup(&r, job.allow_partial);
                f.or_else(|| rep.judge_read_back())
            }
        },
    };
    if let (None, Some(ret)) = (&failure, &job.retention) {
        match apply_retention(job_name, ret, repo_cfg, progress, cancel) {
            Ok(r) => rep.retention = Some(r),
            Err(e) => {
                failure = Some(Failure {
                    message: format!(
                        "snapshot {} was saved, but the job's retention failed: {e}",
                        rep.short_snapshot()
                    ),
                    code: e.exit_code(),
                })
            }
        }
    }
    let failure = run_after_hooks(&hooks, &mut env, &rep.outcome, failure, progress);
    rep.finish(failure, t0)
}

/// The hooks that end a run: after_success (the run has not failed so far; `outcome` is success
/// or an allowed partial) or after_failure, then always. Returns the run's failure with theirs:
/// a failed after_success or always hook fails the run; a failed after_failure or always hook
/// after a failure joins its message.
fn run_after_hooks(
    hooks: &Hooks,
    env: &mut HookEnv,
    outcome: &Outcome,
    mut failure: Option<Failure>,
    progress: &dyn Progress,
) -> Option<Failure> {
    let run =
        |kind, list: &[String], env: &HookEnv| run_hooks(kind, list, env, hooks.timeout, progress);
    match &mut failure {
        None => {
            env.outcome = Some(outcome.as_str().to_string());
            if let Err(e) = run(HookKind::AfterSuccess, &hooks.after_success, env) {
                failure = Some(Failure::of(&e));
            }
        }
        Some(f) => {
            env.outcome = Some(Outcome::Failed.as_str().to_string());
            env.error = Some(f.message.clone());
            if let Err(e) = run(HookKind::AfterFailure, &hooks.after_failure, env) {
                f.also(&e);
            }
        }
    }
    if let Some(f) = &failure {
        env.outcome = Some(Outcome::Failed.as_str().to_string());
        env.error = Some(f.message.clone());
    }
    if let Err(e) = run(HookKind::Always, &hooks.always, env) {
        match &mut failure {
            Some(f) => f.also(&e),
            None => failure = Some(Failure::of(&e)),
        }
    }
    failure
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
    let (mut repo, _lock) = match open_repository(&repo_cfg.settings()?, LockMode::Exclusive) {
        Err(e @ Error::Locked { .. }) => {
            let why = format!("{e}; the next run applies the retention");
            tracing::warn!("retention of job {job_name} postponed: {why}");
            return Ok(RetentionReport {
                kept: 0,
                removed: Vec::new(),
                prune: None,
                postponed: Some(why),
            });
        }
        r => r?,
    };
    repo.backend().check_deletable()?;
    let tag = format!("job:{job_name}");
    // Retention judges the snapshots it can read; a damaged file stays (and is named) until
    // `backupctl forget ID` removes it.
    let snaps = repo.load_snapshots()?;
    for d in &snaps.damaged {
        tracing::warn!("retention skipped it: {}", d.error());
    }
    let mine: Vec<_> = snaps
        .readable
        .into_iter()
        .filter(|(_, s)| s.tags.contains(&tag))
        .collect();
    let group_by = GroupBy::parse("host,paths").map_err(Error::Input)?;
    let groups = forget::plan(&mine, &ret.policy(), &group_by, chrono::Utc::now())?;
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
        postponed: None,
    })
}

/// The backup options of a job (its paths, tags, excludes and locked-file policy).
fn backup_options(job_name: &str, job: &JobConfig) -> BackupOptions {
    BackupOptions {
        paths: job.paths.clone(),
        tags: job.tags.clone(),
        host: job.host.clone(),
        job: Some(job_name.to_string()),
        excludes: ExcludeOptions {
            patterns: job.exclude.clone(),
            exclude_files: Vec::new(),
            exclude_caches: job.exclude_caches,
            exact: Vec::new(),
            if_present: job.exclude_if_present.clone(),
            larger_than: job.exclude_larger_than,
            ..Default::default()
        },
        one_file_system: job.one_file_system,
        manifest: job.manifest,
        locked_files: LockedFiles {
            action: job.locked_files.action,
            retry: job.retry.policy(job.locked_files.wait),
        },
        ..Default::default()
    }
}

/// The job's databases (each with its check and its wait) and commands.
fn source_specs(job: &JobConfig) -> Result<SourceSpecs> {
    let sqlite = job
        .sqlite
        .iter()
        .map(|s| {
            Ok(SqliteSpec {
                path: absolute(&s.path)?,
                options: SqliteOptions {
                    check: s.check,
                    retry: job.retry.policy(s.wait),
                    staging_dir: None,
                },
            })
        })
        .collect::<Result<_>>()?;
    let commands = job
        .commands
        .iter()
        .map(|c| CommandSource {
            snapshot_path: c.path.clone(),
            shell: c.run.clone(),
            timeout: c.timeout,
        })
        .collect();
    Ok(SourceSpecs { sqlite, commands })
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
    let mut opts = backup_options(job_name, job);
    // Databases first: each is copied consistently (waiting while it is busy) before the lock.
    // A note only: the daemon's progress sink logs it.
    let mut on_wait = |w: &Waiting| progress.note(&w.message());
    let prepared = prepare(&source_specs(job)?, cancel, &mut on_wait, &mut rep.sources)?;
    opts.excludes.exact.extend(prepared.excludes());
    check_source_size(job_name, job, &opts, &prepared, progress, cancel)?;
    let (mut repo, _lock) = open_repository(&repo_cfg.settings()?, LockMode::Shared)?;
    check_added_size(job_name, job, &mut repo, &opts, &prepared, progress, cancel)?;
    // Commands last: they start producing as soon as they run, and the backup reads them.
    let extras = prepared.start(cancel, &mut rep.sources)?;
    let mut r = backup_with(&mut repo, &opts, extras, progress, cancel);
    if let (Ok(saved), how) = (&r, job.verify_after) {
        if how != VerifyAfter::Off {
            progress.phase("verify_after", None);
            let rb = read_back_report(&repo, &saved.written, how, cancel);
            progress.note(&rb.describe());
            rep.verify_after = Some(rb);
        }
    }
    if r.is_err() && cancel.is_cancelled() {
        r = Err(Error::Interrupted);
    }
    if let Err(e) = &r {
        attribute_failure(&mut rep.sources, e);
    }
    drop(prepared);
    r
}

/// With `max_source_size`: measures what the run would read (its files and database copies)
/// before anything is written; over the limit, fails or warns by the job's policy.
fn check_source_size(
    job_name: &str,
    job: &JobConfig,
    opts: &BackupOptions,
    prepared: &crate::sources::prepare::Prepared,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<()> {
    let Some(limit) = job.max_source_size else {
        return Ok(());
    };
    let files = source_bytes(&opts.paths, &opts.excludes, opts.one_file_system, cancel)?;
    let databases: u64 = prepared.databases().iter().map(|c| c.bytes).sum();
    let Some(over) = over_size_limit(files, databases, limit) else {
        return Ok(());
    };
    size_limit_verdict(job_name, job, over, "max_source_size", progress)
}

/// With `max_added_size`: a dry run of the backup (files and database copies, not the
/// commands) finds what the run would add; over the limit, fails or warns by the job's policy.
fn check_added_size(
    job_name: &str,
    job: &JobConfig,
    repo: &mut crate::repo::Repository,
    opts: &BackupOptions,
    prepared: &crate::sources::prepare::Prepared,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<()> {
    let Some(limit) = job.max_added_size else {
        return Ok(());
    };
    progress.phase("measure", None);
    let dry = BackupOptions {
        dry_run: true,
        ..opts.clone()
    };
    let quiet = crate::cancel::NoProgress;
    let r = backup_with(repo, &dry, prepared.database_extras(), &quiet, cancel)?;
    let added = r.summary().data_added;
    if added <= limit {
        return Ok(());
    }
    let hb = crate::size::human_bytes;
    let over = format!(
        "the run would add {} of new data (before compression), over max_added_size {}",
        hb(added),
        hb(limit)
    );
    size_limit_verdict(job_name, job, over, "max_added_size", progress)
}

/// A run over one of its size limits (`key`): an error, or with `on_size_limit = "warn"` a
/// warning note.
fn size_limit_verdict(
    job_name: &str,
    job: &JobConfig,
    over: String,
    key: &str,
    progress: &dyn Progress,
) -> Result<()> {
    match job.on_size_limit {
        SizeLimitPolicy::Warn => {
            progress.note(&format!(
                "warning: {over}; backing up anyway (on_size_limit = \"warn\")"
            ));
            Ok(())
        }
        SizeLimitPolicy::Fail => Err(Error::Source {
            what: format!("the sources of job {job_name}"),
            message: format!("{over}; nothing was written\n  hint: leave out what need not be kept (exclude), raise {key}, or set on_size_limit = \"warn\" to back up anyway"),
        }),
    }
}

/// The message when `files` + `databases` bytes are over `limit`.
fn over_size_limit(files: u64, databases: u64, limit: u64) -> Option<String> {
    let total = files + databases;
    (total > limit).then(|| {
        let hb = crate::size::human_bytes;
        let parts = match databases {
            0 => "of files".to_string(),
            d => format!("({} of files, {} of database copies)", hb(files), hb(d)),
        };
        format!(
            "the run would read {} {parts}, over max_source_size {}",
            hb(total),
            hb(limit)
        )
    })
}

/// Reads back the run's new packs; a read-back that cannot run is reported as its damage.
fn read_back_report(
    repo: &crate::repo::Repository,
    packs: &[crate::repo::index::IndexPack],
    how: VerifyAfter,
    cancel: &CancelToken,
) -> ReadBack {
    read_back(repo, packs, how, cancel).unwrap_or_else(|e| ReadBack {
        packs_written: packs.len(),
        damaged: vec![format!("the read-back could not run: {e}")],
        ..ReadBack::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::NoProgress;
    use crate::repo::id::Id;
    use crate::repo::snapshot::Snapshot;

    fn saved(warnings: &[&str]) -> BackupResult {
        BackupResult {
            snapshot_id: Id([7; 32]),
            snapshot: Snapshot {
                time: Local::now().fixed_offset(),
                parent: None,
                tree: Id([1; 32]),
                paths: vec!["/srv".into()],
                hostname: String::new(),
                username: String::new(),
                uid: 0,
                gid: 0,
                excludes: Vec::new(),
                tags: Vec::new(),
                original: None,
                program_version: String::new(),
                summary: Some(SnapshotSummary::default()),
            },
            parent: Some(Id([2; 32])),
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
            resumed: Default::default(),
            written: Vec::new(),
            dry_run: false,
            skipped: false,
        }
    }

    #[test]
    fn a_jobs_manifest_option_reaches_the_backup_and_is_off_by_default() {
        let text = |extra: &str| {
            format!("[repositories.r]\npath = \"/r\"\npassword_file = \"/p\"\n[jobs.j]\nrepository = \"r\"\npaths = [\"/x\"]\n{extra}")
        };
        let on = Config::parse(&text("manifest = true\n"), std::path::Path::new("t.toml")).unwrap();
        assert!(backup_options("j", on.job("j").unwrap()).manifest);
        let off = Config::parse(&text(""), std::path::Path::new("t.toml")).unwrap();
        assert!(!backup_options("j", off.job("j").unwrap()).manifest);
    }

    #[test]
    fn the_size_limit_message_gives_the_sizes_and_the_limit() {
        assert_eq!(over_size_limit(10, 10, 20), None);
        assert_eq!(
            over_size_limit(3 << 20, 0, 2 << 20).unwrap(),
            "the run would read 3.00 MiB of files, over max_source_size 2.00 MiB"
        );
        assert_eq!(
            over_size_limit(1 << 20, 2 << 20, 2 << 20).unwrap(),
            "the run would read 3.00 MiB (1.00 MiB of files, 2.00 MiB of database copies), over max_source_size 2.00 MiB"
        );
    }

    #[test]
    fn a_partial_snapshot_fails_the_run_unless_the_job_allows_it() {
        let mut rep = JobReport::started("app", "app-1", "manual");
        assert_eq!(rep.record_backup(&saved(&[]), false), None);
        assert_eq!(
            (rep.outcome.clone(), rep.exit_code),
            (Outcome::Success, exit::OK)
        );
        assert_eq!(rep.short_snapshot(), "07070707");
        assert_eq!(rep.parent, Some(Id([2; 32]).to_hex()));

        let mut rep = JobReport::started("app", "app-1", "manual");
        assert_eq!(rep.record_backup(&saved(&["/srv/a: locked"]), true), None);
        assert_eq!(
            (rep.outcome.clone(), rep.exit_code),
            (Outcome::Partial, exit::PARTIAL)
        );

        let mut rep = JobReport::started("app", "app-1", "manual");
        let f = rep
            .record_backup(&saved(&["/srv/a: locked"]), false)
            .unwrap();
        assert_eq!(f.code, exit::PARTIAL);
        assert!(f
            .message
            .contains("1 file(s) could not be read consistently (/srv/a: locked)"));
        let rep = rep.finish(Some(f), Instant::now());
        assert_eq!(
            (rep.outcome.clone(), rep.exit_code),
            (Outcome::Failed, exit::PARTIAL)
        );
        assert_eq!(rep.warnings, vec!["/srv/a: locked".to_string()]);
        assert!(rep.snapshot_id.is_some(), "a partial snapshot is kept");
    }

    #[cfg(unix)]
    #[test]
    fn the_after_hooks_see_the_outcome_and_add_their_failures() {
        let hooks = |after_success: &str, after_failure: &str, always: &str| Hooks {
            after_success: vec![after_success.into()],
            after_failure: vec![after_failure.into()],
            always: vec![always.into()],
            ..Hooks::default()
        };
        let env = || HookEnv {
            job: "app".into(),
            ..Default::default()
        };
        let outcome_is = |o: &str| format!("test \"$BACKUPD_OUTCOME\" = {o}");
        // A success: after_success and always see it.
        let h = hooks(&outcome_is("partial"), "false", &outcome_is("partial"));
        let f = run_after_hooks(&h, &mut env(), &Outcome::Partial, None, &NoProgress);
        assert_eq!(f, None);
        // A failed after_success hook fails the run, and always sees the failure.
        let h = hooks("exit 4", "false", &outcome_is("failed"));
        let f = run_after_hooks(&h, &mut env(), &Outcome::Success, None, &NoProgress).unwrap();
        assert!(!f.message.contains("also:"), "{}", f.message);
        // After a failure, failed after_failure and always hooks join its message; its code stays.
        let before = Failure {
            message: "the backup failed".into(),
            code: exit::SOURCE_FAILED,
        };
        let h = hooks("true", "false", "false");
        let mut e = env();
        let f = run_after_hooks(&h, &mut e, &Outcome::Failed, Some(before), &NoProgress).unwrap();
        assert_eq!(f.code, exit::SOURCE_FAILED);
        assert!(
            f.message.starts_with("the backup failed\nalso: "),
            "{}",
            f.message
        );
        assert_eq!(f.message.matches("\nalso: ").count(), 2, "{}", f.message);
        assert_eq!(e.outcome.as_deref(), Some("failed"));
        // The always hooks were given the failure as it stood before them.
        let seen = e.error.unwrap();
        assert!(f.message.starts_with(&seen) && seen.matches("\nalso: ").count() == 1);
    }
}
