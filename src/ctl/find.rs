//! `backupctl find`: which snapshots hold paths matching glob patterns, with restic's `--json`.

use super::snapref;
use super::snapshots::FilterArgs;
use super::Ctx;
use crate::engine::find::{self, ObjectIds, ObjectUse, Pattern, TimeWindow};
use crate::error::{exit, Error, Result};
use crate::repo::id::Id;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::pack::BlobType;
use crate::repo::snapshot::Snapshot;
use crate::repo::tree::Node;
use crate::repo::{Repository, Snapshots};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Glob patterns (`*`, `?`, `[...]`, `**`): one starting with `/` matches whole paths from
    /// the root, any other the paths' last names (`*.conf`, `etc/*.conf`).
    #[arg(required = true)]
    pub patterns: Vec<String>,
    /// Only entries modified at or after this time (2006-01-02[ 15:04[:05][ -0700]], or RFC 3339).
    #[arg(long, short = 'O', value_parser = parse_time)]
    pub oldest: Option<DateTime<FixedOffset>>,
    /// Only entries modified at or before this time (formats as --oldest).
    #[arg(long, short = 'N', value_parser = parse_time)]
    pub newest: Option<DateTime<FixedOffset>>,
    /// Search only this snapshot (an id prefix or `latest`; repeatable).
    #[arg(long = "snapshot", short = 's', value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Match names whatever their case.
    #[arg(long, short = 'i')]
    pub ignore_case: bool,
    /// Show permissions, owner, size and modification time.
    #[arg(long, short = 'l')]
    pub long: bool,
    /// Oldest snapshot first (the default is newest first, as restic).
    #[arg(long, short = 'R')]
    pub reverse: bool,
    /// The patterns are blob ids (full or prefixes): find the files that hold those blobs.
    #[arg(long, conflicts_with_all = ["tree", "pack"])]
    pub blob: bool,
    /// The patterns are tree ids (full or prefixes): find the directories stored as them.
    #[arg(long, conflicts_with = "pack")]
    pub tree: bool,
    /// The patterns are pack ids (full or prefixes): find what uses the blobs they hold.
    #[arg(long)]
    pub pack: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub(crate) fn parse_time(s: &str) -> std::result::Result<DateTime<FixedOffset>, String> {
    find::parse_time(s).ok_or_else(|| {
        format!("cannot read the time {s:?}: use 2006-01-02, \"2006-01-02 15:04[:05]\" or RFC 3339")
    })
}

/// The matches in one snapshot, as restic's `find --json` prints them.
#[derive(Serialize)]
struct SnapshotMatches {
    matches: Vec<serde_json::Value>,
    hits: usize,
    snapshot: Id,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    if a.blob || a.tree || a.pack {
        return objects(ctx, &a);
    }
    let patterns = a
        .patterns
        .iter()
        .map(|p| Pattern::parse(p, a.ignore_case))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Input(format!(
                "{e}\n  hint: quote the pattern; `\\` escapes `*`, `?` and `[`"
            ))
        })?;
    let window = TimeWindow {
        oldest: a.oldest,
        newest: a.newest,
    };
    if let (Some(o), Some(n)) = (a.oldest, a.newest) {
        if o > n {
            return Err(Error::Input(
                "--oldest is after --newest, so nothing can match\n  hint: swap them".into(),
            ));
        }
    }
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let all = snapref::load(ctx, &repo)?;
    let mut chosen = select(&all, &a)?;
    chosen.sort_by_key(|(_, s)| s.time);
    if !a.reverse {
        chosen.reverse();
    }
    repo.load_index()?;
    let mut report = Vec::new();
    for (id, snap) in chosen {
        ctx.cancel.check()?;
        let mut matches = Vec::new();
        let mut printed = false;
        find::find_in_tree(&repo, &snap.tree, &patterns, &window, &mut |path, node| {
            if ctx.global.json {
                matches.push(match_json(path, node));
            } else {
                if !printed {
                    heading(ctx, id, snap, report.len());
                    printed = true;
                }
                print_match(&a, path, node);
            }
        })?;
        if printed || !matches.is_empty() {
            report.push(SnapshotMatches {
                hits: matches.len(),
                matches,
                snapshot: *id,
            });
        }
    }
    if ctx.global.json {
        ctx.print_json(&report);
    }
    Ok(exit::OK)
}

/// The snapshots given by --snapshot (each once), else every one the filters match.
fn select<'a>(all: &'a Snapshots, a: &Args) -> Result<Vec<&'a (Id, Snapshot)>> {
    snapref::select(all, &a.snapshots, &a.filter.filter())
}

/// "Found matching entries in snapshot ID from TIME", after a blank line but for the first.
fn heading(ctx: &Ctx, id: &Id, snap: &Snapshot, before: usize) {
    if before > 0 {
        ctx.say("");
    }
    ctx.say(format!(
        "Found matching entries in snapshot {} from {}",
        id.short(),
        super::show::time(&snap.time)
    ));
}

fn print_match(a: &Args, path: &str, n: &Node) {
    if !a.long {
        println!("{path}");
        return;
    }
    let user = if n.user.is_empty() {
        n.uid.to_string()
    } else {
        n.user.clone()
    };
    let group = if n.group.is_empty() {
        n.gid.to_string()
    } else {
        n.group.clone()
    };
    println!(
        "{} {user:>8} {group:>8} {:>12} {} {path}",
        find::permissions(n.mode),
        n.size,
        super::show::time(&n.mtime)
    );
}

/// A match as restic's `find --json` prints it: the node's fields without its name, content,
/// subtree, device and attributes, with `path` and Go's `permissions` string.
fn match_json(path: &str, n: &Node) -> serde_json::Value {
    let mut v = serde_json::to_value(n).expect("a node serializes");
    if let Some(m) = v.as_object_mut() {
        for k in [
            "name",
            "content",
            "subtree",
            "device",
            "extended_attributes",
            "generic_attributes",
        ] {
            m.remove(k);
        }
        m.insert("path".into(), path.into());
        m.insert("permissions".into(), find::permissions(n.mode).into());
    }
    v
}

/// A use of a sought object, as restic's `find --blob/--tree/--pack --json` prints it.
#[derive(Serialize)]
struct ObjectJson {
    object_type: &'static str,
    id: Id,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_tree: Option<Id>,
    snapshot: Id,
    time: DateTime<FixedOffset>,
}

/// `find --blob/--tree/--pack`: every use of the objects in the chosen snapshots.
fn objects(ctx: &Ctx, a: &Args) -> Result<i32> {
    if let Some(p) = a
        .patterns
        .iter()
        .find(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(Error::Input(format!(
            "{p:?} is not an id: with --blob, --tree or --pack the patterns are ids (hex digits, \
             the full 64 or a prefix)\n  hint: `backupctl list blobs` and `backupctl list packs` list them"
        )));
    }
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let all = snapref::load(ctx, &repo)?;
    let mut chosen = select(&all, a)?;
    chosen.sort_by_key(|(_, s)| s.time);
    if !a.reverse {
        chosen.reverse();
    }
    repo.load_index()?;
    let ids = match (a.blob, a.tree) {
        (true, _) => ObjectIds::new(&a.patterns, &[]),
        (_, true) => ObjectIds::new(&[], &a.patterns),
        _ => blobs_of_packs(&repo, &a.patterns)?,
    };
    let mut out = Vec::new();
    for (sid, snap) in chosen {
        ctx.cancel.check()?;
        find::find_objects(&repo, &snap.tree, &ids, &mut |u: ObjectUse| {
            if !ctx.global.json {
                print_object(&u, sid, snap);
            }
            out.push(ObjectJson {
                object_type: u.kind,
                id: u.id,
                path: u.path,
                parent_tree: u.parent_tree,
                snapshot: *sid,
                time: snap.time,
            });
        })?;
    }
    if ctx.global.json {
        ctx.print_json(&out);
    } else if out.is_empty() {
        ctx.say("no snapshot uses them");
    }
    Ok(exit::OK)
}

fn print_object(u: &ObjectUse, sid: &Id, snap: &Snapshot) {
    println!("Found {} {}", u.kind, u.id.to_hex());
    match u.parent_tree {
        Some(t) => {
            println!(" ... in file {}", u.path);
            println!("     (tree {})", t.to_hex());
        }
        None => println!(" ... path {}", u.path),
    }
    println!(
        " ... in snapshot {} ({})",
        sid.short(),
        super::show::time(&snap.time)
    );
}

/// The blobs and trees the index places in the packs whose ids start with `prefixes`; a prefix
/// that names no pack of the index is an error.
fn blobs_of_packs(repo: &Repository, packs: &[String]) -> Result<ObjectIds> {
    let prefixes: Vec<String> = packs.iter().map(|p| p.to_ascii_lowercase()).collect();
    let index = repo.index();
    let (mut blobs, mut trees) = (Vec::new(), Vec::new());
    let mut matched = vec![false; prefixes.len()];
    for ((id, t), loc) in index.iter() {
        let pack = index.pack_id(loc).to_hex();
        let mut hit = false;
        for (i, p) in prefixes.iter().enumerate() {
            if pack.starts_with(p.as_str()) {
                matched[i] = true;
                hit = true;
            }
        }
        if hit {
            match t {
                BlobType::Data => blobs.push(id.to_hex()),
                BlobType::Tree => trees.push(id.to_hex()),
            }
        }
    }
    let missing: Vec<&str> = prefixes
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(p, _)| p.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Input(format!(
            "no pack of the index has an id starting with {}\n  hint: `backupctl list packs` lists them",
            missing.join(", ")
        )));
    }
    Ok(ObjectIds::new(&blobs, &trees))
}
