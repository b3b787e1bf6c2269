//! `backupctl tag`: add, remove or set the tags of snapshots, rewriting their files as restic does.

use super::snapref;
use super::snapshots::FilterArgs;
use super::Ctx;
use crate::engine::tags::{self, TagChange};
use crate::error::{exit, Error, Result};
use crate::repo::id::Id;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::snapshot::Snapshot;
use crate::repo::Snapshots;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Snapshots to change (id prefixes or `latest`); none: every snapshot the filters match.
    pub snapshots: Vec<String>,
    /// Add these tags (`tag[,tag...]`, repeatable).
    #[arg(long, value_name = "TAGS")]
    pub add: Vec<String>,
    /// Remove these tags (`tag[,tag...]`, repeatable).
    #[arg(long, value_name = "TAGS")]
    pub remove: Vec<String>,
    /// Replace all tags with these (`tag[,tag...]`, repeatable; `--set ""` clears them).
    #[arg(long, value_name = "TAGS")]
    pub set: Vec<String>,
    /// Also drop a `job:NAME` tag (the job's retention and parent lookup then skip the snapshot).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// One rewritten snapshot, as restic's `tag --json` prints it (one JSON line).
#[derive(Serialize)]
struct Changed {
    message_type: &'static str,
    old_snapshot_id: Id,
    new_snapshot_id: Id,
}

/// The last JSON line, as restic's.
#[derive(Serialize)]
struct Summary {
    message_type: &'static str,
    changed_snapshots: usize,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let change = TagChange::from_args(&a.set, &a.add, &a.remove)
        .map_err(|e| Error::Input(format!("{e}\n  hint: see `backupctl tag --help`")))?;
    let (repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Exclusive)?;
    // Each change removes the old file: an append-only server would refuse, after the write.
    repo.backend().check_deletable()?;
    let all = snapref::load(ctx, &repo)?;
    let chosen = select(&all, &a)?;
    let plans: Vec<(Id, Snapshot)> = chosen
        .iter()
        .filter_map(|(id, s)| tags::retag(id, s, &change).map(|n| (*id, n)))
        .collect();
    guard_job_tags(ctx, &all, &plans, a.force)?;
    let mut done = 0;
    for (old, new) in &plans {
        ctx.cancel.check()?;
        let id = tags::rewrite(&repo, old, new).inspect_err(|_| partly(ctx, old, done))?;
        done += 1;
        if ctx.global.json {
            print_line(&Changed {
                message_type: "changed",
                old_snapshot_id: *old,
                new_snapshot_id: id,
            });
        } else {
            ctx.say(format!("snapshot {} is now {}", old.short(), id.short()));
        }
    }
    if ctx.global.json {
        print_line(&Summary {
            message_type: "summary",
            changed_snapshots: done,
        });
    } else if done == 0 {
        ctx.say("no snapshots were modified");
    } else {
        ctx.say(format!("modified {done} snapshots"));
    }
    Ok(exit::OK)
}

/// The snapshots named (each once), or every snapshot the filters match.
fn select<'a>(all: &'a Snapshots, a: &Args) -> Result<Vec<&'a (Id, Snapshot)>> {
    snapref::select(all, &a.snapshots, &a.filter.filter()).map_err(|e| match e {
        Error::Input(m) => Error::Input(format!("{m}; no tags were changed")),
        e => e,
    })
}

/// Refuses (without --force) a change that drops a `job:` tag; with --force, warns.
fn guard_job_tags(ctx: &Ctx, all: &Snapshots, plans: &[(Id, Snapshot)], force: bool) -> Result<()> {
    for (id, new) in plans {
        let Some((_, old)) = all.readable.iter().find(|(i, _)| i == id) else {
            continue;
        };
        let dropped = tags::dropped_job_tags(&old.tags, &new.tags);
        if dropped.is_empty() {
            continue;
        }
        let what = format!(
            "snapshot {} would lose its tag {}: backupd's job no longer sees it for retention \
             (forget --job) nor as the parent of its next backup",
            id.short(),
            dropped.join(", ")
        );
        if !force {
            return Err(Error::Input(format!(
                "{what}; no tags were changed\n  hint: keep the tag (with --set, name it among the \
                 tags; with --remove, leave it out), or add --force to drop it anyway"
            )));
        }
        ctx.warn(what);
    }
    Ok(())
}

/// Says how far the command got when rewriting `old` failed (the error itself follows, with its
/// exit code).
fn partly(ctx: &Ctx, old: &Id, done: usize) {
    ctx.warn(format!(
        "could not change the tags of snapshot {}; {done} snapshot(s) were changed before it. If \
         both it and a new snapshot with `original` set to it now exist, `backupctl forget {}` \
         removes the old one; running the same `backupctl tag` again changes the rest",
        old.short(),
        old.short()
    ));
}

/// One compact JSON line (restic's `tag --json` prints a stream of them).
fn print_line<T: Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string(v).expect("ids and numbers serialize")
    );
}
