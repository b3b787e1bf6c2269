//! restic's `tag`, `list`, `cat` and `find` in backupctl, checked against restic 0.14 on the same repository.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;

/// A repository with two snapshots of a small tree: the first tagged `a` and `job:nightly`, the
/// second `b`. Returns the source folder.
fn two_snapshots(env: &Env) -> std::path::PathBuf {
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 7);
    let s = src.to_str().unwrap();
    env.ctl_ok(&["backup", "--tag", "a", "--tag", "job:nightly", s]);
    fs::write(src.join("docs/later.txt"), b"added later").unwrap();
    env.ctl_ok(&["backup", "--tag", "b", s]);
    src
}

/// restic's view of the snapshots, oldest first.
fn restic_snapshots(env: &Env) -> Vec<Value> {
    let v: Value = serde_json::from_str(&env.restic_ok(&["snapshots", "--json"])).unwrap();
    v.as_array().unwrap().clone()
}

fn tags_of(s: &Value) -> Vec<String> {
    s["tags"]
        .as_array()
        .map(|a| a.iter().map(|t| t.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn restic_check_is_clean(env: &Env) {
    let o = env.restic(&["check"]);
    assert!(o.status.success(), "restic check:\n{}", show(&o));
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(String::from).collect()
}

#[test]
fn tag_rewrites_snapshots_that_restic_reads_with_the_tree_kept() {
    let env = Env::new();
    two_snapshots(&env);
    let before = restic_snapshots(&env);
    let (first, second) = (before[0].clone(), before[1].clone());
    let out = env.ctl_ok(&["tag", "--add", "x,y", second["short_id"].as_str().unwrap()]);
    assert!(out.contains("modified 1 snapshots"), "{out}");
    let after = restic_snapshots(&env);
    assert_eq!(after.len(), 2, "the old file is gone, the new one is there");
    let new = after.iter().find(|s| s["tree"] == second["tree"]).unwrap();
    assert_ne!(new["id"], second["id"]);
    assert_eq!(tags_of(new), ["b", "x", "y"]);
    assert_eq!(new["original"], second["id"]);
    assert_eq!(new["time"], second["time"]);
    assert_eq!(new["paths"], second["paths"]);
    // Filters pick the snapshots when none is named; a second change keeps `original`.
    let v = env.ctl_ok(&["--json", "tag", "--tag", "x", "--remove", "y"]);
    let msgs: Vec<Value> = v
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(msgs[0]["message_type"], "changed");
    assert_eq!(msgs[0]["old_snapshot_id"], new["id"]);
    assert_eq!(msgs[1]["message_type"], "summary");
    assert_eq!(msgs[1]["changed_snapshots"], 1);
    let after = restic_snapshots(&env);
    let again = after.iter().find(|s| s["tree"] == second["tree"]).unwrap();
    assert_eq!(tags_of(again), ["b", "x"]);
    assert_eq!(again["original"], second["id"]);
    // The first snapshot was never touched.
    assert!(after.iter().any(|s| s["id"] == first["id"]));
    // A change that changes nothing rewrites nothing.
    let out = env.ctl_ok(&["tag", "--add", "b", "latest"]);
    assert!(out.contains("no snapshots were modified"), "{out}");
    assert!(restic_snapshots(&env)
        .iter()
        .any(|s| s["id"] == again["id"]));
    restic_check_is_clean(&env);
    // Fields restic 0.14 does not know (the summary) are kept as stored.
    let id = again["id"].as_str().unwrap();
    let cat = |id: &str| -> Value {
        serde_json::from_str(&env.ctl_ok(&["cat", "snapshot", id])).unwrap()
    };
    let (was, now) = (cat(first["id"].as_str().unwrap()), cat(id));
    assert!(now["summary"]["files_new"].as_u64().unwrap() > 0, "{now}");
    assert_eq!(now["program_version"], was["program_version"]);
    // Both restic and backupctl restore the retagged snapshot.
    env.ctl_ok(&["restore", id, "--target", env.path("out").to_str().unwrap()]);
    env.restic_ok(&[
        "restore",
        id,
        "--target",
        env.path("out2").to_str().unwrap(),
    ]);
    // restic's own tag works on what ours wrote, and keeps the chain's original.
    env.restic_ok(&["tag", "--add", "r", id]);
    let ours = env.ctl_json(&["snapshots", "--tag", "r"]);
    assert_eq!(ours.as_array().unwrap().len(), 1, "{ours}");
    assert_eq!(tags_of(&ours[0]), ["b", "x", "r"]);
    assert_eq!(ours[0]["original"], second["id"]);
}

#[test]
fn tag_refuses_to_drop_a_job_tag_without_force_and_set_with_add() {
    let env = Env::new();
    two_snapshots(&env);
    let first = restic_snapshots(&env)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = env.ctl(&["tag", "--set", "other", &first]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("job:nightly") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(tags_of(&restic_snapshots(&env)[0]), ["a", "job:nightly"]);
    let o = env.ctl(&["tag", "--set", "x", "--add", "y", &first]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--set"));
    let o = env.ctl(&["tag", &first]);
    assert_eq!(o.status.code(), Some(1), "nothing to do:\n{}", show(&o));
    // With --force it goes, with a warning; --set "" clears every tag.
    let o = env.ctl(&["tag", "--force", "--set", "", &first]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("job:nightly"));
    let snaps = restic_snapshots(&env);
    assert!(tags_of(&snaps[0]).is_empty(), "{:?}", snaps[0]);
    assert_eq!(snaps[0]["original"], first.as_str());
    restic_check_is_clean(&env);
}

#[test]
fn list_prints_the_ids_restic_lists() {
    let env = Env::new();
    two_snapshots(&env);
    for what in ["snapshots", "index", "packs", "keys", "locks", "blobs"] {
        let ours = lines(&env.ctl_ok(&["list", what]));
        let theirs = lines(&env.restic_ok(&["list", what]));
        assert_eq!(ours, theirs, "list {what}");
        if what != "locks" {
            assert!(!ours.is_empty(), "list {what} lists something");
        }
    }
    let blobs = env.ctl_ok(&["list", "blobs"]);
    assert!(blobs.lines().any(|l| l.starts_with("tree ")));
    assert!(blobs.lines().any(|l| l.starts_with("data ")));
    // The packs one snapshot needs: some of them, and each a pack of the repository.
    let all_packs = lines(&env.ctl_ok(&["list", "packs"]));
    let first = env.ctl_ok(&["list", "snapshots"]);
    let first = first.lines().next().unwrap();
    let needed = lines(&env.ctl_ok(&["list", "packs", &first[..8]]));
    assert!(
        !needed.is_empty() && needed.is_subset(&all_packs),
        "{needed:?}"
    );
    let o = env.ctl(&["list", "index", first]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let json = env.ctl_json(&["list", "snapshots"]);
    assert_eq!(json.as_array().unwrap().len(), 2);
}

#[test]
fn cat_prints_what_restic_prints() {
    let env = Env::new();
    two_snapshots(&env);
    let json = |args: &[&str]| -> Value {
        serde_json::from_str(&env.ctl_ok(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    let rjson = |args: &[&str]| -> Value { serde_json::from_str(&env.restic_ok(args)).unwrap() };
    assert_eq!(json(&["cat", "config"]), rjson(&["cat", "config"]));
    let snap = env.restic_ok(&["list", "snapshots"]);
    let snap = snap.lines().next().unwrap();
    // restic 0.14 knows fewer fields (no summary, program_version) and writes times shorter.
    let (ours, theirs) = (
        json(&["cat", "snapshot", snap]),
        rjson(&["cat", "snapshot", snap]),
    );
    for (k, v) in theirs.as_object().unwrap() {
        if k == "time" {
            let t = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
            assert_eq!(t(&ours[k]), t(v));
        } else {
            assert_eq!(&ours[k], v, "cat snapshot: {k}");
        }
    }
    assert!(
        ours["summary"].is_object(),
        "and what restic 0.17 adds: {ours}"
    );
    assert!(json(&["cat", "snapshot", "latest"])["tags"] == serde_json::json!(["b"]));
    let index = env.restic_ok(&["list", "index"]);
    let index = index.lines().next().unwrap();
    assert_eq!(
        json(&["cat", "index", index]),
        rjson(&["cat", "index", index])
    );
    let key = env.restic_ok(&["list", "keys"]);
    let key = key.lines().next().unwrap();
    assert_eq!(
        json(&["cat", "key", &key[..10]]),
        rjson(&["cat", "key", key])
    );
    // Raw objects are byte for byte restic's.
    let pack = env.restic_ok(&["list", "packs"]);
    let pack = pack.lines().next().unwrap();
    let ours = env.ctl(&["cat", "pack", pack]).stdout;
    assert_eq!(ours, env.restic(&["cat", "pack", pack]).stdout);
    assert_eq!(
        ours,
        fs::read(env.repo.join("data").join(&pack[..2]).join(pack)).unwrap()
    );
    let blobs = env.ctl_ok(&["list", "blobs"]);
    let data = blobs.lines().find(|l| l.starts_with("data ")).unwrap();
    let id = &data[5..];
    let ours = env.ctl(&["cat", "blob", id]).stdout;
    assert!(!ours.is_empty());
    assert_eq!(ours, env.restic(&["cat", "blob", id]).stdout);
    // A tree by snapshot and path, and by its id.
    let tree = env.ctl(&["cat", "tree", &format!("{snap}:/")]).stdout;
    let parsed: Value = serde_json::from_slice(&tree).unwrap();
    assert!(parsed["nodes"].is_array());
    let root = json(&["cat", "snapshot", snap])["tree"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(env.ctl(&["cat", "tree", &root]).stdout, tree);
    assert_eq!(tree, env.restic(&["cat", "blob", &root]).stdout);
    // Wrong or missing ids say what to do.
    let o = env.ctl(&["cat", "index", "ffffffffffff"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("backupctl list index"));
    let o = env.ctl(&["cat", "snapshot"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
}

#[test]
fn cat_pack_into_a_closed_pipe_exits_141_quietly_and_leaves_no_lock() {
    let env = Env::new();
    two_snapshots(&env);
    let packs = env.ctl_ok(&["list", "packs"]);
    let mut biggest = (0, String::new());
    for p in packs.lines() {
        let len = fs::metadata(env.repo.join("data").join(&p[..2]).join(p))
            .unwrap()
            .len();
        if len > biggest.0 {
            biggest = (len, p.to_string());
        }
    }
    assert!(biggest.0 > 1 << 20, "a pack far bigger than a pipe holds");
    let out = crate::support::after_closing_stdout(&mut env.ctl_cmd(&["cat", "pack", &biggest.1]));
    assert_eq!(out.status.code(), Some(141), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert_eq!(fs::read_dir(env.repo.join("locks")).unwrap().count(), 0);
}

#[test]
fn find_names_the_snapshots_that_hold_a_match() {
    let env = Env::new();
    let src = two_snapshots(&env);
    let snaps = restic_snapshots(&env);
    let later = src.join("docs/later.txt");
    let later = later.to_str().unwrap();
    // Only the second snapshot has later.txt.
    let v = env.ctl_json(&["find", "later.txt"]);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["snapshot"], snaps[1]["id"]);
    assert_eq!(list[0]["hits"], 1);
    assert_eq!(list[0]["matches"][0]["path"], later);
    assert_eq!(list[0]["matches"][0]["type"], "file");
    assert_eq!(list[0]["matches"][0]["permissions"], "-rw-r--r--");
    // restic finds the same entry in the same snapshot, with the same shape.
    let r: Value = serde_json::from_str(&env.restic_ok(&["find", "--json", "later.txt"])).unwrap();
    assert_eq!(r[0]["snapshot"], list[0]["snapshot"]);
    assert_eq!(r[0]["matches"][0]["path"], later);
    assert_eq!(
        r[0]["matches"][0]["permissions"],
        list[0]["matches"][0]["permissions"]
    );
    // A glob on names, in both snapshots, newest first; case only with --ignore-case.
    let v = env.ctl_json(&["find", "note1*.txt"]);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["snapshot"], snaps[1]["id"]);
    assert_eq!(list[0]["hits"], 11, "note1 and note10..note19");
    assert_eq!(env.ctl_json(&["find", "NOTE1.TXT"]), serde_json::json!([]));
    let v = env.ctl_json(&[
        "find",
        "-i",
        "NOTE1.TXT",
        "--snapshot",
        snaps[0]["short_id"].as_str().unwrap(),
    ]);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["snapshot"], snaps[0]["id"]);
    // A directory's name finds the directory, not what is in it; `dir/**` finds both.
    let v = env.ctl_json(&["find", "--snapshot", "latest", "deep"]);
    assert_eq!(v[0]["hits"], 1, "{v}");
    let v = env.ctl_json(&["find", "--snapshot", "latest", "deep/**"]);
    assert_eq!(
        v[0]["hits"], 4,
        "deep, deep/er, deep/er/big.bin, deep/medium.txt: {v}"
    );
    // Text output names the snapshot; a time window in the future finds nothing.
    let out = env.ctl_ok(&["find", "later.txt"]);
    assert!(out.contains(&format!(
        "snapshot {}",
        snaps[1]["short_id"].as_str().unwrap()
    )));
    assert!(out.contains(later), "{out}");
    let v = env.ctl_json(&["find", "--oldest", "2999-01-01", "later.txt"]);
    assert_eq!(v, serde_json::json!([]));
    let o = env.ctl(&[
        "find",
        "--oldest",
        "2999-01-01",
        "--newest",
        "2000-01-01",
        "x",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
}

#[test]
fn find_by_blob_tree_and_pack_id_names_the_files_and_snapshots_as_restic() {
    let env = Env::new();
    let src = two_snapshots(&env);
    let snaps = restic_snapshots(&env);
    let docs = format!("{}/docs", src.to_str().unwrap());
    let tree: Value =
        serde_json::from_slice(&env.ctl(&["cat", "tree", &format!("latest:{docs}")]).stdout)
            .unwrap();
    let later = tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "later.txt")
        .unwrap();
    let blob = later["content"][0].as_str().unwrap().to_string();
    let v = env.ctl_json(&["find", "--blob", &blob]);
    let uses = v.as_array().unwrap();
    assert_eq!(uses.len(), 1, "only the second snapshot has later.txt: {v}");
    assert_eq!(uses[0]["object_type"], "blob");
    assert_eq!(uses[0]["id"], blob.as_str());
    assert_eq!(uses[0]["path"], format!("{docs}/later.txt"));
    assert_eq!(uses[0]["snapshot"], snaps[1]["id"]);
    let r: Value =
        serde_json::from_str(&env.restic_ok(&["find", "--json", "--blob", &blob])).unwrap();
    assert_eq!(r[0]["path"], uses[0]["path"]);
    assert_eq!(r[0]["parent_tree"], uses[0]["parent_tree"]);
    assert_eq!(r[0]["snapshot"], uses[0]["snapshot"]);
    // The docs directory's tree of the latest snapshot, by an 8-digit prefix: only there (the
    // first snapshot's docs has no later.txt, so it is another tree).
    let parent: Value = serde_json::from_slice(
        &env.ctl(&["cat", "tree", &format!("latest:{}", src.to_str().unwrap())])
            .stdout,
    )
    .unwrap();
    let sub = parent["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "docs")
        .unwrap()["subtree"]
        .as_str()
        .unwrap()
        .to_string();
    let v = env.ctl_json(&["find", "--tree", &sub[..8]]);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["object_type"], "tree");
    assert_eq!(v[0]["id"], sub.as_str());
    assert_eq!(v[0]["path"], docs.as_str());
    assert_eq!(v[0]["snapshot"], snaps[1]["id"]);
    let text = env.ctl_ok(&["find", "--tree", &sub]);
    assert!(text.contains(&format!("Found tree {sub}")), "{text}");
    // The pack that holds later.txt's blob: found through it.
    let packs = env.ctl_ok(&["list", "packs"]);
    let mut found_in_pack = false;
    for p in packs.lines() {
        let v = env.ctl_json(&["find", "--pack", &p[..12], "--snapshot", "latest"]);
        if v.as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == blob.as_str())
        {
            found_in_pack = true;
        }
    }
    assert!(found_in_pack, "some pack holds later.txt's blob");
    let o = env.ctl(&["find", "--blob", "not-hex"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let o = env.ctl(&["find", "--pack", "ffffffffffff"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let o = env.ctl(&["find", "--blob", "--tree", "ab"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn snapshots_group_by_groups_as_restic_0_19_does() {
    let env = Env::new();
    two_snapshots(&env);
    let src = env.path("src");
    env.ctl_ok(&[
        "backup",
        "--tag",
        "b",
        "--host",
        "other",
        src.to_str().unwrap(),
    ]);
    let norm = |v: Value| -> Vec<(Value, Vec<Value>)> {
        let mut g: Vec<(Value, Vec<Value>)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let ids = g["snapshots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s["id"].clone())
                    .collect();
                (g["group_key"].clone(), ids)
            })
            .collect();
        g.sort_by_key(|(k, _)| k.to_string());
        g
    };
    for by in ["host", "host,tags", "paths", "tags"] {
        let ours = env.ctl_json(&["snapshots", "--group-by", by]);
        let o = env.restic19(&["snapshots", "--json", "--group-by", by]);
        assert!(o.status.success(), "{}", show(&o));
        let theirs: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(norm(ours), norm(theirs), "--group-by {by}");
    }
    let latest = env.ctl_json(&["snapshots", "--group-by", "host", "--latest", "1"]);
    assert_eq!(latest.as_array().unwrap().len(), 2, "{latest}");
    assert!(latest
        .as_array()
        .unwrap()
        .iter()
        .all(|g| g["snapshots"].as_array().unwrap().len() == 1));
    let text = env.ctl_ok(&["snapshots", "--group-by", "host"]);
    assert!(text.contains("snapshots for host \"other\""), "{text}");
    let o = env.ctl(&["snapshots", "--group-by", "color"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

#[test]
fn backup_tag_with_commas_gives_each_tag_as_restic_does() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    env.ctl_ok(&[
        "backup",
        "--tag",
        "a,b",
        "--tag",
        "c",
        src.to_str().unwrap(),
    ]);
    env.restic_ok(&[
        "backup",
        "--tag",
        "a,b",
        "--tag",
        "c",
        src.to_str().unwrap(),
    ]);
    let snaps = restic_snapshots(&env);
    assert_eq!(tags_of(&snaps[0]), ["a", "b", "c"]);
    assert_eq!(tags_of(&snaps[0]), tags_of(&snaps[1]));
}

#[test]
fn ls_prints_what_restic_0_19_prints_for_folders_recursive_and_long() {
    let env = Env::new();
    let src = two_snapshots(&env);
    let s = src.to_str().unwrap();
    let docs = format!("{s}/docs");
    let body = |o: std::process::Output| -> Vec<String> {
        assert!(o.status.success(), "{}", show(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines()
            .filter(|l| !l.starts_with("snapshot "))
            .map(String::from)
            .collect()
    };
    // Our times carry their UTC offset (`… 05:19:31 +00:00`); restic's carry none.
    let no_offset = |l: &str| -> String {
        let b = l.as_bytes();
        let at = (0..b.len().saturating_sub(7)).find(|&i| {
            b[i] == b' '
                && (b[i + 1] == b'+' || b[i + 1] == b'-')
                && b[i + 4] == b':'
                && b[i + 7] == b' '
                && [2, 3, 5, 6].iter().all(|k| b[i + k].is_ascii_digit())
        });
        match at {
            Some(i) => format!("{}{}", &l[..i], &l[i + 7..]),
            None => l.to_string(),
        }
    };
    for args in [
        vec!["ls", "latest"],
        vec!["ls", "latest", &docs],
        vec!["ls", "latest", &docs, "--recursive"],
        vec!["ls", "-l", "latest", &docs, s],
        vec!["ls", "-l", "latest"],
    ] {
        let ours: Vec<String> = body(env.ctl(&args)).iter().map(|l| no_offset(l)).collect();
        let theirs = body(env.restic19(&args));
        assert_eq!(ours, theirs, "{args:?}");
    }
}
