//! `backupctl cache [--cleanup]`: the cache folder's repository folders — last use, size, old — and the removal of old ones (restic's `cache`).

use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::repo::cache::default_cache_dir;
use crate::repo::cachedirs::{self, CacheDir};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Remove the folders of repositories not used for longer than --max-age.
    #[arg(long)]
    pub cleanup: bool,
    /// Days without use after which a repository's folder is old.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub max_age: u64,
    /// Do not add up the folders' sizes.
    #[arg(long)]
    pub no_size: bool,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let Some(root) = default_cache_dir() else {
        return Err(Error::Input(
            "there is no cache folder on this system (no home folder)\n  hint: set BACKUPD_CACHE_DIR".into(),
        ));
    };
    let max_age = Duration::from_secs(a.max_age.saturating_mul(86_400));
    let failed = |e: std::io::Error| {
        Error::Input(format!(
            "cannot read the cache folder {}: {e}\n  hint: check its permissions, or set BACKUPD_CACHE_DIR",
            root.display()
        ))
    };
    let dirs = cachedirs::list(&root, max_age, !a.no_size).map_err(failed)?;
    let mut removed = Vec::new();
    if a.cleanup {
        for d in dirs.iter().filter(|d| d.old) {
            cachedirs::remove(d).map_err(|e| {
                Error::Input(format!(
                    "cannot remove the old cache folder {}: {e}\n  hint: remove it by hand; it holds only copies",
                    d.path.display()
                ))
            })?;
            removed.push(d.id.clone());
        }
    }
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({
            "cache_dir": root, "repositories": dirs, "removed": removed,
        }));
    } else {
        say(ctx, &root, &dirs, &removed, a.cleanup);
    }
    Ok(exit::OK)
}

/// The global --cleanup-cache, after a command: the old folders (30 days unused) removed, what
/// was removed or could not be said on stderr; a failure here does not change the exit code.
pub(crate) fn cleanup_after(ctx: &Ctx) {
    let Some(root) = default_cache_dir() else {
        return;
    };
    let max_age = Duration::from_secs(30 * 86_400);
    let dirs = match cachedirs::list(&root, max_age, false) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            return eprintln!(
                "warning: --cleanup-cache: cannot read the cache folder {}: {e}",
                root.display()
            )
        }
    };
    let mut removed = 0;
    for d in dirs.iter().filter(|d| d.old) {
        match cachedirs::remove(d) {
            Ok(()) => removed += 1,
            Err(e) => eprintln!(
                "warning: --cleanup-cache: cannot remove {}: {e}\n  hint: remove it by hand; it holds only copies",
                d.path.display()
            ),
        }
    }
    if removed > 0 && !ctx.global.quiet {
        eprintln!(
            "removed {removed} old cache folder(s) from {}",
            root.display()
        );
    }
}

fn say(ctx: &Ctx, root: &std::path::Path, dirs: &[CacheDir], removed: &[String], cleanup: bool) {
    for d in dirs {
        let size = d.size.map(crate::size::human_bytes).unwrap_or_default();
        let state = match (d.old, removed.contains(&d.id)) {
            (_, true) => "removed",
            (true, false) => "old",
            _ => "",
        };
        ctx.say(format!(
            "{}  last used {}  {state:<7}  {size}",
            &d.id[..10],
            d.last_used.format("%Y-%m-%d %H:%M %Z")
        ));
    }
    ctx.say(format!(
        "{} repository folder(s) in {}",
        dirs.len(),
        root.display()
    ));
    let old = dirs.iter().filter(|d| d.old).count();
    match (cleanup, old) {
        (true, 0) => ctx.say("no old folders to remove"),
        (true, _) => ctx.say(format!("removed {} old folder(s)", removed.len())),
        (false, 0) => {}
        (false, n) => ctx.say(format!(
            "{n} old folder(s)\n  hint: `backupctl cache --cleanup` removes them"
        )),
    }
}
