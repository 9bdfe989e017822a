"""The HTML report, without a browser: escaping, the CSP, sections, downsampling, options.

Runs are written through the store (``BatchWriter``, events, logs) with values the test
controls; ``tests/integration/test_report_browser.py`` opens real reports in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tsdownsample", reason="the report extra is not installed")
if __import__("importlib").util.find_spec("uplot") is None:
    pytest.skip("the report extra (uplot-python) is not installed", allow_module_level=True)

from edgeprof.analyze.downsample import peak_indices, shared_indices, time_order  # noqa: E402
from edgeprof.errors import UserError  # noqa: E402
from edgeprof.model import Event, MetricSpec, Sample  # noqa: E402
from edgeprof.report.html import (  # noqa: E402
    POINTS,
    build_report,
    script_json,
    uplot_assets,
    write_report,
)
from edgeprof.report.terminal import fmt_value  # noqa: E402
from edgeprof.store import BatchWriter, open_store  # noqa: E402
from edgeprof.store.base import RunInfo, TargetInfo  # noqa: E402

XSS_METRIC = "<img src=x onerror=alert(1)>"
XSS_LOG = "</script><script>alert(2)</script>"
XSS_LABEL = '"><svg onload=alert(3)>'
SEC = 1_000_000_000


def make_run(
    url: str,
    targets: dict[str, dict[str, list[float]]],
    *,
    cpus: float | None = None,
    labels: dict[str, str] | None = None,
    events: Sequence[tuple[str, float, str, str, dict[str, Any]]] = (),
    logs: dict[str, str] | None = None,
    step_ns: int = SEC // 10,
    spec_name: str = "unit",
    budgets: dict[str, list[str]] | None = None,
) -> int:
    """A finished run: per target, metric → values at one tick every ``step_ns``."""
    store = open_store(url)
    t_run = 1_700_000_000 * SEC
    run_id = store.begin_run(
        RunInfo(
            spec_name=spec_name,
            image="edgeprof-test/python:latest",
            started_ns=t_run,
            interval_s=step_ns / SEC,
            spec_text=f"name: {spec_name}\n# {XSS_LOG}\n",
            host={
                "hostname": "edge-1",
                "cpu_count": 4,
                "gpu": {
                    "gpu": "jetson",
                    "jetson_model": "NVIDIA Jetson Orin Nano",
                    "l4t_release": "R36.3.0",
                },
            },
            version="0.0.test",
        )
    )
    w = BatchWriter(store, run_id)
    units = {"cpu.percent": "%", "memory.working_set_bytes": "B", "memory.limit_bytes": "B"}
    names = {m for series in targets.values() for m in series}
    w.describe([MetricSpec(m, units.get(m, "1")) for m in sorted(names)])
    t0 = t_run
    tids: dict[str, int] = {}
    for i, (name, series) in enumerate(targets.items()):
        cfg: dict[str, Any] = {"resources": {"cpus": cpus}} if cpus else {}
        if budgets:
            cfg["budgets"] = budgets
        tid = tids[name] = store.begin_target(TargetInfo(run_id, i, name, ["app", "--x"], cfg))
        w.add_target(name, tid)
        n = max(len(v) for v in series.values())
        lab = {"target": name, **(labels or {})}
        for k in range(n):
            t = t0 + k * step_ns
            w.write(
                [
                    Sample(m, tuple(sorted(lab.items())), t, v[k])
                    for m, v in series.items()
                    if k < len(v)
                ]
            )
        for tname, dt_s, kind, msg, data in events:
            if tname == name:
                w.event(Event(t0 + int(dt_s * SEC), kind, msg, name, data))  # type: ignore[arg-type]
        w.end_target(tid)
        w.flush()
        end = t0 + n * step_ns
        store.update_target(
            tid,
            status="exited",
            exit_code=0,
            started_ns=t0,
            ended_ns=end,
            duration_s=(end - t0) / SEC,
        )
        if logs and name in logs:
            store.add_log(tid, "stdout", logs[name])
        t0 = end + SEC
    w.close()
    store.end_run(run_id, "completed", t0)
    store.close()
    return run_id


def report(url: str, runs: list[str | int], **kw: Any) -> tuple[str, dict[str, Any]]:
    store = open_store(url, readonly=True)
    try:
        return build_report(store, runs, **kw)
    finally:
        store.close()


def page_data(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="edgeprof-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'r.db'}"


# -- escaping and the content security policy ------------------------------------------------


def test_script_json_cannot_close_its_element() -> None:
    obj = {"a": "</script><script>alert(1)</script>", "b": "x & y > z", "c": "\u2028\u2029é"}
    text = script_json(obj)
    for bad in ("<", ">", "&", "\u2028", "\u2029", "é"):
        assert bad not in text
    assert json.loads(text) == obj


def test_app_and_container_strings_are_escaped(url: str) -> None:
    rid = make_run(
        url,
        {"t<b>1</b>": {"cpu.percent": [10.0, 20.0, 30.0], f"app.{XSS_METRIC}": [1.0, 2.0, 3.0]}},
        labels={"camera": XSS_LABEL},
        events=[("t<b>1</b>", 0.1, "app_metric_rejected", f"rejected {XSS_METRIC}", {})],
        logs={"t<b>1</b>": f"ok\n{XSS_LOG}\n"},
    )
    page, _ = report(url, [rid])
    for raw in (XSS_METRIC, XSS_LOG, XSS_LABEL, "<b>1</b>"):
        assert raw not in page
    assert html.escape(f"app.{XSS_METRIC}") in page  # the summary table, escaped
    assert html.escape(XSS_LOG) in page  # the log tail and the spec text, escaped
    # exactly our three script elements (data, uPlot, ours): the log line opened none
    assert len(re.findall(r"<script\b", page)) == 3
    assert page.count("</script>") == 3
    data = page_data(page)
    labels = [s["label"] for c in data["charts"] for s in c["series"]]
    assert any(XSS_METRIC in c["title"] for c in data["charts"])
    assert any(XSS_LABEL in lab for lab in labels)  # kept as data, set with textContent


def test_csp_forbids_network_and_allows_only_our_scripts(url: str) -> None:
    rid = make_run(url, {"t": {"cpu.percent": [1.0, 2.0]}})
    page, _ = report(url, [rid])
    m = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    assert m is not None
    csp = html.unescape(m.group(1))
    assert csp.startswith("default-src 'none';")
    assert "img-src data:" in csp and "connect-src 'none'" in csp and "unsafe-eval" not in csp
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 2
    allowed = set(re.findall(r"'sha256-([^']+)'", csp))
    for s in scripts:
        assert base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() in allowed
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert '<link rel="icon" href="data:,">' in page
    # nothing to fetch: no src/href to another place, no @import or url() in styles
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", page)
    assert "@import" not in page and not re.search(r"url\((?!data:)", page)


def test_uplot_read_from_the_wheel_without_importing_it() -> None:
    for mod in [m for m in sys.modules if m == "uplot" or m.startswith("uplot.")]:
        del sys.modules[mod]
    js, css = uplot_assets()
    assert "uPlot" in js and "(MIT Licensed)" in js[:400] and ".uplot" in css
    assert "uplot" not in sys.modules


def test_missing_extra_is_one_sentence(tmp_path: Path, url: str) -> None:
    rid = make_run(url, {"t": {"cpu.percent": [1.0, 2.0]}})
    fake = tmp_path / "fake" / "uplot"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeprof.cli.main",
            "report",
            str(rid),
            "--db",
            url,
            "-o",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'edgeprof[report]'" in lines[0], res.stderr
    assert not (tmp_path / "r.html").exists()


# -- content ---------------------------------------------------------------------------------


def test_metadata_summary_events_and_logs(url: str) -> None:
    cpu = [12.5, 50.0, 87.5, 25.0]
    mem = [100.0 * 2**20, 150.0 * 2**20, 120.0 * 2**20, 110.0 * 2**20]
    log = "".join(f"line {i}\n" for i in range(300))
    rid = make_run(
        url,
        {
            "a": {
                "cpu.percent": cpu,
                "memory.working_set_bytes": mem,
                "memory.limit_bytes": [256.0 * 2**20] * 4,
            }
        },
        cpus=0.5,
        events=[
            ("a", 0.0, "target_started", "container abc started", {}),
            ("a", 0.35, "exited", "exit code 137", {"exit_code": 137, "oom_killed": True}),
            ("a", 0.2, "collector_unavailable", "gpu: no NVML", {}),
        ],
        logs={"a": log},
    )
    page, info = report(url, [rid])
    assert "Jetson: NVIDIA Jetson Orin Nano, L4T R36.3.0" in page
    assert "<details><summary>spec (2 lines)</summary>" in page
    assert "edgeprof-test/python:latest" in page and "0.0.test" in page
    # exact statistics, formatted as the terminal does
    for v in (np.mean(cpu), np.max(cpu)):
        assert f"<td class='n'>{fmt_value(float(v), '%')}</td>" in page
    assert f"<td class='n'>{fmt_value(float(np.max(mem)), 'B')}</td>" in page
    assert "50.0 % (peak 175 %)" in page  # cpus 0.5: the limit and the peak against it
    assert "256.0 MiB (peak 59 %)" in page
    # the log tail: the last 200 of 300 lines
    assert "last 200 of 300 lines" in page and "line 299" in page
    assert "line 99\n" not in page and "line 100\n" in page
    data = page_data(page)
    marks = data["events"][next(iter(data["events"]))]
    kinds = {(m[1], m[2]) for m in marks}
    assert ("start", "start") in kinds and ("bad", "OOM kill") in kinds
    assert ("warn", "collector unavailable") in kinds
    assert [m[0] for m in marks if m[2] == "OOM kill"] == [0.35]
    cpu_chart = next(c for c in data["charts"] if c["g"] == "cpu")
    limit = [s for s in cpu_chart["series"] if s["limit"]]
    assert len(limit) == 1 and "cpus 0.5" in limit[0]["label"]
    assert cpu_chart["tables"][-1]["y"] == [[50.0, 50.0]]
    assert cpu_chart["tables"][0]["y"][0] == cpu  # short series: every sample, exact
    assert info["groups"] == ["cpu", "memory"]


def test_sections_without_data_are_left_out(url: str) -> None:
    rid = make_run(url, {"t": {"cpu.percent": [1.0, 2.0, 3.0]}})
    page, info = report(url, [rid])
    assert info["groups"] == ["cpu"]
    ids = re.findall(r"<section id='([^']+)'", page)
    assert ids == ["runs", "summary", "g-cpu"]  # no empty memory/GPU/app/events/logs parts
    for absent in ("GPU", "App metrics", "Log tail", ">Events<"):
        assert f"<h2>{absent}" not in page and absent not in re.findall("<nav>.*?</nav>", page)[0]


def test_budget_verdicts_are_shown_when_the_run_has_budgets(url: str) -> None:
    budgets = {"cpu.percent": ["mean < 45", "max < 100"], "app.fps": ["p50 >= 10"]}
    rid = make_run(url, {"t": {"cpu.percent": [40.0, 50.0, 60.0]}}, budgets=budgets)
    page, _ = report(url, [rid])
    ids = re.findall(r"<section id='([^']+)'", page)
    assert ids == ["runs", "summary", "budgets", "g-cpu"]
    part = page.split("<section id='budgets'", 1)[1].split("</section>", 1)[0]
    assert "1 of 3 passed" in part and "2 failed" in part
    rows = re.findall(r"<tr><td>t</td><td><code>(.*?)</code></td><td class='n'>(.*?)</td>", part)
    assert rows == [  # metrics in name order (the stored config's), expressions as written
        ("app.fps p50 &gt;= 10", "-"),
        ("cpu.percent mean &lt; 45", "50 %"),
        ("cpu.percent max &lt; 100", "60 %"),
    ]
    assert "no data" in part


def test_long_series_are_downsampled_keeping_peaks(url: str) -> None:
    n = 100_000
    rng = np.random.default_rng(3)
    v = rng.uniform(10, 20, n)
    v[31_337] = 99.0  # a one-sample spike
    v[77_777] = 0.5  # and a dip
    rid = make_run(url, {"t": {"cpu.percent": v.tolist()}}, step_ns=10_000_000)
    page, info = report(url, [rid])
    ch = page_data(page)["charts"][0]
    ys = ch["tables"][0]["y"][0]
    xs = ch["tables"][0]["x"]
    assert len(ys) <= POINTS and len(ys) >= POINTS // 2
    assert 99.0 in ys and 0.5 in ys
    assert xs[ys.index(99.0)] == pytest.approx(313.37, abs=1e-6)  # 31,337 × 10 ms
    assert ch["raw"] == n and ch["shown"] == len(ys)
    assert info["raw_samples"] == n
    assert all(a < b for a, b in zip(xs, xs[1:], strict=False))
    assert set(ys) <= set(v.tolist())  # real samples, not averages


def test_shared_indices_keep_each_series_peaks() -> None:
    x = np.arange(50_000, dtype=np.float64)
    a, b = np.zeros(50_000), np.zeros(50_000)
    a[100], b[40_000] = 5.0, -7.0
    idx = shared_indices(x, [a, b], 2000)
    assert 100 in idx and 40_000 in idx and len(idx) <= 2000
    assert list(peak_indices(x[:10], a[:10], 2000)) == list(range(10))
    t, v = time_order(np.array([3, 1, 2]), np.array([30.0, 10.0, 20.0]))
    assert t.tolist() == [1, 2, 3] and v.tolist() == [10.0, 20.0, 30.0]


def test_several_runs_chart_the_same_target_across_them(url: str) -> None:
    r1 = make_run(url, {"base#1": {"cpu.percent": [1.0, 2.0]}, "other": {"cpu.percent": [5.0]}})
    r2 = make_run(url, {"base#1": {"cpu.percent": [3.0, 4.0]}, "other": {"cpu.percent": [6.0]}})
    page, info = report(url, [r1, r2])
    data = page_data(page)
    titles = [c["title"] for c in data["charts"]]
    assert titles == ["CPU (100 % = one core): base#1", "CPU (100 % = one core): other"]
    first = data["charts"][0]
    assert [s["label"] for s in first["series"]] == [
        f"run {r1} · base#1 · CPU",
        f"run {r2} · base#1 · CPU",
    ]
    assert first["tables"][0]["y"] == [[1.0, 2.0]] and first["tables"][1]["y"] == [[3.0, 4.0]]
    assert info["runs"] == [r1, r2]
    # --target: a base name selects its repeats; an unknown one is one sentence
    page, info = report(url, [r1], target="base")
    assert [c["title"] for c in page_data(page)["charts"]] == ["CPU (100 % = one core)"]
    with pytest.raises(
        UserError, match=r"has no target named 'nope' \(its targets: base#1, other\)"
    ):
        report(url, [r1], target="nope")


def test_write_report_and_cli(tmp_path: Path, url: str) -> None:
    rid = make_run(url, {"t": {"cpu.percent": [1.0, 2.0]}})
    store = open_store(url, readonly=True)
    res = write_report(store, ["latest"], str(tmp_path / "a.html"))
    store.close()
    assert res.runs == [rid] and res.size_bytes == (tmp_path / "a.html").stat().st_size
    out = tmp_path / "b.html"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgeprof.cli.main",
            "report",
            str(rid),
            "-o",
            str(out),
            "--db",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert f"wrote {out}" in p.stderr and out.read_text().startswith("<!doctype html>")
    p = subprocess.run(
        [sys.executable, "-m", "edgeprof.cli.main", "report", "42", "-o", str(out), "--db", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no run with id 42" in p.stderr


def test_top_processes_are_picked_per_target(url: str) -> None:
    """A target with six busy processes must not crowd out another target's processes."""
    store = open_store(url)
    t0 = 1_700_000_000 * SEC
    rid = store.begin_run(RunInfo("procs", "img", t0, 0.1))
    w = BatchWriter(store, rid)
    w.describe([MetricSpec("process.cpu.percent", "%")])
    for i, (name, pids, level) in enumerate((("big", range(1, 7), 90.0), ("small", (7, 8), 10.0))):
        tid = store.begin_target(TargetInfo(rid, i, name, []))
        w.add_target(name, tid)
        for k in range(3):
            w.write(
                [
                    Sample(
                        "process.cpu.percent",
                        (("pid", str(p)), ("process", f"p{p}"), ("target", name)),
                        t0 + k * SEC,
                        level + p,
                    )
                    for p in pids
                ]
            )
        w.end_target(tid)
        store.update_target(tid, status="exited", exit_code=0, started_ns=t0)
    w.close()
    store.end_run(rid, "completed", t0 + 5 * SEC)
    store.close()
    page, _ = report(url, [rid])
    chart = next(
        c for c in page_data(page)["charts"] if c["g"] == "processes" and "CPU" in c["title"]
    )
    labels = [s["label"] for s in chart["series"]]
    assert sum("big" in x for x in labels) == 5  # its top five
    assert sum("small" in x for x in labels) == 2, labels
