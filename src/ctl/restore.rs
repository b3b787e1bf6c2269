//! `backupctl restore`: restore a snapshot or a path in it into a directory, with a safety snapshot
//! of whatever it would replace or delete.

use super::snapref::{self, Latest};
use super::snapshots::FilterArgs;
use super::util::{self, human_bytes};
use super::Ctx;
use crate::engine::backup::{self, BackupOptions};
use crate::engine::restore::readable::Readable;
use crate::engine::restore::{
    self as engine, ManifestCheck, Overwrite, RestoreOptions, RestoreReport,
};
use crate::error::{Error, Result};
use crate::repo::id::Id;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::snapshot::Snapshot;
use crate::repo::Repository;
use std::path::{Path, PathBuf};

/// The tag of the snapshots `restore` takes of the target before changing it.
pub(crate) use crate::engine::restore::SAFETY_TAG as PRE_RESTORE_TAG;

/// The way on when `latest` meets a damaged snapshot file.
const NEWEST_VALID: &str = "`backupctl restore latest --newest-valid` restores the newest readable snapshot, or name one by its id (`backupctl snapshots` lists the readable ones)";

/// How many skipped entries the text output lists (--json lists all).
const SHOW_SKIPPED: usize = 20;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Snapshot id (or prefix) or `latest`, optionally with `:PATH` to restore only that path
    /// (a folder's contents go directly into the target).
    pub snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(short, long)]
    pub target: std::path::PathBuf,
    /// Restore only paths matching this pattern (repeatable). Patterns are globs matched against
    /// the path in the snapshot (e.g. /home/me/doc.txt); without a leading / they match at any depth.
    #[arg(short, long)]
    pub include: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable).
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// Show what would be restored, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// When to replace an existing file: always, if-changed (type, size or content differ),
    /// if-newer (the snapshot's is newer), never.
    #[arg(long, default_value = "always", value_parser = parse_overwrite)]
    pub overwrite: Overwrite,
    /// Delete files in the target that are not in the snapshot (only in restored folders).
    #[arg(long)]
    pub delete: bool,
    /// Do not take a safety snapshot (tagged pre-restore) of what the restore would replace or
    /// delete.
    #[arg(long)]
    pub no_safety_snapshot: bool,
    /// With `latest`: the newest snapshot (of the filter: --job, --tag, --host, --path) that
    /// restores completely — every blob below the path reads back and verifies, and a snapshot
    /// of one SQLite database passes PRAGMA integrity_check —, past damaged snapshot files and
    /// snapshots with damaged data (each named in a warning, with why). Without it, `latest`
    /// refuses while a snapshot file is damaged.
    #[arg(long)]
    pub newest_valid: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

fn parse_overwrite(s: &str) -> std::result::Result<Overwrite, String> {
    s.parse()
}

/// The target as an absolute path (symlinks resolved if it exists).
fn absolute_target(t: &Path) -> Result<PathBuf> {
    match std::fs::canonicalize(t) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => backup::absolute(t),
        Err(e) => Err(Error::Input(format!(
            "cannot use the target {}: {e}\n  hint: --target must be a directory you can write to",
            t.display()
        ))),
    }
}

/// What the safety snapshot was (for output).
struct Safety {
    id: Id,
    root: PathBuf,
    undo: String,
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:+,=@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Restores, after a safety snapshot of what the restore would replace or delete (unless a dry
/// run or --no-safety-snapshot).
pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (spec, sub) = util::split_snapshot_path(&a.snapshot);
    let target = absolute_target(&a.target)?;
    if let Ok(md) = std::fs::metadata(&target) {
        if !md.is_dir() {
            return Err(Error::Input(format!(
                "the target {} is not a directory\n  hint: --target names the folder to restore into",
                target.display()
            )));
        }
    }
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let snaps = snapref::load(ctx, &repo)?;
    let latest = if a.newest_valid {
        Latest::NewestValid
    } else {
        Latest::Refuse { hint: NEWEST_VALID }
    };
    repo.load_index()?;
    let mut passed_over: Vec<String> = snaps.damaged.iter().map(|d| d.id.to_hex()).collect();
    let (id, snap) = match (a.newest_valid, spec) {
        (true, "latest") => {
            let (found, invalid) = newest_valid(ctx, &repo, &snaps, &a.filter.filter(), sub)?;
            passed_over.extend(invalid);
            found
        }
        _ => snapref::find(&snaps, spec, &a.filter.filter(), latest)?.clone(),
    };
    let opts = RestoreOptions {
        target: target.clone(),
        sub_path: sub.map(str::to_string),
        includes: a.include,
        excludes: a.exclude,
        dry_run: a.dry_run,
        overwrite: a.overwrite,
        delete: a.delete,
    };
    let safety = if a.dry_run || a.no_safety_snapshot {
        None
    } else {
        safety_snapshot(ctx, &mut repo, &snap, &opts)?
    };

    let progress = ctx.progress();
    let report = engine::restore(&repo, &snap, &opts, progress.as_ref(), &ctx.cancel)?;
    drop(progress);
    let code = report.exit_code();
    if ctx.global.json {
        print_json(
            ctx,
            &report,
            (&id, &passed_over),
            &target,
            safety.as_ref(),
            code,
        );
    } else {
        print_text(ctx, &id, sub, &target, &report);
    }
    Ok(code)
}

/// `latest` with --newest-valid: the newest snapshot of the filter that restores completely
/// (`engine::readable`), each newer one passed over named with why; and the ids passed over.
fn newest_valid(
    ctx: &Ctx,
    repo: &Repository,
    snaps: &crate::repo::Snapshots,
    filter: &crate::repo::snapshot::SnapshotFilter,
    sub: Option<&str>,
) -> Result<((Id, Snapshot), Vec<String>)> {
    let mut candidates: Vec<&(Id, Snapshot)> = snaps
        .readable
        .iter()
        .filter(|(_, s)| snapref::latest_candidate(filter, s))
        .collect();
    candidates.sort_by_key(|(_, s)| std::cmp::Reverse(s.time));
    let mut passed = Vec::new();
    for (id, s) in &candidates {
        match why_not_valid(ctx, repo, s, sub)? {
            None => return Ok(((*id, s.clone()), passed)),
            Some(why) => {
                ctx.warn(format!(
                    "skipped snapshot {} of {}: it does not restore completely: {why}",
                    id.short(),
                    s.time.format("%Y-%m-%d %H:%M:%S %:z")
                ));
                passed.push(id.to_hex());
            }
        }
    }
    Err(Error::Damaged {
        what: format!(
            "every one of the {} snapshot(s) that match",
            candidates.len()
        ),
        detail: "none restores completely (each is named above with why)".into(),
    })
}

/// Why `snap` is not valid for --newest-valid: its data does not read back, or its only file is
/// an SQLite database that fails its integrity check; `None` when it is valid.
fn why_not_valid(
    ctx: &Ctx,
    repo: &Repository,
    snap: &Snapshot,
    sub: Option<&str>,
) -> Result<Option<String>> {
    match engine::readable::read_back(repo, snap, sub, &ctx.cancel)? {
        Readable::Not(why) => Ok(Some(why)),
        Readable::Whole(files) => match files.as_slice() {
            [(path, blobs)] => crate::sources::sqlite::stored_verdict(repo, path, blobs),
            _ => Ok(None),
        },
    }
}

/// Backs up what the restore would replace or delete (tag pre-restore) and says how to undo the
/// restore; None when it would change nothing that exists.
fn safety_snapshot(
    ctx: &Ctx,
    repo: &mut Repository,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<Option<Safety>> {
    let impact = engine::in_place_impact(repo, snap, opts, &ctx.cancel)?;
    if impact.is_empty() {
        return Ok(None);
    }
    ctx.say(format!(
        "the restore would replace {} and delete {} existing entries below {}: taking a safety snapshot of it first",
        impact.replaced.len(),
        impact.deleted.len(),
        impact.undo_root.display()
    ));
    let progress = ctx.progress();
    let bopts = BackupOptions {
        paths: vec![impact.undo_root.clone()],
        tags: vec![PRE_RESTORE_TAG.to_string()],
        ..Default::default()
    };
    let r = backup::backup(repo, &bopts, progress.as_ref(), &ctx.cancel).map_err(|e| {
        if matches!(e, Error::Interrupted) {
            return e;
        }
        Error::Input(format!(
            "could not take the safety snapshot of {} before restoring over it: {e}\n  nothing was restored\n  hint: fix the cause, or pass --no-safety-snapshot to restore without one",
            impact.undo_root.display()
        ))
    })?;
    drop(progress);
    if r.is_partial() {
        return Err(Error::Input(format!(
            "the safety snapshot {} of {} is partial: {}\n  nothing was restored\n  hint: fix the cause, or pass --no-safety-snapshot to restore without one",
            r.snapshot_id.short(),
            impact.undo_root.display(),
            r.warnings.join("; ")
        )));
    }
    let root = impact.undo_root.display().to_string();
    let location = repo
        .backend()
        .local_path()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| repo.location());
    let undo = format!(
        "backupctl -r {} restore {}:{} --target {} --overwrite always --delete",
        shell_quote(&location),
        r.snapshot_id.short(),
        shell_quote(&root),
        shell_quote(&root)
    );
    ctx.say(format!(
        "safety snapshot {} of {} saved (tag {PRE_RESTORE_TAG}); to undo this restore run:\n  {undo}",
        r.snapshot_id.short(),
        root
    ));
    Ok(Some(Safety {
        id: r.snapshot_id,
        root: impact.undo_root,
        undo,
    }))
}

fn print_json(
    ctx: &Ctx,
    report: &RestoreReport,
    (id, damaged): (&Id, &[String]),
    target: &Path,
    safety: Option<&Safety>,
    code: i32,
) {
    // A struct serializes to an object, always.
    let mut v = serde_json::to_value(report).expect("the report serializes");
    let o = v.as_object_mut().expect("the report is an object");
    o.insert("message_type".into(), "summary".into());
    o.insert("snapshot_id".into(), id.to_hex().into());
    o.insert("target".into(), target.display().to_string().into());
    // The damaged snapshot files that were skipped (each named in a warning on stderr).
    o.insert("damaged_snapshots".into(), damaged.into());
    o.insert(
        "safety_snapshot".into(),
        match safety {
            None => serde_json::Value::Null,
            Some(s) => serde_json::json!({
                "id": s.id.to_hex(),
                "path": s.root.display().to_string(),
                "undo": s.undo,
            }),
        },
    );
    o.insert("exit_code".into(), code.into());
    ctx.print_json(&v);
    for e in &report.errors {
        eprintln!("error: {}", e.message);
    }
}

/// The summary line of the check against the snapshot's manifest.
fn manifest_line(m: &ManifestCheck) -> String {
    let mut s = format!(
        "verified {} files against the snapshot's manifest ({}): ",
        m.verified,
        crate::repo::manifest::PATH
    );
    match m.mismatched {
        0 => s.push_str("all match"),
        n => s.push_str(&format!("{n} DO NOT MATCH (see the errors above)")),
    }
    if m.unlisted > 0 {
        s.push_str(&format!("; {} not listed in it", m.unlisted));
    }
    s
}

fn print_text(ctx: &Ctx, id: &Id, sub: Option<&str>, target: &Path, r: &RestoreReport) {
    for w in &r.warnings {
        ctx.warn(&w.message);
    }
    for e in &r.errors {
        eprintln!("error: {}", e.message);
    }
    for a in &r.actions {
        ctx.say(format!("would {} {} {}", a.action, a.kind, a.path));
    }
    for s in r.skipped.iter().take(SHOW_SKIPPED) {
        ctx.say(format!("skipped {}: {}", s.path, s.reason));
    }
    if r.skipped.len() > SHOW_SKIPPED {
        ctx.say(format!(
            "... and {} more skipped (--json lists all)",
            r.skipped.len() - SHOW_SKIPPED
        ));
    }
    let what = match sub {
        Some(p) => format!("{}:{p}", id.short()),
        None => id.short(),
    };
    let verb = if r.dry_run {
        "would restore"
    } else {
        "restored"
    };
    ctx.say(format!(
        "{verb} snapshot {what} into {}: {} files ({}), {} dirs, {} symlinks, {} hard links, {} other",
        target.display(),
        r.files,
        human_bytes(r.bytes_written),
        r.dirs,
        r.symlinks,
        r.hardlinks,
        r.other
    ));
    ctx.say(format!(
        "{} unchanged, {} skipped, {} existing entries {}replaced, {} {}deleted",
        r.unchanged,
        r.skipped.len(),
        r.replaced.len(),
        if r.dry_run { "would be " } else { "" },
        r.deleted.len(),
        if r.dry_run { "would be " } else { "" },
    ));
    if r.dry_run {
        ctx.say("dry run: nothing was changed");
    }
    if let Some(m) = &r.manifest {
        ctx.say(manifest_line(m));
    }
    if !r.errors.is_empty() {
        eprintln!(
            "{} entries could not be restored (see the errors above){}",
            r.errors.len(),
            if r.errors.iter().any(|e| e.damaged) {
                "; the repository has damaged data: run `backupctl check --read-data`"
            } else {
                ""
            }
        );
    }
}
