"""Apps together: alone vs together statistics, slowdowns, and service rows kept apart.

Runs are written through the store API with the target rows a together-run and its
services store (configs of the issue-13 contract) and series whose statistics the test
knows exactly: every number asserted here is computed by hand from the values written.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analyze.budgets import evaluate_run, junit_suites
from edgeprof.analyze.compare import compare
from edgeprof.analyze.model import RunSummary
from edgeprof.analyze.scenarios import (
    compared_stats,
    comparison_rows,
    is_throughput,
    scenarios,
    slowdown,
)
from edgeprof.analyze.summary import summarize
from edgeprof.model import MetricSpec, Sample
from edgeprof.stats import percentile
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo, TargetInfo

SEC = 1_000_000_000
MIB = 1024 * 1024
GIB = 1024 * MIB
UNITS = {
    "cpu.percent": "%",
    "memory.working_set_bytes": "B",
    "gpu.utilization_percent": "%",
    "gpu.container.memory_used_bytes": "B",
    "app.fps": "1",
    "app.infer": "ms",
    "app.objects": "1",
}
GPU = {"gpu": "0"}


@dataclass
class Row:
    """A target row to store: name, config, and per series (metric, labels) its values."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = field(default_factory=dict)
    status: str = "exited"
    error: str | None = None

    def add(self, metric: str, values: Sequence[float], **labels: str) -> Row:
        self.series[(metric, tuple(sorted(labels.items())))] = [float(v) for v in values]
        return self


def store_run(url: str, rows: Sequence[Row], spec_name: str = "together") -> int:
    store = open_store(url)
    t_run = 1_700_000_000 * SEC
    run_id = store.begin_run(
        RunInfo(spec_name=spec_name, image="img:1", started_ns=t_run, interval_s=0.1)
    )
    w = BatchWriter(store, run_id)
    metrics = sorted({m for r in rows for (m, _) in r.series})
    w.describe([MetricSpec(m, UNITS.get(m, "1")) for m in metrics])
    t0 = t_run
    for i, r in enumerate(rows):
        tid = store.begin_target(TargetInfo(run_id, i, r.name, ["app"], r.config))
        w.add_target(r.name, tid)
        n = max((len(v) for v in r.series.values()), default=0)
        for k in range(n):
            t = t0 + k * SEC // 10
            w.write(
                [
                    Sample(m, (("target", r.name), *lab), t, v[k])
                    for (m, lab), v in r.series.items()
                    if k < len(v)
                ]
            )
        w.end_target(tid)
        w.flush()
        end = t0 + max(n, 1) * SEC // 10
        store.update_target(
            tid,
            status=r.status,
            exit_code=0 if r.status == "exited" else None,
            started_ns=t0,
            ended_ns=end,
            duration_s=(end - t0) / SEC,
            error=r.error,
        )
        t0 = end + SEC
    w.close()
    store.end_run(run_id, "completed", t0)
    store.close()
    return run_id


def member(scenario: str, base: str, together: list[str]) -> dict[str, Any]:
    return {"scenario": scenario, "base_target": base, "together": together, "repeat_index": 0}


def service(svc: str, scope: str, for_: str | None, ready_s: float) -> dict[str, Any]:
    return {"role": "service", "service": svc, "scope": scope, "for": for_, "ready_s": ready_s}


def the_run() -> list[Row]:
    """``gpu`` alone twice (repeats ``gpu#1``/``gpu#2``), ``cpu`` alone once, both
    together as scenario ``both``, and a playback service for ``gpu#1``."""
    both = ["gpu", "cpu"]
    return [
        Row("gpu#1", {"repeat_index": 0})
        .add("cpu.percent", [10, 20, 30])
        .add("memory.working_set_bytes", [100 * MIB, 200 * MIB])
        .add("gpu.utilization_percent", [30, 30], **GPU)
        .add("gpu.container.memory_used_bytes", [GIB, GIB], **GPU)
        .add("app.fps", [10, 10, 10])
        .add("app.infer", [20, 20, 20, 20]),
        Row("gpu#2", {"repeat_index": 1})
        .add("cpu.percent", [40])
        .add("memory.working_set_bytes", [150 * MIB])
        .add("app.fps", [10])
        .add("app.infer", [20]),
        Row("cpu", {"repeat_index": 0})
        .add("cpu.percent", [50, 50])
        .add("app.fps", [8, 8])
        .add("app.objects", [3, 3]),
        Row("gpu#1/playback", service("playback", "target", "gpu#1", 1.25)).add(
            "cpu.percent", [5, 5]
        ),
        Row("both/gpu", member("both", "gpu", both))
        .add("cpu.percent", [50, 50])
        .add("memory.working_set_bytes", [300 * MIB, 300 * MIB])
        .add("gpu.utilization_percent", [60, 60], **GPU)
        .add("gpu.container.memory_used_bytes", [GIB + GIB // 2], **GPU)
        .add("app.fps", [5, 5, 5])
        .add("app.infer", [40, 40]),
        Row("both/cpu", member("both", "cpu", both))
        .add("cpu.percent", [25, 25])
        .add("app.fps", [2, 6])
        .add("app.objects", [3, 3]),
    ]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'r.db'}"


# -- the rules ----------------------------------------------------------------------------


def test_which_metrics_are_throughput_and_which_stats_are_compared() -> None:
    for m in ("app.fps", "app.frames.rate", "app.frames_per_s", "app.bytes_per_second"):
        assert is_throughput(m)
    for m in ("cpu.percent", "app.infer", "memory.working_set_bytes"):
        assert not is_throughput(m)
    assert compared_stats("cpu.percent", "%") == ("mean",)
    assert compared_stats("memory.working_set_bytes", "B") == ("mean", "max")
    assert compared_stats("app.infer", "ms") == ("p50", "p99")
    assert compared_stats("app.fps", "1") == ("mean", "p50")
    assert compared_stats("app.objects", "1") == ()  # a plain app gauge: no "worse"
    # what a pywaggle plugin publishes without a unit, named as a time per frame
    for m in ("app.objcounter.latency", "app.frame_time", "app.infer_ms", "app.step_duration"):
        assert compared_stats(m, "1") == ("p50", "p99"), m
    assert compared_stats("app.latency_per_s", "1") == ("mean", "p50")  # a rate wins
    assert compared_stats("io.read_bytes_per_second", "B/s") == ()


def test_slowdown_above_one_always_means_worse() -> None:
    # a latency twice as long, twice the CPU, half the frames: 2.0 each
    assert slowdown("app.infer", "p99", 20.0, 40.0) == 2.0
    assert slowdown("cpu.percent", "mean", 25.0, 50.0) == 2.0
    assert slowdown("app.fps", "p50", 10.0, 5.0) == 2.0
    # the other way round: better, below 1
    assert slowdown("cpu.percent", "mean", 50.0, 25.0) == 0.5
    assert slowdown("app.fps", "p50", 5.0, 10.0) == 0.5
    # no ratio from a missing or zero side
    assert slowdown("cpu.percent", "mean", 0.0, 25.0) is None
    assert slowdown("app.fps", "p50", 10.0, 0.0) is None
    assert slowdown("cpu.percent", "mean", None, 25.0) is None


# -- the analysis on stored rows ----------------------------------------------------------


def test_alone_vs_together_exact_numbers_with_repeats_pooled(url: str) -> None:
    rid = store_run(url, the_run())
    store = open_store(url, readonly=True)
    try:
        (sc,) = scenarios(store, rid)
        s = summarize(store, rid)
    finally:
        store.close()
    assert s.scenarios == [sc]
    assert sc.name == "both"
    gpu, cpu = sc.targets
    assert (gpu.name, gpu.base_target, gpu.alone_targets) == ("both/gpu", "gpu", ["gpu#1", "gpu#2"])
    assert gpu.note is None and gpu.alone is not None
    # pooled: 10, 20, 30 and 40 are one sample of four (the mean of the repeats' means
    # would be 30), so the mean and the median are 25
    a_cpu = gpu.alone["cpu.percent"]
    assert (a_cpu.mean, a_cpu.p50, a_cpu.count) == (25.0, 25.0, 4)
    assert gpu.together["cpu.percent"].mean == 50.0
    mem = gpu.alone["memory.working_set_bytes"]
    assert (mem.mean, mem.max, mem.count) == (150 * MIB, 200 * MIB, 3)
    assert gpu.slowdown == {
        "cpu.percent.mean": 2.0,
        "memory.working_set_bytes.mean": 2.0,  # 300 MiB ÷ 150 MiB
        "memory.working_set_bytes.max": 1.5,  # 300 MiB ÷ 200 MiB
        "gpu.utilization_percent{gpu=0}.mean": 2.0,  # 60 % ÷ 30 %
        "gpu.container.memory_used_bytes{gpu=0}.max": 1.5,  # 1.5 GiB ÷ 1 GiB
        "app.fps.mean": 2.0,  # 10 ÷ 5: half the frames
        "app.fps.p50": 2.0,
        "app.infer.p50": 2.0,  # 40 ms ÷ 20 ms
        "app.infer.p99": 2.0,
    }
    # cpu: less CPU together (50 % → 25 %) reads 0.5; fps 8 alone, 2 and 6 together:
    # mean 4, p50 4 → 2.0; app.objects is shown nowhere (no rule says what is worse)
    assert cpu.slowdown == {"cpu.percent.mean": 0.5, "app.fps.mean": 2.0, "app.fps.p50": 2.0}
    assert "app.objects" not in cpu.together and cpu.alone is not None
    assert "app.objects" not in cpu.alone
    # the service row is no member and no alone run
    assert all("playback" not in n for m in sc.targets for n in [m.name, *m.alone_targets])


def test_latency_percentiles_from_a_distribution(url: str) -> None:
    alone = [float(i) for i in range(1, 101)]  # 1..100 ms
    together = [2 * v for v in alone]  # twice as long, every frame
    rows = [
        Row("det").add("app.infer", alone),
        Row("both/det", member("both", "det", ["det", "other"])).add("app.infer", together),
        Row("other").add("cpu.percent", [10]),
        Row("both/other", member("both", "other", ["det", "other"])).add("cpu.percent", [30]),
    ]
    rid = store_run(url, rows)
    store = open_store(url, readonly=True)
    try:
        (sc,) = scenarios(store, rid)
    finally:
        store.close()
    det, other = sc.targets
    assert det.alone is not None
    p99 = percentile(sorted(alone), 0.99)
    assert det.alone["app.infer"].p99 == p99 == pytest.approx(99.01)
    assert det.together["app.infer"].p99 == 2 * p99
    assert det.slowdown == {"app.infer.p50": 2.0, "app.infer.p99": 2.0}
    assert other.slowdown == {"cpu.percent.mean": 3.0}
    rows_ = comparison_rows(det)
    assert [(r.key, r.stat, r.alone, r.together, r.slowdown) for r in rows_] == [
        ("app.infer", "p50", 50.5, 101.0, 2.0),
        ("app.infer", "p99", p99, 2 * p99, 2.0),
    ]


def test_a_member_without_its_alone_run_says_so(url: str) -> None:
    """``--target gpu`` ran only gpu alone: cpu's entry has no alone figures, no slowdown."""
    rows = [r for r in the_run() if r.name not in ("cpu",)]
    rid = store_run(url, rows)
    store = open_store(url, readonly=True)
    try:
        s = summarize(store, rid)
    finally:
        store.close()
    (sc,) = s.scenarios
    gpu, cpu = sc.targets
    assert gpu.slowdown["cpu.percent.mean"] == 2.0
    assert cpu.alone is None and cpu.slowdown == {} and cpu.alone_targets == []
    assert cpu.note is not None and "no alone run of 'cpu'" in cpu.note
    assert cpu.together["cpu.percent"].mean == 25.0  # what was measured is still shown
    doc = json.loads(json.dumps(s.to_json()))
    entry = doc["scenarios"][0]["targets"][1]
    assert entry["alone"] is None and entry["slowdown"] == {}
    assert "no alone run" in entry["note"]


def test_a_failed_alone_run_gives_no_slowdown(url: str) -> None:
    rows = [
        Row("a", status="error", error="service 'cam' not ready"),
        Row("b").add("cpu.percent", [10]),
        Row("s/a", member("s", "a", ["a", "b"])).add("cpu.percent", [20]),
        Row("s/b", member("s", "b", ["a", "b"])).add("cpu.percent", [20]),
    ]
    rid = store_run(url, rows)
    store = open_store(url, readonly=True)
    try:
        (sc,) = scenarios(store, rid)
    finally:
        store.close()
    a, b = sc.targets
    assert a.alone == {} and a.slowdown == {}
    assert a.note is not None and "(error) stored none of the compared metrics" in a.note
    assert b.slowdown == {"cpu.percent.mean": 2.0}


def test_a_run_without_scenarios_has_no_scenarios_key(url: str) -> None:
    rid = store_run(url, [Row("t").add("cpu.percent", [1, 2])])
    store = open_store(url, readonly=True)
    try:
        s = summarize(store, rid)
        assert scenarios(store, rid) == []
    finally:
        store.close()
    assert set(s.to_json()) == {"run", "targets"}


# -- services apart; budgets and compare skip them ----------------------------------------


def test_service_rows_apart_in_the_summary(url: str) -> None:
    rid = store_run(url, the_run())
    store = open_store(url, readonly=True)
    try:
        s = summarize(store, rid)
    finally:
        store.close()
    assert [t.name for t in s.services] == ["gpu#1/playback"]
    assert "gpu#1/playback" not in [t.name for t in s.apps]
    doc = json.loads(json.dumps(s.to_json()))
    assert set(doc) == {"run", "targets", "services", "scenarios"}
    assert [t["name"] for t in doc["targets"]] == ["gpu#1", "gpu#2", "cpu", "both/gpu", "both/cpu"]
    (svc,) = doc["services"]
    assert (svc["service"], svc["scope"], svc["for"], svc["ready_s"]) == (
        "playback",
        "target",
        "gpu#1",
        1.25,
    )
    assert svc["name"] == "gpu#1/playback" and svc["metrics"]["cpu.percent"]["mean"] == 5.0


def test_budgets_skip_service_rows(url: str) -> None:
    rid = store_run(url, the_run())
    store = open_store(url, readonly=True)
    try:
        s = summarize(store, rid)
    finally:
        store.close()
    # a budgets file applies to every row; the service (5 % CPU) is not checked
    results = evaluate_run(s, lambda t: {"cpu.percent": ["mean < 100%"]})
    assert [r.target for r in results] == ["gpu#1", "gpu#2", "cpu", "both/gpu", "both/cpu"]
    assert all(r.ok for r in results)
    suites = junit_suites(s, results)
    assert "gpu#1/playback" not in [su.name for su in suites]


def test_compare_skips_service_rows(url: str) -> None:
    a = store_run(url, the_run())
    b = store_run(url, the_run())
    store = open_store(url, readonly=True)
    try:
        c = compare(store, a, b, metrics=["cpu.percent"], resamples=200)
    finally:
        store.close()
    names = [t.name for t in c.targets]
    assert names == ["gpu", "cpu", "both/gpu", "both/cpu"]


# -- what the user sees: CLI text and JSON, the HTML report -------------------------------


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeprof.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "COLUMNS": "200",
            "HOME": str(cwd),
            **({"PYTHONPATH": p} if (p := os.environ.get("PYTHONPATH")) else {}),
        },
    )


def test_summary_json_scenarios_shape(url: str, tmp_path: Path) -> None:
    rid = store_run(url, the_run())
    res = _cli("summary", str(rid), "--db", url, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    (sc,) = doc["scenarios"]
    assert list(sc) == ["name", "targets"] and sc["name"] == "both"
    gpu = sc["targets"][0]
    for key in ("name", "alone", "together", "slowdown"):
        assert key in gpu
    assert gpu["name"] == "both/gpu"
    assert gpu["slowdown"]["cpu.percent.mean"] == 2.0
    assert gpu["slowdown"]["app.fps.p50"] == 2.0
    assert gpu["alone"]["cpu.percent"] == {
        "mean": 25.0,
        "min": 10.0,
        "p50": 25.0,
        "p95": percentile([10.0, 20.0, 30.0, 40.0], 0.95),  # 38.5
        "p99": percentile([10.0, 20.0, 30.0, 40.0], 0.99),  # 39.7 (to the last bit)
        "max": 40.0,
        "count": 4,
        "unit": "%",
    }
    assert gpu["together"]["app.infer"]["p99"] == 40.0
    assert gpu["alone"]["app.infer"]["p99"] == 20.0


def test_summary_text_scenario_table_and_services(url: str, tmp_path: Path) -> None:
    rows = [r for r in the_run() if r.name != "cpu"]
    rid = store_run(url, rows)
    res = _cli("summary", str(rid), "--db", url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Services (started for the apps)" in out
    (line,) = [
        ln for ln in out.splitlines() if "playback" in ln and "gpu#1" in ln and "target" in ln
    ]
    assert "1.25 s" in line and "exited" in line
    assert "service gpu#1/playback" in out  # its own statistics: it was profiled
    assert "Scenario both: alone vs together" in out
    lines = out.splitlines()

    def row(label: str, app: str | None = None) -> list[str]:
        found = [ln for ln in lines if f" {label} " in ln and (app is None or app in ln)]
        assert found, label
        return [c.strip() for c in re.split(r"[│|]", found[0]) if c.strip()]

    # resource ratios are of usage, marked so; the caption says how to read them
    assert row("CPU mean", "both/gpu") == [
        "both/gpu",
        "CPU mean",
        "25.0 %",
        "50.0 %",
        "2.00× use",
    ]
    assert row("memory working set peak") == [
        "memory working set peak",
        "200.0 MiB",
        "300.0 MiB",
        "1.50× use",
    ]
    flat = " ".join(out.split())
    assert "'× use', the ratio is together ÷ alone usage: < 1 under CPU contention" in flat
    assert "means the app got less CPU, not that it ran better" in flat
    assert row("app.infer p99") == ["app.infer p99", "20 ms", "40 ms", "2.00×"]
    assert row("app.fps p50")[1:] == ["10", "5", "2.00×"]
    assert row("CPU mean", "both/cpu") == ["both/cpu", "CPU mean", "no alone run", "25.0 %", "-"]
    assert "note: both: no alone run of 'cpu'" in " ".join(out.split())
    # the services are not among the apps' table
    head = out.split("Services (started for the apps)")[0]
    assert "gpu#1/playback" not in head


def test_check_cli_does_not_check_services(url: str, tmp_path: Path) -> None:
    rid = store_run(url, the_run())
    budgets = tmp_path / "b.yaml"
    budgets.write_text("budgets:\n  cpu.percent: ['mean < 30%']\n")
    res = _cli("check", str(rid), "--db", url, "--budgets", str(budgets), cwd=tmp_path)
    # gpu#1 20 %, gpu#2 40 % (fails), cpu 50 % (fails), both/gpu 50 % (fails), both/cpu 25 %
    assert res.returncode == 1, res.stderr
    assert "playback" not in res.stdout
    assert "budgets: 2 of 5 passed, 3 failed" in res.stdout


def test_report_has_scenarios_and_services_sections(url: str) -> None:
    pytest.importorskip("tsdownsample", reason="the report extra is not installed")
    if __import__("importlib").util.find_spec("uplot") is None:
        pytest.skip("the report extra (uplot-python) is not installed")
    from edgeprof.report.html import build_report

    rid = store_run(url, the_run())
    store = open_store(url, readonly=True)
    try:
        page, info = build_report(store, [rid])
    finally:
        store.close()
    assert "<section id='scenarios'" in page and "<section id='services'" in page
    scn = page.split("<section id='scenarios'", 1)[1].split("</section>", 1)[0]
    assert "scenario both: both/gpu, both/cpu together" in scn
    assert (  # a usage ratio: marked, not coloured worse
        "<td>CPU mean</td><td class='n'>25.0 %</td><td class='n'>50.0 %</td>"
        "<td class='n'><span>2.00× use</span></td>"
    ) in scn
    assert "<td class='n'><span class='worse'>2.00×</span></td>" in scn  # app.fps p50
    assert "&lt; 1 under CPU contention means the app got less CPU" in scn
    assert "<td>app.fps p50</td><td class='n'>8</td><td class='n'>4</td>" in scn
    assert "alone: gpu#1, gpu#2" in scn
    svc = page.split("<section id='services'", 1)[1].split("</section>", 1)[0]
    assert "playback" in svc and "gpu#1" in svc and "1.25 s" in svc
    summ = page.split("<section id='summary'", 1)[1].split("</section>", 1)[0]
    assert "playback" not in summ
    m = re.search(r'<script type="application/json" id="edgeprof-data">(.*?)</script>', page, re.S)
    assert m is not None
    data = json.loads(m.group(1))
    (chart,) = [c for c in data["charts"] if c["g"].startswith("scn-")]
    assert chart["g"] == f"scn-{rid}-0" and f"data-group='scn-{rid}-0'" in scn
    assert [s["label"] for s in chart["series"]] == ["both/gpu · CPU", "both/cpu · CPU"]
    assert [t["y"][0] for t in chart["tables"]] == [[50.0, 50.0], [25.0, 25.0]]
    assert info["charts"] == len(data["charts"])


def test_pooled_statistics_are_finite(url: str) -> None:
    rid = store_run(url, the_run())
    store = open_store(url, readonly=True)
    try:
        s: RunSummary = summarize(store, rid)
    finally:
        store.close()
    for sc in s.scenarios:
        for m in sc.targets:
            assert all(math.isfinite(v) for v in m.slowdown.values())
