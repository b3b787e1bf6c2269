//! Integration tests of damaged and implausible state files: readers (`backupctl` without a daemon) only report them, the daemon names them in its log and `status` and repairs them, and a state from a newer backupd is refused, not overwritten.

use crate::support::daemon::*;
use crate::support::*;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

const DAILY: &str = "[jobs.daily]\nrepository = \"main\"\npaths = [\"{data}\"]\nretries = { attempts = 0 }\n[jobs.hourly]\nrepository = \"main\"\npaths = [\"{data}\"]\nretries = { attempts = 0 }\n";

fn jobs_dir(s: &Setup) -> PathBuf {
    let d = s.env.path("state/jobs");
    fs::create_dir_all(&d).unwrap();
    d
}

fn state(version: u32, job: &str, last_slot: &str) -> String {
    format!(
        "{{\"version\": {version}, \"job\": \"{job}\", \"baseline\": \"2026-01-01T00:00:00Z\", \"last_slot\": {last_slot}, \"consecutive_failures\": 0, \"history\": []}}"
    )
}

fn listing(d: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn backupctl_without_a_daemon_reports_a_damaged_state_file_and_moves_nothing() {
    let s = Setup::new(DAILY);
    let dir = jobs_dir(&s);
    fs::write(dir.join("daily.json"), "{\"version\": 1, \"job\": ").unwrap();
    for args in [&["status"][..], &["history", "daily"], &["health"]] {
        let o = s.ctl(args);
        let out = show(&o);
        assert_eq!(
            listing(&dir),
            vec!["daily.json"],
            "backupctl {args:?} moved it: {out}"
        );
        assert!(
            out.contains("daily.json"),
            "backupctl {args:?} does not name it: {out}"
        );
    }
    let j = s.ctl_json(&["status"]);
    let p = j["jobs"][0]["state_problem"].as_str().unwrap_or_default();
    assert!(p.contains("daily.json"), "{j}");
}

#[test]
fn the_daemon_names_each_damaged_state_file_in_its_log_and_status_and_moves_it_aside() {
    let s = Setup::new(DAILY);
    let dir = jobs_dir(&s);
    // Another job's name, and a served slot far in the future.
    fs::write(dir.join("daily.json"), state(1, "hourly", "null")).unwrap();
    let future = "{\"wall\": \"2099-01-01T00:00:00\", \"at\": \"2099-01-01T00:00:00Z\"}";
    fs::write(dir.join("hourly.json"), state(1, "hourly", future)).unwrap();
    let d = s.start(None);
    let st = s.ctl_json(&["status"]);
    let log = s.stderr_log();
    for (i, (job, why)) in [("daily", "hourly"), ("hourly", "future")]
        .iter()
        .enumerate()
    {
        let p = st["jobs"][i]["state_problem"].as_str().unwrap_or_default();
        assert!(
            p.contains(&format!("{job}.json")) && p.contains(why) && p.contains("moved to"),
            "{st}"
        );
        assert!(
            log.contains(&format!("{job}.json")) && log.contains("moved to"),
            "{log}"
        );
    }
    let names = listing(&dir);
    assert_eq!(
        names.iter().filter(|n| n.contains(".damaged-")).count(),
        2,
        "{names:?}"
    );
    let daily: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("daily.json")).unwrap()).unwrap();
    assert_eq!(daily["job"], "daily");
    drop(d);
}

#[test]
fn a_state_file_from_a_newer_backupd_is_refused_and_left_alone() {
    let s = Setup::new(DAILY);
    let dir = jobs_dir(&s);
    let text = state(99, "daily", "null");
    fs::write(dir.join("daily.json"), &text).unwrap();
    let d = s.start(None);
    let st = s.ctl_json(&["status"]);
    let p = st["jobs"][0]["state_problem"].as_str().unwrap_or_default();
    assert!(p.contains("newer backupd") && p.contains("upgrade"), "{st}");
    assert_eq!(st["jobs"][0]["state"], "refused", "{st}");
    assert_eq!(st["jobs"][0]["health"]["level"], "error", "{st}");
    let o = s.ctl(&["run", "daily"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(show(&o).contains("newer backupd"), "{}", show(&o));
    wait_for(Duration::from_secs(5), "the log line", || {
        s.stderr_log().contains("newer backupd")
    });
    drop(d);
    assert_eq!(fs::read_to_string(dir.join("daily.json")).unwrap(), text);
}
