//! The cache folder's repository folders: when each was last used, how big it is, which are old (restic's `cache` and `cache --cleanup`), and the stamp each open of a repository leaves.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The file whose modification time says when the repository folder was last used.
const STAMP: &str = "last-used";

/// What the cache folder's root holds so that backups of it (a home folder's `~/.cache`) can
/// leave it out with `--exclude-caches`.
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by backupd.\n# For information about cache directory tags see https://bford.info/cachedir/\n";

/// Marks `repo_dir` (a repository's folder in the cache root) as used now, and tags the root.
/// Failures are ignored: the cache is never an error of the repository.
pub fn mark_used(repo_dir: &Path) {
    let _ = std::fs::create_dir_all(repo_dir);
    if let Some(root) = repo_dir.parent() {
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = crate::fsutil::atomic_write(&tag, CACHEDIR_TAG.as_bytes());
        }
    }
    let stamp = repo_dir.join(STAMP);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&stamp);
    if let Ok(f) = f {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// One repository's folder in the cache.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheDir {
    /// The repository id (the folder's name).
    pub id: String,
    #[serde(skip)]
    pub path: PathBuf,
    /// When it was last used (RFC 3339).
    pub last_used: chrono::DateTime<chrono::Local>,
    /// Not used for longer than the maximum age.
    pub old: bool,
    /// Bytes of its files (none when not asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Whether a folder last used at `last_used` is old at `now`.
pub fn is_old(last_used: SystemTime, now: SystemTime, max_age: Duration) -> bool {
    now.duration_since(last_used).is_ok_and(|d| d > max_age)
}

/// Whether `name` is a repository id (64 hex digits): only such folders are ever listed or
/// removed, whatever else the cache root holds.
pub fn is_repo_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The repository folders under `root`, oldest use first; none when `root` does not exist.
pub fn list(root: &Path, max_age: Duration, sizes: bool) -> std::io::Result<Vec<CacheDir>> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut out = Vec::new();
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_repo_id(&name) || !e.file_type()?.is_dir() {
            continue;
        }
        let path = e.path();
        let used = last_used(&path)?;
        out.push(CacheDir {
            id: name,
            old: is_old(used, now, max_age),
            last_used: used.into(),
            size: sizes.then(|| size_of(&path)),
            path,
        });
    }
    out.sort_by_key(|d| d.last_used);
    Ok(out)
}

/// The stamp's time, else the folder's own modification time (a cache from before stamps).
fn last_used(dir: &Path) -> std::io::Result<SystemTime> {
    match std::fs::metadata(dir.join(STAMP)) {
        Ok(m) => m.modified(),
        Err(_) => std::fs::metadata(dir)?.modified(),
    }
}

/// The bytes of the files below `dir` (what cannot be read counts nothing).
fn size_of(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Removes the folder of a repository's cache (everything in it is a copy of the remote).
pub fn remove(d: &CacheDir) -> std::io::Result<()> {
    std::fs::remove_dir_all(&d.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_old_only_after_the_maximum_age() {
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        assert!(!is_old(now - 29 * day, now, 30 * day));
        assert!(is_old(now - 31 * day, now, 30 * day));
        assert!(!is_old(now + day, now, 30 * day), "a time ahead is not old");
    }

    #[test]
    fn only_repository_ids_are_listed_and_a_stamp_says_when_one_was_used() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        mark_used(&d.path().join(&a));
        std::fs::create_dir_all(d.path().join(&b)).unwrap();
        std::fs::write(d.path().join(&b).join("x"), [0u8; 10]).unwrap();
        let old = SystemTime::now() - Duration::from_secs(40 * 86_400);
        let f = std::fs::File::options()
            .write(true)
            .open(d.path().join(&a).join(STAMP))
            .unwrap();
        f.set_modified(old).unwrap();
        std::fs::create_dir_all(d.path().join("not-a-repo")).unwrap();
        let l = list(d.path(), Duration::from_secs(30 * 86_400), true).unwrap();
        let got: Vec<_> = l.iter().map(|c| (c.id.as_str(), c.old, c.size)).collect();
        assert_eq!(
            got,
            [(a.as_str(), true, Some(0)), (b.as_str(), false, Some(10))]
        );
        assert!(d.path().join("CACHEDIR.TAG").exists());
        remove(&l[0]).unwrap();
        assert!(!d.path().join(&a).exists() && d.path().join("not-a-repo").exists());
    }
}
