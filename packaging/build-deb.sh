#!/usr/bin/env bash
# packaging/build-deb.sh: builds the .deb: release binaries, then completions, man pages and the
# packaged unit generated from the code (`backupctl generate`), then `cargo deb --no-build`.
# Installs cargo-deb (`cargo install cargo-deb --locked`) only when it is missing.
# Prints the path of the .deb on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
T=${CARGO_TARGET_DIR:-target}
if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: installing cargo-deb" >&2
    t0=$(date +%s)
    cargo install cargo-deb --locked >&2
    echo "build-deb.sh: cargo-deb installed in $(( $(date +%s) - t0 )) s" >&2
fi
cargo build --release >&2
G=packaging/generated
rm -rf "$G"
"$T/release/backupctl" generate completions "$G/completions"
"$T/release/backupctl" generate man "$G/man"
"$T/release/backupctl" generate unit "$G"
cargo deb --no-build --no-strip | tail -1
