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
use crate::sources::extra::{ExtraContent, ExtraFile, StreamSource};
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
    /// Add tags to the snapshot (`tag[,tag...]`, as restic; repeatable).
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
    /// As --exclude, matched whatever the case of the names (repeatable).
    #[arg(long)]
    pub iexclude: Vec<String>,
    /// As --exclude-file, its patterns matched whatever the case (repeatable).
    #[arg(long)]
    pub iexclude_file: Vec<PathBuf>,
    /// Skip folders that contain a valid CACHEDIR.TAG.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out the contents of folders holding FILE (whose content starts with HEADER, when
    /// given as FILE:HEADER); FILE itself is kept (repeatable).
    #[arg(long, value_name = "FILE[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Leave out regular files larger than SIZE (bytes, or "100M", "2G").
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pub exclude_larger_than: Option<u64>,
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
    /// Read, chunk and hash as a backup does and say what it would add, writing nothing (no
    /// data, index or snapshot; command sources still run), as restic's --dry-run.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Store a SHA256SUMS manifest of every file in the snapshot, at /.backupd/SHA256SUMS:
    /// `backupctl manifest` prints it, restore verifies against it, and after a restore with
    /// any tool `sha256sum -c .backupd/SHA256SUMS` in the target checks every file.
    #[arg(long)]
    pub manifest: bool,
    /// Save no snapshot when nothing changed since the parent (same files, same metadata).
    #[arg(long)]
    pub skip_if_unchanged: bool,
    /// Read more paths from FILE, one per line (`#` comments and blank lines skipped; no glob
    /// expansion); repeatable.
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
    /// Read more paths from FILE, one per line, taken as they are (no comments); repeatable.
    #[arg(long, value_name = "FILE")]
    pub files_from_verbatim: Vec<PathBuf>,
    /// Read more paths from FILE, separated by NUL bytes (as `find -print0` writes); repeatable.
    #[arg(long, value_name = "FILE")]
    pub files_from_raw: Vec<PathBuf>,
    /// Store standard input as a file (named by --stdin-filename).
    #[arg(long)]
    pub stdin: bool,
    /// The name of the file --stdin stores, in the snapshot's root.
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    pub stdin_filename: String,
}

/// How a --files-from* file lists paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListStyle {
    /// One per line; `#` comments and blank lines skipped.
    Lines,
    /// One per line, as it is.
    Verbatim,
    /// NUL-separated.
    Raw,
}

#[cfg(unix)]
fn path_of(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn path_of(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// The paths a --files-from* file's content lists.
pub(crate) fn listed_paths(text: &[u8], style: ListStyle) -> Vec<PathBuf> {
    let pieces: Vec<&[u8]> = match style {
        ListStyle::Raw => text.split(|b| *b == 0).collect(),
        _ => text.split(|b| *b == b'\n').collect(),
    };
    pieces
        .into_iter()
        .map(|p| match style {
            ListStyle::Raw => p,
            _ => p.strip_suffix(b"\r").unwrap_or(p),
        })
        .filter(|p| match style {
            ListStyle::Lines => {
                let t = p.trim_ascii();
                !t.is_empty() && !t.starts_with(b"#")
            }
            _ => !p.is_empty(),
        })
        .map(|p| match style {
            ListStyle::Lines => path_of(p.trim_ascii()),
            _ => path_of(p),
        })
        .collect()
}

/// The paths of the command line and of every --files-from* file.
fn all_paths(a: &Args) -> Result<Vec<PathBuf>> {
    let mut out = a.paths.clone();
    let lists = [
        (&a.files_from, ListStyle::Lines),
        (&a.files_from_verbatim, ListStyle::Verbatim),
        (&a.files_from_raw, ListStyle::Raw),
    ];
    for (files, style) in lists {
        for f in files {
            let text = read_list(f)?;
            out.extend(listed_paths(&text, style));
        }
    }
    Ok(out)
}

/// A --files-from* file's bytes (`-` is standard input).
fn read_list(f: &std::path::Path) -> Result<Vec<u8>> {
    let r = match f.as_os_str() == "-" {
        true => {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
        }
        false => std::fs::read(f),
    };
    r.map_err(|e| {
        Error::Input(format!(
            "cannot read the list of paths {}: {e}\n  hint: check the --files-from path",
            f.display()
        ))
    })
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

/// Standard input, read to its end.
struct Stdin(std::io::Stdin);

impl StreamSource for Stdin {
    fn reader(&mut self) -> &mut dyn std::io::Read {
        &mut self.0
    }

    fn finish(&mut self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// What --stdin stores: standard input as the file NAME in the snapshot's root (NAME may hold
/// folders, `dumps/app.sql`; not `..`).
fn stdin_file(name: &str) -> Result<ExtraFile> {
    let rel = name.trim_start_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::Input(format!(
            "--stdin-filename {name:?}: give a file name (or folders and a name, as dumps/app.sql), without empty, . or .. parts"
        )));
    }
    Ok(ExtraFile {
        snapshot_path: PathBuf::from(format!("/{rel}")),
        content: ExtraContent::Stream(Box::new(Stdin(std::io::stdin()))),
        describe: "standard input".into(),
        required: true,
    })
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
        tags: crate::engine::tags::flatten(&a.tag),
        host: a.host,
        job: a.job,
        excludes: ExcludeOptions {
            patterns: a.exclude,
            exclude_files: a.exclude_file,
            ipatterns: a.iexclude,
            iexclude_files: a.iexclude_file,
            exclude_caches: a.exclude_caches,
            exact,
            if_present: a.exclude_if_present,
            larger_than: a.exclude_larger_than,
        },
        one_file_system: a.one_file_system,
        parent,
        force: a.force,
        dry_run: a.dry_run,
        manifest: a.manifest,
        skip_if_unchanged: a.skip_if_unchanged,
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
pub(crate) fn run(ctx: &Ctx, mut a: Args) -> Result<i32> {
    a.paths = all_paths(&a)?;
    let stdin = a.stdin.then(|| stdin_file(&a.stdin_filename)).transpose()?;
    if a.paths.is_empty() && a.sqlite.is_empty() && a.command.is_empty() && stdin.is_none() {
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
    extras.extend(stdin);
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
    let id = (!r.dry_run && !r.skipped).then(|| r.snapshot_id.to_hex());
    o.insert("snapshot_id".into(), id.into());
    o.insert("dry_run".into(), r.dry_run.into());
    o.insert("skipped".into(), r.skipped.into());
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
    if r.dry_run {
        ctx.say(format!(
            "Would add to the repository: {} (before compression)",
            human_bytes(s.data_added)
        ));
    } else {
        ctx.say(format!(
            "Added to the repository: {} ({} stored)",
            human_bytes(s.data_added),
            human_bytes(s.data_added_packed)
        ));
    }
    ctx.say(format!(
        "processed {} files, {} in {:.1}s",
        s.total_files_processed,
        human_bytes(s.total_bytes_processed),
        elapsed
    ));
    if r.dry_run {
        ctx.say("dry run: nothing was written to the repository");
    } else if r.skipped {
        ctx.say(format!(
            "nothing changed since the parent snapshot {}: no snapshot saved (--skip-if-unchanged)",
            r.snapshot_id.short()
        ));
    } else if r.is_partial() {
        ctx.say(format!(
            "snapshot {} saved, but it is PARTIAL: {} file(s) could not be read consistently (see the warnings above)",
            r.snapshot_id.short(),
            r.warnings.len()
        ));
    } else {
        ctx.say(format!("snapshot {} saved", r.snapshot_id.short()));
    }
}

/// `--exclude-larger-than SIZE`: a number of bytes or a size such as "100M".
fn size_arg(s: &str) -> std::result::Result<u64, String> {
    crate::size::parse_size(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_from_lists_paths_as_restic_reads_them() {
        let text = b"# a comment\n/srv/a\n\n  /srv/b c  \r\n#/srv/not\n";
        assert_eq!(
            listed_paths(text, ListStyle::Lines),
            [PathBuf::from("/srv/a"), PathBuf::from("/srv/b c")]
        );
        assert_eq!(
            listed_paths(b"# kept\n /x \n", ListStyle::Verbatim),
            [PathBuf::from("# kept"), PathBuf::from(" /x ")]
        );
        assert_eq!(
            listed_paths(b"/a\nb\0/c\0", ListStyle::Raw),
            [PathBuf::from("/a\nb"), PathBuf::from("/c")]
        );
    }

    #[test]
    fn stdin_filename_must_be_a_plain_relative_name() {
        assert_eq!(
            stdin_file("dumps/app.sql").unwrap().snapshot_path,
            PathBuf::from("/dumps/app.sql")
        );
        for bad in ["", "/", "a/../b", "a//b", "."] {
            assert!(stdin_file(bad).is_err(), "{bad:?}");
        }
    }
}
