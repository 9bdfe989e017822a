"""``edgeprof report``: one self-contained HTML file for one or more stored runs.

The page opens offline and makes no network request of any kind: the chart library
(uPlot, read from the ``uplot-python`` wheel's files without importing its Python module),
the styles, the script and the data are inlined, the favicon is a ``data:`` URL, and a
Content-Security-Policy forbids every fetch and every script but ours (by SHA-256 hash).

What it shows: each run's metadata (spec, image, engine, host, edgeprof version, times,
status), a summary table per target, interactive charts per metric group (CPU, memory, I/O,
network, processes, GPU, host, app metrics) with the run's events as vertical markers, the
events as a list, and each container's log tail. The services started for the apps have a
section of their own (scope, for which target, ready time, status, their statistics when
profiled), and so do scenarios (apps run together): each app alone vs together with the
slowdowns, and the members' CPU together in one chart. Sections for which a run has no data are
left out, not shown empty (see :data:`EXTRA_SECTIONS` for what later features add).

Safety: every string from the app or the container (metric names, labels, meta, log lines,
event messages) is escaped with :func:`html.escape` in the page, and set with
``textContent`` by the script; the data travels as JSON in a ``<script
type="application/json">`` element with ``<``, ``>``, ``&`` and every non-ASCII character
(U+2028/U+2029 included) escaped, so no string can close the element.

Long runs: each series is downsampled for display with MinMaxLTTB (keeps peaks; see
:mod:`edgeprof.analyze.downsample`) to a few thousand points; the raw data stays in the
database. Everything is read through the :class:`~edgeprof.store.base.Store` protocol.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import importlib.util
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from edgeprof import __version__
from edgeprof.analyze.downsample import shared_indices, time_order
from edgeprof.analyze.model import CounterStats, GaugeStats, RunSummary, TargetSummary
from edgeprof.analyze.summary import series_key, summarize
from edgeprof.errors import UserError
from edgeprof.report.terminal import MAIN_METRICS, NOTE_KINDS, fmt_duration, fmt_value
from edgeprof.store.base import EventRecord, RunRecord, SeriesRecord, Store, TargetRecord

POINTS = 4000
"""Displayed points per target and chart (the series of one target share their times)."""
LOG_LINES = 200
"""Lines of each container stream shown (the last ones)."""
MAX_EVENTS = 500
"""Events listed and drawn per target (the first ones; the rest are counted)."""
TOP_PROCESSES = 5
"""Per-process series drawn per target: the largest by peak."""

INSTALL_HINT = (
    "the HTML report needs the report extra (uplot-python, tsdownsample); "
    "install it with: pip install 'edgeprof[report]'"
)

# -- metric groups -----------------------------------------------------------------------

GROUPS: list[tuple[str, str]] = [
    ("cpu", "CPU"),
    ("memory", "Memory"),
    ("io", "Disk I/O"),
    ("net", "Network"),
    ("processes", "Processes"),
    ("gpu", "GPU"),
    ("host", "Host"),
    ("app", "App metrics"),
    ("other", "Other metrics"),
]
GROUP_TITLES = dict(GROUPS)

SHORT: dict[str, str] = {
    "cpu.percent": "CPU",
    "cpu.throttled_seconds_per_second": "throttled",
    "memory.working_set_bytes": "working set",
    "memory.rss_bytes": "RSS",
    "memory.cache_bytes": "cache",
    "memory.limit_bytes": "limit",
    "io.read_bytes_per_second": "read",
    "io.write_bytes_per_second": "write",
    "net.rx_bytes_per_second": "received",
    "net.tx_bytes_per_second": "sent",
    "net.rx_packets_per_second": "packets received",
    "net.tx_packets_per_second": "packets sent",
    "pids.count": "processes + threads",
    "process.count": "processes",
    "host.cpu.percent": "host CPU",
    "host.memory.used_bytes": "used",
    "host.memory.available_bytes": "available",
    "host.load1": "load (1 min)",
}

CHART_TITLES: dict[tuple[str, str], str] = {
    ("cpu", "%"): "CPU (100 % = one core)",
    ("cpu", "throttled"): "CPU throttled (share of the time)",
    ("memory", "B"): "memory: working set, RSS, page cache, limit",
    ("io", "B/s"): "disk read and write",
    ("net", "B/s"): "network bytes",
    ("net", "1/s"): "network packets",
    ("processes", "count"): "processes and threads",
    ("processes", "process.cpu.percent"): f"CPU per process (top {TOP_PROCESSES})",
    ("processes", "process.memory.rss_bytes"): f"RSS per process (top {TOP_PROCESSES})",
    ("host", "%"): "host CPU (100 % = one core)",
    ("host", "B"): "host memory",
    ("host", "1"): "host load",
}

MEMORY_SHOWN = (
    "memory.working_set_bytes",
    "memory.rss_bytes",
    "memory.cache_bytes",
    "memory.limit_bytes",
)


def classify(s: SeriesRecord) -> tuple[str, str] | None:
    """(group, chart key) of a series, or None for one not charted (a kernel counter's
    running value: its rate is a series of its own)."""
    m, unit = s.metric, s.unit or "1"
    if s.kind == "counter":
        return None
    if m.startswith("app."):
        return ("app", m)
    if m == "cpu.percent":
        return ("cpu", "%")
    if m == "cpu.throttled_seconds_per_second":
        return ("cpu", "throttled")
    if m.startswith("memory."):
        return ("memory", "B") if m in MEMORY_SHOWN else None
    if m.startswith("io.") and m.endswith("_per_second"):
        return ("io", unit)
    if m.startswith("net.") and m.endswith("_per_second"):
        return ("net", unit)
    if m in ("pids.count", "process.count"):
        return ("processes", "count")
    if m in ("process.cpu.percent", "process.memory.rss_bytes"):
        return ("processes", m)
    if m.startswith("process."):
        return None
    if m.startswith("gpu."):
        return ("gpu", unit)
    if m.startswith("jetson."):
        return ("gpu", "jetson " + unit)
    if m.startswith("host."):
        return ("host", unit)
    return ("other", unit)


def chart_title(group: str, key: str, unit: str | None) -> str:
    if group == "app":
        return key
    t = CHART_TITLES.get((group, key))
    if t is not None:
        return t
    return f"{GROUP_TITLES[group]} ({unit or key})"


# -- reading -----------------------------------------------------------------------------


@dataclass
class _Target:
    key: str
    run: RunRecord
    rec: TargetRecord
    label: str
    color: str
    t0_ns: int


@dataclass
class _RunData:
    run: RunRecord
    summary: RunSummary
    targets: list[TargetRecord]
    series: list[SeriesRecord]
    arrays: dict[int, tuple[Any, Any]]
    events: list[EventRecord]
    logs: dict[int, dict[str, str]]


@dataclass
class _Chart:
    group: str
    key: str
    title: str
    unit: str | None
    series: list[dict[str, Any]] = field(default_factory=list)
    tables: list[dict[str, Any]] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    raw: int = 0
    shown: int = 0


@dataclass(frozen=True)
class ReportResult:
    """What ``write_report`` wrote: the file, its size, what it shows, how long it took."""

    path: str
    size_bytes: int
    runs: list[int]
    charts: int
    raw_samples: int
    shown_points: int
    seconds: float


PALETTE = [
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
]
DASHES: list[list[int] | None] = [None, [6, 3], [2, 2], [10, 3, 2, 3], [12, 6]]
LIMIT_DASH = [4, 4]


def _match(name: str, want: str) -> bool:
    return name == want or name.split("#", 1)[0] == want


def _read(store: Store, run_ref: str | int, target: str | None) -> _RunData:
    run = store.resolve_run(run_ref)
    targets = store.targets(run.id)
    if target is not None:
        chosen = [t for t in targets if _match(t.name, target)]
        if not chosen:
            names = ", ".join(t.name for t in targets) or "none"
            raise UserError(
                f"run {run.id} has no target named {target!r} (its targets: {names}); "
                "pick one of them with --target"
            )
        targets = chosen
    summary = summarize(store, run.id)
    keep = {t.id for t in targets}
    keep_names = {t.name for t in targets}
    summary = RunSummary(
        summary.run,
        [t for t in summary.targets if t.name in keep_names],
        [sc for sc in summary.scenarios if any(m.name in keep_names for m in sc.targets)],
    )
    series = [s for s in store.series(run.id) if s.target_id in keep or s.target_id is None]
    return _RunData(
        run=run,
        summary=summary,
        targets=targets,
        series=series,
        arrays=store.series_arrays(run.id),
        events=[e for e in store.events(run.id) if e.target_id in keep or e.target_id is None],
        logs={t.id: store.logs(t.id) for t in targets},
    )


# -- charts ------------------------------------------------------------------------------


def _label_of(s: SeriesRecord, group: str) -> str:
    extra = {k: v for k, v in s.labels.items() if k != "target"}
    if group == "processes" and s.metric.startswith("process."):
        name = extra.pop("process", "?")
        pid = extra.pop("pid", "?")
        base = f"{name} [pid {pid}]"
    elif group == "app":
        base = ""
    else:
        base = SHORT.get(s.metric, s.metric)
    if extra:
        inner = ",".join(f"{k}={v}" for k, v in sorted(extra.items()))
        base = f"{base}{{{inner}}}" if base else inner
    return base


def _finite_list(v: Any) -> list[float | None]:
    if bool(np.isfinite(v).all()):
        out: list[float | None] = v.tolist()
        return out
    return [x if math.isfinite(x) else None for x in v.tolist()]


def _top_processes(series: list[SeriesRecord], arrays: dict[int, tuple[Any, Any]]) -> set[int]:
    """Ids of per-process series to draw: per target and metric, the TOP_PROCESSES largest
    by peak (one target's busy processes never crowd out another's)."""
    keep: set[int] = set()
    by_metric: dict[tuple[int | None, str], list[tuple[float, int]]] = {}
    for s in series:
        if s.metric in ("process.cpu.percent", "process.memory.rss_bytes"):
            a = arrays.get(s.id)
            if a is None or not len(a[1]):
                continue
            peak = float(np.nanmax(a[1])) if np.isfinite(a[1]).any() else -math.inf
            by_metric.setdefault((s.target_id, s.metric), []).append((peak, s.id))
    for lst in by_metric.values():
        lst.sort(key=lambda p: -p[0])
        keep.update(sid for _, sid in lst[:TOP_PROCESSES])
    return keep


def _build_charts(
    runs: list[_RunData], targets: dict[tuple[int, int], _Target], points: int
) -> list[_Chart]:
    multi = len(runs) > 1
    charts: dict[tuple[str, ...], _Chart] = {}
    for rd in runs:
        top = _top_processes(rd.series, rd.arrays)
        for t in rd.targets:
            tg = targets[(rd.run.id, t.id)]
            placed: dict[tuple[str, ...], list[SeriesRecord]] = {}
            for s in rd.series:
                if s.target_id != t.id:
                    continue
                where = classify(s)
                if where is None:
                    continue
                if s.metric.startswith("process.") and s.id not in top:
                    continue
                a = rd.arrays.get(s.id)
                if a is None or not len(a[1]):
                    continue
                ck: tuple[str, ...] = (*where, t.name) if multi else where
                placed.setdefault(ck, []).append(s)
            for ck, ss in placed.items():
                group, key = ck[0], ck[1]
                chart = charts.get(ck)
                if chart is None:
                    unit = ss[0].unit
                    title = chart_title(group, key, unit)
                    if multi:
                        title = f"{title}: {t.name}"
                    chart = charts[ck] = _Chart(group, key, title, unit)
                _add_target_series(chart, tg, ss, rd.arrays, points, multi)
    order = {g: i for i, (g, _) in enumerate(GROUPS)}
    known = {k: i for i, k in enumerate(CHART_TITLES)}
    out = sorted(
        charts.values(),
        key=lambda c: (order[c.group], known.get((c.group, c.key), len(known)), c.title),
    )
    for c in out:
        _style(c)
    return out


def _add_target_series(
    chart: _Chart,
    tg: _Target,
    ss: list[SeriesRecord],
    arrays: dict[int, tuple[Any, Any]],
    points: int,
    multi: bool,
) -> None:
    if tg.key not in chart.targets:
        chart.targets.append(tg.key)
    # series written at the same ticks share their timestamps: one table per time base
    bases: list[tuple[Any, list[tuple[SeriesRecord, Any]]]] = []
    for s in sorted(ss, key=lambda s: (s.metric == "memory.limit_bytes", s.metric, s.id)):
        t, v = time_order(*arrays[s.id])
        for bt, members in bases:
            if len(bt) == len(t) and np.array_equal(bt, t):
                members.append((s, v))
                break
        else:
            bases.append((t, [(s, v)]))
    x_last = 0.0
    for t, members in bases:
        x = (t - tg.t0_ns) / 1e9
        idx = shared_indices(x, [v for _, v in members], points)
        chart.raw += len(t) * len(members)
        chart.shown += len(idx) * len(members)
        xs = np.round(x[idx], 6)
        x_last = max(x_last, float(xs[-1]))
        ys = []
        for s, v in members:
            ys.append(_finite_list(v[idx]))
            label = _label_of(s, chart.group)
            chart.series.append(
                {
                    "label": _join_label(tg.label, label),
                    "target": tg.key,
                    "what": label,
                    "tcolor": tg.color,
                    "limit": s.metric == "memory.limit_bytes",
                }
            )
        chart.tables.append({"x": xs.tolist(), "y": ys})
    cpus = (tg.rec.config.get("resources") or {}).get("cpus")
    if chart.group == "cpu" and chart.key == "%" and cpus:
        limit = float(cpus) * 100.0
        chart.tables.append({"x": [0.0, round(x_last, 6)], "y": [[limit, limit]]})
        chart.series.append(
            {
                "label": _join_label(tg.label, f"limit (cpus {float(cpus):g})"),
                "target": tg.key,
                "what": "limit",
                "tcolor": tg.color,
                "limit": True,
            }
        )


def _join_label(target: str, what: str) -> str:
    return f"{target} · {what}" if what else target


def _style(c: _Chart) -> None:
    """Colours: one per target (the same in every chart) with a dash pattern per metric; a
    chart of one target gets one colour per metric instead. Limits are thin dashed lines."""
    one_target = len({s["target"] for s in c.series}) == 1
    whats: dict[str, int] = {}
    for s in c.series:
        what = s.pop("what")
        tcolor = s.pop("tcolor")
        if s["limit"]:
            s["color"] = "#444444" if one_target else tcolor
            s["dash"], s["width"] = LIMIT_DASH, 1.5
            continue
        i = whats.setdefault(what, len(whats))
        if one_target:
            s["color"], s["dash"] = PALETTE[i % len(PALETTE)], None
        else:
            s["color"], s["dash"] = tcolor, DASHES[i % len(DASHES)]
        s["width"] = 1.25


# -- events ------------------------------------------------------------------------------

_EvRow = tuple[_Target | None, RunRecord, float, str, str, str]
"""An events-list row: target (None: the run's own), run, seconds, class, label, message."""

MARKERS: dict[str, tuple[str, str]] = {
    "target_started": ("start", "start"),
    "exited": ("exit", "exit"),
    "timed_out": ("timeout", "bad"),
    "interrupted": ("interrupted", "bad"),
    "target_error": ("error", "bad"),
    "exited_before_sampling": ("exited before sampling", "warn"),
    "sigkill_after_grace": ("SIGKILL after grace", "bad"),
    "collector_unavailable": ("collector unavailable", "warn"),
    "collector_failed": ("collector failed", "warn"),
    "app_metric_rejected": ("app message rejected", "app"),
    "app_event": ("app event", "app"),
    "app_service_check": ("service check", "app"),
    "crashed": ("crashed", "bad"),
}
LISTED = set(MARKERS) | set(NOTE_KINDS) | {"app_metrics_stats", "pywaggle_stats"}


def _marker(e: EventRecord) -> tuple[str, str] | None:
    if e.kind == "exited" and e.data.get("oom_killed"):
        return ("OOM kill", "bad")
    if e.kind in ("app_metrics_stats", "pywaggle_stats"):
        rej = e.data.get("rejected_total")
        if rej is None:
            rej = sum(int(v) for v in (e.data.get("rejected") or {}).values())
        return ("rejected app messages", "app") if rej else None
    return MARKERS.get(e.kind)


def _oom_markers(rd: _RunData, t: TargetRecord) -> list[tuple[int, str]]:
    """OOM kills inside the container (a child killed, the container going on): where the
    ``memory.oom_kills`` counter rises."""
    out: list[tuple[int, str]] = []
    for s in rd.series:
        if s.target_id == t.id and s.metric == "memory.oom_kills":
            ts, v = time_order(*rd.arrays.get(s.id, (np.array([]), np.array([]))))
            if len(v) > 1:
                d = np.diff(v)
                for i in np.nonzero(d > 0)[0][:MAX_EVENTS]:
                    out.append((int(ts[i + 1]), f"memory.oom_kills +{d[i]:g} (now {v[i + 1]:g})"))
    return out


def _events(
    runs: list[_RunData], targets: dict[tuple[int, int], _Target]
) -> tuple[dict[str, list[list[Any]]], list[_EvRow]]:
    """Markers per target key ``[x, class, label, message]``; rows of the events list."""
    markers: dict[str, list[list[Any]]] = {}
    rows: list[_EvRow] = []
    for rd in runs:
        by_id = {t.id: targets[(rd.run.id, t.id)] for t in rd.targets}
        count: dict[int | None, int] = {}
        for e in rd.events:
            tg = by_id.get(e.target_id) if e.target_id is not None else None
            if e.kind not in LISTED:
                continue
            n = count[e.target_id] = count.get(e.target_id, 0) + 1
            if n > MAX_EVENTS:
                continue
            t0 = tg.t0_ns if tg else rd.run.started_ns
            x = round((e.t_ns - t0) / 1e9, 6)
            mk = _marker(e)
            label, cls = mk if mk else (e.kind.replace("_", " "), "note")
            rows.append((tg, rd.run, x, cls, label, e.message))
            if mk and tg is not None:
                markers.setdefault(tg.key, []).append([x, cls, label, e.message])
        for t in rd.targets:
            tg = by_id[t.id]
            for t_ns, msg in _oom_markers(rd, t):
                x = round((t_ns - tg.t0_ns) / 1e9, 6)
                rows.append((tg, rd.run, x, "bad", "OOM kill", msg))
                markers.setdefault(tg.key, []).append([x, "bad", "OOM kill", msg])
        dropped = {k: v - MAX_EVENTS for k, v in count.items() if v > MAX_EVENTS}
        for tid, n in dropped.items():
            tg = by_id.get(tid) if tid is not None else None
            rows.append((tg, rd.run, math.inf, "note", "not listed", f"{n} more events"))
    rows.sort(key=lambda r: (r[1].id, r[0].rec.idx if r[0] else -1, r[2]))
    return markers, rows


# -- HTML --------------------------------------------------------------------------------


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _fmt_ns(ns: int | None) -> str:
    if not ns:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _dl(rows: Sequence[tuple[str, str | None]]) -> str:
    """A definition list; values already HTML (escaped by the caller)."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows if v not in (None, ""))
    return f"<dl class='meta'>{items}</dl>"


def _gpu_text(gpu: Any) -> str:
    if not isinstance(gpu, dict):
        return esc(gpu) if gpu else "-"
    kind = gpu.get("gpu")
    if kind == "jetson":
        return esc(
            f"Jetson: {gpu.get('jetson_model') or 'model unknown'}, "
            f"L4T {gpu.get('l4t_release') or 'unknown'}"
        )
    if kind == "nvidia":
        parts = [str(gpu.get("model") or "NVIDIA GPU")]
        if gpu.get("gpus") and isinstance(gpu["gpus"], list) and len(gpu["gpus"]) > 1:
            parts.append(f"{len(gpu['gpus'])} GPUs")
        if gpu.get("driver_version"):
            parts.append(f"driver {gpu['driver_version']}")
        if gpu.get("cuda_driver_version"):
            parts.append(f"CUDA {gpu['cuda_driver_version']}")
        return esc(", ".join(parts))
    if kind is None:
        return esc(f"none ({gpu.get('reason') or 'no GPU found'})")
    return esc(json.dumps(gpu, sort_keys=True, default=str))


def _run_meta(rd: _RunData) -> str:
    from edgeprof.farm.meta import meta_fields

    r = rd.run
    h = r.host or {}
    img = h.get("image") if isinstance(h.get("image"), dict) else {}
    dur = (r.ended_ns - r.started_ns) / 1e9 if r.ended_ns else None
    engine = " ".join(str(x) for x in (h.get("engine"), h.get("engine_version")) if x)
    if h.get("cgroup_version"):
        engine += f" (cgroup v{h['cgroup_version']}, {h.get('cgroup_driver') or '?'} driver)"
    cpus = h.get("cpu_count") or h.get("ncpu")
    cpu = ", ".join(
        str(x)
        for x in (
            h.get("cpu_model"),
            f"{cpus} CPUs" if cpus else None,
            h.get("machine"),
        )
        if x
    )
    mem = h.get("memory_total_bytes") or h.get("mem_total")
    rows: list[tuple[str, str | None]] = [
        ("status", f"<span class='status s-{esc(r.status)}'>{esc(r.status)}</span>"),
        ("started", esc(_fmt_ns(r.started_ns))),
        ("ended", esc(_fmt_ns(r.ended_ns))),
        ("duration", esc(fmt_duration(dur))),
        ("sampling interval", esc(f"{r.interval_s:g} s")),
        ("image", esc(r.image)),
        ("image id", esc(img.get("id")) if img else None),
        ("image size", esc(fmt_value(img.get("size"), "B")) if img and img.get("size") else None),
        ("engine", esc(engine) if engine else None),
        ("engine host", esc(h.get("engine_host"))),
        ("host", esc(h.get("hostname"))),
        ("OS", esc(h.get("os") or h.get("platform"))),
        ("kernel", esc(h.get("kernel"))),
        ("CPU", esc(cpu) if cpu else None),
        ("memory", esc(fmt_value(mem, "B")) if mem else None),
        ("GPU", _gpu_text(h.get("gpu")) if "gpu" in h else None),
        ("edgeprof", esc(r.edgeprof_version or "unknown")),
        ("spec file", esc(r.spec_path)),
        *((k, esc(v)) for k, v in meta_fields(r.meta)),  # device, ci, tags
    ]
    parts = [
        f"<section class='run' id='run-{r.id}'><h2>Run {r.id}: {esc(r.spec_name)}</h2>",
        _dl(rows),
    ]
    if r.spec_text:
        parts.append(
            f"<details><summary>spec ({len(r.spec_text.splitlines())} lines)</summary>"
            f"<pre class='spec'>{esc(r.spec_text)}</pre></details>"
        )
    if h:
        parts.append(
            "<details><summary>all host facts</summary><pre class='host'>"
            f"{esc(json.dumps(h, indent=2, sort_keys=True, default=str))}</pre></details>"
        )
    parts.append("</section>")
    return "".join(parts)


def _status_cell(t: TargetSummary) -> str:
    s = t.status
    if t.exit_code is not None:
        s += f" (exit {t.exit_code})"
    if t.oom_killed and "oom" not in t.status:
        s += ", OOM killed"
    if t.timed_out and t.status != "timed_out":
        s += ", timed out"
    return f"<span class='status s-{esc(t.status)}'>{esc(s)}</span>"


def _limit_cell(t: TargetSummary, key: str, m: GaugeStats) -> str:
    cpus = (t.config.get("resources") or {}).get("cpus")
    limit: float | None = None
    if key == "cpu.percent" and cpus:
        limit = float(cpus) * 100.0
    lim_m = t.gauge("memory.limit_bytes")
    if key == "memory.working_set_bytes" and lim_m is not None and lim_m.max:
        limit = lim_m.max
    if limit is None or m.max is None:
        return ""
    return esc(f"{fmt_value(limit, m.unit)} (peak {m.max / limit * 100:.0f} %)")


def _summary_tables(rd: _RunData, targets: dict[tuple[int, int], _Target]) -> str:
    """The apps' table and each app's statistics (services have a section of their own)."""
    s = rd.summary
    by_name = {t.name: t for t in rd.targets}
    head = [
        "<table class='targets'><thead><tr><th>target</th><th>args</th><th>status</th>"
        "<th>duration</th><th>stored samples</th></tr></thead><tbody>"
    ]
    for t in s.apps:
        tg = targets[(rd.run.id, by_name[t.name].id)]
        head.append(
            f"<tr><td><span class='swatch' style='background:{tg.color}'></span>"
            f"{esc(t.name)}</td><td><code>{esc(' '.join(t.args))}</code></td>"
            f"<td>{_status_cell(t)}</td><td class='n'>{esc(fmt_duration(t.duration_s))}</td>"
            f"<td class='n'>{t.samples:,}</td></tr>"
        )
        if t.error:
            head.append(f"<tr class='err'><td></td><td colspan='4'>{esc(t.error)}</td></tr>")
    head.append("</tbody></table>")
    out = ["".join(head)]
    for t in s.apps:
        out.append(_stats_table(t, f"{esc(t.name)} <code>{esc(' '.join(t.args))}</code>"))
    return "".join(out)


STAT_COLS = ("mean", "p50", "p95", "p99", "max")


def _stats_table(t: TargetSummary, title_html: str) -> str:
    """A target's main metrics and app metrics (empty when it has none)."""
    cols = STAT_COLS
    rows = []
    for key, label in MAIN_METRICS:
        m = t.gauge(key)
        if m is not None:
            rows.append(_stat_row(label, m, _limit_cell(t, key, m), cols))
    for key, st in t.metrics.items():
        if not key.startswith("app."):
            continue
        if isinstance(st, GaugeStats):
            rows.append(_stat_row(key, st, "", cols))
        elif isinstance(st, CounterStats):
            rows.append(
                f"<tr><td>{esc(key)}</td><td colspan='{len(cols)}'>total "
                f"{esc(fmt_value(st.total, st.unit))}</td><td></td>"
                f"<td class='n'>{st.count:,}</td></tr>"
            )
    if not rows:
        return ""
    th = "".join(f"<th>{c}</th>" for c in cols)
    return (
        f"<h3>{title_html}</h3>"
        f"<table class='stats'><thead><tr><th>metric</th>{th}<th>limit</th>"
        f"<th>samples</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _services(rd: _RunData, targets: dict[tuple[int, int], _Target], multi: bool) -> str:
    """The services started for the apps: what, for whom, when ready, how it ended, and
    their statistics when profiled (empty when the run started none)."""
    services = rd.summary.services
    if not services:
        return ""
    by_name = {t.name: t for t in rd.targets}
    rows = []
    for t in services:
        c = t.config
        ready = c.get("ready_s")
        tg = targets[(rd.run.id, by_name[t.name].id)]
        rows.append(
            f"<tr><td><span class='swatch' style='background:{tg.color}'></span>"
            f"{esc(c.get('service') or t.name)}</td><td>{esc(c.get('scope') or '-')}</td>"
            f"<td>{esc(c.get('for') or '(every target)')}</td>"
            f"<td class='n'>"
            f"{esc(fmt_value(float(ready), 's') if isinstance(ready, int | float) else '-')}</td>"
            f"<td>{_status_cell(t)}</td>"
            f"<td class='n'>{f'{t.samples:,}' if t.metrics else 'not profiled'}</td></tr>"
        )
        if t.error:
            rows.append(f"<tr class='err'><td></td><td colspan='5'>{esc(t.error)}</td></tr>")
    out = [
        (f"<h3>Run {rd.run.id}</h3>" if multi else "")
        + "<table class='services'><thead><tr><th>service</th><th>scope</th><th>for</th>"
        "<th>ready after</th><th>status</th><th>stored samples</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    ]
    for t in services:
        out.append(_stats_table(t, f"service {esc(t.name)}"))
    return "".join(out)


SCENARIO_STATS = {"mean": "mean", "max": "peak", "p50": "p50", "p95": "p95", "p99": "p99"}


def _scenario_group(rd: _RunData, i: int) -> str:
    return f"scn-{rd.run.id}-{i}"


def _scenarios(rd: _RunData, multi: bool) -> str:
    """Per scenario: each app alone vs together with the slowdowns, and a box for the
    chart of the members' CPU together (empty when the run ran no scenario)."""
    from edgeprof.analyze.scenarios import RATIO_NOTE, comparison_rows

    if not rd.summary.scenarios:
        return ""
    labels = dict(MAIN_METRICS)
    out = []
    for i, sc in enumerate(rd.summary.scenarios):
        rows = []
        notes = []
        for m in sc.targets:
            got = comparison_rows(m)
            alone_from = ", ".join(m.alone_targets) or "none"
            for j, r in enumerate(got):
                base, _, rest = r.key.partition("{")
                label = labels.get(base, base) + (f" {{{rest}" if rest else "")
                sd = r.ratio_text()
                worse = r.slowdown is not None and r.slowdown > 1 and not r.resource
                cls = " class='worse'" if worse else ""
                rows.append(
                    "<tr>"
                    + (
                        f"<td rowspan='{len(got)}'>{esc(m.name)}<br><small>alone: "
                        f"{esc(alone_from)}</small></td>"
                        if j == 0
                        else ""
                    )
                    + f"<td>{esc(label)} {esc(SCENARIO_STATS.get(r.stat, r.stat))}</td>"
                    f"<td class='n'>"
                    f"{esc('no alone run' if m.alone is None else fmt_value(r.alone, r.unit))}"
                    f"</td><td class='n'>{esc(fmt_value(r.together, r.unit))}</td>"
                    f"<td class='n'><span{cls}>{esc(sd)}</span></td></tr>"
                )
            if not got:
                rows.append(
                    f"<tr><td>{esc(m.name)}</td><td colspan='4'>no compared metric stored</td></tr>"
                )
            if m.note:
                notes.append(f"<li>{esc(m.name)}: {esc(m.note)}</li>")
        out.append(
            f"<h3>{esc(f'Run {rd.run.id}: ' if multi else '')}scenario {esc(sc.name)}: "
            f"{esc(', '.join(m.name for m in sc.targets))} together</h3>"
            "<table class='scenario'><thead><tr><th>app</th><th>metric</th><th>alone</th>"
            "<th>together</th><th>slowdown</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
            + (f"<ul class='notes'>{''.join(notes)}</ul>" if notes else "")
            + f"<div class='charts' data-group='{esc(_scenario_group(rd, i))}'></div>"
        )
    return (
        "<p>Each app alone (its own run in this run, repeats pooled) and together with "
        "the others. Slowdown: together ÷ alone, alone ÷ together for throughput "
        "(frames a second, rates), so above 1 is worse; " + esc(RATIO_NOTE) + ".</p>" + "".join(out)
    )


def _scenario_charts(
    runs: list[_RunData], targets: dict[tuple[int, int], _Target], points: int
) -> list[_Chart]:
    """Per scenario, the members' CPU while together, overlaid (time since each start)."""
    out: list[_Chart] = []
    for rd in runs:
        by_name = {t.name: t for t in rd.targets}
        for i, sc in enumerate(rd.summary.scenarios):
            chart = _Chart(
                _scenario_group(rd, i),
                "%",
                f"scenario {sc.name}: CPU of each app together (100 % = one core)",
                "%",
            )
            for m in sc.targets:
                rec = by_name.get(m.name)
                if rec is None:
                    continue
                ss = [
                    s
                    for s in rd.series
                    if s.target_id == rec.id
                    and s.metric == "cpu.percent"
                    and s.id in rd.arrays
                    and len(rd.arrays[s.id][1])
                ]
                if ss:
                    _add_target_series(
                        chart, targets[(rd.run.id, rec.id)], ss, rd.arrays, points, True
                    )
            if chart.series:
                _style(chart)
                out.append(chart)
    return out


def _stat_row(label: str, m: GaugeStats, limit: str, cols: Sequence[str]) -> str:
    cells = "".join(f"<td class='n'>{esc(fmt_value(getattr(m, c), m.unit))}</td>" for c in cols)
    return f"<tr><td>{esc(label)}</td>{cells}<td>{limit}</td><td class='n'>{m.count:,}</td></tr>"


def _budgets(rd: _RunData, multi: bool) -> str:
    """The verdicts of the budgets stored with the run (empty when it has none)."""
    from edgeprof.analyze.budgets import evaluate_run

    try:
        results = evaluate_run(rd.summary)
    except Exception as e:  # noqa: BLE001 - the rest of the page stands; say why
        return (f"<h3>Run {rd.run.id}</h3>" if multi else "") + (
            f"<p class='status s-error'>the budgets could not be evaluated: {esc(e)}</p>"
        )
    if not results:
        return ""
    bad = sum(not r.ok for r in results)
    head = (f"<h3>Run {rd.run.id}</h3>" if multi else "") + (
        f"<p>{len(results) - bad} of {len(results)} passed"
        + (f", <span class='status s-error'>{bad} failed</span>" if bad else "")
        + " (<code>edgeprof check</code> gives the same verdicts)</p>"
    )
    rows = "".join(
        f"<tr><td>{esc(r.target)}</td><td><code>{esc(r.name)}</code></td>"
        f"<td class='n'>{esc(r.shown())}</td>"
        f"<td class='status {'s-exited' if r.ok else 's-error'}'>"
        f"{esc('pass' if r.ok else r.verdict)}</td>"
        f"<td>{esc('' if r.ok else r.message)}</td></tr>"
        for r in results
    )
    return (
        head + "<table class='budgets'><thead><tr><th>target</th><th>budget</th><th>measured</th>"
        "<th>verdict</th><th>why</th></tr></thead><tbody>" + rows + "</tbody></table>"
    )


def _events_table(rows: list[_EvRow], multi: bool) -> str:
    if not rows:
        return ""
    out = [
        "<table class='events'><thead><tr>"
        + ("<th>run</th>" if multi else "")
        + "<th>target</th><th>time</th><th>what</th><th>message</th></tr></thead><tbody>"
    ]
    for tg, run, x, cls, label, msg in rows:
        when = "" if math.isinf(x) else f"{x:.3f} s"
        out.append(
            "<tr>"
            + (f"<td class='n'>{run.id}</td>" if multi else "")
            + f"<td>{esc(tg.rec.name if tg else '(run)')}</td><td class='n'>{esc(when)}</td>"
            f"<td><span class='ev ev-{esc(cls)}'>{esc(label)}</span></td>"
            f"<td>{esc(msg)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _tail(text: str, n: int) -> tuple[str, int]:
    lines = text.splitlines()
    return "\n".join(lines[-n:]), len(lines)


def _logs(runs: list[_RunData], multi: bool) -> str:
    parts = []
    for rd in runs:
        for t in rd.targets:
            streams = rd.logs.get(t.id) or {}
            for stream, text in sorted(streams.items()):
                if not text:
                    continue
                tail, total = _tail(text, LOG_LINES)
                shown = min(total, LOG_LINES)
                who = f"run {rd.run.id} · {t.name}" if multi else t.name
                more = f"last {shown} of {total:,} lines" if total > shown else f"{total} lines"
                parts.append(
                    f"<details class='log'><summary>{esc(who)}: {esc(stream)} ({more})</summary>"
                    f"<pre>{esc(tail)}</pre></details>"
                )
    return "".join(parts)


@dataclass(frozen=True)
class Section:
    """A section of the page: ``id`` (anchor), title, and its HTML body (escaped already)."""

    id: str
    title: str
    body: str


EXTRA_SECTIONS: list[Callable[[Store, list[RunRecord]], Section | None]] = []
"""Sections later features add (code-level profiles): each function
returns its section, or None when the runs have no such data (then nothing is shown)."""


# -- assets and assembly -----------------------------------------------------------------


def uplot_assets() -> tuple[str, str]:
    """uPlot's JavaScript and CSS from the installed ``uplot-python`` wheel, read as files:
    its Python module is not imported (it imports IPython)."""
    spec = importlib.util.find_spec("uplot")
    locs = list(spec.submodule_search_locations or []) if spec else []
    for base in locs:
        js, css = Path(base, "static", "uPlot.iife.js"), Path(base, "static", "uPlot.min.css")
        if js.is_file() and css.is_file():
            return js.read_text(encoding="utf-8"), css.read_text(encoding="utf-8")
    raise UserError(INSTALL_HINT)


def check_extra() -> None:
    """One sentence naming the extra when uplot-python or tsdownsample is missing."""
    uplot_assets()
    if importlib.util.find_spec("tsdownsample") is None:
        raise UserError(INSTALL_HINT)


def _template(name: str) -> str:
    return resources.files("edgeprof.report").joinpath("templates", name).read_text("utf-8")


def script_json(obj: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>``, ``&`` and every non-ASCII
    character (U+2028, U+2029 included) as ``\\uXXXX`` escapes."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _script(text: str) -> str:
    if "</script" in text.lower():  # cannot happen for our files; never emit a broken page
        text = re.sub(r"(?i)</script", r"<\\/script", text)
    return text


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _fill(template: str, values: dict[str, str]) -> str:
    """One pass over ``{{NAME}}`` markers (text put in is never scanned again)."""
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], template)


def build_report(
    store: Store,
    run_refs: Sequence[str | int],
    target: str | None = None,
    points: int = POINTS,
) -> tuple[str, dict[str, Any]]:
    """The page (HTML text) and figures about it (runs, charts, raw samples, shown points)."""
    check_extra()
    js_lib, css_lib = uplot_assets()
    runs: list[_RunData] = []
    seen: set[int] = set()
    for ref in run_refs:
        rd = _read(store, ref, target)
        if rd.run.id in seen:
            continue
        seen.add(rd.run.id)
        runs.append(rd)
    multi = len(runs) > 1
    targets: dict[tuple[int, int], _Target] = {}
    for ri, rd in enumerate(runs):
        for t in rd.targets:
            n = len(targets)
            label = f"run {rd.run.id} · {t.name}" if multi else t.name
            first = [
                int(rd.arrays[s.id][0].min())
                for s in rd.series
                if s.target_id == t.id and s.id in rd.arrays and len(rd.arrays[s.id][0])
            ]
            t0 = t.started_ns or (min(first) if first else rd.run.started_ns)
            color = PALETTE[(ri if multi else n) % len(PALETTE)]
            targets[(rd.run.id, t.id)] = _Target(f"{rd.run.id}/{t.id}", rd.run, t, label, color, t0)
    charts = _build_charts(runs, targets, points)
    scenario_charts = _scenario_charts(runs, targets, points)
    markers, ev_rows = _events(runs, targets)
    data = {
        "version": __version__,
        "charts": [
            {
                "g": c.group,
                "title": c.title,
                "unit": c.unit,
                "series": [
                    {k: s[k] for k in ("label", "color", "dash", "width", "target", "limit")}
                    for s in c.series
                ],
                "tables": c.tables,
                "targets": c.targets,
                "raw": c.raw,
                "shown": c.shown,
            }
            for c in [*charts, *scenario_charts]
        ],
        "events": markers,
        "targets": {tg.key: tg.label for tg in targets.values()},
    }
    groups_present = [g for g, _ in GROUPS if any(c.group == g for c in charts)]
    sections: list[Section] = []
    sections.append(Section("runs", "Runs" if multi else "Run", "".join(map(_run_meta, runs))))
    sections.append(
        Section(
            "summary",
            "Summary",
            "".join(
                (f"<h3>Run {rd.run.id}</h3>" if multi else "") + _summary_tables(rd, targets)
                for rd in runs
            ),
        )
    )
    services_html = "".join(_services(rd, targets, multi) for rd in runs)
    if services_html:
        sections.append(Section("services", "Services", services_html))
    scenarios_html = "".join(_scenarios(rd, multi) for rd in runs)
    if scenarios_html:
        sections.append(Section("scenarios", "Scenarios: apps together", scenarios_html))
    budgets_html = "".join(_budgets(rd, multi) for rd in runs)
    if budgets_html:
        sections.append(Section("budgets", "Budgets", budgets_html))
    for g in groups_present:
        sections.append(
            Section(
                f"g-{g}",
                GROUP_TITLES[g],
                f"<div class='charts' data-group='{esc(g)}'></div>",
            )
        )
    from edgeprof.codeprof.flame import flame_js, report_section

    code_html = report_section(store, [(rd.run, rd.targets) for rd in runs], multi)
    if code_html:
        sections.append(Section("code", "Code: top functions and flame graphs", code_html))
    ev_html = _events_table(ev_rows, multi)
    if ev_html:
        sections.append(Section("events", "Events", ev_html))
    logs_html = _logs(runs, multi)
    if logs_html:
        sections.append(Section("logs", f"Log tail (last {LOG_LINES} lines)", logs_html))
    for fn in EXTRA_SECTIONS:
        extra = fn(store, [rd.run for rd in runs])
        if extra is not None and extra.body:
            sections.append(extra)
    nav = "".join(f"<a href='#{esc(s.id)}'>{esc(s.title)}</a>" for s in sections)
    body = "".join(
        f"<section id='{esc(s.id)}' class='{'group' if s.id.startswith('g-') else 'part'}'"
        + (f" data-group='{esc(s.id[2:])}'" if s.id.startswith("g-") else "")
        + f"><h2>{esc(s.title)}</h2>{s.body}</section>"
        for s in sections
    )
    raw = sum(c.raw for c in charts)
    shown = sum(c.shown for c in charts)
    charts = [*charts, *scenario_charts]
    title = ", ".join(f"run {rd.run.id} ({rd.run.spec_name})" for rd in runs)
    app_js = _script(_template("report.js"))
    js_lib = _script(js_lib)
    flame = _script(flame_js()) if code_html else ""
    csp = (
        "default-src 'none'; "
        f"script-src {_sha256(js_lib)} {_sha256(app_js)}"
        + (f" {_sha256(flame)}" if flame else "")
        + "; "
        "style-src 'unsafe-inline'; img-src data:; font-src 'none'; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    generated = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    page = _fill(
        _template("report.html"),
        {
            "CSP": esc(csp),
            "TITLE": esc(f"edgeprof report: {title}"),
            "CSS": css_lib + "\n" + _template("report.css"),
            "HEADING": esc(f"edgeprof report: {title}"),
            "NAV": nav,
            "BODY": body,
            "FOOTER": esc(
                f"Generated by edgeprof {__version__} on {generated}. Charts show at most "
                f"{points:,} points per target and chart, chosen by MinMaxLTTB (peaks kept): "
                f"{shown:,} of {raw:,} samples; every sample is in the database. "
                "Time axis: seconds since each target's start."
            ),
            "DATA": script_json(data),
            "UPLOT_JS": js_lib,
            "APP_JS": app_js,
            "FLAME_JS": f"<script>{flame}</script>" if flame else "",
        },
    )
    info = {
        "runs": [rd.run.id for rd in runs],
        "charts": len(charts),
        "groups": groups_present,
        "charts_per_group": {g: sum(c.group == g for c in charts) for g in groups_present},
        "raw_samples": raw,
        "shown_points": shown,
    }
    return page, info


def write_report(
    store: Store,
    run_refs: Sequence[str | int],
    path: str,
    target: str | None = None,
    points: int = POINTS,
) -> ReportResult:
    t0 = time.perf_counter()
    page, info = build_report(store, run_refs, target, points)
    data = page.encode("utf-8")
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}; pick another -o path") from None
    return ReportResult(
        path=path,
        size_bytes=len(data),
        runs=info["runs"],
        charts=info["charts"],
        raw_samples=info["raw_samples"],
        shown_points=info["shown_points"],
        seconds=time.perf_counter() - t0,
    )


__all__ = [
    "EXTRA_SECTIONS",
    "GROUPS",
    "POINTS",
    "ReportResult",
    "Section",
    "build_report",
    "check_extra",
    "classify",
    "script_json",
    "series_key",
    "uplot_assets",
    "write_report",
]
