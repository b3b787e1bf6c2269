//! The daemon harness of the integration tests: a scratch repository, data and configuration, `backupd` processes (optionally under libfaketime), and `backupctl` pointed at them.

use super::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BACKUPD: &str = env!("CARGO_BIN_EXE_backupd");
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A scratch setup: a repository, some data, a configuration file and the daemon's folders.
pub struct Setup {
    pub env: Env,
    pub cfg: PathBuf,
    pub data: PathBuf,
}

impl Setup {
    /// `jobs` is TOML for the `[jobs.*]` tables; `{data}` in it stands for the data folder.
    pub fn new(jobs: &str) -> Setup {
        let env = Env::new();
        env.ctl_ok(&["init"]);
        let data = env.path("data");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("a.txt"), text(1, 10_000)).unwrap();
        let s = Setup {
            cfg: env.path("backupd.toml"),
            env,
            data,
        };
        s.write_config(jobs);
        s
    }

    pub fn config_text(&self, jobs: &str) -> String {
        let d = self.env.dir.path();
        format!(
            "[daemon]\nstate_dir = \"{d}/state\"\nlog_dir = \"{d}/logs\"\nsocket = \"{d}/backupd.sock\"\nshutdown_timeout = \"20s\"\n\n[repositories.main]\npath = \"{repo}\"\npassword_file = \"{pw}\"\n\n{jobs}",
            d = d.display(),
            repo = self.env.repo.display(),
            pw = self.env.pw.display(),
            jobs = jobs.replace("{data}", &self.data.display().to_string())
        )
    }

    pub fn write_config(&self, jobs: &str) {
        fs::write(&self.cfg, self.config_text(jobs)).unwrap();
    }

    pub fn socket(&self) -> PathBuf {
        self.env.path("backupd.sock")
    }

    /// Starts `backupd --config CFG`; with `fake_offset`, under libfaketime that many seconds
    /// ahead of the real clock.
    pub fn start(&self, fake_offset: Option<i64>) -> Daemon {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.env.path("backupd.stderr"))
            .unwrap();
        let mut c = Command::new(BACKUPD);
        c.arg("--config")
            .arg(&self.cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("TZ", "UTC")
            .env_remove("BACKUPD_CONFIG")
            .env_remove("BACKUPD_SOCKET");
        if let Some(off) = fake_offset {
            assert!(
                Path::new(LIBFAKETIME).exists(),
                "libfaketime is needed (apt-get install faketime); tests/run.sh installs it"
            );
            c.env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME", format!("{off:+}"))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        let child = c.spawn().expect("start backupd");
        let d = Daemon {
            child,
            socket: self.socket(),
        };
        wait_for(Duration::from_secs(30), "the daemon's socket", || {
            std::os::unix::net::UnixStream::connect(&d.socket).is_ok()
        });
        d
    }

    /// `backupctl ARGS --config CFG`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BACKUPCTL)
            .args(args)
            .arg("--config")
            .arg(&self.cfg)
            .env_remove("BACKUPD_CONFIG")
            .env_remove("BACKUPD_SOCKET")
            .output()
            .unwrap()
    }

    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = self.ctl(&a);
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(13),
            "backupctl {args:?}: {}",
            show(&o)
        );
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("backupctl {args:?} printed no JSON ({e}): {}", show(&o)))
    }

    /// The job's runs, oldest first (from the daemon, or its state file when it is stopped).
    pub fn history(&self, job: &str) -> Vec<Value> {
        self.ctl_json(&["history", job, "-n", "1000"])
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn stderr_log(&self) -> String {
        fs::read_to_string(self.env.path("backupd.stderr")).unwrap_or_default()
    }
}

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit status and how long it took.
    pub fn term(mut self) -> (Option<i32>, Duration) {
        let t = Instant::now();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code(), t.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "backupd did not exit within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn runs<'a>(h: &'a [Value], outcome: &str) -> Vec<&'a Value> {
    h.iter().filter(|r| r["outcome"] == outcome).collect()
}

pub fn reason(r: &Value) -> &str {
    r["reason"].as_str().unwrap_or("")
}

/// Seconds between now and an RFC 3339 instant in the fake clock's terms.
pub fn epoch(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

pub fn real_now() -> i64 {
    chrono::Utc::now().timestamp()
}
