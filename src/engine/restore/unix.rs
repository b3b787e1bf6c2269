//! Restore's execution on Unix: every operation relative to directory descriptors opened with `O_NOFOLLOW` (see the module above for the whole design).

use super::*;
use crate::repo::tree::gomode;
use chrono::{DateTime, FixedOffset};
use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, utimensat, FchmodatFlags, FileStat, Mode,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// Creates a FIFO `name` in `parent` (mode 0600 until its metadata is set).
fn make_fifo_at(parent: RawFd, name: &str) -> io::Result<()> {
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
fn make_device_at(parent: RawFd, name: &str, block: bool, device: u64) -> io::Result<()> {
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
    fn name(&self) -> &str {
        self.rel.last().map(String::as_str).unwrap_or("")
    }
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
                kind::FIFO => make_fifo_at(p, &tmp)?,
                _ => make_device_at(p, &tmp, k == kind::DEV, node.device)?,
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

pub(super) fn run(
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
