//! `backupctl unlock`: remove stale locks (all locks with --remove-all), and the temp files
//! crashed writers left in a local repository once they are an hour old.

use super::Ctx;
use crate::engine::prune::remove_stale_temp_files;
use crate::error::{exit, Result};
use crate::repo::lock;
use crate::repo::open::open_unlocked;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Remove every lock, even ones held by running processes (dangerous).
    #[arg(long)]
    pub remove_all: bool,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let repo = open_unlocked(&ctx.repo_settings()?)?;
    let n = if a.remove_all {
        lock::remove_all(&repo)?
    } else {
        lock::remove_stale(&repo)?
    };
    let temps = remove_stale_temp_files(&repo, ctx.progress().as_ref());
    let left = lock::list_locks(&repo)?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"removed": n, "remaining": left.len(), "temp_files_removed": temps}));
    } else {
        ctx.say(format!("removed {n} lock(s)"));
        if temps > 0 {
            ctx.say(format!(
                "removed {temps} temp file(s) of crashed runs (older than an hour)"
            ));
        }
        for (_, l) in &left {
            ctx.say(format!("still held (not stale): {}", l.describe()));
        }
    }
    Ok(exit::OK)
}
