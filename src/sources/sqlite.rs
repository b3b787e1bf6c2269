//! SQLite sources: a consistent copy through SQLite's online backup API, checked, retried while busy.

use super::retry::{RetryPolicy, Waiting};
use crate::engine::backup::{ExtraContent, ExtraFile};
use crate::engine::CancelToken;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which check runs on the copy before it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IntegrityCheck {
    /// `PRAGMA integrity_check`.
    #[default]
    Full,
    /// `PRAGMA quick_check`.
    Quick,
    Off,
}

impl std::str::FromStr for IntegrityCheck {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "full" => Ok(IntegrityCheck::Full),
            "quick" => Ok(IntegrityCheck::Quick),
            "off" => Ok(IntegrityCheck::Off),
            _ => Err(format!(
                "invalid integrity check {s:?}: use full, quick or off"
            )),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SqliteOptions {
    pub check: IntegrityCheck,
    /// Retrying while the database is busy or locked.
    pub retry: RetryPolicy,
    /// Where the copy is made (default: the system's temp folder).
    pub staging_dir: Option<PathBuf>,
}

/// A consistent copy of a database, waiting to be stored under the original's path. The staging
/// file is removed when this is dropped.
#[derive(Debug)]
pub struct Captured {
    pub original: PathBuf,
    pub staging: PathBuf,
    pub bytes: u64,
    /// Time spent copying (the successful attempt).
    pub copy_time: Duration,
    /// Time spent waiting for a busy or locked database.
    pub waited: Duration,
    pub journal_mode: String,
}

impl Captured {
    /// The copy as an extra file of a backup, stored under the original path with the
    /// original's metadata.
    pub fn extra(&self) -> ExtraFile {
        ExtraFile {
            snapshot_path: self.original.clone(),
            content: ExtraContent::File {
                path: self.staging.clone(),
                meta_from: Some(self.original.clone()),
            },
            describe: format!("SQLite database {}", self.original.display()),
            required: true,
        }
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.staging);
    }
}

/// The files SQLite keeps beside a database (`-wal`, `-shm`, `-journal`): never stored as files
/// of their own, since the copy holds their committed content.
pub fn sibling_files(db: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| {
            let mut p = db.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        })
        .collect()
}

/// Copies the database at `db` consistently into a staging file, retrying while it is busy or
/// locked (reporting each wait through `on_wait`), then checks the copy.
pub fn capture(
    db: &Path,
    opts: &SqliteOptions,
    cancel: &CancelToken,
    on_wait: &mut dyn FnMut(&Waiting),
) -> Result<Captured> {
    let _ = (opts, cancel, on_wait);
    Err(Error::Source {
        what: format!("SQLite database {}", db.display()),
        message: "SQLite sources are not implemented yet".into(),
    })
}
