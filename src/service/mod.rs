//! Registering backupd with the operating system's service manager: the resident daemon as a service (systemd, launchd, the Windows SCM) or the OS-timer mode (`backupd run-due` from a systemd timer, a launchd calendar job, a scheduled task).
//!
//! The files are rendered from the templates shipped in the repository's `systemd/`,
//! `launchd/` and `windows/` folders (compiled in), with the quoting each format needs, on
//! every platform (so all of them are unit-tested here); only installing them and talking to
//! the service manager is per platform.

pub mod launchd;
pub mod render;
pub mod systemd;
pub mod windows;

use crate::config::Config;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Exit codes of `backupctl service` and `backupctl schedule` (besides 0, 1 and 2; docs/exit-codes.md).
pub mod exit {
    /// The service manager refused for lack of rights: run as root or use `--user`.
    pub const NEEDS_ROOT: i32 = 20;
    /// The service manager (systemctl, launchctl, the SCM, schtasks) failed.
    pub const MANAGER_FAILED: i32 = 21;
    /// Not installed (start, stop, restart, status).
    pub const NOT_INSTALLED: i32 = 22;
    /// The other mode is installed (the resident service and the OS timer exclude each other).
    pub const CONFLICT: i32 = 23;
    /// `status`: installed but not running (as `backupctl status` without a daemon).
    pub const NOT_RUNNING: i32 = crate::error::exit::NO_DAEMON;
}

/// System-wide (root, a dedicated account) or for the current user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    System,
    User,
}

impl Scope {
    /// The flag that selects it.
    pub fn flag(self) -> &'static str {
        match self {
            Scope::System => "--system",
            Scope::User => "--user",
        }
    }
}

/// The resident daemon, or the OS timer that starts `backupd run-due`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Daemon,
    Timer,
}

impl Mode {
    /// The `backupctl` command that installs it.
    pub fn command(self) -> &'static str {
        match self {
            Mode::Daemon => "service",
            Mode::Timer => "schedule",
        }
    }
}

/// The dedicated account of the system service (created when missing).
pub const SYSTEM_USER: &str = "backupd";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{what}: permission denied{detail}\n  hint: run as root (e.g. `sudo backupctl ...`) or use --user")]
    NeedsRoot { what: String, detail: String },

    #[error("`{command}` failed ({status}){stderr}\n  hint: {hint}")]
    Manager {
        command: String,
        status: String,
        stderr: String,
        hint: String,
    },

    #[error("{0}")]
    NotInstalled(String),

    #[error("{0}")]
    Conflict(String),

    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(transparent)]
    Config(#[from] crate::Error),

    /// Bad input (a path that cannot go into a service file, a missing binary).
    #[error("{0}")]
    Input(String),

    #[error("{0}")]
    Unsupported(String),
}

impl ServiceError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ServiceError::NeedsRoot { .. } => exit::NEEDS_ROOT,
            ServiceError::Manager { .. } => exit::MANAGER_FAILED,
            ServiceError::NotInstalled(_) => exit::NOT_INSTALLED,
            ServiceError::Conflict(_) => exit::CONFLICT,
            ServiceError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                exit::NEEDS_ROOT
            }
            _ => crate::error::exit::FAILURE,
        }
    }

    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> ServiceError {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            return ServiceError::NeedsRoot {
                what: format!("cannot {op} {}", path.display()),
                detail: String::new(),
            };
        }
        ServiceError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Everything a service file says about this installation.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub scope: Scope,
    /// The `backupd` binary (absolute).
    pub backupd: PathBuf,
    /// The configuration file (absolute).
    pub config: PathBuf,
    /// The account of the system service.
    pub user: String,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub socket: PathBuf,
    /// Every path the daemon writes: state, logs, the socket's folder, repositories, the
    /// metrics file's folder (sorted, without duplicates or paths inside another).
    pub writable: Vec<PathBuf>,
    /// How long the service manager waits for a stop before it kills.
    pub stop_timeout: Duration,
}

/// The runtime folder systemd makes for the system service (`RuntimeDirectory=backupd`).
pub const SYSTEM_RUNTIME_DIR: &str = "/run/backupd";

impl Inputs {
    /// The inputs for `cfg` (read from `config`), the daemon's paths as `cfg` resolves them.
    pub fn new(cfg: &Config, config: &Path, backupd: &Path, scope: Scope) -> Inputs {
        let paths = cfg.paths();
        let mut writable = vec![paths.state_dir.clone(), paths.log_dir.clone()];
        if let Some(dir) = paths.socket.parent() {
            if !(scope == Scope::System && dir == Path::new(SYSTEM_RUNTIME_DIR)) {
                writable.push(dir.to_path_buf());
            }
        }
        for repo in cfg.repositories.values() {
            let p = Path::new(repo.path.expose());
            if p.is_absolute() {
                writable.push(p.to_path_buf());
            }
        }
        if let Some(dir) = cfg.daemon.metrics_file.as_ref().and_then(|m| m.parent()) {
            writable.push(dir.to_path_buf());
        }
        Inputs {
            scope,
            backupd: backupd.to_path_buf(),
            config: config.to_path_buf(),
            user: SYSTEM_USER.to_string(),
            state_dir: paths.state_dir,
            log_dir: paths.log_dir,
            socket: paths.socket,
            writable: minimal_cover(writable),
            stop_timeout: cfg.daemon.shutdown_timeout + Duration::from_secs(15),
        }
    }

    /// Whether systemd should make the socket's folder (the system layout's default).
    pub fn runtime_directory(&self) -> bool {
        self.scope == Scope::System && self.socket.parent() == Some(Path::new(SYSTEM_RUNTIME_DIR))
    }
}

/// Sorted, deduplicated, and without a path that lies inside another one of the list.
fn minimal_cover(mut v: Vec<PathBuf>) -> Vec<PathBuf> {
    v.sort();
    v.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for p in v {
        if !out.iter().any(|q| p.starts_with(q)) {
            out.push(p);
        }
    }
    out
}

/// What an install or uninstall did, one line each for people.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
}

impl Report {
    pub fn say(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }
}

/// The state of an installed unit.
#[derive(Debug)]
pub struct Status {
    pub installed: bool,
    pub running: bool,
    pub lines: Vec<String>,
}

/// Writes `content` to `path` (atomically, fsynced) unless it already holds exactly that;
/// returns whether it changed. Creates the parent folder.
pub fn write_if_changed(path: &Path, content: &str) -> Result<bool, ServiceError> {
    if std::fs::read(path).ok().as_deref() == Some(content.as_bytes()) {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ServiceError::io("create", dir, e))?;
    }
    crate::fsutil::atomic_write(path, content.as_bytes())
        .map_err(|e| ServiceError::io("write", path, e))?;
    Ok(true)
}

/// What `uninstall` says it left in place.
pub fn kept_note(inputs: &Inputs, cfg: &Config) -> Vec<String> {
    let mut v = vec![
        format!(
            "kept the state (schedules, run history) in {}",
            inputs.state_dir.display()
        ),
        format!("kept the logs in {}", inputs.log_dir.display()),
        format!("kept the configuration {}", inputs.config.display()),
    ];
    for (name, r) in &cfg.repositories {
        v.push(format!("kept the repository {name} at {}", r.path));
    }
    v
}

#[cfg(target_os = "linux")]
use systemd as platform;

#[cfg(target_os = "macos")]
use launchd as platform;

#[cfg(windows)]
use windows as platform;

/// Installs (or updates) a mode with this OS's service manager; harmless when repeated.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub fn install(i: &Inputs, cfg: &Config, mode: Mode) -> Result<Report, ServiceError> {
    platform::install(i, cfg, mode)
}

/// Stops and removes a mode; repositories, state and logs stay.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub fn uninstall(i: &Inputs, cfg: &Config, mode: Mode) -> Result<Report, ServiceError> {
    platform::uninstall(i, cfg, mode)
}

/// `start`, `stop` or `restart`.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub fn control(i: &Inputs, mode: Mode, verb: &str) -> Result<Report, ServiceError> {
    platform::control(i, mode, verb)
}

/// Installed? Running? With the service manager's own view.
#[cfg(any(target_os = "linux", target_os = "macos", windows))]
pub fn status(i: &Inputs, mode: Mode) -> Result<Status, ServiceError> {
    platform::status(i, mode)
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
mod unsupported {
    use super::*;
    fn no() -> ServiceError {
        ServiceError::Unsupported(format!(
            "backupctl cannot register services on {} (systemd, launchd and Windows are supported)\n  hint: start `backupd` from your init system",
            std::env::consts::OS
        ))
    }
    pub fn install(_: &Inputs, _: &Config, _: Mode) -> Result<Report, ServiceError> {
        Err(no())
    }
    pub fn uninstall(_: &Inputs, _: &Config, _: Mode) -> Result<Report, ServiceError> {
        Err(no())
    }
    pub fn control(_: &Inputs, _: Mode, _: &str) -> Result<Report, ServiceError> {
        Err(no())
    }
    pub fn status(_: &Inputs, _: Mode) -> Result<Status, ServiceError> {
        Err(no())
    }
}
#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
pub use unsupported::*;

/// Inputs with awkward paths (spaces, quotes, `%`, `$`, `&`, `<`), for the renderers' tests.
#[cfg(test)]
pub(crate) fn sample_inputs(scope: Scope) -> Inputs {
    let text = r#"
[repositories.main]
path = "/srv/my backups/repo 100%"
password_file = "/etc/backupd/password"
[repositories.other]
path = "/srv/a&b <c> \"q\" $HOME"
password_file = "/etc/backupd/password"
[jobs.app]
repository = "main"
paths = ["/srv/app"]
schedule = "30 2 * * *"
[daemon]
state_dir = "/var/lib/backupd state"
metrics_file = "/var/lib/node exporter/backupd.prom"
"#;
    let cfg = Config::parse(text, Path::new("/etc/my backups/backupd's.toml")).expect("sample");
    Inputs::new(
        &cfg,
        Path::new("/etc/my backups/backupd's \"100%\" $HOME.toml"),
        Path::new("/opt/back up/bin/backupd"),
        scope,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_cover_state_logs_socket_repositories_and_metrics() {
        let i = sample_inputs(Scope::System);
        let w: Vec<&str> = i.writable.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            w,
            vec![
                "/srv/a&b <c> \"q\" $HOME",
                "/srv/my backups/repo 100%",
                "/var/lib/backupd state",
                "/var/lib/node exporter",
            ]
        );
        assert_eq!(i.log_dir, Path::new("/var/lib/backupd state/logs"));
        assert!(!i.runtime_directory(), "the socket is in the state folder");
        assert_eq!(i.stop_timeout, Duration::from_secs(45));
    }

    #[test]
    fn writable_paths_are_a_minimal_cover() {
        let v = minimal_cover(vec![
            "/var/lib/backupd".into(),
            "/var/lib/backupd/logs".into(),
            "/srv/repo".into(),
            "/srv/repo".into(),
            "/srv/repo2".into(),
        ]);
        assert_eq!(
            v,
            vec![
                PathBuf::from("/srv/repo"),
                "/srv/repo2".into(),
                "/var/lib/backupd".into()
            ]
        );
    }
}
