#!/usr/bin/env bash
# Benchmark of the idle daemon (issue #4): 20 scheduled jobs, then for IDLE_SECONDS (default 600)
# nothing due; reports CPU time, wakeups (context switches of every thread) and RSS, then the
# round trip of `status` over the control socket (median, p99; a raw socket client, and the
# whole `backupctl status` command).
# Usage: bash bench/daemon.sh            (IDLE_SECONDS=60 for a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE_SECONDS=${IDLE_SECONDS:-600}
cargo build --release -q --bin backupd --bin backupctl
BIN=target/release
W=$(mktemp -d /tmp/backupd-bench.XXXXXX)
trap 'kill $PID 2>/dev/null || true; rm -rf "$W"' EXIT
echo "correct horse" >"$W/pw"
mkdir -p "$W/data" && echo hello >"$W/data/a"
"$BIN/backupctl" -q -r "$W/repo" --password-file "$W/pw" init
{
    printf '[daemon]\nstate_dir = "%s/state"\nsocket = "%s/d.sock"\n\n' "$W" "$W"
    printf '[repositories.main]\npath = "%s/repo"\npassword_file = "%s/pw"\n\n' "$W" "$W"
    for i in $(seq 1 20); do
        # Daily slots spread over the early morning, none due during the benchmark.
        h=$(( (10#$(date -u +%H) + 12 + i % 6) % 24 ))
        printf '[jobs.job%02d]\nrepository = "main"\npaths = ["%s/data"]\nschedule = "%d %d * * *"\ntimezone = "UTC"\n\n' "$i" "$W" "$i" "$h"
    done
} >"$W/backupd.toml"
"$BIN/backupd" --config "$W/backupd.toml" 2>"$W/stderr" &
PID=$!
for _ in $(seq 100); do [ -S "$W/d.sock" ] && break; sleep 0.1; done
sleep 2
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
switches() { cat /proc/$PID/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
c0=$(cpu); s0=$(switches)
echo "idle for $IDLE_SECONDS s with 20 jobs..."
sleep "$IDLE_SECONDS"
c1=$(cpu); s1=$(switches)
rss=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
threads=$(ls /proc/$PID/task | wc -l)
echo "CPU time while idle: $(( (c1 - c0) * 1000 / ticks )) ms over $IDLE_SECONDS s"
echo "context switches (wakeups) of all $threads threads while idle: $(( s1 - s0 ))"
echo "RSS: $(( rss / 1024 )) MiB now, peak $(( hwm / 1024 )) MiB"
python3 - "$W/d.sock" <<'EOF'
import json, socket, statistics, sys, time
req = (json.dumps({"protocol": 1, "client": "bench", "request": {"type": "status"}}) + "\n").encode()
ts = []
for _ in range(1000):
    t = time.perf_counter()
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(req)
    buf = b""
    while not buf.endswith(b"\n"):
        buf += s.recv(65536)
    s.close()
    ts.append((time.perf_counter() - t) * 1000)
    assert json.loads(buf)["type"] == "status"
ts.sort()
print(f"status round trip over the socket (1000 requests, 20 jobs): median {statistics.median(ts):.3f} ms, p99 {ts[989]:.3f} ms")
EOF
ts=()
for _ in $(seq 50); do
    t0=$(date +%s%N); "$BIN/backupctl" status --json --socket "$W/d.sock" >/dev/null; t1=$(date +%s%N)
    ts+=($(( (t1 - t0) / 1000 )))
done
printf '%s\n' "${ts[@]}" | sort -n | awk '{a[NR]=$1} END {printf "backupctl status --json, whole command (50 runs): median %.1f ms, p99 %.1f ms\n", a[int(NR/2)+1]/1000, a[NR]/1000}'
