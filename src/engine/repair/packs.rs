//! Repair packs (restic's `repair packs`): the readable blobs of damaged packs saved into new packs, a new index without the damaged packs written whole, and only then the damaged pack files removed; the blobs that could not be read are named (`repair snapshots` then saves the snapshots that needed them again).

use crate::cancel::{CancelToken, Progress};
use crate::engine::packer::Packer;
use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::crypto::Key;
use crate::repo::id::Id;
use crate::repo::index::{split_into_files, IndexFile, IndexPack};
use crate::repo::pack::{self, BlobType, PackedBlob};
use crate::repo::Repository;
use std::collections::HashSet;

const INDEX_MAX_BLOBS: usize = 40_000;

/// What happened to one damaged pack.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PackRepair {
    pub id: String,
    /// Blobs read back whole and saved again.
    pub salvaged: usize,
    /// Blobs that could not be read (`TYPE ID: why`).
    pub lost: Vec<String>,
    /// Why the pack's list of blobs came from its header, or could not be had at all.
    pub note: Option<String>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RepairPacksReport {
    pub packs: Vec<PackRepair>,
    pub index_files_written: usize,
    pub index_files_removed: usize,
    pub packs_removed: usize,
}

impl RepairPacksReport {
    pub fn lost(&self) -> usize {
        self.packs.iter().map(|p| p.lost.len()).sum()
    }
}

/// The blobs a pack holds: the index's entries (`known`), else its header's.
fn entries(
    key: &Key,
    known: Option<Vec<PackedBlob>>,
    bytes: &[u8],
    r: &mut PackRepair,
) -> Vec<PackedBlob> {
    if let Some(b) = known {
        return b;
    }
    match pack::parse_header(key, bytes.len() as u64, bytes) {
        Ok(Ok(b)) => {
            r.note = Some("the index does not name it: its header lists its blobs".into());
            b
        }
        Ok(Err(_)) | Err(_) => {
            r.note = Some("the index does not name it and its header cannot be read".into());
            Vec::new()
        }
    }
}

/// A blob read back whole: its id, type and plaintext.
type Salvaged = (Id, BlobType, Vec<u8>);

/// Reads one pack's blobs (those of `known`, its index entries, else its header's) and gives
/// the readable ones.
fn salvage(
    repo: &Repository,
    id: &Id,
    known: Option<Vec<PackedBlob>>,
) -> Result<(PackRepair, Vec<Salvaged>)> {
    let mut r = PackRepair {
        id: id.to_hex(),
        ..Default::default()
    };
    let bytes = match repo.backend().load(FileType::Pack, &id.to_hex()) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for b in entries(repo.key(), known, &bytes, &mut r) {
        let (off, len) = (b.offset as usize, b.length as usize);
        let got = bytes
            .get(off..off + len)
            .ok_or_else(|| "the pack ends before it".to_string())
            .and_then(|s| pack::open_blob(repo.key(), &b, s).map_err(|e| e.to_string()));
        match got {
            Ok(plain) => {
                out.push((b.id, b.tpe, plain));
                r.salvaged += 1;
            }
            Err(why) => r
                .lost
                .push(format!("{} {}: {why}", b.tpe.as_str(), b.id.to_hex())),
        }
    }
    Ok((r, out))
}

/// Repairs the packs `ids` of `repo` (exclusively locked, index loaded): see the module.
pub fn repair_packs(
    repo: &mut Repository,
    ids: &[Id],
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RepairPacksReport> {
    let mut report = RepairPacksReport::default();
    progress.phase("salvage packs", Some(ids.len() as u64));
    let mut by_pack = repo.index().blobs_by_pack();
    let mut packer = Packer::new(repo);
    for id in ids {
        cancel.check()?;
        let (r, blobs) = salvage(packer.dst, id, by_pack.remove(id))?;
        for (bid, tpe, plain) in blobs {
            packer.add(bid, tpe, &plain)?;
        }
        report.packs.push(r);
        progress.inc(1);
    }
    packer.commit()?;
    cancel.check()?;
    let damaged: HashSet<Id> = ids.iter().copied().collect();
    let (kept, old_files) = index_without(repo, &damaged)?;
    for f in split_into_files(kept, INDEX_MAX_BLOBS) {
        repo.save_unpacked(FileType::Index, &f)?;
        report.index_files_written += 1;
    }
    for f in &old_files {
        remove(repo, FileType::Index, f, &mut report.index_files_removed)?;
    }
    for id in ids {
        remove(repo, FileType::Pack, id, &mut report.packs_removed)?;
    }
    repo.load_index()?;
    Ok(report)
}

/// Every index file's packs but the damaged ones, and the ids of all index files. An index
/// file that cannot be read stops the repair: its entries would be lost with it.
fn index_without(repo: &Repository, damaged: &HashSet<Id>) -> Result<(Vec<IndexPack>, Vec<Id>)> {
    let files = repo.list_ids(FileType::Index)?;
    let mut packs = Vec::new();
    for f in &files {
        let file: IndexFile = repo.load_unpacked(FileType::Index, f).map_err(|e| {
            Error::Input(format!(
                "index file {} cannot be read ({e}), so repair packs would lose its entries; nothing was removed\n  hint: run `backupctl repair index` first",
                f.short()
            ))
        })?;
        packs.extend(file.packs.into_iter().filter(|p| !damaged.contains(&p.id)));
    }
    Ok((packs, files))
}

fn remove(repo: &Repository, t: FileType, id: &Id, count: &mut usize) -> Result<()> {
    match repo.backend().remove(t, &id.to_hex()) {
        Ok(()) => *count += 1,
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
