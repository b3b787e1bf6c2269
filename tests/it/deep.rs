//! Integration tests of deep trees (#20 item 3): a chain of directories deeper than
//! `MAX_TREE_DEPTH` is refused with exit 4 by every walk (not a stack overflow), a chain within
//! it still restores, and the damage report of a deep chain stays within bounded memory.

use crate::support::{show, Env};
use backupd::repo::backend::{Backend, FileType, LocalBackend};
use backupd::repo::id::Id;
use backupd::repo::index::{IndexFile, IndexPack};
use backupd::repo::pack::{seal_blob, BlobType, Compression, PackWriter};
use backupd::repo::tree::{gomode, kind, Node, Tree};
use backupd::repo::Repository;
use std::fs;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

/// The repository of `env` (initialised), opened through the library.
fn open(env: &Env) -> Repository {
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(&env.repo));
    let pw = fs::read_to_string(&env.pw).unwrap();
    Repository::open(be, pw.trim_end().as_bytes()).unwrap()
}

/// Writes `blobs` into one pack; returns its index entry and its path.
fn save_pack(env: &Env, repo: &Repository, blobs: &[(BlobType, Vec<u8>)]) -> (IndexPack, PathBuf) {
    let mut w = PackWriter::new();
    for (t, b) in blobs {
        w.add(&seal_blob(
            repo.key(),
            *t,
            Id::hash(b),
            b,
            Compression::default(),
        ));
    }
    let (bytes, pid, packed) = w.finish(repo.key());
    repo.save_pack(&pid, &bytes).unwrap();
    let hex = pid.to_hex();
    let path = env.repo.join("data").join(&hex[..2]).join(&hex);
    (IndexPack::from_packed(pid, &packed), path)
}

fn node(name: &str, k: &str, mode: u32) -> Node {
    let mut n = Node::new(name, k);
    n.mode = mode;
    n
}

/// Saves trees (each serialised, the last the root), one data blob and a snapshot of the root;
/// returns the snapshot's id and the path of the data blob's pack.
fn save_snapshot(env: &Env, trees: Vec<Vec<u8>>, data: &[u8]) -> (String, PathBuf) {
    let repo = open(env);
    let root = Id::hash(trees.last().unwrap());
    let (data_pack, data_path) = save_pack(env, &repo, &[(BlobType::Data, data.to_vec())]);
    let tree_blobs: Vec<_> = trees.into_iter().map(|t| (BlobType::Tree, t)).collect();
    let (tree_pack, _) = save_pack(env, &repo, &tree_blobs);
    repo.save_unpacked(
        FileType::Index,
        &IndexFile {
            supersedes: None,
            packs: vec![data_pack, tree_pack],
        },
    )
    .unwrap();
    let snap = serde_json::json!({
        "time": "2024-01-02T03:04:05Z", "tree": root, "paths": ["/x"], "hostname": "h"
    });
    let sid = repo.save_unpacked(FileType::Snapshot, &snap).unwrap();
    (sid.to_hex(), data_path)
}

/// A snapshot of a chain of `depth` directories named `a` (`/a/a/...`), each holding the file
/// `f` whose content is `data` (one blob, in a pack of its own); returns the snapshot's id and
/// that pack's path.
fn deep_chain(env: &Env, depth: usize, data: &[u8]) -> (String, PathBuf) {
    let data_id = Id::hash(data);
    let mut file = node("f", kind::FILE, 0o644);
    file.size = data.len() as u64;
    file.content = Some(vec![data_id]);
    let mut trees: Vec<Vec<u8>> = Vec::new();
    let mut below: Option<Id> = None;
    for _ in 0..=depth {
        let mut t = Tree {
            nodes: vec![file.clone()],
        };
        if let Some(s) = below {
            let mut d = node("a", kind::DIR, gomode::DIR | 0o755);
            d.subtree = Some(s);
            t.nodes.insert(0, d);
        }
        let bytes = t.serialize();
        below = Some(Id::hash(&bytes));
        trees.push(bytes);
    }
    save_snapshot(env, trees, data)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The message every walk gives for a chain deeper than the limit.
fn assert_too_deep(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(4), "{what}: {}", show(o));
    let err = stderr(o);
    assert!(err.contains("2048 levels"), "{what}: {err}");
    assert!(err.contains("/a/a/a/a/a"), "{what}: {err}");
    assert!(err.contains("buggy or hostile"), "{what}: {err}");
}

/// restore, ls, diff and both tree-walking stats modes refuse a 6,000-level chain with exit 4
/// and the path where the limit was reached (before: a stack overflow, exit 134).
#[test]
fn every_walk_refuses_a_chain_deeper_than_the_limit() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let (deep, _) = deep_chain(&env, 6000, b"one");
    let (other, _) = deep_chain(&env, 6000, b"two");
    let target = env.path("target");
    let t = target.to_str().unwrap();
    assert_too_deep(&env.ctl(&["restore", &deep, "--target", t]), "restore");
    assert_too_deep(&env.ctl(&["ls", &deep]), "ls");
    assert_too_deep(&env.ctl(&["diff", &deep, &other]), "diff");
    assert_too_deep(&env.ctl(&["stats", &deep]), "stats");
    let o = env.ctl(&["stats", "--mode", "files-by-contents", &deep]);
    assert_too_deep(&o, "stats files-by-contents");
}

/// A 2,000-level chain is within the limit: restore makes every directory and file, ls, diff and
/// stats walk it (before: restore overflowed the stack of a debug build).
#[test]
fn a_chain_within_the_limit_restores() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let (deep, _) = deep_chain(&env, 2000, b"one");
    let target = env.path("t");
    let v = env.ctl_json(&["restore", &deep, "--target", target.to_str().unwrap()]);
    assert_eq!(v["files"], 2001, "{v:#}");
    assert_eq!(v["dirs"], 2000, "{v:#}");
    let out = env.ctl_ok(&["ls", &deep]);
    assert_eq!(out.lines().filter(|l| l.ends_with("/f")).count(), 2001);
    let (other, _) = deep_chain(&env, 2000, b"two");
    let o = env.ctl(&["--json", "diff", &deep, &other]);
    assert!(o.status.success(), "{}", show(&o));
    let changes = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("\"message_type\":\"change\""))
        .count();
    assert_eq!(changes, 2001, "every f, modified");
    let v = env.ctl_json(&["stats", &deep]);
    assert_eq!(v["total_file_count"], 4001, "{v:#}");
    let v = env.ctl_json(&["stats", "--mode", "files-by-contents", &deep]);
    assert_eq!(v["total_file_count"], 1, "{v:#}");
}

/// check --read-data of a 3,000-level chain whose one data blob (used by a file at every level)
/// is damaged names the damage within 1 GiB of address space (before: memory grew with the cube
/// of the depth, 18 GiB here).
#[test]
fn the_damage_report_of_a_deep_chain_stays_within_bounded_memory() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let (deep, pack) = deep_chain(&env, 3000, b"the one data blob");
    let mut bytes = fs::read(&pack).unwrap();
    bytes[5] ^= 0xff;
    fs::write(&pack, bytes).unwrap();
    let o = crate::support::ctl_in_memory_limit(&env, 1 << 20, &["--json", "check", "--read-data"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = error_of_kind(&v, "pack_damaged");
    assert_eq!(e["snapshots"][0].as_str().unwrap(), deep, "{e:#}");
    assert_eq!(
        e["paths"].as_array().unwrap().len(),
        1000,
        "at most 1000 named"
    );
    let a = &v["affected_snapshots"][0];
    assert_eq!(a["damaged_paths_total"], 3001, "every f: {a:#}");
    assert_eq!(
        a["damaged_paths"].as_array().unwrap().len(),
        1000,
        "at most 1000 named"
    );
}

/// check names the snapshot whose tree is too deep for restore, and exits 4.
#[test]
fn check_reports_a_chain_deeper_than_the_limit() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let (deep, _) = deep_chain(&env, 6000, b"one");
    let o = env.ctl(&["--json", "check"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = error_of_kind(&v, "tree_too_deep");
    assert_eq!(e["snapshots"][0].as_str().unwrap(), deep, "{e:#}");
    assert!(
        e["paths"][0].as_str().unwrap().starts_with("/a/a/a"),
        "{e:#}"
    );
}

/// A tree holding a symlink and a directory of the same name: restore would write the
/// directory's entries through the symlink (and refuses); check reports it, naming the path.
#[test]
fn check_reports_entries_under_a_symlink() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let data = b"x";
    let mut file = node("f", kind::FILE, 0o644);
    file.size = 1;
    file.content = Some(vec![Id::hash(data)]);
    let sub = Tree { nodes: vec![file] }.serialize();
    let mut d = node("a", kind::DIR, gomode::DIR | 0o755);
    d.subtree = Some(Id::hash(&sub));
    let mut l = node("a", kind::SYMLINK, gomode::SYMLINK | 0o777);
    l.linktarget = "/etc".into();
    let root = Tree { nodes: vec![l, d] }.serialize();
    let (sid, _) = save_snapshot(&env, vec![sub, root], data);
    let o = env.ctl(&["--json", "check"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = error_of_kind(&v, "node_under_symlink");
    assert_eq!(e["snapshots"][0].as_str().unwrap(), sid, "{e:#}");
    assert_eq!(e["paths"], serde_json::json!(["/a"]), "{e:#}");
}

/// backup of a 2,000-level directory on disk (about as deep as PATH_MAX allows): the walk
/// recurses on a stack made for it (before: a stack overflow, exit 134); ls lists the file.
#[test]
fn backup_of_a_deep_real_directory_works() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("s");
    fs::create_dir(&src).unwrap();
    // Made relative to the working directory, level by level (a full path would be too long).
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("i=0; while [ $i -lt 2000 ]; do mkdir a && cd a || exit 1; i=$((i+1)); done; echo hi > f")
        .current_dir(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    env.ctl_ok(&["backup", src.to_str().unwrap()]);
    let out = env.ctl_ok(&["ls", "latest"]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with("/a/f")).count(),
        1,
        "the file at the bottom"
    );
}

/// The first error of `kind` in `check --json`'s report (the test fails naming it if none).
fn error_of_kind<'a>(v: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {v:#}"))
}
