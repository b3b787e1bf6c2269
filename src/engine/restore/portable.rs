//! Restore's execution without directory descriptors (Windows): regular files and directories through paths, each file written to a temp name, verified, flushed and renamed; other entry types, owners and modes are refused per entry with a clear message.
//!
//! Differences from Unix (docs/platforms.md): symbolic links, FIFOs and device nodes are
//! errors naming the entry; a hard link is restored as a separate copy (with a warning);
//! owners and permission bits are not set; `--delete` is refused; an existing entry of another
//! type in the way (a directory where the snapshot has a file, or a file where it has a
//! directory) is an error, never removed.

use super::*;
use std::fs;

/// Restores the planned items one after the other (see the module docs).
pub(super) fn run(
    repo: &Repository,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<Run> {
    if opts.delete {
        return Err(Error::Input(
            "--delete is not supported on this platform (only on Unix)\n  hint: restore into an empty folder instead".into(),
        ));
    }
    let (items, plan_errors) = plan(repo, snapshot, opts, cancel)?;
    let target = &opts.target;
    match fs::metadata(target) {
        Ok(m) if !m.is_dir() => {
            return Err(Error::Input(format!(
                "cannot restore into {}: it is not a directory\n  hint: --target must be a directory (it is created if missing)",
                target.display()
            )))
        }
        Ok(_) => {}
        Err(_) if opts.dry_run => {}
        Err(_) => fs::create_dir_all(target).map_err(|e| {
            Error::io(
                format!("create the target directory {}", target.display()),
                e,
            )
        })?,
    }
    let mut run = Run {
        report: RestoreReport {
            dry_run: opts.dry_run,
            errors: plan_errors,
            ..Default::default()
        },
        touched: None,
        files: Vec::new(),
    };
    if !opts.dry_run {
        let total: u64 = items
            .iter()
            .filter(|i| i.node.is_file())
            .map(|i| i.node.size)
            .sum();
        progress.phase("restore", Some(total));
    }
    let x = Exec {
        repo,
        opts,
        progress,
        cancel,
        run: &mut run,
    };
    x.all(&items)?;
    run.report.sort_lists();
    Ok(run)
}

struct Exec<'a> {
    repo: &'a Repository,
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    cancel: &'a CancelToken,
    run: &'a mut Run,
}

impl Exec<'_> {
    fn all(mut self, items: &[Item]) -> Result<()> {
        // Directories that could not be made: nothing below them is attempted.
        let mut blocked: Vec<&[Name]> = Vec::new();
        // Directories to give their times once their contents are in place.
        let mut dirs: Vec<(PathBuf, &Node)> = Vec::new();
        for it in items {
            self.cancel.check()?;
            if it.rel.is_empty() || blocked.iter().any(|b| it.rel.starts_with(b)) {
                continue;
            }
            let mut dest = self.opts.target.clone();
            dest.extend(&it.rel);
            let existing = fs::symlink_metadata(&dest).ok();
            if it.node.is_dir() {
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(_) => {
                        self.error(&dest, format!("cannot restore the directory {}: something that is not a directory is in the way (on this platform it is never removed)\n  hint: move it away and restore again", dest.display()));
                        blocked.push(&it.rel);
                        continue;
                    }
                    None if self.opts.dry_run => self.action("create", kind::DIR, &dest),
                    None => {
                        if let Err(e) = fs::create_dir(&dest) {
                            self.error(
                                &dest,
                                format!("could not create the directory {}: {e}", dest.display()),
                            );
                            blocked.push(&it.rel);
                            continue;
                        }
                        self.run.touch(&it.rel[..it.rel.len() - 1]);
                    }
                }
                if it.selected {
                    self.run.report.dirs += 1;
                    dirs.push((dest, &it.node));
                }
            } else if it.node.is_file() {
                self.file(it, &dest, existing)?;
            } else {
                self.error(&dest, format!("cannot restore {} ({} in the snapshot): it is a {}, and only regular files and directories can be restored on this platform\n  hint: restore it on Linux or macOS", dest.display(), it.snap_path, it.node.kind));
            }
        }
        if !self.opts.dry_run {
            for (dest, node) in dirs.iter().rev() {
                if let Err(e) = open_for_times(dest).and_then(|f| f.set_modified(mtime(node))) {
                    self.run.report.warnings.push(warn_issue(
                        dest,
                        format!("could not set the times of {}: {e}", dest.display()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn error(&mut self, dest: &Path, message: String) {
        self.run.report.errors.push(warn_issue(dest, message));
    }

    fn action(&mut self, action: &'static str, kind: &str, dest: &Path) {
        if self.opts.dry_run {
            self.run.report.actions.push(Action {
                action,
                kind: kind.to_string(),
                path: dest.display().to_string(),
            });
        }
    }

    fn skip(&mut self, dest: &Path, reason: &str) {
        self.run.report.skipped.push(Skipped {
            path: dest.display().to_string(),
            reason: reason.into(),
        });
    }

    fn file(&mut self, it: &Item, dest: &Path, existing: Option<fs::Metadata>) -> Result<()> {
        let node = &it.node;
        if let Some(m) = &existing {
            if m.is_dir() {
                self.error(dest, format!("cannot restore the file {}: a directory is in the way (on this platform it is never removed)\n  hint: move it away and restore again", dest.display()));
                return Ok(());
            }
            match self.opts.overwrite {
                Overwrite::Always => {}
                Overwrite::Never => {
                    self.skip(dest, "it exists in the target (--overwrite never)");
                    return Ok(());
                }
                Overwrite::IfNewer => {
                    let older = m.modified().is_ok_and(|t| t < mtime(node));
                    if !older {
                        self.skip(
                            dest,
                            "the existing entry is not older than the snapshot's (--overwrite if-newer)",
                        );
                        return Ok(());
                    }
                }
                Overwrite::IfChanged => {
                    if m.is_file()
                        && fs::File::open(dest).is_ok_and(|f| has_content(self.repo, f, node))
                    {
                        self.run.report.unchanged += 1;
                        self.run.in_place(it, dest);
                        return Ok(());
                    }
                }
            }
        }
        if it.link_to.is_some() {
            self.run.report.warnings.push(warn_issue(
                dest,
                format!(
                    "{} is a hard link in the snapshot; it was restored as a separate copy (hard links are not restored on this platform)",
                    dest.display()
                ),
            ));
        }
        let replaced = existing.is_some();
        let bytes = if self.opts.dry_run {
            node.size
        } else {
            match self.write(node, dest) {
                Ok(n) => n,
                Err(Error::Interrupted) => return Err(Error::Interrupted),
                Err(e) => {
                    let what = if replaced {
                        "the existing file is unchanged"
                    } else {
                        "it was not created"
                    };
                    self.run.report.errors.push(EntryIssue {
                        path: dest.display().to_string(),
                        damaged: matches!(e, Error::Damaged { .. }),
                        message: format!(
                            "could not restore {} ({what}; no temp file is left): {e}",
                            dest.display()
                        ),
                    });
                    return Ok(());
                }
            }
        };
        let parent = &it.rel[..it.rel.len() - 1];
        self.run.touch(parent);
        if replaced {
            self.run.report.replaced.push(dest.display().to_string());
        }
        self.run.report.files += 1;
        self.run.report.bytes_written += bytes;
        if !self.opts.dry_run {
            self.run.in_place(it, dest);
        }
        self.action(
            if replaced { "replace" } else { "create" },
            kind::FILE,
            dest,
        );
        Ok(())
    }

    /// Writes `node` to a temp name beside `dest`, verified blob by blob; sets its time,
    /// flushes it and renames it over `dest` (the temp file is removed on any failure).
    fn write(&self, node: &Node, dest: &Path) -> Result<u64> {
        let tmp = fsutil::temp_path_for(dest);
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
            let n = write_blobs(
                self.repo,
                self.progress,
                self.cancel,
                &mut f,
                node,
                dest,
                &tmp,
            )?;
            f.set_modified(mtime(node))
                .map_err(|e| Error::io(format!("set the time of {}", tmp.display()), e))?;
            f.sync_all()
                .map_err(|e| Error::io(format!("flush {}", tmp.display()), e))?;
            drop(f);
            fsutil::replace(&tmp, dest).map_err(|e| {
                Error::io(format!("rename {} to {}", tmp.display(), dest.display()), e)
            })?;
            Ok(n)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// The snapshot's modification time of `node`.
fn mtime(node: &Node) -> std::time::SystemTime {
    std::time::SystemTime::from(node.mtime)
}

/// Opens a directory to set its times (Windows: FILE_WRITE_ATTRIBUTES access, which a
/// directory grants where a write handle is refused).
fn open_for_times(dir: &Path) -> io::Result<fs::File> {
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_WRITE_ATTRIBUTES: u32 = 0x100;
        fs::OpenOptions::new()
            .access_mode(FILE_WRITE_ATTRIBUTES)
            .open(dir)
    }
    #[cfg(not(windows))]
    {
        fs::File::open(dir)
    }
}
