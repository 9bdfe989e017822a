"""Nothing outlives a killed profiler: SIGKILL ``edgeprof run`` mid-target (as a Jenkins
abort escalating to SIGKILL, the OOM killer or a lost SSH session would) and the reaper
removes its container within seconds and marks the run crashed; kill the reaper too and
``edgeprof cleanup`` does it later."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .helpers import EDGEPROF, docker, edgeprof, summary

pytestmark = pytest.mark.integration

SPEC = """
name: crash
image: edgeprof-test/busybox:latest
run: {network: none}
profiling:
  interval: 0.1
  targets:
    - {name: forever, args: [sh, -c, 'while :; do :; done'], resources: {cpus: 0.2}}
    - {name: next, args: ['true']}
"""


def _start(tmp_path: Path) -> tuple[subprocess.Popen[str], Path, str]:
    spec = tmp_path / "crash.yaml"
    spec.write_text(SPEC)
    db = tmp_path / "crash.db"
    p = subprocess.Popen(
        # a relative URL: the reaper must find the same file whatever its own folder
        [*EDGEPROF, "run", spec.name, "--db", f"sqlite:///{db.name}", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cid = ""
    deadline = time.monotonic() + 60
    while not cid and time.monotonic() < deadline:
        cid = docker("ps", "-q", "--filter", "label=edgeprof.target=forever").strip()
        time.sleep(0.2)
    assert cid, "the container never started"
    time.sleep(1.5)  # some samples
    return p, db, cid


def _gone(cid: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not docker("ps", "-aq", "--filter", f"id={cid}").strip():
            return True
        time.sleep(0.2)
    return False


def test_sigkilled_profiler_is_reaped(engine: str, tmp_path: Path) -> None:
    p, db, cid = _start(tmp_path)
    t0 = time.monotonic()
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert _gone(cid, 15), "the container outlived the profiler"
    took = time.monotonic() - t0
    deadline = time.monotonic() + 15
    while summary(db)["run"]["status"] != "crashed" and time.monotonic() < deadline:
        time.sleep(0.2)
    s = summary(db)
    assert s["run"]["status"] == "crashed"
    (ev,) = [e for e in s["run"]["events"] if e["kind"] == "crashed"]
    assert ev["data"]["containers"] and "ended without finishing" in ev["message"]
    statuses = {t["name"]: t["status"] for t in s["targets"]}
    assert statuses == {"forever": "crashed", "next": "not_run"}
    forever = next(t for t in s["targets"] if t["name"] == "forever")
    assert forever["metrics"]["cpu.percent"]["count"] >= 5  # what was sampled is kept
    assert took < 15
    rows = json.loads(edgeprof("runs", "--json", db=db, check=0).stdout)
    assert rows[0]["status"] == "crashed"


def _reaper_of(pid: int) -> int:
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        words = line.split()
        if "edgeprof.reaper" in words:  # ... -m edgeprof.reaper RUN_UID RUN_ID PID [WORK_DIR]
            at = words.index("edgeprof.reaper")
            if words[at + 3 : at + 4] == [str(pid)]:
                return int(words[0])
    raise AssertionError(f"no reaper for pid {pid}:\n{out}")


def test_cleanup_after_profiler_and_reaper_were_killed(engine: str, tmp_path: Path) -> None:
    # `cleanup` removes every orphan on the engine: clear any left by runs killed before this
    # test (on a developer's engine, say), so the counts below are this test's alone
    edgeprof("cleanup", db=tmp_path / "before.db", check=0)
    p, db, cid = _start(tmp_path)
    try:
        reaper = _reaper_of(p.pid)
        os.kill(reaper, signal.SIGKILL)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    time.sleep(1)
    assert docker("ps", "-q", "--filter", f"id={cid}").strip(), "nothing was left to clean"
    res = edgeprof("runs", db=db, check=0)
    assert "profiler gone" in res.stdout and "edgeprof cleanup" in res.stdout
    res = edgeprof("cleanup", db=db, check=0)
    assert "removed 1 container(s)" in res.stdout and "marked 1 run(s) crashed" in res.stdout
    assert _gone(cid, 10)
    assert summary(db)["run"]["status"] == "crashed"
    again = edgeprof("cleanup", db=db, check=0)
    assert "removed 0 container(s)" in again.stdout
