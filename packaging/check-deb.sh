#!/usr/bin/env bash
# packaging/check-deb.sh: builds the .deb (build-deb.sh) and checks that `dpkg -c` lists both
# binaries, the unit, the example config, the man pages, the completions and the documentation.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(bash packaging/build-deb.sh)
list=$(dpkg -c "$deb" | awk '{print $6}')
for f in ./usr/bin/backupd ./usr/bin/backupctl ./lib/systemd/system/backupd.service \
    ./etc/backupd/backupd.toml ./usr/share/man/man1/backupctl.1.gz ./usr/share/man/man1/backupd.1.gz \
    ./usr/share/bash-completion/completions/backupctl ./usr/share/zsh/vendor-completions/_backupctl \
    ./usr/share/fish/vendor_completions.d/backupctl.fish \
    ./usr/share/doc/backupd/README.md ./usr/share/doc/backupd/docs/README.md \
    ./usr/share/doc/backupd/docs/configuration.md; do
    grep -qxF "$f" <<<"$list" || { echo "check-deb: $f is missing from $deb" >&2; exit 1; }
done
dpkg -I "$deb" | grep -q "postinst" || { echo "check-deb: no postinst in $deb" >&2; exit 1; }
echo "check-deb: $deb ok"
