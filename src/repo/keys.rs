//! A repository's keys (`keys/*`, restic's `key` command): list them, add one for a new password, remove one — never the key in use, nor the last — and change the password (add, then remove the old, so a crash between leaves both working).

use super::backend::FileType;
use super::id::Id;
use super::keyfile::{self, KeyFile};
use super::Repository;
use crate::error::{Error, Result};
use chrono::{DateTime, FixedOffset};

/// One key file, as `key list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// Whether the password in use opened this key.
    pub current: bool,
    /// The key file's name (its SHA-256).
    pub id: String,
    #[serde(rename = "userName")]
    pub username: String,
    #[serde(rename = "hostName")]
    pub hostname: String,
    /// None when the key file cannot be read. Shown as restic 0.19's `key list --json` shows it:
    /// in local time, to the second, without a zone (`2026-01-02 03:04:05`).
    #[serde(serialize_with = "created_as_restic")]
    pub created: Option<DateTime<FixedOffset>>,
    /// Why the key file cannot be read (it is listed anyway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// A key's creation time as restic's `key list` prints it: local time, to the second.
pub fn created_text(c: &DateTime<FixedOffset>) -> String {
    c.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn created_as_restic<S: serde::Serializer>(
    c: &Option<DateTime<FixedOffset>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_str(&created_text(c)),
        None => s.serialize_none(),
    }
}

/// Every key file, sorted by creation time (unreadable ones last).
pub fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for (name, _) in repo.backend().list(FileType::Key)? {
        let parsed = repo
            .backend()
            .load(FileType::Key, &name)
            .map_err(|e| e.to_string())
            .and_then(|b| KeyFile::parse(&b).map_err(|e| e.to_string()));
        let current = name == repo.key_name();
        out.push(match parsed {
            Ok(kf) => KeyInfo {
                current,
                id: name,
                username: kf.username,
                hostname: kf.hostname,
                created: Some(kf.created),
                damaged: None,
            },
            Err(e) => KeyInfo {
                current,
                id: name,
                username: String::new(),
                hostname: String::new(),
                created: None,
                damaged: Some(e),
            },
        });
    }
    out.sort_by_key(|k| (k.created.is_none(), k.created));
    Ok(out)
}

/// Adds a key file that lets `password` open the repository (with `user`/`host` recorded in
/// it, this machine's by default); gives its name.
pub fn add(
    repo: &Repository,
    password: &[u8],
    user: Option<&str>,
    host: Option<&str>,
) -> Result<String> {
    if password.is_empty() {
        return Err(Error::Input(
            "an empty password is not allowed\n  hint: put the new password on the first line of the --new-password-file".into(),
        ));
    }
    let mut kf = KeyFile::create(
        repo.key(),
        password,
        keyfile::DEFAULT_N,
        keyfile::DEFAULT_R,
        keyfile::DEFAULT_P,
    )
    .map_err(|e| Error::Input(e.to_string()))?;
    if let Some(u) = user {
        kf.username = u.to_string();
    }
    if let Some(h) = host {
        kf.hostname = h.to_string();
    }
    let bytes = serde_json::to_vec(&kf).expect("a key file serializes");
    let name = Id::hash(&bytes).to_hex();
    repo.backend().save(FileType::Key, &name, &bytes)?;
    Ok(name)
}

/// The key file `prefix` names (a unique prefix of its name).
pub fn find(repo: &Repository, prefix: &str) -> Result<String> {
    let names: Vec<String> = repo
        .backend()
        .list(FileType::Key)?
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with(prefix))
        .collect();
    match names.as_slice() {
        [one] if !prefix.is_empty() => Ok(one.clone()),
        [] | [_] => Err(Error::Input(format!(
            "no key {prefix:?} in {}\n  hint: `backupctl key list` shows the keys' ids",
            repo.location()
        ))),
        many => Err(Error::Input(format!(
            "the key id {prefix:?} is ambiguous in {} ({} keys start with it)\n  hint: give more of the id (`backupctl key list`)",
            repo.location(),
            many.len()
        ))),
    }
}

/// Removes the key file `name`: refused for the key in use (the repository would be opened
/// by a key that no longer exists; remove it with another password) and for the last key.
pub fn remove(repo: &Repository, name: &str) -> Result<()> {
    if name == repo.key_name() {
        return Err(Error::Input(format!(
            "key {} is the one your password opened: it is not removed\n  hint: open the repository with another key's password to remove this one, or use `backupctl key passwd` to replace it",
            &name[..8.min(name.len())]
        )));
    }
    repo.backend().remove(FileType::Key, name)?;
    Ok(())
}

/// Changes the password: a new key file for `password` is written (and durable) first, then
/// the one in use is removed. Gives the new key's name.
pub fn passwd(
    repo: &Repository,
    password: &[u8],
    user: Option<&str>,
    host: Option<&str>,
) -> Result<String> {
    let new = add(repo, password, user, host)?;
    repo.backend().remove(FileType::Key, repo.key_name())?;
    Ok(new)
}
