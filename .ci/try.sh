#!/usr/bin/env bash
# The README's "Try it" on one machine, with no internet and without touching the machine's own
# containerd or /etc/containerd: everything lives under ./try (gitignored).
#
#   try.sh upstream     registry:2 on 127.0.0.1:5001 playing docker.io, holding library/hello:1.0
#                       and :2.0 (small images built here, imported with `regfront import`)
#   try.sh containerd   a containerd of its own: root, state and socket under ./try/containerd,
#                       the CRI off; it runs as root (through sudo when you are not root), its
#                       socket is yours, so `ctr --address try/containerd.sock` needs no sudo
#   try.sh stop         stop both (by the process ids they were started with), remove ./try
#
# The Makefile's try-upstream, try-containerd and try-stop targets call this.
set -euo pipefail
cd "$(dirname "$0")/.."

TRY=$PWD/try
BIN=$PWD/.venv/bin
UPSTREAM=127.0.0.1:5001
IMAGE=library/hello
TAGS="1.0 2.0"
CTD=$TRY/containerd
SOCKET=$TRY/containerd.sock
# The longest unix socket path Linux takes (108 bytes with the NUL), less containerd's ".ttrpc".
MAX_SOCKET=101

say() { echo "try: $*"; }
die() { echo "try: $*" >&2; exit 1; }

# Commands that must run as root: containerd, and what it leaves behind.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "containerd runs as root: run this as root, or install sudo"
    fi
}

# A process started here is still running: its pid file's process, by that name (a pid is reused).
running() { [ -f "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]; }

# Poll for up to 20 s; on timeout show the log.
wait_for() {
    local what=$1 log=$2
    shift 2
    for _ in $(seq 200); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "--- $log ---" >&2
    tail -n 20 "$log" >&2 || true
    die "$what is not answering after 20 s"
}

# GET URL answers (never through a proxy: it is on loopback).
answers() {
    "$BIN/python" -c 'import sys, urllib.request as u
u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=1)' "$1"
}

start_upstream() {
    local pidfile=$TRY/registry.pid log=$TRY/registry.log
    if running "$pidfile" docker-registry; then
        say "registry:2 already runs on http://$UPSTREAM (pid $(cat "$pidfile"))"
        return
    fi
    command -v docker-registry >/dev/null || die "docker-registry (registry:2) is not installed: sudo apt-get install docker-registry"
    if "$BIN/python" -c 'import socket; socket.create_connection(("127.0.0.1", 5001), 1)' 2>/dev/null; then
        die "something already listens on $UPSTREAM: stop it (or it is a registry:2 from an earlier try: make try-stop)"
    fi
    mkdir -p "$TRY"
    if [ ! -f "$TRY/hello-oci/index.json" ]; then
        say "building $IMAGE:{${TAGS// /,}} (one small layer each, linux/amd64 and linux/arm64) in try/hello-oci"
        "$BIN/python" - "$TRY/hello-oci" $TAGS <<'EOF'
import sys
from pathlib import Path

from tests.images import Layout

layout = Layout(Path(sys.argv[1]))
for tag in sys.argv[2:]:
    layer = {"hello.txt": f"hello from regfront, {tag}\n".encode()}
    images = [layout.image([layer], architecture=arch) for arch in ("amd64", "arm64")]
    layout.tag(layout.index(images), tag)
EOF
    fi
    # registry:2 reads the layout regfront writes: import straight into its storage directory.
    for tag in $TAGS; do
        "$BIN/regfront" import "oci:$TRY/hello-oci:$tag" "$IMAGE:$tag" --storage "$TRY/upstream" \
            >/dev/null
    done
    cat >"$TRY/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $TRY/upstream
http:
  addr: $UPSTREAM
  secret: regfront-try
EOF
    # REGISTRY_* variables would override the file.
    (
        unset "${!REGISTRY_@}"
        setsid docker-registry serve "$TRY/registry.yml" >"$log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    )
    wait_for "registry:2 on $UPSTREAM" "$log" answers "http://$UPSTREAM/v2/"
    say "registry:2 on http://$UPSTREAM plays docker.io and holds $IMAGE:{${TAGS// /,}} (log: try/registry.log)"
}

containerd_config() {
    local q='"'
    cat <<EOF
# A containerd of its own for the README's "Try it": nothing in /etc/containerd or /var/lib/containerd.
version = 2
root = $q$CTD/root$q
state = $q$CTD/state$q
# ctr only: the CRI would want CNI and a sandbox image.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[debug]
  level = "warn"

[grpc]
  address = $q$SOCKET$q
  uid = $(id -u)
  gid = $(id -g)

[plugins."io.containerd.internal.v1.opt"]
  path = $q$CTD/opt$q
EOF
}

ctr_answers() { ctr --address "$SOCKET" --connect-timeout 1s version; }

start_containerd() {
    local pidfile=$CTD/containerd.pid log=$CTD/containerd.log
    command -v containerd >/dev/null && command -v ctr >/dev/null ||
        die "containerd is not installed: sudo apt-get install containerd"
    if running "$pidfile" containerd; then
        say "containerd already runs on try/containerd.sock (pid $(cat "$pidfile"))"
        return
    fi
    [ "${#SOCKET}" -le "$MAX_SOCKET" ] ||
        die "$SOCKET is longer than a unix socket path may be ($MAX_SOCKET): use a shorter directory"
    mkdir -p "$CTD"
    containerd_config >"$CTD/config.toml"
    say "starting containerd $(containerd --version | awk '{print $3}') as root$([ "$(id -u)" -eq 0 ] || echo ' (sudo)'): root, state and socket under try/, the CRI off"
    # setsid: its own session, so it outlives this script and make; stopped by its pid.
    as_root sh -c 'setsid containerd --config "$1" >"$2" 2>&1 </dev/null & echo $! >"$3"' \
        sh "$CTD/config.toml" "$log" "$pidfile"
    wait_for "containerd on $SOCKET" "$log" ctr_answers
    say "containerd on try/containerd.sock (log: try/containerd/containerd.log)"
}

# stop_pid NAME PIDFILE COMMAND [as_root]: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
    local what=$1 pidfile=$2 comm=$3 pid
    shift 3
    running "$pidfile" "$comm" || return 0
    pid=$(cat "$pidfile")
    "$@" kill "$pid"
    for _ in $(seq 100); do
        running "$pidfile" "$comm" || { say "stopped $what (pid $pid)"; return 0; }
        sleep 0.1
    done
    "$@" kill -KILL "$pid" 2>/dev/null || true
    say "killed $what (pid $pid): it did not stop within 10 s"
}

stop_all() {
    [ -d "$TRY" ] || { say "nothing to stop (no try/)"; return; }
    stop_pid registry:2 "$TRY/registry.pid" docker-registry
    stop_pid containerd "$CTD/containerd.pid" containerd as_root
    # Unpacking mounts under containerd's root; a killed containerd can leave one behind.
    awk -v dir="$TRY/" 'index($5, dir) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r point; do as_root umount --lazy "$point"; done
    if [ -d "$CTD" ]; then as_root rm -rf "$TRY"; else rm -rf "$TRY"; fi
    say "removed try/"
}

case "${1:-}" in
    upstream) start_upstream ;;
    containerd) start_containerd ;;
    stop) stop_all ;;
    *) die "usage: $0 upstream|containerd|stop" ;;
esac
