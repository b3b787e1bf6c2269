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
//! `--overwrite if-changed` keeps an existing regular file when its size and content are the
//! snapshot's: the file is read in the snapshot's blob boundaries and each piece's SHA-256 is
//! compared with the blob id (mtime alone is never trusted). Its owner, mode and times are then
//! set to the snapshot's without rewriting the content.

use super::{CancelToken, Progress};
use crate::error::{exit, Error, Result};
use crate::fsutil;
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::pack::{self, BlobType};
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{gomode, kind, Node};
use crate::repo::Repository;
use chrono::{DateTime, FixedOffset};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, FileStat,
    Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{
    fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    let run = run(repo, snapshot, &dry, &super::NoProgress, cancel)?;
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
    Ok(run(repo, snapshot, opts, progress, cancel)?.report)
}

// ---------------------------------------------------------------------------------------------
// Planning

/// One entry to restore.
struct Item {
    /// Path in the snapshot ("/a/b"), for messages and patterns.
    snap_path: String,
    /// Path components below the target; empty for the target itself.
    rel: Vec<String>,
    node: Node,
    /// The entry itself is selected (not only a parent of selected entries).
    selected: bool,
    /// Names in the snapshot's directory (directories, with `delete` only).
    children: Option<HashSet<String>>,
    /// For files: an earlier item that is the same inode (hard link).
    link_to: Option<usize>,
}

impl Item {
    fn name(&self) -> &str {
        self.rel.last().map(String::as_str).unwrap_or("")
    }
}

/// A node name that can be used as one path component without leaving its directory.
fn valid_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('\0')
}

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
        rel_prefix: &[String],
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
            let path = super::walk::join(snap_prefix, &node.name);
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
fn plan(
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
// File-system helpers: everything relative to directory descriptors, never following symlinks.

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn open_dir_at(parent: RawFd, name: &str) -> io::Result<OwnedFd> {
    let fd = openat(
        Some(parent),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(own(fd))
}

/// Opens the directory `rel` below `root`, refusing symlinks on the way.
fn open_rel_dir(root: &OwnedFd, rel: &[String]) -> io::Result<OwnedFd> {
    let mut cur = open_dir_at(root.as_raw_fd(), ".")?;
    for c in rel {
        cur = open_dir_at(cur.as_raw_fd(), c)?;
    }
    Ok(cur)
}

#[derive(Clone, Copy, Debug)]
struct Stat {
    /// Permission bits (with setuid/setgid/sticky).
    perm: u32,
    mtime: (i64, i64),
    dev: u64,
    ino: u64,
    rdev: u64,
}

#[derive(Clone, Copy, Debug)]
enum Existing {
    None,
    File(Stat),
    Dir(Stat),
    Symlink(Stat),
    /// FIFO, device or socket, with its `S_IFMT` bits.
    Other(Stat, u32),
}

impl Existing {
    fn exists(&self) -> bool {
        !matches!(self, Existing::None)
    }
    fn stat(&self) -> Option<&Stat> {
        match self {
            Existing::None => None,
            Existing::File(s) | Existing::Dir(s) | Existing::Symlink(s) | Existing::Other(s, _) => {
                Some(s)
            }
        }
    }
}

fn classify(st: &FileStat) -> Existing {
    let s = Stat {
        perm: st.st_mode & 0o7777,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        dev: st.st_dev,
        ino: st.st_ino,
        rdev: st.st_rdev,
    };
    let fmt = st.st_mode & libc::S_IFMT;
    match fmt {
        libc::S_IFREG => Existing::File(s),
        libc::S_IFDIR => Existing::Dir(s),
        libc::S_IFLNK => Existing::Symlink(s),
        _ => Existing::Other(s, fmt),
    }
}

/// What is at `name` in `parent` (`None` for a directory that does not exist yet: a dry run).
fn stat_at(parent: Option<RawFd>, name: &str) -> io::Result<Existing> {
    let Some(p) = parent else {
        return Ok(Existing::None);
    };
    match fstatat(Some(p), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(classify(&st)),
        Err(Errno::ENOENT) => Ok(Existing::None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` in `parent`: a file, or a directory with everything in it; symlinks are
/// removed, never followed.
fn remove_tree_at(parent: RawFd, name: &std::ffi::OsStr) -> io::Result<()> {
    let st = fstatat(Some(parent), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let fd = openat(
            Some(parent),
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let names: Vec<std::ffi::OsString> = dir
            .iter()
            .filter_map(|e| e.ok())
            .map(|e| {
                use std::os::unix::ffi::OsStrExt;
                std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_os_string()
            })
            .filter(|n| n != "." && n != "..")
            .collect();
        for n in names {
            remove_tree_at(dir.as_raw_fd(), &n)?;
        }
        drop(dir);
        unlinkat(Some(parent), name, UnlinkatFlags::RemoveDir)?;
    } else {
        unlinkat(Some(parent), name, UnlinkatFlags::NoRemoveDir)?;
    }
    Ok(())
}

/// Names in the directory `fd` (without "." and "..").
fn list_dir(fd: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut dir = nix::dir::Dir::openat(
        Some(fd.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for e in dir.iter() {
        let e = e?;
        let n = std::ffi::OsStr::from_bytes(e.file_name().to_bytes());
        if n != "." && n != ".." {
            out.push(n.to_os_string());
        }
    }
    Ok(out)
}

/// A fresh temp name next to `name` (shortened if `name` is long).
fn tmp_name(name: &str) -> String {
    let mut short = name;
    if short.len() > 200 {
        let mut end = 200;
        while !short.is_char_boundary(end) {
            end -= 1;
        }
        short = &short[..end];
    }
    fsutil::temp_path_for(Path::new(short))
        .file_name()
        .expect("temp names have a file name")
        .to_string_lossy()
        .into_owned()
}

fn ts(t: &DateTime<FixedOffset>) -> TimeSpec {
    TimeSpec::new(t.timestamp() as _, t.timestamp_subsec_nanos() as _)
}

fn unix_perm(node: &Node) -> Mode {
    Mode::from_bits_truncate(gomode::to_unix_perm(node.mode) as libc::mode_t)
}

fn newer(node: &Node, st: &Stat) -> bool {
    (
        node.mtime.timestamp(),
        node.mtime.timestamp_subsec_nanos() as i64,
    ) > st.mtime
}

enum Decision {
    Create,
    Replace,
    Unchanged,
    Keep(String),
}

/// Whether to replace `ex` with `node` under `policy`; `same` tells (for same-typed entries,
/// if-changed only) whether the existing entry already has the snapshot's content.
fn decide(policy: Overwrite, node: &Node, ex: &Existing, same: impl FnOnce() -> bool) -> Decision {
    let Some(st) = ex.stat() else {
        return Decision::Create;
    };
    match policy {
        Overwrite::Always => Decision::Replace,
        Overwrite::Never => Decision::Keep("it exists in the target (--overwrite never)".into()),
        Overwrite::IfNewer => {
            if newer(node, st) {
                Decision::Replace
            } else {
                Decision::Keep(
                    "the existing entry is not older than the snapshot's (--overwrite if-newer)"
                        .into(),
                )
            }
        }
        Overwrite::IfChanged => {
            if same() {
                Decision::Unchanged
            } else {
                Decision::Replace
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Execution

struct Shared<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    cancel: &'a CancelToken,
    items: &'a [Item],
    is_root: bool,
}

/// How one file went (sent back by the workers).
enum FileOutcome {
    Written { bytes: u64, replaced: bool },
    Unchanged,
    Skipped(String),
    Failed(EntryIssue),
}

struct FileDone {
    idx: usize,
    outcome: FileOutcome,
    warnings: Vec<EntryIssue>,
    /// A file written to its temp name whose flush and rename are batched (see `commit_pending`).
    pending: Option<Pending>,
}

/// A restored file waiting in its temp name for the batched flush, then its rename.
struct Pending {
    parent: Arc<OwnedFd>,
    tmp: String,
    name: String,
    replace_dir: bool,
}

struct Run {
    report: RestoreReport,
    /// Deepest common directory (below the target) of every change; `None`: no change.
    touched: Option<Vec<String>>,
}

impl Run {
    fn touch(&mut self, rel_parent: &[String]) {
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

impl Shared<'_> {
    fn dest(&self, it: &Item) -> PathBuf {
        let mut p = self.opts.target.clone();
        for c in &it.rel {
            p.push(c);
        }
        p
    }

    /// The outcome of giving a restored entry the snapshot's owner: not being allowed to is
    /// expected when not root; any other failure is a warning naming the entry.
    fn owner_result(
        &self,
        r: nix::Result<()>,
        node: &Node,
        dest: &Path,
        warnings: &mut Vec<EntryIssue>,
    ) {
        match r {
            Ok(()) => {}
            Err(Errno::EPERM) if !self.is_root => {}
            Err(e) => warnings.push(warn_issue(
                dest,
                format!(
                    "could not set the owner of {} to {}:{}: {e}",
                    dest.display(),
                    node.uid,
                    node.gid
                ),
            )),
        }
    }

    /// Sets owner, mode and times through an open descriptor.
    fn set_meta_fd(
        &self,
        fd: RawFd,
        node: &Node,
        dest: &Path,
        warnings: &mut Vec<EntryIssue>,
    ) -> io::Result<()> {
        let r = fchown(
            fd,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
        );
        self.owner_result(r, node, dest, warnings);
        fchmod(fd, unix_perm(node))?;
        if let Err(e) = futimens(fd, &ts(&node.atime), &ts(&node.mtime)) {
            warnings.push(warn_issue(
                dest,
                format!("could not set the times of {}: {e}", dest.display()),
            ));
        }
        Ok(())
    }

    /// Sets owner, (mode) and times of `name` in `parent` without following a symlink.
    fn set_meta_at(
        &self,
        parent: RawFd,
        name: &str,
        node: &Node,
        chmod: bool,
        dest: &Path,
        warnings: &mut Vec<EntryIssue>,
    ) -> io::Result<()> {
        let r = fchownat(
            Some(parent),
            name,
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        self.owner_result(r, node, dest, warnings);
        if chmod {
            // Only for a FIFO or device we just created under a fresh temp name: fchmodat
            // cannot refuse to follow a symlink on Linux.
            fchmodat(
                Some(parent),
                name,
                unix_perm(node),
                FchmodatFlags::FollowSymlink,
            )?;
        }
        if let Err(e) = utimensat(
            Some(parent),
            name,
            &ts(&node.atime),
            &ts(&node.mtime),
            UtimensatFlags::NoFollowSymlink,
        ) {
            warnings.push(warn_issue(
                dest,
                format!("could not set the times of {}: {e}", dest.display()),
            ));
        }
        Ok(())
    }

    /// Whether the regular file `name` has exactly the content of `node`.
    fn same_content(&self, parent: RawFd, name: &str, node: &Node) -> bool {
        let content = node.content.as_deref().unwrap_or(&[]);
        let Ok(fd) = openat(
            Some(parent),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        let mut f = File::from(own(fd));
        match f.metadata() {
            Ok(m) if m.is_file() && m.len() == node.size => {}
            _ => return false,
        }
        let mut buf = Vec::new();
        for id in content {
            let Some(loc) = self.repo.index().get(id, BlobType::Data) else {
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

    /// Writes the content of `node` into `f`, blob by blob, verifying each; returns the bytes.
    fn write_content(
        &self,
        f: &mut File,
        node: &Node,
        dest: &Path,
        tmp_shown: &Path,
    ) -> Result<u64> {
        /// Adjacent blobs of one pack are read together up to this many bytes.
        const MAX_RUN: u64 = 4 << 20;
        let content = node.content.as_deref().unwrap_or(&[]);
        let index = self.repo.index();
        let be = self.repo.backend();
        let key = self.repo.key();
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
            self.cancel.check()?;
            let id = content[i];
            if let Some((lid, plain)) = &last {
                if *lid == id {
                    f.write_all(plain)
                        .map_err(|e| Error::io(format!("write {}", tmp_shown.display()), e))?;
                    written += plain.len() as u64;
                    self.progress.inc(plain.len() as u64);
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
                self.progress.inc(plain.len() as u64);
                last = Some((*bid, plain));
            }
            i = j;
        }
        Ok(written)
    }

    /// Writes a file to a temp name in `parent` and sets its metadata. Without `defer` it then
    /// fsyncs it and renames it over `name` (removing a directory that is in the way first);
    /// with `defer` the flush and rename are left to `commit_pending`, which flushes the whole
    /// file system once for all files (one `syncfs` instead of one fsync per file).
    fn write_file(
        &self,
        parent: RawFd,
        it: &Item,
        ex: &Existing,
        warnings: &mut Vec<EntryIssue>,
        defer: Option<&Arc<OwnedFd>>,
    ) -> Result<(u64, Option<Pending>)> {
        let dest = self.dest(it);
        let name = it.name();
        let tmp = tmp_name(name);
        let tmp_shown = dest.with_file_name(&tmp);
        let fd = openat(
            Some(parent),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| Error::io(format!("create {}", tmp_shown.display()), e.into()))?;
        let mut f = File::from(own(fd));
        let res = (|| -> Result<(u64, Option<Pending>)> {
            let n = self.write_content(&mut f, &it.node, &dest, &tmp_shown)?;
            if n != it.node.size {
                warnings.push(warn_issue(
                    &dest,
                    format!(
                        "{}: the snapshot records {} bytes but its content has {n} bytes",
                        dest.display(),
                        it.node.size
                    ),
                ));
            }
            self.set_meta_fd(f.as_raw_fd(), &it.node, &dest, warnings)
                .map_err(|e| Error::io(format!("set the mode of {}", tmp_shown.display()), e))?;
            if let Some(p) = defer {
                return Ok((
                    n,
                    Some(Pending {
                        parent: p.clone(),
                        tmp: tmp.clone(),
                        name: name.to_string(),
                        replace_dir: matches!(ex, Existing::Dir(_)),
                    }),
                ));
            }
            f.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", tmp_shown.display()), e))?;
            if let Existing::Dir(_) = ex {
                remove_tree_at(parent, name.as_ref()).map_err(|e| {
                    Error::io(
                        format!("remove the directory {} to replace it", dest.display()),
                        e,
                    )
                })?;
            }
            renameat(Some(parent), tmp.as_str(), Some(parent), name).map_err(|e| {
                Error::io(
                    format!("rename {} to {}", tmp_shown.display(), dest.display()),
                    e.into(),
                )
            })?;
            Ok((n, None))
        })();
        drop(f);
        if res.is_err() {
            let _ = unlinkat(Some(parent), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        res
    }

    /// Restores one regular file (in a worker thread).
    fn restore_file(
        &self,
        idx: usize,
        parent: Option<RawFd>,
        defer: Option<&Arc<OwnedFd>>,
    ) -> FileDone {
        let it = &self.items[idx];
        let dest = self.dest(it);
        let name = it.name();
        let mut warnings = Vec::new();
        let mut pending = None;
        let done = |outcome, warnings, pending| FileDone {
            idx,
            outcome,
            warnings,
            pending,
        };
        let ex = match stat_at(parent, name) {
            Ok(e) => e,
            Err(e) => {
                return done(
                    FileOutcome::Failed(warn_issue(
                        &dest,
                        format!("could not look at {}: {e}", dest.display()),
                    )),
                    warnings,
                    None,
                )
            }
        };
        let decision = decide(self.opts.overwrite, &it.node, &ex, || match (ex, parent) {
            (Existing::File(_), Some(p)) => self.same_content(p, name, &it.node),
            _ => false,
        });
        let outcome = match decision {
            Decision::Keep(reason) => FileOutcome::Skipped(reason),
            Decision::Unchanged => {
                if !self.opts.dry_run {
                    self.fix_existing_file_meta(parent, name, &it.node, &dest, &mut warnings);
                }
                FileOutcome::Unchanged
            }
            Decision::Create | Decision::Replace if self.opts.dry_run => FileOutcome::Written {
                bytes: it.node.size,
                replaced: ex.exists(),
            },
            Decision::Create | Decision::Replace => {
                let parent = parent.expect("the parent directory exists outside dry runs");
                match self.write_file(parent, it, &ex, &mut warnings, defer) {
                    Ok((bytes, p)) => {
                        pending = p;
                        FileOutcome::Written {
                            bytes,
                            replaced: ex.exists(),
                        }
                    }
                    Err(Error::Interrupted) => FileOutcome::Skipped("interrupted".into()),
                    Err(e) => {
                        let what = if ex.exists() {
                            "the existing file is unchanged"
                        } else {
                            "it was not created"
                        };
                        FileOutcome::Failed(EntryIssue {
                            path: dest.display().to_string(),
                            damaged: matches!(e, Error::Damaged { .. }),
                            message: format!(
                                "could not restore {} ({what}; no temp file is left): {e}",
                                dest.display()
                            ),
                        })
                    }
                }
            }
        };
        done(outcome, warnings, pending)
    }

    /// `--overwrite if-changed` kept a file: give it the snapshot's owner, mode and times.
    fn fix_existing_file_meta(
        &self,
        parent: Option<RawFd>,
        name: &str,
        node: &Node,
        dest: &Path,
        warnings: &mut Vec<EntryIssue>,
    ) {
        let Some(p) = parent else { return };
        let r = openat(
            Some(p),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .and_then(|fd| {
            let fd = own(fd);
            self.set_meta_fd(fd.as_raw_fd(), node, dest, warnings)
        });
        if let Err(e) = r {
            warnings.push(warn_issue(
                dest,
                format!("could not update the metadata of {}: {e}", dest.display()),
            ));
        }
    }
}

/// The result of handling a directory entry in the main thread.
enum DirStep {
    /// Restore its entries (with its descriptor; `None` in a dry run when it does not exist);
    /// `bool`: set its metadata at the end.
    Enter(Option<Arc<OwnedFd>>, bool),
    /// Skip it and everything below it.
    Block,
}

struct Exec<'a, 'b> {
    sh: &'b Shared<'a>,
    run: Run,
}

impl Exec<'_, '_> {
    fn error(&mut self, dest: &Path, message: String) {
        self.run.report.errors.push(warn_issue(dest, message));
    }

    fn action(&mut self, action: &'static str, kind: &str, dest: &Path) {
        if self.sh.opts.dry_run {
            self.run.report.actions.push(Action {
                action,
                kind: kind.to_string(),
                path: dest.display().to_string(),
            });
        }
    }

    fn record_replaced(&mut self, it: &Item, dest: &Path) {
        self.run.report.replaced.push(dest.display().to_string());
        self.run.touch(&it.rel[..it.rel.len().saturating_sub(1)]);
    }

    /// `--delete`: removes entries of the directory `fd` (item `it`) that its snapshot
    /// directory does not have.
    fn delete_extras(&mut self, it: &Item, fd: &OwnedFd) {
        let Some(children) = &it.children else { return };
        if !self.sh.opts.delete || !it.selected {
            return;
        }
        let dir_dest = self.sh.dest(it);
        let names = match list_dir(fd) {
            Ok(n) => n,
            Err(e) => {
                self.error(
                    &dir_dest,
                    format!("could not list {} for --delete: {e}", dir_dest.display()),
                );
                return;
            }
        };
        let mut names: Vec<_> = names
            .into_iter()
            .filter(|n| !n.to_str().is_some_and(|s| children.contains(s)))
            .collect();
        names.sort();
        for n in names {
            let dest = dir_dest.join(&n);
            if self.sh.opts.dry_run {
                let kind = match fstatat(
                    Some(fd.as_raw_fd()),
                    n.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) => kind_of(&classify(&st)),
                    Err(_) => "entry",
                };
                self.action("delete", kind, &dest);
            } else if let Err(e) = remove_tree_at(fd.as_raw_fd(), &n) {
                self.error(
                    &dest,
                    format!("could not delete {} (--delete): {e}", dest.display()),
                );
                continue;
            }
            self.run.report.deleted.push(dest.display().to_string());
            self.run.touch(&it.rel);
        }
    }

    fn dir(&mut self, parent: Option<&OwnedFd>, it: &Item) -> DirStep {
        let dest = self.sh.dest(it);
        let name = it.name();
        let ex = match stat_at(parent.map(|p| p.as_raw_fd()), name) {
            Ok(e) => e,
            Err(e) => {
                self.error(&dest, format!("could not look at {}: {e}", dest.display()));
                return DirStep::Block;
            }
        };
        let replace = match ex {
            Existing::Symlink(_) => {
                self.error(
                    &dest,
                    format!(
                        "refused to restore {} into {}: it is a symbolic link in the target, and restore never writes through symbolic links; nothing below it was restored\n  hint: remove or rename {}, or restore into another directory",
                        it.snap_path,
                        dest.display(),
                        dest.display()
                    ),
                );
                return DirStep::Block;
            }
            Existing::None => false,
            Existing::Dir(st) => {
                let apply = match self.sh.opts.overwrite {
                    Overwrite::Always | Overwrite::IfChanged => true,
                    Overwrite::IfNewer => newer(&it.node, &st),
                    Overwrite::Never => false,
                };
                let fd = match parent {
                    None => None,
                    Some(p) => match open_dir_at(p.as_raw_fd(), name) {
                        Ok(fd) => Some(Arc::new(fd)),
                        Err(e) => {
                            self.error(&dest, format!("could not open the directory {} (it must not be a symbolic link): {e}", dest.display()));
                            return DirStep::Block;
                        }
                    },
                };
                if let Some(fd) = &fd {
                    self.delete_extras(it, fd);
                }
                self.run.report.dirs += 1;
                if apply {
                    self.action("update", kind::DIR, &dest);
                }
                return DirStep::Enter(fd, apply);
            }
            Existing::File(_) | Existing::Other(..) => {
                match decide(self.sh.opts.overwrite, &it.node, &ex, || false) {
                    Decision::Keep(reason) => {
                        self.run.report.skipped.push(Skipped {
                            path: dest.display().to_string(),
                            reason: format!("{reason}; nothing below it was restored"),
                        });
                        return DirStep::Block;
                    }
                    _ => true,
                }
            }
        };
        self.run.touch(&it.rel[..it.rel.len() - 1]);
        if replace {
            self.record_replaced(it, &dest);
        }
        self.run.report.dirs += 1;
        if self.sh.opts.dry_run {
            self.action(if replace { "replace" } else { "create" }, kind::DIR, &dest);
            return DirStep::Enter(None, true);
        }
        let p = parent
            .expect("the parent directory exists outside dry runs")
            .as_raw_fd();
        let made = (|| -> io::Result<OwnedFd> {
            if replace {
                unlinkat(Some(p), name, UnlinkatFlags::NoRemoveDir)?;
            }
            mkdirat(Some(p), name, Mode::from_bits_truncate(0o700))?;
            open_dir_at(p, name)
        })();
        match made {
            Ok(fd) => DirStep::Enter(Some(Arc::new(fd)), true),
            Err(e) => {
                self.run.report.dirs -= 1;
                self.error(
                    &dest,
                    format!(
                        "could not create the directory {}: {e}; nothing below it was restored",
                        dest.display()
                    ),
                );
                DirStep::Block
            }
        }
    }

    /// Symlinks, FIFOs, devices and sockets (in the main thread).
    fn special(&mut self, parent: Option<&OwnedFd>, it: &Item) {
        let dest = self.sh.dest(it);
        let name = it.name();
        let node = &it.node;
        let k = node.kind.as_str();
        if k == kind::SOCKET {
            self.run.report.warnings.push(warn_issue(
                &dest,
                format!(
                    "{}: sockets are not restored (a program creates them when it runs)",
                    dest.display()
                ),
            ));
            return;
        }
        let is_dev = k == kind::DEV || k == kind::CHARDEV;
        if is_dev && !self.sh.is_root {
            self.run.report.warnings.push(warn_issue(
                &dest,
                format!(
                    "{}: device node not restored: creating device nodes needs root",
                    dest.display()
                ),
            ));
            return;
        }
        if !matches!(k, kind::SYMLINK | kind::FIFO | kind::DEV | kind::CHARDEV) {
            self.run.report.warnings.push(warn_issue(
                &dest,
                format!(
                    "{}: unknown entry type {k:?} in the snapshot, not restored",
                    dest.display()
                ),
            ));
            return;
        }
        let pfd = parent.map(|p| p.as_raw_fd());
        let ex = match stat_at(pfd, name) {
            Ok(e) => e,
            Err(e) => {
                self.error(&dest, format!("could not look at {}: {e}", dest.display()));
                return;
            }
        };
        let same = || match (ex, pfd) {
            (Existing::Symlink(_), Some(p)) if k == kind::SYMLINK => {
                nix::fcntl::readlinkat(Some(p), name)
                    .map(|t| t.as_encoded_bytes() == node.linktarget.as_bytes())
                    .unwrap_or(false)
            }
            (Existing::Other(st, fmt), _) if k == kind::FIFO => {
                fmt == libc::S_IFIFO && st.perm == gomode::to_unix_perm(node.mode)
            }
            (Existing::Other(st, fmt), _) if is_dev => {
                let want = if k == kind::DEV {
                    libc::S_IFBLK
                } else {
                    libc::S_IFCHR
                };
                fmt == want && st.rdev == node.device && st.perm == gomode::to_unix_perm(node.mode)
            }
            _ => false,
        };
        let replaced = ex.exists();
        match decide(self.sh.opts.overwrite, node, &ex, same) {
            Decision::Keep(reason) => {
                self.run.report.skipped.push(Skipped {
                    path: dest.display().to_string(),
                    reason,
                });
                return;
            }
            Decision::Unchanged => {
                self.run.report.unchanged += 1;
                if let (false, Some(p)) = (self.sh.opts.dry_run, pfd) {
                    // Owner and times only (the mode already matches): never chmod in place.
                    let mut w = Vec::new();
                    if let Err(e) = self.sh.set_meta_at(p, name, node, false, &dest, &mut w) {
                        w.push(warn_issue(
                            &dest,
                            format!("could not update the metadata of {}: {e}", dest.display()),
                        ));
                    }
                    self.run.report.warnings.extend(w);
                }
                return;
            }
            Decision::Create | Decision::Replace => {}
        }
        self.run.touch(&it.rel[..it.rel.len() - 1]);
        if replaced {
            self.record_replaced(it, &dest);
        }
        let counter = if k == kind::SYMLINK {
            &mut self.run.report.symlinks
        } else {
            &mut self.run.report.other
        };
        *counter += 1;
        if self.sh.opts.dry_run {
            self.action(if replaced { "replace" } else { "create" }, k, &dest);
            return;
        }
        let p = pfd.expect("the parent directory exists outside dry runs");
        let tmp = tmp_name(name);
        let mut w = Vec::new();
        let res = (|| -> io::Result<()> {
            match k {
                kind::SYMLINK => symlinkat(node.linktarget.as_str(), Some(p), tmp.as_str())?,
                kind::FIFO => mkfifoat(Some(p), tmp.as_str(), Mode::from_bits_truncate(0o600))?,
                _ => {
                    let t = if k == kind::DEV {
                        SFlag::S_IFBLK
                    } else {
                        SFlag::S_IFCHR
                    };
                    mknodat(
                        Some(p),
                        tmp.as_str(),
                        t,
                        Mode::from_bits_truncate(0o600),
                        node.device as _,
                    )?
                }
            }
            self.sh
                .set_meta_at(p, &tmp, node, k != kind::SYMLINK, &dest, &mut w)?;
            if let Existing::Dir(_) = ex {
                remove_tree_at(p, name.as_ref())?;
            }
            renameat(Some(p), tmp.as_str(), Some(p), name)?;
            Ok(())
        })();
        self.run.report.warnings.extend(w);
        if let Err(e) = res {
            let _ = unlinkat(Some(p), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
            *(if k == kind::SYMLINK {
                &mut self.run.report.symlinks
            } else {
                &mut self.run.report.other
            }) -= 1;
            if replaced {
                self.run.report.replaced.pop();
            }
            self.error(
                &dest,
                format!("could not restore the {k} {}: {e}", dest.display()),
            );
        }
    }

    fn file_done(&mut self, d: FileDone) {
        let it = &self.sh.items[d.idx];
        let dest = self.sh.dest(it);
        self.run.report.warnings.extend(d.warnings);
        match d.outcome {
            FileOutcome::Written { bytes, replaced } => {
                self.run.touch(&it.rel[..it.rel.len() - 1]);
                if replaced {
                    self.record_replaced(it, &dest);
                }
                self.run.report.files += 1;
                self.run.report.bytes_written += bytes;
                self.action(
                    if replaced { "replace" } else { "create" },
                    kind::FILE,
                    &dest,
                );
            }
            FileOutcome::Unchanged => self.run.report.unchanged += 1,
            FileOutcome::Skipped(reason) => self.run.report.skipped.push(Skipped {
                path: dest.display().to_string(),
                reason,
            }),
            FileOutcome::Failed(issue) => self.run.report.errors.push(issue),
        }
    }

    /// Makes the second and later names of a hard-linked file (after all files are written).
    fn hard_link(&mut self, root: Option<&OwnedFd>, idx: usize, primary_ok: bool) {
        let sh = self.sh;
        let it = &sh.items[idx];
        let first = &sh.items[it.link_to.expect("deferred items are hard links")];
        let dest = sh.dest(it);
        let parent = match root {
            Some(r) => match open_rel_dir(r, &it.rel[..it.rel.len() - 1]) {
                Ok(fd) => Some(fd),
                Err(e) if sh.opts.dry_run && e.raw_os_error() == Some(libc::ENOENT) => None,
                Err(e) => {
                    self.error(
                        &dest,
                        format!("could not open the directory of {}: {e}", dest.display()),
                    );
                    return;
                }
            },
            None => None,
        };
        let pfd = parent.as_ref().map(|p| p.as_raw_fd());
        if !primary_ok {
            // The first name was not restored: restore this one as a file of its own.
            let d = sh.restore_file(idx, pfd, None);
            self.file_done(d);
            return;
        }
        let ex = match stat_at(pfd, it.name()) {
            Ok(e) => e,
            Err(e) => {
                self.error(&dest, format!("could not look at {}: {e}", dest.display()));
                return;
            }
        };
        let first_dir = match root.map(|r| open_rel_dir(r, &first.rel[..first.rel.len() - 1])) {
            Some(Ok(fd)) => Some(fd),
            _ => None,
        };
        let first_st = first_dir
            .as_ref()
            .and_then(|d| stat_at(Some(d.as_raw_fd()), first.name()).ok());
        let same = || match (ex, first_st, pfd) {
            (Existing::File(a), Some(Existing::File(b)), _) if a.dev == b.dev && a.ino == b.ino => {
                true
            }
            (Existing::File(_), _, Some(p)) => sh.same_content(p, it.name(), &it.node),
            _ => false,
        };
        let replaced = ex.exists();
        match decide(sh.opts.overwrite, &it.node, &ex, same) {
            Decision::Keep(reason) => {
                self.run.report.skipped.push(Skipped {
                    path: dest.display().to_string(),
                    reason,
                });
                return;
            }
            Decision::Unchanged => {
                self.run.report.unchanged += 1;
                return;
            }
            Decision::Create | Decision::Replace => {}
        }
        if !sh.opts.dry_run {
            let (Some(p), Some(fd0)) = (pfd, first_dir.as_ref()) else {
                self.error(
                    &dest,
                    format!(
                        "could not hard-link {} to {}: its directory cannot be opened",
                        dest.display(),
                        sh.dest(first).display()
                    ),
                );
                return;
            };
            let tmp = tmp_name(it.name());
            let res = (|| -> io::Result<()> {
                linkat(
                    Some(fd0.as_raw_fd()),
                    first.name(),
                    Some(p),
                    tmp.as_str(),
                    AtFlags::empty(),
                )?;
                if let Existing::Dir(_) = ex {
                    remove_tree_at(p, it.name().as_ref())?;
                }
                renameat(Some(p), tmp.as_str(), Some(p), it.name())?;
                Ok(())
            })();
            if let Err(e) = res {
                let _ = unlinkat(Some(p), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
                self.error(
                    &dest,
                    format!(
                        "could not hard-link {} to {}: {e}",
                        dest.display(),
                        sh.dest(first).display()
                    ),
                );
                return;
            }
        }
        self.run.touch(&it.rel[..it.rel.len() - 1]);
        if replaced {
            self.record_replaced(it, &dest);
        }
        self.run.report.hardlinks += 1;
        self.action(
            if replaced { "replace" } else { "create" },
            "hardlink",
            &dest,
        );
    }

    /// Sets directory metadata (deepest first) and fsyncs every restored directory.
    fn finish_dirs(&mut self, root: &OwnedFd, dirs: &[(usize, bool)]) {
        let sh = self.sh;
        for &(idx, apply) in dirs.iter().rev() {
            let it = &sh.items[idx];
            let dest = sh.dest(it);
            let fd = match open_rel_dir(root, &it.rel) {
                Ok(fd) => fd,
                Err(e) => {
                    self.run.report.warnings.push(warn_issue(
                        &dest,
                        format!("could not open {} to set its metadata: {e}", dest.display()),
                    ));
                    continue;
                }
            };
            let mut w = Vec::new();
            if apply {
                if let Err(e) = sh.set_meta_fd(fd.as_raw_fd(), &it.node, &dest, &mut w) {
                    w.push(warn_issue(
                        &dest,
                        format!("could not set the mode of {}: {e}", dest.display()),
                    ));
                }
            }
            if let Err(e) = nix::unistd::fsync(fd.as_raw_fd()) {
                w.push(warn_issue(
                    &dest,
                    format!("could not fsync the directory {}: {e}", dest.display()),
                ));
            }
            self.run.report.warnings.extend(w);
        }
        let _ = nix::unistd::fsync(root.as_raw_fd());
    }
}

fn kind_of(ex: &Existing) -> &'static str {
    match ex {
        Existing::None => "none",
        Existing::File(_) => kind::FILE,
        Existing::Dir(_) => kind::DIR,
        Existing::Symlink(_) => kind::SYMLINK,
        Existing::Other(_, f) if *f == libc::S_IFIFO => kind::FIFO,
        Existing::Other(..) => "other",
    }
}

/// Makes the batched files durable and visible: one `syncfs` per file system holding any of
/// them, then each temp file is renamed over its destination. A file whose flush or rename fails
/// is reported failed and its temp file removed; its destination is left as it was. When the
/// restore was interrupted the temp files are removed and nothing is renamed.
#[allow(clippy::unnecessary_cast)] // st_dev is not u64 on every platform
fn commit_pending(sh: &Shared, results: &mut [FileDone], cancelled: bool) {
    let unlink = |p: &Pending| {
        let _ = unlinkat(
            Some(p.parent.as_raw_fd()),
            p.tmp.as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
    };
    let fail = |d: &mut FileDone, message: String| {
        let dest = sh.dest(&sh.items[d.idx]);
        d.outcome = FileOutcome::Failed(EntryIssue {
            path: dest.display().to_string(),
            damaged: false,
            message: format!(
                "could not restore {} (the existing file, if any, is unchanged; no temp file is left): {message}",
                dest.display()
            ),
        });
    };
    if cancelled {
        for d in results.iter_mut() {
            if let Some(p) = d.pending.take() {
                unlink(&p);
                d.outcome = FileOutcome::Skipped("interrupted".into());
            }
        }
        return;
    }
    // One flush per file system (by device id of the parent directory).
    let mut flushed: HashMap<u64, std::result::Result<(), String>> = HashMap::new();
    for d in results.iter() {
        if let Some(p) = &d.pending {
            let fd = p.parent.as_raw_fd();
            let dev = nix::sys::stat::fstat(fd)
                .map(|st| st.st_dev as u64)
                .unwrap_or(0);
            flushed.entry(dev).or_insert_with(|| {
                nix::unistd::syncfs(fd)
                    .map_err(|e| format!("flushing the file system to disk failed: {e}"))
            });
        }
    }
    for d in results.iter_mut() {
        let Some(p) = d.pending.take() else { continue };
        let fd = p.parent.as_raw_fd();
        let dev = nix::sys::stat::fstat(fd)
            .map(|st| st.st_dev as u64)
            .unwrap_or(0);
        if let Some(Err(e)) = flushed.get(&dev) {
            unlink(&p);
            fail(d, e.clone());
            continue;
        }
        if p.replace_dir {
            if let Err(e) = remove_tree_at(fd, p.name.as_ref()) {
                unlink(&p);
                fail(
                    d,
                    format!("could not remove the directory in its place: {e}"),
                );
                continue;
            }
        }
        if let Err(e) = renameat(Some(fd), p.tmp.as_str(), Some(fd), p.name.as_str()) {
            unlink(&p);
            fail(d, format!("could not rename the temp file into place: {e}"));
        }
    }
}

fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4)
}

fn run(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Run> {
    let (items, plan_errors) = plan(repo, snapshot, opts, cancel)?;
    let target = &opts.target;
    let root: Option<Arc<OwnedFd>> = {
        if !opts.dry_run {
            std::fs::create_dir_all(target).map_err(|e| {
                Error::io(
                    format!("create the target directory {}", target.display()),
                    e,
                )
            })?;
        }
        match nix::fcntl::open(
            target,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Some(Arc::new(own(fd))),
            Err(Errno::ENOENT) if opts.dry_run => None,
            Err(e) => {
                return Err(Error::Input(format!(
                    "cannot open the target directory {}: {e}\n  hint: --target must be a directory (it is created if missing)",
                    target.display()
                )))
            }
        }
    };
    let sh = Shared {
        repo,
        opts,
        progress,
        cancel,
        items: &items,
        is_root: nix::unistd::geteuid().is_root(),
    };
    let mut ex = Exec {
        sh: &sh,
        run: Run {
            report: RestoreReport {
                dry_run: opts.dry_run,
                errors: plan_errors,
                ..Default::default()
            },
            touched: None,
        },
    };
    if !opts.dry_run {
        let total: u64 = items
            .iter()
            .filter(|i| i.node.is_file() && i.link_to.is_none())
            .map(|i| i.node.size)
            .sum();
        progress.phase("restore", Some(total));
    }

    let mut dirs: Vec<(usize, bool)> = Vec::new();
    let mut deferred: Vec<usize> = Vec::new();
    let mut results: Vec<FileDone> = Vec::new();
    let workers = worker_count();
    std::thread::scope(|s| {
        let (job_tx, job_rx) =
            crossbeam_channel::bounded::<(usize, Option<Arc<OwnedFd>>)>(workers * 8);
        let (res_tx, res_rx) = crossbeam_channel::unbounded::<FileDone>();
        for _ in 0..workers {
            let job_rx = job_rx.clone();
            let res_tx = res_tx.clone();
            let sh = &sh;
            s.spawn(move || {
                for (idx, parent) in job_rx {
                    let defer = if cfg!(target_os = "linux") {
                        parent.as_ref()
                    } else {
                        None
                    };
                    let d = sh.restore_file(idx, parent.as_deref().map(|p| p.as_raw_fd()), defer);
                    if res_tx.send(d).is_err() {
                        break;
                    }
                }
            });
        }
        drop(res_tx);
        drop(job_rx);

        // Directory descriptors by depth: stack[d] is the directory of items at depth d + 1.
        let mut stack: Vec<Option<Arc<OwnedFd>>> = Vec::new();
        let mut i = 0;
        while i < items.len() {
            if cancel.is_cancelled() {
                break;
            }
            let it = &items[i];
            let depth = it.rel.len();
            if depth == 0 {
                if let Some(r) = &root {
                    ex.delete_extras(it, r);
                }
                stack = vec![root.clone()];
                i += 1;
                continue;
            }
            stack.truncate(depth);
            let parent = stack[depth - 1].clone();
            if it.node.is_dir() {
                match ex.dir(parent.as_deref(), it) {
                    DirStep::Enter(fd, apply) => {
                        stack.push(fd);
                        dirs.push((i, apply));
                    }
                    DirStep::Block => {
                        let mut j = i + 1;
                        while j < items.len()
                            && items[j].rel.len() > depth
                            && items[j].rel[..depth] == it.rel[..]
                        {
                            j += 1;
                        }
                        i = j;
                        continue;
                    }
                }
            } else if it.node.is_file() {
                if it.link_to.is_some() {
                    deferred.push(i);
                } else if job_tx.send((i, parent)).is_err() {
                    break;
                }
            } else {
                ex.special(parent.as_deref(), it);
            }
            i += 1;
        }
        drop(job_tx);
        results.extend(res_rx.iter());
    });
    commit_pending(&sh, &mut results, cancel.is_cancelled());
    cancel.check()?;

    let mut ok: HashSet<usize> = HashSet::new();
    for d in results {
        if matches!(
            d.outcome,
            FileOutcome::Written { .. } | FileOutcome::Unchanged
        ) {
            ok.insert(d.idx);
        }
        ex.file_done(d);
    }
    for idx in deferred {
        cancel.check()?;
        let first = items[idx].link_to.expect("deferred items are hard links");
        ex.hard_link(root.as_deref(), idx, ok.contains(&first));
    }
    if !opts.dry_run {
        if let Some(r) = &root {
            ex.finish_dirs(r, &dirs);
        }
    }
    let mut run = ex.run;
    run.report.errors.sort_by(|a, b| a.path.cmp(&b.path));
    run.report.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    run.report.replaced.sort();
    run.report.actions.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::backend::{Backend, LocalBackend};
    use crate::repo::index::{IndexFile, IndexPack};
    use crate::repo::pack::{seal_blob, Compression, PackWriter};
    use crate::repo::tree::Tree;

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
            &super::super::NoProgress,
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
            &super::super::NoProgress,
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
