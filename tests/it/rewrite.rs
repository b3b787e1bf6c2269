//! `backupctl rewrite` beside restic 0.19's `rewrite` on a copy of the same repository: the same paths left out of every chosen snapshot, tags and times kept, the originals removed only with --forget, and after prune the secret's data gone.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

/// Two snapshots of a small tree (with `secret` holding "s3cret"), tagged `job:app`; returns the
/// source folder.
fn two_snapshots(env: &Env) -> std::path::PathBuf {
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 3);
    // A time whose nanoseconds end in 0: restic 0.19 refuses to rewrite a tree it cannot encode
    // back to the same bytes, and Go writes such a time without the trailing zero.
    let ok = Command::new("touch")
        .args(["-d", "2026-01-02 03:04:05.123456780"])
        .arg(src.join("docs/note2.txt"))
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch -d");
    let s = src.to_str().unwrap();
    env.ctl_ok(&["backup", "--tag", "job:app", s]);
    fs::write(src.join("docs/later.txt"), b"added later").unwrap();
    env.ctl_ok(&["backup", "--tag", "job:app", s]);
    src
}

/// A copy of the Env's repository, for restic to change the same way.
fn copy_of_repo(env: &Env) -> std::path::PathBuf {
    let theirs = env.path("theirs");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&env.repo)
        .arg(&theirs)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a of the repository");
    theirs
}

fn snapshots_at(repo: &Path, pw: &Path) -> Vec<Value> {
    let o = restic_bin_at(&restic19(), repo, pw, &["snapshots", "--json"]);
    assert!(o.status.success(), "{}", show(&o));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Every path of snapshot `id`, as restic 0.19 lists it.
fn paths_at(repo: &Path, pw: &Path, id: &str) -> BTreeSet<String> {
    let o = restic_bin_at(&restic19(), repo, pw, &["ls", id]);
    assert!(o.status.success(), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
}

fn ids(snaps: &[Value]) -> Vec<String> {
    snaps
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rewrite_forget_leaves_out_what_restic_leaves_out_and_prune_drops_the_secret() {
    let env = Env::new();
    let src = two_snapshots(&env);
    let s = src.to_str().unwrap();
    let theirs = copy_of_repo(&env);
    let before = snapshots_at(&env.repo, &env.pw);
    let excludes = ["--exclude", "secret", "--exclude", "docs/deep"];

    let mut dry = vec!["rewrite", "-n"];
    dry.extend(excludes);
    let out = env.ctl_ok(&dry);
    assert!(out.contains("would be saved again"), "{out}");
    assert!(out.contains(&format!("left out: {s}/secret")), "{out}");
    assert!(out.contains(&format!("left out: {s}/docs/deep")), "{out}");
    assert!(!out.contains("big.bin"), "a folder is named once: {out}");
    assert_eq!(
        ids(&snapshots_at(&env.repo, &env.pw)),
        ids(&before),
        "a dry run writes nothing"
    );

    let mut ours = vec!["--json", "rewrite", "--forget"];
    ours.extend(excludes);
    let r: Value = serde_json::from_str(&env.ctl_ok(&ours)).unwrap();
    assert_eq!(r["rewritten"].as_array().unwrap().len(), 2, "{r}");
    let mut restic = vec!["rewrite", "--forget"];
    restic.extend(excludes);
    let o = restic_bin_at(&restic19(), &theirs, &env.pw, &restic);
    assert!(o.status.success(), "restic rewrite: {}", show(&o));

    let (mine, their) = (
        snapshots_at(&env.repo, &env.pw),
        snapshots_at(&theirs, &env.pw),
    );
    assert_eq!(mine.len(), 2, "the originals are gone: {mine:?}");
    for (m, t) in mine.iter().zip(&their) {
        assert!(!ids(&before).contains(&m["id"].as_str().unwrap().to_string()));
        for k in ["time", "tags", "paths", "hostname", "original"] {
            assert_eq!(m[k], t[k], "{k} as restic keeps it");
        }
        let (mp, tp) = (
            paths_at(&env.repo, &env.pw, m["id"].as_str().unwrap()),
            paths_at(&theirs, &env.pw, t["id"].as_str().unwrap()),
        );
        assert_eq!(mp, tp, "the same paths as restic's rewrite leaves");
        assert!(!mp
            .iter()
            .any(|p| p.ends_with("/secret") || p.contains("/docs/deep")));
        assert!(mp.contains(&format!("{s}/docs/note1.txt")));
    }
    let o = env.restic19(&["check"]);
    assert!(
        o.status.success(),
        "restic check after our rewrite: {}",
        show(&o)
    );

    let secret = sha256_hex(b"s3cret");
    assert!(
        env.restic19(&["cat", "blob", &secret]).status.success(),
        "before prune"
    );
    env.ctl_ok(&["prune"]);
    let o = env.restic19(&["cat", "blob", &secret]);
    assert!(
        !o.status.success(),
        "after prune the secret's blob is gone: {}",
        show(&o)
    );
    env.ctl_ok(&["check", "--read-data"]);
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn without_forget_the_original_stays_and_the_copy_is_tagged_rewrite_as_by_restic() {
    let env = Env::new();
    let src = two_snapshots(&env);
    let theirs = copy_of_repo(&env);
    let before = snapshots_at(&env.repo, &env.pw);
    env.ctl_ok(&["rewrite", "--exclude", "*.bin", "latest"]);
    let o = restic_bin_at(
        &restic19(),
        &theirs,
        &env.pw,
        &["rewrite", "--exclude", "*.bin", "latest"],
    );
    assert!(o.status.success(), "{}", show(&o));
    let (mine, their) = (
        snapshots_at(&env.repo, &env.pw),
        snapshots_at(&theirs, &env.pw),
    );
    assert_eq!(mine.len(), 3, "{mine:?}");
    for id in ids(&before) {
        assert!(ids(&mine).contains(&id), "the originals stay");
    }
    // The copy has its original's time, so restic lists the two in either order.
    let copy = |snaps: &[Value]| -> Value {
        snaps
            .iter()
            .find(|s| s["original"] == before[1]["id"])
            .cloned()
            .unwrap_or_else(|| panic!("no copy of {}: {snaps:?}", before[1]["id"]))
    };
    let (m, t) = (&copy(&mine), &copy(&their));
    for k in ["time", "tags", "original"] {
        assert_eq!(m[k], t[k], "{k}");
    }
    for k in ["total_files_processed", "total_bytes_processed"] {
        assert_eq!(
            m["summary"][k], t["summary"][k],
            "summary {k} as restic counts it"
        );
    }
    let big = src.join("docs/deep/er/big.bin");
    let listed = paths_at(&env.repo, &env.pw, m["id"].as_str().unwrap());
    assert!(!listed.contains(big.to_str().unwrap()));

    // Nothing matched: nothing written. Nothing asked: refused, with a hint.
    env.ctl_ok(&["rewrite", "--exclude", "no-such-name", "latest"]);
    assert_eq!(snapshots_at(&env.repo, &env.pw).len(), 3);
    let o = env.ctl(&["rewrite", "latest"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to do"),
        "{}",
        show(&o)
    );
}

#[test]
fn iexclude_matches_whatever_the_case_in_rewrite_and_backup_as_in_restic() {
    let env = Env::new();
    let src = two_snapshots(&env);
    let s = src.to_str().unwrap();
    let theirs = copy_of_repo(&env);
    let args = [
        "rewrite",
        "--forget",
        "--iexclude",
        "SECRET",
        "--iexclude",
        "DOCS/Deep",
    ];
    env.ctl_ok(&args);
    let o = restic_bin_at(&restic19(), &theirs, &env.pw, &args);
    assert!(o.status.success(), "restic rewrite: {}", show(&o));
    let (mine, their) = (
        snapshots_at(&env.repo, &env.pw),
        snapshots_at(&theirs, &env.pw),
    );
    for (m, t) in mine.iter().zip(&their) {
        let mp = paths_at(&env.repo, &env.pw, m["id"].as_str().unwrap());
        let tp = paths_at(&theirs, &env.pw, t["id"].as_str().unwrap());
        assert_eq!(
            mp, tp,
            "the same paths as restic's rewrite --iexclude leaves"
        );
        assert!(!mp.contains(&format!("{s}/secret")), "{mp:?}");
        assert!(!mp.iter().any(|p| p.contains("/docs/deep")), "{mp:?}");
        assert!(mp.contains(&format!("{s}/docs/note1.txt")), "{mp:?}");
    }
    // The same patterns in a backup; --exclude stays case-sensitive.
    let v = env.ctl_json(&["backup", "--iexclude", "SECRET", "--exclude", "BIG.BIN", s]);
    let paths = paths_at(&env.repo, &env.pw, v["snapshot_id"].as_str().unwrap());
    assert!(!paths.contains(&format!("{s}/secret")), "{paths:?}");
    assert!(
        paths.contains(&format!("{s}/docs/deep/er/big.bin")),
        "{paths:?}"
    );
}
