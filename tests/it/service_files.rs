//! Every service file backupctl writes, checked by the real tools: `systemd-analyze verify` (any output fails), Python's strict `plistlib` for the launchd plists, Python's XML parser for the Task Scheduler task — with paths full of spaces, quotes, `%`, `$` and `&`.

use backupd::config::Config;
use backupd::service::{launchd, systemd, windows, Inputs, Mode, Scope};
use std::path::{Path, PathBuf};
use std::process::Command;

const BACKUPD: &str = env!("CARGO_BIN_EXE_backupd");

/// A configuration and a backupd binary in folders whose names need quoting everywhere.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    backupd: PathBuf,
    config: PathBuf,
    cfg: Config,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let bin = root.join("bin dir 100% $x");
    std::fs::create_dir_all(&bin).unwrap();
    let backupd = bin.join("backupd");
    std::os::unix::fs::symlink(BACKUPD, &backupd).unwrap();
    let conf_dir = root.join("etc \"my\" backups & co");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let config = conf_dir.join("backupd's <config>.toml");
    let text = format!(
        r#"
[repositories.main]
path = "{root}/repo with space 50%"
password_file = "{root}/pw"
[jobs.app]
repository = "main"
paths = ["{root}/data"]
schedule = "*/5 * * * *"
[daemon]
state_dir = "{root}/state dir"
metrics_file = "{root}/node exporter/backupd.prom"
"#,
        root = root.display()
    );
    std::fs::write(&config, &text).unwrap();
    let cfg = Config::load(&config).unwrap();
    Fixture {
        _dir: dir,
        root,
        backupd,
        config,
        cfg,
    }
}

fn inputs(f: &Fixture, scope: Scope) -> Inputs {
    Inputs::new(&f.cfg, &f.config, &f.backupd, scope)
}

fn need(tool: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .unwrap()
            .status
            .success(),
        "{tool} is missing: tests/run.sh installs it (Debian packages systemd, python3)"
    );
}

/// `systemd-analyze verify` exits 0 even on an unknown key: any output at all fails.
fn verify(scope: Scope, files: &[PathBuf], runtime: &Path) {
    let mut c = Command::new("systemd-analyze");
    if scope == Scope::User {
        c.arg("--user").env("XDG_RUNTIME_DIR", runtime);
    }
    let out = c.arg("verify").args(files).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify {files:?} ({scope:?}): {}\n{text}",
        out.status
    );
}

#[test]
fn every_systemd_unit_passes_systemd_analyze_verify_with_no_output() {
    need("systemd-analyze");
    let f = fixture();
    let runtime = f.root.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let mut count = 0;
    for scope in [Scope::System, Scope::User] {
        for mode in [Mode::Daemon, Mode::Timer] {
            let dir = f.root.join(format!("units-{scope:?}-{mode:?}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut files = Vec::new();
            for (name, content) in systemd::units(&inputs(&f, scope), mode).unwrap() {
                let p = dir.join(name);
                std::fs::write(&p, content).unwrap();
                files.push(p);
                count += 1;
            }
            verify(scope, &files, &runtime);
        }
    }
    assert_eq!(count, 6);
}

/// A misspelt key is caught (the check above can fail).
#[test]
fn systemd_analyze_output_is_caught() {
    need("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.service");
    std::fs::write(&p, "[Service]\nExecStart=/bin/true\nRestartt=always\n").unwrap();
    let r =
        std::panic::catch_unwind(|| verify(Scope::System, std::slice::from_ref(&p), dir.path()));
    assert!(r.is_err(), "a misspelt key passed");
}

fn python(script: &str, file: &Path) -> String {
    need("python3");
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3 on {}: {}\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file).unwrap_or_default()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_plist_parses_with_plistlib_and_carries_the_exact_arguments() {
    let f = fixture();
    let script = r#"
import json, plistlib, sys
with open(sys.argv[1], "rb") as fh:
    p = plistlib.load(fh)
print(json.dumps(p))
"#;
    for scope in [Scope::System, Scope::User] {
        for (mode, verb) in [(Mode::Daemon, "run"), (Mode::Timer, "run-due")] {
            let p = f
                .root
                .join(format!("{}-{scope:?}.plist", launchd::label(mode)));
            std::fs::write(&p, launchd::plist(&inputs(&f, scope), mode).unwrap()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&python(script, &p)).unwrap();
            let args: Vec<String> = serde_json::from_value(v["ProgramArguments"].clone()).unwrap();
            assert_eq!(
                args,
                vec![
                    f.backupd.to_str().unwrap().to_string(),
                    "--config".into(),
                    f.config.to_str().unwrap().to_string(),
                    verb.to_string()
                ]
            );
            assert_eq!(v["Label"], launchd::label(mode));
            assert_eq!(v["LowPriorityIO"], true);
            assert_eq!(v["ProcessType"], "Background");
            match mode {
                Mode::Daemon => {
                    assert_eq!(v["RunAtLoad"], true);
                    assert_eq!(v["KeepAlive"]["SuccessfulExit"], false);
                }
                Mode::Timer => {
                    assert_eq!(v["StartCalendarInterval"].as_array().unwrap().len(), 60)
                }
            }
            assert!(v["StandardErrorPath"]
                .as_str()
                .unwrap()
                .starts_with(f.root.join("state dir/logs").to_str().unwrap()));
        }
    }
}

#[test]
fn task_scheduler_xml_is_well_formed_utf16_with_the_exact_command() {
    let f = fixture();
    let mut i = inputs(&f, Scope::System);
    i.backupd = PathBuf::from(r"C:\Program Files\backupd\backupd.exe");
    i.config = PathBuf::from(r#"C:\ProgramData\backupd & co\"cfg" <1>.toml"#);
    let script = r#"
import sys, xml.etree.ElementTree as ET
ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
root = ET.parse(sys.argv[1]).getroot()
print(root.find("t:Actions/t:Exec/t:Command", ns).text)
print(root.find("t:Actions/t:Exec/t:Arguments", ns).text)
print(root.find("t:Settings/t:StartWhenAvailable", ns).text)
"#;
    for scope in [Scope::System, Scope::User] {
        i.scope = scope;
        let p = f.root.join(format!("task-{scope:?}.xml"));
        std::fs::write(&p, windows::utf16_file(&windows::run_due_task(&i).unwrap())).unwrap();
        let out = python(script, &p);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            vec![
                r"C:\Program Files\backupd\backupd.exe",
                r#"--config "C:\ProgramData\backupd & co\\\"cfg\" <1>.toml" run-due"#,
                "true"
            ]
        );
    }
}
