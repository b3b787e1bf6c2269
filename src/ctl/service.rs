//! `backupctl service` (the resident daemon as an OS service) and `backupctl schedule` (the OS-timer mode): the command line over `crate::service`.

use super::Ctx;
use crate::config::Config;
use crate::error::Result;
use crate::service::{self, Inputs, Mode, Scope, ServiceError};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Args, Debug, Clone)]
pub(crate) struct Target {
    /// For the current user: a systemd user unit (with linger), a LaunchAgent, a per-user task
    /// (the default when not root).
    #[arg(long, conflicts_with = "system")]
    pub user: bool,
    /// For the whole system, as root: a system unit running as the `backupd` account, a
    /// LaunchDaemon, a Windows service (the default as root).
    #[arg(long)]
    pub system: bool,
    /// The backupd binary the service runs (default: the one beside backupctl, else on PATH).
    #[arg(long, value_name = "PATH")]
    pub backupd: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ServiceCommand {
    /// Register backupd with the OS service manager and start it (again: updates, harmless).
    Install(Target),
    /// Stop the service and remove it; repositories, state and logs stay where they are.
    Uninstall(Target),
    /// Start the installed service.
    Start(Target),
    /// Stop the installed service.
    Stop(Target),
    /// Restart the installed service.
    Restart(Target),
    /// Is it installed and running? (exit 0 running, 13 not running, 22 not installed)
    Status(Target),
}

#[derive(Args, Debug)]
pub(crate) struct ServiceArgs {
    #[command(subcommand)]
    pub command: ServiceCommand,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ScheduleCommand {
    /// Install the OS timer that starts `backupd run-due` every minute (no resident process).
    Install(Target),
    /// Remove the OS timer; repositories, state and logs stay where they are.
    Uninstall(Target),
    /// Is the OS timer installed and active? (exit 0 active, 13 not active, 22 not installed)
    Status(Target),
}

#[derive(Args, Debug)]
pub(crate) struct ScheduleArgs {
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

pub(crate) fn service(ctx: &Ctx, a: ServiceArgs) -> Result<i32> {
    let (verb, t) = match a.command {
        ServiceCommand::Install(t) => ("install", t),
        ServiceCommand::Uninstall(t) => ("uninstall", t),
        ServiceCommand::Start(t) => ("start", t),
        ServiceCommand::Stop(t) => ("stop", t),
        ServiceCommand::Restart(t) => ("restart", t),
        ServiceCommand::Status(t) => ("status", t),
    };
    Ok(act(ctx, Mode::Daemon, verb, &t))
}

pub(crate) fn schedule(ctx: &Ctx, a: ScheduleArgs) -> Result<i32> {
    let (verb, t) = match a.command {
        ScheduleCommand::Install(t) => ("install", t),
        ScheduleCommand::Uninstall(t) => ("uninstall", t),
        ScheduleCommand::Status(t) => ("status", t),
    };
    Ok(act(ctx, Mode::Timer, verb, &t))
}

fn act(ctx: &Ctx, mode: Mode, verb: &str, t: &Target) -> i32 {
    match act_on(ctx, mode, verb, t) {
        Ok(done) => {
            if ctx.global.json {
                ctx.print_json(&done.json(mode, verb));
            } else {
                for l in &done.lines {
                    ctx.say(l);
                }
            }
            done.code
        }
        Err(e) => {
            let code = e.exit_code();
            super::print_error(
                ctx.global.json,
                &format!("backupctl {} {verb}: {e}", mode.command()),
                code,
            );
            code
        }
    }
}

/// What a service command did: its lines for people, and for `status` what it found.
struct Done {
    lines: Vec<String>,
    /// `status` only: installed, running.
    status: Option<(bool, bool)>,
    code: i32,
}

impl Done {
    /// `{"command": "service", "action": "status", "installed": true, "running": false,
    /// "lines": [...]}` (`installed` and `running` for `status` only).
    fn json(&self, mode: Mode, verb: &str) -> serde_json::Value {
        let mut v = serde_json::json!({
            "command": mode.command(),
            "action": verb,
            "lines": self.lines,
        });
        if let Some((installed, running)) = self.status {
            v["installed"] = installed.into();
            v["running"] = running.into();
        }
        v
    }
}

fn act_on(
    ctx: &Ctx,
    mode: Mode,
    verb: &str,
    t: &Target,
) -> std::result::Result<Done, ServiceError> {
    let (inputs, cfg) = inputs(ctx, t, verb == "install")?;
    let report = match verb {
        "install" => service::install(&inputs, &cfg, mode)?,
        "uninstall" => service::uninstall(&inputs, &cfg, mode)?,
        "status" => {
            let s = service::status(&inputs, mode)?;
            return Ok(Done {
                code: match (s.installed, s.running) {
                    (false, _) => service::exit::NOT_INSTALLED,
                    (true, false) => service::exit::NOT_RUNNING,
                    (true, true) => 0,
                },
                status: Some((s.installed, s.running)),
                lines: s.lines,
            });
        }
        v => service::control(&inputs, mode, v)?,
    };
    Ok(Done {
        lines: report.lines,
        status: None,
        code: 0,
    })
}

/// The inputs of the service files; `strict`: the configuration must load (install).
fn inputs(
    ctx: &Ctx,
    t: &Target,
    strict: bool,
) -> std::result::Result<(Inputs, Config), ServiceError> {
    let scope = match (t.user, t.system) {
        (true, _) => Scope::User,
        (_, true) => Scope::System,
        _ if crate::paths::is_root() => Scope::System,
        _ => Scope::User,
    };
    let config = absolute(&ctx.config_path())?;
    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) if strict => {
            return Err(ServiceError::Input(format!(
                "{e}\n  hint: the service reads {}; write it first (examples/backupd.toml documents every key), or pass --config PATH",
                config.display()
            )))
        }
        // Stopping or removing a service never needs a valid configuration.
        Err(_) => Config::parse("", &config)?,
    };
    let backupd = match &t.backupd {
        Some(p) => absolute(p)?,
        None => find_backupd()?,
    };
    if strict && !backupd.is_file() {
        return Err(ServiceError::Input(format!(
            "the backupd binary {} does not exist\n  hint: pass --backupd PATH",
            backupd.display()
        )));
    }
    Ok((Inputs::new(&cfg, &config, &backupd, scope), cfg))
}

fn absolute(p: &Path) -> std::result::Result<PathBuf, ServiceError> {
    if let Ok(c) = p.canonicalize() {
        return Ok(c);
    }
    std::path::absolute(p).map_err(|e| ServiceError::io("resolve", p, e))
}

/// backupd beside this backupctl (a package, `cargo install`), else the first on PATH.
fn find_backupd() -> std::result::Result<PathBuf, ServiceError> {
    let name = format!("backupd{}", std::env::consts::EXE_SUFFIX);
    if let Ok(me) = std::env::current_exe() {
        let beside = me.with_file_name(&name);
        if beside.is_file() {
            return absolute(&beside);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let c = dir.join(&name);
            if c.is_file() {
                return absolute(&c);
            }
        }
    }
    Err(ServiceError::Input(format!(
        "cannot find the {name} binary beside backupctl or on PATH\n  hint: pass --backupd PATH"
    )))
}
