//! A real wall-clock jump (root only; the clock is set back before the test ends): the running daemon notices it at once, catches up the slots it skipped, and runs no slot twice when the clock goes back.

use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BACKUPD: &str = env!("CARGO_BIN_EXE_backupd");
const BACKUPCTL: &str = env!("CARGO_BIN_EXE_backupctl");

// This binary is apart from tests/it so that nothing runs beside the clock change (Cargo.toml);
// it has its own copy of the few helpers of tests/it/support it needs rather than compiling
// all of support a second time.

/// A scratch directory with a password file and a repository path in it.
struct Env {
    dir: tempfile::TempDir,
    repo: PathBuf,
    pw: PathBuf,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let pw = dir.path().join("pw");
        fs::write(&pw, "correct horse battery staple\n").unwrap();
        Env { dir, repo, pw }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Runs `backupctl -r REPO --password-file PW ARGS...` and asserts the exit code.
    fn ctl_ok(&self, args: &[&str]) {
        let o = Command::new(BACKUPCTL)
            .arg("-r")
            .arg(&self.repo)
            .arg("--password-file")
            .arg(&self.pw)
            .args(args)
            .env_remove("BACKUPD_REPOSITORY")
            .env_remove("BACKUPD_PASSWORD_FILE")
            .output()
            .expect("run backupctl");
        assert_eq!(
            o.status.code(),
            Some(0),
            "backupctl {args:?} failed:\n{}",
            show(&o)
        );
    }
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Moves the system clock by `by` seconds; dropping it moves it back by the same amount (so
/// the time that passed meanwhile is kept).
struct ClockShift {
    by: i64,
}

fn shift_clock(by: i64) {
    use nix::time::{clock_gettime, clock_settime, ClockId};
    let now = clock_gettime(ClockId::CLOCK_REALTIME).unwrap();
    let to = nix::sys::time::TimeSpec::new(now.tv_sec() + by, now.tv_nsec());
    clock_settime(ClockId::CLOCK_REALTIME, to).expect("setting the clock needs root");
}

impl ClockShift {
    fn new(by: i64) -> ClockShift {
        shift_clock(by);
        ClockShift { by }
    }
}

impl Drop for ClockShift {
    fn drop(&mut self) {
        shift_clock(-self.by);
    }
}

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn history(cfg: &PathBuf) -> Vec<Value> {
    let o = Command::new(BACKUPCTL)
        .args(["--json", "history", "tick", "-n", "1000", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn wait_for(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_clock_jump_is_noticed_at_once_and_never_runs_a_slot_twice() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: setting the system clock needs root (CI runs as root)");
        return;
    }
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let data = env.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a"), b"a").unwrap();
    let cfg = env.path("backupd.toml");
    let d = env.dir.path().display().to_string();
    fs::write(
        &cfg,
        format!(
            "[daemon]\nstate_dir = \"{d}/state\"\nsocket = \"{d}/s.sock\"\n[repositories.main]\npath = \"{}\"\npassword_file = \"{}\"\n[jobs.tick]\nrepository = \"main\"\npaths = [\"{}\"]\nschedule = \"0 * * * *\"\ntimezone = \"UTC\"\n",
            env.repo.display(),
            env.pw.display(),
            data.display()
        ),
    )
    .unwrap();
    let log = fs::File::create(env.path("stderr")).unwrap();
    let _d = Daemon(
        Command::new(BACKUPD)
            .arg("--config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(20), "the socket", || {
        env.path("s.sock").exists()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        history(&cfg).is_empty(),
        "an hourly job does not run at start-up"
    );
    {
        // Three hours ahead: the daemon, asleep until the next full hour, is woken at once.
        let _shift = ClockShift::new(3 * 3600);
        wait_for(
            Duration::from_secs(20),
            "the catch-up after the jump",
            || !history(&cfg).is_empty(),
        );
    }
    // The clock is back; nothing runs again for the slots already served.
    std::thread::sleep(Duration::from_secs(2));
    let h = history(&cfg);
    assert_eq!(h.len(), 1, "{h:#?}");
    let why = h[0]["reason"].as_str().unwrap();
    assert!(why.contains("after the clock jumped forward"), "{why}");
    assert!(
        why.contains("3 slots missed") || why.contains("2 slots missed"),
        "{why}"
    );
    assert_eq!(h[0]["outcome"], "success", "{h:#?}");
    let log = fs::read_to_string(env.path("stderr")).unwrap();
    assert!(log.contains("the wall clock jumped by"), "{log}");
    assert!(
        log.matches("the wall clock jumped by").count() >= 2,
        "the jump back is noticed too: {log}"
    );
}
