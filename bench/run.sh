#!/usr/bin/env bash
# bench/run.sh: backupctl against restic 0.14, side by side, on the same data and password.
#
# Usage (from anywhere):
#   bench/run.sh                        full run on the ~1 GiB data set (several minutes)
#   BENCH_SCALE=0.05 bench/run.sh       quick run on ~55 MiB
#   BENCH_TOOLS=restic bench/run.sh     only one tool (restic or backupctl)
#
# Environment:
#   BENCH_SCALE  data size factor (default 1, about 1 GiB); see bench/gen.py
#   BENCH_SEED   data generator seed (default 20240601)
#   BENCH_TOOLS  tools to run, in order (default "restic backupctl")
#   BENCH_WORK   work directory (default bench/work, git-ignored): data set, repositories,
#                restores, logs
#   RESTIC       the restic binary (default /usr/bin/restic)
#   BACKUPCTL    the backupctl binary (default: target/release/backupctl, built first; when set,
#                used as it is)
#
# What it does:
#   1. builds target/release/backupctl (cargo build --release), unless BENCH_TOOLS leaves it out;
#   2. generates the data set with bench/gen.py into $BENCH_WORK/data if it is absent, of
#      another scale or seed, or was mutated by an earlier run;
#   3. warms the page cache (reads every file), then for each tool, one step at a time:
#      init, initial backup, no-change backup, [bench/mutate.py changes ~2%, cache warmed
#      again], backup after mutation, full restore of `latest` into $BENCH_WORK/restore-TOOL,
#      check --read-data. Each step is timed (wall seconds; CPU seconds and peak RSS from
#      /usr/bin/time -v). Both tools use the same password file; restic uses compression
#      auto and its own cache (in $BENCH_WORK/restic-cache), as it would by default;
#   4. verifies each restore: `diff -r` of the source and the restored tree must find nothing
#      (file modes and mtimes are compared too, and reported);
#   5. prints a markdown table (restic, backupctl, ratio backupctl/restic per row), with the
#      repositories' sizes (du -sb), and writes it to bench/results.md.
# Logs of every command: $BENCH_WORK/logs/TOOL-STEP.{out,err,time}.
# Exit status: 0 when every step of every tool succeeded and every restore is identical.

set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
SCALE="${BENCH_SCALE:-1}"
SEED="${BENCH_SEED:-20240601}"
TOOLS="${BENCH_TOOLS:-restic backupctl}"
WORK="${BENCH_WORK:-$HERE/work}"
RESTIC="${RESTIC:-/usr/bin/restic}"
BACKUPCTL="${BACKUPCTL:-}"
DATA="$WORK/data"
LOGS="$WORK/logs"
PW="$WORK/password"
RESULTS="$HERE/results.md"
GNUTIME=/usr/bin/time

say() { printf '%s\n' "== $*" >&2; }
die() { printf 'bench/run.sh: %s\n' "$*" >&2; exit 1; }

for t in $TOOLS; do
    case "$t" in restic | backupctl) ;; *) die "unknown tool '$t' in BENCH_TOOLS (use restic, backupctl)" ;; esac
done
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# --- prerequisites -------------------------------------------------------------------------
if [ ! -x "$GNUTIME" ]; then
    say "installing GNU time (for peak RSS)"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q time >/dev/null ||
        die "cannot install GNU time: apt-get install -y time"
fi
command -v python3 >/dev/null || die "python3 is needed to generate the data set"
has_tool restic && { [ -x "$RESTIC" ] || die "restic not found at $RESTIC (apt-get install restic, or set RESTIC)"; }
if has_tool backupctl; then
    if [ -z "$BACKUPCTL" ]; then
        BACKUPCTL="$ROOT/target/release/backupctl"
        say "building backupctl (cargo build --release)"
        (cd "$ROOT" && cargo build --release --bin backupctl) >&2 || die "cargo build --release failed"
    fi
    [ -x "$BACKUPCTL" ] || die "backupctl not found at $BACKUPCTL"
fi

# --- data set ------------------------------------------------------------------------------
mkdir -p "$WORK"
need_gen=1
if [ -d "$DATA" ] && [ -f "$DATA.json" ]; then
    if python3 - "$DATA.json" "$SCALE" "$SEED" <<'EOF'; then need_gen=0; fi
import json, sys
s = json.load(open(sys.argv[1]))
ok = s.get("scale") == float(sys.argv[2]) and s.get("seed") == int(sys.argv[3]) and not s.get("mutated")
sys.exit(0 if ok else 1)
EOF
fi
if [ "$need_gen" = 1 ]; then
    say "generating the data set (BENCH_SCALE=$SCALE) into $DATA"
    rm -f "$DATA.json"
    BENCH_SCALE="$SCALE" BENCH_SEED="$SEED" BENCH_FORCE=1 python3 "$HERE/gen.py" "$DATA" >&2 ||
        die "bench/gen.py failed"
fi
DATA_BYTES=$(du -sb "$DATA" | cut -f1)
DATA_FILES=$(find "$DATA" -type f | wc -l)

# --- a clean slate for this run --------------------------------------------------------------
rm -rf "$LOGS" "$WORK"/repo-* "$WORK"/restore-* "$WORK/restic-cache"
mkdir -p "$LOGS"
printf 'benchmark password %s\n' "$SEED" >"$PW"
chmod 600 "$PW"

warm() {
    say "warming the page cache"
    find "$DATA" -type f -print0 | xargs -0 cat >/dev/null
}

# Results: per tool and step, wall seconds, CPU seconds, peak RSS (KiB), status text.
declare -A WALL CPU RSS STATUS
declare -A BROKEN
FAILED=0

cmd_for() { # tool: prints nothing, sets the CMD array prefix for that tool
    local tool=$1
    if [ "$tool" = restic ]; then
        CMD=("$RESTIC" -r "$WORK/repo-restic" --password-file "$PW" --cache-dir "$WORK/restic-cache" --json)
    else
        CMD=("$BACKUPCTL" -r "$WORK/repo-backupctl" --password-file "$PW" --json)
    fi
}

# measure TOOL STEP ARGS...: runs the tool's command with ARGS, timed. A failed init or backup
# marks the tool broken: its later steps are skipped (a failed restore or check is not).
measure() {
    local tool=$1 step=$2
    shift 2
    local key="$tool,$step"
    if [ -n "${BROKEN[$tool]:-}" ]; then
        STATUS[$key]="skipped"
        return 1
    fi
    cmd_for "$tool"
    local log="$LOGS/$tool-$step" t0 t1 rc
    say "$tool: $step"
    t0=$(date +%s.%N)
    "$GNUTIME" -v -o "$log.time" "${CMD[@]}" "$@" >"$log.out" 2>"$log.err"
    rc=$?
    t1=$(date +%s.%N)
    WALL[$key]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    CPU[$key]=$(awk -F': ' '/User time \(seconds\)|System time \(seconds\)/ { s += $2 } END { printf "%.2f", s }' "$log.time")
    RSS[$key]=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log.time")
    if [ "$rc" != 0 ]; then
        STATUS[$key]="FAILED (exit $rc)"
        case "$step" in init | backup-*) BROKEN[$tool]=1 ;; esac
        FAILED=1
        say "$tool: $step failed (exit $rc); see $log.err:"
        tail -n 5 "$log.err" >&2
        return 1
    fi
    STATUS[$key]="ok"
    return 0
}

# Where a restore put the source tree: restic recreates the absolute path below the target.
restored_root() {
    local target=$1
    if [ -d "$target$DATA" ]; then
        printf '%s' "$target$DATA"
    elif [ -d "$target/$(basename "$DATA")" ]; then
        printf '%s' "$target/$(basename "$DATA")"
    else
        printf '%s' "$target"
    fi
}

declare -A SAME META SNAPS REPO_BYTES
verify_restore() {
    local tool=$1 target="$WORK/restore-$1" root
    root=$(restored_root "$target")
    say "$tool: verifying the restore ($root)"
    if diff -r --no-dereference "$DATA" "$root" >"$LOGS/$tool-restore.diff" 2>&1; then
        SAME[$tool]="yes"
    else
        SAME[$tool]="NO ($(wc -l <"$LOGS/$tool-restore.diff") lines in logs/$tool-restore.diff)"
        FAILED=1
    fi
    # Modes and mtimes (files and folders), reported, not fatal.
    META[$tool]=$(python3 - "$DATA" "$root" "$LOGS/$tool-restore.meta" <<'EOF'
import os, stat, sys
src, dst, log = sys.argv[1:4]
bad = []
for d, dirs, files in os.walk(src):
    for n in dirs + files + ["."]:
        p = os.path.normpath(os.path.join(d, n))
        rel = os.path.relpath(p, src)
        q = os.path.join(dst, rel)
        try:
            a, b = os.lstat(p), os.lstat(q)
        except FileNotFoundError:
            bad.append("missing " + rel)
            continue
        if stat.S_ISLNK(a.st_mode):
            continue
        if a.st_mode != b.st_mode:
            bad.append("mode %o != %o %s" % (a.st_mode, b.st_mode, rel))
        elif a.st_mtime_ns != b.st_mtime_ns:
            bad.append("mtime %d != %d %s" % (a.st_mtime_ns, b.st_mtime_ns, rel))
open(log, "w").write("\n".join(sorted(set(bad))) + "\n")
print("yes" if not bad else "no (%d differ, logs/%s)" % (len(set(bad)), os.path.basename(log)))
EOF
)
}

count_snapshots() {
    local tool=$1
    cmd_for "$tool"
    SNAPS[$tool]=$("${CMD[@]}" snapshots 2>>"$LOGS/$tool-snapshots.err" |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' 2>>"$LOGS/$tool-snapshots.err" || echo "?")
    if [ "${SNAPS[$tool]}" != 3 ]; then
        FAILED=1
    fi
}

# --- the run -------------------------------------------------------------------------------
for t in $TOOLS; do
    if [ "$t" = restic ]; then
        measure restic init init --repository-version 2
    else
        measure backupctl init init
    fi
done
warm
for t in $TOOLS; do
    extra=(); [ "$t" = restic ] && extra=(--compression auto)
    measure "$t" backup-initial backup "${extra[@]}" "$DATA"
done
for t in $TOOLS; do
    extra=(); [ "$t" = restic ] && extra=(--compression auto)
    measure "$t" backup-nochange backup "${extra[@]}" "$DATA"
done
say "mutating ~2% of the data set"
python3 "$HERE/mutate.py" "$DATA" >"$LOGS/mutate.out" 2>&1 || die "bench/mutate.py failed; see $LOGS/mutate.out"
warm
for t in $TOOLS; do
    extra=(); [ "$t" = restic ] && extra=(--compression auto)
    measure "$t" backup-mutated backup "${extra[@]}" "$DATA"
done
for t in $TOOLS; do
    rm -rf "$WORK/restore-$t"
    if measure "$t" restore restore latest --target "$WORK/restore-$t"; then
        verify_restore "$t"
    else
        SAME[$t]="-"
        META[$t]="-"
    fi
done
for t in $TOOLS; do
    measure "$t" check check --read-data
done
for t in $TOOLS; do
    if [ -n "${BROKEN[$t]:-}" ]; then
        SNAPS[$t]="-" # a failed backup's repository says nothing about the tool
        REPO_BYTES[$t]="-"
        continue
    fi
    count_snapshots "$t"
    REPO_BYTES[$t]=$(du -sb "$WORK/repo-$t" | cut -f1)
done

# --- the table -----------------------------------------------------------------------------
STEPS="backup-initial backup-nochange backup-mutated restore check"
declare -A LABEL=(
    [backup-initial]="initial backup"
    [backup-nochange]="backup, nothing changed"
    [backup-mutated]="backup after ~2% changed"
    [restore]="full restore"
    [check]="check --read-data"
)
cell() { # tool key kind
    local tool=$1 key="$1,$2" kind=$3 st
    st="${STATUS[$key]:-}"
    if [ "$st" != ok ]; then
        [ -n "$st" ] && printf '%s' "$st" || printf 'not run'
        return
    fi
    case "$kind" in
        wall) printf '%s' "${WALL[$key]}" ;;
        cpu) printf '%s' "${CPU[$key]}" ;;
        rss) awk -v k="${RSS[$key]}" 'BEGIN { printf "%.1f", k / 1024 }' ;;
    esac
}
ratio() { # a b: b/a (backupctl/restic) when both are numbers
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && a + 0 > 0) printf "%.2f", b / a; else printf "-" }'
}
val() { # tool kind step
    if has_tool "$1"; then cell "$1" "$3" "$2"; else printf 'not run'; fi
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

table() {
    local r b
    echo "| step | metric | restic | backupctl | backupctl/restic |"
    echo "| --- | --- | ---: | ---: | ---: |"
    for s in $STEPS; do
        for kind in wall cpu rss; do
            r=$(val restic "$kind" "$s")
            b=$(val backupctl "$kind" "$s")
            case "$kind" in wall) m="wall s" ;; cpu) m="CPU s (user+sys)" ;; rss) m="peak RSS MiB" ;; esac
            echo "| ${LABEL[$s]} | $m | $r | $b | $(ratio "$r" "$b") |"
        done
    done
    r="not run"; b="not run"
    case "${REPO_BYTES[restic]:-}" in "") ;; -) r="-" ;; *) r=$(mib "${REPO_BYTES[restic]}") ;; esac
    case "${REPO_BYTES[backupctl]:-}" in "") ;; -) b="-" ;; *) b=$(mib "${REPO_BYTES[backupctl]}") ;; esac
    echo "| repository (3 snapshots) | size MiB (du -sb) | $r | $b | $(ratio "$r" "$b") |"
    echo "| repository | snapshots | ${SNAPS[restic]:-not run} | ${SNAPS[backupctl]:-not run} | |"
    echo "| restore | identical content (diff -r) | ${SAME[restic]:-not run} | ${SAME[backupctl]:-not run} | |"
    echo "| restore | same modes and mtimes | ${META[restic]:-not run} | ${META[backupctl]:-not run} | |"
}

{
    echo "# Benchmark: backupctl vs restic"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "- data: BENCH_SCALE=$SCALE, seed $SEED: $(mib "$DATA_BYTES") MiB in $DATA_FILES files (bench/gen.py), then ~2% changed (bench/mutate.py)"
    has_tool restic && echo "- restic: $("$RESTIC" version 2>/dev/null | head -n 1), repository version 2, compression auto"
    has_tool backupctl && echo "- backupctl: $("$BACKUPCTL" --version 2>/dev/null) at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown), binary $BACKUPCTL"
    echo "- page cache warm; wall time from the shell, CPU and peak RSS from GNU time; ratios below 1 favour backupctl"
    echo
    table
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
echo
cat "$RESULTS"
echo
echo "(written to $RESULTS; logs in $LOGS)"
exit "$FAILED"
