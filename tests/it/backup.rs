//! Integration tests of `backupctl backup` with the real binary, checked by restic 0.14.

use crate::support::*;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn init(env: &Env) {
    env.ctl_ok(&["init"]);
}

#[test]
fn restic_checks_and_restores_what_backupctl_wrote() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 1);
    init(&env);
    let s = src.to_str().unwrap();
    let j = env.ctl_json(&["backup", s, "--tag", "first"]);
    assert_eq!(j["message_type"], "summary");
    assert!(j["files_new"].as_u64().unwrap() >= 24, "{j}");
    assert_eq!(j["exit_code"], 0);
    let before = manifest(&src);

    let check = env.restic(&["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check failed on our repository:\n{}",
        show(&check)
    );
    let snaps: serde_json::Value =
        serde_json::from_str(&env.restic_ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1);
    assert_eq!(snaps[0]["paths"][0], s);
    assert_eq!(snaps[0]["tags"][0], "first");

    let restored = restic_restore(&env, "latest", &env.path("out"), &src);
    assert_eq!(
        manifest(&restored),
        before,
        "restic's restore of our snapshot differs from the source"
    );
    // File times are kept to the nanosecond.
    let a = fs::metadata(src.join("docs/deep/er/big.bin"))
        .unwrap()
        .modified()
        .unwrap();
    let b = fs::metadata(restored.join("docs/deep/er/big.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(a, b);
}

/// Names restic stores escaped in its trees (the body of a Go string literal).
const ODD_NAMES: [&str; 4] = ["back\\slash", "new\nline", "q\"uote", "tab\tand\u{1}ctl"];

#[test]
fn names_with_backslashes_quotes_and_newlines_go_both_ways_between_restic_and_backupctl() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for (i, n) in ODD_NAMES.iter().enumerate() {
        fs::write(src.join(n), format!("file {i}")).unwrap();
    }
    init(&env);
    env.ctl_ok(&["backup", src.to_str().unwrap()]);
    let check = env.restic(&["check"]);
    assert!(check.status.success(), "{}", show(&check));
    let restored = restic_restore(&env, "latest", &env.path("by-restic"), &src);
    assert_eq!(
        manifest(&restored),
        manifest(&src),
        "restic restored other names"
    );

    // restic's own snapshot of them, restored by backupctl.
    let other = env.path("src2");
    fs::rename(&src, &other).unwrap();
    env.restic_ok(&["backup", other.to_str().unwrap()]);
    let target = env.path("by-backupctl");
    env.ctl_ok(&[
        "restore",
        "latest",
        "--path",
        other.to_str().unwrap(),
        "--target",
        target.to_str().unwrap(),
    ]);
    let back = target.join(other.strip_prefix("/").unwrap());
    assert_eq!(
        manifest(&back),
        manifest(&other),
        "backupctl restored other names"
    );
}

#[test]
fn backupctl_backs_up_into_a_repository_restic_made() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 2);
    env.restic_ok(&["init"]);
    env.restic_ok(&["backup", src.to_str().unwrap()]);
    // Change a file and back up with backupctl: the restic snapshot is found as parent.
    fs::write(src.join("docs/note3.txt"), b"changed by the test").unwrap();
    let j = env.ctl_json(&["backup", src.to_str().unwrap()]);
    assert!(
        !j["parent"].is_null(),
        "restic's snapshot should be the parent: {j}"
    );
    assert_eq!(j["files_changed"], 1, "{j}");
    let check = env.restic(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", show(&check));
    let restored = restic_restore(&env, "latest", &env.path("out"), &src);
    assert_eq!(manifest(&restored), manifest(&src));
}

#[test]
fn parent_snapshot_skips_unchanged_files_and_dedups() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 3);
    init(&env);
    let s = src.to_str().unwrap();
    let first = env.ctl_json(&["backup", s]);
    let second = env.ctl_json(&["backup", s]);
    assert_eq!(second["files_new"], 0, "{second}");
    assert_eq!(second["files_changed"], 0, "{second}");
    assert_eq!(second["data_added"], 0, "{second}");
    assert_eq!(second["parent"], first["snapshot_id"]);
    // A copy of a big file adds no data blobs (dedup), a modified file is read again.
    fs::copy(src.join("docs/deep/er/big.bin"), src.join("copy.bin")).unwrap();
    fs::write(src.join("docs/note0.txt"), b"new content").unwrap();
    let third = env.ctl_json(&["backup", s]);
    assert_eq!(third["files_new"], 1, "{third}");
    assert_eq!(third["files_changed"], 1, "{third}");
    assert!(
        third["data_added"].as_u64().unwrap() < 1000,
        "the copy must be deduplicated: {third}"
    );
    // --force reads everything again but still adds nothing new.
    let forced = env.ctl_json(&["backup", s, "--force"]);
    assert_eq!(forced["data_added"], 0, "{forced}");
    let check = env.restic(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", show(&check));
}

#[test]
fn excludes_exclude_files_and_cache_dirs() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 4);
    fs::create_dir_all(src.join("cache/sub")).unwrap();
    fs::write(
        src.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# cache\n",
    )
    .unwrap();
    fs::write(src.join("cache/sub/blob"), b"cached").unwrap();
    fs::write(src.join("app.log"), b"log").unwrap();
    fs::write(env.path("excl"), "# patterns\nbin\n").unwrap();
    init(&env);
    let s = src.to_str().unwrap();
    env.ctl_ok(&[
        "backup",
        s,
        "--exclude",
        "*.log",
        "--exclude-file",
        env.path("excl").to_str().unwrap(),
        "--exclude-caches",
    ]);
    let ls = env.ctl_ok(&["ls", "latest"]);
    let has = |p: &str| ls.lines().any(|l| l == format!("{s}/{p}"));
    assert!(!has("app.log"), "{ls}");
    assert!(!has("bin") && !has("bin/tool"), "{ls}");
    assert!(has("cache") && has("cache/CACHEDIR.TAG"), "{ls}");
    assert!(!has("cache/sub"), "{ls}");
    assert!(
        has("docs/deep/er/big.bin") && has("link") && has("fifo"),
        "{ls}"
    );
}

#[test]
fn bad_input_changes_nothing() {
    let env = Env::new();
    init(&env);
    let before = file_list(&env.repo);
    // A path that does not exist.
    let o = env.ctl(&["backup", "/definitely/not/here"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/definitely/not/here"),
        "{}",
        show(&o)
    );
    assert_eq!(file_list(&env.repo), before);
    // Wrong password: exit 12.
    fs::write(env.path("bad"), "nope\n").unwrap();
    let o = Command::new(BACKUPCTL)
        .args([
            "-r",
            env.repo.to_str().unwrap(),
            "--password-file",
            env.path("bad").to_str().unwrap(),
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(12), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("wrong password"),
        "{}",
        show(&o)
    );
    // No repository: exit 10.
    let o = Command::new(BACKUPCTL)
        .args([
            "-r",
            env.path("none").to_str().unwrap(),
            "--password-file",
            env.pw.to_str().unwrap(),
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(10), "{}", show(&o));
    // No password at all.
    let o = Command::new(BACKUPCTL)
        .args(["-r", env.repo.to_str().unwrap(), "snapshots"])
        .env_remove("BACKUPD_PASSWORD_FILE")
        .env_remove("BACKUPD_PASSWORD_COMMAND")
        .env_remove("BACKUPD_PASSWORD")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--password-file"),
        "{}",
        show(&o)
    );
    // init over an existing repository.
    let o = env.ctl(&["init"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(file_list(&env.repo), before);
}

#[test]
fn password_from_command_and_environment() {
    let env = Env::new();
    init(&env);
    let o = Command::new(BACKUPCTL)
        .args(["-r", env.repo.to_str().unwrap(), "snapshots"])
        .env(
            "BACKUPD_PASSWORD_COMMAND",
            format!("cat {}", env.pw.display()),
        )
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = Command::new(BACKUPCTL)
        .args(["snapshots"])
        .env("BACKUPD_REPOSITORY", &env.repo)
        .env("BACKUPD_PASSWORD", "correct horse battery staple")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn locked_repository_waits_then_names_the_holder() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    make_tree(&src, 5);
    // restic holds an exclusive lock while it runs `check --read-data` on a slowed-down... we
    // instead plant an exclusive lock of a live process (this test) in restic's format.
    let repo = backupd::repo::Repository::open(
        std::sync::Arc::new(backupd::repo::backend::LocalBackend::new(&env.repo)),
        b"correct horse battery staple",
    )
    .unwrap();
    let guard = backupd::repo::lock::lock(&repo, true, Duration::ZERO).unwrap();
    let o = env.ctl(&["backup", src.to_str().unwrap(), "--lock-wait", "1s"]);
    assert_eq!(o.status.code(), Some(11), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("PID {}", std::process::id())) && err.contains("exclusive"),
        "{err}"
    );
    drop(guard);
    env.ctl_ok(&["backup", src.to_str().unwrap()]);
}

fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

#[test]
fn unreadable_file_makes_a_partial_snapshot_with_exit_3() {
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 6);
    fs::write(src.join("locked-away"), b"private").unwrap();
    fs::set_permissions(
        src.join("locked-away"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    init(&env);
    let mut cmd = env.ctl_cmd(&["--json", "backup", src.to_str().unwrap()]);
    if is_root() {
        // root reads everything: run as nobody, who may write the repository and read the rest.
        Command::new("chmod")
            .args(["-R", "a+rwX", env.dir.path().to_str().unwrap()])
            .status()
            .unwrap();
        fs::set_permissions(
            src.join("locked-away"),
            std::os::unix::fs::PermissionsExt::from_mode(0o000),
        )
        .unwrap();
        fs::set_permissions(
            src.join("secret"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BACKUPCTL,
        ]);
        c.arg("-r")
            .arg(&env.repo)
            .arg("--password-file")
            .arg(&env.pw)
            .args(["--json", "backup", src.to_str().unwrap()]);
        cmd = c;
    }
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["partial"], true, "{j}");
    assert!(
        j["warnings"][0].as_str().unwrap().contains("locked-away"),
        "{j}"
    );
    let snaps = env.ctl_json(&["snapshots"]);
    assert!(
        snaps[0]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "partial"),
        "{snaps}"
    );
    let check = env.restic(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", show(&check));
}

#[test]
fn file_that_changes_while_read_is_a_warning_naming_it() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let growing = src.join("growing.log");
    fs::write(&growing, bytes(7, 20_000_000)).unwrap();
    init(&env);
    // A real writer process appends to the file while the backup reads it.
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while true; do echo line >> '{}'; done",
            growing.display()
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let o = env.ctl(&["--json", "backup", src.to_str().unwrap()]);
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        j["warnings"][0].as_str().unwrap().contains("growing.log"),
        "{j}"
    );
    assert!(
        j["warnings"][0]
            .as_str()
            .unwrap()
            .contains("changed while it was read"),
        "{j}"
    );
    let check = env.restic(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", show(&check));
}

/// A small tmpfs as the repository: the backup fails with a clear message, the repository still
/// checks green and the earlier snapshot still restores.
#[test]
fn disk_full_leaves_the_repository_intact() {
    assert!(
        is_root(),
        "this test mounts a tmpfs and must run as root (CI does)"
    );
    let env = Env::new();
    let mnt = env.path("small");
    fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=6m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs failed");
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Umount(mnt.clone());
    let env = Env {
        repo: mnt.join("repo"),
        ..env
    };
    init(&env);
    let small = env.path("small-src");
    fs::create_dir(&small).unwrap();
    fs::write(small.join("a.txt"), text(1, 10_000)).unwrap();
    env.ctl_ok(&["backup", small.to_str().unwrap()]);
    let before = file_list(&env.repo);
    let big = env.path("big-src");
    fs::create_dir(&big).unwrap();
    for i in 0..4 {
        fs::write(big.join(format!("r{i}")), bytes(i, 3_000_000)).unwrap();
    }
    let o = env.ctl(&["backup", big.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("disk is full"), "{err}");
    // No temp files, no new index or snapshot: only unreferenced packs may remain.
    let after = file_list(&env.repo);
    for (p, _) in &after {
        assert!(!p.contains(".tmp-"), "temp file left: {p}");
        assert!(
            p.starts_with("data/") || before.iter().any(|(b, _)| b == p),
            "new non-pack file {p}"
        );
    }
    let check = env.restic(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", show(&check));
    let snaps = env.ctl_json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1);
}

/// kill -9 at random instants during backups: every committed snapshot restores exactly the
/// state it was taken of, and restic's `check --read-data` stays green.
#[test]
fn kill_9_during_backup_never_breaks_the_repository() {
    let iterations: usize = std::env::var("CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let env = Env::new();
    let src = env.path("src");
    make_tree(&src, 10);
    init(&env);
    let mut manifests = std::collections::BTreeMap::new();
    let mut killed = 0;
    let mut full = Duration::ZERO;
    for i in 0..iterations {
        // Change the data a little each round, with new random content so there is work to do.
        fs::write(
            src.join(format!("round{i}.bin")),
            bytes(1000 + i as u64, 3_000_000),
        )
        .unwrap();
        fs::write(src.join("docs/note5.txt"), text(i as u64, 5000)).unwrap();
        manifests.insert(format!("iter-{i}"), manifest(&src));
        let mut child = env
            .ctl_cmd(&[
                "backup",
                src.to_str().unwrap(),
                "--tag",
                &format!("iter-{i}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if i == 0 {
            // The first round runs to the end and sets the window the others are killed in.
            let t = std::time::Instant::now();
            child.wait().unwrap();
            full = t.elapsed();
            continue;
        }
        let frac = crate::support::bytes(i as u64, 1)[0] as f64 / 255.0 * 1.2;
        std::thread::sleep(full.mul_f64(frac));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        killed >= iterations / 4,
        "only {killed} of {iterations} backups were killed mid-way; the test proves little"
    );
    // backupctl ignores the locks of killed processes; restic 0.14 needs them removed first.
    let j = env.ctl_json(&["unlock"]);
    assert_eq!(j["remaining"], 0, "{j}");
    let check = env.restic(&["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check after kill -9:\n{}",
        show(&check)
    );
    let snaps = env.ctl_json(&["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert!(!snaps.is_empty(), "no backup ever completed");
    for s in snaps {
        let tag = s["tags"][0].as_str().unwrap();
        let id = s["id"].as_str().unwrap();
        let out = env.path(&format!("restore-{tag}"));
        let restored = restic_restore(&env, id, &out, &src);
        assert_eq!(
            &manifest(&restored),
            manifests.get(tag).unwrap(),
            "snapshot {id} ({tag}) does not restore its state"
        );
        fs::remove_dir_all(&out).unwrap();
    }
    // And a backup after all that works and is complete.
    env.ctl_ok(&["backup", src.to_str().unwrap()]);
}

/// A process holding a lock on `file` for `secs` or until killed: flock(2) or a POSIX lock.
fn hold_lock(kind: &str, file: &Path, secs: u32) -> std::process::Child {
    let call = if kind == "flock" {
        "fcntl.flock(f, fcntl.LOCK_EX)"
    } else {
        "fcntl.lockf(f, fcntl.LOCK_EX)"
    };
    let mut c = Command::new("python3");
    c.args([
        "-c",
        &format!(
            "import fcntl, time\nf = open({:?}, 'r+')\n{call}\ntime.sleep({secs})",
            file.to_str().unwrap()
        ),
    ]);
    let mut child = c.stdout(Stdio::null()).spawn().expect("python3 is needed");
    // Wait until the lock is really held.
    let held = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        backupd::sources::locked::lock_holder(file).is_some()
    });
    if held {
        return child;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "the {kind} holder never took its lock on {}",
        file.display()
    );
}

#[test]
fn locked_files_follow_the_policy() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("free.txt"), b"free").unwrap();
    let locked = src.join("locked.db");
    fs::write(&locked, b"locked content").unwrap();
    init(&env);
    let s = src.to_str().unwrap();
    for kind in ["flock", "posix"] {
        let mut holder = hold_lock(kind, &locked, 60);
        let pid = holder.id();
        // fail: no snapshot, exit 5 (source failed), the message names the file and the
        // holder's PID.
        let o = env.ctl(&["backup", s, "--locked-files", "fail", "--locked-wait", "2s"]);
        assert_eq!(o.status.code(), Some(5), "{kind}: {}", show(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("locked.db") && err.contains(&format!("PID {pid}")),
            "{kind}: {err}"
        );
        assert_eq!(env.ctl_json(&["snapshots"]).as_array().unwrap().len(), 0);
        // skip: partial snapshot without the file.
        let o = env.ctl(&["backup", s, "--locked-files", "skip"]);
        assert_eq!(o.status.code(), Some(3), "{kind}: {}", show(&o));
        let ls = env.ctl_ok(&["ls", "latest"]);
        assert!(
            !ls.contains("locked.db") && ls.contains("free.txt"),
            "{kind}: {ls}"
        );
        // read-anyway (the default): partial snapshot with the file and a warning naming it.
        let o = env.ctl(&["--json", "backup", s]);
        assert_eq!(o.status.code(), Some(3), "{kind}: {}", show(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let w = j["warnings"][0].as_str().unwrap();
        assert!(
            w.contains("locked.db") && w.contains("read anyway"),
            "{kind}: {w}"
        );
        assert!(env.ctl_ok(&["ls", "latest"]).contains("locked.db"));
        holder.kill().unwrap();
        holder.wait().unwrap();
        for (id, _) in env
            .ctl_json(&["snapshots"])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].clone(), 0))
        {
            env.ctl_ok(&["forget", id.as_str().unwrap()]);
        }
    }
    // A lock released within the wait: the backup waits, then succeeds completely.
    let mut holder = hold_lock("flock", &locked, 2);
    let o = env.ctl(&[
        "--json",
        "backup",
        s,
        "--locked-files",
        "fail",
        "--locked-wait",
        "30s",
    ]);
    holder.wait().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("waiting for") && err.contains("locked.db") && err.contains("waiting since"),
        "{err}"
    );
    let restored = restic_restore(&env, "latest", &env.path("out"), &src);
    assert_eq!(
        fs::read(restored.join("locked.db")).unwrap(),
        b"locked content"
    );
}

/// `restic ls SNAPSHOT`'s entries (without its first line, which names the snapshot).
fn restic_ls(env: &Env, snapshot: &str) -> Vec<String> {
    env.restic_ok(&["ls", snapshot])
        .lines()
        .skip(1)
        .map(String::from)
        .collect()
}

#[test]
fn relative_paths_are_stored_as_restic_stores_them() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let srv = env.path("srv");
    let app = srv.join("app");
    for (p, body) in [
        ("app/data/f", "f"),
        ("app/data/sub/g", "g"),
        ("app/file.txt", "top"),
        ("x/data/xf", "xf"),
        ("data/top", "other data"),
    ] {
        fs::create_dir_all(srv.join(p).parent().unwrap()).unwrap();
        fs::write(srv.join(p), body).unwrap();
    }
    // Relative names, `..`, a same-named folder from elsewhere, `a/../b`.
    let args = ["data", "../x/data", "../data", "sub/../file.txt"];
    fs::create_dir_all(app.join("sub")).unwrap();
    let ours = env
        .ctl_cmd(&["--json", "backup"])
        .args(args)
        .current_dir(&app)
        .output()
        .unwrap();
    assert_eq!(ours.status.code(), Some(0), "{}", show(&ours));
    let ours: serde_json::Value = serde_json::from_slice(&ours.stdout).unwrap();
    let ours = ours["snapshot_id"].as_str().unwrap().to_string();
    let theirs = Command::new("restic")
        .arg("-r")
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&env.pw)
        .args(["--no-cache", "--json", "backup"])
        .args(args)
        .current_dir(&app)
        .output()
        .unwrap();
    assert!(theirs.status.success(), "{}", show(&theirs));
    let summary = String::from_utf8_lossy(&theirs.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap();
    let theirs = summary["snapshot_id"].as_str().unwrap().to_string();

    // The same tree as restic's, and the same absolute paths.
    let listing = restic_ls(&env, &ours);
    assert_eq!(listing, restic_ls(&env, &theirs));
    assert!(listing.contains(&"/data/sub/g".to_string()), "{listing:?}");
    assert!(listing.contains(&"/x/data/xf".to_string()), "{listing:?}");
    assert!(listing.contains(&"/data-1/top".to_string()), "{listing:?}");
    assert!(listing.contains(&"/file.txt".to_string()), "{listing:?}");
    let snaps: serde_json::Value =
        serde_json::from_str(&env.restic_ok(&["snapshots", "--json"])).unwrap();
    let paths: Vec<&serde_json::Value> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["paths"])
        .collect();
    assert_eq!(paths[0], paths[1]);
    assert_eq!(paths[0][0], app.join("data").to_str().unwrap());

    // Both restores give the restic layout.
    let by_restic = env.path("by-restic");
    env.restic_ok(&["restore", &ours, "--target", by_restic.to_str().unwrap()]);
    let by_us = env.path("by-us");
    env.ctl_ok(&["restore", &ours, "--target", by_us.to_str().unwrap()]);
    for t in [&by_restic, &by_us] {
        assert_eq!(fs::read_to_string(t.join("data/sub/g")).unwrap(), "g");
        assert_eq!(fs::read_to_string(t.join("x/data/xf")).unwrap(), "xf");
        assert_eq!(
            fs::read_to_string(t.join("data-1/top")).unwrap(),
            "other data"
        );
        assert_eq!(fs::read_to_string(t.join("file.txt")).unwrap(), "top");
        assert!(!t.join("srv").exists() && !t.join(app.strip_prefix("/").unwrap()).exists());
    }

    // The next backup of the same relative paths finds its parent by the (absolute) paths: the
    // newest, restic's, whose tree has the same layout, so nothing is read again.
    let again = env
        .ctl_cmd(&["--json", "backup"])
        .args(args)
        .current_dir(&app)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", show(&again));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    // (restic 0.14's summary gives the short id.)
    assert!(
        again["parent"].as_str().unwrap().starts_with(&theirs),
        "{again}"
    );
    assert_eq!(again["files_new"], 0, "{again}");
    assert_eq!(again["files_unmodified"], 5, "{again}");
}

#[test]
fn a_relative_sqlite_path_is_stored_where_its_folder_is() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let app = env.path("app");
    fs::create_dir_all(app.join("data")).unwrap();
    fs::write(app.join("data/notes.txt"), "n").unwrap();
    let o = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('create table t(x)'); c.commit()")
        .arg(app.join("data/app.db"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let o = env
        .ctl_cmd(&["--json", "backup", "data", "--sqlite", "data/app.db"])
        .current_dir(&app)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let listing = restic_ls(&env, "latest");
    assert_eq!(
        listing,
        ["/data", "/data/app.db", "/data/notes.txt"],
        "the copy replaces the file, once"
    );
}

/// The pack files (64-hex names, no temp files) in a local repository's `data/`, and their total size.
fn packs_in(repo: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut size = 0;
    for sub in fs::read_dir(repo.join("data")).unwrap().flatten() {
        for f in fs::read_dir(sub.path()).unwrap().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                n += 1;
                size += f.metadata().unwrap().len();
            }
        }
    }
    (n, size)
}

/// A backup killed (kill -9) after it uploaded some packs, but before it wrote its index: the
/// next backup adopts those packs instead of writing them again, says so, and the repository
/// ends about the size of one uninterrupted backup; both restic and backupctl check it green.
#[test]
fn a_killed_backup_resumes_from_the_packs_it_left() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        fs::write(src.join(format!("part{i}.bin")), bytes(500 + i, 12_000_000)).unwrap();
    }
    init(&env);
    let s = src.to_str().unwrap();
    let mut child = env
        .ctl_cmd(&["backup", s])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while packs_in(&env.repo).0 < 3 && std::time::Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (left, _) = packs_in(&env.repo);
    assert!(left >= 3, "only {left} packs were written before the kill");
    assert!(
        fs::read_dir(env.repo.join("index"))
            .unwrap()
            .next()
            .is_none(),
        "the killed run wrote an index: the test proves nothing"
    );

    let o = env.ctl(&["--json", "backup", s]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["resumed"]["packs"], left as u64, "{j}");
    assert!(
        j["resumed"]["bytes"].as_u64().unwrap() > 3 * 12_000_000,
        "{j}"
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("resumed: ") && err.contains("from an interrupted run kept"),
        "{err}"
    );

    // An uninterrupted backup of the same data, for the size.
    let one = Env::new();
    one.ctl_ok(&["init"]);
    one.ctl_ok(&["backup", s]);
    let (_, resumed_size) = packs_in(&env.repo);
    let (_, one_size) = packs_in(&one.repo);
    assert!(
        (resumed_size as f64) <= 1.05 * one_size as f64,
        "the resumed repository holds {resumed_size} bytes of packs, one backup {one_size}"
    );
    let check = env.ctl(&["check", "--read-data"]);
    assert_eq!(check.status.code(), Some(0), "{}", show(&check));
    env.ctl_ok(&["unlock"]);
    let check = env.restic(&["check", "--read-data"]);
    assert!(check.status.success(), "{}", show(&check));
    let restored = restic_restore(&env, "latest", &env.path("out"), &src);
    assert_eq!(manifest(&restored), manifest(&src));
}

/// The temp files a killed writer leaves (`data/XX/.ID.tmp-*`, `locks/.ID.tmp-*`) are removed
/// by `unlock` once they are an hour old; a fresh one (perhaps a live writer's) stays.
#[test]
fn unlock_removes_the_temp_files_of_crashed_runs_once_they_are_old() {
    let env = Env::new();
    init(&env);
    let old = [
        env.repo.join("data/ab/.abcd.tmp-0000000000000001"),
        env.repo.join("locks/.ef01.tmp-0000000000000002"),
    ];
    let fresh = env.repo.join("data/ab/.abce.tmp-0000000000000003");
    fs::create_dir_all(env.repo.join("data/ab")).unwrap();
    for p in old.iter().chain([&fresh]) {
        fs::write(p, b"half a pack").unwrap();
    }
    for p in &old {
        let f = fs::File::options().write(true).open(p).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
    }
    let j = env.ctl_json(&["unlock"]);
    assert_eq!(j["temp_files_removed"], 2, "{j}");
    for p in &old {
        assert!(!p.exists(), "{} is still there", p.display());
    }
    assert!(fresh.exists(), "a fresh temp file was removed");
}

/// `backup --dry-run` reads, chunks and hashes as a backup does and says what it would add, and
/// writes nothing: no pack, index or snapshot; the real backup then adds exactly that.
#[test]
fn a_dry_run_says_what_it_would_add_and_writes_nothing() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 11);
    let listing = |dir: &str| fs::read_dir(env.repo.join(dir)).unwrap().count();
    let (snaps, index) = (listing("snapshots"), listing("index"));
    let dry = env.ctl_json(&["backup", "--dry-run", src.to_str().unwrap()]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(dry["snapshot_id"].is_null(), "{dry}");
    let would = dry["data_added"].as_u64().unwrap();
    assert!(would > 0, "{dry}");
    assert_eq!((listing("snapshots"), listing("index")), (snaps, index));
    let packs: usize = fs::read_dir(env.repo.join("data"))
        .unwrap()
        .map(|d| fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum();
    assert_eq!(packs, 0, "no pack written");
    let text = env.ctl_ok(&["backup", "-n", src.to_str().unwrap()]);
    assert!(text.contains("dry run: nothing was written"), "{text}");
    let real = env.ctl_json(&["backup", src.to_str().unwrap()]);
    assert_eq!(real["data_added"].as_u64().unwrap(), would);
    assert_eq!(real["dry_run"], false);
}

/// `--exclude-if-present FILE[:HEADER]` and `--exclude-larger-than SIZE` (restic's): a folder
/// holding the file keeps only the file, one whose file lacks the header is backed up whole,
/// files over the size are left out; restic's `ls` sees the same tree. The same from a job.
#[test]
fn exclude_if_present_and_exclude_larger_than_leave_out_what_restic_would() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    for d in ["skip", "keep", "plain"] {
        fs::create_dir_all(src.join(d)).unwrap();
        fs::write(src.join(d).join("data.txt"), "some data").unwrap();
    }
    fs::write(src.join("skip/.nobackup"), "").unwrap();
    fs::write(src.join("keep/TAG"), "not the header").unwrap();
    fs::write(src.join("plain/big.bin"), vec![7u8; 5000]).unwrap();
    let s = src.to_str().unwrap();
    let o = env.ctl(&[
        "backup",
        s,
        "--exclude-if-present",
        ".nobackup",
        "--exclude-if-present",
        "TAG:magic",
        "--exclude-larger-than",
        "4K",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let listed = env.restic_ok(&["ls", "latest"]);
    let has = |p: &str| listed.lines().any(|l| l == format!("{s}/{p}"));
    assert!(has("skip/.nobackup") && !has("skip/data.txt"), "{listed}");
    assert!(has("keep/TAG") && has("keep/data.txt"), "{listed}");
    assert!(has("plain/data.txt") && !has("plain/big.bin"), "{listed}");
    // A bad rule is refused before anything is read.
    let o = env.ctl(&["backup", s, "--exclude-if-present", "a/b"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let o = env.ctl(&["backup", s, "--exclude-larger-than", "lots"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}
