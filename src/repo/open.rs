//! Opening a repository: its storage from a location and the credentials it needs, then the repository itself, locked; one opener for `backupctl`, the jobs and the drills.

use super::backend::{Backend, LocalBackend};
use super::http::{CaCerts, Http};
use super::location::Location;
use super::lock::RepoLock;
use super::pack::Compression;
use super::rest::RestBackend;
use super::s3::{Addressing, S3Backend, S3Credentials, Secret};
use super::Repository;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The region signed for when neither the environment nor the configuration names one.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// Credentials for remote backends. Debug never shows a secret.
#[derive(Clone, Debug, Default)]
pub(crate) struct Credentials {
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
    pub s3_region: Option<String>,
    /// The command that starts the SFTP session (restic's `sftp.command`): from
    /// `BACKUPD_SFTP_COMMAND` or the repository's `sftp_command`; default `ssh [-p PORT]
    /// [-l USER] HOST -s sftp`.
    pub sftp_command: Option<String>,
    /// A PEM file of extra CA certificates trusted for `s3:https://` and `rest:https://`
    /// (restic's `--cacert`): `backupctl --cacert`, `BACKUPD_CACERT` or the repository's
    /// `cacert`. Added to Mozilla's roots, never instead of them.
    pub cacert: Option<PathBuf>,
    /// For `sftp:`: how long the ssh + SFTP handshake may take, and a session may go without
    /// answering (e.g. "60s"); from `BACKUPD_SFTP_TIMEOUT` or the repository's `sftp_timeout`.
    pub sftp_timeout: Option<String>,
    /// S3 addressing: "auto" (the default), "path" or "virtual"; from `BACKUPD_S3_ADDRESSING`
    /// or the repository's `s3_addressing`.
    pub s3_addressing: Option<String>,
}

impl Credentials {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_DEFAULT_REGION` (or `AWS_REGION`).
    pub fn from_env() -> Credentials {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Credentials {
            s3_access_key_id: var("AWS_ACCESS_KEY_ID"),
            s3_secret_access_key: var("AWS_SECRET_ACCESS_KEY").map(Secret),
            s3_region: var("AWS_DEFAULT_REGION").or_else(|| var("AWS_REGION")),
            sftp_command: var("BACKUPD_SFTP_COMMAND"),
            cacert: var("BACKUPD_CACERT").map(PathBuf::from),
            sftp_timeout: var("BACKUPD_SFTP_TIMEOUT"),
            s3_addressing: var("BACKUPD_S3_ADDRESSING"),
        }
    }

    /// The extra CA certificates, loaded (a bad file is a configuration error naming it).
    fn ca(&self, loc: &Location) -> Result<Option<CaCerts>> {
        match &self.cacert {
            None => Ok(None),
            Some(f) => CaCerts::from_pem_file(f).map(Some).map_err(|e| {
                Error::Input(format!(
                    "{e} (needed for {loc})\n  hint: --cacert, BACKUPD_CACERT and a repository's cacert name a PEM file with the certificate(s) of the CA that signed the server's certificate"
                ))
            }),
        }
    }

    fn s3(&self, loc: &Location) -> Result<S3Credentials> {
        match (&self.s3_access_key_id, &self.s3_secret_access_key) {
            (Some(id), Some(secret)) => Ok(S3Credentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                region: self
                    .s3_region
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REGION.to_string()),
            }),
            _ => Err(Error::Input(format!(
                "no S3 credentials for {loc}\n  hint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_DEFAULT_REGION), or s3_access_key_id and s3_secret_access_key_file (or _command) in the repository's configuration"
            ))),
        }
    }
}

/// The storage for `loc`. For S3, REST and Google Drive nothing is contacted yet: the first
/// request tells whether the server, bucket and credentials are right; SFTP connects at once
/// (and fails fast, naming why).
pub(crate) fn open_backend(loc: &Location, creds: &Credentials) -> Result<Arc<dyn Backend>> {
    match loc {
        Location::Local(p) => Ok(Arc::new(LocalBackend::new(p))),
        Location::S3 {
            endpoint,
            bucket,
            prefix,
        } => {
            let addressing = match &creds.s3_addressing {
                None => Addressing::Auto,
                Some(a) => Addressing::parse(a).map_err(|e| {
                    Error::Input(format!(
                        "{e} (BACKUPD_S3_ADDRESSING or s3_addressing, for {loc})\n  hint: use auto, path or virtual"
                    ))
                })?,
            };
            let be = S3Backend::new(endpoint, bucket, prefix, creds.s3(loc)?)
                .with_addressing(addressing)
                .map_err(|e| Error::Input(format!("{e} (for {loc})")))?;
            Ok(Arc::new(be.with_http(Http::with_ca(creds.ca(loc)?))))
        }
        Location::Rest {
            url,
            user,
            password,
        } => Ok(Arc::new(
            RestBackend::new(url, user.as_deref(), password.as_deref(), loc.to_string())
                .with_http(Http::with_ca(creds.ca(loc)?)),
        )),
        Location::Sftp {
            user,
            host,
            port,
            path,
        } => {
            let timeout = match &creds.sftp_timeout {
                None => super::sftp::DEFAULT_TIMEOUT,
                Some(t) => match crate::duration::parse_duration(t) {
                    Ok(d) if !d.is_zero() => d,
                    Ok(_) => return Err(Error::Input(format!("the SFTP timeout {t:?} (BACKUPD_SFTP_TIMEOUT or sftp_timeout, for {loc}) is zero\n  hint: give a duration such as 60s or 5m"))),
                    Err(e) => return Err(Error::Input(format!("{e} (BACKUPD_SFTP_TIMEOUT or sftp_timeout, for {loc})\n  hint: give a duration such as 60s or 5m"))),
                },
            };
            Ok(Arc::new(super::sftp::SftpBackend::connect_with_timeout(
                user.as_deref(),
                host,
                *port,
                path,
                creds.sftp_command.as_deref(),
                timeout,
            )?))
        }
        Location::GDrive { path } => {
            let c = super::gdrive::GDriveCredentials::from_env().map_err(Error::Input)?;
            Ok(Arc::new(super::gdrive::GDriveBackend::new(
                path,
                c,
                Default::default(),
            )))
        }
    }
}

/// Parses `s` and opens its storage.
pub(crate) fn open_location(s: &str, creds: &Credentials) -> Result<Arc<dyn Backend>> {
    let loc = Location::parse(s).map_err(|e| Error::Input(e.to_string()))?;
    open_backend(&loc, creds)
}

/// How an opened repository is locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockMode {
    /// Excludes only exclusive locks: backups, restores, checks, reading.
    Shared,
    /// Excludes every other lock: forget and prune.
    Exclusive,
}

impl LockMode {
    /// Exclusive when the operation changes or deletes what others read, shared otherwise.
    pub fn exclusive_if(exclusive: bool) -> LockMode {
        if exclusive {
            LockMode::Exclusive
        } else {
            LockMode::Shared
        }
    }
}

/// A callback told a line for the user.
pub(crate) type Notice<'a> = Box<dyn Fn(&str) + 'a>;

/// Everything opening a repository takes: where it is, the credentials of its storage, its
/// password, how long to wait for a lock, and the compression of new data. `backupctl` makes one
/// of its global options, the jobs and the drills of a repository's configuration.
pub(crate) struct RepoSettings<'a> {
    /// A directory, or `s3:…`, `rest:…`, `sftp:…`, `gdrive:…` (see `repo::location`).
    pub location: String,
    pub credentials: Credentials,
    /// Reads the password. Called once the storage is open, so that a storage that cannot be
    /// reached is reported before a password that cannot be read.
    pub password: Box<dyn Fn() -> Result<Vec<u8>> + 'a>,
    /// How long to wait for a conflicting lock to go.
    pub lock_wait: Duration,
    /// Told once when the lock has to be waited for, what it waits for (None: only logged).
    pub on_lock_wait: Option<Notice<'a>>,
    /// Ends a wait for a lock early.
    pub cancel: Option<&'a crate::cancel::CancelToken>,
    /// The compression of new data in a version-2 repository (None: the repository's default).
    pub compression: Option<Compression>,
}

impl RepoSettings<'_> {
    /// The storage of the location (not contacted yet, except SFTP: see [`open_backend`]).
    pub fn backend(&self) -> Result<Arc<dyn Backend>> {
        open_location(&self.location, &self.credentials)
    }

    /// The password.
    pub fn password(&self) -> Result<Vec<u8>> {
        (self.password)()
    }
}

/// Opens the repository without locking it (`unlock`, `snapshots`, `copy` before its check that
/// the two repositories differ).
pub(crate) fn open_unlocked(s: &RepoSettings) -> Result<Repository> {
    let be = s.backend()?;
    let pw = s.password()?;
    let mut repo = Repository::open(be, &pw)?;
    if let Some(c) = s.compression {
        if repo.config().version >= 2 {
            repo.compression = c;
        }
    }
    Ok(repo)
}

/// Opens the repository and locks it, waiting up to the settings' `lock_wait` for a conflicting
/// lock to go. The lock is released when the [`RepoLock`] is dropped.
pub(crate) fn open_repository(s: &RepoSettings, mode: LockMode) -> Result<(Repository, RepoLock)> {
    let repo = open_unlocked(s)?;
    let waiting = super::lock::Waiting {
        up_to: s.lock_wait,
        cancel: s.cancel,
        notice: s.on_lock_wait.as_deref().unwrap_or(&|_| {}),
    };
    let lock = super::lock::lock_waiting(&repo, mode == LockMode::Exclusive, &waiting)?;
    Ok((repo, lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opener_kinds_and_messages() {
        let none = Credentials::default();
        let loc = Location::parse("/tmp/x").unwrap();
        assert!(open_backend(&loc, &none).unwrap().local_path().is_some());
        let s3 = Location::parse("s3:http://127.0.0.1:1/b").unwrap();
        let e = open_backend(&s3, &none).err().unwrap().to_string();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
        let creds = Credentials {
            s3_access_key_id: Some("GKx".into()),
            s3_secret_access_key: Some(Secret("verysecret".into())),
            s3_region: None,
            sftp_command: None,
            cacert: None,
            sftp_timeout: None,
            s3_addressing: None,
        };
        assert!(!format!("{creds:?}").contains("verysecret"));
        assert_eq!(
            open_backend(&s3, &creds).unwrap().location(),
            "s3:http://127.0.0.1:1/b"
        );
        let e = open_backend(&Location::parse("gdrive:backups/x").unwrap(), &none);
        if std::env::var_os("GOOGLE_DRIVE_REFRESH_TOKEN").is_none() {
            let e = e.err().unwrap().to_string();
            assert!(e.contains("GOOGLE_DRIVE_REFRESH_TOKEN"), "{e}");
        }
    }

    fn settings<'a>(location: &str, password: &'a dyn Fn() -> Result<Vec<u8>>) -> RepoSettings<'a> {
        RepoSettings {
            location: location.to_string(),
            credentials: Credentials::default(),
            password: Box::new(password),
            lock_wait: Duration::ZERO,
            on_lock_wait: None,
            cancel: None,
            compression: Some(Compression::Off),
        }
    }

    #[test]
    fn one_opener_locks_as_asked_and_reads_the_password_last() {
        let dir = tempfile::tempdir().unwrap();
        let loc = dir.path().join("r").display().to_string();
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("r")));
        Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        let pw = || Ok(b"pw".to_vec());
        let (repo, shared) = open_repository(&settings(&loc, &pw), LockMode::Shared).unwrap();
        // The compression asked for applies to a version-2 repository.
        assert_eq!(repo.config().version, 2);
        assert_eq!(repo.compression, Compression::Off);
        // A second shared lock coexists with the first; an exclusive one does not.
        let (_, shared2) = open_repository(&settings(&loc, &pw), LockMode::Shared).unwrap();
        let e = open_repository(&settings(&loc, &pw), LockMode::exclusive_if(true));
        assert!(matches!(e, Err(Error::Locked { .. })), "{:?}", e.err());
        drop((shared, shared2));
        let (_, excl) = open_repository(&settings(&loc, &pw), LockMode::Exclusive).unwrap();
        assert!(open_repository(&settings(&loc, &pw), LockMode::Shared).is_err());
        drop(excl);
        assert!(open_unlocked(&settings(&loc, &pw)).is_ok());

        // A location that does not parse fails before the password is read.
        let asked = std::cell::Cell::new(false);
        let no_pw = || {
            asked.set(true);
            Err(Error::Input("no password".into()))
        };
        assert!(open_unlocked(&settings("s3:", &no_pw)).is_err());
        assert!(!asked.get());
        let e = open_unlocked(&settings(&loc, &no_pw)).err().unwrap();
        assert!(asked.get() && e.to_string().contains("no password"), "{e}");
    }
}
