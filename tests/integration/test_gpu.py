"""GPU groups in a real run on this GPU-less host.

* ``tegrastats`` runs the executable named by ``profiling.tegrastats_path``: here the
  replaying stand-in (tests/data/fake-tegrastats, fed with real lines from real Jetsons);
* ``gpu-summary``/``gpu-process`` are recorded once as unavailable, with NVML's reason, and
  the run goes on; ``run.gpus`` and ``runtime: nvidia`` fail that target with the engine's
  reason and the next target still runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import edgeprof, summary, target

pytestmark = pytest.mark.integration

FAKE = Path(__file__).resolve().parent.parent / "data" / "fake-tegrastats"


def test_tegrastats_stand_in_end_to_end(engine: str, tmp_path: Path) -> None:
    spec = tmp_path / "ts.yaml"
    spec.write_text(
        "name: ts\nimage: edgeprof-test/busybox:latest\nprofiling:\n  interval: 0.2\n"
        f"  metrics: [container, tegrastats]\n  tegrastats_path: {FAKE}\n"
        "  targets:\n    - {name: a, args: [sleep, '3']}\n"
    )
    db = tmp_path / "ts.db"
    edgeprof("run", str(spec), db=db, check=0)
    m = target(summary(db), "a")["metrics"]
    gpu = m["gpu.utilization_percent"]
    # the replayed lines hold GR3D loads from 0 % to 84 %, at 200 ms per line
    assert gpu["count"] >= 10 and gpu["max"] > 50
    assert m["jetson.ram.used_bytes"]["max"] > 0
    assert any(k.startswith("jetson.temperature_celsius{sensor=") for k in m)
    assert "cpu.percent" in m


def test_no_gpu_here_is_recorded_and_run_goes_on(engine: str, tmp_path: Path) -> None:
    spec = tmp_path / "g.yaml"
    spec.write_text(
        "name: g\nimage: edgeprof-test/busybox:latest\nprofiling:\n"
        "  metrics: [container, gpu-summary, gpu-process]\n  targets:\n"
        "    - {name: gpus, args: ['true'], run: {gpus: all}}\n"
        "    - {name: jetson, args: ['true'], run: {runtime: nvidia}}\n"
        "    - {name: ok, args: [sleep, '1']}\n"
    )
    db = tmp_path / "g.db"
    res = edgeprof("run", str(spec), db=db, check=1)
    assert "gpus (error)" in res.stderr and "jetson (error)" in res.stderr
    s = summary(db)
    assert "device driver" in target(s, "gpus")["error"]
    assert "nvidia" in target(s, "jetson")["error"]
    ok = target(s, "ok")
    assert ok["exit_code"] == 0 and ok["status"] == "exited"
    events = [e for t in s["targets"] for e in t["events"] if e["kind"] == "collector_unavailable"]
    groups = sorted(e["data"]["group"] for e in events)
    assert groups == ["gpu-process", "gpu-summary"]  # once each, not once per target
    assert all("NVML" in e["message"] for e in events)
    assert s["run"]["host"]["gpu"]["gpu"] is None
