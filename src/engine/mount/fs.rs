//! The FUSE file system of a mount (Linux, the `fuser` crate): the layout's folders, each snapshot's trees loaded when first looked at, files read blob by blob through a small cache; mounting read-only and unmounting.

use super::content::{self, BlobCache};
use super::layout::{self, Entry};
use super::MountError;
use crate::error::POISONED;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::{gomode, kind, Name, Node};
use crate::repo::Repository;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long the kernel may keep names and attributes: a snapshot never changes.
const TTL: Duration = Duration::from_secs(300);

/// The blob cache's size: 64 MiB, eight of the largest chunks (restic's is the same size).
const CACHE_BYTES: usize = 64 << 20;

/// What an inode is.
enum What {
    /// A folder of the layout (`ids`, `hosts/HOST`, ...): its children are set when built.
    Layout,
    /// A `latest` symlink.
    Latest(String),
    /// The root folder of a snapshot.
    Snapshot { tree: Id, time: SystemTime },
    /// A node of a snapshot's tree.
    Node(Box<Node>),
}

struct Inode {
    parent: u64,
    name: Name,
    what: What,
    /// The entries (name and inode, sorted by name) of a folder; `None` until its tree is loaded.
    children: Option<Vec<(Name, u64)>>,
}

/// An open file: its blobs and where each starts.
struct OpenFile {
    blobs: Vec<Id>,
    starts: Vec<u64>,
}

/// Reports a failure the kernel can only see as EIO (what failed, on which path, why).
pub type Warn = Box<dyn Fn(&str) + Send + Sync>;

/// The file system: the repository (index loaded) and the inodes handed out so far.
pub struct MountFs {
    repo: Arc<Repository>,
    /// Inode `n` is `inodes[n - 1]`; inode 1 is the root.
    inodes: Mutex<Vec<Inode>>,
    files: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_fh: AtomicU64,
    cache: Mutex<BlobCache>,
    /// One lock per blob being loaded: the kernel reads ahead on two threads, and the second
    /// read of a blob waits for the first's load instead of loading it again.
    loading: Mutex<HashMap<Id, Arc<Mutex<()>>>>,
    uid: u32,
    gid: u32,
    started: SystemTime,
    warn: Warn,
}

impl MountFs {
    /// The file system of `snaps` (those the filters kept) in `repo`, whose index is loaded.
    pub fn new(repo: Arc<Repository>, snaps: &[(Id, Snapshot)], warn: Warn) -> MountFs {
        let fs = MountFs {
            repo,
            inodes: Mutex::new(Vec::new()),
            files: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            cache: Mutex::new(BlobCache::new(CACHE_BYTES)),
            loading: Mutex::new(HashMap::new()),
            // SAFETY: getuid and getgid cannot fail and touch no memory.
            uid: unsafe { libc::getuid() },
            // SAFETY: as above.
            gid: unsafe { libc::getgid() },
            started: SystemTime::now(),
            warn,
        };
        {
            let mut inodes = fs.inodes.lock().expect(POISONED);
            let root = layout::build(snaps);
            add_layout_dir(&mut inodes, 1, Name::default(), &root, snaps);
        }
        fs
    }

    /// The entries of folder `ino`, its tree loaded first if need be.
    fn children(&self, ino: u64) -> Result<Vec<(Name, u64)>, Errno> {
        let tree = {
            let inodes = self.inodes.lock().expect(POISONED);
            let n = get(&inodes, ino)?;
            if let Some(c) = &n.children {
                return Ok(c.clone());
            }
            match &n.what {
                What::Snapshot { tree, .. } => *tree,
                What::Node(node) if node.is_dir() => node.subtree.ok_or(Errno::EIO)?,
                _ => return Err(Errno::ENOTDIR),
            }
        };
        // The load is I/O: done without the lock (two threads may load the same tree; the
        // first to finish wins).
        let loaded = self.repo.load_tree(&tree).map_err(|e| {
            (self.warn)(&format!("cannot list {}: {e}", self.path(ino)));
            Errno::EIO
        })?;
        let mut inodes = self.inodes.lock().expect(POISONED);
        if let Some(c) = &get(&inodes, ino)?.children {
            return Ok(c.clone());
        }
        let mut entries = Vec::with_capacity(loaded.nodes.len());
        for node in loaded.nodes {
            let name = node.name.clone();
            entries.push((
                name.clone(),
                push(&mut inodes, ino, name, What::Node(Box::new(node))),
            ));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        inodes[(ino - 1) as usize].children = Some(entries.clone());
        Ok(entries)
    }

    /// The path of `ino` below the mount point, for messages.
    fn path(&self, ino: u64) -> String {
        let inodes = self.inodes.lock().expect(POISONED);
        let mut parts = Vec::new();
        let mut at = ino;
        while at > 1 {
            match get(&inodes, at) {
                Ok(n) => {
                    parts.push(n.name.to_string());
                    at = n.parent;
                }
                Err(_) => break,
            }
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let inodes = self.inodes.lock().expect(POISONED);
        Ok(self.attr_of(ino, get(&inodes, ino)?))
    }

    fn attr_of(&self, ino: u64, n: &Inode) -> FileAttr {
        let mut a = FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 1,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        match &n.what {
            What::Layout => {}
            What::Latest(target) => {
                a.kind = FileType::Symlink;
                a.perm = 0o777;
                a.size = target.len() as u64;
            }
            What::Snapshot { time, .. } => {
                (a.atime, a.mtime, a.ctime, a.nlink) = (*time, *time, *time, 2);
            }
            What::Node(node) => node_attr(&mut a, node),
        }
        a.blocks = a.size.div_ceil(512);
        a
    }

    /// The blobs of file `ino` and where each starts, from the sizes the index records.
    fn open_file(&self, ino: u64) -> Result<OpenFile, Errno> {
        let blobs = {
            let inodes = self.inodes.lock().expect(POISONED);
            match &get(&inodes, ino)?.what {
                What::Node(n) if n.kind == kind::FILE => n.content.clone().unwrap_or_default(),
                What::Node(n) if n.is_dir() => return Err(Errno::EISDIR),
                What::Layout | What::Snapshot { .. } => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
        };
        let mut sizes = Vec::with_capacity(blobs.len());
        for id in &blobs {
            let Some(loc) = self.repo.index().get(id, BlobType::Data) else {
                (self.warn)(&format!(
                    "cannot open {}: its data blob {} is not in the repository's index, so the file cannot be read\n  hint: run `backupctl check` to see what else is missing",
                    self.path(ino),
                    id.short()
                ));
                return Err(Errno::EIO);
            };
            sizes.push(u64::from(loc.blob.data_length()));
        }
        Ok(OpenFile {
            starts: content::starts(&sizes),
            blobs,
        })
    }

    /// A data blob, from the cache or loaded (its hash checked) and then cached; loaded once
    /// when several reads want it at the same time.
    fn blob(&self, id: &Id) -> crate::error::Result<Arc<Vec<u8>>> {
        if let Some(b) = self.cached(id) {
            return Ok(b);
        }
        let slot = self
            .loading
            .lock()
            .expect(POISONED)
            .entry(*id)
            .or_default()
            .clone();
        let _one_loader = slot.lock().expect(POISONED);
        if let Some(b) = self.cached(id) {
            return Ok(b);
        }
        let loaded = self.repo.load_blob(id, BlobType::Data).map(Arc::new);
        if let Ok(b) = &loaded {
            self.cache.lock().expect(POISONED).put(*id, b.clone());
        }
        self.loading.lock().expect(POISONED).remove(id);
        loaded
    }

    fn cached(&self, id: &Id) -> Option<Arc<Vec<u8>>> {
        self.cache.lock().expect(POISONED).get(id)
    }

    /// The bytes `offset .. offset + size` of an open file (fewer at its end).
    fn read_range(&self, ino: u64, f: &OpenFile, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::with_capacity(size as usize);
        for s in content::spans(&f.starts, offset, u64::from(size)) {
            let id = &f.blobs[s.blob];
            let data = self.blob(id).map_err(|e| {
                (self.warn)(&format!("cannot read {}: {e}", self.path(ino)));
                Errno::EIO
            })?;
            let Some(part) = data.get(s.start..s.start + s.len) else {
                (self.warn)(&format!(
                    "cannot read {}: its data blob {} holds {} bytes, not the {} the index records: the repository is damaged\n  hint: run `backupctl check --read-data`",
                    self.path(ino),
                    id.short(),
                    data.len(),
                    f.starts[s.blob + 1] - f.starts[s.blob]
                ));
                return Err(Errno::EIO);
            };
            out.extend_from_slice(part);
        }
        Ok(out)
    }
}

/// Adds the layout folder `entries` as inode `ino` (the next free one) under `parent`.
fn add_layout_dir(
    inodes: &mut Vec<Inode>,
    parent: u64,
    name: Name,
    entries: &BTreeMap<String, Entry>,
    snaps: &[(Id, Snapshot)],
) -> u64 {
    let ino = push(inodes, parent, name, What::Layout);
    let mut children = Vec::with_capacity(entries.len());
    for (name, e) in entries {
        let name = Name::from(name.as_str());
        let child = match e {
            Entry::Dir(m) => add_layout_dir(inodes, ino, name.clone(), m, snaps),
            Entry::Latest(target) => push(inodes, ino, name.clone(), What::Latest(target.clone())),
            Entry::Snapshot(i) => {
                let s = &snaps[*i].1;
                let what = What::Snapshot {
                    tree: s.tree,
                    time: SystemTime::from(s.time),
                };
                push(inodes, ino, name.clone(), what)
            }
        };
        children.push((name, child));
    }
    inodes[(ino - 1) as usize].children = Some(children);
    ino
}

/// A new inode; gives its number.
fn push(inodes: &mut Vec<Inode>, parent: u64, name: Name, what: What) -> u64 {
    inodes.push(Inode {
        // The root is its own parent.
        parent: if inodes.is_empty() { 1 } else { parent },
        name,
        what,
        children: None,
    });
    inodes.len() as u64
}

fn get(inodes: &[Inode], ino: u64) -> Result<&Inode, Errno> {
    ino.checked_sub(1)
        .and_then(|i| inodes.get(i as usize))
        .ok_or(Errno::ENOENT)
}

/// A snapshot node's attributes: its kind, permissions, owner, times and size.
fn node_attr(a: &mut FileAttr, n: &Node) {
    a.kind = file_type(&n.kind);
    a.perm = gomode::to_unix_perm(n.mode) as u16;
    (a.uid, a.gid) = (n.uid, n.gid);
    a.mtime = SystemTime::from(n.mtime);
    a.atime = SystemTime::from(n.atime);
    a.ctime = SystemTime::from(n.ctime);
    a.nlink = if n.is_dir() {
        2
    } else {
        n.links.clamp(1, u64::from(u32::MAX)) as u32
    };
    a.size = match n.kind.as_str() {
        kind::FILE => n.size,
        kind::SYMLINK => n.link_target_bytes().len() as u64,
        _ => 0,
    };
    a.rdev = n.device as u32;
}

fn file_type(k: &str) -> FileType {
    match k {
        kind::DIR => FileType::Directory,
        kind::SYMLINK => FileType::Symlink,
        kind::DEV => FileType::BlockDevice,
        kind::CHARDEV => FileType::CharDevice,
        kind::FIFO => FileType::NamedPipe,
        kind::SOCKET => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

impl Filesystem for MountFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.children(parent.0).and_then(|c| {
            let name = Name::from_os(name);
            let i = c
                .binary_search_by(|(n, _)| n.cmp(&name))
                .map_err(|_| Errno::ENOENT)?;
            self.attr(c[i].1)
        });
        match found {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inodes = self.inodes.lock().expect(POISONED);
        match get(&inodes, ino.0).map(|n| &n.what) {
            Ok(What::Latest(t)) => reply.data(t.as_bytes()),
            Ok(What::Node(n)) if n.kind == kind::SYMLINK => reply.data(n.link_target_bytes()),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) {
            return reply.error(Errno::EROFS);
        }
        match self.open_file(ino.0) {
            Ok(f) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.files.lock().expect(POISONED).insert(fh, Arc::new(f));
                // The content never changes: the kernel may keep its pages between opens.
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let f = self.files.lock().expect(POISONED).get(&fh.0).cloned();
        let Some(f) = f else {
            return reply.error(Errno::EBADF);
        };
        match self.read_range(ino.0, &f, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.lock().expect(POISONED).remove(&fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino.0) {
            Ok(c) => c,
            Err(e) => return reply.error(e),
        };
        let kinds: Vec<FileType> = {
            let inodes = self.inodes.lock().expect(POISONED);
            children
                .iter()
                .map(|(_, c)| {
                    get(&inodes, *c).map_or(FileType::RegularFile, |n| self.attr_of(*c, n).kind)
                })
                .collect()
        };
        let parent = get(&self.inodes.lock().expect(POISONED), ino.0).map_or(1, |n| n.parent);
        let dots = [
            (ino.0, FileType::Directory, Cow::Borrowed(OsStr::new("."))),
            (parent, FileType::Directory, Cow::Borrowed(OsStr::new(".."))),
        ];
        let entries = dots.into_iter().chain(
            children
                .iter()
                .zip(kinds)
                .map(|((name, c), k)| (*c, k, name.to_os())),
        );
        for (i, (child, k, name)) in entries.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, k, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// A mounted file system: served on a thread of its own until [`Mounted::unmount`].
pub struct Mounted {
    session: fuser::BackgroundSession,
    dir: std::path::PathBuf,
    /// Whether fusermount3 unmounts it when this process dies, however it dies.
    pub auto_unmount: bool,
}

/// How to mount.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Let other users than the one who mounts (and root) in (`allow_other`; the kernel then
    /// checks the files' permissions).
    pub allow_other: bool,
}

/// Mounts `fs` read-only at `dir` (an empty folder, checked by the caller), with fusermount3's
/// auto_unmount, so that the mount goes even when this process is killed. A user other than root
/// can have auto_unmount only where /etc/fuse.conf has `user_allow_other`; without it the mount
/// is made without auto_unmount (`Mounted::auto_unmount` says which).
pub fn mount(fs: MountFs, dir: &std::path::Path, o: Options) -> Result<Mounted, MountError> {
    let fs = Arc::new(fs);
    let attempt = |auto: bool| {
        fuser::spawn_mount(Shared(fs.clone()), dir, &config(o, auto)).map_err(|source| {
            MountError::Mount {
                dir: dir.to_path_buf(),
                source,
            }
        })
    };
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let (session, auto_unmount) = match attempt(true) {
        Ok(s) => (s, true),
        Err(_) if !root && !o.allow_other => (attempt(false)?, false),
        Err(e) => return Err(e),
    };
    Ok(Mounted {
        session,
        dir: dir.to_path_buf(),
        auto_unmount,
    })
}

/// fuser's mount options: read-only, no setuid or devices, auto_unmount when asked.
fn config(o: Options, auto_unmount: bool) -> fuser::Config {
    use fuser::{MountOption as M, SessionACL};
    let mut c = fuser::Config::default();
    c.mount_options = vec![
        M::RO,
        M::NoSuid,
        M::NoDev,
        M::FSName("backupctl".into()),
        M::Subtype("backupctl".into()),
    ];
    if auto_unmount {
        c.mount_options.push(M::AutoUnmount);
    }
    c.acl = match (o.allow_other, auto_unmount) {
        (true, _) => SessionACL::All,
        // fuser asks for allow_root with auto_unmount, as fusermount did.
        (false, true) => SessionACL::RootAndOwner,
        (false, false) => SessionACL::Owner,
    };
    if o.allow_other {
        c.mount_options.push(M::DefaultPermissions);
    }
    c.n_threads = Some(2);
    c
}

/// The file system as fuser takes it (by value) while the caller keeps nothing but an `Arc`.
struct Shared(Arc<MountFs>);

impl Filesystem for Shared {
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.0.lookup(req, parent, name, reply)
    }
    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.0.getattr(req, ino, fh, reply)
    }
    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        self.0.readlink(req, ino, reply)
    }
    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.0.open(req, ino, flags, reply)
    }
    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.0
            .read(req, ino, fh, offset, size, flags, lock_owner, reply)
    }
    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        flush: bool,
        reply: ReplyEmpty,
    ) {
        self.0
            .release(req, ino, fh, flags, lock_owner, flush, reply)
    }
    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.0.readdir(req, ino, fh, offset, reply)
    }
}

impl Mounted {
    /// Whether it is still served (false once someone unmounted it, e.g. `fusermount3 -u`).
    pub fn is_served(&self) -> bool {
        !self.session.guard.is_finished()
    }

    /// Unmounts (lazily: a process still inside the mount keeps what it has open, and the
    /// mount point is free at once) and waits up to `wait` until /proc/self/mountinfo no longer
    /// lists it.
    pub fn unmount(self, wait: Duration) -> Result<(), MountError> {
        let dir = self.dir.clone();
        let failed = |detail: String| MountError::Unmount {
            dir: dir.clone(),
            detail,
        };
        if is_mounted(&dir) {
            let out = std::process::Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(&dir)
                .output()
                .map_err(|e| failed(format!("cannot run fusermount3: {e}")))?;
            if !out.status.success() && is_mounted(&dir) {
                return Err(failed(
                    String::from_utf8_lossy(&out.stderr).trim().to_string(),
                ));
            }
        }
        let deadline = std::time::Instant::now() + wait;
        while is_mounted(&dir) {
            if std::time::Instant::now() > deadline {
                return Err(failed(format!(
                    "it is still listed in /proc/self/mountinfo after {} s",
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The serving threads end when the kernel closes the connection; not waited for (a
        // process that still has a file of the lazily unmounted mount open keeps it alive).
        drop(self.session);
        Ok(())
    }
}

/// Whether /proc/self/mountinfo lists `dir` (canonical) as a mount point.
pub fn is_mounted(dir: &std::path::Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| super::mountinfo::lists(&t, dir))
        .unwrap_or(false)
}
