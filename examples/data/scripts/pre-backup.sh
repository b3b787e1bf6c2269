#!/bin/sh
# Runs before each backup: makes a consistent copy of the live database.
set -eu
db=/var/lib/inventory/inventory.sqlite
out=/var/lib/inventory/backup/inventory.sqlite
mkdir -p "$(dirname "$out")"
sqlite3 "$db" ".backup '$out'"
echo "pre-backup: copied $(stat -c %s "$out") bytes of $db"
