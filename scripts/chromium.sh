#!/usr/bin/env bash
# Print the path of a Chromium the report tests and benchmark can drive headless,
# installing Debian's `chromium` package when none is found (as scripts/engine.sh does for
# docker.io). Nothing is started: each test launches and closes its own browser.
#   scripts/chromium.sh            # prints e.g. /usr/bin/chromium
set -euo pipefail
find_chromium() {
    local c
    for c in "${EDGEPROF_CHROMIUM:-}" chromium chromium-browser google-chrome; do
        [ -n "$c" ] && command -v "$c" 2>/dev/null && return 0
    done
    return 1
}
if find_chromium; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: no Chromium found; install Debian's 'chromium' package or set EDGEPROF_CHROMIUM" >&2
    exit 1
fi
echo "chromium.sh: installing Debian's chromium (apt-get install chromium)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends chromium >&2
fi
find_chromium
