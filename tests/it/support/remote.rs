//! Real remote servers on loopback for tests: a single Garage node and a 3-node Garage cluster (S3), `rclone serve restic` (REST), and a TCP proxy that cuts chosen requests; each in its own temp dir on free ports, stopped on drop.

use backupd::repo::s3::{S3Backend, S3Credentials, Secret};
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `backupctl --password-file PW` with a private cache and no repository, password or S3
/// credentials from the environment: the remote tests add `-r LOC`, their credentials and args.
pub fn backupctl(env: &super::Env) -> Command {
    let mut c = Command::new(super::BACKUPCTL);
    c.arg("--password-file")
        .arg(&env.pw)
        .env_remove("BACKUPD_REPOSITORY")
        .env_remove("BACKUPD_PASSWORD_FILE")
        .env_remove("BACKUPD_CACERT")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("BACKUPD_CACHE_DIR", env.path("cache"));
    c
}

/// The key id and secret in the output of `garage key info --show-secret`.
fn key_of(info: &str) -> (String, String) {
    let (mut id, mut secret) = (String::new(), String::new());
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("Key ID:") {
            id = v.trim().to_string();
        }
        if let Some(v) = line.strip_prefix("Secret key:") {
            secret = v.trim().to_string();
        }
    }
    assert!(
        !id.is_empty() && !secret.is_empty(),
        "could not read the key from:\n{info}"
    );
    (id, secret)
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    wait_port_on("127.0.0.1", port, what, child, log)
}

fn wait_port_on(ip: &str, port: u16, what: &str, child: &mut Child, log: &Path) {
    let t = Instant::now();
    while TcpStream::connect((ip, port)).is_err() {
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
    super::tool(
        "garage",
        "garage is needed by the S3 tests",
        "`bash tests/run.sh` builds it once (cargo install garage --version =2.5.0 --locked, about 6 minutes), then runs the tests",
    )
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
        let child = spawn_server(&bin, d);
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
        (g.key_id, g.secret) = key_of(&info);
        let err = g.dir.path().join("garage.err");
        wait_port(s3, "garage", &mut g.child, &err);
        g
    }

    /// Stops the node (SIGKILL): its S3 port refuses connections until [`Garage::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped node again on its data, port and keys.
    pub fn restart(&mut self) {
        self.child = spawn_server(&self.bin, self.dir.path());
        let err = self.dir.path().join("garage.err");
        wait_port(self.port, "garage", &mut self.child, &err);
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

    /// The library's S3 client on this bucket and `prefix` (for the tests' own listings).
    pub fn s3(&self, prefix: &str) -> S3Backend {
        s3_client(
            &self.endpoint(),
            &self.bucket,
            prefix,
            &self.key_id,
            &self.secret,
        )
    }

    /// `garage bucket set-quotas BUCKET --max-size SIZE` (`none` lifts it).
    pub fn set_max_size(&self, size: &str) {
        self.cli_ok(&["bucket", "set-quotas", &self.bucket, "--max-size", size]);
    }
}

/// `garage server` on the configuration in `d`, its output appended to d/garage.log and .err.
fn spawn_server(bin: &Path, d: &Path) -> Child {
    let append = |name: &str| {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join(name))
            .unwrap()
    };
    Command::new(bin)
        .arg("-c")
        .arg(d.join("garage.toml"))
        .arg("server")
        .env("RUST_LOG", "warn")
        .stdout(append("garage.log"))
        .stderr(append("garage.err"))
        .spawn()
        .expect("start garage")
}

fn s3_client(endpoint: &str, bucket: &str, prefix: &str, key_id: &str, secret: &str) -> S3Backend {
    S3Backend::new(
        endpoint,
        bucket,
        prefix,
        S3Credentials {
            access_key_id: key_id.to_string(),
            secret_access_key: Secret(secret.to_string()),
            region: "garage".into(),
        },
    )
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
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
        Rclone::start_with(root, append_only, None)
    }

    /// The same, asking for HTTP basic authentication as `user`/`pass` when given.
    pub fn start_with(root: &Path, append_only: bool, auth: Option<(&str, &str)>) -> Rclone {
        let port = free_port();
        let log = root.with_extension("rclone.log");
        let mut c = Command::new("rclone");
        c.args(["serve", "restic", "--addr", &format!("127.0.0.1:{port}")]);
        if append_only {
            c.arg("--append-only");
        }
        if let Some((user, pass)) = auth {
            c.args(["--user", user, "--pass", pass]);
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

/// A port free on each of `ips` (bound on all of them, then released).
fn free_port_on(ips: &[&str]) -> u16 {
    loop {
        let p = free_port();
        if ips.iter().all(|ip| TcpListener::bind((*ip, p)).is_ok()) {
            return p;
        }
    }
}

/// One node of a `GarageCluster`: its loopback address and its own folder.
struct Node {
    ip: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// Three Garage nodes on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (same ports on each address),
/// `replication_factor = 3` (writes and reads need 2 of 3), one zone, one bucket, one key.
pub struct GarageCluster {
    /// The nodes' folders are in it; held so that it lives (and goes) with the cluster.
    _dir: tempfile::TempDir,
    bin: PathBuf,
    nodes: Vec<Node>,
    pub s3_port: u16,
    rpc_port: u16,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl GarageCluster {
    pub fn start() -> GarageCluster {
        let bin = garage_bin();
        let dir = tempfile::tempdir().unwrap();
        let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
        let (s3, rpc, admin) = (free_port_on(&ips), free_port_on(&ips), free_port_on(&ips));
        let secret = hex::encode(rand_bytes(32));
        let token = hex::encode(rand_bytes(24));
        let mut nodes = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let d = dir.path().join(format!("node{}", i + 1));
            fs::create_dir_all(&d).unwrap();
            let cfg = format!(
                r#"metadata_dir = "{d}/meta"
data_dir = "{d}/data"
db_engine = "sqlite"
replication_factor = 3
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "{ip}:{rpc}"
rpc_public_addr = "{ip}:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "{ip}:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "{ip}:{admin}"
admin_token = "{token}"
"#,
                d = d.display(),
            );
            fs::write(d.join("garage.toml"), cfg).unwrap();
            nodes.push(Node {
                ip: ip.to_string(),
                dir: d,
                child: None,
            });
        }
        let mut c = GarageCluster {
            _dir: dir,
            bin,
            nodes,
            s3_port: s3,
            rpc_port: rpc,
            bucket: "backup-test".into(),
            key_id: String::new(),
            secret: String::new(),
        };
        for i in 0..3 {
            c.spawn(i);
        }
        let ids: Vec<String> = (0..3)
            .map(|i| c.cli_ok(i, &["node", "id", "-q"]).trim().to_string())
            .collect();
        for id in &ids[1..] {
            c.cli_ok(0, &["node", "connect", id]);
        }
        for id in &ids {
            let node = id.split('@').next().unwrap();
            c.cli_ok(0, &["layout", "assign", "-z", "dc1", "-c", "1G", node]);
        }
        c.cli_ok(0, &["layout", "apply", "--version", "1"]);
        c.wait_healthy(3);
        c.cli_ok(0, &["bucket", "create", "backup-test"]);
        c.cli_ok(0, &["key", "create", "test-key"]);
        c.cli_ok(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                "backup-test",
                "--key",
                "test-key",
            ],
        );
        let info = c.cli_ok(0, &["key", "info", "test-key", "--show-secret"]);
        (c.key_id, c.secret) = key_of(&info);
        c
    }

    /// Starts node `i` (0-based) over its folder and waits until it answers `status` and S3.
    fn spawn(&mut self, i: usize) {
        let n = &self.nodes[i];
        let err = n.dir.join("garage.err");
        let mut child = Command::new(&self.bin)
            .arg("-c")
            .arg(n.dir.join("garage.toml"))
            .arg("server")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&err)
                    .unwrap(),
            )
            .spawn()
            .expect("start garage");
        let t = Instant::now();
        while !self.cli(i, &["status"]).status.success() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "garage node {} exited ({st}) during start-up:\n{}",
                    i + 1,
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "garage node {} did not answer `status` in 30 s",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_port_on(&n.ip, self.s3_port, "garage", &mut child, &err);
        self.nodes[i].child = Some(child);
    }

    /// kill -9 node `i` (and reap it).
    pub fn kill(&mut self, i: usize) {
        let mut c = self.nodes[i].child.take().expect("node is running");
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }

    /// Waits until node 1 (or another running node) lists `n` healthy nodes.
    pub fn wait_healthy(&self, n: usize) {
        let running = (0..3).find(|&i| self.nodes[i].child.is_some()).unwrap();
        let t = Instant::now();
        loop {
            let out = self.cli(running, &["status"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let healthy = text
                .split("==== FAILED NODES ====")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| l.contains(&format!(":{}", self.rpc_port)))
                .count();
            if out.status.success() && healthy >= n && !text.contains("FAILED NODES") {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "the cluster did not become healthy with {n} nodes in 60 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn cli(&self, i: usize, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .arg("-c")
            .arg(self.nodes[i].dir.join("garage.toml"))
            .args(args)
            .output()
            .unwrap()
    }

    fn cli_ok(&self, i: usize, args: &[&str]) -> String {
        let o = self.cli(i, args);
        assert!(
            o.status.success(),
            "garage (node {}) {args:?} failed:\n{}",
            i + 1,
            super::show(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The S3 endpoint of node `i`: `http://127.0.0.{i+1}:PORT`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}:{}", self.nodes[i].ip, self.s3_port)
    }

    /// `s3:http://127.0.0.{i+1}:PORT/BUCKET/PREFIX`
    pub fn location(&self, i: usize, prefix: &str) -> String {
        format!("s3:{}/{}/{prefix}", self.endpoint(i), self.bucket)
    }

    /// The library's S3 client through node `i`.
    pub fn s3(&self, i: usize, prefix: &str) -> S3Backend {
        s3_client(
            &self.endpoint(i),
            &self.bucket,
            prefix,
            &self.key_id,
            &self.secret,
        )
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A TCP proxy on 127.0.0.1 in front of an HTTP/1.1 server. It forwards requests whole, except
/// those whose request line contains `pattern`: while `cuts` is above 0, such a request is
/// forwarded with its headers and half its body, then both connections are cut (and `cuts`
/// goes down by one). `cut_lines` records the request lines it cut.
pub struct CutProxy {
    pub port: u16,
    pub cuts: Arc<AtomicUsize>,
    pub cut_lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl CutProxy {
    pub fn start(upstream_port: u16, pattern: &str) -> CutProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let cuts = Arc::new(AtomicUsize::new(0));
        let cut_lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, l2, s2, pat) = (
            cuts.clone(),
            cut_lines.clone(),
            stop.clone(),
            pattern.to_string(),
        );
        std::thread::spawn(move || {
            for client in l.incoming() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let (c3, l3, pat) = (c2.clone(), l2.clone(), pat.clone());
                std::thread::spawn(move || proxy_conn(client, up, &pat, &c3, &l3));
            }
        });
        CutProxy {
            port,
            cuts,
            cut_lines,
            stop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn proxy_conn(
    mut c: TcpStream,
    mut u: TcpStream,
    pattern: &str,
    cuts: &AtomicUsize,
    cut_lines: &Mutex<Vec<String>>,
) {
    // Answers flow back untouched.
    let (mut u2, mut c2) = (u.try_clone().unwrap(), c.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut u2, &mut c2);
        let _ = c2.shutdown(Shutdown::Write);
    });
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        // The request head.
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match c.read(&mut tmp) {
                Ok(0) | Err(_) => {
                    let _ = u.shutdown(Shutdown::Write);
                    return;
                }
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let line = head.lines().next().unwrap_or("").to_string();
        let len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "CutProxy handles Content-Length bodies only: {head}"
        );
        let cut = line.contains(pattern)
            && cuts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        let send = if cut { len / 2 } else { len };
        if u.write_all(&buf[..end]).is_err() {
            return;
        }
        buf.drain(..end);
        let mut left = send;
        while left > 0 {
            if buf.is_empty() {
                match c.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            }
            let k = left.min(buf.len());
            if u.write_all(&buf[..k]).is_err() {
                return;
            }
            buf.drain(..k);
            left -= k;
        }
        if cut {
            cut_lines.lock().unwrap().push(line);
            let _ = u.shutdown(Shutdown::Both);
            let _ = c.shutdown(Shutdown::Both);
            return;
        }
    }
}
