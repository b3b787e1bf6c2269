//! `backupctl diff`: what changed between two snapshots.

use super::{snapref, util, Ctx};
use crate::engine::diff::{self, Change, DiffStats};
use crate::engine::walk;
use crate::error::{exit, Error, Result};
use crate::repo::id::Id;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::snapshot::SnapshotFilter;
use crate::repo::{Repository, Snapshots};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Markers: + added, - removed, M content changed, U metadata only \
                        (mode, owner, mtime), T type changed. Directories end in '/'."
)]
pub(crate) struct Args {
    /// The older snapshot (id, prefix or `latest`), optionally with `:PATH` to compare only
    /// below that directory.
    pub a: String,
    /// The newer snapshot (id, prefix or `latest`), optionally with `:PATH`.
    pub b: String,
}

/// One `change` line of `diff --json`, as restic 0.19 prints it.
fn change_line(c: &Change) -> String {
    serde_json::json!({"message_type": "change", "path": c.path, "modifier": c.modifier.marker()})
        .to_string()
}

/// The closing `statistics` line of `diff --json`: restic 0.19's fields (the snapshots as the
/// user named them, as restic prints them), then backupd's own counts beside them.
fn statistics_line(a: &str, b: &str, stats: &DiffStats) -> String {
    let mut v = serde_json::to_value(stats).expect("counts serialize");
    if let Some(o) = v.as_object_mut() {
        o.insert("message_type".into(), "statistics".into());
        o.insert("source_snapshot".into(), a.into());
        o.insert("target_snapshot".into(), b.into());
    }
    v.to_string()
}

/// Resolves `SNAPSHOT[:PATH]` to the snapshot id and the tree of that directory.
fn resolve(repo: &Repository, snaps: &Snapshots, spec: &str) -> Result<(Id, Id, String)> {
    let (sid, sub) = util::split_snapshot_path(spec);
    let latest = snapref::Latest::Refuse {
        hint: snapref::BY_ID,
    };
    let (id, snap) = snapref::find(snaps, sid, &SnapshotFilter::default(), latest)?;
    let sub = sub.unwrap_or("/");
    let node = walk::find_node(repo, &snap.tree, sub)?.ok_or_else(|| {
        Error::Input(format!(
            "snapshot {} has no path {sub:?}\n  hint: `backupctl ls {}` lists its paths",
            id.short(),
            id.short()
        ))
    })?;
    match (node.is_dir(), node.subtree) {
        (true, Some(t)) => Ok((*id, t, sub.trim_end_matches('/').to_string())),
        _ => Err(Error::Input(format!(
            "{sub:?} in snapshot {} is a {}, not a directory\n  hint: diff compares directories; name the folder that holds it",
            id.short(),
            node.kind
        ))),
    }
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let snaps = snapref::load(ctx, &repo)?;
    repo.load_index()?;
    let (id_a, tree_a, path_a) = resolve(&repo, &snaps, &a.a)?;
    let (id_b, tree_b, path_b) = resolve(&repo, &snaps, &a.b)?;
    // Paths are shown as in the newer snapshot.
    let prefix = if path_a == path_b { path_a } else { path_b };
    let json = ctx.global.json;
    let quiet = ctx.global.quiet;
    if !json && !quiet {
        println!("comparing snapshot {} to {}:\n", id_a.short(), id_b.short());
    }
    let stats = diff::diff_trees(&repo, &tree_a, &tree_b, &prefix, &ctx.cancel, &mut |c| {
        if json {
            println!("{}", change_line(&c));
        } else if !quiet {
            println!("{:<5}{}", c.modifier.marker(), c.path);
        }
        Ok(())
    })?;
    if json {
        let named = |s: &str| util::split_snapshot_path(s).0.to_string();
        println!("{}", statistics_line(&named(&a.a), &named(&a.b), &stats));
        return Ok(exit::OK);
    }
    if !quiet {
        let (ad, rm) = (&stats.added, &stats.removed);
        println!();
        println!(
            "Files:       {:5} new, {:5} removed, {:5} changed",
            ad.files, rm.files, stats.changed_files
        );
        println!("Dirs:        {:5} new, {:5} removed", ad.dirs, rm.dirs);
        println!("Others:      {:5} new, {:5} removed", ad.others, rm.others);
        println!(
            "Metadata:    {:5} changed, {:5} type changes",
            stats.metadata_changed, stats.type_changed
        );
        println!(
            "Data Blobs:  {:5} new, {:5} removed",
            ad.data_blobs, rm.data_blobs
        );
        println!(
            "Tree Blobs:  {:5} new, {:5} removed",
            ad.tree_blobs, rm.tree_blobs
        );
        println!("  Added:   {}", util::human_bytes(ad.bytes));
        println!("  Removed: {}", util::human_bytes(rm.bytes));
    }
    Ok(exit::OK)
}
