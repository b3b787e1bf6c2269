//! restic's ways of telling backup what to read, beside restic 0.19 on the same repository: `--stdin` with `--stdin-filename`, `--files-from` (and its verbatim and NUL-separated forms), and `--skip-if-unchanged`.

use crate::support::*;
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::process::Stdio;

fn with_stdin(mut cmd: std::process::Command, input: &[u8]) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn latest(env: &Env) -> Value {
    let v: Value =
        serde_json::from_slice(&env.restic19(&["snapshots", "--json", "latest"]).stdout).unwrap();
    v[0].clone()
}

#[test]
fn stdin_is_stored_as_the_named_file_as_restic_stores_it() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let data = text(5, 300_000);
    let o = with_stdin(
        env.ctl_cmd(&["backup", "--stdin", "--stdin-filename", "app.sql"]),
        &data,
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let ours = latest(&env);
    let mut restic = std::process::Command::new(restic19());
    restic
        .args(["-r"])
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&env.pw)
        .args(["backup", "--stdin", "--stdin-filename", "app.sql"]);
    let o = with_stdin(restic, &data);
    assert!(o.status.success(), "{}", show(&o));
    let theirs = latest(&env);
    assert_eq!(
        ours["paths"], theirs["paths"],
        "the snapshot's paths as restic records them"
    );
    let dump = env.restic19(&["dump", ours["id"].as_str().unwrap(), "/app.sql"]);
    assert!(dump.status.success(), "{}", show(&dump));
    assert_eq!(dump.stdout, data);
    let o = env.ctl(&["backup", "--stdin", "--stdin-filename", "../x"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
}

#[test]
fn files_from_adds_the_listed_paths_in_each_of_its_three_forms() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    for d in ["a", "b", "c d", "e"] {
        fs::create_dir_all(src.join(d)).unwrap();
        fs::write(src.join(d).join("f"), d).unwrap();
    }
    let p = |d: &str| src.join(d).to_str().unwrap().to_string();
    let lines = env.path("lines");
    fs::write(&lines, format!("# the app\n{}\n\n{}\n", p("a"), p("c d"))).unwrap();
    let raw = env.path("raw");
    fs::write(&raw, format!("{}\0", p("e"))).unwrap();
    let (l, r) = (lines.to_str().unwrap(), raw.to_str().unwrap());
    env.ctl_ok(&["backup", "--files-from", l, "--files-from-raw", r, &p("b")]);
    let ours = latest(&env);
    let mut want: Vec<String> = ["a", "b", "c d", "e"].iter().map(|d| p(d)).collect();
    want.sort();
    assert_eq!(ours["paths"], serde_json::json!(want));
    let o = env.restic19(&["backup", "--files-from", l, "--files-from-raw", r, &p("b")]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        latest(&env)["paths"],
        ours["paths"],
        "restic reads the same lists"
    );
    let o = env.ctl(&["backup", "--files-from", "/nonexistent/list"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/list"));
}

#[test]
fn skip_if_unchanged_saves_no_snapshot_until_something_changes() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 2);
    // A relative path is stored as /src, so the tree holds no /tmp, whose times other tests
    // change all the time.
    let backup = |extra: &[&str]| -> Value {
        let mut args = vec!["--json", "backup", "--skip-if-unchanged", "src"];
        args.extend_from_slice(extra);
        let o = env
            .ctl_cmd(&args)
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let first = backup(&[]);
    assert_eq!(first["skipped"], false, "no parent: a snapshot");
    // Reading the folders the first time moved their access times (relatime), which trees
    // record: the second backup has changed folders, the third sees none.
    backup(&[]);
    let again = backup(&[]);
    assert_eq!(again["skipped"], true, "{again}");
    assert!(again["snapshot_id"].is_null(), "{again}");
    let o = env
        .ctl_cmd(&["backup", "--skip-if-unchanged", "src"])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("no snapshot saved"), "{text}");
    assert_eq!(env.ctl_json(&["snapshots"]).as_array().unwrap().len(), 2);
    fs::write(src.join("docs/note1.txt"), b"changed").unwrap();
    let changed = backup(&[]);
    assert_eq!(changed["skipped"], false, "{changed}");
    assert_eq!(env.ctl_json(&["snapshots"]).as_array().unwrap().len(), 3);
}
