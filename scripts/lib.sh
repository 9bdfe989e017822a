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
