#!/usr/bin/env bash
# Print the path of a Prometheus server the integration test can start on loopback,
# installing Debian's `prometheus` package when none is found. Nothing is started or
# enabled: the test runs its own server with a temp config and data directory, and stops it.
#   scripts/prometheus.sh          # prints e.g. /usr/bin/prometheus ($EDGEPROF_PROMETHEUS first)
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
find_or_install prometheus.sh prometheus EDGEPROF_PROMETHEUS prometheus
