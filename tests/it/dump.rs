//! `backupctl dump`: a file's bytes as restic's dump gives them, a folder as a tar archive that GNU tar extracts into the backed-up tree (modes and symlinks included), `--target` written whole, a closed pipe quiet.

use crate::support::{make_tree, manifest, show, Env};
use std::fs;
use std::process::{Command, Stdio};

#[test]
fn dump_writes_a_file_as_it_is_and_a_folder_as_tar_that_extracts_to_the_source() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 7);
    let s = src.to_str().unwrap();
    env.ctl_ok(&["backup", s]);

    // A file: its bytes, the same as restic's dump.
    let big = format!("{s}/docs/deep/er/big.bin");
    let o = env.ctl(&["dump", "latest", &big]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(o.stdout, fs::read(&big).unwrap());
    let r = env.restic(&["dump", "latest", &big]);
    assert!(r.status.success(), "{}", show(&r));
    assert_eq!(o.stdout, r.stdout, "restic's dump agrees");

    // A folder: a tar archive that extracts to the source (the FIFO left out, as restic does).
    let tar = env.path("src.tar");
    env.ctl_ok(&["dump", "latest", s, "--target", tar.to_str().unwrap()]);
    let out = env.path("out");
    fs::create_dir_all(&out).unwrap();
    let x = Command::new("tar")
        .arg("-xpf")
        .arg(&tar)
        .arg("-C")
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", show(&x));
    let mut want = manifest(&src);
    want.retain(|_, v| !v.starts_with("other"));
    assert_eq!(manifest(&out.join(s.trim_start_matches('/'))), want);

    // A path that is not there: the error says which, and how to find the right one.
    let o = env.ctl(&["dump", "latest", &format!("{s}/nope")]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nope") && err.contains("backupctl ls"),
        "{err}"
    );
    assert!(!env.path("nope.tar").exists());

    // A closed pipe ends the dump quietly with 141.
    let mut child = env
        .ctl_cmd(&["dump", "latest", s])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(141), "{}", show(&o));
    assert!(o.stderr.is_empty(), "{}", show(&o));
}

/// A zip archive as Python's zipfile reads it: per entry its name, size, CRC-32 and unix mode.
fn zip_entries(zip: &[u8], dir: &std::path::Path) -> String {
    let path = dir.join("archive.zip");
    fs::write(&path, zip).unwrap();
    let script = "import sys, zipfile\n\
                  z = zipfile.ZipFile(sys.argv[1])\n\
                  assert z.testzip() is None\n\
                  for i in sorted(z.infolist(), key=lambda i: i.filename):\n\
                  \x20   print(i.filename, i.file_size, i.CRC, oct(i.external_attr >> 16))\n";
    let o = Command::new("python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .unwrap();
    assert!(o.status.success(), "python3 zipfile: {}", show(&o));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn dump_archive_zip_holds_what_restic_0_19_s_zip_holds() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 9);
    let s = src.to_str().unwrap();
    env.ctl_ok(&["backup", s]);
    let ours = env.ctl(&["dump", "--archive", "zip", "latest", s]);
    assert_eq!(ours.status.code(), Some(0), "{}", show(&ours));
    let theirs = env.restic19(&["dump", "--archive", "zip", "latest", s]);
    assert!(theirs.status.success(), "{}", show(&theirs));
    let (o, t) = (
        zip_entries(&ours.stdout, env.dir.path()),
        zip_entries(&theirs.stdout, env.dir.path()),
    );
    assert!(o.contains("docs/deep/er/big.bin 2500000"), "{o}");
    // Two differences, on purpose: the folder dumped is an entry of its own (its mode and
    // time kept), and a FIFO is left out (restic 0.19 writes it as an empty regular file).
    let root = format!("{}/ 0 0 0o40755\n", s.trim_start_matches('/'));
    assert!(o.starts_with(&root), "{o}");
    let fifo = format!("{}/fifo 0 0 0o10644\n", s.trim_start_matches('/'));
    assert!(t.contains(&fifo), "{t}");
    assert_eq!(
        o.replacen(&root, "", 1),
        t.replacen(&fifo, "", 1),
        "the same entries, sizes, checksums and modes as restic's zip"
    );
    let target = env.path("src.zip");
    env.ctl_ok(&[
        "dump",
        "-a",
        "zip",
        "-t",
        target.to_str().unwrap(),
        "latest",
        s,
    ]);
    assert_eq!(
        fs::read(&target).unwrap(),
        ours.stdout,
        "--target holds the same archive"
    );
}
