//! `backupctl mount`: a backed-up tree (and one restic 0.19 wrote) read back through the FUSE mount equals its source, the layout lists what restic's would, SIGTERM unmounts and exits 0, SIGKILL leaves no mount behind (auto_unmount), and a bad mount point is refused with its reason.

use crate::support::{bytes, make_tree, restic_bin_at, show, tool, Env, BACKUPCTL};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a mount may take to appear or go: generous, for a loaded CI machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// A running `backupctl mount`, unmounted (lazily, `fusermount3 -u -z`) and killed when dropped
/// so that a failing test never leaves a mount behind.
struct Mount {
    child: Option<Child>,
    dir: PathBuf,
}

impl Mount {
    /// Starts `backupctl mount DIR ARGS` on the repository and waits until DIR is mounted.
    fn start(repo: &Path, pw: &Path, dir: &Path, args: &[&str]) -> Mount {
        let mut c = Command::new(BACKUPCTL);
        c.arg("-r")
            .arg(repo)
            .arg("--password-file")
            .arg(pw)
            .arg("mount");
        c.env_remove("BACKUPD_REPOSITORY");
        Mount::run(c, dir, args)
    }

    /// Runs `cmd DIR ARGS` (a mount command) and waits until DIR is mounted.
    fn run(mut cmd: Command, dir: &Path, args: &[&str]) -> Mount {
        fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let child = cmd
            .arg(&dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the mount command");
        let mut m = Mount {
            child: Some(child),
            dir,
        };
        m.wait_until(true);
        m
    }

    /// Polls /proc/self/mountinfo until the mount is there (or gone), up to [`DEADLINE`]; fails
    /// at once, with its output, if backupctl ends while it should be mounting.
    fn wait_until(&mut self, mounted: bool) {
        let start = Instant::now();
        while is_mounted(&self.dir) != mounted {
            if mounted {
                if let Some(c) = self.child.as_mut() {
                    if c.try_wait().unwrap().is_some() {
                        let o = self.child.take().unwrap().wait_with_output().unwrap();
                        panic!("backupctl mount ended before mounting:\n{}", show(&o));
                    }
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{} still {} after {DEADLINE:?}",
                self.dir.display(),
                if mounted { "not mounted" } else { "mounted" }
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::try_from(sig).unwrap(),
        )
        .unwrap();
    }

    /// Waits for backupctl to end (up to [`DEADLINE`]); its output.
    fn wait(&mut self) -> Output {
        let mut c = self.child.take().unwrap();
        let start = Instant::now();
        while c.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < DEADLINE,
                "backupctl mount still running after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c.wait_with_output().unwrap()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.dir)
                .output();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether /proc/self/mountinfo lists `dir` (canonical, without spaces) as a mount point.
fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want))
}

/// `diff -r A B`: empty when the trees agree.
fn diff(a: &Path, b: &Path) -> Output {
    Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .unwrap()
}

/// The names in a folder of the mount, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A tree with files of several sizes (one of 12 MiB: several blobs, one past 8 MiB), an empty
/// file, nested folders and a symlink (make_tree's, without its FIFO, which diff cannot read).
fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    make_tree(&src, 11);
    fs::remove_file(src.join("fifo")).unwrap();
    fs::write(src.join("docs/deep/er/huge.bin"), bytes(12, 12 << 20)).unwrap();
    src
}

#[test]
fn mount_serves_the_backed_up_tree_and_restics_layout() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = source(&env);
    let s = src.to_str().unwrap();
    env.ctl_ok(&["backup", s, "--tag", "a", "--tag", "b"]);
    env.ctl_ok(&["backup", s, "--host", "other"]);
    let mnt = env.path("mnt");
    let m = Mount::start(&env.repo, &env.pw, &mnt, &[]);
    let d = &m.dir;

    let latest = d.join("snapshots/latest");
    let o = diff(&src, &latest.join(s.trim_start_matches('/')));
    assert!(o.status.success() && o.stdout.is_empty(), "{}", show(&o));

    // The layout: what restic 0.19's mount shows for the same repository.
    let mut r = Command::new(restic19());
    r.arg("-r")
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&env.pw)
        .args(["--no-cache", "mount"]);
    let theirs = Mount::run(r, &env.path("restic-mnt"), &[]);
    let t = &theirs.dir;
    assert_eq!(names(d), ["hosts", "ids", "snapshots", "tags"]);
    assert_eq!(names(&d.join("tags")), ["a", "b"]);
    assert_eq!(names(&d.join("ids")).len(), 2);
    assert_eq!(names(&d.join("hosts")).len(), 2);
    assert_eq!(names(&d.join("snapshots")).len(), 3, "two times and latest");
    let mut dirs = vec![PathBuf::new()];
    for top in ["ids", "snapshots", "hosts", "tags"] {
        dirs.push(PathBuf::from(top));
        if top == "hosts" || top == "tags" {
            dirs.extend(names(&t.join(top)).iter().map(|n| Path::new(top).join(n)));
        }
    }
    for dir in &dirs {
        assert_eq!(
            names(&d.join(dir)),
            names(&t.join(dir)),
            "{}",
            dir.display()
        );
        if names(&t.join(dir)).contains(&"latest".to_string()) {
            assert_eq!(
                fs::read_link(d.join(dir).join("latest")).unwrap(),
                fs::read_link(t.join(dir).join("latest")).unwrap(),
                "{}/latest",
                dir.display()
            );
        }
    }
    drop(theirs);

    // Read-only: writing fails with EROFS.
    let e = fs::write(latest.join("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
}

fn restic19() -> PathBuf {
    tool(
        "restic19",
        "restic19 (restic 0.19) is needed by the mount tests",
        "tests/run.sh installs it into cargo's bin dir",
    )
}

#[test]
fn mount_reads_a_repository_restic_wrote() {
    let env = Env::new();
    let r19 = restic19();
    let src = source(&env);
    let s = src.to_str().unwrap();
    let o = restic_bin_at(&r19, &env.repo, &env.pw, &["init"]);
    assert!(o.status.success(), "{}", show(&o));
    let o = restic_bin_at(&r19, &env.repo, &env.pw, &["backup", s, "--tag", "r"]);
    assert!(o.status.success(), "{}", show(&o));
    let m = Mount::start(&env.repo, &env.pw, &env.path("mnt"), &["--tag", "r"]);
    let o = diff(
        &src,
        &m.dir.join("tags/r/latest").join(s.trim_start_matches('/')),
    );
    assert!(o.status.success() && o.stdout.is_empty(), "{}", show(&o));
}

#[test]
fn mount_filters_snapshots_by_host() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"x").unwrap();
    let s = src.to_str().unwrap();
    env.ctl_ok(&["backup", s, "--host", "one"]);
    env.ctl_ok(&["backup", s, "--host", "two"]);
    let m = Mount::start(&env.repo, &env.pw, &env.path("mnt"), &["--host", "two"]);
    assert_eq!(names(&m.dir.join("hosts")), ["two"]);
    assert_eq!(names(&m.dir.join("ids")).len(), 1);
}

#[test]
fn mount_unmounts_and_exits_0_on_sigterm() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let mut m = Mount::start(&env.repo, &env.pw, &env.path("mnt"), &[]);
    m.signal(libc::SIGTERM);
    let o = m.wait();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        !is_mounted(&m.dir),
        "the mount is gone once backupctl has exited"
    );
    // The shared lock went with it.
    assert_eq!(env.ctl_ok(&["list", "locks"]).trim(), "");
}

#[test]
fn a_killed_mount_is_unmounted_by_auto_unmount() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let mut m = Mount::start(&env.repo, &env.pw, &env.path("mnt"), &[]);
    m.signal(libc::SIGKILL);
    let _ = m.wait();
    m.wait_until(false);
    // The directory is an ordinary empty directory again: usable, and mountable again.
    assert!(names(&m.dir).is_empty());
    fs::write(m.dir.join("f"), b"x").unwrap();
    fs::remove_file(m.dir.join("f")).unwrap();
    // A stale lock of the killed process stays, but it is a shared one: no obstacle.
    let again = Mount::start(&env.repo, &env.pw, &m.dir, &[]);
    assert_eq!(names(&again.dir), ["hosts", "ids", "snapshots", "tags"]);
}

#[test]
fn a_missing_or_non_empty_mount_point_is_refused_with_exit_1() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let missing = env.path("nope");
    let o = env.ctl(&["mount", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("does not exist") && err.contains("mkdir -p"),
        "{err}"
    );

    let full = env.path("full");
    fs::create_dir_all(&full).unwrap();
    fs::write(full.join("keep"), b"x").unwrap();
    let o = env.ctl(&["mount", full.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is not empty") && err.contains("\"keep\""),
        "{err}"
    );
    assert!(!is_mounted(&full.canonicalize().unwrap()));
}
