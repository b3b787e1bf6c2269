//! Prune: repack partly used packs, write the new index, then delete what no snapshot needs.
//!
//! Prune is the one operation that destroys data, so it works in two halves:
//!
//! 1. [`plan`] reads everything and changes nothing: every index file (one that cannot be read
//!    stops prune: its packs would look unreferenced), every pack's name and size, and the trees
//!    of ALL snapshots. If a blob a snapshot needs is missing (not in any index, or only in packs
//!    that do not exist or whose size contradicts the index) prune stops with an error naming it:
//!    it never deletes anything from a damaged repository. Then every pack is classified:
//!    fully used (keep), unused (delete), partly used (repack when the repository's unused share
//!    would exceed `max_unused` percent; tree packs, mixed packs and packs holding duplicate copies
//!    are always repacked), not in any index (an orphan left by a crashed writer: delete), or named
//!    by the index but absent (dropped from the new index).
//! 2. [`execute`] makes the changes in an order where a crash (kill -9) at any instant leaves
//!    every snapshot complete and the repository consistent for restic:
//!    a. copy the used blobs of repacked packs, verified and still sealed, into new packs (each
//!    written atomically and durably); a crash leaves unreferenced packs, which are harmless and
//!    deleted by the next prune;
//!    b. write new index files covering every kept pack and every new pack; while both the old
//!    and the new index files exist they describe the same packs identically, and every pack
//!    they name still exists;
//!    c. only when all new index files are durable, delete the old index files;
//!    d. only then delete the packs no index names any more (unused, repacked, orphaned);
//!    e. abort the repository's unfinished multipart uploads older than `STALE_UPLOAD_AGE`
//!    (S3: left by a run whose endpoint died, so that its own abort failed too).
//!
//! The caller holds the exclusive repository lock for the whole run.

use crate::cancel::{CancelToken, Progress};
use crate::engine::walk;
use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::crypto::OVERHEAD;
use crate::repo::id::Id;
use crate::repo::index::{self, IndexBlob, IndexFile, IndexPack, MasterIndex};
use crate::repo::pack::{self, BlobType, PackWriter, PackedBlob};
use crate::repo::snapshot::Snapshot;
use crate::repo::Repository;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Target size of the packs prune writes (restic's default).
pub const DEFAULT_PACK_SIZE: usize = 16 << 20;
/// Blobs per new index file (restic keeps index files below about this many entries).
pub const INDEX_MAX_BLOBS: usize = 50_000;
/// Our temp files older than this are leftovers of a crash and are removed.
pub const TEMP_MAX_AGE: Duration = Duration::from_secs(3600);

/// Unfinished multipart uploads of the repository's files older than this are aborted by
/// prune (a backup uploads a pack in seconds to minutes; prune holds the exclusive lock).
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(3600);

/// How many names an error or a report lists before it says "and N more".
const LIST_MAX: usize = 10;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Tolerated share of unused bytes in the repository after pruning, in percent (0..=100).
    /// 0 repacks every partly used pack.
    pub max_unused: f64,
    /// Compute and report everything, change nothing.
    pub dry_run: bool,
    /// Target size of new packs.
    pub pack_size: usize,
    /// For a dry run only: plan as if these snapshots were already gone (`forget --dry-run
    /// --prune`). Ignored unless `dry_run` is set.
    pub assume_removed: Vec<Id>,
    /// Abort the repository's unfinished multipart uploads started longer ago than this
    /// (`STALE_UPLOAD_AGE`; tests pass zero).
    pub stale_upload_age: Duration,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 5.0,
            dry_run: false,
            pack_size: DEFAULT_PACK_SIZE,
            assume_removed: Vec::new(),
            stale_upload_age: STALE_UPLOAD_AGE,
        }
    }
}

/// What prune did (or, with `dry_run`, would do). Byte counts are of stored (sealed) blob bytes
/// unless named otherwise.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: usize,
    /// Pack files in the repository before, and their total size.
    pub packs_before: usize,
    pub pack_bytes_before: u64,
    pub blobs_used: u64,
    pub bytes_used: u64,
    /// Blob copies no snapshot needs (including extra copies of used blobs).
    pub blobs_unused: u64,
    pub bytes_unused: u64,
    /// Extra copies of used blobs (part of the unused counts).
    pub blobs_duplicate: u64,
    pub packs_kept: usize,
    /// Packs whose blobs no snapshot needs.
    pub packs_deleted: usize,
    /// Packs that no index names (left by an interrupted backup or prune).
    pub packs_orphaned: usize,
    pub packs_repacked: usize,
    /// New packs written by repacking (estimated for a dry run).
    pub packs_written: usize,
    /// Packs named by the index that do not exist and hold nothing a snapshot needs.
    pub index_packs_missing: usize,
    /// Blob copies removed from the repository (not counting blobs inside orphaned packs).
    pub blobs_removed: u64,
    /// Used blob bytes copied into new packs.
    pub bytes_repacked: u64,
    /// File bytes freed: deleted and repacked packs minus the new packs (estimated for a dry run).
    pub bytes_freed: u64,
    /// Unused bytes left in kept packs afterwards.
    pub bytes_unused_after: u64,
    pub index_files_before: usize,
    pub index_files_written: usize,
    pub index_files_removed: usize,
    /// Our stale temp files (older than an hour) removed from the repository directories.
    pub temp_files_removed: usize,
    /// Unfinished multipart uploads of the repository's files (left by a run whose endpoint
    /// died, so that its abort failed too) older than `stale_upload_age`, aborted.
    pub uploads_aborted: usize,
    pub deleted: Vec<Id>,
    pub repacked: Vec<Id>,
    pub orphaned: Vec<Id>,
    pub missing: Vec<Id>,
}

impl PruneReport {
    /// True when prune has nothing to change in the packs and index.
    pub fn nothing_to_do(&self) -> bool {
        self.deleted.is_empty()
            && self.repacked.is_empty()
            && self.orphaned.is_empty()
            && self.missing.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    Repack,
    Delete,
    Orphan,
    Missing,
}

#[derive(Debug)]
struct PackState {
    /// Size of the file; `None` when the index names it but it does not exist.
    size: Option<u64>,
    /// The index's entries, sorted by offset; `None` for a pack no index names.
    blobs: Option<Vec<IndexBlob>>,
    used_blobs: u64,
    used_bytes: u64,
    unused_blobs: u64,
    unused_bytes: u64,
    /// Holds an extra copy of a blob whose kept copy is elsewhere (or twice in this pack).
    duplicates: bool,
    has_tree: bool,
    has_data: bool,
    action: Action,
}

/// The outcome of the read-only half: what to keep, repack and delete.
pub struct PrunePlan {
    packs: BTreeMap<Id, PackState>,
    /// For each used blob, the copy that stays: (pack, offset).
    home: HashMap<(Id, BlobType), (Id, u32)>,
    old_index: Vec<Id>,
    stale_temps: Vec<PathBuf>,
    /// Made with `assume_removed`: it must never be executed.
    hypothetical: bool,
    pub report: PruneReport,
}

fn packed(b: &IndexBlob) -> PackedBlob {
    PackedBlob {
        id: b.id,
        tpe: b.tpe,
        offset: b.offset,
        length: b.length,
        uncompressed_length: b.uncompressed_length,
    }
}

/// The size a pack must have if the index lists all its blobs: the blobs, the sealed header
/// (one entry per blob: type, length, [uncompressed length,] id) and the 4-byte header length.
fn expected_pack_size(blobs: &[IndexBlob]) -> u64 {
    let entries: u64 = blobs
        .iter()
        .map(|b| {
            if b.uncompressed_length.is_some() {
                1 + 4 + 4 + 32
            } else {
                1 + 4 + 32
            }
        })
        .sum();
    let data: u64 = blobs.iter().map(|b| b.length as u64).sum();
    data + entries + OVERHEAD as u64 + 4
}

fn list_names(ids: impl IntoIterator<Item = String>) -> String {
    let all: Vec<String> = ids.into_iter().collect();
    let mut s = all
        .iter()
        .take(LIST_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > LIST_MAX {
        s.push_str(&format!(" and {} more", all.len() - LIST_MAX));
    }
    s
}

const REFUSE: &str = "prune deleted nothing: it never deletes data from a damaged repository";

/// Wraps an error met while reading what prune needs to know.
fn refuse(what: String, e: Error) -> Error {
    match e {
        Error::Damaged { what: w, detail } => Error::Damaged {
            what: w,
            detail: format!("{detail} (while reading {what})\n  {REFUSE}"),
        },
        Error::Backend(be) if be.is_not_found() => Error::Damaged {
            what,
            detail: format!("{be}\n  {REFUSE}"),
        },
        other => other,
    }
}

/// Every stale temp file of ours in the repository's directories (local repositories only).
fn find_stale_temps(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    for d in ["keys", "snapshots", "index", "locks", "data"] {
        dirs.push(root.join(d));
    }
    if let Ok(rd) = std::fs::read_dir(root.join("data")) {
        let mut subs: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        subs.sort();
        dirs.extend(subs);
    }
    let now = SystemTime::now();
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !crate::fsutil::is_temp_name(&name) {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            let old = md
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .map(|age| age > TEMP_MAX_AGE)
                .unwrap_or(false);
            if md.is_file() && old {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Which snapshots reference any of `blobs` (a walk per snapshot; for error messages only).
fn snapshots_needing(
    repo: &Repository,
    snaps: &[(Id, Snapshot)],
    blobs: &HashSet<(Id, BlobType)>,
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

/// The read-only half: loads the index, walks every snapshot, classifies every pack.
/// Replaces the repository's in-memory index with one built from all index files.
pub fn plan(
    repo: &mut Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<PrunePlan> {
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
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };

    // 1. Every index file. Packs listed twice (an interrupted prune leaves old and new index
    //    files side by side) must be listed identically.
    progress.phase("index", None);
    let old_index = repo.list_ids(FileType::Index)?;
    report.index_files_before = old_index.len();
    let mut indexed: BTreeMap<Id, Vec<IndexBlob>> = BTreeMap::new();
    for fid in &old_index {
        cancel.check()?;
        let f: IndexFile = repo
            .load_unpacked(FileType::Index, fid)
            .map_err(|e| refuse(format!("index file {}", fid.short()), e))?;
        for p in f.packs {
            let mut blobs = p.blobs;
            blobs.sort_by_key(|a| (a.offset, a.id, a.tpe));
            match indexed.get(&p.id) {
                None => {
                    indexed.insert(p.id, blobs);
                }
                Some(prev) if *prev == blobs => {}
                Some(_) => {
                    return Err(Error::damaged(
                        format!("the index of pack {}", p.id.short()),
                        format!(
                            "index file {} lists other blobs for it than an earlier index file\n  {REFUSE}",
                            fid.short()
                        ),
                    ))
                }
            }
        }
    }

    // 2. Every pack file. Names that are not our lower-case hex are not ours to touch.
    progress.phase("packs", None);
    let mut listed: HashMap<Id, u64> = HashMap::new();
    for (name, size) in repo.backend().list(FileType::Pack)? {
        if let Some(id) = Id::parse(&name) {
            if id.to_hex() == name {
                listed.insert(id, size);
            }
        }
    }
    report.packs_before = listed.len();
    report.pack_bytes_before = listed.values().sum();

    // The in-memory index for reading trees: existing packs first, so that a blob with a copy in
    // an existing pack is read from there.
    let mut mi = MasterIndex::new();
    for pass_existing in [true, false] {
        for (pid, blobs) in &indexed {
            if listed.contains_key(pid) == pass_existing {
                mi.add_pack(*pid, blobs.iter().map(packed));
            }
        }
    }
    mi.files = old_index.clone();
    *repo.index_mut() = mi;

    // 3. Every blob that any snapshot needs.
    progress.phase("snapshots", None);
    let hypothetical = opts.dry_run && !opts.assume_removed.is_empty();
    let mut snaps = repo
        .list_snapshots()
        .map_err(|e| refuse("the snapshots".into(), e))?;
    if hypothetical {
        snaps.retain(|(id, _)| !opts.assume_removed.contains(id));
    }
    report.snapshots = snaps.len();
    cancel.check()?;
    let used = match walk::referenced_blobs(repo, snaps.iter().map(|(_, s)| s.tree)) {
        Ok(u) => u,
        Err(e)
            if matches!(&e, Error::Damaged { .. })
                || matches!(&e, Error::Backend(b) if b.is_not_found()) =>
        {
            let bad: Vec<String> = snaps
                .iter()
                .filter(|(_, s)| walk::referenced_blobs(repo, [s.tree]).is_err())
                .map(|(id, _)| id.short())
                .collect();
            let missing: Vec<String> = indexed
                .keys()
                .filter(|p| !listed.contains_key(p))
                .map(|p| p.short())
                .collect();
            let mut detail = format!("their trees cannot be read: {e}");
            if !missing.is_empty() {
                detail.push_str(&format!(
                    "\n  the index names {} pack(s) that do not exist: {}",
                    missing.len(),
                    list_names(missing)
                ));
            }
            return Err(Error::Damaged {
                what: format!("snapshot(s) {}", list_names(bad)),
                detail: format!("{detail}\n  {REFUSE}"),
            });
        }
        Err(e) => return Err(e),
    };
    cancel.check()?;

    // 4. Where each blob has copies, in existing packs whose size agrees with the index.
    let mut bad_size: BTreeMap<Id, (u64, u64)> = BTreeMap::new();
    for (pid, blobs) in &indexed {
        if let Some(&actual) = listed.get(pid) {
            let want = expected_pack_size(blobs);
            if want != actual {
                bad_size.insert(*pid, (want, actual));
            }
        }
    }
    let mut copies: HashMap<(Id, BlobType), Vec<Id>> = HashMap::new();
    for (pid, blobs) in &indexed {
        if !listed.contains_key(pid) || bad_size.contains_key(pid) {
            continue;
        }
        for b in blobs {
            let v = copies.entry((b.id, b.tpe)).or_default();
            if v.last() != Some(pid) {
                v.push(*pid);
            }
        }
    }
    let mut problems: Vec<String> = Vec::new();
    let mut missing_blobs: HashSet<(Id, BlobType)> = HashSet::new();
    let mut sorted_used: Vec<&(Id, BlobType)> = used.iter().collect();
    sorted_used.sort();
    for b in &sorted_used {
        if copies.contains_key(b) {
            continue;
        }
        missing_blobs.insert(**b);
        let holders: Vec<String> = indexed
            .iter()
            .filter(|(_, blobs)| blobs.iter().any(|x| (x.id, x.tpe) == **b))
            .map(|(p, _)| {
                if !listed.contains_key(p) {
                    format!("pack {} is missing", p.short())
                } else {
                    let (want, actual) = bad_size[p];
                    format!(
                        "pack {} has {actual} bytes but its index entries need {want}",
                        p.short()
                    )
                }
            })
            .collect();
        problems.push(if holders.is_empty() {
            format!("{} blob {} is in no index", b.1.as_str(), b.0)
        } else {
            format!("{} blob {}: {}", b.1.as_str(), b.0, holders.join("; "))
        });
    }
    for (pid, (want, actual)) in &bad_size {
        let blobs = &indexed[pid];
        if blobs.iter().any(|x| used.contains(&(x.id, x.tpe))) {
            problems.push(format!(
                "pack {} has {actual} bytes but its index entries need {want}, and it holds blobs in use",
                pid.short()
            ));
        }
    }
    if !problems.is_empty() {
        let affected = if missing_blobs.is_empty() {
            String::new()
        } else {
            let s = snapshots_needing(repo, &snaps, &missing_blobs);
            format!("\n  snapshots that need them: {}", list_names(s))
        };
        let n = problems.len();
        let shown: Vec<String> = problems.into_iter().take(LIST_MAX).collect();
        return Err(Error::Damaged {
            what: format!("the repository at {}", repo.location()),
            detail: format!(
                "{n} problem(s) with data that snapshots need:\n    {}{}{affected}\n  {REFUSE}",
                shown.join("\n    "),
                if n > LIST_MAX {
                    format!("\n    and {} more", n - LIST_MAX)
                } else {
                    String::new()
                }
            ),
        });
    }

    // 5. Choose the one copy of each used blob that stays. Prefer packs that must be kept anyway
    //    (they hold a blob found nowhere else), then packs with the largest used share.
    let mut pinned: HashMap<Id, u64> = HashMap::new();
    let mut used_entries: HashMap<Id, u64> = HashMap::new();
    for b in &used {
        let packs = &copies[b];
        if packs.len() == 1 {
            *pinned.entry(packs[0]).or_default() += 1;
        }
    }
    for (pid, blobs) in &indexed {
        let n = blobs
            .iter()
            .filter(|x| used.contains(&(x.id, x.tpe)))
            .count() as u64;
        used_entries.insert(*pid, n);
    }
    let better = |a: &Id, b: &Id| -> bool {
        let (pa, pb) = (pinned.contains_key(a), pinned.contains_key(b));
        if pa != pb {
            return pa;
        }
        let (na, nb) = (indexed[a].len() as u128, indexed[b].len() as u128);
        let (ua, ub) = (used_entries[a] as u128, used_entries[b] as u128);
        if ua * nb != ub * na {
            return ua * nb > ub * na;
        }
        a < b
    };
    let mut home: HashMap<(Id, BlobType), (Id, u32)> = HashMap::new();
    for b in &sorted_used {
        let packs = &copies[b];
        let mut best = packs[0];
        for p in &packs[1..] {
            if better(p, &best) {
                best = *p;
            }
        }
        let offset = indexed[&best]
            .iter()
            .find(|x| (x.id, x.tpe) == **b)
            .map(|x| x.offset)
            .expect("the chosen pack holds the blob");
        home.insert(**b, (best, offset));
    }

    // 6. Classify every pack.
    let mut packs: BTreeMap<Id, PackState> = BTreeMap::new();
    for (pid, blobs) in &indexed {
        let mut st = PackState {
            size: listed.get(pid).copied(),
            blobs: Some(blobs.clone()),
            used_blobs: 0,
            used_bytes: 0,
            unused_blobs: 0,
            unused_bytes: 0,
            duplicates: false,
            has_tree: false,
            has_data: false,
            action: Action::Keep,
        };
        for b in blobs {
            match b.tpe {
                BlobType::Tree => st.has_tree = true,
                BlobType::Data => st.has_data = true,
            }
            let key = (b.id, b.tpe);
            if home.get(&key) == Some(&(*pid, b.offset)) {
                st.used_blobs += 1;
                st.used_bytes += b.length as u64;
            } else {
                st.unused_blobs += 1;
                st.unused_bytes += b.length as u64;
                if home.contains_key(&key) {
                    st.duplicates = true;
                }
            }
        }
        st.action = if st.size.is_none() {
            Action::Missing
        } else if st.used_blobs == 0 {
            Action::Delete
        } else if st.unused_blobs == 0 && !(st.has_tree && st.has_data) {
            Action::Keep
        } else {
            Action::Repack // a candidate; decided below
        };
        packs.insert(*pid, st);
    }
    for (pid, size) in &listed {
        if !indexed.contains_key(pid) {
            packs.insert(
                *pid,
                PackState {
                    size: Some(*size),
                    blobs: None,
                    used_blobs: 0,
                    used_bytes: 0,
                    unused_blobs: 0,
                    unused_bytes: 0,
                    duplicates: false,
                    has_tree: false,
                    has_data: false,
                    action: Action::Orphan,
                },
            );
        }
    }

    // 7. Decide which candidates to repack: tree packs, mixed packs and packs with duplicates
    //    always; data packs with the largest unused share first, until the unused bytes left are
    //    within `max_unused` percent of the total.
    let existing = || {
        packs
            .values()
            .filter(|p| p.blobs.is_some() && p.size.is_some())
    };
    let total_used: u64 = existing().map(|p| p.used_bytes).sum();
    let total_unused: u64 = existing().map(|p| p.unused_bytes).sum();
    let mut removed_unused: u64 = existing()
        .filter(|p| p.action == Action::Delete)
        .map(|p| p.unused_bytes)
        .sum();
    let max_unused_after = if opts.max_unused >= 100.0 {
        u64::MAX
    } else {
        (opts.max_unused / (100.0 - opts.max_unused) * total_used as f64) as u64
    };
    let forced = |p: &PackState| p.has_tree || p.duplicates;
    let mut candidates: Vec<Id> = packs
        .iter()
        .filter(|(_, p)| p.action == Action::Repack)
        .map(|(id, _)| *id)
        .collect();
    candidates.sort_by(|a, b| {
        let (pa, pb) = (&packs[a], &packs[b]);
        forced(pb)
            .cmp(&forced(pa))
            .then_with(|| {
                // larger unused/used ratio first
                let l = pa.unused_bytes as u128 * pb.used_bytes as u128;
                let r = pb.unused_bytes as u128 * pa.used_bytes as u128;
                r.cmp(&l)
            })
            .then(a.cmp(b))
    });
    for id in candidates {
        let p = packs.get_mut(&id).expect("candidate exists");
        let left = total_unused - removed_unused;
        if forced(p) || left >= max_unused_after {
            p.action = Action::Repack;
            removed_unused += p.unused_bytes;
        } else {
            p.action = Action::Keep;
        }
    }

    // 8. The report.
    for (id, p) in &packs {
        match p.action {
            Action::Keep => report.packs_kept += 1,
            Action::Delete => report.deleted.push(*id),
            Action::Repack => report.repacked.push(*id),
            Action::Orphan => report.orphaned.push(*id),
            Action::Missing => report.missing.push(*id),
        }
        if p.blobs.is_some() && p.size.is_some() {
            report.blobs_used += p.used_blobs;
            report.bytes_used += p.used_bytes;
            report.blobs_unused += p.unused_blobs;
            report.bytes_unused += p.unused_bytes;
        }
        if let Some(blobs) = &p.blobs {
            if p.size.is_some() {
                report.blobs_duplicate += blobs
                    .iter()
                    .filter(|b| {
                        home.get(&(b.id, b.tpe))
                            .map(|h| *h != (*id, b.offset))
                            .unwrap_or(false)
                    })
                    .count() as u64;
            }
        }
        match p.action {
            Action::Delete => report.blobs_removed += p.unused_blobs,
            Action::Repack => {
                report.blobs_removed += p.unused_blobs;
                report.bytes_repacked += p.used_bytes;
            }
            Action::Keep => report.bytes_unused_after += p.unused_bytes,
            _ => {}
        }
    }
    report.packs_deleted = report.deleted.len();
    report.packs_repacked = report.repacked.len();
    report.packs_orphaned = report.orphaned.len();
    report.index_packs_missing = report.missing.len();
    // Estimates for the new packs: one per pack_size of each blob type, plus headers.
    let mut new_bytes: HashMap<BlobType, (u64, u64)> = HashMap::new();
    for (pid, p) in packs.iter().filter(|(_, p)| p.action == Action::Repack) {
        for b in p.blobs.as_deref().unwrap_or(&[]) {
            if home.get(&(b.id, b.tpe)) == Some(&(*pid, b.offset)) {
                let e = new_bytes.entry(b.tpe).or_default();
                e.0 += b.length as u64;
                e.1 += expected_pack_size(std::slice::from_ref(b)) - OVERHEAD as u64 - 4;
            }
        }
    }
    let mut est_new_size = 0u64;
    for (bytes, with_entries) in new_bytes.values() {
        let n = bytes.div_ceil(opts.pack_size as u64).max(1);
        report.packs_written += n as usize;
        est_new_size += with_entries + n * (OVERHEAD as u64 + 4);
    }
    let freed_files: u64 = packs
        .values()
        .filter(|p| matches!(p.action, Action::Delete | Action::Repack | Action::Orphan))
        .filter_map(|p| p.size)
        .sum();
    report.bytes_freed = freed_files.saturating_sub(est_new_size);

    let stale_temps = repo
        .backend()
        .local_path()
        .map(find_stale_temps)
        .unwrap_or_default();
    report.temp_files_removed = stale_temps.len();

    Ok(PrunePlan {
        packs,
        home,
        old_index,
        stale_temps,
        hypothetical,
        report,
    })
}

/// Collects repacked blobs into new packs, one writer per blob type.
struct Repacker<'a> {
    repo: &'a Repository,
    target: usize,
    writers: [PackWriter; 2],
    written: Vec<IndexPack>,
    bytes_written: u64,
}

impl Repacker<'_> {
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
}

/// The changing half (see the module documentation for the order and why it is crash-safe).
pub fn execute(
    repo: &mut Repository,
    plan: PrunePlan,
    opts: &PruneOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<PruneReport> {
    let PrunePlan {
        packs,
        home,
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
    let be = repo.backend().clone();

    // Only orphans to delete: the index stays as it is.
    let index_changes =
        !(report.deleted.is_empty() && report.repacked.is_empty() && report.missing.is_empty());
    // Packs the new index names (they are never deleted), and the bytes of the new packs.
    let mut in_new_index: HashSet<Id> = HashSet::new();
    let mut new_bytes: u64 = 0;
    if index_changes {
        // a. Repack.
        let repack_ids: Vec<Id> = packs
            .iter()
            .filter(|(_, p)| p.action == Action::Repack)
            .map(|(id, _)| *id)
            .collect();
        let total: u64 = repack_ids.iter().map(|id| packs[id].used_bytes).sum();
        progress.phase("repack", Some(total));
        let mut rp = Repacker {
            repo,
            target: opts.pack_size,
            writers: [PackWriter::new(), PackWriter::new()],
            written: Vec::new(),
            bytes_written: 0,
        };
        for pid in &repack_ids {
            cancel.check()?;
            let st = &packs[pid];
            let bytes = be.load(FileType::Pack, &pid.to_hex())?;
            for b in st.blobs.as_deref().unwrap_or(&[]) {
                if home.get(&(b.id, b.tpe)) != Some(&(*pid, b.offset)) {
                    continue;
                }
                let (start, end) = (b.offset as usize, b.offset as usize + b.length as usize);
                let pb = packed(b);
                let sealed = bytes.get(start..end).ok_or_else(|| {
                    Error::damaged(
                        format!("pack {}", pid.short()),
                        format!(
                            "{} blob {} lies beyond its end ({} bytes)\n  prune stopped before deleting anything",
                            b.tpe.as_str(),
                            b.id,
                            bytes.len()
                        ),
                    )
                })?;
                pack::open_blob(repo.key(), &pb, sealed).map_err(|e| {
                    Error::damaged(
                        format!("pack {}", pid.short()),
                        format!("{e}\n  prune stopped before deleting anything"),
                    )
                })?;
                rp.add(&pb, sealed)?;
                progress.inc(b.length as u64);
            }
        }
        rp.flush(0)?;
        rp.flush(1)?;
        let new_packs = rp.written;
        new_bytes = rp.bytes_written;
        report.packs_written = new_packs.len();

        // b. The new index: every kept pack as the index listed it, and every new pack.
        let mut index_packs: Vec<IndexPack> = Vec::new();
        for (pid, st) in &packs {
            if st.action == Action::Keep {
                in_new_index.insert(*pid);
                index_packs.push(IndexPack {
                    id: *pid,
                    blobs: st.blobs.clone().expect("kept packs are indexed"),
                });
            }
        }
        for p in new_packs {
            if in_new_index.insert(p.id) {
                index_packs.push(p);
            }
        }
        // Never leave a snapshot behind: every used blob must be in the new index.
        let covered: HashSet<(Id, BlobType)> = index_packs
            .iter()
            .flat_map(|p| p.blobs.iter().map(|b| (b.id, b.tpe)))
            .collect();
        if let Some(b) = home.keys().find(|b| !covered.contains(b)) {
            return Err(Error::Input(format!(
                "internal error: the new index would not contain {} blob {}; prune stopped before \
                 deleting anything (new packs stay as unreferenced files)\n  hint: please report this bug",
                b.1.as_str(),
                b.0
            )));
        }
        cancel.check()?;
        progress.phase("index", None);
        let mut files = index::split_into_files(index_packs, INDEX_MAX_BLOBS);
        let mut new_index: HashSet<Id> = HashSet::new();
        for f in &mut files {
            f.supersedes = Some(old_index.clone());
            new_index.insert(repo.save_unpacked(FileType::Index, f)?);
        }
        report.index_files_written = files.len();

        // From here on every step only removes what the new index no longer names; an interrupt
        // would be safe, but finishing is quick, so the cancel token is not consulted any more.
        // c. Old index files.
        progress.phase("delete", None);
        for fid in &old_index {
            if new_index.contains(fid) {
                continue;
            }
            match be.remove(FileType::Index, &fid.to_hex()) {
                Ok(()) => report.index_files_removed += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    // d. Packs no index names now.
    if !report.nothing_to_do() {
        progress.phase("delete", None);
        let mut freed: u64 = 0;
        for (pid, st) in &packs {
            if !matches!(st.action, Action::Delete | Action::Repack | Action::Orphan)
                || in_new_index.contains(pid)
            {
                continue;
            }
            match be.remove(FileType::Pack, &pid.to_hex()) {
                Ok(()) => freed += st.size.unwrap_or(0),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
            progress.inc(1);
        }
        report.bytes_freed = freed.saturating_sub(new_bytes);
    }

    // Stale temp files: another writer's in-progress temp file is never an hour old (packs are
    // written in seconds), so these are leftovers of crashes.
    report.temp_files_removed = 0;
    for p in &stale_temps {
        match std::fs::remove_file(p) {
            Ok(()) => report.temp_files_removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => progress.note(&format!(
                "warning: could not remove the stale temp file {}: {e}",
                p.display()
            )),
        }
    }

    report.uploads_aborted = stale_uploads(repo, opts, progress, false);

    repo.load_index()?;
    Ok(report)
}

/// Aborts (or with `dry_run` counts) the repository's stale unfinished multipart uploads. A
/// failure is a warning: they take space but harm nothing, and the next prune tries again.
fn stale_uploads(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
    dry_run: bool,
) -> usize {
    match repo
        .backend()
        .abort_stale_uploads(opts.stale_upload_age, dry_run)
    {
        Ok(n) => n,
        Err(e) => {
            progress.note(&format!(
                "warning: could not abort the unfinished multipart uploads: {e}\n  hint: they are invisible and harmless but may take space; the next prune tries again, or abort them with your storage provider's tools (Garage: `garage bucket cleanup-incomplete-uploads`)"
            ));
            0
        }
    }
}

/// Plans and (unless `opts.dry_run`) executes a prune. The caller holds the exclusive lock.
pub fn prune(
    repo: &mut Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<PruneReport> {
    let mut p = plan(repo, opts, progress, cancel)?;
    if opts.dry_run {
        p.report.uploads_aborted = stale_uploads(repo, opts, progress, true);
        return Ok(p.report);
    }
    execute(repo, p, opts, progress, cancel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::NoProgress;
    use crate::repo::backend::{Backend, LocalBackend};
    use crate::repo::pack::{seal_blob, Compression};
    use crate::repo::tree::{kind, Node, Tree};
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    struct T {
        _dir: tempfile::TempDir,
        repo: Repository,
    }

    fn new_repo() -> T {
        let dir = tempfile::tempdir().unwrap();
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("r")));
        let repo = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        T { _dir: dir, repo }
    }

    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        rand::rngs::StdRng::seed_from_u64(seed).fill(&mut v[..]);
        v
    }

    /// Writes a pack of `blobs` (optionally also into a new index file); returns its id.
    fn write_pack(t: &T, blobs: &[(BlobType, &[u8])], index: bool) -> Id {
        let mut w = PackWriter::new();
        for (tpe, plain) in blobs {
            w.add(&seal_blob(
                t.repo.key(),
                *tpe,
                Id::hash(plain),
                plain,
                Compression::default(),
            ));
        }
        let (b, id, entries) = w.finish(t.repo.key());
        t.repo.save_pack(&id, &b).unwrap();
        if index {
            let f = IndexFile {
                supersedes: None,
                packs: vec![IndexPack::from_packed(id, &entries)],
            };
            t.repo.save_unpacked(FileType::Index, &f).unwrap();
        }
        id
    }

    fn tree(files: &[(&str, &[&[u8]])]) -> Vec<u8> {
        let mut t = Tree::default();
        for (name, chunks) in files {
            let mut n = Node::new(*name, kind::FILE);
            n.content = Some(chunks.iter().map(|c| Id::hash(c)).collect());
            t.nodes.push(n);
        }
        t.sort();
        t.serialize()
    }

    fn snapshot(t: &T, tree: &[u8]) -> Id {
        let s = Snapshot {
            time: chrono::Local::now().fixed_offset(),
            parent: None,
            tree: Id::hash(tree),
            paths: vec!["/x".into()],
            hostname: "h".into(),
            username: String::new(),
            uid: 0,
            gid: 0,
            excludes: vec![],
            tags: vec![],
            original: None,
            program_version: String::new(),
            summary: None,
        };
        t.repo.save_unpacked(FileType::Snapshot, &s).unwrap()
    }

    fn files(t: &T) -> BTreeMap<String, u64> {
        let be = t.repo.backend();
        let mut out = BTreeMap::new();
        for ft in [FileType::Pack, FileType::Index, FileType::Snapshot] {
            for (n, s) in be.list(ft).unwrap() {
                out.insert(format!("{}/{n}", ft.dir()), s);
            }
        }
        out
    }

    fn opts(max_unused: f64, dry_run: bool) -> PruneOptions {
        PruneOptions {
            max_unused,
            dry_run,
            ..Default::default()
        }
    }

    fn run(t: &mut T, o: &PruneOptions) -> Result<PruneReport> {
        prune(&mut t.repo, o, &NoProgress, &CancelToken::new())
    }

    /// Every blob of every remaining snapshot loads (and verifies) through a fresh index.
    fn assert_complete(t: &mut T) {
        t.repo.load_index().unwrap();
        for (id, s) in t.repo.list_snapshots().unwrap() {
            let blobs = walk::referenced_blobs(&t.repo, [s.tree])
                .unwrap_or_else(|e| panic!("snapshot {}: {e}", id.short()));
            for (b, tpe) in blobs {
                t.repo
                    .load_blob(&b, tpe)
                    .unwrap_or_else(|e| panic!("snapshot {}: {e}", id.short()));
            }
        }
    }

    /// Data blobs a..d (10 KB each), two data packs, two trees in two tree packs, two snapshots:
    /// s1 uses a, c, d; s2 uses a, b.
    struct Base {
        t: T,
        blobs: Vec<Vec<u8>>,
        p_ab: Id,
        p_cd: Id,
        p_t2: Id,
        s2: Id,
    }

    fn base() -> Base {
        let t = new_repo();
        let blobs: Vec<Vec<u8>> = (0..4).map(|i| bytes(i, 10_000)).collect();
        let (a, b, c, d) = (&blobs[0][..], &blobs[1][..], &blobs[2][..], &blobs[3][..]);
        let p_ab = write_pack(&t, &[(BlobType::Data, a), (BlobType::Data, b)], true);
        let p_cd = write_pack(&t, &[(BlobType::Data, c), (BlobType::Data, d)], true);
        let t1 = tree(&[("f1", &[a]), ("f2", &[c, d])]);
        let t2 = tree(&[("f1", &[a, b])]);
        write_pack(&t, &[(BlobType::Tree, &t1)], true);
        let p_t2 = write_pack(&t, &[(BlobType::Tree, &t2)], true);
        snapshot(&t, &t1);
        let s2 = snapshot(&t, &t2);
        Base {
            t,
            blobs,
            p_ab,
            p_cd,
            p_t2,
            s2,
        }
    }

    #[test]
    fn expected_size_matches_written_packs() {
        let t = new_repo();
        let mut w = PackWriter::new();
        let plain = [bytes(1, 5000), vec![7u8; 9000], b"tiny".to_vec()];
        for (i, p) in plain.iter().enumerate() {
            let comp = if i == 2 {
                Compression::Off
            } else {
                Compression::default()
            };
            w.add(&seal_blob(
                t.repo.key(),
                BlobType::Data,
                Id::hash(p),
                p,
                comp,
            ));
        }
        let (b, id, entries) = w.finish(t.repo.key());
        assert!(entries.iter().any(|e| e.uncompressed_length.is_some()));
        assert!(entries.iter().any(|e| e.uncompressed_length.is_none()));
        let ip = IndexPack::from_packed(id, &entries);
        assert_eq!(expected_pack_size(&ip.blobs), b.len() as u64);
    }

    #[test]
    fn nothing_to_do_changes_nothing() {
        let mut b = base();
        let before = files(&b.t);
        let r = run(&mut b.t, &opts(0.0, false)).unwrap();
        assert!(r.nothing_to_do(), "{r:?}");
        assert_eq!(r.snapshots, 2);
        assert_eq!(r.blobs_used, 6);
        assert_eq!(r.packs_kept, 4);
        assert_eq!(files(&b.t), before);
    }

    #[test]
    fn unused_packs_go_and_partial_ones_follow_the_threshold() {
        let mut b = base();
        b.t.repo
            .backend()
            .remove(FileType::Snapshot, &b.s2.to_hex())
            .unwrap();
        // s1 needs a, c, d, t1: pack (a b) is partly used, the t2 pack is unused.
        let before = files(&b.t);
        let dry = run(&mut b.t, &opts(50.0, true)).unwrap();
        assert_eq!(files(&b.t), before, "a dry run changed files");
        assert_eq!(dry.deleted, vec![b.p_t2]);
        assert!(dry.repacked.is_empty(), "10 KB unused is within 50%");
        assert_eq!(dry.blobs_unused, 2);

        let r = run(&mut b.t, &opts(50.0, false)).unwrap();
        assert_eq!(r.deleted, dry.deleted);
        assert_eq!(r.packs_kept, 3);
        assert!(r.bytes_freed > 0);
        let after = files(&b.t);
        assert!(!after.contains_key(&format!("data/{}", b.p_t2.to_hex())));
        assert_eq!(r.index_files_written, 1);
        assert_eq!(r.index_files_removed, 4);
        assert_complete(&mut b.t);
        let idx = b.t.repo.list_ids(FileType::Index).unwrap();
        let f: IndexFile = b.t.repo.load_unpacked(FileType::Index, &idx[0]).unwrap();
        assert_eq!(f.supersedes.as_ref().map(|s| s.len()), Some(4));

        // Now with no tolerance: the partly used pack is repacked and b disappears.
        let r = run(&mut b.t, &opts(0.0, false)).unwrap();
        assert_eq!(r.repacked, vec![b.p_ab]);
        assert_eq!(r.packs_written, 1);
        assert_eq!(r.blobs_removed, 1);
        assert_complete(&mut b.t);
        let idb = Id::hash(&b.blobs[1]);
        assert!(!b.t.repo.index().has(&idb, BlobType::Data));
        assert!(!files(&b.t).contains_key(&format!("data/{}", b.p_ab.to_hex())));
        let r = run(&mut b.t, &opts(0.0, false)).unwrap();
        assert!(r.nothing_to_do(), "{r:?}");
        assert_eq!(r.bytes_unused, 0);
    }

    #[test]
    fn refuses_when_a_needed_pack_is_missing() {
        let mut b = base();
        b.t.repo
            .backend()
            .remove(FileType::Snapshot, &b.s2.to_hex())
            .unwrap();
        b.t.repo
            .backend()
            .remove(FileType::Pack, &b.p_cd.to_hex())
            .unwrap();
        let before = files(&b.t);
        for dry in [true, false] {
            let e = run(&mut b.t, &opts(0.0, dry)).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, Error::Damaged { .. }), "{msg}");
            assert!(msg.contains(&Id::hash(&b.blobs[2]).to_hex()), "{msg}");
            assert!(msg.contains(&b.p_cd.short()), "{msg}");
            assert!(msg.contains("backupctl check") && msg.contains("deleted nothing"));
            assert_eq!(files(&b.t), before);
        }
    }

    #[test]
    fn refuses_when_a_needed_blob_is_in_no_index() {
        let mut b = base();
        // The index file of pack (c d) goes: the pack now looks like an orphan.
        let idx = b.t.repo.list_ids(FileType::Index).unwrap();
        let victim = idx
            .iter()
            .find(|i| {
                let f: IndexFile = b.t.repo.load_unpacked(FileType::Index, i).unwrap();
                f.packs[0].id == b.p_cd
            })
            .unwrap();
        b.t.repo
            .backend()
            .remove(FileType::Index, &victim.to_hex())
            .unwrap();
        let before = files(&b.t);
        let e = run(&mut b.t, &opts(0.0, false)).unwrap_err().to_string();
        assert!(e.contains("is in no index"), "{e}");
        assert_eq!(
            files(&b.t),
            before,
            "the seemingly orphaned pack was deleted"
        );
    }

    #[test]
    fn refuses_a_needed_pack_whose_size_contradicts_the_index() {
        let mut b = base();
        let be = b.t.repo.backend().clone();
        let p = be
            .local_path()
            .unwrap()
            .join("data")
            .join(&b.p_cd.to_hex()[..2]);
        let p = p.join(b.p_cd.to_hex());
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&p, perm).unwrap();
        let mut data = std::fs::read(&p).unwrap();
        data.extend_from_slice(b"junk");
        std::fs::write(&p, &data).unwrap();
        let before = files(&b.t);
        let e = run(&mut b.t, &opts(0.0, false)).unwrap_err().to_string();
        assert!(e.contains("bytes but its index entries need"), "{e}");
        assert_eq!(files(&b.t), before);
    }

    #[test]
    fn orphans_deleted_and_missing_packs_dropped_from_the_index() {
        let mut b = base();
        let orphan = write_pack(&b.t, &[(BlobType::Data, &bytes(9, 3000))], false);
        // An index entry for a pack that does not exist, holding only an unneeded blob.
        let ghost = Id::hash(b"no such pack");
        let f = IndexFile {
            supersedes: None,
            packs: vec![IndexPack {
                id: ghost,
                blobs: vec![IndexBlob {
                    id: Id::hash(b"unneeded"),
                    tpe: BlobType::Data,
                    offset: 0,
                    length: 100,
                    uncompressed_length: None,
                }],
            }],
        };
        b.t.repo.save_unpacked(FileType::Index, &f).unwrap();
        let r = run(&mut b.t, &opts(5.0, false)).unwrap();
        assert_eq!(r.orphaned, vec![orphan]);
        assert_eq!(r.missing, vec![ghost]);
        assert!(r.deleted.is_empty() && r.repacked.is_empty());
        assert!(!b.t.repo.index().has_pack(&ghost));
        assert!(!files(&b.t).contains_key(&format!("data/{}", orphan.to_hex())));
        assert_complete(&mut b.t);
        assert!(run(&mut b.t, &opts(0.0, false)).unwrap().nothing_to_do());
    }

    #[test]
    fn orphans_alone_leave_the_index_untouched() {
        let mut b = base();
        let idx_before: Vec<Id> = b.t.repo.list_ids(FileType::Index).unwrap();
        let orphan = write_pack(&b.t, &[(BlobType::Data, &bytes(9, 3000))], false);
        let r = run(&mut b.t, &opts(0.0, false)).unwrap();
        assert_eq!(r.orphaned, vec![orphan]);
        assert_eq!(r.index_files_written, 0);
        let mut a = b.t.repo.list_ids(FileType::Index).unwrap();
        let mut c = idx_before;
        a.sort();
        c.sort();
        assert_eq!(a, c);
    }

    #[test]
    fn duplicates_keep_one_copy() {
        let mut b = base();
        let a = b.blobs[0].clone();
        let e = bytes(20, 4000);
        // a stored again, next to an unneeded blob.
        let p_dup = write_pack(&b.t, &[(BlobType::Data, &a), (BlobType::Data, &e)], true);
        // c stored again, next to a copy of d: both (c d) packs are fully "used" by content,
        // but only one copy of each blob may stay.
        let (c, d) = (b.blobs[2].clone(), b.blobs[3].clone());
        let p_cd2 = write_pack(&b.t, &[(BlobType::Data, &d), (BlobType::Data, &c)], true);
        let r = run(&mut b.t, &opts(100.0, false)).unwrap();
        assert_eq!(r.blobs_duplicate, 3, "{r:?}");
        // (a e) had only a duplicate: deleted. Of the two (c d) packs exactly one goes.
        assert!(r.deleted.contains(&p_dup), "{r:?}");
        assert_eq!(
            [b.p_cd, p_cd2]
                .iter()
                .filter(|p| r.deleted.contains(p))
                .count(),
            1
        );
        assert_complete(&mut b.t);
        let r = run(&mut b.t, &opts(0.0, true)).unwrap();
        assert_eq!(r.blobs_duplicate, 0);
        assert!(r.nothing_to_do(), "{r:?}");
    }

    #[test]
    fn partly_used_packs_with_duplicates_are_repacked() {
        let mut b = base();
        // A pack holding a copy of b (whose copy in the fully used pack (a b) stays), a blob x a
        // new snapshot needs, and an unneeded blob y: partly used and holding a duplicate, it
        // is repacked even when any amount of unused data is tolerated.
        let x = bytes(30, 6000);
        let y = bytes(31, 6000);
        let blob_b = b.blobs[1].clone();
        let p = write_pack(
            &b.t,
            &[
                (BlobType::Data, &blob_b),
                (BlobType::Data, &x),
                (BlobType::Data, &y),
            ],
            true,
        );
        let t3 = tree(&[("x", &[&x])]);
        write_pack(&b.t, &[(BlobType::Tree, &t3)], true);
        snapshot(&b.t, &t3);
        let r = run(&mut b.t, &opts(100.0, false)).unwrap();
        assert_eq!(r.repacked, vec![p], "duplicates force a repack: {r:?}");
        assert_complete(&mut b.t);
        let r = run(&mut b.t, &opts(0.0, true)).unwrap();
        assert!(r.nothing_to_do() && r.blobs_duplicate == 0, "{r:?}");
    }

    #[test]
    fn mixed_packs_are_split() {
        let mut b = base();
        let x = bytes(40, 5000);
        let t3 = tree(&[("x", &[&x])]);
        let mixed = write_pack(&b.t, &[(BlobType::Data, &x), (BlobType::Tree, &t3)], true);
        snapshot(&b.t, &t3);
        let r = run(&mut b.t, &opts(100.0, false)).unwrap();
        assert_eq!(r.repacked, vec![mixed]);
        assert_eq!(r.packs_written, 2, "one data and one tree pack");
        assert_complete(&mut b.t);
        let by_pack = b.t.repo.index().blobs_by_pack();
        for blobs in by_pack.values() {
            assert!(
                blobs.iter().all(|x| x.tpe == blobs[0].tpe),
                "a mixed pack remains"
            );
        }
    }

    #[test]
    fn everything_unused_empties_the_repository() {
        let mut b = base();
        for id in b.t.repo.list_ids(FileType::Snapshot).unwrap() {
            b.t.repo
                .backend()
                .remove(FileType::Snapshot, &id.to_hex())
                .unwrap();
        }
        let r = run(&mut b.t, &opts(5.0, false)).unwrap();
        assert_eq!(r.packs_deleted, 4);
        assert!(files(&b.t).is_empty(), "{:?}", files(&b.t));
    }

    #[test]
    fn cancel_before_changes_changes_nothing() {
        let mut b = base();
        b.t.repo
            .backend()
            .remove(FileType::Snapshot, &b.s2.to_hex())
            .unwrap();
        let before = files(&b.t);
        let c = CancelToken::new();
        c.cancel();
        let e = prune(&mut b.t.repo, &opts(0.0, false), &NoProgress, &c).unwrap_err();
        assert!(matches!(e, Error::Interrupted));
        assert_eq!(files(&b.t), before);
    }

    #[test]
    fn hypothetical_plans_are_never_executed() {
        let mut b = base();
        let before = files(&b.t);
        let o = PruneOptions {
            dry_run: true,
            assume_removed: vec![b.s2],
            max_unused: 0.0,
            ..Default::default()
        };
        let r = run(&mut b.t, &o).unwrap();
        assert_eq!(r.snapshots, 1);
        assert_eq!(r.deleted, vec![b.p_t2]);
        assert_eq!(r.repacked, vec![b.p_ab]);
        let p = plan(&mut b.t.repo, &o, &NoProgress, &CancelToken::new()).unwrap();
        let e = execute(&mut b.t.repo, p, &o, &NoProgress, &CancelToken::new());
        assert!(e.is_err());
        assert_eq!(files(&b.t), before);
        // Without dry_run the assumption is ignored.
        let r = run(
            &mut b.t,
            &PruneOptions {
                dry_run: false,
                ..o
            },
        )
        .unwrap();
        assert!(r.nothing_to_do());
    }

    #[test]
    fn bad_options_are_refused() {
        let mut b = base();
        for m in [-1.0, 100.5, f64::NAN] {
            assert!(matches!(
                run(&mut b.t, &opts(m, true)),
                Err(Error::Input(_))
            ));
        }
    }

    #[test]
    fn stale_temp_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("data/ab")).unwrap();
        std::fs::create_dir_all(root.join("index")).unwrap();
        let old = root.join("data/ab/.abc.tmp-0000000000000001");
        let fresh = root.join("index/.def.tmp-0000000000000002");
        let not_ours = root.join("data/ab/.hidden");
        for p in [&old, &fresh, &not_ours] {
            std::fs::write(p, b"x").unwrap();
        }
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(&not_ours)
            .unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        assert_eq!(find_stale_temps(root), vec![old]);
    }
}
