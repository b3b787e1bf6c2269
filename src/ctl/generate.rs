//! `backupctl generate` (hidden, for packaging): shell completions and man pages of both command lines, and the packaged systemd unit.

use crate::error::{Error, Result};
use clap::{CommandFactory, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub(crate) enum GenerateCommand {
    /// Shell completions of backupctl and backupd (bash, zsh, fish) into DIR.
    Completions { dir: PathBuf },
    /// Man pages backupctl.1 and backupd.1 into DIR.
    Man { dir: PathBuf },
    /// The system unit for the packaged default layout (/usr/bin, /etc/backupd/backupd.toml) into DIR.
    Unit { dir: PathBuf },
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub command: GenerateCommand,
}

fn io(what: &Path, e: std::io::Error) -> Error {
    Error::io(what.display().to_string(), e)
}

fn commands() -> [clap::Command; 2] {
    [super::command(), crate::daemon::Cli::command()]
}

/// Writes the files; prints nothing, or with --json `{"written": [FILE, ...]}`.
pub(crate) fn run(ctx: &super::Ctx, a: Args) -> Result<i32> {
    let written = write(a.command)?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({ "written": written }));
    }
    Ok(0)
}

/// Writes the files of `command`; returns their paths.
fn write(command: GenerateCommand) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    match command {
        GenerateCommand::Completions { dir } => {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            for mut cmd in commands() {
                let name = cmd.get_name().to_string();
                for shell in [
                    clap_complete::Shell::Bash,
                    clap_complete::Shell::Zsh,
                    clap_complete::Shell::Fish,
                ] {
                    let file = dir.join(match shell {
                        clap_complete::Shell::Zsh => format!("_{name}"),
                        s => format!(
                            "{name}.{}",
                            s.to_possible_value().expect("shell").get_name()
                        ),
                    });
                    let mut buf = Vec::new();
                    clap_complete::generate(shell, &mut cmd, &name, &mut buf);
                    crate::fsutil::atomic_write(&file, &buf).map_err(|e| io(&file, e))?;
                    written.push(file);
                }
            }
        }
        GenerateCommand::Man { dir } => {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            for cmd in commands() {
                let file = dir.join(format!("{}.1", cmd.get_name()));
                let mut buf = Vec::new();
                clap_mangen::Man::new(cmd)
                    .render(&mut buf)
                    .map_err(|e| io(&file, e))?;
                crate::fsutil::atomic_write(&file, &buf).map_err(|e| io(&file, e))?;
                written.push(file);
            }
        }
        GenerateCommand::Unit { dir } => {
            use crate::service::{systemd, Inputs, Scope};
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let config = Path::new("/etc/backupd/backupd.toml");
            let empty = crate::config::Config::parse("", config)?;
            let mut i = Inputs::new(&empty, config, Path::new("/usr/bin/backupd"), Scope::System);
            i.state_dir = "/var/lib/backupd".into();
            i.log_dir = "/var/log/backupd".into();
            i.socket = "/run/backupd/backupd.sock".into();
            i.writable = vec![i.state_dir.clone(), i.log_dir.clone()];
            let unit = systemd::daemon_unit(&i).map_err(|e| Error::Input(e.to_string()))?;
            let file = dir.join(systemd::DAEMON_UNIT);
            crate::fsutil::atomic_write(&file, unit.as_bytes()).map_err(|e| io(&file, e))?;
            written.push(file);
        }
    }
    Ok(written)
}
