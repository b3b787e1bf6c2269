//! Copy: snapshots and the blobs they need from one repository into another, re-encrypted for the target's key, skipping what the target has.
//!
//! As restic's `copy`: a source snapshot is skipped when the target holds a snapshot with the
//! same persistent id (the target's `original`, or its own id) and the same time, tree, host,
//! user, paths, excludes and tags. Copied snapshots get `original` set (to the source's own
//! `original`, else its id) and no parent. Blob ids are hashes of plaintext, so trees keep
//! their ids. For each snapshot the packs are written first, then the index that names them,
//! then the snapshot: a crash leaves at most unreferenced packs in the target.

use super::packer::Packer;
use crate::cancel::{CancelToken, Progress};
use crate::error::Result;
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};

/// What a copy did, per snapshot.
#[derive(Debug, Default, serde::Serialize)]
pub struct CopyReport {
    /// (source id, new target id)
    pub copied: Vec<(Id, Id)>,
    /// (source id, the target snapshot that already holds it)
    pub skipped: Vec<(Id, Id)>,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
}

/// Whether two snapshots are the same but for parent and original (restic's rule).
pub fn similar(a: &Snapshot, b: &Snapshot) -> bool {
    a.time == b.time
        && a.tree == b.tree
        && a.hostname == b.hostname
        && a.username == b.username
        && a.uid == b.uid
        && a.gid == b.gid
        && a.paths == b.paths
        && a.excludes == b.excludes
        && a.tags == b.tags
}

/// Copies `snaps` (from `src`) into `dst`. Both indexes must be loaded; the caller holds
/// (at least shared) locks on both.
pub fn copy(
    src: &Repository,
    dst: &mut Repository,
    snaps: &[(Id, Snapshot)],
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CopyReport> {
    let mut report = CopyReport::default();
    let mut by_original: HashMap<Id, Vec<(Id, Snapshot)>> = HashMap::new();
    for (id, s) in dst.list_snapshots()? {
        if let Some(o) = s.original {
            by_original.entry(o).or_default().push((id, s.clone()));
        }
        by_original.entry(id).or_default().push((id, s));
    }
    progress.phase("copy", Some(snaps.len() as u64));
    for (sid, sn) in snaps {
        cancel.check()?;
        let persistent = sn.original.unwrap_or(*sid);
        if let Some((tid, _)) = by_original
            .get(&persistent)
            .and_then(|v| v.iter().find(|(_, t)| similar(t, sn)))
        {
            progress.note(&format!(
                "skipping snapshot {}: the target has it as {}",
                sid.short(),
                tid.short()
            ));
            report.skipped.push((*sid, *tid));
            progress.inc(1);
            continue;
        }
        let mut packer = Packer::new(dst);
        let mut seen: HashSet<(Id, BlobType)> = HashSet::new();
        let mut stack = vec![sn.tree];
        seen.insert((sn.tree, BlobType::Tree));
        while let Some(tid) = stack.pop() {
            cancel.check()?;
            let raw = src.load_blob(&tid, BlobType::Tree)?;
            let tree = crate::repo::tree::Tree::parse(&raw).map_err(|e| {
                crate::error::Error::damaged(format!("tree {} in the source", tid.short()), e)
            })?;
            for n in &tree.nodes {
                for b in n.content.iter().flatten() {
                    if seen.insert((*b, BlobType::Data))
                        && !packer.dst.index().has(b, BlobType::Data)
                    {
                        let data = src.load_blob(b, BlobType::Data)?;
                        report.bytes_copied += data.len() as u64;
                        report.blobs_copied += 1;
                        packer.add(*b, BlobType::Data, &data)?;
                    }
                }
                if let Some(s) = n.subtree {
                    if seen.insert((s, BlobType::Tree)) {
                        stack.push(s);
                    }
                }
            }
            if !packer.dst.index().has(&tid, BlobType::Tree) {
                report.blobs_copied += 1;
                report.bytes_copied += raw.len() as u64;
                packer.add(tid, BlobType::Tree, &raw)?;
            }
        }
        packer.commit()?;
        let mut copy = sn.clone();
        copy.parent = None;
        copy.original = Some(persistent);
        let new_id = dst.save_unpacked(FileType::Snapshot, &copy)?;
        by_original
            .entry(persistent)
            .or_default()
            .push((new_id, copy));
        report.copied.push((*sid, new_id));
        progress.inc(1);
    }
    Ok(report)
}
