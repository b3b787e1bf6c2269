//! Dump (restic's `dump`): a file's content, or a folder of a snapshot as a tar or zip archive, streamed to any writer — every blob's hash checked as it is read, a file whose blobs do not add up to its size refused.

use crate::error::Error;
use crate::repo::id::Id;
use crate::repo::pack::BlobType;
use crate::repo::tree::{kind, Node};
use crate::repo::Repository;
use std::io::{self, Read, Write};

/// What went wrong: reading the snapshot (the repository) or writing the output.
#[derive(Debug)]
pub enum DumpError {
    Read(Error),
    Write(io::Error),
}

impl From<Error> for DumpError {
    fn from(e: Error) -> Self {
        DumpError::Read(e)
    }
}

/// A file's content as a reader: its blobs one after another, the total checked against the
/// size the node records.
struct Content<'a> {
    repo: &'a Repository,
    path: &'a str,
    blobs: std::slice::Iter<'a, Id>,
    size: u64,
    read: u64,
    buf: Vec<u8>,
    pos: usize,
    /// A repository error (io::Error cannot carry it; taken out by the caller).
    failed: Option<Error>,
}

impl<'a> Content<'a> {
    fn new(repo: &'a Repository, path: &'a str, n: &'a Node) -> Content<'a> {
        let blobs = n.content.as_deref().unwrap_or(&[]).iter();
        Content {
            repo,
            path,
            blobs,
            size: n.size,
            read: 0,
            buf: Vec::new(),
            pos: 0,
            failed: None,
        }
    }

    /// The next blob into `buf`; false at the end.
    fn refill(&mut self) -> io::Result<bool> {
        let Some(id) = self.blobs.next() else {
            if self.read != self.size {
                self.failed = Some(Error::Input(format!(
                    "the file {} in the snapshot has {} bytes of data but records a size of {}: the snapshot is damaged\n  hint: run `backupctl check --read-data`",
                    self.path, self.read, self.size
                )));
                return Err(io::Error::other("size mismatch"));
            }
            return Ok(false);
        };
        match self.repo.load_blob(id, BlobType::Data) {
            Ok(b) => {
                self.read += b.len() as u64;
                self.buf = b;
                self.pos = 0;
                Ok(true)
            }
            Err(e) => {
                self.failed = Some(e);
                Err(io::Error::other("blob unreadable"))
            }
        }
    }
}

impl Read for Content<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes a file node's content to `out`; gives the bytes written.
pub fn write_file(
    repo: &Repository,
    path: &str,
    n: &Node,
    out: &mut dyn Write,
) -> Result<u64, DumpError> {
    let mut c = Content::new(repo, path, n);
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let got = match c.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) => return Err(c.failed.take().map_or(DumpError::Write(e), DumpError::Read)),
        };
        out.write_all(&buf[..got]).map_err(DumpError::Write)?;
        total += got as u64;
    }
    out.flush().map_err(DumpError::Write)?;
    Ok(total)
}

/// The tar header of a node: its kind, permissions, owner, modification time and size.
fn header_of(n: &Node) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(n.mode & 0o7777);
    h.set_uid(u64::from(n.uid));
    h.set_gid(u64::from(n.gid));
    h.set_mtime(n.mtime.timestamp().max(0) as u64);
    let _ = h.set_username(&n.user);
    let _ = h.set_groupname(&n.group);
    let (t, size) = match n.kind.as_str() {
        kind::DIR => (tar::EntryType::Directory, 0),
        kind::SYMLINK => (tar::EntryType::Symlink, 0),
        _ => (tar::EntryType::Regular, n.size),
    };
    h.set_entry_type(t);
    h.set_size(size);
    h
}

/// An archive being written: one entry at a time, then its end.
trait Archive {
    /// Adds the node `n` under `name` (files with their content; folders, symlinks as entries;
    /// devices, FIFOs and sockets are left out, as restic's dump does).
    fn add(&mut self, repo: &Repository, name: &str, n: &Node) -> Result<(), DumpError>;
    fn finish(self: Box<Self>) -> Result<(), DumpError>;
}

struct Tar<'w>(tar::Builder<&'w mut dyn Write>);

impl Archive for Tar<'_> {
    fn add(&mut self, repo: &Repository, name: &str, n: &Node) -> Result<(), DumpError> {
        let (b, mut h) = (&mut self.0, header_of(n));
        let w = DumpError::Write;
        match n.kind.as_str() {
            kind::DIR => b.append_data(&mut h, name, io::empty()).map_err(w),
            kind::SYMLINK => b.append_link(&mut h, name, n.link_target_path()).map_err(w),
            kind::FILE => {
                let mut c = Content::new(repo, name, n);
                b.append_data(&mut h, name, &mut c)
                    .map_err(|e| c.failed.take().map_or(DumpError::Write(e), DumpError::Read))
            }
            _ => Ok(()),
        }
    }

    fn finish(self: Box<Self>) -> Result<(), DumpError> {
        let out = self.0.into_inner().map_err(DumpError::Write)?;
        out.flush().map_err(DumpError::Write)
    }
}

type ZipOut<'w> = zip::ZipWriter<zip::write::StreamWriter<&'w mut dyn Write>>;

/// A zip archive written as a stream (sizes in data descriptors, so stdout will do), files
/// deflated, ZIP64 where a file needs it.
struct Zip<'w>(ZipOut<'w>);

fn zip_error(e: zip::result::ZipError) -> DumpError {
    match e {
        zip::result::ZipError::Io(e) => DumpError::Write(e),
        e => DumpError::Write(io::Error::other(e)),
    }
}

/// The entry options of a node: its permissions and modification time (zip's range is 1980
/// to 2107; a time outside it is left out).
fn zip_options(n: &Node) -> zip::write::SimpleFileOptions {
    use chrono::{Datelike, Timelike};
    let t = n.mtime.naive_local();
    let mut o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(crate::repo::tree::gomode::to_unix_perm(n.mode))
        .large_file(n.size >= u64::from(u32::MAX));
    if let Ok(d) = zip::DateTime::from_date_and_time(
        u16::try_from(t.year()).unwrap_or(0),
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    ) {
        o = o.last_modified_time(d);
    }
    o
}

impl Archive for Zip<'_> {
    fn add(&mut self, repo: &Repository, name: &str, n: &Node) -> Result<(), DumpError> {
        let (z, o) = (&mut self.0, zip_options(n));
        match n.kind.as_str() {
            kind::DIR => z.add_directory(format!("{name}/"), o).map_err(zip_error),
            kind::SYMLINK => z.add_symlink(name, &n.linktarget, o).map_err(zip_error),
            kind::FILE => {
                z.start_file(name, o).map_err(zip_error)?;
                let mut c = Content::new(repo, name, n);
                io::copy(&mut c, z)
                    .map(|_| ())
                    .map_err(|e| c.failed.take().map_or(DumpError::Write(e), DumpError::Read))
            }
            _ => Ok(()),
        }
    }

    fn finish(self: Box<Self>) -> Result<(), DumpError> {
        let out = self.0.finish().map_err(zip_error)?;
        out.into_inner().flush().map_err(DumpError::Write)
    }
}

/// The format a folder is dumped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Tar,
    Zip,
}

/// Writes the folder `root` (its subtree; `prefix` is its path in the snapshot) as an archive
/// to `out`: entries named by their path in the snapshot without the leading `/`, as GNU tar
/// names absolute paths. Gives how many entries it wrote.
pub fn write_archive(
    repo: &Repository,
    root: &Node,
    prefix: &str,
    format: ArchiveFormat,
    out: &mut dyn Write,
) -> Result<u64, DumpError> {
    let mut a: Box<dyn Archive + '_> = match format {
        ArchiveFormat::Tar => Box::new(Tar(tar::Builder::new(out))),
        ArchiveFormat::Zip => Box::new(Zip(zip::ZipWriter::new_stream(out))),
    };
    let mut count = 0u64;
    let mut failure = None;
    let base = prefix.trim_start_matches('/');
    if !base.is_empty() {
        a.add(repo, base, root)?;
        count += 1;
    }
    if let Some(tree) = root.subtree {
        crate::engine::walk::walk_tree(repo, &tree, prefix.trim_end_matches('/'), &mut |p, n| {
            match a.add(repo, p.trim_start_matches('/'), n) {
                Ok(()) => {
                    count += 1;
                    Ok(true)
                }
                Err(e) => {
                    failure = Some(e);
                    Err(Error::Interrupted)
                }
            }
        })
        .map_err(|e| failure.take().unwrap_or(DumpError::Read(e)))?;
    }
    a.finish()?;
    Ok(count)
}
