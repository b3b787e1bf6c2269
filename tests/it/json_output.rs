//! `--json` on every backupctl subcommand: what it prints on stdout parses as JSON (JSON Lines for `logs`), never as text — on a repository made by `init`, a running daemon, and the service commands.

use crate::support::daemon::*;
use crate::support::*;
use clap::CommandFactory;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// stdout as one JSON document; fails on text or on nothing at all.
fn one_document(what: &str, o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{what} --json printed no JSON ({e}):\n{}", show(o)))
}

/// stdout as JSON Lines: one object per line, at least one line.
fn json_lines(what: &str, o: &Output) -> Vec<Value> {
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "{what} --json printed a line that is no JSON ({e}): {l:?}\n{}",
                    show(o)
                )
            });
            assert!(v.is_object(), "{what}: {l}");
            v
        })
        .collect();
    assert!(
        !lines.is_empty(),
        "{what} --json printed nothing:\n{}",
        show(o)
    );
    lines
}

/// The error document every failing command prints with --json.
fn error_document(what: &str, o: &Output) -> Value {
    let v = one_document(what, o);
    assert_eq!(
        v["exit_code"].as_i64(),
        o.status.code().map(i64::from),
        "{what}: {v}"
    );
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {v}"
    );
    v
}

/// `backupctl --json ARGS --config CFG` with a private systemd user folder, so `service` and
/// `schedule` look there and never at this machine's units.
fn ctl_at(s: &Setup, args: &[&str]) -> Output {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    Command::new(BACKUPCTL)
        .args(&a)
        .arg("--config")
        .arg(&s.cfg)
        .env("XDG_CONFIG_HOME", s.env.path("xdg"))
        .env_remove("BACKUPD_CONFIG")
        .env_remove("BACKUPD_SOCKET")
        .output()
        .unwrap()
}

fn ok(what: &str, o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{what}:\n{}", show(o));
}

#[test]
fn every_subcommand_prints_json_with_json() {
    let s = Setup::new(
        "[jobs.ok]\nrepository = \"main\"\npaths = [\"{data}\"]\n\n[jobs.slow]\nrepository = \"main\"\npaths = [\"{data}\"]\nretries = { attempts = 0 }\n[jobs.slow.hooks]\nbefore = [\"sleep 3\"]\n",
    );
    let env = &s.env;
    let data = s.data.to_str().unwrap().to_string();
    // The repository commands. `init` made s.env.repo; here it makes a second one.
    let other = env.path("other");
    let o = Command::new(BACKUPCTL)
        .args(["--json", "-r", other.to_str().unwrap(), "--password-file"])
        .arg(&env.pw)
        .arg("init")
        .output()
        .unwrap();
    ok("init", &o);
    assert_eq!(one_document("init", &o)["message_type"], "initialized");
    let mut seen = BTreeSet::from(["init".to_string()]);
    let mut repo_json = |args: &[&str]| -> Value {
        seen.insert(args[0].to_string());
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let o = env.ctl(&a);
        ok(&format!("{args:?}"), &o);
        one_document(&format!("{args:?}"), &o)
    };
    repo_json(&["backup", &data]);
    std::fs::write(s.data.join("b.txt"), "more").unwrap();
    let second = repo_json(&["backup", "--manifest", &data]);
    let second = second["snapshot_id"].as_str().unwrap().to_string();
    let snaps = repo_json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 2, "{snaps}");
    let m = repo_json(&["manifest", "latest"]);
    assert!(!m["files"].as_array().unwrap().is_empty(), "{m}");
    let first = snaps[0]["id"].as_str().unwrap().to_string();
    repo_json(&["stats"]);
    let target = env.path("restored");
    repo_json(&["restore", "latest", "--target", target.to_str().unwrap()]);
    repo_json(&["check"]);
    repo_json(&["forget", "--keep-last", "1", "-n"]);
    repo_json(&["prune", "-n"]);
    repo_json(&[
        "copy",
        "--from",
        env.repo.to_str().unwrap(),
        "--to",
        other.to_str().unwrap(),
        "--all",
    ]);
    repo_json(&["unlock"]);
    let dumped = env.path("dump.tar");
    let d = repo_json(&[
        "dump",
        "latest",
        &data,
        "--target",
        dumped.to_str().unwrap(),
    ]);
    assert_eq!(d["format"], "tar", "{d}");
    let keys = repo_json(&["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    let r = repo_json(&["repair", "index"]);
    assert_eq!(r["packs_read"], 0, "{r}");
    repo_json(&["list", "snapshots"]);
    let r = repo_json(&["rewrite", "--exclude", "nothing-matches-this", "-n"]);
    assert_eq!(r["rewritten"], serde_json::json!([]), "{r}");
    let r = repo_json(&["recover"]);
    assert!(r["snapshot"].is_null(), "{r}");
    assert!(repo_json(&["cache"])["repositories"].is_array());
    repo_json(&["cat", "config"]);
    assert!(repo_json(&["find", "b.txt"]).is_array());
    let gen = env.path("generated");
    repo_json(&["generate", "completions", gen.to_str().unwrap()]);
    // `tag` prints restic's JSON Lines: one line per changed snapshot, then the summary.
    let o = env.ctl(&["--json", "tag", "--add", "t", &second]);
    ok("tag", &o);
    let lines = json_lines("tag", &o);
    assert_eq!(lines.last().unwrap()["changed_snapshots"], 1, "{lines:?}");
    seen.insert("diff".to_string());
    let o = env.ctl(&["--json", "diff", &first, "latest"]);
    ok("diff", &o);
    let lines = json_lines("diff", &o);
    assert_eq!(
        lines.last().unwrap()["message_type"],
        "statistics",
        "restic's JSON Lines"
    );
    seen.insert("ls".to_string());
    let o = env.ctl(&["--json", "ls", "latest"]);
    ok("ls", &o);
    let lines = json_lines("ls", &o);
    assert_eq!(lines[0]["struct_type"], "snapshot", "restic's JSON Lines");
    assert!(lines[1..].iter().all(|l| l["struct_type"] == "node"));
    seen.insert("tag".into());

    // `mount` prints JSON Lines: one line once mounted, one once unmounted (SIGTERM).
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut child = env
        .ctl_cmd(&["--json", "mount", mnt.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    let v: Value = serde_json::from_str(&first)
        .unwrap_or_else(|e| panic!("mount --json printed no JSON ({e}): {first:?}"));
    assert_eq!(v["message_type"], "mounted", "{v}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "mount: {first}{rest}");
    let last: Value = serde_json::from_str(rest.trim()).unwrap_or_else(|e| panic!("{e}: {rest:?}"));
    assert_eq!(last["message_type"], "unmounted", "{last}");
    seen.insert("mount".into());

    // A job in the foreground, without the daemon.
    let o = ctl_at(&s, &["run-job", "ok"]);
    ok("run-job", &o);
    assert_eq!(one_document("run-job", &o)["outcome"], "success");
    seen.insert("run-job".into());

    // The service commands: nothing is installed in the private folder (exit 22).
    for mode in ["service", "schedule"] {
        let o = ctl_at(&s, &[mode, "status", "--user"]);
        assert_eq!(o.status.code(), Some(22), "{mode} status:\n{}", show(&o));
        let v = one_document(&format!("{mode} status"), &o);
        assert_eq!(v["installed"], false, "{v}");
        assert_eq!(v["running"], false, "{v}");
        // A failure of theirs is the error document too (no configuration: install refuses).
        let o = Command::new(BACKUPCTL)
            .args(["--json", mode, "install", "--user", "--config"])
            .arg(env.path("missing.toml"))
            .env("XDG_CONFIG_HOME", env.path("xdg"))
            .output()
            .unwrap();
        assert_ne!(o.status.code(), Some(0), "{}", show(&o));
        error_document(&format!("{mode} install"), &o);
        seen.insert(mode.into());
    }

    // The daemon's commands.
    let d = s.start(None);
    for args in [&["status"][..], &["health"], &["jobs"], &["reload"]] {
        let o = ctl_at(&s, args);
        ok(&format!("{args:?}"), &o);
        one_document(&format!("{args:?}"), &o);
        seen.insert(args[0].to_string());
    }
    let o = ctl_at(&s, &["run", "ok", "--wait"]);
    ok("run --wait", &o);
    assert_eq!(one_document("run --wait", &o)["outcome"], "success");
    let o = ctl_at(&s, &["run", "slow"]);
    ok("run", &o);
    let run_id = one_document("run", &o)["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = ctl_at(&s, &["cancel", "slow"]);
    ok("cancel", &o);
    assert_eq!(one_document("cancel", &o)["run_id"], run_id.as_str());
    seen.extend(["run".to_string(), "cancel".to_string()]);
    wait_for(Duration::from_secs(20), "the cancelled run", || {
        s.history("slow").len() == 1
    });
    let o = ctl_at(&s, &["history", "ok"]);
    ok("history", &o);
    assert!(!one_document("history", &o).as_array().unwrap().is_empty());
    seen.insert("history".into());
    // A command the daemon refuses prints the error document.
    let o = ctl_at(&s, &["cancel", "ok"]);
    error_document("cancel of an idle job", &o);

    // Logs: JSON Lines, the same with a filter and when following.
    let o = ctl_at(&s, &["logs", "-n", "500"]);
    ok("logs", &o);
    let all = json_lines("logs", &o);
    assert!(
        all.iter().any(|l| l["level"] == "INFO"
            && l["timestamp"].is_string()
            && l["message"].is_string()),
        "{all:#?}"
    );
    let o = ctl_at(&s, &["logs", "--run-id", &run_id, "-n", "500"]);
    ok("logs --run-id", &o);
    for l in json_lines("logs --run-id", &o) {
        assert_eq!(l["run_id"], run_id.as_str(), "{l}");
        assert_eq!(l["job"], "slow", "{l}");
    }
    follow_one_line(&s);
    seen.insert("logs".into());

    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    // Without the daemon: status answers from the state files (exit 13), in JSON.
    let o = ctl_at(&s, &["status"]);
    assert_eq!(o.status.code(), Some(13), "{}", show(&o));
    assert!(one_document("status without daemon", &o)["jobs"].is_array());

    // Every subcommand was run above.
    let all: BTreeSet<String> = backupd::ctl::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let missing: Vec<&String> = all.difference(&seen).collect();
    assert!(missing.is_empty(), "not run with --json: {missing:?}");
    // And the service commands looked only in the private folder, which they left empty.
    assert!(!env.path("xdg").join("systemd").exists());
}

/// `logs -f --json`: the first line it prints is JSON; Ctrl-C ends it.
fn follow_one_line(s: &Setup) {
    let mut child = Command::new(BACKUPCTL)
        .args(["--json", "logs", "-f", "-n", "1", "--config"])
        .arg(&s.cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("logs -f --json printed no JSON ({e}): {line:?}"));
    assert!(v.is_object(), "{line}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
