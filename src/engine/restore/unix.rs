//! Restore's execution on Unix: every operation relative to directory descriptors opened with `O_NOFOLLOW` (see the module above for the whole design).

use super::*;
use crate::repo::tree::gomode;
use chrono::{DateTime, FixedOffset};
use crossbeam_channel::{Receiver, Sender};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, utimensat, FchmodatFlags, FileStat, Mode,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

/// Creates a FIFO `name` in `parent` (mode 0600 until its metadata is set).
fn make_fifo_at(parent: RawFd, name: &OsStr) -> io::Result<()> {
    #[cfg(not(target_vendor = "apple"))]
    {
        nix::unistd::mkfifoat(Some(parent), name, Mode::from_bits_truncate(0o600))?;
        Ok(())
    }
    #[cfg(target_vendor = "apple")]
    {
        let _ = (parent, name);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "FIFOs are not restored on macOS (no mkfifoat)",
        ))
    }
}

/// Creates a block (`block`) or character device node `name` in `parent`.
fn make_device_at(parent: RawFd, name: &OsStr, block: bool, device: u64) -> io::Result<()> {
    #[cfg(not(target_vendor = "apple"))]
    {
        use nix::sys::stat::SFlag;
        let t = if block {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFCHR
        };
        nix::sys::stat::mknodat(
            Some(parent),
            name,
            t,
            Mode::from_bits_truncate(0o600),
            device as _,
        )?;
        Ok(())
    }
    #[cfg(target_vendor = "apple")]
    {
        let _ = (parent, name, block, device);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "device nodes are not restored on macOS (no mknodat)",
        ))
    }
}

/// Flushes the file system holding `fd` (Linux: syncfs; elsewhere, where restores do not
/// batch their flushes and this is not reached, every file system).
fn sync_fs(fd: RawFd) -> nix::Result<()> {
    #[cfg(target_os = "linux")]
    {
        nix::unistd::syncfs(fd)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = fd;
        nix::unistd::sync();
        Ok(())
    }
}

impl Item {
    /// Its name in its directory, byte for byte (empty for the target itself).
    fn name(&self) -> &OsStr {
        self.rel.last().map_or(OsStr::new(""), |n| n.as_ref())
    }

    /// The path components of the directory holding it, below the target.
    fn parent_rel(&self) -> &[Name] {
        &self.rel[..self.rel.len().saturating_sub(1)]
    }
}

// ---------------------------------------------------------------------------------------------
// File-system helpers: everything relative to directory descriptors, never following symlinks.

fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful open call and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// The directory `name` in `parent`, never through a symlink.
fn open_dir_at<P: nix::NixPath + ?Sized>(parent: RawFd, name: &P) -> io::Result<OwnedFd> {
    let fd = openat(
        Some(parent),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(own(fd))
}

/// Opens the directory `rel` below `root`, refusing symlinks on the way.
fn open_rel_dir(root: &OwnedFd, rel: &[Name]) -> io::Result<OwnedFd> {
    let mut cur = open_dir_at(root.as_raw_fd(), ".")?;
    for c in rel {
        cur = open_dir_at(cur.as_raw_fd(), AsRef::<OsStr>::as_ref(c))?;
    }
    Ok(cur)
}

/// The directory holding `it` below `root`; `None` without a root, or in a dry run when it does
/// not exist yet.
fn open_parent(root: Option<&OwnedFd>, it: &Item, dry_run: bool) -> io::Result<Option<OwnedFd>> {
    let Some(r) = root else { return Ok(None) };
    match open_rel_dir(r, it.parent_rel()) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if dry_run && e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes the directory `name` in `p` (mode 0700 until its metadata is set), first removing the
/// entry in its way when `replace`; returns it open.
fn make_dir_at(p: RawFd, name: &OsStr, replace: bool) -> io::Result<OwnedFd> {
    if replace {
        unlinkat(Some(p), name, UnlinkatFlags::NoRemoveDir)?;
    }
    mkdirat(Some(p), name, Mode::from_bits_truncate(0o700))?;
    open_dir_at(p, name)
}

/// Makes `name` in `p` a hard link of `first_name` in `first_dir`: linked under a temp name,
/// then renamed over `name` (a directory in the way, `ex`, is removed first); the temp name is
/// removed when that fails.
fn link_at(
    first_dir: RawFd,
    first_name: &OsStr,
    p: RawFd,
    name: &OsStr,
    ex: &Existing,
) -> io::Result<()> {
    let tmp = tmp_name(name);
    let res = (|| -> io::Result<()> {
        linkat(
            Some(first_dir),
            first_name,
            Some(p),
            tmp.as_os_str(),
            AtFlags::empty(),
        )?;
        if let Existing::Dir(_) = ex {
            remove_tree_at(p, name)?;
        }
        renameat(Some(p), tmp.as_os_str(), Some(p), name)?;
        Ok(())
    })();
    if res.is_err() {
        let _ = unlinkat(Some(p), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
    res
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
    Other(Stat, libc::mode_t),
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

// The casts are needed where `stat`'s fields are narrower (macOS: u16 modes, i32 devices).
#[allow(clippy::unnecessary_cast)]
fn classify(st: &FileStat) -> Existing {
    let s = Stat {
        perm: (st.st_mode & 0o7777) as u32,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        dev: st.st_dev as u64,
        ino: st.st_ino,
        rdev: st.st_rdev as u64,
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
fn stat_at(parent: Option<RawFd>, name: &OsStr) -> io::Result<Existing> {
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
/// removed, never followed. Iterates with an explicit stack (one open directory per level), so
/// a deep directory on disk ends in an error (too many open files) at worst, never a stack
/// overflow.
fn remove_tree_at(parent: RawFd, name: &std::ffi::OsStr) -> io::Result<()> {
    let st = fstatat(Some(parent), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        unlinkat(Some(parent), name, UnlinkatFlags::NoRemoveDir)?;
        return Ok(());
    }
    // One level per directory entered: it, its entries not removed yet, and its name.
    let mut stack = vec![open_for_removal(parent, name)?];
    while let Some((dir, names, _)) = stack.last_mut() {
        let fd = dir.as_raw_fd();
        let Some(n) = names.pop() else {
            let (dir, _, own) = stack.pop().expect("the stack has a last level");
            drop(dir);
            let up = stack.last().map_or(parent, |(d, _, _)| d.as_raw_fd());
            unlinkat(Some(up), own.as_os_str(), UnlinkatFlags::RemoveDir)?;
            continue;
        };
        let st = fstatat(Some(fd), n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let level = open_for_removal(fd, &n)?;
            stack.push(level);
        } else {
            unlinkat(Some(fd), n.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    Ok(())
}

/// The directory `name` in `parent` (not followed if a symlink), opened with its entries' names
/// (without "." and ".."), and its name.
fn open_for_removal(
    parent: RawFd,
    name: &std::ffi::OsStr,
) -> io::Result<(nix::dir::Dir, Vec<std::ffi::OsString>, std::ffi::OsString)> {
    let fd = open_dir_at(parent, name)?.into_raw_fd();
    let mut dir = nix::dir::Dir::from_fd(fd)?;
    let names = dir
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    Ok((dir, names, name.to_os_string()))
}

/// Names in the directory `fd` (without "." and "..").
fn list_dir(fd: &OwnedFd) -> io::Result<Vec<std::ffi::OsString>> {
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
fn tmp_name(name: &OsStr) -> std::ffi::OsString {
    let lossy = name.to_string_lossy();
    let mut short: &str = &lossy;
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
        .to_os_string()
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

/// Whether an existing directory (`st`) gets the snapshot's metadata under `policy`.
fn updates_dir(policy: Overwrite, node: &Node, st: &Stat) -> bool {
    match policy {
        Overwrite::Always | Overwrite::IfChanged => true,
        Overwrite::IfNewer => newer(node, st),
        Overwrite::Never => false,
    }
}

/// Why an entry of kind `k` (neither a file nor a directory) is not restored, if it is not:
/// sockets never, device nodes only by root, unknown kinds never.
fn not_restored(k: &str, is_root: bool) -> Option<String> {
    match k {
        kind::SOCKET => {
            Some("sockets are not restored (a program creates them when it runs)".to_string())
        }
        kind::DEV | kind::CHARDEV if !is_root => {
            Some("device node not restored: creating device nodes needs root".to_string())
        }
        kind::SYMLINK | kind::FIFO | kind::DEV | kind::CHARDEV => None,
        _ => Some(format!(
            "unknown entry type {k:?} in the snapshot, not restored"
        )),
    }
}

/// Whether an existing FIFO or device node (`st`, its `S_IFMT` bits `fmt`) already is the
/// snapshot's `node` of kind `k`: same type, permissions and (devices) device number.
fn same_special(k: &str, node: &Node, st: &Stat, fmt: libc::mode_t) -> bool {
    let perm = st.perm == gomode::to_unix_perm(node.mode);
    match k {
        kind::FIFO => fmt == libc::S_IFIFO && perm,
        kind::DEV => fmt == libc::S_IFBLK && st.rdev == node.device && perm,
        kind::CHARDEV => fmt == libc::S_IFCHR && st.rdev == node.device && perm,
        _ => false,
    }
}

/// Whether the existing file `ex` is already the same inode as the first name of its hard
/// link (`first`).
fn same_inode(ex: &Existing, first: Option<&Existing>) -> bool {
    match (ex, first) {
        (Existing::File(a), Some(Existing::File(b))) => a.dev == b.dev && a.ino == b.ino,
        _ => false,
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
    tmp: std::ffi::OsString,
    name: std::ffi::OsString,
    replace_dir: bool,
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
        bfd: BorrowedFd<'_>,
        node: &Node,
        dest: &Path,
        warnings: &mut Vec<EntryIssue>,
    ) -> io::Result<()> {
        let fd = bfd.as_raw_fd();
        set_xattrs(bfd, node, dest, warnings);
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
        name: &OsStr,
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

    /// Makes the symlink, FIFO or device node `it` in `p`: under a temp name, with its
    /// metadata, then renamed over its name (a directory in the way, `ex`, is removed first);
    /// the temp entry is removed when that fails.
    fn make_special(
        &self,
        p: RawFd,
        it: &Item,
        ex: &Existing,
        dest: &Path,
        warnings: &mut Vec<EntryIssue>,
    ) -> io::Result<()> {
        let (name, node) = (it.name(), &it.node);
        let k = node.kind.as_str();
        let tmp = tmp_name(name);
        let res = (|| -> io::Result<()> {
            match k {
                kind::SYMLINK => symlinkat(
                    OsStr::from_bytes(node.link_target_bytes()),
                    Some(p),
                    tmp.as_os_str(),
                )?,
                kind::FIFO => make_fifo_at(p, &tmp)?,
                _ => make_device_at(p, &tmp, k == kind::DEV, node.device)?,
            }
            self.set_meta_at(p, &tmp, node, k != kind::SYMLINK, dest, warnings)?;
            if let Existing::Dir(_) = ex {
                remove_tree_at(p, name)?;
            }
            renameat(Some(p), tmp.as_os_str(), Some(p), name)?;
            Ok(())
        })();
        if res.is_err() {
            let _ = unlinkat(Some(p), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        res
    }

    /// Whether the regular file `name` has exactly the content of `node`.
    fn same_content(&self, parent: RawFd, name: &OsStr, node: &Node) -> bool {
        let Ok(fd) = openat(
            Some(parent),
            name,
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            return false;
        };
        has_content(self.repo, File::from(own(fd)), node)
    }

    /// Writes the content of `node` into `f` (see [`write_blobs`]).
    fn write_content(
        &self,
        f: &mut File,
        node: &Node,
        dest: &Path,
        tmp_shown: &Path,
    ) -> Result<u64> {
        write_blobs(
            self.repo,
            self.progress,
            self.cancel,
            f,
            node,
            dest,
            tmp_shown,
        )
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
            tmp.as_os_str(),
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
            self.set_meta_fd(f.as_fd(), &it.node, &dest, warnings)
                .map_err(|e| Error::io(format!("set the mode of {}", tmp_shown.display()), e))?;
            if let Some(p) = defer {
                return Ok((
                    n,
                    Some(Pending {
                        parent: p.clone(),
                        tmp: tmp.clone(),
                        name: name.to_os_string(),
                        replace_dir: matches!(ex, Existing::Dir(_)),
                    }),
                ));
            }
            f.sync_all()
                .map_err(|e| Error::io(format!("fsync {}", tmp_shown.display()), e))?;
            if let Existing::Dir(_) = ex {
                remove_tree_at(parent, name).map_err(|e| {
                    Error::io(
                        format!("remove the directory {} to replace it", dest.display()),
                        e,
                    )
                })?;
            }
            renameat(Some(parent), tmp.as_os_str(), Some(parent), name).map_err(|e| {
                Error::io(
                    format!("rename {} to {}", tmp_shown.display(), dest.display()),
                    e.into(),
                )
            })?;
            Ok((n, None))
        })();
        drop(f);
        if res.is_err() {
            let _ = unlinkat(Some(parent), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
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
        name: &OsStr,
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
            self.set_meta_fd(fd.as_fd(), node, dest, warnings)
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
        self.run.touch(it.parent_rel());
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
            .filter(|n| !children.contains(&Name::from_os(n)))
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

    /// Handles a directory of the snapshot: enters an existing one, or makes it (replacing a
    /// file or other entry in its way when the overwrite mode allows).
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
            Existing::Dir(st) => return self.existing_dir(parent, it, &dest, &st),
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
        self.made(it, &dest, replace, kind::DIR);
        self.run.report.dirs += 1;
        if self.sh.opts.dry_run {
            return DirStep::Enter(None, true);
        }
        let p = parent
            .expect("the parent directory exists outside dry runs")
            .as_raw_fd();
        match make_dir_at(p, name, replace) {
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

    /// Enters a directory that exists in the target (`st`): opens it (outside a dry run),
    /// deletes its extra entries (`--delete`), and notes whether it gets the snapshot's
    /// metadata.
    fn existing_dir(
        &mut self,
        parent: Option<&OwnedFd>,
        it: &Item,
        dest: &Path,
        st: &Stat,
    ) -> DirStep {
        let apply = updates_dir(self.sh.opts.overwrite, &it.node, st);
        let fd = match parent {
            None => None,
            Some(p) => {
                match open_dir_at(p.as_raw_fd(), it.name()) {
                    Ok(fd) => Some(Arc::new(fd)),
                    Err(e) => {
                        self.error(dest, format!("could not open the directory {} (it must not be a symbolic link): {e}", dest.display()));
                        return DirStep::Block;
                    }
                }
            }
        };
        if let Some(fd) = &fd {
            self.delete_extras(it, fd);
        }
        self.run.report.dirs += 1;
        if apply {
            self.action("update", kind::DIR, dest);
        }
        DirStep::Enter(fd, apply)
    }

    /// Symlinks, FIFOs, devices and sockets (in the main thread).
    fn special(&mut self, parent: Option<&OwnedFd>, it: &Item) {
        let dest = self.sh.dest(it);
        let (name, node) = (it.name(), &it.node);
        let k = node.kind.as_str();
        if let Some(why) = not_restored(k, self.sh.is_root) {
            let message = format!("{}: {why}", dest.display());
            self.run.report.warnings.push(warn_issue(&dest, message));
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
                    .map(|t| t.as_encoded_bytes() == node.link_target_bytes())
                    .unwrap_or(false)
            }
            (Existing::Other(st, fmt), _) => same_special(k, node, &st, fmt),
            _ => false,
        };
        let decision = decide(self.sh.opts.overwrite, node, &ex, same);
        if let (Decision::Unchanged, false, Some(p)) = (&decision, self.sh.opts.dry_run, pfd) {
            self.keep_special(p, it, &dest);
        }
        if !self.goes_ahead(decision, &dest) {
            return;
        }
        if !self.sh.opts.dry_run {
            let p = pfd.expect("the parent directory exists outside dry runs");
            let mut w = Vec::new();
            let res = self.sh.make_special(p, it, &ex, &dest, &mut w);
            self.run.report.warnings.extend(w);
            if let Err(e) = res {
                self.error(
                    &dest,
                    format!("could not restore the {k} {}: {e}", dest.display()),
                );
                return;
            }
        }
        if k == kind::SYMLINK {
            self.run.report.symlinks += 1;
        } else {
            self.run.report.other += 1;
        }
        self.made(it, &dest, ex.exists(), k);
    }

    /// An existing symlink, FIFO or device node is the snapshot's: give it the snapshot's
    /// owner and times only (the mode already matches: never chmod in place).
    fn keep_special(&mut self, p: RawFd, it: &Item, dest: &Path) {
        let mut w = Vec::new();
        if let Err(e) = self
            .sh
            .set_meta_at(p, it.name(), &it.node, false, dest, &mut w)
        {
            w.push(warn_issue(
                dest,
                format!("could not update the metadata of {}: {e}", dest.display()),
            ));
        }
        self.run.report.warnings.extend(w);
    }

    /// Reports a decision that keeps the existing entry (skipped by the overwrite mode, or
    /// unchanged); true when the entry is to be made.
    fn goes_ahead(&mut self, decision: Decision, dest: &Path) -> bool {
        match decision {
            Decision::Keep(reason) => {
                self.run.report.skipped.push(Skipped {
                    path: dest.display().to_string(),
                    reason,
                });
                false
            }
            Decision::Unchanged => {
                self.run.report.unchanged += 1;
                false
            }
            Decision::Create | Decision::Replace => true,
        }
    }

    /// Records an entry that was made (in a dry run: would be) at `dest`: where the restore
    /// changed something, the entry it replaced, the dry run's action.
    fn made(&mut self, it: &Item, dest: &Path, replaced: bool, kind: &str) {
        self.run.touch(it.parent_rel());
        if replaced {
            self.record_replaced(it, dest);
        }
        self.action(if replaced { "replace" } else { "create" }, kind, dest);
    }

    fn file_done(&mut self, d: FileDone) {
        let it = &self.sh.items[d.idx];
        let dest = self.sh.dest(it);
        self.run.report.warnings.extend(d.warnings);
        match d.outcome {
            FileOutcome::Written { bytes, replaced } => {
                self.run.report.files += 1;
                self.run.report.bytes_written += bytes;
                self.made(it, &dest, replaced, kind::FILE);
                if !self.sh.opts.dry_run {
                    self.run.in_place(it, &dest);
                }
            }
            FileOutcome::Unchanged => {
                self.run.report.unchanged += 1;
                self.run.in_place(it, &dest);
            }
            FileOutcome::Skipped(reason) => self.run.report.skipped.push(Skipped {
                path: dest.display().to_string(),
                reason,
            }),
            FileOutcome::Failed(issue) => self.run.report.errors.push(issue),
        }
    }

    /// Records how each file went; returns the items now in place (written or unchanged),
    /// which later names of a hard link may link to.
    fn files_done(&mut self, results: Vec<FileDone>) -> HashSet<usize> {
        let mut ok = HashSet::new();
        for d in results {
            if matches!(
                d.outcome,
                FileOutcome::Written { .. } | FileOutcome::Unchanged
            ) {
                ok.insert(d.idx);
            }
            self.file_done(d);
        }
        ok
    }

    /// Makes the second and later names of a hard-linked file (after all files are written).
    fn hard_link(&mut self, root: Option<&OwnedFd>, idx: usize, primary_ok: bool) {
        let sh = self.sh;
        let it = &sh.items[idx];
        let first = &sh.items[it.link_to.expect("deferred items are hard links")];
        let dest = sh.dest(it);
        let parent = match open_parent(root, it, sh.opts.dry_run) {
            Ok(p) => p,
            Err(e) => {
                self.error(
                    &dest,
                    format!("could not open the directory of {}: {e}", dest.display()),
                );
                return;
            }
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
        let first_dir = root.and_then(|r| open_rel_dir(r, first.parent_rel()).ok());
        let first_st = first_dir
            .as_ref()
            .and_then(|d| stat_at(Some(d.as_raw_fd()), first.name()).ok());
        let same = || {
            same_inode(&ex, first_st.as_ref())
                || match (ex, pfd) {
                    (Existing::File(_), Some(p)) => sh.same_content(p, it.name(), &it.node),
                    _ => false,
                }
        };
        if !self.goes_ahead(decide(sh.opts.overwrite, &it.node, &ex, same), &dest) {
            return;
        }
        if !sh.opts.dry_run {
            let made = match (pfd, first_dir.as_ref()) {
                (Some(p), Some(fd0)) => link_at(fd0.as_raw_fd(), first.name(), p, it.name(), &ex)
                    .map_err(|e| e.to_string()),
                _ => Err("its directory cannot be opened".to_string()),
            };
            if let Err(e) = made {
                let shown = format!("{} to {}", dest.display(), sh.dest(first).display());
                self.error(&dest, format!("could not hard-link {shown}: {e}"));
                return;
            }
        }
        self.run.report.hardlinks += 1;
        self.made(it, &dest, ex.exists(), "hardlink");
    }

    /// Runs [`Exec::walk`] in this thread with the file workers beside it; returns what the
    /// walk left for later and how each file went (in the order they finished).
    fn walk_with_workers(&mut self, root: Option<&Arc<OwnedFd>>) -> (Walked, Vec<FileDone>) {
        let workers = worker_count();
        let sh = self.sh;
        std::thread::scope(|s| {
            let (job_tx, job_rx) = crossbeam_channel::bounded::<FileJob>(workers * 8);
            let (res_tx, res_rx) = crossbeam_channel::unbounded::<FileDone>();
            for _ in 0..workers {
                let (jobs, done) = (job_rx.clone(), res_tx.clone());
                s.spawn(move || file_worker(sh, jobs, done));
            }
            drop(res_tx);
            drop(job_rx);
            let walked = self.walk(root, &job_tx);
            drop(job_tx);
            (walked, res_rx.iter().collect())
        })
    }

    /// The main thread's walk over the items: directories, symlinks and other entries are
    /// handled here, regular files go to the workers on `jobs`, later names of hard links are
    /// left for after the files; stops early when the restore is cancelled.
    fn walk(&mut self, root: Option<&Arc<OwnedFd>>, jobs: &Sender<FileJob>) -> Walked {
        let items = self.sh.items;
        let mut walked = Walked::default();
        // Directory descriptors by depth: stack[d] is the directory of items at depth d + 1.
        let mut stack: Vec<Option<Arc<OwnedFd>>> = Vec::new();
        let mut i = 0;
        while i < items.len() {
            if self.sh.cancel.is_cancelled() {
                break;
            }
            let it = &items[i];
            let depth = it.rel.len();
            if depth == 0 {
                if let Some(r) = root {
                    self.delete_extras(it, r);
                }
                stack = vec![root.cloned()];
                i += 1;
                continue;
            }
            stack.truncate(depth);
            let parent = stack[depth - 1].clone();
            if it.node.is_dir() {
                match self.dir(parent.as_deref(), it) {
                    DirStep::Enter(fd, apply) => {
                        stack.push(fd);
                        walked.dirs.push((i, apply));
                    }
                    DirStep::Block => {
                        i = after_subtree(items, i);
                        continue;
                    }
                }
            } else if it.node.is_file() {
                if it.link_to.is_some() {
                    walked.deferred.push(i);
                } else if jobs.send((i, parent)).is_err() {
                    break;
                }
            } else {
                self.special(parent.as_deref(), it);
            }
            i += 1;
        }
        walked
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
                if let Err(e) = sh.set_meta_fd(fd.as_fd(), &it.node, &dest, &mut w) {
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
            p.tmp.as_os_str(),
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
                sync_fs(fd).map_err(|e| format!("flushing the file system to disk failed: {e}"))
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
        if let Err(e) = renameat(Some(fd), p.tmp.as_os_str(), Some(fd), p.name.as_os_str()) {
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

/// A regular file for the workers to restore: its item, and its directory (`None` in a dry run
/// when that does not exist).
type FileJob = (usize, Option<Arc<OwnedFd>>);

/// One file worker: restores the files it is sent until the channel closes, sending back how
/// each went. On Linux each file's flush and rename are left to `commit_pending`.
fn file_worker(sh: &Shared, jobs: Receiver<FileJob>, done: Sender<FileDone>) {
    for (idx, parent) in jobs {
        let defer = if cfg!(target_os = "linux") {
            parent.as_ref()
        } else {
            None
        };
        let d = sh.restore_file(idx, parent.as_deref().map(|p| p.as_raw_fd()), defer);
        if done.send(d).is_err() {
            break;
        }
    }
}

/// Opens the target directory (creating it first unless this is a dry run); `None` in a dry
/// run when it does not exist.
fn open_target(opts: &RestoreOptions) -> Result<Option<Arc<OwnedFd>>> {
    let target = &opts.target;
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
        Ok(fd) => Ok(Some(Arc::new(own(fd)))),
        Err(Errno::ENOENT) if opts.dry_run => Ok(None),
        Err(e) => Err(Error::Input(format!(
            "cannot open the target directory {}: {e}\n  hint: --target must be a directory (it is created if missing)",
            target.display()
        ))),
    }
}

/// The bytes the restore writes: the sizes of the regular files, each hard-linked file once.
fn bytes_to_write(items: &[Item]) -> u64 {
    items
        .iter()
        .filter(|i| i.node.is_file() && i.link_to.is_none())
        .map(|i| i.node.size)
        .sum()
}

/// The index of the first item after `items[i]` that is not below it (items are in
/// depth-first order): where the walk goes on when the directory `items[i]` is blocked.
fn after_subtree(items: &[Item], i: usize) -> usize {
    let rel = &items[i].rel;
    let depth = rel.len();
    let mut j = i + 1;
    while j < items.len() && items[j].rel.len() > depth && items[j].rel[..depth] == rel[..] {
        j += 1;
    }
    j
}

/// What the main thread's walk leaves for after the file workers.
#[derive(Default)]
struct Walked {
    /// Directories entered, in walk order, and whether each gets the snapshot's metadata.
    dirs: Vec<(usize, bool)>,
    /// Second and later names of hard-linked files.
    deferred: Vec<usize>,
}

pub(super) fn run(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Run> {
    let (items, plan_errors) = plan(repo, snapshot, opts, cancel)?;
    let root = open_target(opts)?;
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
            files: Vec::new(),
        },
    };
    if !opts.dry_run {
        progress.phase("restore", Some(bytes_to_write(&items)));
    }

    let (walked, mut results) = ex.walk_with_workers(root.as_ref());
    commit_pending(&sh, &mut results, cancel.is_cancelled());
    cancel.check()?;

    let ok = ex.files_done(results);
    for idx in walked.deferred {
        cancel.check()?;
        // Only items with a `link_to` are deferred (see `Exec::walk`).
        let first = items[idx].link_to.expect("deferred items are hard links");
        ex.hard_link(root.as_deref(), idx, ok.contains(&first));
    }
    if !opts.dry_run {
        if let Some(r) = &root {
            ex.finish_dirs(r, &walked.dirs);
        }
    }
    let mut run = ex.run;
    run.report.sort_lists();
    Ok(run)
}

/// Sets the node's extended attributes on the open file or folder `fd` (before its owner and
/// mode, which may forbid it afterwards); each that cannot be set is a warning naming it.
fn set_xattrs(fd: BorrowedFd<'_>, node: &Node, dest: &Path, warnings: &mut Vec<EntryIssue>) {
    for a in &node.extended_attributes {
        let r = rustix::fs::fsetxattr(
            fd,
            a.name.as_str(),
            &a.value,
            rustix::fs::XattrFlags::empty(),
        );
        if let Err(e) = r {
            warnings.push(warn_issue(
                dest,
                format!(
                    "could not set the extended attribute {} of {}: {e}",
                    a.name,
                    dest.display()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(perm: u32, dev: u64, ino: u64, rdev: u64) -> Stat {
        Stat {
            perm,
            mtime: (1_000, 0),
            dev,
            ino,
            rdev,
        }
    }

    fn item(rel: &[&str], k: &str, size: u64, link_to: Option<usize>) -> Item {
        let mut node = Node::new(rel.last().copied().unwrap_or(""), k);
        node.size = size;
        Item {
            snap_path: format!("/{}", rel.join("/")),
            rel: rel.iter().map(|s| Name::from(*s)).collect(),
            node,
            selected: true,
            children: None,
            link_to,
        }
    }

    #[test]
    fn sockets_unknown_kinds_and_devices_without_root_are_not_restored() {
        assert!(not_restored(kind::SOCKET, true)
            .is_some_and(|m| m.starts_with("sockets are not restored")));
        for dev in [kind::DEV, kind::CHARDEV] {
            assert!(not_restored(dev, false).is_some_and(|m| m.contains("needs root")));
            assert_eq!(not_restored(dev, true), None);
        }
        for k in [kind::SYMLINK, kind::FIFO] {
            assert_eq!(not_restored(k, false), None);
        }
        assert_eq!(
            not_restored("door", true).as_deref(),
            Some("unknown entry type \"door\" in the snapshot, not restored")
        );
    }

    #[test]
    fn a_special_entry_is_the_same_with_its_type_mode_and_device() {
        let mut fifo = Node::new("p", kind::FIFO);
        fifo.mode = gomode::NAMED_PIPE | 0o640;
        assert!(same_special(
            kind::FIFO,
            &fifo,
            &stat(0o640, 1, 2, 0),
            libc::S_IFIFO
        ));
        assert!(!same_special(
            kind::FIFO,
            &fifo,
            &stat(0o600, 1, 2, 0),
            libc::S_IFIFO
        ));
        assert!(!same_special(
            kind::FIFO,
            &fifo,
            &stat(0o640, 1, 2, 0),
            libc::S_IFCHR
        ));
        let mut dev = Node::new("d", kind::CHARDEV);
        dev.mode = gomode::DEVICE | gomode::CHAR_DEVICE | 0o600;
        dev.device = 0x0103;
        let st = stat(0o600, 1, 2, 0x0103);
        assert!(same_special(kind::CHARDEV, &dev, &st, libc::S_IFCHR));
        assert!(!same_special(kind::DEV, &dev, &st, libc::S_IFCHR));
        assert!(!same_special(
            kind::CHARDEV,
            &dev,
            &stat(0o600, 1, 2, 7),
            libc::S_IFCHR
        ));
        assert!(!same_special(kind::SYMLINK, &dev, &st, libc::S_IFCHR));
    }

    #[test]
    fn a_hard_link_is_in_place_when_it_is_the_first_names_inode() {
        let a = Existing::File(stat(0o644, 1, 10, 0));
        assert!(same_inode(&a, Some(&Existing::File(stat(0o600, 1, 10, 0)))));
        assert!(!same_inode(
            &a,
            Some(&Existing::File(stat(0o644, 2, 10, 0)))
        ));
        assert!(!same_inode(
            &a,
            Some(&Existing::File(stat(0o644, 1, 11, 0)))
        ));
        assert!(!same_inode(&a, None));
        assert!(!same_inode(&Existing::Dir(stat(0o755, 1, 10, 0)), Some(&a)));
    }

    #[test]
    fn existing_directories_get_the_snapshots_metadata_by_the_overwrite_mode() {
        let mut node = Node::new("d", kind::DIR);
        node.mtime = DateTime::from_timestamp(2_000, 0).unwrap().fixed_offset();
        let older = stat(0o755, 1, 2, 0);
        let newer_st = Stat {
            mtime: (3_000, 0),
            ..older
        };
        for (policy, old, new) in [
            (Overwrite::Always, true, true),
            (Overwrite::IfChanged, true, true),
            (Overwrite::IfNewer, true, false),
            (Overwrite::Never, false, false),
        ] {
            assert_eq!(updates_dir(policy, &node, &older), old, "{policy:?}");
            assert_eq!(updates_dir(policy, &node, &newer_st), new, "{policy:?}");
        }
    }

    #[test]
    fn a_blocked_directory_skips_exactly_its_subtree() {
        let items = vec![
            item(&[], kind::DIR, 0, None),
            item(&["a"], kind::DIR, 0, None),
            item(&["a", "x"], kind::FILE, 5, None),
            item(&["a", "y"], kind::DIR, 0, None),
            item(&["a", "y", "z"], kind::FILE, 7, None),
            item(&["ab"], kind::FILE, 11, None),
            item(&["b"], kind::FILE, 13, Some(2)),
        ];
        assert_eq!(after_subtree(&items, 1), 5);
        assert_eq!(after_subtree(&items, 3), 5);
        assert_eq!(after_subtree(&items, 0), items.len());
        assert_eq!(after_subtree(&items, 6), items.len());
        // A second name of a hard link writes nothing of its own.
        assert_eq!(bytes_to_write(&items), 5 + 7 + 11);
        assert_eq!(items[4].parent_rel(), ["a", "y"]);
        assert!(items[0].parent_rel().is_empty());
    }
}
