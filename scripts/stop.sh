#!/usr/bin/env bash
# Stop and clean up everything edgeprof's scripts and tests started:
#   the private dockerd (scripts/engine.sh), the Podman API service (scripts/podman.sh) and
#   the PostgreSQL server (scripts/postgres.sh), then unmount whatever they left mounted
#   under their folders. Images and databases stay cached for next time; --purge removes
#   those folders too (and the cached debootstrap rootfs).
#
#   scripts/stop.sh [--purge]
set -uo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"
ENGINE_DIR="${EDGEPROF_ENGINE_DIR:-/tmp/edgeprof-engine}"
PODMAN_DIR="${EDGEPROF_PODMAN_DIR:-/tmp/edgeprof-podman}"
PG_DIR="${EDGEPROF_PG_DIR:-/tmp/edgeprof-pg}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/edgeprof"

"$SCRIPT_DIR/postgres.sh" stop
"$SCRIPT_DIR/podman.sh" stop
"$SCRIPT_DIR/engine.sh" stop
left=0
for d in "$ENGINE_DIR" "$PODMAN_DIR" "$PG_DIR"; do
    unmount_under "$d"
    n="$(awk -v d="$(readlink -f "$d" 2>/dev/null || echo "$d")" '$5 == d || index($5, d "/") == 1' /proc/self/mountinfo | wc -l)"
    left=$((left + n))
done
if [ "${1:-}" = --purge ]; then
    rm -rf --one-file-system "$ENGINE_DIR" "$PODMAN_DIR" "$PG_DIR" "$CACHE_DIR"
    echo "stop.sh: removed $ENGINE_DIR $PODMAN_DIR $PG_DIR $CACHE_DIR" >&2
fi
if [ "$left" -gt 0 ]; then
    echo "stop.sh: $left mount(s) are still busy under the engine folders" >&2
    exit 1
fi
echo "stop.sh: nothing edgeprof's scripts started is running or mounted" >&2
