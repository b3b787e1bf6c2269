//! `backupctl mount DIR`: the repository's snapshots as a read-only FUSE file system (restic's `mount` layout and filters), served in the foreground until SIGINT or SIGTERM; Linux only.

use super::snapshots::FilterArgs;
use super::Ctx;
use crate::error::{Error, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// An empty directory to mount on.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Let other users than the one who mounts in (the files' permissions still apply). A user
    /// other than root needs `user_allow_other` in /etc/fuse.conf.
    #[arg(long)]
    pub allow_other: bool,
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn run(_ctx: &Ctx, a: Args) -> Result<i32> {
    Err(Error::Input(format!(
        "cannot mount on {}: mount is only supported on Linux (it needs the kernel's FUSE)\n  hint: list a snapshot with `backupctl ls`, or get files out with `backupctl restore` or `backupctl dump`",
        a.mountpoint.display()
    )))
}

#[cfg(target_os = "linux")]
pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    use crate::engine::mount::fs;
    use crate::repo::open::{open_repository, LockMode};
    use std::sync::Arc;
    use std::time::Duration;

    let dir = usable_mount_point(&a.mountpoint)?;
    let (mut repo, lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let all = super::snapref::load(ctx, &repo)?;
    let f = a.filter.filter();
    let snaps: Vec<_> = all
        .readable
        .into_iter()
        .filter(|(_, s)| f.matches(s))
        .collect();
    repo.load_index()?;
    let quiet = ctx.global.quiet;
    let warn: fs::Warn = Box::new(move |m| {
        if !quiet {
            eprintln!("warning: {m}");
        }
    });
    let filesystem = fs::MountFs::new(Arc::new(repo), &snaps, warn);
    let options = fs::Options {
        allow_other: a.allow_other,
    };
    let mounted = fs::mount(filesystem, &dir, options).map_err(failed)?;
    if !mounted.auto_unmount {
        ctx.warn(format!(
            "mounted without auto_unmount (/etc/fuse.conf has no `user_allow_other`): if backupctl is killed, `fusermount3 -u {}` frees the mount point",
            dir.display()
        ));
    }
    event(ctx, "mounted", &dir, Some(snaps.len()));
    ctx.say(format!(
        "serving {} snapshots of {} at {}\nquit with Ctrl-C here (or SIGTERM), or unmount it with `fusermount3 -u {}`",
        snaps.len(),
        ctx.location()?,
        dir.display(),
        dir.display()
    ));
    while mounted.is_served() && !ctx.cancel.is_cancelled() {
        std::thread::sleep(Duration::from_millis(100));
    }
    mounted.unmount(Duration::from_secs(10)).map_err(failed)?;
    drop(lock);
    event(ctx, "unmounted", &dir, None);
    Ok(crate::error::exit::OK)
}

/// With --json, one line of JSON as the mount comes and goes (JSON Lines: a reader acts on the
/// first line while the mount is served).
#[cfg(target_os = "linux")]
fn event(ctx: &Ctx, what: &str, dir: &std::path::Path, snapshots: Option<usize>) {
    if !ctx.global.json {
        return;
    }
    let mut v = serde_json::json!({"message_type": what, "mountpoint": dir});
    if let Some(n) = snapshots {
        v["snapshots"] = n.into();
    }
    println!("{v}");
}

/// The mount point, canonical, once it is known to be an empty directory that is not mounted on.
#[cfg(target_os = "linux")]
fn usable_mount_point(dir: &std::path::Path) -> Result<PathBuf> {
    use crate::engine::mount::{self, MountError};
    mount::check_mount_point(dir, &mount::inspect_mount_point(dir).map_err(failed)?)
        .map_err(failed)?;
    let canonical = dir.canonicalize().map_err(|source| {
        failed(MountError::Unreadable {
            dir: dir.to_path_buf(),
            source,
        })
    })?;
    if mount::fs::is_mounted(&canonical) {
        return Err(failed(MountError::AlreadyMounted { dir: canonical }));
    }
    Ok(canonical)
}

#[cfg(target_os = "linux")]
fn failed(e: crate::engine::mount::MountError) -> Error {
    Error::Input(e.to_string())
}
