//! A real SMTP server for the tests: Debian's aiosmtpd (python3-aiosmtpd; tests/run.sh installs it) on a free loopback port, storing mail in a Maildir.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Debian's python, which has Debian's python3-aiosmtpd (the PATH's python3 may not).
const PYTHON: &str = "/usr/bin/python3";

/// The running server; killed on drop.
pub struct Smtpd {
    child: Child,
    pub port: u16,
}

impl Smtpd {
    /// Starts aiosmtpd on 127.0.0.1 with its Mailbox handler writing to `maildir`, and waits
    /// until it listens.
    pub fn start(maildir: &Path) -> Smtpd {
        let ok = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{PYTHON} cannot import aiosmtpd: install Debian's python3-aiosmtpd (bash tests/run.sh does)"
        );
        let port = free_port();
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir)
            .spawn()
            .unwrap();
        let server = Smtpd { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use super::remote::free_port;
