#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install edgeprof, start a container engine
# if none is running, build the example app's image from local files (no registry), profile
# it with examples/objcounter/profile.yaml and print the summary.
#   scripts/demo.sh [extra `edgeprof run` options, e.g. --interval 0.1]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
"$PY" -m pip install -q --disable-pip-version-check -e . >&2
eval "$(scripts/engine.sh start)"
scripts/build-images.sh python >&2          # cached after the first build
scripts/build-images.sh --force example >&2  # quick: picks up the current client.py and app
DB="${EDGEPROF_DB:-sqlite:///$ROOT/edgeprof.db}"
"$PY" -m edgeprof.cli.main run examples/objcounter/profile.yaml --db "$DB" "$@"
