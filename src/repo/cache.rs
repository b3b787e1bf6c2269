//! A local cache of a remote repository's index and snapshot files, so that a backup with nothing new downloads nothing again.
//!
//! Files live in `CACHE_DIR/REPO_ID/{index,snapshots}/ID`. They are named by the SHA-256 of
//! their content, so a cached file is used only when its hash still matches its name; a
//! listing of the remote removes cached files that are gone there. A failure of the cache is
//! never an error of the repository: the file is then read from the backend.

use super::backend::{BResult, Backend, FileType};
use super::id::Id;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default cache folder: `BACKUPD_CACHE_DIR`, else `/var/cache/backupd` as root, else
/// the user's cache directory (`~/.cache/backupd` on Linux).
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("BACKUPD_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if crate::paths::is_system() && cfg!(unix) {
        return Some(PathBuf::from("/var/cache/backupd"));
    }
    directories::ProjectDirs::from("", "", "backupd").map(|p| p.cache_dir().to_path_buf())
}

/// A backend with a cache of index and snapshot files in front of it.
pub struct CachedBackend {
    inner: Arc<dyn Backend>,
    dir: PathBuf,
}

fn cached(t: FileType) -> bool {
    matches!(t, FileType::Index | FileType::Snapshot)
}

impl CachedBackend {
    /// `dir` is this repository's own folder (keyed by its id).
    pub fn new(inner: Arc<dyn Backend>, dir: PathBuf) -> CachedBackend {
        CachedBackend { inner, dir }
    }

    fn path(&self, t: FileType, name: &str) -> PathBuf {
        self.dir.join(t.dir()).join(name)
    }

    fn store(&self, t: FileType, name: &str, data: &[u8]) {
        let p = self.path(t, name);
        let r = (|| {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            crate::fsutil::atomic_write(&p, data)
        })();
        if let Err(e) = r {
            tracing::debug!("cache: could not write {}: {e}", p.display());
        }
    }

    fn fetch(&self, t: FileType, name: &str) -> Option<Vec<u8>> {
        let p = self.path(t, name);
        let data = std::fs::read(&p).ok()?;
        match Id::parse(name) {
            Some(id) if Id::hash(&data) == id => Some(data),
            _ => {
                let _ = std::fs::remove_file(&p);
                None
            }
        }
    }

    /// The cache folder in use.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn create(&self) -> BResult<()> {
        self.inner.create()
    }
    fn save(&self, t: FileType, name: &str, data: &[u8]) -> BResult<()> {
        self.inner.save(t, name, data)?;
        if cached(t) {
            self.store(t, name, data);
        }
        Ok(())
    }
    fn load(&self, t: FileType, name: &str) -> BResult<Vec<u8>> {
        if cached(t) {
            if let Some(d) = self.fetch(t, name) {
                return Ok(d);
            }
        }
        let data = self.inner.load(t, name)?;
        if cached(t) {
            self.store(t, name, &data);
        }
        Ok(data)
    }
    fn load_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> BResult<Vec<u8>> {
        self.inner.load_range(t, name, offset, len)
    }
    fn list(&self, t: FileType) -> BResult<Vec<(String, u64)>> {
        let names = self.inner.list(t)?;
        if cached(t) {
            if let Ok(rd) = std::fs::read_dir(self.dir.join(t.dir())) {
                let live: std::collections::HashSet<&str> =
                    names.iter().map(|(n, _)| n.as_str()).collect();
                for ent in rd.flatten() {
                    let n = ent.file_name().to_string_lossy().into_owned();
                    if !live.contains(n.as_str()) {
                        let _ = std::fs::remove_file(ent.path());
                    }
                }
            }
        }
        Ok(names)
    }
    fn remove(&self, t: FileType, name: &str) -> BResult<()> {
        if cached(t) {
            let _ = std::fs::remove_file(self.path(t, name));
        }
        self.inner.remove(t, name)
    }
    fn exists(&self, t: FileType, name: &str) -> BResult<bool> {
        self.inner.exists(t, name)
    }
    fn local_path(&self) -> Option<&Path> {
        self.inner.local_path()
    }
    fn lock_settle_delay(&self) -> std::time::Duration {
        self.inner.lock_settle_delay()
    }
    fn upload_parallelism(&self) -> usize {
        self.inner.upload_parallelism()
    }
    fn check_deletable(&self) -> BResult<()> {
        self.inner.check_deletable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::backend::LocalBackend;

    #[test]
    fn serves_from_cache_and_drops_stale_files() {
        let d = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Backend> = Arc::new(LocalBackend::new(d.path().join("r")));
        inner.create().unwrap();
        let c = CachedBackend::new(inner.clone(), d.path().join("cache"));
        let data = b"index bytes".to_vec();
        let name = Id::hash(&data).to_hex();
        c.save(FileType::Index, &name, &data).unwrap();
        // Gone from the backend's disk: the cache still answers (the hash matches).
        let p = d.path().join("r/index").join(&name);
        let mut perm = std::fs::metadata(&p).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&p, perm).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(c.load(FileType::Index, &name).unwrap(), data);
        // A listing without it removes it from the cache.
        assert!(c.list(FileType::Index).unwrap().is_empty());
        assert!(c.load(FileType::Index, &name).is_err());
        // A damaged cached file is not used.
        c.save(FileType::Index, &name, &data).unwrap();
        std::fs::write(d.path().join("cache/index").join(&name), b"bad").unwrap();
        assert_eq!(c.load(FileType::Index, &name).unwrap(), data);
    }
}
