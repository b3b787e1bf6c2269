//! Durable file writes: temp file, fsync, rename, fsync of the directory; the platform's primitives for them.
//!
//! Unix: `fsync` (File::sync_all), rename(2), and an fsync of the directory so the new entry is
//! durable. Windows: `FlushFileBuffers` (File::sync_all), `MoveFileExW` with
//! `MOVEFILE_REPLACE_EXISTING` (std::fs::rename), and no directory flush (NTFS journals the
//! rename; a directory cannot be opened for flushing without backup privileges).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The name a temporary file for `target` gets: in the same directory (so the rename is atomic),
/// hidden, and recognisable as ours so that leftovers of a crash can be cleaned up.
pub fn temp_path_for(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rnd: u64 = rand::random();
    target.with_file_name(format!(".{name}.tmp-{rnd:016x}"))
}

/// True for names made by [`temp_path_for`].
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Writes `data` to `target` so that a crash at any instant leaves either the old file or the
/// complete new one: write to a temp file in the same directory, fsync it, rename it over the
/// target, fsync the directory. On error the temp file is removed and the target is untouched.
pub fn atomic_write(target: &Path, data: &[u8]) -> io::Result<()> {
    atomic_write_with(target, |f| f.write_all(data))
}

/// Like [`atomic_write`], with the content produced by `fill` writing into the temp file.
pub fn atomic_write_with(
    target: &Path,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = temp_path_for(target);
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        drop(f);
        replace(&tmp, target)?;
        sync_dir(target.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Renames `from` over `to` atomically (replacing an existing file): rename(2) on Unix,
/// `MoveFileExW(MOVEFILE_REPLACE_EXISTING)` on Windows, both as `std::fs::rename`.
pub fn replace(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

/// fsyncs a directory so that entries created, renamed or removed in it are durable (a no-op
/// where directories cannot be flushed: Windows).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let d = File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })?;
        d.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// True when the error means the disk (or quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(code) if code == libc::ENOSPC || code == libc::EDQUOT)
    }
    #[cfg(windows)]
    {
        // ERROR_HANDLE_DISK_FULL, ERROR_DISK_FULL, ERROR_DISK_QUOTA_EXCEEDED.
        matches!(e.raw_os_error(), Some(39 | 112 | 1295))
    }
    #[cfg(not(any(unix, windows)))]
    {
        e.kind() == io::ErrorKind::StorageFull
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temp files left: {names:?}");
    }

    #[test]
    fn failed_fill_keeps_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        atomic_write(&p, b"old").unwrap();
        let err = atomic_write_with(&p, |f| {
            f.write_all(b"partial")?;
            Err(io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(is_temp_name(
            temp_path_for(&p).file_name().unwrap().to_str().unwrap()
        ));
    }
}
