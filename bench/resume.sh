#!/usr/bin/env bash
# bench/resume.sh: an initial backup killed (kill -9) at a fraction of its normal duration, again
# and again: how many tries until it completes, how much each try reused, and how large the
# repository ends against one uninterrupted backup (#20: at most 3 tries and 1.3x).
#
# Usage:  bench/resume.sh            about 600 MB of incompressible data
#         RESUME_MB=200 bench/resume.sh
# Environment:
#   RESUME_MB     data size in MB (default 600)
#   RESUME_FRAC   when each try is killed, as a fraction of an uninterrupted run (default 0.6)
#   RESUME_TRIES  the most tries (default 10)
#   BENCH_WORK    work directory (default bench/work-resume, git-ignored)
#   BACKUPCTL     the binary (default target/release/backupctl, built first)
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${RESUME_MB:-600}
FRAC=${RESUME_FRAC:-0.6}
TRIES=${RESUME_TRIES:-10}
WORK=${BENCH_WORK:-bench/work-resume}
if [ -z "${BACKUPCTL:-}" ]; then
    cargo build --release --quiet --bin backupctl
    BACKUPCTL=$PWD/target/release/backupctl
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
echo pw >"$WORK/pw"
if [ "$(cat "$WORK/data.mb" 2>/dev/null)" != "$MB" ]; then
    rm -rf "$WORK/data"
    mkdir -p "$WORK/data"
    for i in $(seq 1 $((MB / 50))); do
        head -c 50000000 /dev/urandom >"$WORK/data/part$i.bin"
    done
    echo "$MB" >"$WORK/data.mb"
fi
ctl() { "$BACKUPCTL" -r "$1" --password-file "$WORK/pw" --no-progress "${@:2}"; }
packs_size() { find "$1/data" -type f -regextype egrep -regex '.*/[0-9a-f]{64}' -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }

rm -rf "$WORK/one" "$WORK/resumed"
ctl "$WORK/one" init >/dev/null
start=$(date +%s.%N)
ctl "$WORK/one" backup "$WORK/data" >/dev/null
full=$(echo "$(date +%s.%N) - $start" | bc)
one=$(packs_size "$WORK/one")
echo "uninterrupted: ${full}s, packs ${one} bytes"

ctl "$WORK/resumed" init >/dev/null
kill_after=$(echo "$full * $FRAC" | bc)
for try in $(seq 1 "$TRIES"); do
    # The binary itself in the background (not the shell function, whose subshell kill -9 would hit).
    "$BACKUPCTL" -r "$WORK/resumed" --password-file "$WORK/pw" --no-progress --json \
        backup "$WORK/data" >"$WORK/try.json" 2>"$WORK/try.err" &
    pid=$!
    ( sleep "$kill_after"; kill -9 "$pid" 2>/dev/null ) &
    killer=$!
    if wait "$pid"; then
        kill "$killer" 2>/dev/null || true
        reused=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["resumed"]["bytes"])' "$WORK/try.json")
        echo "try $try: completed (reused $reused bytes from earlier tries)"
        break
    fi
    wait "$killer" 2>/dev/null || true
    echo "try $try: killed after ${kill_after}s; $(grep -o 'resumed: [^(]*' "$WORK/try.err" || echo 'nothing resumed')"
done
resumed=$(packs_size "$WORK/resumed")
echo "tries: $try; packs ${resumed} bytes; ratio $(echo "scale=3; $resumed / $one" | bc) of one uninterrupted backup"
ctl "$WORK/resumed" check --read-data >/dev/null && echo "check --read-data: no errors"
