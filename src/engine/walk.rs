//! Walking the trees of snapshots: visiting nodes by path, and collecting the blobs they reference.

use crate::error::Result;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::tree::{too_deep, Node, MAX_TREE_DEPTH};
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

/// How many names `path` ("/a/b", or "" for the root) has.
pub fn depth_of(path: &str) -> usize {
    path.split('/').filter(|p| !p.is_empty()).count()
}

/// Visits every node below `tree` (the directory at `prefix`) depth-first in name order, with its
/// path ("/a/b"). The visitor returns whether to descend into a directory. Iterates with an
/// explicit stack; a path of more than [`MAX_TREE_DEPTH`] names is refused.
pub fn walk_tree(
    repo: &Repository,
    tree: &Id,
    prefix: &str,
    visit: &mut dyn FnMut(&str, &Node) -> Result<bool>,
) -> Result<()> {
    let base = depth_of(prefix);
    // One level per directory entered: its nodes not visited yet (last first) and its path.
    let mut stack: Vec<(Vec<Node>, String)> =
        vec![(reversed(repo.load_tree(tree)?), prefix.into())];
    loop {
        let depth = base + stack.len();
        let Some((nodes, dir)) = stack.last_mut() else {
            return Ok(());
        };
        let Some(node) = nodes.pop() else {
            stack.pop();
            continue;
        };
        let path = join(dir, &node.name);
        if depth > MAX_TREE_DEPTH {
            return Err(too_deep(&path));
        }
        if visit(&path, &node)? && node.is_dir() {
            if let Some(sub) = &node.subtree {
                stack.push((reversed(repo.load_tree(sub)?), path));
            }
        }
    }
}

/// A tree's nodes, last first (so that popping them visits them in order).
fn reversed(t: crate::repo::tree::Tree) -> Vec<Node> {
    let mut v = t.nodes;
    v.reverse();
    v
}

/// The stack, in bytes, of the threads that run the walks still recursing (restore's plan,
/// diff, stats): enough for [`MAX_TREE_DEPTH`] levels in a debug build, whatever thread (the
/// main thread's 8 MiB, a Tokio blocking thread's 2 MiB) calls them.
const DEEP_STACK: usize = 64 << 20;

/// Runs `f` on a thread of its own with a `DEEP_STACK` (64 MiB) stack, and returns what it returns (a
/// panic in it is re-raised here).
pub fn on_deep_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("tree-walk".into())
            .stack_size(DEEP_STACK)
            .spawn_scoped(s, f)
            .expect("a thread can be started (as the file workers are)");
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
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
