//! Real remote servers on loopback for tests: a single Garage node (S3) and `rclone serve restic` (REST), each in its own temp dir on free ports, stopped on drop.
#![allow(dead_code)]

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}) during start-up:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} did not listen on port {port} within 30 s:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The garage binary: $GARAGE_BIN, on PATH, or in cargo's bin dir (`.ci/run` builds it there).
pub fn garage_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("GARAGE_BIN") {
        return PathBuf::from(b);
    }
    if let Ok(o) = Command::new("sh")
        .args(["-c", "command -v garage"])
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
    let p = home.join("bin/garage");
    assert!(
        p.exists(),
        "garage is needed by the S3 tests and was not found on PATH or in {}\n  hint: `.ci/run` builds it (cargo install garage --version =2.5.0), or run `bash /work/shared/tools/garage-local.sh start` once",
        p.display()
    );
    p
}

/// A single-node Garage with one bucket and one key.
pub struct Garage {
    pub dir: tempfile::TempDir,
    child: Child,
    bin: PathBuf,
    pub port: u16,
    pub region: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl Garage {
    pub fn start() -> Garage {
        let bin = garage_bin();
        let dir = tempfile::tempdir().unwrap();
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let d = dir.path();
        let cfg = format!(
            r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 1
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "{token}"
"#,
            d = d.display(),
            secret = hex::encode(rand_bytes(32)),
            token = hex::encode(rand_bytes(24)),
        );
        fs::write(d.join("garage.toml"), cfg).unwrap();
        let log = d.join("garage.log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(d.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(d.join("garage.err")).unwrap())
            .spawn()
            .expect("start garage");
        let mut g = Garage {
            dir,
            child,
            bin,
            port: s3,
            region: "garage".into(),
            bucket: "backup-test".into(),
            key_id: String::new(),
            secret: String::new(),
        };
        let t = Instant::now();
        while !g.cli(&["status"]).status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "garage did not answer `status` in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let id = g.cli_ok(&["node", "id", "-q"]);
        let node = id.trim().split('@').next().unwrap().to_string();
        g.cli_ok(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli_ok(&["layout", "apply", "--version", "1"]);
        g.cli_ok(&["bucket", "create", "backup-test"]);
        g.cli_ok(&["key", "create", "test-key"]);
        g.cli_ok(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            "backup-test",
            "--key",
            "test-key",
        ]);
        let info = g.cli_ok(&["key", "info", "test-key", "--show-secret"]);
        for line in info.lines() {
            if let Some(v) = line.strip_prefix("Key ID:") {
                g.key_id = v.trim().to_string();
            }
            if let Some(v) = line.strip_prefix("Secret key:") {
                g.secret = v.trim().to_string();
            }
        }
        assert!(
            !g.key_id.is_empty() && !g.secret.is_empty(),
            "could not read the key from:\n{info}"
        );
        let err = g.dir.path().join("garage.err");
        wait_port(s3, "garage", &mut g.child, &err);
        g
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .unwrap()
    }

    fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "garage {args:?} failed:\n{}",
            super::show(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3:http://127.0.0.1:PORT/BUCKET/PREFIX`
    pub fn location(&self, prefix: &str) -> String {
        format!("s3:{}/{}/{prefix}", self.endpoint(), self.bucket)
    }

    /// Sets the S3 credentials (AWS_*) on a command; removes AWS_CA_BUNDLE.
    pub fn creds<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env_remove("AWS_REGION")
            .env_remove("AWS_CA_BUNDLE")
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    use std::io::Read;
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut v)
        .unwrap();
    v
}

/// `rclone serve restic` over a folder (optionally `--append-only`).
pub struct Rclone {
    child: Child,
    pub port: u16,
}

impl Rclone {
    pub fn start(root: &Path, append_only: bool) -> Rclone {
        let port = free_port();
        let log = root.with_extension("rclone.log");
        let mut c = Command::new("rclone");
        c.args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")]);
        if append_only {
            c.arg("--append-only");
        }
        fs::create_dir_all(root).unwrap();
        let mut child = c
            .arg(root)
            // rclone 1.60 fails with LoadCustomCABundleError while AWS_CA_BUNDLE is set.
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("rclone is needed by the REST tests (apt-get install rclone); tests/run.sh installs it");
        wait_port(port, "rclone serve restic", &mut child, &log);
        Rclone { child, port }
    }

    pub fn location(&self, path: &str) -> String {
        format!("rest:http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Rclone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
