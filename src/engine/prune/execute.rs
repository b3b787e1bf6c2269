//! Prune's changing half: [`execute`] carries out a plan in the crash-safe order the module
//! documentation of `engine::prune` gives: repack, write the new index, delete the old index
//! files, delete the packs no index names, then the housekeeping.

use super::decide::{Action, PackState, PackTable};
use super::plan::PrunePlan;
use super::{cleanup, packed, PruneOptions, PruneReport, INDEX_MAX_BLOBS};
use crate::cancel::{CancelToken, Progress};
use crate::error::{Error, Result};
use crate::repo::backend::{Backend, FileType};
use crate::repo::id::Id;
use crate::repo::index::{self, IndexBlob, IndexPack};
use crate::repo::pack::{self, BlobType, PackWriter, PackedBlob};
use crate::repo::Repository;
use std::collections::HashSet;

/// The changing half (see the module documentation for the order and why it is crash-safe).
pub fn execute(
    repo: &mut Repository,
    plan: PrunePlan,
    opts: &PruneOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<PruneReport> {
    let PrunePlan {
        table,
        old_index,
        stale_temps,
        hypothetical,
        mut report,
    } = plan;
    if hypothetical {
        return Err(Error::Input(
            "internal error: a prune plan made for a dry run with assumed removals cannot be \
             executed; nothing was changed\n  hint: please report this bug"
                .into(),
        ));
    }
    report.dry_run = false;

    // Packs the new index names (they are never deleted), and the bytes of the new packs.
    let (in_new_index, new_bytes) = if changes_index(&report) {
        replace_index(
            repo,
            &table,
            &old_index,
            opts,
            progress,
            cancel,
            &mut report,
        )?
    } else {
        // Only orphans to delete: the index stays as it is.
        (HashSet::new(), 0)
    };
    // d. Packs no index names now.
    if !report.nothing_to_do() {
        progress.phase("delete", None);
        let freed = delete_packs(repo.backend().as_ref(), &table, &in_new_index, progress)?;
        report.bytes_freed = freed.saturating_sub(new_bytes);
    }

    // e. Housekeeping: stale temp files, stale unfinished uploads.
    report.temp_files_removed = cleanup::remove_stale_temps(&stale_temps, progress);
    report.uploads_aborted = cleanup::stale_uploads(repo, opts, progress, false);

    repo.load_index()?;
    Ok(report)
}

/// Steps a to c: repack, write the new index, delete the old index files. Returns the packs
/// the new index names and the bytes of the new packs.
fn replace_index(
    repo: &Repository,
    table: &PackTable,
    old_index: &[Id],
    opts: &PruneOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
    report: &mut PruneReport,
) -> Result<(HashSet<Id>, u64)> {
    // a. Repack.
    let new_packs = repack(repo, table, opts.pack_size, progress, cancel)?;
    report.packs_written = new_packs.packs.len();
    // b. The new index: every kept pack as the index listed it, and every new pack.
    let new_index = table.new_index(new_packs.packs)?;
    cancel.check()?;
    progress.phase("index", None);
    let (written, files) = write_index(repo, new_index.packs, old_index)?;
    report.index_files_written = files;
    // From here on every step only removes what the new index no longer names; an interrupt
    // would be safe, but finishing is quick, so the cancel token is not consulted any more.
    // c. Old index files.
    progress.phase("delete", None);
    report.index_files_removed = delete_old_index(repo.backend().as_ref(), old_index, &written)?;
    Ok((new_index.names, new_packs.bytes))
}

/// Whether the index changes: packs to delete, to repack, or missing ones to drop. With only
/// orphans to delete the index files stay as they are.
fn changes_index(report: &PruneReport) -> bool {
    !(report.deleted.is_empty() && report.repacked.is_empty() && report.missing.is_empty())
}

/// The packs repacking wrote, and their total size.
struct NewPacks {
    packs: Vec<IndexPack>,
    bytes: u64,
}

/// Collects repacked blobs into new packs, one writer per blob type.
struct Repacker<'a> {
    repo: &'a Repository,
    target: usize,
    writers: [PackWriter; 2],
    written: Vec<IndexPack>,
    bytes_written: u64,
}

impl<'a> Repacker<'a> {
    fn new(repo: &'a Repository, target: usize) -> Repacker<'a> {
        Repacker {
            repo,
            target,
            writers: [PackWriter::new(), PackWriter::new()],
            written: Vec::new(),
            bytes_written: 0,
        }
    }

    fn slot(t: BlobType) -> usize {
        match t {
            BlobType::Data => 0,
            BlobType::Tree => 1,
        }
    }

    fn add(&mut self, b: &PackedBlob, sealed: &[u8]) -> Result<()> {
        let s = Self::slot(b.tpe);
        self.writers[s].add_raw(b.id, b.tpe, sealed, b.uncompressed_length);
        if self.writers[s].size() >= self.target {
            self.flush(s)?;
        }
        Ok(())
    }

    fn flush(&mut self, s: usize) -> Result<()> {
        if self.writers[s].is_empty() {
            return Ok(());
        }
        let w = std::mem::take(&mut self.writers[s]);
        let (bytes, id, blobs) = w.finish(self.repo.key());
        self.repo.save_pack(&id, &bytes)?;
        self.bytes_written += bytes.len() as u64;
        self.written.push(IndexPack::from_packed(id, &blobs));
        Ok(())
    }

    /// Writes the packs still being filled (data, then tree).
    fn finish(mut self) -> Result<NewPacks> {
        self.flush(0)?;
        self.flush(1)?;
        Ok(NewPacks {
            packs: self.written,
            bytes: self.bytes_written,
        })
    }
}

/// a. Copies the kept copies of the used blobs of every pack to repack, verified and still
/// sealed, into new packs of about `target` bytes (each written atomically and durably).
fn repack(
    repo: &Repository,
    table: &PackTable,
    target: usize,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<NewPacks> {
    let to_repack: Vec<(&Id, &PackState)> = table.with_action(Action::Repack).collect();
    let total: u64 = to_repack.iter().map(|(_, p)| p.used_bytes).sum();
    progress.phase("repack", Some(total));
    let mut rp = Repacker::new(repo, target);
    for (pid, st) in to_repack {
        cancel.check()?;
        let bytes = repo.backend().load(FileType::Pack, &pid.to_hex())?;
        for b in table.homed_blobs(pid, st) {
            let sealed = verified_blob(repo, pid, &bytes, b)?;
            rp.add(&packed(b), sealed)?;
            progress.inc(b.length as u64);
        }
    }
    rp.finish()
}

/// Blob `b`'s sealed bytes in `bytes` (the file of pack `pid`), once they open (decrypt and
/// match their id): a damaged blob stops prune before it deletes anything.
fn verified_blob<'a>(
    repo: &Repository,
    pid: &Id,
    bytes: &'a [u8],
    b: &IndexBlob,
) -> Result<&'a [u8]> {
    let damaged = |detail: String| {
        Error::damaged(
            format!("pack {}", pid.short()),
            format!(
                "{detail}\n  prune stopped before deleting anything\n  hint: a snapshot still \
                 needs this blob: run `backupctl check --read-data` and forget the snapshots it \
                 names, then prune again"
            ),
        )
    };
    let (start, end) = (b.offset as usize, b.offset as usize + b.length as usize);
    let sealed = bytes.get(start..end).ok_or_else(|| {
        damaged(format!(
            "{} blob {} lies beyond its end ({} bytes)",
            b.tpe.as_str(),
            b.id,
            bytes.len()
        ))
    })?;
    pack::open_blob(repo.key(), &packed(b), sealed).map_err(|e| damaged(e.to_string()))?;
    Ok(sealed)
}

/// b. Writes the new index files, each superseding all of `old_index`; returns their ids and
/// how many files were written.
fn write_index(
    repo: &Repository,
    packs: Vec<IndexPack>,
    old_index: &[Id],
) -> Result<(HashSet<Id>, usize)> {
    let mut files = index::split_into_files(packs, INDEX_MAX_BLOBS);
    let mut written: HashSet<Id> = HashSet::new();
    for f in &mut files {
        f.supersedes = Some(old_index.to_vec());
        written.insert(repo.save_unpacked(FileType::Index, f)?);
    }
    Ok((written, files.len()))
}

/// c. Deletes the old index files (but not one the new index happens to be); returns how many
/// went. Only called once every new index file is durable.
fn delete_old_index(be: &dyn Backend, old_index: &[Id], written: &HashSet<Id>) -> Result<usize> {
    let mut removed = 0;
    for fid in old_index {
        if written.contains(fid) {
            continue;
        }
        match be.remove(FileType::Index, &fid.to_hex()) {
            Ok(()) => removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(removed)
}

/// d. Deletes the packs to delete, repacked and orphaned packs that the index (naming
/// `in_new_index`) no longer names; returns the bytes of the files deleted.
fn delete_packs(
    be: &dyn Backend,
    table: &PackTable,
    in_new_index: &HashSet<Id>,
    progress: &dyn Progress,
) -> Result<u64> {
    let mut freed: u64 = 0;
    for (pid, st) in table.packs_to_delete(in_new_index) {
        match be.remove(FileType::Pack, &pid.to_hex()) {
            Ok(()) => freed += st.size.unwrap_or(0),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        progress.inc(1);
    }
    Ok(freed)
}
