"""Budgets: the expression parser (every unit, operator, statistic and error sentence), the
evaluator on summaries whose figures the test sets, JUnit XML read back, the spec's
``budgets:`` (line numbers, merging, storing with the run) and ``edgeprof check``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from edgeprof import __version__
from edgeprof.analyze.budgets import (
    TARGET_FIELDS,
    Budget,
    BudgetError,
    compile_budgets,
    evaluate_run,
    evaluate_target,
    format_table,
    junit_suites,
    load_budget_file,
    metric_catalog,
    parse_expression,
    parse_unit,
    validate_budgets,
)
from edgeprof.analyze.model import CounterStats, GaugeStats, RunMeta, RunSummary, TargetSummary
from edgeprof.errors import SpecError
from edgeprof.model import MetricSpec, Sample, labels_of
from edgeprof.plan import plan, target_config
from edgeprof.report.junit import write_junit
from edgeprof.spec import parse_spec
from edgeprof.store import BatchWriter, open_store
from edgeprof.store.base import RunInfo, TargetInfo

KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4


def limit(key: str, expr: str, unit: str | None = None) -> float:
    """The limit of ``key: expr`` in the metric's stored unit."""
    b = parse_expression(key, expr)
    if unit is None:
        unit = TARGET_FIELDS.get(b.metric) or metric_catalog()[b.metric].unit
    return b.threshold.in_unit(b.metric, unit)


# -- units ----------------------------------------------------------------------------------

MEM = "memory.working_set_bytes"


@pytest.mark.parametrize(
    ("key", "expr", "unit", "want"),
    [
        # sizes: IEC binary, SI decimal, docker's bare letters (binary), plain bytes
        (MEM, "max < 100", None, 100),
        (MEM, "max < 100B", None, 100),
        (MEM, "max < 3KiB", None, 3 * KiB),
        (MEM, "max < 512MiB", None, 512 * MiB),
        (MEM, "max < 1.5GiB", None, 1.5 * GiB),
        (MEM, "max < 2TiB", None, 2 * TiB),
        (MEM, "max < 1.5Gi", None, 1.5 * GiB),
        (MEM, "max < 3KB", None, 3000),
        (MEM, "max < 3kB", None, 3000),
        (MEM, "max < 2MB", None, 2_000_000),
        (MEM, "max < 1.5 GB", None, 1_500_000_000),
        (MEM, "max < 1TB", None, 10**12),
        (MEM, "max < 10k", None, 10 * KiB),
        (MEM, "max < 512m", None, 512 * MiB),
        (MEM, "max < 1g", None, GiB),
        (MEM, "max < 1G", None, GiB),
        (MEM, "max < 1t", None, TiB),
        # byte rates
        ("net.rx_bytes_per_second", "mean < 1MiB/s", None, MiB),
        ("net.rx_bytes_per_second", "mean < 1MB/s", None, 1e6),
        ("net.rx_bytes_per_second", "mean < 5B/s", None, 5),
        # times, into a metric stored in ms (app timers) or in s
        ("app.latency", "p95 < 150ms", "ms", 150),
        ("app.latency", "p95 < 150", "ms", 150),
        ("app.latency", "p95 < 1.5s", "ms", 1500),
        ("app.latency", "p95 < 1.5 sec", "ms", 1500),
        ("app.latency", "p95 < 200us", "ms", 0.2),
        ("app.latency", "p95 < 200µs", "ms", 0.2),
        ("app.latency", "p95 < 5e6ns", "ms", 5),
        ("app.latency", "p95 < 1min", "ms", 60_000),
        ("app.latency", "p95 < 1h", "ms", 3_600_000),
        ("cpu.usage_seconds", "total < 1500ms", None, 1.5),
        ("duration_s", "< 2min", None, 120),
        ("duration_s", "< 90", None, 90),
        # percentages; a share of time (s/s) is a fraction
        ("cpu.percent", "p95 < 150%", None, 150),
        ("cpu.percent", "p95 < 150", None, 150),
        ("cpu.throttled_seconds_per_second", "mean < 30%", None, 0.3),
        # frequency, power, temperature, plain rates
        ("gpu.sm_clock_hz", "max < 1.3GHz", None, 1.3e9),
        ("gpu.sm_clock_hz", "max < 900MHz", None, 9e8),
        ("gpu.sm_clock_hz", "max < 900 kHz", None, 9e5),
        ("gpu.sm_clock_hz", "max < 50Hz", None, 50),
        ("gpu.power_watts", "max < 15W", None, 15),
        ("gpu.power_watts", "max < 1500mW", None, 1.5),
        ("gpu.power_watts", "max < 0.02kW", None, 20),
        ("gpu.temperature_celsius", "max < 80C", None, 80),
        ("gpu.temperature_celsius", "max < 80degC", None, 80),
        ("gpu.temperature_celsius", "max < 80°C", None, 80),
        ("net.rx_packets_per_second", "mean < 100/s", None, 100),
        ("pids.count", "max < -3.5e1", None, -35),
    ],
)
def test_units_convert_into_the_metrics_unit(
    key: str, expr: str, unit: str | None, want: float
) -> None:
    assert limit(key, expr, unit) == pytest.approx(want, rel=1e-12)


def test_parse_unit_unknown_is_one_sentence() -> None:
    with pytest.raises(ValueError, match=r"unknown unit 'parsecs'; use a size"):
        parse_unit("parsecs")


# -- operators and statistics -----------------------------------------------------------------


def _gauge(
    mean: float, lo: float, p50: float, p95: float, p99: float, hi: float, n: int, unit: str | None
) -> GaugeStats:
    return GaugeStats(mean, lo, p50, p95, p99, hi, n, unit)


def _target(
    name: str = "burn",
    metrics: dict[str, Any] | None = None,
    *,
    exit_code: int | None = 0,
    oom_killed: bool | None = False,
    duration_s: float | None = 3.0,
    status: str = "exited",
    budgets: dict[str, list[str]] | None = None,
) -> TargetSummary:
    return TargetSummary(
        name=name,
        args=[],
        status=status,
        exit_code=exit_code,
        oom_killed=oom_killed,
        timed_out=False,
        duration_s=duration_s,
        error=None,
        container_id="c",
        config={"budgets": budgets} if budgets else {},
        metrics=metrics or {},
        events=[],
    )


CPU = _gauge(49.875, 40.0, 50.0, 55.5, 58.25, 60.0, 12, "%")


@pytest.mark.parametrize(
    ("expr", "ok"),
    [
        ("mean < 49.875", False),
        ("mean <= 49.875", True),
        ("mean > 49.875", False),
        ("mean >= 49.875", True),
        ("mean == 49.875", True),
        ("mean != 49.875", False),
        ("min == 40", True),
        ("max < 60", False),
        ("p50 == 50", True),
        ("p95 == 55.5", True),
        ("p99 == 58.25", True),
        ("count == 12", True),
        ("avg == 49.875", True),
        ("med == 50", True),
        ("p(95) == 55.5", True),
        ("p(99) < 58.25", False),
        ("mean<80", True),
        ("  mean   <   30  ", False),
    ],
)
def test_operators_and_statistics_on_known_figures(expr: str, ok: bool) -> None:
    (r,) = evaluate_target(
        _target(metrics={"cpu.percent": CPU}), compile_budgets({"cpu.percent": [expr]})
    )
    assert r.verdict == ("pass" if ok else "fail"), r
    assert r.measured is not None


def test_counter_statistics() -> None:
    t = _target(
        metrics={"io.read_bytes": CounterStats(total=3 * MiB, last=10 * MiB, count=7, unit="B")}
    )
    got = evaluate_target(
        t,
        compile_budgets({"io.read_bytes": ["total == 3MiB", "last < 10MiB", "count == 7"]}),
    )
    assert [r.verdict for r in got] == ["pass", "fail", "pass"]
    assert got[1].message == "io.read_bytes last = 10 MiB, budget < 10MiB: failed"


# -- error sentences ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expr", "fragment"),
    [
        ("cpu.precent", "p95 < 1", "unknown metric 'cpu.precent'; did you mean 'cpu.percent'?"),
        ("gpu.nonsense", "max < 1", "unknown metric 'gpu.nonsense'; use a metric name"),
        ("app.", "max < 1", "unknown metric 'app.'"),
        (
            "cpu.percent",
            "p90 < 1",
            "budget 'p90 < 1': statistic 'p90' is not kept; the percentiles are p50, p95 and p99",
        ),
        (
            "cpu.percent",
            "foo < 1",
            "budget 'foo < 1': unknown statistic 'foo'; use one of mean, min, max, p50, p95, p99, count",
        ),
        ("cpu.percent", "total < 1", "statistic 'total' does not apply: cpu.percent is a gauge"),
        (
            "io.read_bytes",
            "p95 < 1MB",
            "io.read_bytes is a counter: its statistics are total, last, count (for its rate, budget io.read_bytes_per_second)",
        ),
        (
            "cpu.percent",
            "p95 =< 1",
            "budget 'p95 =< 1': unknown operator '=<'; use one of < <= > >= == !=",
        ),
        ("cpu.percent", "p95 = 1", "unknown operator '='"),
        ("cpu.percent", "p95 150", "no operator; write STATISTIC OPERATOR LIMIT"),
        ("cpu.percent", "< 150", 'no statistic; write e.g. "p95 < 150"'),
        ("cpu.percent", "p95 <", "no number after '<'"),
        ("cpu.percent", "p95 < fast", "no number after '<'"),
        ("cpu.percent", "p95 < 3 parsecs", "unknown unit 'parsecs'"),
        (
            "cpu.percent",
            "p95 < 1.5GiB",
            "'GiB' is a size but cpu.percent is measured in %; write the limit in % or as a plain number",
        ),
        (
            MEM,
            "max < 10ms",
            "'ms' is a time but memory.working_set_bytes is measured in B; write it in B, KB, MB",
        ),
        (
            "pids.count",
            "max < 2GiB",
            "'GiB' is a size but pids.count is a plain number; write the limit without a unit",
        ),
        (
            "cpu.throttled_seconds_per_second",
            "mean < 2ms",
            "measured in s/s; write the limit in % or as a plain number in s/s",
        ),
        ("cpu.percent", "count < 5s", "count is a number of samples; write it without a unit"),
        (
            "exit_code",
            "p95 == 0",
            'exit_code is a fact of the target and takes no statistic; write e.g. "== 0"',
        ),
        ("exit_code{a=b}", "== 0", "exit_code takes no labels"),
        ("exit_code", "== 1GiB", "'GiB' is a size but exit_code is a plain number"),
        ("duration_s", "< 1GiB", "'GiB' is a size but duration_s is measured in s"),
        ("oom_killed", "< 1", "oom_killed is true or false; write \"== false\", not '<'"),
        ("oom_killed", "== maybe", "oom_killed is true or false"),
        ("cpu.percent{gpu", "max < 1", "budget key 'cpu.percent{gpu' must be a metric name"),
        ("cpu.percent{gpu}", "max < 1", "label 'gpu' must be NAME=VALUE"),
    ],
)
def test_error_sentences(key: str, expr: str, fragment: str) -> None:
    with pytest.raises(ValueError) as ei:
        parse_expression(key, expr)
    msg = str(ei.value)
    assert fragment in msg
    assert "\n" not in msg


def test_validate_budgets_shapes() -> None:
    assert validate_budgets(None) == {}
    assert validate_budgets({"exit_code": "==  0"}) == {"exit_code": ["== 0"]}
    with pytest.raises(BudgetError) as ei:
        validate_budgets(["cpu.percent"])
    assert ei.value.loc == () and "must be a mapping" in str(ei.value)
    with pytest.raises(BudgetError) as ei:
        validate_budgets({"cpu.percent": []})
    assert ei.value.loc == ("cpu.percent",)
    with pytest.raises(BudgetError) as ei:
        validate_budgets({"cpu.percent": ["p95 < 1", 3]})
    assert ei.value.loc == ("cpu.percent", 1) and "must be a string" in str(ei.value)
    with pytest.raises(BudgetError) as ei:
        validate_budgets({"cpu.percent": ["p95 < 1", "p95 < 1GiB"]})
    assert ei.value.loc == ("cpu.percent", 1)


def test_catalog_knows_every_declared_metric_and_its_rates() -> None:
    cat = metric_catalog()
    assert cat["cpu.percent"].unit == "%" and cat["cpu.percent"].kind == "gauge"
    assert cat["cpu.usage_seconds"].kind == "counter"
    assert cat["memory.working_set_bytes"].unit == "B"
    assert cat["io.read_bytes_per_second"].unit == "B/s"
    assert cat["cpu.throttled_seconds_per_second"].unit == "s/s"
    assert cat["gpu.utilization_percent"].unit == "%"
    assert "host.cpu.percent" in cat and "process.cpu.percent" in cat
    assert "jetson.power.total_watts" in cat


# -- evaluation -------------------------------------------------------------------------------


def _summary(*targets: TargetSummary) -> RunSummary:
    meta = RunMeta(
        id=7,
        spec_name="s",
        image="i",
        spec_path=None,
        status="completed",
        started_ns=0,
        ended_ns=1,
        interval_s=0.25,
        host={},
        edgeprof_version=__version__,
        events=[],
    )
    return RunSummary(meta, list(targets))


def test_evaluation_messages_no_data_fields_labels() -> None:
    mem = _gauge(1.5 * GiB, GiB, 1.5 * GiB, 1.6 * GiB, 1.7 * GiB, 1.75 * GiB, 10, "B")
    gpu0 = _gauge(10, 0, 10, 20, 30, 40, 10, "%")
    gpu1 = _gauge(70, 0, 70, 80, 90, 95, 10, "%")
    lat = _gauge(100, 10, 90, 187.5, 200, 250, 40, "ms")
    reqs = CounterStats(total=40, last=40, count=40, unit="1")
    t = _target(
        metrics={
            "cpu.percent": CPU,
            MEM: mem,
            "gpu.utilization_percent{gpu=0}": gpu0,
            "gpu.utilization_percent{gpu=1}": gpu1,
            "app.latency{stage=infer,model=a,b}": lat,
            "app.requests.total": reqs,
        },
        exit_code=3,
        duration_s=125.0,
    )
    budgets = {
        "cpu.percent": ["mean < 80", "mean < 30"],
        MEM: ["max < 1.5GiB"],
        "app.fps": ["p50 >= 10"],
        "exit_code": ["== 0"],
        "oom_killed": ["== false"],
        "duration_s": ["< 2min"],
        "gpu.utilization_percent": ["max < 90"],
        "gpu.utilization_percent{gpu=1}": ["p50 >= 70"],
        "app.latency{stage=infer}": ["p95 < 150ms", "p95 < 0.2s", "p95 < 1GiB"],
        "app.requests.total": ["p95 < 3", "total == 40"],
    }
    res = evaluate_target(t, compile_budgets(budgets))
    got = {r.name: (r.verdict, r.message) for r in res}
    assert got["cpu.percent mean < 80"] == (
        "pass",
        "cpu.percent mean = 49.875 %, budget < 80: passed",
    )
    assert got["cpu.percent mean < 30"] == (
        "fail",
        "cpu.percent mean = 49.875 %, budget < 30: failed",
    )
    assert got[f"{MEM} max < 1.5GiB"] == ("fail", f"{MEM} max = 1.75 GiB, budget < 1.5GiB: failed")
    assert got["app.fps p50 >= 10"][0] == "no data"
    assert "no data" in got["app.fps p50 >= 10"][1]
    assert got["exit_code == 0"] == ("fail", "exit_code = 3, budget == 0: failed")
    assert got["oom_killed == false"] == ("pass", "oom_killed = false, budget == false: passed")
    assert got["duration_s < 2min"] == ("fail", "duration_s = 2.08333 min, budget < 2min: failed")
    # a key without labels checks every series of the metric, each on its own
    assert got["gpu.utilization_percent{gpu=0} max < 90"][0] == "pass"
    assert got["gpu.utilization_percent{gpu=1} max < 90"][0] == "fail"
    assert got["gpu.utilization_percent{gpu=1} p50 >= 70"][0] == "pass"
    assert "gpu.utilization_percent{gpu=0} p50 >= 70" not in got
    # a label value holding a comma; app timers are in ms
    key = "app.latency{stage=infer,model=a,b}"
    assert got[f"{key} p95 < 150ms"] == ("fail", f"{key} p95 = 187.5 ms, budget < 150ms: failed")
    assert got[f"{key} p95 < 0.2s"] == ("pass", f"{key} p95 = 0.1875 s, budget < 0.2s: passed")
    assert got[f"{key} p95 < 1GiB"][0] == "error"
    assert "'GiB' is a size but app.latency" in got[f"{key} p95 < 1GiB"][1]
    # an app counter's running total: p95 does not apply (known only from the data)
    assert got["app.requests.total p95 < 3"] == (
        "error",
        "app.requests.total is a counter: p95 does not apply; use total, last, count",
    )
    assert got["app.requests.total total == 40"][0] == "pass"


def test_missing_target_fields_are_no_data() -> None:
    t = _target(exit_code=None, oom_killed=None, duration_s=None, status="error")
    res = evaluate_target(
        t,
        compile_budgets({"exit_code": ["== 0"], "oom_killed": ["== false"], "duration_s": ["< 5"]}),
    )
    assert [r.verdict for r in res] == ["no data"] * 3
    assert res[0].message == "exit_code == 0: no data (target error)"


def test_repeats_each_evaluated_from_their_stored_budgets() -> None:
    b = {"cpu.percent": ["mean < 50"]}
    s = _summary(
        _target("base#1", {"cpu.percent": _gauge(49, 0, 0, 0, 0, 0, 3, "%")}, budgets=b),
        _target("base#2", {"cpu.percent": _gauge(51, 0, 0, 0, 0, 0, 3, "%")}, budgets=b),
        _target("other", {"cpu.percent": CPU}),
    )
    res = evaluate_run(s)
    assert [(r.target, r.verdict) for r in res] == [("base#1", "pass"), ("base#2", "fail")]
    lines = format_table(res)
    assert lines[0].split() == ["TARGET", "BUDGET", "MEASURED", "VERDICT"]
    assert lines[1].split() == ["base#1", "cpu.percent", "mean", "<", "50", "49", "%", "pass"]
    assert lines[2].split()[-1] == "FAIL"
    assert lines[-1] == "budgets: 1 of 2 passed, 1 failed"


# -- JUnit ------------------------------------------------------------------------------------


def test_junit_one_suite_per_target_one_case_per_budget(tmp_path: Path) -> None:
    b = {
        "cpu.percent": ["mean < 80", "mean < 30"],
        "app.fps": ["p50 >= 10"],
        "app.x": ["max < 1GiB"],
    }
    s = _summary(
        _target(
            "burn", {"cpu.percent": CPU, "app.x": _gauge(1, 1, 1, 1, 1, 1, 1, "ms")}, budgets=b
        ),
        _target(
            "idle",
            {"cpu.percent": _gauge(1, 1, 1, 1, 1, 1, 2, "%")},
            budgets={"exit_code": ["== 0"]},
        ),
        _target("none"),
    )
    path = tmp_path / "results.xml"
    write_junit(str(path), junit_suites(s, evaluate_run(s)))
    root = ET.parse(path).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "2", "1")
    suites = root.findall("testsuite")
    assert [x.get("name") for x in suites] == ["burn", "idle", "none"]
    assert suites[0].get("time") == "3.000"
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == [
        "cpu.percent mean < 80",
        "cpu.percent mean < 30",
        "app.fps p50 >= 10",
        "app.x max < 1GiB",
    ]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    fail = cases[1].find("failure")
    assert fail is not None
    assert fail.get("message") == "cpu.percent mean = 49.875 %, budget < 30: failed"
    assert "measured: 49.875 %" in (fail.text or "")
    nodata = cases[2].find("failure")
    assert nodata is not None and "no data" in (nodata.get("message") or "")
    assert cases[3].find("error") is not None
    assert [c.get("name") for c in suites[1].findall("testcase")] == ["exit_code == 0"]
    assert suites[2].get("tests") == "0"


# -- the spec's budgets ---------------------------------------------------------------------

SPEC = """\
name: app
image: busybox
profiling:
  budgets:
    cpu.percent: ["p95 < 150", "mean < 90"]
    memory.working_set_bytes: ["max < 1.5GiB"]
    exit_code: "== 0"
  targets:
    - name: a
      repeat: 2
      budgets:
        cpu.percent: ["mean < 30"]
        app.fps: ["p50 >= 10"]
    - name: b
"""


def test_spec_budgets_merge_per_metric_and_are_stored_in_the_target_config() -> None:
    loaded = parse_spec(SPEC, "spec.yaml")
    runs = plan(loaded.spec)
    assert [r.name for r in runs] == ["a#1", "a#2", "b"]
    want_a = {
        "cpu.percent": ["mean < 30"],
        "memory.working_set_bytes": ["max < 1.5GiB"],
        "exit_code": ["== 0"],
        "app.fps": ["p50 >= 10"],
    }
    assert runs[0].budgets == want_a and runs[1].budgets == want_a
    assert runs[2].budgets == loaded.spec.profiling.budgets
    assert target_config(runs[0])["budgets"] == want_a
    assert "budgets" not in target_config(
        plan(parse_spec("name: x\nprofiling:\n  targets: [{}]\n").spec)[0]
    )


@pytest.mark.parametrize(
    ("old", "new", "line", "path", "fragment"),
    [
        (
            '["p95 < 150", "mean < 90"]',
            '["p95 < 150", "mean < 1GiB"]',
            5,
            "profiling.budgets.cpu.percent[1]",
            "budget 'mean < 1GiB': 'GiB' is a size",
        ),
        (
            "memory.working_set_bytes:",
            "memory.workingset_bytes:",
            6,
            "profiling.budgets.memory.workingset_bytes",
            "did you mean 'memory.working_set_bytes'?",
        ),
        (
            'app.fps: ["p50 >= 10"]',
            'app.fps:\n          - "p50 >= 10"\n          - "p50 => 10"',
            15,
            "profiling.targets[0].budgets.app.fps[1]",
            "unknown operator '=>'",
        ),
        (
            'exit_code: "== 0"',
            'exit_code: "p50 == 0"',
            7,
            "profiling.budgets.exit_code",
            "takes no statistic",
        ),
    ],
)
def test_bad_budget_in_spec_names_file_line_and_key(
    old: str, new: str, line: int, path: str, fragment: str
) -> None:
    text = SPEC.replace(old, new)
    assert text != SPEC
    with pytest.raises(SpecError) as ei:
        parse_spec(text, "spec.yaml")
    msg = str(ei.value)
    assert msg.startswith(f"spec.yaml:{line}: invalid value for '{path}': "), msg
    assert fragment in msg and "\n" not in msg


# -- --budgets FILE -------------------------------------------------------------------------


def test_budget_file_mapping_or_whole_spec(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text('budgets:\n  cpu.percent: ["mean < 30"]\n')
    fn = load_budget_file(str(f))
    assert fn(_target("anything#3")) == {"cpu.percent": ["mean < 30"]}
    (tmp_path / "spec.yaml").write_text(SPEC)
    fn = load_budget_file(str(tmp_path / "spec.yaml"))
    assert fn(_target("a#2"))["cpu.percent"] == ["mean < 30"]
    assert fn(_target("b"))["cpu.percent"] == ["p95 < 150", "mean < 90"]
    assert fn(_target("zzz"))["cpu.percent"] == ["p95 < 150", "mean < 90"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            "budgets:\n  cpu.percent:\n    - mean < 30\n    - mean < 3 GiB\n",
            "b.yaml:4: invalid value for 'budgets.cpu.percent[1]': budget 'mean < 3 GiB'",
        ),
        ("budgets:\n  cpu.percent: [mean < 30]\nextra: 1\n", "b.yaml:3: unknown key 'extra'"),
        ("cpu.percent: [mean < 30]\n", "a budgets file is a YAML mapping with a 'budgets:' key"),
        ("budgets: {}\n", "'budgets:' is empty"),
        ("budgets: [\n", "YAML syntax error"),
    ],
)
def test_bad_budget_file(tmp_path: Path, text: str, fragment: str) -> None:
    f = tmp_path / "b.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as ei:
        load_budget_file(str(f))
    assert fragment in str(ei.value), str(ei.value)


# -- the CLI --------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "edgeprof.cli.main"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEPROF_DB", "DOCKER_HOST")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One run, two repeats of a target with budgets stored in their config (store API)."""
    path = tmp_path_factory.mktemp("db") / "runs.db"
    url = f"sqlite:///{path}"
    store = open_store(url)
    run_id = store.begin_run(
        RunInfo("s", "busybox", 1_700_000_000_000_000_000, 1.0, spec_text=SPEC)
    )
    budgets = {"cpu.percent": ["mean < 80", "mean < 30"], "exit_code": ["== 0"]}
    for idx, (name, pct) in enumerate((("burn#1", 50.0), ("burn#2", 20.0))):
        tid = store.begin_target(TargetInfo(run_id, idx, name, [], {"budgets": budgets}))
        lab = labels_of(target=name)
        w = BatchWriter(store, run_id, tid)
        w.describe([MetricSpec("cpu.percent", "%")])
        w.write([Sample("cpu.percent", lab, 1_700_000_000_000_000_000 + i, pct) for i in range(4)])
        w.close()
        store.update_target(tid, status="exited", exit_code=0, duration_s=3.0)
    store.end_run(run_id, "completed", 1_700_000_010_000_000_000)
    store.close()
    return url


def test_check_cli_verdicts_exit_codes_and_junit(tmp_path: Path, db: str) -> None:
    xml = tmp_path / "out.xml"
    res = _cli("check", "latest", "--db", db, "--junit", str(xml), cwd=tmp_path)
    assert res.returncode == 1, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    assert ["burn#1", "cpu.percent", "mean", "<", "30", "50", "%", "FAIL"] in rows
    assert ["burn#2", "cpu.percent", "mean", "<", "30", "20", "%", "pass"] in rows
    assert res.stdout.splitlines()[-1] == "budgets: 5 of 6 passed, 1 failed"
    root = ET.parse(xml).getroot()
    assert [s.get("name") for s in root.findall("testsuite")] == ["burn#1", "burn#2"]
    assert (root.get("tests"), root.get("failures")) == ("6", "1")

    res = _cli("check", "1", "--db", db, "--json", cwd=tmp_path)
    doc = json.loads(res.stdout)
    assert res.returncode == 1 and doc["passed"] is False and len(doc["results"]) == 6
    assert doc["results"][1]["measured"] == 50.0 and doc["results"][1]["verdict"] == "fail"

    f = tmp_path / "b.yaml"
    f.write_text('budgets:\n  cpu.percent: ["max <= 50%", "count == 4"]\n')
    res = _cli("check", "1", "--db", db, "--budgets", str(f), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1] == "budgets: 4 of 4 passed"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("check", "9"), "run"),
        (("check", "1", "--budgets", "nope.yaml"), "nope.yaml: no such file"),
        (("check", "1", "--junit", "no/such/dir/x.xml"), "does not exist"),
    ],
)
def test_check_cli_user_errors(
    tmp_path: Path, db: str, args: tuple[str, ...], fragment: str
) -> None:
    res = _cli(*args, "--db", db, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeprof: error: ") and fragment in lines[0]


def test_check_run_without_budgets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = open_store(url)
    rid = store.begin_run(RunInfo("s", "busybox", 1, 1.0))
    store.begin_target(TargetInfo(rid, 0, "t1", []))
    store.end_run(rid, "completed", 2)
    store.close()
    res = _cli("check", "1", "--db", url, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "edgeprof: error: run 1 has no budgets; add 'budgets:' to its spec, or pass --budgets FILE"
    )


def test_run_with_a_bad_budget_exits_2_before_any_engine(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        textwrap.dedent(
            """\
            name: app
            image: busybox
            profiling:
              targets:
                - budgets:
                    cpu.percent: ["p95 < 150 GiB"]
            """
        )
    )
    # DOCKER_HOST is unset and nothing is started: the spec is refused first.
    res = _cli("run", str(spec), "--db", f"sqlite:///{tmp_path / 'r.db'}", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"edgeprof: error: {spec}:6: invalid value for 'profiling.targets[0].budgets.cpu.percent[0]': "
        "budget 'p95 < 150 GiB': 'GiB' is a size but cpu.percent is measured in %; "
        "write the limit in % or as a plain number"
    )
    assert not (tmp_path / "r.db").exists()


def test_budget_name_is_key_and_expression() -> None:
    b: Budget = parse_expression("cpu.percent", " p95   <  150 ")
    assert b.name == "cpu.percent p95 < 150"


def test_a_stored_budget_this_version_cannot_read_is_an_error_verdict() -> None:
    """A run's stored budgets are re-read: one naming a metric unknown here (renamed, or
    from a newer edgeprof) must not crash ``check`` nor vanish from the report."""
    from edgeprof.analyze.budgets import evaluate_run
    from edgeprof.analyze.model import GaugeStats, RunMeta, RunSummary, TargetSummary

    g = GaugeStats(10.0, 1.0, 9.0, 19.0, 20.0, 21.0, 5, "%")
    t = TargetSummary(
        "t", [], "exited", 0, False, False, 1.0, None, None,
        {"budgets": {"cpu.percentage": ["p95 < 5"], "cpu.percent": ["p95 < 50"]}},
        {"cpu.percent": g}, [],
    )  # fmt: skip
    meta = RunMeta(1, "s", "i", None, "completed", 0, 1, 1.0, {}, None, [])
    results = evaluate_run(RunSummary(meta, [t]))
    assert [(r.name, r.verdict) for r in results] == [
        ("cpu.percent p95 < 50", "pass"),
        ("cpu.percentage p95 < 5", "error"),
    ]
    assert "unknown metric 'cpu.percentage'" in results[1].message
    assert not results[1].ok


def test_a_share_of_time_needs_its_percent_sign() -> None:
    """cpu.throttled_seconds_per_second is stored as a share and shown in %: a plain number
    (5, meant as 5 %) would be 500 % and never fail."""
    from edgeprof.analyze.budgets import metric_catalog, parse_expression

    shares = [m for m, info in metric_catalog().items() if info.unit == "s/s"]
    assert shares
    with pytest.raises(ValueError, match=r"shown in %; write the limit with its unit"):
        parse_expression(shares[0], "mean < 5")
    b = parse_expression(shares[0], "mean < 5%")
    assert b.threshold.in_unit(shares[0], "s/s") == pytest.approx(0.05)


def test_check_of_a_run_still_running_says_so(tmp_path: Path) -> None:
    """A CI job checking a run that is still going (or whose profiler died) must learn that
    the verdicts use partial data."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_store(url)
    rid = store.begin_run(RunInfo("s", "busybox", 1_700_000_000_000_000_000, 1.0))
    tid = store.begin_target(
        TargetInfo(rid, 0, "t", [], {"budgets": {"cpu.percent": ["mean < 80"]}})
    )
    w = BatchWriter(store, rid, tid)
    w.describe([MetricSpec("cpu.percent", "%")])
    w.write([Sample("cpu.percent", labels_of(target="t"), 1_700_000_000_000_000_000, 10.0)])
    w.close()
    store.close()
    res = _cli("check", str(rid), "--db", url, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"run {rid} is still running" in res.stderr
    assert "samples stored so far" in res.stderr
