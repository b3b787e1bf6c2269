//! launchd: the LaunchDaemon/LaunchAgent plist of the resident daemon and the OS-timer mode's calendar job, rendered from `launchd/`, and on macOS their installation through `launchctl`.

use super::render::{fill, path_text, xml_text};
use super::{Inputs, Mode, Scope, ServiceError};
use std::path::PathBuf;

const DAEMON_PLIST: &str = include_str!("../../launchd/backupd.plist");
const RUN_DUE_PLIST: &str = include_str!("../../launchd/backupd-run-due.plist");

/// The jobs' labels (also their file names, with `.plist`).
pub const DAEMON_LABEL: &str = "org.backupd.daemon";
pub const RUN_DUE_LABEL: &str = "org.backupd.run-due";

pub fn label(mode: Mode) -> &'static str {
    match mode {
        Mode::Daemon => DAEMON_LABEL,
        Mode::Timer => RUN_DUE_LABEL,
    }
}

fn program_arguments(i: &Inputs, verb: &str) -> Result<String, ServiceError> {
    let words = [
        path_text(&i.backupd)?,
        "--config",
        path_text(&i.config)?,
        verb,
    ];
    Ok(words
        .iter()
        .map(|w| format!("\t\t<string>{}</string>", xml_text(w)))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn log_path(i: &Inputs, mode: Mode, stream: &str) -> Result<String, ServiceError> {
    let name = match mode {
        Mode::Daemon => format!("launchd-backupd.{stream}.log"),
        Mode::Timer => format!("launchd-run-due.{stream}.log"),
    };
    Ok(xml_text(path_text(&i.log_dir.join(name))?))
}

/// The plist of a mode.
pub fn plist(i: &Inputs, mode: Mode) -> Result<String, ServiceError> {
    Ok(match mode {
        Mode::Daemon => fill(
            "launchd/backupd.plist",
            DAEMON_PLIST,
            &[
                ("LABEL", DAEMON_LABEL.to_string()),
                ("PROGRAM_ARGUMENTS", program_arguments(i, "run")?),
                ("STOP_TIMEOUT", i.stop_timeout.as_secs().max(1).to_string()),
                ("STDOUT", log_path(i, mode, "out")?),
                ("STDERR", log_path(i, mode, "err")?),
            ],
        ),
        Mode::Timer => fill(
            "launchd/backupd-run-due.plist",
            RUN_DUE_PLIST,
            &[
                ("LABEL", RUN_DUE_LABEL.to_string()),
                ("PROGRAM_ARGUMENTS", program_arguments(i, "run-due")?),
                ("CALENDAR", every_minute()),
                ("STDOUT", log_path(i, mode, "out")?),
                ("STDERR", log_path(i, mode, "err")?),
            ],
        ),
    })
}

/// StartCalendarInterval entries for minute 0 to 59 of every hour: unambiguous, where an
/// empty dictionary's meaning is left to launchd's reading of wildcards.
fn every_minute() -> String {
    (0..60)
        .map(|m| format!("\t\t<dict><key>Minute</key><integer>{m}</integer></dict>"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a scope's plists go.
pub fn plist_dir(scope: Scope) -> PathBuf {
    match scope {
        Scope::System => PathBuf::from("/Library/LaunchDaemons"),
        Scope::User => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join("Library/LaunchAgents"),
    }
}

#[cfg(target_os = "macos")]
pub use self::macos::*;

#[cfg(target_os = "macos")]
mod macos {
    use super::super::{kept_note, write_if_changed, Report, Status};
    use super::*;
    use crate::config::Config;
    use std::process::Command;

    fn domain(scope: Scope) -> String {
        match scope {
            Scope::System => "system".into(),
            Scope::User => format!("gui/{}", nix::unistd::geteuid().as_raw()),
        }
    }

    fn launchctl(args: &[&str]) -> Result<String, ServiceError> {
        let out =
            Command::new("launchctl")
                .args(args)
                .output()
                .map_err(|e| ServiceError::Manager {
                    command: format!("launchctl {}", args.join(" ")),
                    status: e.to_string(),
                    stderr: String::new(),
                    hint: "launchctl is part of macOS; is PATH set?".into(),
                })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let command = format!("launchctl {}", args.join(" "));
        if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
            return Err(ServiceError::NeedsRoot {
                what: format!("`{command}`"),
                detail: format!(": {stderr}"),
            });
        }
        Err(ServiceError::Manager {
            command,
            status: out.status.to_string(),
            stderr: format!(": {stderr}"),
            hint: "see `log show --predicate 'subsystem == \"com.apple.xpc.launchd\"' --last 5m`"
                .into(),
        })
    }

    fn path(scope: Scope, mode: Mode) -> PathBuf {
        plist_dir(scope).join(format!("{}.plist", label(mode)))
    }

    pub fn install(i: &Inputs, _cfg: &Config, mode: Mode) -> Result<Report, ServiceError> {
        if i.scope == Scope::System && !crate::paths::is_system() {
            return Err(ServiceError::NeedsRoot {
                what: "a LaunchDaemon is installed in /Library/LaunchDaemons by root".into(),
                detail: String::new(),
            });
        }
        let mut r = Report::default();
        for d in [&i.state_dir, &i.log_dir] {
            std::fs::create_dir_all(d).map_err(|e| ServiceError::io("create", d, e))?;
        }
        let p = path(i.scope, mode);
        let changed = write_if_changed(&p, &plist(i, mode)?)?;
        let target = format!("{}/{}", domain(i.scope), label(mode));
        let loaded = launchctl(&["print", &target]).is_ok();
        if loaded && changed {
            let _ = launchctl(&["bootout", &target]);
        }
        if !loaded || changed {
            launchctl(&[
                "bootstrap",
                &domain(i.scope),
                p.to_str().unwrap_or_default(),
            ])?;
        }
        let _ = launchctl(&["enable", &target]);
        r.say(format!(
            "{} {} ({target} loaded)",
            if changed { "wrote" } else { "up to date:" },
            p.display()
        ));
        Ok(r)
    }

    pub fn uninstall(i: &Inputs, cfg: &Config, mode: Mode) -> Result<Report, ServiceError> {
        let mut r = Report::default();
        let p = path(i.scope, mode);
        let target = format!("{}/{}", domain(i.scope), label(mode));
        let _ = launchctl(&["bootout", &target]);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| ServiceError::io("remove", &p, e))?;
            r.say(format!("stopped {target} and removed {}", p.display()));
        } else {
            r.say(format!("{} is not installed: nothing to do", p.display()));
        }
        r.lines.extend(kept_note(i, cfg));
        Ok(r)
    }

    pub fn control(i: &Inputs, mode: Mode, verb: &str) -> Result<Report, ServiceError> {
        let p = path(i.scope, mode);
        if !p.exists() {
            return Err(ServiceError::NotInstalled(format!(
                "{} does not exist\n  hint: `backupctl {} install {}`",
                p.display(),
                mode.command(),
                i.scope.flag()
            )));
        }
        let target = format!("{}/{}", domain(i.scope), label(mode));
        match verb {
            "start" => launchctl(&["kickstart", &target]),
            "restart" => launchctl(&["kickstart", "-k", &target]),
            _ => launchctl(&["kill", "SIGTERM", &target]),
        }?;
        let mut r = Report::default();
        r.say(format!("{verb}: {target} ok"));
        Ok(r)
    }

    pub fn status(i: &Inputs, mode: Mode) -> Result<Status, ServiceError> {
        let p = path(i.scope, mode);
        let target = format!("{}/{}", domain(i.scope), label(mode));
        if !p.exists() {
            return Ok(Status {
                installed: false,
                running: false,
                lines: vec![format!("{} is not installed", p.display())],
            });
        }
        let out = launchctl(&["print", &target]).unwrap_or_default();
        let running = out.lines().any(|l| l.trim() == "state = running");
        let mut lines = vec![format!("{target}: {}", p.display())];
        lines.extend(
            out.lines()
                .map(str::trim)
                .filter(|l| {
                    l.starts_with("state =")
                        || l.starts_with("pid =")
                        || l.starts_with("last exit code =")
                })
                .map(|l| format!("  {l}")),
        );
        Ok(Status {
            installed: true,
            running,
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::sample_inputs;
    use super::*;

    #[test]
    fn plists_escape_arguments_and_have_the_keys() {
        for scope in [Scope::System, Scope::User] {
            let d = plist(&sample_inputs(scope), Mode::Daemon).unwrap();
            assert!(
                d.contains(
                    "<string>/etc/my backups/backupd&apos;s &quot;100%&quot; $HOME.toml</string>"
                ),
                "{d}"
            );
            for k in [
                "RunAtLoad",
                "KeepAlive",
                "StandardOutPath",
                "StandardErrorPath",
                "LowPriorityIO",
                "ProcessType",
            ] {
                assert!(d.contains(&format!("<key>{k}</key>")), "{k}");
            }
            assert!(
                d.contains("<string>/var/lib/backupd state/logs/launchd-backupd.err.log</string>")
            );
            let t = plist(&sample_inputs(scope), Mode::Timer).unwrap();
            assert!(t.contains("<key>StartCalendarInterval</key>"));
            assert!(t.contains("<string>run-due</string>"));
            assert!(!t.contains("RunAtLoad"));
        }
    }

    #[test]
    fn calendar_has_every_minute_once() {
        let c = every_minute();
        assert_eq!(c.lines().count(), 60);
        assert!(c.contains("<integer>0</integer>") && c.contains("<integer>59</integer>"));
    }
}
