//! Resuming an interrupted backup: packs that no index lists (left by a run that was killed
//! before it wrote its index) are adopted at the start of the next backup, so it reuses them.
//!
//! A pack is adopted only when its header decrypts (it is authenticated) and agrees with the
//! pack's size; anything else is left for prune. The content is not re-read: every save is
//! atomic, so a pack under its final name is whole (as `restic repair index` trusts headers), and
//! blobs are verified whenever they are read, as those of any indexed pack.
//! Packs are adopted only while no other process holds a lock on the repository: another live
//! backup's packs are unindexed too, until it writes its index, and are not ours to take.

use crate::cancel::Progress;
use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::index::{split_into_files, IndexFile, IndexPack, MasterIndex};
use crate::repo::lock::{self, LockFile};
use crate::repo::Repository;
use crate::size::human_bytes;
use std::collections::HashSet;

/// Index files of adopted packs hold at most this many blobs, as the backup's own.
const INDEX_MAX_BLOBS: usize = 40_000;

/// What the start of a backup took over from interrupted runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resumed {
    /// Packs adopted into the index.
    pub packs: usize,
    /// Their blobs.
    pub blobs: usize,
    /// Their size in the repository.
    pub bytes: u64,
    /// Unindexed packs left alone (damaged, or unreadable): prune removes them.
    pub left: usize,
}

impl Resumed {
    /// The note a run prints: "resumed: 412.00 MiB from an interrupted run kept (25 packs)".
    pub fn message(&self) -> String {
        format!(
            "resumed: {} from an interrupted run kept ({} pack(s), {} blob(s))",
            human_bytes(self.bytes),
            self.packs,
            self.blobs
        )
    }
}

/// The packs of `listed` (name, size) that `index` does not name, in name order.
pub fn unindexed(listed: &[(String, u64)], index: &MasterIndex) -> Vec<(Id, u64)> {
    let mut out: Vec<(Id, u64)> = listed
        .iter()
        .filter_map(|(n, size)| Id::parse(n).map(|id| (id, *size)))
        .filter(|(id, _)| !index.has_pack(id))
        .collect();
    out.sort();
    out
}

/// Whether packs may be adopted, given the repository's locks: only when every live lock is
/// one of this process's, and there is at most one (ours). Two of ours mean a second job of
/// this process writes to the same repository now.
pub fn may_adopt(locks: &[LockFile], pid: u32, host: &str) -> bool {
    let live: Vec<&LockFile> = locks.iter().filter(|l| !l.is_stale()).collect();
    live.len() <= 1 && live.iter().all(|l| l.pid == pid && l.hostname == host)
}

/// Adopts the unindexed packs of `repo` (whose index is loaded): verifies each, writes an
/// index for those that pass and merges it. Notes what was kept on `progress`. The caller
/// holds a shared lock.
pub fn adopt_unindexed(repo: &mut Repository, progress: &dyn Progress) -> Result<Resumed> {
    let listed = repo.backend().list(FileType::Pack)?;
    if unindexed(&listed, repo.index()).is_empty() {
        return Ok(Resumed::default());
    }
    let locks: Vec<LockFile> = lock::list_locks(repo)?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    if !may_adopt(&locks, std::process::id(), &crate::sysinfo::hostname()) {
        return Ok(Resumed::default());
    }
    // An index written since ours was loaded (a run that ended meanwhile) names its packs.
    load_new_index_files(repo)?;
    let orphans = unindexed(&listed, repo.index());
    let (packs, left) = verify_all(repo, &orphans, progress);
    let r = Resumed {
        packs: packs.len(),
        blobs: packs.iter().map(|p| p.blobs.len()).sum(),
        bytes: orphans
            .iter()
            .filter(|(id, _)| packs.iter().any(|p| p.id == *id))
            .map(|(_, s)| s)
            .sum(),
        left,
    };
    for f in split_into_files(packs, INDEX_MAX_BLOBS) {
        let id = repo.save_unpacked(FileType::Index, &f)?;
        repo.index_mut().merge_file(id, &f);
    }
    if r.packs > 0 {
        progress.note(&r.message());
    }
    Ok(r)
}

/// Merges the index files that appeared since the index was loaded.
fn load_new_index_files(repo: &mut Repository) -> Result<()> {
    let known: HashSet<Id> = repo.index().files.iter().copied().collect();
    for id in repo.list_ids(FileType::Index)? {
        if known.contains(&id) {
            continue;
        }
        match repo.load_unpacked::<IndexFile>(FileType::Index, &id) {
            Ok(f) => repo.index_mut().merge_file(id, &f),
            Err(Error::Backend(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The index entries of the orphans that verify, and how many did not.
fn verify_all(
    repo: &Repository,
    orphans: &[(Id, u64)],
    progress: &dyn Progress,
) -> (Vec<IndexPack>, usize) {
    let mut packs = Vec::new();
    let mut left = 0;
    for (id, size) in orphans {
        match verify(repo, id, *size) {
            Ok(p) => packs.push(p),
            Err(why) => {
                left += 1;
                progress.note(&format!(
                    "warning: pack {} from an interrupted run is not reused ({why}); `backupctl prune` removes it",
                    id.short()
                ));
            }
        }
    }
    (packs, left)
}

/// The index entry of one unindexed pack, once its header verifies.
fn verify(repo: &Repository, id: &Id, size: u64) -> std::result::Result<IndexPack, String> {
    let blobs = repo.read_pack_header(id, size).map_err(|e| e.to_string())?;
    if blobs.is_empty() {
        return Err("its header lists no blobs".into());
    }
    Ok(IndexPack::from_packed(*id, &blobs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Local;

    fn lock_of(pid: u32, host: &str) -> LockFile {
        LockFile {
            pid,
            hostname: host.into(),
            ..LockFile::ours(false)
        }
    }

    #[test]
    fn packs_are_adopted_only_when_no_other_process_holds_a_lock() {
        let me = std::process::id();
        let host = crate::sysinfo::hostname();
        assert!(may_adopt(&[], me, &host));
        assert!(may_adopt(&[lock_of(me, &host)], me, &host));
        // Another process here, or any process on another host.
        assert!(!may_adopt(
            &[lock_of(me, &host), lock_of(1, "elsewhere")],
            me,
            &host
        ));
        assert!(!may_adopt(&[lock_of(1, "elsewhere")], me, &host));
        // Two locks of ours: a second job of this process writes now.
        assert!(!may_adopt(
            &[lock_of(me, &host), lock_of(me, &host)],
            me,
            &host
        ));
        // A stale lock (not refreshed for hours) does not count.
        let mut old = lock_of(1, "elsewhere");
        old.time = (Local::now() - chrono::Duration::hours(2)).fixed_offset();
        assert!(may_adopt(&[old, lock_of(me, &host)], me, &host));
    }

    #[test]
    fn unindexed_packs_are_those_no_index_names() {
        let (a, b) = (Id([1; 32]), Id([2; 32]));
        let mut index = MasterIndex::new();
        index.add_pack(a, Vec::new());
        let listed = vec![
            (b.to_hex(), 20),
            (a.to_hex(), 10),
            ("not-an-id".to_string(), 5),
        ];
        assert_eq!(unindexed(&listed, &index), vec![(b, 20)]);
    }
}
