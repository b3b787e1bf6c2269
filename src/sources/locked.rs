//! Locked regular files: who holds a write lock on one, and the policy once the wait is over.

use crate::sources::retry::RetryPolicy;
#[cfg(unix)]
use std::fs::{self, File};
use std::path::Path;

/// What to do with a regular file that another process holds a write lock on (flock or fcntl)
/// once the source's wait deadline has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockedAction {
    /// Fail the backup, naming the file and the lock holder.
    Fail,
    /// Leave the file out (a warning; the snapshot is partial).
    Skip,
    /// Read it anyway (a warning; the snapshot is partial: the copy may be inconsistent).
    ReadAnyway,
}

impl std::str::FromStr for LockedAction {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fail" => Ok(LockedAction::Fail),
            "skip" => Ok(LockedAction::Skip),
            "read-anyway" => Ok(LockedAction::ReadAnyway),
            _ => Err(format!(
                "invalid locked-file policy {s:?}: use fail, skip or read-anyway"
            )),
        }
    }
}

/// The policy for locked regular files: wait (with backoff, within `retry.deadline` for the
/// whole backup), then `action`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LockedFiles {
    pub action: LockedAction,
    pub retry: RetryPolicy,
}

impl Default for LockedFiles {
    /// Read locked files at once, with a warning (as restic reads them, but never silently).
    fn default() -> Self {
        LockedFiles {
            action: LockedAction::ReadAnyway,
            retry: RetryPolicy {
                deadline: std::time::Duration::ZERO,
                ..RetryPolicy::default()
            },
        }
    }
}

/// Who holds a write lock on a regular file, if anyone: an flock(2) exclusive lock, or a POSIX
/// or open-file-description write lock (fcntl) on any range of it. The probe takes no lock
/// that it keeps.
#[cfg(unix)]
pub fn lock_holder(path: &Path) -> Option<String> {
    use std::os::unix::io::AsRawFd;
    let f = File::open(path).ok()?;
    let flocked = match f.try_lock_shared() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(_) => false,
    };
    // SAFETY: `fl` is a plain C struct, zeroed then filled in; F_GETLK only writes into it.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_RDLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    let posix = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) } == 0
        && fl.l_type != libc::F_UNLCK as libc::c_short;
    if !flocked && !posix {
        return None;
    }
    let comm = |pid: i64| {
        fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| format!(" ({})", c.trim()))
            .unwrap_or_default()
    };
    if posix {
        let pid = fl.l_pid as i64;
        return Some(if pid > 0 {
            format!("a POSIX write lock held by PID {pid}{}", comm(pid))
        } else {
            "an open-file-description write lock".to_string()
        });
    }
    // flock(2) locks do not say who holds them; /proc/locks does, by inode.
    let ino = std::os::unix::fs::MetadataExt::ino(&f.metadata().ok()?);
    let holder = fs::read_to_string("/proc/locks").ok().and_then(|locks| {
        locks.lines().find_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            let flock = parts.get(1) == Some(&"FLOCK");
            let inode = parts
                .get(5)
                .and_then(|d| d.rsplit(':').next())
                .and_then(|i| i.parse::<u64>().ok());
            if flock && inode == Some(ino) && parts.get(3) == Some(&"WRITE") {
                parts.get(4).and_then(|p| p.parse::<i64>().ok())
            } else {
                None
            }
        })
    });
    Some(match holder {
        Some(pid) => format!("an flock write lock held by PID {pid}{}", comm(pid)),
        None => "an flock write lock".to_string(),
    })
}

#[cfg(not(unix))]
pub fn lock_holder(_path: &Path) -> Option<String> {
    None
}
