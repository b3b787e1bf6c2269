//! What `backupd check-config` says of the files a valid configuration names but that are not there: a missing password source is an error, a missing source a warning (it may appear later).

use super::Config;
use crate::repo::location::Location;
use std::path::Path;

/// How bad a missing file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The daemon would start, but every run of the jobs that need it would fail.
    Error,
    /// Worth knowing; runs may still work (a source that appears later, a repository to init).
    Warning,
}

/// One missing file, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub severity: Severity,
    pub message: String,
}

impl Missing {
    fn error(message: String) -> Missing {
        Missing {
            severity: Severity::Error,
            message,
        }
    }
    fn warning(message: String) -> Missing {
        Missing {
            severity: Severity::Warning,
            message,
        }
    }
}

/// The files `cfg` names that `exists` says are not there, in the file's order of tables:
/// repositories (password and S3 secret files are errors; a local repository folder that is
/// not there yet is a warning), then jobs (source paths and databases are warnings).
pub fn missing(cfg: &Config, exists: impl Fn(&Path) -> bool) -> Vec<Missing> {
    let mut out = Vec::new();
    for (name, r) in &cfg.repositories {
        let secret = [
            ("password_file", &r.password_file),
            ("s3_secret_access_key_file", &r.s3_secret_access_key_file),
        ];
        for (key, file) in secret {
            if let Some(f) = file.as_ref().filter(|f| !exists(f)) {
                out.push(Missing::error(format!(
                    "[repositories.{name}] {key} {} does not exist\n  hint: write the secret's first line into it (mode 0600), or correct the path",
                    f.display()
                )));
            }
        }
        if let Ok(Location::Local(dir)) = Location::parse(r.path.expose()) {
            if !exists(&dir.join("config")) {
                out.push(Missing::warning(format!(
                    "[repositories.{name}] path {}: there is no repository there yet\n  hint: create it with `backupctl --config {} --repo-name {name} init`",
                    dir.display(),
                    cfg.file.display()
                )));
            }
        }
    }
    for (name, j) in &cfg.jobs {
        let sources = j.paths.iter().chain(j.sqlite.iter().map(|s| &s.path));
        for p in sources.filter(|p| !exists(p)) {
            out.push(Missing::warning(format!(
                "[jobs.{name}] source {} does not exist (yet): a run now would fail or back up nothing of it",
                p.display()
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::path::PathBuf;

    const CFG: &str = r#"
[repositories.main]
path = "/srv/repo"
password_file = "/etc/backupd/password"

[repositories.cloud]
path = "s3:https://s3.example.com/bucket"
password_command = "pass backup"
s3_access_key_id = "GK1"
s3_secret_access_key_file = "/etc/backupd/s3-secret"

[jobs.app]
repository = "main"
paths = ["/srv/app/files"]
sqlite = [{ path = "/srv/app/app.db" }]
"#;

    fn cfg() -> Config {
        Config::parse(CFG, Path::new("/etc/backupd/backupd.toml")).unwrap()
    }

    #[test]
    fn nothing_is_said_when_everything_is_there() {
        assert_eq!(missing(&cfg(), |_| true), vec![]);
    }

    #[test]
    fn missing_secrets_are_errors_and_missing_sources_warnings() {
        let found = missing(&cfg(), |_| false);
        let errors: Vec<_> = found
            .iter()
            .filter(|m| m.severity == Severity::Error)
            .map(|m| m.message.as_str())
            .collect();
        assert_eq!(errors.len(), 2, "{found:#?}");
        assert!(errors[0].starts_with(
            "[repositories.cloud] s3_secret_access_key_file /etc/backupd/s3-secret does not exist"
        ));
        assert!(errors[1]
            .starts_with("[repositories.main] password_file /etc/backupd/password does not exist"));
        let warnings: Vec<_> = found
            .iter()
            .filter(|m| m.severity == Severity::Warning)
            .map(|m| m.message.as_str())
            .collect();
        assert_eq!(warnings.len(), 3, "{found:#?}");
        assert!(warnings[0]
            .contains("`backupctl --config /etc/backupd/backupd.toml --repo-name main init`"));
        assert!(warnings[1].starts_with("[jobs.app] source /srv/app/files does not exist"));
        assert!(warnings[2].starts_with("[jobs.app] source /srv/app/app.db does not exist"));
    }

    #[test]
    fn only_what_is_absent_is_named() {
        let there: HashSet<PathBuf> = [
            "/etc/backupd/password",
            "/srv/repo/config",
            "/srv/app/app.db",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        let found = missing(&cfg(), |p| there.contains(p));
        let all: Vec<_> = found
            .iter()
            .map(|m| m.message.lines().next().unwrap())
            .collect();
        assert_eq!(all.len(), 2, "{all:#?}");
        assert!(
            all[0].contains("s3-secret") && all[1].contains("/srv/app/files"),
            "{all:#?}"
        );
    }
}
