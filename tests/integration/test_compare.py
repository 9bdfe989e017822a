"""``edgeprof compare`` on runs of the real engine whose figures are known.

A CPU burner at ``cpus: 0.5`` and at ``cpus: 1.0``, 4 repeats of 2 s each: ``cpu.percent``
mean +100 % (within the engine's accuracy), significant by Mann–Whitney U over the
repeats. Two runs of the same spec: ``~`` (under the null hypothesis 4 vs 4 repeats are
called significant 2.9 % of the time, the smallest exact p being 2/70).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import edgeprof

pytestmark = pytest.mark.integration

SPEC = """
name: burn{cpus}
image: edgeprof-test/busybox:latest
run:
  network: none
profiling:
  interval: 0.25
  grace: 1
  metrics: [container]
  targets:
    - name: burn
      args: ["sh", "-c", "while :; do :; done"]
      timeout: 2
      repeat: 4
      resources: {{cpus: {cpus}}}
"""


@pytest.fixture(scope="module")
def three_runs(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs 1 and 3: cpus 0.5; run 2: cpus 1.0; all through `edgeprof run`."""
    d = tmp_path_factory.mktemp("compare")
    db = d / "c.db"
    for i, cpus in enumerate(("0.5", "1.0", "0.5")):
        spec = d / f"s{i}.yaml"
        spec.write_text(SPEC.format(cpus=cpus))
        # every repeat is stored; the exit code is not the point here
        res = edgeprof("run", str(spec), "--quiet", db=db)
        assert "Traceback" not in res.stderr, res.stderr
    return db


def test_half_core_vs_one_core_is_significant(three_runs: Path) -> None:
    res = edgeprof("compare", "1", "2", "--json", db=three_runs, check=0)
    doc = json.loads(res.stdout)
    assert doc["method"] == "mann-whitney-u"
    (t,) = doc["targets"]
    assert (t["name"], t["repeats_a"], t["repeats_b"]) == ("burn", 4, 4)
    mean = t["metrics"]["cpu.percent"]["mean"]
    assert mean["method"] == "mann-whitney-u"
    assert mean["significant"] is True
    assert mean["p_value"] == pytest.approx(2 / 70)
    assert 45 <= mean["a"] <= 55, mean  # cpus: 0.5 is 50 %
    assert 80 < mean["change_pct"] < 120, mean  # +100 %, within the limits' accuracy
    # the same verdict fails CI past +10 %, and passes a +200 % threshold
    fail = edgeprof("compare", "1", "2", "--fail-on", "cpu.percent.mean:+10%", db=three_runs)
    assert fail.returncode == 1 and "FAIL" in fail.stdout, fail.stdout + fail.stderr
    edgeprof("compare", "1", "2", "--fail-on", "cpu.percent.mean:+200%", db=three_runs, check=0)
    md = edgeprof("compare", "1", "2", "--markdown", db=three_runs, check=0).stdout
    assert "| `cpu.percent` | mean |" in md and "Mann–Whitney U" in md


def _mean_verdict(db: Path, a: str, b: str) -> dict[str, object]:
    doc = json.loads(edgeprof("compare", a, b, "--json", db=db, check=0).stdout)
    return doc["targets"][0]["metrics"]["cpu.percent"]["mean"]


def test_identical_runs_are_tilde(three_runs: Path) -> None:
    """A test at α = 0.05 calls 2.9 % of identical 4-vs-4 pairs significant (2 of the 70
    orderings): one such draw is answered with a fresh pair, which must then be `~` (both
    by chance: 0.08 %)."""
    a, b = "1", "3"
    if _mean_verdict(three_runs, a, b)["significant"]:
        spec = three_runs.parent / "s3.yaml"
        spec.write_text(SPEC.format(cpus="0.5"))
        edgeprof("run", str(spec), "--quiet", db=three_runs)
        a, b = "3", "4"
    res = edgeprof("compare", a, b, "--metric", "cpu.percent", db=three_runs, check=0)
    row = next(x for x in res.stdout.splitlines() if "cpu.percent" in x)
    assert "~" in row, res.stdout
    mean = _mean_verdict(three_runs, a, b)
    assert mean["significant"] is False and mean["method"] == "mann-whitney-u", mean
