//! The damage report: a memoized, iterative walk of the snapshots' trees that counts the paths
//! using damaged or missing blobs or malformed nodes, then names a bounded number of them per
//! issue and per snapshot; memory stays bounded by the repository, whatever the damage's shape.

use super::issues::Issues;
use super::packs::OrphanBlobs;
use super::read::load_orphan_tree;
use super::{AffectedSnapshot, CheckIssue};
use crate::cancel::CancelToken;
use crate::engine::walk::join;
use crate::error::Result;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{Node, Tree};
use crate::repo::Repository;
use std::collections::{BTreeSet, HashMap};

/// The most paths named per issue and per affected snapshot (the count of a snapshot's is exact).
pub const MAX_EXAMPLE_PATHS: usize = 1000;

/// What is damaged in a tree and below it: how many paths (the tree itself counts as one when it
/// is damaged), and the issues concerned (sorted).
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Summary {
    pub paths: u64,
    pub issues: Vec<usize>,
}

impl Summary {
    /// Adds `n` paths concerned by `issues`.
    fn add(&mut self, n: u64, issues: impl IntoIterator<Item = usize>) {
        self.paths = self.paths.saturating_add(n);
        self.issues.extend(issues);
        self.issues.sort_unstable();
        self.issues.dedup();
    }
}

/// Walks trees once each (memoized, with an explicit stack), summarising for every tree what is
/// damaged below it; then names example paths of each snapshot.
pub(super) struct DamageWalk<'a> {
    repo: &'a Repository,
    iss: &'a Issues,
    orphans: &'a OrphanBlobs,
    memo: HashMap<Id, Summary>,
}

impl<'a> DamageWalk<'a> {
    pub fn new(repo: &'a Repository, iss: &'a Issues, orphans: &'a OrphanBlobs) -> Self {
        DamageWalk {
            repo,
            iss,
            orphans,
            memo: HashMap::new(),
        }
    }

    /// Tree `tid` as far as it can be read: a damaged tree is reported as its directory; one that
    /// is only missing from the index is read from the orphaned pack that holds it, to name the
    /// files below too.
    fn load(&self, tid: Id) -> Option<Tree> {
        if self.iss.bad_blobs.contains_key(&(tid, BlobType::Tree)) {
            if self.repo.index().has(&tid, BlobType::Tree) {
                return None;
            }
            return load_orphan_tree(self.repo, self.orphans, &tid);
        }
        self.repo.load_tree(&tid).ok()
    }

    /// The issues of tree `tid` itself (damaged or missing).
    fn own_issues(&self, tid: Id) -> impl Iterator<Item = usize> + '_ {
        self.iss
            .bad_blobs
            .get(&(tid, BlobType::Tree))
            .into_iter()
            .flatten()
            .copied()
    }

    /// What is damaged in tree `tid` and below it (post-order, each tree read once; only the
    /// trees on the current path are held).
    pub fn summarize(&mut self, root: Id, cancel: &CancelToken) -> Result<&Summary> {
        let mut pending: HashMap<Id, Option<Tree>> = HashMap::new();
        let mut stack: Vec<(Id, bool)> = vec![(root, false)];
        while let Some((tid, expanded)) = stack.pop() {
            if self.memo.contains_key(&tid) {
                continue;
            }
            if expanded {
                let tree = pending.remove(&tid).flatten();
                let s = self.summary_of(tid, tree.as_ref());
                self.memo.insert(tid, s);
                continue;
            }
            cancel.check()?;
            let tree = self.load(tid);
            stack.push((tid, true));
            for s in tree.iter().flat_map(subtrees) {
                // A tree on the current path again (a cycle, impossible with honest ids) is
                // left out.
                if !self.memo.contains_key(&s) && !pending.contains_key(&s) {
                    stack.push((s, false));
                }
            }
            pending.insert(tid, tree);
        }
        Ok(&self.memo[&root])
    }

    /// The summary of tree `tid` (read as `tree`), whose subtrees are summarised already.
    fn summary_of(&self, tid: Id, tree: Option<&Tree>) -> Summary {
        let mut s = Summary::default();
        let own: Vec<usize> = self.own_issues(tid).collect();
        if !own.is_empty() {
            s.add(1, own);
        }
        for node in tree.iter().flat_map(|t| &t.nodes) {
            let hit = node_hits(self.iss, tid, node);
            if !hit.is_empty() {
                s.add(1, hit);
            }
            if let Some(sub) = dir_subtree(node).and_then(|id| self.memo.get(&id)) {
                s.add(sub.paths, sub.issues.iter().copied());
            }
        }
        s
    }

    /// Adds snapshot `sid` (with root tree `s.tree`) to `damage`: the issues it is affected by,
    /// its count of damaged paths, and example paths (depth-first, only into subtrees that hold
    /// damage someone still wants named).
    pub fn snapshot(
        &mut self,
        sid: Id,
        s: &Snapshot,
        damage: &mut Damage,
        cancel: &CancelToken,
    ) -> Result<()> {
        let root = self.summarize(s.tree, cancel)?.clone();
        if root.paths == 0 {
            return Ok(());
        }
        let mut named: Vec<String> = Vec::new();
        damage.affects(sid, &root.issues);
        let own: Vec<usize> = self.own_issues(s.tree).collect();
        damage.record("/", &own, &mut named);
        // One level per directory entered: its nodes not visited yet (last first), its tree and
        // the length of `path` for it.
        let mut path = String::new();
        let mut stack: Vec<(Vec<Node>, Id, usize)> = vec![(reversed(self.load(s.tree)), s.tree, 0)];
        while let Some((nodes, tid, len)) = stack.last_mut() {
            let (tid, len) = (*tid, *len);
            let Some(node) = nodes.pop() else {
                stack.pop();
                continue;
            };
            path.truncate(len);
            let here = join(&path, &node.name);
            let hit: Vec<usize> = node_hits(self.iss, tid, &node).into_iter().collect();
            damage.record(&here, &hit, &mut named);
            let Some(sub) = dir_subtree(&node) else {
                continue;
            };
            if !self
                .memo
                .get(&sub)
                .is_some_and(|m| damage.wants(&m.issues, &named))
            {
                continue;
            }
            cancel.check()?;
            let own: Vec<usize> = self.own_issues(sub).collect();
            damage.record(&here, &own, &mut named);
            path = here;
            stack.push((reversed(self.load(sub)), sub, path.len()));
        }
        damage.add(sid, s, named, root.paths);
        Ok(())
    }
}

/// The subtree of a directory node.
fn dir_subtree(node: &Node) -> Option<Id> {
    node.subtree.filter(|_| node.is_dir())
}

/// The subtrees of a tree's directories.
fn subtrees(t: &Tree) -> impl Iterator<Item = Id> + '_ {
    t.nodes.iter().filter_map(dir_subtree)
}

/// A tree's nodes, last first (so that popping them visits them in order); none for `None`.
fn reversed(t: Option<Tree>) -> Vec<Node> {
    let mut v = t.map(|t| t.nodes).unwrap_or_default();
    v.reverse();
    v
}

/// The issues that make `node` of tree `tid` itself damaged: blobs of its content, or its shape.
fn node_hits(iss: &Issues, tid: Id, node: &Node) -> BTreeSet<usize> {
    let mut hit: BTreeSet<usize> = BTreeSet::new();
    if let Some(c) = &node.content {
        for b in c {
            if let Some(is) = iss.bad_blobs.get(&(*b, BlobType::Data)) {
                hit.extend(is);
            }
        }
    }
    if !iss.bad_nodes.is_empty() {
        if let Some(is) = iss.bad_nodes.get(&(tid, node.name.clone())) {
            hit.extend(is);
        }
    }
    hit
}

/// What the damage walk found, gathered per issue and per snapshot.
pub(super) struct Damage {
    /// For each issue, the snapshots and (at most [`MAX_EXAMPLE_PATHS`]) paths it affects.
    per_issue: Vec<(BTreeSet<Id>, BTreeSet<String>)>,
    affected: Vec<AffectedSnapshot>,
}

impl Damage {
    /// Nothing found yet, for `issues` issues.
    pub fn new(issues: usize) -> Damage {
        Damage {
            per_issue: vec![Default::default(); issues],
            affected: Vec::new(),
        }
    }

    /// Snapshot `sid` is affected by `issues`.
    pub fn affects(&mut self, sid: Id, issues: &[usize]) {
        for i in issues {
            self.per_issue[*i].0.insert(sid);
        }
    }

    /// Whether damage concerning `issues` is still worth naming: the snapshot's list (`named`)
    /// or one of those issues' is not full.
    pub fn wants(&self, issues: &[usize], named: &[String]) -> bool {
        !issues.is_empty()
            && (named.len() < MAX_EXAMPLE_PATHS
                || issues
                    .iter()
                    .any(|i| self.per_issue[*i].1.len() < MAX_EXAMPLE_PATHS))
    }

    /// `path` is damaged by `issues` (none: it is not): named on each issue and in the
    /// snapshot's list `named`, where they are not full.
    pub fn record(&mut self, path: &str, issues: &[usize], named: &mut Vec<String>) {
        if issues.is_empty() {
            return;
        }
        for i in issues {
            let paths = &mut self.per_issue[*i].1;
            if paths.len() < MAX_EXAMPLE_PATHS {
                paths.insert(path.to_string());
            }
        }
        if named.len() < MAX_EXAMPLE_PATHS && named.last().map(|l| l.as_str()) != Some(path) {
            named.push(path.to_string());
        }
    }

    /// Snapshot `sid` has `total` damaged paths, `named` of them by name.
    pub fn add(&mut self, sid: Id, s: &Snapshot, mut named: Vec<String>, total: u64) {
        named.sort();
        named.dedup();
        self.affected.push(AffectedSnapshot {
            id: sid,
            time: s.time,
            hostname: s.hostname.clone(),
            paths: s.paths.clone(),
            damaged_paths: named,
            damaged_paths_total: total,
        });
    }

    /// Names on each issue the snapshots (after those it already names) and the paths it
    /// affects (after those it already names); the affected snapshots, in the order they were
    /// added.
    pub fn apply(self, issues: &mut [CheckIssue]) -> Vec<AffectedSnapshot> {
        for (issue, (sn, paths)) in issues.iter_mut().zip(self.per_issue) {
            for s in sn {
                if !issue.snapshots.contains(&s) {
                    issue.snapshots.push(s);
                }
            }
            for p in paths {
                if !issue.paths.contains(&p) {
                    issue.paths.push(p);
                }
            }
        }
        self.affected
    }
}

#[cfg(test)]
mod tests {
    use super::super::issues::Finding;
    use super::super::IssueKind;
    use super::*;
    use crate::repo::tree::kind;

    fn snapshot(time: &str) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "time": time, "tree": Id::hash(b"root"), "paths": ["/x"], "hostname": "h"
        }))
        .unwrap()
    }

    #[test]
    fn a_node_is_hit_by_its_content_and_by_its_own_issues() {
        let (tid, a) = (Id::hash(b"tree"), Id::hash(b"a"));
        let mut iss = Issues::default();
        let f = |k| Finding::new(k, "m".into(), "h");
        iss.add(f(IssueKind::PackMissing).losing([(a, BlobType::Data)]));
        iss.add(f(IssueKind::PackDamaged).losing([(a, BlobType::Data), (a, BlobType::Tree)]));
        iss.add_node(tid, &"f".into(), f(IssueKind::FileSizeMismatch));
        let mut file = Node::new("f", kind::FILE);
        file.content = Some(vec![a]);
        assert_eq!(
            node_hits(&iss, tid, &file).into_iter().collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert!(
            node_hits(&iss, Id::hash(b"other"), &Node::new("f", kind::FILE)).is_empty(),
            "another tree's node of the same name"
        );
    }

    #[test]
    fn damage_is_gathered_per_issue_and_per_snapshot() {
        let (s1, s2) = (Id::hash(b"1"), Id::hash(b"2"));
        let mut d = Damage::new(2);
        let mut named = Vec::new();
        d.affects(s1, &[0, 1]);
        d.record("/a/b", &[0], &mut named);
        d.record("/c", &[1], &mut named);
        d.record("/c", &[0, 1], &mut named);
        d.record("/d", &[], &mut named);
        d.add(s1, &snapshot("2024-01-01T00:00:00Z"), named, 7);
        let mut named = Vec::new();
        d.affects(s2, &[1]);
        d.record("/", &[1], &mut named);
        d.add(s2, &snapshot("2024-01-03T00:00:00Z"), named, 1);
        let issue = |snapshots: Vec<Id>, paths: Vec<String>| CheckIssue {
            kind: IssueKind::PackDamaged,
            message: String::new(),
            pack: None,
            index_file: None,
            blobs: Vec::new(),
            snapshots,
            paths,
            hint: String::new(),
        };
        let mut issues = vec![issue(vec![], vec![]), issue(vec![s2], vec!["/x".into()])];
        let affected = d.apply(&mut issues);
        assert_eq!(issues[0].snapshots, vec![s1]);
        assert_eq!(issues[0].paths, vec!["/a/b", "/c"]);
        assert_eq!(
            issues[1].snapshots,
            vec![s2, s1],
            "those already named first, each once"
        );
        assert_eq!(issues[1].paths, vec!["/x", "/", "/c"], "the same for paths");
        assert_eq!((affected[0].id, affected[1].id), (s1, s2));
        assert_eq!(affected[0].damaged_paths, vec!["/a/b", "/c"]);
        assert_eq!(affected[0].damaged_paths_total, 7);
        assert_eq!(affected[1].damaged_paths, vec!["/"]);
        assert_eq!(affected[1].hostname, "h");
    }

    #[test]
    fn example_paths_are_bounded_per_issue_and_per_snapshot() {
        let mut d = Damage::new(2);
        let mut named = Vec::new();
        for n in 0..MAX_EXAMPLE_PATHS + 5 {
            d.record(&format!("/f{n}"), &[0], &mut named);
        }
        assert_eq!(named.len(), MAX_EXAMPLE_PATHS);
        assert_eq!(d.per_issue[0].1.len(), MAX_EXAMPLE_PATHS);
        assert!(!d.wants(&[0], &named), "both lists are full");
        assert!(d.wants(&[0, 1], &named), "issue 1 still wants paths");
        assert!(!d.wants(&[], &[]), "nothing damaged below");
    }
}
