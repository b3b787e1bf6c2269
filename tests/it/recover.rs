//! `backupctl recover` beside restic 0.19's on a copy of the same repository: a snapshot forgotten by mistake comes back under `/recover/ID` with every path it had, and a second recover finds nothing.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

fn restic19_ok(repo: &Path, pw: &Path, args: &[&str]) -> String {
    let o = restic_bin_at(&restic19(), repo, pw, args);
    assert!(o.status.success(), "restic19 {args:?}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every path of a snapshot (restic's `ls`, without its header line).
fn paths(repo: &Path, pw: &Path, id: &str) -> BTreeSet<String> {
    restic19_ok(repo, pw, &["ls", id])
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
}

fn newest(repo: &Path, pw: &Path) -> Value {
    let v: Value = serde_json::from_str(&restic19_ok(
        repo,
        pw,
        &["snapshots", "--json", "--latest", "1"],
    ))
    .unwrap();
    let all = v.as_array().unwrap();
    all.iter()
        .max_by_key(|s| s["time"].as_str().unwrap().to_string())
        .unwrap()
        .clone()
}

#[test]
fn a_forgotten_snapshot_is_recovered_with_every_path_as_restic_recovers_it() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 11);
    let s = src.to_str().unwrap();
    env.ctl_ok(&["backup", s]);
    let first = newest(&env.repo, &env.pw);
    let first_id = first["id"].as_str().unwrap();
    let first_paths = paths(&env.repo, &env.pw, first_id);
    fs::write(src.join("docs/new.txt"), b"later").unwrap();
    let note3 = fs::read(src.join("docs/note3.txt")).unwrap();
    fs::remove_file(src.join("docs/note3.txt")).unwrap();
    env.ctl_ok(&["backup", s]);
    env.ctl_ok(&["forget", first_id]);
    let theirs = env.path("theirs");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&env.repo)
        .arg(&theirs)
        .status()
        .unwrap()
        .success());

    let r = env.ctl_json(&["recover"]);
    assert_eq!(r["roots"], serde_json::json!([first["tree"]]), "{r}");
    let ours = newest(&env.repo, &env.pw);
    assert_eq!(ours["id"], r["snapshot"]);
    assert_eq!(ours["paths"], serde_json::json!(["/recover"]));
    restic19_ok(&theirs, &env.pw, &["recover"]);
    let their = newest(&theirs, &env.pw);
    assert_eq!(their["paths"], serde_json::json!(["/recover"]));

    let (mine, restics) = (
        paths(&env.repo, &env.pw, ours["id"].as_str().unwrap()),
        paths(&theirs, &env.pw, their["id"].as_str().unwrap()),
    );
    assert_eq!(mine, restics, "the same folder, named as restic names it");
    let short = &first["tree"].as_str().unwrap()[..8];
    // ls shows paths in the snapshot's tree: the folder is at its root.
    let prefix = format!("/{short}");
    let recovered: BTreeSet<String> = mine
        .iter()
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    assert_eq!(
        recovered, first_paths,
        "every path of the forgotten snapshot"
    );
    restic19_ok(&env.repo, &env.pw, &["check"]);
    // The restore the hint names brings the forgotten files back.
    let target = env.path("back");
    let spec = format!("{}:/{short}", &ours["id"].as_str().unwrap()[..8]);
    env.ctl_ok(&["restore", &spec, "--target", target.to_str().unwrap()]);
    let found = Command::new("find")
        .arg(&target)
        .args(["-name", "note3.txt"])
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&found.stdout).trim().to_string();
    assert!(found.ends_with("/src/docs/note3.txt"), "{found:?}");
    assert_eq!(
        fs::read(&found).unwrap(),
        note3,
        "a file the later backup no longer had"
    );

    let again = env.ctl_ok(&["recover"]);
    assert!(again.contains("nothing to recover"), "{again}");
    assert_eq!(
        restic19_ok(&env.repo, &env.pw, &["list", "snapshots"])
            .lines()
            .count(),
        2,
        "the second recover saved nothing"
    );
}
