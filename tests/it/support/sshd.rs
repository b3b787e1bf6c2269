//! A real OpenSSH server on 127.0.0.1 for the SFTP tests: its own sshd_config, host key and
//! authorized key in a temp dir, a free port, and a key-only test user.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The login the tests use: a system user without a password (key-only).
pub const USER: &str = "backupd-sftp-test";

pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The client's private key (its public half is authorized).
    pub key: PathBuf,
    child: Child,
}

fn run(cmd: &mut Command) {
    let o = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Makes the test user if it is missing (idempotent; several test processes may race).
fn ensure_user() {
    let exists = || {
        Command::new("id")
            .arg("-u")
            .arg(USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !exists() {
        let _ = Command::new("useradd")
            .args([
                "--system",
                "--shell",
                "/bin/sh",
                "--home-dir",
                "/nonexistent",
                "--no-create-home",
            ])
            .arg(USER)
            .status();
        assert!(exists(), "could not create the test user {USER} (useradd)");
    }
    // useradd leaves the password field "!", which sshd (without PAM) takes for a locked
    // account; "*" means no password can match but the account is not locked.
    run(Command::new("usermod").args(["-p", "*", USER]));
}

pub fn uid_gid() -> (u32, u32) {
    let out = |flag: &str| -> u32 {
        let o = Command::new("id").arg(flag).arg(USER).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    (out("-u"), out("-g"))
}

impl Sshd {
    /// Starts sshd, or returns `None` (with a loud message) when not root: sshd needs root to
    /// switch to the test user. CI runs as root, so there the tests always run.
    pub fn start() -> Option<Sshd> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("\n\n*** SKIPPING the SFTP tests: they need root (to run sshd and log in as {USER}) ***\n\n");
            return None;
        }
        assert!(
            Path::new("/usr/sbin/sshd").exists(),
            "/usr/sbin/sshd is missing: run tests/run.sh (it installs openssh-server)"
        );
        ensure_user();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The test user must reach the repositories made under the temp dir.
        let (uid, gid) = uid_gid();
        nix::unistd::chown(d, Some(uid.into()), Some(gid.into())).unwrap();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        let host_key = d.join("host_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key));
        let key = d.join("client_ed25519");
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        fs::copy(key.with_extension("pub"), d.join("authorized_keys")).unwrap();
        fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o644)).unwrap();
        // Privilege separation directory (made by the init script, which does not run here).
        fs::create_dir_all("/run/sshd").unwrap();
        let port = super::smtpd::free_port();
        let cfg = d.join("sshd_config");
        fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin no\nAllowUsers {USER}\nSubsystem sftp /usr/lib/openssh/sftp-server\n\
                 LogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n",
                hk = host_key.display(),
                d = d.display(),
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("start sshd");
        let mut s = Sshd {
            dir,
            port,
            key,
            child,
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("sshd exited ({st}): {}", s.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "sshd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(s)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// The ssh client options every test connection uses (no known_hosts, no prompts).
    pub fn ssh_opts(&self, key: &Path) -> String {
        format!(
            "-i {} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR",
            key.display()
        )
    }

    /// A full sftp command line (restic's `sftp.command`) with the given key and port.
    pub fn command_with(&self, key: &Path, port: u16) -> String {
        format!(
            "ssh -p {port} {} {USER}@127.0.0.1 -s sftp",
            self.ssh_opts(key)
        )
    }

    pub fn command(&self) -> String {
        self.command_with(&self.key, self.port)
    }

    /// A fresh directory path under the temp dir (not created), readable by the test user.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
