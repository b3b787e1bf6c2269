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

    pub fn restic_ok(&self, args: &[&str]) -> String {
        let o = self.restic(args);
        assert!(o.status.success(), "restic {args:?} failed:\n{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

pub fn restic_at(repo: &Path, pw: &Path, args: &[&str]) -> Output {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .arg("--password-file")
        .arg(pw)
        .arg("--no-cache")
        .args(args)
        .env_remove("RESTIC_REPOSITORY")
        .output()
        .expect("restic is needed by the tests (apt-get install restic); tests/run.sh installs it")
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
