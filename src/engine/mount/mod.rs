//! Mount (restic's `mount`): a repository's snapshots as a read-only file system — the layout of folders above them (pure), reading files by blob ranges (pure), and on Linux the FUSE file system itself.

pub mod content;
#[cfg(target_os = "linux")]
pub mod fs;
pub mod layout;
pub mod mountinfo;

use std::path::PathBuf;

/// Why a mount point cannot be used, or a mount could not be made or undone.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("the mount point {dir} does not exist\n  hint: create it first (`mkdir -p {dir}`): mount needs an empty directory")]
    Missing { dir: PathBuf },
    #[error(
        "the mount point {dir} is not a directory\n  hint: name an empty directory to mount on"
    )]
    NotADirectory { dir: PathBuf },
    #[error("the mount point {dir} is not empty (it holds {first:?}{more}): mounting on it would hide what it holds\n  hint: name an empty directory (`mkdir` a new one)")]
    NotEmpty {
        dir: PathBuf,
        /// One of its entries.
        first: String,
        /// ` and N more`, or nothing.
        more: String,
    },
    #[error("the mount point {dir} is already a mount point\n  hint: unmount it first (`fusermount3 -u {dir}`), or name another empty directory")]
    AlreadyMounted { dir: PathBuf },
    #[error("cannot read the mount point {dir}: {source}\n  hint: check its permissions")]
    Unreadable {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mount on {dir}: {source}\n  hint: mount needs /dev/fuse and fusermount3 (Debian's `fuse3` package); as a user other than root, /etc/fuse.conf must allow `user_allow_other` for --allow-other")]
    Mount {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot unmount {dir}: {detail}\n  hint: `fusermount3 -u -z {dir}` unmounts it by hand"
    )]
    Unmount { dir: PathBuf, detail: String },
}

/// What a mount point holds, as [`check_mount_point`] judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountPoint {
    Missing,
    NotADirectory,
    /// A directory with these entries (a few of them are enough) and this many in all.
    Directory {
        some: Vec<String>,
        count: usize,
    },
}

/// Whether `dir`, which holds `what`, can be mounted on (pure): an existing, empty directory.
pub fn check_mount_point(dir: &std::path::Path, what: &MountPoint) -> Result<(), MountError> {
    let dir = dir.to_path_buf();
    match what {
        MountPoint::Missing => Err(MountError::Missing { dir }),
        MountPoint::NotADirectory => Err(MountError::NotADirectory { dir }),
        MountPoint::Directory { count: 0, .. } => Ok(()),
        MountPoint::Directory { some, count } => Err(MountError::NotEmpty {
            dir,
            first: some.first().cloned().unwrap_or_default(),
            more: match count - 1 {
                0 => String::new(),
                n => format!(" and {n} more"),
            },
        }),
    }
}

/// Looks at `dir` for [`check_mount_point`].
pub fn inspect_mount_point(dir: &std::path::Path) -> Result<MountPoint, MountError> {
    let unreadable = |source| MountError::Unreadable {
        dir: dir.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(MountPoint::Missing),
        Err(e) => return Err(unreadable(e)),
    };
    if !meta.is_dir() {
        return Ok(MountPoint::NotADirectory);
    }
    let mut some = Vec::new();
    let mut count = 0;
    for e in std::fs::read_dir(dir).map_err(unreadable)? {
        let e = e.map_err(unreadable)?;
        if some.is_empty() {
            some.push(e.file_name().to_string_lossy().into_owned());
        }
        count += 1;
    }
    Ok(MountPoint::Directory { some, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn only_an_existing_empty_directory_is_a_mount_point() {
        let d = Path::new("/mnt/x");
        assert!(check_mount_point(
            d,
            &MountPoint::Directory {
                some: vec![],
                count: 0
            }
        )
        .is_ok());
        let e = check_mount_point(d, &MountPoint::Missing).unwrap_err();
        assert!(e.to_string().contains("/mnt/x does not exist"), "{e}");
        assert!(e.to_string().contains("mkdir -p /mnt/x"), "{e}");
        let full = MountPoint::Directory {
            some: vec!["a".into()],
            count: 3,
        };
        let e = check_mount_point(d, &full).unwrap_err().to_string();
        assert!(
            e.contains("is not empty (it holds \"a\" and 2 more)"),
            "{e}"
        );
        assert!(check_mount_point(d, &MountPoint::NotADirectory).is_err());
    }
}
