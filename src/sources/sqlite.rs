//! SQLite sources: a consistent copy through SQLite's online backup API, checked, retried while busy; and the integrity verdict of a database as a snapshot stores it.

use super::retry::{retry, RetryError, RetryPolicy, Waiting};
use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use crate::retry::Attempt;
use crate::sources::extra::{ExtraContent, ExtraFile};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
        // The check may have left SQLite's own files beside the copy.
        for f in sibling_files(&self.staging) {
            let _ = std::fs::remove_file(f);
        }
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
///
/// The copy is made with SQLite's online backup API in one step (`sqlite3_backup_step(-1)`):
/// in WAL mode writers go on meanwhile; in rollback mode they wait for the copy. A database that
/// is busy (a writer committing, `BEGIN EXCLUSIVE`, `PRAGMA locking_mode=EXCLUSIVE`) is retried
/// briefly at once, then with `opts.retry`'s backoff until its deadline.
pub fn capture(
    db: &Path,
    opts: &SqliteOptions,
    cancel: &CancelToken,
    on_wait: &mut dyn FnMut(&Waiting),
) -> Result<Captured> {
    let what = format!("SQLite database {}", db.display());
    let fail = |message: String| Error::Source {
        what: what.clone(),
        message,
    };
    match std::fs::metadata(db) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(fail(
                "is not a regular file\n  hint: --sqlite takes the path of a database file; back up folders as plain paths".into(),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(fail(
                "does not exist\n  hint: check the path given to --sqlite (and that the database's disk is mounted)".into(),
            ))
        }
        Err(e) => {
            return Err(fail(format!(
                "cannot be read: {e}\n  hint: run the backup as a user that may read and write the database and its folder"
            )))
        }
    }
    let staging_dir = opts.staging_dir.clone().unwrap_or_else(std::env::temp_dir);
    let (staging, file) = create_staging(&staging_dir, db)?;
    drop(file);
    // From here on the guard removes the staging file on every error path.
    let mut c = Captured {
        original: db.to_path_buf(),
        staging,
        bytes: 0,
        copy_time: Duration::ZERO,
        waited: Duration::ZERO,
        journal_mode: String::new(),
    };
    if cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    let start = Instant::now();
    let mut last_start = start;
    let r = retry(&opts.retry, &what, cancel, on_wait, || {
        last_start = Instant::now();
        attempt(db, &c.staging)
    });
    match r {
        Ok(mode) => c.journal_mode = mode,
        Err(RetryError::Failed(e)) => return Err(e),
        Err(RetryError::Cancelled(_)) => return Err(Error::Interrupted),
        Err(RetryError::Deadline {
            holder,
            waited,
            attempts,
            deadline,
            ..
        }) => {
            return Err(fail(format!(
                "was still busy after {:.1?} ({attempts} attempts, --sqlite-wait {:.0?}): {holder}\n  hint: find what keeps the database locked (a long transaction, `PRAGMA locking_mode=EXCLUSIVE`), let it finish, or give --sqlite-wait more time",
                waited, deadline
            )))
        }
    }
    c.copy_time = last_start.elapsed();
    c.waited = last_start - start;
    integrity(&c.staging, opts.check).map_err(&fail)?;
    c.bytes = std::fs::metadata(&c.staging)
        .map_err(|e| Error::io(format!("read the size of {}", c.staging.display()), e))?
        .len();
    Ok(c)
}

/// Creates a new, empty, private (0600) staging file for a copy of `db` in `dir`.
fn create_staging(dir: &Path, db: &Path) -> Result<(PathBuf, std::fs::File)> {
    let base = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".into());
    let mut last = None;
    for _ in 0..16 {
        let name = format!(
            ".backupd-sqlite-{}-{:016x}-{base}",
            std::process::id(),
            rand::random::<u64>()
        );
        let path = dir.join(name);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        match o.open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "create a staging file for SQLite database {} in {} (hint: the copy needs as much free space as the database; choose another folder with TMPDIR)",
                        db.display(),
                        dir.display()
                    ),
                    e,
                ))
            }
        }
    }
    Err(Error::io(
        format!("create a staging file in {}", dir.display()),
        last.unwrap_or_else(|| std::io::Error::other("name collisions")),
    ))
}

/// How many times, and how long apart, an attempt retries at once before it reports a busy
/// database: a writer's commit holds its lock for milliseconds.
const QUICK_TRIES: u32 = 50;
const QUICK_PAUSE: Duration = Duration::from_millis(5);

/// One attempt: opens the source, copies it in one backup step into `staging`. Returns the
/// source's journal mode.
fn attempt(db: &Path, staging: &Path) -> Attempt<String, Error, String> {
    let what = || format!("SQLite database {}", db.display());
    // Start from an empty file: an earlier attempt may have left a partial copy.
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .open(staging)
        .and_then(|f| f.set_len(0))
    {
        return Attempt::Fail(Error::io(
            format!(
                "empty the staging file {} for {}",
                staging.display(),
                what()
            ),
            e,
        ));
    }
    let r = (|| -> std::result::Result<String, rusqlite::Error> {
        let src = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        src.busy_timeout(Duration::ZERO)?;
        let mut mode = None;
        for i in 0..QUICK_TRIES {
            match src.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)) {
                Ok(m) => {
                    mode = Some(m);
                    break;
                }
                Err(e) if is_busy(&e) && i + 1 < QUICK_TRIES => std::thread::sleep(QUICK_PAUSE),
                Err(e) => return Err(e),
            }
        }
        let mode = mode.unwrap_or_default();
        let mut dst = Connection::open_with_flags(
            staging,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // A throw-away copy: no journal, no syncs (the backup engine reads it right after).
        dst.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")?;
        {
            let b = Backup::new(&src, &mut dst)?;
            let mut tries = 0;
            loop {
                match b.step(-1)? {
                    StepResult::Done => break,
                    StepResult::Busy | StepResult::Locked if tries + 1 < QUICK_TRIES => {
                        tries += 1;
                        std::thread::sleep(QUICK_PAUSE);
                    }
                    StepResult::Busy => {
                        return Err(sqlite_err(ErrorCode::DatabaseBusy, "database is locked"))
                    }
                    StepResult::Locked => {
                        return Err(sqlite_err(
                            ErrorCode::DatabaseLocked,
                            "database table is locked",
                        ))
                    }
                    // step(-1) copies every page, so More only means "go on".
                    _ => {}
                }
            }
        }
        dst.close().map_err(|(_, e)| e)?;
        src.close().map_err(|(_, e)| e)?;
        Ok(mode)
    })();
    // Both connections are closed here: only now may the file be opened to ask for the lock
    // holder (closing any descriptor of it would drop this process's POSIX locks).
    match r {
        Ok(mode) => Attempt::Done(mode),
        Err(e) if is_busy(&e) => Attempt::Retry(holder(db, &e)),
        Err(e) => Attempt::Fail(Error::Source {
            what: what(),
            message: describe(&e, staging),
        }),
    }
}

fn sqlite_err(code: ErrorCode, msg: &str) -> rusqlite::Error {
    let extended = match code {
        ErrorCode::DatabaseBusy => rusqlite::ffi::SQLITE_BUSY,
        _ => rusqlite::ffi::SQLITE_LOCKED,
    };
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(extended), Some(msg.into()))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Who holds a busy database, as far as the lock table tells.
fn holder(db: &Path, e: &rusqlite::Error) -> String {
    let found = crate::sources::locked::lock_holder(db).or_else(|| {
        // In WAL mode the readers' and writers' locks live in the -shm file.
        let mut shm = db.as_os_str().to_owned();
        shm.push("-shm");
        crate::sources::locked::lock_holder(Path::new(&shm))
    });
    match found {
        Some(h) => format!("locked by another process: {h} (SQLite: {e})"),
        None => format!(
            "locked by another connection (SQLite: {e}); no lock holder found in this system's lock table (it may be another host or container)"
        ),
    }
}

/// What went wrong with a database, with what to do.
fn describe(e: &rusqlite::Error, staging: &Path) -> String {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => format!(
            "is not a SQLite database (or is encrypted): {e}\n  hint: check the path given to --sqlite; back up other files as plain paths"
        ),
        Some(ErrorCode::DatabaseCorrupt) => format!(
            "is damaged: {e}\n  hint: repair it (`sqlite3 DB .recover`) or restore an earlier snapshot"
        ),
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) | Some(ErrorCode::ReadOnly) => format!(
            "cannot be opened for reading and writing: {e}\n  hint: the backup needs write access to the database and its folder (SQLite's WAL and journal files); run it as the database's owner"
        ),
        Some(ErrorCode::DiskFull) => format!(
            "could not be copied: {e}\n  hint: the copy needs as much free space as the database in {}; set TMPDIR to a folder with room",
            staging.parent().unwrap_or(Path::new("/")).display()
        ),
        _ => format!("could not be copied: {e}\n  hint: see SQLite's message; `sqlite3 DB 'PRAGMA integrity_check'` looks at the database"),
    }
}

/// The first bytes of an SQLite database file.
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// For a file stored as `blobs` (at `path` in a snapshot): when it is an SQLite database, why it
/// fails `PRAGMA integrity_check` once put together in a temporary file (`None`: it passes, or
/// it is no database).
pub fn stored_verdict(
    repo: &crate::repo::Repository,
    path: &str,
    blobs: &[crate::repo::id::Id],
) -> Result<Option<String>> {
    use crate::repo::pack::BlobType;
    use std::io::Write;
    let Some(first) = blobs.first() else {
        return Ok(None);
    };
    if !repo
        .load_blob(first, BlobType::Data)?
        .starts_with(SQLITE_MAGIC)
    {
        return Ok(None);
    }
    let io = |e| Error::io("write a temporary copy of the database to check it", e);
    let mut tmp = tempfile::NamedTempFile::new().map_err(io)?;
    for id in blobs {
        tmp.write_all(&repo.load_blob(id, BlobType::Data)?)
            .map_err(io)?;
    }
    tmp.flush().map_err(io)?;
    Ok(integrity(tmp.path(), IntegrityCheck::Full)
        .err()
        .map(|why| format!("the database {path} {why}")))
}

/// Runs the chosen check on a copy of a database; returns the failure's message.
pub(crate) fn integrity(staging: &Path, check: IntegrityCheck) -> std::result::Result<(), String> {
    let pragma = match check {
        IntegrityCheck::Off => return Ok(()),
        IntegrityCheck::Full => "integrity_check",
        IntegrityCheck::Quick => "quick_check",
    };
    let r = (|| -> std::result::Result<Vec<String>, rusqlite::Error> {
        let c = Connection::open_with_flags(
            staging,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let mut st = c.prepare(&format!("PRAGMA {pragma}(10)"))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        drop(st);
        c.close().map_err(|(_, e)| e)?;
        Ok(rows)
    })();
    let hint =
        "  hint: the copy is page for page, so the database itself is damaged: repair it (`sqlite3 DB .recover`) or restore an earlier snapshot; --sqlite-check off stores it unchecked";
    match r {
        Ok(rows) if rows.len() == 1 && rows[0] == "ok" => Ok(()),
        Ok(rows) => Err(format!(
            "fails PRAGMA {pragma}; first problems:\n    {}\n{hint}",
            rows.join("\n    ")
        )),
        Err(e) => Err(format!("fails PRAGMA {pragma}: {e}\n{hint}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn opts(staging: &Path) -> SqliteOptions {
        SqliteOptions {
            staging_dir: Some(staging.to_path_buf()),
            ..Default::default()
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn copies_into_a_private_staging_file_removed_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let staging = d.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let db = d.path().join("a.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3);",
        )
        .unwrap();
        // The rows are in the WAL while `c` is open: the copy must still hold them.
        let got = capture(&db, &opts(&staging), &CancelToken::new(), &mut |_| {}).unwrap();
        assert_eq!(got.journal_mode, "wal");
        assert_eq!(got.staging.parent().unwrap(), staging);
        let md = std::fs::metadata(&got.staging).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        assert_eq!(got.bytes, md.len());
        let copy = Connection::open(&got.staging).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
        drop(copy);
        assert_eq!(got.extra().snapshot_path, db);
        drop(got);
        assert_eq!(names(&staging), Vec::<String>::new());
        assert_eq!(sibling_files(&db)[0], d.path().join("a.db-wal"));
    }

    #[test]
    fn failures_leave_no_staging_file() {
        let d = tempfile::tempdir().unwrap();
        let staging = d.path().join("staging");
        std::fs::create_dir(&staging).unwrap();
        let notdb = d.path().join("x.db");
        std::fs::write(&notdb, vec![7u8; 10_000]).unwrap();
        for (db, says) in [
            (notdb.clone(), "is not a SQLite database"),
            (d.path().join("missing.db"), "does not exist"),
            (d.path().to_path_buf(), "is not a regular file"),
        ] {
            let e = capture(&db, &opts(&staging), &CancelToken::new(), &mut |_| {}).unwrap_err();
            match &e {
                Error::Source { what, message } => {
                    assert_eq!(what, &format!("SQLite database {}", db.display()));
                    assert!(
                        message.starts_with(says) && message.contains("hint:"),
                        "{e}"
                    );
                }
                _ => panic!("{e}"),
            }
            assert_eq!(names(&staging), Vec::<String>::new());
        }
    }
}
