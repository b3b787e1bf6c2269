//! A local cache of a remote repository's index and snapshot files and of its tree packs, so that a backup with nothing new downloads nothing again.
//!
//! Files live in `CACHE_DIR/REPO_ID/{index,snapshots,data}/ID`. Index and snapshot files are
//! named by the SHA-256 of their content, so a cached one is used only when its hash still
//! matches its name. Packs that hold tree blobs (restic and backupd keep trees in packs of their
//! own) are cached whole, when written or when a tree in them is first read, and only after
//! their hash matched their name; the repository reads tree blobs from them and checks each
//! blob's MAC and hash as it would on the remote, evicting the pack at the first mismatch. The
//! backend's own `load`/`load_range` of packs never come from the cache: `check --read-data`,
//! prune and restore of file data read the remote. A listing of the remote removes cached
//! files that are gone there. A failure of the cache is never an error of the repository: the
//! file is then read from the backend.

use super::backend::{BResult, Backend, FileType};
use super::id::Id;
use crate::error::POISONED;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    /// One lock per pack being fetched, so that threads reading trees of the same pack download
    /// it once.
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// Whole files cached on every load and save.
fn cached(t: FileType) -> bool {
    matches!(t, FileType::Index | FileType::Snapshot)
}

/// Folders whose files a listing of the remote prunes.
fn swept(t: FileType) -> bool {
    cached(t) || t == FileType::Pack
}

impl CachedBackend {
    /// `dir` is this repository's own folder (keyed by its id).
    pub fn new(inner: Arc<dyn Backend>, dir: PathBuf) -> CachedBackend {
        CachedBackend {
            inner,
            dir,
            fetching: Mutex::new(HashMap::new()),
        }
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

    /// Keeps a copy of a pack that holds trees (the caller knows it does).
    pub fn store_pack(&self, name: &str, data: &[u8]) {
        self.store(FileType::Pack, name, data);
    }

    /// `len` bytes at `offset` of a cached pack, if the pack is cached and that long.
    pub fn pack_range(&self, name: &str, offset: u64, len: usize) -> Option<Vec<u8>> {
        let f = std::fs::File::open(self.path(FileType::Pack, name)).ok()?;
        if f.metadata().ok()?.len() < offset + len as u64 {
            return None;
        }
        let mut buf = vec![0u8; len];
        read_exact_at(&f, &mut buf, offset).ok()?;
        Some(buf)
    }

    /// Downloads a pack whole and caches it if its content matches its name; a pack that
    /// does not is returned all the same (the blobs read from it are verified one by one) but
    /// not kept. A second thread asking for the same pack waits and reads the cached copy.
    pub fn fetch_pack(&self, name: &str) -> BResult<Vec<u8>> {
        let gate = {
            let mut m = self.fetching.lock().expect(POISONED);
            m.entry(name.to_string()).or_default().clone()
        };
        let guard = gate.lock().expect(POISONED);
        let p = self.path(FileType::Pack, name);
        let out = match std::fs::read(&p) {
            Ok(d) => Ok(d),
            Err(_) => {
                let r = self.inner.load(FileType::Pack, name);
                if let Ok(d) = &r {
                    if Id::parse(name).is_some_and(|id| Id::hash(d) == id) {
                        self.store(FileType::Pack, name, d);
                    }
                }
                r
            }
        };
        drop(guard);
        self.fetching.lock().expect(POISONED).remove(name);
        out
    }

    /// Forgets a cached pack (one of its blobs did not verify).
    pub fn evict_pack(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(FileType::Pack, name));
    }

    /// Forgets every cached pack, so that the trees are read from the remote again (`check`
    /// does this: it must judge the remote, not the cache).
    pub fn drop_packs(&self) {
        let d = self.dir.join(FileType::Pack.dir());
        if let Ok(rd) = std::fs::read_dir(&d) {
            for ent in rd.flatten() {
                let _ = std::fs::remove_file(ent.path());
            }
        }
    }
}

#[cfg(unix)]
fn read_exact_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = f;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
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
        if swept(t) {
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
        if swept(t) {
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
    fn root_exists(&self) -> Option<bool> {
        self.inner.root_exists()
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
    fn space(&self) -> BResult<Option<super::backend::Space>> {
        self.inner.space()
    }
    fn abort_stale_uploads(
        &self,
        older_than: std::time::Duration,
        dry_run: bool,
    ) -> BResult<usize> {
        self.inner.abort_stale_uploads(older_than, dry_run)
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

    #[test]
    fn tree_packs_are_cached_whole_only_when_their_hash_matches() {
        let d = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Backend> = Arc::new(LocalBackend::new(d.path().join("r")));
        inner.create().unwrap();
        let c = CachedBackend::new(inner.clone(), d.path().join("cache"));
        let good = b"a pack that holds trees".to_vec();
        let gname = Id::hash(&good).to_hex();
        inner.save(FileType::Pack, &gname, &good).unwrap();
        // Not cached until fetched; a fetch caches it and ranges are served from it.
        assert_eq!(c.pack_range(&gname, 2, 4), None);
        assert_eq!(c.fetch_pack(&gname).unwrap(), good);
        assert_eq!(c.pack_range(&gname, 2, 4).as_deref(), Some(&good[2..6]));
        assert_eq!(c.pack_range(&gname, 20, 10), None, "past its end");
        // The backend's own reads of packs never come from the cache.
        std::fs::write(
            d.path().join("cache/data").join(&gname),
            b"x".repeat(good.len()),
        )
        .unwrap();
        assert_eq!(
            c.load_range(FileType::Pack, &gname, 0, 3).unwrap(),
            &good[..3]
        );
        c.evict_pack(&gname);
        assert_eq!(c.pack_range(&gname, 0, 1), None);
        // A pack whose content does not match its name is returned but not kept.
        let bad_name = Id::hash(b"something else").to_hex();
        inner.save(FileType::Pack, &bad_name, &good).unwrap();
        assert_eq!(c.fetch_pack(&bad_name).unwrap(), good);
        assert_eq!(c.pack_range(&bad_name, 0, 1), None);
        // A listing drops cached packs the remote no longer has; drop_packs drops all.
        c.store_pack(&gname, &good);
        c.store_pack(&bad_name, &good);
        inner.remove(FileType::Pack, &bad_name).unwrap();
        let _ = c.list(FileType::Pack).unwrap();
        assert!(c.pack_range(&gname, 0, 1).is_some());
        assert_eq!(c.pack_range(&bad_name, 0, 1), None);
        c.drop_packs();
        assert_eq!(c.pack_range(&gname, 0, 1), None);
        // A missing pack is the backend's error.
        assert!(c
            .fetch_pack(&Id::hash(b"gone").to_hex())
            .unwrap_err()
            .is_not_found());
    }
}
