//! Remote repositories against real servers on loopback: Garage (S3) and `rclone serve restic` (REST, also append-only), restic 0.14 reading what backupctl wrote, `copy`, and the failures a user meets first (wrong credentials, missing bucket, unreachable host).

use crate::support::remote::{Garage, Rclone};
use crate::support::{make_tree, manifest, show, Env, BACKUPCTL};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// backupctl against `loc`, with the S3 credentials of `g` (if any) and a private cache.
fn ctl(env: &Env, g: Option<&Garage>, loc: &str, args: &[&str]) -> Output {
    let mut c = crate::support::remote::backupctl(env);
    c.arg("-r").arg(loc).args(args);
    if let Some(g) = g {
        g.creds(&mut c);
    }
    c.output().expect("run backupctl")
}

fn ctl_ok(env: &Env, g: Option<&Garage>, loc: &str, args: &[&str]) -> String {
    let o = ctl(env, g, loc, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "backupctl {args:?} on {loc}:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn restic(env: &Env, g: Option<&Garage>, loc: &str, args: &[&str]) -> Output {
    let mut c = Command::new("restic");
    c.arg("-r")
        .arg(loc)
        .arg("--password-file")
        .arg(&env.pw)
        .arg("--no-cache")
        .args(args)
        .env_remove("RESTIC_REPOSITORY");
    if let Some(g) = g {
        g.creds(&mut c);
    }
    c.output()
        .expect("restic is needed (tests/run.sh installs it)")
}

fn restic_ok(env: &Env, g: Option<&Garage>, loc: &str, args: &[&str]) -> String {
    let o = restic(env, g, loc, args);
    assert!(
        o.status.success(),
        "restic {args:?} on {loc}:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A source tree with a big random file, so that one pack is uploaded in parts.
fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    make_tree(&src, 7);
    fs::write(src.join("large.bin"), crate::support::bytes(99, 20 << 20)).unwrap();
    src
}

fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("no JSON ({e}):\n{out}"))
}

#[test]
fn s3_backup_restore_check_and_restic_reads_the_bucket() {
    let g = Garage::start();
    let env = Env::new();
    let src = source(&env);
    let loc = g.location("repo-one");
    ctl_ok(&env, Some(&g), &loc, &["init"]);
    let b1 = json(&ctl_ok(
        &env,
        Some(&g),
        &loc,
        &["--json", "backup", src.to_str().unwrap()],
    ));
    assert!(b1["files_new"].as_u64().unwrap() > 20, "{b1}");

    // (The 20 MiB file fills packs of 16 MiB and more: they go up as multipart uploads.)

    // A second backup with nothing changed reads index and snapshots from the cache.
    let cache = env.path("cache");
    let cached: Vec<_> = walk(&cache);
    assert!(
        cached.iter().any(|p| p.contains("/index/"))
            && cached.iter().any(|p| p.contains("/snapshots/")),
        "the cache holds index and snapshot files: {cached:?}"
    );
    let b2 = json(&ctl_ok(
        &env,
        Some(&g),
        &loc,
        &["--json", "backup", src.to_str().unwrap()],
    ));
    assert_eq!(b2["files_new"].as_u64(), Some(0), "{b2}");
    assert_eq!(b2["data_added"].as_u64(), Some(0), "{b2}");

    let target = env.path("restore");
    ctl_ok(
        &env,
        Some(&g),
        &loc,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
    ctl_ok(&env, Some(&g), &loc, &["check", "--read-data"]);

    // restic 0.14 on the same bucket.
    let out = restic_ok(&env, Some(&g), &loc, &["check", "--read-data"]);
    assert!(out.contains("no errors were found"), "{out}");
    let rt = env.path("restic-restore");
    restic_ok(
        &env,
        Some(&g),
        &loc,
        &["restore", "latest", "--target", rt.to_str().unwrap()],
    );
    assert_eq!(manifest(&restored(&rt, &src)), manifest(&src));
}

fn walk(d: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[test]
fn s3_wrong_credentials_missing_bucket_and_unreachable_host_fail_clearly() {
    let g = Garage::start();
    let env = Env::new();
    let loc = g.location("r");
    ctl_ok(&env, Some(&g), &loc, &["init"]);

    // Wrong secret: 403, exit 14, names the object and the credentials to check, not the secret.
    let mut c = Command::new(BACKUPCTL);
    c.args(["-r", &loc, "--password-file"])
        .arg(&env.pw)
        .arg("snapshots");
    g.creds(&mut c)
        .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64))
        .env("BACKUPD_CACHE_DIR", env.path("cache"));
    let o = c.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(14), "{}", show(&o));
    assert!(
        err.contains("403") && err.contains("AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
    assert!(err.contains("config"), "names the object: {err}");
    assert!(!err.contains(&g.secret), "{err}");

    // A bucket that does not exist: exit 10 (no repository), and says so.
    let nb = format!("s3:{}/no-such-bucket/r", g.endpoint());
    let o = ctl(&env, Some(&g), &nb, &["snapshots"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(10), "{}", show(&o));
    assert!(err.contains("bucket does not exist"), "{err}");
    let o = ctl(&env, Some(&g), &nb, &["init"]);
    assert_eq!(
        o.status.code(),
        Some(10),
        "init into a missing bucket: {}",
        show(&o)
    );

    // Nothing listens: exit 15 after the retries, naming the host.
    let port = crate::support::remote::free_port();
    let un = format!("s3:http://127.0.0.1:{port}/backup-test/r");
    let o = ctl(&env, Some(&g), &un, &["snapshots"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(15), "{}", show(&o));
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("attempts"),
        "{err}"
    );

    // No credentials at all: a usage error that says where they come from.
    let o = ctl(&env, None, &loc, &["snapshots"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("AWS_ACCESS_KEY_ID"));
}

#[test]
fn rest_backup_restore_check_and_append_only_refuses_forget_and_prune() {
    let env = Env::new();
    let root = env.path("rest-root");
    let src = env.path("src");
    make_tree(&src, 3);
    let loc;
    {
        let srv = Rclone::start(&root, false);
        loc = srv.location("repo/");
        ctl_ok(&env, None, &loc, &["init"]);
        ctl_ok(&env, None, &loc, &["backup", src.to_str().unwrap()]);
        let target = env.path("restore");
        ctl_ok(
            &env,
            None,
            &loc,
            &["restore", "latest", "--target", target.to_str().unwrap()],
        );
        assert_eq!(manifest(&restored(&target, &src)), manifest(&src));
        ctl_ok(&env, None, &loc, &["check", "--read-data"]);
        let out = restic_ok(&env, None, &loc, &["check", "--read-data"]);
        assert!(out.contains("no errors were found"), "{out}");
    }
    // The same folder served append-only.
    let srv = Rclone::start(&root, true);
    let loc = srv.location("repo/");
    fs::write(src.join("new.txt"), b"new").unwrap();
    ctl_ok(&env, None, &loc, &["backup", src.to_str().unwrap()]);
    for args in [&["forget", "--keep-last", "1"][..], &["prune"][..]] {
        let o = ctl(&env, None, &loc, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(14), "{args:?}: {}", show(&o));
        assert!(err.contains("append-only"), "{args:?}: {err}");
    }
    let snaps = json(&ctl_ok(&env, None, &loc, &["--json", "snapshots"]));
    assert_eq!(
        snaps.as_array().unwrap().len(),
        2,
        "nothing was forgotten: {snaps}"
    );
    ctl_ok(&env, None, &loc, &["check"]);
}

#[test]
fn copy_local_to_s3_then_restic_restores_from_s3() {
    let g = Garage::start();
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 11);
    let local = env.repo.to_str().unwrap().to_string();
    ctl_ok(&env, None, &local, &["init"]);
    ctl_ok(&env, None, &local, &["backup", src.to_str().unwrap()]);
    fs::write(src.join("second.txt"), b"second snapshot").unwrap();
    ctl_ok(&env, None, &local, &["backup", src.to_str().unwrap()]);

    let s3 = g.location("mirror");
    ctl_ok(&env, Some(&g), &s3, &["init"]);
    let from = ["copy", "--from", &local, "--all", "--json"];
    let r = json(&ctl_ok(&env, Some(&g), &s3, &from));
    assert_eq!(r["copied"].as_array().unwrap().len(), 2, "{r}");
    assert!(r["blobs_copied"].as_u64().unwrap() > 10, "{r}");
    // Again: both are there already.
    let r = json(&ctl_ok(&env, Some(&g), &s3, &from));
    assert_eq!(r["copied"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["skipped"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(r["blobs_copied"].as_u64(), Some(0), "{r}");

    let out = restic_ok(&env, Some(&g), &s3, &["check", "--read-data"]);
    assert!(out.contains("no errors were found"), "{out}");
    let rt = env.path("restic-restore");
    restic_ok(
        &env,
        Some(&g),
        &s3,
        &["restore", "latest", "--target", rt.to_str().unwrap()],
    );
    assert_eq!(manifest(&restored(&rt, &src)), manifest(&src));
}

/// Every file below `d` whose name is `name`.
fn find_named(d: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find_named(&p, name));
        } else if e.file_name().to_str() == Some(name) {
            out.push(p);
        }
    }
    out
}

#[test]
fn rest_tree_packs_are_cached_and_check_still_judges_the_remote() {
    let env = Env::new();
    let root = env.path("rest-root");
    let src = env.path("src");
    make_tree(&src, 5);
    let srv = Rclone::start(&root, false);
    let loc = srv.location("repo/");
    ctl_ok(&env, None, &loc, &["init"]);
    let first = json(&ctl_ok(
        &env,
        None,
        &loc,
        &["--json", "backup", src.to_str().unwrap()],
    ));
    let files = first["files_new"].as_u64().unwrap();
    assert!(files > 0, "{first}");

    // The backup kept its tree packs (and only those) in the cache, as they are on the server.
    let cached: Vec<PathBuf> = fs::read_dir(env.path("cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .flat_map(|repo| fs::read_dir(repo.path().join("data")).unwrap().flatten())
        .map(|e| e.path())
        .collect();
    assert!(!cached.is_empty(), "no tree pack was cached");
    let all_packs: usize = fs::read_dir(root.join("repo/data"))
        .unwrap()
        .flatten()
        .map(|d| fs::read_dir(d.path()).unwrap().count())
        .sum();
    assert!(
        cached.len() < all_packs,
        "data packs were cached too: {} of {all_packs}",
        cached.len()
    );
    let mut remote = Vec::new();
    for c in &cached {
        let name = c.file_name().unwrap().to_str().unwrap();
        let on_server = find_named(&root.join("repo/data"), name);
        assert_eq!(on_server.len(), 1, "{name} is not on the server");
        assert_eq!(fs::read(&on_server[0]).unwrap(), fs::read(c).unwrap());
        remote.push(on_server[0].clone());
    }

    // The server's copies of the tree packs turn to garbage (same size, still listed): a
    // no-change backup still finds every file unmodified, so it read the parent's trees from
    // the cache and not from the server.
    let originals: Vec<Vec<u8>> = remote.iter().map(|p| fs::read(p).unwrap()).collect();
    for (p, o) in remote.iter().zip(&originals) {
        fs::write(p, vec![0x5a; o.len()]).unwrap();
    }
    let second = json(&ctl_ok(
        &env,
        None,
        &loc,
        &["--json", "backup", src.to_str().unwrap()],
    ));
    assert_eq!(second["files_unmodified"].as_u64(), Some(files), "{second}");
    assert_eq!(second["files_new"].as_u64(), Some(0), "{second}");

    // check reads the trees from the server, not from the cache: the damage is found, and the
    // damaged packs are not cached again.
    let o = ctl(&env, None, &loc, &["check"]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "check missed the damage:\n{}",
        show(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    let short = &cached[0].file_name().unwrap().to_str().unwrap()[..8];
    assert!(
        out.contains(short),
        "check does not name pack {short}:\n{out}"
    );
    for c in &cached {
        assert!(!c.exists(), "{} is still cached after check", c.display());
    }

    // Mended on the server: check is clean and caches the tree packs again.
    for (p, o) in remote.iter().zip(&originals) {
        fs::write(p, o).unwrap();
    }
    ctl_ok(&env, None, &loc, &["check"]);
    for c in &cached {
        assert!(c.exists(), "{} was not cached again by check", c.display());
    }
}

#[test]
fn cache_lists_each_repository_s_folder_and_cleanup_removes_only_old_ones() {
    let env = Env::new();
    let root = env.path("rest-root");
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a"), b"a").unwrap();
    let srv = Rclone::start(&root, false);
    let (one, two) = (srv.location("one/"), srv.location("two/"));
    for loc in [&one, &two] {
        ctl_ok(&env, None, loc, &["init"]);
        ctl_ok(&env, None, loc, &["backup", src.to_str().unwrap()]);
    }
    let cache = env.path("cache");
    fs::create_dir_all(cache.join("not-a-repository")).unwrap();
    let listed = json(&ctl_ok(&env, None, &one, &["--json", "cache"]));
    let repos = listed["repositories"].as_array().unwrap().clone();
    assert_eq!(repos.len(), 2, "{listed}");
    assert!(repos
        .iter()
        .all(|r| r["old"] == false && r["size"].as_u64() > Some(0)));
    assert!(
        cache.join("CACHEDIR.TAG").exists(),
        "backups of ~/.cache can leave it out"
    );

    // Repository two was last used 40 days ago.
    let two_id = json(&ctl_ok(&env, None, &two, &["--json", "cat", "config"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stamp = cache.join(&two_id).join("last-used");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86_400);
    fs::File::options()
        .write(true)
        .open(&stamp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let text = ctl_ok(&env, None, &one, &["cache"]);
    assert!(
        text.contains("1 old folder(s)") && text.contains("backupctl cache --cleanup"),
        "{text}"
    );
    let done = json(&ctl_ok(&env, None, &one, &["--json", "cache", "--cleanup"]));
    assert_eq!(done["removed"], serde_json::json!([two_id]), "{done}");
    assert!(!cache.join(&two_id).exists());
    assert!(
        cache.join("not-a-repository").exists(),
        "only repository folders are touched"
    );
    assert_eq!(
        json(&ctl_ok(&env, None, &one, &["--json", "cache"]))["repositories"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The next use of repository two fills its folder again.
    ctl_ok(&env, None, &two, &["snapshots"]);
    assert!(cache.join(&two_id).join("last-used").exists());
    // The global --cleanup-cache, after any command, removes what is old again.
    fs::File::options()
        .write(true)
        .open(&stamp)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = ctl_ok(
        &env,
        None,
        &one,
        &["--json", "--cleanup-cache", "snapshots"],
    );
    assert_eq!(json(&out).as_array().map(Vec::len), Some(1), "{out}");
    assert!(!cache.join(&two_id).exists(), "--cleanup-cache removed it");
    assert!(cache.join("not-a-repository").exists());
}
