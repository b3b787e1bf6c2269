//! Where things live by default: the configuration file, the daemon's state, logs and socket, per OS and per user.
//!
//! Run as root (a system service) on Unix: `/etc/backupd/backupd.toml`, `/var/lib/backupd`,
//! `/var/log/backupd`, `/run/backupd/backupd.sock`. Otherwise the user's directories as the
//! `directories` crate names them (on Linux the XDG ones: `~/.config/backupd/backupd.toml`,
//! `~/.local/state/backupd`, its `logs/`, and `$XDG_RUNTIME_DIR/backupd.sock`). The
//! `[daemon]` table of the configuration overrides each of them; `BACKUPD_CONFIG` or
//! `--config` names another configuration file. `BACKUPD_LAYOUT=system` (set by the system
//! units, whose daemon runs as the `backupd` account) picks the root layout without root.

use crate::config::Config;
use std::path::PathBuf;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "BACKUPD_CONFIG";

/// The environment variable that picks the layout: `system` (the system service's paths, for
/// the system units, which run as the `backupd` account, not root) or `user`.
pub const LAYOUT_ENV: &str = "BACKUPD_LAYOUT";

/// True when the system service's layout applies: `BACKUPD_LAYOUT=system`, or running as the
/// system's administrator (unless `BACKUPD_LAYOUT=user`).
pub fn is_system() -> bool {
    match std::env::var(LAYOUT_ENV).as_deref() {
        Ok("system") => true,
        Ok("user") => false,
        _ => is_root(),
    }
}

/// True when running as the system's administrator.
pub fn is_root() -> bool {
    #[cfg(unix)]
    {
        nix::unistd::geteuid().is_root()
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn project() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "backupd")
}

/// The default configuration file.
pub fn default_config() -> PathBuf {
    if let Some(p) = std::env::var_os(CONFIG_ENV) {
        return PathBuf::from(p);
    }
    if is_system() && cfg!(unix) {
        return PathBuf::from("/etc/backupd/backupd.toml");
    }
    match project() {
        Some(p) => p.config_dir().join("backupd.toml"),
        None => PathBuf::from("backupd.toml"),
    }
}

/// The default state folder.
pub fn default_state_dir() -> PathBuf {
    if is_system() && cfg!(unix) {
        return PathBuf::from("/var/lib/backupd");
    }
    match project() {
        Some(p) => p
            .state_dir()
            .map(|d| d.to_path_buf())
            .unwrap_or_else(|| p.data_local_dir().to_path_buf()),
        None => PathBuf::from(".backupd-state"),
    }
}

/// The default log folder.
pub fn default_log_dir() -> PathBuf {
    if is_system() && cfg!(unix) {
        return PathBuf::from("/var/log/backupd");
    }
    default_state_dir().join("logs")
}

/// The default control socket.
pub fn default_socket() -> PathBuf {
    if is_system() && cfg!(unix) {
        return PathBuf::from("/run/backupd/backupd.sock");
    }
    match project().and_then(|p| p.runtime_dir().map(|d| d.to_path_buf())) {
        Some(d) => d.join("backupd.sock"),
        None => default_state_dir().join("backupd.sock"),
    }
}

/// The paths a configuration resolves to.
#[derive(Debug, Clone)]
pub struct DaemonPaths {
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub socket: PathBuf,
}

impl DaemonPaths {
    pub fn of(cfg: &Config) -> DaemonPaths {
        let d = &cfg.daemon;
        let state_dir = d.state_dir.clone().unwrap_or_else(default_state_dir);
        DaemonPaths {
            log_dir: d.log_dir.clone().unwrap_or_else(|| {
                if d.state_dir.is_some() {
                    state_dir.join("logs")
                } else {
                    default_log_dir()
                }
            }),
            socket: d.socket.clone().unwrap_or_else(|| {
                if d.state_dir.is_some() {
                    state_dir.join("backupd.sock")
                } else {
                    default_socket()
                }
            }),
            state_dir,
        }
    }
}
