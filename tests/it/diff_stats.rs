//! `backupctl diff` and `backupctl stats` on repositories written by restic 0.14: the exact list
//! of changes with their markers, and totals that agree with `restic diff` / `restic stats`.

use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BACKUPCTL: &str = env!("CARGO_BIN_EXE_backupctl");

fn restic_available() {
    let ok = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "restic is not installed: these tests build their repositories with restic 0.14 \
         (install it with `apt-get install restic`, or run tests/run.sh)"
    );
}

/// Which program writes the snapshots.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    /// restic 0.14, backing up `.` from inside the source: paths start at the snapshot's root.
    Restic,
    /// backupctl, backing up the source's absolute path: paths start with it.
    Backupctl,
}

/// A repository with two snapshots of `src`, and the changes made in between.
struct Fixture {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    pw: PathBuf,
    src: PathBuf,
    /// Where the source's entries are in the snapshots: "" or the source's absolute path.
    prefix: String,
    /// Snapshot ids, oldest first.
    snaps: Vec<String>,
}

fn write(p: &Path, content: &str) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
}

fn check(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

impl Fixture {
    fn restic(&self, args: &[&str]) -> Output {
        let o = Command::new("restic")
            .arg("-r")
            .arg(&self.repo)
            .arg("--password-file")
            .arg(&self.pw)
            .arg("--no-cache")
            .args(args)
            .current_dir(&self.src)
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD_FILE")
            .output()
            .expect("run restic");
        check(&o, &format!("restic {args:?}"));
        o
    }

    fn restic_json(&self, args: &[&str]) -> Value {
        let o = self.restic(args);
        serde_json::from_slice(&o.stdout).expect("restic prints JSON")
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BACKUPCTL)
            .arg("-r")
            .arg(&self.repo)
            .arg("--password-file")
            .arg(&self.pw)
            .args(args)
            .env_remove("BACKUPD_REPOSITORY")
            .env_remove("BACKUPD_PASSWORD_FILE")
            .output()
            .expect("run backupctl")
    }

    fn ctl_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.ctl(&a);
        check(&o, &format!("backupctl {a:?}"));
        serde_json::from_slice(&o.stdout).expect("backupctl --json prints JSON")
    }

    /// `diff --json`, restic's JSON Lines (a `change` line each, then `statistics`), gathered
    /// into one value: `changes`, `stats`, and the snapshots' short ids.
    fn diff_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json", "diff"];
        a.extend_from_slice(args);
        let o = self.ctl(&a);
        check(&o, &format!("backupctl {a:?}"));
        let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        let (last, changes) = lines.split_last().expect("a statistics line");
        assert_eq!(last["message_type"], "statistics", "{last}");
        assert!(changes.iter().all(|c| c["message_type"] == "change"));
        serde_json::json!({
            "source_snapshot": last["source_snapshot"],
            "target_snapshot": last["target_snapshot"],
            "changes": changes,
            "stats": last,
        })
    }

    fn backup(&self, tool: Tool) {
        match tool {
            // Relative to the source so that paths in the snapshot start at its root.
            Tool::Restic => {
                self.restic(&["backup", "."]);
            }
            Tool::Backupctl => {
                let o = self.ctl(&["backup", self.src.to_str().unwrap()]);
                check(&o, "backupctl backup");
            }
        }
    }

    /// Builds the repository: snapshot 1, then every kind of change, then snapshot 2.
    fn new(tool: Tool) -> Fixture {
        restic_available();
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let pw = dir.path().join("pw");
        fs::write(&pw, "correct horse battery staple\n").unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let prefix = match tool {
            Tool::Restic => String::new(),
            Tool::Backupctl => src.to_str().unwrap().to_string(),
        };
        let mut f = Fixture {
            _dir: dir,
            repo,
            pw,
            src: src.clone(),
            prefix,
            snaps: vec![],
        };
        match tool {
            Tool::Restic => drop(f.restic(&["init"])),
            Tool::Backupctl => check(&f.ctl(&["init"]), "backupctl init"),
        }

        let s = |p: &str| src.join(p);
        write(&s("keep.txt"), "keep me\n");
        write(&s("remove.txt"), "remove me\n");
        write(&s("modify.txt"), "original content\n");
        write(&s("chmod.txt"), "mode only\n");
        write(&s("replace"), "I was a file\n");
        write(&s("sub/inner.txt"), "inner\n");
        write(&s("gone/a.txt"), "gone a\n");
        write(&s("same/k.txt"), "unchanged subtree\n");
        write(&s("same/deeper/d.txt"), "deep and unchanged\n");
        write(&s("hard1"), "hardlinked content\n");
        fs::hard_link(s("hard1"), s("hard2")).unwrap();
        std::os::unix::fs::symlink("keep.txt", s("link")).unwrap();
        f.backup(tool);

        write(&s("new.txt"), "brand new\n");
        write(&s("newdir/x.txt"), "x in newdir\n");
        // A copy of a file in an unchanged subtree: its blob is not new.
        write(&s("newdir/copy.txt"), "unchanged subtree\n");
        std::os::unix::fs::symlink("new.txt", s("newlink")).unwrap();
        fs::remove_file(s("remove.txt")).unwrap();
        fs::remove_dir_all(s("gone")).unwrap();
        write(&s("modify.txt"), "modified content, longer than before\n");
        fs::set_permissions(s("chmod.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(s("replace")).unwrap();
        // Same content as new.txt: no new blob.
        write(&s("replace/child.txt"), "brand new\n");
        write(&s("sub/added.txt"), "added in sub\n");
        fs::set_permissions(s("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        // `same` keeps its mode; its mtime changes, which is not reported for a directory.
        write(&s("same/tmp"), "x");
        fs::remove_file(s("same/tmp")).unwrap();
        f.backup(tool);

        let snaps = f.restic_json(&["snapshots", "--json"]);
        let mut list: Vec<_> = snaps
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    chrono::DateTime::parse_from_rfc3339(s["time"].as_str().unwrap()).unwrap(),
                    s["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        list.sort();
        assert_eq!(list.len(), 2);
        f.snaps = list.into_iter().map(|(_, id)| id).collect();
        f
    }
}

fn changes(doc: &Value) -> Vec<(String, String)> {
    doc["changes"]
        .as_array()
        .expect("changes is an array")
        .iter()
        .map(|c| {
            (
                c["modifier"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Asserts the exact changes and totals of the fixture's diff (paths below `prefix`).
fn assert_fixture_diff(doc: &Value, prefix: &str, tool: Tool) {
    let expected: Vec<(String, String)> = [
        ("U", "/chmod.txt"),
        ("-", "/gone/"),
        ("-", "/gone/a.txt"),
        ("M", "/modify.txt"),
        ("+", "/new.txt"),
        ("+", "/newdir/"),
        ("+", "/newdir/copy.txt"),
        ("+", "/newdir/x.txt"),
        ("+", "/newlink"),
        ("-", "/remove.txt"),
        ("T", "/replace/"),
        ("+", "/replace/child.txt"),
        // chmod 750.
        ("U", "/sub/"),
        ("+", "/sub/added.txt"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), format!("{prefix}{p}")))
    .collect();
    assert_eq!(changes(doc), expected);

    let st = &doc["stats"];
    assert_eq!(st["changed_files"], 1);
    assert_eq!(st["metadata_changed"], 2);
    assert_eq!(st["type_changed"], 1);
    // new.txt, newdir/x.txt, newdir/copy.txt, replace/child.txt, sub/added.txt
    assert_eq!(st["added"]["files"], 5);
    assert_eq!(st["added"]["dirs"], 2);
    assert_eq!(st["added"]["others"], 1);
    // remove.txt, gone/a.txt, the file `replace`
    assert_eq!(st["removed"]["files"], 3);
    assert_eq!(st["removed"]["dirs"], 1);
    assert_eq!(st["removed"]["others"], 0);
    // New content: new.txt, x.txt, modify.txt's, added.txt (copy.txt and child.txt are copies).
    let added_data = [
        "brand new\n",
        "x in newdir\n",
        "modified content, longer than before\n",
        "added in sub\n",
    ];
    let removed_data = [
        "remove me\n",
        "gone a\n",
        "original content\n",
        "I was a file\n",
    ];
    let len = |v: &[&str]| v.iter().map(|s| s.len() as u64).sum::<u64>();
    assert_eq!(st["added"]["data_blobs"], 4);
    assert_eq!(st["added"]["data_bytes"], len(&added_data));
    assert_eq!(st["removed"]["data_blobs"], 4);
    assert_eq!(st["removed"]["data_bytes"], len(&removed_data));
    // Trees: the compared roots, newdir, replace and sub are new; the old root, gone and sub
    // are gone.
    let (ta, tr) = (
        st["added"]["tree_blobs"].as_u64().unwrap(),
        st["removed"]["tree_blobs"].as_u64().unwrap(),
    );
    if tool == Tool::Restic {
        assert_eq!((ta, tr), (4, 3));
    } else {
        // backupctl's backup reads files without O_NOATIME (restic uses it), so the second
        // snapshot records new access times and `same/` gets new trees (a pair per level),
        // which the diff must walk without reporting anything.
        assert!(
            ta >= 4 && tr >= 3 && ta - tr == 1,
            "tree blobs {ta} new, {tr} removed"
        );
    }
}

#[test]
fn diff_lists_exactly_the_changes_and_totals_agree_with_restic() {
    let f = Fixture::new(Tool::Restic);
    let (a, b) = (&f.snaps[0][..8], &f.snaps[1][..8]);
    let doc = f.diff_json(&[a, "latest"]);
    assert_eq!(doc["source_snapshot"], a, "as named, as restic prints them");
    assert_eq!(doc["target_snapshot"], "latest");
    assert_fixture_diff(&doc, "", Tool::Restic);
    let st = &doc["stats"];

    // restic's own diff agrees on the blobs and bytes (our file/dir counts differ on purpose:
    // restic neither counts a type change nor lists a new directory's content).
    let o = f.restic(&["diff", "--json", a, b]);
    let last = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .rev()
        .find(|l| l.contains("\"statistics\""))
        .expect("restic diff --json prints statistics")
        .to_string();
    let r: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(st["changed_files"], r["changed_files"]);
    for side in ["added", "removed"] {
        for k in ["data_blobs", "tree_blobs", "bytes"] {
            assert_eq!(st[side][k], r[side][k], "{side}.{k}: ours vs restic's");
        }
    }

    // Human output: restic's layout.
    let o = f.ctl(&["diff", a, b]);
    check(&o, "backupctl diff");
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.starts_with(&format!("comparing snapshot {a} to {b}:\n")),
        "{out}"
    );
    for line in [
        "U    /chmod.txt\n",
        "T    /replace/\n",
        "+    /replace/child.txt\n",
        "-    /gone/a.txt\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    assert!(
        out.contains("Files:           5 new,     3 removed,     1 changed\n"),
        "{out}"
    );
    assert!(
        out.contains("Dirs:            2 new,     1 removed\n"),
        "{out}"
    );

    // The other way round, additions and removals swap.
    let rev = f.diff_json(&[b, a]);
    assert_eq!(rev["stats"]["added"], doc["stats"]["removed"]);
    assert_eq!(rev["stats"]["removed"], doc["stats"]["added"]);
    assert!(changes(&rev).contains(&("-".into(), "/newdir/x.txt".into())));
    assert!(changes(&rev).contains(&("T".into(), "/replace".into())));
}

#[test]
fn diff_of_equal_snapshots_subpaths_and_bad_references() {
    let f = Fixture::new(Tool::Restic);
    let (a, b) = (&f.snaps[0][..8], &f.snaps[1][..8]);

    let same = f.diff_json(&[b, "latest"]);
    assert_eq!(changes(&same), vec![]);
    assert_eq!(same["stats"]["added"]["data_blobs"], 0);
    assert_eq!(same["stats"]["removed"]["tree_blobs"], 0);

    // Only below /sub, with full paths.
    let sub = f.diff_json(&[&format!("{a}:/sub"), &format!("{b}:/sub")]);
    assert_eq!(changes(&sub), pairs(&[("+", "/sub/added.txt")]));
    assert_eq!(sub["stats"]["added"]["files"], 1);
    assert_eq!(sub["stats"]["added"]["data_blobs"], 1);

    // An unchanged subtree: nothing.
    let s = f.diff_json(&[&format!("{a}:/same"), &format!("{b}:/same")]);
    assert_eq!(changes(&s), vec![]);

    let o = f.ctl(&["diff", "deadbeef", b]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no snapshot matches \"deadbeef\""), "{err}");
    assert!(err.contains("hint:"), "{err}");

    let o = f.ctl(&["diff", &format!("{a}:/keep.txt"), b]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a directory"), "{err}");

    let o = f.ctl(&["diff", &format!("{a}:/nope"), b]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no path \"/nope\""));
}

#[test]
fn stats_agree_with_restic() {
    let f = Fixture::new(Tool::Restic);
    let latest = f.snaps[1].as_str();
    for sel in [vec![], vec!["latest"], vec![&f.snaps[0][..8]]] {
        // restore-size: every node and the bytes restored (the hard link counts once).
        let mut args = vec!["stats", "--mode", "restore-size"];
        args.extend(sel.iter().copied());
        let ours = f.ctl_json(&args);
        let mut rargs = vec!["stats", "--json", "--mode", "restore-size"];
        rargs.extend(sel.iter().copied());
        let theirs = f.restic_json(&rargs);
        for k in ["total_size", "total_file_count", "snapshots_count"] {
            assert_eq!(ours[k], theirs[k], "restore-size {sel:?} {k}");
        }

        // raw-data: the distinct blobs and their stored size.
        args[2] = "raw-data";
        rargs[3] = "raw-data";
        let ours = f.ctl_json(&args);
        let theirs = f.restic_json(&rargs);
        for k in ["total_size", "total_blob_count", "snapshots_count"] {
            assert_eq!(ours[k], theirs[k], "raw-data {sel:?} {k}");
        }
        let stored = ours["total_size"].as_f64().unwrap();
        let plain = ours["total_uncompressed_size"].as_f64().unwrap();
        let ratio = ours["compression_ratio"].as_f64().unwrap();
        assert!((ratio - plain / stored).abs() < 1e-9);
        let saving = ours["compression_space_saving"].as_f64().unwrap();
        assert!((saving - (1.0 - stored / plain) * 100.0).abs() < 1e-9);

        // files-by-contents: the same bytes; restic counts one more "file" (all directories
        // and links share its empty-content key), we count files only.
        args[2] = "files-by-contents";
        rargs[3] = "files-by-contents";
        let ours = f.ctl_json(&args);
        let theirs = f.restic_json(&rargs);
        assert_eq!(
            ours["total_size"], theirs["total_size"],
            "files-by-contents {sel:?}"
        );
        assert_eq!(
            ours["total_file_count"].as_u64().unwrap() + 1,
            theirs["total_file_count"].as_u64().unwrap(),
            "files-by-contents {sel:?}"
        );
    }

    // Known answer for the newest snapshot: 13 files, 10 distinct contents (hard2 = hard1,
    // replace/child.txt = new.txt, newdir/copy.txt = same/k.txt).
    let ours = f.ctl_json(&["stats", "--mode", "files-by-contents", latest]);
    assert_eq!(ours["total_file_count"], 10);
    assert_eq!(ours["snapshots_count"], 1);

    // Repository totals: the packs on disk and all snapshots.
    let st = f.ctl_json(&["stats", "latest"]);
    let mut packs = 0u64;
    let mut bytes = 0u64;
    for d in fs::read_dir(f.repo.join("data")).unwrap() {
        for p in fs::read_dir(d.unwrap().path()).unwrap() {
            packs += 1;
            bytes += p.unwrap().metadata().unwrap().len();
        }
    }
    assert!(packs > 0);
    assert_eq!(st["repository"]["packs"], packs);
    assert_eq!(st["repository"]["pack_bytes"], bytes);
    assert_eq!(st["repository"]["snapshots"], 2);

    let o = f.ctl(&["stats", "--mode", "nonsense"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown stats mode"));

    let o = f.ctl(&["stats", "--mode", "raw-data"]);
    check(&o, "backupctl stats --mode raw-data");
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("Stats in raw-data mode:"), "{out}");
    assert!(out.contains("Compression Ratio:"), "{out}");
}

#[test]
fn diff_and_stats_on_snapshots_backupctl_wrote() {
    let f = Fixture::new(Tool::Backupctl);
    let (a, b) = (&f.snaps[0][..8], &f.snaps[1][..8]);
    // backupctl records absolute paths: compare below the source.
    let src = f.prefix.as_str();
    let doc = f.diff_json(&[&format!("{a}:{src}"), &format!("{b}:{src}")]);
    assert_fixture_diff(&doc, src, Tool::Backupctl);

    // restic agrees with our stats of a repository we wrote.
    for mode in ["restore-size", "raw-data"] {
        let ours = f.ctl_json(&["stats", "--mode", mode]);
        let theirs = f.restic_json(&["stats", "--json", "--mode", mode]);
        for k in ["total_size", "total_file_count", "snapshots_count"] {
            assert_eq!(ours[k], theirs[k], "{mode} {k}");
        }
        if mode == "raw-data" {
            assert_eq!(ours["total_blob_count"], theirs["total_blob_count"]);
        }
    }
}
