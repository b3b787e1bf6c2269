//! The issues a check collects, what each damaged blob or malformed node is linked to, and the
//! wording the phases share (an error's reason, plurals, the common hints).

use super::{BlobRef, CheckIssue, IssueKind};
use crate::error::Error;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::tree::Name;
use std::collections::HashMap;

/// What to do about damaged blobs in `pack`: salvage the rest of the pack, then save the
/// snapshots that needed the lost blobs again without the files that held them, then back up.
pub(super) fn hint_lost(pack: Id) -> String {
    format!(
        "the damaged data cannot be recovered from this repository: run `backupctl repair packs \
         {pack}` (it saves the blobs that can still be read into new packs and removes the \
         damaged one), then `backupctl repair snapshots --forget`, then back up the affected \
         files again"
    )
}
pub(super) const HINT_REBUILD_INDEX: &str = "the index does not describe the packs correctly: \
     `backupctl repair index` writes a new index from the pack headers; run `backupctl \
     check` again afterwards";

/// The reason inside an error, without the "run check" hint of `Error::Damaged`.
pub(super) fn reason(e: &Error) -> String {
    match e {
        Error::Damaged { detail, .. } => detail.clone(),
        other => other.to_string(),
    }
}

/// "is" or "are", agreeing with `n`.
pub(super) fn is_are(n: usize) -> &'static str {
    if n == 1 {
        "is"
    } else {
        "are"
    }
}

/// `n` and the noun agreeing with it: "1 blob", "3 blobs".
pub(super) fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A problem as a phase's judgement describes it, before it joins the list of issues.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Finding {
    pub kind: IssueKind,
    pub message: String,
    pub hint: String,
    /// The pack concerned, if any.
    pub pack: Option<Id>,
    /// The blobs damaged or missing because of it.
    pub blobs: Vec<(Id, BlobType)>,
}

impl Finding {
    pub fn new(kind: IssueKind, message: String, hint: impl Into<String>) -> Finding {
        Finding {
            kind,
            message,
            hint: hint.into(),
            pack: None,
            blobs: Vec::new(),
        }
    }

    /// The same finding, about pack `id`.
    pub fn in_pack(mut self, id: Id) -> Finding {
        self.pack = Some(id);
        self
    }

    /// The same finding, making `blobs` damaged.
    pub fn losing(mut self, blobs: impl IntoIterator<Item = (Id, BlobType)>) -> Finding {
        self.blobs.extend(blobs);
        self
    }
}

/// The issues found so far and what each damaged blob or node is linked to.
#[derive(Default)]
pub(super) struct Issues {
    pub list: Vec<CheckIssue>,
    /// Damaged or missing blobs, with the issues that explain them.
    pub bad_blobs: HashMap<(Id, BlobType), Vec<usize>>,
    /// Malformed nodes, by the tree that holds them and their name.
    pub bad_nodes: HashMap<(Id, Name), Vec<usize>>,
}

impl Issues {
    /// Adds the issue `f` describes, linked to its blobs; its number.
    pub fn add(&mut self, f: Finding) -> usize {
        self.list.push(CheckIssue {
            kind: f.kind,
            message: f.message,
            pack: f.pack,
            index_file: None,
            blobs: Vec::new(),
            snapshots: Vec::new(),
            paths: Vec::new(),
            hint: f.hint,
        });
        let i = self.list.len() - 1;
        self.link(i, f.blobs);
        i
    }

    /// Adds the issue `f` describes about the node `name` of tree `tree`.
    pub fn add_node(&mut self, tree: Id, name: &Name, f: Finding) {
        let i = self.add(f);
        self.bad_nodes
            .entry((tree, name.clone()))
            .or_default()
            .push(i);
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

    /// Whether any blob or node is damaged (then the damage report names who uses it).
    pub fn any_damage(&self) -> bool {
        !self.bad_blobs.is_empty() || !self.bad_nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_linked_once_per_issue_and_to_every_issue() {
        let a = (Id::hash(b"a"), BlobType::Data);
        let t = (Id::hash(b"a"), BlobType::Tree);
        let mut iss = Issues::default();
        assert!(!iss.any_damage());
        let f = |m: &str| Finding::new(IssueKind::PackMissing, m.into(), "h");
        let i = iss.add(f("one").in_pack(Id::hash(b"p")).losing([a, a, t]));
        let j = iss.add(f("two").losing([a]));
        assert_eq!(
            iss.list[i].blobs.len(),
            2,
            "a twice is a once; a tree is not a data blob"
        );
        assert_eq!(iss.list[i].pack, Some(Id::hash(b"p")));
        assert_eq!(iss.list[j].pack, None);
        assert_eq!(iss.bad_blobs[&a], vec![i, j]);
        assert_eq!(iss.bad_blobs[&t], vec![i]);
        assert!(iss.any_damage());
    }

    #[test]
    fn node_issues_are_found_by_tree_and_name() {
        let mut iss = Issues::default();
        let tree = Id::hash(b"tree");
        iss.add_node(
            tree,
            &"f".into(),
            Finding::new(IssueKind::NodeInvalid, "m".into(), "h"),
        );
        assert!(iss.any_damage());
        assert_eq!(iss.bad_nodes[&(tree, Name::from("f"))], vec![0]);
        assert!(iss.list[0].blobs.is_empty());
    }

    #[test]
    fn wording() {
        assert_eq!(plural(1, "blob", "blobs"), "1 blob");
        assert_eq!(plural(0, "blob", "blobs"), "0 blobs");
        assert_eq!((is_are(1), is_are(2)), ("is", "are"));
    }
}
