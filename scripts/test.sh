#!/usr/bin/env bash
# Run edgeprof's tests: installs the package with its dev extras, then pytest.
# Integration tests start their own container engine (scripts/engine.sh) and build their
# images from local files (scripts/build-images.sh); nothing is pulled from a registry.
#   scripts/test.sh                 # everything
#   scripts/test.sh tests/unit      # any pytest arguments
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
"$PY" -m pip install -q --disable-pip-version-check -e '.[dev]' >&2
exec "$PY" -m pytest -q "${@:-tests}"
