//! Windows: the Task Scheduler task of the OS-timer mode rendered from `windows/` (UTF-16, as Task Scheduler exports it), and on Windows the service's registration with the service control manager (`windows-service`) and the task's with `schtasks`.

use super::render::{fill, path_text, windows_args, xml_text};
use super::{Inputs, Scope, ServiceError};

const RUN_DUE_TASK: &str = include_str!("../../windows/backupd-run-due.xml");

/// The service's name in the service control manager.
pub const SERVICE_NAME: &str = "backupd";
/// The OS-timer task's path in Task Scheduler.
pub const TASK_NAME: &str = "\\backupd\\run-due";

/// The service's arguments after the binary: `--config "PATH" service-main` (the service
/// runtime of `backupd`, which answers the service control manager).
pub fn service_arguments(i: &Inputs) -> Result<Vec<String>, ServiceError> {
    Ok(vec![
        "--config".into(),
        path_text(&i.config)?.to_string(),
        "service-main".into(),
    ])
}

/// The service's whole command line as the SCM stores it (binary quoted, then arguments).
pub fn service_command_line(i: &Inputs) -> Result<String, ServiceError> {
    let mut words = vec![path_text(&i.backupd)?.to_string()];
    words.extend(service_arguments(i)?);
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(windows_args(&refs))
}

/// The Task Scheduler XML of the OS-timer mode (as text; [`utf16_file`] encodes it).
pub fn run_due_task(i: &Inputs) -> Result<String, ServiceError> {
    let principal = match i.scope {
        // LocalSystem, whether or not anyone is logged on.
        Scope::System => "      <UserId>S-1-5-18</UserId>\n      <RunLevel>HighestAvailable</RunLevel>",
        // The installing user, while logged on (no password stored).
        Scope::User => "      <LogonType>InteractiveToken</LogonType>\n      <RunLevel>LeastPrivilege</RunLevel>",
    };
    let args = windows_args(&["--config", path_text(&i.config)?, "run-due"]);
    Ok(fill(
        "windows/backupd-run-due.xml",
        RUN_DUE_TASK,
        &[
            ("TASK_NAME", xml_text(TASK_NAME)),
            ("PRINCIPAL", principal.to_string()),
            ("COMMAND", xml_text(path_text(&i.backupd)?)),
            ("ARGUMENTS", xml_text(&args)),
        ],
    ))
}

/// The file `schtasks /Create /XML` reads: UTF-16LE with a byte-order mark, as declared.
pub fn utf16_file(xml: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    for unit in xml.replace('\n', "\r\n").encode_utf16() {
        out.extend_from_slice(&unit.to_le_bytes());
    }
    out
}

#[cfg(windows)]
pub use self::scm::*;

#[cfg(windows)]
mod scm {
    use super::super::{kept_note, Mode, Report, Status};
    use super::*;
    use crate::config::Config;
    use std::ffi::{OsStr, OsString};
    use std::process::Command;
    use std::time::Duration;
    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceErrorControl,
        ServiceFailureActions, ServiceFailureResetPeriod, ServiceInfo, ServiceStartType,
        ServiceState, ServiceType,
    };
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

    fn scm_error(what: &str, e: windows_service::Error) -> ServiceError {
        let text = e.to_string();
        let denied =
            matches!(&e, windows_service::Error::Winapi(io) if io.raw_os_error() == Some(5));
        if denied {
            return ServiceError::NeedsRoot {
                what: what.to_string(),
                detail: format!(": {text}"),
            };
        }
        ServiceError::Manager {
            command: what.to_string(),
            status: text,
            stderr: String::new(),
            hint: "see the Windows event log (System) for the service control manager's message"
                .into(),
        }
    }

    fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, ServiceError> {
        ServiceManager::local_computer(None::<&str>, access)
            .map_err(|e| scm_error("open the service control manager", e))
    }

    fn schtasks(args: &[&OsStr]) -> Result<String, ServiceError> {
        let out =
            Command::new("schtasks")
                .args(args)
                .output()
                .map_err(|e| ServiceError::Manager {
                    command: "schtasks".into(),
                    status: e.to_string(),
                    stderr: String::new(),
                    hint: "schtasks.exe is part of Windows; is PATH set?".into(),
                })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.to_lowercase().contains("access is denied") {
            return Err(ServiceError::NeedsRoot {
                what: "schtasks".into(),
                detail: format!(": {stderr}"),
            });
        }
        Err(ServiceError::Manager {
            command: format!("schtasks {:?}", args),
            status: out.status.to_string(),
            stderr: format!(": {stderr}"),
            hint: "see the message above".into(),
        })
    }

    fn service_info(i: &Inputs) -> Result<ServiceInfo, ServiceError> {
        Ok(ServiceInfo {
            name: OsString::from(SERVICE_NAME),
            display_name: OsString::from("backupd backup daemon"),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: i.backupd.clone(),
            launch_arguments: service_arguments(i)?
                .into_iter()
                .map(OsString::from)
                .collect(),
            dependencies: vec![],
            account_name: None,
            account_password: None,
        })
    }

    pub fn install(i: &Inputs, _cfg: &Config, mode: Mode) -> Result<Report, ServiceError> {
        let mut r = Report::default();
        for d in [&i.state_dir, &i.log_dir] {
            std::fs::create_dir_all(d).map_err(|e| ServiceError::io("create", d, e))?;
        }
        if mode == Mode::Timer {
            let file = i.state_dir.join("backupd-run-due.task.xml");
            crate::fsutil::atomic_write(&file, &utf16_file(&run_due_task(i)?))
                .map_err(|e| ServiceError::io("write", &file, e))?;
            schtasks(&[
                OsStr::new("/Create"),
                OsStr::new("/F"),
                OsStr::new("/TN"),
                OsStr::new(TASK_NAME),
                OsStr::new("/XML"),
                file.as_os_str(),
            ])?;
            r.say(format!(
                "registered the scheduled task {TASK_NAME} (every minute)"
            ));
            return Ok(r);
        }
        let m = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
        let info = service_info(i)?;
        let access = ServiceAccess::QUERY_CONFIG
            | ServiceAccess::CHANGE_CONFIG
            | ServiceAccess::START
            | ServiceAccess::QUERY_STATUS;
        let service = match m.open_service(SERVICE_NAME, access) {
            Ok(s) => {
                s.change_config(&info)
                    .map_err(|e| scm_error("change the backupd service", e))?;
                r.say("updated the service backupd");
                s
            }
            Err(_) => {
                let s = m
                    .create_service(&info, access)
                    .map_err(|e| scm_error("create the backupd service", e))?;
                r.say("created the service backupd (automatic start)");
                s
            }
        };
        let _ = service.set_description("Runs the backup jobs of backupd on their schedules");
        let restart = |secs| ServiceAction {
            action_type: ServiceActionType::Restart,
            delay: Duration::from_secs(secs),
        };
        service
            .update_failure_actions(ServiceFailureActions {
                reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86400)),
                reboot_msg: None,
                command: None,
                actions: Some(vec![restart(5), restart(30), restart(300)]),
            })
            .map_err(|e| scm_error("set the recovery actions of backupd", e))?;
        service
            .set_failure_actions_on_non_crash_failures(true)
            .map_err(|e| scm_error("set the recovery actions of backupd", e))?;
        let state = service
            .query_status()
            .map_err(|e| scm_error("query the backupd service", e))?
            .current_state;
        if state != ServiceState::Running {
            service
                .start::<&OsStr>(&[])
                .map_err(|e| scm_error("start the backupd service", e))?;
        }
        r.say(format!(
            "backupd is running; state {}, logs {}",
            i.state_dir.display(),
            i.log_dir.display()
        ));
        Ok(r)
    }

    pub fn uninstall(i: &Inputs, cfg: &Config, mode: Mode) -> Result<Report, ServiceError> {
        let mut r = Report::default();
        if mode == Mode::Timer {
            schtasks(&[
                OsStr::new("/Delete"),
                OsStr::new("/F"),
                OsStr::new("/TN"),
                OsStr::new(TASK_NAME),
            ])?;
            r.say(format!("removed the scheduled task {TASK_NAME}"));
        } else {
            let m = manager(ServiceManagerAccess::CONNECT)?;
            match m.open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            ) {
                Err(_) => {
                    r.say("the service backupd is not installed: nothing to do");
                    return Ok(r);
                }
                Ok(s) => {
                    let _ = s.stop();
                    for _ in 0..120 {
                        match s.query_status() {
                            Ok(st) if st.current_state == ServiceState::Stopped => break,
                            Err(_) => break,
                            _ => std::thread::sleep(Duration::from_millis(500)),
                        }
                    }
                    s.delete()
                        .map_err(|e| scm_error("delete the backupd service", e))?;
                    r.say("stopped and removed the service backupd");
                }
            }
        }
        r.lines.extend(kept_note(i, cfg));
        Ok(r)
    }

    pub fn control(_i: &Inputs, mode: Mode, verb: &str) -> Result<Report, ServiceError> {
        if mode == Mode::Timer {
            return Err(ServiceError::Unsupported(
                "the scheduled task runs by itself; use `backupctl schedule install|uninstall`"
                    .into(),
            ));
        }
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let s = m
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::START,
            )
            .map_err(|_| {
                ServiceError::NotInstalled(
                    "the service backupd is not installed\n  hint: `backupctl service install`"
                        .into(),
                )
            })?;
        if verb != "start" {
            let _ = s.stop();
            for _ in 0..120 {
                match s.query_status() {
                    Ok(st) if st.current_state == ServiceState::Stopped => break,
                    _ => std::thread::sleep(Duration::from_millis(500)),
                }
            }
        }
        if verb != "stop" {
            s.start::<&OsStr>(&[])
                .map_err(|e| scm_error("start the backupd service", e))?;
        }
        let mut r = Report::default();
        r.say(format!("{verb}: backupd ok"));
        Ok(r)
    }

    pub fn status(_i: &Inputs, mode: Mode) -> Result<Status, ServiceError> {
        if mode == Mode::Timer {
            let ok = schtasks(&[
                OsStr::new("/Query"),
                OsStr::new("/TN"),
                OsStr::new(TASK_NAME),
            ]);
            return Ok(Status {
                installed: ok.is_ok(),
                running: ok.is_ok(),
                lines: vec![ok.unwrap_or_else(|e| e.to_string())],
            });
        }
        let m = manager(ServiceManagerAccess::CONNECT)?;
        match m.open_service(SERVICE_NAME, ServiceAccess::QUERY_STATUS) {
            Err(_) => Ok(Status {
                installed: false,
                running: false,
                lines: vec!["the service backupd is not installed".into()],
            }),
            Ok(s) => {
                let st = s
                    .query_status()
                    .map_err(|e| scm_error("query the backupd service", e))?;
                Ok(Status {
                    installed: true,
                    running: st.current_state == ServiceState::Running,
                    lines: vec![format!(
                        "backupd: {:?}, process {:?}",
                        st.current_state, st.process_id
                    )],
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{sample_inputs, Inputs};
    use super::*;
    use std::path::PathBuf;

    fn windows_inputs(scope: Scope) -> Inputs {
        let mut i = sample_inputs(scope);
        i.backupd = PathBuf::from(r"C:\Program Files\backupd\backupd.exe");
        i.config = PathBuf::from(r#"C:\ProgramData\backupd\my "cfg" & co\backupd.toml"#);
        i
    }

    #[test]
    fn service_command_line_quotes_the_binary_and_the_config() {
        assert_eq!(
            service_command_line(&windows_inputs(Scope::System)).unwrap(),
            r#""C:\Program Files\backupd\backupd.exe" --config "C:\ProgramData\backupd\my \"cfg\" & co\backupd.toml" service-main"#
        );
    }

    #[test]
    fn task_xml_escapes_and_starts_when_available() {
        let x = run_due_task(&windows_inputs(Scope::System)).unwrap();
        assert!(
            x.contains("<Command>C:\\Program Files\\backupd\\backupd.exe</Command>"),
            "{x}"
        );
        assert!(x.contains(r#"<Arguments>--config &quot;C:\ProgramData\backupd\my \&quot;cfg\&quot; &amp; co\backupd.toml&quot; run-due</Arguments>"#), "{x}");
        assert!(x.contains("<StartWhenAvailable>true</StartWhenAvailable>"));
        assert!(x.contains("<UserId>S-1-5-18</UserId>"));
        let u = run_due_task(&windows_inputs(Scope::User)).unwrap();
        assert!(u.contains("<LogonType>InteractiveToken</LogonType>"));
        let f = utf16_file(&u);
        assert_eq!(&f[..2], &[0xFF, 0xFE]);
    }
}
