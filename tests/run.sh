#!/usr/bin/env bash
# The test command (README): installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v restic >/dev/null || need+=(restic)
command -v faketime >/dev/null || need+=(faketime)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v python3 >/dev/null || need+=(python3)
# tests/it/monitor.rs lints the metrics with Prometheus's own `promtool check metrics`.
command -v promtool >/dev/null || need+=(prometheus)
# tests/it/sftp.rs starts Debian's sshd on loopback and connects with the OpenSSH client.
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
# tests/it/remote.rs serves a REST repository with `rclone serve restic`.
command -v rclone >/dev/null || need+=(rclone)
# tests/it/s3_https.rs puts Debian's nginx in front of Garage as the TLS terminator (certs by openssl).
[ -x /usr/sbin/nginx ] || need+=(nginx)
command -v openssl >/dev/null || need+=(openssl)
# tests/it/service_files.rs: systemd-analyze verify on every generated unit (works without systemd as PID 1).
command -v systemd-analyze >/dev/null || need+=(systemd)
# tests/it/systemd_host.rs: a real systemd in a systemd-nspawn container of a debootstrapped root.
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v zstd >/dev/null || need+=(zstd)
# tests/it/notifications.rs runs Debian's aiosmtpd as its SMTP server, with Debian's python3.
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
if [ ${#need[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# Arguments go to cargo test: `bash tests/run.sh --test it sftp::` runs one area of tests/it.
cargo test --release "$@"
