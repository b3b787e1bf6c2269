//! Repository passwords: the first line of a file, or of a shell command's output.

use crate::error::{Error, Result};
use std::path::Path;

fn first_line(bytes: &[u8]) -> Vec<u8> {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
    line.strip_suffix(b"\r").unwrap_or(line).to_vec()
}

/// The first line of `path`. `of` says whose password it is (e.g. " of the repository main",
/// or ""); `hint` says where the setting comes from.
pub fn from_file(path: &Path, of: &str, hint: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Input(format!(
            "cannot read the password file {}{of}: {e}\n  hint: {hint}",
            path.display()
        ))
    })?;
    Ok(first_line(&bytes))
}

/// The first line of what `sh -c cmd` prints (its stderr goes to ours).
pub fn from_command(cmd: &str, of: &str, hint: &str) -> Result<Vec<u8>> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| {
            Error::Input(format!(
                "cannot run the password command {cmd:?}{of}: {e}\n  hint: {hint}"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::Input(format!(
            "the password command {cmd:?}{of} failed ({})\n  hint: {hint}",
            out.status
        )));
    }
    Ok(first_line(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_of_file_and_command() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "secret\r\nignored\n").unwrap();
        assert_eq!(from_file(&f, "", "h").unwrap(), b"secret");
        assert_eq!(from_command("printf 'pw\\nmore'", "", "h").unwrap(), b"pw");
        let e = from_command("exit 3", " of the repository r", "check it")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("of the repository r failed") && e.contains("hint: check it"),
            "{e}"
        );
        assert!(from_file(&d.path().join("none"), "", "h").is_err());
    }
}
