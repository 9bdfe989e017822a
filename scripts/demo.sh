#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install edgeprof, start a container engine
# if none is running, build the example app's images from local files (no registry), profile
# it with examples/objcounter/profile.yaml (an OpenCV pipeline reading a video from a playback
# service), print the summary and a resource recommendation, and write the HTML report.
#   scripts/demo.sh [extra `edgeprof run` options, e.g. --interval 0.1]
# Progress lines and the summary are printed; the full output of the set-up steps goes to a
# log file, named when a step fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
LOG="${TMPDIR:-/tmp}/edgeprof-demo.log"
: >"$LOG"
step() { echo "demo: $*" >&2; }
quietly() {
    if ! "$@" >>"$LOG" 2>&1; then
        echo "demo: '$*' failed; last lines of the full log $LOG:" >&2
        tail -n 25 "$LOG" >&2
        exit 1
    fi
}

step "installing edgeprof from this repository (pip install -e '.[report]')"
quietly "$PY" -m pip install -q --disable-pip-version-check -e '.[report]'
step "finding a container engine (starting a private dockerd if none answers)"
engine="$(scripts/engine.sh start 2>>"$LOG")" || { echo "demo: no engine; see $LOG" >&2; tail -n 25 "$LOG" >&2; exit 1; }
eval "$engine"
step "building the example images from local files (the first time: debootstrap, OpenCV wheels from PyPI, a Go build; a few minutes)"
quietly scripts/build-images.sh busybox python
quietly scripts/build-images.sh example
quietly scripts/build-images.sh playback
DB="${EDGEPROF_DB:-sqlite:///$ROOT/edgeprof.db}"
step "profiling examples/objcounter/profile.yaml into $DB"
rc=0
"$PY" -m edgeprof.cli.main run examples/objcounter/profile.yaml --db "$DB" "$@" || rc=$?
step "recommended requests and limits for the app at one CPU (pluginctl --resource)"
"$PY" -m edgeprof.cli.main recommend latest --target cpu-1 --format pluginctl --db "$DB" || rc=$((rc ? rc : $?))
REPORT="$ROOT/report.html"
step "writing the HTML report of that run (opens offline in any browser)"
"$PY" -m edgeprof.cli.main report latest --db "$DB" -o "$REPORT" || rc=$((rc ? rc : $?))
cat >&2 <<EOT

demo: the engine keeps running. To use edgeprof from your own shell, point it there:
        export DOCKER_HOST=$DOCKER_HOST
      (with a Docker engine of your own, leave DOCKER_HOST as it is and skip scripts/engine.sh)
      See the runs:  edgeprof runs --db $DB
      The report:    $REPORT
      Stop and unmount everything the scripts started:  scripts/stop.sh
EOT
exit "$rc"
