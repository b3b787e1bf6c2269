//! `backupctl repair index|packs|snapshots`: rebuild the index from the packs; salvage damaged packs; save snapshots again without the data the repository lost (restic's `repair`; exclusive lock).

use super::snapshots::FilterArgs;
use super::Ctx;
use crate::engine::repair::RepairSnapshotsReport;
use crate::engine::repair::{
    repair_index, repair_packs, repair_snapshots, RepairIndexReport, RepairPacksReport,
};
use crate::error::{exit, Result};
use crate::repo::backend::FileType;
use crate::repo::open::{open_repository, LockMode};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum What {
    /// Write a new index from the packs: the old index's entries for packs that are there,
    /// every other pack's header read; then remove the old index files.
    Index {
        /// Read every pack's header, trusting nothing of the old index.
        #[arg(long)]
        read_all_packs: bool,
    },
    /// Save the readable blobs of damaged packs (as `check --read-data` names them) into new
    /// packs, write an index without the damaged ones, then remove them; the blobs that could
    /// not be read are named (run `repair snapshots` next).
    Packs {
        /// Pack ids (or unique prefixes).
        #[arg(required = true)]
        packs: Vec<String>,
    },
    /// Save snapshots whose trees reference data the repository lost again without it: files
    /// missing data left out, folders whose listing is gone kept empty; each one named. The
    /// repaired snapshot is tagged `repaired`; the original stays unless --forget.
    Snapshots {
        /// Remove each damaged original once its repaired copy is saved.
        #[arg(long)]
        forget: bool,
        /// Say what would be repaired; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        #[command(flatten)]
        filter: FilterArgs,
        /// Snapshot ids (or prefixes, or `latest`); all that match the filters by default.
        snapshots: Vec<String>,
    },
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    match a.what {
        What::Index { read_all_packs } => index(ctx, read_all_packs),
        What::Packs { packs } => packs_cmd(ctx, &packs),
        What::Snapshots {
            forget,
            dry_run,
            filter,
            snapshots,
        } => snapshots_cmd(ctx, forget, dry_run, &filter, &snapshots),
    }
}

fn snapshots_cmd(
    ctx: &Ctx,
    forget: bool,
    dry_run: bool,
    filter: &FilterArgs,
    ids: &[String],
) -> Result<i32> {
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Exclusive)?;
    repo.load_index()?;
    let all = super::snapref::load(ctx, &repo)?;
    let selected: Vec<_> = super::snapref::select(&all, ids, &filter.filter())?
        .into_iter()
        .cloned()
        .collect();
    let progress = ctx.progress();
    let r = repair_snapshots(
        &mut repo,
        &selected,
        forget,
        dry_run,
        progress.as_ref(),
        &ctx.cancel,
    )?;
    drop(progress);
    if ctx.global.json {
        ctx.print_json(&r);
    } else {
        say_snapshots(ctx, &r);
    }
    Ok(exit::OK)
}

/// What became of a snapshot saved again (`new_id` none in a dry run), for `repair snapshots`
/// and `rewrite`.
pub(crate) fn saved_again(new_id: Option<&str>, forgotten: bool) -> String {
    match (new_id, forgotten) {
        (None, _) => "would be saved again".to_string(),
        (Some(n), false) => format!("saved again as {} (the original stays)", &n[..8]),
        (Some(n), true) => format!("saved again as {}; the original removed", &n[..8]),
    }
}

fn say_snapshots(ctx: &Ctx, r: &RepairSnapshotsReport) {
    for s in &r.repaired {
        let what = saved_again(s.new_id.as_deref(), s.forgotten);
        ctx.say(format!("snapshot {} {what}; left out:", &s.id[..8]));
        for l in &s.lost {
            ctx.say(format!("  {l}"));
        }
    }
    ctx.say(format!(
        "{} snapshot(s) checked, {} needed repair{}",
        r.checked,
        r.repaired.len(),
        if r.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    ));
}

fn packs_cmd(ctx: &Ctx, specs: &[String]) -> Result<i32> {
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Exclusive)?;
    repo.backend().check_deletable()?;
    repo.load_index()?;
    let ids = specs
        .iter()
        .map(|s| super::cat::file_id(&repo, FileType::Pack, s))
        .collect::<Result<Vec<_>>>()?;
    let progress = ctx.progress();
    let r = repair_packs(&mut repo, &ids, progress.as_ref(), &ctx.cancel)?;
    drop(progress);
    if ctx.global.json {
        ctx.print_json(&r);
    } else {
        say_packs(ctx, &r);
    }
    Ok(exit::OK)
}

fn say_packs(ctx: &Ctx, r: &RepairPacksReport) {
    for p in &r.packs {
        let note = p
            .note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        ctx.say(format!(
            "pack {}: {} blob(s) saved again, {} lost{note}",
            &p.id[..8],
            p.salvaged,
            p.lost.len()
        ));
        for l in &p.lost {
            ctx.say(format!("  lost: {l}"));
        }
    }
    ctx.say(format!(
        "{} pack(s) removed after {} new index file(s) were written",
        r.packs_removed, r.index_files_written
    ));
    if r.lost() > 0 {
        ctx.say(
            "  hint: run `backupctl repair snapshots` to save the snapshots that needed the lost blobs again without them",
        );
    }
}

fn index(ctx: &Ctx, read_all_packs: bool) -> Result<i32> {
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Exclusive)?;
    let progress = ctx.progress();
    let r = repair_index(&mut repo, read_all_packs, progress.as_ref(), &ctx.cancel)?;
    drop(progress);
    if ctx.global.json {
        ctx.print_json(&r);
    } else {
        say(ctx, &r);
    }
    Ok(if r.packs_unreadable.is_empty() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}

fn say(ctx: &Ctx, r: &RepairIndexReport) {
    for (f, why) in &r.index_files_damaged {
        ctx.say(format!(
            "index file {} was damaged and is replaced: {why}",
            &f[..8]
        ));
    }
    for p in &r.packs_missing {
        ctx.say(format!(
            "pack {} is named by the old index but is not in the repository: its entries are dropped",
            &p[..8]
        ));
    }
    for (p, why) in &r.packs_unreadable {
        eprintln!(
            "error: pack {}: its header cannot be read ({why}); its blobs are not indexed\n  hint: `backupctl check` names the files that needed them; back those up again",
            &p[..8]
        );
    }
    ctx.say(format!(
        "{} pack(s): {} from the old index, {} header(s) read; {} blob(s) in {} new index file(s); {} old index file(s) removed",
        r.packs,
        r.packs_from_index,
        r.packs_read,
        r.blobs,
        r.index_files_written,
        r.index_files_removed
    ));
}
