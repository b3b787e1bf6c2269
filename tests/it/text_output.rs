//! What backupctl's text output tells a person, against a real daemon: one coverage figure, an error shown once, each hook line logged once, and a log that names a run's end as its history does.

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

/// stdout and stderr together.
fn all_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
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
