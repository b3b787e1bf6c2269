//! What history and health make of the runs a person starts: a cancel is no failure, a failed manual run is not retried (unless asked), `backupctl run-job` runs are recorded, and the OS-timer mode is judged from the recorded runs.

use crate::support::daemon::*;
use crate::support::show;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `backupctl health --json` without asserting the exit code (1 and 2 are answers): the code
/// and the JSON.
fn health(s: &Setup) -> (Option<i32>, Value) {
    let o = s.ctl(&["--json", "health"]);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("health printed no JSON ({e}): {}", show(&o)));
    (o.status.code(), v)
}

fn job<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("no job {name} in {status}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_cancel_is_no_failure_and_a_failed_manual_run_is_retried_only_when_asked() {
    let s = Setup::new(
        "[jobs.slow]\nrepository = \"main\"\npaths = [\"{data}\"]\n[jobs.slow.hooks]\nbefore = [\"sleep 3\"]\n\n[jobs.bad]\nrepository = \"main\"\npaths = [\"{data}/missing\"]\nretries = { attempts = 2, delay = \"5m\" }\n",
    );
    let d = s.start(None);
    let o = s.ctl(&["run", "slow", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(s.ctl(&["run", "slow"]).status.code(), Some(0));
    let o = s.ctl(&["cancel", "slow"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_for(Duration::from_secs(30), "the cancelled run", || {
        s.history("slow").len() == 2
    });
    assert_eq!(s.history("slow")[1]["outcome"], "cancelled");
    let (code, h) = health(&s);
    let slow = h["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == "slow")
        .unwrap();
    assert_eq!(slow["health"]["level"], "healthy", "{h}");
    assert!(
        slow["health"]["notes"][0]
            .as_str()
            .unwrap_or("")
            .contains("cancelled by the user"),
        "{h}"
    );
    assert_eq!(code, Some(0), "{h}");
    assert_eq!(
        job(&s.ctl_json(&["status"]), "slow")["consecutive_failures"],
        0
    );

    // A failed manual run: counted, not retried.
    let o = s.ctl(&["run", "bad", "--wait"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    let st = s.ctl_json(&["status"]);
    assert_eq!(job(&st, "bad")["consecutive_failures"], 1, "{st}");
    assert_eq!(job(&st, "bad")["state"], "idle", "{st}");
    // Unless the user asks.
    let o = s.ctl(&["run", "bad", "--wait", "--retry"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    let st = s.ctl_json(&["status"]);
    assert_eq!(job(&st, "bad")["state"], "retry-pending", "{st}");
    d.term();
}

/// `backupd --config CFG run-due`: one tick of the OS timer.
fn tick(s: &Setup) -> Output {
    Command::new(BACKUPD)
        .arg("--config")
        .arg(&s.cfg)
        .arg("run-due")
        .stdin(Stdio::null())
        .env("TZ", "UTC")
        .env_remove("BACKUPD_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn run_job_runs_are_recorded_and_the_os_timer_mode_is_judged_from_them() {
    let jobs = "[jobs.app]\nrepository = \"main\"\npaths = [\"{data}\"]\nschedule = \"0 3 * * *\"\ntimezone = \"UTC\"\n";
    let s = Setup::new(jobs);
    let o = s.ctl(&["run-job", "app"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // Recorded where the daemon records its runs: history reads it without a daemon.
    let h = s.history("app");
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        (h[0]["outcome"].as_str(), reason(&h[0])),
        (Some("success"), "manual")
    );
    // No backupd has ever run: not running is an error.
    let (code, v) = health(&s);
    assert_eq!(code, Some(2), "{v}");
    assert!(v["health"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("backupd is not running"));

    // The OS timer's first tick: nothing is due, and health judges the recorded runs.
    let o = tick(&s);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let (code, v) = health(&s);
    assert_eq!(code, Some(0), "{v}");
    assert!(
        v["health"]["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("OS-timer mode"),
        "{v}"
    );
    let o = s.ctl(&["status"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        text(&o).contains("OS-timer mode") && !text(&o).contains("error"),
        "{}",
        show(&o)
    );

    // A failed run-job counts like the daemon's failed runs.
    s.write_config(&jobs.replace("{data}", "{data}/missing"));
    let o = s.ctl(&["run-job", "app"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    let (code, v) = health(&s);
    assert_eq!(code, Some(1), "{v}");
    assert!(
        v["health"]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("app: the last run failed"),
        "{v}"
    );
    let st: Value =
        serde_json::from_slice(&std::fs::read(s.env.path("state/jobs/app.json")).unwrap()).unwrap();
    assert!(st["retry"].is_null(), "a manual run is not retried: {st}");

    // The timer silent for an hour: health says so.
    let pid = std::fs::File::options()
        .write(true)
        .open(s.env.path("state/backupd.pid"))
        .unwrap();
    pid.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        text(&o).contains("has not started `backupd run-due` since"),
        "{}",
        show(&o)
    );

    // A resident daemon holds the state folder: the run goes on, unrecorded, and says so; the
    // daemon's state stays whole.
    s.write_config(jobs);
    let d = s.start(None);
    let o = s.ctl(&["run-job", "app"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        text(&o).contains("is not recorded in its history"),
        "{}",
        show(&o)
    );
    assert!(
        text(&o).contains("`backupctl run app --wait`"),
        "{}",
        show(&o)
    );
    assert_eq!(s.history("app").len(), 2);
    d.term();
    assert_eq!(s.history("app").len(), 2);
}
