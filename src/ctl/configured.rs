//! Repository commands on a repository of backupd's configuration: `--config FILE [--repo-name NAME]` opens it as the daemon does (location, password source, credentials).

use super::Ctx;
use crate::config::{Config, RepositoryConfig};
use crate::error::{Error, Result};
use crate::repo::open::RepoSettings;

/// The repository `name` names in `cfg`, or its only one when no name is given.
pub(crate) fn pick<'a>(cfg: &'a Config, name: Option<&str>) -> Result<&'a RepositoryConfig> {
    let names = || {
        let v: Vec<&str> = cfg.repositories.keys().map(String::as_str).collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    match name {
        Some(n) => cfg.repositories.get(n).ok_or_else(|| {
            Error::Input(format!(
                "there is no repository {n:?} in {} (repositories: {})\n  hint: check the name given to --repo-name, or add a [repositories.{n}] table",
                cfg.file.display(),
                names()
            ))
        }),
        None => match cfg.repositories.len() {
            1 => Ok(cfg.repositories.values().next().expect("one repository")),
            0 => Err(Error::Input(format!(
                "{} has no repository\n  hint: add a [repositories.NAME] table to it, or name the repository with -r LOCATION",
                cfg.file.display()
            ))),
            _ => Err(Error::Input(format!(
                "{} has {} repositories ({})\n  hint: pick one with --repo-name NAME",
                cfg.file.display(),
                cfg.repositories.len(),
                names()
            ))),
        },
    }
}

/// How to open `rc`: its location, credentials (with --cacert) and password source, the
/// longer of its `lock_wait` and backupctl's default unless --lock-wait is given, and
/// --compression when given.
pub(crate) fn settings<'a>(ctx: &'a Ctx, rc: &'a RepositoryConfig) -> Result<RepoSettings<'a>> {
    let mut s = rc.settings()?;
    if let Some(f) = &ctx.global.cacert {
        s.credentials.cacert = Some(f.clone());
    }
    s.lock_wait = ctx
        .global
        .lock_wait
        .unwrap_or_else(|| rc.lock_wait.max(super::DEFAULT_LOCK_WAIT));
    s.compression = ctx.global.compression;
    s.on_lock_wait = Some(ctx.lock_notice());
    s.cancel = Some(&ctx.cancel);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/backupd/backupd.toml")).unwrap()
    }

    #[test]
    fn a_name_picks_its_table_and_one_table_needs_no_name() {
        let one = cfg("[repositories.main]\npath = \"/srv/r\"\npassword_file = \"/p\"\n");
        assert_eq!(pick(&one, None).unwrap().path.expose(), "/srv/r");
        assert_eq!(pick(&one, Some("main")).unwrap().path.expose(), "/srv/r");
        let e = pick(&one, Some("other")).unwrap_err().to_string();
        assert!(
            e.contains("no repository \"other\"") && e.contains("(repositories: main)"),
            "{e}"
        );
    }

    #[test]
    fn several_tables_need_a_name_and_none_is_said() {
        let two = cfg("[repositories.a]\npath = \"/a\"\npassword_file = \"/p\"\n\
             [repositories.b]\npath = \"/b\"\npassword_file = \"/p\"\n");
        let e = pick(&two, None).unwrap_err().to_string();
        assert!(
            e.contains("has 2 repositories (a, b)") && e.contains("--repo-name NAME"),
            "{e}"
        );
        assert_eq!(pick(&two, Some("b")).unwrap().path.expose(), "/b");
        let e = pick(&cfg(""), None).unwrap_err().to_string();
        assert!(e.contains("has no repository"), "{e}");
    }
}
