//! Editing snapshot trees: each tree saved again without the nodes a [`Rule`] leaves out, walked once per path (snapshots share most of their trees), the new trees collected for one commit; `repair snapshots` and `rewrite` are two rules.

use crate::engine::walk::join;
use crate::error::Result;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::tree::{too_deep, Node, Tree, MAX_TREE_DEPTH};
use crate::repo::Repository;
use std::collections::{HashMap, HashSet};

/// What an edit leaves out.
pub trait Rule: Send + Sync {
    /// Whether the node at `path` ("/a/b") is left out.
    fn leave_out(&self, path: &str, n: &Node) -> bool;
    /// Whether a folder whose tree cannot be loaded is kept, empty (repair), rather than the
    /// edit failing (rewrite).
    fn empties_lost_folders(&self) -> bool;
}

/// A tree as edited: its id (the same when nothing was left out), the paths left out below it
/// (a folder whose listing was lost as `/a/c/`), and the regular files and bytes it keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Edited {
    pub id: Id,
    pub removed: Vec<String>,
    pub files: u64,
    pub bytes: u64,
}

/// Walks and edits trees under one rule, collecting the trees it makes.
pub struct Editor<'a, R: Rule> {
    repo: &'a Repository,
    rule: R,
    memo: HashMap<(Id, String), Edited>,
    new_trees: Vec<(Id, Vec<u8>)>,
    pending: HashSet<Id>,
}

impl<'a, R: Rule> Editor<'a, R> {
    pub fn new(repo: &'a Repository, rule: R) -> Editor<'a, R> {
        Editor {
            repo,
            rule,
            memo: HashMap::new(),
            new_trees: Vec::new(),
            pending: HashSet::new(),
        }
    }

    /// The snapshot tree `root` as edited (walked on a deep stack).
    pub fn edit_root(&mut self, root: Id) -> Result<Edited> {
        crate::engine::walk::on_deep_stack(|| self.edit(root, "", 0))
    }

    /// The trees the edits made that the repository lacks, each once.
    pub fn into_new_trees(self) -> Vec<(Id, Vec<u8>)> {
        self.new_trees
    }

    fn edit(&mut self, id: Id, path: &str, depth: usize) -> Result<Edited> {
        let key = (id, path.to_string());
        if let Some(e) = self.memo.get(&key) {
            return Ok(e.clone());
        }
        if depth > MAX_TREE_DEPTH {
            return Err(too_deep(path));
        }
        let edited = match self.load(&id)? {
            Some(tree) => self.edit_nodes(id, tree, path, depth)?,
            None => Edited {
                id: self.store(Tree::default()),
                removed: vec![format!("{path}/")],
                ..Edited::default()
            },
        };
        self.memo.insert(key, edited.clone());
        Ok(edited)
    }

    /// The tree `id`; `None` if it is lost and the rule empties lost folders.
    fn load(&self, id: &Id) -> Result<Option<Tree>> {
        if !self.rule.empties_lost_folders() {
            return self.repo.load_tree(id).map(Some);
        }
        Ok(match self.repo.index().has(id, BlobType::Tree) {
            true => self.repo.load_tree(id).ok(),
            false => None,
        })
    }

    fn edit_nodes(&mut self, id: Id, tree: Tree, path: &str, depth: usize) -> Result<Edited> {
        let mut out = Edited::default();
        let mut kept = Vec::with_capacity(tree.nodes.len());
        for mut n in tree.nodes {
            let p = join(path, &n.name);
            if self.rule.leave_out(&p, &n) {
                out.removed.push(p);
                continue;
            }
            if let Some(sub) = n.subtree {
                let e = self.edit(sub, &p, depth + 1)?;
                out.removed.extend(e.removed);
                (out.files, out.bytes) = (out.files + e.files, out.bytes + e.bytes);
                n.subtree = Some(e.id);
            } else if n.is_file() {
                (out.files, out.bytes) = (out.files + 1, out.bytes + n.size);
            }
            kept.push(n);
        }
        // A subtree changes only when something below it is left out.
        out.id = match out.removed.is_empty() {
            true => id,
            false => self.store(Tree { nodes: kept }),
        };
        Ok(out)
    }

    fn store(&mut self, mut t: Tree) -> Id {
        t.sort();
        let bytes = t.serialize();
        let id = Id::hash(&bytes);
        if !self.repo.index().has(&id, BlobType::Tree) && self.pending.insert(id) {
            self.new_trees.push((id, bytes));
        }
        id
    }
}

/// Stores `trees` in new packs and indexes them (before any snapshot names them).
pub fn save_trees(repo: &mut Repository, trees: &[(Id, Vec<u8>)]) -> Result<()> {
    let mut packer = crate::engine::packer::Packer::new(repo);
    for (id, bytes) in trees {
        packer.add(*id, BlobType::Tree, bytes)?;
    }
    packer.commit()
}
