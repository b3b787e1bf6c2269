#!/usr/bin/env bash
# examples/demo.sh: backupctl from start to finish on the bundled example data (examples/data).
#
# Usage: examples/demo.sh            (needs cargo; sqlite3 or python3 for the example database)
#        KEEP=1 examples/demo.sh     keep the temporary directory (repository, password, restore)
#
# It builds backupctl (release), copies examples/data into a temporary source folder (and makes
# a small SQLite database there from db/stock.csv), creates a repository with a generated
# password file, then: init, backup, snapshots, a change, a second backup, diff, stats,
# restore into another folder, check --read-data, and compares the restored tree with the
# source (diff -r). Then it runs the daemon: backupd with the example as a job every 5 seconds
# (the database copied with SQLite's online backup API), backupctl status, history and logs
# while it runs, and a clean stop with SIGTERM. Every step is printed with its command; any
# failure stops the demo with a non-zero exit status. If restic is installed, it also checks
# the repository with restic.

set -Eeuo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/target/release/backupctl"
DAEMON="$ROOT/target/release/backupd"
STEP="starting"

fail() {
    local rc=$?
    # Subshells inherit the trap (set -E); only the main shell reports.
    if [ "$BASHPID" = "$$" ]; then
        printf '\ndemo FAILED at step: %s (exit %s)\n' "$STEP" "$rc" >&2
    fi
    exit "$rc"
}
trap fail ERR

if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD="" PLAIN=""; fi
step() {
    STEP="$1"
    printf '\n%s==> %s%s\n' "$BOLD" "$1" "$PLAIN"
}

# show CMD...: prints the command (with the repository and password options shortened), runs it.
show() {
    printf '$ %s\n' "$*" | sed -e "s|$BIN|backupctl|g" -e "s|$DAEMON|backupd|g" -e "s|$TMP|\$TMP|g"
    "$@"
}

step "build backupctl and backupd (cargo build --release)"
command -v cargo >/dev/null || { echo "cargo is needed: install Rust from your distribution or rustup" >&2; false; }
(cd "$ROOT" && cargo build --release --quiet --bin backupctl --bin backupd)
"$BIN" --version

TMP="$(mktemp -d "${TMPDIR:-/tmp}/backupd-demo.XXXXXX")"
DPID=""
cleanup() {
    [ -z "$DPID" ] || kill "$DPID" 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $TMP"
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
SRC="$TMP/source"
REPO="$TMP/repo"
PW="$TMP/password"
RESTORE="$TMP/restore"

step "prepare the source folder from examples/data"
cp -a "$ROOT/examples/data" "$SRC"
make_db() {
    local db="$SRC/db/inventory.sqlite"
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$db" <<'EOF'
CREATE TABLE stock (sku TEXT PRIMARY KEY, name TEXT, warehouse TEXT, quantity INTEGER, unit_price REAL);
.mode csv
.import --skip 1 db/stock.csv stock
CREATE INDEX stock_by_warehouse ON stock(warehouse);
EOF
    elif command -v python3 >/dev/null; then
        python3 - "$db" "$SRC/db/stock.csv" <<'EOF'
import csv, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, name TEXT, warehouse TEXT, quantity INTEGER, unit_price REAL)")
rows = list(csv.reader(open(sys.argv[2])))[1:]
db.executemany("INSERT INTO stock VALUES (?,?,?,?,?)", rows)
db.execute("CREATE INDEX stock_by_warehouse ON stock(warehouse)")
db.commit()
EOF
    else
        echo "(neither sqlite3 nor python3 found: no example database)"
        return 0
    fi
    echo "made db/inventory.sqlite from db/stock.csv"
}
(cd "$SRC" && make_db)
find "$SRC" | sed "s|$TMP|\$TMP|" | sort

step "generate a password file"
head -c 24 /dev/urandom | base64 >"$PW"
chmod 600 "$PW"
echo "password file: \$TMP/password (keep it: without it the backups cannot be read)"

bctl() { show "$BIN" -r "$REPO" --password-file "$PW" "$@"; }

step "init: create the repository"
bctl init

step "backup: first snapshot"
bctl backup "$SRC"

step "snapshots"
bctl snapshots

step "change some files"
printf -- '- [ ] Chen: repeat the restore drill every quarter.\n' >>"$SRC/notes/meeting-2024-03-12.md"
printf 'call the TLS vendor\n' >"$SRC/notes/calls.txt"
rm "$SRC/notes/todo.txt"
chmod 700 "$SRC/scripts/pre-backup.sh"
if [ -f "$SRC/db/inventory.sqlite" ]; then
    if command -v sqlite3 >/dev/null; then
        sqlite3 "$SRC/db/inventory.sqlite" "UPDATE stock SET quantity = quantity - 1 WHERE sku = 'SKU-0003';"
    else
        python3 -c 'import sqlite3, sys; d = sqlite3.connect(sys.argv[1]); d.execute("UPDATE stock SET quantity = quantity - 1 WHERE sku = ?", ("SKU-0003",)); d.commit()' "$SRC/db/inventory.sqlite"
    fi
fi
echo "appended to notes/meeting-2024-03-12.md, added notes/calls.txt, removed notes/todo.txt,"
echo "made scripts/pre-backup.sh mode 700, sold one pallet jack in db/inventory.sqlite"

step "backup: second snapshot"
bctl backup "$SRC"
bctl snapshots
FIRST="$("$BIN" -r "$REPO" --password-file "$PW" --json snapshots | grep -o '"id": "[0-9a-f]*"' | head -n 1 | cut -d'"' -f4)"
[ -n "$FIRST" ] || { echo "could not read the first snapshot's id from 'snapshots --json'" >&2; false; }

step "diff: what changed between the two snapshots"
bctl diff "${FIRST:0:8}" latest

step "stats: how much is stored"
bctl stats --mode raw-data

step "restore the latest snapshot into another folder"
bctl restore latest --target "$RESTORE"

step "check --read-data: verify every byte in the repository"
bctl check --read-data

step "compare the restored tree with the source (diff -r)"
if [ -d "$RESTORE$SRC" ]; then
    RESTORED="$RESTORE$SRC" # the full path is recreated below the target, as restic does
else
    RESTORED="$RESTORE"
fi
show diff -r --no-dereference "$SRC" "$RESTORED"
echo "identical"

if command -v restic >/dev/null; then
    step "optional: restic reads the same repository"
    show restic -r "$REPO" --password-file "$PW" --no-cache check --read-data
fi

step "backupd: the example as a scheduled job (every 5 seconds)"
CFG="$TMP/backupd.toml"
DB_SOURCE=""
[ -f "$SRC/db/inventory.sqlite" ] && DB_SOURCE="sqlite = [{ path = \"$SRC/db/inventory.sqlite\" }]"
cat >"$CFG" <<EOF
[daemon]
state_dir = "$TMP/state"
socket = "$TMP/backupd.sock"

[repositories.main]
path = "$REPO"
password_file = "$PW"

[jobs.example]
repository = "main"
paths = ["$SRC"]
exclude = ["*.sqlite"]
$DB_SOURCE
schedule = "*/5 * * * * *"
timezone = "UTC"
retention = { keep_last = 3 }
EOF
sed "s|$TMP|\$TMP|g" "$CFG"
show "$DAEMON" check-config --config "$CFG"
printf '$ backupd --config $TMP/backupd.toml &\n'
"$DAEMON" --config "$CFG" 2>"$TMP/backupd.stderr" &
DPID=$!
echo "waiting for two scheduled runs..."
n=0
for _ in $(seq 1 60); do
    n=$("$BIN" --json history example --config "$CFG" 2>/dev/null | grep -c '"outcome": "success"' || true)
    [ "${n:-0}" -ge 2 ] && break
    sleep 0.5
done
[ "${n:-0}" -ge 2 ] || { echo "backupd did not run the job twice in 30 s; its log:" >&2; cat "$TMP/backupd.stderr" >&2; false; }
show "$BIN" status --config "$CFG"
show "$BIN" history example --config "$CFG"
show "$BIN" logs -n 6 --job example --config "$CFG"

step "stop backupd (SIGTERM) and check the repository"
kill -TERM "$DPID"
wait "$DPID"
DPID=""
echo "backupd stopped cleanly"
bctl snapshots
bctl check

STEP="done"
printf '\n%sdemo OK%s: init, backup, diff, stats, restore and check worked, the restored tree equals the source, and backupd ran the job on its schedule\n' "$BOLD" "$PLAIN"
