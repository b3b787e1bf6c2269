//! backupctl service and schedule on a real systemd: `tests/it/support/systemd-service-test.sh` boots a Debian 12 container with systemd-nspawn (its root built once by debootstrap and cached under /var/tmp) and drives the phases (install, runs on schedule, reboot and catch-up, kill -9 and restart, uninstall; the OS-timer mode; a user service with linger). Needs root; CI is root.

use std::process::Command;
use std::time::Instant;

#[test]
fn service_and_os_timer_on_a_real_systemd() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "\n\n!!! SKIPPED tests/it/systemd_host.rs: systemd-nspawn needs root (CI runs as root) !!!\n\n"
        );
        return;
    }
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/support/systemd-service-test.sh"
        ))
        .arg(env!("CARGO_BIN_EXE_backupd"))
        .arg(env!("CARGO_BIN_EXE_backupctl"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(
        out.status.success(),
        "the real-systemd test failed ({}):\n{err}",
        out.status
    );
    for phase in [
        "system service: installed, runs on schedule ok",
        "system service: install twice is harmless ok",
        "system service: reboot -> back, missed slot caught up ok",
        "system service: kill -9 -> restarted by systemd ok",
        "system service: uninstall -> stopped and gone, state kept ok",
        "OS timer: installed, a tick runs the job ok",
        "OS timer: reboot -> missed slot caught up ok",
        "OS timer: uninstall -> gone ok",
        "user service: installed with linger, runs on schedule ok",
        "user service: uninstall ok",
    ] {
        assert!(
            err.contains(&format!("PHASE {phase}")),
            "phase missing: {phase}"
        );
    }
    eprintln!(
        "real-systemd test: {:.0} s wall",
        t0.elapsed().as_secs_f64()
    );
}
