//! backupctl's output going nowhere: a reader that closes the pipe early (`| head`), a full disk.

use crate::support::*;
use std::fs;

/// A repository where each command below prints far more than a pipe holds: a snapshot of an
/// empty folder, then one of 3,000 small files in it (`ls`, `diff`), then one with each of
/// those files as a path of its own (`snapshots`); and a log folder of 5,000 lines (`logs`).
fn repo_with_many_files(env: &Env) {
    env.ctl_ok(&["init"]);
    let data = env.path("data");
    fs::create_dir(&data).unwrap();
    env.ctl_ok(&["backup", data.to_str().unwrap()]);
    let mut paths = Vec::new();
    for i in 0..3000 {
        let f = data.join(format!("file-{i:05}"));
        fs::write(&f, i.to_string()).unwrap();
        paths.push(f.to_str().unwrap().to_string());
    }
    env.ctl_ok(&["backup", data.to_str().unwrap()]);
    let mut args = vec!["backup"];
    args.extend(paths.iter().map(String::as_str));
    env.ctl_ok(&args);
    let logs = env.path("logs");
    fs::create_dir(&logs).unwrap();
    let line = "2026-01-02T03:00:00.000000Z  INFO run{job=app run_id=app-1}: backupd::job: a line of the log\n";
    fs::write(logs.join("backupd.2026-01-02.log"), line.repeat(5000)).unwrap();
}

/// The ids of the first two snapshots (the empty folder, then its 3,000 files).
fn first_two(env: &Env) -> (String, String) {
    let list = env.ctl_json(&["snapshots"]);
    let id = |i: usize| list[i]["id"].as_str().unwrap().to_string();
    (id(0), id(1))
}

#[test]
fn a_reader_that_closes_the_pipe_ends_backupctl_quietly_with_141() {
    let env = Env::new();
    repo_with_many_files(&env);
    let (a, b) = first_two(&env);
    let logs = env.path("logs");
    let logs = logs.to_str().unwrap();
    let commands: [&[&str]; 6] = [
        &["ls", "latest"],
        &["snapshots"],
        &["diff", &a, &b],
        &["find", "file-*"],
        &["list", "blobs"],
        &["logs", "--log-dir", logs, "-n", "5000"],
    ];
    for command in commands {
        for json in [false, true] {
            let mut args = if json { vec!["--json"] } else { vec![] };
            args.extend_from_slice(command);
            let args = &args[..];
            let out = crate::support::after_closing_stdout(&mut env.ctl_cmd(args));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
            assert_eq!(stderr, "", "{args:?}: a closed pipe says nothing");
        }
    }
    // The read-only command left no lock behind.
    let locks = fs::read_dir(env.repo.join("locks")).unwrap().count();
    assert_eq!(locks, 0);
}

#[test]
fn output_to_a_full_device_is_an_error_not_a_panic() {
    let env = Env::new();
    repo_with_many_files(&env);
    let full = fs::File::create("/dev/full").unwrap();
    let out = env
        .ctl_cmd(&["ls", "latest"])
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("error: cannot write the output"),
        "{stderr}"
    );
    assert!(stderr.contains("No space left on device"), "{stderr}");
}
