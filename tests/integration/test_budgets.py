"""Budgets on a real run: a CPU burner limited to ``cpus: 0.5`` for 3 s.

``cpu.percent mean < 80`` passes and ``mean < 30`` fails with the measured ~50 % in the
message; a budget on a metric the run never produced fails with "no data"; ``edgeprof run``
exits 1; ``edgeprof check`` of the stored run gives the same verdicts; both ``--junit``
files are valid JUnit XML with the same figures.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .helpers import edgeprof, summary, target

pytestmark = pytest.mark.integration

SPEC = """
name: budgets
image: edgeprof-test/busybox:latest
run:
  network: none
profiling:
  interval: 0.25
  grace: 1
  metrics: [container]
  budgets:
    memory.working_set_bytes: ["max < 1GiB"]
  targets:
    - name: burn
      args: ["sh", "-c", "while :; do :; done"]
      timeout: 3
      resources: {cpus: 0.5}
      budgets:
        cpu.percent: ["mean < 80", "mean < 30"]
        app.fps: ["p50 >= 10"]
        oom_killed: ["== false"]
"""

EXPECTED = [
    ("cpu.percent mean < 80", "pass"),
    ("cpu.percent mean < 30", "fail"),
    ("app.fps p50 >= 10", "no data"),
    ("oom_killed == false", "pass"),
    ("memory.working_set_bytes max < 1GiB", "pass"),
]


def _junit(path: Path) -> dict[str, tuple[str, str]]:
    root = ET.parse(path).getroot()
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "burn"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "2", "0")
    out = {}
    for case in suite.findall("testcase"):
        fail = case.find("failure")
        out[case.get("name") or ""] = (
            "failed" if fail is not None else "passed",
            "" if fail is None else fail.get("message") or "",
        )
    return out


def test_budgets_on_a_real_run(engine: str, tmp_path: Path) -> None:
    spec = tmp_path / "profile.yaml"
    spec.write_text(SPEC)
    db = tmp_path / "b.db"
    run_xml = tmp_path / "run.xml"
    res = edgeprof("run", str(spec), "-q", "--junit", str(run_xml), db=db, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "failed budgets: 2 of 5" in res.stderr
    assert "failed targets" not in res.stderr  # the burner timed out as planned
    assert "Traceback" not in res.stderr

    cpu = target(summary(db), "burn")["metrics"]["cpu.percent"]
    assert 40 <= cpu["mean"] <= 60, cpu

    # run prints each budget with its measured value and verdict
    rows = {}
    for line in res.stdout.splitlines():
        for name, _ in EXPECTED:
            if line.startswith("burn ") and f" {name} " in line:
                rows[name] = line.rsplit("  ", 1)[-1].strip()
    assert rows == {
        name: {"pass": "pass", "fail": "FAIL", "no data": "NO DATA"}[v] for name, v in EXPECTED
    }
    assert "budgets: 3 of 5 passed, 2 failed" in res.stdout

    # check of the stored run: the same verdicts, the measured mean exactly the summary's
    check_xml = tmp_path / "check.xml"
    res = edgeprof("check", "latest", "--json", "--junit", str(check_xml), db=db)
    assert res.returncode == 1, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    got = {r["name"]: r for r in doc["results"]}
    assert {n: r["verdict"] for n, r in got.items()} == dict(EXPECTED)
    assert got["cpu.percent mean < 30"]["measured"] == cpu["mean"]
    msg = got["cpu.percent mean < 30"]["message"]
    m = re.fullmatch(r"cpu\.percent mean = ([0-9.]+) %, budget < 30: failed", msg)
    assert m is not None, msg
    assert abs(float(m.group(1)) - cpu["mean"]) < 1e-3 * cpu["mean"]

    for path in (run_xml, check_xml):
        cases = _junit(path)
        assert sorted(n for n, _ in EXPECTED) == sorted(cases)
        assert cases["cpu.percent mean < 30"] == ("failed", msg)
        assert cases["cpu.percent mean < 80"][0] == "passed"
        assert "no data" in cases["app.fps p50 >= 10"][1]

    # check with a budgets file instead of the run's own
    f = tmp_path / "ok.yaml"
    f.write_text('budgets:\n  cpu.percent: ["mean < 80", "p95 <= 100%"]\n')
    res = edgeprof("check", "latest", "--budgets", str(f), db=db)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "budgets: 2 of 2 passed"
