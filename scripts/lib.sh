# Shared helpers of edgeprof's scripts (sourced, not run).

# unmount_under DIR: unmount everything mounted at or below DIR, deepest first (the
# overlay, netns and shm mounts a daemon leaves after it stopped); lazily if busy.
unmount_under() {
    local dir mnt n=0
    dir="$(readlink -f "$1" 2>/dev/null || echo "$1")"
    [ -n "$dir" ] && [ "$dir" != / ] || return 0
    # field 5 of mountinfo is the mount point (octal escapes for spaces; our dirs have none)
    while read -r mnt; do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
        n=$((n + 1))
    done < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    [ "$n" -gt 0 ] && echo "unmounted $n mount(s) under $dir" >&2
    return 0
}

# find_or_install SCRIPT PACKAGE OVERRIDE_VAR COMMAND…: print the path of the first COMMAND
# found (the variable OVERRIDE_VAR, when set, names one to try first); when none is, install
# Debian's PACKAGE (root only; apt-get update on a first failure; a package's post-install
# may not start a system-wide service) and print the path then. Exit status 1 when there is
# none and it cannot be installed.
find_or_install() {
    local script="$1" package="$2" var="$3" override="${!3:-}" c
    shift 3
    _find() {
        for c in "$override" "$@"; do
            [ -n "$c" ] && command -v "$c" 2>/dev/null && return 0
        done
        return 1
    }
    if _find "$@"; then return 0; fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "$script: no $package found; install Debian's '$package' package or set $var" >&2
        return 1
    fi
    echo "$script: installing Debian's $package (apt-get install $package)" >&2
    local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package" >&2 ||
        { apt-get update >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$package" >&2; } ||
        rc=$?
    [ "$made_policy" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || return "$rc"
    _find "$@"
}
