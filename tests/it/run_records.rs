//! What history and health make of the runs a person starts: a cancel is no failure, a failed manual run is not retried (unless asked).

use crate::support::daemon::*;
use crate::support::show;
use serde_json::Value;
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
