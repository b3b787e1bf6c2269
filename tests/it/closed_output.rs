//! backupctl's output going nowhere: a reader that closes the pipe early (`| head`), a full disk.

use crate::support::*;
use std::fs;
use std::io::Read;
use std::process::Stdio;

/// A repository with one snapshot of 3,000 small files, so `ls` prints far more than a pipe holds.
fn repo_with_many_files(env: &Env) {
    env.ctl_ok(&["init"]);
    let data = env.path("data");
    fs::create_dir(&data).unwrap();
    for i in 0..3000 {
        fs::write(data.join(format!("file-{i:05}")), i.to_string()).unwrap();
    }
    env.ctl_ok(&["backup", data.to_str().unwrap()]);
}

#[test]
fn a_reader_that_closes_the_pipe_ends_backupctl_quietly_with_141() {
    let env = Env::new();
    repo_with_many_files(&env);
    for args in [&["ls", "latest"][..], &["--json", "ls", "latest"][..]] {
        let mut child = env
            .ctl_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read one byte, then close the pipe, as `head -c1` does.
        let mut first = [0u8; 1];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}: a closed pipe says nothing");
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
