//! Integration tests of `backupctl restore` on a repository written by restic 0.14: identical trees,
//! sub-paths, include/exclude, overwrite modes, --delete, --dry-run, symlink refusal, damaged
//! packs, and the pre-restore safety snapshot with its undo command.

use crate::support::ctl_at;
use crate::support::{bytes, file_list, make_tree, manifest, restic_at, show, text, BACKUPCTL};
use backupd::repo::backend::LocalBackend;
use backupd::repo::pack::BlobType;
use backupd::repo::Repository;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

/// A source tree and a restic repository with one snapshot of it, shared by the tests (which
/// never write to it; tests that change a repository work on a copy).
struct Fixture {
    _dir: tempfile::TempDir,
    /// The source has a character device (root could create one).
    has_dev: bool,
    src: PathBuf,
    repo: PathBuf,
    pw: PathBuf,
    snap: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(make_fixture)
}

fn set_mtime(p: &Path, secs: i64, nsec: i64) {
    let t = TimeSpec::new(secs, nsec);
    utimensat(None, p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
}

/// Gives every entry below `dir` (and `dir`) its own mtime with nanoseconds, deepest first.
fn set_all_mtimes(dir: &Path, n: &mut i64) {
    let mut ents: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    ents.sort();
    for p in ents {
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            set_all_mtimes(&p, n);
        } else {
            *n += 1;
            set_mtime(&p, 1_600_000_000 + *n * 1000, 123_456_789 + *n);
        }
    }
    *n += 1;
    set_mtime(dir, 1_600_000_000 + *n * 1000, 987_654_321 - *n);
}

fn make_fixture() -> Fixture {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).unwrap();
    // Fixtures of earlier runs (a static is never dropped).
    for e in fs::read_dir(base).unwrap().flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().map(|d| d.as_secs() > 3600).unwrap_or(false))
            .unwrap_or(false);
        if e.file_name()
            .to_string_lossy()
            .starts_with("restore-fixture")
            && old
        {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("restore-fixture")
        .tempdir_in(base)
        .unwrap();
    let root = fs::canonicalize(dir.path()).unwrap();
    let src = root.join("src");
    make_tree(&src, 7);
    // Larger than restic's biggest chunk (8 MiB), so that it has several blobs whatever
    // chunker polynomial restic picked for this repository.
    fs::write(src.join("docs/deep/er/big.bin"), bytes(107, 9_000_000)).unwrap();
    fs::create_dir(src.join("shared")).unwrap();
    fs::write(src.join("shared/f"), b"group file").unwrap();
    fs::set_permissions(src.join("shared"), fs::Permissions::from_mode(0o2775)).unwrap();
    fs::create_dir(src.join("sticky")).unwrap();
    fs::set_permissions(src.join("sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(src.join("emptydir")).unwrap();
    fs::write(src.join("suid"), bytes(9, 3000)).unwrap();
    fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(src.join("hl_a"), text(10, 5000)).unwrap();
    fs::hard_link(src.join("hl_a"), src.join("hl_b")).unwrap();
    std::os::unix::fs::symlink("../nowhere", src.join("docs/dangling")).unwrap();
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(src.join("secret"), Some(1234), Some(5678)).unwrap();
    }
    // Like /dev/null; containers without CAP_MKNOD cannot make one.
    let has_dev = nix::sys::stat::mknod(
        &src.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .is_ok();
    set_all_mtimes(&src, &mut 0);

    let repo = root.join("repo");
    let pw = root.join("pw");
    fs::write(&pw, "restore test password\n").unwrap();
    let o = restic_at(&repo, &pw, &["init"]);
    assert!(o.status.success(), "restic init failed:\n{}", show(&o));
    let o = restic_at(&repo, &pw, &["backup", src.to_str().unwrap()]);
    assert!(o.status.success(), "restic backup failed:\n{}", show(&o));
    let o = restic_at(&repo, &pw, &["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let snap = v[0]["id"].as_str().unwrap().to_string();
    Fixture {
        _dir: dir,
        has_dev,
        src,
        repo,
        pw,
        snap,
    }
}

fn ctl(args: &[&str]) -> Output {
    let f = fixture();
    ctl_at(&f.repo, &f.pw, args)
}

fn ctl_ok(args: &[&str]) -> String {
    let o = ctl(args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "backupctl {args:?}:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `SNAPSHOT:SRC/sub`
fn spec(sub: &str) -> String {
    let f = fixture();
    format!("{}:{}{}", f.snap, f.src.display(), sub)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Where a full restore puts the source below `target`.
fn under(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// Asserts that `dst` is the same tree as `src`: names, types, modes (with setuid/setgid/
/// sticky), owners, mtimes (with nanoseconds), contents and link targets. With `roots`, the two
/// directories themselves must match too.
fn assert_same(src: &Path, dst: &Path, roots: bool) {
    fn entry(a: &Path, b: &Path) {
        let (ma, mb) = (
            fs::symlink_metadata(a).unwrap(),
            fs::symlink_metadata(b).unwrap_or_else(|e| panic!("{} is missing: {e}", b.display())),
        );
        assert_eq!(
            ma.mode() & 0o170000,
            mb.mode() & 0o170000,
            "type of {}",
            b.display()
        );
        if !ma.file_type().is_symlink() {
            assert_eq!(
                ma.mode() & 0o7777,
                mb.mode() & 0o7777,
                "mode of {}: {:o} vs {:o}",
                b.display(),
                ma.mode() & 0o7777,
                mb.mode() & 0o7777
            );
        }
        assert_eq!(
            (ma.uid(), ma.gid()),
            (mb.uid(), mb.gid()),
            "owner of {}",
            b.display()
        );
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "mtime of {}",
            b.display()
        );
        if ma.file_type().is_file() {
            assert!(
                fs::read(a).unwrap() == fs::read(b).unwrap(),
                "content of {}",
                b.display()
            );
        } else if ma.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(a).unwrap(),
                fs::read_link(b).unwrap(),
                "target of {}",
                b.display()
            );
        } else if ma.file_type().is_dir() {
            children(a, b);
        } else {
            assert_eq!(ma.rdev(), mb.rdev(), "device number of {}", b.display());
        }
    }
    fn names(d: &Path) -> Vec<std::ffi::OsString> {
        let mut v: Vec<_> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    }
    fn children(a: &Path, b: &Path) {
        assert_eq!(names(a), names(b), "entries of {}", b.display());
        for n in names(a) {
            entry(&a.join(&n), &b.join(&n));
        }
    }
    if roots {
        entry(src, dst);
    } else {
        children(src, dst);
    }
}

/// No temp file (ours are named `.NAME.tmp-HEX`) anywhere below `dir`.
fn assert_no_temp(dir: &Path) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(
            !n.contains(".tmp-"),
            "temp file left: {}",
            e.path().display()
        );
        if e.file_type().unwrap().is_dir() {
            assert_no_temp(&e.path());
        }
    }
}

/// Every entry below `dir` with type, mode, size, mtime and inode: changes to any show.
fn state(dir: &Path) -> BTreeMap<String, (u32, u64, i64, i64, u64)> {
    let mut m = BTreeMap::new();
    fn walk(root: &Path, d: &Path, m: &mut BTreeMap<String, (u32, u64, i64, i64, u64)>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            m.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                (md.mode(), md.size(), md.mtime(), md.mtime_nsec(), md.ino()),
            );
            if md.is_dir() {
                walk(root, &p, m);
            }
        }
    }
    walk(dir, dir, &mut m);
    m
}

#[test]
fn full_restore_of_latest_is_identical() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let target = t.path().join("new/target");
    let out = ctl_ok(&["restore", "latest", "--target", s(&target)]);
    assert!(
        !out.contains("safety snapshot"),
        "nothing existed, so no safety snapshot:\n{out}"
    );
    let restored = under(&target, &f.src);
    assert_same(&f.src, &restored, true);
    assert_eq!(
        fs::metadata(restored.join("hl_a")).unwrap().ino(),
        fs::metadata(restored.join("hl_b")).unwrap().ino(),
        "hard links are restored as hard links"
    );
    assert!(fs::symlink_metadata(restored.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo_like());
    assert_eq!(fs::metadata(restored.join("empty")).unwrap().len(), 0);
    assert!(
        fs::metadata(restored.join("docs/deep/er/big.bin"))
            .unwrap()
            .len()
            > 2_000_000
    );
    assert_no_temp(&target);

    // --json reports the counts.
    let t2 = t.path().join("json");
    let v: serde_json::Value = serde_json::from_str(&ctl_ok(&[
        "--json",
        "restore",
        &f.snap[..8],
        "--target",
        s(&t2),
    ]))
    .unwrap();
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
    assert_eq!(v["hardlinks"], 1);
    assert_eq!(v["symlinks"], 2);
    assert_eq!(v["other"], 1 + f.has_dev as u64, "the FIFO and the device");
    assert!(v["files"].as_u64().unwrap() >= 28, "{v}");
    assert!(v["safety_snapshot"].is_null());
    assert_same(&f.src, &under(&t2, &f.src), true);
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}
impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn sub_path_restores_a_folder_or_a_file() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();
    let docs = t.path().join("docs");
    ctl_ok(&["restore", &spec("/docs"), "--target", s(&docs)]);
    assert_same(&f.src.join("docs"), &docs, false);

    let one = t.path().join("one");
    ctl_ok(&["restore", &spec("/secret"), "--target", s(&one)]);
    let names: Vec<_> = fs::read_dir(&one)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["secret"]);
    assert_eq!(fs::read(one.join("secret")).unwrap(), b"s3cret");
    assert_eq!(
        fs::metadata(one.join("secret")).unwrap().mode() & 0o7777,
        0o600
    );

    let o = ctl(&[
        "restore",
        &spec("/no/such/thing"),
        "--target",
        s(&t.path().join("x")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("has no path"),
        "{}",
        show(&o)
    );
}

#[test]
fn include_and_exclude_patterns() {
    let f = fixture();
    let t = tempfile::tempdir().unwrap();

    let txt = t.path().join("txt");
    ctl_ok(&[
        "restore",
        &spec(""),
        "--target",
        s(&txt),
        "--include",
        "*.txt",
    ]);
    let want: Vec<_> = file_list(&f.src)
        .into_iter()
        .filter(|(p, _)| p.ends_with(".txt"))
        .collect();
    assert_eq!(file_list(&txt), want);
    assert!(want.len() > 20);
    assert!(
        !txt.join("bin").exists(),
        "folders without matches are not created"
    );

    let deep = t.path().join("deep");
    let pat = format!("{}/docs/deep", f.src.display());
    ctl_ok(&[
        "restore",
        &spec(""),
        "--target",
        s(&deep),
        "--include",
        &pat,
    ]);
    assert_same(&f.src.join("docs/deep"), &deep.join("docs/deep"), true);
    assert_eq!(
        fs::read_dir(deep.join("docs")).unwrap().count(),
        1,
        "only the included folder in docs"
    );

    let ex = t.path().join("ex");
    let pat = format!("{}/docs", f.src.display());
    ctl_ok(&[
        "restore",
        &spec(""),
        "--target",
        s(&ex),
        "--exclude",
        &pat,
        "--exclude",
        "tool",
    ]);
    assert!(!ex.join("docs").exists());
    assert!(ex.join("bin").is_dir() && !ex.join("bin/tool").exists());
    assert_eq!(fs::read(ex.join("secret")).unwrap(), b"s3cret");
    let mut left = manifest(&f.src);
    left.retain(|k, _| !k.starts_with("docs") && k != "bin/tool");
    assert_eq!(manifest(&ex), left);
}

/// A restored copy of the source in which note1.txt (same size, old mtime) and note2.txt
/// (newer mtime) are modified and `secret` has its content but another mode and an old mtime.
fn prepared_target(dir: &Path) -> PathBuf {
    let t = dir.join("t");
    ctl_ok(&["restore", &spec(""), "--target", s(&t)]);
    let mut a = fs::read(t.join("docs/note1.txt")).unwrap();
    a.iter_mut().take(10).for_each(|b| *b = b'#');
    fs::write(t.join("docs/note1.txt"), &a).unwrap();
    set_mtime(&t.join("docs/note1.txt"), 1_000_000_000, 0);
    fs::write(t.join("docs/note2.txt"), b"local edit").unwrap();
    let future = chrono::Utc::now().timestamp() + 3600;
    set_mtime(&t.join("docs/note2.txt"), future, 0);
    fs::set_permissions(t.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();
    set_mtime(&t.join("secret"), 1_000_000_000, 0);
    t
}

#[test]
fn overwrite_modes() {
    let f = fixture();
    let src_a = fs::read(f.src.join("docs/note1.txt")).unwrap();
    let src_b = fs::read(f.src.join("docs/note2.txt")).unwrap();
    let ino = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
    let mode = |p: &Path| fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    for m in ["never", "if-newer", "if-changed", "always"] {
        let d = tempfile::tempdir().unwrap();
        let t = prepared_target(d.path());
        let a0 = fs::read(t.join("docs/note1.txt")).unwrap();
        let secret_ino = ino(&t.join("secret"));
        let o = ctl(&[
            "--json",
            "restore",
            &spec(""),
            "--target",
            s(&t),
            "--overwrite",
            m,
            "--no-safety-snapshot",
        ]);
        assert_eq!(o.status.code(), Some(0), "{m}: {}", show(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let a = fs::read(t.join("docs/note1.txt")).unwrap();
        let b = fs::read(t.join("docs/note2.txt")).unwrap();
        match m {
            "never" => {
                assert_eq!(a, a0);
                assert_eq!(b, b"local edit");
                assert_eq!(mode(&t.join("secret")), 0o644);
                assert_eq!(v["files"], 0, "{v}");
                assert!(v["skipped"].as_array().unwrap().len() > 20);
            }
            "if-newer" => {
                assert_eq!(a, src_a, "the snapshot's note1 is newer");
                assert_eq!(b, b"local edit", "the local note2 is newer");
                assert_eq!(mode(&t.join("secret")), 0o600);
                let skipped = v["skipped"].to_string();
                assert!(
                    skipped.contains("note2.txt") && !skipped.contains("note1.txt"),
                    "{skipped}"
                );
            }
            "if-changed" => {
                assert_eq!(a, src_a);
                assert_eq!(b, src_b);
                assert_eq!(
                    ino(&t.join("secret")),
                    secret_ino,
                    "same content: not rewritten"
                );
                assert_eq!(v["files"], 2, "only the two changed files are written: {v}");
                assert_eq!(v["replaced"].as_array().unwrap().len(), 2);
            }
            "always" => {
                assert_eq!(
                    (a.as_slice(), b.as_slice()),
                    (src_a.as_slice(), src_b.as_slice())
                );
                assert_ne!(ino(&t.join("secret")), secret_ino, "always rewrites");
            }
            _ => unreachable!(),
        }
        if m == "if-changed" || m == "always" {
            // Everything now matches the snapshot, metadata included.
            assert_same(&f.src, &t, false);
        }
        assert_no_temp(&t);
    }
}

#[test]
fn delete_removes_only_extras_below_restored_paths() {
    let f = fixture();
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    ctl_ok(&["restore", &spec(""), "--target", s(&t)]);
    fs::write(t.join("extra.txt"), b"outside the restored path").unwrap();
    fs::create_dir_all(t.join("docs/extra_dir/sub")).unwrap();
    fs::write(t.join("docs/extra_dir/sub/x"), b"x").unwrap();
    fs::write(t.join("docs/deep/extra2"), b"y").unwrap();
    std::os::unix::fs::symlink("/etc", t.join("docs/extra_link")).unwrap();

    // Without --delete nothing goes.
    ctl_ok(&[
        "restore",
        &spec("/docs"),
        "--target",
        s(&t.join("docs")),
        "--no-safety-snapshot",
    ]);
    assert!(t.join("docs/extra_dir/sub/x").exists() && t.join("docs/deep/extra2").exists());

    let v: serde_json::Value = serde_json::from_str(&ctl_ok(&[
        "--json",
        "restore",
        &spec("/docs"),
        "--target",
        s(&t.join("docs")),
        "--delete",
        "--no-safety-snapshot",
    ]))
    .unwrap();
    assert_eq!(v["deleted"].as_array().unwrap().len(), 3, "{v}");
    assert!(!t.join("docs/extra_dir").exists());
    assert!(!t.join("docs/deep/extra2").exists());
    assert!(fs::symlink_metadata(t.join("docs/extra_link")).is_err());
    assert!(
        Path::new("/etc/passwd").exists(),
        "a deleted symlink is not followed"
    );
    assert!(t.join("extra.txt").exists(), "outside the restored path");
    assert_same(&f.src.join("docs"), &t.join("docs"), false);

    // Excluded entries are in the snapshot: --delete keeps them (and does not restore them).
    fs::write(t.join("secret"), b"local").unwrap();
    let pat = format!("{}/secret", f.src.display());
    ctl_ok(&[
        "restore",
        &spec(""),
        "--target",
        s(&t),
        "--delete",
        "--exclude",
        &pat,
        "--no-safety-snapshot",
    ]);
    assert_eq!(fs::read(t.join("secret")).unwrap(), b"local");
    assert!(!t.join("extra.txt").exists());
}

#[test]
fn dry_run_changes_nothing() {
    let f = fixture();
    let d = tempfile::tempdir().unwrap();
    let t = prepared_target(d.path());
    fs::write(t.join("extra.txt"), b"extra").unwrap();
    fs::remove_file(t.join("docs/note3.txt")).unwrap();
    let before = state(&t);
    let o = ctl(&[
        "restore",
        &spec(""),
        "--target",
        s(&t),
        "--dry-run",
        "--delete",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "would replace file {}",
            t.join("docs/note1.txt").display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "would create file {}",
            t.join("docs/note3.txt").display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "would delete file {}",
            t.join("extra.txt").display()
        )),
        "{out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(!out.contains("safety snapshot"), "{out}");
    assert_eq!(state(&t), before);

    let v: serde_json::Value = serde_json::from_str(&ctl_ok(&[
        "--json",
        "restore",
        &spec(""),
        "--target",
        s(&t),
        "--dry-run",
        "--overwrite",
        "if-changed",
    ]))
    .unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["files"], 3, "note1, note2 changed and note3 missing: {v}");
    assert_eq!(state(&t), before);

    let missing = d.path().join("missing");
    ctl_ok(&["restore", &spec(""), "--target", s(&missing), "--dry-run"]);
    assert!(!missing.exists(), "a dry run does not create the target");

    let o = restic_at(&f.repo, &f.pw, &["snapshots", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "no snapshot was added");
}

#[test]
fn symlinks_in_the_target_are_never_written_through() {
    let f = fixture();
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"precious").unwrap();
    let t = d.path().join("t");
    let base = under(&t, &f.src);
    fs::create_dir_all(&base).unwrap();
    std::os::unix::fs::symlink(&outside, base.join("docs")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), base.join("secret")).unwrap();

    let o = ctl(&[
        "restore",
        &f.snap,
        "--target",
        s(&t),
        "--no-safety-snapshot",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("symbolic link") && err.contains(&base.join("docs").display().to_string()),
        "{err}"
    );
    let mut in_outside: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    in_outside.sort();
    assert_eq!(
        in_outside,
        vec!["victim"],
        "nothing was written through the symlink"
    );
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"precious");
    assert!(fs::symlink_metadata(base.join("docs"))
        .unwrap()
        .file_type()
        .is_symlink());
    // The symlink in place of a file was replaced, not followed.
    let md = fs::symlink_metadata(base.join("secret")).unwrap();
    assert!(md.file_type().is_file());
    assert_eq!(fs::read(base.join("secret")).unwrap(), b"s3cret");
    // Everything else was restored.
    assert_same(&f.src.join("bin"), &base.join("bin"), true);

    // The same below a sub-path target.
    let t2 = d.path().join("t2");
    fs::create_dir(&t2).unwrap();
    std::os::unix::fs::symlink(&outside, t2.join("docs")).unwrap();
    let o = ctl(&[
        "restore",
        &spec(""),
        "--target",
        s(&t2),
        "--no-safety-snapshot",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
    assert_no_temp(&t2);
}

/// Copies the fixture's repository (for tests that change it).
fn repo_copy(dir: &Path) -> PathBuf {
    let dst = dir.join("repo");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&fixture().repo)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    dst
}

#[test]
fn damaged_blob_fails_that_file_only_with_exit_4() {
    let f = fixture();
    let d = tempfile::tempdir().unwrap();
    let repo = repo_copy(d.path());
    // Find the second blob of big.bin and flip a byte in the middle of it.
    let be = Arc::new(LocalBackend::new(&repo));
    let mut r = Repository::open(be, b"restore test password").unwrap();
    r.load_index().unwrap();
    let snaps = r.list_snapshots().unwrap();
    let big_path = format!("{}/docs/deep/er/big.bin", f.src.display());
    let node = backupd::engine::walk::find_node(&r, &snaps[0].1.tree, &big_path)
        .unwrap()
        .unwrap();
    let content = node.content.unwrap();
    assert!(content.len() >= 2, "big.bin has several blobs");
    let loc = *r.index().get(&content[1], BlobType::Data).unwrap();
    let pack = r.index().pack_id(&loc).to_hex();
    let pack_file = repo.join("data").join(&pack[..2]).join(&pack);
    fs::set_permissions(&pack_file, fs::Permissions::from_mode(0o600)).unwrap();
    let mut b = fs::read(&pack_file).unwrap();
    b[(loc.blob.offset + loc.blob.length / 2) as usize] ^= 0x01;
    fs::write(&pack_file, &b).unwrap();

    let t = d.path().join("t");
    let o = ctl_at(&repo, &f.pw, &["restore", &spec(""), "--target", s(&t)]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&t.join("docs/deep/er/big.bin").display().to_string()),
        "{err}"
    );
    assert!(
        err.contains(&pack[..8]) && err.contains(&content[1].to_hex()[..8]),
        "names pack and blob: {err}"
    );
    assert!(
        !t.join("docs/deep/er/big.bin").exists(),
        "no half-written file"
    );
    assert_no_temp(&t);
    // Everything else is there.
    assert_same(&f.src.join("bin"), &t.join("bin"), true);
    assert_eq!(
        fs::read(t.join("docs/deep/medium.txt")).unwrap(),
        fs::read(f.src.join("docs/deep/medium.txt")).unwrap()
    );

    // An existing file is left as it was.
    fs::write(t.join("docs/deep/er/big.bin"), b"old content").unwrap();
    let o = ctl_at(
        &repo,
        &f.pw,
        &[
            "restore",
            &spec(""),
            "--target",
            s(&t),
            "--no-safety-snapshot",
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert_eq!(
        fs::read(t.join("docs/deep/er/big.bin")).unwrap(),
        b"old content"
    );
    assert_no_temp(&t);
}

#[test]
fn safety_snapshot_before_in_place_restore_and_its_undo() {
    let f = fixture();
    let d = tempfile::tempdir().unwrap();
    let repo = repo_copy(d.path());
    let t = d.path().join("t");
    let o = ctl_at(&repo, &f.pw, &["restore", &spec(""), "--target", s(&t)]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    fs::write(t.join("docs/note1.txt"), b"my edit").unwrap();
    fs::write(t.join("docs/extra.txt"), b"my new file").unwrap();
    fs::remove_file(t.join("docs/note3.txt")).unwrap();
    let before = manifest(&t);

    // if-changed: only docs/ changes (with `always` every file would be replaced, and the
    // safety snapshot would cover the whole target).
    let o = ctl_at(
        &repo,
        &f.pw,
        &[
            "restore",
            &spec(""),
            "--target",
            s(&t),
            "--delete",
            "--overwrite",
            "if-changed",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("safety snapshot"), "{out}");
    assert_same(&f.src, &t, false);
    let undo = out
        .lines()
        .skip_while(|l| !l.contains("to undo this restore run:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no undo command in:\n{out}"))
        .trim()
        .to_string();
    assert!(undo.contains("--overwrite always --delete"), "{undo}");
    // restic sees the tagged safety snapshot.
    let o = restic_at(
        &repo,
        &f.pw,
        &["snapshots", "--json", "--tag", "pre-restore"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        v[0]["paths"][0],
        s(&t.join("docs")),
        "the safety snapshot covers the changed folder"
    );

    // Running the printed command restores the state before the restore.
    let words: Vec<&str> = undo.split_whitespace().collect();
    assert_eq!(words[0], "backupctl");
    let o = Command::new(BACKUPCTL)
        .args(&words[1..])
        .arg("--password-file")
        .arg(&f.pw)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{undo}: {}", show(&o));
    assert_eq!(manifest(&t), before);
}

/// The rules for safety snapshots (docs/restore.md): `forget` never counts one as a kept
/// version of the backups beside it, and keeps it for its own days.
#[test]
fn forget_neither_counts_a_safety_snapshot_nor_removes_a_fresh_one() {
    let env = crate::support::Env::new();
    env.ctl_ok(&["init"]);
    let data = env.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.txt"), b"one").unwrap();
    env.ctl_ok(&["backup", s(&data)]);
    fs::write(data.join("a.txt"), b"two").unwrap();
    env.ctl_ok(&["backup", s(&data)]);
    let newest = env.ctl_json(&["snapshots"]).as_array().unwrap()[1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // An in-place restore over a changed file takes a safety snapshot of the same folder,
    // newer than both backups.
    fs::write(data.join("a.txt"), b"my edit").unwrap();
    let out = env.ctl_ok(&[
        "restore",
        &format!("latest:{}", s(&data)),
        "--target",
        s(&data),
    ]);
    assert!(out.contains("safety snapshot"), "{out}");
    let safety = env.ctl_json(&["snapshots", "--tag", "pre-restore"]);
    let safety = safety.as_array().unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        env.ctl_json(&["snapshots", "--tag", "pre-restore"])[0]["paths"][0],
        s(&data)
    );

    env.ctl_ok(&["forget", "--keep-last", "1"]);
    let left: Vec<String> = env
        .ctl_json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.contains(&newest),
        "the newest backup was forgotten: {left:?}"
    );
    assert!(
        left.contains(&safety),
        "the fresh safety snapshot was forgotten: {left:?}"
    );
}
