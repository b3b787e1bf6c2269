//! Where things live by default: the configuration file, the daemon's state, logs and socket, per OS and per user.
//!
//! Run as root (a system service) on Unix: `/etc/backupd/backupd.toml`, `/var/lib/backupd`,
//! `/var/log/backupd`, `/run/backupd/backupd.sock`. Otherwise the user's directories as the
//! `directories` crate names them (on Linux the XDG ones: `~/.config/backupd/backupd.toml`,
//! `~/.local/state/backupd`, its `logs/`, and `$XDG_RUNTIME_DIR/backupd.sock`). The
//! `[daemon]` table of the configuration overrides each of them; `BACKUPD_CONFIG` or
//! `--config` names another configuration file. `BACKUPD_LAYOUT=system` (set by the system
//! units, whose daemon runs as the `backupd` account) picks the root layout without root.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where Windows' named pipes live.
pub const PIPE_PREFIX: &str = r"\\.\pipe\";

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

/// The default control socket (on Windows the named pipe `\\.\pipe\backupd`).
pub fn default_socket() -> PathBuf {
    if cfg!(windows) {
        return PathBuf::from(PIPE_PREFIX.to_string() + "backupd");
    }
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
    /// The paths of a daemon whose configuration sets these (each `None` takes its default; a
    /// set `state_dir` also holds the logs and the socket unless those are set too).
    pub fn resolve(
        state_dir: Option<&Path>,
        log_dir: Option<&Path>,
        socket: Option<&Path>,
    ) -> DaemonPaths {
        let chosen = state_dir.is_some();
        let state_dir = state_dir.map_or_else(default_state_dir, Path::to_path_buf);
        let near = |name: &str, default: fn() -> PathBuf| {
            if chosen {
                state_dir.join(name)
            } else {
                default()
            }
        };
        DaemonPaths {
            log_dir: log_dir.map_or_else(|| near("logs", default_log_dir), Path::to_path_buf),
            socket: socket.map_or_else(|| near("backupd.sock", default_socket), Path::to_path_buf),
            state_dir,
        }
    }
}

/// The named pipe a control socket path stands for on Windows: the path itself when it is a
/// pipe name (`\\.\pipe\NAME`), else `\\.\pipe\backupd-` and 16 hex digits of the path's
/// SHA-256 (so each state folder has its own pipe, as it has its own socket on Unix).
// Used by the Windows control pipe only; unit-tested on every platform.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn pipe_name(socket: &Path) -> String {
    let s = socket.to_string_lossy();
    if s.len() > PIPE_PREFIX.len() && s[..PIPE_PREFIX.len()].eq_ignore_ascii_case(PIPE_PREFIX) {
        return s.into_owned();
    }
    let h = Sha256::digest(s.as_bytes());
    format!("{PIPE_PREFIX}backupd-{}", hex::encode(&h[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_names() {
        assert_eq!(pipe_name(Path::new(r"\\.\pipe\mine")), r"\\.\pipe\mine");
        let a = pipe_name(Path::new(r"C:\state\backupd.sock"));
        let b = pipe_name(Path::new(r"D:\other\backupd.sock"));
        assert!(
            a.starts_with(r"\\.\pipe\backupd-") && a.len() == PIPE_PREFIX.len() + 24,
            "{a}"
        );
        assert_ne!(a, b);
        assert_eq!(a, pipe_name(Path::new(r"C:\state\backupd.sock")));
    }
}
