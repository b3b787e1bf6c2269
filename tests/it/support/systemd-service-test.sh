#!/usr/bin/env bash
# tests/it/support/systemd-service-test.sh BACKUPD BACKUPCTL - backupctl service/schedule on a real
# systemd: one systemd-nspawn container (tests/it/support/systemd-host.sh), several phases.
#   1. system service: install (binaries and config in folders with spaces), a job runs on
#      schedule, install again is harmless, reboot -> back and the missed slot caught up,
#      kill -9 -> systemd restarts it, uninstall -> stopped and gone, state kept;
#   2. OS-timer mode: schedule install, a tick runs the job, reboot -> the missed slot caught up,
#      schedule uninstall -> gone;
#   3. a user service with linger: install --user, a job runs, uninstall --user.
# Prints "PHASE ... ok" lines and the wall time; exits non-zero at the first failure.
set -euo pipefail
BACKUPD=${1:?backupd binary}; BACKUPCTL=${2:?backupctl binary}
HERE=$(cd "$(dirname "$0")" && pwd)
H="$HERE/systemd-host.sh"
N=${SYSTEMD_TEST_NAME:-backupd-svc-$$}
BASE=${SYSTEMD_HOST_DIR:-/var/tmp/backupd-systemd-host}
export SYSTEMD_HOST_DIR=$BASE
ROOT=$BASE/instances/$N/root
BIN="/opt/back up/bin"
CFG="/etc/backupd/my config.toml"
T0=$(date +%s)

say() { printf '[systemd-test +%ss] %s\n' "$(( $(date +%s) - T0 ))" "$*" >&2; }
fail() {
    say "FAILED: $*"
    "$H" exec "$N" journalctl --no-pager -n 60 -u backupd.service -u backupd-run-due.service >&2 2>/dev/null || true
    exit 1
}
cleanup() { "$H" destroy "$N" >/dev/null 2>&1 || true; }
trap cleanup EXIT

inside() { "$H" exec "$N" "$@"; }
# The number of runs with an outcome whose reason matches a pattern, from a state file on the host side.
runs() { # FILE OUTCOME REGEX
    python3 - "$1" "$2" "$3" <<'PY'
import json, re, sys
try:
    h = json.load(open(sys.argv[1]))["history"]
except (OSError, ValueError):
    h = []
print(sum(1 for r in h if r["outcome"] == sys.argv[2] and re.search(sys.argv[3], r["reason"])))
PY
}
wait_runs() { # FILE OUTCOME REGEX MIN TIMEOUT WHAT
    local i
    for i in $(seq 1 $(( $5 * 2 ))); do
        [ "$(runs "$1" "$2" "$3")" -ge "$4" ] && return 0
        sleep 0.5
    done
    python3 -c 'import json,sys; [print(r["outcome"], r["reason"], r.get("error")) for r in json.load(open(sys.argv[1]))["history"]]' "$1" >&2 2>/dev/null || true
    fail "timed out after $5 s waiting for $6"
}
wait_until() { # TIMEOUT WHAT CMD...
    local t=$1 what=$2 i; shift 2
    for i in $(seq 1 $(( t * 2 ))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    fail "timed out after $t s waiting for $what"
}
reboot() {
    "$H" stop "$N"
    [ -n "${1:-}" ] && sleep "$1"
    "$H" boot "$N"
}

"$H" build
"$H" boot "$N"
say "container $N booted"
"$H" copy "$N" "$BACKUPD" "$BIN/backupd"
"$H" copy "$N" "$BACKUPCTL" "$BIN/backupctl"
STATE=$ROOT/var/lib/backupd/jobs/app.json

# ---- 1. the system service ----
inside bash -c 'mkdir -p /srv/data "/srv/backup repo" /etc/backupd && echo secret > /srv/data/private.txt && chmod 600 /srv/data/private.txt \
    && echo "correct horse" > /etc/backupd/password && chmod 600 /etc/backupd/password'
cat >"$ROOT$CFG" <<TOML
[repositories.main]
path = "/srv/backup repo"
password_file = "/etc/backupd/password"

[jobs.app]
repository = "main"
paths = ["/srv/data"]
schedule = "*/10 * * * * *"
timezone = "UTC"
TOML
inside "$BIN/backupctl" -r "/srv/backup repo" --password-file /etc/backupd/password init >/dev/null
out=$(inside "$BIN/backupctl" service install --config "$CFG") || fail "service install: $out"
echo "$out" | grep -q "created the system user backupd" || fail "no user created: $out"
inside chown -R backupd: "/srv/backup repo"
# The unit as systemd read it: the binary and the config, spaces and all, as single arguments.
es=$(inside systemctl show -p ExecStart --value backupd.service)
echo "$es" | grep -qF "argv[]=/opt/back up/bin/backupd --config /etc/backupd/my config.toml run" || fail "ExecStart as systemd read it: $es"
inside systemctl is-active -q backupd.service || fail "backupd.service is not active after install"
[ "$(inside systemctl show -p User --value backupd.service)" = backupd ] || fail "not running as backupd"
# The remote-repository cache folder exists and belongs to the service's user (CacheDirectory=).
[ "$(inside stat -c %U:%a /var/cache/backupd)" = backupd:700 ] || fail "/var/cache/backupd: $(inside stat -c %U:%a /var/cache/backupd 2>&1)"
wait_runs "$STATE" success '^scheduled ' 1 30 "a scheduled run of the system service"
say "PHASE system service: installed, runs on schedule ok"
pid1=$(inside systemctl show -p MainPID --value backupd.service)
out=$(inside "$BIN/backupctl" service install --config "$CFG") || fail "second install: $out"
echo "$out" | grep -q "is up to date" || fail "second install rewrote the unit: $out"
[ "$(inside systemctl show -p MainPID --value backupd.service)" = "$pid1" ] || fail "second install restarted the daemon"
inside "$BIN/backupctl" service status >/dev/null || fail "service status is not 0 while running"
say "PHASE system service: install twice is harmless ok"

reboot 11
wait_until 30 "backupd.service after the reboot" "$H" exec "$N" systemctl is-active -q backupd.service
wait_runs "$STATE" success '^catch-up .* missed while backupd was stopped' 1 30 "the catch-up after the reboot"
say "PHASE system service: reboot -> back, missed slot caught up ok"

pid=$(inside systemctl show -p MainPID --value backupd.service)
inside kill -9 "$pid"
restarted() { local p; p=$("$H" exec "$N" systemctl show -p MainPID --value backupd.service); [ "$p" != 0 ] && [ "$p" != "$pid" ] && "$H" exec "$N" systemctl is-active -q backupd.service; }
wait_until 30 "systemd to restart backupd after kill -9" restarted
[ "$(inside systemctl show -p NRestarts --value backupd.service)" -ge 1 ] || fail "NRestarts is 0"
say "PHASE system service: kill -9 -> restarted by systemd ok"

out=$(inside "$BIN/backupctl" schedule install --config "$CFG" 2>&1) && fail "schedule install beside the service: $out"
echo "$out" | grep -q "resident service is installed" || fail "conflict message: $out"
out=$(inside "$BIN/backupctl" service uninstall --config "$CFG") || fail "uninstall: $out"
echo "$out" | grep -q "kept the state" || fail "uninstall does not say where the state is: $out"
inside systemctl is-active -q backupd.service && fail "still active after uninstall"
[ -e "$ROOT/etc/systemd/system/backupd.service" ] && fail "the unit file is still there"
inside pgrep -x backupd >/dev/null && fail "a backupd process is left"
[ -f "$STATE" ] || fail "uninstall removed the state"
set +e; inside "$BIN/backupctl" service status >/dev/null; rc=$?; set -e
[ "$rc" = 22 ] || fail "service status after uninstall: exit $rc, not 22"
say "PHASE system service: uninstall -> stopped and gone, state kept ok"

# ---- 2. the OS-timer mode ----
sed -i 's|^schedule = .*|schedule = "* * * * *"|' "$ROOT$CFG"
base=$(runs "$STATE" success '^scheduled ')
out=$(inside "$BIN/backupctl" schedule install --config "$CFG") || fail "schedule install: $out"
inside systemctl is-active -q backupd-run-due.timer || fail "the timer is not active"
wait_runs "$STATE" success '^scheduled ' $(( base + 1 )) 75 "a scheduled run from the OS timer"
say "PHASE OS timer: installed, a tick runs the job ok"
# Off across a minute boundary: that minute's tick is missed, and Persistent=true fires it at
# boot (before the next regular tick), and backupd runs the slot that passed while off.
"$H" stop "$N"
sleep $(( 61 - $(date +%s) % 60 ))
missed=$(date -u '+%Y-%m-%d %H:%M')
next_tick=$(( ($(date +%s) / 60 + 1) * 60 ))
"$H" boot "$N"
slot_start() { # the start (epoch) of the successful run of slot $1, or nothing
    python3 - "$STATE" "$1" <<'PY'
import datetime, json, sys
for r in json.load(open(sys.argv[1]))["history"]:
    if r.get("slot") == sys.argv[2] and r["outcome"] == "success":
        print(int(datetime.datetime.fromisoformat(r["start"][:19] + "+00:00").timestamp()))
PY
}
for _ in $(seq 1 120); do s=$(slot_start "$missed"); [ -n "$s" ] && break; sleep 0.5; done
[ -n "$s" ] || fail "the slot $missed that passed while the machine was off was not run after the boot"
[ "$s" -lt "$next_tick" ] || fail "the slot $missed ran at $s, only at the next regular tick ($next_tick): Persistent=true did not fire at boot"
say "PHASE OS timer: reboot -> missed slot caught up ok"
out=$(inside "$BIN/backupctl" schedule uninstall --config "$CFG") || fail "schedule uninstall: $out"
inside systemctl is-active -q backupd-run-due.timer && fail "the timer is still active"
[ -e "$ROOT/etc/systemd/system/backupd-run-due.timer" ] && fail "the timer file is still there"
say "PHASE OS timer: uninstall -> gone ok"

# ---- 3. a user service with linger ----
U=alice
"$H" user "$N" "$U" true
UH=$ROOT/home/$U
mkdir -p "$UH/.config/backupd" "$UH/data"
echo hello >"$UH/data/f.txt"; echo "pw of alice" >"$UH/pw"
cat >"$UH/.config/backupd/backupd.toml" <<TOML
[repositories.main]
path = "/home/$U/my repo"
password_file = "/home/$U/pw"

[jobs.app]
repository = "main"
paths = ["/home/$U/data"]
schedule = "*/5 * * * * *"
TOML
inside chown -R "$U:" "/home/$U"
"$H" user "$N" "$U" "$BIN/backupctl" -r "/home/$U/my repo" --password-file "/home/$U/pw" init >/dev/null
out=$("$H" user "$N" "$U" "$BIN/backupctl" service install --user) || fail "install --user: $out"
echo "$out" | grep -q "linger is enabled" || fail "linger: $out"
"$H" user "$N" "$U" systemctl --user is-active -q backupd.service || fail "the user service is not active"
wait_runs "$UH/.local/state/backupd/jobs/app.json" success '^scheduled ' 1 30 "a scheduled run of the user service"
say "PHASE user service: installed with linger, runs on schedule ok"
out=$("$H" user "$N" "$U" "$BIN/backupctl" service uninstall --user) || fail "uninstall --user: $out"
"$H" user "$N" "$U" systemctl --user is-active -q backupd.service && fail "the user service is still active"
say "PHASE user service: uninstall ok"
say "all phases passed in $(( $(date +%s) - T0 )) s"
