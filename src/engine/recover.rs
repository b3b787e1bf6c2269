//! Recover (restic's `recover`): a snapshot (path `/recover`) of the trees no snapshot reaches — a snapshot forgotten by mistake, before prune removes its data — each a folder at its root named by its short id.

use crate::cancel::{CancelToken, Progress};
use crate::engine::edit::save_trees;
use crate::error::Result;
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{gomode, kind, Node, Tree};
use crate::repo::Repository;
use chrono::{DateTime, FixedOffset};
use std::collections::{BTreeSet, HashSet};

/// What `recover` found and saved.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RecoverReport {
    /// Tree blobs in the index.
    pub trees: usize,
    /// Those no snapshot and no other tree references, now in the new snapshot.
    pub roots: Vec<String>,
    /// Trees that could not be read (their subtrees may show up as roots).
    pub unreadable: Vec<String>,
    /// The new snapshot (none when nothing was found).
    pub snapshot: Option<String>,
}

/// The trees of `all` that no tree of `all` names as a subtree and no snapshot has as its
/// root, in id order.
pub fn roots(all: &BTreeSet<Id>, subtrees: &HashSet<Id>, snapshot_roots: &HashSet<Id>) -> Vec<Id> {
    all.iter()
        .filter(|t| !subtrees.contains(t) && !snapshot_roots.contains(t))
        .copied()
        .collect()
}

/// The root tree of the recovery snapshot: one folder per tree, named by its short id.
pub fn recovery_tree(roots: &[Id], now: DateTime<FixedOffset>) -> Tree {
    let mut t = Tree {
        nodes: roots.iter().map(|id| folder(id, now)).collect(),
    };
    t.sort();
    t
}

fn folder(id: &Id, now: DateTime<FixedOffset>) -> Node {
    let mut n = Node::new(id.short(), kind::DIR);
    n.mode = gomode::DIR | 0o755;
    (n.mtime, n.atime, n.ctime) = (now, now, now);
    n.subtree = Some(*id);
    n
}

/// Reads every tree of the index (loaded), finds the roots no snapshot reaches, and saves a
/// snapshot of them (path `/recover`, host `hostname`); saves nothing when there are none.
pub fn recover(
    repo: &mut Repository,
    snaps: &[(Id, Snapshot)],
    hostname: &str,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RecoverReport> {
    let all: BTreeSet<Id> = repo
        .index()
        .iter()
        .filter(|((_, t), _)| *t == BlobType::Tree)
        .map(|((id, _), _)| *id)
        .collect();
    let mut report = RecoverReport {
        trees: all.len(),
        ..Default::default()
    };
    let mut subtrees = HashSet::new();
    progress.phase("read trees", Some(all.len() as u64));
    for id in &all {
        cancel.check()?;
        match repo.load_tree(id) {
            Ok(t) => subtrees.extend(t.nodes.iter().filter_map(|n| n.subtree)),
            Err(e) => report.unreadable.push(format!("{}: {e}", id.to_hex())),
        }
        progress.inc(1);
    }
    let snapshot_roots: HashSet<Id> = snaps.iter().map(|(_, s)| s.tree).collect();
    let found = roots(&all, &subtrees, &snapshot_roots);
    report.roots = found.iter().map(Id::to_hex).collect();
    if found.is_empty() {
        return Ok(report);
    }
    let now = chrono::Local::now().fixed_offset();
    let tree = recovery_tree(&found, now);
    let bytes = tree.serialize();
    let tree_id = Id::hash(&bytes);
    save_trees(repo, &[(tree_id, bytes)])?;
    let snap = recovery_snapshot(tree_id, hostname, now);
    report.snapshot = Some(repo.save_unpacked(FileType::Snapshot, &snap)?.to_hex());
    Ok(report)
}

fn recovery_snapshot(tree: Id, hostname: &str, now: DateTime<FixedOffset>) -> Snapshot {
    Snapshot {
        time: now,
        parent: None,
        tree,
        paths: vec!["/recover".into()],
        hostname: hostname.into(),
        username: crate::sysinfo::username(),
        uid: crate::sysinfo::uid(),
        gid: crate::sysinfo::gid(),
        excludes: vec![],
        // restic 0.19 tags the snapshot `recovered`.
        tags: vec!["recovered".into()],
        original: None,
        program_version: crate::repo::PROGRAM_VERSION.to_string(),
        summary: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_is_a_tree_no_tree_and_no_snapshot_names() {
        let id = |s: &str| Id::hash(s.as_bytes());
        let all: BTreeSet<Id> = ["snap", "sub", "lost", "lostsub"].map(id).into();
        let subtrees: HashSet<Id> = ["sub", "lostsub"].map(id).into();
        let snapshot_roots: HashSet<Id> = [id("snap")].into();
        assert_eq!(roots(&all, &subtrees, &snapshot_roots), vec![id("lost")]);
        assert!(roots(&all, &all.iter().copied().collect(), &HashSet::new()).is_empty());
    }

    #[test]
    fn each_root_is_a_folder_named_by_its_short_id() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z").unwrap();
        let (a, b) = (Id::hash(b"a"), Id::hash(b"b"));
        let t = recovery_tree(&[a, b], now);
        assert_eq!(t.nodes.len(), 2);
        let n = t.find(&a.short()).unwrap();
        assert_eq!(
            (n.subtree, n.is_dir(), n.mode & 0o777),
            (Some(a), true, 0o755)
        );
        assert!(t.nodes.windows(2).all(|w| w[0].name < w[1].name));
    }
}
