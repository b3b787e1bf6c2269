//! The snapshot and tree checks' pure judgements: damaged snapshots and trees, what is wrong with
//! a node, how long a file's content is, and the blobs snapshots use that no index names.

use super::issues::{hint_lost, is_are, plural, Finding};
use super::packs::OrphanBlobs;
use super::IssueKind;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{kind, Name, Node, Tree, MAX_TREE_DEPTH};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A snapshot file that cannot be read.
pub(super) fn snapshot_damaged(id: Id, why: &str) -> Finding {
    Finding::new(
        IssueKind::SnapshotDamaged,
        format!("snapshot {} cannot be read: {why}", id.short()),
        "the snapshot is lost (its data stays until a prune): delete the file \
         snapshots/<id> from the repository so other commands can list snapshots",
    )
}

/// The snapshots in the order the checks visit them: oldest first, then by id.
pub(super) fn sort_snapshots(snaps: &mut [(Id, Snapshot)]) {
    snaps.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
}

/// An indexed tree (in pack `pack`) that cannot be loaded.
pub(super) fn tree_damaged(tree: Id, pack: Id, why: &str) -> Finding {
    Finding::new(
        IssueKind::TreeDamaged,
        format!(
            "tree {} (in pack {}) cannot be loaded: {}",
            tree.short(),
            pack.short(),
            why
        ),
        format!(
            "everything below the affected directories is lost; {}",
            hint_lost(pack)
        ),
    )
    .in_pack(pack)
    .losing([(tree, BlobType::Tree)])
}

/// The length of a file's content from the lengths of its blobs (`None` for a blob found
/// nowhere, and then for the whole content).
pub(super) fn content_length(blobs: &[Option<u64>]) -> Option<u64> {
    blobs.iter().try_fold(0u64, |sum, b| b.map(|n| sum + n))
}

/// What is wrong with `node` of tree `tree`, if anything; `content_len` is the length of a
/// file's content when every blob of it is found.
pub(super) fn node_problem(tree: Id, node: &Node, content_len: Option<u64>) -> Option<Finding> {
    if !crate::engine::walk::valid_name(&node.name) {
        return Some(Finding::new(
            IssueKind::NodeInvalid,
            format!(
                "entry {:?} in tree {} has a name restore refuses (empty, `.`, `..`, or with `/` or NUL)",
                node.name,
                tree.short()
            ),
            "the snapshot was written by a faulty or hostile program; restore skips that entry: \
             back up what it should hold again",
        ));
    }
    if node.is_dir() {
        if node.subtree.is_some() {
            return None;
        }
        return Some(Finding::new(
            IssueKind::NodeInvalid,
            format!(
                "directory {:?} in tree {} has no subtree",
                node.name,
                tree.short()
            ),
            "the snapshot was written by a faulty program; its content below that \
             directory is unknown: back up the directory again",
        ));
    }
    if !node.is_file() {
        return None;
    }
    let Some(content) = &node.content else {
        return Some(Finding::new(
            IssueKind::NodeInvalid,
            format!(
                "file {:?} in tree {} has no content list (null; an empty file has [])",
                node.name,
                tree.short()
            ),
            "the snapshot was written by a faulty program: back up the file again",
        ));
    };
    let sum = content_len.filter(|&sum| sum != node.size)?;
    Some(Finding::new(
        IssueKind::FileSizeMismatch,
        format!(
            "file {:?} in tree {}: the snapshot records {} bytes, but its {} \
             hold {sum}",
            node.name,
            tree.short(),
            node.size,
            plural(content.len(), "blob", "blobs")
        ),
        "a restore writes the blobs' content; back up the file again to get a \
         consistent snapshot",
    ))
}

/// The directories of tree `tree` (read as `t`) that have the name of a symbolic link in it:
/// restore would write their entries through the link; each name once.
pub(super) fn under_symlink(tree: Id, t: &Tree) -> Vec<(Name, Finding)> {
    let links: BTreeSet<&Name> = t
        .nodes
        .iter()
        .filter(|n| n.kind == kind::SYMLINK)
        .map(|n| &n.name)
        .collect();
    let dirs: BTreeSet<&Name> = t
        .nodes
        .iter()
        .filter(|n| n.is_dir() && links.contains(&n.name))
        .map(|n| &n.name)
        .collect();
    dirs.into_iter()
        .map(|name| {
            let f = Finding::new(
                IssueKind::NodeUnderSymlink,
                format!(
                    "directory {name:?} in tree {} has the name of a symbolic link beside it, so \
                     its entries would be restored through that link (restore refuses them)",
                    tree.short()
                ),
                "the snapshot was written by a faulty or hostile program: back up that \
                 directory again",
            );
            (name.clone(), f)
        })
        .collect()
}

/// How many names the deepest path below each tree has, from each non-empty tree's subtrees
/// (`subtrees`; a tree not in it is empty or unknown: 0). Post-order with an explicit stack.
pub(super) fn heights(subtrees: &HashMap<Id, Vec<Id>>) -> HashMap<Id, usize> {
    let mut h: HashMap<Id, usize> = HashMap::new();
    // The trees being expanded: one on this path again (a cycle, impossible with honest ids)
    // is not entered again, and counts as 0 below itself.
    let mut open: HashSet<Id> = HashSet::new();
    for &start in subtrees.keys() {
        let mut stack = vec![(start, false)];
        while let Some((t, expanded)) = stack.pop() {
            if h.contains_key(&t) {
                continue;
            }
            let subs = subtrees.get(&t).map(|v| v.as_slice()).unwrap_or_default();
            if expanded {
                let below = subs.iter().filter_map(|s| h.get(s)).max().copied();
                h.insert(
                    t,
                    usize::from(subtrees.contains_key(&t)) + below.unwrap_or(0),
                );
                open.remove(&t);
                continue;
            }
            if !open.insert(t) {
                continue;
            }
            stack.push((t, true));
            stack.extend(
                subs.iter()
                    .filter(|s| !h.contains_key(*s) && !open.contains(*s))
                    .map(|s| (*s, false)),
            );
        }
    }
    h
}

/// Snapshots `snapshots` whose tree is deeper than `MAX_TREE_DEPTH`, as deep as `path` shows.
pub(super) fn tree_too_deep(snapshots: &[Id], path: &str) -> Finding {
    Finding::new(
        IssueKind::TreeTooDeep,
        format!(
            "the tree of {} is deeper than {MAX_TREE_DEPTH} levels ({path}): restore, ls, diff \
             and stats refuse it",
            plural(snapshots.len(), "snapshot", "snapshots")
        ),
        "no program writes a directory chain that deep: the repository was written by a buggy \
         or hostile writer; forget the snapshot",
    )
}

/// The blobs the trees use that no index names, by the orphaned pack that holds them (`None`:
/// lost), each group in blob order.
pub(super) fn group_not_indexed(
    not_indexed: &BTreeSet<(Id, BlobType)>,
    orphans: &OrphanBlobs,
) -> BTreeMap<Option<Id>, Vec<(Id, BlobType)>> {
    let mut by_orphan: BTreeMap<Option<Id>, Vec<(Id, BlobType)>> = BTreeMap::new();
    for b in not_indexed {
        by_orphan
            .entry(orphans.get(b).map(|(p, _)| *p))
            .or_default()
            .push(*b);
    }
    by_orphan
}

/// Blobs snapshots use that no index names, held by the orphaned pack `orphan` or lost.
pub(super) fn not_indexed_finding(orphan: Option<Id>, blobs: Vec<(Id, BlobType)>) -> Finding {
    let n = blobs.len();
    let f = match orphan {
        Some(pid) => Finding::new(
            IssueKind::BlobsNotIndexed,
            format!(
                "{} that snapshots use {} in no index, but pack {} holds {} (no index \
                 names that pack: an index file is missing or damaged)",
                plural(n, "blob", "blobs"),
                is_are(n),
                pid.short(),
                if n == 1 { "it" } else { "them" }
            ),
            "the data is still in the repository, only the index lacks it: run `backupctl \
             repair index`; do NOT run `backupctl prune` before that (it deletes \
             packs that no index names)",
        )
        .in_pack(pid),
        None => Finding::new(
            IssueKind::BlobsNotIndexed,
            format!(
                "{} that snapshots use {} in no index and no pack: the data is lost",
                plural(n, "blob", "blobs"),
                is_are(n)
            ),
            "back up the affected files again (a new backup stores blobs the index lacks), \
             then forget the affected snapshots and run `backupctl prune`",
        ),
    };
    f.losing(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::pack::PackedBlob;

    fn file(size: u64, content: Option<Vec<Id>>) -> Node {
        let mut n = Node::new("f", kind::FILE);
        n.size = size;
        n.content = content;
        n
    }

    #[test]
    fn a_directory_beside_a_symlink_of_its_name_is_under_it() {
        let t = Tree {
            nodes: vec![
                Node::new("a", kind::SYMLINK),
                Node::new("a", kind::DIR),
                Node::new("a", kind::DIR),
                Node::new("b", kind::DIR),
                Node::new("c", kind::SYMLINK),
                Node::new("c", kind::FILE),
            ],
        };
        let found = under_symlink(Id::hash(b"t"), &t);
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            vec!["a"],
            "each name once; a file beside a link is not under it"
        );
        assert_eq!(found[0].1.kind, IssueKind::NodeUnderSymlink);
    }

    #[test]
    fn heights_count_the_names_of_the_deepest_path() {
        let (root, mid, leaf, empty) = (
            Id::hash(b"root"),
            Id::hash(b"mid"),
            Id::hash(b"leaf"),
            Id::hash(b"empty"),
        );
        let subtrees = HashMap::from([(root, vec![mid, empty]), (mid, vec![leaf]), (leaf, vec![])]);
        let h = heights(&subtrees);
        assert_eq!((h[&root], h[&mid], h[&leaf]), (3, 2, 1));
        assert_eq!(h.get(&empty), Some(&0), "an empty tree adds no name");
        let cycle = HashMap::from([(root, vec![mid]), (mid, vec![root])]);
        assert_eq!(heights(&cycle).len(), 2, "a cycle ends");
    }

    #[test]
    fn a_directory_needs_a_subtree() {
        let t = Id::hash(b"tree");
        let mut d = Node::new("d", kind::DIR);
        let f = node_problem(t, &d, None).unwrap();
        assert_eq!(f.kind, IssueKind::NodeInvalid);
        assert_eq!(
            f.message,
            format!("directory \"d\" in tree {} has no subtree", t.short())
        );
        d.subtree = Some(Id::hash(b"sub"));
        assert_eq!(node_problem(t, &d, None), None);
        assert_eq!(
            node_problem(t, &Node::new("l", kind::SYMLINK), None),
            None,
            "nothing to check in a symlink"
        );
    }

    #[test]
    fn a_name_restore_refuses_is_a_problem() {
        let t = Id::hash(b"tree");
        for name in ["../x", "/abs", "a/b", ".", "..", "", "nul\0"] {
            let mut f = file(0, Some(vec![]));
            f.name = name.into();
            let p = node_problem(t, &f, Some(0)).unwrap_or_else(|| panic!("{name:?}"));
            assert_eq!(p.kind, IssueKind::NodeInvalid, "{name:?}");
            assert!(
                p.message.contains(&format!("{:?}", f.name)),
                "{}",
                p.message
            );
        }
        let mut f = file(0, Some(vec![]));
        f.name = "ok name".into();
        assert_eq!(node_problem(t, &f, Some(0)), None);
    }

    #[test]
    fn a_file_needs_a_content_list_of_its_size() {
        let t = Id::hash(b"tree");
        let f = node_problem(t, &file(0, None), None).unwrap();
        assert_eq!(f.kind, IssueKind::NodeInvalid);
        assert!(f.message.contains("has no content list"), "{}", f.message);
        let blobs = Some(vec![Id::hash(b"a"), Id::hash(b"b")]);
        assert_eq!(node_problem(t, &file(0, Some(vec![])), Some(0)), None);
        assert_eq!(node_problem(t, &file(10, blobs.clone()), Some(10)), None);
        assert_eq!(
            node_problem(t, &file(10, blobs.clone()), None),
            None,
            "a blob found nowhere is reported as not indexed, not as a size mismatch"
        );
        let f = node_problem(t, &file(10, blobs), Some(11)).unwrap();
        assert_eq!(f.kind, IssueKind::FileSizeMismatch);
        assert!(
            f.message
                .ends_with("records 10 bytes, but its 2 blobs hold 11"),
            "{}",
            f.message
        );
    }

    #[test]
    fn content_length_is_unknown_when_a_blob_is_found_nowhere() {
        assert_eq!(content_length(&[]), Some(0));
        assert_eq!(content_length(&[Some(3), Some(4)]), Some(7));
        assert_eq!(content_length(&[Some(3), None, Some(4)]), None);
    }

    #[test]
    fn unindexed_blobs_are_grouped_by_the_orphaned_pack_holding_them() {
        let (a, b, c) = (
            (Id::hash(b"a"), BlobType::Data),
            (Id::hash(b"b"), BlobType::Tree),
            (Id::hash(b"c"), BlobType::Data),
        );
        let pid = Id::hash(b"orphan");
        let pb = PackedBlob {
            id: b.0,
            tpe: b.1,
            offset: 0,
            length: 40,
            uncompressed_length: None,
        };
        let orphans: OrphanBlobs = [(b, (pid, pb))].into_iter().collect();
        let g = group_not_indexed(&[a, b, c].into_iter().collect(), &orphans);
        assert_eq!(g.len(), 2);
        assert_eq!(g[&Some(pid)], vec![b]);
        let mut lost = vec![a, c];
        lost.sort();
        assert_eq!(g[&None], lost);

        let held = not_indexed_finding(Some(pid), vec![b]);
        assert_eq!(
            (held.kind, held.pack),
            (IssueKind::BlobsNotIndexed, Some(pid))
        );
        assert!(
            held.message.contains("holds it (no index"),
            "{}",
            held.message
        );
        assert!(held.hint.contains("repair index"));
        let gone = not_indexed_finding(None, lost.clone());
        assert_eq!((gone.pack, gone.blobs), (None, lost));
        assert!(
            gone.message
                .starts_with("2 blobs that snapshots use are in no index and no pack"),
            "{}",
            gone.message
        );
    }
}
