#!/usr/bin/env bash
# bench/job_features.sh: what two job features cost on an initial backup of about 500 MB
# (40 incompressible files of 12.5 MB and 2,000 small ones), each paired against the plain run
# with farm-bench (A B A B ..., medians): `backup --manifest` against `backup`, and
# `run-job` of a job with two local repositories (backup + copy) against one repository.
#
# Usage:  bench/job_features.sh
# Environment:
#   BENCH_WORK    work directory (default bench/work-features, git-ignored)
#   BACKUPCTL     the binary (default target/release/backupctl, built first)
#   RUNS          pairs timed (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${BENCH_WORK:-bench/work-features}
RUNS=${RUNS:-5}
if [ -z "${BACKUPCTL:-}" ]; then
    cargo build --release --quiet --bin backupctl
    BACKUPCTL=$PWD/target/release/backupctl
fi
command -v farm-bench >/dev/null || { echo "bench/job_features.sh needs farm-bench on PATH" >&2; exit 2; }
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
echo pw >"$WORK/pw"
if [ ! -f "$WORK/src/.done" ]; then
    rm -rf "$WORK/src" && mkdir -p "$WORK/src"
    for i in $(seq 1 40); do head -c 12500000 /dev/urandom >"$WORK/src/f$i.bin"; done
    for i in $(seq 1 2000); do echo "file $i $RANDOM" >"$WORK/src/s$i.txt"; done
    touch "$WORK/src/.done"
fi
# One initial backup into a fresh repository ($1: an extra flag).
cat >"$WORK/backup.sh" <<S
#!/bin/sh
R=$WORK/repo-\$\$
$BACKUPCTL -r \$R --password-file $WORK/pw init -q >/dev/null
$BACKUPCTL -r \$R --password-file $WORK/pw backup -q \$1 $WORK/src >/dev/null; rc=\$?
rm -rf \$R; exit \$rc
S
# run-job of a job with \$1 repositories (1: "a"; 2: "a", "b").
cat >"$WORK/runjob.sh" <<S
#!/bin/sh
D=$WORK/rj-\$\$; mkdir -p \$D
for r in a b; do $BACKUPCTL -r \$D/\$r --password-file $WORK/pw init -q >/dev/null; done
R='"a"'; [ "\$1" = 2 ] && R='"a", "b"'
printf '[daemon]\nstate_dir = "%s/state"\nlog_dir = "%s/logs"\nsocket = "%s/s.sock"\n[repositories.a]\npath = "%s/a"\npassword_file = "$WORK/pw"\n[repositories.b]\npath = "%s/b"\npassword_file = "$WORK/pw"\n[jobs.app]\nrepositories = [%s]\npaths = ["$WORK/src"]\n' \$D \$D \$D \$D \$D "\$R" >\$D/c.toml
$BACKUPCTL run-job app --config \$D/c.toml -q >/dev/null; rc=\$?
rm -rf \$D; exit \$rc
S
echo "== backup --manifest (A) against backup (B)"
farm-bench -n "$RUNS" --timeout 900 --vs "sh $WORK/backup.sh --force" -- sh "$WORK/backup.sh" --manifest
echo "== run-job, two repositories (A) against one (B)"
farm-bench -n "$RUNS" --timeout 900 --vs "sh $WORK/runjob.sh 1" -- sh "$WORK/runjob.sh" 2
