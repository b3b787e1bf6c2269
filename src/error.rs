//! The library's error type and the stable exit codes that `backupctl` maps it to.

use crate::repo::backend::BackendError;
use crate::repo::http::RemoteClass;
use std::io;

/// What `expect` says of a poisoned lock. A `Mutex` is poisoned only when a thread panicked while
/// holding it: that is a bug, the panic already fails the run (threads are joined and their panics
/// re-raised), and going on with data a panicking thread left half-changed could commit it.
pub const POISONED: &str =
    "a lock is poisoned only after a thread panicked holding it, which already fails this run";

/// Exit codes of `backupctl` (documented in docs/exit-codes.md; stable).
pub mod exit {
    pub const OK: i32 = 0;
    /// The command failed; the message says what, where, why and what to do.
    pub const FAILURE: i32 = 1;
    /// Bad command-line usage.
    pub const USAGE: i32 = 2;
    /// A backup committed a snapshot, but some sources could not be read (partial snapshot).
    pub const PARTIAL: i32 = 3;
    /// `check` (or a restore's verification) found damaged or missing data.
    pub const DAMAGED: i32 = 4;
    /// A source could not be captured consistently: busy or locked past its deadline, a failed
    /// integrity check, a failing command or hook. Nothing was committed.
    pub const SOURCE_FAILED: i32 = 5;
    /// No repository at the given location.
    pub const NO_REPOSITORY: i32 = 10;
    /// The repository is locked by another process (after `--lock-wait`).
    pub const LOCKED: i32 = 11;
    /// The password opens none of the repository's keys.
    pub const WRONG_PASSWORD: i32 = 12;
    /// backupd is not running (no answer on its control socket), for commands that need it.
    pub const NO_DAEMON: i32 = 13;
    /// The repository's storage refused access: wrong credentials, no permission, or a REST
    /// server in append-only mode refusing a deletion.
    pub const ACCESS_DENIED: i32 = 14;
    /// The repository's storage could not be reached (connection refused, DNS, timeouts), after
    /// every retry; or not safely: the TLS handshake failed (untrusted or wrong certificate, no
    /// TLS on that port; not retried).
    pub const UNREACHABLE: i32 = 15;
    /// The repository's remote storage is full: an S3 bucket's quota, a REST server's or Google
    /// Drive's storage limit refused an upload. Nothing of the failed run is visible.
    pub const STORAGE_FULL: i32 = 16;
    /// `backupctl manifest`: the snapshot has no manifest (it was made without `manifest`).
    pub const NO_MANIFEST: i32 = 17;
    /// Interrupted by a signal (SIGINT or SIGTERM).
    pub const INTERRUPTED: i32 = 130;
    /// Standard output was closed by its reader (`backupctl ls | head`): backupctl stops quietly,
    /// with the code a shell reports for a process that SIGPIPE ended (128 + 13), as restic does.
    pub const CLOSED_PIPE: i32 = 141;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("there is no repository at {location}: {detail}\n  hint: check the path, or create a repository there with `backupctl -r {location} init`")]
    NoRepository { location: String, detail: String },

    #[error("wrong password for the repository at {location}, or its key file is damaged: it opens none of the {keys} key file(s){named}\n  hint: check --password-file, BACKUPD_PASSWORD_FILE or BACKUPD_PASSWORD_COMMAND; if the password is right, the key file named is damaged: open the repository with the password of another key, or put back a copy of that file", named = describe_key_files(.mac_failed, .damaged))]
    WrongPassword {
        location: String,
        keys: usize,
        /// The key files (`keys/NAME`) whose MAC does not match this password.
        mac_failed: Vec<String>,
        /// The key files that are damaged whatever the password: `keys/NAME: what is wrong`.
        damaged: Vec<String>,
    },

    #[error("the key files of the repository at {location} are damaged, so no password can open it: {}\n  hint: put back a copy of a key file (from a copy of the repository), or add a key with `restic key add` from a machine that still opens it", .damaged.join("; "))]
    KeyFilesDamaged {
        location: String,
        /// `keys/NAME: what is wrong`, for each key file tried.
        damaged: Vec<String>,
    },

    #[error("the repository at {location} is locked: {holder}\n  hint: wait for that process to finish or raise --lock-wait; if it is gone, `backupctl unlock` removes stale locks")]
    Locked { location: String, holder: String },

    #[error("the disk is full: could not {op} {path}: {source}\n  the repository is unchanged (the partial file was removed); free some space, then run the command again")]
    DiskFull {
        op: &'static str,
        path: String,
        source: io::Error,
    },

    #[error("repository storage error: could not {0}{hint}", hint = storage_hint(.0))]
    Backend(BackendError),

    #[error("{what} is damaged: {detail}\n  hint: run `backupctl check --read-data` to see everything it affects")]
    Damaged { what: String, detail: String },

    #[error("the snapshot's tree is deeper than {max} levels at {path}: no program writes a directory chain that deep (it could not be restored: Linux's paths end at 4,096 bytes), so the repository was written by a buggy or hostile writer; nothing was done below that level\n  hint: `backupctl check` names the snapshots that hold it; `backupctl forget` them")]
    TreeTooDeep {
        /// The limit, `repo::tree::MAX_TREE_DEPTH`.
        max: usize,
        /// The path where the limit was reached (its first 100 characters, then `...`).
        path: String,
    },

    #[error("the snapshot file snapshots/{id} is damaged: {detail}\n  hint: `backupctl forget {id}` removes it (the data it alone used goes at the next `backupctl prune`); `backupctl check` reports what else is damaged")]
    SnapshotDamaged { id: String, detail: String },

    /// Bad input from the user: the message says what and what to do.
    #[error("{0}")]
    Input(String),

    /// A source (a database, a locked file, a command, a hook) failed; `what` names it.
    #[error("{what}: {message}")]
    Source { what: String, message: String },

    #[error("could not {what}: {source}")]
    Io { what: String, source: io::Error },

    #[error("backupd is not running: nothing answers on its control socket {socket} ({detail})\n  hint: start it (`backupd`, or the service), point at its socket with --socket or --config, or run a job in the foreground with `backupctl run-job JOB --config FILE`")]
    NoDaemon { socket: String, detail: String },

    #[error("snapshot {snapshot} has no manifest: {path} is not in its tree, so it was made without one\n  hint: set `manifest = true` in the job (or run `backupctl backup --manifest`): the snapshots made from then on carry one")]
    NoManifest {
        /// The snapshot's short id.
        snapshot: String,
        /// Where the manifest would be (`repo::manifest::PATH`).
        path: &'static str,
    },

    #[error("interrupted: stopped at a safe point; the repository holds every snapshot committed before")]
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Error {
        if e.is_disk_full() {
            Error::DiskFull {
                op: e.op,
                path: e.path,
                source: e.source,
            }
        } else {
            Error::Backend(e)
        }
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoRepository { .. } => exit::NO_REPOSITORY,
            Error::WrongPassword { .. } => exit::WRONG_PASSWORD,
            Error::Locked { .. } => exit::LOCKED,
            Error::Damaged { .. }
            | Error::SnapshotDamaged { .. }
            | Error::KeyFilesDamaged { .. }
            | Error::TreeTooDeep { .. } => exit::DAMAGED,
            Error::Source { .. } => exit::SOURCE_FAILED,
            Error::Interrupted => exit::INTERRUPTED,
            Error::NoDaemon { .. } => exit::NO_DAEMON,
            Error::NoManifest { .. } => exit::NO_MANIFEST,
            Error::Backend(e) => match crate::repo::http::remote_class(e) {
                Some(RemoteClass::Denied) | Some(RemoteClass::AppendOnly) => exit::ACCESS_DENIED,
                Some(RemoteClass::Unreachable) | Some(RemoteClass::Tls) => exit::UNREACHABLE,
                Some(RemoteClass::NoContainer) => exit::NO_REPOSITORY,
                Some(RemoteClass::Quota) => exit::STORAGE_FULL,
                // Google Drive's storageQuotaExceeded (a local full disk is Error::DiskFull).
                None if e.source.kind() == io::ErrorKind::StorageFull => exit::STORAGE_FULL,
                _ => exit::FAILURE,
            },
            _ => exit::FAILURE,
        }
    }

    pub fn io(what: impl Into<String>, source: io::Error) -> Error {
        if crate::fsutil::is_disk_full(&source) {
            return Error::DiskFull {
                op: "write",
                path: what.into(),
                source,
            };
        }
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub fn damaged(what: impl Into<String>, detail: impl ToString) -> Error {
        Error::Damaged {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// What to do about a storage failure whose cause is plain from the OS error (or the remote
/// failure's class).
#[cfg(unix)]
fn storage_hint(e: &BackendError) -> &'static str {
    if crate::repo::http::remote_class(e) == Some(RemoteClass::Unreachable) {
        return UNREACHABLE_HINT;
    }
    match e.source.raw_os_error() {
        Some(libc::EROFS) => "\n  hint: the repository's file system is mounted read-only: remount it read-write (or point the job at a writable repository)",
        Some(libc::EACCES) | Some(libc::EPERM) => "\n  hint: the user backupd runs as may not write there: fix the owner or mode of the repository's folders",
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => "\n  hint: the repository's file system is full: free space (`backupctl forget ... --prune`) or move the repository",
        _ => "",
    }
}

#[cfg(not(unix))]
fn storage_hint(e: &BackendError) -> &'static str {
    if crate::repo::http::remote_class(e) == Some(RemoteClass::Unreachable) {
        return UNREACHABLE_HINT;
    }
    ""
}

const UNREACHABLE_HINT: &str = "\n  hint: the storage server could not be reached, or dropped the connection, on every attempt: check that it is running and reachable from here (host, port, network, firewall), or use another endpoint of the same cluster, then run the command again; a backup that failed this way committed no snapshot (the next backup adopts and reuses the packs it uploaded; `prune` removes those no snapshot needs)";

/// How many key file names an error lists.
const NAMES_SHOWN: usize = 5;

/// The clause of the wrong-password error naming the key files tried: those whose MAC failed
/// (wrong password, or damaged), then those damaged whatever the password.
fn describe_key_files(mac_failed: &[String], damaged: &[String]) -> String {
    let mut s = String::new();
    if !mac_failed.is_empty() {
        let shown: Vec<&str> = mac_failed
            .iter()
            .take(NAMES_SHOWN)
            .map(|n| n.as_str())
            .collect();
        let more = mac_failed.len().saturating_sub(NAMES_SHOWN);
        s.push_str(&format!(" (the MAC of {} does not match", shown.join(", ")));
        if more > 0 {
            s.push_str(&format!(" and of {more} more"));
        }
        s.push(')');
    }
    for d in damaged.iter().take(NAMES_SHOWN) {
        s.push_str(&format!("\n  also damaged: {d}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::http::RemoteError;

    fn backend(source: io::Error) -> Error {
        Error::from(BackendError {
            op: "upload",
            path: "s3:http://h:1/b (object data/ab/ab12)".into(),
            source,
        })
    }

    #[test]
    fn full_storage_and_unreachable_storage_have_their_exit_codes_and_hints() {
        // An S3 bucket quota or a REST server's 413/507 (RemoteClass::Quota): 16.
        let quota = RemoteError::new(RemoteClass::Quota, "quota is reached")
            .into_backend("upload", "s3:http://h:1/b (object data/ab/ab12)".into());
        assert_eq!(Error::from(quota).exit_code(), exit::STORAGE_FULL);
        // Google Drive's storageQuotaExceeded (an io::Error of kind StorageFull): 16.
        let drive = backend(io::Error::new(
            io::ErrorKind::StorageFull,
            "storageQuotaExceeded",
        ));
        assert_eq!(drive.exit_code(), exit::STORAGE_FULL);
        // A full local disk stays "the disk is full", exit 1.
        #[cfg(unix)]
        let disk = backend(io::Error::from_raw_os_error(libc::ENOSPC));
        #[cfg(unix)]
        {
            assert!(matches!(disk, Error::DiskFull { .. }));
            assert_eq!(disk.exit_code(), exit::FAILURE);
        }
        // Unreachable: 15, and the message says what to do.
        let gone = Error::from(
            RemoteError::new(
                RemoteClass::Unreachable,
                "connection refused (after 6 attempts)",
            )
            .into_backend("upload", "s3:http://h:1/b (object data/ab/ab12)".into()),
        );
        assert_eq!(gone.exit_code(), exit::UNREACHABLE);
        let text = gone.to_string();
        assert!(
            text.contains("s3:http://h:1/b")
                && text.contains("hint:")
                && text.contains("another endpoint"),
            "{text}"
        );
    }
}
