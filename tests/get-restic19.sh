#!/usr/bin/env bash
# Puts the restic that Debian unstable (sid) packages, 0.19 or newer, at DIR/restic19 (default:
# cargo's bin dir) without installing the package: tests/it/manifest.rs restores with it, since
# Debian 12 itself ships restic 0.14. apt reads sid's package list into a throwaway state folder
# (the machine's own apt lists and sources are not touched), downloads the .deb, and its static
# binary is unpacked. Usage: tests/get-restic19.sh [DIR]
set -euo pipefail
dest=${1:-${CARGO_HOME:-$HOME/.cargo}/bin}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$dest"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main\n' >"$work/sources.list"
apt_opts=(
    -o "Dir::Etc::SourceList=$work/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root"
)
echo "tests/get-restic19.sh: reading Debian sid's package list" >&2
apt-get "${apt_opts[@]}" update -q >/dev/null
(cd "$work" && apt-get "${apt_opts[@]}" download restic >/dev/null)
deb=$(ls "$work"/restic_*.deb)
dpkg-deb -x "$deb" "$work/root"
install -m 755 "$work/root/usr/bin/restic" "$dest/restic19"
version=$("$dest/restic19" version)
echo "tests/get-restic19.sh: $dest/restic19 is $version" >&2
case "$version" in
    "restic 0."1[0-8].*|"restic 0."[0-9].*)
        echo "tests/get-restic19.sh: expected restic 0.19 or newer" >&2
        exit 1
        ;;
esac
