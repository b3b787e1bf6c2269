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
# tests/it/mount.rs mounts with FUSE: fusermount3 (auto_unmount) is Debian's fuse3.
command -v fusermount3 >/dev/null || need+=(fuse3)
# tests/it/notifications.rs runs Debian's aiosmtpd as its SMTP server, with Debian's python3.
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
if [ ${#need[@]} -gt 0 ]; then
    echo "tests/run.sh: installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# tests/it/remote.rs, s3_https.rs and garage_cluster.rs run real Garage S3 nodes. Debian has no
# Garage package, so it is built from crates.io once into cargo's bin dir (about 6 min on 2
# cores; a debug build at opt-level 1, whose S3 throughput is like a release build's); a
# machine that has it skips this.
GARAGE_ROOT=${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}
if ! command -v garage >/dev/null && [ ! -x "$GARAGE_ROOT/bin/garage" ]; then
    echo "tests/run.sh: building Garage 2.5.0 for the S3 tests into $GARAGE_ROOT/bin (once; about 6 minutes on 2 cores)" >&2
    CARGO_PROFILE_DEV_OPT_LEVEL=1 CARGO_PROFILE_DEV_DEBUG=0 \
        cargo install garage --version =2.5.0 --locked --root "$GARAGE_ROOT" \
        --debug --no-default-features --features bundled-libs,sqlite
fi
# tests/it/manifest.rs restores with restic 0.19 (Debian 12 ships 0.14): Debian unstable's static
# binary, fetched without installing the package (tests/get-restic19.sh), into cargo's bin dir.
RESTIC19_DIR=${CARGO_HOME:-$HOME/.cargo}/bin
if ! command -v restic19 >/dev/null && [ ! -x "$RESTIC19_DIR/restic19" ]; then
    echo "tests/run.sh: fetching restic 0.19 (Debian unstable) into $RESTIC19_DIR/restic19" >&2
    bash tests/get-restic19.sh "$RESTIC19_DIR"
fi
# Arguments go to cargo test: `bash tests/run.sh --test it sftp::` runs one area of tests/it.
cargo test --release "$@"
