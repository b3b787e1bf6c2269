//! `backupd service-main`: backupd as a real Windows service, answering the service control manager (SCM).
//!
//! The SCM starts `"C:\...\backupd.exe" --config "C:\...\backupd.toml" service-main`. This
//! hands the main thread to the SCM's dispatcher, which calls [`service_main`] on a thread of
//! its own: it registers the control handler, reports Running, and runs the same daemon as
//! `backupd run` (`super::run_daemon`). Stop and Shutdown trigger the daemon's normal graceful
//! shutdown (the path SIGTERM takes on Unix): StopPending is reported with the configured
//! `shutdown_timeout` + 10 s as the wait hint, then Stopped with the daemon's exit code (0, or a
//! service-specific code: backupd's own exit codes, see docs/exit-codes.md).
//!
//! The service's name is the one it was installed under: for an own-process service the SCM
//! does not check the name given here.

use crate::config::Config;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

/// The name backupd is installed under by default (`backupctl service install`).
pub const SERVICE_NAME: &str = "backupd";

/// ERROR_FAILED_SERVICE_CONTROLLER_CONNECT: not started by the SCM (run from a console).
const NOT_FROM_SCM: i32 = 1063;

/// What `service_main` runs, handed over from the process's command line (the SCM's own
/// arguments to `service_main` are the optional start parameters, not the command line).
static START: Mutex<Option<(PathBuf, Config)>> = Mutex::new(None);
/// The daemon's exit code, for the process's exit once the dispatcher returns.
static EXIT: Mutex<i32> = Mutex::new(0);

define_windows_service!(ffi_service_main, service_main);

/// Runs backupd under the SCM's dispatcher; returns the process's exit code.
pub fn run(config_path: PathBuf, cfg: Config) -> i32 {
    *START.lock().unwrap_or_else(|e| e.into_inner()) = Some((config_path, cfg));
    match service_dispatcher::start(SERVICE_NAME, ffi_service_main) {
        Ok(()) => *EXIT.lock().unwrap_or_else(|e| e.into_inner()),
        Err(windows_service::Error::Winapi(e)) if e.raw_os_error() == Some(NOT_FROM_SCM) => {
            eprintln!("backupd: service-main is what the Windows service control manager starts; it cannot run from a console\n  hint: run `backupd run` in a console, or install the service with `backupctl service install` and start it with `backupctl service start`");
            2
        }
        Err(e) => {
            eprintln!("backupd: cannot connect to the Windows service control manager: {e}");
            1
        }
    }
}

fn status(state: ServiceState, exit: ServiceExitCode, wait_hint: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: exit,
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}

/// The daemon's exit code as the SCM's: 0 is success, others are service-specific codes.
fn exit_code(code: i32) -> ServiceExitCode {
    if code == 0 {
        ServiceExitCode::Win32(0)
    } else {
        ServiceExitCode::ServiceSpecific(code as u32)
    }
}

fn service_main(_args: Vec<OsString>) {
    let Some((config_path, cfg)) = START.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            stop_tx.send_replace(true);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let handle = match service_control_handler::register(SERVICE_NAME, handler) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("backupd: cannot register with the service control manager: {e}");
            *EXIT.lock().unwrap_or_else(|e| e.into_inner()) = 1;
            return;
        }
    };
    let _ = handle.set_service_status(status(
        ServiceState::Running,
        ServiceExitCode::Win32(0),
        Duration::ZERO,
    ));
    // The jobs get `shutdown_timeout` to reach a safe point; a little more for the rest.
    let hint = cfg.daemon.shutdown_timeout + Duration::from_secs(10);
    let stop: super::StopTrigger = Box::pin(async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
        let _ = handle.set_service_status(status(
            ServiceState::StopPending,
            ServiceExitCode::Win32(0),
            hint,
        ));
    });
    let code = super::run_daemon(config_path, cfg, super::signal_channel().1, Some(stop));
    *EXIT.lock().unwrap_or_else(|e| e.into_inner()) = code;
    let _ = handle.set_service_status(status(
        ServiceState::Stopped,
        exit_code(code),
        Duration::ZERO,
    ));
}
