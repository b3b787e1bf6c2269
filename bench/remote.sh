#!/usr/bin/env bash
# bench/remote.sh: backup of the bench data set to a Garage S3 node on loopback, backupctl against
# restic 0.14 into the same Garage (two prefixes of one bucket), and the no-change backup time.
#
# Usage:
#   bench/remote.sh                       ~1 GiB data set (bench/gen.py, BENCH_SCALE=1)
#   BENCH_SCALE=0.2 bench/remote.sh       ~200 MiB
#
# Environment:
#   BENCH_SCALE, BENCH_SEED   as bench/run.sh (the data set lives in $BENCH_WORK/data)
#   BENCH_WORK                work directory (default bench/work)
#   BACKUPCTL                 the backupctl binary (default: target/release/backupctl, built first)
#   RESTIC                    default /usr/bin/restic
#   GARAGE_*                  passed to /work/shared/tools/garage-local.sh style settings: this
#                             script starts its own node in $BENCH_WORK/garage on ports 3910-3913
#
# Prints a markdown table: wall seconds of init, initial backup, no-change backup per tool and the
# ratio backupctl/restic. Garage runs with fsync off (test settings): absolute figures are those
# of loopback and this machine, not of a real cluster.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SCALE="${BENCH_SCALE:-1}"
SEED="${BENCH_SEED:-20240601}"
WORK="${BENCH_WORK:-$HERE/work}"
RESTIC="${RESTIC:-/usr/bin/restic}"
DATA="$WORK/data"
PW="$WORK/password"
GARAGE_SH="${GARAGE_SH:-$ROOT/../shared/tools/garage-local.sh}"
[ -f "$GARAGE_SH" ] || GARAGE_SH=/work/shared/tools/garage-local.sh

say() { printf '== %s\n' "$*" >&2; }

if [ -z "${BACKUPCTL:-}" ]; then
    (cd "$ROOT" && cargo build --release --bin backupctl) >&2
    BACKUPCTL="${CARGO_TARGET_DIR:-$ROOT/target}/release/backupctl"
fi

mkdir -p "$WORK"
if [ ! -f "$DATA.json" ] || ! python3 - "$DATA.json" "$SCALE" "$SEED" <<'PY'; then
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if s.get("scale") == float(sys.argv[2]) and s.get("seed") == int(sys.argv[3]) and not s.get("mutated") else 1)
PY
    say "generating the data set (BENCH_SCALE=$SCALE)"
    rm -f "$DATA.json"
    BENCH_SCALE="$SCALE" BENCH_SEED="$SEED" BENCH_FORCE=1 python3 "$HERE/gen.py" "$DATA" >&2
fi
printf 'benchmark password %s\n' "$SEED" >"$PW"

export GARAGE_DIR="$WORK/garage" GARAGE_S3_PORT=3910 GARAGE_RPC_PORT=3911 GARAGE_ADMIN_PORT=3913
export GARAGE_BUCKET="bench-$$" GARAGE_FRESH=1
bash "$GARAGE_SH" stop >/dev/null 2>&1 || true
eval "$(bash "$GARAGE_SH" start)"
trap 'bash "$GARAGE_SH" stop >/dev/null 2>&1 || true' EXIT
unset AWS_CA_BUNDLE

find "$DATA" -type f -print0 | xargs -0 cat >/dev/null

R_REPO="s3:$S3_ENDPOINT/$S3_BUCKET/restic"
B_REPO="s3:$S3_ENDPOINT/$S3_BUCKET/backupctl"
export BACKUPD_CACHE_DIR="$WORK/backupctl-cache"
rm -rf "$BACKUPD_CACHE_DIR" "$WORK/restic-cache-s3"

declare -A T
timed() { # key cmd...
    local key=$1; shift
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$WORK/remote-$key.out" 2>"$WORK/remote-$key.err" || { cat "$WORK/remote-$key.err" >&2; echo "FAILED: $key" >&2; exit 1; }
    t1=$(date +%s.%N)
    T[$key]=$(printf "%.2f" "$(echo "$t1 - $t0" | bc -l)")
    say "$key: ${T[$key]} s"
}
RC=("$RESTIC" -r "$R_REPO" --password-file "$PW" --cache-dir "$WORK/restic-cache-s3")
BC=("$BACKUPCTL" -r "$B_REPO" --password-file "$PW" --no-progress)
timed restic-init "${RC[@]}" init
timed restic-backup "${RC[@]}" backup "$DATA"
timed restic-nochange "${RC[@]}" backup "$DATA"
timed backupctl-init "${BC[@]}" init
timed backupctl-backup "${BC[@]}" backup "$DATA"
timed backupctl-nochange "${BC[@]}" backup "$DATA"
# The same no-change backup with an empty local cache (a new machine, or a wiped cache dir).
rm -rf "$BACKUPD_CACHE_DIR" "$WORK/restic-cache-s3"
timed restic-cold "${RC[@]}" backup "$DATA"
timed backupctl-cold "${BC[@]}" backup "$DATA"
timed backupctl-check-structure "${BC[@]}" check
timed restic-check-structure-of-backupctl "$RESTIC" -r "$B_REPO" --password-file "$PW" --no-cache check
timed backupctl-check "${BC[@]}" check --read-data
timed restic-check-of-backupctl "$RESTIC" -r "$B_REPO" --password-file "$PW" --no-cache check --read-data

ratio() { printf "%.2f" "$(echo "scale=4; $1 / $2" | bc -l)"; }
BYTES=$(du -sb "$DATA" | cut -f1)
cat <<MD
# Remote benchmark: backupctl vs restic 0.14 to Garage 2.5.0 (single node, loopback)

- date: $(date -u +%FT%TZ); data: BENCH_SCALE=$SCALE, $((BYTES / 1048576)) MiB in $(find "$DATA" -type f | wc -l) files
- $(nproc) cores; Garage with fsync off; wall seconds; ratios below 1 favour backupctl

| step | restic | backupctl | backupctl/restic |
| --- | ---: | ---: | ---: |
| initial backup | ${T[restic-backup]} | ${T[backupctl-backup]} | $(ratio "${T[backupctl-backup]}" "${T[restic-backup]}") |
| backup, nothing changed | ${T[restic-nochange]} | ${T[backupctl-nochange]} | $(ratio "${T[backupctl-nochange]}" "${T[restic-nochange]}") |
| backup, nothing changed, empty cache | ${T[restic-cold]} | ${T[backupctl-cold]} | $(ratio "${T[backupctl-cold]}" "${T[restic-cold]}") |
| check of backupctl's repository | ${T[restic-check-structure-of-backupctl]} | ${T[backupctl-check-structure]} | $(ratio "${T[backupctl-check-structure]}" "${T[restic-check-structure-of-backupctl]}") |
| check --read-data of backupctl's repository | ${T[restic-check-of-backupctl]} | ${T[backupctl-check]} | $(ratio "${T[backupctl-check]}" "${T[restic-check-of-backupctl]}") |

Both checks of backupctl's repository passed with both tools.
MD
