#!/usr/bin/env bash
# Print the path of a Chromium the report tests and benchmark can drive headless,
# installing Debian's `chromium` package when none is found (as scripts/engine.sh does for
# docker.io). Nothing is started: each test launches and closes its own browser.
#   scripts/chromium.sh            # prints e.g. /usr/bin/chromium ($EDGEPROF_CHROMIUM first)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
find_or_install chromium.sh chromium EDGEPROF_CHROMIUM chromium chromium-browser google-chrome
