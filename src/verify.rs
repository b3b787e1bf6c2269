//! Verification drills of a repository: their persisted state, the pure planning of read-data coverage, and the blocking runs (check, read-data share, restore drill, size).
//!
//! A repository may carry a `[repositories.NAME.verify]` table:
//!
//! ```toml
//! [repositories.main.verify]
//! check = "0 4 * * 0"          # structure check (indexes, pack headers, trees) every Sunday
//! read_data = "0 5 * * *"      # every day, re-read a share of the packs whole...
//! read_data_cycle = "30d"      # ...so that every pack is re-read at least once per 30 days
//! restore_drill = "0 6 1 * *"  # restore random files of the newest snapshot and compare hashes
//! restore_drill_files = 10
//! timezone = "Europe/Berlin"
//! ```
//!
//! **Coverage.** Each read-data run reads the packs not yet read in the current cycle, a share
//! sized so that the runs left in the cycle (by the schedule) read the rest: `ceil(unread /
//! runs_left)`. When every pack that exists has been read the cycle is complete and a new one
//! starts; if the cycle's end comes with packs still unread (the daemon was down, the schedule
//! too sparse), the next run reads all of them. Packs written during a cycle are read in it.
//! The one coverage figure (`backupctl status`, the metric `backupd_repository_verified_ratio`)
//! is `coverage_ratio`: the share of the packs that exist now that were verified in the
//! current cycle, measured again after every drill and every backup. A read-data run's summary
//! says what that run read, not a share, so no second, older figure is shown beside it.
//!
//! **Restore drill.** Up to `restore_drill_files` random files of the repository's newest
//! snapshot that a backup made (safety snapshots, tag `pre-restore`, are passed over:
//! `drill_snapshot`) are restored to a scratch folder inside the daemon's state folder; each restored
//! file is read back from disk and its SHA-256 compared with the SHA-256 of its content as the
//! repository holds it (every blob loaded and verified again). Where the source file still has
//! the snapshot's size and modification time, it is compared too. The scratch folder is removed
//! afterwards.

use crate::cancel::{CancelToken, Progress};
use crate::config::verify::DrillKind;
use crate::config::RepositoryConfig;
use crate::engine::check::{self, CheckOptions, ReadData};
use crate::engine::restore::{self, Overwrite, RestoreOptions};
use crate::error::{Error, Result};
use crate::repo::backend::{Backend, FileType};
use crate::repo::id::Id;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Node;
use crate::repo::Repository;
use crate::schedule::Slot;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The format version of a repository state file.
pub(crate) const REPO_STATE_VERSION: u32 = 1;

/// The outcome of one drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DrillResult {
    pub kind: DrillKind,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    pub ok: bool,
    /// One line: what was verified ("structure of 12 packs, 3 snapshots: no errors").
    pub summary: String,
    /// What failed, where and what to do (None when ok).
    pub error: Option<String>,
}

/// A drill's schedule position and its newest result.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DrillState {
    /// The schedule (and zone) its slots were computed with; a change rebases them.
    pub schedule: Option<String>,
    /// Slots before this instant are not held against the drill.
    pub baseline: Option<DateTime<Utc>>,
    /// The newest slot served.
    pub last_slot: Option<Slot>,
    pub last: Option<DrillResult>,
    /// The end of the newest successful run.
    pub last_ok: Option<DateTime<Utc>>,
}

/// Which packs were re-read in the current read-data cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Coverage {
    /// When the current cycle started (None: no read-data run yet).
    pub cycle_start: Option<DateTime<Utc>>,
    /// Packs (hex ids) read whole and found intact in this cycle.
    pub read: BTreeSet<String>,
    /// When the newest complete cycle ended: every pack that existed had been read.
    pub last_complete: Option<DateTime<Utc>>,
}

/// The repository's size on its storage, from a listing (no password needed; lock files, which
/// come and go, are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSize {
    /// All files but locks: packs, indexes, snapshots, keys, config.
    pub bytes: u64,
    pub packs: u64,
    pub snapshots: u64,
    pub measured: Option<DateTime<Utc>>,
    /// The room left on its storage, where the storage tells (a file system's free space, a
    /// provider's quota).
    #[serde(default)]
    pub space: Option<crate::repo::backend::Space>,
}

/// Everything the daemon keeps about a repository, in `STATE_DIR/repos/NAME.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RepoState {
    pub version: u32,
    pub repository: String,
    #[serde(default)]
    pub drills: BTreeMap<DrillKind, DrillState>,
    #[serde(default)]
    pub coverage: Coverage,
    #[serde(default)]
    pub size: Option<RepoSize>,
}

impl RepoState {
    pub fn new(repository: &str) -> RepoState {
        RepoState {
            version: REPO_STATE_VERSION,
            repository: repository.to_string(),
            drills: BTreeMap::new(),
            coverage: Coverage::default(),
            size: None,
        }
    }

    /// The newest failed drill result, if the newest run of any drill failed: "restore-drill
    /// of repository main failed at 2026-12-01 06:00 UTC: …".
    pub fn failing(&self) -> Option<String> {
        self.drills
            .values()
            .filter_map(|d| d.last.as_ref())
            .filter(|r| !r.ok)
            .max_by_key(|r| r.ended)
            .map(|r| {
                format!(
                    "{} of repository {} failed at {}: {}",
                    r.kind.as_str(),
                    self.repository,
                    r.ended.format("%Y-%m-%d %H:%M UTC"),
                    r.error.as_deref().unwrap_or(&r.summary)
                )
            })
    }
}

/// Repository state files: one JSON file per configured repository.
#[derive(Debug, Clone)]
pub(crate) struct RepoStateStore {
    dir: PathBuf,
}

impl RepoStateStore {
    pub fn at(state_dir: &Path) -> RepoStateStore {
        RepoStateStore {
            dir: state_dir.join("repos"),
        }
    }

    /// `repos/NAME.json`, with every byte of the name other than letters, digits, `-` and `_`
    /// written `%XX` (repository names are free-form TOML keys).
    pub fn path_of(&self, name: &str) -> PathBuf {
        let mut file = String::new();
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                file.push(b as char);
            } else {
                file.push_str(&format!("%{b:02X}"));
            }
        }
        self.dir.join(format!("{file}.json"))
    }

    /// The saved state, a fresh one if there is none. A damaged file is moved aside (its
    /// name returned in the error message of the log) and a fresh state used.
    pub fn load(&self, name: &str) -> (RepoState, Option<String>) {
        let path = self.path_of(name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return (RepoState::new(name), None)
            }
            Err(e) => {
                return (
                    RepoState::new(name),
                    Some(format!(
                        "cannot read the repository state {}: {e}; starting afresh",
                        path.display()
                    )),
                )
            }
        };
        match serde_json::from_slice::<RepoState>(&text) {
            Ok(s) => (s, None),
            Err(e) => {
                let aside = path.with_extension(format!("damaged-{}", Utc::now().timestamp()));
                let _ = std::fs::rename(&path, &aside);
                (
                    RepoState::new(name),
                    Some(format!(
                        "the repository state {} is damaged ({e}); moved aside to {} and starting afresh",
                        path.display(),
                        aside.display()
                    )),
                )
            }
        }
    }

    /// The saved state, without changing anything (for `backupctl` without a daemon).
    pub fn peek(&self, name: &str) -> Option<RepoState> {
        let text = std::fs::read(self.path_of(name)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes the state atomically (temp file, fsync, rename, fsync the folder).
    pub fn save(&self, st: &RepoState) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("create {}", self.dir.display()), e))?;
        let path = self.path_of(&st.repository);
        let json = serde_json::to_vec_pretty(st).expect("repository state serializes");
        crate::fsutil::atomic_write(&path, &json)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    }
}

// ---------------------------------------------------------------------------------------------
// Coverage planning (pure)

/// The share of packs a read-data run at `now` reads, and whether a new cycle starts with it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReadPlan {
    /// The cycle this run belongs to starts here (a new one when it differs from the state's).
    pub cycle_start: DateTime<Utc>,
    /// The packs already read in this cycle, kept (those that still exist).
    pub kept: BTreeSet<String>,
    /// The packs to read now, sorted.
    pub read: Vec<Id>,
    /// The cycle ended with packs unread: this run reads them all.
    pub overdue: usize,
}

/// Plans the share of a read-data run at `now`. `existing`: the packs now in the repository;
/// `runs_left(cycle_end)`: how many read-data slots fall in `(now, cycle_end)` (this run not
/// counted).
pub(crate) fn plan_read(
    cov: &Coverage,
    existing: &[Id],
    cycle: Duration,
    now: DateTime<Utc>,
    runs_left: impl Fn(DateTime<Utc>) -> usize,
) -> ReadPlan {
    let cycle = chrono::Duration::from_std(cycle).unwrap_or(chrono::Duration::days(30));
    let exists: BTreeSet<String> = existing.iter().map(|i| i.to_hex()).collect();
    let mut start = cov.cycle_start.unwrap_or(now);
    let mut kept: BTreeSet<String> = cov.read.intersection(&exists).cloned().collect();
    let all_read = !existing.is_empty() && kept.len() == exists.len();
    let mut overdue = 0;
    if all_read {
        // The previous cycle is complete: this run starts the next.
        start = now;
        kept.clear();
    } else if start + cycle <= now {
        // The cycle ended with packs unread: read every one of them now, in a cycle that starts
        // with this run.
        overdue = exists.len() - kept.len();
        start = now;
    }
    let mut unread: Vec<Id> = existing
        .iter()
        .filter(|i| !kept.contains(&i.to_hex()))
        .copied()
        .collect();
    unread.sort();
    let share = if overdue > 0 {
        unread.len()
    } else {
        let left = runs_left(start + cycle) + 1;
        unread.len().div_ceil(left)
    };
    unread.truncate(share);
    if overdue > 0 {
        // The packs read before belong to the old cycle.
        kept.clear();
    }
    ReadPlan {
        cycle_start: start,
        kept,
        read: unread,
        overdue,
    }
}

/// The share of `existing` packs read in the current cycle (1.0 for an empty repository).
pub(crate) fn coverage_ratio(cov: &Coverage, existing: &[Id]) -> f64 {
    if existing.is_empty() {
        return 1.0;
    }
    let read = existing
        .iter()
        .filter(|i| cov.read.contains(&i.to_hex()))
        .count();
    read as f64 / existing.len() as f64
}

// ---------------------------------------------------------------------------------------------
// Runs (blocking)

/// The storage of a configured repository (with its credentials).
pub(crate) fn backend_of(cfg: &RepositoryConfig) -> Result<Arc<dyn Backend>> {
    cfg.backend()
}

/// Measures the repository's size from a listing of its files (no password, no lock); also
/// returns the packs listed.
pub fn measure(be: &dyn Backend, now: DateTime<Utc>) -> Result<(RepoSize, Vec<Id>)> {
    let mut size = RepoSize {
        measured: Some(now),
        ..Default::default()
    };
    let mut packs = Vec::new();
    // Locks are left out: they come and go with every command.
    for t in [
        FileType::Config,
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
    ] {
        if t == FileType::Config {
            if let Ok(c) = be.load(FileType::Config, "config") {
                size.bytes += c.len() as u64;
            }
            continue;
        }
        let files = be.list(t)?;
        size.bytes += files.iter().map(|(_, s)| s).sum::<u64>();
        match t {
            FileType::Pack => {
                size.packs = files.len() as u64;
                packs = files.iter().filter_map(|(n, _)| Id::parse(n)).collect();
            }
            FileType::Snapshot => size.snapshots = files.len() as u64,
            _ => {}
        }
    }
    // The room left is a bonus: a storage that cannot tell it now is not a failed measurement.
    size.space = match be.space() {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("cannot read the free space of {}: {e}", be.location());
            None
        }
    };
    Ok((size, packs))
}

/// What a drill run reports back.
#[derive(Debug)]
pub(crate) struct DrillOutcome {
    pub result: DrillResult,
    /// Read-data: the coverage after the run (to be saved).
    pub coverage: Option<Coverage>,
}

/// Runs the structure check: every index, pack header and tree.
pub(crate) fn run_check(
    cfg: &RepositoryConfig,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<DrillOutcome> {
    let started = Utc::now();
    let (mut repo, _lock) = open_repository(&cfg.settings()?, LockMode::Shared)?;
    let rep = check::check(
        &mut repo,
        &CheckOptions {
            read_data: ReadData::No,
        },
        progress,
        cancel,
    )?;
    let summary = format!(
        "structure of {} packs, {} index files, {} snapshots and {} trees",
        rep.packs_listed, rep.index_files, rep.snapshots, rep.trees
    );
    Ok(DrillOutcome {
        result: check_result(DrillKind::Check, started, &cfg.path.shown(), summary, &rep),
        coverage: None,
    })
}

fn check_result(
    kind: DrillKind,
    started: DateTime<Utc>,
    repo: &str,
    summary: String,
    rep: &check::CheckReport,
) -> DrillResult {
    let error = (!rep.is_ok()).then(|| {
        let first = &rep.errors[0];
        format!(
            "{} problem{} in {repo}, first: {}\n  hint: run `backupctl -r {repo} check --read-data` for the full report; {}",
            rep.errors.len(),
            if rep.errors.len() == 1 { "" } else { "s" },
            first.message,
            first.hint
        )
    });
    DrillResult {
        kind,
        started,
        ended: Utc::now(),
        ok: rep.is_ok(),
        summary: format!(
            "{summary}: {}",
            if rep.is_ok() {
                "no errors".to_string()
            } else {
                format!("{} errors", rep.errors.len())
            }
        ),
        error,
    }
}

/// Runs a read-data share (see the module's rules); `runs_left` as for [`plan_read`].
pub(crate) fn run_read_data(
    cfg: &RepositoryConfig,
    cov: &Coverage,
    cycle: Duration,
    runs_left: impl Fn(DateTime<Utc>) -> usize,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<DrillOutcome> {
    let started = Utc::now();
    let (mut repo, _lock) = open_repository(&cfg.settings()?, LockMode::Shared)?;
    let existing: Vec<Id> = repo
        .backend()
        .list(FileType::Pack)?
        .into_iter()
        .filter_map(|(n, _)| Id::parse(&n))
        .collect();
    let plan = plan_read(cov, &existing, cycle, started, runs_left);
    let chosen: BTreeSet<Id> = plan.read.iter().copied().collect();
    let rep = check::check(
        &mut repo,
        &CheckOptions {
            read_data: ReadData::Packs(Arc::new(chosen)),
        },
        progress,
        cancel,
    )?;
    // A pack counts as covered when it was read and no problem names it.
    let damaged: BTreeSet<Id> = rep.errors.iter().filter_map(|e| e.pack).collect();
    let mut covered = plan.kept.clone();
    covered.extend(
        rep.packs_read_ids
            .iter()
            .filter(|p| !damaged.contains(p))
            .map(|p| p.to_hex()),
    );
    let complete = !existing.is_empty()
        && existing.iter().all(|p| covered.contains(&p.to_hex()))
        && rep.is_ok();
    let new_cov = Coverage {
        cycle_start: Some(plan.cycle_start),
        read: covered,
        last_complete: if complete {
            Some(Utc::now())
        } else {
            cov.last_complete
        },
    };
    let mut summary = format!(
        "read {} of {} packs ({} bytes)",
        rep.packs_read,
        existing.len(),
        rep.bytes_read,
    );
    if plan.overdue > 0 {
        summary.push_str(&format!(
            " (the previous cycle ended with {} packs unread: all read now)",
            plan.overdue
        ));
    }
    Ok(DrillOutcome {
        result: check_result(
            DrillKind::ReadData,
            started,
            &cfg.path.shown(),
            summary,
            &rep,
        ),
        coverage: Some(new_cov),
    })
}

/// Runs a restore drill into a scratch folder below `scratch_parent` (removed afterwards).
pub(crate) fn run_restore_drill(
    cfg: &RepositoryConfig,
    files: usize,
    scratch_parent: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<DrillOutcome> {
    let started = Utc::now();
    let (mut repo, _lock) = open_repository(&cfg.settings()?, LockMode::Shared)?;
    repo.load_index()?;
    // A drill restores a readable snapshot; `check` reports a damaged one.
    let all = repo.load_snapshots()?.readable;
    let Some((sid, snap)) = drill_snapshot(&all).cloned() else {
        let summary = if all.is_empty() {
            "the repository has no snapshot yet: nothing to restore"
        } else {
            "the repository holds only safety snapshots (tag pre-restore), no backup: nothing to restore"
        };
        return Ok(nothing_to_restore(started, summary.into()));
    };
    let chosen = pick_files(&repo, &snap, files, cancel)?;
    if chosen.is_empty() {
        return Ok(nothing_to_restore(
            started,
            format!(
                "snapshot {} holds no files: nothing to restore",
                sid.short()
            ),
        ));
    }
    let scratch = scratch_parent.join(format!(
        "restore-drill-{}-{}",
        sanitize(&cfg.path.shown()),
        started.format("%Y%m%dT%H%M%S")
    ));
    let _cleanup = RemoveOnDrop::below(scratch_parent, scratch.clone())?;
    let opts = RestoreOptions {
        target: scratch.clone(),
        includes: chosen.iter().map(|(p, _)| globset::escape(p)).collect(),
        overwrite: Overwrite::Always,
        ..RestoreOptions::new(scratch.clone())
    };
    let (problems, against_source) = match restore::restore(&repo, &snap, &opts, progress, cancel) {
        Err(e) => (vec![format!("the restore itself failed: {e}")], 0),
        Ok(_) => compare_restored(&repo, &scratch, &chosen, cancel)?,
    };
    Ok(DrillOutcome {
        result: restore_drill_result(
            started,
            &cfg.path.shown(),
            &sid,
            &snap,
            chosen.len(),
            &problems,
            against_source,
        ),
        coverage: None,
    })
}

/// The snapshot a restore drill restores from: the newest that a backup made. Safety snapshots
/// (tag `pre-restore`, what a restore backed up before replacing files) are undo points, not
/// backups, and are passed over. Equal times: the greatest id, so the choice is stable.
pub(crate) fn drill_snapshot(all: &[(Id, Snapshot)]) -> Option<&(Id, Snapshot)> {
    all.iter()
        .filter(|(_, s)| !restore::is_safety_snapshot(s))
        .max_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)))
}

/// The verdict of a restore drill of `files` files of the snapshot `sid`: ok without problems,
/// else failed naming each (at most `files` of them, one per file).
fn restore_drill_result(
    started: DateTime<Utc>,
    repo: &str,
    sid: &Id,
    snap: &Snapshot,
    files: usize,
    problems: &[String],
    against_source: usize,
) -> DrillResult {
    let ok = problems.is_empty();
    let summary = format!(
        "restored {files} random file{} of snapshot {} ({} {}) and compared their SHA-256 with the repository's content{}",
        if files == 1 { "" } else { "s" },
        sid.short(),
        snap.hostname,
        snap.time.format("%Y-%m-%d %H:%M %:z"),
        if against_source > 0 {
            format!(", {against_source} also with the unchanged source")
        } else {
            String::new()
        }
    );
    let error = (!ok).then(|| {
        format!(
            "{} of {files} files failed the restore drill of {repo}: {}\n  hint: run `backupctl -r {repo} check --read-data`; the snapshot may be damaged",
            problems.len(),
            problems.join("; "),
        )
    });
    DrillResult {
        kind: DrillKind::RestoreDrill,
        started,
        ended: Utc::now(),
        ok,
        summary,
        error,
    }
}

/// A restore drill that found nothing to restore: it passes, saying why.
fn nothing_to_restore(started: DateTime<Utc>, summary: String) -> DrillOutcome {
    DrillOutcome {
        result: DrillResult {
            kind: DrillKind::RestoreDrill,
            started,
            ended: Utc::now(),
            ok: true,
            summary,
            error: None,
        },
        coverage: None,
    }
}

/// Up to `files` files of the snapshot, chosen at random.
fn pick_files(
    repo: &Repository,
    snap: &Snapshot,
    files: usize,
    cancel: &CancelToken,
) -> Result<Vec<(String, Node)>> {
    let mut all: Vec<(String, Node)> = Vec::new();
    crate::engine::walk::walk_tree(repo, &snap.tree, "", &mut |path, node| {
        cancel.check()?;
        if node.is_file() {
            all.push((path.to_string(), node.clone()));
        }
        Ok(true)
    })?;
    let pick = rand::seq::index::sample(&mut rand::thread_rng(), all.len(), files.min(all.len()))
        .into_vec();
    Ok(pick.into_iter().map(|i| all[i].clone()).collect())
}

/// Compares each restored file below `scratch` with the repository's content and, where the
/// source is unchanged, with the source. Returns the problems found and how many files were
/// also compared with their source.
fn compare_restored(
    repo: &Repository,
    scratch: &Path,
    chosen: &[(String, Node)],
    cancel: &CancelToken,
) -> Result<(Vec<String>, usize)> {
    let mut problems = Vec::new();
    let mut against_source = 0usize;
    for (path, node) in chosen {
        cancel.check()?;
        let on_disk = scratch.join(path.trim_start_matches('/'));
        let got = match sha256_file(&on_disk) {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!("{path}: the restored file cannot be read: {e}"));
                continue;
            }
        };
        let want = match content_hash(repo, node) {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!("{path}: its content cannot be loaded: {e}"));
                continue;
            }
        };
        if got != want {
            problems.push(format!(
                "{path}: the restored file's SHA-256 {} differs from the snapshot's content {}",
                hex::encode(got),
                hex::encode(want)
            ));
            continue;
        }
        if !unchanged_source(path, node) {
            continue;
        }
        match sha256_file(Path::new(path)) {
            Ok(h) if h == got => against_source += 1,
            Ok(_) => {
                against_source += 1;
                problems.push(format!(
                    "{path}: the source file has the snapshot's size and modification time but other content than the restored file (silent corruption of the source or of the backup)"
                ));
            }
            Err(_) => {}
        }
    }
    Ok((problems, against_source))
}

/// A file name made of a repository path.
fn sanitize(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    t.trim_matches('_')
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect()
}

/// A scratch folder, removed (with all it holds) when this is dropped.
struct RemoveOnDrop(PathBuf);

impl RemoveOnDrop {
    /// Creates `parent` if need be; `scratch`, inside it, is the restore's to create.
    fn below(parent: &Path, scratch: PathBuf) -> Result<RemoveOnDrop> {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
        Ok(RemoveOnDrop(scratch))
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                tracing::warn!(
                    "cannot remove the restore drill's scratch folder {}: {e}; remove it by hand",
                    self.0.display()
                );
            }
        }
    }
}

fn sha256_file(p: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(h.finalize().into())
}

/// The SHA-256 of a file's content as the repository holds it (each blob loaded and verified).
fn content_hash(repo: &Repository, node: &Node) -> Result<[u8; 32]> {
    let mut h = Sha256::new();
    for id in node.content.iter().flatten() {
        h.update(repo.load_blob(id, BlobType::Data)?);
    }
    Ok(h.finalize().into())
}

/// The source file at the snapshot path still has the node's size and modification time.
fn unchanged_source(path: &str, node: &Node) -> bool {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let Ok(mtime) = md.modified() else {
        return false;
    };
    let mtime: DateTime<Utc> = mtime.into();
    md.is_file() && md.len() == node.size && mtime == node.mtime.with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::verify::{VerifyConfig, DEFAULT_CYCLE};

    fn id(i: u8) -> Id {
        let mut b = [0u8; 32];
        b[0] = i;
        Id(b)
    }

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    /// Daily runs over a 10-day cycle: runs left before `end` from day `now`.
    fn daily_left(now: DateTime<Utc>) -> impl Fn(DateTime<Utc>) -> usize {
        move |end: DateTime<Utc>| {
            ((end - now).num_hours().max(0) as usize)
                .div_ceil(24)
                .saturating_sub(1)
        }
    }

    #[test]
    fn every_pack_is_read_once_per_cycle_in_even_shares() {
        let packs: Vec<Id> = (0..25).map(id).collect();
        let mut cov = Coverage::default();
        let mut reads = BTreeMap::<Id, u32>::new();
        for day in 1..=10 {
            let now = t(day, 5);
            let p = plan_read(&cov, &packs, 10 * DAY, now, daily_left(now));
            assert_eq!(p.overdue, 0);
            assert!(p.read.len() <= 3, "day {day}: share {}", p.read.len());
            for i in &p.read {
                *reads.entry(*i).or_default() += 1;
            }
            cov.cycle_start = Some(p.cycle_start);
            cov.read = p.kept;
            cov.read.extend(p.read.iter().map(|i| i.to_hex()));
            if day < 10 {
                assert_eq!(cov.cycle_start, Some(t(1, 5)), "one cycle");
            }
        }
        assert_eq!(reads.len(), 25, "every pack read");
        assert!(
            reads.values().all(|&n| n == 1),
            "each exactly once: {reads:?}"
        );
        assert_eq!(coverage_ratio(&cov, &packs), 1.0);
        // Day 11: the cycle is complete, a new one starts with this run.
        let now = t(11, 5);
        let p = plan_read(&cov, &packs, 10 * DAY, now, daily_left(now));
        assert_eq!(p.cycle_start, now);
        assert!(p.kept.is_empty());
        assert_eq!(p.read.len(), 3);
    }

    #[test]
    fn a_cycle_that_ends_unread_reads_the_rest_at_once() {
        let packs: Vec<Id> = (0..20).map(id).collect();
        let mut cov = Coverage {
            cycle_start: Some(t(1, 5)),
            ..Default::default()
        };
        cov.read.extend(packs[..5].iter().map(|i| i.to_hex()));
        // The daemon was down past the cycle's end (day 11).
        let now = t(14, 5);
        let p = plan_read(&cov, &packs, 10 * DAY, now, daily_left(now));
        assert_eq!(p.overdue, 15);
        assert_eq!(p.read.len(), 15);
        assert_eq!(p.cycle_start, now);
        assert!(p.kept.is_empty());
    }

    #[test]
    fn new_packs_join_the_cycle_and_removed_ones_leave_it() {
        let mut packs: Vec<Id> = (0..10).map(id).collect();
        let mut cov = Coverage {
            cycle_start: Some(t(1, 5)),
            ..Default::default()
        };
        cov.read.extend(packs[..6].iter().map(|i| i.to_hex()));
        packs.drain(..2); // pruned
        packs.extend((100..104).map(id)); // new
        assert_eq!(coverage_ratio(&cov, &packs), 4.0 / 12.0);
        let now = t(9, 5);
        let p = plan_read(&cov, &packs, 10 * DAY, now, daily_left(now));
        assert_eq!(p.kept.len(), 4);
        // 8 unread, 2 runs (today and day 10): 4 each.
        assert_eq!(p.read.len(), 4);
        assert!(p.read.iter().all(|i| !p.kept.contains(&i.to_hex())));
    }

    #[test]
    fn an_empty_repository_is_fully_covered() {
        let p = plan_read(&Coverage::default(), &[], 10 * DAY, t(1, 5), |_| 9);
        assert!(p.read.is_empty());
        assert_eq!(coverage_ratio(&Coverage::default(), &[]), 1.0);
    }

    #[test]
    fn the_config_parses_with_defaults() {
        let c: VerifyConfig =
            toml::from_str("check = \"0 4 * * 0\"\nread_data = \"@daily\"\n").unwrap();
        assert_eq!(c.read_data_cycle, DEFAULT_CYCLE);
        assert_eq!(c.restore_drill_files, 10);
        let kinds: Vec<DrillKind> = DrillKind::ALL
            .into_iter()
            .filter(|k| c.expr(*k).is_some())
            .collect();
        assert_eq!(kinds, vec![DrillKind::Check, DrillKind::ReadData]);
        assert!(toml::from_str::<VerifyConfig>("chek = \"x\"").is_err());
    }

    #[test]
    fn a_failed_drill_is_named_with_its_repository() {
        let mut s = RepoState::new("main");
        assert!(s.failing().is_none());
        s.drills.insert(
            DrillKind::RestoreDrill,
            DrillState {
                last: Some(DrillResult {
                    kind: DrillKind::RestoreDrill,
                    started: t(1, 6),
                    ended: t(1, 6),
                    ok: false,
                    summary: "x".into(),
                    error: Some("1 of 3 files failed".into()),
                }),
                ..Default::default()
            },
        );
        let f = s.failing().unwrap();
        assert!(
            f.starts_with(
                "restore-drill of repository main failed at 2026-12-01 06:00 UTC: 1 of 3"
            ),
            "{f}"
        );
    }

    #[test]
    fn the_drill_restores_the_newest_backup_not_a_safety_snapshot() {
        let snap = |time: &str, tags: &[&str]| -> Snapshot {
            serde_json::from_value(serde_json::json!({
                "time": time,
                "tree": id(1).to_hex(),
                "paths": ["/srv"],
                "hostname": "h1",
                "tags": tags,
            }))
            .unwrap()
        };
        assert!(drill_snapshot(&[]).is_none());
        let safety = (id(9), snap("2026-12-03T00:00:00Z", &["pre-restore"]));
        assert!(drill_snapshot(std::slice::from_ref(&safety)).is_none());
        let all = vec![
            (id(1), snap("2026-12-01T00:00:00Z", &["job:app"])),
            safety,
            (id(2), snap("2026-12-02T00:00:00Z", &["job:app", "partial"])),
            (id(3), snap("2026-12-02T00:00:00Z", &[])),
        ];
        // The newest backup (equal times: the greater id), the newer safety snapshot passed over.
        assert_eq!(drill_snapshot(&all).map(|(i, _)| *i), Some(id(3)));
    }

    #[test]
    fn a_restore_drill_compares_random_files_with_the_repository_and_the_source() {
        use crate::cancel::NoProgress;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a.txt"), "alpha").unwrap();
        std::fs::write(src.join("b.txt"), "beta").unwrap();
        std::fs::write(dir.path().join("pw"), "pw\n").unwrap();
        let text = format!(
            "[repositories.r]\npath = {:?}\npassword_file = {:?}\n",
            dir.path().join("repo").display().to_string(),
            dir.path().join("pw").display().to_string()
        );
        let cfg = crate::config::Config::parse(&text, Path::new("t.toml")).unwrap();
        let rc = &cfg.repositories["r"];
        let cancel = CancelToken::new();
        let scratch = dir.path().join("scratch");
        let drill = |files| run_restore_drill(rc, files, &scratch, &NoProgress, &cancel);

        let be = rc.backend().unwrap();
        let mut repo = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        let r = drill(3).unwrap().result;
        assert!(r.ok && r.summary.contains("no snapshot yet"), "{r:?}");
        let opts = crate::engine::backup::BackupOptions {
            paths: vec![src.clone()],
            ..Default::default()
        };
        let job_snapshot = crate::engine::backup::backup(&mut repo, &opts, &NoProgress, &cancel)
            .unwrap()
            .snapshot_id;
        // A newer safety snapshot (what a restore backs up first) of another folder.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("c.txt"), "gamma").unwrap();
        let safety = crate::engine::backup::BackupOptions {
            paths: vec![other],
            tags: vec![restore::SAFETY_TAG.to_string()],
            ..Default::default()
        };
        let safety_snapshot =
            crate::engine::backup::backup(&mut repo, &safety, &NoProgress, &cancel)
                .unwrap()
                .snapshot_id;

        let r = drill(5).unwrap().result;
        assert!(r.ok, "{r:?}");
        // The drill restores the backup, not the newer safety snapshot.
        assert!(
            r.summary.contains(&job_snapshot.short())
                && !r.summary.contains(&safety_snapshot.short()),
            "{}",
            r.summary
        );
        assert!(
            r.summary.starts_with("restored 2 random files of snapshot")
                && r.summary.ends_with(", 2 also with the unchanged source"),
            "{}",
            r.summary
        );
        assert_eq!(
            std::fs::read_dir(&scratch).unwrap().count(),
            0,
            "scratch left behind"
        );
        let r = drill(1).unwrap().result;
        assert!(
            r.summary.starts_with("restored 1 random file of"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn a_failed_restore_drill_names_each_problem_and_what_to_run() {
        let snap: crate::repo::snapshot::Snapshot = serde_json::from_value(serde_json::json!({
            "time": "2026-12-01T06:00:00+00:00",
            "tree": id(1).to_hex(),
            "paths": ["/srv"],
            "hostname": "h1",
        }))
        .unwrap();
        let problems = vec![
            "/srv/a: differs".to_string(),
            "/srv/b: unreadable".to_string(),
        ];
        let r = restore_drill_result(t(1, 6), "/repo", &id(2), &snap, 3, &problems, 0);
        assert!(!r.ok);
        assert_eq!(r.kind, DrillKind::RestoreDrill);
        assert!(
            r.summary.contains("(h1 2026-12-01 06:00 +00:00)"),
            "{}",
            r.summary
        );
        let e = r.error.unwrap();
        assert!(
            e.starts_with(
                "2 of 3 files failed the restore drill of /repo: /srv/a: differs; /srv/b"
            ) && e.contains("backupctl -r /repo check --read-data"),
            "{e}"
        );
        let r = restore_drill_result(t(1, 6), "/repo", &id(2), &snap, 3, &[], 1);
        assert!(
            r.ok && r.error.is_none() && r.summary.ends_with(", 1 also with the unchanged source")
        );
    }
}
