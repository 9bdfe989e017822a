#!/usr/bin/env bash
# A private PostgreSQL server for edgeprof's tests (loopback only, trust auth, throwaway).
#   eval "$(scripts/postgres.sh start)"   # prints: export EDGEPROF_TEST_PG=postgresql://...
#   scripts/postgres.sh stop
# Installs Debian's postgresql when no server binaries are found. Runs as user 'postgres'
# (the server refuses root). Data lives in $EDGEPROF_PG_DIR (default /tmp/edgeprof-pg).
set -euo pipefail
DIR="${EDGEPROF_PG_DIR:-/tmp/edgeprof-pg}"
PORT="${EDGEPROF_PG_PORT:-55432}"
log() { echo "postgres.sh: $*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

url() { echo "export EDGEPROF_TEST_PG=postgresql://postgres@127.0.0.1:$PORT/postgres"; }

start() {
    local bin
    bin="$(bindir)"
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
        log "installing Debian's postgresql"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends postgresql >&2 || { apt-get update >&2; apt-get install -y --no-install-recommends postgresql >&2; }
        bin="$(bindir)"
    fi
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DIR" postgres
    if [ -f "$DIR/data/postmaster.pid" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        url; return 0
    fi
    mkdir -p "$DIR"
    chown postgres "$DIR"
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        runuser -u postgres -- "$bin/initdb" -D "$DIR/data" -A trust -U postgres >/dev/null
    fi
    runuser -u postgres -- "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >&2 \
        || { tail -n 30 "$DIR/server.log" >&2; exit 1; }
    url
}

stop() {
    local bin
    bin="$(bindir)"
    [ -n "$bin" ] && [ -f "$DIR/data/postmaster.pid" ] && runuser -u postgres -- "$bin/pg_ctl" -D "$DIR/data" -m fast stop >&2 || true
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) log "usage: $0 start|stop"; exit 2 ;;
esac
