//! Prune's read-only half: [`plan`] reads the index files, the pack listing and the trees of
//! every snapshot, checks that every used blob has a readable copy, and decides; it changes
//! nothing in the repository.

use super::check::{Damage, Inventory};
use super::decide::PackTable;
use super::{cleanup, list_names, packed, refuse, BlobKey, PruneOptions, PruneReport, REFUSE};
use crate::cancel::{CancelToken, Progress};
use crate::engine::walk;
use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::index::{IndexFile, MasterIndex};
use crate::repo::snapshot::Snapshot;
use crate::repo::Repository;
use std::collections::HashSet;
use std::path::PathBuf;

/// The outcome of the read-only half: what to keep, repack and delete.
pub struct PrunePlan {
    /// Every pack and what becomes of it; the copy of each used blob that stays.
    pub(super) table: PackTable,
    pub(super) old_index: Vec<Id>,
    pub(super) stale_temps: Vec<PathBuf>,
    /// Made with `assume_removed`: it must never be executed.
    pub(super) hypothetical: bool,
    pub report: PruneReport,
}

/// The read-only half: loads the index, walks every snapshot, classifies every pack.
/// Replaces the repository's in-memory index with one built from all index files.
pub fn plan(
    repo: &mut Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<PrunePlan> {
    check_options(opts)?;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut inv = Inventory::default();
    progress.phase("index", None);
    let old_index = read_index(repo, &mut inv, cancel)?;
    report.index_files_before = old_index.len();
    progress.phase("packs", None);
    list_packs(repo, &mut inv)?;
    report.packs_before = inv.listed.len();
    report.pack_bytes_before = inv.listed.values().sum();
    *repo.index_mut() = index_for_reading(&inv, &old_index);

    progress.phase("snapshots", None);
    let hypothetical = opts.dry_run && !opts.assume_removed.is_empty();
    let snaps = snapshots_to_keep(repo, opts, hypothetical)?;
    report.snapshots = snaps.len();
    cancel.check()?;
    let used = find_used_blobs(repo, &snaps, &inv)?;
    cancel.check()?;
    let copies = inv
        .check_existing_packs(&used)
        .map_err(|d| damaged_repository(repo, &snaps, d))?;

    let named = named_packs(&inv, &opts.repack)?;
    let mut table = PackTable::decide_packs(&inv, &copies, &named);
    table.decide_repack(opts.max_unused);
    table.tally(opts.pack_size, &mut report);
    let stale_temps = cleanup::stale_temps(repo);
    report.temp_files_removed = stale_temps.len();
    Ok(PrunePlan {
        table,
        old_index,
        stale_temps,
        hypothetical,
        report,
    })
}

/// The packs `repack` names (full ids or unique prefixes of the packs the index names or
/// that exist); an id that names none, or several, is refused.
fn named_packs(inv: &Inventory, repack: &[String]) -> Result<HashSet<Id>> {
    let mut out = HashSet::new();
    for want in repack {
        let want_l = want.to_ascii_lowercase();
        let mut hits: Vec<Id> = inv
            .indexed
            .keys()
            .chain(inv.listed.keys())
            .filter(|id| id.to_hex().starts_with(&want_l))
            .copied()
            .collect();
        hits.sort();
        hits.dedup();
        match hits.as_slice() {
            [one] => {
                out.insert(*one);
            }
            [] => {
                return Err(Error::Input(format!(
                    "--repack {want}: no pack of this repository has that id; nothing was \
                     changed\n  hint: `backupctl check --read-data` names the damaged packs \
                     (\"pack:\" lines)"
                )))
            }
            _ => {
                return Err(Error::Input(format!(
                    "--repack {want}: {} packs start with it; nothing was changed\n  hint: \
                     give more of the id (`backupctl check` prints them whole)",
                    hits.len()
                )))
            }
        }
    }
    Ok(out)
}

/// Refuses a `max_unused` outside 0..=100 (or NaN) and a pack size of zero.
fn check_options(opts: &PruneOptions) -> Result<()> {
    if !(0.0..=100.0).contains(&opts.max_unused) {
        return Err(Error::Input(format!(
            "invalid --max-unused {}: give a percentage from 0 to 100",
            opts.max_unused
        )));
    }
    if opts.pack_size == 0 {
        return Err(Error::Input(
            "the pack size for prune must be positive".into(),
        ));
    }
    Ok(())
}

/// Reads every index file into `inv`; returns their ids. One that cannot be read stops prune:
/// its packs would look unreferenced.
fn read_index(repo: &Repository, inv: &mut Inventory, cancel: &CancelToken) -> Result<Vec<Id>> {
    let old_index = repo.list_ids(FileType::Index)?;
    for fid in &old_index {
        cancel.check()?;
        let f: IndexFile = repo
            .load_unpacked(FileType::Index, fid)
            .map_err(|e| refuse(format!("index file {}", fid.short()), e))?;
        inv.add_index_file(fid, f)?;
    }
    Ok(old_index)
}

/// Lists every pack file into `inv`.
fn list_packs(repo: &Repository, inv: &mut Inventory) -> Result<()> {
    for (name, size) in repo.backend().list(FileType::Pack)? {
        inv.add_pack_file(&name, size);
    }
    Ok(())
}

/// The in-memory index for reading trees: existing packs first, so that a blob with a copy in
/// an existing pack is read from there.
fn index_for_reading(inv: &Inventory, old_index: &[Id]) -> MasterIndex {
    let mut mi = MasterIndex::new();
    for pass_existing in [true, false] {
        for (pid, blobs) in &inv.indexed {
            if inv.listed.contains_key(pid) == pass_existing {
                mi.add_pack(*pid, blobs.iter().map(packed));
            }
        }
    }
    mi.files = old_index.to_vec();
    mi
}

/// The snapshots whose blobs stay: all of them, or for a hypothetical plan all but
/// `assume_removed`.
fn snapshots_to_keep(
    repo: &Repository,
    opts: &PruneOptions,
    hypothetical: bool,
) -> Result<Vec<(Id, Snapshot)>> {
    let mut snaps = repo
        .list_snapshots()
        .map_err(|e| refuse("the snapshots".into(), e))?;
    if hypothetical {
        snaps.retain(|(id, _)| !opts.assume_removed.contains(id));
    }
    Ok(snaps)
}

/// Every blob that any of `snaps` needs (a walk of all their trees).
fn find_used_blobs(
    repo: &Repository,
    snaps: &[(Id, Snapshot)],
    inv: &Inventory,
) -> Result<HashSet<BlobKey>> {
    match walk::referenced_blobs(repo, snaps.iter().map(|(_, s)| s.tree)) {
        Ok(u) => Ok(u),
        Err(e)
            if matches!(&e, Error::Damaged { .. })
                || matches!(&e, Error::Backend(b) if b.is_not_found()) =>
        {
            Err(unreadable_trees(repo, snaps, inv, e))
        }
        Err(e) => Err(e),
    }
}

/// The error when snapshot trees cannot be read: which snapshots (a walk per snapshot), and the
/// packs the index names that do not exist (the likely cause).
fn unreadable_trees(
    repo: &Repository,
    snaps: &[(Id, Snapshot)],
    inv: &Inventory,
    e: Error,
) -> Error {
    let bad: Vec<String> = snaps
        .iter()
        .filter(|(_, s)| walk::referenced_blobs(repo, [s.tree]).is_err())
        .map(|(id, _)| id.short())
        .collect();
    let missing: Vec<String> = inv.missing_packs().map(|p| p.short()).collect();
    let mut detail = format!("their trees cannot be read: {e}");
    if !missing.is_empty() {
        detail.push_str(&format!(
            "\n  the index names {} pack(s) that do not exist: {}",
            missing.len(),
            list_names(missing)
        ));
    }
    Error::Damaged {
        what: format!("snapshot(s) {}", list_names(bad)),
        detail: format!("{detail}\n  {REFUSE}"),
    }
}

/// The error refusing to prune a damaged repository, naming the snapshots that need the blobs
/// without a readable copy.
fn damaged_repository(repo: &Repository, snaps: &[(Id, Snapshot)], d: Damage) -> Error {
    let affected = if d.missing_blobs.is_empty() {
        String::new()
    } else {
        let s = snapshots_needing(repo, snaps, &d.missing_blobs);
        format!("\n  snapshots that need them: {}", list_names(s))
    };
    d.into_error(&repo.location(), &affected)
}

/// Which snapshots reference any of `blobs` (a walk per snapshot; for error messages only).
fn snapshots_needing(
    repo: &Repository,
    snaps: &[(Id, Snapshot)],
    blobs: &HashSet<BlobKey>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (id, s) in snaps {
        let hit = match walk::referenced_blobs(repo, [s.tree]) {
            Ok(set) => set.iter().any(|b| blobs.contains(b)),
            Err(_) => true,
        };
        if hit {
            out.push(id.short());
        }
    }
    out
}
