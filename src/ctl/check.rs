//! `backupctl check`: verify the repository's structure and, with --read-data, all data; report
//! what is damaged and which snapshots and files it affects.

use super::{util, Ctx};
use crate::engine::check::{
    self, CheckIssue, CheckOptions, CheckReport, IssueKind, ReadData, MAX_EXAMPLE_PATHS,
};
use crate::error::{exit, Error, Result};
use crate::repo::open::{open_repository, LockMode};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Read every pack and re-hash every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read only a subset of packs: `N%` (random), or `n/m` (the n-th of m groups).
    #[arg(long, value_parser = subset_arg)]
    pub read_data_subset: Option<String>,
}

/// Validates `--read-data-subset` at parse time (a bad value is a usage error).
fn subset_arg(s: &str) -> std::result::Result<String, String> {
    ReadData::parse_subset(s).map(|_| s.to_string())
}

/// How many paths (or blobs) to show per issue and per snapshot; --json has them all (of the
/// paths, the first `MAX_EXAMPLE_PATHS`).
const SHOW: usize = 20;

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => ReadData::parse_subset(s)
            .map_err(|e| Error::Input(format!("--read-data-subset: {e}")))?,
        (None, true) => ReadData::All,
        (None, false) => ReadData::No,
    };
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let progress = ctx.progress();
    let report = check::check(
        &mut repo,
        &CheckOptions { read_data },
        progress.as_ref(),
        &ctx.cancel,
    )?;
    drop(progress);
    if ctx.global.json {
        ctx.print_json(&report);
    } else {
        print_human(ctx, &repo.location(), &report);
    }
    Ok(if report.is_ok() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}

fn list_capped(items: &[String], indent: &str) -> String {
    let mut out = items
        .iter()
        .take(SHOW)
        .cloned()
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"));
    if items.len() > SHOW {
        out.push_str(&format!(
            "\n{indent}... and {} more (--json lists all)",
            items.len() - SHOW
        ));
    }
    out
}

fn print_issue(n: usize, e: &CheckIssue) {
    const IND: &str = "             ";
    println!("error {n}: {}", e.message);
    if let Some(p) = &e.pack {
        println!("  pack:      {p}");
    }
    if let Some(f) = &e.index_file {
        println!("  index:     {f}");
    }
    if !e.blobs.is_empty() {
        let b: Vec<String> = e
            .blobs
            .iter()
            .map(|b| format!("{} ({})", b.id.short(), b.tpe.as_str()))
            .collect();
        println!("  blobs:     {}", list_capped(&b, IND));
    }
    if !e.snapshots.is_empty() {
        let s: Vec<String> = e.snapshots.iter().map(|s| s.short()).collect();
        println!("  snapshots: {}", s.join(", "));
    }
    if !e.paths.is_empty() {
        println!("  files:     {}", list_capped(&e.paths, IND));
    }
    println!("  hint: {}", e.hint);
}

/// "1 pack", "2 packs".
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The report as text: what was checked and read, the packs in no index, then every error and
/// the snapshots they affect, with what to do.
fn print_human(ctx: &Ctx, location: &str, r: &CheckReport) {
    if ctx.global.quiet && r.is_ok() {
        return;
    }
    println!(
        "checked {location}: {}, {}, {}, {}, {}",
        count(r.snapshots, "snapshot"),
        count(r.trees, "tree"),
        count(r.data_blobs, "data blob"),
        count(r.index_files, "index file"),
        count(r.packs_listed, "pack")
    );
    if r.read_data != "none" {
        println!(
            "read data ({}): {} of {} packs, {}",
            r.read_data,
            r.packs_read,
            r.packs_listed,
            util::human_bytes(r.bytes_read)
        );
    }
    if !r.orphaned_packs.is_empty() {
        print_orphans(r);
    }
    if r.is_ok() {
        println!("no errors found");
        return;
    }
    println!();
    for (i, e) in r.errors.iter().enumerate() {
        print_issue(i + 1, e);
        println!();
    }
    println!(
        "{} found",
        if r.errors.len() == 1 {
            "1 error".to_string()
        } else {
            format!("{} errors", r.errors.len())
        }
    );
    if !r.affected_snapshots.is_empty() {
        print_affected(r);
    }
    if r.errors.iter().any(index_only) {
        println!(
            "hint: some data is only missing from the index: run `backupctl repair \
             index` first, then `backupctl check` again; do NOT prune before that"
        );
    }
    if let Some(h) = drop_hint(r) {
        println!("hint: {h}");
    }
}

/// What drops the damaged data the errors (other than the index's own) describe, keeping all
/// that can still be read: `repair packs` of every damaged or missing pack (its readable blobs
/// saved again, the pack removed), then `repair snapshots --forget` (the affected snapshots
/// saved again without the files that lost data), as exact commands.
fn drop_hint(r: &CheckReport) -> Option<String> {
    let lost: Vec<&CheckIssue> = r.errors.iter().filter(|e| !index_only(e)).collect();
    if lost.is_empty() {
        return None;
    }
    let mut packs: Vec<String> = lost
        .iter()
        .filter(|e| damaged_pack(e))
        .filter_map(|e| e.pack.map(|p| format!(" {p}")))
        .collect();
    packs.sort();
    packs.dedup();
    let repair_packs = match packs.is_empty() {
        true => String::new(),
        false => format!("`backupctl repair packs{}`, then ", packs.concat()),
    };
    Some(format!(
        "the damaged data cannot be recovered from this repository; to keep everything else, \
         run {repair_packs}`backupctl repair snapshots --forget` (the affected snapshots are \
         saved again without the files that lost data, each named); then back up the affected \
         files again"
    ))
}

/// A pack whose blobs are (partly) damaged or gone: `repair packs` salvages what it can.
fn damaged_pack(e: &CheckIssue) -> bool {
    matches!(
        e.kind,
        IssueKind::PackMissing
            | IssueKind::PackDamaged
            | IssueKind::PackHeaderDamaged
            | IssueKind::PackSizeMismatch
            | IssueKind::TreeDamaged
    )
}

/// The packs in no index (not an error), and whether prune may remove them.
fn print_orphans(r: &CheckReport) {
    let needed = r
        .orphaned_packs
        .iter()
        .filter(|o| o.needed_blobs > 0)
        .count();
    println!(
        "{} in no index (not an error):",
        if r.orphaned_packs.len() == 1 {
            "1 pack is".to_string()
        } else {
            format!("{} packs are", r.orphaned_packs.len())
        }
    );
    for o in r.orphaned_packs.iter().take(SHOW) {
        let mut line = format!("  {} ({})", o.id.short(), util::human_bytes(o.size));
        if o.needed_blobs > 0 {
            line.push_str(&format!(", holds {} blobs snapshots need", o.needed_blobs));
        }
        if o.damaged.is_some() {
            line.push_str(", damaged");
        }
        println!("{line}");
    }
    if r.orphaned_packs.len() > SHOW {
        println!("  ... and {} more", r.orphaned_packs.len() - SHOW);
    }
    if needed == 0 {
        println!(
            "  hint: they likely hold data an interrupted backup or prune left: the next \
             `backupctl backup` adopts and reuses them (check itself writes nothing), and \
             `backupctl prune` removes those no snapshot needs"
        );
    } else {
        println!(
            "  hint: do NOT prune yet: {needed} of them hold data snapshots need; run `backupctl \
             repair index` first"
        );
    }
}

/// The snapshots damaged or missing data affects.
fn print_affected(r: &CheckReport) {
    println!(
        "damaged or missing data affects {} of {} snapshots:",
        r.affected_snapshots.len(),
        r.snapshots
    );
    for s in &r.affected_snapshots {
        println!(
            "  snapshot {} of {} at {} ({}): {}",
            s.id.short(),
            s.hostname,
            super::show::time(&s.time),
            s.paths.join(" "),
            if s.damaged_paths_total == 1 {
                "1 damaged path".to_string()
            } else {
                format!("{} damaged paths", s.damaged_paths_total)
            }
        );
        println!("    {}", list_capped(&s.damaged_paths, "    "));
        let unnamed = s
            .damaged_paths_total
            .saturating_sub(s.damaged_paths.len() as u64);
        if unnamed > 0 {
            println!("    ... and {unnamed} more not named (at most {MAX_EXAMPLE_PATHS} are)");
        }
    }
}

/// A problem of the index only (the data is in the packs): rebuilding the index repairs it.
fn index_only(e: &CheckIssue) -> bool {
    matches!(
        e.kind,
        IssueKind::IndexDamaged | IssueKind::PackIndexMismatch
    ) || (e.kind == IssueKind::BlobsNotIndexed && e.pack.is_some())
}
