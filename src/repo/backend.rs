//! Where repository files live: the `Backend` trait and the local-filesystem implementation.

use crate::fsutil;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The kinds of file a repository holds, each in its own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    Config,
    Key,
    Snapshot,
    Index,
    Pack,
    Lock,
}

impl FileType {
    pub fn dir(self) -> &'static str {
        match self {
            FileType::Config => "",
            FileType::Key => "keys",
            FileType::Snapshot => "snapshots",
            FileType::Index => "index",
            FileType::Pack => "data",
            FileType::Lock => "locks",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            FileType::Config => "config",
            FileType::Key => "key",
            FileType::Snapshot => "snapshot",
            FileType::Index => "index",
            FileType::Pack => "pack",
            FileType::Lock => "lock",
        }
    }
}

/// An I/O failure on one repository file, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct BackendError {
    pub op: &'static str,
    pub path: String,
    #[source]
    pub source: io::Error,
}

impl BackendError {
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
    pub fn is_disk_full(&self) -> bool {
        fsutil::is_disk_full(&self.source)
    }
}

pub type BResult<T> = Result<T, BackendError>;

/// The room on the storage that holds a repository, where the storage tells it: a file
/// system's size and free space, or a provider's quota and what is left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Space {
    /// The file system's size, or the quota.
    pub total: u64,
    /// What may still be written (for a file system: what an unprivileged user may use).
    pub available: u64,
}

/// Storage for repository files. Every `save` is atomic and durable when it returns: a reader
/// sees either no file or the whole file. Names are 64-hex ids (or "config").
pub trait Backend: Send + Sync {
    /// Where it is, for messages (a path or URL).
    fn location(&self) -> String;
    /// Creates the directory layout of a new repository; fails if a config already exists.
    fn create(&self) -> BResult<()>;
    fn save(&self, t: FileType, name: &str, data: &[u8]) -> BResult<()>;
    fn load(&self, t: FileType, name: &str) -> BResult<Vec<u8>>;
    fn load_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> BResult<Vec<u8>>;
    /// Names and sizes of all files of a type (temp files and foreign names are left out).
    fn list(&self, t: FileType) -> BResult<Vec<(String, u64)>>;
    fn remove(&self, t: FileType, name: &str) -> BResult<()>;
    fn exists(&self, t: FileType, name: &str) -> BResult<bool>;
    /// The local directory, for backends that have one.
    fn local_path(&self) -> Option<&Path> {
        None
    }
    /// Whether the repository's directory exists, where the storage can tell: `Some(false)`
    /// means "nothing there" rather than "a directory without a config file". `None` when it
    /// cannot tell (S3 prefixes are not directories; the REST protocol has no way to ask).
    fn root_exists(&self) -> Option<bool> {
        self.local_path().map(|p| p.exists())
    }
    /// How long a new lock file needs before every other client's listing shows it. Zero for
    /// storage whose listings are consistent with completed writes (a local file system):
    /// then "write our lock, then list" guarantees that of two racing lockers one sees the other.
    fn lock_settle_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(200)
    }
    /// How many packs may be uploaded at once (each holds one pack in memory). Local disks
    /// gain nothing from more than one; remote stores hide their latency with several.
    fn upload_parallelism(&self) -> usize {
        1
    }
    /// Fails (naming why) when the storage refuses to delete repository files, e.g. a REST
    /// server in append-only mode; `forget` and `prune` ask before they change anything.
    fn check_deletable(&self) -> BResult<()> {
        Ok(())
    }
    /// The room left on the storage, if it tells (`None`: it does not, or there is no limit).
    fn space(&self) -> BResult<Option<Space>> {
        Ok(None)
    }
    /// Aborts the unfinished multipart uploads of this repository's files started more than
    /// `older_than` ago (storage that has them: S3), so that their parts stop taking space;
    /// with `dry_run` only counts them. Returns how many. The caller holds the exclusive lock,
    /// so no backup of this repository is uploading.
    fn abort_stale_uploads(
        &self,
        older_than: std::time::Duration,
        dry_run: bool,
    ) -> BResult<usize> {
        let _ = (older_than, dry_run);
        Ok(0)
    }
}

/// A repository in a local directory, laid out as restic's `local` backend does.
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    pub fn path_of(&self, t: FileType, name: &str) -> PathBuf {
        match t {
            FileType::Config => self.root.join("config"),
            FileType::Pack => self
                .root
                .join("data")
                .join(name.get(..2).unwrap_or("00"))
                .join(name),
            _ => self.root.join(t.dir()).join(name),
        }
    }

    fn err(op: &'static str, p: &Path, source: io::Error) -> BackendError {
        BackendError {
            op,
            path: p.display().to_string(),
            source,
        }
    }
}

fn valid_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> BResult<()> {
        let cfg = self.path_of(FileType::Config, "");
        if cfg.exists() {
            return Err(Self::err(
                "create repository at",
                &self.root,
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a repository already exists here (config file found)",
                ),
            ));
        }
        let mut dirs = vec![self.root.clone()];
        for d in ["keys", "snapshots", "index", "locks", "data"] {
            dirs.push(self.root.join(d));
        }
        for i in 0..256 {
            dirs.push(self.root.join("data").join(format!("{i:02x}")));
        }
        for d in &dirs {
            fs::create_dir_all(d).map_err(|e| Self::err("create directory", d, e))?;
        }
        for d in dirs.iter().rev() {
            fsutil::sync_dir(d).map_err(|e| Self::err("sync directory", d, e))?;
        }
        if let Some(parent) = self.root.parent() {
            let _ = fsutil::sync_dir(parent);
        }
        Ok(())
    }

    fn save(&self, t: FileType, name: &str, data: &[u8]) -> BResult<()> {
        let p = self.path_of(t, name);
        if t == FileType::Pack {
            // The two-hex-digit directory may be missing in a repository made by another tool.
            if let Some(dir) = p.parent() {
                if !dir.exists() {
                    fs::create_dir_all(dir).map_err(|e| Self::err("create directory", dir, e))?;
                }
            }
        }
        fsutil::atomic_write(&p, data).map_err(|e| Self::err("write", &p, e))?;
        // Repository files are never modified after they are written.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o400));
        }
        Ok(())
    }

    fn load(&self, t: FileType, name: &str) -> BResult<Vec<u8>> {
        let p = self.path_of(t, name);
        fs::read(&p).map_err(|e| Self::err("read", &p, e))
    }

    fn load_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> BResult<Vec<u8>> {
        let p = self.path_of(t, name);
        let mut f = fs::File::open(&p).map_err(|e| Self::err("open", &p, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Self::err("seek in", &p, e))?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf)
            .map_err(|e| Self::err("read", &p, e))?;
        Ok(buf)
    }

    fn list(&self, t: FileType) -> BResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut push_dir = |dir: &Path| -> BResult<()> {
            let rd = match fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound && t == FileType::Pack => {
                    return Ok(())
                }
                Err(e) => return Err(Self::err("list", dir, e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| Self::err("list", dir, e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if !valid_name(&name) {
                    continue;
                }
                let md = ent
                    .metadata()
                    .map_err(|e| Self::err("stat", &ent.path(), e))?;
                if md.is_file() {
                    out.push((name, md.len()));
                }
            }
            Ok(())
        };
        match t {
            FileType::Config => {}
            FileType::Pack => {
                let data = self.root.join("data");
                let rd = fs::read_dir(&data).map_err(|e| Self::err("list", &data, e))?;
                let mut subdirs: Vec<PathBuf> = Vec::new();
                for ent in rd {
                    let ent = ent.map_err(|e| Self::err("list", &data, e))?;
                    if ent.file_type().map(|ft| ft.is_dir()).unwrap_or(false) {
                        subdirs.push(ent.path());
                    }
                }
                subdirs.sort();
                for d in subdirs {
                    push_dir(&d)?;
                }
            }
            _ => push_dir(&self.root.join(t.dir()))?,
        }
        Ok(out)
    }

    fn remove(&self, t: FileType, name: &str) -> BResult<()> {
        let p = self.path_of(t, name);
        fs::remove_file(&p).map_err(|e| Self::err("remove", &p, e))?;
        if let Some(dir) = p.parent() {
            fsutil::sync_dir(dir).map_err(|e| Self::err("sync directory", dir, e))?;
        }
        Ok(())
    }

    fn exists(&self, t: FileType, name: &str) -> BResult<bool> {
        let p = self.path_of(t, name);
        match fs::metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Self::err("stat", &p, e)),
        }
    }

    fn local_path(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn lock_settle_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    #[cfg(unix)]
    fn space(&self) -> BResult<Option<Space>> {
        if !self.root.exists() {
            return Ok(None);
        }
        let v = nix::sys::statvfs::statvfs(&self.root).map_err(|e| {
            Self::err(
                "statvfs",
                &self.root,
                io::Error::from_raw_os_error(e as i32),
            )
        })?;
        let unit = v.fragment_size() as u64;
        Ok(Some(Space {
            total: (v.blocks() as u64).saturating_mul(unit),
            available: (v.blocks_available() as u64).saturating_mul(unit),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_save_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let be = LocalBackend::new(dir.path().join("repo"));
        be.create().unwrap();
        let name = "ab".to_string() + &"0".repeat(62);
        be.save(FileType::Pack, &name, b"packdata").unwrap();
        assert!(dir.path().join("repo/data/ab").join(&name).exists());
        assert_eq!(be.list(FileType::Pack).unwrap(), vec![(name.clone(), 8)]);
        assert_eq!(be.load_range(FileType::Pack, &name, 4, 4).unwrap(), b"data");
        be.remove(FileType::Pack, &name).unwrap();
        assert!(be.list(FileType::Pack).unwrap().is_empty());
        be.save(FileType::Config, "", b"{}").unwrap();
        assert!(
            be.create().is_err(),
            "create over an existing repository must fail"
        );
    }
}
