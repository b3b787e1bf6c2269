//! What a check reports: its options, the issues found (what, where, what they affect, what to
//! do), the packs no index names and the snapshots that use damaged data.

use super::ReadData;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

/// What `check` does.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub read_data: ReadData,
}

/// What kind of problem an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// An index file cannot be read, decrypted or parsed.
    IndexDamaged,
    /// A pack named by the index does not exist.
    PackMissing,
    /// A pack's header cannot be read or decrypted.
    PackHeaderDamaged,
    /// A pack's header and the index entries for it disagree.
    PackIndexMismatch,
    /// A pack's size is not what its header implies.
    PackSizeMismatch,
    /// Read-data: a pack's content does not match its name, or blobs in it cannot be read.
    PackDamaged,
    /// A snapshot file cannot be read, decrypted or parsed.
    SnapshotDamaged,
    /// A tree blob cannot be loaded or parsed.
    TreeDamaged,
    /// Blobs used by snapshots are in no index.
    BlobsNotIndexed,
    /// A file's recorded size differs from the length of its content.
    FileSizeMismatch,
    /// A node is malformed (a directory without subtree, a file without content list).
    NodeInvalid,
    /// A directory has the name of a symbolic link in the same tree: restore would write its
    /// entries through the link (it refuses them).
    NodeUnderSymlink,
    /// A snapshot's tree is deeper than `MAX_TREE_DEPTH`: restore, ls, diff and stats refuse it.
    TreeTooDeep,
}

/// A blob named in an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BlobRef {
    pub id: Id,
    #[serde(rename = "type")]
    pub tpe: BlobType,
}

/// One problem found: what, where, and what it affects.
#[derive(Debug, Clone, Serialize)]
pub struct CheckIssue {
    pub kind: IssueKind,
    /// What failed, where and why (one line).
    pub message: String,
    /// The pack concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<Id>,
    /// The index file concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_file: Option<Id>,
    /// The blobs damaged or missing because of this problem.
    pub blobs: Vec<BlobRef>,
    /// Snapshots that use what is damaged (or are themselves damaged).
    pub snapshots: Vec<Id>,
    /// File and directory paths (as stored in the snapshots) that use what is damaged: at most
    /// `check::MAX_EXAMPLE_PATHS` of them.
    pub paths: Vec<String>,
    /// What to do about it.
    pub hint: String,
}

/// A pack that no index names: not an error (prune removes it), unless snapshots need its blobs.
#[derive(Debug, Clone, Serialize)]
pub struct OrphanedPack {
    pub id: Id,
    pub size: u64,
    /// Blobs its header lists (`None` when the header cannot be read).
    pub blobs: Option<usize>,
    /// Blobs in it that snapshots use but no index names: pruning it would lose them.
    pub needed_blobs: usize,
    /// Read-data found it damaged (why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// A snapshot that uses damaged or missing data, and the paths in it that do.
#[derive(Debug, Clone, Serialize)]
pub struct AffectedSnapshot {
    pub id: Id,
    pub time: DateTime<FixedOffset>,
    pub hostname: String,
    /// The paths the snapshot backed up.
    pub paths: Vec<String>,
    /// The files and directories in it that are damaged (at most
    /// `check::MAX_EXAMPLE_PATHS`, sorted).
    pub damaged_paths: Vec<String>,
    /// How many paths in it are damaged (a path is counted once for each directory entry that
    /// leads to it).
    pub damaged_paths_total: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, Serialize, Default)]
pub struct CheckReport {
    pub snapshots: u64,
    /// Distinct trees loaded.
    pub trees: u64,
    /// Distinct data blobs referenced by the trees.
    pub data_blobs: u64,
    pub index_files: u64,
    /// Distinct blobs in the index.
    pub indexed_blobs: u64,
    pub packs_listed: u64,
    /// Packs read whole (read-data).
    pub packs_read: u64,
    /// The packs read whole (whatever they held), sorted.
    #[serde(skip)]
    pub packs_read_ids: Vec<Id>,
    pub bytes_read: u64,
    /// What read-data selected: "none", "all", "10%", "1/5".
    pub read_data: String,
    pub errors: Vec<CheckIssue>,
    pub orphaned_packs: Vec<OrphanedPack>,
    pub affected_snapshots: Vec<AffectedSnapshot>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}
