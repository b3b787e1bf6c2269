//! Restoring a snapshot (or a path in it) into a directory, atomically and verified.
//!
//! How it works:
//! 1. **Plan** (one thread): walk the snapshot's trees below the chosen path, apply
//!    `--include/--exclude`, refuse unsafe node names, and list the entries in depth-first order.
//! 2. **Execute**: the calling thread creates directories, symlinks, FIFOs and device nodes and
//!    deletes extra entries (`--delete`); 2–4 worker threads restore regular files. Every
//!    operation is relative to a directory file descriptor opened with `O_NOFOLLOW`, so nothing
//!    is ever written through a symbolic link in the target, and paths cannot leave the target.
//! 3. A file is written to a temp name in its directory (`fsutil::temp_path_for`), blob by blob
//!    (each blob's SHA-256 verified), then owner, mode and times are set. On Linux the files of a
//!    restore are then made durable together (one `syncfs` per file system, instead of one
//!    fsync per file) and only then renamed over their destinations; elsewhere each file is
//!    fsynced and renamed on its own. No file appears under its final name before its content
//!    is on disk. A damaged blob leaves the destination untouched.
//! 4. Hard links are made once their first name is restored; then directories get their
//!    metadata (deepest first, after their contents) and are fsynced.
//!
//! When the snapshot has a manifest (`repo::manifest`, a backup with `manifest = true`), its
//! folder `/.backupd` is not restored unless asked for (`--include`, or a path in it), and every
//! regular file the restore put in place (written, or kept as unchanged) is read back from the
//! target and its SHA-256 compared with the manifest's: a mismatch is damage, reported with
//! the file's path (`exit::DAMAGED`). This costs one more read of the restored bytes.
//!
//! `--overwrite if-changed` keeps an existing regular file when its size and content are the
//! snapshot's: the file is read in the snapshot's blob boundaries and each piece's SHA-256 is
//! compared with the blob id (mtime alone is never trusted). Its owner, mode and times are then
//! set to the snapshot's without rewriting the content.

use crate::cancel::{CancelToken, Progress};
use crate::error::{exit, Error, Result};
use crate::fsutil;
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::manifest::{self, Manifest};
use crate::repo::pack::{self, BlobType};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{kind, too_deep, Name, Node, MAX_TREE_DEPTH};
use crate::repo::Repository;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The tag of a safety snapshot: what `backupctl restore` backs up before it replaces or
/// deletes anything. A safety snapshot is an undo point, not a backup: restore drills pass it
/// over and keep policies treat it by its own rule (`engine::forget`; docs/restore.md).
pub const SAFETY_TAG: &str = "pre-restore";

/// Whether a snapshot is a safety snapshot (tag [`SAFETY_TAG`]).
pub fn is_safety_snapshot(s: &Snapshot) -> bool {
    s.has_tag(SAFETY_TAG)
}

/// When an entry that already exists in the target is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Overwrite {
    /// Always replace (the default).
    #[default]
    Always,
    /// Replace when the type, size or content differs (see the module docs).
    IfChanged,
    /// Replace when the snapshot's mtime is newer than the existing entry's.
    IfNewer,
    /// Never replace an existing entry.
    Never,
}

impl Overwrite {
    pub fn as_str(self) -> &'static str {
        match self {
            Overwrite::Always => "always",
            Overwrite::IfChanged => "if-changed",
            Overwrite::IfNewer => "if-newer",
            Overwrite::Never => "never",
        }
    }
}

impl std::str::FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Overwrite, String> {
        match s {
            "always" => Ok(Overwrite::Always),
            "if-changed" => Ok(Overwrite::IfChanged),
            "if-newer" => Ok(Overwrite::IfNewer),
            "never" => Ok(Overwrite::Never),
            _ => Err(format!(
                "invalid overwrite mode {s:?}: use always, if-changed, if-newer or never"
            )),
        }
    }
}

/// What to restore, where, and how.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The directory to restore into (created unless `dry_run`).
    pub target: PathBuf,
    /// Restore only this path of the snapshot ("/a/b"): a directory's contents go directly into
    /// `target`, a single file or other entry becomes `target/<name>`.
    pub sub_path: Option<String>,
    /// Glob patterns matched against the snapshot path ("/a/b/c"); a pattern without a leading
    /// `/` matches at any depth. An entry is restored if it or one of its ancestors matches (the
    /// directories leading to it are created). Empty: everything.
    pub includes: Vec<String>,
    /// Like `includes`; a matching entry and everything below it is not restored.
    pub excludes: Vec<String>,
    /// Change nothing; report what would be done.
    pub dry_run: bool,
    pub overwrite: Overwrite,
    /// In every restored directory (one that is itself selected, not only a parent of selected
    /// entries), remove entries whose names are not in the snapshot's directory.
    pub delete: bool,
}

impl RestoreOptions {
    pub fn new(target: impl Into<PathBuf>) -> RestoreOptions {
        RestoreOptions {
            target: target.into(),
            ..Default::default()
        }
    }
}

/// An entry that was not restored because of the overwrite mode.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// An error or warning about one entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EntryIssue {
    /// The destination path (or, for entries refused while planning, the snapshot path).
    pub path: String,
    pub message: String,
    /// The repository's data for it is damaged or missing.
    pub damaged: bool,
}

/// One thing a dry run would do.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Action {
    /// "create", "replace", "delete" or "update" (metadata only).
    pub action: &'static str,
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
}

/// What a restore did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub dry_run: bool,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// FIFOs and device nodes.
    pub other: u64,
    /// Existing files/symlinks/FIFOs kept because they already match (`--overwrite if-changed`).
    pub unchanged: u64,
    pub bytes_written: u64,
    /// Existing entries that were replaced.
    pub replaced: Vec<String>,
    /// Existing entries that were removed (`--delete`).
    pub deleted: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub errors: Vec<EntryIssue>,
    pub warnings: Vec<EntryIssue>,
    /// In a dry run: every change it would make.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// The check of the restored files against the snapshot's manifest; `None` when the
    /// snapshot has none (or in a dry run).
    pub manifest: Option<ManifestCheck>,
}

/// How the restored files compared with the snapshot's manifest (`/.backupd/SHA256SUMS`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ManifestCheck {
    /// Files whose SHA-256 was compared with the manifest's.
    pub verified: u64,
    /// Files whose SHA-256 is not the manifest's (each is also in `errors`, as damaged).
    pub mismatched: u64,
    /// Restored files the manifest does not list (each is also in `warnings`).
    pub unlisted: u64,
}

impl RestoreReport {
    /// `exit::DAMAGED` if some data was damaged or missing, `exit::FAILURE` for other entry
    /// errors, `exit::OK` otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.errors.iter().any(|e| e.damaged) {
            exit::DAMAGED
        } else if !self.errors.is_empty() {
            exit::FAILURE
        } else {
            exit::OK
        }
    }

    /// Sorts the lists of entries by path (the workers finish in any order).
    fn sort_lists(&mut self) {
        self.errors.sort_by(|a, b| a.path.cmp(&b.path));
        self.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        self.replaced.sort();
        self.actions.sort_by(|a, b| a.path.cmp(&b.path));
    }

    /// Entries restored (files, dirs, symlinks, hard links, others).
    pub fn restored(&self) -> u64 {
        self.files + self.dirs + self.symlinks + self.hardlinks + self.other
    }
}

/// Existing entries of the target a restore would replace or delete.
#[derive(Debug, Clone, Default)]
pub struct Impact {
    pub replaced: Vec<PathBuf>,
    pub deleted: Vec<PathBuf>,
    /// The deepest existing directory below which the restore changes anything: a snapshot of
    /// it taken before the restore, restored into it with `--overwrite always --delete`, undoes
    /// the restore exactly.
    pub undo_root: PathBuf,
}

impl Impact {
    /// Nothing existing would be replaced or deleted.
    pub fn is_empty(&self) -> bool {
        self.replaced.is_empty() && self.deleted.is_empty()
    }
}

/// Computes which existing entries of `opts.target` restoring would replace or delete (a dry
/// run; changes nothing).
pub fn in_place_impact(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    cancel: &CancelToken,
) -> Result<Impact> {
    let dry = RestoreOptions {
        dry_run: true,
        ..opts.clone()
    };
    let run = run(repo, snapshot, &dry, &crate::cancel::NoProgress, cancel)?;
    let mut undo_root = opts.target.clone();
    for c in run.touched.unwrap_or_default() {
        undo_root.push(c);
    }
    Ok(Impact {
        replaced: run.report.replaced.iter().map(PathBuf::from).collect(),
        deleted: run.report.deleted.iter().map(PathBuf::from).collect(),
        undo_root,
    })
}

/// Restores `snapshot` (or `opts.sub_path` in it) into `opts.target`. The repository's index
/// must be loaded and the caller must hold a (shared) lock. Problems with single entries are
/// in the report (see [`RestoreReport::exit_code`]); an `Err` means the restore as a whole
/// failed (the snapshot path does not exist, the target cannot be opened, the repository cannot
/// be read, interrupted).
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RestoreReport> {
    let run = run(repo, snapshot, opts, progress, cancel)?;
    let mut report = run.report;
    if opts.dry_run {
        return Ok(report);
    }
    let shown = snapshot.time.to_rfc3339();
    if let Some(l) = manifest::load(repo, &shown, &snapshot.tree)? {
        progress.phase("verify", None);
        verify_files(&l.manifest, &run.files, &mut report, cancel)?;
    }
    Ok(report)
}

/// Reads back each restored file (snapshot path, destination) and compares its SHA-256 with
/// `manifest`'s: a mismatch or an unreadable file is a damaged entry of `report`, a file the
/// manifest does not list a warning; the counts go to `report.manifest`.
fn verify_files(
    manifest: &Manifest,
    files: &[(String, PathBuf)],
    report: &mut RestoreReport,
    cancel: &CancelToken,
) -> Result<()> {
    let mut check = ManifestCheck::default();
    for (snap_path, dest) in files {
        cancel.check()?;
        if manifest::is_manifest_path(snap_path) {
            continue;
        }
        let Some(want) = manifest.get(snap_path) else {
            check.unlisted += 1;
            report.warnings.push(warn_issue(dest, format!(
                "{} ({snap_path} in the snapshot) is not in the snapshot's manifest {}, so it was not verified",
                dest.display(), manifest::PATH
            )));
            continue;
        };
        if let Some(message) = mismatch(dest, snap_path, want) {
            check.mismatched += 1;
            report.errors.push(EntryIssue {
                path: dest.display().to_string(),
                message,
                damaged: true,
            });
        }
        check.verified += 1;
    }
    report.errors.sort_by(|a, b| a.path.cmp(&b.path));
    report.manifest = Some(check);
    Ok(())
}

/// Why the restored file `dest` is not the manifest's `want`; `None` when it is.
fn mismatch(dest: &Path, snap_path: &str, want: &manifest::Sha256) -> Option<String> {
    let got = match sha256_of(dest) {
        Ok(h) => h,
        Err(e) => {
            return Some(format!(
                "cannot read back {} to verify it against the snapshot's manifest: {e}",
                dest.display()
            ))
        }
    };
    (got != *want).then(|| {
        format!(
            "{} ({snap_path} in the snapshot) does not match the snapshot's manifest {}: its SHA-256 is {}, the manifest's {}\n  hint: the restored file is not what was backed up; run `backupctl check --read-data`, and restore the file again",
            dest.display(),
            manifest::PATH,
            hex::encode(got),
            hex::encode(want)
        )
    })
}

/// The SHA-256 of the file at `path`, read in pieces.
fn sha256_of(path: &Path) -> io::Result<manifest::Sha256> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(h.finalize().into()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Planning

/// One entry to restore.
struct Item {
    /// Path in the snapshot ("/a/b"), for messages and patterns.
    snap_path: String,
    /// Path components below the target; empty for the target itself.
    rel: Vec<Name>,
    node: Node,
    /// The entry itself is selected (not only a parent of selected entries).
    selected: bool,
    /// Names in the snapshot's directory (directories, with `delete` only).
    children: Option<HashSet<Name>>,
    /// For files: an earlier item that is the same inode (hard link).
    link_to: Option<usize>,
}

/// A node name that can be used as one path component without leaving its directory.
use super::walk::valid_name;

struct Selector {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn build_globs(patterns: &[String], what: &str) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let trimmed = if p.len() > 1 {
            p.trim_end_matches('/')
        } else {
            p.as_str()
        };
        let pat = if trimmed.starts_with('/') {
            trimmed.to_string()
        } else {
            format!("**/{trimmed}")
        };
        let g = GlobBuilder::new(&pat)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| {
                Error::Input(format!(
                    "invalid {what} pattern {p:?}: {e}\n  hint: patterns are globs (*, ?, [abc], **) matched against paths in the snapshot such as /home/me/file.txt"
                ))
            })?;
        b.add(g);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::Input(format!("invalid {what} patterns: {e}")))
}

/// `path` and its ancestors ("/a/b" → "/a/b", "/a").
fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut cur = Some(path);
    std::iter::from_fn(move || {
        let p = cur?;
        cur = match p.rfind('/') {
            Some(0) | None => None,
            Some(i) => Some(&p[..i]),
        };
        Some(p)
    })
    .filter(|p| !p.is_empty() && *p != "/")
}

impl Selector {
    fn new(opts: &RestoreOptions) -> Result<Selector> {
        Ok(Selector {
            include: build_globs(&opts.includes, "include")?,
            exclude: build_globs(&opts.excludes, "exclude")?,
        })
    }
    fn included(&self, path: &str) -> bool {
        match &self.include {
            None => true,
            Some(g) => g.is_match(path),
        }
    }
    fn excluded(&self, path: &str) -> bool {
        self.exclude.as_ref().is_some_and(|g| g.is_match(path))
    }
    fn included_with_ancestors(&self, path: &str) -> bool {
        self.include.is_none() || self_and_ancestors(path).any(|p| self.included(p))
    }
    fn excluded_with_ancestors(&self, path: &str) -> bool {
        self_and_ancestors(path).any(|p| self.excluded(p))
    }
}

struct Planner<'a> {
    repo: &'a Repository,
    sel: Selector,
    delete: bool,
    /// Leave out the root's manifest folder `/.backupd` (no include pattern was given).
    hide_manifest: bool,
    cancel: &'a CancelToken,
    items: Vec<Item>,
    errors: Vec<EntryIssue>,
    links: HashMap<(u64, u64), usize>,
}

fn bad_name_issue(dir: &str, name: &str) -> EntryIssue {
    let dir = if dir.is_empty() { "/" } else { dir };
    EntryIssue {
        path: format!("{}/{name:?}", dir.trim_end_matches('/')),
        message: format!(
            "refused to restore the entry named {name:?} in {dir} of the snapshot: the name is empty, \".\", \"..\" or contains '/' or NUL, so it could point outside its directory; it was skipped\n  hint: the snapshot's tree is corrupt or was crafted; run `backupctl check`"
        ),
        damaged: false,
    }
}

impl Planner<'_> {
    fn push_file(&mut self, item: Item) {
        let mut item = item;
        let n = &item.node;
        if n.is_file() && n.links > 1 && n.inode != 0 {
            let key = (n.device_id, n.inode);
            match self.links.get(&key) {
                Some(&first) => item.link_to = Some(first),
                None => {
                    self.links.insert(key, self.items.len());
                }
            }
        }
        self.items.push(item);
    }

    /// Adds the entries of `tree` (the directory at `snap_prefix`, item `dir_idx`); returns
    /// whether any entry below it is selected.
    fn dir(
        &mut self,
        tree: &Id,
        snap_prefix: &str,
        rel_prefix: &[Name],
        parent_selected: bool,
        dir_idx: usize,
    ) -> Result<bool> {
        self.cancel.check()?;
        let shown = if snap_prefix.is_empty() {
            "/"
        } else {
            snap_prefix
        };
        let t = match self.repo.load_tree(tree) {
            Ok(t) => t,
            Err(e @ Error::Damaged { .. }) => {
                self.errors.push(EntryIssue {
                    path: shown.to_string(),
                    message: format!("cannot restore the contents of {shown}: {e}"),
                    damaged: true,
                });
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if self.delete {
            self.items[dir_idx].children = Some(t.nodes.iter().map(|n| n.name.clone()).collect());
        }
        let mut any = false;
        for node in t.nodes {
            if !valid_name(&node.name) {
                self.errors.push(bad_name_issue(snap_prefix, &node.name));
                continue;
            }
            if self.hide_manifest && snap_prefix.is_empty() && node.name == manifest::DIR {
                continue;
            }
            let path = super::walk::join(snap_prefix, &node.name);
            if rel_prefix.len() >= MAX_TREE_DEPTH {
                return Err(too_deep(&path));
            }
            if self.sel.excluded(&path) {
                continue;
            }
            let selected = parent_selected || self.sel.included(&path);
            let mut rel = rel_prefix.to_vec();
            rel.push(node.name.clone());
            if node.is_dir() {
                let idx = self.items.len();
                let subtree = node.subtree;
                self.items.push(Item {
                    snap_path: path.clone(),
                    rel: rel.clone(),
                    node,
                    selected,
                    children: None,
                    link_to: None,
                });
                let sub_any = match subtree {
                    Some(s) => self.dir(&s, &path, &rel, selected, idx)?,
                    None => false,
                };
                if selected || sub_any {
                    any = true;
                } else {
                    self.items.truncate(idx);
                }
            } else if selected {
                self.push_file(Item {
                    snap_path: path,
                    rel,
                    node,
                    selected,
                    children: None,
                    link_to: None,
                });
                any = true;
            }
        }
        Ok(any)
    }
}

/// Lists what to restore: item 0 is the target itself, then entries depth-first in name order.
/// A path of more than `MAX_TREE_DEPTH` names is refused; the planner recurses once per level,
/// on a thread with a stack made for that depth.
fn plan(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    cancel: &CancelToken,
) -> Result<(Vec<Item>, Vec<EntryIssue>)> {
    super::walk::on_deep_stack(|| plan_here(repo, snapshot, opts, cancel))
}

/// [`plan`], on the calling thread's stack.
fn plan_here(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    cancel: &CancelToken,
) -> Result<(Vec<Item>, Vec<EntryIssue>)> {
    let sel = Selector::new(opts)?;
    let sub = opts
        .sub_path
        .as_deref()
        .map(|s| format!("/{}", s.trim_matches('/')))
        .filter(|s| s != "/");
    let prefix = sub.clone().unwrap_or_default();
    let start = match &sub {
        None => {
            let mut n = Node::new("", kind::DIR);
            n.subtree = Some(snapshot.tree);
            n
        }
        Some(p) => super::walk::find_node(repo, &snapshot.tree, p)?.ok_or_else(|| {
            Error::Input(format!(
                "the snapshot has no path {p:?}\n  hint: `backupctl ls SNAPSHOT` lists its paths; give it as SNAPSHOT:/PATH"
            ))
        })?,
    };
    let mut pl = Planner {
        repo,
        sel,
        delete: opts.delete,
        hide_manifest: opts.includes.is_empty(),
        cancel,
        items: Vec::new(),
        errors: Vec::new(),
        links: HashMap::new(),
    };
    let excluded = sub
        .as_deref()
        .is_some_and(|p| pl.sel.excluded_with_ancestors(p));
    let root_selected = !excluded && pl.sel.included_with_ancestors(&prefix);
    pl.items.push(Item {
        snap_path: if prefix.is_empty() {
            "/".into()
        } else {
            prefix.clone()
        },
        rel: Vec::new(),
        node: Node::new("", kind::DIR),
        selected: start.is_dir() && root_selected,
        children: None,
        link_to: None,
    });
    if excluded {
        return Ok((pl.items, pl.errors));
    }
    if start.is_dir() {
        if let Some(t) = start.subtree {
            pl.dir(&t, &prefix, &[], root_selected, 0)?;
        }
    } else if !valid_name(&start.name) {
        let parent = prefix.rsplit_once('/').map(|(a, _)| a).unwrap_or("");
        pl.errors.push(bad_name_issue(parent, &start.name));
    } else if root_selected {
        pl.push_file(Item {
            snap_path: prefix.clone(),
            rel: vec![start.name.clone()],
            node: start,
            selected: true,
            children: None,
            link_to: None,
        });
    }
    Ok((pl.items, pl.errors))
}

// ---------------------------------------------------------------------------------------------
// Execution: per platform (Unix: descriptor-relative and metadata-complete; elsewhere: plain
// files and directories through paths).

pub mod readable;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix::run;
#[cfg(not(unix))]
mod portable;
#[cfg(not(unix))]
use portable::run;

struct Run {
    report: RestoreReport,
    /// Deepest common directory (below the target) of every change; `None`: no change.
    touched: Option<Vec<Name>>,
    /// The regular files put in place (written or kept unchanged): snapshot path, destination.
    files: Vec<(String, PathBuf)>,
}

impl Run {
    fn in_place(&mut self, it: &Item, dest: &Path) {
        self.files.push((it.snap_path.clone(), dest.to_path_buf()));
    }

    fn touch(&mut self, rel_parent: &[Name]) {
        match &mut self.touched {
            None => self.touched = Some(rel_parent.to_vec()),
            Some(c) => {
                let n = c.iter().zip(rel_parent).take_while(|(a, b)| a == b).count();
                c.truncate(n);
            }
        }
    }
}

fn warn_issue(dest: &Path, message: String) -> EntryIssue {
    EntryIssue {
        path: dest.display().to_string(),
        message,
        damaged: false,
    }
}

/// Writes the content of `node` into `f`, blob by blob (adjacent blobs of a pack read together),
/// verifying each; returns the bytes.
#[allow(clippy::too_many_arguments)]
fn write_blobs(
    repo: &Repository,
    progress: &dyn Progress,
    cancel: &CancelToken,
    f: &mut File,
    node: &Node,
    dest: &Path,
    tmp_shown: &Path,
) -> Result<u64> {
    /// Adjacent blobs of one pack are read together up to this many bytes.
    const MAX_RUN: u64 = 4 << 20;
    let content = node.content.as_deref().unwrap_or(&[]);
    let index = repo.index();
    let be = repo.backend();
    let key = repo.key();
    let mut last: Option<(Id, Vec<u8>)> = None;
    let mut written = 0u64;
    let locate = |id: &Id| {
        index.get(id, BlobType::Data).ok_or_else(|| {
            Error::damaged(
                format!("data blob {} of {}", id.short(), dest.display()),
                "it is in no index (the pack that held it is missing or was pruned)",
            )
        })
    };
    let mut i = 0;
    while i < content.len() {
        cancel.check()?;
        let id = content[i];
        if let Some((lid, plain)) = &last {
            if *lid == id {
                f.write_all(plain)
                    .map_err(|e| Error::io(format!("write {}", tmp_shown.display()), e))?;
                written += plain.len() as u64;
                progress.inc(plain.len() as u64);
                i += 1;
                continue;
            }
        }
        let loc = locate(&id)?;
        let start = loc.blob.offset as u64;
        let mut end = start + loc.blob.length as u64;
        let mut j = i + 1;
        while j < content.len() && end - start < MAX_RUN && content[j] != content[j - 1] {
            let l2 = locate(&content[j])?;
            if l2.pack == loc.pack && l2.blob.offset as u64 == end {
                end += l2.blob.length as u64;
                j += 1;
            } else {
                break;
            }
        }
        let pack_id = index.pack_id(loc);
        let buf = be
            .load_range(
                FileType::Pack,
                &pack_id.to_hex(),
                start,
                (end - start) as usize,
            )
            .map_err(|e| {
                if e.is_not_found() || e.source.kind() == io::ErrorKind::UnexpectedEof {
                    Error::damaged(
                        format!(
                            "pack {} (holding data of {})",
                            pack_id.short(),
                            dest.display()
                        ),
                        e,
                    )
                } else {
                    Error::from(e)
                }
            })?;
        for bid in &content[i..j] {
            let l = locate(bid)?;
            let off = (l.blob.offset as u64 - start) as usize;
            let sealed = &buf[off..off + l.blob.length as usize];
            let plain = pack::open_blob(key, &l.blob, sealed).map_err(|e| {
                Error::damaged(
                    format!(
                        "data blob {} in pack {} (part of {})",
                        bid.short(),
                        pack_id.short(),
                        dest.display()
                    ),
                    e,
                )
            })?;
            f.write_all(&plain)
                .map_err(|e| Error::io(format!("write {}", tmp_shown.display()), e))?;
            written += plain.len() as u64;
            progress.inc(plain.len() as u64);
            last = Some((*bid, plain));
        }
        i = j;
    }
    Ok(written)
}

/// Whether the open file `f` is a regular file with exactly the content of `node`: its size,
/// and the SHA-256 of each piece read in the snapshot's blob boundaries.
fn has_content(repo: &Repository, mut f: File, node: &Node) -> bool {
    let content = node.content.as_deref().unwrap_or(&[]);
    match f.metadata() {
        Ok(m) if m.is_file() && m.len() == node.size => {}
        _ => return false,
    }
    let mut buf = Vec::new();
    for id in content {
        let Some(loc) = repo.index().get(id, BlobType::Data) else {
            return false;
        };
        let n = loc.blob.data_length() as usize;
        buf.resize(n, 0);
        if f.read_exact(&mut buf).is_err() {
            return false;
        }
        let h: [u8; 32] = Sha256::digest(&buf).into();
        if Id(h) != *id {
            return false;
        }
    }
    let mut one = [0u8; 1];
    matches!(f.read(&mut one), Ok(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::backend::{Backend, LocalBackend};
    use crate::repo::index::{IndexFile, IndexPack};
    use crate::repo::pack::{seal_blob, Compression, PackWriter};
    use crate::repo::tree::gomode;
    use crate::repo::tree::Tree;
    use std::sync::Arc;

    #[test]
    fn names_and_patterns() {
        for bad in ["", ".", "..", "../evil", "a/b", "a\0b"] {
            assert!(!valid_name(bad), "{bad:?} must be refused");
        }
        assert!(valid_name("..."));
        assert!(valid_name(".hidden"));
        let opts = RestoreOptions {
            includes: vec!["*.txt".into(), "/data/keep/".into()],
            excludes: vec!["tmp".into()],
            ..Default::default()
        };
        let s = Selector::new(&opts).unwrap();
        assert!(s.included("/a/b/c.txt"));
        assert!(s.included("/c.txt"));
        assert!(!s.included("/a/b/c.txt/x"));
        assert!(s.included("/data/keep"));
        assert!(!s.included("/other/data/keep"));
        assert!(s.excluded("/x/tmp"));
        assert!(!s.excluded("/x/tmpfile"));
        assert!(s.excluded_with_ancestors("/x/tmp/y"));
        assert!(s.included_with_ancestors("/data/keep/deep/file"));
        assert_eq!(
            self_and_ancestors("/a/b/c").collect::<Vec<_>>(),
            vec!["/a/b/c", "/a/b", "/a"]
        );
        assert!(Selector::new(&RestoreOptions {
            includes: vec!["[".into()],
            ..Default::default()
        })
        .is_err());
        assert_eq!(
            "if-changed".parse::<Overwrite>().unwrap(),
            Overwrite::IfChanged
        );
        assert!("sometimes".parse::<Overwrite>().is_err());
    }

    #[test]
    fn a_restored_file_whose_sha256_is_not_the_manifests_is_damage_named_by_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let (good, bad, extra) = (
            tmp.path().join("good"),
            tmp.path().join("bad"),
            tmp.path().join("extra"),
        );
        for p in [&good, &bad, &extra] {
            std::fs::write(p, b"restored bytes").unwrap();
        }
        let mut m = Manifest::default();
        m.files
            .insert("d/good".into(), Sha256::digest(b"restored bytes").into());
        m.files.insert(
            "d/bad".into(),
            Sha256::digest(b"the bytes backed up").into(),
        );
        let files = vec![
            ("/d/good".to_string(), good),
            ("/d/bad".to_string(), bad.clone()),
            ("/d/extra".to_string(), extra),
            (
                "/.backupd/SHA256SUMS".to_string(),
                tmp.path().join("missing"),
            ),
        ];
        let mut report = RestoreReport::default();
        verify_files(&m, &files, &mut report, &CancelToken::new()).unwrap();
        assert_eq!(
            report.manifest,
            Some(ManifestCheck {
                verified: 2,
                mismatched: 1,
                unlisted: 1
            })
        );
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        let e = &report.errors[0];
        assert_eq!(e.path, bad.display().to_string());
        assert!(e.damaged);
        assert!(
            e.message.contains("/d/bad") && e.message.contains("does not match"),
            "{}",
            e.message
        );
        assert_eq!(report.exit_code(), exit::DAMAGED);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0].message.contains("/d/extra"));
    }

    fn file_node(name: &str, data: &[u8], id: Id) -> Node {
        let mut n = Node::new(name, kind::FILE);
        n.mode = 0o644;
        n.size = data.len() as u64;
        n.content = Some(vec![id]);
        n
    }

    /// A repository whose only snapshot has a root tree with hostile names next to a good file.
    fn malicious_repo(dir: &Path) -> (Repository, Snapshot) {
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.join("repo")));
        let repo = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        let data = b"evil content\n".to_vec();
        let did = Id::hash(&data);
        let mut dp = PackWriter::new();
        dp.add(&seal_blob(
            repo.key(),
            BlobType::Data,
            did,
            &data,
            Compression::Off,
        ));
        let (bytes, dpack, dblobs) = dp.finish(repo.key());
        repo.save_pack(&dpack, &bytes).unwrap();

        // "sub" holds a ".." file; the root holds "../evil", "a/b", "." and a good "ok".
        let mut sub = Tree {
            nodes: vec![file_node("..", &data, did), file_node("fine", &data, did)],
        };
        sub.sort();
        let sub_bytes = sub.serialize();
        let sub_id = Id::hash(&sub_bytes);
        let mut subdir = Node::new("sub", kind::DIR);
        subdir.mode = gomode::DIR | 0o755;
        subdir.subtree = Some(sub_id);
        let mut root = Tree {
            nodes: vec![
                file_node("../evil", &data, did),
                file_node("a/b", &data, did),
                file_node(".", &data, did),
                file_node("", &data, did),
                file_node("ok", &data, did),
                subdir,
            ],
        };
        root.sort();
        let root_bytes = root.serialize();
        let root_id = Id::hash(&root_bytes);
        let mut tp = PackWriter::new();
        for (id, b) in [(sub_id, &sub_bytes), (root_id, &root_bytes)] {
            tp.add(&seal_blob(
                repo.key(),
                BlobType::Tree,
                id,
                b,
                Compression::default(),
            ));
        }
        let (bytes, tpack, tblobs) = tp.finish(repo.key());
        repo.save_pack(&tpack, &bytes).unwrap();
        repo.save_unpacked(
            FileType::Index,
            &IndexFile {
                supersedes: None,
                packs: vec![
                    IndexPack::from_packed(dpack, &dblobs),
                    IndexPack::from_packed(tpack, &tblobs),
                ],
            },
        )
        .unwrap();
        let snap = Snapshot {
            time: chrono::Local::now().fixed_offset(),
            parent: None,
            tree: root_id,
            paths: vec!["/x".into()],
            hostname: "h".into(),
            username: String::new(),
            uid: 0,
            gid: 0,
            excludes: vec![],
            tags: vec![],
            original: None,
            program_version: String::new(),
            summary: None,
        };
        repo.save_unpacked(FileType::Snapshot, &snap).unwrap();
        let mut repo = Repository::open(repo.backend().clone(), b"pw").unwrap();
        repo.load_index().unwrap();
        let (_, s) = repo.list_snapshots().unwrap().pop().unwrap();
        (repo, s)
    }

    fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            out.push(e.path());
            if e.file_type().unwrap().is_dir() {
                all_files(&e.path(), out);
            }
        }
    }

    #[test]
    fn malicious_names_are_refused_and_nothing_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, snap) = malicious_repo(tmp.path());
        // The target is nested so that "../evil" would land in `outer`.
        let outer = tmp.path().join("outer");
        let target = outer.join("target");
        let report = restore(
            &repo,
            &snap,
            &RestoreOptions::new(&target),
            &crate::cancel::NoProgress,
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(report.exit_code(), exit::FAILURE, "{report:#?}");
        let msgs: Vec<&str> = report.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(report.errors.len(), 5, "{msgs:#?}");
        for name in ["\"../evil\"", "\"a/b\"", "\".\"", "\"\"", "\"..\" in /sub"] {
            assert!(
                msgs.iter().any(|m| m.contains(name)),
                "no error for {name}: {msgs:#?}"
            );
        }
        assert!(
            report.errors.iter().any(|e| e.path == "/\"../evil\""),
            "{:?}",
            report.errors
        );
        // Only the good entries exist, all inside the target.
        assert_eq!(std::fs::read(target.join("ok")).unwrap(), b"evil content\n");
        assert_eq!(
            std::fs::read(target.join("sub/fine")).unwrap(),
            b"evil content\n"
        );
        let mut outer_files = Vec::new();
        all_files(&outer, &mut outer_files);
        outer_files.sort();
        assert_eq!(
            outer_files,
            vec![
                target.clone(),
                target.join("ok"),
                target.join("sub"),
                target.join("sub/fine")
            ]
        );
        let mut tmp_top: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        tmp_top.sort();
        assert_eq!(tmp_top, vec!["outer", "repo"]);
        assert_eq!(report.files, 2);

        // A sub-path restore of the hostile file itself is refused, too.
        let t2 = tmp.path().join("t2");
        let err = restore(
            &repo,
            &snap,
            &RestoreOptions {
                sub_path: Some("/sub/..".into()),
                ..RestoreOptions::new(&t2)
            },
            &crate::cancel::NoProgress,
            &CancelToken::new(),
        );
        // find_node resolves "/sub/.." to the node named ".." in /sub; it must not be written.
        match err {
            Ok(r) => {
                assert_eq!(r.files, 0);
                assert_eq!(r.exit_code(), exit::FAILURE);
            }
            Err(e) => assert!(matches!(e, Error::Input(_)), "{e}"),
        }
        assert_eq!(std::fs::read_dir(&t2).map(|d| d.count()).unwrap_or(0), 0);
    }
}
