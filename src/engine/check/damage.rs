//! The damage report: a memoized walk of the snapshots' trees that names the paths using
//! damaged or missing blobs or malformed nodes, gathered per issue and per snapshot.

use super::issues::Issues;
use super::packs::OrphanBlobs;
use super::read::load_orphan_tree;
use super::{AffectedSnapshot, CheckIssue};
use crate::cancel::CancelToken;
use crate::error::Result;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Node;
use crate::repo::Repository;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// Paths relative to a tree ("" for the tree itself) that are damaged, each with the issue
/// concerned.
pub(super) type Found = Rc<Vec<(String, usize)>>;

/// Walks trees once each (memoized), collecting for every tree the relative paths below it that
/// use damaged blobs or are malformed, with the issues concerned.
pub(super) struct DamageWalk<'a> {
    repo: &'a Repository,
    iss: &'a Issues,
    orphans: &'a OrphanBlobs,
    memo: HashMap<Id, Found>,
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

    /// What is damaged in tree `tid` and below it.
    pub fn tree(&mut self, tid: Id, cancel: &CancelToken) -> Result<Found> {
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
        for node in tree.iter().flat_map(|t| &t.nodes) {
            let hit = node_hits(self.iss, tid, node);
            out.extend(hit.into_iter().map(|i| (node.name.clone(), i)));
            if let Some(s) = node.subtree.filter(|_| node.is_dir()) {
                let sub = self.tree(s, cancel)?;
                out.extend(sub.iter().map(|(rel, i)| (below(&node.name, rel), *i)));
            }
        }
        let out = Rc::new(out);
        self.memo.insert(tid, out.clone());
        Ok(out)
    }
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

/// The path `rel` (relative to directory `dir`, "" for the directory itself) relative to the tree
/// holding `dir`.
fn below(dir: &str, rel: &str) -> String {
    if rel.is_empty() {
        dir.to_string()
    } else {
        format!("{dir}/{rel}")
    }
}

/// What the damage walk found, gathered per issue and per snapshot.
pub(super) struct Damage {
    /// For each issue, the snapshots and paths it affects.
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

    /// Snapshot `sid` has the damage `found` (paths relative to its root tree).
    pub fn add(&mut self, sid: Id, s: &Snapshot, found: &[(String, usize)]) {
        if found.is_empty() {
            return;
        }
        let mut paths = BTreeSet::new();
        for (rel, i) in found {
            let p = format!("/{rel}");
            self.per_issue[*i].0.insert(sid);
            self.per_issue[*i].1.insert(p.clone());
            paths.insert(p);
        }
        self.affected.push(AffectedSnapshot {
            id: sid,
            time: s.time,
            hostname: s.hostname.clone(),
            paths: s.paths.clone(),
            damaged_paths: paths.into_iter().collect(),
        });
    }

    /// Names on each issue the snapshots (after those it already names) and the paths it
    /// affects; the affected snapshots, in the order they were added.
    pub fn apply(self, issues: &mut [CheckIssue]) -> Vec<AffectedSnapshot> {
        for (issue, (sn, paths)) in issues.iter_mut().zip(self.per_issue) {
            for s in sn {
                if !issue.snapshots.contains(&s) {
                    issue.snapshots.push(s);
                }
            }
            issue.paths = paths.into_iter().collect();
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
        iss.add_node(tid, "f", f(IssueKind::FileSizeMismatch));
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
    fn paths_below_a_directory() {
        assert_eq!(below("d", ""), "d");
        assert_eq!(below("d", "e/f"), "d/e/f");
    }

    #[test]
    fn damage_is_gathered_per_issue_and_per_snapshot() {
        let (s1, s2, s3) = (Id::hash(b"1"), Id::hash(b"2"), Id::hash(b"3"));
        let mut d = Damage::new(2);
        d.add(
            s1,
            &snapshot("2024-01-01T00:00:00Z"),
            &[("a/b".into(), 0), ("c".into(), 1)],
        );
        d.add(s2, &snapshot("2024-01-02T00:00:00Z"), &[]);
        d.add(
            s3,
            &snapshot("2024-01-03T00:00:00Z"),
            &[("c".into(), 1), ("".into(), 1)],
        );
        let issue = |snapshots: Vec<Id>| CheckIssue {
            kind: IssueKind::PackDamaged,
            message: String::new(),
            pack: None,
            index_file: None,
            blobs: Vec::new(),
            snapshots,
            paths: vec!["stale".into()],
            hint: String::new(),
        };
        let mut issues = vec![issue(vec![]), issue(vec![s3])];
        let affected = d.apply(&mut issues);
        assert_eq!(issues[0].snapshots, vec![s1]);
        assert_eq!(issues[0].paths, vec!["/a/b"]);
        assert_eq!(
            issues[1].snapshots,
            vec![s3, s1],
            "those already named first, each once"
        );
        assert_eq!(issues[1].paths, vec!["/", "/c"]);
        assert_eq!(
            affected.len(),
            2,
            "a snapshot without damage is not affected"
        );
        assert_eq!((affected[0].id, affected[1].id), (s1, s3));
        assert_eq!(affected[0].damaged_paths, vec!["/a/b", "/c"]);
        assert_eq!(affected[1].damaged_paths, vec!["/", "/c"]);
        assert_eq!(affected[1].hostname, "h");
    }
}
