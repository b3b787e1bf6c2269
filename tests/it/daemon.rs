//! Integration tests of `backupd` with real daemon processes: schedules, catch-up after kill -9, policies, SIGTERM mid-backup, reloads, the control socket, and a month of faked time across DST.

use crate::support::daemon::*;
use crate::support::*;
use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::time::Duration;

#[test]
fn a_job_runs_on_its_schedule_and_a_killed_daemon_catches_up_once() {
    let s = Setup::new(
        "[jobs.tick]\nrepository = \"main\"\npaths = [\"{data}\"]\nschedule = \"*/10 * * * * *\"\ntimezone = \"UTC\"\nretries = { attempts = 0 }\n",
    );
    let d = s.start(None);
    wait_for(Duration::from_secs(40), "two scheduled runs", || {
        runs(&s.history("tick"), "success").len() >= 2
    });
    let h = s.history("tick");
    for r in runs(&h, "success") {
        assert!(reason(r).starts_with("scheduled "), "{r}");
        // On time: never before its slot (the slot is the wall time, UTC here).
        // Labels give seconds only when they are not zero ("12:00:10", "12:00").
        let label = r["slot"].as_str().unwrap();
        let slot = chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%d %H:%M"))
            .unwrap_or_else(|e| panic!("slot label {label:?}: {e}"))
            .and_utc();
        let start = chrono::DateTime::parse_from_rfc3339(r["start"].as_str().unwrap()).unwrap();
        let late = (start.timestamp_millis() - slot.timestamp_millis()) as f64 / 1000.0;
        assert!(
            (0.0..8.0).contains(&late),
            "run {r} started {late} s after its slot"
        );
        assert!(r["snapshot_id"].is_string());
    }
    let st = s.ctl_json(&["status"]);
    let j = &st["jobs"][0];
    assert_eq!(j["name"], "tick");
    assert!(
        j["next_run"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("scheduled"),
        "{st}"
    );

    d.kill9();
    let before = s.history("tick").len();
    // Two or more slots pass while it is down.
    std::thread::sleep(Duration::from_secs(25));
    let d = s.start(None);
    wait_for(Duration::from_secs(30), "the catch-up run", || {
        s.history("tick").len() > before
    });
    // Then the next regular slot.
    wait_for(
        Duration::from_secs(30),
        "a scheduled run after the catch-up",
        || {
            s.history("tick")[before..]
                .iter()
                .any(|r| reason(r).starts_with("scheduled"))
        },
    );
    let h = s.history("tick");
    let after: Vec<&Value> = h[before..].iter().collect();
    let catch_ups: Vec<&&Value> = after
        .iter()
        .filter(|r| reason(r).starts_with("catch-up"))
        .collect();
    assert_eq!(catch_ups.len(), 1, "exactly one catch-up run: {after:#?}");
    let c = reason(catch_ups[0]);
    assert!(c.contains("missed while backupd was stopped"), "{c}");
    assert_eq!(catch_ups[0]["outcome"], "success");
    // Every slot served once at most.
    let mut slots: Vec<&str> = h.iter().filter_map(|r| r["slot"].as_str()).collect();
    let n = slots.len();
    slots.sort();
    slots.dedup();
    assert_eq!(slots.len(), n, "a slot ran twice: {h:#?}");
    let (code, _) = d.term();
    assert_eq!(code, Some(0), "{}", s.stderr_log());
    s.env.restic_ok(&["check"]);
}

#[test]
fn a_run_killed_mid_way_is_recorded_and_run_again_at_the_next_start() {
    let s = Setup::new(
        "[jobs.slow]\nrepository = \"main\"\npaths = [\"{data}\"]\nretries = { attempts = 0 }\n[jobs.slow.hooks]\nbefore = [\"sleep 4\"]\n",
    );
    let d = s.start(None);
    let o = s.ctl(&["run", "slow"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_for(Duration::from_secs(10), "the run to start", || {
        s.ctl_json(&["status"])["jobs"][0]["state"] == "running"
    });
    d.kill9();
    let d = s.start(None);
    wait_for(Duration::from_secs(40), "the resumed run", || {
        runs(&s.history("slow"), "success").len() == 1
    });
    let h = s.history("slow");
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0]["outcome"], "interrupted");
    assert!(
        h[0]["error"]
            .as_str()
            .unwrap()
            .contains("backupd stopped during this run"),
        "{h:#?}"
    );
    assert!(reason(&h[1]).starts_with("retry 1 of 1"), "{h:#?}");
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
}

/// Catch-up policies, on a daily 02:30 job with the clock faked: up across one slot, then
/// stopped for two days and started at 05:00 (the newest missed slot is 2.5 h old).
#[test]
fn catch_up_policies_once_skip_and_within() {
    let job = |name: &str, policy: &str| {
        format!("[jobs.{name}]\nrepository = \"main\"\npaths = [\"{{data}}\"]\nschedule = \"30 2 * * *\"\ntimezone = \"UTC\"\ncatch_up = \"{policy}\"\nretries = {{ attempts = 0 }}\n")
    };
    let s = Setup::new(&format!(
        "{}{}{}{}",
        job("once", "once"),
        job("skip", "skip"),
        job("recent", "within 6h"),
        job("stale", "within 1h")
    ));
    let day1 = epoch("2026-06-01T02:29:50Z");
    let d = s.start(Some(day1 - real_now()));
    for j in ["once", "skip", "recent", "stale"] {
        wait_for(Duration::from_secs(30), "the first scheduled run", || {
            runs(&s.history(j), "success").len() == 1
        });
        assert_eq!(
            reason(&s.history(j)[0]),
            "scheduled 2026-06-01 02:30 UTC",
            "{j}"
        );
    }
    let (code, _) = d.term();
    assert_eq!(code, Some(0));

    let day3 = epoch("2026-06-03T05:00:00Z");
    let d = s.start(Some(day3 - real_now()));
    wait_for(Duration::from_secs(30), "the catch-up decisions", || {
        ["once", "skip", "recent", "stale"]
            .iter()
            .all(|j| s.history(j).len() == 2 && s.history(j)[1]["outcome"] != "running")
    });
    wait_for(Duration::from_secs(30), "the catch-up runs to end", || {
        ["once", "recent"]
            .iter()
            .all(|j| runs(&s.history(j), "success").len() == 2)
    });
    for j in ["once", "recent"] {
        let h = s.history(j);
        let r = reason(&h[1]);
        assert!(
            r.starts_with("catch-up for 2026-06-03 02:30 UTC missed while backupd was stopped")
                && r.contains("2 slots missed"),
            "{j}: {r}"
        );
        assert_eq!(h[1]["slot"], "2026-06-03 02:30");
    }
    for j in ["skip", "stale"] {
        let h = s.history(j);
        assert_eq!(h.len(), 2, "{j}: {h:#?}");
        assert_eq!(h[1]["outcome"], "skipped", "{j}: {h:#?}");
        assert_eq!(h[1]["slot"], "2026-06-03 02:30");
        assert!(h[1]["snapshot_id"].is_null());
    }
    assert!(
        reason(&s.history("stale")[1]).contains("1h")
            || reason(&s.history("stale")[1]).contains("older"),
        "{:#?}",
        s.history("stale")
    );
    // Nothing else runs until the next slot.
    std::thread::sleep(Duration::from_secs(2));
    for j in ["once", "skip", "recent", "stale"] {
        assert_eq!(s.history(j).len(), 2, "{j}");
        let st = s.ctl_json(&["status"]);
        let job = st["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == j)
            .unwrap()
            .clone();
        assert_eq!(
            job["next_run"]["at"].as_str().map(|t| &t[..16]),
            Some("2026-06-04T02:30"),
            "{job}"
        );
    }
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
}

#[test]
fn sigterm_during_a_large_backup_exits_in_bounded_time_and_the_repository_checks_green() {
    let s = Setup::new(
        "[jobs.big]\nrepository = \"main\"\npaths = [\"{data}\"]\nretries = { attempts = 1, delay = \"1s\" }\n",
    );
    for i in 0..6 {
        fs::write(s.data.join(format!("big{i}.bin")), bytes(100 + i, 64 << 20)).unwrap();
    }
    let d = s.start(None);
    let o = s.ctl(&["run", "big"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_for(
        Duration::from_secs(20),
        "the backup to be under way",
        || {
            let st = s.ctl_json(&["status"]);
            st["jobs"][0]["running"]["done"].as_u64().unwrap_or(0) > 0
        },
    );
    let (code, took) = d.term();
    assert_eq!(code, Some(0), "{}", s.stderr_log());
    assert!(
        took < Duration::from_secs(25),
        "took {took:?} (shutdown_timeout is 20s)"
    );
    eprintln!("backupd stopped {took:?} after SIGTERM mid-backup");
    let h = s.history("big");
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["outcome"], "interrupted", "{h:#?}");
    assert!(h[0]["snapshot_id"].is_null());
    s.env.restic_ok(&["check", "--read-data"]);
    let snaps: Value = serde_json::from_str(&s.env.restic_ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(
        snaps.as_array().unwrap().len(),
        0,
        "nothing half-committed is visible"
    );
    // The next start resumes it.
    let d = s.start(None);
    wait_for(Duration::from_secs(120), "the resumed run", || {
        runs(&s.history("big"), "success").len() == 1
    });
    assert!(reason(&s.history("big")[1]).starts_with("retry 1 of 1"));
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    s.env.restic_ok(&["check"]);
}

#[test]
fn a_broken_config_is_rejected_on_reload_and_the_old_one_kept() {
    let good = "[jobs.a]\nrepository = \"main\"\npaths = [\"{data}\"]\n";
    let s = Setup::new(good);
    let d = s.start(None);
    // Broken: an unknown key. SIGHUP reloads; the old configuration stays.
    fs::write(&s.cfg, s.config_text(&format!("{good}colour = \"blue\"\n"))).unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_for(
        Duration::from_secs(10),
        "the reload error in status",
        || !s.ctl_json(&["status"])["daemon"]["config_error"].is_null(),
    );
    let st = s.ctl_json(&["status"]);
    let err = st["daemon"]["config_error"].as_str().unwrap();
    assert!(
        err.contains("backupd.toml:14:1") && err.contains("colour"),
        "{err}"
    );
    assert_eq!(st["jobs"].as_array().unwrap().len(), 1);
    let o = s.ctl(&["reload"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("previous one stays in force"),
        "{}",
        show(&o)
    );
    // The old job still runs.
    let o = s.ctl(&["run", "a", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // A fixed file is picked up by the file watcher, without a signal.
    s.write_config(&format!(
        "{good}[jobs.b]\nrepository = \"main\"\npaths = [\"{{data}}\"]\n"
    ));
    wait_for(Duration::from_secs(10), "the watcher's reload", || {
        s.ctl_json(&["status"])["jobs"].as_array().unwrap().len() == 2
    });
    assert!(s.ctl_json(&["status"])["daemon"]["config_error"].is_null());
    let log = s.stderr_log();
    assert!(
        log.contains("configuration was not reloaded") && log.contains("configuration reloaded"),
        "{log}"
    );
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
}

#[test]
fn backupctl_talks_to_the_daemon_run_wait_cancel_history_and_errors() {
    let s = Setup::new(
        "[jobs.ok]\nrepository = \"main\"\npaths = [\"{data}\"]\n\n[jobs.bad]\nrepository = \"main\"\npaths = [\"{data}\"]\nretries = { attempts = 0 }\n[jobs.bad.hooks]\nbefore = [\"echo nope >&2; exit 7\"]\n\n[jobs.slow]\nrepository = \"main\"\npaths = [\"{data}\"]\nretries = { attempts = 0 }\n[jobs.slow.hooks]\nbefore = [\"sleep 3\"]\n",
    );
    // No daemon yet: exit 13 with a hint.
    let o = s.ctl(&["run", "ok"]);
    assert_eq!(o.status.code(), Some(13), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("backupd is not running"),
        "{}",
        show(&o)
    );
    let d = s.start(None);
    // A second daemon on the same state folder refuses to start.
    let o = Command::new(BACKUPD)
        .arg("--config")
        .arg(&s.cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(75), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already running"),
        "{}",
        show(&o)
    );

    let o = s.ctl(&["run", "ok", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("success"),
        "{}",
        show(&o)
    );
    let o = s.ctl(&["run", "bad", "--wait"]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nope"),
        "{}",
        show(&o)
    );
    let o = s.ctl(&["run", "nosuch"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no job \"nosuch\""),
        "{}",
        show(&o)
    );

    // Cancel a run in its before-hook... the hook is not interruptible, the backup is: the run
    // ends cancelled, without a snapshot and without a retry.
    assert_eq!(s.ctl(&["run", "slow"]).status.code(), Some(0));
    let o = s.ctl(&["run", "slow"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a second run of a running job: {}",
        show(&o)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("already running"));
    let o = s.ctl(&["cancel", "slow"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_for(Duration::from_secs(20), "the cancelled run", || {
        s.history("slow").len() == 1
    });
    assert_eq!(s.history("slow")[0]["outcome"], "cancelled");

    let st = s.ctl_json(&["status"]);
    let bad = st["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "bad")
        .unwrap();
    assert_eq!(bad["consecutive_failures"], 1);
    assert_eq!(bad["last_run"]["outcome"], "failed");
    let o = s.ctl(&["status"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("last error"),
        "{}",
        show(&o)
    );
    let o = s.ctl(&["jobs"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("(manual)"),
        "{}",
        show(&o)
    );

    // Logs: the daemon's file, filtered by job.
    let o = s.ctl(&["logs", "--job", "bad", "-n", "200"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("job=bad") && !out.contains("job=ok"),
        "{}",
        show(&o)
    );

    // A client of another protocol version is told so.
    let mut c = std::os::unix::net::UnixStream::connect(s.socket()).unwrap();
    c.write_all(
        b"{\"protocol\": 99, \"client\": \"future\", \"request\": {\"type\": \"status\"}}\n",
    )
    .unwrap();
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).unwrap();
    assert!(
        line.contains("\"kind\":\"version\"") && line.contains("protocol 99"),
        "{line}"
    );

    // Socket mode 0600.
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(s.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    // Without the daemon, history still reads the state file.
    assert_eq!(s.history("ok").len(), 1);
}

/// The instant a daily 02:30 Europe/Berlin slot runs on `day`, computed independently of the
/// scheduler: the earlier 02:30 on the fall-back day, the end of the gap (03:00 CEST) on the
/// spring-forward day.
fn berlin_0230(day: chrono::NaiveDate) -> i64 {
    use chrono::TimeZone;
    let wall = day.and_hms_opt(2, 30, 0).unwrap();
    match chrono_tz::Europe::Berlin.from_local_datetime(&wall) {
        chrono::LocalResult::Single(t) => t.timestamp(),
        chrono::LocalResult::Ambiguous(a, b) => a.timestamp().min(b.timestamp()),
        chrono::LocalResult::None => {
            // The gap is 02:00-03:00 CET; 03:00 CEST is 01:00 UTC.
            day.and_hms_opt(1, 0, 0).unwrap().and_utc().timestamp()
        }
    }
}

/// A month of a daily 02:30 job in Europe/Berlin with the clock faked, the daemon up across
/// some slots and stopped for random periods: every slot is served exactly once (run on time,
/// or covered by one catch-up that says so), none twice.
fn simulate_month(first_day: &str, seed: u64) {
    let s = Setup::new(
        "[jobs.daily]\nrepository = \"main\"\npaths = [\"{data}\"]\nschedule = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\ncatch_up = \"once\"\nretries = { attempts = 0 }\n",
    );
    let first = chrono::NaiveDate::parse_from_str(first_day, "%Y-%m-%d").unwrap();
    let days: Vec<chrono::NaiveDate> = (0..31).map(|i| first + chrono::Duration::days(i)).collect();
    let slots: Vec<i64> = days.iter().map(|d| berlin_0230(*d)).collect();
    let mut rnd = bytes(seed, 64).into_iter().cycle();
    // Each session: some slots missed while stopped (none before the first session, which
    // sets the baseline), then either up across the next slot (started 3 s before it) or
    // started 1-6 hours after it (its catch-up runs at once).
    let (mut i, mut sessions) = (0usize, 0);
    while i < slots.len() {
        let skip = if sessions == 0 {
            0
        } else {
            rnd.next().unwrap() as usize % 3
        };
        let j = (i + skip).min(slots.len() - 1);
        let up_across = sessions == 0 || rnd.next().unwrap().is_multiple_of(2);
        let start_at = if sessions == 0 {
            // The first start sets the baseline: well before the slot, however slow the start.
            slots[j] - 10
        } else if up_across {
            slots[j] - 3
        } else {
            slots[j] + 3600 * (1 + rnd.next().unwrap() as i64 % 6)
        };
        // Up across slot j: a catch-up for i..j-1 if any, then j on schedule (or, should the
        // start take longer than 3 s, one catch-up for all). Otherwise one catch-up for i..=j.
        // Either way the session ends once slot j is served.
        let day_j = days[j].format("%Y-%m-%d").to_string();
        let d = s.start(Some(start_at - real_now()));
        sessions += 1;
        wait_for(Duration::from_secs(40), "the session's runs", || {
            s.history("daily").iter().any(|r| {
                r["outcome"] == "success"
                    && r["slot"].as_str().is_some_and(|l| l.starts_with(&day_j))
            })
        });
        let (code, _) = d.term();
        assert_eq!(code, Some(0), "{}", s.stderr_log());
        let known = s.history("daily").len();
        assert_eq!(
            runs(&s.history("daily"), "success").len(),
            known,
            "{:#?}",
            s.history("daily")
        );
        i = j + 1;
    }
    let h = s.history("daily");
    assert!(sessions >= 8, "only {sessions} sessions");
    // Which days each run covers.
    let mut covered = vec![0u32; days.len()];
    let day_of = |label: &str| {
        let d = chrono::NaiveDate::parse_from_str(&label[..10], "%Y-%m-%d").unwrap();
        days.iter()
            .position(|x| *x == d)
            .unwrap_or_else(|| panic!("slot {label} outside the month"))
    };
    for r in &h {
        assert_eq!(r["outcome"], "success", "{r:#}");
        let slot = r["slot"]
            .as_str()
            .unwrap_or_else(|| panic!("a run without a slot: {r:#}"));
        let k = day_of(slot);
        let why = reason(r);
        if why.starts_with("scheduled") {
            let late = epoch(r["start"].as_str().unwrap()) - slots[k];
            assert!(
                (0..30).contains(&late),
                "{why}: started {late} s after its instant {}",
                slots[k]
            );
            covered[k] += 1;
        } else {
            assert!(
                why.starts_with("catch-up for") && why.contains("missed while backupd was stopped"),
                "{why}"
            );
            let from = day_of(r["first_missed"].as_str().unwrap());
            assert_eq!(
                r["missed"].as_u64().unwrap() as usize,
                k - from + 1,
                "{r:#}"
            );
            for c in &mut covered[from..=k] {
                *c += 1;
            }
        }
    }
    let doubled: Vec<_> = days.iter().zip(&covered).filter(|(_, c)| **c > 1).collect();
    let missed: Vec<_> = days
        .iter()
        .zip(&covered)
        .filter(|(_, c)| **c == 0)
        .collect();
    assert!(
        doubled.is_empty(),
        "slots served twice: {doubled:?}\n{h:#?}"
    );
    assert!(missed.is_empty(), "slots never served: {missed:?}\n{h:#?}");
    eprintln!(
        "{first_day}: {sessions} daemon sessions, {} runs, 31 slots each served once",
        h.len()
    );
}

#[test]
fn a_month_across_spring_forward_every_slot_once() {
    simulate_month("2026-03-15", 7);
}

#[test]
fn a_month_across_fall_back_every_slot_once() {
    simulate_month("2026-10-10", 11);
}

#[test]
fn a_jobs_retention_forgets_its_old_snapshots_and_prunes_after_each_run() {
    let s = Setup::new(
        "[jobs.kept]\nrepository = \"main\"\npaths = [\"{data}\"]\nretention = { keep_last = 2, prune = true }\n\n[jobs.other]\nrepository = \"main\"\npaths = [\"{data}\"]\n",
    );
    let d = s.start(None);
    assert_eq!(s.ctl(&["run", "other", "--wait"]).status.code(), Some(0));
    for i in 0..4 {
        fs::write(s.data.join(format!("new{i}.bin")), bytes(500 + i, 1 << 20)).unwrap();
        let o = s.ctl(&["run", "kept", "--wait"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    }
    let snaps: Value = serde_json::from_str(&s.env.restic_ok(&["snapshots", "--json"])).unwrap();
    let tags: Vec<String> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["tags"].to_string())
        .collect();
    assert_eq!(
        tags.iter().filter(|t| t.contains("job:kept")).count(),
        2,
        "{tags:?}"
    );
    assert_eq!(
        tags.iter().filter(|t| t.contains("job:other")).count(),
        1,
        "other jobs' snapshots are not touched: {tags:?}"
    );
    s.env.restic_ok(&["check", "--read-data"]);
    let log = fs::read_to_string(s.env.path("backupd.stderr")).unwrap();
    assert!(
        log.contains("retention of job kept: kept 2 snapshot(s), forgot 1"),
        "{log}"
    );
    drop(d);
    // A retention that keeps nothing is refused when the configuration is read.
    s.write_config(
        "[jobs.bad]\nrepository = \"main\"\npaths = [\"{data}\"]\nretention = { prune = true }\n",
    );
    let o = Command::new(BACKUPD)
        .arg("check-config")
        .arg("--config")
        .arg(&s.cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("retention keeps nothing"),
        "{}",
        show(&o)
    );
}

#[test]
fn jobs_on_one_repository_run_one_at_a_time() {
    let slow = |name: &str| {
        format!("[jobs.{name}]\nrepository = \"main\"\npaths = [\"{{data}}\"]\n[jobs.{name}.hooks]\nbefore = [\"sleep 2\"]\n\n")
    };
    let s = Setup::new(&format!("{}{}", slow("one"), slow("two")));
    let d = s.start(None);
    assert_eq!(s.ctl(&["run", "one"]).status.code(), Some(0));
    assert_eq!(s.ctl(&["run", "two"]).status.code(), Some(0));
    let st = s.ctl_json(&["status"]);
    let queued: Vec<&Value> = st["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "queued")
        .collect();
    assert_eq!(queued.len(), 1, "{st:#}");
    assert!(
        queued[0]["running"]["queued"]
            .as_str()
            .unwrap()
            .contains("another job on the repository"),
        "{st:#}"
    );
    wait_for(Duration::from_secs(30), "both runs", || {
        runs(&s.history("one"), "success").len() == 1
            && runs(&s.history("two"), "success").len() == 1
    });
    let (a, b) = (&s.history("one")[0], &s.history("two")[0]);
    let span = |r: &Value| {
        (
            chrono::DateTime::parse_from_rfc3339(r["start"].as_str().unwrap()).unwrap(),
            chrono::DateTime::parse_from_rfc3339(r["end"].as_str().unwrap()).unwrap(),
        )
    };
    let ((s1, e1), (s2, e2)) = (span(a), span(b));
    assert!(e1 <= s2 || e2 <= s1, "the runs overlapped: {a:#} {b:#}");
    drop(d);
}
