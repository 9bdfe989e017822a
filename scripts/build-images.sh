#!/usr/bin/env bash
# Build the local test images edgeprof's integration tests and examples use.
# No image registry is reachable, so every image is built from local files:
#
#   edgeprof-test/busybox:latest  busybox-static + applet symlinks   (docker import)
#   edgeprof-test/python:latest   debootstrap minbase + python3 + stress-ng (docker import;
#                                 rootfs tarball cached in ${XDG_CACHE_HOME:-~/.cache}/edgeprof/)
#   waggle/objcounter:0.0.0       examples/objcounter on top of edgeprof-test/python (docker build)
#
# Usage: scripts/build-images.sh [--force] [busybox|python|example]...   (no name = all three)
# Needs DOCKER_HOST from scripts/engine.sh:  eval "$(scripts/engine.sh start)"
# An image that already exists is skipped unless --force is given. --force still reuses the
# cached debootstrap tarball; delete ${XDG_CACHE_HOME:-~/.cache}/edgeprof/ to re-debootstrap.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/edgeprof"
SUITE=bookworm

BUSYBOX_TAG=edgeprof-test/busybox:latest
PYTHON_TAG=edgeprof-test/python:latest
EXAMPLE_TAG=waggle/objcounter:0.0.0

log() { echo "build-images.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

FORCE=0
PYTHON_BUILT=0  # set when the python base is (re)imported: the example is then rebuilt on it
WANT=()
for arg in "$@"; do
    case "$arg" in
        --force|-f) FORCE=1 ;;
        busybox|python|example) WANT+=("$arg") ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown argument '$arg' (expected --force, busybox, python or example)" ;;
    esac
done
[ ${#WANT[@]} -gt 0 ] || WANT=(busybox python example)

command -v docker >/dev/null 2>&1 || die "no docker CLI; run: eval \"\$(scripts/engine.sh start)\""
docker info >/dev/null 2>&1 || die "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}); run: eval \"\$(scripts/engine.sh start)\""

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@" >&2; then
        apt-get update >&2
        apt-get install -y --no-install-recommends "$@" >&2
    fi
}

exists() { [ "$FORCE" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

TMP_DIRS=()
# --one-file-system: never descend into a /proc or /sys a failed debootstrap left mounted
cleanup() { local d; for d in "${TMP_DIRS[@]+"${TMP_DIRS[@]}"}"; do rm -rf --one-file-system "$d"; done; }
trap cleanup EXIT
mktmp() { local d; d="$(mktemp -d "${TMPDIR:-/tmp}/edgeprof-build.XXXXXX")"; TMP_DIRS+=("$d"); echo "$d"; }

# ---------------------------------------------------------------- busybox
build_busybox() {
    if exists "$BUSYBOX_TAG"; then log "$BUSYBOX_TAG exists, skipping"; return 0; fi
    local bb=/bin/busybox
    if ! file_is_static "$bb"; then
        apt_install busybox-static
    fi
    local root applet
    root="$(mktmp)/rootfs"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,dev/shm,proc,sys,root,var/tmp}
    chmod 1777 "$root/tmp" "$root/var/tmp"
    cp "$bb" "$root/bin/busybox"
    # --list-full gives each applet's canonical path (bin/sh, usr/bin/awk, ...)
    while read -r applet; do
        [ -n "$applet" ] && [ "$applet" != bin/busybox ] || continue
        mkdir -p "$root/$(dirname "$applet")"
        ln -sf /bin/busybox "$root/$applet"
    done < <("$bb" --list-full)
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
    log "importing $BUSYBOX_TAG"
    tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
        docker import --change 'CMD ["/bin/sh"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$BUSYBOX_TAG" >&2
}

file_is_static() {
    # true when $1 is busybox-static (Debian's dynamic busybox would not run in an empty rootfs)
    [ -x "$1" ] || return 1
    dpkg -s busybox-static >/dev/null 2>&1 && return 0
    ! grep -q 'ld-linux' "$1" 2>/dev/null
}

# ---------------------------------------------------------------- python
# The Debian mirror is read from this machine's apt sources at run time (never hard-coded).
debian_mirror() {
    local f url=""
    if [ -r /etc/apt/sources.list.d/debian.sources ] || compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            # deb822: stanzas separated by blank lines; want one whose Suites has exactly $SUITE
            url="$(awk -v suite="$SUITE" '
                BEGIN { RS=""; FS="\n" }
                {
                    uris=""; ok=0; deb=0
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uris=u[1] }
                        if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) deb=1
                        if ($i ~ /^Suites:/) { n=split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) ok=1 }
                    }
                    if (ok && deb && uris != "") { print uris; exit }
                }' "$f")"
            [ -n "$url" ] && break
        done
    fi
    if [ -z "$url" ]; then
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            url="$(awk -v suite="$SUITE" '
                $1 == "deb" {
                    i = 2
                    if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                    if ($(i+1) == suite) { print $i; exit }
                }' "$f")"
            [ -n "$url" ] && break
        done
    fi
    [ -n "$url" ] || die "cannot find a '$SUITE' mirror in /etc/apt/sources.list(.d); add one or set EDGEPROF_DEBIAN_MIRROR"
    echo "$url"
}

build_python() {
    if exists "$PYTHON_TAG"; then log "$PYTHON_TAG exists, skipping"; return 0; fi
    local tarball="$CACHE_DIR/python-$SUITE-minbase-$(dpkg --print-architecture 2>/dev/null || uname -m).tar"
    if [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
        local mirror root
        mirror="${EDGEPROF_DEBIAN_MIRROR:-$(debian_mirror)}"
        root="$(mktmp)/rootfs"
        log "debootstrap $SUITE from $mirror (a few minutes)"
        debootstrap --variant=minbase --include=python3,stress-ng "$SUITE" "$root" "$mirror" >&2 ||
            { tail -n 30 "$root/debootstrap/debootstrap.log" >&2 2>/dev/null || true; die "debootstrap failed"; }
        # slim down: apt lists, package caches, docs, man pages, non-English locales
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
            "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
            "$root"/usr/share/lintian "$root"/var/log/*.log "$root"/debootstrap
        find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
        find "$root/usr/lib" -name '__pycache__' -type d -prune -exec rm -rf {} + 2>/dev/null || true
        # a container gets its own /etc/resolv.conf, /etc/hostname and /etc/hosts from the engine
        mkdir -p "$CACHE_DIR"
        tar -C "$root" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
        log "cached rootfs in $tarball"
    else
        log "using cached rootfs $tarball"
    fi
    log "importing $PYTHON_TAG"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' \
        "$tarball" "$PYTHON_TAG" >&2
    PYTHON_BUILT=1
}

# ---------------------------------------------------------------- example
# Build context: a temp dir assembled from examples/objcounter/ plus src/edgeprof/client.py
# (copied in only if it exists) as edgeprof/client.py next to an empty edgeprof/__init__.py.
# A temp dir instead of the repo root keeps the context tiny and lets the COPY of the client
# be conditional without a second Dockerfile.
build_example() {
    if [ "$PYTHON_BUILT" = 0 ] && exists "$EXAMPLE_TAG"; then log "$EXAMPLE_TAG exists, skipping"; return 0; fi
    docker image inspect "$PYTHON_TAG" >/dev/null 2>&1 || build_python
    local src="$REPO_ROOT/examples/objcounter" ctx
    ctx="$(mktmp)"
    cp "$src/Dockerfile" "$src/app.py" "$ctx/"
    mkdir -p "$ctx/edgeprof"
    : >"$ctx/edgeprof/__init__.py"
    if [ -f "$REPO_ROOT/src/edgeprof/client.py" ]; then
        cp "$REPO_ROOT/src/edgeprof/client.py" "$ctx/edgeprof/client.py"
    else
        log "note: src/edgeprof/client.py not found; image built without edgeprof.client"
    fi
    log "building $EXAMPLE_TAG"
    # legacy builder (no buildx plugin needed); no RUN step, so no network is used
    DOCKER_BUILDKIT=0 docker build --network none -t "$EXAMPLE_TAG" "$ctx" >&2
}

for what in "${WANT[@]}"; do
    start=$SECONDS
    case "$what" in
        busybox) build_busybox ;;
        python) build_python ;;
        example) build_example ;;
    esac
    log "$what done in $((SECONDS - start)) s"
done
