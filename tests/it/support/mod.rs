//! Shared helpers of the integration tests: a scratch repository, running the real binaries, data sets and manifests.

pub mod conformance;
pub mod daemon;
pub mod fakedrive;
pub mod remote;
pub mod smtpd;
pub mod sshd;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BACKUPCTL: &str = env!("CARGO_BIN_EXE_backupctl");

/// A scratch directory with a password file and a repository path in it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub pw: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let pw = dir.path().join("pw");
        fs::write(&pw, "correct horse battery staple\n").unwrap();
        Env { dir, repo, pw }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `backupctl -r REPO --password-file PW ARGS...`
    pub fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BACKUPCTL);
        c.arg("-r")
            .arg(&self.repo)
            .arg("--password-file")
            .arg(&self.pw)
            .args(args);
        c.env_remove("BACKUPD_REPOSITORY")
            .env_remove("BACKUPD_PASSWORD_FILE");
        c
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_cmd(args).output().expect("run backupctl")
    }

    /// Runs backupctl and asserts the exit code; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "backupctl {args:?} failed:\n{}",
            show(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl_ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("backupctl {args:?} printed no JSON ({e}):\n{out}"))
    }

    pub fn restic(&self, args: &[&str]) -> Output {
        restic_at(&self.repo, &self.pw, args)
    }

    /// restic 0.19 on this Env's repository.
    pub fn restic19(&self, args: &[&str]) -> Output {
        restic_bin_at(&restic19(), &self.repo, &self.pw, args)
    }

    pub fn restic_ok(&self, args: &[&str]) -> String {
        let o = self.restic(args);
        assert!(o.status.success(), "restic {args:?} failed:\n{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// A tool the tests need that Debian does not package: `name` on PATH, else in cargo's bin dir
/// (where tests/run.sh installs it); fails saying `what` and `hint` when neither has it.
pub fn tool(name: &str, what: &str, hint: &str) -> PathBuf {
    if let Ok(o) = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
    {
        let p = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin").join(name);
    assert!(
        p.exists(),
        "{what} and was not found on PATH or in {}\n  hint: {hint}",
        p.display()
    );
    p
}

/// restic 0.19 or newer: `restic19` on PATH or in cargo's bin dir (tests/run.sh puts it there
/// with tests/get-restic19.sh).
pub fn restic19() -> PathBuf {
    tool(
        "restic19",
        "restic19 (restic 0.19) is needed by the tests that compare with restic 0.19",
        "run `bash tests/run.sh` (it runs tests/get-restic19.sh once), or `bash tests/get-restic19.sh` yourself",
    )
}

pub fn restic_at(repo: &Path, pw: &Path, args: &[&str]) -> Output {
    restic_bin_at(Path::new("restic"), repo, pw, args)
}

/// `BIN -r REPO --password-file PW --no-cache ARGS` for a restic binary (Debian's `restic`,
/// or `restic19`).
pub fn restic_bin_at(bin: &Path, repo: &Path, pw: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(pw)
        .arg("--no-cache")
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): tests/run.sh installs restic",
                bin.display()
            )
        })
}

/// `backupctl -r REPO --password-file PW ARGS` for a repository other than an Env's own.
pub fn ctl_at(repo: &Path, pw: &Path, args: &[&str]) -> Output {
    Command::new(BACKUPCTL)
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(pw)
        .args(args)
        .env_remove("BACKUPD_REPOSITORY")
        .env_remove("BACKUPD_PASSWORD_FILE")
        .output()
        .expect("run backupctl")
}

/// Starts `cmd` with its output piped, reads one byte and closes stdout (as `head -c1` does);
/// gives how it ended.
pub fn after_closing_stdout(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut child.stdout.take().unwrap(), &mut first).unwrap();
    child.wait_with_output().unwrap()
}

pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Compressible text.
pub fn text(seed: u64, n: usize) -> Vec<u8> {
    let words = [
        "backup",
        "restore",
        "snapshot",
        "daemon",
        "schedule",
        "repository",
        "chunk",
        "pack",
        "index",
        "tree",
    ];
    let r = bytes(seed, n / 4 + 1);
    let mut out = Vec::with_capacity(n + 16);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(words[r[i % r.len()] as usize % words.len()].as_bytes());
        out.push(if r[(i + 1) % r.len()].is_multiple_of(9) {
            b'\n'
        } else {
            b' '
        });
        i += 1;
    }
    out.truncate(n);
    out
}

/// A small tree: text and random files of several sizes (one over 2 MiB, so it has several
/// chunks), an empty file, nested folders, a symlink, a FIFO, odd modes.
pub fn make_tree(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("docs/deep/er")).unwrap();
    fs::create_dir_all(root.join("bin")).unwrap();
    for i in 0..20 {
        fs::write(
            root.join(format!("docs/note{i}.txt")),
            text(seed + i, 100 + 300 * i as usize),
        )
        .unwrap();
    }
    fs::write(
        root.join("docs/deep/er/big.bin"),
        bytes(seed + 100, 2_500_000),
    )
    .unwrap();
    fs::write(root.join("docs/deep/medium.txt"), text(seed + 101, 700_000)).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    fs::write(root.join("bin/tool"), bytes(seed + 102, 5000)).unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("secret"), b"s3cret").unwrap();
    fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let _ = fs::remove_file(root.join("link"));
    std::os::unix::fs::symlink("docs/note1.txt", root.join("link")).unwrap();
    let fifo = root.join("fifo");
    if !fifo.exists() {
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    }
}

/// What a tree holds: per relative path, its type, mode and content hash (or link target).
pub fn manifest(root: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, m: &mut BTreeMap<String, String>) {
        let mut ents: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        ents.sort();
        for p in ents {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            let mode = md.mode() & 0o7777;
            let v = if ft.is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                walk(root, &p, m);
                format!("dir {mode:o}")
            } else if ft.is_file() {
                let h = hex::encode(Sha256::digest(fs::read(&p).unwrap()));
                format!("file {mode:o} {} {h}", md.len())
            } else {
                format!("other {mode:o}")
            };
            m.insert(rel, v);
        }
    }
    walk(root, root, &mut m);
    m
}

/// Sorted list of every file under a directory (for "nothing changed" checks).
pub fn file_list(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                walk(root, &p, out);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_string_lossy().into_owned(),
                    md.len(),
                ));
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Restores a snapshot with restic into `target` and returns the restored copy of `src`.
pub fn restic_restore(env: &Env, snapshot: &str, target: &Path, src: &Path) -> PathBuf {
    env.restic_ok(&["restore", snapshot, "--target", target.to_str().unwrap()]);
    target.join(src.strip_prefix("/").unwrap())
}

/// Writes an SQLite database of 3,000 rows at `path` whose table leaf page in the middle is
/// damaged (its cell pointers point off the page), so that `PRAGMA integrity_check` fails;
/// returns the database as it was before the damage.
pub fn sqlite_with_a_damaged_page(path: &Path) -> Vec<u8> {
    {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch(
            "PRAGMA page_size=4096; CREATE TABLE w(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i<3000)
             INSERT INTO w(v, pad) SELECT i, randomblob(300) FROM s;",
        )
        .unwrap();
    }
    let good = fs::read(path).unwrap();
    let mut bytes = good.clone();
    let pages = bytes.len() / 4096;
    assert!(pages > 100);
    let page = pages / 2;
    assert_eq!(bytes[page * 4096], 0x0d, "page {page} is not a table leaf");
    bytes[page * 4096 + 8..page * 4096 + 40].fill(0xff);
    fs::write(path, &bytes).unwrap();
    good
}

/// `backupctl -r REPO --password-file PW ARGS...` under `ulimit -v` of `kib` KiB: what a parser
/// or a walk allocates beyond that fails the command instead of the machine.
pub fn ctl_in_memory_limit(env: &Env, kib: u64, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(r#"ulimit -v {kib} && exec "$@""#))
        .arg("sh")
        .arg(BACKUPCTL)
        .arg("-r")
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&env.pw)
        .args(args)
        .output()
        .unwrap()
}
