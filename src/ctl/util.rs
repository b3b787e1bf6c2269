//! Small parsers and helpers of the command line: durations, compression, passwords, snapshot refs.

use super::Global;
use crate::error::{Error, Result};
use crate::repo::pack::Compression;

pub(crate) use crate::duration::parse_duration;

pub(crate) fn parse_compression(s: &str) -> std::result::Result<Compression, String> {
    match s {
        "auto" => Ok(Compression::Level(3)),
        "off" => Ok(Compression::Off),
        "fastest" => Ok(Compression::Level(1)),
        "max" => Ok(Compression::Level(19)),
        n => match n.parse::<i32>() {
            Ok(l) if (1..=22).contains(&l) => Ok(Compression::Level(l)),
            _ => Err(format!(
                "invalid compression {s:?}: use auto, off, fastest, max or a level 1-22"
            )),
        },
    }
}

/// The password from --password-file, --password-command or BACKUPD_PASSWORD (never an argument).
pub(crate) fn read_password(g: &Global) -> Result<Vec<u8>> {
    if let Some(f) = &g.password_file {
        return crate::config::secrets::from_file(
            f,
            "",
            "check --password-file or BACKUPD_PASSWORD_FILE",
        );
    }
    if let Some(cmd) = &g.password_command {
        return crate::config::secrets::from_command(
            cmd,
            "",
            "check --password-command or BACKUPD_PASSWORD_COMMAND",
        );
    }
    if let Ok(p) = std::env::var("BACKUPD_PASSWORD") {
        return Ok(p.into_bytes());
    }
    Err(Error::Input(
        "no password given\n  hint: use --password-file FILE, --password-command CMD, or the BACKUPD_PASSWORD_FILE, \
         BACKUPD_PASSWORD_COMMAND or BACKUPD_PASSWORD environment variables"
            .into(),
    ))
}

/// Splits `SNAPSHOT[:PATH]`.
pub(crate) fn split_snapshot_path(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((id, p)) => (id, Some(p)),
        None => (s, None),
    }
}

pub(crate) use crate::size::human_bytes;

/// Writes raw bytes (a pack, a blob) to stdout. A failure is reported as `println!` reports one,
/// so that `bin/backupctl.rs` turns it into the same exit: 141 quietly for a closed pipe (locks
/// are released as the panic unwinds), 1 with `error: cannot write the output` otherwise.
pub(crate) fn write_stdout(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        std::panic::panic_any(format!("failed printing to stdout: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("5m3").is_err());
    }

    #[test]
    fn snapshot_path_split() {
        assert_eq!(split_snapshot_path("latest:/etc"), ("latest", Some("/etc")));
        assert_eq!(split_snapshot_path("abcd"), ("abcd", None));
    }
}
