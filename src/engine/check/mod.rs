//! Checking a repository: structure, and with read-data every blob re-hashed; damage reports name
//! the snapshots and files that use whatever is damaged or missing.
//!
//! The structure check lists the packs, loads every index file, compares every pack's header with
//! the index, loads every snapshot and every tree they reach, and checks each node against the
//! index. With read-data, the selected packs are read whole (the backend's upload parallelism, at least two threads, one pack each in
//! memory), their SHA-256 compared with their names and every blob decrypted, decompressed and
//! re-hashed. Problems are collected as [`CheckIssue`]s rather than returned as errors; only a
//! failure to list the repository (or an interruption) ends the check early. When anything is
//! damaged or missing, the trees of all snapshots are walked once more to name the snapshots and
//! file paths affected.
//!
//! A `Checker` runs these phases in turn, one method each, collecting what they find; what is
//! damage, and how it reads, is decided by pure functions: `packs` (the index and the packs),
//! `trees` (snapshots, trees and nodes), `read` (reading packs whole), `damage` (who uses what
//! is damaged).

use crate::cancel::{CancelToken, Progress};
use crate::error::Result;
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::index::{IndexFile, MasterIndex};
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, Tree, MAX_TREE_DEPTH};
use crate::repo::Repository;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

mod damage;
mod issues;
mod packs;
mod read;
mod readback;
mod report;
mod subset;
mod trees;

pub use damage::MAX_EXAMPLE_PATHS;
use damage::{Damage, DamageWalk};
use issues::{reason, Issues};
use packs::{EntriesByPack, Listed, Listing, OrphanBlobs};
use read::{load_orphan_tree, parallel_map, read_headers, read_pack, PackRead};
pub use readback::{read_back, ReadBack, VerifyAfter};
pub use report::{
    AffectedSnapshot, BlobRef, CheckIssue, CheckOptions, CheckReport, IssueKind, OrphanedPack,
};
pub use subset::ReadData;

/// Checks the repository. The caller holds a (shared) lock. Problems found are in the report;
/// an `Err` means the check itself could not run (the repository cannot be listed) or was
/// interrupted.
pub fn check(
    repo: &mut Repository,
    opts: &CheckOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CheckReport> {
    // The trees are judged as the remote holds them: cached tree packs are fetched again (and
    // cached anew) as the tree walk reaches them.
    if let Some(c) = repo.cache() {
        c.drop_packs();
    }
    let mut c = Checker::new(repo, opts, progress, cancel);
    c.list_packs()?;
    c.load_index()?;
    c.check_packs()?;
    c.load_snapshots()?;
    c.walk_trees()?;
    c.report_not_indexed();
    c.read_data(&opts.read_data)?;
    c.find_damaged_files()?;
    Ok(c.into_report())
}

/// One check under way: the phases are its methods, run in the order [`check`] calls them; each
/// leaves what the later ones need.
struct Checker<'a> {
    repo: &'a mut Repository,
    progress: &'a dyn Progress,
    cancel: &'a CancelToken,
    /// Packs read at once.
    threads: usize,
    /// The counters (the lists are filled at the end).
    rep: CheckReport,
    iss: Issues,
    /// The packs listed, with their sizes.
    listed: BTreeMap<Id, u64>,
    /// Every index entry per pack, for the comparison with the pack headers.
    entries_by_pack: EntriesByPack,
    orphans: Vec<OrphanedPack>,
    orphan_blobs: OrphanBlobs,
    /// The snapshots that can be read, oldest first.
    snaps: Vec<(Id, Snapshot)>,
    /// Blobs the trees use that no index names.
    not_indexed: BTreeSet<(Id, BlobType)>,
}

impl<'a> Checker<'a> {
    fn new(
        repo: &'a mut Repository,
        opts: &CheckOptions,
        progress: &'a dyn Progress,
        cancel: &'a CancelToken,
    ) -> Checker<'a> {
        let threads = read::io_threads(repo);
        Checker {
            repo,
            progress,
            cancel,
            threads,
            rep: CheckReport {
                read_data: opts.read_data.describe(),
                ..Default::default()
            },
            iss: Issues::default(),
            listed: BTreeMap::new(),
            entries_by_pack: EntriesByPack::new(),
            orphans: Vec::new(),
            orphan_blobs: OrphanBlobs::new(),
            snaps: Vec::new(),
            not_indexed: BTreeSet::new(),
        }
    }

    /// The packs, with their sizes.
    fn list_packs(&mut self) -> Result<()> {
        self.progress.phase("list packs", None);
        self.listed = self
            .repo
            .backend()
            .list(FileType::Pack)?
            .into_iter()
            .filter_map(|(n, s)| Id::parse(&n).map(|i| (i, s)))
            .collect();
        self.rep.packs_listed = self.listed.len() as u64;
        Ok(())
    }

    /// Index files: merged into the repository's index, and kept per pack (every entry, also of
    /// blobs stored twice) for the comparison with the pack headers.
    fn load_index(&mut self) -> Result<()> {
        self.progress.phase("load index", None);
        let mut mi = MasterIndex::new();
        let mut index_ids = self.repo.list_ids(FileType::Index)?;
        index_ids.sort();
        for id in index_ids {
            self.cancel.check()?;
            self.rep.index_files += 1;
            match self.repo.load_unpacked::<IndexFile>(FileType::Index, &id) {
                Ok(f) => {
                    mi.merge_file(id, &f);
                    packs::add_entries(&mut self.entries_by_pack, &f);
                }
                Err(e) => {
                    let i = self.iss.add(packs::index_damaged(id, &reason(&e)));
                    self.iss.list[i].index_file = Some(id);
                }
            }
        }
        packs::sort_entries(&mut self.entries_by_pack);
        self.rep.indexed_blobs = mi.blob_count() as u64;
        *self.repo.index_mut() = mi;
        Ok(())
    }

    /// Every indexed pack exists and its header agrees with the index; packs no index names are
    /// orphans (their headers tell whether they hold blobs the index lacks).
    fn check_packs(&mut self) -> Result<()> {
        self.progress.phase("check packs", None);
        let listing = Listing::new(&self.listed, &self.entries_by_pack);
        self.check_indexed_packs(&listing.indexed)?;
        self.collect_orphans(&listing.orphaned)
    }

    /// Judges every pack the index names; `present`: those of them the listing has.
    fn check_indexed_packs(&mut self, present: &[(Id, u64)]) -> Result<()> {
        let mut headers = read_headers(self.repo, present, self.threads, self.cancel)?;
        for (pid, entries) in &self.entries_by_pack {
            self.cancel.check()?;
            let listed = match self.listed.get(pid) {
                None => Listed::Missing,
                Some(&size) => Listed::Present {
                    size,
                    header: headers
                        .remove(pid)
                        // `present` is every listed pack the index names, and read_headers
                        // answers for each of them (or fails as a whole).
                        .expect("every listed indexed pack's header was read")
                        .map_err(|e| reason(&e)),
                },
            };
            for f in packs::judge_indexed_pack(*pid, entries, listed) {
                self.iss.add(f);
            }
        }
        Ok(())
    }

    /// Reads the headers of the packs no index names (`orphaned`, listed with their sizes).
    fn collect_orphans(&mut self, orphaned: &[(Id, u64)]) -> Result<()> {
        let mut headers = read_headers(self.repo, orphaned, self.threads, self.cancel)?;
        let packs = orphaned
            .iter()
            .map(|&(pid, size)| (pid, size, headers.remove(&pid).and_then(|h| h.ok())))
            .collect();
        (self.orphans, self.orphan_blobs) = packs::orphaned_packs(packs);
        Ok(())
    }

    /// Snapshots: those that can be read, oldest first; the others are issues.
    fn load_snapshots(&mut self) -> Result<()> {
        self.progress.phase("load snapshots", None);
        for id in self.repo.list_ids(FileType::Snapshot)? {
            self.cancel.check()?;
            match self.repo.load_unpacked::<Snapshot>(FileType::Snapshot, &id) {
                Ok(s) => self.snaps.push((id, s)),
                Err(e) => {
                    let i = self.iss.add(trees::snapshot_damaged(id, &reason(&e)));
                    self.iss.list[i].snapshots.push(id);
                }
            }
        }
        trees::sort_snapshots(&mut self.snaps);
        self.rep.snapshots = self.snaps.len() as u64;
        Ok(())
    }

    /// Every tree reachable from a snapshot, each once, and every node in them.
    fn walk_trees(&mut self) -> Result<()> {
        self.progress.phase("check trees", None);
        let mut seen_trees: HashSet<Id> = HashSet::new();
        let mut seen_data: HashSet<Id> = HashSet::new();
        let mut subtrees: HashMap<Id, Vec<Id>> = HashMap::new();
        let mut stack: Vec<Id> = Vec::new();
        for (_, s) in &self.snaps {
            if seen_trees.insert(s.tree) {
                stack.push(s.tree);
            }
        }
        while let Some(tid) = stack.pop() {
            self.cancel.check()?;
            let Some(tree) = self.load_walked_tree(tid) else {
                continue;
            };
            self.rep.trees += 1;
            if !tree.nodes.is_empty() {
                let subs = tree.nodes.iter().filter(|n| n.is_dir());
                subtrees.insert(tid, subs.filter_map(|n| n.subtree).collect());
            }
            for (name, f) in trees::under_symlink(tid, &tree) {
                self.iss.add_node(tid, &name, f);
            }
            for node in &tree.nodes {
                if let Some(s) = node.subtree.filter(|_| node.is_dir()) {
                    if seen_trees.insert(s) {
                        stack.push(s);
                    }
                }
                let content_len = self.content_length(node, &mut seen_data);
                if let Some(f) = trees::node_problem(tid, node, content_len) {
                    self.iss.add_node(tid, &node.name, f);
                }
            }
        }
        self.rep.data_blobs = seen_data.len() as u64;
        self.report_too_deep(&subtrees);
        Ok(())
    }

    /// Snapshots whose tree is deeper than `MAX_TREE_DEPTH` (restore refuses them), one issue per
    /// root tree; `subtrees` are the subtrees of each non-empty tree walked.
    fn report_too_deep(&mut self, subtrees: &HashMap<Id, Vec<Id>>) {
        let heights = trees::heights(subtrees);
        let mut by_root: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
        for (sid, s) in &self.snaps {
            if heights.get(&s.tree).is_some_and(|&h| h > MAX_TREE_DEPTH) {
                by_root.entry(s.tree).or_default().push(*sid);
            }
        }
        for (root, sids) in by_root {
            let path = self.deepest_path(root, &heights);
            let i = self.iss.add(trees::tree_too_deep(&sids, &path));
            self.iss.list[i].snapshots = sids;
            self.iss.list[i].paths.push(path);
        }
    }

    /// The first 100 characters of the deepest path below `root` (then `...`), following the
    /// deepest subtree at each level.
    fn deepest_path(&self, root: Id, heights: &HashMap<Id, usize>) -> String {
        let mut path = String::new();
        let mut cur = Some(root);
        while let Some(tid) = cur.filter(|_| path.len() <= 100) {
            let tree = self.repo.load_tree(&tid).ok();
            let height = |n: &&Node| n.subtree.and_then(|s| heights.get(&s)).copied();
            let deepest = tree
                .iter()
                .flat_map(|t| &t.nodes)
                .filter(|n| n.is_dir())
                .max_by_key(height);
            cur = deepest.and_then(|n| n.subtree);
            if let Some(n) = deepest {
                path = crate::engine::walk::join(&path, &n.name);
            }
        }
        crate::repo::tree::shorten(&path)
    }

    /// Tree `tid` for the walk: `None` when it is damaged (an issue) or found nowhere. A tree no
    /// index names (reported later) is read from the orphaned pack that holds it, if any, to find
    /// what else snapshots need from orphaned packs (and what is really lost).
    fn load_walked_tree(&mut self, tid: Id) -> Option<Tree> {
        if self.iss.bad_blobs.contains_key(&(tid, BlobType::Tree)) {
            return None;
        }
        let Some(loc) = self.repo.index().get(&tid, BlobType::Tree).copied() else {
            self.not_indexed.insert((tid, BlobType::Tree));
            return load_orphan_tree(self.repo, &self.orphan_blobs, &tid);
        };
        match self.repo.load_tree(&tid) {
            Ok(t) => Some(t),
            Err(e) => {
                let pid = self.repo.index().pack_id(&loc);
                self.iss.add(trees::tree_damaged(tid, pid, &reason(&e)));
                None
            }
        }
    }

    /// The length of a file's content, when every blob of it is found (its blobs are counted in
    /// `seen`, and those no index names noted).
    fn content_length(&mut self, node: &Node, seen: &mut HashSet<Id>) -> Option<u64> {
        let content = node.content.as_ref().filter(|_| node.is_file())?;
        let lens: Vec<Option<u64>> = content
            .iter()
            .map(|b| self.data_blob_length(b, seen))
            .collect();
        trees::content_length(&lens)
    }

    /// The length of data blob `b` (counted in `seen`), from the index or else from the orphaned
    /// pack that holds it; `None` when it is found nowhere.
    fn data_blob_length(&mut self, b: &Id, seen: &mut HashSet<Id>) -> Option<u64> {
        seen.insert(*b);
        if let Some(l) = self.repo.index().get(b, BlobType::Data) {
            return Some(l.blob.data_length() as u64);
        }
        self.not_indexed.insert((*b, BlobType::Data));
        self.orphan_blobs
            .get(&(*b, BlobType::Data))
            .map(|(_, pb)| pb.data_length() as u64)
    }

    /// Blobs the trees use that no index names: grouped by the orphaned pack that holds them
    /// (which snapshots then need), or lost.
    fn report_not_indexed(&mut self) {
        for (orphan, blobs) in trees::group_not_indexed(&self.not_indexed, &self.orphan_blobs) {
            if let Some(o) = self.orphans.iter_mut().find(|o| Some(o.id) == orphan) {
                o.needed_blobs = blobs.len();
            }
            self.iss.add(trees::not_indexed_finding(orphan, blobs));
        }
    }

    /// Read-data: the packs `which` selects, read whole `threads` at a time.
    fn read_data(&mut self, which: &ReadData) -> Result<()> {
        if *which == ReadData::No {
            return Ok(());
        }
        let all: Vec<Id> = self.listed.keys().copied().collect();
        let selected = which.select(&all);
        let total: u64 = selected.iter().map(|p| self.listed[p]).sum();
        self.progress.phase("read data", Some(total));
        let mut results = self.read_packs(&selected)?;
        results.sort_by_key(|r| r.id);
        for r in results {
            self.rep.packs_read += 1;
            self.rep.packs_read_ids.push(r.id);
            self.rep.bytes_read += r.bytes;
            let entries = self.entries_by_pack.get(&r.id).map(|v| v.as_slice());
            let orphan = self.orphans.iter_mut().find(|o| o.id == r.id);
            if let Some(f) = r.judge(entries, orphan) {
                self.iss.add(f);
            }
        }
        Ok(())
    }

    /// Reads the packs `selected` (all listed) whole, `threads` at a time, in no particular order.
    fn read_packs(&self, selected: &[Id]) -> Result<Vec<PackRead>> {
        let repo: &Repository = self.repo;
        parallel_map(selected, self.threads, self.cancel, |pid| {
            let entries = self.entries_by_pack.get(pid).map(|v| v.as_slice());
            let r = read_pack(repo, *pid, entries);
            self.progress.inc(self.listed[pid]);
            r
        })
    }

    /// Damage report: which snapshots and paths use what is damaged or missing.
    fn find_damaged_files(&mut self) -> Result<()> {
        if !self.iss.any_damage() {
            return Ok(());
        }
        self.progress.phase("find damaged files", None);
        let mut damage = Damage::new(self.iss.list.len());
        let mut walk = DamageWalk::new(self.repo, &self.iss, &self.orphan_blobs);
        for (sid, s) in &self.snaps {
            self.cancel.check()?;
            walk.snapshot(*sid, s, &mut damage, self.cancel)?;
        }
        self.rep.affected_snapshots = damage.apply(&mut self.iss.list);
        Ok(())
    }

    /// The report: the counters, the issues (their blobs sorted) and the orphaned packs.
    fn into_report(mut self) -> CheckReport {
        for issue in &mut self.iss.list {
            issue.blobs.sort();
        }
        self.rep.errors = self.iss.list;
        self.rep.orphaned_packs = self.orphans;
        self.rep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
