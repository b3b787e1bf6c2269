//! `backupctl backup`: back up paths into a new snapshot.

use super::util::human_bytes;
use super::Ctx;
use crate::engine::backup::{absolute, backup_with, BackupOptions, BackupResult};
use crate::engine::exclude::ExcludeOptions;
use crate::engine::targets::tree_path_of;
use crate::error::{exit, Error, Result};
use crate::repo::id::Id;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::snapshot;
use crate::repo::Repository;
use crate::sources::command::CommandSource;
use crate::sources::locked::{LockedAction, LockedFiles};
use crate::sources::prepare::{prepare, SourceSpecs, SqliteSpec};
use crate::sources::retry::{RetryPolicy, Waiting};
use crate::sources::sqlite::{Captured, IntegrityCheck, SqliteOptions};
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Files and folders to back up.
    pub paths: Vec<PathBuf>,
    /// Add a tag to the snapshot (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Host name to record (default: this host's).
    #[arg(long)]
    pub host: Option<String>,
    /// Record the snapshot as made by this backupd job.
    #[arg(long)]
    pub job: Option<String>,
    /// Exclude paths matching this glob pattern (repeatable).
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// Read exclude patterns from a file, one per line (repeatable).
    #[arg(long)]
    pub exclude_file: Vec<PathBuf>,
    /// Skip folders that contain a valid CACHEDIR.TAG.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Do not cross file-system boundaries.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Use this snapshot as the parent (default: the latest with the same host and paths).
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file again, even those unchanged since the parent.
    #[arg(long)]
    pub force: bool,
    /// What to do with a file another process holds a write lock on (flock or fcntl), once
    /// --locked-wait has passed: fail, skip, or read-anyway. skip and read-anyway make the
    /// snapshot partial (exit 3).
    #[arg(long, default_value = "read-anyway")]
    pub locked_files: LockedAction,
    /// Capture this SQLite database consistently (online backup API, integrity-checked) and store
    /// it under its own path; its -wal/-shm/-journal files are never stored (repeatable).
    #[arg(long = "sqlite", value_name = "PATH")]
    pub sqlite: Vec<PathBuf>,
    /// The check run on each database copy before it is stored: full, quick or off.
    #[arg(long, default_value = "full")]
    pub sqlite_check: IntegrityCheck,
    /// How long to retry a busy or locked database (backoff from 1 s, doubling, at most 60 s
    /// apart) before the backup fails (exit 5).
    #[arg(long, default_value = "10m", value_parser = super::util::parse_duration)]
    pub sqlite_wait: std::time::Duration,
    /// Store a command's standard output as a file: `SNAPSHOT_PATH=SHELL COMMAND`, e.g.
    /// `/dumps/app.sql=pg_dump app`. A command that exits non-zero fails the backup (exit 5).
    #[arg(long = "command", value_name = "PATH=COMMAND")]
    pub command: Vec<String>,
    /// How long to wait, in all, for locked files to be released (backoff from 1 s, doubling,
    /// at most 60 s apart), e.g. 10m.
    #[arg(long, default_value = "0s", value_parser = super::util::parse_duration)]
    pub locked_wait: std::time::Duration,
}

/// The databases (--sqlite, with --sqlite-check and --sqlite-wait) and commands (--command).
fn source_specs(a: &Args) -> Result<SourceSpecs> {
    let options = SqliteOptions {
        check: a.sqlite_check,
        retry: RetryPolicy {
            deadline: a.sqlite_wait,
            ..RetryPolicy::default()
        },
        staging_dir: None,
    };
    let sqlite = a
        .sqlite
        .iter()
        .map(|db| {
            Ok(SqliteSpec {
                path: absolute(db)?,
                options: options.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let commands = a
        .command
        .iter()
        .map(|spec| parse_command(spec))
        .collect::<Result<_>>()?;
    Ok(SourceSpecs { sqlite, commands })
}

/// `SNAPSHOT_PATH=SHELL COMMAND` (the first `=` splits them).
fn parse_command(spec: &str) -> Result<CommandSource> {
    let (path, shell) = spec.split_once('=').ok_or_else(|| {
        Error::Input(format!(
            "--command {spec:?}: expected SNAPSHOT_PATH=COMMAND, e.g. /dumps/app.sql=pg_dump app"
        ))
    })?;
    Ok(CommandSource {
        snapshot_path: PathBuf::from(path),
        shell: shell.to_string(),
        timeout: None,
    })
}

/// The snapshot named by --parent (None: the backup finds the latest with its host and paths).
fn parent_of(ctx: &Ctx, repo: &Repository, spec: Option<&str>) -> Result<Option<Id>> {
    let Some(spec) = spec else { return Ok(None) };
    let snaps = super::snapref::load(ctx, repo)?.readable;
    let (id, _) = snapshot::find(&snaps, spec, &Default::default())
        .map_err(|e| Error::Input(format!("--parent: {e}")))?;
    Ok(Some(*id))
}

/// The backup options of the command line; `exact` excludes the databases' own files.
fn backup_options(a: Args, parent: Option<Id>, exact: Vec<PathBuf>) -> BackupOptions {
    BackupOptions {
        paths: a.paths,
        tags: a.tag,
        host: a.host,
        job: a.job,
        excludes: ExcludeOptions {
            patterns: a.exclude,
            exclude_files: a.exclude_file,
            exclude_caches: a.exclude_caches,
            exact,
        },
        one_file_system: a.one_file_system,
        parent,
        force: a.force,
        locked_files: LockedFiles {
            action: a.locked_files,
            retry: RetryPolicy {
                deadline: a.locked_wait,
                ..RetryPolicy::default()
            },
        },
        ..Default::default()
    }
}

/// A database copy as the output shows it.
#[derive(Serialize)]
struct DatabaseCopy {
    path: String,
    bytes: u64,
    copy_seconds: f64,
    waited_seconds: f64,
    journal_mode: String,
}

impl DatabaseCopy {
    fn of(c: &Captured) -> DatabaseCopy {
        DatabaseCopy {
            path: c.original.display().to_string(),
            bytes: c.bytes,
            copy_seconds: c.copy_time.as_secs_f64(),
            waited_seconds: c.waited.as_secs_f64(),
            journal_mode: c.journal_mode.clone(),
        }
    }
}

/// Backs up: the databases are captured first, then the repository is locked (shared), then
/// the commands start and the backup reads everything, as a job does.
pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    if a.paths.is_empty() && a.sqlite.is_empty() && a.command.is_empty() {
        return Err(Error::Input("nothing to back up\n  hint: give one or more files or folders: `backupctl backup PATH...`".into()));
    }
    let specs = source_specs(&a)?;
    let progress = ctx.progress();
    let started = std::time::Instant::now();
    // Databases first: each is copied consistently (waiting while it is busy) before the lock.
    let mut reports = Vec::new();
    let mut on_wait = |w: &Waiting| progress.note(&w.message());
    let prepared = prepare(&specs, &ctx.cancel, &mut on_wait, &mut reports)?;
    // A database given as a relative path goes where a relative path goes in the snapshot.
    let db_paths: Vec<PathBuf> = a
        .sqlite
        .iter()
        .map(|d| tree_path_of(d))
        .collect::<Result<_>>()?;
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let parent = parent_of(ctx, &repo, a.parent.as_deref())?;
    let opts = backup_options(a, parent, prepared.excludes());
    let mut extras = prepared.start(&ctx.cancel, &mut reports)?;
    // The copies come first, in the order of --sqlite.
    for (e, p) in extras.iter_mut().zip(db_paths) {
        e.snapshot_path = p;
    }
    let r = backup_with(&mut repo, &opts, extras, progress.as_ref(), &ctx.cancel)?;
    let databases: Vec<DatabaseCopy> = prepared.databases().iter().map(DatabaseCopy::of).collect();
    drop(prepared);
    drop(progress);
    let code = if r.is_partial() {
        exit::PARTIAL
    } else {
        exit::OK
    };
    let elapsed = started.elapsed().as_secs_f64();
    if ctx.global.json {
        print_json(ctx, &r, &databases, elapsed, code);
    } else {
        print_text(ctx, &r, &databases, elapsed);
    }
    Ok(code)
}

/// The summary as restic's `backup --json` ends, with the databases.
fn print_json(ctx: &Ctx, r: &BackupResult, databases: &[DatabaseCopy], elapsed: f64, code: i32) {
    // A struct of numbers serializes to an object, always.
    let mut v = serde_json::to_value(r.summary()).expect("summary serializes");
    let o = v.as_object_mut().expect("summary is an object");
    o.insert("message_type".into(), "summary".into());
    o.insert("snapshot_id".into(), r.snapshot_id.to_hex().into());
    o.insert("parent".into(), r.parent.map(|p| p.to_hex()).into());
    o.insert("total_duration".into(), elapsed.into());
    o.insert("exit_code".into(), code.into());
    // Not in restic's summary: what was kept from interrupted runs.
    o.insert(
        "resumed".into(),
        serde_json::json!({
            "packs": r.resumed.packs,
            "blobs": r.resumed.blobs,
            "bytes": r.resumed.bytes,
            "left_for_prune": r.resumed.left,
        }),
    );
    o.insert(
        "sqlite".into(),
        serde_json::to_value(databases).expect("the copies serialize"),
    );
    ctx.print_json(&v);
}

fn print_text(ctx: &Ctx, r: &BackupResult, databases: &[DatabaseCopy], elapsed: f64) {
    let s = r.summary();
    // The warnings were shown on stderr as they happened.
    for d in databases {
        ctx.say(format!(
            "SQLite database {}: {} copied in {:.2}s (journal mode {}, waited {:.1}s)",
            d.path,
            human_bytes(d.bytes),
            d.copy_seconds,
            d.journal_mode,
            d.waited_seconds
        ));
    }
    match r.parent {
        Some(p) => ctx.say(format!("using parent snapshot {}", p.short())),
        None => ctx.say("no parent snapshot: reading every file"),
    }
    ctx.say(format!(
        "Files:  {:>6} new, {:>6} changed, {:>6} unmodified",
        s.files_new, s.files_changed, s.files_unmodified
    ));
    ctx.say(format!(
        "Dirs:   {:>6} new, {:>6} changed, {:>6} unmodified",
        s.dirs_new, s.dirs_changed, s.dirs_unmodified
    ));
    ctx.say(format!(
        "Added to the repository: {} ({} stored)",
        human_bytes(s.data_added),
        human_bytes(s.data_added_packed)
    ));
    ctx.say(format!(
        "processed {} files, {} in {:.1}s",
        s.total_files_processed,
        human_bytes(s.total_bytes_processed),
        elapsed
    ));
    if r.is_partial() {
        ctx.say(format!(
            "snapshot {} saved, but it is PARTIAL: {} file(s) could not be read consistently (see the warnings above)",
            r.snapshot_id.short(),
            r.warnings.len()
        ));
    } else {
        ctx.say(format!("snapshot {} saved", r.snapshot_id.short()));
    }
}
