//! Sizes and counts of snapshots and of the repository (as restic's `stats`).
//!
//! Modes:
//! - `restore-size`: every node of every snapshot (files, directories, links, ...) and the bytes
//!   a restore would write; hard links (same inode and device in one snapshot) count once.
//! - `files-by-contents`: files with distinct content across the snapshots and their sizes.
//!   Unlike restic 0.14, only files count (restic also counts one "file" for all the
//!   directories, links and other nodes, which share its empty-content key).
//! - `raw-data`: the distinct blobs (data and tree) the snapshots reference: their stored size
//!   (compressed and encrypted, `total_size`, as restic), their plaintext size, the
//!   compression ratio and the space saving.

use super::walk::{join, on_deep_stack, referenced_blobs};
use crate::cancel::{CancelToken, Progress};
use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::tree::{kind, too_deep, MAX_TREE_DEPTH};
use crate::repo::Repository;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// What `stats` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    RestoreSize,
    FilesByContents,
    RawData,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::RestoreSize => "restore-size",
            Mode::FilesByContents => "files-by-contents",
            Mode::RawData => "raw-data",
        }
    }

    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "restore-size" => Ok(Mode::RestoreSize),
            "files-by-contents" => Ok(Mode::FilesByContents),
            "raw-data" => Ok(Mode::RawData),
            _ => Err(Error::Input(format!(
                "unknown stats mode {s:?}\n  hint: use --mode restore-size, files-by-contents or raw-data"
            ))),
        }
    }
}

/// Totals of the whole repository, whatever the selected snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepoTotals {
    /// Pack files in the repository and their bytes on disk.
    pub packs: u64,
    pub pack_bytes: u64,
    /// Index files, and the blobs they name.
    pub index_files: u64,
    pub blobs: u64,
    /// Snapshots in the repository (all of them, not only the selected ones).
    pub snapshots: u64,
}

/// The result of `stats`. Field names follow restic's JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub mode: &'static str,
    /// restore-size and files-by-contents: file bytes; raw-data: stored (packed) blob bytes.
    pub total_size: u64,
    pub total_file_count: u64,
    /// raw-data: distinct blobs referenced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_blob_count: Option<u64>,
    /// raw-data: what those blobs would take stored uncompressed (plaintext and crypto
    /// overhead), as restic counts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_uncompressed_size: Option<u64>,
    /// raw-data: of the compressed blobs, uncompressed size / stored size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_ratio: Option<f64>,
    /// raw-data: percent of the plaintext bytes that are stored compressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_progress: Option<f64>,
    /// raw-data: percent saved, 100 * (1 - stored / uncompressed size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_space_saving: Option<f64>,
    /// How many snapshots were counted.
    pub snapshots_count: u64,
    pub repository: RepoTotals,
}

/// Counts the repository as a whole: packs (with their sizes on disk), index files, indexed
/// blobs and snapshots. The index must be loaded.
pub fn repo_totals(repo: &Repository) -> Result<RepoTotals> {
    let be = repo.backend();
    let packs = be.list(FileType::Pack)?;
    Ok(RepoTotals {
        packs: packs.len() as u64,
        pack_bytes: packs.iter().map(|(_, s)| *s).sum(),
        index_files: be.list(FileType::Index)?.len() as u64,
        blobs: repo.index().blob_count() as u64,
        snapshots: be.list(FileType::Snapshot)?.len() as u64,
    })
}

/// One tree's restore-size totals, reusable wherever the tree appears again unless something
/// below it is hard-linked (then the inode bookkeeping must see every node).
#[derive(Clone, Copy)]
struct TreeSize {
    nodes: u64,
    bytes: u64,
    has_links: bool,
}

struct Counter<'a> {
    repo: &'a Repository,
    cancel: &'a CancelToken,
    /// restore-size: totals of trees already counted.
    sizes: HashMap<Id, TreeSize>,
    /// restore-size: (inode, device) of hard-linked files seen in the current snapshot.
    inodes: HashSet<(u64, u64)>,
    /// files-by-contents: content keys seen, and trees already walked.
    contents: HashSet<[u8; 32]>,
    trees_seen: HashSet<Id>,
    files: u64,
    bytes: u64,
}

impl Counter<'_> {
    /// Counts the snapshots whose root trees are `trees`, in a tree-walking `mode`.
    fn count(&mut self, trees: &[Id], mode: Mode) -> Result<()> {
        for t in trees {
            if mode == Mode::RestoreSize {
                self.inodes.clear();
                let s = self.restore_size(t, "", 0)?;
                self.files += s.nodes;
                self.bytes += s.bytes;
            } else {
                self.by_contents(t, "", 0)?;
            }
        }
        Ok(())
    }

    /// The totals of `tree`, the directory at `path` ("" for a root); a path of more than
    /// `MAX_TREE_DEPTH` names is refused.
    fn restore_size(&mut self, tree: &Id, path: &str, depth: usize) -> Result<TreeSize> {
        if let Some(s) = self.sizes.get(tree) {
            if !s.has_links {
                return Ok(*s);
            }
        }
        self.cancel.check()?;
        let t = self.repo.load_tree(tree)?;
        let mut s = TreeSize {
            nodes: 0,
            bytes: 0,
            has_links: false,
        };
        if depth >= MAX_TREE_DEPTH && !t.nodes.is_empty() {
            return Err(too_deep(&join(path, &t.nodes[0].name)));
        }
        for n in &t.nodes {
            s.nodes += 1;
            if n.inode != 0 && n.links > 1 && !n.is_dir() {
                s.has_links = true;
                if self.inodes.insert((n.inode, n.device_id)) {
                    s.bytes += n.size;
                }
            } else {
                s.bytes += n.size;
            }
            if n.is_dir() {
                if let Some(sub) = n.subtree {
                    let c = self.restore_size(&sub, &join(path, &n.name), depth + 1)?;
                    s.nodes += c.nodes;
                    s.bytes += c.bytes;
                    s.has_links |= c.has_links;
                }
            }
        }
        self.sizes.insert(*tree, s);
        Ok(s)
    }

    /// Counts the files below `tree`, the directory at `path` (as [`Counter::restore_size`]).
    fn by_contents(&mut self, tree: &Id, path: &str, depth: usize) -> Result<()> {
        if !self.trees_seen.insert(*tree) {
            return Ok(()); // every file below was counted already
        }
        self.cancel.check()?;
        let t = self.repo.load_tree(tree)?;
        if depth >= MAX_TREE_DEPTH && !t.nodes.is_empty() {
            return Err(too_deep(&join(path, &t.nodes[0].name)));
        }
        for n in &t.nodes {
            if n.kind == kind::FILE {
                let mut h = Sha256::new();
                for b in n.content.iter().flatten() {
                    h.update(b.0);
                }
                if self.contents.insert(h.finalize().into()) {
                    self.files += 1;
                    self.bytes += n.size;
                }
            } else if let (true, Some(sub)) = (n.is_dir(), n.subtree) {
                self.by_contents(&sub, &join(path, &n.name), depth + 1)?;
            }
        }
        Ok(())
    }
}

/// Counts the snapshots whose root trees are `trees` in `mode`, plus the repository totals.
/// The index must be loaded.
pub fn compute(
    repo: &Repository,
    trees: &[Id],
    mode: Mode,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Stats> {
    let mut st = Stats {
        mode: mode.as_str(),
        snapshots_count: trees.len() as u64,
        ..Default::default()
    };
    let mut c = Counter {
        repo,
        cancel,
        sizes: HashMap::new(),
        inodes: HashSet::new(),
        contents: HashSet::new(),
        trees_seen: HashSet::new(),
        files: 0,
        bytes: 0,
    };
    match mode {
        Mode::RestoreSize | Mode::FilesByContents => {
            // A spinner: the bars count bytes, and snapshots vary too much in size to count.
            progress.phase("scanning", None);
            // The walks recurse once per level: on a stack made for `MAX_TREE_DEPTH` levels.
            on_deep_stack(|| c.count(trees, mode))?;
            st.total_file_count = c.files;
            st.total_size = c.bytes;
        }
        Mode::RawData => {
            progress.phase("scanning", None);
            let blobs = referenced_blobs(repo, trees.iter().copied())?;
            cancel.check()?;
            // As restic 0.19 counts: a blob's uncompressed size is that of its ciphertext had
            // it not been compressed (its plaintext and the crypto overhead), and the ratio is
            // over the compressed blobs only.
            let (mut stored, mut plain) = (0u64, 0u64);
            let (mut compressed_stored, mut compressed_plain) = (0u64, 0u64);
            for (id, tpe) in &blobs {
                let loc = repo.index().get(id, *tpe).ok_or_else(|| {
                    Error::damaged(
                        format!("{} blob {}", tpe.as_str(), id.short()),
                        "a snapshot references it but it is not in the index",
                    )
                })?;
                stored += loc.blob.length as u64;
                let p = (loc.blob.data_length() as usize + crate::repo::crypto::OVERHEAD) as u64;
                plain += p;
                if loc.blob.uncompressed_length.is_some() {
                    compressed_stored += loc.blob.length as u64;
                    compressed_plain += p;
                }
            }
            st.total_blob_count = Some(blobs.len() as u64);
            st.total_size = stored;
            st.total_uncompressed_size = Some(plain);
            if compressed_stored > 0 {
                st.compression_ratio = Some(compressed_plain as f64 / compressed_stored as f64);
            }
            if plain > 0 {
                st.compression_progress = Some(compressed_plain as f64 / plain as f64 * 100.0);
                st.compression_space_saving = Some((1.0 - stored as f64 / plain as f64) * 100.0);
            }
        }
    }
    st.repository = repo_totals(repo)?;
    Ok(st)
}
