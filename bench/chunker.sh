#!/usr/bin/env bash
# bench/chunker.sh: restic's chunker (what backups cut with) beside FastCDC (what they cut with
# before), single-threaded MB/s on the same data; then the dedup with restic 0.19 both ways:
# what the second backup of the same data adds to a repository the other program filled.
#
# Usage:  bench/chunker.sh
#         CHUNKER_MB=1024 bench/chunker.sh
# Environment:
#   CHUNKER_MB          size of the dedup data set in MB (default 256: 4 files of a quarter each)
#   CHUNKER_BENCH_MIB   data the throughput bench cuts, in MiB (default 512)
#   CHUNKER_BENCH_RUNS  runs of each chunker; the median is printed (default 5)
#   RESTIC19            restic 0.19 (default: restic19 on PATH, as tests/get-restic19.sh installs it)
#   BENCH_WORK          work directory (default bench/work-chunker, git-ignored)
#   BACKUPCTL           the binary (default target/release/backupctl, built first)
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${CHUNKER_MB:-256}
RESTIC19=${RESTIC19:-restic19}
WORK=${BENCH_WORK:-bench/work-chunker}
TARGET=${CARGO_TARGET_DIR:-target}
if [ -z "${BACKUPCTL:-}" ]; then
    cargo build --release --quiet --bin backupctl
    BACKUPCTL=$TARGET/release/backupctl
fi

echo "== chunker throughput (cargo bench --bench chunkers)"
cargo bench --quiet --bench chunkers 2>/dev/null | grep -v '^$'

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
echo pw >"$WORK/pw"
if [ "$(cat "$WORK/data.mb" 2>/dev/null)" != "$MB" ]; then
    rm -rf "$WORK/data"
    mkdir -p "$WORK/data/small"
    for i in 1 2 3 4; do
        head -c $((MB * 1000000 / 4 + i * 4321)) /dev/urandom >"$WORK/data/part$i.bin"
    done
    for i in $(seq 1 20); do head -c $((i * 20000)) /dev/urandom >"$WORK/data/small/f$i"; done
    echo "$MB" >"$WORK/data.mb"
fi
total=$(du -sb --apparent-size "$WORK/data" | cut -f1)
ctl() { "$BACKUPCTL" -r "$1" --password-file "$WORK/pw" --no-progress "${@:2}"; }
r19() { "$RESTIC19" -r "$1" --password-file "$WORK/pw" --no-cache "${@:2}"; }
added_ctl() { python3 -c 'import json,sys; print(json.load(sys.stdin)["data_added"])'; }
added_restic() {
    python3 -c 'import json,sys
for l in sys.stdin:
    try: v = json.loads(l)
    except ValueError: continue
    if v.get("message_type") == "summary": print(v["data_added"])'
}
report() { # WHAT ADDED
    echo "$1: added $2 of $total bytes ($(echo "scale=3; $2 * 100 / $total" | bc) %)"
}

echo "== dedup with restic 0.19 ($("$RESTIC19" version | cut -d' ' -f1-2)), data $total bytes"
rm -rf "$WORK/by-restic" "$WORK/by-backupctl"
r19 "$WORK/by-restic" init >/dev/null
report "restic 0.19 first, into its new repository" "$(r19 "$WORK/by-restic" backup --json "$WORK/data" | added_restic)"
report "backupctl backup --force after it" "$(ctl "$WORK/by-restic" --json backup --force "$WORK/data" | added_ctl)"
ctl "$WORK/by-backupctl" init >/dev/null
report "backupctl first, into its new repository" "$(ctl "$WORK/by-backupctl" --json backup "$WORK/data" | added_ctl)"
report "restic 0.19 backup --force after it" "$(r19 "$WORK/by-backupctl" backup --json --force "$WORK/data" | added_restic)"
