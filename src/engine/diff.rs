//! Differences between two snapshots: which paths were added, removed or changed, and how much
//! data that adds and removes (as restic's `diff`).
//!
//! Only subtrees whose ids differ are compared node by node; equal subtrees are skipped. The
//! blob totals are exact: a blob counts as added only if it is in no tree of the old snapshot
//! (and removed likewise), so when the changed parts of the trees produce candidates, the
//! skipped (common) subtrees are read too, each once, until every candidate is settled.

use super::walk::{depth_of, join, on_deep_stack};
use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::tree::{kind, too_deep, Node, MAX_TREE_DEPTH};
use crate::repo::Repository;
use serde::Serialize;
use std::collections::HashSet;

/// What happened to a path, with restic's one-letter markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Modifier {
    /// Only in the newer snapshot.
    #[serde(rename = "+")]
    Added,
    /// Only in the older snapshot.
    #[serde(rename = "-")]
    Removed,
    /// A file whose content (its list of data blobs) differs.
    #[serde(rename = "M")]
    Modified,
    /// Same content, different metadata (mode, owner, mtime, link target, xattrs); for a
    /// directory, mode, owner or xattrs.
    #[serde(rename = "U")]
    Metadata,
    /// The type changed (e.g. a file became a directory).
    #[serde(rename = "T")]
    TypeChanged,
}

impl Modifier {
    pub fn marker(self) -> &'static str {
        match self {
            Modifier::Added => "+",
            Modifier::Removed => "-",
            Modifier::Modified => "M",
            Modifier::Metadata => "U",
            Modifier::TypeChanged => "T",
        }
    }
}

/// One changed path. Directory paths end in `/`, as restic prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: String,
    pub modifier: Modifier,
}

/// Nodes and blobs on one side of a diff (added or removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffCounts {
    pub files: u64,
    pub dirs: u64,
    pub others: u64,
    pub data_blobs: u64,
    pub tree_blobs: u64,
    /// Plaintext bytes of the data and tree blobs (restic's `bytes`).
    pub bytes: u64,
    /// Plaintext bytes of the data blobs alone.
    pub data_bytes: u64,
}

impl DiffCounts {
    fn count_node(&mut self, n: &Node) {
        match n.kind.as_str() {
            kind::FILE => self.files += 1,
            kind::DIR => self.dirs += 1,
            _ => self.others += 1,
        }
    }
}

/// Totals of a diff. A type change counts the old node as removed and the new one as added
/// (restic counts neither, and does not list a new directory's content).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffStats {
    /// Files whose content changed (`M`).
    pub changed_files: u64,
    /// Paths whose metadata alone changed (`U`).
    pub metadata_changed: u64,
    /// Paths whose type changed (`T`).
    pub type_changed: u64,
    pub added: DiffCounts,
    pub removed: DiffCounts,
}

/// Whether two nodes of the same type differ in what `U` reports: mode, owner, mtime, size, link
/// target, device number or extended attributes. Access and change times and inode numbers are
/// not compared: they change without anyone changing the file. Nor is a directory's mtime: it
/// changes whenever an entry is added or removed, which the entry's own line shows (and a
/// parent such as /tmp would be listed at every diff).
pub fn metadata_differs(a: &Node, b: &Node) -> bool {
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || a.user != b.user
        || a.group != b.group
        || (a.mtime != b.mtime && !a.is_dir())
        || a.size != b.size
        || a.link_target_bytes() != b.link_target_bytes()
        || a.device != b.device
        || a.extended_attributes != b.extended_attributes
}

type BlobSet = HashSet<(Id, BlobType)>;

struct Differ<'a> {
    repo: &'a Repository,
    cancel: &'a CancelToken,
    emit: &'a mut (dyn FnMut(Change) -> Result<()> + Send),
    stats: DiffStats,
    /// Blobs referenced by the compared (changed) parts of the old snapshot.
    before: BlobSet,
    /// Blobs referenced by the compared parts of the new snapshot.
    after: BlobSet,
    /// Subtrees equal in both snapshots, skipped by the comparison.
    common: Vec<Id>,
}

fn node_blobs(set: &mut BlobSet, n: &Node) {
    if let Some(c) = &n.content {
        for b in c {
            set.insert((*b, BlobType::Data));
        }
    }
    if let Some(s) = n.subtree {
        set.insert((s, BlobType::Tree));
    }
}

fn display_path(prefix: &str, n: &Node) -> String {
    let p = join(prefix, &n.name);
    if n.is_dir() {
        p + "/"
    } else {
        p
    }
}

fn subtree_of(n: &Node, path: &str) -> Result<Id> {
    n.subtree.ok_or_else(|| {
        Error::damaged(
            format!("directory {path}"),
            "its tree node has no subtree id",
        )
    })
}

impl Differ<'_> {
    fn change(&mut self, path: String, modifier: Modifier) -> Result<()> {
        (self.emit)(Change { path, modifier })
    }

    /// A node (and, for a directory, everything below it) present on one side only. `list_self`
    /// is false for the node of a type change, which is listed as `T` instead.
    fn one_side(&mut self, prefix: &str, n: &Node, added: bool, list_self: bool) -> Result<()> {
        let path = display_path(prefix, n);
        if depth_of(prefix) >= MAX_TREE_DEPTH {
            return Err(too_deep(&path));
        }
        if list_self {
            let m = if added {
                Modifier::Added
            } else {
                Modifier::Removed
            };
            self.change(path.clone(), m)?;
        }
        let (counts, set) = if added {
            (&mut self.stats.added, &mut self.after)
        } else {
            (&mut self.stats.removed, &mut self.before)
        };
        counts.count_node(n);
        node_blobs(set, n);
        if n.is_dir() {
            self.cancel.check()?;
            let sub = subtree_of(n, &path)?;
            let t = self.repo.load_tree(&sub)?;
            let here = join(prefix, &n.name);
            for c in &t.nodes {
                self.one_side(&here, c, added, true)?;
            }
        }
        Ok(())
    }

    fn both(&mut self, prefix: &str, n1: &Node, n2: &Node) -> Result<()> {
        let path = display_path(prefix, n2);
        if depth_of(prefix) >= MAX_TREE_DEPTH {
            return Err(too_deep(&path));
        }
        if n1.kind != n2.kind {
            self.change(path, Modifier::TypeChanged)?;
            self.stats.type_changed += 1;
            self.one_side(prefix, n1, false, false)?;
            return self.one_side(prefix, n2, true, false);
        }
        node_blobs(&mut self.before, n1);
        node_blobs(&mut self.after, n2);
        if n1.is_file() && n1.content != n2.content {
            self.change(path.clone(), Modifier::Modified)?;
            self.stats.changed_files += 1;
        } else if metadata_differs(n1, n2) {
            self.change(path.clone(), Modifier::Metadata)?;
            self.stats.metadata_changed += 1;
        }
        if n1.is_dir() {
            let s1 = subtree_of(n1, &path)?;
            let s2 = subtree_of(n2, &path)?;
            if s1 == s2 {
                self.common.push(s1);
            } else {
                self.tree(&join(prefix, &n2.name), &s1, &s2)?;
            }
        }
        Ok(())
    }

    fn tree(&mut self, prefix: &str, id1: &Id, id2: &Id) -> Result<()> {
        self.cancel.check()?;
        let mut t1 = self.repo.load_tree(id1)?;
        let mut t2 = self.repo.load_tree(id2)?;
        // Trees are stored sorted; sort anyway so that a foreign tree cannot derail the merge.
        t1.sort();
        t2.sort();
        let (mut i, mut j) = (0, 0);
        while i < t1.nodes.len() || j < t2.nodes.len() {
            let ord = match (t1.nodes.get(i), t2.nodes.get(j)) {
                (Some(a), Some(b)) => a.name.cmp(&b.name),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match ord {
                std::cmp::Ordering::Less => {
                    self.one_side(prefix, &t1.nodes[i], false, true)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.one_side(prefix, &t2.nodes[j], true, true)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.both(prefix, &t1.nodes[i], &t2.nodes[j])?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// Drops from the candidates every blob that an unchanged subtree references (those are in
    /// both snapshots). Reads each common tree once, and stops as soon as nothing is left to
    /// settle.
    fn settle_common(&mut self, added: &mut BlobSet, removed: &mut BlobSet) -> Result<()> {
        let mut seen: HashSet<Id> = HashSet::new();
        let mut stack: Vec<Id> = std::mem::take(&mut self.common);
        while let Some(id) = stack.pop() {
            if added.is_empty() && removed.is_empty() {
                break;
            }
            if !seen.insert(id) {
                continue;
            }
            let key = (id, BlobType::Tree);
            added.remove(&key);
            removed.remove(&key);
            self.cancel.check()?;
            let t = self.repo.load_tree(&id)?;
            for n in &t.nodes {
                if let Some(c) = &n.content {
                    for b in c {
                        let key = (*b, BlobType::Data);
                        added.remove(&key);
                        removed.remove(&key);
                    }
                }
                if let Some(s) = n.subtree {
                    if !seen.contains(&s) {
                        stack.push(s);
                    }
                }
            }
        }
        Ok(())
    }

    fn count_blobs(&self, set: &BlobSet, c: &mut DiffCounts) -> Result<()> {
        for (id, tpe) in set {
            let loc = self.repo.index().get(id, *tpe).ok_or_else(|| {
                Error::damaged(
                    format!("{} blob {}", tpe.as_str(), id.short()),
                    "a snapshot references it but it is not in the index",
                )
            })?;
            let n = loc.blob.data_length() as u64;
            c.bytes += n;
            match tpe {
                BlobType::Data => {
                    c.data_blobs += 1;
                    c.data_bytes += n;
                }
                BlobType::Tree => c.tree_blobs += 1,
            }
        }
        Ok(())
    }
}

/// Compares the trees `old` and `new` (root trees of two snapshots, or two subtrees whose paths
/// start with `prefix`, e.g. "" or "/home"). Calls `emit` for each change in path order (a
/// directory before its content) and returns the totals. The repository's index must be loaded.
pub fn diff_trees(
    repo: &Repository,
    old: &Id,
    new: &Id,
    prefix: &str,
    cancel: &CancelToken,
    emit: &mut (dyn FnMut(Change) -> Result<()> + Send),
) -> Result<DiffStats> {
    let mut d = Differ {
        repo,
        cancel,
        emit,
        stats: DiffStats::default(),
        before: BlobSet::new(),
        after: BlobSet::new(),
        common: Vec::new(),
    };
    if old == new {
        return Ok(d.stats);
    }
    // The root trees themselves are blobs of the snapshots, too (restic counts them).
    d.before.insert((*old, BlobType::Tree));
    d.after.insert((*new, BlobType::Tree));
    let prefix = prefix.trim_end_matches('/');
    // The comparison recurses once per level: on a stack made for `MAX_TREE_DEPTH` levels.
    on_deep_stack(|| d.tree(prefix, old, new))?;
    let mut added: BlobSet = d.after.difference(&d.before).copied().collect();
    let mut removed: BlobSet = d.before.difference(&d.after).copied().collect();
    d.before = BlobSet::new();
    d.after = BlobSet::new();
    if !added.is_empty() || !removed.is_empty() {
        d.settle_common(&mut added, &mut removed)?;
    }
    let mut stats = std::mem::take(&mut d.stats);
    d.count_blobs(&added, &mut stats.added)?;
    d.count_blobs(&removed, &mut stats.removed)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_comparison_ignores_atime_ctime_inode() {
        let mut a = Node::new("f", kind::FILE);
        a.mode = 0o644;
        let mut b = a.clone();
        b.atime = chrono::DateTime::from_timestamp(5, 0)
            .unwrap()
            .fixed_offset();
        b.ctime = b.atime;
        b.inode = 42;
        assert!(!metadata_differs(&a, &b));
        b.mode = 0o600;
        assert!(metadata_differs(&a, &b));
        let mut c = a.clone();
        c.mtime = chrono::DateTime::from_timestamp(9, 0)
            .unwrap()
            .fixed_offset();
        assert!(metadata_differs(&a, &c));
        // A directory's mtime follows its entries: not reported; its mode is.
        let d1 = Node::new("d", kind::DIR);
        let mut d2 = d1.clone();
        d2.mtime = c.mtime;
        assert!(!metadata_differs(&d1, &d2));
        d2.mode = 0o700;
        assert!(metadata_differs(&d1, &d2));
    }

    #[test]
    fn markers_serialize_as_restic_letters() {
        let c = Change {
            path: "/a/".into(),
            modifier: Modifier::TypeChanged,
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"path":"/a/","modifier":"T"}"#
        );
        for m in [
            Modifier::Added,
            Modifier::Removed,
            Modifier::Modified,
            Modifier::Metadata,
            Modifier::TypeChanged,
        ] {
            assert_eq!(
                serde_json::to_value(m).unwrap().as_str().unwrap(),
                m.marker()
            );
        }
    }
}
