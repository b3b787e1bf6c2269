//! `backupd`, the daemon: its command line, the single-instance lock, signals, config reloads, and the wiring of the event loop and the control socket.
//!
//! Shutdown is a parameter (a broadcast every task listens to), as in tokio's mini-redis:
//! SIGTERM or SIGINT (or the `stop` future given to [`run_daemon`]: the Windows service
//! control manager's Stop) stops taking work, asks running jobs to stop at a safe point,
//! records them, and exits within `shutdown_timeout`. SIGHUP, `backupctl reload` or a change of the
//! configuration file reloads it; a file that fails validation is rejected and the old
//! configuration stays in force.

pub mod clock;
mod core;
mod drills;
mod foreground;
pub mod logging;
mod metrics_http;
mod outcome;
#[cfg(windows)]
mod pipe;
mod runner;
mod server;
#[cfg(windows)]
pub mod winservice;

use crate::config::{Config, LogFormat};
use crate::paths::DaemonPaths;
use clap::{Parser, Subcommand};
use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use tokio::sync::{broadcast, mpsc};

pub(crate) use foreground::{record_foreground_run, Recorded};

/// A trigger for the daemon's graceful shutdown besides the signals: when it completes, the
/// daemon stops as on SIGTERM.
pub type StopTrigger = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

#[derive(Parser, Debug)]
#[command(
    name = "backupd",
    version,
    about = "The backup daemon: runs the configured jobs on their schedules, catches up missed runs, and answers backupctl",
    after_help = "Exit codes: 0 stopped cleanly, 1 failed (the message says why), 2 usage, 75 another backupd holds the state folder.\n\
                  run-due: 0 every due run succeeded (or nothing was due), 1 could not start, 2 usage, 3 a run failed, \
                  75 a resident backupd (or another run-due) holds the state folder, 130 stopped by a signal."
)]
pub struct Cli {
    /// The configuration file (default: BACKUPD_CONFIG, else /etc/backupd/backupd.toml as root, else the user's config folder).
    #[arg(short, long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<DaemonCommand>,
}

#[derive(Subcommand, Debug)]
pub enum DaemonCommand {
    /// Run in the foreground (the default; for service managers and terminals).
    Run,
    /// Check the configuration file and exit: 0 when it is valid, 1 (with file:line:column) when not.
    CheckConfig,
    /// Run the jobs that are due now, with the daemon's scheduler, state and catch-up rules,
    /// then exit (the OS-timer mode: a systemd timer, launchd or Task Scheduler starts it).
    RunDue,
    /// Run as a Windows service: what the service control manager starts
    /// (`backupd.exe --config FILE service-main`); Stop and Shutdown stop the daemon gracefully.
    #[command(hide = true)]
    ServiceMain,
}

/// `run-due`'s exit code when a run failed.
pub const EXIT_RUN_FAILED: i32 = 3;

/// Exit code when another daemon holds the state folder.
pub const EXIT_ALREADY_RUNNING: i32 = 75;

/// A signal the binary caught. Only `bin/backupd.rs` installs signal handlers; it forwards
/// what it catches here, and the daemon treats it as it treats its other triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: stop gracefully.
    Terminate,
    /// SIGINT (Ctrl-C): stop gracefully.
    Interrupt,
    /// SIGHUP: reload the configuration.
    Hangup,
}

/// The signals the binary forwards to the daemon. A channel whose sender is gone (the Windows
/// service, tests) simply delivers none.
pub type Signals = mpsc::UnboundedReceiver<Signal>;

/// A channel for [`Signals`]: the binary keeps the sender.
pub fn signal_channel() -> (mpsc::UnboundedSender<Signal>, Signals) {
    mpsc::unbounded_channel()
}

/// Runs `backupd` as its command line `cli` says, with the binary's `signals`; returns the exit
/// code.
pub fn main(cli: Cli, signals: Signals) -> i32 {
    let config_path = cli.config.unwrap_or_else(crate::paths::default_config);
    let cfg = match Config::load(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("backupd: {e}");
            return 1;
        }
    };
    match cli.command {
        Some(DaemonCommand::CheckConfig) => check_config(&config_path, &cfg),
        Some(DaemonCommand::RunDue) => run_due(config_path, cfg, signals),
        None | Some(DaemonCommand::Run) => run_daemon(config_path, cfg, signals, None),
        Some(DaemonCommand::ServiceMain) => service_main(config_path, cfg),
    }
}

/// `backupd check-config`: the file is valid (else `main` already failed); then the files it
/// names that are not there: warnings, and errors (exit 1) for a missing password source.
fn check_config(config_path: &Path, cfg: &Config) -> i32 {
    use crate::config::presence::{missing, Severity};
    let found = missing(cfg, |p| p.exists());
    for m in &found {
        let word = match m.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        eprintln!("backupd: {word}: {}", m.message);
    }
    let errors = found
        .iter()
        .filter(|m| m.severity == Severity::Error)
        .count();
    if errors > 0 {
        eprintln!(
            "backupd: {}: {errors} error(s): the daemon would start, but the runs that need these files would fail",
            config_path.display()
        );
        return 1;
    }
    let paths = cfg.paths();
    println!(
        "{}: valid; {} job(s): {}; state {}, logs {}, socket {}",
        config_path.display(),
        cfg.jobs.len(),
        cfg.jobs
            .iter()
            .map(|(n, j)| match &j.schedule {
                Some(s) => format!("{n} ({})", s.get_ref()),
                None => format!("{n} (manual)"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        paths.state_dir.display(),
        paths.log_dir.display(),
        paths.socket.display()
    );
    0
}

#[cfg(windows)]
fn service_main(config_path: PathBuf, cfg: Config) -> i32 {
    winservice::run(config_path, cfg)
}

#[cfg(not(windows))]
fn service_main(_config_path: PathBuf, _cfg: Config) -> i32 {
    eprintln!("backupd: service-main is for the Windows service control manager only\n  hint: run `backupd run` (systemd and launchd start that)");
    2
}

fn log_settings(cfg: &Config, paths: &DaemonPaths) -> logging::LogSettings {
    logging::LogSettings {
        dir: Some(paths.log_dir.clone()),
        keep_days: cfg.daemon.log_keep_days,
        json: cfg.daemon.log_format == LogFormat::Json,
        level: cfg.daemon.log_level.clone(),
        stderr: true,
    }
}

/// The daemon's runtime (an error is logged).
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(|e| tracing::error!("cannot start the runtime: {e}"))
        .ok()
}

/// Logging, then the instance lock for `role`; on failure the exit code (the error logged, with
/// `prefix` and `hint` around a held lock's message).
fn start_up(
    cfg: &Config,
    paths: &DaemonPaths,
    role: &str,
    prefix: &str,
    hint: &str,
) -> Result<(logging::LogGuard, InstanceLock), i32> {
    let log = logging::init(&log_settings(cfg, paths)).map_err(|e| {
        eprintln!("backupd: {e}");
        1
    })?;
    match InstanceLock::acquire(&paths.state_dir, role) {
        Ok(l) => Ok((log, l)),
        Err(LockError::Held(msg)) => {
            tracing::error!("{prefix}{msg}{hint}");
            Err(EXIT_ALREADY_RUNNING)
        }
        Err(LockError::Io(msg)) => {
            tracing::error!("{msg}");
            Err(1)
        }
    }
}

/// `backupd run-due`: holds the instance lock (a resident daemon holding it makes it refuse),
/// runs what is due through the event loop's own planning (`core::Daemon::run_due`), exits.
fn run_due(config_path: PathBuf, cfg: Config, signals: Signals) -> i32 {
    let paths = cfg.paths();
    let _held = match start_up(&cfg, &paths, ROLE_RUN_DUE, "run-due: ", "\n  run-due is for the OS-timer mode (`backupctl schedule install`); with a resident daemon, its own scheduler runs the jobs: uninstall one of the two (`backupctl service uninstall` or `backupctl schedule uninstall`)") {
        Ok(h) => h,
        Err(code) => return code,
    };
    let Some(rt) = runtime() else {
        return 1;
    };
    let out = rt.block_on(async {
        let (shutdown_tx, _) = broadcast::channel::<()>(4);
        let (cmd_tx, _cmd_rx) = mpsc::channel(1);
        let daemon = core::Daemon::new(config_path, cfg, paths).map_err(|e| e.to_string())?;
        forward_signals(signals, shutdown_tx.clone(), cmd_tx);
        Ok::<_, String>(daemon.run_due(shutdown_tx.subscribe()).await)
    });
    match out {
        Err(e) => {
            tracing::error!("{e}");
            1
        }
        Ok(o) if o.stopped => {
            tracing::warn!(
                "run-due stopped by a signal; the interrupted runs are resumed at the next tick"
            );
            crate::error::exit::INTERRUPTED
        }
        Ok(o) if o.failed > 0 => {
            tracing::error!(
                "run-due: {} of {} run(s) failed (see `backupctl history JOB` and the log)",
                o.failed,
                o.ran
            );
            EXIT_RUN_FAILED
        }
        Ok(o) => {
            if o.ran > 0 {
                tracing::info!("run-due: {} run(s) succeeded", o.ran);
            }
            0
        }
    }
}

/// Runs the daemon in the foreground until one of `signals` or `stop` asks it to stop; returns
/// the exit code.
pub fn run_daemon(
    config_path: PathBuf,
    cfg: Config,
    signals: Signals,
    stop: Option<StopTrigger>,
) -> i32 {
    let paths = cfg.paths();
    let _held = match start_up(&cfg, &paths, ROLE_DAEMON, "", "") {
        Ok(h) => h,
        Err(code) => return code,
    };
    let Some(rt) = runtime() else {
        return 1;
    };
    match rt.block_on(serve(config_path, cfg, paths, signals, stop)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            1
        }
    }
}

/// Runs the socket server and the event loop until a stop signal; errors are messages that
/// already say what, where, why and what to do.
async fn serve(
    config_path: PathBuf,
    cfg: Config,
    paths: DaemonPaths,
    signals: Signals,
    stop: Option<StopTrigger>,
) -> Result<(), String> {
    let (shutdown_tx, _) = broadcast::channel::<()>(4);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    #[cfg(unix)]
    let listener = server::bind(&paths.socket, cfg.daemon.socket_group.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    #[cfg(unix)]
    let group = cfg.daemon.socket_group.clone();
    #[cfg(windows)]
    let listener = pipe::bind(&paths.socket).map_err(|e| e.to_string())?;
    let daemon =
        core::Daemon::new(config_path.clone(), cfg, paths.clone()).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    let server_task = tokio::spawn(server::serve(
        listener,
        group,
        cmd_tx.clone(),
        shutdown_tx.subscribe(),
    ));
    #[cfg(windows)]
    let server_task = tokio::spawn(pipe::serve(
        listener,
        cmd_tx.clone(),
        shutdown_tx.subscribe(),
    ));
    forward_signals(signals, shutdown_tx.clone(), cmd_tx.clone());
    let _watcher = watch_config(&config_path, cmd_tx.clone());
    let core_task = tokio::spawn(daemon.run(cmd_rx, shutdown_tx.subscribe()));
    // After every listener subscribed, so that an early stop is not lost.
    if let Some(stop) = stop {
        let tx = shutdown_tx.clone();
        tokio::spawn(async move {
            stop.await;
            tracing::info!("asked to stop: stopping");
            let _ = tx.send(());
        });
    }
    let result = core_task
        .await
        .unwrap_or_else(|e| Err(format!("the event loop crashed: {e}")));
    let _ = shutdown_tx.send(());
    let _ = server_task.await;
    #[cfg(unix)]
    let _ = std::fs::remove_file(&paths.socket);
    result
}

/// SIGTERM and SIGINT stop the daemon; SIGHUP reloads the configuration.
fn forward_signals(
    mut signals: Signals,
    shutdown: broadcast::Sender<()>,
    commands: mpsc::Sender<core::Command>,
) {
    tokio::spawn(async move {
        while let Some(sig) = signals.recv().await {
            match sig {
                Signal::Terminate | Signal::Interrupt => {
                    let name = if sig == Signal::Terminate {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    };
                    tracing::info!("{name}: stopping");
                    let _ = shutdown.send(());
                    break;
                }
                Signal::Hangup => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    let _ = commands.send(core::Command::Reload(None)).await;
                }
            }
        }
    });
}

/// Watches the configuration file's folder and asks for a reload when the file changes
/// (editors write a new file and rename it over the old one, so the folder is watched).
fn watch_config(
    path: &Path,
    commands: mpsc::Sender<core::Command>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let name = path.file_name()?.to_os_string();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let ours = ev.paths.iter().any(|p| p.file_name() == Some(name.as_os_str()));
            if ours && matches!(ev.kind, EventKind::Create(_) | EventKind::Modify(_)) {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| tracing::warn!("cannot watch the configuration file {} for changes ({e}); reload with SIGHUP or `backupctl reload`", path.display()))
    .ok()?;
    if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(
            "cannot watch {} for changes ({e}); reload with SIGHUP or `backupctl reload`",
            dir.display()
        );
        return None;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // An editor's save is several events: wait for them to settle, then reload once.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            tracing::info!("the configuration file changed: reloading");
            if commands.send(core::Command::Reload(None)).await.is_err() {
                break;
            }
        }
    });
    Some(w)
}

/// What the lock file says holds it, after the PID.
const ROLE_DAEMON: &str = "daemon";
const ROLE_RUN_DUE: &str = "run-due";

/// How long taking the lock waits for a `backupctl run-job` that holds it to record its run
/// (it holds it only for that: load, settle, save).
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

enum LockError {
    Held(String),
    Io(String),
}

/// The mode `backupd.pid` names: the last backupd that took the state folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A resident daemon (`backupd run`, the service).
    Daemon,
    /// `backupd run-due`, started by the OS timer.
    OsTimer,
}

/// What the state folder's `backupd.pid` tells about the last backupd that held it.
#[derive(Debug, Clone)]
pub(crate) struct LastHolder {
    pub mode: Mode,
    /// When it took the lock (the file's modification time): a run-due's tick.
    pub since: chrono::DateTime<chrono::Utc>,
    /// It holds the lock now.
    pub holding: bool,
}

/// The last backupd that held the state folder, from its `backupd.pid`; None without one.
pub(crate) fn last_holder(state_dir: &Path) -> Option<LastHolder> {
    let p = state_dir.join("backupd.pid");
    let mut f = File::open(&p).ok()?;
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    let mut words = s.split_whitespace();
    words.next()?;
    let mode = match words.next() {
        Some(ROLE_RUN_DUE) => Mode::OsTimer,
        _ => Mode::Daemon,
    };
    let since = f.metadata().and_then(|m| m.modified()).ok()?.into();
    let holding = match f.try_lock_shared() {
        Ok(()) => {
            let _ = f.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    };
    Some(LastHolder {
        mode,
        since,
        holding,
    })
}

/// Takes `f`'s exclusive lock, waiting up to [`LOCK_PATIENCE`] while another holds it; false
/// when it is still held.
fn lock_patiently(f: &File) -> std::io::Result<bool> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Who holds the state folder's lock (from `backupd.pid`): its PID, and its mode.
fn holder_of(f: &mut File) -> (String, Mode) {
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    let mut words = s.split_whitespace();
    let pid = words.next().unwrap_or("?").to_string();
    let mode = match words.next() {
        Some(ROLE_RUN_DUE) => Mode::OsTimer,
        _ => Mode::Daemon,
    };
    (pid, mode)
}

/// The holder of a mode, in words.
fn holder_words(mode: Mode) -> &'static str {
    match mode {
        Mode::OsTimer => "a `backupd run-due` of the OS-timer mode",
        Mode::Daemon => "a resident backupd daemon",
    }
}

/// One daemon per state folder: an exclusive lock on `backupd.pid` for the daemon's
/// lifetime (the OS drops it when the process dies, so a stale file is simply taken over).
/// It holds "PID ROLE": a resident daemon, or a `run-due` of the OS-timer mode.
struct InstanceLock {
    _file: File,
}

/// `backupd.pid` in `state_dir`, opened for reading and writing (made when missing, never
/// truncated: it names the last holder).
fn open_pid_file(state_dir: &Path) -> Result<(PathBuf, std::fs::File), LockError> {
    let p = state_dir.join("backupd.pid");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .map_err(|e| LockError::Io(pid_file_error(&p, &e)))?;
    Ok((p, f))
}

/// Why the lock file `p` cannot be opened, and what to do: a folder in its place is removed,
/// a folder this user may not write is made writable (or another one chosen).
fn pid_file_error(p: &Path, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let dir = p.parent().unwrap_or(p).display();
    let hint = if e.kind() == ErrorKind::IsADirectory || p.is_dir() {
        format!(
            "remove the folder {} (backupd keeps its lock in a file of that name), or set state_dir in the [daemon] table to another folder",
            p.display()
        )
    } else if matches!(
        e.kind(),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
    ) {
        format!("make {dir} writable by this user (or run backupd as the user that owns it), or set state_dir in the [daemon] table to a folder it may write")
    } else {
        format!("check {dir}, or set state_dir in the [daemon] table to another folder")
    };
    format!(
        "cannot open the lock file {}: {e}\n  hint: {hint}",
        p.display()
    )
}

impl InstanceLock {
    fn acquire(state_dir: &Path, role: &str) -> Result<InstanceLock, LockError> {
        std::fs::create_dir_all(state_dir).map_err(|e| {
            LockError::Io(format!(
                "cannot create the state folder {}: {e}\n  hint: create it, run as a user who may, or set state_dir in the [daemon] table",
                state_dir.display()
            ))
        })?;
        let (p, mut f) = open_pid_file(state_dir)?;
        match lock_patiently(&f) {
            Ok(true) => {}
            Ok(false) => {
                let (pid, mode) = holder_of(&mut f);
                let holder = holder_words(mode);
                return Err(LockError::Held(format!(
                    "{holder} (PID {pid}) is already running with the state folder {}\n  hint: stop it first (`backupctl status` talks to a daemon), or give this one another state_dir",
                    state_dir.display()
                )));
            }
            Err(e) => return Err(LockError::Io(format!("cannot lock {}: {e}", p.display()))),
        }
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = writeln!(f, "{} {role}", std::process::id());
        let _ = f.sync_all();
        Ok(InstanceLock { _file: f })
    }

    /// The lock for recording a run of `job` made outside the daemon (`backupctl run-job`):
    /// taken without rewriting `backupd.pid` (which keeps naming the last daemon or run-due,
    /// and so the mode). A daemon or run-due that holds it: `Held`, saying who and what to do.
    fn for_record(state_dir: &Path, job: &str) -> Result<InstanceLock, LockError> {
        let (p, mut f) = open_pid_file(state_dir)?;
        match lock_patiently(&f) {
            Ok(true) => Ok(InstanceLock { _file: f }),
            Ok(false) => {
                let (pid, mode) = holder_of(&mut f);
                let hint = match mode {
                    Mode::Daemon => format!("run the job through it, `backupctl run {job} --wait`, to have it recorded"),
                    Mode::OsTimer => "run it again once that run-due has ended (it runs the due jobs, then exits)".to_string(),
                };
                Err(LockError::Held(format!(
                    "{} (PID {pid}) holds the state folder {}\n  hint: {hint}",
                    holder_words(mode),
                    state_dir.display()
                )))
            }
            Err(e) => Err(LockError::Io(format!("cannot lock {}: {e}", p.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backupd_pid_tells_the_mode_and_a_foreground_record_waits_its_turn() {
        let d = tempfile::tempdir().unwrap();
        assert!(last_holder(d.path()).is_none(), "no backupd.pid yet");
        let Ok(held) = InstanceLock::acquire(d.path(), ROLE_RUN_DUE) else {
            panic!("the lock is free");
        };
        let h = last_holder(d.path()).unwrap();
        assert_eq!((h.mode, h.holding), (Mode::OsTimer, true));
        match InstanceLock::for_record(d.path(), "app") {
            Err(LockError::Held(m)) => assert!(
                m.contains("a `backupd run-due` of the OS-timer mode")
                    && m.contains("\n  hint: run it again once that run-due has ended"),
                "{m}"
            ),
            _ => panic!("recorded beside a run-due"),
        }
        drop(held);
        // A foreground record leaves the mode as the last backupd wrote it.
        let rec = InstanceLock::for_record(d.path(), "app");
        assert!(rec.is_ok());
        let h = last_holder(d.path()).unwrap();
        assert_eq!((h.mode, h.holding), (Mode::OsTimer, true));
        drop(rec);
        assert!(!last_holder(d.path()).unwrap().holding);
        let Ok(_daemon) = InstanceLock::acquire(d.path(), ROLE_DAEMON) else {
            panic!("the lock is free");
        };
        assert_eq!(last_holder(d.path()).unwrap().mode, Mode::Daemon);
    }

    #[test]
    fn a_lock_file_that_is_a_folder_is_refused_with_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("backupd.pid")).unwrap();
        match InstanceLock::acquire(d.path(), ROLE_DAEMON) {
            Err(LockError::Io(m)) => assert!(
                m.contains("backupd.pid") && m.contains("hint: remove the folder"),
                "{m}"
            ),
            _ => panic!("a folder taken as the lock file"),
        }
    }

    #[test]
    fn a_read_only_state_folder_is_refused_with_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("backupd.pid");
        for e in [
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem),
        ] {
            let m = pid_file_error(&p, &e);
            assert!(
                m.contains("backupd.pid")
                    && m.contains("hint: make ")
                    && m.contains("writable by this user")
                    && m.contains("state_dir"),
                "{m}"
            );
        }
    }

    #[test]
    fn the_service_command_line_parses() {
        // What the Windows service control manager starts (see winservice.rs).
        let cli = Cli::try_parse_from([
            r"C:\Program Files\backupd\backupd.exe",
            "--config",
            r"C:\ProgramData\backupd\backupd.toml",
            "service-main",
        ])
        .unwrap();
        assert_eq!(
            cli.config.as_deref(),
            Some(Path::new(r"C:\ProgramData\backupd\backupd.toml"))
        );
        assert!(matches!(cli.command, Some(DaemonCommand::ServiceMain)));
        // Hidden from the help.
        let help = <Cli as clap::CommandFactory>::command()
            .render_help()
            .to_string();
        assert!(!help.contains("service-main"), "{help}");
        assert!(help.contains("check-config"), "{help}");
    }
}
