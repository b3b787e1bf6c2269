//! Backup: walk sources, chunk, deduplicate, compress, encrypt, pack; then index and snapshot.
//!
//! The pipeline: the calling thread walks the file system and builds trees; file workers read
//! files, cut them into chunks (restic's chunker, `engine::chunker`, with the repository's
//! polynomial, so restic's and backupd's backups share blobs) and hash them; sealers compress and encrypt the chunks
//! no one has stored yet and put them into packs; uploaders write finished packs (one for a
//! local disk, `Backend::upload_parallelism` for remote storage). When the
//! walk is done the packs are flushed, then the index is written, then the snapshot: a crash at
//! any instant leaves at most unreferenced packs behind. A long backup also writes the index of
//! the packs it has uploaded every [`INDEX_EVERY`], and the next backup adopts the packs a
//! killed run left without an index (`engine::resume`), so an interrupted backup resumes.
//!
//! With `BackupOptions::manifest` the file workers also hash each file's bytes whole as they
//! chunk them, the walk collects those hashes by path, and the root tree gets a `.backupd`
//! folder holding the `SHA256SUMS` manifest (`repo::manifest`), stored as ordinary data blobs.

use super::chunker::{self, Tables};
use super::exclude::{ExcludeOptions, Excluder};
use super::resume::{adopt_unindexed, Resumed};
use super::targets::{self, Target};
use crate::cancel::{CancelToken, Progress};
use crate::error::POISONED;
use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::crypto::Key;
use crate::repo::id::Id;
use crate::repo::index::{split_into_files, IndexFile, IndexPack};
use crate::repo::manifest::{self, Manifest, Sha256};
use crate::repo::pack::{BlobType, Compression, PackWriter};
use crate::repo::snapshot::{Snapshot, SnapshotSummary, JOB_TAG_PREFIX, PARTIAL_TAG};
use crate::repo::tree::{gomode, kind, Name, Node, Tree};
use crate::repo::Repository;
use crate::retry::Attempt;
use crate::sources::extra::{ExtraContent, ExtraFile};
use crate::sources::locked::{lock_holder, LockedAction, LockedFiles};
use crate::sources::retry::{retry, RetryError, RetryPolicy};
use chrono::{DateTime, FixedOffset, Local};
use crossbeam_channel::{bounded, Receiver, Sender};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread::{Scope, ScopedJoinHandle};

/// Chunk sizes, restic's chunker's: 512 KiB to 8 MiB, 1 MiB on average.
pub const CHUNK_MIN: usize = chunker::MIN_SIZE;
pub const CHUNK_MAX: usize = chunker::MAX_SIZE;
/// Packs are closed once they reach this size.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;
/// Files up to this size are read into memory whole, larger ones are streamed.
const READ_WHOLE_MAX: u64 = 1024 * 1024;
/// Index files hold at most this many blobs (restic keeps them below 8 MiB).
const INDEX_MAX_BLOBS: usize = 40_000;
/// A long backup writes the index of the packs it uploaded so far this often, so that a run
/// cut off later keeps them in the index (adoption of unindexed packs is the fallback).
pub const INDEX_EVERY: std::time::Duration = std::time::Duration::from_secs(5 * 60);

#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Files and folders to back up; a relative one is stored as restic stores it (see
    /// `engine::targets`), the snapshot's `paths` are absolute.
    pub paths: Vec<PathBuf>,
    pub tags: Vec<String>,
    /// Host name to record; this host's by default.
    pub host: Option<String>,
    /// The backupd job this snapshot belongs to (recorded as the tag `job:NAME`).
    pub job: Option<String>,
    pub excludes: ExcludeOptions,
    pub one_file_system: bool,
    /// The parent snapshot; by default the newest with the same host, paths and job.
    pub parent: Option<Id>,
    /// Read every file even when the parent says it is unchanged.
    pub force: bool,
    /// The snapshot's time; now by default.
    pub time: Option<DateTime<FixedOffset>>,
    /// How often a file that changes while it is read is read again before it is stored as is
    /// (with a warning).
    pub change_retries: u32,
    /// What to do with regular files another process holds a write lock on.
    pub locked_files: LockedFiles,
    /// How often the index of the packs uploaded so far is written during the backup.
    pub index_every: std::time::Duration,
    /// Read, chunk and hash as a backup does, and count what it would add, but write nothing:
    /// no pack, index or snapshot (the result's snapshot id is the one it would have had).
    pub dry_run: bool,
    /// Store a manifest of every regular file's SHA-256 at `/.backupd/SHA256SUMS` in the
    /// snapshot (`repo::manifest`): each file read is hashed as it is chunked; a file the parent
    /// says is unchanged takes its hash from the parent's manifest, or is read again when the
    /// parent has none.
    pub manifest: bool,
    /// Save no snapshot when the tree is the parent's (restic's `--skip-if-unchanged`): the
    /// result then names the parent and is `skipped`.
    pub skip_if_unchanged: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            paths: Vec::new(),
            tags: Vec::new(),
            host: None,
            job: None,
            excludes: ExcludeOptions::default(),
            one_file_system: false,
            parent: None,
            force: false,
            time: None,
            change_retries: 2,
            locked_files: LockedFiles::default(),
            index_every: INDEX_EVERY,
            dry_run: false,
            manifest: false,
            skip_if_unchanged: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BackupResult {
    pub snapshot_id: Id,
    pub snapshot: Snapshot,
    pub parent: Option<Id>,
    /// Files that could not be read or changed while read; the snapshot is partial if any.
    pub warnings: Vec<String>,
    /// What was kept from interrupted runs (packs no index listed, adopted at the start).
    pub resumed: Resumed,
    /// The packs this run uploaded, as its index lists them (for `verify_after`).
    pub written: Vec<IndexPack>,
    /// A dry run: nothing was written, `snapshot_id` is the id the snapshot would have had.
    pub dry_run: bool,
    /// Nothing changed since the parent and `skip_if_unchanged` was asked for: no snapshot was
    /// saved, `snapshot_id` is the parent's.
    pub skipped: bool,
}

impl BackupResult {
    pub fn summary(&self) -> &SnapshotSummary {
        self.snapshot
            .summary
            .as_ref()
            .expect("backup always writes a summary")
    }
    pub fn is_partial(&self) -> bool {
        !self.warnings.is_empty()
    }
}

pub use super::targets::absolute;

/// Counters shared by the pipeline's threads.
#[derive(Default)]
struct Counters {
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unmodified: AtomicU64,
    dirs_new: AtomicU64,
    dirs_changed: AtomicU64,
    dirs_unmodified: AtomicU64,
    data_blobs: AtomicU64,
    tree_blobs: AtomicU64,
    data_added: AtomicU64,
    data_added_packed: AtomicU64,
    files_processed: AtomicU64,
    bytes_processed: AtomicU64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}
fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// State the pipeline's threads share.
struct Shared<'a> {
    repo: &'a Repository,
    key: Key,
    compression: Compression,
    /// The chunker's tables for the repository's polynomial.
    tables: Tables,
    /// Blobs stored by this backup so far (or on their way).
    new_blobs: Mutex<HashSet<(Id, BlobType)>>,
    packers: [Mutex<PackWriter>; 2],
    written: Mutex<Written>,
    /// How often the index of the packs uploaded so far is written.
    index_every: std::time::Duration,
    error: Mutex<Option<Error>>,
    failed: AtomicBool,
    counters: Counters,
    warnings: Mutex<Vec<String>>,
    progress: &'a dyn Progress,
    cancel: &'a CancelToken,
    locked: LockedFiles,
    /// When waiting for locked files must stop (one deadline for the whole source).
    locked_until: std::time::Instant,
    /// Chunk buffers handed back by the sealers, for the readers to fill again.
    pool: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    /// Count new blobs instead of storing them (`BackupOptions::dry_run`).
    dry_run: bool,
    /// Hash every file read whole, for the manifest (`BackupOptions::manifest`).
    manifest: bool,
}

/// The packs uploaded so far: those no index file names yet, and the index files written
/// during the backup (merged into the repository's index at the end).
struct Written {
    unindexed: Vec<IndexPack>,
    since: std::time::Instant,
    files: Vec<(Id, IndexFile)>,
}

/// What to do with a file after looking at its locks.
enum LockVerdict {
    Free,
    ReadAnyway,
    Skip,
}

impl<'a> Shared<'a> {
    /// The pipeline's state for a backup into `repo`, its packers empty; waiting for locked
    /// files ends at `locked.retry.deadline` from now.
    fn new(
        repo: &'a Repository,
        opts: &BackupOptions,
        progress: &'a dyn Progress,
        cancel: &'a CancelToken,
        tables: Tables,
    ) -> Shared<'a> {
        Shared {
            repo,
            key: repo.key().clone(),
            compression: repo.compression,
            tables,
            new_blobs: Mutex::new(HashSet::new()),
            packers: [Mutex::new(PackWriter::new()), Mutex::new(PackWriter::new())],
            written: Mutex::new(Written {
                unindexed: Vec::new(),
                since: std::time::Instant::now(),
                files: Vec::new(),
            }),
            index_every: opts.index_every,
            dry_run: opts.dry_run,
            manifest: opts.manifest,
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
            counters: Counters::default(),
            warnings: Mutex::new(Vec::new()),
            progress,
            cancel,
            locked: opts.locked_files,
            locked_until: std::time::Instant::now() + opts.locked_files.retry.deadline,
            pool: crossbeam_channel::bounded(2),
        }
    }

    /// The first error a thread of the pipeline met, if any.
    fn take_error(&self) -> Option<Error> {
        self.error.lock().expect(POISONED).take()
    }

    /// After the pipeline: the packs it uploaded and the warnings it collected.
    fn take_results(&self) -> (Written, Vec<String>) {
        let mut w = self.written.lock().expect(POISONED);
        let written = Written {
            unindexed: std::mem::take(&mut w.unindexed),
            since: w.since,
            files: std::mem::take(&mut w.files),
        };
        let warnings = std::mem::take(&mut *self.warnings.lock().expect(POISONED));
        (written, warnings)
    }

    /// Records an uploaded pack; when `index_every` has passed since the last index file, writes
    /// the index of the packs uploaded since (a failure fails the backup, as a pack's would).
    fn record_pack(&self, pack: IndexPack) {
        let due = {
            let mut w = self.written.lock().expect(POISONED);
            w.unindexed.push(pack);
            if w.since.elapsed() < self.index_every {
                return;
            }
            w.since = std::time::Instant::now();
            std::mem::take(&mut w.unindexed)
        };
        match save_index_files(self.repo, due) {
            Ok(files) => self.written.lock().expect(POISONED).files.extend(files),
            Err(e) => self.fail(e),
        }
    }

    /// A buffer holding a copy of `data`, from the pool when one is free.
    fn buffer_with(&self, data: &[u8]) -> Vec<u8> {
        let mut v = self.pool.1.try_recv().unwrap_or_default();
        v.clear();
        v.extend_from_slice(data);
        v
    }

    /// Gives a chunk buffer back (dropped when the pool is full).
    fn recycle(&self, v: Vec<u8>) {
        if v.capacity() >= CHUNK_MIN {
            let _ = self.pool.0.try_send(v);
        }
    }

    /// Waits while another process holds a write lock on `path` (within the source's deadline),
    /// then applies the policy.
    fn lock_verdict(&self, path: &Path) -> LockVerdict {
        let Some(holder) = lock_holder(path) else {
            return LockVerdict::Free;
        };
        let remaining = self
            .locked_until
            .saturating_duration_since(std::time::Instant::now());
        let policy = RetryPolicy {
            deadline: remaining,
            ..self.locked.retry
        };
        let what = path.display().to_string();
        let mut first = Some(holder);
        let r: std::result::Result<(), RetryError<()>> = retry(
            &policy,
            &what,
            self.cancel,
            &mut |w| self.progress.note(&w.message()),
            || match first.take().or_else(|| lock_holder(path)) {
                None => Attempt::Done(()),
                Some(holder) => Attempt::Retry(holder),
            },
        );
        match r {
            Ok(()) => LockVerdict::Free,
            Err(RetryError::Cancelled(_)) | Err(RetryError::Failed(())) => LockVerdict::Skip,
            Err(RetryError::Deadline { holder, waited, .. }) => match self.locked.action {
                LockedAction::Fail => {
                    self.fail(Error::Source {
                        what: path.display().to_string(),
                        message: format!(
                            "locked by another process ({holder}), still after {:.0?}; the backup fails (locked-file policy: fail)\n  hint: stop that process or let it finish, raise the wait deadline, or choose the policy skip or read-anyway",
                            waited
                        ),
                    });
                    LockVerdict::Skip
                }
                LockedAction::Skip => {
                    self.warn(format!(
                        "{} is locked by another process ({holder}); it is left out of this snapshot (locked-file policy: skip)",
                        path.display()
                    ));
                    LockVerdict::Skip
                }
                LockedAction::ReadAnyway => {
                    self.warn(format!(
                        "{} is locked by another process ({holder}); it was read anyway and may be inconsistent (locked-file policy: read-anyway)",
                        path.display()
                    ));
                    LockVerdict::ReadAnyway
                }
            },
        }
    }

    /// Stores a new blob: hands it to the sealers, or in a dry run only counts it.
    fn store(&self, job: BlobJob, blobs: &Sender<BlobJob>) {
        if !self.dry_run {
            let _ = blobs.send(job);
            return;
        }
        if job.tpe == BlobType::Data {
            add(&self.counters.data_blobs, 1);
            add(&self.counters.data_added, job.data.len() as u64);
            self.recycle(job.data);
        } else {
            add(&self.counters.tree_blobs, 1);
        }
    }

    /// True when the caller must store this blob: it is in neither the index nor this backup.
    fn claim(&self, id: Id, tpe: BlobType) -> bool {
        if self.repo.index().has(&id, tpe) {
            return false;
        }
        self.new_blobs.lock().expect(POISONED).insert((id, tpe))
    }

    fn fail(&self, e: Error) {
        let mut g = self.error.lock().expect(POISONED);
        if g.is_none() {
            *g = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    fn warn(&self, msg: String) {
        self.progress.note(&format!("warning: {msg}"));
        self.warnings.lock().expect(POISONED).push(msg);
    }

    fn stop_requested(&self) -> bool {
        self.failed.load(Ordering::SeqCst) || self.cancel.is_cancelled()
    }

    fn packer(&self, tpe: BlobType) -> &Mutex<PackWriter> {
        match tpe {
            BlobType::Data => &self.packers[0],
            BlobType::Tree => &self.packers[1],
        }
    }
}

/// A new blob on its way to a pack.
struct BlobJob {
    tpe: BlobType,
    id: Id,
    data: Vec<u8>,
}

/// A file to read.
struct FileJob {
    path: PathBuf,
    md: Metadata,
    reply: Sender<FileResult>,
    /// Staging copies made by backupd itself are not probed for locks.
    skip_lock_check: bool,
}

enum FileResult {
    Read {
        content: Vec<Id>,
        size: u64,
        md: Box<Metadata>,
        /// The SHA-256 of the bytes read, when the backup makes a manifest.
        sha256: Option<Sha256>,
    },
    Unreadable,
}

fn sealer(sh: &Shared, rx: Receiver<BlobJob>, up: Sender<PackWriter>) {
    // One compressor and output buffer per sealer, reused for every blob.
    let mut compressor = match sh.compression {
        Compression::Level(l) => zstd::bulk::Compressor::new(l).ok(),
        Compression::Off => None,
    };
    let mut cbuf: Vec<u8> = Vec::new();
    for job in rx {
        let len = job.data.len();
        let compressed = compressor.as_mut().is_some_and(|c| {
            cbuf.clear();
            cbuf.reserve(zstd::zstd_safe::compress_bound(len));
            matches!(c.compress_to_buffer(&job.data, &mut cbuf), Ok(n) if n < len)
        });
        let (payload, ulen) = if compressed {
            (&cbuf[..], Some(len as u32))
        } else {
            (&job.data[..], None)
        };
        if job.tpe == BlobType::Data {
            add(&sh.counters.data_blobs, 1);
            add(&sh.counters.data_added, len as u64);
        } else {
            add(&sh.counters.tree_blobs, 1);
        }
        let full = {
            let mut p = sh.packer(job.tpe).lock().expect(POISONED);
            let sealed = p.add_sealing(&sh.key, job.id, job.tpe, payload, ulen);
            add(&sh.counters.data_added_packed, sealed as u64);
            if p.size() >= PACK_TARGET {
                Some(std::mem::replace(
                    &mut *p,
                    PackWriter::with_capacity(PACK_TARGET + CHUNK_MAX),
                ))
            } else {
                None
            }
        };
        sh.recycle(job.data);
        if let Some(p) = full {
            let _ = up.send(p);
        }
    }
}

fn uploader(sh: &Shared, rx: Receiver<PackWriter>) {
    for p in rx {
        if sh.failed.load(Ordering::SeqCst) {
            continue; // drain, so that nobody blocks
        }
        let (bytes, id, blobs) = p.finish(&sh.key);
        match sh.repo.save_pack(&id, &bytes) {
            Ok(()) => sh.record_pack(IndexPack::from_packed(id, &blobs)),
            Err(e) => sh.fail(e),
        }
    }
}

fn same_stat(a: &Metadata, b: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.len() == b.len()
            && a.mtime() == b.mtime()
            && a.mtime_nsec() == b.mtime_nsec()
            && a.ctime() == b.ctime()
            && a.ctime_nsec() == b.ctime_nsec()
            && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        a.len() == b.len() && a.modified().ok() == b.modified().ok()
    }
}

/// Cuts a stream into content-defined chunks (restic's chunker with `tables`, 512 KiB to
/// 8 MiB) through one reusable buffer of twice the largest chunk, handing each chunk to `emit`;
/// memory stays bounded whatever the stream's length.
fn cut_stream(
    tables: &Tables,
    r: &mut dyn Read,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&[u8]),
) -> std::io::Result<u64> {
    let cap = 2 * CHUNK_MAX;
    if buf.len() < cap {
        buf.resize(cap, 0);
    }
    let (mut start, mut end, mut eof, mut total) = (0usize, 0usize, false, 0u64);
    loop {
        if !eof && end - start < CHUNK_MAX {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            while end < cap {
                match r.read(&mut buf[end..cap]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => end += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if start == end {
            return Ok(total);
        }
        // The window holds at least CHUNK_MAX bytes unless the stream ended, and each chunk
        // depends only on its own bytes, so the first cut is the one a streaming chunker makes.
        let window = &buf[start..end];
        let len = chunker::first_cut(tables, window);
        emit(&window[..len]);
        start += len;
        total += len as u64;
    }
}

/// Hashes one chunk and, if no one has stored it yet, hands a copy to the sealers.
fn take_chunk(sh: &Shared, data: &[u8], content: &mut Vec<Id>, blobs: &Sender<BlobJob>) {
    let id = Id::hash(data);
    sh.progress.inc(data.len() as u64);
    content.push(id);
    if sh.claim(id, BlobType::Data) {
        let job = BlobJob {
            tpe: BlobType::Data,
            id,
            data: sh.buffer_with(data),
        };
        sh.store(job, blobs);
    }
}

/// What reading one file or stream gave: its chunks, its length, and (for the manifest) the
/// SHA-256 of the bytes read.
struct Chunked {
    content: Vec<Id>,
    size: u64,
    sha256: Option<Sha256>,
}

/// The whole-content hasher of a read: one when the backup makes a manifest.
fn content_hasher(sh: &Shared) -> Option<sha2::Sha256> {
    sh.manifest.then(sha2::Sha256::new)
}

/// Chunks a stream (a command's output, the manifest) into new blobs.
fn chunk_stream(
    sh: &Shared,
    r: &mut dyn Read,
    blobs: &Sender<BlobJob>,
) -> std::io::Result<Chunked> {
    let mut content = Vec::new();
    let mut buf = Vec::new();
    let mut hasher = content_hasher(sh);
    let size = cut_stream(&sh.tables, r, &mut buf, |c| {
        if let Some(h) = hasher.as_mut() {
            h.update(c);
        }
        take_chunk(sh, c, &mut content, blobs)
    })?;
    Ok(Chunked {
        content,
        size,
        sha256: hasher.map(|h| h.finalize().into()),
    })
}

/// Reads one file, chunks and hashes it, and hands new chunks to the sealers; a file that
/// changes while it is read is read again, up to `retries` times.
fn read_file(
    sh: &Shared,
    job: &FileJob,
    blobs: &Sender<BlobJob>,
    retries: u32,
    buf: &mut Vec<u8>,
) -> FileResult {
    if !job.skip_lock_check {
        match sh.lock_verdict(&job.path) {
            LockVerdict::Free | LockVerdict::ReadAnyway => {}
            LockVerdict::Skip => return FileResult::Unreadable,
        }
    }
    let mut md = job.md.clone();
    let mut attempt = 0;
    loop {
        let (read, after) = match read_once(sh, &job.path, md.len(), blobs, buf) {
            Ok(r) => r,
            Err(e) => {
                sh.warn(format!(
                    "cannot read {}: {e}; it is left out of this snapshot",
                    job.path.display()
                ));
                return FileResult::Unreadable;
            }
        };
        let size = read.size;
        let unchanged = same_stat(&md, &after) && after.len() == size;
        if !unchanged && attempt < retries {
            attempt += 1;
            md = after;
            continue;
        }
        if !unchanged {
            sh.warn(format!(
                "{} changed while it was read ({} tries); the snapshot holds the last read ({} bytes), which may be inconsistent",
                job.path.display(),
                attempt + 1,
                size
            ));
        }
        add(&sh.counters.bytes_processed, size);
        return FileResult::Read {
            content: read.content,
            size,
            md: Box::new(after),
            sha256: read.sha256,
        };
    }
}

/// Reads the file at `path` once (whole when `len`, its size before, is at most
/// [`READ_WHOLE_MAX`], streamed through `buf` otherwise), handing new chunks to the sealers;
/// returns its chunks, the bytes read (and their SHA-256 for the manifest) and its metadata
/// after the read.
fn read_once(
    sh: &Shared,
    path: &Path,
    len: u64,
    blobs: &Sender<BlobJob>,
    buf: &mut Vec<u8>,
) -> std::io::Result<(Chunked, Metadata)> {
    let mut content = Vec::new();
    let mut size = 0u64;
    let mut hasher = content_hasher(sh);
    let mut f = open_noatime(path)?;
    let mut handle = |data: Vec<u8>| {
        if let Some(h) = hasher.as_mut() {
            h.update(&data);
        }
        let id = Id::hash(&data);
        size += data.len() as u64;
        sh.progress.inc(data.len() as u64);
        content.push(id);
        if sh.claim(id, BlobType::Data) {
            let job = BlobJob {
                tpe: BlobType::Data,
                id,
                data,
            };
            sh.store(job, blobs);
        }
    };
    if len <= READ_WHOLE_MAX {
        let mut buf = Vec::with_capacity(len as usize + 1);
        f.read_to_end(&mut buf)?;
        if buf.len() <= CHUNK_MIN {
            if !buf.is_empty() {
                handle(buf);
            }
        } else {
            let mut off = 0;
            for len in chunker::cuts(&sh.tables, &buf) {
                handle(buf[off..off + len].to_vec());
                off += len;
            }
        }
    } else {
        size += cut_stream(&sh.tables, &mut f, buf, |c| {
            if let Some(h) = hasher.as_mut() {
                h.update(c);
            }
            take_chunk(sh, c, &mut content, blobs)
        })?;
    }
    let after = f.metadata()?;
    let read = Chunked {
        content,
        size,
        sha256: hasher.map(|h| h.finalize().into()),
    };
    Ok((read, after))
}

/// Opens a file for reading without updating its access time (as restic does), so that backing
/// up does not change the source; falls back to a plain open where the kernel refuses
/// `O_NOATIME` (files of other users when not root).
fn open_noatime(path: &Path) -> std::io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOATIME)
            .open(path)
        {
            Ok(f) => return Ok(f),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => return Err(e),
        }
    }
    File::open(path)
}

/// The names in a directory, listed without updating its access time where the kernel allows.
fn list_dir(path: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::OFlag;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = match nix::dir::Dir::open(
            path,
            flags | OFlag::O_NOATIME,
            nix::sys::stat::Mode::empty(),
        ) {
            Err(nix::errno::Errno::EPERM) => {
                nix::dir::Dir::open(path, flags, nix::sys::stat::Mode::empty())
            }
            other => other,
        };
        let mut dir = dir.map_err(std::io::Error::from)?;
        let mut out = Vec::new();
        for ent in dir.iter() {
            let ent = ent.map_err(std::io::Error::from)?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name)
                        .to_os_string(),
                );
            }
        }
        Ok(out)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut out = Vec::new();
        for ent in fs::read_dir(path)? {
            out.push(ent?.file_name());
        }
        Ok(out)
    }
}

fn file_worker(sh: &Shared, rx: Receiver<FileJob>, blobs: Sender<BlobJob>, retries: u32) {
    let mut buf = Vec::new();
    for job in rx {
        if sh.stop_requested() {
            let _ = job.reply.send(FileResult::Unreadable);
            continue;
        }
        let r = read_file(sh, &job, &blobs, retries, &mut buf);
        let _ = job.reply.send(r);
    }
}

/// Builds nodes from file metadata, caching user and group names (Unix).
struct NodeMaker {
    #[cfg(unix)]
    users: HashMap<u32, String>,
    #[cfg(unix)]
    groups: HashMap<u32, String>,
}

#[cfg(unix)]
fn ts(secs: i64, nsec: i64) -> DateTime<FixedOffset> {
    use chrono::TimeZone;
    let utc = chrono::Utc
        .timestamp_opt(secs, nsec as u32)
        .single()
        .unwrap_or_default();
    utc.with_timezone(&Local).fixed_offset()
}

impl NodeMaker {
    fn new() -> NodeMaker {
        NodeMaker {
            #[cfg(unix)]
            users: HashMap::new(),
            #[cfg(unix)]
            groups: HashMap::new(),
        }
    }

    #[cfg(unix)]
    fn node(&mut self, name: impl Into<Name>, path: &Path, md: &Metadata) -> std::io::Result<Node> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let ft = md.file_type();
        let k = if ft.is_file() {
            kind::FILE
        } else if ft.is_dir() {
            kind::DIR
        } else if ft.is_symlink() {
            kind::SYMLINK
        } else if ft.is_block_device() {
            kind::DEV
        } else if ft.is_char_device() {
            kind::CHARDEV
        } else if ft.is_fifo() {
            kind::FIFO
        } else {
            kind::SOCKET
        };
        let mut n = Node::new(name, k);
        n.mode = gomode::from_unix(md.mode());
        n.mtime = ts(md.mtime(), md.mtime_nsec());
        n.atime = ts(md.atime(), md.atime_nsec());
        n.ctime = ts(md.ctime(), md.ctime_nsec());
        n.uid = md.uid();
        n.gid = md.gid();
        n.user = self
            .users
            .entry(md.uid())
            .or_insert_with(|| {
                nix::unistd::User::from_uid(md.uid().into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_default()
            })
            .clone();
        n.group = self
            .groups
            .entry(md.gid())
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(md.gid().into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .unwrap_or_default()
            })
            .clone();
        n.inode = md.ino();
        n.device_id = md.dev();
        n.links = md.nlink();
        match k {
            kind::FILE => n.size = md.len(),
            kind::SYMLINK => {
                use std::os::unix::ffi::OsStringExt;
                n.set_link_target(fs::read_link(path)?.into_os_string().into_vec())
            }
            kind::DEV | kind::CHARDEV => n.device = md.rdev(),
            _ => {}
        }
        if k != kind::SYMLINK {
            n.extended_attributes = read_xattrs(path);
        }
        Ok(n)
    }

    #[cfg(not(unix))]
    fn node(&mut self, name: impl Into<Name>, path: &Path, md: &Metadata) -> std::io::Result<Node> {
        let ft = md.file_type();
        let k = if ft.is_dir() {
            kind::DIR
        } else if ft.is_symlink() {
            kind::SYMLINK
        } else {
            kind::FILE
        };
        let mut n = Node::new(name, k);
        n.mode = if ft.is_dir() {
            gomode::DIR | 0o755
        } else {
            0o644
        };
        if let Ok(m) = md.modified() {
            let d: DateTime<Local> = m.into();
            n.mtime = d.fixed_offset();
        }
        n.atime = n.mtime;
        n.ctime = n.mtime;
        if k == kind::FILE {
            n.size = md.len();
        }
        if k == kind::SYMLINK {
            n.linktarget = fs::read_link(path)?.to_string_lossy().into_owned();
        }
        Ok(n)
    }
}

/// The extended attributes of `path` (not following a symlink), in the order the file system
/// lists them, as restic stores them (so the trees of both are the same bytes);
/// none where the file system has none. One that cannot be read is left out with a warning in
/// the log.
#[cfg(unix)]
fn read_xattrs(path: &Path) -> Vec<crate::repo::tree::ExtendedAttribute> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) => {
            if e.raw_os_error() != Some(libc::ENOTSUP) {
                tracing::warn!(
                    "cannot list the extended attributes of {}: {e}",
                    path.display()
                );
            }
            return Vec::new();
        }
    };
    names
        .filter_map(|name| match xattr::get(path, &name) {
            Ok(v) => Some(crate::repo::tree::ExtendedAttribute {
                name: name.to_string_lossy().into_owned(),
                value: v.unwrap_or_default(),
            }),
            Err(e) => {
                tracing::warn!(
                    "cannot read the extended attribute {} of {}: {e}",
                    name.to_string_lossy(),
                    path.display()
                );
                None
            }
        })
        .collect()
}

/// A folder node for a path that exists only in the snapshot.
fn synthetic_dir(name: &str) -> Node {
    let now = Local::now().fixed_offset();
    let mut n = Node::new(name, kind::DIR);
    n.mode = gomode::DIR | 0o755;
    n.mtime = now;
    n.atime = now;
    n.ctime = now;
    n.uid = crate::sysinfo::uid();
    n.gid = crate::sysinfo::gid();
    n
}

/// A file node for content made by backupd (a command's output, the manifest): the given
/// permissions, the time of the backup, this process's owner; size and content still empty.
fn stream_file_node(name: &str, perm: u32) -> Node {
    let now = Local::now().fixed_offset();
    let mut node = Node::new(name, kind::FILE);
    node.mode = perm;
    node.mtime = now;
    node.atime = now;
    node.ctime = now;
    node.uid = crate::sysinfo::uid();
    node.gid = crate::sysinfo::gid();
    node.user = crate::sysinfo::username();
    node
}

/// The walk: a virtual tree of the targets' names in the snapshot.
#[derive(Default)]
struct VDir {
    /// Where this entry is on disk (for a target, the target itself; above it, the folders
    /// that hold it); for an extra, its snapshot path (its key in the plan's `tree_extras`).
    disk: PathBuf,
    /// Set when this component is itself a target (then it is walked whole).
    target: bool,
    /// Set when this component is an extra file.
    extra: bool,
    children: BTreeMap<String, VDir>,
}

impl VDir {
    /// The entry of `t` below this one (the root), made on the way, each with its disk path.
    fn descend_target(&mut self, t: &Target) -> &mut VDir {
        let mut v = self;
        for (i, name) in t.tree.iter().enumerate() {
            v = v.children.entry(name.clone()).or_insert_with(|| VDir {
                disk: t.disk_at(i + 1).to_path_buf(),
                ..VDir::default()
            });
        }
        v
    }

    /// The entry of the snapshot path `path` (its normal components) below this one (the
    /// root), made on the way; an entry made here is on disk where its parent is, plus its name.
    fn descend(&mut self, path: &Path) -> &mut VDir {
        let mut v = self;
        for c in path.components() {
            if let Component::Normal(s) = c {
                let disk = v.disk.join(s);
                v = v
                    .children
                    .entry(s.to_string_lossy().into_owned())
                    .or_insert_with(|| VDir {
                        disk,
                        ..VDir::default()
                    });
            }
        }
        v
    }
}

struct Walker<'a, 's> {
    sh: &'a Shared<'s>,
    files: Sender<FileJob>,
    blobs: Sender<BlobJob>,
    excluder: Excluder,
    one_fs_dev: Option<u64>,
    force: bool,
    nodes: NodeMaker,
    extras: HashMap<PathBuf, ExtraFile>,
    tree_extras: HashMap<PathBuf, ExtraFile>,
    /// The names below the root of the directory being walked (manifest paths).
    at: Vec<String>,
    /// The manifest being made (`BackupOptions::manifest`).
    manifest: Option<ManifestState>,
}

/// The manifest a backup makes as it walks, and the parent's, whose hashes the files the
/// parent says are unchanged take.
#[derive(Default)]
pub(super) struct ManifestState {
    files: Manifest,
    parent: Manifest,
    /// The parent's manifest nodes: kept as they are when the manifest did not change.
    parent_nodes: Option<manifest::Stored>,
}

/// The device a file is on (`one_file_system`; 0 where there is no such notion).
pub(super) fn device_of(md: &Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::dev(md)
    }
    #[cfg(not(unix))]
    {
        let _ = md;
        0
    }
}

impl Walker<'_, '_> {
    fn parent_tree(&self, id: Option<Id>) -> Option<Tree> {
        let id = id?;
        // A parent tree that cannot be read only means we read everything again.
        self.sh.repo.load_tree(&id).ok()
    }

    /// Stores a tree blob (unless known) and returns its id.
    fn save_tree(&mut self, mut t: Tree) -> Id {
        t.sort();
        let bytes = t.serialize();
        let id = Id::hash(&bytes);
        if self.sh.claim(id, BlobType::Tree) {
            let job = BlobJob {
                tpe: BlobType::Tree,
                id,
                data: bytes,
            };
            self.sh.store(job, &self.blobs);
        }
        id
    }

    fn count_dir(&self, parent: Option<&Node>, subtree: Id) {
        let c = &self.sh.counters;
        match parent.and_then(|p| p.subtree) {
            None => add(&c.dirs_new, 1),
            Some(s) if s == subtree => add(&c.dirs_unmodified, 1),
            Some(_) => add(&c.dirs_changed, 1),
        }
    }

    /// The root tree: the virtual root's entries and, when the backup makes one, the manifest.
    fn save_root(&mut self, v: &VDir, parent: Option<Id>) -> Result<Id> {
        let mut nodes = self.vdir_nodes(v, parent)?;
        if self.manifest.is_some() {
            nodes.push(self.manifest_node()?);
        }
        Ok(self.save_tree(Tree { nodes }))
    }

    /// The tree of a virtual directory: intermediate components and targets.
    fn save_vdir(&mut self, v: &VDir, parent: Option<Id>) -> Result<Id> {
        let nodes = self.vdir_nodes(v, parent)?;
        Ok(self.save_tree(Tree { nodes }))
    }

    /// The nodes of a virtual directory's tree.
    fn vdir_nodes(&mut self, v: &VDir, parent: Option<Id>) -> Result<Vec<Node>> {
        let ptree = self.parent_tree(parent);
        let mut nodes = Vec::new();
        for (name, child) in &v.children {
            self.sh.cancel.check()?;
            let cpath = child.disk.clone();
            let pnode = ptree.as_ref().and_then(|t| t.find(name)).cloned();
            if child.target {
                if let Some(n) = self.save_entry(&cpath, &Name::from(name), pnode.as_ref(), true)? {
                    nodes.push(n);
                }
                continue;
            }
            if child.extra {
                let e = self.tree_extras.remove(&child.disk);
                if let Some(n) = self.save_extra(e, name, pnode.as_ref())? {
                    nodes.push(n);
                }
                continue;
            }
            let mut n = match fs::metadata(&cpath) {
                Ok(md) if md.is_dir() => self.nodes.node(name, &cpath, &md).map_err(|e| {
                    Error::io(format!("read the metadata of {}", cpath.display()), e)
                })?,
                // A folder that holds only extra files and does not exist on disk.
                Ok(_) | Err(_) if !child.children.is_empty() => synthetic_dir(name),
                Err(e) => {
                    return Err(Error::io(
                        format!("read the metadata of {}", cpath.display()),
                        e,
                    ))
                }
                Ok(_) => synthetic_dir(name),
            };
            let psub = pnode
                .as_ref()
                .filter(|p| p.is_dir())
                .and_then(|p| p.subtree);
            self.at.push(name.clone());
            let sub = self.save_vdir(child, psub);
            self.at.pop();
            let sub = sub?;
            self.count_dir(pnode.as_ref(), sub);
            n.subtree = Some(sub);
            nodes.push(n);
        }
        Ok(nodes)
    }

    /// Records the SHA-256 of the file `name` in the directory being walked.
    fn record_hash(&mut self, name: &str, sha256: Option<Sha256>) {
        if let (Some(m), Some(h)) = (self.manifest.as_mut(), sha256) {
            m.files.files.insert(manifest::path_of(&self.at, name), h);
        }
    }

    /// Whether the file `name` may keep the parent's content: without a manifest always; with
    /// one when the parent's manifest has its hash (which is then recorded).
    fn reuse_hash(&mut self, name: &str) -> bool {
        let Some(m) = self.manifest.as_mut() else {
            return true;
        };
        let path = manifest::path_of(&self.at, name);
        match m.parent.files.get(&path) {
            Some(h) => {
                m.files.files.insert(path, *h);
                true
            }
            None => false,
        }
    }

    /// The `.backupd` folder node holding the manifest of every file recorded, its content
    /// stored as data blobs; the parent's node when the manifest did not change.
    fn manifest_node(&mut self) -> Result<Node> {
        let state = self.manifest.take().unwrap_or_default();
        let text = state.files.render();
        let read = chunk_stream(self.sh, &mut &text[..], &self.blobs)
            .map_err(|e| Error::io("chunk the manifest", e))?;
        if let Some(p) = state.parent_nodes {
            let kept = p
                .dir
                .subtree
                .is_some_and(|t| self.sh.repo.index().has(&t, BlobType::Tree));
            if kept && p.file.content.as_ref() == Some(&read.content) {
                return Ok(p.dir);
            }
        }
        let mut file = stream_file_node(manifest::FILE, 0o600);
        file.size = read.size;
        file.content = Some(read.content);
        let mut dir = synthetic_dir(manifest::DIR);
        dir.mode = gomode::DIR | 0o700;
        dir.user = crate::sysinfo::username();
        dir.subtree = Some(self.save_tree(Tree { nodes: vec![file] }));
        Ok(dir)
    }

    /// One entry of the file system; `None` when it is excluded or unreadable.
    fn save_entry(
        &mut self,
        path: &Path,
        name: &Name,
        pnode: Option<&Node>,
        is_root: bool,
    ) -> Result<Option<Node>> {
        if let Some(e) = self.extras.remove(path) {
            return self.save_extra(Some(e), name.as_str(), pnode);
        }
        if self.excluder.is_excluded(path) {
            return Ok(None);
        }
        let md = match fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) => {
                self.sh.warn(format!(
                    "cannot read {}: {e}; it is left out of this snapshot",
                    path.display()
                ));
                return Ok(None);
            }
        };
        if is_root && self.one_fs_dev.is_some() {
            self.one_fs_dev = Some(device_of(&md));
        }
        let mut node = match self.nodes.node(name, path, &md) {
            Ok(n) => n,
            Err(e) => {
                self.sh.warn(format!(
                    "cannot read {}: {e}; it is left out of this snapshot",
                    path.display()
                ));
                return Ok(None);
            }
        };
        if node.is_dir() {
            if let Some(dev) = self.one_fs_dev {
                if !is_root && device_of(&md) != dev {
                    return Ok(None);
                }
            }
            let psub = pnode.filter(|p| p.is_dir()).and_then(|p| p.subtree);
            self.at.push(name.to_string());
            let sub = self.save_dir(path, psub);
            self.at.pop();
            let sub = sub?;
            self.count_dir(pnode, sub);
            node.subtree = Some(sub);
            return Ok(Some(node));
        }
        if node.is_file() {
            // Single files given as targets are read right away.
            let (tx, rx) = bounded(1);
            match self.file_content(path, &md, &mut node, pnode, tx) {
                Some(_) => {}
                None => return Ok(self.finish_file(node, pnode, rx.recv().ok())),
            }
        }
        Ok(Some(node))
    }

    /// Either fills the node's content from the parent (returns Some) or queues the file to be
    /// read and returns None (the result comes on `reply`).
    fn file_content(
        &mut self,
        path: &Path,
        md: &Metadata,
        node: &mut Node,
        pnode: Option<&Node>,
        reply: Sender<FileResult>,
    ) -> Option<()> {
        if !self.force {
            if let Some(p) = pnode {
                let unchanged = p.is_file()
                    && p.size == node.size
                    && p.mtime == node.mtime
                    && p.ctime == node.ctime
                    && p.inode == node.inode
                    && p.content.as_ref().is_some_and(|c| {
                        c.iter().all(|b| {
                            self.sh.repo.index().has(b, BlobType::Data)
                                || self
                                    .sh
                                    .new_blobs
                                    .lock()
                                    .expect(POISONED)
                                    .contains(&(*b, BlobType::Data))
                        })
                    });
                if unchanged && self.reuse_hash(&node.name) {
                    node.content = p.content.clone();
                    add(&self.sh.counters.files_unmodified, 1);
                    add(&self.sh.counters.files_processed, 1);
                    add(&self.sh.counters.bytes_processed, node.size);
                    self.sh.progress.inc(node.size);
                    return Some(());
                }
            }
        }
        let _ = self.files.send(FileJob {
            path: path.to_path_buf(),
            md: md.clone(),
            reply,
            skip_lock_check: false,
        });
        None
    }

    fn finish_file(
        &mut self,
        mut node: Node,
        pnode: Option<&Node>,
        r: Option<FileResult>,
    ) -> Option<Node> {
        match r {
            Some(FileResult::Read {
                content,
                size,
                md,
                sha256,
            }) => {
                self.record_hash(&node.name, sha256);
                // The node describes what was read.
                if let Ok(n2) = self.nodes.node(&node.name, Path::new(""), &md) {
                    node.mtime = n2.mtime;
                    node.ctime = n2.ctime;
                    node.mode = n2.mode;
                }
                node.size = size;
                let c = &self.sh.counters;
                add(&c.files_processed, 1);
                match pnode {
                    None => add(&c.files_new, 1),
                    Some(p) if p.content.as_ref() == Some(&content) => add(&c.files_unmodified, 1),
                    Some(_) => add(&c.files_changed, 1),
                }
                node.content = Some(content);
                Some(node)
            }
            _ => None,
        }
    }

    fn extra_failed(&self, required: bool, what: &str, msg: String) -> Result<Option<Node>> {
        if required {
            Err(Error::Source {
                what: what.to_string(),
                message: msg,
            })
        } else {
            self.sh.warn(format!("{what}: {msg}"));
            Ok(None)
        }
    }

    fn count_file(&self, pnode: Option<&Node>, content: &[Id]) {
        let c = &self.sh.counters;
        add(&c.files_processed, 1);
        match pnode {
            None => add(&c.files_new, 1),
            Some(p) if p.content.as_deref() == Some(content) => add(&c.files_unmodified, 1),
            Some(_) => add(&c.files_changed, 1),
        }
    }

    /// Stores an extra file (a database copy, a command's output) as `name`.
    fn save_extra(
        &mut self,
        extra: Option<ExtraFile>,
        name: &str,
        pnode: Option<&Node>,
    ) -> Result<Option<Node>> {
        let Some(extra) = extra else {
            return Ok(None);
        };
        let (describe, required) = (extra.describe, extra.required);
        match extra.content {
            ExtraContent::File {
                path: content,
                meta_from,
            } => {
                let r = self.save_extra_copy(name, pnode, &content, meta_from.as_deref());
                match r? {
                    Ok(node) => Ok(Some(node)),
                    Err(msg) => self.extra_failed(required, &describe, msg),
                }
            }
            ExtraContent::Stream(mut src) => {
                let read = chunk_stream(self.sh, src.reader(), &self.blobs);
                let finished = src.finish();
                let read = match (read, finished) {
                    (Ok(r), Ok(())) => r,
                    (_, Err(e)) => return self.extra_failed(required, &describe, e),
                    (Err(e), Ok(())) => {
                        return self.extra_failed(
                            required,
                            &describe,
                            format!("reading its output failed: {e}"),
                        )
                    }
                };
                self.record_hash(name, read.sha256);
                Ok(Some(self.stream_node(name, pnode, read.content, read.size)))
            }
        }
    }

    /// The node of an extra file whose content is the local file `content` (a staged copy),
    /// with the metadata of `meta_from` when given; the inner `Err` says why the copy could
    /// not be read.
    fn save_extra_copy(
        &mut self,
        name: &str,
        pnode: Option<&Node>,
        content: &Path,
        meta_from: Option<&Path>,
    ) -> Result<std::result::Result<Node, String>> {
        let cmd = match fs::metadata(content) {
            Ok(m) => m,
            Err(e) => {
                return Ok(Err(format!(
                    "cannot read its copy {}: {e}",
                    content.display()
                )))
            }
        };
        let meta_path = meta_from.unwrap_or(content);
        let mmd = fs::metadata(meta_path).unwrap_or_else(|_| cmd.clone());
        let mut node = self
            .nodes
            .node(name, meta_path, &mmd)
            .map_err(|e| Error::io(format!("read the metadata of {}", meta_path.display()), e))?;
        node.kind = kind::FILE.to_string();
        node.mode &= gomode::PERM | gomode::SETUID | gomode::SETGID | gomode::STICKY;
        node.linktarget.clear();
        let (tx, rx) = bounded(1);
        let _ = self.files.send(FileJob {
            path: content.to_path_buf(),
            md: cmd,
            reply: tx,
            skip_lock_check: true,
        });
        match rx.recv() {
            Ok(FileResult::Read {
                content: blobs,
                size,
                sha256,
                ..
            }) => {
                self.record_hash(name, sha256);
                self.count_file(pnode, &blobs);
                node.size = size;
                node.content = Some(blobs);
                Ok(Ok(node))
            }
            _ => Ok(Err(format!("cannot read its copy {}", content.display()))),
        }
    }

    /// The node of an extra file read from a stream (`size` bytes in `blobs`): mode 0600, the
    /// time of the backup, this process's owner.
    fn stream_node(&self, name: &str, pnode: Option<&Node>, blobs: Vec<Id>, size: u64) -> Node {
        let mut node = stream_file_node(name, 0o600);
        node.size = size;
        self.count_file(pnode, &blobs);
        add(&self.sh.counters.bytes_processed, size);
        node.content = Some(blobs);
        node
    }

    /// The tree of a real directory, walked whole.
    fn save_dir(&mut self, path: &Path, parent: Option<Id>) -> Result<Id> {
        self.sh.cancel.check()?;
        if self.sh.failed.load(Ordering::SeqCst) {
            return Err(Error::Input("backup stopped after an error".into()));
        }
        let ptree = self.parent_tree(parent);
        let Some(names) = self.dir_names(path) else {
            return Ok(self.save_tree(Tree::default()));
        };
        let tag = self.excluder.tag_of(path).map(str::to_string);
        let mut nodes: Vec<Option<Node>> = Vec::with_capacity(names.len());
        let mut pending: Vec<(usize, Receiver<FileResult>)> = Vec::new();
        for (name, cpath) in names {
            if tag.as_ref().is_some_and(|t| name != *t) {
                continue;
            }
            let pnode = ptree.as_ref().and_then(|t| t.find(&name));
            match self.save_child(&name, &cpath, pnode)? {
                Saved::Left => {}
                Saved::Done(n) => nodes.push(Some(n)),
                Saved::Queued(n, rx) => {
                    pending.push((nodes.len(), rx));
                    nodes.push(Some(n));
                }
            }
        }
        for (i, rx) in pending {
            // Each index in `pending` is of a node pushed above, and is taken only here, once.
            let node = nodes[i].take().expect("pending node present");
            let pnode = ptree.as_ref().and_then(|t| t.find(&node.name));
            nodes[i] = self.finish_file(node, pnode, rx.recv().ok());
        }
        self.sh.cancel.check()?;
        Ok(self.save_tree(Tree {
            nodes: nodes.into_iter().flatten().collect(),
        }))
    }

    /// The entries of the directory `path` and the extra files that go into it, sorted by
    /// name; `None` (after a warning) when it cannot be listed.
    fn dir_names(&self, path: &Path) -> Option<Vec<(Name, PathBuf)>> {
        let list = match list_dir(path) {
            Ok(list) => list,
            Err(e) => {
                self.sh.warn(format!(
                    "cannot list {}: {e}; its contents are left out",
                    path.display()
                ));
                return None;
            }
        };
        let mut names: Vec<(Name, PathBuf)> = list
            .into_iter()
            .map(|n| {
                let p = path.join(&n);
                (Name::from_os(&n), p)
            })
            .collect();
        add_extras(&mut names, path, self.extras.keys());
        names.sort();
        Some(names)
    }

    /// One entry (`name` at `path`) of a directory being walked.
    fn save_child(&mut self, name: &Name, path: &Path, pnode: Option<&Node>) -> Result<Saved> {
        if let Some(e) = self.extras.remove(path) {
            return Ok(Saved::from(self.save_extra(
                Some(e),
                name.as_str(),
                pnode,
            )?));
        }
        if self.excluder.is_excluded(path) {
            return Ok(Saved::Left);
        }
        let md = match fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.sh.warn(format!(
                    "{} vanished during the backup (listed, then gone); it is left out of this snapshot",
                    path.display()
                ));
                return Ok(Saved::Left);
            }
            Err(e) => {
                self.sh.warn(format!(
                    "cannot read {}: {e}; it is left out of this snapshot",
                    path.display()
                ));
                return Ok(Saved::Left);
            }
        };
        if self.excluder.is_too_large(&md) {
            return Ok(Saved::Left);
        }
        if md.is_dir() {
            return Ok(Saved::from(self.save_entry(path, name, pnode, false)?));
        }
        let mut node = match self.nodes.node(name, path, &md) {
            Ok(n) => n,
            Err(e) => {
                self.sh.warn(format!(
                    "cannot read {}: {e}; it is left out of this snapshot",
                    path.display()
                ));
                return Ok(Saved::Left);
            }
        };
        if !node.is_file() {
            add(&self.sh.counters.files_processed, 1);
            return Ok(Saved::Done(node));
        }
        let (tx, rx) = bounded(1);
        Ok(match self.file_content(path, &md, &mut node, pnode, tx) {
            Some(()) => Saved::Done(node),
            None => Saved::Queued(node, rx),
        })
    }
}

/// What became of one entry of a directory being walked.
enum Saved {
    /// Left out: excluded, vanished, unreadable.
    Left,
    /// Its node is complete.
    Done(Node),
    /// A file queued for reading: its node is finished with the reader's result.
    Queued(Node, Receiver<FileResult>),
}

impl From<Option<Node>> for Saved {
    fn from(n: Option<Node>) -> Saved {
        n.map_or(Saved::Left, Saved::Done)
    }
}

/// Adds to `names` (the entries listed in `dir`) each extra file that goes directly into
/// `dir` and is not listed yet.
fn add_extras<'p>(
    names: &mut Vec<(Name, PathBuf)>,
    dir: &Path,
    extras: impl Iterator<Item = &'p PathBuf>,
) {
    for p in extras {
        if p.parent() != Some(dir) {
            continue;
        }
        if let Some(n) = p.file_name() {
            if !names.iter().any(|(_, q)| q == p) {
                names.push((Name::from_os(n), p.clone()));
            }
        }
    }
}

/// The chunker's tables for the polynomial in `repo`'s config.
fn chunker_tables(repo: &Repository) -> Result<Tables> {
    Tables::from_hex(&repo.config().chunker_polynomial).map_err(|e| Error::Damaged {
        what: "the repository's config".into(),
        detail: e.to_string(),
    })
}

/// Backs up `opts.paths` into a new snapshot. The caller holds a shared lock.
pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<BackupResult> {
    backup_with(repo, opts, Vec::new(), progress, cancel)
}

/// Backs up `opts.paths` and the `extras` (database copies, command output) into a new
/// snapshot. The caller holds a shared lock.
pub fn backup_with(
    repo: &mut Repository,
    opts: &BackupOptions,
    extras: Vec<ExtraFile>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<BackupResult> {
    let start = Local::now().fixed_offset();
    if opts.paths.is_empty() && extras.is_empty() {
        return Err(Error::Input(
            "nothing to back up: give at least one path".into(),
        ));
    }
    let extra_paths = paths_of_extras(&extras);
    let plan = plan_walk(resolve_targets(&opts.paths)?, extras)?;
    if opts.manifest {
        refuse_manifest_clash(&plan)?;
    }
    let excluder = Excluder::new(&opts.excludes)?;
    let hostname = opts.host.clone().unwrap_or_else(crate::sysinfo::hostname);
    let paths = match plan.paths() {
        p if p.is_empty() => extra_paths,
        p => p,
    };

    repo.load_index()?;
    let resumed = match opts.dry_run {
        true => Resumed::default(),
        false => adopt_unindexed(repo, progress)?,
    };
    // A damaged snapshot file cannot be a parent; it does not stop the backup.
    let snaps = repo.load_snapshots()?;
    for d in &snaps.damaged {
        tracing::warn!("{}", d.error());
    }
    let parent = find_parent(
        &snaps.readable,
        opts.parent,
        &hostname,
        &paths,
        opts.job.as_deref(),
    )?;
    let manifest = opts
        .manifest
        .then(|| parent_manifest(repo, parent.as_ref(), progress));
    let sh = Shared::new(repo, opts, progress, cancel, chunker_tables(repo)?);
    progress.phase("backup", None);
    let parent_tree = parent.as_ref().map(|(_, p)| p.tree);
    let walked = walk_and_pack(&sh, opts, excluder, plan, parent_tree, manifest);
    if let Some(e) = sh.take_error() {
        return Err(e);
    }
    let tree = walked?;
    cancel.check()?;

    // Packs are durable; now the index, then the snapshot.
    let (written, warnings) = sh.take_results();
    let mut summary = summarize(&sh.counters, start, &warnings);
    drop(sh);
    // A dry run uploaded nothing, so it has no index to write.
    let new_packs = match opts.dry_run {
        true => Vec::new(),
        false => write_index(repo, written)?,
    };
    summary.backup_end = Some(Local::now().fixed_offset());
    let parent = parent.map(|(id, _)| id);
    let snapshot = snapshot_of(opts, start, parent, tree, paths, hostname, summary);
    let skipped = skip_snapshot(opts, parent_tree, tree);
    let snapshot_id = match (opts.dry_run, skipped, parent) {
        (_, true, Some(p)) => p,
        (true, _, _) => Id::hash(&serde_json::to_vec(&snapshot).expect("a snapshot serializes")),
        (false, _, _) => repo.save_unpacked(FileType::Snapshot, &snapshot)?,
    };
    Ok(BackupResult {
        snapshot_id,
        snapshot,
        parent,
        warnings,
        resumed,
        written: new_packs,
        dry_run: opts.dry_run,
        skipped,
    })
}

/// Whether to save no snapshot: asked to skip one when nothing changed, and the tree is the
/// parent's (same files, same metadata).
fn skip_snapshot(opts: &BackupOptions, parent_tree: Option<Id>, tree: Id) -> bool {
    opts.skip_if_unchanged && parent_tree == Some(tree)
}

/// What the walk covers, decided before anything is written.
struct WalkPlan {
    /// The targets no other target contains, in tree order.
    covered: Vec<Target>,
    /// The virtual tree of the targets' names and of the extra files outside them.
    root: VDir,
    /// The extra files inside a target, by the path on disk the target's walk meets them at.
    extras: HashMap<PathBuf, ExtraFile>,
    /// The other extra files, by their snapshot path (entries of `root`).
    tree_extras: HashMap<PathBuf, ExtraFile>,
}

impl WalkPlan {
    /// The snapshot's paths: the covered targets' absolute paths on disk, sorted, once each.
    fn paths(&self) -> Vec<String> {
        let mut p: Vec<String> = self
            .covered
            .iter()
            .map(|t| t.disk.to_string_lossy().into_owned())
            .collect();
        p.sort();
        p.dedup();
        p
    }
}

/// The snapshot paths of a backup of extras alone (standard input, commands): theirs, as
/// restic records `/stdin` for `--stdin`.
fn paths_of_extras(extras: &[ExtraFile]) -> Vec<String> {
    let mut p: Vec<String> = extras
        .iter()
        .map(|e| e.snapshot_path.to_string_lossy().into_owned())
        .collect();
    p.sort();
    p.dedup();
    p
}

/// Refuses a backup with a manifest whose own entries take the manifest's place, `/.backupd`.
fn refuse_manifest_clash(plan: &WalkPlan) -> Result<()> {
    if !plan.root.children.contains_key(manifest::DIR) {
        return Ok(());
    }
    Err(Error::Input(format!(
        "cannot back up /{} with a manifest: a snapshot with a manifest keeps it at {}, so that path is backupd's own\n  hint: back up that folder's parent or contents under another path, or turn the manifest off (`manifest = false` in the job, no --manifest); nothing was written to the repository",
        manifest::DIR,
        manifest::PATH
    )))
}

/// The parent snapshot's manifest, for the files it says are unchanged; an empty one when
/// there is no parent or it has no manifest (those files are then read again), or when it cannot
/// be read (with a note saying so).
fn parent_manifest(
    repo: &Repository,
    parent: Option<&(Id, Snapshot)>,
    progress: &dyn Progress,
) -> ManifestState {
    let Some((id, snap)) = parent else {
        return ManifestState::default();
    };
    match manifest::load(repo, &id.short(), &snap.tree) {
        Ok(Some(l)) => ManifestState {
            files: Manifest::default(),
            parent: l.manifest,
            parent_nodes: Some(l.nodes),
        },
        Ok(None) => ManifestState::default(),
        Err(e) => {
            progress.note(&format!(
                "warning: the manifest of the parent snapshot {} cannot be read ({e}); every file is read again to hash it",
                id.short()
            ));
            ManifestState::default()
        }
    }
}

/// The targets of the paths to back up (relative ones from the current directory), each
/// checked to exist (before anything is written to the repository).
fn resolve_targets(paths: &[PathBuf]) -> Result<Vec<Target>> {
    let cwd = if paths.iter().all(|p| p.is_absolute()) {
        PathBuf::from("/")
    } else {
        std::env::current_dir().map_err(|e| Error::io("read the current directory", e))?
    };
    let cannot = |p: &Path, e: std::io::Error| {
        Error::Input(format!(
            "cannot back up {}: {e}\n  hint: check the path; nothing was written to the repository",
            p.display()
        ))
    };
    let mut entries = |dir: &Path| -> Result<Vec<String>> {
        let mut names: Vec<String> = list_dir(dir)
            .map_err(|e| cannot(dir, e))?
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    };
    let targets = targets::targets(paths, &cwd, &mut entries)?;
    for t in &targets {
        fs::symlink_metadata(&t.disk).map_err(|e| cannot(&t.disk, e))?;
    }
    Ok(targets)
}

/// The walk's plan for the `targets` and the `extras`: refuses an extra whose snapshot path is
/// not a file path, two extras at one path, and the root directory as a target.
fn plan_walk(targets: Vec<Target>, extras: Vec<ExtraFile>) -> Result<WalkPlan> {
    let covered = targets::covering(targets);
    let mut root = VDir {
        disk: PathBuf::from("/"),
        ..VDir::default()
    };
    for t in &covered {
        root.descend_target(t).target = true;
    }
    let (mut by_path, mut in_tree) = (HashMap::new(), HashMap::new());
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for e in extras {
        let p = absolute(&e.snapshot_path)?;
        if p.parent().is_none() {
            return Err(Error::Input(format!(
                "{}: the snapshot path {} is not a file path",
                e.describe,
                p.display()
            )));
        }
        if !seen.insert(p.clone()) {
            return Err(Error::Input(format!(
                "two sources want the same snapshot path {}",
                p.display()
            )));
        }
        let holder = covered.iter().find_map(|t| {
            let rest = p.strip_prefix(t.tree_path()).ok()?;
            Some(t.disk.join(rest))
        });
        match holder {
            Some(on_disk) => {
                by_path.insert(on_disk, e);
            }
            None => {
                let v = root.descend(&p);
                v.extra = true;
                v.disk = p.clone();
                in_tree.insert(p, e);
            }
        }
    }
    if root.target {
        return Err(Error::Input(
            "backing up the root directory / as a whole is not supported yet; name its folders"
                .into(),
        ));
    }
    Ok(WalkPlan {
        covered,
        root,
        extras: by_path,
        tree_extras: in_tree,
    })
}

/// The parent snapshot: the one `asked` for (which must exist), or else the newest of `host`
/// with the same paths (in any order) and job.
fn find_parent(
    snaps: &[(Id, Snapshot)],
    asked: Option<Id>,
    host: &str,
    paths: &[String],
    job: Option<&str>,
) -> Result<Option<(Id, Snapshot)>> {
    if let Some(id) = asked {
        return match snaps.iter().find(|(i, _)| *i == id) {
            Some(s) => Ok(Some(s.clone())),
            None => Err(Error::Input(format!(
                "parent snapshot {} does not exist",
                id.short()
            ))),
        };
    }
    let mut sorted_paths = paths.to_vec();
    sorted_paths.sort();
    Ok(snaps
        .iter()
        .filter(|(_, s)| {
            let mut sp = s.paths.clone();
            sp.sort();
            s.hostname == host && sp == sorted_paths && s.job() == job
        })
        .max_by_key(|(_, s)| s.time)
        .cloned())
}

/// How many file readers and how many sealers run: one per core, 2 to 8.
fn pipeline_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

/// The walk with the pipeline around it: returns the root tree's id once every pack is
/// uploaded (or the walk's error; a thread's error is in `sh.error`).
fn walk_and_pack(
    sh: &Shared,
    opts: &BackupOptions,
    excluder: Excluder,
    plan: WalkPlan,
    parent_tree: Option<Id>,
    manifest: Option<ManifestState>,
) -> Result<Id> {
    let threads = pipeline_threads();
    std::thread::scope(|s| {
        let (stages, files, blobs) = Stages::spawn(s, sh, threads, opts.change_retries);
        let mut w = Walker {
            sh,
            files,
            blobs,
            excluder,
            one_fs_dev: if opts.one_file_system { Some(0) } else { None },
            force: opts.force,
            nodes: NodeMaker::new(),
            extras: plan.extras,
            tree_extras: plan.tree_extras,
            at: Vec::new(),
            manifest,
        };
        // The walk recurses once per directory level (a real file system's depth is bounded by
        // PATH_MAX, about 2,048 levels): on a stack made for that, whatever thread runs backup.
        let res = super::walk::on_deep_stack(|| w.save_root(&plan.root, parent_tree));
        drop(w); // closes the file and blob channels of the walker
        stages.finish(sh);
        res
    })
}

/// The pipeline's threads, and the channel to the uploaders that stays open after the sealers
/// end (for the last, partly filled packs).
struct Stages<'scope> {
    uploaders: Vec<ScopedJoinHandle<'scope, ()>>,
    sealers: Vec<ScopedJoinHandle<'scope, ()>>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    packs: Sender<PackWriter>,
}

impl<'scope> Stages<'scope> {
    /// Starts the uploaders, the sealers and the file readers (`threads` of each but the
    /// uploaders); returns them with the senders the walk feeds: files to read, blobs to seal.
    fn spawn<'env>(
        s: &'scope Scope<'scope, 'env>,
        sh: &'env Shared<'_>,
        threads: usize,
        retries: u32,
    ) -> (Stages<'scope>, Sender<FileJob>, Sender<BlobJob>) {
        let (blob_tx, blob_rx) = bounded::<BlobJob>(threads);
        let (file_tx, file_rx) = bounded::<FileJob>(threads * 16);
        let (up_tx, up_rx) = bounded::<PackWriter>(0);
        // Remote storage: several packs in flight (each uploader holds one), bounded memory.
        let uploaders = (0..sh.repo.backend().upload_parallelism().max(1))
            .map(|_| {
                let rx = up_rx.clone();
                s.spawn(move || uploader(sh, rx))
            })
            .collect();
        drop(up_rx);
        let sealers = (0..threads)
            .map(|_| {
                let (rx, up) = (blob_rx.clone(), up_tx.clone());
                s.spawn(move || sealer(sh, rx, up))
            })
            .collect();
        drop(blob_rx);
        let workers = (0..threads)
            .map(|_| {
                let (rx, btx) = (file_rx.clone(), blob_tx.clone());
                s.spawn(move || file_worker(sh, rx, btx, retries))
            })
            .collect();
        drop(file_rx);
        let stages = Stages {
            uploaders,
            sealers,
            workers,
            packs: up_tx,
        };
        (stages, file_tx, blob_tx)
    }

    /// Once the walk has dropped its senders: waits for the readers, then the sealers, sends
    /// the packs they left open, and waits for every upload.
    fn finish(self, sh: &Shared) {
        for h in self.workers {
            let _ = h.join();
        }
        for h in self.sealers {
            let _ = h.join();
        }
        for p in &sh.packers {
            let pw = std::mem::take(&mut *p.lock().expect(POISONED));
            if !pw.is_empty() {
                let _ = self.packs.send(pw);
            }
        }
        drop(self.packs);
        for h in self.uploaders {
            let _ = h.join();
        }
    }
}

/// The snapshot's summary from the pipeline's counters; `backup_end` is left to the caller.
fn summarize(c: &Counters, start: DateTime<FixedOffset>, warnings: &[String]) -> SnapshotSummary {
    SnapshotSummary {
        backup_start: Some(start),
        backup_end: None,
        files_new: get(&c.files_new),
        files_changed: get(&c.files_changed),
        files_unmodified: get(&c.files_unmodified),
        dirs_new: get(&c.dirs_new),
        dirs_changed: get(&c.dirs_changed),
        dirs_unmodified: get(&c.dirs_unmodified),
        data_blobs: get(&c.data_blobs),
        tree_blobs: get(&c.tree_blobs),
        data_added: get(&c.data_added),
        data_added_packed: get(&c.data_added_packed),
        total_files_processed: get(&c.files_processed),
        total_bytes_processed: get(&c.bytes_processed),
        partial: !warnings.is_empty(),
        warnings: warnings.iter().take(100).cloned().collect(),
    }
}

/// Writes index files (of at most [`INDEX_MAX_BLOBS`] blobs) naming `packs`.
fn save_index_files(repo: &Repository, packs: Vec<IndexPack>) -> Result<Vec<(Id, IndexFile)>> {
    split_into_files(packs, INDEX_MAX_BLOBS)
        .into_iter()
        .map(|f| Ok((repo.save_unpacked(FileType::Index, &f)?, f)))
        .collect()
}

/// Writes the index of the packs this backup uploaded that no index file names yet, and
/// merges every index file of this backup into the loaded index; returns every pack it
/// uploaded, as the index lists them.
fn write_index(repo: &mut Repository, written: Written) -> Result<Vec<IndexPack>> {
    let last = save_index_files(repo, written.unindexed)?;
    let files: Vec<(Id, IndexFile)> = written.files.into_iter().chain(last).collect();
    for (id, f) in &files {
        repo.index_mut().merge_file(*id, f);
    }
    Ok(files.into_iter().flat_map(|(_, f)| f.packs).collect())
}

/// The snapshot record of a backup that started at `start` (the snapshot's time unless the
/// options set one).
fn snapshot_of(
    opts: &BackupOptions,
    start: DateTime<FixedOffset>,
    parent: Option<Id>,
    tree: Id,
    paths: Vec<String>,
    hostname: String,
    summary: SnapshotSummary,
) -> Snapshot {
    Snapshot {
        time: opts.time.unwrap_or(start),
        parent,
        tree,
        paths,
        hostname,
        username: crate::sysinfo::username(),
        uid: crate::sysinfo::uid(),
        gid: crate::sysinfo::gid(),
        excludes: opts.excludes.patterns.clone(),
        tags: snapshot_tags(&opts.tags, opts.job.as_deref(), summary.partial),
        original: None,
        program_version: crate::repo::PROGRAM_VERSION.to_string(),
        summary: Some(summary),
    }
}

/// The snapshot's tags: the options' tags, then `job:NAME`, then `partial` for a partial
/// snapshot.
fn snapshot_tags(tags: &[String], job: Option<&str>, partial: bool) -> Vec<String> {
    let mut out = tags.to_vec();
    if let Some(j) = job {
        out.push(format!("{JOB_TAG_PREFIX}{j}"));
    }
    if partial {
        out.push(PARTIAL_TAG.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup of `mib` MiB of incompressible data into a new local repository with the given
    /// index interval; returns the number of index files and of packs.
    fn back_up_with_index_every(mib: usize, every: std::time::Duration) -> (usize, usize) {
        use crate::repo::backend::LocalBackend;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        let mut data = vec![0u8; mib << 20];
        rand::Rng::fill(&mut rand::thread_rng(), &mut data[..]);
        fs::write(src.join("big"), &data).unwrap();
        let be = std::sync::Arc::new(LocalBackend::new(dir.path().join("repo")));
        let mut repo = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        let opts = BackupOptions {
            paths: vec![src],
            index_every: every,
            ..BackupOptions::default()
        };
        let cancel = CancelToken::new();
        backup(&mut repo, &opts, &crate::cancel::NoProgress, &cancel).unwrap();
        let indexes = repo.list_ids(FileType::Index).unwrap().len();
        let packs = repo.list_ids(FileType::Pack).unwrap().len();
        repo.load_index().unwrap();
        assert_eq!(
            repo.index().pack_ids().len(),
            packs,
            "every pack is indexed"
        );
        (indexes, packs)
    }

    #[test]
    fn a_long_backup_writes_its_index_as_it_goes() {
        let (indexes, packs) = back_up_with_index_every(40, std::time::Duration::ZERO);
        assert!(packs >= 3, "{packs} packs");
        // One index file a pack uploaded (the last, partly filled packs included).
        assert_eq!(indexes, packs);
        let (indexes, _) = back_up_with_index_every(40, INDEX_EVERY);
        assert_eq!(indexes, 1);
    }

    #[test]
    fn a_dry_run_counts_what_the_backup_adds_and_writes_nothing() {
        use crate::repo::backend::LocalBackend;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        let mut data = vec![0u8; 3 << 20];
        rand::Rng::fill(&mut rand::thread_rng(), &mut data[..]);
        fs::write(src.join("big"), &data).unwrap();
        fs::write(src.join("sub/small"), b"small").unwrap();
        let be = std::sync::Arc::new(LocalBackend::new(dir.path().join("repo")));
        let mut repo = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        let cancel = CancelToken::new();
        let mut opts = BackupOptions {
            paths: vec![src.clone()],
            dry_run: true,
            ..BackupOptions::default()
        };
        let files = |repo: &Repository| {
            [FileType::Pack, FileType::Index, FileType::Snapshot]
                .map(|t| repo.list_ids(t).unwrap().len())
        };
        let dry = backup(&mut repo, &opts, &crate::cancel::NoProgress, &cancel).unwrap();
        assert_eq!(files(&repo), [0, 0, 0], "a dry run writes nothing");
        opts.dry_run = false;
        let real = backup(&mut repo, &opts, &crate::cancel::NoProgress, &cancel).unwrap();
        let (d, r) = (dry.summary(), real.summary());
        assert_eq!(d.data_added, r.data_added);
        assert!(d.data_added >= 3 << 20);
        assert_eq!((d.data_blobs, d.tree_blobs), (r.data_blobs, r.tree_blobs));
        // After the backup, a dry run of the same data would add nothing.
        opts.dry_run = true;
        let again = backup(&mut repo, &opts, &crate::cancel::NoProgress, &cancel).unwrap();
        assert_eq!(again.summary().data_added, 0);
        assert_eq!(files(&repo)[2], 1);
    }

    fn pb(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    /// The targets of absolute paths.
    fn tg(v: &[&str]) -> Vec<Target> {
        targets::targets(&pb(v), Path::new("/"), &mut |_| unreachable!()).unwrap()
    }

    fn extra(path: &str) -> ExtraFile {
        ExtraFile {
            snapshot_path: PathBuf::from(path),
            content: ExtraContent::File {
                path: PathBuf::from("/staging/copy"),
                meta_from: None,
            },
            describe: format!("extra {path}"),
            required: true,
        }
    }

    fn snap(host: &str, paths: &[&str], tags: &[&str], secs: i64) -> Snapshot {
        Snapshot {
            time: chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .fixed_offset(),
            parent: None,
            tree: Id::hash(b"tree"),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            hostname: host.into(),
            username: String::new(),
            uid: 0,
            gid: 0,
            excludes: vec![],
            tags: tags.iter().map(|s| s.to_string()).collect(),
            original: None,
            program_version: String::new(),
            summary: None,
        }
    }

    #[test]
    fn targets_inside_others_are_covered() {
        let plan = plan_walk(tg(&["/b", "/a/x", "/a", "/b", "/ab"]), vec![]).unwrap();
        assert_eq!(plan.paths(), ["/a", "/ab", "/b"]);
        assert!(plan_walk(vec![], vec![]).unwrap().paths().is_empty());
    }

    #[test]
    fn relative_targets_and_the_extras_inside_them_are_found_on_disk() {
        let ts = targets::targets(
            &pb(&["data", "../x/y"]),
            Path::new("/srv/app"),
            &mut |_| unreachable!(),
        )
        .unwrap();
        let plan = plan_walk(ts, vec![extra("/data/db.sqlite"), extra("/x/dump.sql")]).unwrap();
        assert_eq!(plan.paths(), ["/srv/app/data", "/srv/x/y"]);
        let data = &plan.root.children["data"];
        assert!(data.target && data.disk == Path::new("/srv/app/data"));
        let x = &plan.root.children["x"];
        assert!(!x.target && x.disk == Path::new("/srv/x"));
        assert_eq!(x.children["y"].disk, Path::new("/srv/x/y"));
        // The extra inside `data` is met by the walk of /srv/app/data; the other one is an
        // entry of the tree next to `y`.
        assert!(plan
            .extras
            .contains_key(Path::new("/srv/app/data/db.sqlite")));
        assert!(x.children["dump.sql"].extra);
        assert!(plan.tree_extras.contains_key(Path::new("/x/dump.sql")));
    }

    #[test]
    fn the_walk_plan_marks_targets_and_extras_outside_them() {
        let plan = plan_walk(
            tg(&["/srv/data", "/srv/data/sub"]),
            vec![extra("/srv/data/db.sqlite"), extra("/dumps/app.sql")],
        )
        .unwrap();
        assert_eq!(plan.paths(), ["/srv/data"]);
        let srv = &plan.root.children["srv"];
        assert!(!srv.target && !srv.extra);
        let data = &srv.children["data"];
        assert!(data.target && !data.extra);
        // An extra inside a target is found by the walk of the target, not by the plan.
        assert!(data.children.is_empty());
        let dump = &plan.root.children["dumps"].children["app.sql"];
        assert!(dump.extra && !dump.target);
        assert_eq!(plan.extras.len(), 1);
        assert!(plan.extras.contains_key(Path::new("/srv/data/db.sqlite")));
        assert!(plan.tree_extras.contains_key(Path::new("/dumps/app.sql")));
    }

    #[test]
    fn the_walk_plan_refuses_what_it_cannot_store() {
        let msg = |r: Result<WalkPlan>| match r {
            Err(Error::Input(m)) => m,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(msg(plan_walk(tg(&["/"]), vec![])).contains("root directory /"));
        assert!(msg(plan_walk(vec![], vec![extra("/")])).contains("is not a file path"));
        assert!(msg(plan_walk(vec![], vec![extra("/a/x"), extra("/a/./x")]))
            .contains("two sources want the same snapshot path /a/x"));
    }

    #[test]
    fn a_backup_with_a_manifest_refuses_a_path_of_its_own_at_slash_backupd() {
        let clash = plan_walk(vec![], vec![extra("/.backupd/x")]).unwrap();
        match refuse_manifest_clash(&clash) {
            Err(Error::Input(m)) => assert!(m.contains("/.backupd") && m.contains("hint:"), "{m}"),
            other => panic!("accepted: {other:?}"),
        }
        let fine = plan_walk(tg(&["/a/.backupd"]), vec![extra("/b/.backupd")]).unwrap();
        assert!(refuse_manifest_clash(&fine).is_ok());
    }

    #[test]
    fn the_parent_is_the_newest_of_the_same_host_paths_and_job() {
        let snaps = vec![
            (Id::hash(b"1"), snap("h", &["/b", "/a"], &[], 10)),
            (Id::hash(b"2"), snap("h", &["/a", "/b"], &[], 20)),
            (
                Id::hash(b"3"),
                snap("h", &["/a", "/b"], &["job:nightly"], 30),
            ),
            (Id::hash(b"4"), snap("other", &["/a", "/b"], &[], 40)),
            (Id::hash(b"5"), snap("h", &["/a"], &[], 50)),
        ];
        let paths = vec!["/a".to_string(), "/b".to_string()];
        let pick = |job| {
            find_parent(&snaps, None, "h", &paths, job)
                .unwrap()
                .map(|(id, _)| id)
        };
        assert_eq!(pick(None), Some(Id::hash(b"2")));
        assert_eq!(pick(Some("nightly")), Some(Id::hash(b"3")));
        assert_eq!(pick(Some("weekly")), None);
        // One asked for by id is taken whatever its host and paths.
        let asked = find_parent(&snaps, Some(Id::hash(b"4")), "h", &paths, None).unwrap();
        assert_eq!(asked.map(|(id, _)| id), Some(Id::hash(b"4")));
        let missing = find_parent(&snaps, Some(Id::hash(b"9")), "h", &paths, None);
        assert!(matches!(missing, Err(Error::Input(m)) if m.contains("does not exist")));
    }

    #[test]
    fn tags_and_summary_record_the_job_and_a_partial_snapshot() {
        let tags = vec!["t".to_string()];
        assert_eq!(snapshot_tags(&tags, None, false), vec!["t"]);
        assert_eq!(
            snapshot_tags(&tags, Some("db"), true),
            vec![
                "t".to_string(),
                format!("{JOB_TAG_PREFIX}db"),
                PARTIAL_TAG.into()
            ]
        );
        let c = Counters::default();
        add(&c.files_new, 3);
        add(&c.bytes_processed, 42);
        let start = Local::now().fixed_offset();
        let s = summarize(&c, start, &[]);
        assert!(!s.partial && s.warnings.is_empty());
        assert_eq!((s.files_new, s.total_bytes_processed), (3, 42));
        assert_eq!((s.backup_start, s.backup_end), (Some(start), None));
        let warnings: Vec<String> = (0..150).map(|i| format!("w{i}")).collect();
        let s = summarize(&c, start, &warnings);
        assert!(s.partial);
        assert_eq!(s.warnings.len(), 100);
        assert_eq!(s.warnings[99], "w99");
    }

    #[test]
    fn extras_join_the_listing_of_their_directory_once() {
        let mut names = vec![(Name::from("a"), PathBuf::from("/d/a"))];
        let extras = pb(&["/d/a", "/d/new", "/d/sub/deep", "/other/x"]);
        add_extras(&mut names, Path::new("/d"), extras.iter());
        assert_eq!(
            names,
            vec![
                (Name::from("a"), PathBuf::from("/d/a")),
                (Name::from("new"), PathBuf::from("/d/new")),
            ]
        );
    }
}
