//! `backupctl prune`: delete unreferenced data and repack partly used packs.

use super::util::human_bytes;
use super::Ctx;
use crate::engine::prune::{self, PruneOptions, PruneReport};
use crate::error::{exit, Result};
use crate::repo::open::{open_repository, LockMode};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Show what would be repacked and deleted; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Tolerate this share of unused data in packs before repacking them (percent).
    #[arg(long, default_value = "5")]
    pub max_unused: f64,
    /// Abort unfinished multipart uploads older than this many seconds (default an hour).
    /// Hidden: for tests, which cannot wait an hour.
    #[arg(long, hide = true, default_value_t = prune::STALE_UPLOAD_AGE.as_secs())]
    pub stale_upload_secs: u64,
    /// Repack this pack whatever --max-unused tolerates (repeatable; a full id or a unique
    /// prefix): what `check` prints for a damaged pack. The blobs snapshots still need are copied
    /// out, the pack and its damaged blobs deleted.
    #[arg(long, value_name = "PACK")]
    pub repack: Vec<String>,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    // A dry run changes nothing, so a shared lock is enough (it still keeps prunes out).
    let (mut repo, _lock) =
        open_repository(&ctx.repo_settings()?, LockMode::exclusive_if(!a.dry_run))?;
    if !a.dry_run {
        // An append-only server refuses deletions: say so before changing anything.
        repo.backend().check_deletable()?;
    }
    let opts = PruneOptions {
        max_unused: a.max_unused,
        dry_run: a.dry_run,
        stale_upload_age: std::time::Duration::from_secs(a.stale_upload_secs),
        repack: a.repack,
        ..Default::default()
    };
    let progress = ctx.progress();
    let r = prune::prune(&mut repo, &opts, progress.as_ref(), &ctx.cancel)?;
    drop(progress);
    if ctx.global.json {
        ctx.print_json(&r);
    } else {
        print_report(ctx, &r);
    }
    Ok(exit::OK)
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.0%".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// The human-readable summary of a prune (also used by `forget --prune`).
pub(crate) fn print_report(ctx: &Ctx, r: &PruneReport) {
    let would = if r.dry_run { "would " } else { "" };
    ctx.say(format!(
        "{} snapshot(s); {} pack(s), {}",
        r.snapshots,
        r.packs_before,
        human_bytes(r.pack_bytes_before)
    ));
    ctx.say(format!(
        "used:   {:>8} blobs, {}",
        r.blobs_used,
        human_bytes(r.bytes_used)
    ));
    ctx.say(format!(
        "unused: {:>8} blobs, {} ({} of blob bytes; {} duplicate copies)",
        r.blobs_unused,
        human_bytes(r.bytes_unused),
        pct(r.bytes_unused, r.bytes_used + r.bytes_unused),
        r.blobs_duplicate
    ));
    if r.nothing_to_do() {
        ctx.say("nothing to prune: every pack is in use (within the tolerated unused share)");
    } else {
        if r.dry_run {
            for id in &r.deleted {
                ctx.say(format!("would delete unused pack {id}"));
            }
            for id in &r.orphaned {
                ctx.say(format!("would delete pack {id} (in no index)"));
            }
            for id in &r.repacked {
                ctx.say(format!("would repack pack {id}"));
            }
            for id in &r.missing {
                ctx.say(format!("would drop missing pack {id} from the index"));
            }
        }
        ctx.say(format!(
            "packs:  keep {}, {}repack {} ({} to copy into {} new), {}delete {} unused and {} unreferenced",
            r.packs_kept,
            would,
            r.packs_repacked,
            human_bytes(r.bytes_repacked),
            r.packs_written,
            would,
            r.packs_deleted,
            r.packs_orphaned,
        ));
        if r.index_packs_missing > 0 {
            ctx.say(format!(
                "index:  {}drop {} pack(s) that do not exist (nothing needed them)",
                would, r.index_packs_missing
            ));
        }
        if !r.dry_run {
            ctx.say(format!(
                "index:  wrote {} file(s), removed {}",
                r.index_files_written, r.index_files_removed
            ));
        }
        ctx.say(format!(
            "{} {}; {} unused left in kept packs ({} blob copies removed)",
            if r.dry_run { "would free" } else { "freed" },
            human_bytes(r.bytes_freed),
            human_bytes(r.bytes_unused_after),
            r.blobs_removed
        ));
    }
    if r.temp_files_removed > 0 {
        ctx.say(format!(
            "{}remove {} stale temp file(s)",
            would, r.temp_files_removed
        ));
    }
    if r.uploads_aborted > 0 {
        ctx.say(format!(
            "{} {} stale unfinished multipart upload(s)",
            if r.dry_run { "would abort" } else { "aborted" },
            r.uploads_aborted
        ));
    }
    if r.dry_run {
        ctx.say("dry run: nothing was changed");
    }
}
