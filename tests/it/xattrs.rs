//! Extended attributes stored as restic stores them: backupctl's snapshot restored by restic 0.19 and restic's by backupctl give every attribute back, and both tools list the same `extended_attributes`.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Every user attribute below `root`, by relative path (symlinks not followed).
fn attrs(root: &Path) -> BTreeMap<String, Vec<(String, Vec<u8>)>> {
    let mut out = BTreeMap::new();
    for rel in ["file", "dir", "dir/inner"] {
        let p = root.join(rel);
        let mut v: Vec<(String, Vec<u8>)> = xattr::list(&p)
            .unwrap()
            .filter(|n| n.to_string_lossy().starts_with("user."))
            .map(|n| {
                let val = xattr::get(&p, &n).unwrap().unwrap_or_default();
                (n.to_string_lossy().into_owned(), val)
            })
            .collect();
        v.sort();
        out.insert(rel.to_string(), v);
    }
    out
}

/// The `extended_attributes` of each node of the folder `path` of snapshot `id`, as restic
/// 0.19's `cat tree` prints the stored tree, by name.
fn listed(env: &Env, id: &str, path: &str) -> BTreeMap<String, Value> {
    let o = env.restic19(&["cat", "tree", &format!("{id}:{path}")]);
    assert!(o.status.success(), "{}", show(&o));
    let tree: Value = serde_json::from_slice(&o.stdout).unwrap();
    tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["extended_attributes"].clone(),
            )
        })
        .collect()
}

fn latest_id(env: &Env) -> String {
    let v: Value =
        serde_json::from_slice(&env.restic19(&["snapshots", "--json", "latest"]).stdout).unwrap();
    v[0]["id"].as_str().unwrap().to_string()
}

#[test]
fn extended_attributes_go_both_ways_between_backupctl_and_restic() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    fs::create_dir_all(src.join("dir/inner")).unwrap();
    fs::write(src.join("file"), b"data").unwrap();
    xattr::set(src.join("file"), "user.comment", b"hello").unwrap();
    xattr::set(src.join("file"), "user.binary", &[0u8, 255, 10, 13]).unwrap();
    xattr::set(src.join("dir"), "user.tag", b"d").unwrap();
    std::os::unix::fs::symlink("file", src.join("link")).unwrap();
    let want = attrs(&src);
    assert_eq!(want["file"].len(), 2);
    let s = src.to_str().unwrap();

    env.ctl_ok(&["backup", s]);
    let ours = latest_id(&env);
    let out = env.path("by-restic");
    let o = env.restic19(&["restore", &ours, "--target", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        attrs(&out.join(s.trim_start_matches('/'))),
        want,
        "restic restores ours"
    );

    let o = env.restic19(&["backup", s]);
    assert!(o.status.success(), "{}", show(&o));
    let theirs = latest_id(&env);
    let out = env.path("by-backupctl");
    env.ctl_ok(&["restore", &theirs, "--target", out.to_str().unwrap()]);
    assert_eq!(
        attrs(&out.join(s.trim_start_matches('/'))),
        want,
        "we restore restic's"
    );

    let (a, b) = (listed(&env, &ours, s), listed(&env, &theirs, s));
    for name in ["file", "dir", "link"] {
        assert_eq!(a[name], b[name], "extended_attributes of {name}");
    }
    assert_eq!(
        a["file"].as_array().map(Vec::len),
        Some(2),
        "{:?}",
        a["file"]
    );
    assert!(a["link"].is_null(), "a symlink has none");
}
