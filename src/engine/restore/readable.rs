//! Whether a snapshot restores completely, decided before anything is written (`restore --newest-valid`): every tree and data blob below the path reads back and verifies.
//!
//! Every blob is read through the index from the storage and verified (MAC and SHA-256), as the
//! restore reads it; so a valid snapshot costs a second read of its data. What the files are
//! (a snapshot of one SQLite database is checked further by `sources::sqlite`) is not known
//! here: the verdict lists the files it read.

use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::Repository;
use std::collections::HashSet;

/// What reading a snapshot back found.
#[derive(Debug, Clone, PartialEq)]
pub enum Readable {
    /// Everything reads back: the regular files below the path, with their data blobs.
    Whole(Vec<(String, Vec<Id>)>),
    /// Why it cannot be restored completely.
    Not(String),
}

/// Reads back every tree and data blob of `snap` below `sub_path`.
pub fn read_back(
    repo: &Repository,
    snap: &Snapshot,
    sub_path: Option<&str>,
    cancel: &CancelToken,
) -> Result<Readable> {
    let root = match super::super::walk::find_node(repo, &snap.tree, sub_path.unwrap_or("/")) {
        Ok(Some(n)) => n,
        Ok(None) => {
            return Ok(Readable::Not(format!(
                "it holds no {}",
                sub_path.unwrap_or("/")
            )))
        }
        Err(e) => return judged(e, ""),
    };
    let mut files: Vec<(String, Vec<Id>)> = Vec::new();
    if let Some(t) = &root.subtree {
        let mut visit = |path: &str, n: &crate::repo::tree::Node| {
            cancel.check()?;
            if n.is_file() {
                files.push((path.to_string(), n.content.clone().unwrap_or_default()));
            }
            Ok(true)
        };
        if let Err(e) = super::super::walk::walk_tree(repo, t, "", &mut visit) {
            return judged(e, "");
        }
    } else if root.is_file() {
        files.push((
            root.name.to_string(),
            root.content.clone().unwrap_or_default(),
        ));
    }
    // A blob several files share is read once.
    let mut seen: HashSet<Id> = HashSet::new();
    for (path, blobs) in &files {
        for id in blobs.iter().filter(|id| seen.insert(**id)) {
            cancel.check()?;
            if let Err(e) = repo.load_blob(id, BlobType::Data) {
                return judged(e, path);
            }
        }
    }
    Ok(Readable::Whole(files))
}

/// Damage is a verdict (at `path`, when it is a file's); anything else (an interruption, an
/// unreachable storage) is an error.
fn judged(e: Error, path: &str) -> Result<Readable> {
    match e {
        Error::Damaged { .. } | Error::SnapshotDamaged { .. } | Error::TreeTooDeep { .. } => {
            Ok(Readable::Not(match path {
                "" => e.to_string(),
                p => format!("{p}: {e}"),
            }))
        }
        e => Err(e),
    }
}
