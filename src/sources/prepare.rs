//! Setting up a backup's consistent sources, one way for the jobs and `backupctl backup`: databases captured first (before the repository is locked), commands started last (after it), and a report of each.
//!
//! A database is copied while nothing is locked: waiting for a busy one (up to its deadline)
//! must not hold the repository's lock meanwhile. A command starts producing as soon as it runs,
//! so it starts only once the repository is open and locked, right before the backup reads it.

use super::command::{self, CommandSource};
use super::extra::ExtraFile;
use super::retry::Waiting;
use super::sqlite::{self, Captured, SqliteOptions};
use crate::cancel::CancelToken;
use crate::error::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// A database to capture.
#[derive(Debug, Clone)]
pub struct SqliteSpec {
    /// The database file, absolute: it is also the file's path in the snapshot.
    pub path: PathBuf,
    pub options: SqliteOptions,
}

/// The consistent sources of one backup, besides its paths.
#[derive(Debug, Clone, Default)]
pub struct SourceSpecs {
    pub sqlite: Vec<SqliteSpec>,
    pub commands: Vec<CommandSource>,
}

/// One consistent source of a run (a database copy or a command's output).
#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    /// `sqlite` or `command`.
    pub kind: &'static str,
    /// The path in the snapshot.
    pub path: PathBuf,
    /// The command line (commands only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Time spent waiting for a busy or locked source, in seconds.
    pub waited_seconds: f64,
    /// How many times it was found busy.
    pub waits: u32,
    /// The size of the copy (databases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Time spent copying, in seconds (databases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SourceReport {
    fn command(c: &CommandSource) -> SourceReport {
        SourceReport {
            kind: "command",
            path: c.snapshot_path.clone(),
            command: Some(c.shell.clone()),
            waited_seconds: 0.0,
            waits: 0,
            bytes: None,
            copy_seconds: None,
            error: None,
        }
    }
}

/// The databases of a backup, captured; its commands, not started yet. The staging copies are
/// removed when this is dropped, so it must live until the backup has read them.
#[derive(Debug)]
pub struct Prepared {
    databases: Vec<Captured>,
    commands: Vec<CommandSource>,
}

/// Captures every database of `specs`, in order, retrying each while it is busy (each wait is
/// passed to `on_wait`). One report per database is pushed onto `reports`, the failed one last
/// (with its error) when a capture fails; the copies made before it are removed then.
pub fn prepare(
    specs: &SourceSpecs,
    cancel: &CancelToken,
    on_wait: &mut dyn FnMut(&Waiting),
    reports: &mut Vec<SourceReport>,
) -> Result<Prepared> {
    let mut databases = Vec::new();
    for s in &specs.sqlite {
        let t = Instant::now();
        let mut waits = 0u32;
        let r = sqlite::capture(&s.path, &s.options, cancel, &mut |w| {
            waits += 1;
            on_wait(w);
        });
        let mut rep = SourceReport {
            kind: "sqlite",
            path: s.path.clone(),
            command: None,
            waited_seconds: t.elapsed().as_secs_f64(),
            waits,
            bytes: None,
            copy_seconds: None,
            error: None,
        };
        match r {
            Ok(c) => {
                rep.waited_seconds = c.waited.as_secs_f64();
                rep.bytes = Some(c.bytes);
                rep.copy_seconds = Some(c.copy_time.as_secs_f64());
                reports.push(rep);
                databases.push(c);
            }
            Err(e) => {
                rep.error = Some(e.to_string());
                reports.push(rep);
                return Err(e);
            }
        }
    }
    Ok(Prepared {
        databases,
        commands: specs.commands.clone(),
    })
}

impl Prepared {
    /// The databases captured, in the order of the specifications.
    pub fn databases(&self) -> &[Captured] {
        &self.databases
    }

    /// The files never stored as files of their own: each database's `-wal`, `-shm` and
    /// `-journal` (the copy holds their committed content).
    pub fn excludes(&self) -> Vec<PathBuf> {
        self.databases
            .iter()
            .flat_map(|c| sqlite::sibling_files(&c.original))
            .collect()
    }

    /// The database copies as the backup stores them (without the commands, which run once).
    pub fn database_extras(&self) -> Vec<ExtraFile> {
        self.databases.iter().map(Captured::extra).collect()
    }

    /// Starts the commands (call it with the repository locked) and returns what the backup
    /// stores besides its paths: the database copies, then the commands' outputs. One report per
    /// command is pushed onto `reports`; a command that cannot be started gets the error.
    pub fn start(
        &self,
        cancel: &CancelToken,
        reports: &mut Vec<SourceReport>,
    ) -> Result<Vec<ExtraFile>> {
        let mut extras = self.database_extras();
        for c in &self.commands {
            let mut rep = SourceReport::command(c);
            let started = command::start_with_cancel(c, cancel);
            if let Err(e) = &started {
                rep.error = Some(e.to_string());
            }
            reports.push(rep);
            extras.push(started?);
        }
        Ok(extras)
    }
}

/// Gives the error of a backup that failed because of a command (its output could not be read,
/// or it exited non-zero) to that command's report.
pub fn attribute_failure(reports: &mut [SourceReport], err: &Error) {
    let Error::Source { what, message } = err else {
        return;
    };
    for s in reports.iter_mut() {
        if s.kind == "command" && what.contains(&format!("(for {})", s.path.display())) {
            s.error = Some(message.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, name: &str) -> SqliteSpec {
        SqliteSpec {
            path: dir.join(name),
            options: SqliteOptions::default(),
        }
    }

    #[test]
    fn databases_are_captured_in_order_and_a_failure_is_reported_last() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(c);
        let cancel = CancelToken::new();
        let specs = SourceSpecs {
            sqlite: vec![spec(dir.path(), "a.db")],
            commands: vec![CommandSource {
                snapshot_path: PathBuf::from("/dumps/x.txt"),
                shell: "echo x".into(),
                timeout: None,
            }],
        };
        let mut reports = Vec::new();
        let p = prepare(&specs, &cancel, &mut |_| {}, &mut reports).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].kind, "sqlite");
        assert!(reports[0].bytes.unwrap() > 0 && reports[0].error.is_none());
        assert_eq!(p.databases().len(), 1);
        assert_eq!(p.excludes(), sqlite::sibling_files(&db));
        let staging = p.databases()[0].staging.clone();
        assert!(staging.exists());
        // Commands start only when asked, after the databases' copies in the extras.
        let extras = p.start(&cancel, &mut reports).unwrap();
        assert_eq!(extras.len(), 2);
        assert_eq!(extras[0].snapshot_path, db);
        assert_eq!(extras[1].snapshot_path, PathBuf::from("/dumps/x.txt"));
        assert_eq!(reports[1].kind, "command");
        assert_eq!(reports[1].command.as_deref(), Some("echo x"));
        drop(extras);
        drop(p);
        assert!(!staging.exists(), "the staging copy outlived the set-up");

        // A missing database fails the set-up; the one before it is reported, then removed.
        let specs = SourceSpecs {
            sqlite: vec![spec(dir.path(), "a.db"), spec(dir.path(), "missing.db")],
            commands: Vec::new(),
        };
        let mut reports = Vec::new();
        let e = prepare(&specs, &cancel, &mut |_| {}, &mut reports).unwrap_err();
        assert!(matches!(e, Error::Source { .. }), "{e}");
        assert_eq!(reports.len(), 2);
        assert!(reports[0].error.is_none());
        assert!(reports[1]
            .error
            .as_deref()
            .unwrap()
            .contains("does not exist"));
    }

    #[test]
    fn a_backup_failure_is_given_to_the_command_it_names() {
        let c = |p: &str| {
            SourceReport::command(&CommandSource {
                snapshot_path: PathBuf::from(p),
                shell: "true".into(),
                timeout: None,
            })
        };
        let mut reports = vec![c("/dumps/a.sql"), c("/dumps/b.sql")];
        let err = Error::Source {
            what: "the output of `pg_dump` (for /dumps/b.sql)".into(),
            message: "exit status 1".into(),
        };
        attribute_failure(&mut reports, &err);
        assert_eq!(reports[0].error, None);
        assert_eq!(reports[1].error.as_deref(), Some("exit status 1"));
        attribute_failure(&mut reports, &Error::Interrupted);
        assert_eq!(reports[0].error, None);
    }
}
