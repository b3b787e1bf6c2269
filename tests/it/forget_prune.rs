//! Integration tests of `backupctl forget` and `backupctl prune` on repositories made by restic
//! 0.14: retention compared with restic's own choices; prune leaves `restic check --read-data`
//! green and every remaining snapshot restoring byte-identically; prune refuses damaged
//! repositories; orphans and stale temp files go; dry runs change nothing; and a prune killed
//! with SIGKILL at random instants never loses a snapshot.

use backupd::repo::backend::{Backend, FileType, LocalBackend};
use backupd::repo::id::Id;
use backupd::repo::keyfile::KeyFile;
use backupd::repo::pack::{seal_blob, BlobType, Compression, PackWriter};
use backupd::repo::snapshot::Snapshot;
use backupd::repo::Repository;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

const PW: &str = "prune test password";
const HOST: &str = "fixture-host";

/// Relative path to content; directories appear as "path/" with empty content.
type Files = BTreeMap<String, Vec<u8>>;

struct Fixture {
    pw: PathBuf,
    /// A restic repository with one snapshot per backup run, oldest first in `snaps`.
    repo: PathBuf,
    /// Each snapshot's full id and the data it recorded.
    snaps: Vec<(String, Files)>,
    scratch: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// helpers

fn restic_cmd(repo: &Path, pw: &Path) -> Command {
    let mut c = Command::new("restic");
    c.arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(pw)
        .arg("--no-cache")
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD")
        .stdin(Stdio::null());
    c
}

fn run(mut c: Command, what: &str) -> Output {
    c.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {what} ({e}); these tests need restic 0.14 on PATH (apt-get install restic)"
        )
    })
}

fn restic(repo: &Path, pw: &Path, args: &[&str]) -> Output {
    let mut c = restic_cmd(repo, pw);
    c.args(args);
    run(c, &format!("restic {args:?}"))
}

fn ctl(repo: &Path, pw: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_backupctl"));
    c.arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(pw)
        .args(args)
        .env_remove("BACKUPD_REPOSITORY")
        .env_remove("BACKUPD_PASSWORD")
        .env_remove("BACKUPD_PASSWORD_FILE")
        .env_remove("BACKUPD_PASSWORD_COMMAND")
        .stdin(Stdio::null());
    run(c, "backupctl")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn json(o: Output, what: &str) -> serde_json::Value {
    let s = ok(o, what);
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{s}"))
}

/// Deterministic pseudo-random bytes (incompressible).
fn rnd(seed: u64, n: usize) -> Vec<u8> {
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; n];
    r.fill(&mut v[..]);
    v
}

/// Deterministic compressible text.
fn txt(seed: u64, n: usize) -> Vec<u8> {
    let words = [
        "alpha", "beta", "gamma", "delta", "backup", "prune", "pack", "index",
    ];
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        v.extend_from_slice(words[r.gen_range(0..words.len())].as_bytes());
        v.push(if r.gen_ratio(1, 9) { b'\n' } else { b' ' });
    }
    v.truncate(n);
    v
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn read_files(dir: &Path) -> Files {
    fn rec(base: &Path, dir: &Path, out: &mut Files) {
        let mut ents: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                rec(base, &p, out);
            } else {
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Files::new();
    rec(dir, dir, &mut out);
    out
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Every repository file except locks: relative path -> (size, SHA-256).
fn file_list(repo: &Path) -> BTreeMap<String, (u64, Id)> {
    fn rec(base: &Path, dir: &Path, out: &mut BTreeMap<String, (u64, Id)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("locks") {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                rec(base, &p, out);
            } else {
                let b = fs::read(&p).unwrap();
                out.insert(rel, (b.len() as u64, Id::hash(&b)));
            }
        }
    }
    let mut out = BTreeMap::new();
    rec(repo, repo, &mut out);
    out
}

fn names(repo: &Path, sub: &str) -> BTreeSet<String> {
    file_list(repo)
        .into_keys()
        .filter(|k| k.starts_with(sub))
        .map(|k| k.rsplit('/').next().unwrap().to_string())
        .collect()
}

fn pack_bytes(repo: &Path) -> u64 {
    file_list(repo)
        .iter()
        .filter(|(k, _)| k.starts_with("data/"))
        .map(|(_, v)| v.0)
        .sum()
}

fn snapshot_ids(repo: &Path) -> BTreeSet<String> {
    names(repo, "snapshots/")
}

/// Replaces the repository's key by one with cheap scrypt parameters, so that every restic and
/// backupctl run below starts in milliseconds (and a kill lands in prune's work, not in its KDF).
fn cheapen_key(repo: &Path) {
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(repo));
    let r = Repository::open(be.clone(), PW.as_bytes()).unwrap();
    let old: Vec<String> = be
        .list(FileType::Key)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let kf = KeyFile::create(r.key(), PW.as_bytes(), 1024, 8, 1).unwrap();
    let bytes = serde_json::to_vec(&kf).unwrap();
    be.save(FileType::Key, &Id::hash(&bytes).to_hex(), &bytes)
        .unwrap();
    for n in old {
        be.remove(FileType::Key, &n).unwrap();
    }
}

fn open(repo: &Path) -> Repository {
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(repo));
    let mut r = Repository::open(be, PW.as_bytes()).unwrap();
    r.load_index().unwrap();
    r
}

fn build_fixture() -> Fixture {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("forget_prune");
    // Fixtures of earlier runs (other processes) that are over an hour old.
    if let Ok(rd) = fs::read_dir(&base) {
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .map(|a| a > Duration::from_secs(3600))
                .unwrap_or(false);
            if old {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let root = base.join(format!("run-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    let pw = root.join("pw");
    fs::write(&pw, format!("{PW}\n")).unwrap();
    let repo = root.join("template");
    ok(restic(&repo, &pw, &["init"]), "restic init");
    cheapen_key(&repo);

    let work = root.join("work");
    let d = work.join("data");
    fs::create_dir_all(&d).unwrap();
    type Step = Box<dyn Fn(&Path)>;
    let steps: Vec<Step> = vec![
        Box::new(|d| {
            write(&d.join("a.bin"), &rnd(1, 1_500_000));
            write(&d.join("b.txt"), &txt(2, 40_000));
            write(&d.join("c.bin"), &rnd(3, 300_000));
            write(&d.join("sub/d.bin"), &rnd(4, 1_200_000));
            write(&d.join("sub/e.txt"), &txt(5, 5_000));
            fs::create_dir_all(d.join("empty")).unwrap();
        }),
        Box::new(|d| {
            let mut a = fs::read(d.join("a.bin")).unwrap();
            a[700_000..800_000].copy_from_slice(&rnd(6, 100_000));
            write(&d.join("a.bin"), &a);
            write(&d.join("f.bin"), &rnd(7, 1_100_000));
            fs::remove_file(d.join("c.bin")).unwrap();
        }),
        Box::new(|d| {
            fs::remove_file(d.join("sub/d.bin")).unwrap();
            write(&d.join("g.txt"), &txt(8, 20_000));
            write(&d.join("b.txt"), &txt(9, 41_000));
        }),
        Box::new(|d| {
            write(&d.join("h.bin"), &rnd(10, 600_000));
            write(&d.join("sub/e.txt"), &txt(11, 6_000));
        }),
        Box::new(|d| {
            fs::remove_file(d.join("f.bin")).unwrap();
            write(&d.join("i.bin"), &rnd(12, 700_000));
            write(&d.join("sub/deeper/j.txt"), &txt(13, 3_000));
        }),
    ];
    let mut recorded = Vec::new();
    for step in &steps {
        step(&d);
        let mut c = restic_cmd(&repo, &pw);
        c.current_dir(&work)
            .args(["backup", "--host", HOST, "data"]);
        ok(run(c, "restic backup"), "restic backup");
        recorded.push(read_files(&d));
    }
    let list = json(
        restic(&repo, &pw, &["snapshots", "--json"]),
        "restic snapshots",
    );
    let mut ids: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["time"].as_str().unwrap().to_string(),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // RFC 3339 times with the same offset sort as strings only roughly; parse them.
    ids.sort_by_key(|(t, _)| chrono::DateTime::parse_from_rfc3339(t).unwrap());
    assert_eq!(ids.len(), steps.len());
    let snaps = ids.into_iter().map(|(_, id)| id).zip(recorded).collect();
    Fixture {
        pw,
        repo,
        snaps,
        scratch: root,
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build_fixture)
}

/// A fresh copy of the template repository in its own temp dir.
fn copy_repo(f: &Fixture) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix("case-")
        .tempdir_in(&f.scratch)
        .unwrap();
    let r = t.path().join("repo");
    copy_dir(&f.repo, &r);
    (t, r)
}

/// Restores `id` with restic and compares it with what was backed up.
#[track_caller]
fn assert_restores(f: &Fixture, repo: &Path, scratch: &Path, id: &str) {
    let want = &f
        .snaps
        .iter()
        .find(|(i, _)| i == id)
        .unwrap_or_else(|| panic!("snapshot {id} is not one of the fixture's"))
        .1;
    let target = scratch.join(format!("restore-{}", &id[..8]));
    let _ = fs::remove_dir_all(&target);
    ok(
        restic(
            repo,
            &f.pw,
            &[
                "--no-lock",
                "restore",
                id,
                "--target",
                target.to_str().unwrap(),
            ],
        ),
        "restic restore",
    );
    let got = read_files(&target.join("data"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "snapshot {id}: restored file names differ"
    );
    for (k, v) in want {
        assert!(got[k] == *v, "snapshot {id}: {k} differs after restore");
    }
    fs::remove_dir_all(&target).unwrap();
}

#[track_caller]
fn assert_check_read_data(f: &Fixture, repo: &Path) {
    let o = restic(repo, &f.pw, &["--no-lock", "check", "--read-data"]);
    assert!(
        o.status.success(),
        "restic check --read-data:\n{}",
        text(&o)
    );
}

fn newest(f: &Fixture, n: usize) -> Vec<String> {
    f.snaps[f.snaps.len() - n..]
        .iter()
        .map(|(i, _)| i.clone())
        .collect()
}

fn id_set(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// restic's `forget --json` output (an array of groups) as (kept, removed) id sets.
fn restic_plan(v: &serde_json::Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut keep = BTreeSet::new();
    let mut remove = BTreeSet::new();
    for g in v.as_array().unwrap() {
        if !g["keep"].is_null() {
            keep.extend(id_set(&g["keep"]));
        }
        if !g["remove"].is_null() {
            remove.extend(id_set(&g["remove"]));
        }
    }
    (keep, remove)
}

/// backupctl's `forget --json` output as (kept, removed) id sets.
fn our_plan(v: &serde_json::Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut keep = BTreeSet::new();
    let mut remove = BTreeSet::new();
    for g in v["groups"].as_array().unwrap() {
        keep.extend(id_set(&g["keep"]));
        remove.extend(id_set(&g["remove"]));
    }
    (keep, remove)
}

// ---------------------------------------------------------------------------------------------
// forget

#[test]
fn forget_keep_last_removes_what_restic_would() {
    let f = fixture();
    let (_t, repo) = copy_repo(f);
    let (_t2, restic_copy) = copy_repo(f);
    let rv = json(
        restic(
            &restic_copy,
            &f.pw,
            &["forget", "--keep-last", "2", "--dry-run", "--json"],
        ),
        "restic forget --dry-run",
    );
    let (r_keep, r_remove) = restic_plan(&rv);
    assert_eq!(r_keep, newest(f, 2).into_iter().collect());
    assert_eq!(r_remove.len(), 3);

    let before = file_list(&repo);
    let ov = json(
        ctl(
            &repo,
            &f.pw,
            &["--json", "forget", "--keep-last", "2", "--dry-run"],
        ),
        "backupctl forget --dry-run",
    );
    assert_eq!(our_plan(&ov), (r_keep.clone(), r_remove.clone()));
    assert_eq!(file_list(&repo), before, "a dry run changed the repository");

    let out = ok(
        ctl(&repo, &f.pw, &["forget", "--keep-last", "2"]),
        "backupctl forget",
    );
    assert!(out.contains("last snapshot"), "reasons are shown:\n{out}");
    assert_eq!(snapshot_ids(&repo), r_keep);
    // Nothing but snapshot files changed.
    let after = file_list(&repo);
    let changed: Vec<_> = before
        .keys()
        .filter(|k| after.get(*k) != before.get(*k))
        .collect();
    assert!(changed.iter().all(|k| k.starts_with("snapshots/")));
    assert_eq!(changed.len(), 3);
    ok(restic(&repo, &f.pw, &["check"]), "restic check");
}

/// Writes `n` extra snapshot files (copies of the newest with other times, hosts and tags) and
/// returns nothing: the policies are then compared with restic's choices.
fn add_synthetic_snapshots(repo: &Path) {
    let r = open(repo);
    let snaps = r.list_snapshots().unwrap();
    let (_, template) = snaps.last().unwrap().clone();
    let start = chrono::DateTime::parse_from_rfc3339("2021-11-20T22:15:00+00:00").unwrap();
    let offsets = [0, 2 * 3600, -5 * 3600, 9 * 3600 + 1800];
    let mut t = start;
    for i in 0..48i64 {
        // Irregular, strictly growing gaps: several per hour and day at first, weeks apart later.
        let gap = chrono::Duration::minutes(17 + i * i * 23 + (i % 5) * 97);
        t += gap;
        let off = chrono::FixedOffset::east_opt(offsets[(i % 4) as usize]).unwrap();
        let mut s: Snapshot = template.clone();
        s.time = t.with_timezone(&off);
        s.hostname = if i % 4 == 1 {
            "other-host".into()
        } else {
            HOST.into()
        };
        s.tags = match i % 6 {
            0 => vec!["keepme".into()],
            3 => vec!["keepme".into(), "monthly".into()],
            4 => vec!["monthly".into()],
            _ => vec![],
        };
        s.parent = None;
        r.save_unpacked(FileType::Snapshot, &s).unwrap();
    }
}

#[test]
fn forget_policies_match_restic() {
    let f = fixture();
    let (_t, repo) = copy_repo(f);
    add_synthetic_snapshots(&repo);
    let all = snapshot_ids(&repo);
    assert!(all.len() > 50);
    let policies: &[&[&str]] = &[
        &["--keep-last", "3"],
        &["--keep-hourly", "6"],
        &["--keep-daily", "5"],
        &["--keep-weekly", "4"],
        &["--keep-monthly", "6"],
        &["--keep-yearly", "3"],
        &["--keep-within", "2m5d"],
        &["--keep-within", "1y1m"],
        &["--keep-within", "30h"],
        &["--keep-tag", "keepme"],
        &["--keep-tag", "keepme,monthly"],
        &["--keep-tag", "monthly", "--keep-last", "2"],
        &[
            "--keep-daily",
            "3",
            "--keep-weekly",
            "3",
            "--keep-monthly",
            "3",
            "--keep-yearly",
            "9",
        ],
        &["--keep-hourly", "4", "--group-by", ""],
        &["--keep-last", "1", "--group-by", "host"],
        &["--keep-weekly", "2", "--group-by", "host,tags"],
        &["--keep-last", "2", "--host", "other-host"],
        &["--keep-monthly", "2", "--tag", "keepme"],
        &["--keep-last", "1000"],
    ];
    for p in policies {
        let mut rargs = vec!["forget", "--dry-run", "--json"];
        rargs.extend_from_slice(p);
        let (r_keep, r_remove) = restic_plan(&json(restic(&repo, &f.pw, &rargs), "restic forget"));
        let mut oargs = vec!["--json", "forget", "--dry-run"];
        oargs.extend_from_slice(p);
        let ours = json(ctl(&repo, &f.pw, &oargs), "backupctl forget");
        let (o_keep, o_remove) = our_plan(&ours);
        assert_eq!(o_remove, r_remove, "policy {p:?}: removed sets differ");
        assert_eq!(o_keep, r_keep, "policy {p:?}: kept sets differ");
        let removed: BTreeSet<String> = ours["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        assert_eq!(removed, r_remove, "policy {p:?}");
    }
    assert_eq!(snapshot_ids(&repo), all, "dry runs removed snapshots");

    // For real, one policy: exactly restic's removals go.
    let p = ["--keep-daily", "4", "--keep-tag", "monthly"];
    let mut rargs = vec!["forget", "--dry-run", "--json"];
    rargs.extend_from_slice(&p);
    let (_, r_remove) = restic_plan(&json(restic(&repo, &f.pw, &rargs), "restic forget"));
    assert!(!r_remove.is_empty());
    let mut oargs = vec!["forget"];
    oargs.extend_from_slice(&p);
    ok(ctl(&repo, &f.pw, &oargs), "backupctl forget");
    assert_eq!(
        snapshot_ids(&repo),
        all.difference(&r_remove).cloned().collect()
    );
}

#[test]
fn forget_by_id_and_refusals() {
    let f = fixture();
    let (_t, repo) = copy_repo(f);
    let all = snapshot_ids(&repo);

    let o = ctl(&repo, &f.pw, &["forget"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no policy given"), "{}", text(&o));
    let o = ctl(&repo, &f.pw, &["forget", "--keep-last", "0"]);
    assert!(!o.status.success() && text(&o).contains("no policy given"));
    let o = ctl(&repo, &f.pw, &["forget", "--keep-within", "5x"]);
    assert_eq!(o.status.code(), Some(2), "bad duration is a usage error");
    let oldest = &f.snaps[0].0;
    let o = ctl(&repo, &f.pw, &["forget", &oldest[..8], "--keep-last", "1"]);
    assert!(!o.status.success(), "ids and a policy together are refused");
    let o = ctl(&repo, &f.pw, &["forget", &oldest[..8], "ffffffffffff"]);
    assert!(!o.status.success(), "an unknown id is an error");
    assert!(text(&o).contains("ffffffffffff"), "{}", text(&o));
    assert_eq!(
        snapshot_ids(&repo),
        all,
        "refused commands removed something"
    );

    let o = ok(
        ctl(&repo, &f.pw, &["forget", "--dry-run", &oldest[..8]]),
        "forget --dry-run ID",
    );
    assert!(o.contains("would remove 1 snapshot"), "{o}");
    assert_eq!(snapshot_ids(&repo), all);
    let v = json(
        ctl(
            &repo,
            &f.pw,
            &["--json", "forget", &oldest[..8], &f.snaps[1].0],
        ),
        "forget IDS",
    );
    assert_eq!(v["removed"].as_array().unwrap().len(), 2);
    let mut want = all.clone();
    want.remove(oldest);
    want.remove(&f.snaps[1].0);
    assert_eq!(snapshot_ids(&repo), want);
    ok(restic(&repo, &f.pw, &["check"]), "restic check");
}

// ---------------------------------------------------------------------------------------------
// prune

#[test]
fn prune_after_forget_frees_space_and_keeps_every_snapshot() {
    let f = fixture();
    let (t, repo) = copy_repo(f);
    ok(
        ctl(&repo, &f.pw, &["forget", "--keep-last", "2"]),
        "backupctl forget",
    );
    let before = pack_bytes(&repo);
    let v = json(ctl(&repo, &f.pw, &["--json", "prune"]), "backupctl prune");
    assert_eq!(v["snapshots"], 2);
    assert!(v["packs_deleted"].as_u64().unwrap() + v["packs_repacked"].as_u64().unwrap() > 0);
    assert!(v["bytes_freed"].as_u64().unwrap() > 0);
    let after = pack_bytes(&repo);
    assert!(
        after < before,
        "repository did not shrink: {before} -> {after}"
    );
    assert_eq!(
        before - after,
        v["bytes_freed"].as_u64().unwrap(),
        "reported bytes freed"
    );
    assert_check_read_data(f, &repo);
    assert_eq!(snapshot_ids(&repo), newest(f, 2).into_iter().collect());
    for id in newest(f, 2) {
        assert_restores(f, &repo, t.path(), &id);
    }

    // Nothing left to do: nothing changes.
    let list = file_list(&repo);
    let out = ok(ctl(&repo, &f.pw, &["prune"]), "second prune");
    assert!(out.contains("nothing to prune"), "{out}");
    assert_eq!(
        file_list(&repo),
        list,
        "a prune with nothing to do changed files"
    );

    // Repacking everything partly used still keeps everything.
    let v = json(
        ctl(&repo, &f.pw, &["--json", "prune", "--max-unused", "0"]),
        "prune --max-unused 0",
    );
    assert_eq!(v["bytes_unused_after"], 0);
    assert_check_read_data(f, &repo);
    for id in newest(f, 2) {
        assert_restores(f, &repo, t.path(), &id);
    }
    let list = file_list(&repo);
    let v = json(
        ctl(&repo, &f.pw, &["--json", "prune", "--max-unused", "0"]),
        "prune --max-unused 0 again",
    );
    assert_eq!(v["bytes_unused"], 0, "{v}");
    assert_eq!(file_list(&repo), list);
}

#[test]
fn prune_after_removing_every_snapshot_empties_the_repository() {
    let f = fixture();
    let (_t, repo) = copy_repo(f);
    for (id, _) in &f.snaps {
        fs::remove_file(repo.join("snapshots").join(id)).unwrap();
    }
    ok(ctl(&repo, &f.pw, &["prune"]), "prune");
    assert_eq!(pack_bytes(&repo), 0);
    assert!(names(&repo, "index/").is_empty());
    ok(
        restic(&repo, &f.pw, &["check", "--read-data"]),
        "restic check",
    );
}

#[test]
fn dry_runs_change_nothing() {
    let f = fixture();
    let (_t, repo) = copy_repo(f);
    let list = file_list(&repo);
    let out = ok(
        ctl(&repo, &f.pw, &["forget", "--keep-last", "1", "--dry-run"]),
        "forget --dry-run",
    );
    assert!(out.contains("would remove 4 snapshot"), "{out}");
    assert_eq!(file_list(&repo), list);
    let v = json(
        ctl(
            &repo,
            &f.pw,
            &[
                "--json",
                "forget",
                "--keep-last",
                "1",
                "--dry-run",
                "--prune",
                "--max-unused",
                "0",
            ],
        ),
        "forget --dry-run --prune",
    );
    assert_eq!(file_list(&repo), list);
    let p = &v["prune"];
    assert_eq!(p["dry_run"], true);
    assert_eq!(p["snapshots"], 1, "planned as if the 4 were gone: {p}");
    let planned: Vec<&str> = ["deleted", "repacked"]
        .iter()
        .flat_map(|k| {
            p[*k]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap())
        })
        .collect();
    assert!(!planned.is_empty(), "forgetting 4 of 5 frees packs: {p}");
    let packs = names(&repo, "data/");
    for id in &planned {
        assert!(
            packs.contains(*id),
            "planned pack {id} is not in the repository"
        );
    }
    // A text dry run lists the packs.
    ok(ctl(&repo, &f.pw, &["forget", "--keep-last", "1"]), "forget");
    let list = file_list(&repo);
    let out = ok(
        ctl(&repo, &f.pw, &["prune", "--dry-run", "--max-unused", "0"]),
        "prune --dry-run",
    );
    for id in &planned {
        assert!(out.contains(id), "dry run does not name pack {id}:\n{out}");
    }
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(file_list(&repo), list);
}

/// The pack that holds `blob`, through the repository's index.
fn pack_of(repo: &Path, blob: &Id, tpe: BlobType) -> String {
    let r = open(repo);
    let loc = r.index().get(blob, tpe).unwrap();
    r.index().pack_id(loc).to_hex()
}

fn pack_path(repo: &Path, hex: &str) -> PathBuf {
    repo.join("data").join(&hex[..2]).join(hex)
}

#[test]
fn prune_refuses_a_repository_with_missing_data() {
    let f = fixture();
    let latest_id = newest(f, 1).pop().unwrap();
    let setup = || {
        let (t, repo) = copy_repo(f);
        ok(ctl(&repo, &f.pw, &["forget", "--keep-last", "2"]), "forget");
        (t, repo)
    };
    let latest = |repo: &Path| -> Snapshot {
        open(repo)
            .load_unpacked(FileType::Snapshot, &Id::parse(&latest_id).unwrap())
            .unwrap()
    };
    let refused = |repo: &Path, what: &str, must_name: &str| {
        let list = file_list(repo);
        for args in [
            &["prune"][..],
            &["prune", "--max-unused", "0"],
            &["prune", "--dry-run"],
        ] {
            let o = ctl(repo, &f.pw, args);
            let all = text(&o);
            assert_eq!(
                o.status.code(),
                Some(4),
                "{what}: {args:?} must refuse:\n{all}"
            );
            assert!(
                all.contains("backupctl check"),
                "{what}: no hint to check:\n{all}"
            );
            assert!(all.contains("deleted nothing"), "{what}:\n{all}");
            assert!(
                all.contains(must_name),
                "{what}: does not name {must_name}:\n{all}"
            );
            assert_eq!(
                file_list(repo),
                list,
                "{what}: {args:?} changed the repository"
            );
        }
    };

    // A tree pack gone.
    let (_t, repo) = setup();
    let tree = latest(&repo).tree;
    let p = pack_of(&repo, &tree, BlobType::Tree);
    fs::remove_file(pack_path(&repo, &p)).unwrap();
    refused(&repo, "missing tree pack", &latest_id[..8]);

    // A data pack gone: the one holding the first chunk of i.bin (only in the newest snapshot).
    let (_t, repo) = setup();
    let r = open(&repo);
    let node = backupd::engine::walk::find_node(&r, &latest(&repo).tree, "/data/i.bin")
        .unwrap()
        .unwrap();
    let blob = node.content.unwrap()[0];
    let p = pack_of(&repo, &blob, BlobType::Data);
    fs::remove_file(pack_path(&repo, &p)).unwrap();
    refused(&repo, "missing data pack", &blob.to_hex());

    // The index entry of a data pack gone: the pack looks unreferenced (an orphan), but
    // snapshots need its blobs. Prune must neither proceed nor delete that pack.
    let (_t, repo) = setup();
    let r = open(&repo);
    let victim = *r
        .list_ids(FileType::Index)
        .unwrap()
        .iter()
        .find(|i| {
            let file: backupd::repo::index::IndexFile =
                r.load_unpacked(FileType::Index, i).unwrap();
            file.packs
                .iter()
                .any(|p| p.blobs.iter().any(|b| b.id == blob))
        })
        .unwrap();
    let mut file: backupd::repo::index::IndexFile =
        r.load_unpacked(FileType::Index, &victim).unwrap();
    let n = file.packs.len();
    file.packs.retain(|p| !p.blobs.iter().any(|b| b.id == blob));
    assert_eq!(file.packs.len(), n - 1);
    r.save_unpacked(FileType::Index, &file).unwrap();
    fs::remove_file(repo.join("index").join(victim.to_hex())).unwrap();
    refused(&repo, "pack missing from the index", "is in no index");
    assert!(pack_path(&repo, &p).exists());

    // A whole index file gone (data and tree packs of the newest backup).
    let (_t, repo) = setup();
    fs::remove_file(repo.join("index").join(victim.to_hex())).unwrap();
    refused(&repo, "missing index file", &latest_id[..8]);
}

/// Writes a valid pack holding one random blob, as a crashed backup would leave it.
fn write_orphan_pack(repo: &Path) -> String {
    let r = open(repo);
    let data = rnd(99, 200_000);
    let mut w = PackWriter::new();
    w.add(&seal_blob(
        r.key(),
        BlobType::Data,
        Id::hash(&data),
        &data,
        Compression::default(),
    ));
    let (bytes, id, _) = w.finish(r.key());
    assert_eq!(Id::hash(&bytes), id);
    r.save_pack(&id, &bytes).unwrap();
    id.to_hex()
}

#[test]
fn prune_deletes_orphaned_packs_and_stale_temp_files() {
    let f = fixture();
    let (_t, repo) = copy_repo(f);
    let list = file_list(&repo);
    let orphan = write_orphan_pack(&repo);
    assert!(pack_path(&repo, &orphan).exists());
    let old_tmp = repo
        .join("data")
        .join(&orphan[..2])
        .join(".x.tmp-00000000000000aa");
    let old_tmp_idx = repo.join("index").join(".y.tmp-00000000000000bb");
    let new_tmp = repo.join("index").join(".z.tmp-00000000000000cc");
    for p in [&old_tmp, &old_tmp_idx, &new_tmp] {
        fs::write(p, b"partial").unwrap();
    }
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    for p in [&old_tmp, &old_tmp_idx] {
        fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    let dry = ok(
        ctl(&repo, &f.pw, &["prune", "--dry-run"]),
        "prune --dry-run",
    );
    assert!(dry.contains(&orphan), "{dry}");
    assert!(pack_path(&repo, &orphan).exists() && old_tmp.exists());

    let v = json(ctl(&repo, &f.pw, &["--json", "prune"]), "prune");
    assert_eq!(v["packs_orphaned"], 1, "{v}");
    assert_eq!(v["packs_deleted"], 0, "{v}");
    assert_eq!(v["packs_repacked"], 0, "{v}");
    assert_eq!(v["temp_files_removed"], 2, "{v}");
    assert!(
        !pack_path(&repo, &orphan).exists(),
        "orphaned pack survived"
    );
    assert!(
        !old_tmp.exists() && !old_tmp_idx.exists(),
        "stale temp files survived"
    );
    assert!(
        new_tmp.exists(),
        "a fresh temp file (maybe in use) was removed"
    );
    fs::remove_file(&new_tmp).unwrap();
    assert_eq!(file_list(&repo), list, "prune touched other files");
    assert_check_read_data(f, &repo);
}

#[test]
fn prune_removes_duplicate_copies() {
    let f = fixture();
    let (t, repo) = copy_repo(f);
    // A second index file listing an existing pack again, under a copy of that pack: every blob
    // of the pack is stored twice (as after two backups racing).
    let r = open(&repo);
    let idx = r.list_ids(FileType::Index).unwrap();
    let file: backupd::repo::index::IndexFile = r.load_unpacked(FileType::Index, &idx[0]).unwrap();
    let pack = file.packs[0].clone();
    let bytes = fs::read(pack_path(&repo, &pack.id.to_hex())).unwrap();
    // Same blobs, different file: append nothing but re-seal the same blobs into a new pack.
    let mut w = PackWriter::new();
    for b in &pack.blobs {
        let sealed = &bytes[b.offset as usize..(b.offset + b.length) as usize];
        w.add_raw(b.id, b.tpe, sealed, b.uncompressed_length);
    }
    // A different pack id needs different bytes: add one extra unused blob.
    let extra = rnd(77, 1000);
    w.add(&seal_blob(
        r.key(),
        BlobType::Data,
        Id::hash(&extra),
        &extra,
        Compression::Off,
    ));
    let (copy, copy_id, blobs) = w.finish(r.key());
    r.save_pack(&copy_id, &copy).unwrap();
    let dup = backupd::repo::index::IndexFile {
        supersedes: None,
        packs: vec![backupd::repo::index::IndexPack::from_packed(
            copy_id, &blobs,
        )],
    };
    r.save_unpacked(FileType::Index, &dup).unwrap();
    assert_check_read_data(f, &repo);

    let v = json(ctl(&repo, &f.pw, &["--json", "prune"]), "prune");
    assert!(
        v["blobs_duplicate"].as_u64().unwrap() >= pack.blobs.len() as u64,
        "{v}"
    );
    let v = json(
        ctl(&repo, &f.pw, &["--json", "prune", "--dry-run"]),
        "prune again",
    );
    assert_eq!(v["blobs_duplicate"], 0, "duplicates left: {v}");
    assert_eq!(v["bytes_unused"], 0, "{v}");
    assert_check_read_data(f, &repo);
    for (id, _) in &f.snaps {
        assert_restores(f, &repo, t.path(), id);
    }
}

// ---------------------------------------------------------------------------------------------
// crash safety

/// What a killed prune left behind, compared with the repository before it ran.
fn stage(
    before: &BTreeMap<String, (u64, Id)>,
    after: &BTreeMap<String, (u64, Id)>,
) -> &'static str {
    let is = |k: &String, d: &str| k.starts_with(d) && !k.contains(".tmp-");
    let new_packs = after
        .keys()
        .any(|k| is(k, "data/") && !before.contains_key(k));
    let gone_packs = before
        .keys()
        .any(|k| is(k, "data/") && !after.contains_key(k));
    let new_index = after
        .keys()
        .any(|k| is(k, "index/") && !before.contains_key(k));
    let gone_index = before
        .keys()
        .any(|k| is(k, "index/") && !after.contains_key(k));
    let new_temp = after
        .keys()
        .any(|k| k.contains(".tmp-") && !before.contains_key(k));
    match (new_packs, new_index, gone_index, gone_packs) {
        (false, false, false, false) if new_temp => "a temp file left",
        (false, false, false, false) => "untouched",
        (true, false, false, false) => "new packs written, index not yet",
        (_, true, false, false) => "new index written, old index not yet removed",
        (_, _, true, false) => "old index (partly) removed, no pack deleted yet",
        (_, _, _, true) => "packs (partly) deleted",
    }
}

/// When to SIGKILL a prune. Besides plain delays, kills are aimed at events seen from outside
/// (in `/proc/PID/fd` and the index directory), so that they land in the short part of the run
/// that changes the repository, however fast or slow the machine is at the moment.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This many ms after the start.
    FromStart(u64),
    /// This many µs after prune is first seen writing a new pack (a temp file under data/).
    PackWrite(u64),
    /// This many µs after the set of index files first changes (new index written; old index
    /// files and packs are deleted right after).
    IndexChange(u64),
}

/// When things happened in a prune run, in ms after its start (the end if they did not).
#[derive(Clone, Copy)]
struct Timeline {
    pack_write: u64,
    index: u64,
    end: u64,
}

/// Whether process `pid` has a temp file under the repository's data/ open.
fn writing_pack(pid: u32, data: &Path) -> bool {
    let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    rd.flatten().any(|e| {
        fs::read_link(e.path())
            .map(|t| t.starts_with(data) && t.to_string_lossy().contains(".tmp-"))
            .unwrap_or(false)
    })
}

/// Runs `backupctl prune --max-unused 0`, optionally killing it, and watches it.
fn timed_prune(
    f: &Fixture,
    repo: &Path,
    kill: Option<KillAt>,
) -> (Timeline, std::process::ExitStatus) {
    let index_names = || -> BTreeSet<String> {
        fs::read_dir(repo.join("index"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64)
            .collect()
    };
    let initial_index = index_names();
    let data = repo.join("data");
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_backupctl"))
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(&f.pw)
        .args(["prune", "--max-unused", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
    let (mut pack_at, mut index_at) = (None, None);
    let mut deadline = match kill {
        Some(KillAt::FromStart(d)) => Some(t0 + Duration::from_millis(d)),
        _ => None,
    };
    loop {
        let now = Instant::now();
        let timeline = |p: Option<u64>, i: Option<u64>| Timeline {
            pack_write: p.unwrap_or(ms(now)),
            index: i.unwrap_or(ms(now)),
            end: ms(now),
        };
        if let Some(status) = child.try_wait().unwrap() {
            return (timeline(pack_at, index_at), status);
        }
        if pack_at.is_none() && writing_pack(pid, &data) {
            pack_at = Some(ms(now));
            if let Some(KillAt::PackWrite(d)) = kill {
                deadline = Some(now + Duration::from_micros(d));
            }
        }
        if index_at.is_none() && index_names() != initial_index {
            index_at = Some(ms(now));
            if let Some(KillAt::IndexChange(d)) = kill {
                deadline = Some(now + Duration::from_micros(d));
            }
        }
        if let Some(d) = deadline {
            if Instant::now() >= d {
                let _ = child.kill(); // SIGKILL
                let status = child.wait().unwrap();
                return (timeline(pack_at, index_at), status);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn prune_killed_at_random_instants_loses_nothing() {
    let f = fixture();
    let iterations: usize = std::env::var("PRUNE_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let (bt, base) = copy_repo(f);
    // restic forgets; we prune.
    ok(
        restic(&base, &f.pw, &["forget", "--keep-last", "2"]),
        "restic forget",
    );
    let kept = newest(f, 2);
    let base_list = file_list(&base);

    // An uninterrupted run, for its duration.
    let full = bt.path().join("full");
    copy_dir(&base, &full);
    let (cal, st) = timed_prune(f, &full, None);
    assert!(st.success(), "uninterrupted prune failed");
    assert_ne!(file_list(&full), base_list);

    let mut rng = rand::rngs::StdRng::seed_from_u64(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let mut stages: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in 0..iterations {
        let dir = bt.path().join(format!("iter-{i}"));
        copy_dir(&base, &dir);
        // A third of the kills anywhere in the run, the rest aimed at the repository changes.
        let kill = match i % 3 {
            0 => KillAt::FromStart(rng.gen_range(0..=cal.end + 10)),
            1 => KillAt::PackWrite(rng.gen_range(0..=5_000)),
            _ => KillAt::IndexChange(rng.gen_range(0..=10_000)),
        };
        let (_, status) = timed_prune(f, &dir, Some(kill));
        let delay = format!("{kill:?}");
        let after = file_list(&dir);
        let st = if status.success() {
            "finished"
        } else {
            stage(&base_list, &after)
        };
        *stages.entry(st).or_default() += 1;
        let ctx = format!("iteration {i}: killed at {delay}, state: {st}");

        // The lock of the killed process is stale (its PID is gone): every other time restic
        // removes it, otherwise the next prune must see it is stale by itself.
        if i % 2 == 0 {
            ok(
                restic(&dir, &f.pw, &["unlock"]),
                &format!("{ctx}: restic unlock"),
            );
        }
        let o = restic(&dir, &f.pw, &["--no-lock", "check", "--read-data"]);
        assert!(
            o.status.success(),
            "{ctx}: restic check --read-data:\n{}",
            text(&o)
        );
        assert_eq!(snapshot_ids(&dir), kept.iter().cloned().collect(), "{ctx}");
        for id in &kept {
            assert_restores(f, &dir, bt.path(), id);
        }

        // Finishing the job from whatever state is left.
        ok(
            ctl(&dir, &f.pw, &["prune", "--max-unused", "0"]),
            &format!("{ctx}: prune after the crash"),
        );
        let o = restic(&dir, &f.pw, &["--no-lock", "check", "--read-data"]);
        assert!(
            o.status.success(),
            "{ctx}: restic check after re-prune:\n{}",
            text(&o)
        );
        if i % 3 == 0 {
            let v = json(
                ctl(
                    &dir,
                    &f.pw,
                    &["--json", "prune", "--dry-run", "--max-unused", "0"],
                ),
                "prune --dry-run after completion",
            );
            assert_eq!(v["bytes_unused"], 0, "{ctx}: unused data left: {v}");
            assert_eq!(v["packs_orphaned"], 0, "{ctx}: orphans left: {v}");
            for id in &kept {
                assert_restores(f, &dir, bt.path(), id);
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "prune crash test: an uninterrupted run wrote its first pack after {} ms, changed the \
         index after {} ms and ended after {} ms; states after the kills: {stages:?}",
        cal.pack_write, cal.index, cal.end
    );
}
