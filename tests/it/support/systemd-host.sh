#!/usr/bin/env bash
# tests/it/support/systemd-host.sh - backupd's throwaway "real systemd" test host for service-registration tests,
# usable on machines whose PID 1 is NOT systemd (e.g. Firecracker VMs with a custom init),
# as well as on ordinary systemd hosts. Needs root.
#
# How it works: a minimal Debian rootfs is built once with debootstrap (cached as a
# directory + a .tar.zst), every test host is an overlayfs instance on top of it
# (lower = cached rootfs, upper = per-instance dir, so state survives "reboots" of the
# instance), booted with `systemd-nspawn --boot --register=no --keep-unit` (no host
# machined/D-Bus needed). Commands are run inside with `nsenter` into the container's
# PID 1 (systemd-run -M / machinectl need a systemd host and do NOT work here).
#
# Usage:
#   systemd-host.sh build                      # apt deps + debootstrap (once; cached)
#   systemd-host.sh boot    NAME               # create (if needed) and boot instance, wait until running
#   systemd-host.sh exec    NAME CMD [ARGS...] # run CMD inside (as root), exit code propagated
#   systemd-host.sh user    NAME USER CMD...   # run CMD inside as USER with its user manager (linger)
#   systemd-host.sh copy    NAME SRC DEST      # install a host file into the instance (works while running)
#   systemd-host.sh stop    NAME               # clean poweroff, keeps instance state
#   systemd-host.sh destroy NAME               # stop + remove instance state
#   systemd-host.sh leader  NAME               # print host PID of the instance's systemd
#
# Environment:
#   SYSTEMD_HOST_DIR  base dir for cache + instances (default /var/tmp/backupd-systemd-host)
#   SUITE             Debian suite (default bookworm)
#   MIRROR            Debian mirror (default: the first URI apt uses)
#   NSPAWN_NET        extra nspawn networking args (default --private-network; set "" to share host net)
set -euo pipefail

BASE=${SYSTEMD_HOST_DIR:-/var/tmp/backupd-systemd-host}
SUITE=${SUITE:-bookworm}
CACHE_DIR=$BASE/cache/$SUITE
CACHE_TAR=$BASE/cache/$SUITE.tar.zst
INCLUDE=systemd,systemd-sysv,dbus,libpam-systemd,procps
NSPAWN_NET=${NSPAWN_NET---private-network}

log() { printf '[systemd-host] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"

default_mirror() {
    local m
    m=$(grep -hoE '^URIs: *[^ ]+/debian$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}') || true
    [ -n "$m" ] || m=$(grep -hoE '^deb +[^ ]+/debian ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}') || true
    [ -n "$m" ] || { echo "no Debian mirror found in the apt sources; set MIRROR" >&2; exit 1; }
    echo "$m"
}
MIRROR=${MIRROR:-$(default_mirror)}

need_tools() {
    local missing=()
    command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v zstd >/dev/null || missing+=(zstd)
    command -v nsenter >/dev/null || missing+=(util-linux)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}" >/dev/null
    fi
}

cmd_build() {
    need_tools
    if [ -x "$CACHE_DIR/lib/systemd/systemd" ]; then log "rootfs cached at $CACHE_DIR"; return 0; fi
    mkdir -p "$BASE/cache"
    if [ -f "$CACHE_TAR" ]; then
        log "extracting $CACHE_TAR"
        rm -rf "$CACHE_DIR.tmp"; mkdir -p "$CACHE_DIR.tmp"
        tar -C "$CACHE_DIR.tmp" -I zstd -xf "$CACHE_TAR"
        mv "$CACHE_DIR.tmp" "$CACHE_DIR"
        return 0
    fi
    log "debootstrap $SUITE from $MIRROR (about 1-2 min)"
    rm -rf "$CACHE_DIR.tmp"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$CACHE_DIR.tmp" "$MIRROR" >"$BASE/cache/debootstrap.log" 2>&1 \
        || { tail -20 "$BASE/cache/debootstrap.log" >&2; die "debootstrap failed"; }
    local R=$CACHE_DIR.tmp
    # slim down + make boots quiet and deterministic
    rm -f "$R"/var/cache/apt/archives/*.deb
    rm -rf "$R"/var/lib/apt/lists/*
    for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer; do
        ln -sf /dev/null "$R/etc/systemd/system/$t"
    done
    : >"$R/etc/machine-id"            # each instance commits its own id on first boot
    echo "systemd-test" >"$R/etc/hostname"
    mv "$R" "$CACHE_DIR"
    tar -C "$CACHE_DIR" -I 'zstd -T0 -3' -cf "$CACHE_TAR" .
    log "rootfs: $(du -sh "$CACHE_DIR" | cut -f1), tarball: $(du -sh "$CACHE_TAR" | cut -f1)"
}

inst() { echo "$BASE/instances/$1"; }

# put nspawn into its own cgroup so it does not create payload/supervisor at the host root
enter_cgroup() {
    local name=$1 h
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then          # pure cgroup2
        mkdir -p "/sys/fs/cgroup/systemd-host-$name"
        echo "$BASHPID" >"/sys/fs/cgroup/systemd-host-$name/cgroup.procs"
    else                                                          # hybrid / legacy
        for h in systemd unified; do
            [ -d "/sys/fs/cgroup/$h" ] || continue
            mkdir -p "/sys/fs/cgroup/$h/systemd-host-$name"
            echo "$BASHPID" >"/sys/fs/cgroup/$h/systemd-host-$name/cgroup.procs"
        done
    fi
}

cleanup_cgroup() {
    local name=$1 d
    for d in "/sys/fs/cgroup/systemd-host-$name" "/sys/fs/cgroup/systemd/systemd-host-$name" "/sys/fs/cgroup/unified/systemd-host-$name"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

leader() {
    local I; I=$(inst "$1")
    [ -f "$I/nspawn.pid" ] || return 1
    local p; p=$(cat "$I/nspawn.pid")
    kill -0 "$p" 2>/dev/null || return 1
    pgrep -P "$p" -x systemd | head -1
}

cmd_boot() {
    local name=${1:?name}; local I; I=$(inst "$name")
    [ -x "$CACHE_DIR/lib/systemd/systemd" ] || cmd_build
    if leader "$name" >/dev/null 2>&1; then log "$name already running"; return 0; fi
    mkdir -p "$I/upper" "$I/work" "$I/root"
    mountpoint -q "$I/root" || mount -t overlay overlay \
        -o "lowerdir=$CACHE_DIR,upperdir=$I/upper,workdir=$I/work" "$I/root"
    local t0; t0=$(date +%s%N)
    # shellcheck disable=SC2086
    ( enter_cgroup "$name"
      exec setsid systemd-nspawn --boot --quiet --register=no --keep-unit \
          --machine="$name" --directory="$I/root" --console=pipe $NSPAWN_NET \
          </dev/null >>"$I/console.log" 2>&1 ) &
    echo $! >"$I/nspawn.pid"
    local L="" s=""
    for _ in $(seq 1 300); do
        if L=$(leader "$name" 2>/dev/null) && [ -n "$L" ]; then
            s=$(nsenter -t "$L" -a systemctl is-system-running 2>/dev/null || true)
            case $s in running|degraded) break ;; esac
        fi
        kill -0 "$(cat "$I/nspawn.pid")" 2>/dev/null || { tail -20 "$I/console.log" >&2; die "nspawn exited"; }
        sleep 0.1
    done
    log "$name is $s after $(( ($(date +%s%N) - t0) / 1000000 )) ms (leader pid $L)"
    [ "$s" = running ] || nsenter -t "$L" -a systemctl --failed --no-pager >&2 || true
}

cmd_exec() {
    local name=${1:?name}; shift
    local L; L=$(leader "$name") || die "$name not running"
    exec nsenter -t "$L" -a "$@"
}

cmd_user() {
    local name=${1:?name} user=${2:?user}; shift 2
    local L; L=$(leader "$name") || die "$name not running"
    local E=(nsenter -t "$L" -a)
    "${E[@]}" id -u "$user" >/dev/null 2>&1 || "${E[@]}" useradd -m "$user"
    local uid; uid=$("${E[@]}" id -u "$user")
    "${E[@]}" loginctl enable-linger "$user"
    local _i; for _i in $(seq 1 100); do
        "${E[@]}" systemctl is-active -q "user@$uid.service" && break; sleep 0.1
    done
    local home; home=$("${E[@]}" getent passwd "$user" | cut -d: -f6)
    exec "${E[@]}" runuser -u "$user" -- env XDG_RUNTIME_DIR="/run/user/$uid" HOME="$home" \
        DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" "$@"
}

cmd_copy() {
    local name=${1:?name} src=${2:?src} dest=${3:?dest}; local I; I=$(inst "$name")
    mountpoint -q "$I/root" || die "$name has no mounted root (boot it first)"
    install -D -m "$(stat -c %a "$src")" "$src" "$I/root/${dest#/}"
}

cmd_stop() {
    local name=${1:?name}; local I; I=$(inst "$name")
    local L
    if L=$(leader "$name" 2>/dev/null) && [ -n "$L" ]; then
        nsenter -t "$L" -a systemctl poweroff --no-block 2>/dev/null || kill -s RTMIN+4 "$L" 2>/dev/null || true
        local p; p=$(cat "$I/nspawn.pid")
        for _ in $(seq 1 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && { log "forcing $name down"; kill -TERM "$p"; sleep 2; kill -KILL "$p" 2>/dev/null || true; }
    fi
    cleanup_cgroup "$name"
    rm -f "$I/nspawn.pid"
}

cmd_destroy() {
    local name=${1:?name}; local I; I=$(inst "$name")
    cmd_stop "$name"
    mountpoint -q "$I/root" && umount "$I/root"
    rm -rf "$I"
}

sub=${1:-}; shift || true
case $sub in
    build) cmd_build ;;
    boot) cmd_boot "$@" ;;
    exec) cmd_exec "$@" ;;
    user) cmd_user "$@" ;;
    copy) cmd_copy "$@" ;;
    stop) cmd_stop "$@" ;;
    destroy) cmd_destroy "$@" ;;
    leader) leader "$@" ;;
    *) sed -n '2,30p' "$0"; exit 2 ;;
esac
