//! Integration tests of monitoring with a real daemon: health (`backupctl health` exit codes), the Prometheus metrics file, and notifications.

mod support;

use serde_json::Value;
use std::fs;
use std::process::Command;
use std::time::Duration;
use support::daemon::*;
use support::*;

/// A tmpfs mounted at `dir` (root only), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount: {}", show(&o));
        Tmpfs(dir.to_path_buf())
    }
    fn remount(&self, mode: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "remount {mode}: {}", show(&o));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// The value of the sample `name{...job="JOB"...}` in a metrics file.
fn sample(metrics: &str, name: &str, job: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        (series.starts_with(&format!("{name}{{")) && series.contains(&format!("job=\"{job}\"")))
            .then(|| value.parse().unwrap())
    })
}

#[test]
fn an_unwritable_repository_turns_the_job_to_error_and_the_fix_back_to_healthy() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a read-only tmpfs needs root (CI runs as root)");
        return;
    }
    let s = Setup::new("");
    let ro = Tmpfs::mount(&s.env.path("ro"));
    let repo = s.env.path("ro/repo");
    let o = Command::new(BACKUPCTL)
        .args(["-q", "-r"])
        .arg(&repo)
        .arg("--password-file")
        .arg(&s.env.pw)
        .arg("init")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    ro.remount("ro");
    let metrics = s.env.path("metrics/backupd.prom");
    fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let cfg = s.config_text(&format!(
        "[repositories.ro]\npath = \"{}\"\npassword_file = \"{}\"\n\n[jobs.bad]\nrepository = \"ro\"\npaths = [\"{{data}}\"]\nretries = {{ attempts = 1, delay = \"1s\" }}\nhealth = {{ failures_error = 2 }}\n\n[jobs.good]\nrepository = \"main\"\npaths = [\"{{data}}\"]\n",
        repo.display(),
        s.env.pw.display()
    ))
    .replace("[daemon]\n", &format!("[daemon]\nmetrics_file = \"{}\"\n", metrics.display()));
    fs::write(&s.cfg, cfg).unwrap();
    let d = s.start(None);
    assert_eq!(s.ctl(&["run", "good", "--wait"]).status.code(), Some(0));
    let o = s.ctl(&["run", "bad", "--wait"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    // One failure: warning (health exit 1); after the retry fails too: error (exit 2).
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    wait_for(Duration::from_secs(30), "the retry to fail", || {
        s.history("bad").len() == 2
    });
    let h = s.history("bad");
    assert!(reason(&h[1]).starts_with("retry 1 of 1"), "{h:#?}");
    assert!(
        h[1]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("read-only"),
        "{h:#?}"
    );
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("bad: error") && out.contains("good: healthy"),
        "{out}"
    );
    assert!(
        out.contains("2 failed runs in a row") || out.contains("failed"),
        "{out}"
    );
    let st = s.ctl_json(&["status"]);
    let bad = st["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "bad")
        .unwrap();
    assert_eq!(bad["health"]["level"], "error", "{bad:#}");
    assert_eq!(bad["stats"]["runs"], 2, "{bad:#}");
    assert_eq!(st["health"]["level"], "error");
    // The file is rewritten (atomically, on a blocking thread) right after each run.
    wait_for(
        Duration::from_secs(10),
        "the metrics after the retry",
        || {
            fs::read_to_string(&metrics)
                .is_ok_and(|m| sample(&m, "backupd_job_consecutive_failures", "bad") == Some(2.0))
        },
    );
    let m = fs::read_to_string(&metrics).unwrap();
    assert_eq!(sample(&m, "backupd_job_health", "bad"), Some(2.0), "{m}");
    assert_eq!(sample(&m, "backupd_job_health", "good"), Some(0.0), "{m}");
    assert_eq!(
        sample(&m, "backupd_job_consecutive_failures", "bad"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "backupd_job_last_run_success", "good"),
        Some(1.0),
        "{m}"
    );
    assert!(sample(&m, "backupd_job_last_success_timestamp_seconds", "good").unwrap() > 1.7e9);

    // The fix: the repository is writable again; the next run succeeds, the job is healthy.
    ro.remount("rw");
    let o = s.ctl(&["run", "bad", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_for(Duration::from_secs(10), "the metrics after the fix", || {
        fs::read_to_string(&metrics)
            .is_ok_and(|m| sample(&m, "backupd_job_health", "bad") == Some(0.0))
    });
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    // Without the daemon, health judges the state files and says the daemon is down: error.
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("backupd is not running"),
        "{}",
        show(&o)
    );
    let v: Value = serde_json::from_slice(&s.ctl(&["--json", "health"]).stdout).unwrap();
    assert_eq!(v["level"], "error");
}

#[test]
fn a_daemon_down_for_three_intervals_reports_the_job_overdue_at_once() {
    let s = Setup::new(
        "[jobs.daily]\nrepository = \"main\"\npaths = [\"{data}\"]\nschedule = \"30 2 * * *\"\ntimezone = \"UTC\"\ncatch_up = \"skip\"\n",
    );
    let day1 = epoch("2026-06-01T02:29:57Z");
    let d = s.start(Some(day1 - real_now()));
    wait_for(Duration::from_secs(30), "the first run", || {
        runs(&s.history("daily"), "success").len() == 1
    });
    assert_eq!(s.ctl(&["health"]).status.code(), Some(0));
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    // Down for three days; started at 05:00 on the fourth: three slots without a success.
    let day4 = epoch("2026-06-04T05:00:00Z");
    let d = s.start(Some(day4 - real_now()));
    let o = s.ctl(&["--json", "health"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let h = &v["jobs"][0]["health"];
    assert_eq!(h["missed_slots"], 3, "{v:#}");
    assert_eq!(
        h["overdue_since"].as_str().map(|t| &t[..16]),
        Some("2026-06-02T02:30"),
        "{v:#}"
    );
    let why = h["reasons"][0].as_str().unwrap();
    assert!(why.contains("3 slots"), "{why}");
    drop(d);
}
