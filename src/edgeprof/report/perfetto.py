"""A run as one Chrome/Perfetto trace (JSON Trace Event Format): metrics and stacks together.

Open the file in https://ui.perfetto.dev (or chrome://tracing). Times are microseconds from
the run's start. What it holds:

- one process track per target (``target NAME``, a made-up PID above the kernel's
  ``pid_max`` so it never meets a real one) and one for the run's own series (``run N:
  host``), each stored metric series a counter track on it (``"ph": "C"``): the series key
  (metric and labels, as ``summary`` names it) and the unit as the argument, so Perfetto
  names the track ``cpu.percent %`` or ``app.fps{stage=decode} value``;
- the sampled stacks (``profiling.code``) of every process of a target as slices (``"ph":
  "X"``) on that process' track (its host PID, named ``TARGET: COMM [PID]``; one thread
  track per thread). Stacks are stored summed per window (about 1 s), so the trace draws
  each window as what it is, not as a timeline: one slice spanning the window, named
  ``stacks 12:00:01 (99 samples)`` (UTC), and inside it the window's call tree as nested
  slices, each as wide as its samples (one sampling period, ``1 / rate``, per sample, so the
  time nobody ran stays empty; squeezed when more samples than that fit), siblings by
  count, the biggest first. Their args say so (``aggregated``): left to right is *not* the
  order in time;
- the run's events (start, exit, notes) as instant events on their target's track.

It is written as the store's sweep yields samples, so a long run is not held in memory.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from edgeprof.analyze.summary import series_key
from edgeprof.codeprof.model import SLICE_NS
from edgeprof.store.base import Store, TargetRecord

PID_MAX = 4_194_304
"""Linux's largest ``pid_max`` (2**22): made-up track ids start above it."""
SLICE_US = SLICE_NS // 1000
"""Stacks are stored per process per slice (1 s)."""
DEFAULT_RATE = 100


@dataclass(frozen=True)
class PerfettoResult:
    events: int
    counters: int
    slices: int


@dataclass
class _Node:
    """One frame of a window's call tree: its samples and on which lines they were."""

    frame: tuple[str, str]
    kind: str
    count: int = 0
    lines: Counter[int] = field(default_factory=Counter)
    children: dict[tuple[str, str], _Node] = field(default_factory=dict)


AGGREGATED = (
    "the samples of this window summed per stack: widths are sample counts, left to right "
    "is by count, not the order in time"
)


def _dump(ev: dict[str, Any]) -> str:
    return json.dumps(ev, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _meta(kind: str, pid: int, name: str, tid: int | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {"name": kind, "ph": "M", "pid": pid, "args": {"name": name}}
    if tid is not None:
        ev["tid"] = tid
    return ev


def _rate(t: TargetRecord) -> float:
    code = t.config.get("code")
    rate = code.get("rate") if isinstance(code, dict) else None
    return float(rate) if isinstance(rate, int | float) and rate > 0 else DEFAULT_RATE


def _utc(t_ns: int) -> datetime:
    return datetime.fromtimestamp(t_ns / 1e9, tz=UTC)


def stack_slices(
    rows: Sequence[Any], t0_ns: int, pid: int, tid: int, rate: float
) -> Iterator[dict[str, Any]]:
    """The ``X`` events of one thread's stored stacks: per window, one slice spanning it
    (up to the next window's start, at most :data:`SLICE_US`) and the window's call tree
    nested inside, ``1/rate`` s per sample (less when more samples than that fit), children
    by count; in integer microseconds from ``t0_ns``, so every child lies inside its
    parent."""
    windows: dict[int, _Node] = {}
    for s in rows:
        n = int(s.count)
        if n <= 0 or not s.stack:
            continue
        node = windows.setdefault(s.t_ns, _Node(("", ""), s.kind))
        node.count += n
        for f in s.stack:
            key = (f.function, f.file)
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Node(key, s.kind)
            child.count += n
            child.lines[int(f.line)] += n
            node = child
    starts = sorted(windows)
    for i, t_ns in enumerate(starts):
        root = windows[t_ns]
        base = (t_ns - t0_ns) // 1000
        span = SLICE_US if i + 1 == len(starts) else min(SLICE_US, (starts[i + 1] - t_ns) // 1000)
        if span <= 0:
            continue
        per = min(1e6 / rate, span / root.count)
        at = _utc(t_ns)
        yield {
            "name": f"stacks {at:%H:%M:%S} ({root.count} samples)",
            "cat": "stacks",
            "ph": "X",
            "ts": base,
            "dur": span,
            "pid": pid,
            "tid": tid,
            "args": {
                "aggregated": AGGREGATED,
                "samples": root.count,
                "rate_hz": rate,
                "window_start_utc": at.isoformat(timespec="milliseconds"),
            },
        }
        yield from _tree(root, 0, base, per, pid, tid)


def _tree(
    node: _Node, start: int, base: int, per: float, pid: int, tid: int
) -> Iterator[dict[str, Any]]:
    """The children of ``node`` side by side from sample ``start`` on, depth first."""
    at = start
    for child in sorted(node.children.values(), key=lambda c: (-c.count, c.frame)):
        ts = base + round(at * per)
        dur = base + round((at + child.count) * per) - ts
        if dur > 0:
            line = min(child.lines.items(), key=lambda kv: (-kv[1], kv[0]))[0]
            yield {
                "name": child.frame[0],
                "cat": child.kind,
                "ph": "X",
                "ts": ts,
                "dur": dur,
                "pid": pid,
                "tid": tid,
                "args": {
                    "file": child.frame[1],
                    "line": line,
                    "samples": child.count,
                    "aggregated": True,
                },
            }
            yield from _tree(child, at, base, per, pid, tid)
        at += child.count


def trace_events(store: Store, run_ref: str | int) -> Iterator[dict[str, Any]]:
    """Every event of the run's trace, metadata first, then counters in time order, then
    the stacks' slices and the run's events."""
    run = store.resolve_run(run_ref)
    t0 = run.started_ns
    targets = store.targets(run.id)
    host_pid = PID_MAX + 1
    tpid = {t.id: PID_MAX + 2 + i for i, t in enumerate(targets)}
    yield _meta("process_name", host_pid, f"run {run.id}: host")
    yield {"name": "process_sort_index", "ph": "M", "pid": host_pid, "args": {"sort_index": 0}}
    for i, t in enumerate(targets):
        yield _meta("process_name", tpid[t.id], f"target {t.name}")
        yield {
            "name": "process_sort_index",
            "ph": "M",
            "pid": tpid[t.id],
            "args": {"sort_index": 2 * i + 1},
        }
    series = {s.id: s for s in store.series(run.id)}
    for sid, t_ns, value in store.iter_samples(run.id):
        s = series[sid]
        if not math.isfinite(value):
            continue
        yield {
            "name": series_key(s.metric, s.labels),
            "ph": "C",
            "ts": (t_ns - t0) / 1000,
            "pid": tpid.get(s.target_id, host_pid) if s.target_id is not None else host_pid,
            "args": {s.unit if s.unit and s.unit != "1" else "value": value},
        }
    used: set[int] = {host_pid, *tpid.values()}
    next_id = PID_MAX + 2 + len(targets)
    for i, t in enumerate(targets):
        rows = store.code_samples(t.id)
        procs: dict[tuple[int, str], list[Any]] = {}
        for r in rows:
            procs.setdefault((r.pid, r.process), []).append(r)
        for (pid, proc), prow in sorted(procs.items()):
            tp = pid
            if tp in used:  # a PID reused by a later target's process
                tp, next_id = next_id, next_id + 1
            used.add(tp)
            label = f"{t.name}: {proc} [{pid}]"
            yield _meta("process_name", tp, label)
            yield {
                "name": "process_sort_index",
                "ph": "M",
                "pid": tp,
                "args": {"sort_index": 2 * i + 2},
            }
            threads: dict[str | None, list[Any]] = {}
            for r in prow:
                threads.setdefault(getattr(r, "thread", None), []).append(r)
            for thread, trows in sorted(threads.items(), key=lambda kv: kv[0] or ""):
                tid = tp
                if thread is not None and len(threads) > 1:
                    tid, next_id = next_id, next_id + 1
                yield _meta("thread_name", tp, thread or f"{proc} [{pid}]", tid)
                yield from stack_slices(trows, t0, tp, tid, _rate(t))
    for e in store.events(run.id):
        yield {
            "name": e.kind,
            "cat": "event",
            "ph": "i",
            "s": "p",
            "ts": (e.t_ns - t0) / 1000,
            "pid": tpid.get(e.target_id, host_pid) if e.target_id is not None else host_pid,
            "tid": 0,
            "args": {"message": e.message},
        }


def export_perfetto(store: Store, run_ref: str | int, out: IO[str]) -> PerfettoResult:
    """Write the run's trace to ``out``; returns how many events of each kind."""
    run = store.resolve_run(run_ref)
    n = counters = slices = 0
    out.write('{"traceEvents":[\n')
    for ev in trace_events(store, run.id):
        out.write((",\n" if n else "") + _dump(ev))
        n += 1
        counters += ev["ph"] == "C"
        slices += ev["ph"] == "X"
    other = {"edgeprof_run": run.id, "spec": run.spec_name, "started_ns": run.started_ns}
    out.write(f'\n],"displayTimeUnit":"ms","otherData":{_dump(other)}}}\n')
    return PerfettoResult(events=n, counters=counters, slices=slices)


__all__ = ["PerfettoResult", "export_perfetto", "stack_slices", "trace_events"]
