//! `backupctl unlock`: remove stale locks (all locks with --remove-all).

use super::Ctx;
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
    let left = lock::list_locks(&repo)?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"removed": n, "remaining": left.len()}));
    } else {
        ctx.say(format!("removed {n} lock(s)"));
        for (_, l) in &left {
            ctx.say(format!("still held (not stale): {}", l.describe()));
        }
    }
    Ok(exit::OK)
}
