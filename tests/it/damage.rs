//! Integration tests of damage confined to one file (#20 item 2): a damaged snapshot file is
//! reported and skipped, a damaged key file is named, not taken for a wrong password.

use crate::support::{show, Env};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Flips one byte in the middle of a file (made writable first).
fn flip(p: &Path) {
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
    let mut b = fs::read(p).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x40;
    fs::write(p, b).unwrap();
}

/// A repository with two snapshots of `data` (one file changed between them); their full ids,
/// oldest first.
fn two_snapshots(env: &Env) -> (String, String) {
    env.ctl_ok(&["init"]);
    let data = env.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.txt"), b"one").unwrap();
    env.ctl_ok(&["backup", s(&data)]);
    fs::write(data.join("a.txt"), b"two").unwrap();
    env.ctl_ok(&["backup", s(&data)]);
    let v = env.ctl_json(&["snapshots"]);
    let id = |i: usize| v[i]["id"].as_str().unwrap().to_string();
    (id(0), id(1))
}

fn snapshot_file(env: &Env, id: &str) -> PathBuf {
    env.repo.join("snapshots").join(id)
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_damaged_snapshot_is_named_and_skipped_the_others_list_and_restore() {
    let env = Env::new();
    let (a, b) = two_snapshots(&env);
    flip(&snapshot_file(&env, &a));

    // snapshots: exit 0, B listed, A named on stderr with a hint that works.
    let o = env.ctl(&["--json", "snapshots"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b.as_str()], "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("snapshots/{a}")), "{err}");
    assert!(err.contains(&format!("backupctl forget {a}")), "{err}");

    // restore B by its full id: exit 0, A named on stderr.
    let t = env.path("t1");
    let o = env.ctl(&["restore", &b, "--target", s(&t)]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!("snapshots/{a}")),
        "{}",
        show(&o)
    );
    let restored = t.join(s(&env.path("data")).trim_start_matches('/'));
    assert_eq!(fs::read(restored.join("a.txt")).unwrap(), b"two");

    // ls and diff of intact snapshots work too.
    let o = env.ctl(&["ls", &b]);
    assert_eq!(code(&o), 0, "{}", show(&o));

    // check fails, naming the damaged snapshot.
    let o = env.ctl(&["check"]);
    assert_eq!(code(&o), 4, "{}", show(&o));

    // Following the hint removes the damaged file; then check passes.
    let o = env.ctl(&["forget", &a]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(!snapshot_file(&env, &a).exists());
    let o = env.ctl(&["check"]);
    assert_eq!(code(&o), 0, "{}", show(&o));
}

#[test]
fn latest_refuses_when_a_snapshot_is_damaged_and_newest_valid_walks_past_it() {
    let env = Env::new();
    let (a, b) = two_snapshots(&env);
    flip(&snapshot_file(&env, &b));

    // `latest` cannot know whether the damaged snapshot was the newest: it refuses (4), naming
    // the file and the two ways on.
    let t = env.path("t1");
    let o = env.ctl(&["restore", "latest", "--target", s(&t)]);
    assert_eq!(code(&o), 4, "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("snapshots/{b}")), "{err}");
    assert!(err.contains("--newest-valid"), "{err}");

    // --newest-valid restores the newest readable one (A), with a warning naming B.
    let o = env.ctl(&["restore", "latest", "--newest-valid", "--target", s(&t)]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!("snapshots/{b}")),
        "{}",
        show(&o)
    );
    let restored = t.join(s(&env.path("data")).trim_start_matches('/'));
    assert_eq!(fs::read(restored.join("a.txt")).unwrap(), b"one");

    // The damaged snapshot named by id: exit 4 with the forget hint.
    let o = env.ctl(&["restore", &b, "--target", s(&t)]);
    assert_eq!(code(&o), 4, "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!("backupctl forget {b}")),
        "{}",
        show(&o)
    );
    let _ = a;
}

#[test]
fn prune_refuses_a_damaged_snapshot_and_says_how_to_remove_it() {
    let env = Env::new();
    let (a, _b) = two_snapshots(&env);
    flip(&snapshot_file(&env, &a));
    let o = env.ctl(&["prune"]);
    assert_eq!(code(&o), 4, "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!("backupctl forget {a}")),
        "{}",
        show(&o)
    );
}
fn key_file(env: &Env) -> PathBuf {
    let dir = env.repo.join("keys");
    let e = fs::read_dir(&dir).unwrap().next().unwrap().unwrap();
    e.path()
}

#[test]
fn a_key_file_that_does_not_parse_is_named_not_a_wrong_password() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let k = key_file(&env);
    let name = k.file_name().unwrap().to_str().unwrap().to_string();
    fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
    let b = fs::read(&k).unwrap();
    fs::write(&k, &b[..b.len() / 2]).unwrap();
    let o = env.ctl(&["snapshots"]);
    let err = stderr(&o);
    assert_ne!(code(&o), 12, "{}", show(&o));
    assert!(err.contains(&format!("keys/{name}")), "{err}");
    assert!(err.contains("not valid JSON"), "{err}");
}

#[test]
fn a_key_file_whose_mac_fails_says_password_or_damage_and_names_it() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let k = key_file(&env);
    let name = k.file_name().unwrap().to_str().unwrap().to_string();
    // Damage the sealed master key inside the JSON, keeping it valid JSON and base64.
    fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&k).unwrap()).unwrap();
    let data = v["data"].as_str().unwrap().to_string();
    let mut chars: Vec<char> = data.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    v["data"] = serde_json::Value::String(chars.into_iter().collect());
    fs::write(&k, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = env.ctl(&["snapshots"]);
    assert_eq!(code(&o), 12, "{}", show(&o));
    let err = stderr(&o);
    assert!(err.contains(&format!("keys/{name}")), "{err}");
    assert!(err.contains("damaged"), "{err}");
}

/// The pack files of the repository (for which packs a backup added).
fn packs(env: &Env) -> std::collections::BTreeSet<PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    for d in fs::read_dir(env.repo.join("data")).unwrap().flatten() {
        for f in fs::read_dir(d.path()).unwrap().flatten() {
            out.insert(f.path());
        }
    }
    out
}

/// Backs up `path` and returns the new snapshot's short id and the packs the backup added.
fn backup_adding(env: &Env, path: &Path) -> (String, Vec<PathBuf>) {
    let before = packs(env);
    let v = env.ctl_json(&["backup", s(path)]);
    let id = v["snapshot_id"].as_str().unwrap()[..8].to_string();
    (id, packs(env).difference(&before).cloned().collect())
}

/// #19: with the newest two snapshots' data damaged, `restore latest --newest-valid` restores
/// the third, saying which it skipped and why; with none valid it writes nothing and exits 4.
#[test]
fn newest_valid_passes_over_snapshots_whose_data_does_not_read_back() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let data = env.path("data");
    fs::create_dir_all(&data).unwrap();
    let mut made = Vec::new();
    for i in 0..3u64 {
        fs::write(data.join("a.bin"), crate::support::bytes(i, 300_000)).unwrap();
        made.push(backup_adding(&env, &data));
    }
    for (_, added) in &made[1..] {
        added.iter().for_each(|p| flip(p));
    }
    let t = env.path("restored");
    let o = env.ctl(&["restore", "latest", "--newest-valid", "--target", s(&t)]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert_eq!(
        fs::read(t.join(s(&data).trim_start_matches('/')).join("a.bin")).unwrap(),
        crate::support::bytes(0, 300_000),
        "the oldest, intact snapshot is restored"
    );
    let err = stderr(&o);
    for (id, _) in &made[1..] {
        assert!(
            err.contains(&format!("skipped snapshot {id}"))
                && err.contains("does not restore completely"),
            "{id} named with why: {err}"
        );
    }
    assert!(err.contains("is damaged"), "why: {err}");
    assert!(
        !err.contains(&format!("skipped snapshot {}", made[0].0)),
        "{err}"
    );

    made[0].1.iter().for_each(|p| flip(p));
    let t2 = env.path("restored2");
    let o = env.ctl(&["restore", "latest", "--newest-valid", "--target", s(&t2)]);
    assert_eq!(code(&o), 4, "{}", show(&o));
    assert!(
        stderr(&o).contains("none restores completely"),
        "{}",
        show(&o)
    );
    assert!(!t2.exists(), "nothing written");
}

/// #19: a snapshot of a single SQLite database is valid only when the database passes PRAGMA
/// integrity_check: a database damaged before its backup is passed over for the one before.
#[test]
fn newest_valid_passes_over_a_database_that_fails_its_integrity_check() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let db = env.path("app.db");
    let good = crate::support::sqlite_with_a_damaged_page(&db);
    let bad_bytes = fs::read(&db).unwrap();
    fs::write(&db, &good).unwrap();
    let (_, _) = backup_adding(&env, &db);
    fs::write(&db, &bad_bytes).unwrap();
    let (bad, _) = backup_adding(&env, &db);
    let t = env.path("restored");
    let o = env.ctl(&["restore", "latest", "--newest-valid", "--target", s(&t)]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("skipped snapshot {bad}")) && err.contains("integrity_check"),
        "the damaged database is named with why: {err}"
    );
    assert_eq!(
        fs::read(t.join(s(&db).trim_start_matches('/'))).unwrap(),
        good
    );
}

/// `--newest-valid` is never the undo point a restore took: after a restore in place made a
/// safety snapshot (newer than the backup), it still restores the backup.
#[test]
fn newest_valid_passes_over_safety_snapshots() {
    let env = Env::new();
    let (_, b) = two_snapshots(&env);
    let data = env.path("data");
    fs::write(data.join("a.txt"), b"three").unwrap();
    let o = env.ctl(&[
        "restore",
        "latest",
        "--target",
        "/",
        "--overwrite",
        "always",
    ]);
    assert_eq!(code(&o), 0, "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("safety snapshot"),
        "{}",
        show(&o)
    );
    let t = env.path("restored");
    let v = env.ctl_json(&["restore", "latest", "--newest-valid", "--target", s(&t)]);
    assert_eq!(v["snapshot_id"].as_str().unwrap(), b, "{v}");
}
