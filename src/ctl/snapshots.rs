//! `backupctl snapshots`: list snapshots, filtered by host, path, tag or job, alone or in groups (`--group-by`).

use super::Ctx;
use crate::engine::forget::{self, GroupBy, GroupKey};
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
    /// Only the newest N snapshots of each group (of each host and path set without
    /// --group-by).
    #[arg(long)]
    pub latest: Option<usize>,
    /// List the snapshots in groups: a comma-separated list of host, paths, tags, job (as
    /// restic's --group-by; JSON then lists `{group_key, snapshots}`).
    #[arg(long, short = 'g', value_parser = GroupBy::parse)]
    pub group_by: Option<GroupBy>,
}

/// A snapshot as `--json` prints it: the stored document plus its id.
#[derive(Serialize)]
pub(crate) struct SnapshotJson<'a> {
    pub id: Id,
    pub short_id: String,
    #[serde(flatten)]
    pub snapshot: &'a Snapshot,
}

/// restic's `group_key` of `snapshots --group-by --json`: the grouped fields, the others
/// empty (`job` only when grouped by it).
#[derive(Serialize)]
struct GroupKeyJson {
    hostname: String,
    paths: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<Option<String>>,
}

#[derive(Serialize)]
struct GroupJson<'a> {
    group_key: GroupKeyJson,
    snapshots: Vec<SnapshotJson<'a>>,
}

/// The newest `n` of `list` (oldest first), in their order.
fn newest(list: Vec<&(Id, Snapshot)>, n: Option<usize>) -> Vec<&(Id, Snapshot)> {
    match n {
        Some(n) if list.len() > n => list[list.len() - n..].to_vec(),
        _ => list,
    }
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let repo = open_unlocked(&ctx.repo_settings()?)?;
    let f = a.filter.filter();
    let all = super::snapref::load(ctx, &repo)?;
    let list: Vec<(Id, Snapshot)> = all
        .readable
        .into_iter()
        .filter(|(_, s)| f.matches(s))
        .collect();
    // Without --group-by, --latest still counts per host and path set (as restic).
    let by = a.group_by.unwrap_or(GroupBy {
        host: true,
        paths: true,
        ..GroupBy::default()
    });
    let groups: Vec<(GroupKey, Vec<&(Id, Snapshot)>)> = forget::groups(&list, &by)
        .into_iter()
        .map(|(k, g)| (k, newest(g, a.latest)))
        .collect();
    match (a.group_by.is_some(), ctx.global.json) {
        (true, true) => print_groups_json(ctx, &groups),
        (true, false) => {
            for (k, g) in &groups {
                println!("snapshots for {k}:");
                print_table(g);
                println!();
            }
        }
        (false, json) => {
            let mut flat: Vec<&(Id, Snapshot)> = groups.into_iter().flat_map(|(_, g)| g).collect();
            flat.sort_by_key(|(_, s)| s.time);
            match json {
                true => ctx.print_json(&flat.iter().map(|e| entry(e)).collect::<Vec<_>>()),
                false => print_table(&flat),
            }
        }
    }
    Ok(exit::OK)
}

fn entry(e: &(Id, Snapshot)) -> SnapshotJson<'_> {
    SnapshotJson {
        id: e.0,
        short_id: e.0.short(),
        snapshot: &e.1,
    }
}

fn print_groups_json(ctx: &Ctx, groups: &[(GroupKey, Vec<&(Id, Snapshot)>)]) {
    let v: Vec<GroupJson> = groups
        .iter()
        .map(|(k, g)| GroupJson {
            group_key: GroupKeyJson {
                hostname: k.host.clone().unwrap_or_default(),
                paths: k.paths.clone(),
                tags: k.tags.clone(),
                job: k.job.clone(),
            },
            snapshots: g.iter().map(|e| entry(e)).collect(),
        })
        .collect();
    ctx.print_json(&v);
}

fn print_table(list: &[&(Id, Snapshot)]) {
    let w = super::show::TIME_WIDTH;
    println!(
        "{:<8}  {:<w$}  {:<12}  {:<20}  paths",
        "ID", "time", "host", "tags"
    );
    for (id, s) in list {
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
}
