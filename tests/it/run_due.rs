//! `backupd run-due`, the OS-timer mode: the daemon's scheduler, state and history in one pass (on time, catch-up, nothing due, a failed run), and its refusal while a resident daemon holds the state folder.

use crate::support::daemon::*;
use std::process::{Command, Output, Stdio};

/// `backupd --config CFG run-due`, with the clock `offset` seconds ahead (libfaketime).
fn run_due(s: &Setup, offset: i64) -> Output {
    let mut c = Command::new(BACKUPD);
    c.arg("--config")
        .arg(&s.cfg)
        .arg("run-due")
        .stdin(Stdio::null())
        .env("TZ", "UTC")
        .env_remove("BACKUPD_CONFIG");
    if offset != 0 {
        assert!(
            std::path::Path::new(LIBFAKETIME).exists(),
            "libfaketime is needed (apt-get install faketime); tests/run.sh installs it"
        );
        c.env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME", format!("{offset:+}"))
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_NO_CACHE", "1");
    }
    c.output().unwrap()
}

fn history(s: &Setup) -> Vec<serde_json::Value> {
    let p = s.env.dir.path().join("state/jobs/app.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["history"].as_array().cloned().unwrap_or_default()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn run_due_catches_up_runs_on_time_then_finds_nothing_due() {
    let s = Setup::new(
        "[jobs.app]\nrepository = \"main\"\npaths = [\"{data}\"]\nschedule = \"0 * * * *\"\ntimezone = \"UTC\"\n",
    );
    let o = run_due(&s, 0);
    assert_eq!(code(&o), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(history(&s).is_empty(), "the first tick only sees the job");

    // Two hours of ticks lost (the machine was off): one catch-up run.
    let o = run_due(&s, 7200);
    assert_eq!(code(&o), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let h = history(&s);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0]["outcome"], "success");
    assert!(
        reason(&h[0]).contains("missed while the OS timer did not start backupd"),
        "{}",
        reason(&h[0])
    );
    assert!(h[0]["snapshot_id"].is_string());

    // The same instant again: nothing due, nothing recorded.
    let o = run_due(&s, 7200);
    assert_eq!(code(&o), Some(0));
    assert_eq!(history(&s).len(), 1);

    // The tick 10 s after the next slot runs it as scheduled.
    let now = real_now();
    let next_slot = (now + 7200) / 3600 * 3600 + 3600;
    let o = run_due(&s, next_slot + 10 - now);
    assert_eq!(code(&o), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let h = history(&s);
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(reason(&h[1]).starts_with("scheduled "), "{}", reason(&h[1]));
}

#[test]
fn a_failed_run_exits_3_and_leaves_its_retry_in_the_state() {
    let s = Setup::new(
        "[jobs.app]\nrepository = \"main\"\npaths = [\"{data}/missing\"]\nschedule = \"0 * * * *\"\ntimezone = \"UTC\"\n",
    );
    assert_eq!(code(&run_due(&s, 0)), Some(0));
    let o = run_due(&s, 3700);
    assert_eq!(code(&o), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    let h = history(&s);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["outcome"], "failed", "{h:?}");
    let st: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.env.dir.path().join("state/jobs/app.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(st["retry"]["number"], 1, "{st}");
}

#[test]
fn run_due_refuses_while_a_resident_daemon_runs() {
    let s = Setup::new(
        "[jobs.app]\nrepository = \"main\"\npaths = [\"{data}\"]\nschedule = \"0 3 * * *\"\n",
    );
    let d = s.start(None);
    let o = run_due(&s, 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(code(&o), Some(75), "{err}");
    assert!(err.contains("a resident backupd daemon (PID"), "{err}");
    assert!(err.contains("backupctl service uninstall"), "{err}");
    d.term();
}
