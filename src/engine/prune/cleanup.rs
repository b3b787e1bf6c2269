//! Prune's housekeeping: our stale temp files (local repositories) and the repository's stale
//! unfinished multipart uploads (S3), both leftovers of crashed or cut-off runs.

use super::{PruneOptions, TEMP_MAX_AGE};
use crate::cancel::Progress;
use crate::repo::Repository;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The stale temp files of a local repository (none for other backends).
pub(super) fn stale_temps(repo: &Repository) -> Vec<PathBuf> {
    repo.backend()
        .local_path()
        .map(find_stale_temps)
        .unwrap_or_default()
}

/// The directories our temp files can be in: the root, its file-type directories and the
/// subdirectories of `data`.
fn temp_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    for d in ["keys", "snapshots", "index", "locks", "data"] {
        dirs.push(root.join(d));
    }
    if let Ok(rd) = std::fs::read_dir(root.join("data")) {
        let mut subs: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        subs.sort();
        dirs.extend(subs);
    }
    dirs
}

/// Every stale temp file of ours in the repository's directories (local repositories only).
pub(super) fn find_stale_temps(root: &Path) -> Vec<PathBuf> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for d in temp_dirs(root) {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !crate::fsutil::is_temp_name(&name) {
                continue;
            }
            let Ok(md) = e.metadata() else { continue };
            let old = md
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .map(|age| age > TEMP_MAX_AGE)
                .unwrap_or(false);
            if md.is_file() && old {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Removes the stale temp files found by the plan; returns how many went. Another writer's
/// in-progress temp file is never an hour old (packs are written in seconds), so these are
/// leftovers of crashes. A failure is a warning.
pub(super) fn remove_stale_temps(paths: &[PathBuf], progress: &dyn Progress) -> usize {
    let mut removed = 0;
    for p in paths {
        match std::fs::remove_file(p) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => progress.note(&format!(
                "warning: could not remove the stale temp file {}: {e}",
                p.display()
            )),
        }
    }
    removed
}

/// Aborts (or with `dry_run` counts) the repository's stale unfinished multipart uploads. A
/// failure is a warning: they take space but harm nothing, and the next prune tries again.
pub(super) fn stale_uploads(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
    dry_run: bool,
) -> usize {
    match repo
        .backend()
        .abort_stale_uploads(opts.stale_upload_age, dry_run)
    {
        Ok(n) => n,
        Err(e) => {
            progress.note(&format!(
                "warning: could not abort the unfinished multipart uploads: {e}\n  hint: they are invisible and harmless but may take space; the next prune tries again, or abort them with your storage provider's tools (Garage: `garage bucket cleanup-incomplete-uploads`)"
            ));
            0
        }
    }
}
