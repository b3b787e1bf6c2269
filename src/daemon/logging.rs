//! The daemon's logging setup: a level filter, a text layer on stderr and a daily rolling log file (text or JSON lines).
//!
//! The files are named `backupd.YYYY-MM-DD.log` (the prefix and suffix of
//! `crate::logfiles`, which reads them for `backupctl logs`) and rotate at midnight UTC.
//! Both formats carry the fields of the current spans, so the `job` and `run_id` of a
//! `run` span appear on every line logged inside it: `run{job=app run_id=app-2026...}:`
//! in text, `"span"` and `"spans"` in JSON. (Record names with `%`, as in
//! `info_span!("run", job = %name)`: a plain `&str` field is written quoted in text,
//! `job="app"`, which `logfiles::LogFilter` matches too.)

use crate::logfiles::{FILE_PREFIX, FILE_SUFFIX};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use tracing::Subscriber;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variables that override [`LogSettings::level`], the first set one wins.
pub const LEVEL_ENV: [&str; 2] = ["BACKUPD_LOG", "RUST_LOG"];

/// How the daemon logs.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Directory of the daily log files; `None` logs to stderr only.
    pub dir: Option<PathBuf>,
    /// How many daily files to keep (older ones are removed at rotation); 0 keeps all.
    pub keep_days: usize,
    /// Log files as JSON lines instead of text (stderr is always text).
    pub json: bool,
    /// A level or filter directive such as `info` or `info,backupd::engine=debug`;
    /// `BACKUPD_LOG`, else `RUST_LOG`, overrides it.
    pub level: String,
    /// Also log to stderr (text; ANSI colours only on a terminal).
    pub stderr: bool,
}

/// Keeps the background writer of the log file alive: hold it until the daemon exits,
/// dropping it flushes the lines still queued.
#[must_use = "dropping the guard stops writing the log file"]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LogGuard").field(&self.0.is_some()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("could not create the log directory {dir}: {source}\n  hint: create it with write access for backupd, or set `log_dir` in the config to a directory backupd can write")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },

    #[error("could not open a log file in {dir}: {source}\n  hint: check that backupd may write there, or set `log_dir` in the config to another directory")]
    OpenFile {
        dir: PathBuf,
        source: tracing_appender::rolling::InitError,
    },

    #[error("bad log level {value:?} in {origin}: {source}\n  hint: use a level such as `info` or `debug`, or directives such as `info,backupd::engine=debug`")]
    Level {
        origin: String,
        value: String,
        source: tracing_subscriber::filter::ParseError,
    },

    #[error("logging is already set up in this process: {0}\n  hint: call daemon::logging::init once, at start-up")]
    AlreadySet(#[from] tracing_subscriber::util::TryInitError),
}

/// Sets up logging for the whole process, once. Keep the returned guard until exit.
pub fn init(s: &LogSettings) -> Result<LogGuard, LogError> {
    let filter = level_filter(&s.level, |name| std::env::var(name).ok())?;
    let stderr = s.stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .boxed()
    });
    let (file, guard) = match &s.dir {
        Some(dir) => {
            let appender = file_appender(dir, s.keep_days)?;
            // Lossless: under a burst the daemon waits for the writer rather than
            // dropping lines (the queue holds 128k lines before that happens).
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .lossy(false)
                .thread_name("backupd-log-writer")
                .finish(appender);
            (Some(file_layer(writer, s.json)), Some(guard))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init()?;
    Ok(LogGuard(guard))
}

/// The level filter: the first of [`LEVEL_ENV`] that `env` finds set and not empty, else
/// `level` (empty: `info`).
pub fn level_filter(
    level: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<EnvFilter, LogError> {
    let (origin, value) = LEVEL_ENV
        .iter()
        .find_map(|name| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (format!("the environment variable {name}"), v))
        })
        .unwrap_or_else(|| {
            let level = if level.trim().is_empty() {
                "info"
            } else {
                level
            };
            ("the config (log level)".to_string(), level.to_string())
        });
    EnvFilter::builder()
        .parse(&value)
        .map_err(|source| LogError::Level {
            origin,
            value,
            source,
        })
}

/// Creates `dir` if missing (mode 0750 on unix) and opens the daily rolling log file in it,
/// keeping `keep_days` files (0: all).
pub fn file_appender(dir: &Path, keep_days: usize) -> Result<RollingFileAppender, LogError> {
    create_dir(dir).map_err(|source| LogError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut builder = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(FILE_PREFIX)
        .filename_suffix(FILE_SUFFIX);
    if keep_days > 0 {
        builder = builder.max_log_files(keep_days);
    }
    builder.build(dir).map_err(|source| LogError::OpenFile {
        dir: dir.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o750);
    builder.create(dir)
}

/// The layer that writes log lines to `writer` (the log file): text without ANSI colours,
/// or one JSON object a line with the timestamp, level, fields, the current span and the
/// list of spans (so `job` and `run_id` of a `run` span appear).
pub fn file_layer<S, W>(writer: W, json: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    if json {
        layer
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed()
    } else {
        layer.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logfiles::{self, LogFilter};

    fn log_a_run<S: Subscriber + Send + Sync + 'static>(subscriber: S) {
        tracing::subscriber::with_default(subscriber, || {
            let (job, run_id) = ("app", "app-20260102-0300");
            let span = tracing::info_span!("run", job = %job, run_id = %run_id);
            let _entered = span.enter();
            tracing::info!(files = 3, "backup finished");
            tracing::debug!("filtered out");
        });
    }

    fn written(dir: &Path) -> String {
        let files = logfiles::log_files(dir).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        std::fs::read_to_string(&files[0]).unwrap()
    }

    #[test]
    fn text_lines_land_in_the_daily_file_with_span_fields() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log").join("backupd");
        let appender = file_appender(&dir, 7).unwrap();
        let filter = level_filter("info", |_| None).unwrap();
        log_a_run(
            tracing_subscriber::registry()
                .with(filter)
                .with(file_layer(appender, false)),
        );
        let text = written(&dir);
        assert!(
            text.contains("run{job=app run_id=app-20260102-0300}"),
            "{text}"
        );
        assert!(text.contains("backup finished files=3"), "{text}");
        assert!(!text.contains("filtered out"), "{text}");
        assert!(!text.contains('\x1b'), "no ANSI colours in files: {text}");
        let app = LogFilter {
            job: Some("app".into()),
            run_id: None,
        };
        assert!(text.lines().all(|l| app.matches(l)), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & !0o750, 0, "mode {mode:o}");
        }
    }

    #[test]
    fn json_lines_carry_the_span_fields() {
        let tmp = tempfile::tempdir().unwrap();
        let appender = file_appender(tmp.path(), 0).unwrap();
        let filter = level_filter("info", |_| None).unwrap();
        log_a_run(
            tracing_subscriber::registry()
                .with(filter)
                .with(file_layer(appender, true)),
        );
        let text = written(tmp.path());
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "backup finished");
        assert_eq!(line["fields"]["files"], 3);
        assert_eq!(line["span"]["job"], "app");
        assert_eq!(line["spans"][0]["run_id"], "app-20260102-0300");
        assert!(line["timestamp"].is_string());
        let filter = LogFilter {
            job: Some("app".into()),
            run_id: Some("app-20260102-0300".into()),
        };
        assert!(filter.matches(text.lines().next().unwrap()));
    }

    #[test]
    fn text_and_json_lines_read_back_as_the_same_record() {
        let read = |json: bool| {
            let tmp = tempfile::tempdir().unwrap();
            let appender = file_appender(tmp.path(), 0).unwrap();
            let filter = level_filter("info", |_| None).unwrap();
            log_a_run(
                tracing_subscriber::registry()
                    .with(filter)
                    .with(file_layer(appender, json)),
            );
            let text = written(tmp.path());
            let mut r = logfiles::record(text.lines().next().unwrap());
            assert!(r.timestamp.take().is_some(), "{text}");
            r
        };
        let text = read(false);
        assert_eq!(text, read(true));
        assert_eq!(text.job.as_deref(), Some("app"));
        assert_eq!(text.run_id.as_deref(), Some("app-20260102-0300"));
        assert_eq!(text.level.as_deref(), Some("INFO"));
        assert_eq!(text.message, "backup finished files=3");
    }

    #[test]
    fn the_environment_overrides_the_level() {
        let env = |name: &str| (name == "RUST_LOG").then(|| "debug".to_string());
        assert_eq!(level_filter("warn", env).unwrap().to_string(), "debug");
        let env = |name: &str| {
            Some(
                if name == "BACKUPD_LOG" {
                    "trace"
                } else {
                    "debug"
                }
                .to_string(),
            )
        };
        assert_eq!(level_filter("warn", env).unwrap().to_string(), "trace");
        let env = |_: &str| Some(" ".to_string());
        assert_eq!(level_filter("warn", env).unwrap().to_string(), "warn");
        let err = level_filter("info", |name| {
            (name == "BACKUPD_LOG").then(|| "=[".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("BACKUPD_LOG"), "{err}");
    }

    #[test]
    fn a_log_dir_that_cannot_be_created_names_it_and_the_setting() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let dir = file.join("log");
        let err = file_appender(&dir, 7).unwrap_err().to_string();
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("log_dir"), "{err}");
    }
}
