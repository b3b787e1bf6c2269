//! `backupctl key list|add|remove|passwd` on a real repository, each checked with restic: another password opens it, the key in use is never removed, a changed password replaces the old one.

use crate::support::{ctl_at, make_tree, restic_at, show, Env};
use serde_json::Value;
use std::fs;
use std::path::Path;

fn keys(env: &Env, pw: &Path) -> Vec<Value> {
    let o = ctl_at(&env.repo, pw, &["--json", "key", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn keys_are_added_removed_and_changed_and_restic_agrees() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 2);
    env.ctl_ok(&["backup", src.to_str().unwrap()]);
    let (pw1, pw2, pw3) = (env.pw.clone(), env.path("pw2"), env.path("pw3"));
    fs::write(&pw2, "second password\n").unwrap();
    fs::write(&pw3, "third password\n").unwrap();

    // add: a second password opens the repository, for restic too.
    let add = [
        "key",
        "add",
        "--new-password-file",
        pw2.to_str().unwrap(),
        "--host",
        "laptop",
        "--user",
        "alice",
    ];
    let o = ctl_at(&env.repo, &pw1, &add);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let k = keys(&env, &pw1);
    assert_eq!(k.len(), 2, "{k:?}");
    let current: Vec<&Value> = k.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1, "{k:?}");
    let added = k.iter().find(|k| k["hostName"] == "laptop").unwrap();
    assert_eq!(added["userName"], "alice");
    assert_eq!(added["current"], false);
    let o = restic_at(&env.repo, &pw2, &["snapshots"]);
    assert!(
        o.status.success(),
        "restic opens it with the new key: {}",
        show(&o)
    );
    let o = restic_at(&env.repo, &pw1, &["key", "list"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("laptop"),
        "{}",
        show(&o)
    );
    let text =
        String::from_utf8_lossy(&ctl_at(&env.repo, &pw1, &["key", "list"]).stdout).into_owned();
    assert!(text.lines().any(|l| l.starts_with('*')), "{text}");

    // remove: the key in use is refused, by its id prefix; another one goes.
    let cur = current[0]["id"].as_str().unwrap();
    let o = ctl_at(&env.repo, &pw1, &["key", "remove", &cur[..8]]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is the one your password opened") && err.contains("hint:"),
        "{err}"
    );
    assert_eq!(keys(&env, &pw1).len(), 2);
    let o = ctl_at(&env.repo, &pw1, &["key", "remove", "zz"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("backupctl key list"));
    let other = added["id"].as_str().unwrap();
    let o = ctl_at(&env.repo, &pw1, &["key", "remove", &other[..10]]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(keys(&env, &pw1).len(), 1);
    let o = ctl_at(&env.repo, &pw2, &["snapshots"]);
    assert_eq!(
        o.status.code(),
        Some(12),
        "the removed key's password: {}",
        show(&o)
    );

    // passwd: the new password works, the old one no longer does; the data is untouched.
    let o = ctl_at(
        &env.repo,
        &pw1,
        &[
            "key",
            "passwd",
            "--new-password-file",
            pw3.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = ctl_at(&env.repo, &pw1, &["snapshots"]);
    assert_eq!(o.status.code(), Some(12), "the old password: {}", show(&o));
    let k = keys(&env, &pw3);
    assert_eq!(k.len(), 1);
    assert_eq!(k[0]["current"], true);
    let o = restic_at(&env.repo, &pw3, &["check", "--read-data"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = ctl_at(
        &env.repo,
        &pw3,
        &["key", "add", "--new-password-file", "/nonexistent/pw"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/pw"));
}
