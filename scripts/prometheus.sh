#!/usr/bin/env bash
# Print the path of a Prometheus server the integration test can start on loopback,
# installing Debian's `prometheus` package when none is found (as scripts/chromium.sh does
# for chromium). Nothing is started or enabled: the test runs its own server with a temp
# config and data directory, and stops it.
#   scripts/prometheus.sh          # prints e.g. /usr/bin/prometheus
set -euo pipefail
find_prometheus() {
    local c
    for c in "${EDGEPROF_PROMETHEUS:-}" prometheus; do
        [ -n "$c" ] && command -v "$c" 2>/dev/null && return 0
    done
    return 1
}
if find_prometheus; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "prometheus.sh: no Prometheus found; install Debian's 'prometheus' package or set EDGEPROF_PROMETHEUS" >&2
    exit 1
fi
echo "prometheus.sh: installing Debian's prometheus (apt-get install prometheus)" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d: the package's post-install must not start a system-wide service
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
trap '[ "$made_policy" = 1 ] && rm -f "$policy"' EXIT
if ! apt-get install -y --no-install-recommends prometheus >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends prometheus >&2
fi
find_prometheus
