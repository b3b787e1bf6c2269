//! `backupctl rewrite`: snapshots saved again without excluded paths, or with a new host or time (restic's `rewrite`; with `--forget` the originals removed, under the exclusive lock).

use super::find::parse_time;
use super::snapshots::FilterArgs;
use super::{snapref, Ctx};
use crate::engine::exclude::{ExcludeOptions, Excluder};
use crate::engine::rewrite::{has_work, rewrite, RewriteOptions, RewriteReport};
use crate::error::{exit, Error, Result};
use crate::repo::open::{open_repository, LockMode};
use chrono::{DateTime, FixedOffset};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Snapshots to rewrite (id prefixes or `latest`); none: every snapshot the filters match.
    pub snapshots: Vec<String>,
    /// Leave out paths matching this pattern, as backup's --exclude (repeatable).
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
    /// Remove each original once its rewritten copy is saved (else the copy is tagged `rewrite`).
    #[arg(long)]
    pub forget: bool,
    /// Say what would be rewritten; write nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Replace the host name.
    #[arg(long)]
    pub new_host: Option<String>,
    /// Replace the time of the backup (2006-01-02 15:04:05, local time, or RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub new_time: Option<DateTime<FixedOffset>>,
    /// Give snapshots without a summary one (their totals of files and bytes).
    #[arg(long, short = 's')]
    pub snapshot_summary: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let excluder = Excluder::new(&ExcludeOptions {
        patterns: a.exclude.clone(),
        exclude_files: a.exclude_file.clone(),
        ipatterns: a.iexclude.clone(),
        iexclude_files: a.iexclude_file.clone(),
        ..Default::default()
    })?;
    let o = RewriteOptions {
        forget: a.forget,
        dry_run: a.dry_run,
        new_host: a.new_host.clone(),
        new_time: a.new_time,
        snapshot_summary: a.snapshot_summary,
    };
    if !has_work(&excluder, &o) {
        return Err(Error::Input(
            "nothing to do: no --exclude given and no new metadata (--new-host, --new-time, --snapshot-summary)\n  hint: e.g. `backupctl rewrite --exclude '/home/*/.ssh' latest`".into(),
        ));
    }
    let mode = match a.forget && !a.dry_run {
        true => LockMode::Exclusive,
        false => LockMode::Shared,
    };
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, mode)?;
    if o.forget && !o.dry_run {
        repo.backend().check_deletable()?;
    }
    repo.load_index()?;
    let all = snapref::load(ctx, &repo)?;
    let chosen: Vec<_> = snapref::select(&all, &a.snapshots, &a.filter.filter())?
        .into_iter()
        .cloned()
        .collect();
    let progress = ctx.progress();
    let r = rewrite(
        &mut repo,
        &chosen,
        &excluder,
        &o,
        progress.as_ref(),
        &ctx.cancel,
    )?;
    drop(progress);
    if ctx.global.json {
        ctx.print_json(&r);
    } else {
        say(ctx, &r);
    }
    Ok(exit::OK)
}

fn say(ctx: &Ctx, r: &RewriteReport) {
    for s in &r.rewritten {
        let what = super::repair::saved_again(s.new_id.as_deref(), s.forgotten);
        ctx.say(format!("snapshot {} {what}", &s.id[..8]));
        for p in &s.removed {
            ctx.say(format!("  left out: {p}"));
        }
    }
    ctx.say(format!(
        "{} snapshot(s) looked at, {} rewritten{}",
        r.checked,
        r.rewritten.len(),
        match (r.dry_run, r.rewritten.iter().any(|s| s.forgotten)) {
            (true, _) => " (dry run: nothing written)",
            (false, true) => "; run `backupctl prune` to free the space the removed data took",
            (false, false) => "",
        }
    ));
}
