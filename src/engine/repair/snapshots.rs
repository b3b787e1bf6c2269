//! Repair snapshots: a snapshot whose trees reference data the index does not have is saved again without it — each file missing a data blob left out, each folder whose tree is gone kept empty — and, with `forget`, the damaged original removed after the repaired one is saved.
//!
//! Why files are left out rather than kept with their missing parts cut (as restic does): a
//! restored file with a hole looks whole to whoever opens it; a missing file is plain. Every
//! file and folder left out is named. A blob counts as there when the index names it: run
//! `repair index` first, so that the index describes the packs.

use crate::cancel::{CancelToken, Progress};
use crate::engine::edit::{save_trees, Edited, Editor, Rule};
use crate::error::Result;
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Node;
use crate::repo::Repository;

/// The tag a repaired snapshot gets, besides its own.
pub const REPAIRED_TAG: &str = "repaired";

/// One snapshot that needed repair.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepairedSnapshot {
    pub id: String,
    /// The repaired snapshot (none in a dry run).
    pub new_id: Option<String>,
    /// What was left out: files (`/a/b.txt`) and the contents of folders (`/a/c/`).
    pub lost: Vec<String>,
    /// The damaged original was removed (`forget`).
    pub forgotten: bool,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RepairSnapshotsReport {
    /// Snapshots looked at.
    pub checked: usize,
    /// Those that needed repair.
    pub repaired: Vec<RepairedSnapshot>,
    pub dry_run: bool,
}

/// Leaves out each file whose data the index lacks, and empties each folder whose tree is lost.
struct Missing<'a>(&'a Repository);

impl Rule for Missing<'_> {
    fn leave_out(&self, _path: &str, n: &Node) -> bool {
        n.content
            .iter()
            .flatten()
            .any(|b| !self.0.index().has(b, BlobType::Data))
    }

    fn empties_lost_folders(&self) -> bool {
        true
    }
}

/// Repairs `snaps` of `repo` (its index loaded; the caller holds the exclusive lock): new trees
/// (packs, then their index), then each repaired snapshot, then — with `forget` — the damaged
/// original's file removed. A dry run writes nothing.
pub fn repair_snapshots(
    repo: &mut Repository,
    snaps: &[(Id, Snapshot)],
    forget: bool,
    dry_run: bool,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RepairSnapshotsReport> {
    let mut report = RepairSnapshotsReport {
        checked: snaps.len(),
        dry_run,
        ..Default::default()
    };
    let mut editor = Editor::new(repo, Missing(repo));
    let mut todo = Vec::new();
    progress.phase("repair snapshots", Some(snaps.len() as u64));
    for (sid, sn) in snaps {
        cancel.check()?;
        let f = editor.edit_root(sn.tree)?;
        if f.id != sn.tree {
            todo.push((*sid, sn.clone(), f));
        }
        progress.inc(1);
    }
    let new_trees = editor.into_new_trees();
    if dry_run {
        report.repaired = todo
            .iter()
            .map(|(sid, _, f)| entry(sid, None, f, false))
            .collect();
        return Ok(report);
    }
    save_trees(repo, &new_trees)?;
    for (sid, sn, f) in &todo {
        cancel.check()?;
        let new_id = repo.save_unpacked(FileType::Snapshot, &repaired(sid, sn, f.id))?;
        if forget {
            repo.backend().remove(FileType::Snapshot, &sid.to_hex())?;
        }
        report.repaired.push(entry(sid, Some(new_id), f, forget));
    }
    Ok(report)
}

/// The repaired snapshot: the old one with the new tree, tagged `repaired`, its `original`
/// the old one's (or the old one itself).
fn repaired(sid: &Id, sn: &Snapshot, tree: Id) -> Snapshot {
    let mut s = sn.clone();
    s.tree = tree;
    s.original = Some(sn.original.unwrap_or(*sid));
    if !s.tags.iter().any(|t| t == REPAIRED_TAG) {
        s.tags.push(REPAIRED_TAG.to_string());
    }
    s
}

fn entry(sid: &Id, new_id: Option<Id>, f: &Edited, forgotten: bool) -> RepairedSnapshot {
    RepairedSnapshot {
        id: sid.to_hex(),
        new_id: new_id.map(|i| i.to_hex()),
        lost: f.removed.clone(),
        forgotten,
    }
}
