//! File names and symlink targets that are not UTF-8, stored as restic stores them (the name as a Go string literal's body with `\xff` for such a byte, the target lossily plus `linktarget_raw`): each tool restores the other's snapshot byte for byte, and two names that only differ in such bytes stay two files.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// A folder whose names are not UTF-8: two files that read the same when shown lossily, a
/// folder, a file inside it and a symlink whose target is not UTF-8 either.
fn make_source(src: &Path) {
    fs::create_dir_all(src.join(os(b"dir\x80"))).unwrap();
    fs::write(src.join(os(b"a\xffb")), b"first").unwrap();
    fs::write(src.join(os(b"a\xfeb")), b"second").unwrap();
    fs::write(src.join(os(b"dir\x80/in\xc3")), b"inner").unwrap();
    fs::write(src.join("plain"), b"plain").unwrap();
    std::os::unix::fs::symlink(os(b"tgt\xfe"), src.join("link")).unwrap();
}

/// Every entry below `root` by its exact relative bytes: a file's content, a folder's
/// marker, a symlink's exact target.
fn entries(root: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let md = fs::symlink_metadata(&p).unwrap();
            let v = if md.is_symlink() {
                [b"-> ", fs::read_link(&p).unwrap().as_os_str().as_bytes()].concat()
            } else if md.is_dir() {
                stack.push(p);
                b"<dir>".to_vec()
            } else {
                fs::read(&p).unwrap()
            };
            out.insert(rel, v);
        }
    }
    out
}

fn latest_id(env: &Env) -> String {
    let v: Value =
        serde_json::from_slice(&env.restic19(&["snapshots", "--json", "latest"]).stdout).unwrap();
    v[0]["id"].as_str().unwrap().to_string()
}

/// The name, `linktarget` and `linktarget_raw` of each node of the folder `path` of snapshot
/// `id`, as restic 0.19's `cat tree` prints the stored tree, in stored order.
fn stored(env: &Env, id: &str, path: &str) -> Vec<(Value, Value, Value)> {
    let o = env.restic19(&["cat", "tree", &format!("{id}:{path}")]);
    assert!(o.status.success(), "{}", show(&o));
    let tree: Value = serde_json::from_slice(&o.stdout).unwrap();
    tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].clone(),
                n["linktarget"].clone(),
                n["linktarget_raw"].clone(),
            )
        })
        .collect()
}

#[test]
fn names_that_are_not_utf8_go_both_ways_between_backupctl_and_restic() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_source(&src);
    let want = entries(&src);
    assert_eq!(want.len(), 6);
    let s = src.to_str().unwrap();
    let inside = |out: &Path| out.join(s.trim_start_matches('/'));

    env.ctl_ok(&["backup", s]);
    let ours = latest_id(&env);
    let out = env.path("ours-by-restic");
    let o = env.restic19(&["restore", &ours, "--target", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(entries(&inside(&out)), want, "restic restores ours");
    let out = env.path("ours-by-backupctl");
    env.ctl_ok(&["restore", &ours, "--target", out.to_str().unwrap()]);
    assert_eq!(entries(&inside(&out)), want, "we restore ours");

    let o = env.restic19(&["backup", s]);
    assert!(o.status.success(), "{}", show(&o));
    let theirs = latest_id(&env);
    let out = env.path("theirs-by-backupctl");
    env.ctl_ok(&["restore", &theirs, "--target", out.to_str().unwrap()]);
    assert_eq!(entries(&inside(&out)), want, "we restore restic's");

    let (a, b) = (stored(&env, &ours, s), stored(&env, &theirs, s));
    assert_eq!(a, b, "the same names, order and targets in both trees");
    assert_eq!(
        a[0].0, "a\\xfeb",
        "stored as restic stores it, sorted by bytes"
    );
    let link = a.iter().find(|n| n.0 == "link").unwrap();
    assert_eq!(link.1, "tgt\u{fffd}");
    assert_eq!(link.2, "dGd0/g==", "the target's bytes, base64");

    let o = env.restic19(&["check", "--read-data"]);
    assert!(o.status.success(), "{}", show(&o));
    let c = env.ctl(&["check", "--read-data"]);
    assert!(c.status.success(), "{}", show(&c));
}

#[test]
fn an_unchanged_name_that_is_not_utf8_reuses_its_parent_node() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_source(&src);
    let s = src.to_str().unwrap();
    env.ctl_ok(&["backup", s]);
    let v = env.ctl_json(&["backup", s]);
    assert_eq!(v["files_new"], 0, "{v}");
    assert_eq!(v["files_changed"], 0, "{v}");
    assert_eq!(v["files_unmodified"], 4, "{v}");
}
