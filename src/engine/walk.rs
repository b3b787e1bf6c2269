//! Walking the trees of snapshots: visiting nodes by path, and collecting the blobs they reference.

use crate::error::Result;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::tree::Node;
use crate::repo::Repository;
use std::collections::HashSet;

/// Whether a node's name is one restore can create: not empty, `.` or `..`, without `/` or NUL
/// (check reports every other name as invalid, so that it is never quieter than restore).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('\0')
}

/// Joins a tree path and a node name with `/` (the root is "").
pub fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Visits every node below `tree` depth-first in name order, with its path ("/a/b"). The visitor
/// returns whether to descend into a directory.
pub fn walk_tree(
    repo: &Repository,
    tree: &Id,
    prefix: &str,
    visit: &mut dyn FnMut(&str, &Node) -> Result<bool>,
) -> Result<()> {
    let t = repo.load_tree(tree)?;
    for node in &t.nodes {
        let path = join(prefix, &node.name);
        let descend = visit(&path, node)?;
        if descend && node.is_dir() {
            if let Some(sub) = &node.subtree {
                walk_tree(repo, sub, &path, visit)?;
            }
        }
    }
    Ok(())
}

/// Finds the node at `path` ("/a/b") below `tree`; `None` if there is none. The root ("" or "/")
/// is returned as a synthetic directory node whose subtree is `tree`.
pub fn find_node(repo: &Repository, tree: &Id, path: &str) -> Result<Option<Node>> {
    let mut cur = *tree;
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        let mut n = Node::new("", crate::repo::tree::kind::DIR);
        n.subtree = Some(*tree);
        return Ok(Some(n));
    }
    for (i, part) in parts.iter().enumerate() {
        let t = repo.load_tree(&cur)?;
        let Some(n) = t.find(part) else {
            return Ok(None);
        };
        if i + 1 == parts.len() {
            return Ok(Some(n.clone()));
        }
        match (&n.subtree, n.is_dir()) {
            (Some(s), true) => cur = *s,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Every blob reachable from the given trees (each tree read once).
pub fn referenced_blobs(
    repo: &Repository,
    roots: impl IntoIterator<Item = Id>,
) -> Result<HashSet<(Id, BlobType)>> {
    let mut seen: HashSet<(Id, BlobType)> = HashSet::new();
    let mut stack: Vec<Id> = Vec::new();
    for r in roots {
        if seen.insert((r, BlobType::Tree)) {
            stack.push(r);
        }
    }
    while let Some(id) = stack.pop() {
        let t = repo.load_tree(&id)?;
        for n in &t.nodes {
            if let Some(c) = &n.content {
                for b in c {
                    seen.insert((*b, BlobType::Data));
                }
            }
            if let Some(s) = n.subtree {
                if seen.insert((s, BlobType::Tree)) {
                    stack.push(s);
                }
            }
        }
    }
    Ok(seen)
}
