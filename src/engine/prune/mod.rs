//! Prune: repack partly used packs, write the new index, then delete what no snapshot needs.
//!
//! Prune is the one operation that destroys data, so it works in two halves:
//!
//! 1. [`plan()`] reads everything and changes nothing: every index file (one that cannot be read
//!    stops prune: its packs would look unreferenced), every pack's name and size, and the trees
//!    of ALL snapshots. If a blob a snapshot needs is missing (not in any index, or only in packs
//!    that do not exist or whose size contradicts the index) prune stops with an error naming it:
//!    it never deletes anything from a damaged repository. Then every pack is classified:
//!    fully used (keep), unused (delete), partly used (repack when the repository's unused share
//!    would exceed `max_unused` percent; tree packs, mixed packs, packs holding duplicate copies
//!    and the packs named in `repack` are always repacked), not in any index (an orphan left by a crashed writer: delete), or named
//!    by the index but absent (dropped from the new index).
//! 2. [`execute()`] makes the changes in an order where a crash (kill -9) at any instant leaves
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
//!
//! Where each part lives: `plan` (the reading phases of the read-only half), `check` (what the
//! index and the pack listing say, and whether every used blob has a readable copy), `decide`
//! (the pure decisions: the copy of each blob that stays, each pack's fate, the totals, the new
//! index), `execute` (the changing half, one function per step) and `cleanup` (stale temp files
//! and unfinished uploads).

mod check;
mod cleanup;
mod decide;
mod execute;
mod plan;

pub use execute::execute;
pub use plan::{plan, PrunePlan};

/// Removes the temp files of crashed writers older than [`TEMP_MAX_AGE`] from a local
/// repository (`unlock` does this too, without a prune); returns how many went.
pub fn remove_stale_temp_files(repo: &Repository, progress: &dyn Progress) -> usize {
    cleanup::remove_stale_temps(&cleanup::stale_temps(repo), progress)
}

use crate::cancel::{CancelToken, Progress};
use crate::error::{Error, Result};
use crate::repo::id::Id;
use crate::repo::index::IndexBlob;
use crate::repo::pack::{BlobType, PackedBlob};
use crate::repo::Repository;
use serde::Serialize;
use std::time::Duration;

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
    /// Packs to repack whatever `max_unused` tolerates (full ids or unique prefixes): the
    /// damaged packs `check` names. Their blobs that snapshots need are copied (each verified)
    /// into new packs and the packs deleted, damaged blobs no snapshot needs with them.
    pub repack: Vec<String>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 5.0,
            dry_run: false,
            pack_size: DEFAULT_PACK_SIZE,
            assume_removed: Vec::new(),
            stale_upload_age: STALE_UPLOAD_AGE,
            repack: Vec::new(),
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

/// A blob as snapshots and the index name it: its id and type.
type BlobKey = (Id, BlobType);

fn packed(b: &IndexBlob) -> PackedBlob {
    PackedBlob {
        id: b.id,
        tpe: b.tpe,
        offset: b.offset,
        length: b.length,
        uncompressed_length: b.uncompressed_length,
    }
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
        // It may hold the only reference to blobs prune would delete: the hint removes it first.
        Error::SnapshotDamaged { id, detail } => Error::SnapshotDamaged {
            id,
            detail: format!("{detail}\n  {REFUSE}"),
        },
        Error::Backend(be) if be.is_not_found() => Error::Damaged {
            what,
            detail: format!("{be}\n  {REFUSE}"),
        },
        other => other,
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
        p.report.uploads_aborted = cleanup::stale_uploads(repo, opts, progress, true);
        return Ok(p.report);
    }
    execute(repo, p, opts, progress, cancel)
}

#[cfg(test)]
mod tests {
    use super::check::expected_pack_size;
    use super::cleanup::find_stale_temps;
    use super::*;
    use crate::cancel::NoProgress;
    use crate::engine::walk;
    use crate::repo::backend::FileType;
    use crate::repo::backend::{Backend, LocalBackend};
    use crate::repo::index::{IndexFile, IndexPack};
    use crate::repo::pack::PackWriter;
    use crate::repo::pack::{seal_blob, Compression};
    use crate::repo::snapshot::Snapshot;
    use crate::repo::tree::{kind, Node, Tree};
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::SystemTime;

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

    /// The report without what only the changing half does (writing and removing index
    /// files) and without the dry-run flag.
    fn comparable(r: &PruneReport) -> serde_json::Value {
        let mut v = serde_json::to_value(r).unwrap();
        let o = v.as_object_mut().unwrap();
        for k in ["dry_run", "index_files_written", "index_files_removed"] {
            o.remove(k);
        }
        v
    }

    #[test]
    fn a_dry_run_reports_what_prune_then_does() {
        let mut b = base();
        b.t.repo
            .backend()
            .remove(FileType::Snapshot, &b.s2.to_hex())
            .unwrap();
        write_pack(&b.t, &[(BlobType::Data, &bytes(9, 3000))], false);
        // Pack (a b) is repacked, the t2 pack deleted, the orphan deleted.
        let dry = run(&mut b.t, &opts(0.0, true)).unwrap();
        assert_eq!(dry.packs_repacked, 1, "{dry:?}");
        assert_eq!(dry.packs_deleted, 1, "{dry:?}");
        assert_eq!(dry.packs_orphaned, 1, "{dry:?}");
        let r = run(&mut b.t, &opts(0.0, false)).unwrap();
        assert_eq!(comparable(&dry), comparable(&r));
        assert!(r.bytes_freed > 0);
        assert_complete(&mut b.t);
    }

    #[test]
    fn a_damaged_blob_stops_repacking_before_anything_is_deleted() {
        let mut b = base();
        b.t.repo
            .backend()
            .remove(FileType::Snapshot, &b.s2.to_hex())
            .unwrap();
        // Blob a, which s1 needs, is damaged in pack (a b), which is to be repacked. Its size
        // still agrees with the index: only reading the blob shows the damage.
        let a = Id::hash(&b.blobs[0]);
        let offset =
            b.t.repo
                .list_ids(FileType::Index)
                .unwrap()
                .iter()
                .flat_map(|i| {
                    let f: IndexFile = b.t.repo.load_unpacked(FileType::Index, i).unwrap();
                    f.packs
                })
                .flat_map(|p| p.blobs)
                .find(|x| x.id == a)
                .unwrap()
                .offset as usize;
        let hex = b.p_ab.to_hex();
        let be = b.t.repo.backend().clone();
        let p = be
            .local_path()
            .unwrap()
            .join("data")
            .join(&hex[..2])
            .join(&hex);
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&p, perm).unwrap();
        let mut data = std::fs::read(&p).unwrap();
        data[offset + 20] ^= 0xff;
        std::fs::write(&p, &data).unwrap();
        let before = files(&b.t);
        let e = run(&mut b.t, &opts(0.0, false)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Damaged { .. }), "{msg}");
        assert!(msg.contains(&b.p_ab.short()), "{msg}");
        assert!(
            msg.contains("prune stopped before deleting anything"),
            "{msg}"
        );
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
