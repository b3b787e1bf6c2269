//! Repair index: a new index of the packs the repository has — the old index's entries for packs that are there with the size they imply, every other pack's header read — written in full before the old index files are removed, so a crash at any point leaves an index at least as complete as before.
//!
//! Which pack goes where is [`plan`]'s decision (pure); [`repair_index`] reads and writes. The
//! caller holds the exclusive lock. Packs whose header cannot be read are named and left in
//! place (their blobs are not indexed: `check` then names the files they held).

use crate::cancel::{CancelToken, Progress};
use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::index::{split_into_files, IndexFile, IndexPack};
use crate::repo::pack::size_from_header;
use crate::repo::Repository;
use std::collections::{BTreeMap, HashMap};

/// Index files hold at most this many blobs, as the backup's own.
const INDEX_MAX_BLOBS: usize = 40_000;

/// What `repair index` did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RepairIndexReport {
    /// Packs in the repository.
    pub packs: usize,
    /// Packs whose entries came from the old index.
    pub packs_from_index: usize,
    /// Packs whose header was read.
    pub packs_read: usize,
    /// Packs the old index named that are not there (their entries are dropped).
    pub packs_missing: Vec<String>,
    /// Packs whose header cannot be read, and why (not indexed; left in place).
    pub packs_unreadable: Vec<(String, String)>,
    /// Old index files that could not be read, and why.
    pub index_files_damaged: Vec<(String, String)>,
    pub index_files_written: usize,
    pub index_files_removed: usize,
    pub blobs: usize,
}

/// Where each pack's entries come from.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// From the old index (the pack is there, with the size its entries imply).
    pub keep: Vec<IndexPack>,
    /// Read the header: the old index does not name it, or not with its size, or all packs
    /// are read.
    pub read: Vec<(Id, u64)>,
    /// Named by the old index, not in the repository.
    pub missing: Vec<Id>,
}

/// The plan for packs `listed` (id, size) and the old index's entries `old` (a pack named
/// twice keeps its first entry); with `read_all`, every header is read.
pub fn plan(listed: &[(Id, u64)], old: Vec<IndexPack>, read_all: bool) -> Plan {
    let mut known: HashMap<Id, IndexPack> = HashMap::new();
    for p in old {
        known.entry(p.id).or_insert(p);
    }
    let sizes: BTreeMap<Id, u64> = listed.iter().copied().collect();
    let mut out = Plan::default();
    for (&id, &size) in &sizes {
        match known.remove(&id) {
            Some(p) if !read_all && size_from_header(&p.packed().collect::<Vec<_>>()) == size => {
                out.keep.push(p)
            }
            _ => out.read.push((id, size)),
        }
    }
    out.missing = known.into_keys().collect();
    out.missing.sort();
    out
}

/// Every index file's packs (the readable ones), the ids of all index files, and the
/// damaged ones with why.
fn load_old(repo: &Repository, rep: &mut RepairIndexReport) -> Result<(Vec<IndexPack>, Vec<Id>)> {
    let ids = repo.list_ids(FileType::Index)?;
    let mut packs = Vec::new();
    for id in &ids {
        match repo.load_unpacked::<IndexFile>(FileType::Index, id) {
            Ok(f) => packs.extend(f.packs),
            Err(Error::Backend(e)) if !e.is_not_found() => return Err(Error::Backend(e)),
            Err(e) => rep.index_files_damaged.push((id.to_hex(), e.to_string())),
        }
    }
    Ok((packs, ids))
}

/// Rebuilds the index of `repo` (exclusively locked): see the module's rules.
pub fn repair_index(
    repo: &mut Repository,
    read_all: bool,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RepairIndexReport> {
    let mut rep = RepairIndexReport::default();
    let listed: Vec<(Id, u64)> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|(n, s)| Id::parse(&n).map(|id| (id, s)))
        .collect();
    rep.packs = listed.len();
    let (old, old_files) = load_old(repo, &mut rep)?;
    let p = plan(&listed, old, read_all);
    rep.packs_from_index = p.keep.len();
    rep.packs_missing = p.missing.iter().map(Id::to_hex).collect();
    let mut packs = p.keep;
    progress.phase("read pack headers", Some(p.read.len() as u64));
    for (id, size) in &p.read {
        cancel.check()?;
        match repo.read_pack_header(id, *size) {
            Ok(blobs) => {
                packs.push(IndexPack::from_packed(*id, &blobs));
                rep.packs_read += 1;
            }
            Err(e) => rep.packs_unreadable.push((id.to_hex(), e.to_string())),
        }
        progress.inc(1);
    }
    rep.blobs = packs.iter().map(|p| p.blobs.len()).sum();
    cancel.check()?;
    // The new index first, whole; only then the old files go.
    for f in split_into_files(packs, INDEX_MAX_BLOBS) {
        repo.save_unpacked(FileType::Index, &f)?;
        rep.index_files_written += 1;
    }
    for id in &old_files {
        match repo.backend().remove(FileType::Index, &id.to_hex()) {
            Ok(()) => rep.index_files_removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    repo.load_index()?;
    Ok(rep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::pack::{BlobType, PackedBlob};

    fn pack(n: u8, lengths: &[u32]) -> IndexPack {
        let mut offset = 0;
        let blobs: Vec<PackedBlob> = lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| {
                let b = PackedBlob {
                    id: Id([n.wrapping_mul(31).wrapping_add(i as u8); 32]),
                    tpe: BlobType::Data,
                    offset,
                    length,
                    uncompressed_length: Some(length * 2),
                };
                offset += length;
                b
            })
            .collect();
        IndexPack::from_packed(Id([n; 32]), &blobs)
    }

    fn size(p: &IndexPack) -> u64 {
        size_from_header(&p.packed().collect::<Vec<_>>())
    }

    #[test]
    fn entries_of_packs_there_with_their_size_are_kept_the_rest_read_or_dropped() {
        let (a, b, c, gone) = (
            pack(1, &[100, 50]),
            pack(2, &[70]),
            pack(3, &[9]),
            pack(4, &[5]),
        );
        let listed = vec![
            (a.id, size(&a)),
            (b.id, size(&b) + 1), // not the size its entries imply: read
            (c.id, size(&c)),     // no index names it: read
            (Id([5; 32]), 1000),  // no index names it: read
        ];
        let p = plan(
            &listed,
            vec![a.clone(), b.clone(), a.clone(), gone.clone()],
            false,
        );
        assert_eq!(p.keep, vec![a.clone()], "a named twice is kept once");
        assert_eq!(
            p.read,
            vec![(b.id, size(&b) + 1), (c.id, size(&c)), (Id([5; 32]), 1000)]
        );
        assert_eq!(p.missing, vec![gone.id]);
        let all = plan(&listed, vec![a.clone()], true);
        assert!(all.keep.is_empty() && all.read.len() == 4);
    }
}
