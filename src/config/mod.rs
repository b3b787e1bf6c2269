//! The configuration file (TOML): repositories and backup jobs; every value range-checked, every error naming the file, line and column.
//!
//! ```toml
//! [repositories.main]
//! path = "/srv/backup/repo"
//! password_file = "/etc/backupd/password"   # or password_command = "..."
//!
//! [jobs.app]
//! repository = "main"
//! paths = ["/srv/app/uploads"]
//! exclude = ["*.tmp"]
//! tags = ["app"]
//! allow_partial = false
//! sqlite = [{ path = "/srv/app/app.db", check = "quick", wait = "10m" }]
//! commands = [{ path = "/dumps/app.sql", run = "pg_dump app", timeout = "1h" }]
//! locked_files = { action = "fail", wait = "10m" }
//!
//! [jobs.app.hooks]
//! before = ["systemctl stop app-worker"]
//! always = ["systemctl start app-worker"]
//! timeout = "5m"
//! ```
//!
//! Every table rejects unknown keys. New tables (the daemon's `[daemon]`, schedules) are added
//! as new optional fields of these structs.

pub mod destinations;
pub mod health;
pub mod notify;
pub mod presence;
pub mod secrets;
pub mod verify;

use crate::error::{Error, Result};
use crate::schedule::{CatchUp, Schedule};
use crate::sources::hooks::{Hooks, DEFAULT_HOOK_TIMEOUT};
use crate::sources::locked::LockedAction;
use crate::sources::sqlite::IntegrityCheck;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A parsed configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub repositories: BTreeMap<String, RepositoryConfig>,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobConfig>,
    /// The daemon's own settings (state, logs, socket, parallelism).
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The file it was read from (for messages).
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// The repository's location: a directory, or `s3:…`, `rest:…` (see `repo::location`).
    pub path: crate::repo::location::LocationText,
    /// S3 access key id (else `AWS_ACCESS_KEY_ID` from the environment).
    pub s3_access_key_id: Option<String>,
    /// S3 secret key from the first line of this file (else `AWS_SECRET_ACCESS_KEY`)...
    pub s3_secret_access_key_file: Option<PathBuf>,
    /// ...or from the first line of this shell command's output.
    pub s3_secret_access_key_command: Option<String>,
    /// The S3 region to sign for (else `AWS_DEFAULT_REGION`, else us-east-1).
    pub s3_region: Option<String>,
    /// For `sftp:` locations, the command that starts the SFTP session (restic's
    /// `sftp.command`; else `BACKUPD_SFTP_COMMAND`, else `ssh [-p PORT] [-l USER] HOST -s sftp`).
    pub sftp_command: Option<String>,
    /// For `sftp:` locations: how long the ssh + SFTP handshake may take, and a session may go
    /// without answering, before it counts as failed (else `BACKUPD_SFTP_TIMEOUT`, else 60s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub sftp_timeout: Option<Duration>,
    /// For `s3:https://` and `rest:https://`: a PEM file of CA certificates trusted besides
    /// Mozilla's roots (a private CA; else `BACKUPD_CACERT`).
    pub cacert: Option<PathBuf>,
    /// For `s3:` locations: "auto" (virtual-hosted for *.amazonaws.com, else path-style),
    /// "path" or "virtual" (else `BACKUPD_S3_ADDRESSING`, else auto).
    pub s3_addressing: Option<crate::repo::s3::Addressing>,
    /// Read the password from the first line of this file...
    pub password_file: Option<PathBuf>,
    /// ...or from the first line of this shell command's output.
    pub password_command: Option<String>,
    /// How long to wait for a locked repository (e.g. "5m").
    #[serde(default, deserialize_with = "duration")]
    pub lock_wait: Duration,
    /// Verification drills the daemon runs on this repository (src/verify.rs).
    #[serde(default)]
    pub verify: Option<verify::VerifyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The name of a `[repositories.NAME]` table (with `repositories`: the first of them).
    #[serde(default = "destinations::unset")]
    pub repository: toml::Spanned<String>,
    /// Several destinations instead of `repository`: the run backs up into the first and the
    /// daemon then copies the new snapshot to each other one (a job `NAME@REPO` of its own).
    pub repositories: Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
    /// What differs per destination after the first (`[jobs.NAME.destinations.REPO]`).
    #[serde(default)]
    pub destinations: BTreeMap<toml::Spanned<String>, destinations::DestinationConfig>,
    /// Set on a destination job (`NAME@REPO`, made by [`Config::parse`]): it copies its job's
    /// snapshots instead of backing up.
    #[serde(skip)]
    pub destination_of: Option<destinations::DestinationOf>,
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Glob patterns to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Skip folders that contain a valid CACHEDIR.TAG.
    #[serde(default)]
    pub exclude_caches: bool,
    /// `FILE` or `FILE:HEADER`: folders holding FILE (starting with HEADER) have their
    /// contents left out, FILE itself kept (restic's `--exclude-if-present`).
    #[serde(default)]
    pub exclude_if_present: Vec<String>,
    /// Regular files larger than this are left out: bytes or a size such as "100M".
    #[serde(default, deserialize_with = "health::de_opt_size")]
    pub exclude_larger_than: Option<u64>,
    /// Do not cross file-system boundaries.
    #[serde(default)]
    pub one_file_system: bool,
    /// Store a `SHA256SUMS` manifest of every file at `/.backupd/SHA256SUMS` in each snapshot
    /// (docs/restore.md: checking a restore with `sha256sum -c`).
    #[serde(default)]
    pub manifest: bool,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The host name recorded in the snapshots (this host's by default).
    pub host: Option<String>,
    /// A partial snapshot (files that could not be read, or were read while locked) counts as
    /// a success (after_success hooks run) when true; otherwise the run fails (after_failure
    /// hooks run). The snapshot is kept either way.
    #[serde(default)]
    pub allow_partial: bool,
    #[serde(default)]
    pub sqlite: Vec<SqliteSource>,
    #[serde(default)]
    pub commands: Vec<CommandConfig>,
    #[serde(default)]
    pub locked_files: LockedFilesConfig,
    /// Backoff while a database or a locked file is busy (each source's `wait` is its deadline).
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub hooks: HooksConfig,
    /// The most a run may read (its files, by the backup's excludes, and its database copies;
    /// command output is not counted): a number of bytes or a size such as "500M".
    #[serde(default, deserialize_with = "health::de_opt_size")]
    pub max_source_size: Option<u64>,
    /// The most new data a run may add (before compression; command output is not counted),
    /// found by a dry run of the backup before anything is written.
    #[serde(default, deserialize_with = "health::de_opt_size")]
    pub max_added_size: Option<u64>,
    /// Over `max_source_size` or `max_added_size`: "fail" (the default: the run fails before
    /// writing anything) or "warn" (a warning, and the backup runs).
    #[serde(default)]
    pub on_size_limit: SizeLimitPolicy,
    /// What the run reads back from the storage after its backup, before it is a success:
    /// "off" (default), "new-data" (every pack it wrote) or "sample=N%".
    #[serde(default, deserialize_with = "verify_after")]
    pub verify_after: crate::engine::check::VerifyAfter,
    /// When the daemon runs it: a cron expression (5 fields, optional seconds first, or
    /// @hourly/@daily/@weekly/@monthly). None: only when asked (`backupctl run JOB`).
    pub schedule: Option<toml::Spanned<String>>,
    /// The IANA time zone the schedule is read in (default: the local zone).
    pub timezone: Option<toml::Spanned<String>>,
    /// `schedule` read in `timezone`, parsed once when the file is checked ([`Config::parse`]);
    /// None: only when asked.
    #[serde(skip)]
    pub parsed_schedule: Option<Schedule>,
    /// What to do about slots missed while the daemon was stopped: "once" (one run now),
    /// "skip", or "within 6h" (once, only if the newest missed slot is that recent).
    #[serde(default, deserialize_with = "catch_up")]
    pub catch_up: CatchUp,
    /// Wait this long after the daemon starts before a catch-up run.
    #[serde(default, deserialize_with = "duration")]
    pub startup_delay: Duration,
    /// Start each scheduled run up to this much later (a stable per-slot delay).
    #[serde(default, deserialize_with = "jitter")]
    pub jitter: Duration,
    /// How a failed run is retried.
    #[serde(default)]
    pub retries: RunRetryConfig,
    /// Which of the job's snapshots to keep after each successful run (the rest are forgotten,
    /// and with `prune = true` their data deleted).
    pub retention: Option<RetentionConfig>,
    /// When the job counts as warning or error (overdue slots, failures, partial snapshots).
    #[serde(default)]
    pub health: health::HealthConfig,
    /// Where its events go (webhooks, email, a command); default: the `[daemon.notify]` table.
    pub notify: Option<notify::NotifyConfig>,
}

/// Retention applied after each successful run to the job's own snapshots (tag `job:NAME`),
/// grouped by host and paths, with restic's `forget` rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot this close to the newest (e.g. "7d", "1y6m").
    #[serde(default, deserialize_with = "keep_within")]
    pub keep_within: Option<crate::engine::forget::KeepWithin>,
    /// Keep snapshots with these tags.
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// Also delete the data no snapshot needs any more (prune) after forgetting.
    #[serde(default)]
    pub prune: bool,
}

impl RetentionConfig {
    pub fn policy(&self) -> crate::engine::forget::KeepPolicy {
        crate::engine::forget::KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tags.clone(),
        }
    }
}

fn keep_within<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<crate::engine::forget::KeepWithin>, D::Error> {
    let s = String::deserialize(d)?;
    crate::engine::forget::KeepWithin::parse(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// How the daemon retries a failed run: `attempts` more runs, `delay` after the failure,
/// growing by `factor` up to `max_delay`. The next regular slot is never given up for a retry.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRetryConfig {
    #[serde(default = "two_u32")]
    pub attempts: u32,
    #[serde(default = "five_minutes", deserialize_with = "duration")]
    pub delay: Duration,
    #[serde(default = "two")]
    pub factor: f64,
    #[serde(default = "one_hour", deserialize_with = "duration")]
    pub max_delay: Duration,
}

impl Default for RunRetryConfig {
    fn default() -> Self {
        RunRetryConfig {
            attempts: two_u32(),
            delay: five_minutes(),
            factor: two(),
            max_delay: one_hour(),
        }
    }
}

impl RunRetryConfig {
    pub fn policy(&self) -> crate::schedule::RetryPolicy {
        crate::schedule::RetryPolicy {
            attempts: self.attempts,
            delay: self.delay,
            factor: self.factor,
            max_delay: self.max_delay,
        }
    }
}

/// The daemon's settings (`[daemon]`); every path has a per-OS default (see `crate::paths`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Where the per-job schedule state and run history live.
    pub state_dir: Option<PathBuf>,
    /// Where the daemon's log files go (one per day).
    pub log_dir: Option<PathBuf>,
    /// How many daily log files to keep.
    #[serde(default = "fourteen")]
    pub log_keep_days: usize,
    /// "text" or "json" (one JSON object per line).
    #[serde(default)]
    pub log_format: LogFormat,
    /// The least severe level logged: error, warn, info, debug, trace.
    #[serde(default = "info", deserialize_with = "log_level")]
    pub log_level: String,
    /// The control socket `backupctl` talks to.
    pub socket: Option<PathBuf>,
    /// A group whose members may use the socket too (mode 0660 instead of 0600).
    #[serde(default, deserialize_with = "socket_group")]
    pub socket_group: Option<String>,
    /// How many jobs may run at once (jobs on one repository always run one at a time), 1 to
    /// [`MAX_PARALLEL`].
    #[serde(default = "two_usize", deserialize_with = "max_parallel")]
    pub max_parallel: usize,
    /// How many runs each job's history keeps.
    #[serde(default = "hundred")]
    pub history_keep: usize,
    /// A Prometheus text file (for node_exporter's textfile collector, name ending in .prom),
    /// rewritten atomically after every run.
    pub metrics_file: Option<PathBuf>,
    /// Serve the same metrics over HTTP at `http://ADDR/metrics`; a loopback address only
    /// (e.g. "127.0.0.1:9909"). Read at start-up.
    pub metrics_listen: Option<toml::Spanned<String>>,
    /// `metrics_listen` parsed, a loopback address, when the file is checked ([`Config::parse`]).
    #[serde(skip)]
    pub metrics_addr: Option<SocketAddr>,
    /// Notifications for every job without a `notify` table of its own.
    pub notify: Option<notify::NotifyConfig>,
    /// On SIGTERM, how long running jobs get to stop at a safe point before the daemon exits.
    #[serde(default = "thirty_seconds", deserialize_with = "duration")]
    pub shutdown_timeout: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            state_dir: None,
            log_dir: None,
            log_keep_days: fourteen(),
            log_format: LogFormat::Text,
            log_level: info(),
            socket: None,
            socket_group: None,
            max_parallel: two_usize(),
            history_keep: hundred(),
            metrics_file: None,
            metrics_listen: None,
            metrics_addr: None,
            notify: None,
            shutdown_timeout: thirty_seconds(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn two_u32() -> u32 {
    2
}
fn two_usize() -> usize {
    2
}
fn fourteen() -> usize {
    14
}
fn hundred() -> usize {
    100
}
fn info() -> String {
    "info".into()
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn one_hour() -> Duration {
    Duration::from_secs(3600)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

fn catch_up<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<CatchUp, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// How busy sources are retried: the first wait, the factor between waits, the longest wait.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(default = "one_second", deserialize_with = "duration")]
    pub initial_delay: Duration,
    #[serde(default = "two")]
    pub factor: f64,
    #[serde(default = "one_minute", deserialize_with = "duration")]
    pub max_delay: Duration,
}

fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn one_minute() -> Duration {
    Duration::from_secs(60)
}
fn two() -> f64 {
    2.0
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_delay: one_second(),
            factor: two(),
            max_delay: one_minute(),
        }
    }
}

impl RetryConfig {
    /// The retry policy of a source whose deadline is `wait`.
    pub fn policy(&self, wait: Duration) -> crate::sources::retry::RetryPolicy {
        crate::sources::retry::RetryPolicy {
            initial_delay: self.initial_delay,
            factor: self.factor,
            max_delay: self.max_delay,
            deadline: wait,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSource {
    pub path: PathBuf,
    /// full, quick or off.
    #[serde(default)]
    pub check: IntegrityCheck,
    /// How long to retry a busy or locked database.
    #[serde(default = "ten_minutes", deserialize_with = "duration")]
    pub wait: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The file's absolute path in the snapshot.
    pub path: PathBuf,
    /// The shell command whose standard output is stored.
    pub run: String,
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedFilesConfig {
    /// fail, skip or read-anyway.
    #[serde(default = "read_anyway")]
    pub action: LockedAction,
    /// How long to wait, in all, for locked files to be released.
    #[serde(default, deserialize_with = "duration")]
    pub wait: Duration,
}

impl Default for LockedFilesConfig {
    fn default() -> Self {
        LockedFilesConfig {
            action: LockedAction::ReadAnyway,
            wait: Duration::ZERO,
        }
    }
}

/// What a run over its size limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeLimitPolicy {
    #[default]
    Fail,
    Warn,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    #[serde(default)]
    pub before: Vec<String>,
    #[serde(default)]
    pub after_success: Vec<String>,
    #[serde(default)]
    pub after_failure: Vec<String>,
    #[serde(default)]
    pub always: Vec<String>,
    #[serde(default = "hook_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Give the hooks the location with its password in `BACKUPD_REPOSITORY` (a REST
    /// server's `user:pass@`); by default they get it as status shows it, with `***`.
    #[serde(default)]
    pub pass_repository_credentials: bool,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            before: Vec::new(),
            after_success: Vec::new(),
            after_failure: Vec::new(),
            always: Vec::new(),
            timeout: DEFAULT_HOOK_TIMEOUT,
            pass_repository_credentials: false,
        }
    }
}

impl HooksConfig {
    pub fn hooks(&self) -> Hooks {
        Hooks {
            before: self.before.clone(),
            after_success: self.after_success.clone(),
            after_failure: self.after_failure.clone(),
            always: self.always.clone(),
            timeout: self.timeout,
        }
    }
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}
fn hook_timeout() -> Duration {
    DEFAULT_HOOK_TIMEOUT
}
fn read_anyway() -> LockedAction {
    LockedAction::ReadAnyway
}

/// A duration written as a string: "30s", "5m", "1h", "1h30m".
fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    crate::duration::parse_duration(&s).map_err(serde::de::Error::custom)
}

fn verify_after<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<crate::engine::check::VerifyAfter, D::Error> {
    let s = String::deserialize(d)?;
    crate::engine::check::VerifyAfter::parse(&s).map_err(serde::de::Error::custom)
}

/// The longest `jitter`: a day (a later start than that is another slot's business).
pub const MAX_JITTER: Duration = Duration::from_secs(86_400);

/// The most jobs `max_parallel` lets run at once.
pub const MAX_PARALLEL: usize = 1024;

/// `jitter`: a duration of at most [`MAX_JITTER`].
fn jitter<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let j = duration(d)?;
    if j > MAX_JITTER {
        return Err(serde::de::Error::custom(format!(
            "jitter {} is too long: at most 1d (a stable delay of each run within a day)",
            crate::process::human_duration(j)
        )));
    }
    Ok(j)
}

/// `max_parallel`: 1 to [`MAX_PARALLEL`].
fn max_parallel<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    let n = i64::deserialize(d)?;
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_PARALLEL).contains(&n) => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "max_parallel {n} is out of range: 1 to 1024 jobs at once"
        ))),
    }
}

/// `log_level`: a filter the daemon's logging parses (`info`, `warn,backupd=debug`); empty
/// is `info`.
fn log_level<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if !s.trim().is_empty() {
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&s) {
            return Err(serde::de::Error::custom(format!(
                "log_level {s:?} is not a log filter ({e})\n  hint: error, warn, info, debug or trace, optionally with per-module levels such as \"info,backupd=debug\""
            )));
        }
    }
    Ok(s)
}

/// `socket_group`: a group that exists here (on unix; the daemon gives it the socket).
fn socket_group<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let g = String::deserialize(d)?;
    #[cfg(unix)]
    if crate::sysinfo::group_id(&g).is_none() {
        return Err(serde::de::Error::custom(format!(
            "socket_group {g:?} does not exist on this system\n  hint: create it (groupadd {g}) or fix socket_group"
        )));
    }
    Ok(Some(g))
}

fn opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The text of a configuration file and its name: where an error is.
struct Source<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Source<'_> {
    /// `FILE:LINE:COLUMN` of a byte offset.
    fn at(&self, offset: usize) -> String {
        let (l, c) = line_col(self.text, offset);
        format!("{}:{l}:{c}", self.file.display())
    }

    /// An error of the file as a whole.
    fn invalid(&self, msg: impl std::fmt::Display) -> Error {
        Error::Input(format!(
            "invalid configuration in {}: {msg}",
            self.file.display()
        ))
    }

    /// Where the table `[NAME]` starts (its header), or the file's start.
    fn table_start(&self, name: &str) -> usize {
        self.text.find(&format!("[{name}]")).unwrap_or(0)
    }

    /// An error at a place in the file.
    fn invalid_at(&self, offset: usize, msg: impl std::fmt::Display) -> Error {
        Error::Input(format!(
            "invalid configuration at {}: {msg}",
            self.at(offset)
        ))
    }
}

/// A `[repositories.NAME]` table: a location that parses, at most one S3 secret source, exactly
/// one password source.
fn check_repository(src: &Source, name: &str, r: &RepositoryConfig) -> Result<()> {
    if let Err(e) = crate::repo::location::Location::parse(r.path.expose()) {
        return Err(src.invalid(format!("[repositories.{name}] path: {e}")));
    }
    if r.s3_secret_access_key_file.is_some() && r.s3_secret_access_key_command.is_some() {
        return Err(src.invalid(format!(
            "[repositories.{name}] takes at most one of s3_secret_access_key_file and s3_secret_access_key_command"
        )));
    }
    if r.password_file.is_some() == r.password_command.is_some() {
        return Err(src.invalid(format!(
            "[repositories.{name}] needs exactly one of password_file and password_command"
        )));
    }
    Ok(())
}

/// `[daemon] metrics_listen`: an address and port, on loopback only.
fn check_metrics_listen(src: &Source, l: &toml::Spanned<String>) -> Result<SocketAddr> {
    match l.get_ref().parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Ok(a),
        Ok(a) => Err(src.invalid_at(l.span().start, format!(
            "[daemon] metrics_listen {a} is not a loopback address: the metrics endpoint has no authentication, so it listens on loopback only\n  hint: use 127.0.0.1:PORT or [::1]:PORT, and a reverse proxy (or node_exporter's textfile collector with metrics_file) to publish it"
        ))),
        Err(e) => Err(src.invalid_at(l.span().start, format!(
            "[daemon] metrics_listen {:?}: {e}\n  hint: an address and port such as \"127.0.0.1:9909\"",
            l.get_ref()
        ))),
    }
}

/// The `[daemon]` table: metrics on loopback only, a `.prom` metrics file, its notifications.
/// (The ranges of its values are checked as they are read, at their line.) Gives the metrics address, parsed.
fn check_daemon(src: &Source, d: &DaemonConfig) -> Result<Option<SocketAddr>> {
    let metrics_addr = d
        .metrics_listen
        .as_ref()
        .map(|l| check_metrics_listen(src, l))
        .transpose()?;
    if let Some(m) = &d.metrics_file {
        if m.extension().is_none_or(|e| e != "prom") {
            return Err(src.invalid(format!(
                "[daemon] metrics_file {} must end in .prom (node_exporter's textfile collector reads only those)",
                m.display()
            )));
        }
    }
    if let Some(n) = &d.notify {
        n.validate("daemon.notify").map_err(|e| src.invalid(e))?;
    }
    Ok(metrics_addr)
}

/// A repository's `verify` table: schedules that parse in its zone (given, parsed), files for
/// a restore drill.
fn check_verify(
    src: &Source,
    name: &str,
    v: &verify::VerifyConfig,
) -> Result<Vec<(verify::DrillKind, Schedule)>> {
    let tz = v.timezone.as_ref().map(|t| t.get_ref().as_str());
    let mut schedules = Vec::new();
    for kind in verify::DrillKind::ALL {
        let Some(expr) = v.expr(kind) else { continue };
        match Schedule::parse(expr.get_ref(), tz) {
            Ok(s) => schedules.push((kind, s)),
            Err(e) => {
                let span = match (&v.timezone, e.is_timezone()) {
                    (Some(t), true) => t.span(),
                    _ => expr.span(),
                };
                return Err(src.invalid_at(
                    span.start,
                    format!("repositories.{name}.verify.{}: {e}", kind.key()),
                ));
            }
        }
    }
    if v.restore_drill.is_some() && v.restore_drill_files == 0 {
        return Err(src.invalid(format!(
            "repositories.{name}.verify: restore_drill_files must be at least 1\n  hint: e.g. restore_drill_files = 10, or remove restore_drill"
        )));
    }
    Ok(schedules)
}

/// Whether a job name may name a state file: letters, digits, '-', '_' and '.', not first.
fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A `[jobs.NAME]` table: its name, its repository, something to back up, its schedule and
/// zone, notifications, a retention that keeps something, absolute command paths. Gives its
/// schedule, parsed.
fn check_job(
    src: &Source,
    repositories: &BTreeMap<String, RepositoryConfig>,
    name: &str,
    j: &JobConfig,
) -> Result<Option<Schedule>> {
    if !valid_job_name(name) {
        return Err(src.invalid_at(j.repository.span().start, format!(
            "the job name {name:?} may only use letters, digits, '-', '_' and '.' (it names the job's state file)\n  hint: rename the [jobs.{name}] table"
        )));
    }
    check_repository_name(src, repositories, name, &j.repository)?;
    if j.paths.is_empty() && j.sqlite.is_empty() && j.commands.is_empty() {
        return Err(src.invalid(format!(
            "job {name:?} has nothing to back up\n  hint: give it paths, sqlite or commands"
        )));
    }
    let rules = crate::engine::exclude::ExcludeOptions {
        if_present: j.exclude_if_present.clone(),
        ..Default::default()
    };
    if let Err(e) = crate::engine::exclude::Excluder::new(&rules) {
        return Err(src.invalid_at(
            src.table_start(&format!("jobs.{name}")),
            format!("job {name:?}: {e}"),
        ));
    }
    let schedule = check_job_schedule(src, name, j)?;
    if let Some(n) = &j.notify {
        n.validate(&format!("jobs.{name}.notify"))
            .map_err(|e| src.invalid(e))?;
    }
    if let Some(r) = &j.retention {
        if r.policy().is_empty() {
            return Err(src.invalid(format!(
                "job {name:?}: retention keeps nothing — it needs at least one keep_* rule (a retention that removes every snapshot is refused)\n  hint: e.g. retention = {{ keep_daily = 7, keep_weekly = 4 }}"
            )));
        }
    }
    if let Some(c) = j.commands.iter().find(|c| !c.path.is_absolute()) {
        return Err(src.invalid(format!(
            "job {name:?}: the command path {} must be absolute, e.g. /dumps/app.sql",
            c.path.display()
        )));
    }
    Ok(schedule)
}

/// The repository a job names is defined.
fn check_repository_name(
    src: &Source,
    repositories: &BTreeMap<String, RepositoryConfig>,
    name: &str,
    r: &toml::Spanned<String>,
) -> Result<()> {
    if repositories.contains_key(r.get_ref()) {
        return Ok(());
    }
    let known: Vec<&str> = repositories.keys().map(|s| s.as_str()).collect();
    Err(src.invalid_at(r.span().start, format!(
        "job {name:?} names the repository {:?}, which is not defined (defined: {})\n  hint: add a [repositories.{}] table or fix the name",
        r.get_ref(),
        if known.is_empty() { "none".to_string() } else { known.join(", ") },
        r.get_ref()
    )))
}

/// A job's schedule parses in its zone (and is given, parsed); a zone needs a schedule.
fn check_job_schedule(src: &Source, name: &str, j: &JobConfig) -> Result<Option<Schedule>> {
    let Some(expr) = &j.schedule else {
        return match &j.timezone {
            Some(t) => Err(src.invalid_at(t.span().start, format!(
                "job {name:?} has a timezone but no schedule\n  hint: add schedule = \"30 2 * * *\" or remove the timezone"
            ))),
            None => Ok(None),
        };
    };
    let tz = j.timezone.as_ref().map(|t| t.get_ref().as_str());
    Schedule::parse(expr.get_ref(), tz).map(Some).map_err(|e| {
        let span = match (&j.timezone, e.is_timezone()) {
            (Some(t), true) => t.span(),
            _ => expr.span(),
        };
        src.invalid_at(span.start, format!("job {name:?}: {e}"))
    })
}

impl Config {
    /// The state folder, log folder and control socket this configuration resolves to.
    pub fn paths(&self) -> crate::paths::DaemonPaths {
        let d = &self.daemon;
        crate::paths::DaemonPaths::resolve(
            d.state_dir.as_deref(),
            d.log_dir.as_deref(),
            d.socket.as_deref(),
        )
    }

    /// Reads and checks a configuration file.
    pub fn load(file: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            Error::Input(format!(
                "cannot read the configuration file {}: {e}\n  hint: check --config",
                file.display()
            ))
        })?;
        Config::parse(&text, file)
    }

    /// Parses and checks configuration text; `file` names it in messages.
    pub fn parse(text: &str, file: &Path) -> Result<Config> {
        let src = Source { text, file };
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let place = match e.span() {
                Some(s) => src.at(s.start),
                None => file.display().to_string(),
            };
            Error::Input(format!(
                "invalid configuration at {place}: {}\n  hint: see the example in the documentation of the configuration file",
                e.message().trim_end()
            ))
        })?;
        cfg.file = file.to_path_buf();
        for (name, r) in &cfg.repositories {
            check_repository(&src, name, r)?;
        }
        cfg.daemon.metrics_addr = check_daemon(&src, &cfg.daemon)?;
        for (name, r) in cfg.repositories.iter_mut() {
            if let Some(v) = r.verify.as_mut() {
                v.parsed_schedules = check_verify(&src, name, v)?;
            }
        }
        let mut derived = Vec::new();
        for (name, j) in cfg.jobs.iter_mut() {
            destinations::resolve(&src, &cfg.repositories, name, j)?;
            j.parsed_schedule = check_job(&src, &cfg.repositories, name, j)?;
            derived.extend(destinations::expand(name, j));
        }
        cfg.jobs.extend(derived);
        Ok(cfg)
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Result<&JobConfig> {
        self.jobs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.jobs.keys().map(|s| s.as_str()).collect();
            Error::Input(format!(
                "there is no job {name:?} in {} (jobs: {})\n  hint: check the name or add a [jobs.{name}] table",
                self.file.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
    }

    /// Where a job's notifications go: its own table, else the daemon's.
    pub fn notify_of<'a>(&'a self, job: &'a JobConfig) -> Option<&'a notify::NotifyConfig> {
        job.notify.as_ref().or(self.daemon.notify.as_ref())
    }

    /// The destination jobs of `job` (`JOB@REPO`, in the order of its `repositories`).
    pub fn destinations_of(&self, job: &str) -> Vec<&str> {
        let Some(j) = self.jobs.get(job) else {
            return Vec::new();
        };
        j.repositories
            .iter()
            .flat_map(|l| l.get_ref().iter().skip(1))
            .filter_map(|r| {
                let n = destinations::job_name(job, r.get_ref());
                self.jobs.get_key_value(&n).map(|(k, _)| k.as_str())
            })
            .collect()
    }

    /// The repository a job writes to.
    pub fn repository_of(&self, job: &JobConfig) -> &RepositoryConfig {
        &self.repositories[job.repository.get_ref()]
    }
}

impl RepositoryConfig {
    /// Credentials for remote storage: the environment's, overridden by this table's keys.
    pub(crate) fn credentials(&self) -> Result<crate::repo::open::Credentials> {
        let mut c = crate::repo::open::Credentials::from_env();
        let of = format!(" (S3 secret key) of the repository {}", self.path);
        if let Some(id) = &self.s3_access_key_id {
            c.s3_access_key_id = Some(id.clone());
        }
        if let Some(f) = &self.s3_secret_access_key_file {
            let s = crate::config::secrets::from_file(f, &of, "check s3_secret_access_key_file")?;
            c.s3_secret_access_key = Some(crate::repo::s3::Secret(
                String::from_utf8_lossy(&s).into_owned(),
            ));
        }
        if let Some(cmd) = &self.s3_secret_access_key_command {
            let s = crate::config::secrets::from_command(
                cmd,
                &of,
                "check s3_secret_access_key_command",
            )?;
            c.s3_secret_access_key = Some(crate::repo::s3::Secret(
                String::from_utf8_lossy(&s).into_owned(),
            ));
        }
        if let Some(r) = &self.s3_region {
            c.s3_region = Some(r.clone());
        }
        if let Some(cmd) = &self.sftp_command {
            c.sftp_command = Some(cmd.clone());
        }
        if let Some(t) = self.sftp_timeout {
            c.sftp_timeout = Some(format!("{}s", t.as_secs()));
        }
        if let Some(f) = &self.cacert {
            c.cacert = Some(f.clone());
        }
        if let Some(a) = self.s3_addressing {
            c.s3_addressing = Some(a.name().to_string());
        }
        Ok(c)
    }

    /// The repository's storage, with its credentials.
    pub(crate) fn backend(&self) -> Result<std::sync::Arc<dyn crate::repo::backend::Backend>> {
        crate::repo::open::open_location(self.path.expose(), &self.credentials()?)
    }

    /// What [`crate::repo::open::open_repository`] takes to open this repository: its location,
    /// its credentials (secrets read now), its password (read when opening) and its lock wait.
    pub(crate) fn settings(&self) -> Result<crate::repo::open::RepoSettings<'_>> {
        Ok(crate::repo::open::RepoSettings {
            location: self.path.expose().to_string(),
            credentials: self.credentials()?,
            password: Box::new(|| self.password()),
            lock_wait: self.lock_wait,
            on_lock_wait: None,
            cancel: None,
            compression: None,
        })
    }

    /// The password, from the first line of the password file or command.
    pub(crate) fn password(&self) -> Result<Vec<u8>> {
        let of = format!(" of the repository {}", self.path);
        match (&self.password_file, &self.password_command) {
            (Some(f), _) => crate::config::secrets::from_file(
                f,
                &of,
                "check password_file in the configuration",
            ),
            (None, cmd) => crate::config::secrets::from_command(
                cmd.as_deref().unwrap_or(""),
                &of,
                "check password_command in the configuration",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_is_configurable_per_job() {
        let text = "[repositories.r]\npath = \"/r\"\npassword_file = \"/p\"\n[jobs.j]\nrepository = \"r\"\npaths = [\"/x\"]\nretry = { initial_delay = \"2s\", factor = 3.0, max_delay = \"20s\" }\n";
        let cfg = Config::parse(text, Path::new("t.toml")).unwrap();
        let p = cfg.jobs["j"].retry.policy(Duration::from_secs(90));
        assert_eq!(p.initial_delay, Duration::from_secs(2));
        assert_eq!(p.factor, 3.0);
        assert_eq!(p.max_delay, Duration::from_secs(20));
        assert_eq!(p.deadline, Duration::from_secs(90));
        assert_eq!(p.delay(3), Duration::from_secs(18));
        // Defaults: 1 s, x2, 60 s.
        let d = RetryConfig::default().policy(Duration::ZERO);
        assert_eq!(
            (d.initial_delay, d.factor, d.max_delay),
            (Duration::from_secs(1), 2.0, Duration::from_secs(60))
        );
        // Unknown keys in it are errors.
        let bad = text.replace("factor", "facto");
        let e = Config::parse(&bad, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml:7:"), "{e}");
    }

    const GOOD: &str = r#"
[repositories.main]
path = "/srv/backup/repo"
password_file = "/etc/backupd/password"

[jobs.app]
repository = "main"
paths = ["/srv/app/uploads"]
exclude = ["*.tmp"]
tags = ["app"]
allow_partial = false
sqlite = [{ path = "/srv/app/app.db", check = "quick", wait = "10m" }]
commands = [{ path = "/dumps/app.sql", run = "pg_dump app", timeout = "1h" }]
locked_files = { action = "fail", wait = "10m" }

[jobs.app.hooks]
before = ["systemctl stop app-worker"]
after_success = []
after_failure = []
always = ["systemctl start app-worker"]
timeout = "5m"
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(GOOD, Path::new("b.toml")).unwrap();
        let j = c.job("app").unwrap();
        assert_eq!(j.sqlite[0].check, IntegrityCheck::Quick);
        assert_eq!(j.sqlite[0].wait, Duration::from_secs(600));
        assert_eq!(j.commands[0].timeout, Some(Duration::from_secs(3600)));
        assert_eq!(j.locked_files.action, LockedAction::Fail);
        assert_eq!(j.hooks.timeout, Duration::from_secs(300));
        assert_eq!(c.repository_of(j).path.expose(), "/srv/backup/repo");
    }

    #[test]
    fn errors_point_at_line_and_column() {
        let bad = GOOD.replace("tags = [\"app\"]", "tags = [\"app\"]\n  colour = 3");
        let e = Config::parse(&bad, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.toml:11:3") && e.contains("unknown field `colour`"),
            "{e}"
        );
        let bad = GOOD.replace("allow_partial = false", "allow_partial = \"no\"");
        let e = Config::parse(&bad, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.toml:11:17") && e.contains("bool"), "{e}");
        let bad = GOOD.replace("wait = \"10m\" }]", "wait = \"10 parsecs\" }]");
        let e = Config::parse(&bad, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.toml:12:") && e.contains("invalid duration"),
            "{e}"
        );
        let bad = GOOD.replace("repository = \"main\"", "repository = \"mian\"");
        let e = Config::parse(&bad, Path::new("b.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.toml:7:14") && e.contains("\"mian\""), "{e}");
    }

    #[test]
    fn the_checked_file_holds_the_parsed_schedule_and_metrics_address() {
        let text = GOOD.replace(
            "allow_partial = false\n",
            "allow_partial = false\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n",
        );
        let c = Config::parse(
            &format!("[daemon]\nmetrics_listen = \"[::1]:9909\"\n{text}"),
            Path::new("b.toml"),
        )
        .unwrap();
        let addr: SocketAddr = "[::1]:9909".parse().unwrap();
        assert_eq!(c.daemon.metrics_addr, Some(addr));
        let s = c.job("app").unwrap().parsed_schedule.as_ref().unwrap();
        assert_eq!((s.expr(), s.tz_name()), ("30 2 * * *", "Europe/Berlin"));
        let manual = Config::parse(GOOD, Path::new("b.toml")).unwrap();
        assert!(manual.job("app").unwrap().parsed_schedule.is_none());
        assert!(manual.daemon.metrics_addr.is_none());
    }

    #[test]
    fn the_parsed_values_are_not_keys_of_the_file() {
        let daemon = format!("[daemon]\nmetrics_addr = \"x\"\n{GOOD}");
        let job = GOOD.replace("[jobs.app]\n", "[jobs.app]\nparsed_schedule = \"x\"\n");
        for (text, key) in [(daemon, "metrics_addr"), (job, "parsed_schedule")] {
            let e = Config::parse(&text, Path::new("b.toml"))
                .unwrap_err()
                .to_string();
            let (unknown, expected) = e.split_once("expected").unwrap_or((&e, ""));
            assert!(unknown.contains(&format!("unknown field `{key}`")), "{e}");
            assert!(!expected.is_empty() && !expected.contains(key), "{e}");
        }
    }

    #[test]
    fn metrics_listen_and_verification_errors_point_at_their_line() {
        let err = |extra: &str| {
            Config::parse(&format!("{extra}{GOOD}"), Path::new("b.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("[daemon]\nmetrics_listen = \"0.0.0.0:9909\"\n");
        assert!(
            e.contains("b.toml:2:18")
                && e.contains("not a loopback address")
                && e.contains("hint:"),
            "{e}"
        );
        let e = err("[daemon]\nmetrics_listen = \"localhost\"\n");
        assert!(e.contains("b.toml:2:18") && e.contains("hint:"), "{e}");
        let ok = format!("[daemon]\nmetrics_listen = \"[::1]:9909\"\n{GOOD}");
        assert!(Config::parse(&ok, Path::new("b.toml")).is_ok());
        let verify = |v: &str| {
            Config::parse(
                &GOOD.replace(
                    "password_file = \"/etc/backupd/password\"\n",
                    &format!("password_file = \"/etc/backupd/password\"\nverify = {{ {v} }}\n"),
                ),
                Path::new("b.toml"),
            )
        };
        let e = verify("read_data = \"61 * * * *\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b.toml:5:") && e.contains("repositories.main.verify.read_data"),
            "{e}"
        );
        let e = verify("restore_drill = \"@daily\", restore_drill_files = 0")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("restore_drill_files must be at least 1") && e.contains("hint:"),
            "{e}"
        );
        let c = verify("check = \"0 4 * * 0\", read_data_cycle = \"7d\"").unwrap();
        let v = c.repositories["main"].verify.as_ref().unwrap();
        let kinds: Vec<_> = v
            .parsed_schedules
            .iter()
            .map(|(k, s)| (*k, s.expr()))
            .collect();
        assert_eq!(kinds, [(verify::DrillKind::Check, "0 4 * * 0")]);
    }

    #[test]
    fn job_and_repository_errors_name_the_table_and_the_place() {
        let err = |text: &str| {
            Config::parse(text, Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        let repo = "[repositories.r]\npath = \"/r\"\npassword_file = \"/p\"\n";
        let job = |body: &str| format!("{repo}[jobs.j]\nrepository = \"r\"\n{body}");
        assert!(valid_job_name("app-1_x.y") && !valid_job_name(".hidden"));
        assert!(!valid_job_name("a/b") && !valid_job_name(""));
        let e = err(&format!(
            "{repo}[jobs.\"a/b\"]\nrepository = \"r\"\npaths = [\"/x\"]\n"
        ));
        assert!(
            e.starts_with("invalid configuration at c.toml:5:14: the job name \"a/b\""),
            "{e}"
        );
        let e = err(&job(""));
        assert!(
            e.starts_with("invalid configuration in c.toml: job \"j\" has nothing to back up"),
            "{e}"
        );
        let e = err(&job("paths = [\"/x\"]\ntimezone = \"UTC\"\n"));
        assert!(
            e.contains("c.toml:7:12: job \"j\" has a timezone but no schedule"),
            "{e}"
        );
        let e = err(&job("paths = [\"/x\"]\nschedule = \"daily\"\n"));
        assert!(e.contains("c.toml:7:12: job \"j\": "), "{e}");
        let e = err(&job(
            "commands = [{ path = \"dump.sql\", run = \"true\" }]\n",
        ));
        assert!(
            e.ends_with("the command path dump.sql must be absolute, e.g. /dumps/app.sql"),
            "{e}"
        );
        let e = err(&job("paths = [\"/x\"]\nretention = { prune = true }\n"));
        assert!(e.contains("retention keeps nothing"), "{e}");
        let e = err(&repo.replace(
            "password_file = \"/p\"",
            "password_command = \"x\"\npassword_file = \"/p\"",
        ));
        assert!(
            e.ends_with("[repositories.r] needs exactly one of password_file and password_command"),
            "{e}"
        );
    }

    #[test]
    fn values_out_of_range_are_refused_at_their_line_and_column() {
        let repo = "[repositories.r]\npath = \"/r\"\npassword_file = \"/p\"\n";
        let job =
            |body: &str| format!("{repo}[jobs.j]\nrepository = \"r\"\npaths = [\"/x\"]\n{body}");
        let daemon = |body: &str| format!("[daemon]\n{body}\n{repo}");
        let cases = [
            (
                daemon("max_parallel = 9223372036854775807"),
                "c.toml:2:16",
                "1 to 1024",
            ),
            (daemon("max_parallel = 0"), "c.toml:2:16", "1 to 1024"),
            (daemon("shutdown_timeout = \"\""), "c.toml:2:20", "empty"),
            (
                daemon("shutdown_timeout = \"99999999999999999999d\""),
                "c.toml:2:20",
                "invalid duration",
            ),
            (daemon("log_level = \"info,[\""), "c.toml:2:13", "log_level"),
            (
                daemon("socket_group = \"no-such-group-backupd\""),
                "c.toml:2:16",
                "does not exist",
            ),
            (
                job("jitter = \"18446744073709551615\""),
                "c.toml:7:10",
                "at most",
            ),
            (
                job("jitter = \"9999999999999999d\""),
                "c.toml:7:10",
                "invalid duration",
            ),
            (job("jitter = \"2d\""), "c.toml:7:10", "at most 1d"),
            (
                job("retries = { delay = \"1000000d\" }"),
                "c.toml:7:",
                "100 years",
            ),
            (
                job("[jobs.j.hooks]\ntimeout = \"18446744073709551615\""),
                "c.toml:8:11",
                "100 years",
            ),
            (
                daemon(
                    "[daemon.notify]\ncommand = \"true\"\ncommand_timeout = 9223372036854775807",
                ),
                "c.toml:4:19",
                "100 years",
            ),
            (
                job("[jobs.j.health]\ngrace = 9223372036854775807"),
                "c.toml:8:9",
                "100 years",
            ),
        ];
        for (text, place, why) in cases {
            let e = Config::parse(&text, Path::new("c.toml"))
                .map(|_| String::from("accepted"))
                .unwrap_or_else(|e| e.to_string());
            assert!(e.contains(place) && e.contains(why), "{text}\n=> {e}");
        }
        let ok = daemon("log_level = \"warn,backupd=debug\"\nshutdown_timeout = \"0s\"");
        Config::parse(&ok, Path::new("c.toml")).unwrap();
    }

    #[test]
    fn the_size_limits_and_verify_after_are_refused_at_their_line_and_column() {
        let repo = "[repositories.r]\npath = \"/r\"\npassword_file = \"/p\"\n";
        let job =
            |body: &str| format!("{repo}[jobs.j]\nrepository = \"r\"\npaths = [\"/x\"]\n{body}");
        let cases = [
            (
                job("verify_after = \"sometimes\""),
                "c.toml:7:16",
                "sample=N%",
            ),
            (
                job("verify_after = \"sample=0%\""),
                "c.toml:7:16",
                "1 to 100",
            ),
            (job("max_source_size = 0"), "c.toml:7:19", "more than 0"),
            (job("max_added_size = \"5KB\""), "c.toml:7:18", "KB"),
            (job("on_size_limit = \"maybe\""), "c.toml:7:17", "fail"),
            (
                job("[jobs.j.health]\nmax_growth = 1"),
                "c.toml:8:14",
                "above 1",
            ),
            (
                job("[jobs.j.health]\ngrowth_runs = 0"),
                "c.toml:8:15",
                "1 to 1000",
            ),
        ];
        for (text, place, why) in cases {
            let e = Config::parse(&text, Path::new("c.toml"))
                .map(|_| String::from("accepted"))
                .unwrap_or_else(|e| e.to_string());
            assert!(e.contains(place) && e.contains(why), "{text}\n=> {e}");
        }
        let ok = job("verify_after = \"sample=10%\"\nmax_source_size = \"500M\"\nmax_added_size = 1000\non_size_limit = \"warn\"\n[jobs.j.health]\nmax_growth = 10\ngrowth_runs = 3");
        Config::parse(&ok, Path::new("c.toml")).unwrap();
    }
}
