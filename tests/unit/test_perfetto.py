"""``edgeprof export --format perfetto``: metrics as counter tracks, stacks as slices.

The trace is checked two ways: here, structurally against the Trace Event Format (fields,
types, per-track time order, slices nested on each thread) with the values the test wrote;
and, where Perfetto's ``trace_processor_shell`` can be had, loaded by the ``perfetto``
package's TraceProcessor and queried for a counter and a slice. That package downloads the
binary on first use (no registry ships it), so without network access the second test is
skipped with the reason; ``EDGEPROF_TRACE_PROCESSOR=/path/to/trace_processor_shell`` points
it at a copy.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_flame import APP, COLD, HOT, MAIN, SEC, T0, WORK, cli, hot_cold, make_code_run

from edgeprof.codeprof.model import CodeSample, Frame
from edgeprof.report.perfetto import PID_MAX, stack_slices

REQUIRED = {
    "X": ("name", "ph", "ts", "dur", "pid", "tid"),
    "C": ("name", "ph", "ts", "pid", "args"),
    "M": ("name", "ph", "pid", "args"),
    "i": ("name", "ph", "ts", "pid", "s"),
}


def check_trace(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a JSON trace as the Trace Event Format says; returns what it holds:
    counters ``{(pid, name, arg): [(ts, value)]}``, slices ``{(pid, tid): [event]}``,
    process and thread names."""
    assert isinstance(doc["traceEvents"], list)
    counters: dict[tuple[int, str, str], list[tuple[float, float]]] = defaultdict(list)
    slices: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    procs: dict[int, str] = {}
    threads: dict[tuple[int, int], str] = {}
    for ev in doc["traceEvents"]:
        ph = ev["ph"]
        assert ph in REQUIRED, ev
        for k in REQUIRED[ph]:
            assert k in ev, (k, ev)
        assert isinstance(ev["name"], str) and isinstance(ev["pid"], int)
        if "ts" in ev:
            assert isinstance(ev["ts"], int | float) and ev["ts"] >= 0, ev
        if ph == "C":
            assert ev["args"] and all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in ev["args"].values()
            ), ev
            for k, v in ev["args"].items():
                counters[(ev["pid"], ev["name"], k)].append((ev["ts"], v))
        elif ph == "X":
            assert isinstance(ev["dur"], int | float) and ev["dur"] > 0, ev
            assert isinstance(ev["tid"], int)
            slices[(ev["pid"], ev["tid"])].append(ev)
        elif ph == "M":
            if ev["name"] == "process_name":
                assert ev["pid"] not in procs, "a process named twice"
                procs[ev["pid"]] = ev["args"]["name"]
            elif ev["name"] == "thread_name":
                threads[(ev["pid"], ev["tid"])] = ev["args"]["name"]
        elif ph == "i":
            assert ev["s"] in ("g", "p", "t")
    for track, pts in counters.items():  # time order per counter track
        ts = [t for t, _ in pts]
        assert ts == sorted(ts), track
        assert track[0] in procs, f"counter {track} on an unnamed process"
    for key, evs in slices.items():  # slices on a thread nest: a child inside its parent
        assert key[0] in procs and key in threads, key
        open_: list[tuple[float, float]] = []
        for ev in sorted(evs, key=lambda e: (e["ts"], -e["dur"])):
            a, b = ev["ts"], ev["ts"] + ev["dur"]
            while open_ and open_[-1][1] <= a:
                open_.pop()
            if open_:
                assert b <= open_[-1][1], f"slice {ev} crosses its parent {open_[-1]}"
                # inside a window: aggregated stacks, not a timeline
                assert ev.get("args", {}).get("aggregated") is True, ev
            else:  # top level: one window of stacks, saying what it is
                assert ev.get("cat") == "stacks" and "by count" in ev["args"]["aggregated"], ev
                assert ev["name"].startswith("stacks ") and ev["name"].endswith(" samples)"), ev
            open_.append((a, b))
    return {"counters": counters, "slices": slices, "procs": procs, "threads": threads}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'trace.db'}"


def export(url: str, run_id: int, tmp_path: Path) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path / "run.json"
    code, _, err = cli("export", str(run_id), "--db", url, "--format", "perfetto", "-o", str(out))
    assert code == 0, err
    return out, json.loads(out.read_text()), err


def test_counters_and_stacks_on_one_timeline(url: str, tmp_path: Path) -> None:
    cpu = [10.0, 95.0, 97.0, 12.0]
    rid = make_code_run(
        url,
        {"app": hot_cold(t0=T0 + SEC, slices=2)},
        {"cpu.percent": cpu, "app.fps": [30.0, 29.0, 31.0, 30.0]},
        start_offset_ns=SEC // 2,
        config={"code": {"python": True, "rate": 100}},
    )
    _, doc, err = export(url, rid, tmp_path)
    got = check_trace(doc)
    assert "8 counter values" in err and "ui.perfetto.dev" in err
    target_pid = PID_MAX + 2
    assert got["procs"][target_pid] == "target app"
    assert got["procs"][4242] == "app: python [4242]"
    # counters: the values written, microseconds from the run's start (target at +0.5 s)
    track = got["counters"][(target_pid, "cpu.percent", "%")]
    assert track == [(500_000 + k * 1_000_000, v) for k, v in enumerate(cpu)]
    assert [v for _, v in got["counters"][(target_pid, "app.fps", "value")]] == [30, 29, 31, 30]
    # stacks: per window, one slice spanning it; inside, 100 samples at 100 Hz fill it,
    # the biggest first: hot (80) then cold (20), which is no order in time
    evs = got["slices"][(4242, 4242)]
    by = defaultdict(list)
    for e in evs:
        by[e["name"]].append((e["ts"], e["dur"], e["args"]["samples"]))
    windows = [e for e in evs if e["cat"] == "stacks"]
    assert [(e["name"], e["ts"], e["dur"]) for e in windows] == [
        (f"stacks {_hms(T0 + SEC)} (100 samples)", 1_000_000, 1_000_000),
        (f"stacks {_hms(T0 + 2 * SEC)} (100 samples)", 2_000_000, 1_000_000),
    ]
    assert windows[0]["args"]["samples"] == 100 and windows[0]["args"]["rate_hz"] == 100
    assert by["<module>"] == [(1_000_000, 1_000_000, 100), (2_000_000, 1_000_000, 100)]
    assert by["work"] == by["<module>"]
    assert by["hot"] == [(1_000_000, 800_000, 80), (2_000_000, 800_000, 80)]
    assert by["cold"] == [(1_800_000, 200_000, 20), (2_800_000, 200_000, 20)]
    hot = next(e for e in evs if e["name"] == "hot")
    assert hot["args"] == {"file": APP, "line": 5, "samples": 80, "aggregated": True}
    assert hot["cat"] == "python"
    # the spike (95 %, 97 % at 1.5 s and 2.5 s) and the hot code overlap in time
    spike = [t for t, v in track if v > 90]
    assert all(any(a <= t < a + d for a, d, _ in by["<module>"]) for t in spike)
    starts = [e for e in doc["traceEvents"] if e["ph"] == "i" and e["name"] == "start"]
    assert starts and starts[0]["ts"] == 500_000 and starts[0]["pid"] == target_pid


def _hms(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, tz=UTC).strftime("%H:%M:%S")


def test_each_window_is_one_slice_with_its_call_tree_by_count() -> None:
    # 30 samples at 100 Hz: 0.3 s of the window, the rest empty; two stacks share
    # <module> → work; hot (20) before cold (10) whatever their names
    rows = [
        CodeSample(1, "p", T0, (MAIN, WORK, COLD), 10),
        CodeSample(1, "p", T0, (MAIN, WORK, HOT), 20),
        CodeSample(1, "p", T0 + SEC, (MAIN, Frame("x", APP, 1)), 300),  # more than fit: squeezed
    ]
    evs = list(stack_slices(rows, T0, 1, 1, 100.0))
    first = [(e["name"], e["ts"], e["dur"]) for e in evs if e["ts"] < 1_000_000]
    assert first == [
        (f"stacks {_hms(T0)} (30 samples)", 0, 1_000_000),
        ("<module>", 0, 300_000),
        ("work", 0, 300_000),
        ("hot", 0, 200_000),
        ("cold", 200_000, 100_000),
    ]
    second = [(e["name"], e["ts"], e["dur"]) for e in evs if e["ts"] >= 1_000_000]
    assert second == [
        (f"stacks {_hms(T0 + SEC)} (300 samples)", 1_000_000, 1_000_000),
        ("<module>", 1_000_000, 1_000_000),
        ("x", 1_000_000, 1_000_000),
    ]
    check_trace(
        {
            "traceEvents": [
                {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "p"}},
                {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "p"}},
                *evs,
            ]
        }
    )


def test_a_window_that_ended_early_never_overlaps_the_next() -> None:
    # py-spy windows start about 1.02 s apart, but one cut short is followed sooner
    rows = [
        CodeSample(1, "p", T0, (MAIN, HOT), 40),
        CodeSample(1, "p", T0 + 400_000_000, (MAIN, HOT), 100),
    ]
    evs = list(stack_slices(rows, T0, 1, 1, 100.0))
    windows = [(e["ts"], e["dur"]) for e in evs if e["cat"] == "stacks"]
    assert windows == [(0, 400_000), (400_000, 1_000_000)]
    assert [(e["ts"], e["dur"]) for e in evs if e["name"] == "hot"] == [
        (0, 400_000),
        (400_000, 1_000_000),
    ]


def test_a_run_without_stacks_still_exports_its_counters(url: str, tmp_path: Path) -> None:
    rid = make_code_run(url, {"app": []}, {"cpu.percent": [1.0, 2.0]})
    _, doc, _ = export(url, rid, tmp_path)
    got = check_trace(doc)
    assert not got["slices"]
    assert [v for _, v in got["counters"][(PID_MAX + 2, "cpu.percent", "%")]] == [1.0, 2.0]


WINDOW = {
    "name": "stacks 00:00:00 (1 samples)",
    "cat": "stacks",
    "ph": "X",
    "pid": 1,
    "tid": 1,
    "args": {"aggregated": "summed per stack, by count"},
}


def test_structural_check_catches_bad_traces() -> None:
    """The validator above is not vacuous."""
    named = [{"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "p"}}]
    with pytest.raises(AssertionError):
        check_trace(
            {
                "traceEvents": [
                    *named,
                    {"name": "c", "ph": "C", "ts": 1, "pid": 1, "args": {"v": "x"}},
                ]
            }
        )
    with pytest.raises(AssertionError):
        check_trace(
            {
                "traceEvents": [
                    *named,
                    {"name": "c", "ph": "C", "ts": 5, "pid": 1, "args": {"v": 1}},
                    {"name": "c", "ph": "C", "ts": 1, "pid": 1, "args": {"v": 2}},
                ]
            }
        )
    thread = {"name": "thread_name", "ph": "M", "pid": 1, "tid": 1, "args": {"name": "t"}}
    frame = {"name": "f", "ph": "X", "ts": 0, "dur": 5, "pid": 1, "tid": 1, "args": {}}
    with pytest.raises(AssertionError, match="stacks"):  # a frame outside any window
        check_trace({"traceEvents": [*named, thread, frame]})
    with pytest.raises(AssertionError, match="aggregated"):  # not marked as aggregated
        check_trace({"traceEvents": [*named, thread, {**WINDOW, "ts": 0, "dur": 10}, frame]})
    with pytest.raises(AssertionError, match="crosses"):
        check_trace(
            {
                "traceEvents": [
                    *named,
                    thread,
                    {**WINDOW, "ts": 0, "dur": 10},
                    {**WINDOW, "ts": 5, "dur": 10},
                ]
            }
        )


def _trace_processor_bin() -> str | None:
    return os.environ.get("EDGEPROF_TRACE_PROCESSOR") or shutil.which("trace_processor_shell")


def test_perfetto_trace_processor_loads_it(url: str, tmp_path: Path) -> None:
    tp_mod = pytest.importorskip("perfetto.trace_processor", reason="pip install perfetto")
    rid = make_code_run(
        url,
        {"app": hot_cold(t0=T0 + SEC, slices=2)},
        {"cpu.percent": [10.0, 95.0, 97.0]},
        config={"code": {"python": True, "rate": 100}},
    )
    path, _, _ = export(url, rid, tmp_path)
    config = tp_mod.TraceProcessorConfig(bin_path=_trace_processor_bin(), load_timeout=30)
    try:
        tp = tp_mod.TraceProcessor(trace=str(path), config=config)
    except Exception as e:  # the package downloads trace_processor_shell on first use
        pytest.skip(
            "perfetto's TraceProcessor could not start: it downloads trace_processor_shell "
            "from Google's storage on first use (no package registry ships the binary) and "
            f"that failed here ({type(e).__name__}: {str(e)[-200:]}); set "
            "EDGEPROF_TRACE_PROCESSOR to a trace_processor_shell to run this check"
        )
    try:
        counters = tp.query(
            "SELECT t.name AS track, c.ts AS ts, c.value AS value FROM counter c "
            "JOIN counter_track t ON c.track_id = t.id WHERE t.name LIKE 'cpu.percent%' "
            "ORDER BY c.ts"
        ).as_pandas_dataframe()
        assert list(counters["value"]) == [10.0, 95.0, 97.0]
        assert list(counters["ts"] - counters["ts"].iloc[0]) == [0, 1_000_000_000, 2_000_000_000]
        hot = tp.query(
            "SELECT s.ts AS ts, s.dur AS dur, s.depth AS depth FROM slice s "
            "WHERE s.name = 'hot' ORDER BY s.ts"
        ).as_pandas_dataframe()
        assert list(hot["dur"]) == [800_000_000, 800_000_000]
        assert list(hot["depth"]) == [3, 3]  # window → <module> → work → hot
        windows = tp.query(
            "SELECT s.dur AS dur FROM slice s WHERE s.name LIKE 'stacks %' ORDER BY s.ts"
        ).as_pandas_dataframe()
        assert list(windows["dur"]) == [1_000_000_000, 1_000_000_000]
    finally:
        tp.close()
