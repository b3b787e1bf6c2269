//! `backupctl stats`: sizes and counts of snapshots and of the repository.

use super::snapshots::FilterArgs;
use super::{util, Ctx};
use crate::engine::stats::{self, Mode};
use crate::error::{exit, Result};
use crate::repo::open::{open_repository, LockMode};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Snapshots to count (default: all matching the filter).
    pub snapshots: Vec<String>,
    /// restore-size (files as restored), files-by-contents (unique files), raw-data (stored blobs).
    #[arg(long, default_value = "restore-size")]
    pub mode: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let mode = Mode::parse(&a.mode)?;
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let all = super::snapref::load(ctx, &repo)?;
    let filter = a.filter.filter();
    let mut chosen = Vec::new();
    if a.snapshots.is_empty() {
        chosen.extend(all.readable.iter().filter(|(_, s)| filter.matches(s)));
    } else {
        for spec in &a.snapshots {
            let latest = super::snapref::Latest::Refuse {
                hint: super::snapref::BY_ID,
            };
            let found = super::snapref::find(&all, spec, &filter, latest)?;
            if !chosen.iter().any(|(id, _)| *id == found.0) {
                chosen.push(found);
            }
        }
    }
    repo.load_index()?;
    let trees: Vec<_> = chosen.iter().map(|(_, s)| s.tree).collect();
    let progress = ctx.progress();
    let st = stats::compute(&repo, &trees, mode, progress.as_ref(), &ctx.cancel)?;
    drop(progress);
    if ctx.global.json {
        ctx.print_json(&st);
        return Ok(exit::OK);
    }
    let size = |n: u64| format!("{} ({n} bytes)", util::human_bytes(n));
    ctx.say(format!("Stats in {} mode:", st.mode));
    ctx.say(format!("     Snapshots processed:  {}", st.snapshots_count));
    match mode {
        Mode::RestoreSize | Mode::FilesByContents => {
            ctx.say(format!(
                "        Total File Count:  {}",
                st.total_file_count
            ));
            ctx.say(format!(
                "              Total Size:  {}",
                size(st.total_size)
            ));
        }
        Mode::RawData => {
            ctx.say(format!(
                "        Total Blob Count:  {}",
                st.total_blob_count.unwrap_or(0)
            ));
            ctx.say(format!(
                " Total Uncompressed Size:  {}",
                size(st.total_uncompressed_size.unwrap_or(0))
            ));
            ctx.say(format!(
                "  Total Size (as stored):  {}",
                size(st.total_size)
            ));
            if let (Some(r), Some(p), Some(s)) = (
                st.compression_ratio,
                st.compression_progress,
                st.compression_space_saving,
            ) {
                ctx.say(format!("    Compression Progress:  {p:.2}%"));
                ctx.say(format!("       Compression Ratio:  {r:.2}x"));
                ctx.say(format!("Compression Space Saving:  {s:.2}%"));
            }
        }
    }
    let r = &st.repository;
    ctx.say("Repository:");
    ctx.say(format!(
        "                   Packs:  {}, {}",
        r.packs,
        size(r.pack_bytes)
    ));
    ctx.say(format!(
        "                   Blobs:  {} in {} index files",
        r.blobs, r.index_files
    ));
    ctx.say(format!("               Snapshots:  {}", r.snapshots));
    Ok(exit::OK)
}
