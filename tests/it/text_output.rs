//! What backupctl's text output tells a person, against a real daemon: times that carry their zone, a health count that matches the reasons listed, one coverage figure, an error shown once, each hook line logged once, and a log that names a run's end as its history does.

use crate::support::daemon::*;
use crate::support::*;
use serde_json::Value;
use std::fs;
use std::process::{Command, Output};
use std::time::Duration;

/// backupctl runs in this zone (the daemon in UTC, the job in Asia/Kolkata): three zones.
const CTL_ZONE: &str = "Asia/Tokyo";

/// `backupctl ARGS --config CFG` in [`CTL_ZONE`].
fn ctl(s: &Setup, args: &[&str]) -> Output {
    Command::new(BACKUPCTL)
        .args(args)
        .arg("--config")
        .arg(&s.cfg)
        .env("TZ", CTL_ZONE)
        .env_remove("BACKUPD_CONFIG")
        .env_remove("BACKUPD_SOCKET")
        .output()
        .unwrap()
}

/// `backupctl -r REPO ARGS` in [`CTL_ZONE`].
fn repo_ctl(env: &Env, args: &[&str]) -> Output {
    env.ctl_cmd(args).env("TZ", CTL_ZONE).output().unwrap()
}

/// stdout and stderr together.
fn all_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every date and time in `text` (`2026-12-01 05:02` or `2026-12-01 05:02:06`) that is not
/// followed by its zone: ` +09:00`, ` -05:00`, ` UTC` or an IANA name such as ` Asia/Kolkata`.
fn times_without_zone(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| {
        b.get(from..from + n)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let mut found = Vec::new();
    for i in 0..b.len() {
        let starts = digits(i, 4)
            && at(i + 4, b'-')
            && digits(i + 5, 2)
            && at(i + 7, b'-')
            && digits(i + 8, 2)
            && at(i + 10, b' ')
            && digits(i + 11, 2)
            && at(i + 13, b':')
            && digits(i + 14, 2);
        if !starts || (i > 0 && b[i - 1].is_ascii_digit()) {
            continue;
        }
        let mut end = i + 16;
        if at(end, b':') && digits(end + 1, 2) {
            end += 3;
        }
        let rest = &text[end..];
        let offset = (rest.starts_with(" +") || rest.starts_with(" -"))
            && rest.len() >= 7
            && rest.as_bytes()[2..4].iter().all(u8::is_ascii_digit)
            && rest.as_bytes()[4] == b':';
        let name = rest
            .strip_prefix(' ')
            .and_then(|r| {
                r.split(|c: char| c.is_whitespace() || c == ')' || c == ';' || c == ',')
                    .next()
            })
            .is_some_and(|w| {
                w == "UTC" || (w.contains('/') && w.starts_with(|c: char| c.is_ascii_uppercase()))
            });
        if !offset && !name {
            found.push(text[i..(end + 12).min(text.len())].to_string());
        }
    }
    found
}

#[test]
fn the_zone_check_itself_tells_zoned_from_bare_times() {
    assert!(times_without_zone(
        "at 2026-12-01 05:02:06 +09:00, 2026-12-01 05:02 Asia/Kolkata; 2026-12-01 05:02 UTC"
    )
    .is_empty());
    assert_eq!(
        times_without_zone("started 2026-12-01 05:02:06  success").len(),
        1
    );
    assert_eq!(times_without_zone("scheduled 2026-12-01 05:02)").len(), 1);
}

/// The `overall:` line's count and the reasons listed under it.
fn health_count_and_listed(text: &str) -> (usize, usize) {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("overall:"));
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("no overall line:\n{text}"));
    let count = head
        .split_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let listed = lines.take_while(|l| l.starts_with("  ")).count();
    (count, listed)
}

#[test]
fn every_time_shown_carries_its_zone_and_health_lists_every_reason_it_counts() {
    let s = Setup::new(
        "[jobs.app]\nrepository = \"main\"\npaths = [\"{data}\"]\nschedule = \"*/4 * * * * *\"\ntimezone = \"Asia/Kolkata\"\nretries = { attempts = 0 }\n[jobs.app.hooks]\nbefore = [\"test ! -e {data}/../fail\"]\n",
    );
    let d = s.start(None);
    wait_for(Duration::from_secs(60), "a scheduled success", || {
        !runs(&s.history("app"), "success").is_empty()
    });
    fs::write(s.env.path("fail"), "").unwrap();
    wait_for(Duration::from_secs(60), "a scheduled failure", || {
        !runs(&s.history("app"), "failed").is_empty()
    });

    let history = all_text(&ctl(&s, &["history", "app"]));
    assert!(history.contains(" +09:00 "), "backupctl's zone:\n{history}");
    assert!(
        history.contains("scheduled ") && history.contains(" Asia/Kolkata"),
        "the job's zone in the reason:\n{history}"
    );
    for args in [&["history", "app"][..], &["status"], &["jobs"], &["health"]] {
        let text = all_text(&ctl(&s, args));
        assert_eq!(
            times_without_zone(&text),
            Vec::<String>::new(),
            "{args:?}:\n{text}"
        );
    }
    let health = all_text(&ctl(&s, &["health"]));
    assert!(health.contains("last success "), "{health}");
    let (count, listed) = health_count_and_listed(&health);
    assert!(count >= 1, "{health}");
    assert_eq!(count, listed, "{health}");

    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    // Without the daemon "backupd is not running" is one more reason: both are listed.
    let o = ctl(&s, &["health"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let health = all_text(&o);
    let (count, listed) = health_count_and_listed(&health);
    assert!(count >= 2, "{health}");
    assert_eq!(count, listed, "{health}");
    for args in [&["status"][..], &["history", "app"]] {
        let text = all_text(&ctl(&s, args));
        assert_eq!(
            times_without_zone(&text),
            Vec::<String>::new(),
            "{args:?}:\n{text}"
        );
    }
    // The repository commands' times too.
    for args in [
        &["snapshots"][..],
        &["ls", "-l", "latest"],
        &["forget", "--keep-last", "1", "-n"],
    ] {
        let o = repo_ctl(&s.env, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", show(&o));
        let text = all_text(&o);
        assert!(text.contains(" +09:00"), "{args:?}:\n{text}");
        assert_eq!(
            times_without_zone(&text),
            Vec::<String>::new(),
            "{args:?}:\n{text}"
        );
    }
}

#[test]
fn status_shows_one_coverage_figure_for_the_packs_read_back() {
    let s = Setup::new("[jobs.app]\nrepository = \"main\"\npaths = [\"{data}\"]\n");
    // A cycle of an hour with a share every 2 s: each share reads one pack of several.
    let cfg = fs::read_to_string(&s.cfg).unwrap().replace(
        "[jobs.app]",
        "[repositories.main.verify]\nread_data = \"*/2 * * * * *\"\nread_data_cycle = \"1h\"\n\n[jobs.app]",
    );
    fs::write(&s.cfg, cfg).unwrap();
    for i in 0..3 {
        fs::write(s.data.join(format!("r{i}.bin")), bytes(40 + i, 3 << 20)).unwrap();
        s.env.ctl_ok(&["backup", s.data.to_str().unwrap()]);
    }
    let d = s.start(None);
    wait_for(
        Duration::from_secs(60),
        "a read-data share and its measurement",
        || {
            let st = s.ctl_json(&["status"]);
            let r = &st["repositories"][0];
            r["drills"][0]["last_ok"] == true && r["coverage"].as_f64().is_some_and(|c| c > 0.0)
        },
    );
    let o = ctl(&s, &["status"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let repo: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("repository main"))
        .collect();
    let figures: Vec<&&str> = repo
        .iter()
        .filter(|l| l.contains('%') && !l.trim_start().starts_with("storage"))
        .collect();
    assert_eq!(figures.len(), 1, "one coverage figure:\n{text}");
    assert!(
        figures[0].trim_start().starts_with("coverage")
            && figures[0].contains("of the packs verified"),
        "{text}"
    );
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
}

/// The lines of one run's log (text, as the daemon writes it).
fn run_log(s: &Setup, run_id: &str) -> Vec<String> {
    let o = ctl(s, &["logs", "--run-id", run_id, "-n", "1000"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn run_wait_shows_the_error_once_and_each_hook_line_is_logged_once() {
    let s = Setup::new(
        "[jobs.bad]\nrepository = \"main\"\npaths = [\"{data}\"]\nretries = { attempts = 0 }\n[jobs.bad.hooks]\nbefore = [\"echo nope >&2; exit 7\"]\n",
    );
    let d = s.start(None);
    let o = ctl(&s, &["run", "bad", "--wait"]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    let text = all_text(&o);
    assert_eq!(
        text.matches("it exited with status 7").count(),
        1,
        "the error once:\n{text}"
    );
    let run_id = s.history("bad")[0]["run_id"].as_str().unwrap().to_string();
    let m = run_log(&s, &run_id);
    let count = |f: &dyn Fn(&str) -> bool| m.iter().filter(|l| f(l)).count();
    assert_eq!(count(&|l| l.contains("running before hook")), 1, "{m:#?}");
    // The hook's one line of output, once (its command, which names it too, left aside).
    let output = |l: &str| l.replace("echo nope >&2; exit 7", "").contains("nope");
    assert_eq!(count(&output), 1, "{m:#?}");
    assert_eq!(
        count(&|l| l.contains("it exited with status 7")),
        1,
        "{m:#?}"
    );
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
}

#[test]
fn a_run_stopped_by_sigterm_is_interrupted_in_the_log_as_in_its_history() {
    let s = Setup::new(
        "[jobs.slow]\nrepository = \"main\"\npaths = [\"{data}\"]\n[jobs.slow.hooks]\nbefore = [\"sleep 3\"]\n",
    );
    let d = s.start(None);
    let o = ctl(&s, &["--json", "run", "slow"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let run_id = serde_json::from_slice::<Value>(&o.stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for(Duration::from_secs(20), "the run to start", || {
        !s.ctl_json(&["status"])["jobs"][0]["running"].is_null()
    });
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    let h = s.history("slow");
    assert_eq!(h[0]["outcome"], "interrupted", "{h:#?}");
    let m = run_log(&s, &run_id);
    assert!(
        m.iter().any(|l| l.contains("interrupted")),
        "the run's end in the log:\n{m:#?}"
    );
    assert!(
        !m.iter().any(|l| l.contains("failed")),
        "the log says failed, the history interrupted:\n{m:#?}"
    );
}
