//! systemd: the units rendered from `systemd/` (the system and user service, the OS-timer's oneshot service and timer), and on Linux their installation through `systemctl`.

use super::render::{fill, path_text, systemd_command, systemd_path_entry};
use super::{Inputs, Mode, Scope, ServiceError};

const SYSTEM_SERVICE: &str = include_str!("../../systemd/backupd.service");
const USER_SERVICE: &str = include_str!("../../systemd/backupd-user.service");
const RUN_DUE_SERVICE: &str = include_str!("../../systemd/backupd-run-due.service");
const RUN_DUE_USER_SERVICE: &str = include_str!("../../systemd/backupd-run-due-user.service");
const RUN_DUE_TIMER: &str = include_str!("../../systemd/backupd-run-due.timer");

/// The resident daemon's unit.
pub const DAEMON_UNIT: &str = "backupd.service";
/// The OS-timer mode's units.
pub const RUN_DUE_UNIT: &str = "backupd-run-due.service";
pub const TIMER_UNIT: &str = "backupd-run-due.timer";

fn backupd_command(i: &Inputs, verb: &str) -> Result<String, ServiceError> {
    Ok(systemd_command(&[
        path_text(&i.backupd)?,
        "--config",
        path_text(&i.config)?,
        verb,
    ]))
}

fn read_write_paths(i: &Inputs) -> Result<String, ServiceError> {
    let mut v = Vec::new();
    for p in &i.writable {
        // State and logs are made by `install`; a repository may not exist yet (the
        // unit must still start; backupd then reports the missing repository).
        let ours = *p == i.state_dir || *p == i.log_dir;
        v.push(systemd_path_entry(path_text(p)?, !ours));
    }
    Ok(v.join(" "))
}

fn stop_timeout(i: &Inputs) -> String {
    format!("{}s", i.stop_timeout.as_secs().max(1))
}

/// The resident daemon's unit for `i.scope`.
pub fn daemon_unit(i: &Inputs) -> Result<String, ServiceError> {
    let check = backupd_command(i, "check-config")?;
    let run = backupd_command(i, "run")?;
    Ok(match i.scope {
        Scope::System => fill(
            "systemd/backupd.service",
            SYSTEM_SERVICE,
            &[
                ("USER", i.user.clone()),
                ("EXEC_CHECK_CONFIG", check),
                ("EXEC_RUN", run),
                ("STOP_TIMEOUT", stop_timeout(i)),
                (
                    "RUNTIME_DIRECTORY",
                    if i.runtime_directory() {
                        "RuntimeDirectory=backupd".to_string()
                    } else {
                        "# The control socket's folder is writable (ReadWritePaths).".to_string()
                    },
                ),
                ("READ_WRITE_PATHS", read_write_paths(i)?),
            ],
        ),
        Scope::User => fill(
            "systemd/backupd-user.service",
            USER_SERVICE,
            &[
                ("EXEC_CHECK_CONFIG", check),
                ("EXEC_RUN", run),
                ("STOP_TIMEOUT", stop_timeout(i)),
            ],
        ),
    })
}

/// The OS-timer mode's oneshot service for `i.scope`.
pub fn run_due_unit(i: &Inputs) -> Result<String, ServiceError> {
    let run_due = backupd_command(i, "run-due")?;
    Ok(match i.scope {
        Scope::System => fill(
            "systemd/backupd-run-due.service",
            RUN_DUE_SERVICE,
            &[
                ("USER", i.user.clone()),
                ("EXEC_RUN_DUE", run_due),
                ("STOP_TIMEOUT", stop_timeout(i)),
                ("READ_WRITE_PATHS", read_write_paths(i)?),
            ],
        ),
        Scope::User => fill(
            "systemd/backupd-run-due-user.service",
            RUN_DUE_USER_SERVICE,
            &[("EXEC_RUN_DUE", run_due), ("STOP_TIMEOUT", stop_timeout(i))],
        ),
    })
}

/// The OS-timer mode's timer (the same for both scopes).
pub fn timer_unit() -> String {
    RUN_DUE_TIMER.to_string()
}

/// The unit files of a mode: (file name, content).
pub fn units(i: &Inputs, mode: Mode) -> Result<Vec<(&'static str, String)>, ServiceError> {
    Ok(match mode {
        Mode::Daemon => vec![(DAEMON_UNIT, daemon_unit(i)?)],
        Mode::Timer => vec![(RUN_DUE_UNIT, run_due_unit(i)?), (TIMER_UNIT, timer_unit())],
    })
}

/// The unit a mode enables and starts.
pub fn main_unit(mode: Mode) -> &'static str {
    match mode {
        Mode::Daemon => DAEMON_UNIT,
        Mode::Timer => TIMER_UNIT,
    }
}

#[cfg(target_os = "linux")]
pub use self::linux::*;

#[cfg(target_os = "linux")]
mod linux {
    use super::super::{kept_note, write_if_changed, Report, Status};
    use super::*;
    use crate::config::Config;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Where the unit files of a scope go.
    pub fn unit_dir(scope: Scope) -> PathBuf {
        match scope {
            Scope::System => PathBuf::from("/etc/systemd/system"),
            Scope::User => std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .unwrap_or_else(|| PathBuf::from(".config"))
                .join("systemd/user"),
        }
    }

    fn systemctl_words(scope: Scope, args: &[&str]) -> Vec<String> {
        let mut v = vec!["systemctl".to_string()];
        if scope == Scope::User {
            v.push("--user".into());
        }
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Runs a command; a failure says which command, its error output and what to do.
    fn run(words: &[String], scope: Scope) -> Result<String, ServiceError> {
        let out = Command::new(&words[0])
            .args(&words[1..])
            .output()
            .map_err(|e| ServiceError::Manager {
                command: words.join(" "),
                status: e.to_string(),
                stderr: String::new(),
                hint: format!("is {} installed and on PATH?", words[0]),
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let command = words.join(" ");
        let lower = stderr.to_lowercase();
        if lower.contains("access denied")
            || lower.contains("interactive authentication required")
            || lower.contains("permission denied")
        {
            return Err(ServiceError::NeedsRoot {
                what: format!("`{command}`"),
                detail: format!(": {stderr}"),
            });
        }
        let hint = if scope == Scope::User
            && (lower.contains("failed to connect to bus") || lower.contains("no medium found"))
        {
            "no user service manager is reachable: log in to a session of this user (or run `loginctl enable-linger USER` as root and use `machinectl shell USER@`), or set XDG_RUNTIME_DIR=/run/user/$(id -u)".to_string()
        } else if scope == Scope::System && lower.contains("failed to connect to bus") {
            "systemd is not running as the init system here; on a machine without systemd, run `backupd` under your init system or by hand".to_string()
        } else {
            "see the message above, and `journalctl -u backupd` for the service's own log"
                .to_string()
        };
        Err(ServiceError::Manager {
            command,
            status: out.status.to_string(),
            stderr: if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            },
            hint,
        })
    }

    fn systemctl(scope: Scope, args: &[&str]) -> Result<String, ServiceError> {
        run(&systemctl_words(scope, args), scope)
    }

    fn installed(scope: Scope, mode: Mode) -> bool {
        unit_dir(scope).join(main_unit(mode)).exists()
    }

    fn other(mode: Mode) -> Mode {
        match mode {
            Mode::Daemon => Mode::Timer,
            Mode::Timer => Mode::Daemon,
        }
    }

    fn check_scope(scope: Scope) -> Result<(), ServiceError> {
        if scope == Scope::System && !crate::paths::is_system() {
            return Err(ServiceError::NeedsRoot {
                what: "a system service is installed in /etc/systemd/system by root".into(),
                detail: String::new(),
            });
        }
        Ok(())
    }

    /// Creates the dedicated account when it is missing.
    fn ensure_user(i: &Inputs, r: &mut Report) -> Result<(), ServiceError> {
        if nix::unistd::User::from_name(&i.user)
            .ok()
            .flatten()
            .is_some()
        {
            return Ok(());
        }
        let nologin = ["/usr/sbin/nologin", "/sbin/nologin"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("/bin/false");
        run(
            &[
                "useradd".into(),
                "--system".into(),
                "--user-group".into(),
                "--no-create-home".into(),
                "--home-dir".into(),
                path_text(&i.state_dir)?.into(),
                "--shell".into(),
                nologin.into(),
                "--comment".into(),
                "backupd backup daemon".into(),
                i.user.clone(),
            ],
            Scope::System,
        )?;
        r.say(format!("created the system user {}", i.user));
        Ok(())
    }

    /// Makes the state and log folders, owned by the service's account for a system service.
    fn prepare_dirs(i: &Inputs) -> Result<(), ServiceError> {
        let owner = match i.scope {
            Scope::System => nix::unistd::User::from_name(&i.user).ok().flatten(),
            Scope::User => None,
        };
        for d in [&i.state_dir, &i.log_dir] {
            std::fs::create_dir_all(d).map_err(|e| ServiceError::io("create", d, e))?;
            if let Some(u) = &owner {
                nix::unistd::chown(d.as_path(), Some(u.uid), Some(u.gid)).map_err(|e| {
                    ServiceError::io("change the owner of", d, std::io::Error::from(e))
                })?;
            }
        }
        Ok(())
    }

    /// Notes about repositories the service's account cannot write.
    fn repository_notes(i: &Inputs, cfg: &Config, r: &mut Report) {
        if i.scope != Scope::System {
            return;
        }
        let Some(u) = nix::unistd::User::from_name(&i.user).ok().flatten() else {
            return;
        };
        for (name, repo) in &cfg.repositories {
            let p = Path::new(repo.path.expose());
            match std::fs::metadata(p) {
                Ok(m) => {
                    use std::os::unix::fs::MetadataExt;
                    if m.uid() != u.uid.as_raw() {
                        r.say(format!("note: the repository {name} ({}) belongs to uid {}; the service runs as {} and must be able to write it: `chown -R {}: {}`", repo.path, m.uid(), i.user, i.user, repo.path));
                    }
                }
                Err(_) if p.is_absolute() => r.say(format!("note: the repository {name} ({}) does not exist yet; create it (`backupctl init`) as {} or chown it to {}, then `backupctl service restart`", repo.path, i.user, i.user)),
                Err(_) => {}
            }
        }
    }

    /// Installs (or updates) a mode; idempotent: a unit is rewritten only when it changed,
    /// and a running service is restarted only then.
    pub fn install(i: &Inputs, cfg: &Config, mode: Mode) -> Result<Report, ServiceError> {
        check_scope(i.scope)?;
        let mut r = Report::default();
        if installed(i.scope, other(mode)) {
            let o = other(mode);
            return Err(ServiceError::Conflict(format!(
                "the {} is installed ({}): backupd runs either as a resident service or from the OS timer, not both\n  hint: `backupctl {} uninstall {}` first",
                match o { Mode::Daemon => "resident service", Mode::Timer => "OS-timer mode" },
                unit_dir(i.scope).join(main_unit(o)).display(),
                o.command(),
                i.scope.flag()
            )));
        }
        if i.scope == Scope::System {
            ensure_user(i, &mut r)?;
        }
        prepare_dirs(i)?;
        let dir = unit_dir(i.scope);
        let mut changed = false;
        for (name, content) in units(i, mode)? {
            let path = dir.join(name);
            if write_if_changed(&path, &content)? {
                r.say(format!("wrote {}", path.display()));
                changed = true;
            } else {
                r.say(format!("{} is up to date", path.display()));
            }
        }
        if changed {
            systemctl(i.scope, &["daemon-reload"])?;
        }
        let unit = main_unit(mode);
        systemctl(i.scope, &["enable", "--quiet", unit])?;
        let was_active = systemctl(i.scope, &["is-active", "--quiet", unit]).is_ok();
        if was_active && changed {
            systemctl(i.scope, &["restart", unit])?;
            r.say(format!("restarted {unit} with the new unit"));
        } else {
            systemctl(i.scope, &["start", unit])?;
            r.say(format!(
                "{unit} is enabled and {}",
                if was_active { "running" } else { "started" }
            ));
        }
        if mode == Mode::Timer {
            // A first tick now: jobs new to the state are seen (their slots count from now),
            // anything already due runs, and the first regular tick is on time.
            systemctl(i.scope, &["start", "--no-block", RUN_DUE_UNIT])?;
        }
        if i.scope == Scope::User {
            linger(&mut r);
        }
        repository_notes(i, cfg, &mut r);
        r.say(format!(
            "state {}, logs {}",
            i.state_dir.display(),
            i.log_dir.display()
        ));
        Ok(r)
    }

    /// Keeps the user's manager (and so the service) running without a login session.
    fn linger(r: &mut Report) {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name);
        let Some(user) = user else {
            r.say("note: could not find this user's name to enable linger; run `loginctl enable-linger`");
            return;
        };
        if Path::new("/var/lib/systemd/linger").join(&user).exists() {
            r.say(format!(
                "linger is enabled for {user}: the service runs without a login session and starts at boot"
            ));
            return;
        }
        match run(
            &["loginctl".into(), "enable-linger".into(), user.clone()],
            Scope::User,
        ) {
            Ok(_) => r.say(format!(
                "linger is enabled for {user}: the service runs without a login session and starts at boot"
            )),
            Err(e) => r.say(format!(
                "warning: could not enable linger for {user} ({e}); without it the service stops at logout: ask root to run `loginctl enable-linger {user}`"
            )),
        }
    }

    /// Stops and removes a mode's units; repositories, state and logs stay. Harmless when
    /// nothing is installed.
    pub fn uninstall(i: &Inputs, cfg: &Config, mode: Mode) -> Result<Report, ServiceError> {
        check_scope(i.scope)?;
        let mut r = Report::default();
        let dir = unit_dir(i.scope);
        let files: Vec<PathBuf> = units(i, mode)?
            .into_iter()
            .map(|(n, _)| dir.join(n))
            .filter(|p| p.exists())
            .collect();
        if files.is_empty() {
            r.say(format!(
                "backupd's {} is not installed ({} {}): nothing to do",
                match mode {
                    Mode::Daemon => "service",
                    Mode::Timer => "OS timer",
                },
                i.scope.flag(),
                dir.join(main_unit(mode)).display()
            ));
            return Ok(r);
        }
        let unit = main_unit(mode);
        systemctl(i.scope, &["disable", "--now", "--quiet", unit])?;
        if mode == Mode::Timer {
            systemctl(i.scope, &["stop", RUN_DUE_UNIT])?;
        }
        r.say(format!("stopped and disabled {unit}"));
        for f in &files {
            std::fs::remove_file(f).map_err(|e| ServiceError::io("remove", f, e))?;
            r.say(format!("removed {}", f.display()));
        }
        let _ = crate::fsutil::sync_dir(&dir);
        systemctl(i.scope, &["daemon-reload"])?;
        for (n, _) in units(i, mode)? {
            let _ = systemctl(i.scope, &["reset-failed", n]);
        }
        for line in kept_note(i, cfg) {
            r.say(line);
        }
        Ok(r)
    }

    fn require_installed(i: &Inputs, mode: Mode) -> Result<(), ServiceError> {
        if installed(i.scope, mode) {
            return Ok(());
        }
        Err(ServiceError::NotInstalled(format!(
            "backupd's {} is not installed ({} does not exist)\n  hint: `backupctl {} install {}`",
            mode.command(),
            unit_dir(i.scope).join(main_unit(mode)).display(),
            mode.command(),
            i.scope.flag()
        )))
    }

    /// `start`, `stop` or `restart` of the installed mode's main unit.
    pub fn control(i: &Inputs, mode: Mode, verb: &str) -> Result<Report, ServiceError> {
        require_installed(i, mode)?;
        let unit = main_unit(mode);
        systemctl(i.scope, &[verb, unit])?;
        let mut r = Report::default();
        r.say(format!("{verb}: {unit} ok"));
        Ok(r)
    }

    /// Whether the mode is installed and running, with systemd's view of it.
    pub fn status(i: &Inputs, mode: Mode) -> Result<Status, ServiceError> {
        let unit = main_unit(mode);
        let path = unit_dir(i.scope).join(unit);
        if !path.exists() {
            return Ok(Status {
                installed: false,
                running: false,
                lines: vec![format!(
                    "{unit} is not installed ({} does not exist); `backupctl {} install {}` installs it",
                    path.display(),
                    mode.command(),
                    i.scope.flag()
                )],
            });
        }
        let props = "ActiveState,SubState,MainPID,UnitFileState,ActiveEnterTimestamp,NRestarts,LastTriggerUSec,NextElapseUSecRealtime";
        let mut lines = vec![format!("{unit}: {}", path.display())];
        let show = systemctl(i.scope, &["show", "--property", props, unit])?;
        let mut running = false;
        for l in show.lines() {
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            if k == "ActiveState" {
                running = v == "active";
            }
            let skip = v.is_empty()
                || (mode == Mode::Daemon
                    && matches!(k, "LastTriggerUSec" | "NextElapseUSecRealtime"))
                || (mode == Mode::Timer && matches!(k, "MainPID" | "NRestarts"));
            if !skip {
                lines.push(format!("  {k}: {v}"));
            }
        }
        if mode == Mode::Timer {
            if let Ok(s) = systemctl(
                i.scope,
                &["show", "--property", "Result,ExecMainStatus", RUN_DUE_UNIT],
            ) {
                for l in s.lines().filter(|l| !l.ends_with('=')) {
                    lines.push(format!("  last run-due {}", l.replacen('=', ": ", 1)));
                }
            }
        }
        Ok(Status {
            installed: true,
            running,
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{sample_inputs, Inputs};
    use super::*;
    use std::path::PathBuf;

    fn line<'a>(unit: &'a str, key: &str) -> &'a str {
        unit.lines()
            .find(|l| l.starts_with(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in\n{unit}"))
    }

    #[test]
    fn system_unit_quotes_paths_and_has_the_hardening() {
        let u = daemon_unit(&sample_inputs(Scope::System)).unwrap();
        assert_eq!(
            line(&u, "ExecStart"),
            r#"ExecStart="/opt/back up/bin/backupd" "--config" "/etc/my backups/backupd's \"100%%\" $$HOME.toml" "run""#
        );
        assert_eq!(
            line(&u, "ExecStartPre"),
            r#"ExecStartPre="/opt/back up/bin/backupd" "--config" "/etc/my backups/backupd's \"100%%\" $$HOME.toml" "check-config""#
        );
        assert_eq!(
            line(&u, "ReadWritePaths"),
            r#"ReadWritePaths=-"/srv/a&b <c> \"q\" $HOME" -"/srv/my backups/repo 100%%" "/var/lib/backupd state" -"/var/lib/node exporter""#
        );
        for want in [
            "User=backupd",
            "Restart=on-failure",
            "After=network-online.target",
            "Wants=network-online.target",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "PrivateTmp=yes",
            "Nice=10",
            "IOSchedulingClass=idle",
            "CPUSchedulingPolicy=batch",
            "Environment=BACKUPD_LAYOUT=system",
            "TimeoutStopSec=45s",
            "WantedBy=multi-user.target",
        ] {
            assert!(u.lines().any(|l| l == want), "{want} missing in\n{u}");
        }
        assert!(!u.contains("RuntimeDirectory="));
    }

    #[test]
    fn default_layout_gets_a_runtime_directory() {
        let mut i: Inputs = sample_inputs(Scope::System);
        i.socket = PathBuf::from("/run/backupd/backupd.sock");
        assert!(daemon_unit(&i)
            .unwrap()
            .lines()
            .any(|l| l == "RuntimeDirectory=backupd"));
    }

    #[test]
    fn user_unit_has_no_account_and_wants_default_target() {
        let u = daemon_unit(&sample_inputs(Scope::User)).unwrap();
        assert!(!u.contains("User="), "{u}");
        assert!(u.lines().any(|l| l == "WantedBy=default.target"));
        assert!(u.lines().any(|l| l == "Restart=on-failure"));
        assert!(line(&u, "ExecStart").ends_with(r#" "run""#));
    }

    #[test]
    fn timer_mode_runs_run_due_every_minute_persistently() {
        for scope in [Scope::System, Scope::User] {
            let files = units(&sample_inputs(scope), Mode::Timer).unwrap();
            assert_eq!(files[0].0, RUN_DUE_UNIT);
            assert!(line(&files[0].1, "ExecStart").ends_with(r#" "run-due""#));
            assert!(files[0].1.lines().any(|l| l == "Type=oneshot"));
            assert_eq!(files[1].0, TIMER_UNIT);
            assert!(files[1].1.lines().any(|l| l == "Persistent=true"));
            assert!(files[1].1.lines().any(|l| l == "OnCalendar=*-*-* *:*:00"));
        }
    }
}
