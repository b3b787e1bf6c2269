//! Integration tests of the snapshot manifest (`backup --manifest`, `/.backupd/SHA256SUMS`):
//! restic 0.14 and 0.19 check such a repository, a restore by restic 0.19 passes
//! `sha256sum -c`, `backupctl manifest` prints the same file, a second backup keeps it right
//! through the parent, and `backupctl restore` verifies against it (exit 4 naming a file that
//! does not match) and leaves it out.

use crate::support::{bytes, show, text, Env};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn restic19_at(env: &Env, args: &[&str]) -> Output {
    env.restic19(args)
}

/// The names of the source's files that need sha256sum's escapes.
const BACKSLASH: &str = "back\\slash.txt";
const NEWLINE: &str = "new\nline.txt";

/// A source with nested folders, an empty file, names with a backslash and a newline, and a
/// file of several chunks; returns its files (path below the source) and their contents.
fn make_source(src: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert("top.txt".to_string(), text(1, 3000));
    files.insert("empty".to_string(), Vec::new());
    files.insert(BACKSLASH.to_string(), text(2, 100));
    files.insert(NEWLINE.to_string(), text(3, 200));
    files.insert("a/b/c/deep.txt".to_string(), text(4, 5000));
    files.insert("a/big.bin".to_string(), bytes(5, 12 << 20));
    files.insert("a/b/small.bin".to_string(), bytes(6, 999));
    for (p, data) in &files {
        let path = src.join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }
    std::os::unix::fs::symlink("top.txt", src.join("link")).unwrap();
    files
}

/// The manifest path of `rel` in the source `src`: relative to a restore's target root.
fn manifest_path(src: &Path, rel: &str) -> String {
    format!("{}/{rel}", src.strip_prefix("/").unwrap().display())
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Path to hash, read from SHA256SUMS text (with sha256sum's escapes undone).
fn parse_sums(text: &[u8]) -> BTreeMap<String, String> {
    backupd::repo::manifest::Manifest::parse(text)
        .unwrap()
        .files
        .into_iter()
        .map(|(p, h)| (p, hex::encode(h)))
        .collect()
}

/// What the manifest must hold for `files` of the source `src`.
fn expected(src: &Path, files: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(p, d)| (manifest_path(src, p), sha_hex(d)))
        .collect()
}

fn setup() -> (Env, PathBuf, BTreeMap<String, Vec<u8>>) {
    let env = Env::new();
    let src = env.path("src");
    let files = make_source(&src);
    env.ctl_ok(&["init"]);
    (env, src, files)
}

fn sha256sum_check(dir: &Path, sums: &str) -> Output {
    Command::new("sha256sum")
        .args(["-c", "--strict", sums])
        .current_dir(dir)
        .output()
        .expect("sha256sum (coreutils) is needed")
}

#[test]
fn a_restore_by_restic_019_of_a_snapshot_with_a_manifest_passes_sha256sum_c() {
    let (env, src, files) = setup();
    env.ctl_ok(&["backup", "--manifest", src.to_str().unwrap()]);

    let check19 = restic19_at(&env, &["check", "--read-data"]);
    assert!(check19.status.success(), "{}", show(&check19));
    assert!(String::from_utf8_lossy(&check19.stdout).contains("no errors were found"));
    let check14 = env.restic(&["check", "--read-data"]);
    assert!(check14.status.success(), "{}", show(&check14));
    env.ctl_ok(&["check", "--read-data"]);

    // The manifest does not change the snapshot's paths.
    let snaps = restic19_at(&env, &["snapshots", "--json"]);
    let snaps: serde_json::Value = serde_json::from_slice(&snaps.stdout).unwrap();
    assert_eq!(
        snaps[0]["paths"],
        serde_json::json!([src.to_str().unwrap()])
    );

    let target = env.path("restored");
    let r = restic19_at(
        &env,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert!(r.status.success(), "{}", show(&r));
    let sums = target.join(".backupd/SHA256SUMS");
    let c = sha256sum_check(&target, ".backupd/SHA256SUMS");
    assert!(c.status.success(), "sha256sum -c failed:\n{}", show(&c));
    let oks = String::from_utf8_lossy(&c.stdout).matches(": OK").count();
    assert_eq!(oks, files.len(), "{}", show(&c));

    let stored = fs::read(&sums).unwrap();
    assert_eq!(parse_sums(&stored), expected(&src, &files));
    let text = String::from_utf8(stored.clone()).unwrap();
    let escaped = manifest_path(&src, "back\\\\slash.txt");
    let line = format!("\\{}  {escaped}\n", sha_hex(&files[BACKSLASH]));
    assert!(text.contains(&line), "no line {line:?} in:\n{text}");
    assert!(text.contains("/new\\nline.txt\n"), "{text}");
    assert!(
        !text.contains("SHA256SUMS"),
        "the manifest lists itself:\n{text}"
    );

    // restic 0.14 restores it as well.
    let t14 = env.path("restored14");
    env.restic_ok(&["restore", "latest", "--target", t14.to_str().unwrap()]);
    let c14 = sha256sum_check(&t14, ".backupd/SHA256SUMS");
    assert!(
        c14.status.success(),
        "after restic 0.14's restore:\n{}",
        show(&c14)
    );

    let printed = env.ctl(&["manifest", "latest"]);
    assert_eq!(printed.status.code(), Some(0), "{}", show(&printed));
    assert_eq!(
        printed.stdout, stored,
        "backupctl manifest differs from restic's restore"
    );
    let json = env.ctl_json(&["manifest", "latest"]);
    assert_eq!(json["files"].as_array().unwrap().len(), files.len());
}

#[test]
fn a_second_backup_keeps_the_manifest_right_for_changed_and_unchanged_files() {
    let (env, src, mut files) = setup();
    let s = src.to_str().unwrap();
    // The first snapshot has no manifest: the next one must hash every file itself.
    env.ctl_ok(&["backup", s]);
    env.ctl_ok(&["backup", "--manifest", s]);
    let first = env.ctl_ok(&["manifest", "latest"]);
    assert_eq!(parse_sums(first.as_bytes()), expected(&src, &files));

    let changed = text(7, 4321);
    fs::write(src.join("a/b/c/deep.txt"), &changed).unwrap();
    files.insert("a/b/c/deep.txt".into(), changed);
    let second = env.ctl_json(&["backup", "--manifest", s]);
    assert!(
        second["files_unmodified"].as_u64().unwrap() >= files.len() as u64 - 1,
        "{second}"
    );
    let m2 = env.ctl_ok(&["manifest", "latest"]);
    assert_eq!(parse_sums(m2.as_bytes()), expected(&src, &files));

    // Nothing changed: the manifest folder is the parent's, so diff shows no change at all.
    let third = env.ctl_json(&["backup", "--manifest", s]);
    let (a, b) = (
        second["snapshot_id"].as_str().unwrap(),
        third["snapshot_id"].as_str().unwrap(),
    );
    let diff = env.ctl_ok(&["diff", &a[..8], &b[..8]]);
    assert!(!diff.contains(".backupd"), "{diff}");
    assert_eq!(env.ctl_ok(&["manifest", "latest"]), m2);
}

#[test]
fn backupctl_restore_verifies_every_file_and_leaves_the_manifest_folder_out() {
    let (env, src, files) = setup();
    env.ctl_ok(&["backup", "--manifest", src.to_str().unwrap()]);
    let target = env.path("t");
    let r = env.ctl_json(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["manifest"]["verified"], files.len() as u64, "{r}");
    assert_eq!(r["manifest"]["mismatched"], 0, "{r}");
    assert!(
        !target.join(".backupd").exists(),
        "restore wrote the manifest folder"
    );
    assert_eq!(
        fs::read(target.join(src.strip_prefix("/").unwrap()).join(NEWLINE)).unwrap(),
        files[NEWLINE]
    );

    let text_out = env.ctl_ok(&[
        "restore",
        "latest",
        "--target",
        env.path("t2").to_str().unwrap(),
    ]);
    assert!(
        text_out.contains(&format!(
            "verified {} files against the snapshot's manifest",
            files.len()
        )),
        "{text_out}"
    );

    // Asked for, the manifest is restored, and checks the restore.
    let t3 = env.path("t3");
    env.ctl_ok(&[
        "restore",
        "latest",
        "--target",
        t3.to_str().unwrap(),
        "--include",
        "/.backupd",
        "--include",
        src.to_str().unwrap(),
    ]);
    let c = sha256sum_check(&t3, ".backupd/SHA256SUMS");
    assert!(c.status.success(), "{}", show(&c));
}

#[test]
fn manifest_of_a_snapshot_without_one_fails_with_the_hint() {
    let (env, src, _) = setup();
    env.ctl_ok(&["backup", src.to_str().unwrap()]);
    let o = env.ctl(&["manifest", "latest"]);
    assert_eq!(o.status.code(), Some(17), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("has no manifest") && err.contains("manifest = true"),
        "{err}"
    );
    assert!(o.stdout.is_empty(), "{}", show(&o));
    // A restore of it is not verified, and says nothing of a manifest.
    let r = env.ctl_json(&[
        "restore",
        "latest",
        "--target",
        env.path("t").to_str().unwrap(),
    ]);
    assert!(r["manifest"].is_null(), "{r}");
}

#[test]
fn a_dry_run_with_a_manifest_writes_nothing() {
    let (env, src, _) = setup();
    let r = env.ctl_json(&["backup", "--manifest", "--dry-run", src.to_str().unwrap()]);
    assert_eq!(r["dry_run"], true, "{r}");
    let snaps = env.ctl_json(&["snapshots"]);
    assert_eq!(snaps.as_array().map(|a| a.len()), Some(0), "{snaps}");
}

#[test]
fn a_restored_file_that_does_not_match_the_manifest_fails_the_restore_naming_it() {
    // A snapshot whose manifest is wrong for one file: restic backs up, from one folder, a
    // `.backupd/SHA256SUMS` of its own next to `data` (relative paths are stored from their
    // first name on, so both are entries of the snapshot's root).
    let env = Env::new();
    let work = env.path("w");
    fs::create_dir_all(work.join("data")).unwrap();
    fs::create_dir_all(work.join(".backupd")).unwrap();
    fs::write(work.join("data/good.txt"), "good").unwrap();
    fs::write(work.join("data/bad.txt"), "what was restored").unwrap();
    let sums = format!(
        "{}  data/bad.txt\n{}  data/good.txt\n",
        sha_hex(b"what was backed up"),
        sha_hex(b"good")
    );
    fs::write(work.join(".backupd/SHA256SUMS"), sums).unwrap();
    env.restic_ok(&["init"]);
    let o = Command::new("restic")
        .args([
            "-r",
            env.repo.to_str().unwrap(),
            "--password-file",
            env.pw.to_str().unwrap(),
        ])
        .args(["--no-cache", "backup", ".backupd", "data"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));

    let target = env.path("t");
    let o = env.ctl(&[
        "--json",
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["manifest"]["verified"], 2, "{r}");
    assert_eq!(r["manifest"]["mismatched"], 1, "{r}");
    let errors = r["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{r}");
    assert!(
        errors[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("data/bad.txt"),
        "{r}"
    );
    assert_eq!(errors[0]["damaged"], true, "{r}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("/data/bad.txt") && stderr.contains("does not match"),
        "{stderr}"
    );
}
