//! `backupctl backup`: back up paths into a new snapshot.

use super::util::human_bytes;
use super::Ctx;
use crate::engine::backup::{backup_with, BackupOptions};
use crate::engine::exclude::ExcludeOptions;
use crate::error::{exit, Error, Result};
use crate::repo::snapshot;
use crate::sources::command::CommandSource;
use crate::sources::locked::{LockedAction, LockedFiles};
use crate::sources::retry::RetryPolicy;
use crate::sources::sqlite::{self, IntegrityCheck, SqliteOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
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

pub fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    if a.paths.is_empty() && a.sqlite.is_empty() && a.command.is_empty() {
        return Err(Error::Input("nothing to back up\n  hint: give one or more files or folders: `backupctl backup PATH...`".into()));
    }
    let (mut repo, _lock) = ctx.open_locked(false)?;
    let parent = match &a.parent {
        None => None,
        Some(spec) => {
            let snaps = repo.list_snapshots()?;
            let (id, _) = snapshot::find(&snaps, spec, &Default::default())
                .map_err(|e| Error::Input(format!("--parent: {e}")))?;
            Some(*id)
        }
    };
    let opts = BackupOptions {
        paths: a.paths,
        tags: a.tag,
        host: a.host,
        job: a.job,
        excludes: ExcludeOptions {
            patterns: a.exclude,
            exclude_files: a.exclude_file,
            exclude_caches: a.exclude_caches,
            exact: Vec::new(),
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
    };
    let progress = ctx.progress();
    let started = std::time::Instant::now();
    let mut opts = opts;
    // Databases first: each is copied consistently (waiting while it is busy) before the walk.
    let sq = SqliteOptions {
        check: a.sqlite_check,
        retry: RetryPolicy {
            deadline: a.sqlite_wait,
            ..RetryPolicy::default()
        },
        staging_dir: None,
    };
    let mut captured = Vec::new();
    for db in &a.sqlite {
        let db = crate::engine::backup::absolute(db)?;
        let c = sqlite::capture(&db, &sq, &ctx.cancel, &mut |w| progress.note(&w.message()))?;
        opts.excludes.exact.extend(sqlite::sibling_files(&db));
        captured.push(c);
    }
    let mut extras: Vec<_> = captured.iter().map(|c| c.extra()).collect();
    for spec in &a.command {
        let (path, shell) = spec.split_once('=').ok_or_else(|| {
            Error::Input(format!(
                "--command {spec:?}: expected SNAPSHOT_PATH=COMMAND, e.g. /dumps/app.sql=pg_dump app"
            ))
        })?;
        let src = CommandSource {
            snapshot_path: PathBuf::from(path),
            shell: shell.to_string(),
            timeout: None,
        };
        extras.push(crate::sources::command::start_with_cancel(
            &src,
            &ctx.cancel,
        )?);
    }
    let r = backup_with(&mut repo, &opts, extras, progress.as_ref(), &ctx.cancel)?;
    let databases: Vec<serde_json::Value> = captured
        .iter()
        .map(|c| {
            serde_json::json!({
                "path": c.original.display().to_string(),
                "bytes": c.bytes,
                "copy_seconds": c.copy_time.as_secs_f64(),
                "waited_seconds": c.waited.as_secs_f64(),
                "journal_mode": c.journal_mode,
            })
        })
        .collect();
    drop(captured);
    drop(progress);
    let s = r.summary();
    let code = if r.is_partial() {
        exit::PARTIAL
    } else {
        exit::OK
    };
    if ctx.global.json {
        let mut v = serde_json::to_value(s).expect("summary serializes");
        let o = v.as_object_mut().expect("summary is an object");
        o.insert("message_type".into(), "summary".into());
        o.insert("snapshot_id".into(), r.snapshot_id.to_hex().into());
        o.insert("parent".into(), r.parent.map(|p| p.to_hex()).into());
        o.insert(
            "total_duration".into(),
            started.elapsed().as_secs_f64().into(),
        );
        o.insert("exit_code".into(), code.into());
        o.insert("sqlite".into(), databases.into());
        ctx.print_json(&v);
    } else {
        // The warnings were shown on stderr as they happened.
        for d in &databases {
            ctx.say(format!(
                "SQLite database {}: {} copied in {:.2}s (journal mode {}, waited {:.1}s)",
                d["path"].as_str().unwrap_or_default(),
                human_bytes(d["bytes"].as_u64().unwrap_or(0)),
                d["copy_seconds"].as_f64().unwrap_or(0.0),
                d["journal_mode"].as_str().unwrap_or_default(),
                d["waited_seconds"].as_f64().unwrap_or(0.0)
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
            started.elapsed().as_secs_f64()
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
    Ok(code)
}
