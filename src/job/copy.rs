//! A destination job's run (`app@offsite`): copy every snapshot of the job its repository is missing from the job's first repository, oldest first, then apply the destination's retention.
//!
//! Which snapshots are missing is [`missing`]'s decision: the job's snapshots (tag `job:NAME`)
//! newer than the newest one the destination holds, so a snapshot the destination's own
//! retention forgot is never copied again. Copies are made oldest first and each is committed
//! before the next starts (packs, index, snapshot: `engine::copy`), so a copy cut short leaves
//! the destination with a prefix, and the next run goes on from there.

use super::{apply_retention, Failure, JobReport};
use crate::cancel::{CancelToken, Progress};
use crate::config::destinations::DestinationOf;
use crate::config::{Config, JobConfig};
use crate::engine::copy::{copy, CopyReport};
use crate::error::{Error, Result};
use crate::repo::id::Id;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::snapshot::Snapshot;
use serde::Serialize;

/// What a destination job's run copied (in its report).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CopiedReport {
    /// The repository the copies came from (the job's first).
    pub from: String,
    /// (source id, the new snapshot's id in the destination), oldest first.
    pub copied: Vec<(String, String)>,
    /// The job's snapshots the destination already had (among those newer than its newest).
    pub skipped: usize,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
}

/// The job's snapshots (tag `job:NAME`) in `source` that `dest` is missing, oldest first: those
/// newer than the newest of the job's snapshots in `dest` (all of them when it has none).
pub(crate) fn missing(
    job: &str,
    source: Vec<(Id, Snapshot)>,
    dest: &[(Id, Snapshot)],
) -> Vec<(Id, Snapshot)> {
    let tag = format!("job:{job}");
    let newest = dest
        .iter()
        .filter(|(_, s)| s.tags.contains(&tag))
        .map(|(_, s)| s.time)
        .max();
    let mut v: Vec<_> = source
        .into_iter()
        .filter(|(_, s)| s.tags.contains(&tag))
        .filter(|(_, s)| newest.is_none_or(|n| s.time > n))
        .collect();
    v.sort_by_key(|(_, s)| s.time);
    v
}

/// Runs the destination job `job_name`: the copies, then its retention.
pub(super) fn run(
    cfg: &Config,
    job_name: &str,
    job: &JobConfig,
    d: &DestinationOf,
    rep: &mut JobReport,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Option<Failure> {
    match copy_missing(cfg, job, d, progress, cancel) {
        Err(e) => return Some(Failure::of(&copy_error(e, cancel, job_name, d))),
        Ok(c) => rep.record_copies(c),
    }
    let ret = job.retention.as_ref()?;
    match apply_retention(&d.job, ret, cfg.repository_of(job), progress, cancel) {
        Ok(r) => {
            rep.retention = Some(r);
            None
        }
        Err(e) => Some(Failure {
            message: format!("the copies were made, but the destination's retention failed: {e}"),
            code: e.exit_code(),
        }),
    }
}

/// An interrupted copy is an interruption; anything else keeps its message.
fn copy_error(e: Error, cancel: &CancelToken, job_name: &str, d: &DestinationOf) -> Error {
    if cancel.is_cancelled() {
        return Error::Interrupted;
    }
    tracing::debug!(job = %job_name, "copying from {} failed: {e}", d.from);
    e
}

/// Opens both repositories (shared locks), finds what the destination is missing, copies it.
fn copy_missing(
    cfg: &Config,
    job: &JobConfig,
    d: &DestinationOf,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CopiedReport> {
    let from_cfg = &cfg.repositories[&d.from];
    let to_cfg = cfg.repository_of(job);
    let (mut src, _src_lock) = open_repository(&from_cfg.settings()?, LockMode::Shared)?;
    let (mut dst, _dst_lock) = open_repository(&to_cfg.settings()?, LockMode::Shared)?;
    if src.config().id == dst.config().id {
        return Err(Error::Input(format!(
            "{} and {} are the same repository (id {})\n  hint: name another repository in the job's repositories",
            from_cfg.path.shown(),
            to_cfg.path.shown(),
            &src.config().id[..10]
        )));
    }
    let readable = |r: &crate::repo::Repository| -> Result<Vec<(Id, Snapshot)>> {
        let all = r.load_snapshots()?;
        for bad in &all.damaged {
            tracing::warn!("copy skipped it: {}", bad.error());
        }
        Ok(all.readable)
    };
    let todo = missing(&d.job, readable(&src)?, &readable(&dst)?);
    if todo.is_empty() {
        progress.note(&format!(
            "{} has every snapshot of job {}",
            to_cfg.path.shown(),
            d.job
        ));
        return Ok(report_of(from_cfg.path.shown(), CopyReport::default()));
    }
    src.load_index()?;
    dst.load_index()?;
    let r = copy(&src, &mut dst, &todo, progress, cancel)?;
    for (s, t) in &r.copied {
        tracing::info!(
            "snapshot {} of job {} copied to {} as {}",
            s.to_hex(),
            d.job,
            to_cfg.path.shown(),
            t.short()
        );
    }
    Ok(report_of(from_cfg.path.shown(), r))
}

fn report_of(from: String, r: CopyReport) -> CopiedReport {
    CopiedReport {
        from,
        copied: r
            .copied
            .iter()
            .map(|(s, t)| (s.to_hex(), t.to_hex()))
            .collect(),
        skipped: r.skipped.len(),
        blobs_copied: r.blobs_copied,
        bytes_copied: r.bytes_copied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(n: u8, minute: u32, tags: &[&str]) -> (Id, Snapshot) {
        let json = format!(
            r#"{{"time":"2026-12-01T02:{minute:02}:00Z","tree":"{}","paths":["/srv"],"hostname":"h","tags":{}}}"#,
            "ab".repeat(32),
            serde_json::to_string(tags).unwrap()
        );
        let s: Snapshot = serde_json::from_str(&json).unwrap();
        (Id([n; 32]), s)
    }

    fn ids(v: &[(Id, Snapshot)]) -> Vec<u8> {
        v.iter().map(|(i, _)| i.0[0]).collect()
    }

    #[test]
    fn an_empty_destination_gets_every_snapshot_of_the_job_oldest_first() {
        let source = vec![
            snap(3, 30, &["job:app"]),
            snap(1, 10, &["job:app"]),
            snap(9, 15, &["job:other"]),
            snap(2, 20, &["job:app", "x"]),
        ];
        assert_eq!(ids(&missing("app", source, &[])), vec![1, 2, 3]);
    }

    #[test]
    fn only_snapshots_newer_than_the_destinations_newest_are_missing() {
        // The destination's retention forgot 1; it has 2: only 3 and 4 are copied (1 never again).
        let source = vec![
            snap(1, 10, &["job:app"]),
            snap(2, 20, &["job:app"]),
            snap(3, 30, &["job:app"]),
            snap(4, 40, &["job:app"]),
        ];
        let dest = vec![snap(12, 20, &["job:app"]), snap(13, 50, &["job:other"])];
        assert_eq!(ids(&missing("app", source, &dest)), vec![3, 4]);
    }

    #[test]
    fn a_destination_that_has_the_newest_is_missing_nothing() {
        let source = vec![snap(1, 10, &["job:app"]), snap(2, 20, &["job:app"])];
        let dest = vec![snap(12, 20, &["job:app"])];
        assert!(missing("app", source, &dest).is_empty());
    }
}
