//! Checking a repository: structure, and with read-data every blob re-hashed; damage reports name
//! the snapshots and files that use whatever is damaged or missing.
//!
//! The structure check lists the packs, loads every index file, compares every pack's header with
//! the index, loads every snapshot and every tree they reach, and checks each node against the
//! index. With read-data, the selected packs are read whole (two threads, one pack each in
//! memory), their SHA-256 compared with their names and every blob decrypted, decompressed and
//! re-hashed. Problems are collected as [`CheckIssue`]s rather than returned as errors; only a
//! failure to list the repository (or an interruption) ends the check early. When anything is
//! damaged or missing, the trees of all snapshots are walked once more to name the snapshots and
//! file paths affected.

use crate::cancel::{CancelToken, Progress};
use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::crypto::OVERHEAD;
use crate::repo::id::Id;
use crate::repo::index::{IndexFile, MasterIndex};
use crate::repo::pack::{self, BlobType, PackedBlob};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Tree;
use crate::repo::Repository;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

mod report;
mod subset;

pub use report::{
    AffectedSnapshot, BlobRef, CheckIssue, CheckOptions, CheckReport, IssueKind, OrphanedPack,
};
pub use subset::ReadData;

const HINT_LOST: &str = "the damaged data cannot be recovered from this repository: forget the \
     affected snapshots and run `backupctl prune` (it drops the damaged blobs), then back up the \
     affected files again (before that prune a new backup would reuse the damaged blobs)";
const HINT_REBUILD_INDEX: &str = "the index does not describe the packs correctly: `restic -r \
     REPO rebuild-index` writes a new index from the pack headers; run `backupctl check` again \
     afterwards";

/// The reason inside an error, without the "run check" hint of `Error::Damaged`.
fn reason(e: &Error) -> String {
    match e {
        Error::Damaged { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// "is" or "are", agreeing with `n`.
fn is_are(n: usize) -> &'static str {
    if n == 1 {
        "is"
    } else {
        "are"
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The pack's size as its header implies: blobs, sealed header, length field.
fn size_from_header(blobs: &[PackedBlob]) -> u64 {
    let mut n = (OVERHEAD + 4) as u64;
    for b in blobs {
        n += b.length as u64;
        n += if b.uncompressed_length.is_some() {
            41
        } else {
            37
        };
    }
    n
}

/// The issues found so far and what each damaged blob or node is linked to.
#[derive(Default)]
struct Issues {
    list: Vec<CheckIssue>,
    /// Damaged or missing blobs, with the issues that explain them.
    bad_blobs: HashMap<(Id, BlobType), Vec<usize>>,
    /// Malformed nodes, by the tree that holds them and their name.
    bad_nodes: HashMap<(Id, String), Vec<usize>>,
}

impl Issues {
    fn push(&mut self, kind: IssueKind, message: String, hint: &str) -> usize {
        self.list.push(CheckIssue {
            kind,
            message,
            pack: None,
            index_file: None,
            blobs: Vec::new(),
            snapshots: Vec::new(),
            paths: Vec::new(),
            hint: hint.to_string(),
        });
        self.list.len() - 1
    }

    /// Records `blobs` as damaged because of issue `i`.
    fn link(&mut self, i: usize, blobs: impl IntoIterator<Item = (Id, BlobType)>) {
        for (id, tpe) in blobs {
            let v = self.bad_blobs.entry((id, tpe)).or_default();
            if !v.contains(&i) {
                v.push(i);
                self.list[i].blobs.push(BlobRef { id, tpe });
            }
        }
    }
}

/// What reading one pack whole found.
struct PackRead {
    id: Id,
    bytes: u64,
    /// The pack could not be read at all.
    read_error: Option<String>,
    hash_ok: bool,
    header_error: Option<String>,
    /// Blobs checked, and those that failed (with why).
    checked: usize,
    damaged: Vec<(PackedBlob, String)>,
}

/// Reads a pack whole and verifies it: its hash, its header, and every blob in `entries` (or, for
/// packs no index names, in its header).
fn read_pack(repo: &Repository, id: Id, entries: Option<&[PackedBlob]>) -> PackRead {
    let mut r = PackRead {
        id,
        bytes: 0,
        read_error: None,
        hash_ok: false,
        header_error: None,
        checked: 0,
        damaged: Vec::new(),
    };
    let bytes = match repo.backend().load(FileType::Pack, &id.to_hex()) {
        Ok(b) => b,
        Err(e) => {
            r.read_error = Some(e.to_string());
            return r;
        }
    };
    r.bytes = bytes.len() as u64;
    r.hash_ok = Id::hash(&bytes) == id;
    let header = match pack::parse_header(repo.key(), bytes.len() as u64, &bytes) {
        Ok(Ok(h)) => Some(h),
        Ok(Err(_)) => {
            r.header_error = Some("its header length is inconsistent".into());
            None
        }
        Err(e) => {
            r.header_error = Some(e.to_string());
            None
        }
    };
    let entries: &[PackedBlob] = match (entries, &header) {
        (Some(e), _) => e,
        (None, Some(h)) => h,
        (None, None) => &[],
    };
    for b in entries {
        r.checked += 1;
        let start = b.offset as usize;
        let end = start + b.length as usize;
        if end > bytes.len() {
            r.damaged.push((
                *b,
                format!(
                    "it would end at byte {end}, beyond the end of the pack ({} bytes)",
                    bytes.len()
                ),
            ));
            continue;
        }
        if let Err(e) = pack::open_blob(repo.key(), b, &bytes[start..end]) {
            r.damaged.push((*b, e.to_string()));
        }
    }
    r
}

/// How many packs are read at once: two on a local disk, the backend's upload parallelism on
/// remote storage (where each read waits on the network).
fn io_threads(repo: &Repository) -> usize {
    repo.backend().upload_parallelism().max(2)
}

/// `f` of every item, `threads` at a time (no more threads than items), in no particular order;
/// `Err` when `cancel` fired (the items not yet started are then left out).
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    cancel: &CancelToken,
    f: impl Fn(&T) -> R + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<R>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| loop {
                if cancel.is_cancelled() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else {
                    break;
                };
                let r = f(item);
                out.lock().unwrap().push(r);
            });
        }
    });
    cancel.check()?;
    Ok(out.into_inner().unwrap())
}

/// The headers of `packs` (id, size), read `threads` at a time.
fn read_headers(
    repo: &Repository,
    packs: impl Iterator<Item = (Id, u64)>,
    threads: usize,
    cancel: &CancelToken,
) -> Result<HashMap<Id, Result<Vec<PackedBlob>>>> {
    let packs: Vec<(Id, u64)> = packs.collect();
    let headers = parallel_map(&packs, threads, cancel, |&(pid, size)| {
        (pid, repo.read_pack_header(&pid, size))
    })?;
    Ok(headers.into_iter().collect())
}

/// Checks the repository. The caller holds a (shared) lock. Problems found are in the report;
/// an `Err` means the check itself could not run (the repository cannot be listed) or was
/// interrupted.
pub fn check(
    repo: &mut Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CheckReport> {
    let mut rep = CheckReport {
        read_data: opts.read_data.describe(),
        ..Default::default()
    };
    let mut iss = Issues::default();
    // The trees are judged as the remote holds them: cached tree packs are fetched again (and
    // cached anew) as the tree walk reaches them.
    if let Some(c) = repo.cache() {
        c.drop_packs();
    }

    // Packs, with their sizes.
    progress.phase("list packs", None);
    let listed: BTreeMap<Id, u64> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|(n, s)| Id::parse(&n).map(|i| (i, s)))
        .collect();
    rep.packs_listed = listed.len() as u64;

    // Index files: merged into the repository's index, and kept per pack (every entry, also of
    // blobs stored twice) for the comparison with the pack headers.
    progress.phase("load index", None);
    let mut mi = MasterIndex::new();
    let mut entries_by_pack: BTreeMap<Id, Vec<PackedBlob>> = BTreeMap::new();
    let mut index_ids = repo.list_ids(FileType::Index)?;
    index_ids.sort();
    for id in index_ids {
        cancel.check()?;
        rep.index_files += 1;
        match repo.load_unpacked::<IndexFile>(FileType::Index, &id) {
            Ok(f) => {
                mi.merge_file(id, &f);
                for p in &f.packs {
                    entries_by_pack.entry(p.id).or_default().extend(p.packed());
                }
            }
            Err(e) => {
                let i = iss.push(
                    IssueKind::IndexDamaged,
                    format!("index file {} cannot be read: {}", id.short(), reason(&e)),
                    "the blobs it listed are reported as not indexed below; `restic -r REPO \
                     rebuild-index` writes a new index from the packs (do not prune before)",
                );
                iss.list[i].index_file = Some(id);
            }
        }
    }
    for v in entries_by_pack.values_mut() {
        v.sort_by_key(|b| (b.offset, b.id));
        v.dedup();
    }
    rep.indexed_blobs = mi.blob_count() as u64;
    *repo.index_mut() = mi;

    // Every indexed pack exists and its header agrees with the index; packs no index names are
    // orphans (their headers tell whether they hold blobs the index lacks).
    progress.phase("check packs", None);
    let threads = io_threads(repo);
    let mut headers = read_headers(
        repo,
        listed
            .iter()
            .filter(|(p, _)| entries_by_pack.contains_key(p))
            .map(|(p, s)| (*p, *s)),
        threads,
        cancel,
    )?;
    for (pid, entries) in &entries_by_pack {
        cancel.check()?;
        let all_blobs = || entries.iter().map(|b| (b.id, b.tpe)).collect::<Vec<_>>();
        let Some(&size) = listed.get(pid) else {
            let i = iss.push(
                IssueKind::PackMissing,
                format!(
                    "pack {} is named by the index but does not exist: the {} in it {} lost",
                    pid.short(),
                    plural(entries.len(), "blob", "blobs"),
                    is_are(entries.len())
                ),
                "the pack file is gone: forget the affected snapshots and run `backupctl prune`; \
                 to back up the affected files again first run `restic -r REPO rebuild-index` \
                 (until the index stops naming the pack, a new backup would reuse the lost blobs)",
            );
            iss.list[i].pack = Some(*pid);
            iss.link(i, all_blobs());
            continue;
        };
        let header = match headers
            .remove(pid)
            .expect("every listed indexed pack's header was read")
        {
            Ok(h) => h,
            Err(e) => {
                let i = iss.push(
                    IssueKind::PackHeaderDamaged,
                    format!(
                        "pack {} ({size} bytes): its header cannot be read: {}; the {} in it may be lost",
                        pid.short(),
                        reason(&e),
                        plural(entries.len(), "blob", "blobs")
                    ),
                    &format!(
                        "run `backupctl check --read-data` to see which blobs are intact; {HINT_LOST}"
                    ),
                );
                iss.list[i].pack = Some(*pid);
                iss.link(i, all_blobs());
                continue;
            }
        };
        let in_header: HashMap<(Id, BlobType), &PackedBlob> =
            header.iter().map(|b| ((b.id, b.tpe), b)).collect();
        let in_index: HashSet<(Id, BlobType)> = entries.iter().map(|b| (b.id, b.tpe)).collect();
        let mut absent = Vec::new();
        let mut differ = Vec::new();
        for e in entries {
            match in_header.get(&(e.id, e.tpe)) {
                None => absent.push(*e),
                Some(h) if **h != *e => differ.push((*e, **h)),
                Some(_) => {}
            }
        }
        let extra: Vec<&PackedBlob> = header
            .iter()
            .filter(|b| !in_index.contains(&(b.id, b.tpe)))
            .collect();
        if !absent.is_empty() || !differ.is_empty() || !extra.is_empty() {
            let mut parts = Vec::new();
            if let Some(a) = absent.first() {
                parts.push(format!(
                    "{} the index places in it {} not in its header (e.g. {} blob {})",
                    plural(absent.len(), "blob", "blobs"),
                    is_are(absent.len()),
                    a.tpe.as_str(),
                    a.id.short()
                ));
            }
            if let Some((e, h)) = differ.first() {
                parts.push(format!(
                    "{} at other offsets or lengths than the index says (e.g. {} blob {}: \
                     index offset {} length {}, header offset {} length {})",
                    plural(differ.len(), "blob is", "blobs are"),
                    e.tpe.as_str(),
                    e.id.short(),
                    e.offset,
                    e.length,
                    h.offset,
                    h.length
                ));
            }
            if let Some(x) = extra.first() {
                parts.push(format!(
                    "{} in its header {} not in the index (e.g. {} blob {})",
                    plural(extra.len(), "blob", "blobs"),
                    is_are(extra.len()),
                    x.tpe.as_str(),
                    x.id.short()
                ));
            }
            let i = iss.push(
                IssueKind::PackIndexMismatch,
                format!(
                    "pack {}: header and index disagree: {}",
                    pid.short(),
                    parts.join("; ")
                ),
                HINT_REBUILD_INDEX,
            );
            iss.list[i].pack = Some(*pid);
            let bad: Vec<_> = absent
                .iter()
                .map(|b| (b.id, b.tpe))
                .chain(differ.iter().map(|(b, _)| (b.id, b.tpe)))
                .collect();
            iss.link(i, bad);
        }
        let want = size_from_header(&header);
        if want != size {
            let i = iss.push(
                IssueKind::PackSizeMismatch,
                format!(
                    "pack {} has {size} bytes, but its header implies {want}: the file was \
                     truncated or extended, and the {} in it may be damaged",
                    pid.short(),
                    plural(entries.len(), "blob", "blobs")
                ),
                &format!(
                    "run `backupctl check --read-data` to see which blobs are damaged; {HINT_LOST}"
                ),
            );
            iss.list[i].pack = Some(*pid);
            iss.link(i, all_blobs());
        }
    }
    let mut orphans: Vec<OrphanedPack> = Vec::new();
    let mut orphan_blobs: OrphanBlobs = HashMap::new();
    let mut orphan_headers = read_headers(
        repo,
        listed
            .iter()
            .filter(|(p, _)| !entries_by_pack.contains_key(p))
            .map(|(p, s)| (*p, *s)),
        threads,
        cancel,
    )?;
    for (pid, &size) in &listed {
        if entries_by_pack.contains_key(pid) {
            continue;
        }
        let header = orphan_headers.remove(pid).and_then(|h| h.ok());
        if let Some(h) = &header {
            for b in h {
                orphan_blobs.entry((b.id, b.tpe)).or_insert((*pid, *b));
            }
        }
        orphans.push(OrphanedPack {
            id: *pid,
            size,
            blobs: header.as_ref().map(|h| h.len()),
            needed_blobs: 0,
            damaged: None,
        });
    }

    // Snapshots.
    progress.phase("load snapshots", None);
    let mut snaps: Vec<(Id, Snapshot)> = Vec::new();
    for id in repo.list_ids(FileType::Snapshot)? {
        cancel.check()?;
        match repo.load_unpacked::<Snapshot>(FileType::Snapshot, &id) {
            Ok(s) => snaps.push((id, s)),
            Err(e) => {
                let i = iss.push(
                    IssueKind::SnapshotDamaged,
                    format!("snapshot {} cannot be read: {}", id.short(), reason(&e)),
                    "the snapshot is lost (its data stays until a prune): delete the file \
                     snapshots/<id> from the repository so other commands can list snapshots",
                );
                iss.list[i].snapshots.push(id);
            }
        }
    }
    snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    rep.snapshots = snaps.len() as u64;

    // Every tree reachable from a snapshot, each once.
    progress.phase("check trees", None);
    let mut seen_trees: HashSet<Id> = HashSet::new();
    let mut seen_data: HashSet<Id> = HashSet::new();
    let mut not_indexed: BTreeSet<(Id, BlobType)> = BTreeSet::new();
    let mut stack: Vec<Id> = Vec::new();
    for (_, s) in &snaps {
        if seen_trees.insert(s.tree) {
            stack.push(s.tree);
        }
    }
    while let Some(tid) = stack.pop() {
        cancel.check()?;
        if iss.bad_blobs.contains_key(&(tid, BlobType::Tree)) {
            continue;
        }
        let tree = match repo.index().get(&tid, BlobType::Tree).copied() {
            // Not indexed: reported below. If an orphaned pack holds it, go on below it, to find
            // what else snapshots need from orphaned packs (and what is really lost).
            None => {
                not_indexed.insert((tid, BlobType::Tree));
                match load_orphan_tree(repo, &orphan_blobs, &tid) {
                    Some(t) => t,
                    None => continue,
                }
            }
            Some(loc) => match repo.load_tree(&tid) {
                Ok(t) => t,
                Err(e) => {
                    let pid = repo.index().pack_id(&loc);
                    let i = iss.push(
                        IssueKind::TreeDamaged,
                        format!(
                            "tree {} (in pack {}) cannot be loaded: {}",
                            tid.short(),
                            pid.short(),
                            reason(&e)
                        ),
                        &format!("everything below the affected directories is lost; {HINT_LOST}"),
                    );
                    iss.list[i].pack = Some(pid);
                    iss.link(i, [(tid, BlobType::Tree)]);
                    continue;
                }
            },
        };
        rep.trees += 1;
        for node in &tree.nodes {
            let node_issue = |iss: &mut Issues, kind: IssueKind, msg: String, hint: &str| {
                let i = iss.push(kind, msg, hint);
                iss.bad_nodes
                    .entry((tid, node.name.clone()))
                    .or_default()
                    .push(i);
            };
            if node.is_dir() {
                match node.subtree {
                    Some(s) => {
                        if seen_trees.insert(s) {
                            stack.push(s);
                        }
                    }
                    None => node_issue(
                        &mut iss,
                        IssueKind::NodeInvalid,
                        format!(
                            "directory {:?} in tree {} has no subtree",
                            node.name,
                            tid.short()
                        ),
                        "the snapshot was written by a faulty program; its content below that \
                         directory is unknown: back up the directory again",
                    ),
                }
            } else if node.is_file() {
                let Some(content) = &node.content else {
                    node_issue(
                        &mut iss,
                        IssueKind::NodeInvalid,
                        format!(
                            "file {:?} in tree {} has no content list (null; an empty file has [])",
                            node.name,
                            tid.short()
                        ),
                        "the snapshot was written by a faulty program: back up the file again",
                    );
                    continue;
                };
                let mut sum: u64 = 0;
                let mut complete = true;
                for b in content {
                    seen_data.insert(*b);
                    match repo.index().get(b, BlobType::Data) {
                        Some(l) => sum += l.blob.data_length() as u64,
                        None => {
                            not_indexed.insert((*b, BlobType::Data));
                            match orphan_blobs.get(&(*b, BlobType::Data)) {
                                Some((_, pb)) => sum += pb.data_length() as u64,
                                None => complete = false,
                            }
                        }
                    }
                }
                if complete && sum != node.size {
                    node_issue(
                        &mut iss,
                        IssueKind::FileSizeMismatch,
                        format!(
                            "file {:?} in tree {}: the snapshot records {} bytes, but its {} \
                             hold {sum}",
                            node.name,
                            tid.short(),
                            node.size,
                            plural(content.len(), "blob", "blobs")
                        ),
                        "a restore writes the blobs' content; back up the file again to get a \
                         consistent snapshot",
                    );
                }
            }
        }
    }
    rep.data_blobs = seen_data.len() as u64;

    // Blobs the trees use that no index names: grouped by the orphaned pack that holds them, or
    // lost.
    let mut by_orphan: BTreeMap<Option<Id>, Vec<(Id, BlobType)>> = BTreeMap::new();
    for b in &not_indexed {
        by_orphan
            .entry(orphan_blobs.get(b).map(|(p, _)| *p))
            .or_default()
            .push(*b);
    }
    for (orphan, blobs) in by_orphan {
        let i = match orphan {
            Some(pid) => {
                if let Some(o) = orphans.iter_mut().find(|o| o.id == pid) {
                    o.needed_blobs = blobs.len();
                }
                let i = iss.push(
                    IssueKind::BlobsNotIndexed,
                    format!(
                        "{} that snapshots use {} in no index, but pack {} holds {} (no index \
                         names that pack: an index file is missing or damaged)",
                        plural(blobs.len(), "blob", "blobs"),
                        is_are(blobs.len()),
                        pid.short(),
                        if blobs.len() == 1 { "it" } else { "them" }
                    ),
                    "the data is still in the repository, only the index lacks it: run `restic \
                     -r REPO rebuild-index`; do NOT run `backupctl prune` before that (it deletes \
                     packs that no index names)",
                );
                iss.list[i].pack = Some(pid);
                i
            }
            None => iss.push(
                IssueKind::BlobsNotIndexed,
                format!(
                    "{} that snapshots use {} in no index and no pack: the data is lost",
                    plural(blobs.len(), "blob", "blobs"),
                    is_are(blobs.len())
                ),
                "back up the affected files again (a new backup stores blobs the index lacks), \
                 then forget the affected snapshots and run `backupctl prune`",
            ),
        };
        iss.link(i, blobs);
    }

    // Read-data: the selected packs whole, `threads` at a time.
    if opts.read_data != ReadData::No {
        let all: Vec<Id> = listed.keys().copied().collect();
        let selected = opts.read_data.select(&all);
        let total: u64 = selected.iter().map(|p| listed[p]).sum();
        progress.phase("read data", Some(total));
        let mut results = {
            let repo: &Repository = repo;
            parallel_map(&selected, threads, cancel, |pid| {
                let entries = entries_by_pack.get(pid).map(|v| v.as_slice());
                let r = read_pack(repo, *pid, entries);
                progress.inc(listed[pid]);
                r
            })?
        };
        results.sort_by_key(|r| r.id);
        for r in results {
            rep.packs_read += 1;
            rep.packs_read_ids.push(r.id);
            rep.bytes_read += r.bytes;
            let indexed = entries_by_pack.contains_key(&r.id);
            let mut problems = Vec::new();
            if let Some(e) = &r.read_error {
                problems.push(format!("it cannot be read: {e}"));
            } else if !r.hash_ok {
                problems.push("its content does not match its name (SHA-256)".to_string());
            }
            if let Some(h) = &r.header_error {
                problems.push(format!("its header is damaged: {h}"));
            }
            if let Some((b, why)) = r.damaged.first() {
                problems.push(format!(
                    "{} of its {} cannot be read (e.g. {} blob {}: {why})",
                    r.damaged.len(),
                    plural(r.checked, "blob", "blobs"),
                    b.tpe.as_str(),
                    b.id.short()
                ));
            } else if r.read_error.is_none() && r.checked > 0 {
                problems.push(if indexed {
                    format!(
                        "all {} the index names in it read correctly",
                        plural(r.checked, "blob", "blobs")
                    )
                } else {
                    format!(
                        "all {} its header lists read correctly",
                        plural(r.checked, "blob", "blobs")
                    )
                });
            }
            let damaged = r.read_error.is_some()
                || !r.hash_ok
                || r.header_error.is_some()
                || !r.damaged.is_empty();
            if !damaged {
                continue;
            }
            let msg = format!("pack {} is damaged: {}", r.id.short(), problems.join("; "));
            if let Some(o) = orphans.iter_mut().find(|o| o.id == r.id) {
                o.damaged = Some(msg.clone());
                if o.needed_blobs == 0 {
                    // Nothing uses it: prune removes it; not an error.
                    continue;
                }
            }
            let i = iss.push(IssueKind::PackDamaged, msg, HINT_LOST);
            iss.list[i].pack = Some(r.id);
            let mut bad: Vec<(Id, BlobType)> =
                r.damaged.iter().map(|(b, _)| (b.id, b.tpe)).collect();
            if r.read_error.is_some() {
                if let Some(e) = entries_by_pack.get(&r.id) {
                    bad.extend(e.iter().map(|b| (b.id, b.tpe)));
                }
            }
            iss.link(i, bad);
        }
    }

    // Damage report: which snapshots and paths use what is damaged or missing.
    if !iss.bad_blobs.is_empty() || !iss.bad_nodes.is_empty() {
        progress.phase("find damaged files", None);
        let mut w = DamageWalk {
            repo,
            iss: &iss,
            orphans: &orphan_blobs,
            memo: HashMap::new(),
        };
        let mut per_issue: Vec<(BTreeSet<Id>, BTreeSet<String>)> =
            vec![Default::default(); iss.list.len()];
        let mut affected = Vec::new();
        for (sid, s) in &snaps {
            cancel.check()?;
            let found = w.tree(s.tree, cancel)?;
            if found.is_empty() {
                continue;
            }
            let mut paths = BTreeSet::new();
            for (rel, i) in found.iter() {
                let p = format!("/{rel}");
                per_issue[*i].0.insert(*sid);
                per_issue[*i].1.insert(p.clone());
                paths.insert(p);
            }
            affected.push(AffectedSnapshot {
                id: *sid,
                time: s.time,
                hostname: s.hostname.clone(),
                paths: s.paths.clone(),
                damaged_paths: paths.into_iter().collect(),
            });
        }
        drop(w);
        for (issue, (sn, paths)) in iss.list.iter_mut().zip(per_issue) {
            for s in sn {
                if !issue.snapshots.contains(&s) {
                    issue.snapshots.push(s);
                }
            }
            issue.paths = paths.into_iter().collect();
        }
        rep.affected_snapshots = affected;
    }
    for issue in &mut iss.list {
        issue.blobs.sort();
    }
    rep.errors = iss.list;
    rep.orphaned_packs = orphans;
    Ok(rep)
}

/// Blobs in packs that no index names, with where they are.
type OrphanBlobs = HashMap<(Id, BlobType), (Id, PackedBlob)>;

/// Reads a tree that no index names from the orphaned pack that holds it.
fn load_orphan_tree(repo: &Repository, orphans: &OrphanBlobs, id: &Id) -> Option<Tree> {
    let (pack, b) = orphans.get(&(*id, BlobType::Tree))?;
    let sealed = repo
        .backend()
        .load_range(
            FileType::Pack,
            &pack.to_hex(),
            b.offset as u64,
            b.length as usize,
        )
        .ok()?;
    let plain = pack::open_blob(repo.key(), b, &sealed).ok()?;
    Tree::parse(&plain).ok()
}

/// Walks trees once each (memoized), collecting for every tree the relative paths below it that
/// use damaged blobs or are malformed, with the issues concerned.
struct DamageWalk<'a> {
    repo: &'a Repository,
    iss: &'a Issues,
    orphans: &'a OrphanBlobs,
    memo: HashMap<Id, Rc<Vec<(String, usize)>>>,
}

impl DamageWalk<'_> {
    fn tree(&mut self, tid: Id, cancel: &CancelToken) -> Result<Rc<Vec<(String, usize)>>> {
        if let Some(m) = self.memo.get(&tid) {
            return Ok(m.clone());
        }
        cancel.check()?;
        let mut out: Vec<(String, usize)> = Vec::new();
        // A damaged tree is reported as its directory; one that is only missing from the index is
        // read from the orphaned pack that holds it, to name the files below too.
        let tree = match self.iss.bad_blobs.get(&(tid, BlobType::Tree)) {
            Some(is) => {
                out.extend(is.iter().map(|i| (String::new(), *i)));
                if self.repo.index().has(&tid, BlobType::Tree) {
                    None
                } else {
                    load_orphan_tree(self.repo, self.orphans, &tid)
                }
            }
            None => self.repo.load_tree(&tid).ok(),
        };
        if let Some(tree) = tree {
            for node in &tree.nodes {
                let mut hit: BTreeSet<usize> = BTreeSet::new();
                if let Some(c) = &node.content {
                    for b in c {
                        if let Some(is) = self.iss.bad_blobs.get(&(*b, BlobType::Data)) {
                            hit.extend(is);
                        }
                    }
                }
                if !self.iss.bad_nodes.is_empty() {
                    if let Some(is) = self.iss.bad_nodes.get(&(tid, node.name.clone())) {
                        hit.extend(is);
                    }
                }
                out.extend(hit.into_iter().map(|i| (node.name.clone(), i)));
                if node.is_dir() {
                    if let Some(s) = node.subtree {
                        let sub = self.tree(s, cancel)?;
                        for (rel, i) in sub.iter() {
                            let p = if rel.is_empty() {
                                node.name.clone()
                            } else {
                                format!("{}/{rel}", node.name)
                            };
                            out.push((p, *i));
                        }
                    }
                }
            }
        }
        let out = Rc::new(out);
        self.memo.insert(tid, out.clone());
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_size_matches_written_packs() {
        use crate::repo::crypto::Key;
        use crate::repo::pack::{seal_blob, Compression, PackWriter};
        let key = Key::generate();
        let mut w = PackWriter::new();
        let a = vec![7u8; 5000];
        let b: Vec<u8> = (0..999u32).map(|i| (i * 7919 % 251) as u8).collect();
        w.add(&seal_blob(
            &key,
            BlobType::Data,
            Id::hash(&a),
            &a,
            Compression::default(),
        ));
        w.add(&seal_blob(
            &key,
            BlobType::Tree,
            Id::hash(&b),
            &b,
            Compression::Off,
        ));
        let (bytes, _, blobs) = w.finish(&key);
        assert!(blobs[0].uncompressed_length.is_some() && blobs[1].uncompressed_length.is_none());
        assert_eq!(size_from_header(&blobs), bytes.len() as u64);
    }

    /// A repository written through the library, with malformed nodes and a blob in no index.
    #[test]
    fn node_problems_are_reported_with_their_paths() {
        use crate::cancel::NoProgress;
        use crate::repo::backend::{Backend, LocalBackend};
        use crate::repo::index::IndexPack;
        use crate::repo::pack::{seal_blob, Compression, PackWriter};
        use crate::repo::tree::{kind, Node};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("r")));
        let mut repo = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        let data = b"hello, world".to_vec();
        let data_id = Id::hash(&data);
        let lost_id = Id::hash(b"never stored");
        let file = |name: &str, size: u64, content: Option<Vec<Id>>| {
            let mut n = Node::new(name, kind::FILE);
            n.size = size;
            n.content = content;
            n
        };
        let mut sub = Tree {
            nodes: vec![
                Node::new("d", kind::DIR),
                file("lost", 5, Some(vec![lost_id])),
                file("null", 0, None),
                file("ok", data.len() as u64, Some(vec![data_id])),
                file("wrong", data.len() as u64 + 1, Some(vec![data_id])),
            ],
        };
        sub.sort();
        let sub_bytes = sub.serialize();
        let sub_id = Id::hash(&sub_bytes);
        let mut dirnode = Node::new("sub", kind::DIR);
        dirnode.subtree = Some(sub_id);
        let root = Tree {
            nodes: vec![dirnode],
        };
        let root_bytes = root.serialize();
        let root_id = Id::hash(&root_bytes);
        let mut packs = Vec::new();
        let mut w = PackWriter::new();
        w.add(&seal_blob(
            repo.key(),
            BlobType::Data,
            data_id,
            &data,
            Compression::Off,
        ));
        let (bytes, pid, blobs) = w.finish(repo.key());
        repo.save_pack(&pid, &bytes).unwrap();
        packs.push(IndexPack::from_packed(pid, &blobs));
        let mut w = PackWriter::new();
        for (id, b) in [(sub_id, &sub_bytes), (root_id, &root_bytes)] {
            w.add(&seal_blob(
                repo.key(),
                BlobType::Tree,
                id,
                b,
                Compression::default(),
            ));
        }
        let (bytes, pid, blobs) = w.finish(repo.key());
        repo.save_pack(&pid, &bytes).unwrap();
        packs.push(IndexPack::from_packed(pid, &blobs));
        repo.save_unpacked(
            FileType::Index,
            &IndexFile {
                supersedes: None,
                packs,
            },
        )
        .unwrap();
        let snap: Snapshot = serde_json::from_value(serde_json::json!({
            "time": "2024-01-02T03:04:05Z", "tree": root_id, "paths": ["/x"], "hostname": "h"
        }))
        .unwrap();
        let sid = repo.save_unpacked(FileType::Snapshot, &snap).unwrap();

        let rep = check(
            &mut repo,
            &CheckOptions {
                read_data: ReadData::All,
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        assert!(!rep.is_ok());
        assert_eq!((rep.snapshots, rep.trees, rep.packs_read), (1, 2, 2));
        let find = |k: IssueKind, path: &str| {
            rep.errors
                .iter()
                .find(|e| e.kind == k && e.paths == vec![path.to_string()])
                .unwrap_or_else(|| panic!("{k:?} at {path} in {:#?}", rep.errors))
        };
        let e = find(IssueKind::FileSizeMismatch, "/sub/wrong");
        assert_eq!(e.snapshots, vec![sid]);
        find(IssueKind::NodeInvalid, "/sub/null");
        find(IssueKind::NodeInvalid, "/sub/d");
        let e = find(IssueKind::BlobsNotIndexed, "/sub/lost");
        assert_eq!(
            e.blobs,
            vec![BlobRef {
                id: lost_id,
                tpe: BlobType::Data
            }]
        );
        assert!(e.message.contains("lost"), "{}", e.message);
        assert_eq!(rep.errors.len(), 4, "nothing else: {:#?}", rep.errors);
        assert_eq!(rep.affected_snapshots.len(), 1);
        assert_eq!(
            rep.affected_snapshots[0].damaged_paths,
            vec!["/sub/d", "/sub/lost", "/sub/null", "/sub/wrong"]
        );
    }

    /// An index entry at the wrong offset and a header blob the index lacks are both named.
    #[test]
    fn index_and_header_disagreement_is_reported() {
        use crate::cancel::NoProgress;
        use crate::repo::backend::{Backend, LocalBackend};
        use crate::repo::index::IndexPack;
        use crate::repo::pack::{seal_blob, Compression, PackWriter};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("r")));
        let mut repo = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        let mut w = PackWriter::new();
        for d in [&b"one"[..], b"two", b"three"] {
            w.add(&seal_blob(
                repo.key(),
                BlobType::Data,
                Id::hash(d),
                d,
                Compression::Off,
            ));
        }
        let (bytes, pid, blobs) = w.finish(repo.key());
        repo.save_pack(&pid, &bytes).unwrap();
        let mut ip = IndexPack::from_packed(pid, &blobs);
        ip.blobs[1].offset += 1;
        ip.blobs.pop();
        repo.save_unpacked(
            FileType::Index,
            &IndexFile {
                supersedes: None,
                packs: vec![ip],
            },
        )
        .unwrap();
        let rep = check(
            &mut repo,
            &CheckOptions {
                read_data: ReadData::No,
            },
            &NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(rep.errors.len(), 1, "{:#?}", rep.errors);
        let e = &rep.errors[0];
        assert_eq!(e.kind, IssueKind::PackIndexMismatch);
        assert_eq!(e.pack, Some(pid));
        assert_eq!(
            e.blobs,
            vec![BlobRef {
                id: Id::hash(b"two"),
                tpe: BlobType::Data
            }]
        );
        assert!(e.message.contains("other offsets"), "{}", e.message);
        assert!(e.message.contains("not in the index"), "{}", e.message);
    }
}
