//! `backupctl snapshots`: list snapshots, filtered by host, path, tag or job.

use super::Ctx;
use crate::error::{exit, Result};
use crate::repo::id::Id;
use crate::repo::open::open_unlocked;
use crate::repo::snapshot::{Snapshot, SnapshotFilter};
use serde::Serialize;

/// Snapshot selection options shared by several commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct FilterArgs {
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only snapshots that include this path (repeatable: all must match).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Only snapshots with these tags (comma-separated: all of them; repeat for alternatives).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots made by this backupd job.
    #[arg(long)]
    pub job: Option<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: self.hosts.clone(),
            paths: self.paths.clone(),
            tags: self.tags.clone(),
            job: self.job.clone(),
        }
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the newest N snapshots of each host and path set.
    #[arg(long)]
    pub latest: Option<usize>,
}

/// A snapshot as `--json` prints it: the stored document plus its id.
#[derive(Serialize)]
pub(crate) struct SnapshotJson<'a> {
    pub id: Id,
    pub short_id: String,
    #[serde(flatten)]
    pub snapshot: &'a Snapshot,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let repo = open_unlocked(&ctx.repo_settings()?)?;
    let f = a.filter.filter();
    let all = super::snapref::load(ctx, &repo)?;
    let mut list: Vec<_> = all
        .readable
        .into_iter()
        .filter(|(_, s)| f.matches(s))
        .collect();
    if let Some(n) = a.latest {
        let mut seen: std::collections::HashMap<(String, Vec<String>), usize> = Default::default();
        let mut keep = vec![false; list.len()];
        for (i, (_, s)) in list.iter().enumerate().rev() {
            let c = seen
                .entry((s.hostname.clone(), s.paths.clone()))
                .or_default();
            if *c < n {
                keep[i] = true;
                *c += 1;
            }
        }
        let mut i = 0;
        list.retain(|_| {
            i += 1;
            keep[i - 1]
        });
    }
    if ctx.global.json {
        let v: Vec<_> = list
            .iter()
            .map(|(id, s)| SnapshotJson {
                id: *id,
                short_id: id.short(),
                snapshot: s,
            })
            .collect();
        ctx.print_json(&v);
        return Ok(exit::OK);
    }
    let w = super::show::TIME_WIDTH;
    println!(
        "{:<8}  {:<w$}  {:<12}  {:<20}  paths",
        "ID", "time", "host", "tags"
    );
    for (id, s) in &list {
        println!(
            "{:<8}  {:<w$}  {:<12}  {:<20}  {}",
            id.short(),
            super::show::time(&s.time),
            s.hostname,
            s.tags.join(","),
            s.paths.join(" ")
        );
    }
    println!("{} snapshots", list.len());
    Ok(exit::OK)
}
