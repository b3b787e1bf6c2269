//! `backupctl`: the command line (global options, password sources, output, exit codes) and dispatch.

mod backup;
mod cache;
mod cat;
mod check;
mod client;
mod configured;
mod copy;
mod diff;
mod dump;
mod find;
mod forget;
mod generate;
mod health;
mod history;
mod init;
mod key;
mod list;
mod logs;
mod ls;
mod manifest;
mod mount;
mod progress;
mod prune;
mod recover;
mod reload;
mod repair;
mod restore;
mod rewrite;
mod run;
mod run_job;
mod service;
mod show;
mod snapref;
mod snapshots;
mod stats;
mod status;
mod tag;
mod unlock;
mod util;

use crate::cancel::{CancelToken, Progress};
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::repo::open::RepoSettings;
use crate::repo::pack::Compression;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "backupctl",
    version,
    about = "Control backupd and work on backup repositories (restic format, version 2)",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 3 partial snapshot, 4 damage found, \
                  5 source failed, 10 no repository, 11 locked, 12 wrong password, 13 backupd not running, 14 storage access denied, 15 storage unreachable, 16 storage full, \
                  130 interrupted, 141 output closed by its reader."
)]
/// `backupctl`'s command line. `bin/backupctl.rs` parses it from argv and hands it to [`run()`].
pub struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How long a repository command waits for a conflicting lock when `--lock-wait` is not given:
/// long enough for a prune or check started beside a running backup's commit, short enough that a
/// command stuck behind a long job ends with the holder named (exit 11).
pub(crate) const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5 * 60);

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Global {
    /// The configuration file: what the daemon commands talk to, what `run-job` and `service`
    /// use, and the repositories that --repo-name picks from (default: as backupd picks it,
    /// /etc/backupd/backupd.toml as root, else the user's config folder).
    #[arg(
        long,
        short = 'c',
        env = "BACKUPD_CONFIG",
        global = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// The daemon's control socket (default: the configuration's).
    #[arg(long, env = "BACKUPD_SOCKET", global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Repository location: a directory, s3:https://host/bucket[/prefix], rest:http://host:port/,
    /// sftp:user@host:/path, gdrive:PATH.
    #[arg(short = 'r', long = "repo", env = "BACKUPD_REPOSITORY", global = true, help_heading = REPO)]
    pub repo: Option<String>,
    /// Use the configuration's repository NAME (its `[repositories.NAME]` table: location,
    /// password source, credentials), as the daemon opens it. Needed only when the
    /// configuration has more than one.
    #[arg(long, value_name = "NAME", global = true, help_heading = REPO)]
    pub repo_name: Option<String>,
    /// Read the repository password from the first line of this file.
    #[arg(long, env = "BACKUPD_PASSWORD_FILE", global = true, help_heading = REPO)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use the first line of its output as the password.
    #[arg(long, env = "BACKUPD_PASSWORD_COMMAND", global = true, help_heading = REPO)]
    pub password_command: Option<String>,
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for a locked repository (e.g. 30s, 5m, 0s not at all); then fail with
    /// exit code 11 naming the holder. Default 5m.
    #[arg(long, value_parser = util::parse_duration, global = true, help_heading = REPO)]
    pub lock_wait: Option<Duration>,
    /// Compression for new data: auto (zstd 3), off, fastest (1), max (19), or a zstd level.
    #[arg(long, value_parser = util::parse_compression, global = true, help_heading = REPO)]
    pub compression: Option<Compression>,
    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Never show progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Also trust the CA certificate(s) in this PEM file for s3:https:// and rest:https://
    /// storage (a private CA; Mozilla's roots stay trusted). Like restic's --cacert.
    #[arg(long, value_name = "FILE", env = "BACKUPD_CACERT", global = true, help_heading = REPO)]
    pub cacert: Option<PathBuf>,
    /// After the command, remove the cache folders of repositories not used for 30 days (as
    /// restic's --cleanup-cache; `backupctl cache --cleanup --max-age DAYS` for another age).
    #[arg(long, global = true, help_heading = REPO)]
    pub cleanup_cache: bool,
}

/// The help heading of the options that only repository commands use.
const REPO: &str = "Repository options (init, backup, snapshots, restore, check, ...)";

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Create a new repository.
    Init(init::Args),
    /// Back up files and folders into a new snapshot.
    Backup(backup::Args),
    /// List snapshots.
    Snapshots(snapshots::Args),
    /// List the files in a snapshot.
    Ls(ls::Args),
    /// Show what changed between two snapshots.
    Diff(diff::Args),
    /// Write a file of a snapshot, or a folder as a tar or zip archive, to stdout (or --target).
    Dump(dump::Args),
    /// Serve the snapshots as a read-only file system at an empty directory (FUSE, Linux), until
    /// Ctrl-C.
    Mount(mount::Args),
    /// Show sizes and counts of snapshots or the repository.
    Stats(stats::Args),
    /// Restore a snapshot (or a path in it) into a directory.
    Restore(restore::Args),
    /// Print a snapshot's SHA256SUMS manifest (`backupctl manifest latest > SHA256SUMS`).
    Manifest(manifest::Args),
    /// Check the repository's structure, and with --read-data every byte.
    Check(check::Args),
    /// Remove snapshots by a retention policy (the data goes at the next prune).
    Forget(forget::Args),
    /// Delete data no snapshot needs and repack partly used packs.
    Prune(prune::Args),
    /// Copy snapshots (and the data they need) from another repository (--from) into this one.
    Copy(copy::Args),
    /// Add, remove or set the tags of snapshots (rewrites their snapshot files, as restic).
    Tag(tag::Args),
    /// List the ids of the repository's snapshots, index, packs, keys or locks, or its blobs.
    List(list::Args),
    /// Print a repository object: config, index, snapshot, key, lock, pack, blob or tree.
    Cat(cat::Args),
    /// Find files and directories matching patterns in snapshots.
    Find(find::Args),
    /// Remove stale locks.
    Unlock(unlock::Args),
    /// The local cache of remote repositories: each one's last use and size; --cleanup removes
    /// the folders of repositories not used for --max-age days.
    Cache(cache::Args),
    /// Repair the repository: `repair index` rebuilds the index from the packs, `repair
    /// snapshots` saves snapshots again without the data the repository lost.
    Repair(repair::Args),
    /// Save snapshots again without excluded paths (e.g. a secret backed up by mistake), or with
    /// a new host or time.
    Rewrite(rewrite::Args),
    /// Save a snapshot of the trees no snapshot reaches (e.g. one forgotten by mistake), under
    /// /recover.
    Recover(recover::Args),
    /// The repository's keys: list, add (another password), remove, passwd.
    Key(key::Args),
    /// Run a job of a configuration file once, in the foreground.
    RunJob(run_job::Args),
    /// The daemon and every job: state, last run and why, next run, progress.
    Status,
    /// Health of every job, one line each; exit 0 healthy, 1 warning, 2 error (for monitoring).
    Health,
    /// The daemon's jobs, their schedules and next runs.
    Jobs,
    /// Ask the daemon to run a job now (--wait follows it and exits with its outcome).
    Run(run::RunArgs),
    /// Ask the daemon to stop a job's current run at its next safe point.
    Cancel(run::JobArgs),
    /// Ask the daemon to read its configuration again.
    Reload,
    /// A job's recent runs: why each ran, outcome, snapshot, error.
    History(history::HistoryArgs),
    /// The daemon's log (-f follows it; --job filters).
    Logs(logs::LogsArgs),
    /// Install backupd as an OS service (systemd, launchd, Windows), remove, start, stop it.
    Service(service::ServiceArgs),
    /// The OS-timer mode: an OS timer runs `backupd run-due` every minute (no resident daemon).
    Schedule(service::ScheduleArgs),
    /// Completions, man pages and the packaged unit (for packaging/build-deb.sh).
    #[command(hide = true)]
    Generate(generate::Args),
}

/// What every command gets: the global options, a cancel token wired to SIGINT/SIGTERM, and a
/// progress sink.
pub(crate) struct Ctx {
    pub global: Global,
    pub cancel: CancelToken,
    /// The configuration file, read the first time a command needs it.
    config: std::cell::OnceCell<Config>,
}

impl Ctx {
    pub fn new(global: Global, cancel: CancelToken) -> Ctx {
        Ctx {
            global,
            cancel,
            config: std::cell::OnceCell::new(),
        }
    }

    /// The configuration file's path: --config, BACKUPD_CONFIG, else backupd's default.
    pub fn config_path(&self) -> PathBuf {
        self.global
            .config
            .clone()
            .unwrap_or_else(crate::paths::default_config)
    }

    /// The configuration file, loaded and validated once.
    pub fn config(&self) -> Result<&Config> {
        if let Some(c) = self.config.get() {
            return Ok(c);
        }
        let c = Config::load(&self.config_path())?;
        Ok(self.config.get_or_init(|| c))
    }

    /// Where the daemon is: --socket, else the configuration's socket.
    pub fn daemon(&self) -> client::Where {
        client::Where {
            config: self.global.config.clone(),
            socket: self.global.socket.clone(),
        }
    }

    /// The lock wait: --lock-wait, else [`DEFAULT_LOCK_WAIT`].
    pub fn lock_wait(&self) -> Duration {
        self.global.lock_wait.unwrap_or(DEFAULT_LOCK_WAIT)
    }

    /// Whether the repository comes from the configuration: --repo-name, or --config (or
    /// BACKUPD_CONFIG) without -r.
    fn repo_from_config(&self) -> bool {
        self.global.repo.is_none()
            && (self.global.repo_name.is_some() || self.global.config.is_some())
    }

    pub fn location(&self) -> Result<String> {
        if self.repo_from_config() {
            return Ok(self.configured_repo()?.path.expose().to_string());
        }
        self.global.repo.clone().ok_or_else(|| {
            Error::Input(
                "no repository given\n  hint: pass -r/--repo LOCATION (or set BACKUPD_REPOSITORY), or \
                 --config FILE [--repo-name NAME] to use a repository of backupd's configuration"
                    .into(),
            )
        })
    }

    /// The configuration's repository that --repo-name names (or its only one).
    fn configured_repo(&self) -> Result<&crate::config::RepositoryConfig> {
        configured::pick(self.config()?, self.global.repo_name.as_deref())
    }

    /// Credentials and connection settings for remote storage: the environment's and --cacert.
    pub fn credentials(&self) -> crate::repo::open::Credentials {
        let mut c = crate::repo::open::Credentials::from_env();
        if let Some(f) = &self.global.cacert {
            c.cacert = Some(f.clone());
        }
        c
    }

    pub fn password(&self) -> Result<Vec<u8>> {
        util::read_password(&self.global)
    }

    /// What opening the repository named by the global options takes (for
    /// [`open_repository`](crate::repo::open::open_repository)): -r, the credentials, the
    /// password options (read when opening), --lock-wait and --compression.
    pub fn repo_settings(&self) -> Result<RepoSettings<'_>> {
        if self.repo_from_config() {
            return configured::settings(self, self.configured_repo()?);
        }
        Ok(RepoSettings {
            location: self.location()?,
            credentials: self.credentials(),
            password: Box::new(|| self.password()),
            lock_wait: self.lock_wait(),
            on_lock_wait: Some(self.lock_notice()),
            cancel: Some(&self.cancel),
            compression: Some(self.global.compression.unwrap_or_default()),
        })
    }

    /// What a wait for a repository lock tells the user, once, on stderr (not with --quiet).
    pub fn lock_notice(&self) -> Box<dyn Fn(&str) + '_> {
        Box::new(|msg| self.warn(format!("{msg} (--lock-wait sets how long; Ctrl-C stops)")))
    }

    pub fn progress(&self) -> Box<dyn Progress> {
        progress::make(
            self.global.quiet,
            !(self.global.no_progress || self.global.json),
        )
    }

    /// A line of human output on stdout (not with --json or --quiet).
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.global.json && !self.global.quiet {
            println!("{}", msg.as_ref());
        }
    }

    /// A warning on stderr (always, except with --quiet).
    pub fn warn(&self, msg: impl AsRef<str>) {
        if !self.global.quiet {
            eprintln!("warning: {}", msg.as_ref());
        }
    }

    pub fn print_json<T: Serialize>(&self, v: &T) {
        println!(
            "{}",
            serde_json::to_string_pretty(v).expect("output serializes")
        );
    }
}

/// The subcommands that never open a repository by -r: their help leaves out the repository
/// options (they would still be accepted, and ignored).
const WITHOUT_REPOSITORY: [&str; 12] = [
    "run-job", "status", "health", "jobs", "run", "cancel", "reload", "history", "logs", "service",
    "schedule", "generate",
];

/// The global options only repository commands use (by their clap ids).
const REPOSITORY_OPTIONS: [&str; 8] = [
    "repo",
    "repo_name",
    "password_file",
    "password_command",
    "lock_wait",
    "compression",
    "cacert",
    "cleanup_cache",
];

/// `backupctl`'s command definition: clap's, with each subcommand's help showing only the
/// options that apply to it. A global option is listed in every subcommand's help; giving a
/// subcommand a hidden copy of it first (as clap itself copies global options down) keeps it
/// accepted there, and its value still reaches the top, but out of that help.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let copies = |ids: &[&str]| -> Vec<clap::Arg> {
        cmd.get_arguments()
            .filter(|a| ids.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect()
    };
    let (repository, socket) = (copies(&REPOSITORY_OPTIONS), copies(&["socket"]));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        let hidden = if WITHOUT_REPOSITORY.contains(&name.as_str()) {
            repository.clone()
        } else {
            socket.clone()
        };
        cmd = cmd.mut_subcommand(name, |sc| sc.args(hidden));
    }
    cmd
}

/// Parses `backupctl`'s command line (argv).
pub fn parse_args() -> std::result::Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    let m = command().try_get_matches()?;
    Cli::from_arg_matches(&m)
}

/// The exit code for a command line clap refused (usage, 2) or answered itself (--help,
/// --version: 0).
pub fn usage_exit_code(e: &clap::Error) -> i32 {
    if e.use_stderr() {
        exit::USAGE
    } else {
        exit::OK
    }
}

/// Runs the parsed command line; `cancel` is set when the user interrupts (the binary wires it to
/// SIGINT and SIGTERM). Returns the exit code.
pub fn run(cli: Cli, cancel: CancelToken) -> i32 {
    let json = cli.global.json;
    let ctx = Ctx::new(cli.global, cancel);
    let result = match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Snapshots(a) => snapshots::run(&ctx, a),
        Command::Ls(a) => ls::run(&ctx, a),
        Command::Diff(a) => diff::run(&ctx, a),
        Command::Stats(a) => stats::run(&ctx, a),
        Command::Dump(a) => dump::run(&ctx, a),
        Command::Mount(a) => mount::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Manifest(a) => manifest::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Forget(a) => forget::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Copy(a) => copy::run(&ctx, a),
        Command::Tag(a) => tag::run(&ctx, a),
        Command::List(a) => list::run(&ctx, a),
        Command::Cat(a) => cat::run(&ctx, a),
        Command::Find(a) => find::run(&ctx, a),
        Command::Unlock(a) => unlock::run(&ctx, a),
        Command::Cache(a) => cache::run(&ctx, a),
        Command::Repair(a) => repair::run(&ctx, a),
        Command::Rewrite(a) => rewrite::run(&ctx, a),
        Command::Recover(a) => recover::run(&ctx, a),
        Command::Key(a) => key::run(&ctx, a),
        Command::RunJob(a) => run_job::run(&ctx, a),
        Command::Status => status::status(&ctx),
        Command::Health => health::health(&ctx),
        Command::Jobs => status::jobs(&ctx),
        Command::Run(a) => run::run(&ctx, a),
        Command::Cancel(a) => run::cancel(&ctx, a),
        Command::Reload => reload::reload(&ctx),
        Command::History(a) => history::history(&ctx, a),
        Command::Logs(a) => logs::logs(&ctx, a),
        Command::Service(a) => service::service(&ctx, a),
        Command::Schedule(a) => service::schedule(&ctx, a),
        Command::Generate(a) => generate::run(&ctx, a),
    };
    if ctx.global.cleanup_cache {
        cache::cleanup_after(&ctx);
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            print_error(json, &e.to_string(), code);
            code
        }
    }
}

/// A command's failure: `error: MESSAGE` on stderr, and with --json also
/// `{"error": MESSAGE, "exit_code": CODE}` on stdout.
pub(crate) fn print_error(json: bool, message: &str, code: i32) {
    if json {
        let v = serde_json::json!({"error": message, "exit_code": code});
        // A json! value of a string and a number always serializes.
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("a json! value serializes")
        );
    }
    eprintln!("error: {message}");
}
