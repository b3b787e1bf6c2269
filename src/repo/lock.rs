//! Repository locks in restic's format: shared for writers, exclusive for prune; refreshed while held.

use super::backend::FileType;
use super::id::Id;
use super::Repository;
use crate::cancel::CancelToken;
use crate::error::POISONED;
use crate::error::{Error, Result};
use crate::retry::{self, Attempt, GaveUp};
use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A lock not refreshed for this long is stale (restic's rule).
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is refreshed.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct LockFile {
    #[serde(serialize_with = "super::gotime::serialize")]
    pub time: DateTime<FixedOffset>,
    pub exclusive: bool,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub pid: u32,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

impl LockFile {
    pub fn ours(exclusive: bool) -> LockFile {
        LockFile {
            time: Local::now().fixed_offset(),
            exclusive,
            hostname: crate::sysinfo::hostname(),
            username: crate::sysinfo::username(),
            pid: std::process::id(),
            uid: crate::sysinfo::uid(),
            gid: crate::sysinfo::gid(),
        }
    }

    /// Stale: not refreshed for 30 minutes, or made on this host by a process that is gone.
    pub fn is_stale(&self) -> bool {
        let age = Local::now().fixed_offset().signed_duration_since(self.time);
        if age.to_std().map(|a| a > STALE_AFTER).unwrap_or(false) {
            return true;
        }
        self.hostname == crate::sysinfo::hostname() && !crate::sysinfo::process_alive(self.pid)
    }

    pub fn describe(&self) -> String {
        format!(
            "{} lock held by PID {} on {} (user {}) since {}",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.pid,
            self.hostname,
            self.username,
            self.time.format("%Y-%m-%d %H:%M:%S %:z")
        )
    }
}

/// The locks in the repository, with their ids; locks that vanish or cannot be read while we look
/// are left out (a lock that cannot be decrypted cannot be ours to judge).
pub fn list_locks(repo: &Repository) -> Result<Vec<(Id, LockFile)>> {
    let mut out = Vec::new();
    for id in repo.list_ids(FileType::Lock)? {
        match repo.load_unpacked::<LockFile>(FileType::Lock, &id) {
            Ok(l) => out.push((id, l)),
            Err(Error::Backend(e)) if e.is_not_found() => {}
            Err(Error::Damaged { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Removes stale locks; returns how many.
pub fn remove_stale(repo: &Repository) -> Result<usize> {
    let mut n = 0;
    for (id, l) in list_locks(repo)? {
        if l.is_stale() {
            match repo.backend().remove(FileType::Lock, &id.to_hex()) {
                Ok(()) => n += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

/// Removes every lock, stale or not (`unlock --remove-all`).
pub fn remove_all(repo: &Repository) -> Result<usize> {
    let ids = repo.list_ids(FileType::Lock)?;
    for id in &ids {
        match repo.backend().remove(FileType::Lock, &id.to_hex()) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ids.len())
}

fn conflict(exclusive: bool, others: &[(Id, LockFile)], mine: Option<&Id>) -> Option<LockFile> {
    others
        .iter()
        .filter(|(id, _)| Some(id) != mine)
        .filter(|(_, l)| !l.is_stale())
        .find(|(_, l)| exclusive || l.exclusive)
        .map(|(_, l)| l.clone())
}

/// A held lock. Dropping it stops the refresher and removes the lock file.
pub struct RepoLock {
    current: Arc<Mutex<Id>>,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
    be: Arc<dyn super::backend::Backend>,
}

impl RepoLock {
    pub fn id(&self) -> Id {
        *self.current.lock().expect(POISONED)
    }
}

/// Takes a lock, waiting up to `wait` for a conflicting one to go. Shared locks exclude only
/// exclusive ones; an exclusive lock excludes all. Stale locks are ignored (and, for an exclusive
/// lock, removed).
pub fn lock(repo: &Repository, exclusive: bool, wait: Duration) -> Result<RepoLock> {
    lock_waiting(
        repo,
        exclusive,
        &Waiting {
            up_to: wait,
            cancel: None,
            notice: &|_| {},
        },
    )
}

/// How [`lock_waiting`] waits for a conflicting lock to go.
pub struct Waiting<'a> {
    /// The longest wait; then [`Error::Locked`] names the holder.
    pub up_to: Duration,
    /// Ends the wait early with [`Error::Interrupted`].
    pub cancel: Option<&'a CancelToken>,
    /// Told once, when the wait begins, what it waits for (the holder and the longest wait).
    pub notice: &'a dyn Fn(&str),
}

/// The backoff between looks at the locks: 0.5 s doubling to 10 s, +0–50 % so that two clients
/// that saw each other's locks do not retry in lockstep.
fn lock_policy(wait: Duration) -> retry::Policy {
    retry::Policy {
        backoff: retry::Backoff {
            first: Duration::from_millis(500),
            factor: 2.0,
            max: Duration::from_secs(10),
            jitter: retry::Jitter::Above(0.5),
        },
        limit: retry::Limit::Deadline(wait),
    }
}

/// [`lock`], with a cancel token and a notice when it has to wait.
pub fn lock_waiting(repo: &Repository, exclusive: bool, w: &Waiting) -> Result<RepoLock> {
    let told = std::cell::Cell::new(false);
    let on_wait = |holder: &LockFile, _: &retry::Wait| {
        tracing::info!(holder = %holder.describe(), "repository is locked; waiting");
        if !told.replace(true) {
            (w.notice)(&format!(
                "the repository at {} is locked: {}; waiting up to {} for it to go",
                repo.location(),
                holder.describe(),
                crate::process::human_duration(w.up_to)
            ));
        }
    };
    let attempt = |_| match try_lock(repo, exclusive) {
        Ok(Ok(l)) => Attempt::Done(l),
        Ok(Err(holder)) => Attempt::Retry(holder),
        Err(e) => Attempt::Fail(e),
    };
    retry::run(&lock_policy(w.up_to), w.cancel, on_wait, attempt).map_err(|g| match g {
        GaveUp::Failed { error, .. } => error,
        GaveUp::Exhausted { last, .. } => Error::Locked {
            location: repo.location(),
            holder: last.describe(),
        },
        GaveUp::Cancelled { .. } => Error::Interrupted,
    })
}

/// One try: the lock taken, or the lock that is in the way.
fn try_lock(repo: &Repository, exclusive: bool) -> Result<Result<RepoLock, LockFile>> {
    if let Some(l) = conflict(exclusive, &list_locks(repo)?, None) {
        return Ok(Err(l));
    }
    let id = repo.save_unpacked(FileType::Lock, &LockFile::ours(exclusive))?;
    std::thread::sleep(repo.backend().lock_settle_delay());
    match conflict(exclusive, &list_locks(repo)?, Some(&id)) {
        None => {
            if exclusive {
                let _ = remove_stale(repo);
            }
            Ok(Ok(start_refresher(repo, id, exclusive)))
        }
        Some(l) => {
            let _ = repo.backend().remove(FileType::Lock, &id.to_hex());
            Ok(Err(l))
        }
    }
}

fn start_refresher(repo: &Repository, id: Id, exclusive: bool) -> RepoLock {
    let current = Arc::new(Mutex::new(id));
    let stop = Arc::new(AtomicBool::new(false));
    let be = repo.backend().clone();
    let key = repo.key().clone();
    let v2 = repo.config().version >= 2;
    let (cur2, stop2, be2) = (current.clone(), stop.clone(), be.clone());
    let refresher = std::thread::Builder::new()
        .name("lock-refresh".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_secs(1));
                if last.elapsed() < REFRESH_EVERY || stop2.load(Ordering::Relaxed) {
                    continue;
                }
                last = Instant::now();
                let json = serde_json::to_vec(&LockFile::ours(exclusive)).expect("lock serializes");
                let plain = if v2 { super::encode_unpacked(&json) } else { json };
                let sealed = key.seal(&plain);
                let new_id = Id::hash(&sealed);
                if let Err(e) = be2.save(FileType::Lock, &new_id.to_hex(), &sealed) {
                    tracing::warn!(error = %e, "could not refresh the repository lock; will try again");
                    continue;
                }
                let old = std::mem::replace(&mut *cur2.lock().expect(POISONED), new_id);
                let _ = be2.remove(FileType::Lock, &old.to_hex());
            }
        })
        .expect("spawn lock refresher");
    RepoLock {
        current,
        stop,
        refresher: Some(refresher),
        be,
    }
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let id = *self.current.lock().expect(POISONED);
        let _ = self.be.remove(FileType::Lock, &id.to_hex());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::backend::{Backend, LocalBackend};

    fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("r")));
        let r = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        (dir, r)
    }

    #[test]
    fn shared_locks_coexist_exclusive_waits_then_fails() {
        let (_d, r) = repo();
        let a = lock(&r, false, Duration::ZERO).unwrap();
        let b = lock(&r, false, Duration::ZERO).unwrap();
        let e = lock(&r, true, Duration::from_millis(300));
        assert!(matches!(e, Err(Error::Locked { .. })), "{:?}", e.err());
        drop(a);
        drop(b);
        let x = lock(&r, true, Duration::ZERO).unwrap();
        assert!(matches!(
            lock(&r, false, Duration::ZERO),
            Err(Error::Locked { .. })
        ));
        drop(x);
        assert!(r.list_ids(FileType::Lock).unwrap().is_empty());
    }

    #[test]
    fn dead_process_lock_is_stale() {
        let (_d, r) = repo();
        let mut l = LockFile::ours(true);
        l.pid = 999_999_999 % 4_000_000 + 3_000_000; // no such pid
        assert!(l.is_stale());
        r.save_unpacked(FileType::Lock, &l).unwrap();
        let mut old = LockFile::ours(true);
        old.hostname = "elsewhere".into();
        old.time = (Local::now() - chrono::Duration::minutes(31)).fixed_offset();
        r.save_unpacked(FileType::Lock, &old).unwrap();
        let g = lock(&r, true, Duration::ZERO).unwrap();
        assert_eq!(
            r.list_ids(FileType::Lock).unwrap(),
            vec![g.id()],
            "stale locks removed"
        );
    }
}
