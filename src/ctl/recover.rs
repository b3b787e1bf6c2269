//! `backupctl recover`: a snapshot of the trees no snapshot reaches, as restic's `recover` makes (shared lock, like a backup).

use super::{snapref, Ctx};
use crate::engine::recover::{recover, RecoverReport};
use crate::error::{exit, Result};
use crate::repo::open::{open_repository, LockMode};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The host name of the new snapshot (default: this host's).
    #[arg(long)]
    pub host: Option<String>,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    repo.load_index()?;
    let snaps = snapref::load(ctx, &repo)?;
    let host = a.host.unwrap_or_else(crate::sysinfo::hostname);
    let progress = ctx.progress();
    let r = recover(
        &mut repo,
        &snaps.readable,
        &host,
        progress.as_ref(),
        &ctx.cancel,
    )?;
    drop(progress);
    for u in &r.unreadable {
        ctx.warn(format!("tree {u}; its subtrees may show up as roots"));
    }
    if ctx.global.json {
        ctx.print_json(&r);
    } else {
        say(ctx, &r);
    }
    Ok(exit::OK)
}

fn say(ctx: &Ctx, r: &RecoverReport) {
    let Some(id) = &r.snapshot else {
        ctx.say(format!(
            "{} tree(s) read: every one is reached by a snapshot; nothing to recover",
            r.trees
        ));
        return;
    };
    ctx.say(format!(
        "{} tree(s) read, {} reached by no snapshot:",
        r.trees,
        r.roots.len()
    ));
    for root in &r.roots {
        ctx.say(format!("  /{}", &root[..8]));
    }
    ctx.say(format!(
        "saved snapshot {id8} (path /recover), each tree a folder at its root\n  hint: `backupctl ls {id8}` lists them; `backupctl restore {id8}:/{first} --target DIR` restores the first",
        id8 = &id[..8],
        first = &r.roots[0][..8]
    ));
}
