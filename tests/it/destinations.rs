//! Several destinations per job: a daemon backs up on schedule into a local repository and copies each snapshot to a real Garage S3 repository; Garage is stopped for three runs and restarted.

use crate::support::daemon::{runs, wait_for, Setup};
use crate::support::remote::Garage;
use crate::support::{show, BACKUPCTL};
use serde_json::Value;
use std::collections::HashMap;
use std::fs;
use std::process::{Command, Output};
use std::time::Duration;

/// The configuration: `app` backs up every 4 s into `main` and copies to `offsite` (Garage),
/// which keeps more and retries every second; notifications go to notes.jsonl, metrics to a
/// file.
fn config(s: &Setup, g: &Garage, schedule: &str) -> String {
    let d = s.env.dir.path().display().to_string();
    fs::write(s.env.path("s3-secret"), format!("{}\n", g.secret)).unwrap();
    let jobs = format!(
        r#"[daemon.notify]
events = ["success", "failure", "recovered"]
command = "cat >> {d}/notes.jsonl; echo >> {d}/notes.jsonl"

[repositories.offsite]
path = "{loc}"
password_file = "{pw}"
s3_access_key_id = "{id}"
s3_secret_access_key_file = "{d}/s3-secret"
s3_region = "garage"

[jobs.app]
repositories = ["main", "offsite"]
paths = ["{{data}}"]
{schedule}
retention = {{ keep_last = 30 }}

[jobs.app.destinations.offsite]
retention = {{ keep_last = 50 }}
retries = {{ attempts = 1000, delay = "1s", factor = 1.0, max_delay = "1s" }}
"#,
        loc = g.location("offsite"),
        pw = s.env.pw.display(),
        id = g.key_id,
    );
    s.config_text(&jobs).replace(
        "shutdown_timeout = \"20s\"\n",
        &format!("shutdown_timeout = \"20s\"\nmetrics_file = \"{d}/backupd.prom\"\n"),
    )
}

/// `backupctl ARGS` on the S3 repository.
fn ctl_s3(s: &Setup, g: &Garage, args: &[&str]) -> Output {
    let mut c = Command::new(BACKUPCTL);
    g.creds(&mut c)
        .arg("-r")
        .arg(g.location("offsite"))
        .arg("--password-file")
        .arg(&s.env.pw)
        .args(args);
    c.output().unwrap()
}

/// The job's snapshots in a repository's `snapshots --json`: id → (time, original).
fn snapshots(out: &Output) -> HashMap<String, (String, String)> {
    assert_eq!(out.status.code(), Some(0), "{}", show(out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap().to_string();
            let time = s["time"].as_str().unwrap().to_string();
            let orig = s["original"].as_str().unwrap_or("").to_string();
            (id, (time, orig))
        })
        .collect()
}

fn successes_after(h: &[Value], after: &str) -> Vec<Value> {
    runs(h, "success")
        .into_iter()
        .filter(|r| r["start"].as_str().unwrap() > after)
        .cloned()
        .collect()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn restic_s3_check(s: &Setup, g: &Garage) {
    let mut c = Command::new("restic");
    let o = g
        .creds(&mut c)
        .arg("-r")
        .arg(g.location("offsite"))
        .arg("--password-file")
        .arg(&s.env.pw)
        .args(["--no-cache", "check", "--read-data"])
        .output()
        .unwrap();
    assert!(o.status.success(), "restic check of S3: {}", show(&o));
}

#[test]
fn an_offsite_destination_down_for_three_runs_catches_up_oldest_first_and_blocks_nothing() {
    let mut g = Garage::start();
    let s = Setup::new("");
    let o = ctl_s3(&s, &g, &["init"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    fs::write(&s.cfg, config(&s, &g, "schedule = \"*/4 * * * * *\"")).unwrap();
    let d = s.start(None);
    wait_for(Duration::from_secs(90), "a first copy to offsite", || {
        !runs(&s.history("app@offsite"), "success").is_empty()
    });

    // Garage down: three scheduled backups succeed locally, on time; each copy fails.
    g.stop();
    let stopped = now_rfc3339();
    wait_for(
        Duration::from_secs(120),
        "three backups while S3 is down",
        || successes_after(&s.history("app"), &stopped).len() >= 3,
    );
    let down = successes_after(&s.history("app"), &stopped);
    let missed: Vec<String> = down
        .iter()
        .map(|r| r["snapshot_id"].as_str().unwrap().to_string())
        .collect();
    for r in &down {
        assert!(
            r["reason"].as_str().unwrap().starts_with("scheduled"),
            "{r}"
        );
    }
    wait_for(Duration::from_secs(60), "a failed copy", || {
        runs(&s.history("app@offsite"), "failed")
            .iter()
            .any(|r| r["start"].as_str().unwrap() > stopped.as_str())
    });
    let failed = s.history("app@offsite");
    let err = runs(&failed, "failed").last().unwrap()["error"].to_string();
    assert!(
        err.contains(&format!("127.0.0.1:{}", g.port)),
        "names S3: {err}"
    );
    // Health: the job is healthy, its offsite destination is not.
    let h = String::from_utf8_lossy(&s.ctl(&["health"]).stdout).into_owned();
    assert!(h.contains("app: healthy"), "{h}");
    assert!(
        h.contains("app@offsite: warning") || h.contains("app@offsite: error"),
        "{h}"
    );

    // No more backups (the schedule removed, the configuration reloaded)...
    fs::write(&s.cfg, config(&s, &g, "")).unwrap();
    let o = s.ctl(&["reload"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let idle = || {
        s.ctl_json(&["status"])["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["name"] == "app" && j["state"] == "idle")
    };
    wait_for(Duration::from_secs(60), "the backup idle", idle);
    let backups = s.history("app").len();
    let quiet = now_rfc3339();
    wait_for(
        Duration::from_secs(60),
        "a failed retry of the copy",
        || {
            s.history("app@offsite")
                .iter()
                .any(|r| r["outcome"] == "failed" && r["start"].as_str().unwrap() > quiet.as_str())
        },
    );

    // ...and Garage back: the destination catches up by itself at its next retry, oldest
    // first: its first success since the stop copies every snapshot it missed.
    g.restart();
    let first_success = || {
        successes_after(&s.history("app@offsite"), &stopped)
            .into_iter()
            .next()
    };
    wait_for(Duration::from_secs(120), "the catch-up copy", || {
        first_success().is_some()
    });
    let caught_up = first_success().unwrap();
    assert!(
        caught_up["copied"].as_u64().unwrap() >= 3,
        "one run copied the missed snapshots: {caught_up}"
    );
    assert!(
        caught_up["reason"].as_str().unwrap().starts_with("retry "),
        "{caught_up}"
    );
    assert_eq!(s.history("app").len(), backups, "no new backup");
    let (_, _) = d.term();

    let local = snapshots(&s.env.ctl(&["--json", "snapshots"]));
    let offsite = snapshots(&ctl_s3(&s, &g, &["--json", "snapshots"]));
    let originals: Vec<&String> = offsite.values().map(|(_, o)| o).collect();
    for id in &missed {
        assert!(originals.contains(&id), "{id} reached offsite: {offsite:?}");
    }
    assert!(
        offsite.len() <= local.len() && offsite.len() > missed.len(),
        "the first copy and the missed ones"
    );
    // The log names each copy in the order it was made: oldest first.
    let log: String = fs::read_dir(s.env.path("logs"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    let order: Vec<String> = log
        .lines()
        .filter(|l| l.contains("of job app copied to"))
        .filter_map(|l| {
            l.split("snapshot ")
                .nth(1)?
                .split(' ')
                .next()
                .map(String::from)
        })
        .collect();
    let times: Vec<&String> = order.iter().map(|id| &local[id].0).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "copies oldest first: {order:?}");
    for id in &missed {
        assert!(order.contains(id), "{id} copied: {order:?}");
    }

    // Notifications name the destination: its failure and its recovery, apart from the job's.
    let notes = fs::read_to_string(s.env.path("notes.jsonl")).unwrap();
    let note = |what: &str| notes.lines().any(|l| l.contains(what));
    assert!(note("destination offsite of job app failed"), "{notes}");
    assert!(note("destination offsite of job app recovered"), "{notes}");
    assert!(note("backup job app succeeded"), "{notes}");
    assert!(
        !note("backup job app failed"),
        "the job never failed: {notes}"
    );
    // Metrics: one series per destination.
    let m = fs::read_to_string(s.env.path("backupd.prom")).unwrap();
    assert!(
        m.contains("job=\"app@offsite\"") && m.contains("job=\"app\""),
        "{m}"
    );

    // Both repositories are whole to restic.
    s.env.restic_ok(&["check", "--read-data"]);
    restic_s3_check(&s, &g);
}

/// `backupctl run-job` without a daemon: the backup, then each destination, each recorded in
/// its own history; one JSON report with the destinations' in it; a second run copies only the
/// new snapshot, and the destination's own retention applies to it alone.
#[test]
fn run_job_backs_up_once_and_copies_to_each_destination() {
    let s = Setup::new("");
    let second = s.env.path("second");
    let at_second = |args: &[&str]| crate::support::ctl_at(&second, &s.env.pw, args);
    let o = at_second(&["init"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let jobs = format!(
        "[repositories.second]\npath = \"{}\"\npassword_file = \"{}\"\n\n[jobs.app]\nrepositories = [\"main\", \"second\"]\npaths = [\"{{data}}\"]\nretention = {{ keep_last = 5 }}\n\n[jobs.app.destinations.second]\nretention = {{ keep_last = 1 }}\n",
        second.display(),
        s.env.pw.display()
    );
    s.write_config(&jobs);
    let run = || {
        let o = s.ctl(&["--json", "run-job", "app"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let r1 = run();
    assert_eq!(r1["outcome"], "success", "{r1:#}");
    let d1 = &r1["destinations"][0];
    assert_eq!(d1["job"], "app@second", "{r1:#}");
    assert_eq!(
        d1["copied"]["copied"].as_array().unwrap().len(),
        1,
        "{d1:#}"
    );
    fs::write(s.data.join("b.txt"), "new").unwrap();
    let r2 = run();
    let d2 = &r2["destinations"][0];
    let copied = d2["copied"]["copied"].as_array().unwrap();
    assert_eq!(copied.len(), 1, "only the new snapshot: {d2:#}");
    assert_eq!(copied[0][0], r2["snapshot_id"], "{d2:#}");
    assert_eq!(
        d2["retention"]["removed"].as_array().unwrap().len(),
        1,
        "{d2:#}"
    );
    // main keeps 5, second keeps 1: the copy forgotten there is not copied again.
    let main = snapshots(&s.env.ctl(&["--json", "snapshots"]));
    let other = snapshots(&at_second(&["--json", "snapshots"]));
    assert_eq!((main.len(), other.len()), (2, 1));
    let r3 = run();
    assert_eq!(
        r3["destinations"][0]["copied"]["copied"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{r3:#}"
    );
    assert_eq!(s.history("app@second").len(), 3);
    assert_eq!(s.history("app").len(), 3);
}
