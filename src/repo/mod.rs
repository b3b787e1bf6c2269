//! The repository: opening and creating one, and reading and writing its encrypted files and blobs.

pub mod backend;
pub mod cache;
pub mod cachedirs;
pub mod config;
pub mod crypto;
pub mod gdrive;
pub mod gotime;
pub mod http;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod keys;
pub mod location;
pub mod lock;
pub mod manifest;
pub mod nodename;
pub mod open;
pub mod pack;
pub mod rest;
pub mod s3;
pub mod sftp;
pub mod snapshot;
pub mod tree;

#[cfg(test)]
mod fuzz;

use crate::error::{Error, Result};
use backend::{Backend, FileType};
use config::RepoConfig;
use crypto::Key;
use id::Id;
use index::{IndexFile, MasterIndex};
use keyfile::KeyFile;
use pack::{BlobType, Compression, PackedBlob};
use serde::de::DeserializeOwned;
use serde::Serialize;
use snapshot::Snapshot;
use std::sync::Arc;
use tree::Tree;

/// The version string written into snapshots.
pub const PROGRAM_VERSION: &str = concat!("backupd ", env!("CARGO_PKG_VERSION"));

/// How many key files to try a password against (restic tries 20, too).
const MAX_KEYS_TRIED: usize = 20;

/// The snapshots of a repository: those that can be read (oldest first) and the damaged files.
#[derive(Debug, Default)]
pub struct Snapshots {
    pub readable: Vec<(Id, Snapshot)>,
    pub damaged: Vec<DamagedSnapshot>,
}

/// A snapshot file whose content does not verify, decrypt or parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedSnapshot {
    pub id: Id,
    /// What is wrong with it.
    pub detail: String,
}

impl DamagedSnapshot {
    /// The error of a command that needs this snapshot (or every snapshot).
    pub fn error(&self) -> Error {
        Error::SnapshotDamaged {
            id: self.id.to_hex(),
            detail: self.detail.clone(),
        }
    }
}

/// An open repository: its storage, master key and config, and (once loaded) its index.
pub struct Repository {
    be: Arc<dyn Backend>,
    /// The local cache in front of a remote backend (`be` is then this cache).
    cache: Option<Arc<cache::CachedBackend>>,
    key: Key,
    /// The key file (`keys/NAME`) the password opened.
    key_name: String,
    config: RepoConfig,
    index: MasterIndex,
    pub compression: Compression,
}

/// Encodes the plaintext of an unpacked file: version byte 2 and zstd-compressed JSON.
pub fn encode_unpacked(json: &[u8]) -> Vec<u8> {
    let mut out = vec![2u8];
    out.extend_from_slice(
        &zstd::bulk::compress(json, 3).expect("zstd compression of memory cannot fail"),
    );
    out
}

/// Decodes the plaintext of an unpacked file (plain JSON, or version 2 compressed).
pub fn decode_unpacked(plain: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    match plain.first() {
        Some(b'{') | Some(b'[') => Ok(plain),
        Some(2) => zstd::stream::decode_all(&plain[1..]).map_err(|e| format!("zstd: {e}")),
        Some(v) => Err(format!("unknown encoding version {v}")),
        None => Err("empty file".into()),
    }
}

impl Repository {
    /// Creates a new repository (format version 2) with one key for `password`.
    pub fn init(be: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        Self::init_with_kdf(
            be,
            password,
            keyfile::DEFAULT_N,
            keyfile::DEFAULT_R,
            keyfile::DEFAULT_P,
        )
    }

    pub fn init_with_kdf(
        be: Arc<dyn Backend>,
        password: &[u8],
        n: u32,
        r: u32,
        p: u32,
    ) -> Result<Repository> {
        if password.is_empty() {
            return Err(Error::Input(
                "an empty password is not allowed for a new repository".into(),
            ));
        }
        be.create()?;
        let key = Key::generate();
        let kf =
            KeyFile::create(&key, password, n, r, p).map_err(|e| Error::Input(e.to_string()))?;
        let kf_bytes = serde_json::to_vec(&kf).expect("key file serializes");
        let key_name = Id::hash(&kf_bytes).to_hex();
        be.save(FileType::Key, &key_name, &kf_bytes)?;
        let config = RepoConfig::new();
        // The config is never compressed: it must be readable before the version is known.
        let sealed = key.seal(&serde_json::to_vec(&config).expect("config serializes"));
        be.save(FileType::Config, "", &sealed)?;
        Ok(Repository {
            be,
            cache: None,
            key,
            key_name,
            config,
            index: MasterIndex::new(),
            compression: Compression::default(),
        })
    }

    /// Opens an existing repository with `password`.
    pub fn open(be: Arc<dyn Backend>, password: &[u8]) -> Result<Repository> {
        let location = be.location();
        let cfg_bytes = match be.load(FileType::Config, "") {
            Ok(b) => b,
            Err(e) if http::remote_class(&e) == Some(http::RemoteClass::NoContainer) => {
                return Err(Error::NoRepository {
                    location,
                    detail: e.source.to_string(),
                });
            }
            Err(e) if e.is_not_found() => {
                let detail = if be.root_exists().unwrap_or(true) {
                    "it has no config file".to_string()
                } else {
                    "the directory does not exist".to_string()
                };
                return Err(Error::NoRepository { location, detail });
            }
            Err(e) => return Err(e.into()),
        };
        let keys = be.list(FileType::Key)?;
        let mut key = None;
        let mut failed = Vec::new();
        for (name, _) in keys.iter().take(MAX_KEYS_TRIED) {
            let bytes = be.load(FileType::Key, name)?;
            match KeyFile::parse(&bytes).and_then(|kf| kf.open(password)) {
                Ok(k) => {
                    key = Some((k, name.clone()));
                    break;
                }
                Err(e) => failed.push((format!("keys/{name}"), e)),
            }
        }
        let Some((key, key_name)) = key else {
            return Err(keyfile::none_opened(location, keys.len(), failed));
        };
        let plain = key
            .open(&cfg_bytes)
            .map_err(|e| Error::damaged(format!("the config file of {location}"), e))?;
        let plain = decode_unpacked(plain)
            .map_err(|e| Error::damaged(format!("the config file of {location}"), e))?;
        let config: RepoConfig = serde_json::from_slice(&plain)
            .map_err(|e| Error::damaged(format!("the config file of {location}"), e))?;
        if config.version != 1 && config.version != 2 {
            return Err(Error::Input(format!(
                "the repository at {location} has format version {}, which this backupd does not know (it knows 1 and 2)",
                config.version
            )));
        }
        let compression = if config.version >= 2 {
            Compression::default()
        } else {
            Compression::Off
        };
        // Remote storage: index and snapshot files and tree packs come from a local cache when
        // they can.
        let cache = match (be.local_path(), cache::default_cache_dir()) {
            (None, Some(dir)) if config.id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                cachedirs::mark_used(&dir.join(&config.id));
                Some(Arc::new(cache::CachedBackend::new(
                    be.clone(),
                    dir.join(&config.id),
                )))
            }
            _ => None,
        };
        let be: Arc<dyn Backend> = match &cache {
            Some(c) => c.clone(),
            None => be,
        };
        Ok(Repository {
            be,
            cache,
            key,
            key_name,
            config,
            index: MasterIndex::new(),
            compression,
        })
    }

    /// The name of the key file the password opened (`keys/NAME`).
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.be
    }

    /// The local cache in front of a remote repository, if there is one.
    pub fn cache(&self) -> Option<&Arc<cache::CachedBackend>> {
        self.cache.as_ref()
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    pub fn location(&self) -> String {
        self.be.location()
    }

    /// Encrypts (and in format 2, compresses) a JSON document and stores it under its hash.
    pub fn save_unpacked<T: Serialize>(&self, t: FileType, v: &T) -> Result<Id> {
        let json = serde_json::to_vec(v).expect("repository documents serialize");
        let plain = if self.config.version >= 2 {
            encode_unpacked(&json)
        } else {
            json
        };
        let sealed = self.key.seal(&plain);
        let id = Id::hash(&sealed);
        self.be.save(t, &id.to_hex(), &sealed)?;
        Ok(id)
    }

    /// Loads, verifies (hash of the bytes = name), decrypts and parses an unpacked file.
    pub fn load_unpacked<T: DeserializeOwned>(&self, t: FileType, id: &Id) -> Result<T> {
        let plain = self.load_unpacked_bytes(t, id)?;
        let what = || format!("{} file {}", t.describe(), id.short());
        serde_json::from_slice(&plain).map_err(|e| Error::damaged(what(), e))
    }

    /// Loads, verifies (hash of the bytes = name) and decrypts an unpacked file: its JSON text.
    pub fn load_unpacked_bytes(&self, t: FileType, id: &Id) -> Result<Vec<u8>> {
        let bytes = self.be.load(t, &id.to_hex())?;
        let what = || format!("{} file {}", t.describe(), id.short());
        if Id::hash(&bytes) != *id {
            return Err(Error::damaged(
                what(),
                "its content does not match its name (SHA-256)",
            ));
        }
        let plain = self
            .key
            .open(&bytes)
            .map_err(|e| Error::damaged(what(), e))?;
        decode_unpacked(plain).map_err(|e| Error::damaged(what(), e))
    }

    /// Ids of all files of a type.
    pub fn list_ids(&self, t: FileType) -> Result<Vec<Id>> {
        Ok(self
            .be
            .list(t)?
            .into_iter()
            .filter_map(|(n, _)| Id::parse(&n))
            .collect())
    }

    /// Loads every index file into the master index.
    pub fn load_index(&mut self) -> Result<()> {
        let mut mi = MasterIndex::new();
        for id in self.list_ids(FileType::Index)? {
            let f: IndexFile = self.load_unpacked(FileType::Index, &id)?;
            mi.merge_file(id, &f);
        }
        self.index = mi;
        Ok(())
    }

    pub fn index(&self) -> &MasterIndex {
        &self.index
    }

    pub fn index_mut(&mut self) -> &mut MasterIndex {
        &mut self.index
    }

    /// All snapshots, oldest first, and the snapshot files that are damaged (their content does
    /// not verify, decrypt or parse). A file that cannot be read at all is an error.
    pub fn load_snapshots(&self) -> Result<Snapshots> {
        let mut out = Snapshots::default();
        for id in self.list_ids(FileType::Snapshot)? {
            match self.load_unpacked::<Snapshot>(FileType::Snapshot, &id) {
                Ok(s) => out.readable.push((id, s)),
                // Removed by a concurrent forget between list and load.
                Err(Error::Backend(e)) if e.is_not_found() => continue,
                Err(Error::Damaged { detail, .. }) => {
                    out.damaged.push(DamagedSnapshot { id, detail });
                }
                Err(e) => return Err(e),
            }
        }
        out.readable
            .sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// All snapshots, oldest first. A damaged snapshot file is an error (for operations that
    /// must know every snapshot, such as prune).
    pub fn list_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let all = self.load_snapshots()?;
        match all.damaged.first() {
            Some(d) => Err(d.error()),
            None => Ok(all.readable),
        }
    }

    /// Reads one blob through the index, verifying its hash.
    pub fn load_blob(&self, id: &Id, tpe: BlobType) -> Result<Vec<u8>> {
        let loc = self.index.get(id, tpe).ok_or_else(|| {
            Error::damaged(
                format!("{} blob {}", tpe.as_str(), id.short()),
                "it is not in the index",
            )
        })?;
        let pack = self.index.pack_id(loc);
        if tpe == BlobType::Tree {
            if let Some(c) = &self.cache {
                if let Some(plain) = self.load_cached_blob(c, &pack, &loc.blob)? {
                    return Ok(plain);
                }
            }
        }
        let sealed = self.be.load_range(
            FileType::Pack,
            &pack.to_hex(),
            loc.blob.offset as u64,
            loc.blob.length as usize,
        )?;
        pack::open_blob(&self.key, &loc.blob, &sealed)
            .map_err(|e| Error::damaged(format!("pack {}", pack.short()), e))
    }

    /// A tree blob from the cached copy of its pack, fetching the pack whole first if it is
    /// not cached. `None` (the caller reads the blob from the remote) when the blob does not
    /// verify; the cached pack is then evicted.
    fn load_cached_blob(
        &self,
        c: &cache::CachedBackend,
        pack: &Id,
        blob: &PackedBlob,
    ) -> Result<Option<Vec<u8>>> {
        let name = pack.to_hex();
        let (off, len) = (blob.offset as usize, blob.length as usize);
        let sealed = match c.pack_range(&name, off as u64, len) {
            Some(s) => s,
            None => {
                let whole = c.fetch_pack(&name)?;
                match whole.get(off..off + len) {
                    Some(s) => s.to_vec(),
                    None => return Ok(None),
                }
            }
        };
        match pack::open_blob(&self.key, blob, &sealed) {
            Ok(plain) => Ok(Some(plain)),
            Err(e) => {
                tracing::debug!(
                    "cache: pack {} does not verify ({e}): read from the remote",
                    pack.short()
                );
                c.evict_pack(&name);
                Ok(None)
            }
        }
    }

    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let bytes = self.load_blob(id, BlobType::Tree)?;
        Tree::parse(&bytes).map_err(|e| Error::damaged(format!("tree {}", id.short()), e))
    }

    /// Reads and decrypts a pack's header (two reads at most).
    pub fn read_pack_header(&self, pack: &Id, size: u64) -> Result<Vec<PackedBlob>> {
        let name = pack.to_hex();
        let what = || format!("pack {}", pack.short());
        let hint = pack::header_read_hint(size);
        let tail = self
            .be
            .load_range(FileType::Pack, &name, size - hint, hint as usize)?;
        match pack::parse_header(&self.key, size, &tail).map_err(|e| Error::damaged(what(), e))? {
            Ok(blobs) => Ok(blobs),
            Err(need) => {
                let tail = self
                    .be
                    .load_range(FileType::Pack, &name, size - need, need as usize)?;
                match pack::parse_header(&self.key, size, &tail)
                    .map_err(|e| Error::damaged(what(), e))?
                {
                    Ok(blobs) => Ok(blobs),
                    Err(_) => Err(Error::damaged(what(), "its header length is inconsistent")),
                }
            }
        }
    }

    /// Stores a finished pack; its blobs become visible only once an index names them. A pack
    /// that holds trees is also kept in the local cache of a remote repository.
    pub fn save_pack(&self, id: &Id, bytes: &[u8]) -> Result<()> {
        self.be.save(FileType::Pack, &id.to_hex(), bytes)?;
        if let Some(c) = &self.cache {
            if let Ok(Ok(blobs)) = pack::parse_header(&self.key, bytes.len() as u64, bytes) {
                if blobs.iter().any(|b| b.tpe == BlobType::Tree) {
                    c.store_pack(&id.to_hex(), bytes);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backend::LocalBackend;

    #[test]
    fn init_open_and_unpacked_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("r")));
        let repo = Repository::init_with_kdf(be.clone(), b"pw", 1024, 8, 1).unwrap();
        let id = repo
            .save_unpacked(FileType::Index, &IndexFile::default())
            .unwrap();
        let r2 = Repository::open(be.clone(), b"pw").unwrap();
        assert_eq!(r2.config(), repo.config());
        let f: IndexFile = r2.load_unpacked(FileType::Index, &id).unwrap();
        assert!(f.packs.is_empty());
        assert!(matches!(
            Repository::open(be.clone(), b"nope"),
            Err(Error::WrongPassword { .. })
        ));
        let missing: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("none")));
        assert!(matches!(
            Repository::open(missing, b"pw"),
            Err(Error::NoRepository { .. })
        ));
    }
}
