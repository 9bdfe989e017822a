#!/usr/bin/env bash
# Set up a Docker engine for edgeprof's integration tests and examples.
#
#   eval "$(scripts/engine.sh start)"   # reuse $DOCKER_HOST / /var/run/docker.sock, or start our own dockerd
#   scripts/engine.sh env               # print the export line if an engine is reachable
#   scripts/engine.sh stop              # stop the dockerd we started (if any), unmount its folders
#
# Only the `export DOCKER_HOST=...` line goes to stdout; all messages go to stderr.
# Our own daemon runs with --iptables=false --bridge=none (works in unprivileged-ish
# sandboxes); containers then have no default bridge network: use `--network none`
# or `--network host` (see examples/objcounter/README.md).
set -euo pipefail

DIR="${EDGEPROF_ENGINE_DIR:-/tmp/edgeprof-engine}"
# shellcheck source=scripts/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
OWN_SOCK="$DIR/docker.sock"
SYS_SOCK=/var/run/docker.sock

log() { echo "engine.sh: $*" >&2; }

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@" >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends "$@" >&2
    fi
}

have_docker_cli() { command -v docker >/dev/null 2>&1; }

# answers HOST -> 0 if `docker info` works against HOST (empty = current env)
answers() {
    have_docker_cli || return 1
    if [ -n "$1" ]; then
        DOCKER_HOST="$1" timeout 15 docker info >/dev/null 2>&1
    else
        timeout 15 docker info >/dev/null 2>&1
    fi
}

find_engine() {
    # prints the DOCKER_HOST of a reachable engine, or returns 1
    if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
        echo "$DOCKER_HOST"; return 0
    fi
    if [ -S "$SYS_SOCK" ] && answers "unix://$SYS_SOCK"; then
        echo "unix://$SYS_SOCK"; return 0
    fi
    if [ -S "$OWN_SOCK" ] && answers "unix://$OWN_SOCK"; then
        echo "unix://$OWN_SOCK"; return 0
    fi
    return 1
}

our_pid() {
    # pid of the dockerd we started, if still alive
    local pid
    [ -f "$DIR/dockerd.pid" ] || return 1
    pid="$(cat "$DIR/dockerd.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

cmd_start() {
    local host
    if host="$(find_engine)"; then
        log "engine reachable at $host"
        echo "export DOCKER_HOST=$host"
        return 0
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! have_docker_cli; then
        log "installing docker.io"
        apt_install docker.io
    fi
    mkdir -p "$DIR"
    if pid="$(our_pid)"; then
        log "dockerd (pid $pid) is running but not answering yet; waiting"
    else
        rm -f "$OWN_SOCK" "$DIR/dockerd.pid"
        log "starting dockerd (log: $DIR/dockerd.log)"
        # setsid + nohup: the daemon outlives this script and its terminal; started from its
        # own folder, so it never holds the caller's directory (e.g. a CI clone later removed)
        (cd "$DIR" && exec setsid nohup dockerd \
            --host "unix://$OWN_SOCK" \
            --data-root "$DIR/data" \
            --exec-root "$DIR/exec" \
            --pidfile "$DIR/dockerd.pid" \
            --iptables=false --bridge=none \
            >>"$DIR/dockerd.log" 2>&1 </dev/null) &
    fi
    local i
    for i in $(seq 1 60); do
        if answers "unix://$OWN_SOCK"; then
            log "dockerd ready after ${i}s"
            echo "export DOCKER_HOST=unix://$OWN_SOCK"
            return 0
        fi
        sleep 1
    done
    log "dockerd did not answer within 60 s; log tail:"
    tail -n 40 "$DIR/dockerd.log" >&2 || true
    exit 1
}

cmd_stop() {
    local pid i
    if pid="$(our_pid)"; then
        log "stopping dockerd (pid $pid)"
        kill -TERM "$pid"
        for i in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "dockerd did not stop in 30 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 1
        fi
        # its containerd and shims go with it; anything still holding our folder is ours too
        pkill -f "containerd.*$DIR" 2>/dev/null || true
        log "stopped"
    else
        log "no dockerd started by us is running"
    fi
    unmount_under "$DIR"
}

cmd_env() {
    local host
    if host="$(find_engine)"; then
        echo "export DOCKER_HOST=$host"
    else
        log "no engine reachable"
        return 1
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
