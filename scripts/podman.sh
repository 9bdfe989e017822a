#!/usr/bin/env bash
# Run Podman's Docker-compatible API service for edgeprof (tests, examples, manual checks).
#
#   eval "$(scripts/podman.sh start)"   # -> export EDGEPROF_PODMAN_HOST=unix://.../podman.sock
#   DOCKER_HOST=$EDGEPROF_PODMAN_HOST edgeprof run spec.yaml
#   scripts/podman.sh stop              # stop the service we started (if any)
#
# Only the `export EDGEPROF_PODMAN_HOST=...` line goes to stdout; all messages go to stderr.
# `start` installs Debian's podman + runc if missing, starts `podman system service` with a
# private storage root under $EDGEPROF_PODMAN_DIR (default /tmp/edgeprof-podman), and loads
# edgeprof-test/busybox:latest into it from the dockerd of scripts/engine.sh (`docker save`).
#
# Settings that make Podman 4.3 work in this sandbox (root, cgroup v1 hybrid, no systemd):
#   --cgroup-manager cgroupfs   no systemd to ask for scopes; cgroups are /libpod_parent/libpod-<id>
#   --runtime runc              what Debian's docker.io already brings (crun is not installed)
#   --events-backend file       no journald
#   default_ulimits             Podman (as root) asks for nofile=1048576 and nproc=4194304 by
#                               default; without CAP_SYS_RESOURCE runc then fails with "error
#                               setting rlimit type 7: operation not permitted". We pin them to
#                               what this process may have (nproc also capped at kernel.pid_max:
#                               the service itself runs with that cap here).
# Containers have no network but `--network none` / `run: {network: none}` (like our dockerd).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
DIR="${EDGEPROF_PODMAN_DIR:-/tmp/edgeprof-podman}"
SOCK="$DIR/podman.sock"
HOST="unix://$SOCK"
STORAGE_DRIVER="${EDGEPROF_PODMAN_STORAGE_DRIVER:-overlay}"
IMAGE=edgeprof-test/busybox:latest
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

START_TIMEOUT="${EDGEPROF_PODMAN_START_TIMEOUT:-120}"
log() { echo "podman.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

apt_install() {
    # with Recommends (the tested set: conmon, netavark, slirp4netns, fuse-overlayfs, uidmap, ...)
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "$@" >&2; then
        apt-get update >&2
        apt-get install -y "$@" >&2
    fi
}

# podman with our private storage and the sandbox-friendly settings
pm() {
    CONTAINERS_CONF="$DIR/containers.conf" podman \
        --root "$DIR/root" --runroot "$DIR/run" --tmpdir "$DIR/tmp" \
        --storage-driver "$STORAGE_DRIVER" \
        --cgroup-manager cgroupfs --runtime runc --events-backend file \
        "$@"
}

answers() { curl -sf --max-time 5 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

our_pid() {
    # pid of the service we started, if still alive and still ours
    local pid
    [ -f "$DIR/podman.pid" ] || return 1
    pid="$(cat "$DIR/podman.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "system service.*$SOCK" || return 1
    echo "$pid"
}

write_conf() {
    local nofile nproc pidmax
    nofile="$(ulimit -Hn)"; nproc="$(ulimit -Hu)"
    pidmax="$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)"
    [ "$nofile" = unlimited ] && nofile=1048576
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pidmax" ]; then nproc="$pidmax"; fi
    cat >"$DIR/containers.conf" <<EOF
# written by scripts/podman.sh
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
}

load_image() {
    if pm image exists "$IMAGE" 2>/dev/null; then
        log "$IMAGE already in podman"
        return 0
    fi
    log "loading $IMAGE into podman from the dockerd of scripts/engine.sh"
    local line docker_host
    line="$("$SCRIPT_DIR/engine.sh" start)" || die "scripts/engine.sh start failed"
    docker_host="$(printf '%s\n' "$line" | tail -n 1 | sed -n 's/^export DOCKER_HOST=//p')"
    [ -n "$docker_host" ] || die "scripts/engine.sh printed no DOCKER_HOST: $line"
    DOCKER_HOST="$docker_host" "$SCRIPT_DIR/build-images.sh" busybox
    DOCKER_HOST="$docker_host" docker save "$IMAGE" | pm load >&2
    pm image exists "$IMAGE" || die "$IMAGE is not in podman after podman load"
}

cmd_start() {
    if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
        log "installing podman and runc"
        apt_install podman runc
    fi
    command -v curl >/dev/null 2>&1 || apt_install curl
    mkdir -p "$DIR/root" "$DIR/run" "$DIR/tmp"
    write_conf
    local pid i
    if answers; then
        log "podman service answers at $HOST"
    else
        if pid="$(our_pid)"; then
            log "podman service (pid $pid) is running but not answering yet; waiting"
        else
            rm -f "$SOCK" "$DIR/podman.pid"
            # a fresh log per start, so a failure shows this start's lines, not old ones
            [ -f "$DIR/podman.log" ] && mv -f "$DIR/podman.log" "$DIR/podman.log.1"
            log "starting podman system service (log: $DIR/podman.log)"
            # setsid + nohup: the service outlives this script and its terminal; started from
            # its own folder, so it never holds the caller's directory (e.g. a CI clone later removed)
            (cd "$DIR" && exec setsid nohup env CONTAINERS_CONF="$DIR/containers.conf" podman \
                --root "$DIR/root" --runroot "$DIR/run" --tmpdir "$DIR/tmp" \
                --storage-driver "$STORAGE_DRIVER" \
                --cgroup-manager cgroupfs --runtime runc --events-backend file \
                system service --time=0 "$HOST" \
                >>"$DIR/podman.log" 2>&1 </dev/null) &
            echo $! >"$DIR/podman.pid"
        fi
        # the pid to watch: until the subshell has exec'd podman its command line is still
        # this script's, so our_pid (which checks the command line) would call it gone
        pid="$(cat "$DIR/podman.pid")"
        # a loaded machine (a CI run) has taken over 30 s to bring the service up
        for i in $(seq 1 "$START_TIMEOUT"); do
            answers && break
            if ! kill -0 "$pid" 2>/dev/null; then
                log "podman service exited; log tail:"
                tail -n 30 "$DIR/podman.log" >&2 || true
                exit 1
            fi
            sleep 1
        done
        answers || { log "podman service did not answer within $START_TIMEOUT s; log tail:";
                     tail -n 30 "$DIR/podman.log" >&2 || true; exit 1; }
        log "podman service ready after ${i}s"
    fi
    load_image
    echo "export EDGEPROF_PODMAN_HOST=$HOST"
}

cmd_stop() {
    local pid i
    if pid="$(our_pid)"; then
        log "stopping podman service (pid $pid)"
        kill -TERM "$pid"
        for i in $(seq 1 20); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "podman service did not stop in 20 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$DIR/podman.pid"
        log "stopped"
    else
        log "no podman service started by us is running"
    fi
    # conmon processes of containers it left, then the storage mounts
    pkill -f "conmon.*$DIR" 2>/dev/null || true
    unmount_under "$DIR"
}

cmd_env() {
    if answers; then
        echo "export EDGEPROF_PODMAN_HOST=$HOST"
    else
        log "no podman service answers at $HOST"
        return 1
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) cmd_env ;;
    *) echo "usage: $0 start|stop|env   (repo: $REPO_ROOT)" >&2; exit 2 ;;
esac
