"""Terminal tables (rich): stored runs, and a run's per-target summary with its notes.

Every row carries its unit; memory and CPU are shown against their limits; notes the user
must see (a collector that could not work, coarse resolution, an app killed after its
grace) are printed once, with the targets they concern.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgeprof.analyze.model import CounterStats, GaugeStats, RunSummary, TargetSummary
from edgeprof.owner import owner_gone
from edgeprof.store.base import RunRow

# Main rows per target, in order: (metric, label). Units come from the stored series.
MAIN_METRICS = [
    ("cpu.percent", "CPU"),
    ("cpu.throttled_seconds_per_second", "CPU throttled (share of time)"),
    ("memory.working_set_bytes", "memory working set"),
    ("memory.rss_bytes", "memory RSS (anonymous)"),
    ("memory.cache_bytes", "memory page cache"),
    ("io.read_bytes_per_second", "disk read"),
    ("io.write_bytes_per_second", "disk write"),
    ("net.rx_bytes_per_second", "network received"),
    ("net.tx_bytes_per_second", "network sent"),
    ("pids.count", "processes + threads"),
    ("process.count", "processes"),
    ("gpu.utilization_percent", "GPU"),
    ("gpu.memory_used_bytes", "GPU memory"),
    ("gpu.container.memory_used_bytes", "GPU memory (container)"),
    ("host.cpu.percent", "host CPU"),
    ("host.memory.used_bytes", "host memory used"),
]

NOTE_KINDS = (
    "collector_unavailable",
    "low_resolution",
    "rate_windows",
    "note",
    "sigkill_after_grace",
    "crashed",
    "samples_dropped",
    "samples_rejected",
)
MAX_PROCESS_ROWS = 5


def make_console(stderr: bool = False) -> Console:
    """A console that does not wrap at 80 columns when writing to a log or a pipe."""
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=160, soft_wrap=True)


def fmt_bytes(v: float | None) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"


def _num(v: float) -> str:
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.3g}"


def fmt_value(v: float | None, unit: str | None) -> str:
    """A value with its unit: ``49.8 %``, ``204.1 MiB``, ``1.2 MiB/s``, ``12.5 ms``."""
    if v is None:
        return "-"
    if unit == "B":
        return fmt_bytes(v)
    if unit == "B/s":
        return fmt_bytes(v) + "/s"
    if unit == "%":
        return f"{v:.1f} %"
    if unit == "s/s":
        return f"{v * 100:.1f} %"
    if unit == "ms":
        return f"{v:.3g} ms" if abs(v) < 1000 else f"{v:,.0f} ms"
    if unit == "s":
        return f"{v:.3g} s"
    if unit in ("1/s",):
        return f"{_num(v)} /s"
    if unit in (None, "", "1"):
        return _num(v)
    return f"{_num(v)} {unit}"


def fmt_time(ns: int | None) -> str:
    if not ns:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def run_status(r: RunRow) -> str:
    """The run's status as a person should read it (failures and dead owners shown)."""
    s = r.status
    if s == "running" and owner_gone(r.owner):
        return "running?  (profiler gone: edgeprof cleanup)"
    if r.failed_targets:
        s += f", {r.failed_targets} failed"
    return s


def short_model(model: str) -> str:
    """A device model as a column shows it: ``NVIDIA Jetson AGX Orin Developer Kit`` →
    ``Jetson AGX Orin`` (vendor prefix, kit suffix and parentheses dropped)."""
    m = re.sub(r"\([^)]*\)", " ", model)
    m = re.sub(r"^\s*NVIDIA\s+(?=Jetson)", "", m, flags=re.I)
    m = re.sub(r"\s+(Engineering Reference\s+)?Developer Kit\b", " ", m, flags=re.I)
    return " ".join(m.split()) or model.strip()


def _device(r: RunRow) -> str:
    d = r.meta.get("device") if isinstance(r.meta, dict) else None
    model = d.get("model") if isinstance(d, dict) else None
    if not model:
        return ""
    return short_model(str(model))


def _tags(r: RunRow) -> str:
    tags = r.meta.get("tags") if isinstance(r.meta, dict) else None
    if not isinstance(tags, dict):
        return ""
    return " ".join(f"{k}={v}" for k, v in tags.items())


COMPACT_BELOW = 120
"""Terminals narrower than this get the compact runs table (see :func:`runs_table`)."""


def short_image(image: str) -> str:
    """``registry.example.com/team/app:1.2`` → ``app:1.2`` (a digest is cut to 12 hex)."""
    name = image.rsplit("/", 1)[-1]
    head, at, digest = name.partition("@")
    if at:
        algo, _, hexes = digest.partition(":")
        return f"{head}@{algo}:{hexes[:12]}" if hexes else name
    return name


def runs_table(runs: Sequence[RunRow], width: int | None = None) -> Table:
    """The stored runs; a ``device`` column (its model, shortened) when a run has one and
    a ``tags`` column when a run has tags.

    On a terminal narrower than :data:`COMPACT_BELOW` (``width``) the table is compact:
    no frame, no duration and target columns, start times without year and seconds,
    images without their registry, and columns sized to fit (long values cut with …)."""
    devices = [_device(r) for r in runs]
    tags = [_tags(r) for r in runs]
    if width is not None and width < COMPACT_BELOW:
        return _compact_runs_table(runs, devices, tags, width)
    t = Table(title="Stored runs")
    for col in ("id", "spec", "image", "started", "duration", "targets", "status"):
        t.add_column(col, justify="right" if col in ("id", "targets", "duration") else "left")
    if any(devices):
        t.add_column("device", max_width=24, no_wrap=True, overflow="ellipsis")
    if any(tags):
        t.add_column("tags", max_width=30, overflow="fold")
    for i, r in enumerate(runs):
        extra = ([escape(devices[i])] if any(devices) else []) + (
            [escape(tags[i])] if any(tags) else []
        )
        t.add_row(
            str(r.id),
            escape(r.spec_name),
            escape(r.image),
            fmt_time(r.started_ns),
            fmt_duration(r.duration_s),
            str(r.targets) + (f" +{r.services} svc" if r.services else ""),
            run_status(r),
            *extra,
        )
    return t


# compact table: column → (cap on its width, least width it is cut to)
_COMPACT = {
    "id": (8, 2),
    "spec": (24, 8),
    "image": (28, 12),
    "started": (11, 11),
    "status": (14, 11),  # "interrupted" unbroken
    "device": (18, 12),
    "tags": (20, 10),
}


def _compact_runs_table(
    runs: Sequence[RunRow], devices: list[str], tags: list[str], width: int
) -> Table:
    cells: dict[str, list[str]] = {
        "id": [str(r.id) for r in runs],
        "spec": [r.spec_name for r in runs],
        "image": [short_image(r.image) for r in runs],
        "started": [
            dt.datetime.fromtimestamp(r.started_ns / 1e9).strftime("%m-%d %H:%M")
            if r.started_ns
            else "-"
            for r in runs
        ],
        "status": [run_status(r) for r in runs],
    }
    if any(devices):
        cells["device"] = devices
    if any(tags):
        cells["tags"] = tags
    widths = {
        c: min(_COMPACT[c][0], max(len(c), *(len(v) for v in vals), 1)) for c, vals in cells.items()
    }
    over = sum(widths.values()) - (width - 2 * (len(cells) - 1) - 1)
    # tags first (they wrap onto more lines, nothing of them is cut), then a character at a
    # time from whichever of spec, image, device and status is furthest above its least
    if over > 0 and "tags" in widths:
        cut = min(over, widths["tags"] - max(_COMPACT["tags"][1], len("tags")))
        widths["tags"] -= max(0, cut)
        over -= max(0, cut)
    while over > 0:
        slack = {
            c: widths[c] - _COMPACT[c][1]
            for c in ("spec", "image", "device", "status")
            if c in widths
        }
        widest = max(slack, key=lambda k: slack[k])
        if slack[widest] <= 0:
            break
        widths[widest] -= 1
        over -= 1
    t = Table(
        title="Stored runs",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    for c in cells:
        fold = c in ("tags", "status")
        t.add_column(
            c,
            width=widths[c],
            justify="right" if c == "id" else "left",
            no_wrap=not fold,
            overflow="fold" if fold else "ellipsis",
        )
    for i in range(len(runs)):
        t.add_row(*(escape(vals[i]) for vals in cells.values()))
    return t


def _status(t: TargetSummary) -> str:
    s = t.status
    if t.exit_code is not None:
        s += f" ({t.exit_code})"
    if t.oom_killed and "oom" not in t.status:
        s += " OOM"
    return s


def _limits(t: TargetSummary) -> dict[str, tuple[float, str]]:
    """metric → (limit, how it is set) for the rows that have one."""
    out: dict[str, tuple[float, str]] = {}
    cpus = (t.config.get("resources") or {}).get("cpus")
    if cpus:
        out["cpu.percent"] = (float(cpus) * 100.0, f"cpus {cpus:g}")
    mem = t.gauge("memory.limit_bytes")
    if mem is not None and mem.max:
        out["memory.working_set_bytes"] = (mem.max, "limit")
    return out


def _row(label: str, m: GaugeStats, limits: dict[str, tuple[float, str]], key: str) -> list[str]:
    cells = [
        label,
        *(fmt_value(getattr(m, k), m.unit) for k in ("mean", "p50", "p95", "p99", "max")),
    ]
    lim = limits.get(key)
    if lim is not None and m.max is not None:
        value, how = lim
        cells.append(f"{fmt_value(value, m.unit)} ({how}; peak {m.max / value * 100:.0f} %)")
    else:
        cells.append("")
    cells.append(str(m.count))
    return cells


def _process_rows(t: TargetSummary) -> list[tuple[str, GaugeStats]]:
    rss = [
        (k, m)
        for k, m in t.metrics.items()
        if k.startswith("process.memory.rss_bytes{") and isinstance(m, GaugeStats)
    ]
    rss.sort(key=lambda km: -(km[1].max or 0))
    out = []
    for k, m in rss[:MAX_PROCESS_ROWS]:
        inner = k[k.index("{") + 1 : -1]
        labels = dict(kv.split("=", 1) for kv in inner.split(",") if "=" in kv)
        out.append((f"RSS of {labels.get('process', '?')} [pid {labels.get('pid', '?')}]", m))
    return out


def target_table(t: TargetSummary) -> Table | None:
    tab = Table(title=escape(f"{t.name}: {' '.join(t.args) or '(no args)'}"), title_justify="left")
    for col in ("metric", "mean", "p50", "p95", "p99", "max", "limit", "samples"):
        tab.add_column(col, justify="left" if col in ("metric", "limit") else "right")
    limits = _limits(t)
    shown = 0
    for key, label in MAIN_METRICS:
        m = t.gauge(key)
        if m is not None:
            tab.add_row(*_row(label, m, limits, key))
            shown += 1
    for label, m in _process_rows(t):
        tab.add_row(*_row(label, m, limits, ""))
        shown += 1
    for key, stats in t.metrics.items():
        if not key.startswith("app."):
            continue
        if isinstance(stats, GaugeStats):
            tab.add_row(*_row(escape(key), stats, limits, key))
        else:
            total = fmt_value(stats.total, stats.unit)
            tab.add_row(escape(key), "", "", "", "", "", f"total {total}", str(stats.count))
        shown += 1
    return tab if shown else None


def _counts(t: TargetSummary) -> str:
    parts = []
    oom = t.counter("memory.oom_kills")
    if oom is not None and (oom.last or oom.total):
        parts.append(f"OOM kills {oom.last:.0f}")
    thr = t.counter("cpu.throttled_seconds")
    if thr is not None and thr.total > 0:
        parts.append(f"throttled {thr.total:.2f} s")
    return ", ".join(parts)


def summary_tables(summary: RunSummary) -> list[Table]:
    run = summary.run
    tables: list[Table] = []
    head = Table(
        title=escape(f"Run {run.id}: {run.spec_name} ({run.image}) — {run.status}"),
        caption="stored samples: every sample of every series of the target (all metrics)",
    )
    for col in ("target", "args", "status (exit)", "duration", "stored samples", "limits hit"):
        head.add_column(col)
    for t in summary.targets:
        head.add_row(
            escape(t.name),
            escape(" ".join(t.args)),
            _status(t),
            fmt_duration(t.duration_s),
            f"{t.samples:,}",
            _counts(t),
        )
    tables.append(head)
    for t in summary.targets:
        tab = target_table(t)
        if tab is not None:
            tables.append(tab)
    return tables


def notes(summary: RunSummary) -> list[str]:
    """Every note once (the targets it concerns named), in the order they happened."""
    seen: dict[str, list[str]] = {}
    for target, e in summary.all_events():
        if e.kind in NOTE_KINDS:
            seen.setdefault(e.message, [])
            if target is not None and target not in seen[e.message]:
                seen[e.message].append(target)
    n_targets = len(summary.targets)
    out = []
    for message, targets in seen.items():
        who = ""
        if targets and n_targets > 1:
            who = " (all targets)" if len(targets) == n_targets else f" ({', '.join(targets)})"
        out.append(message + who)
    return out


def _app_lines(t: TargetSummary) -> list[str]:
    out = []
    for e in t.events:
        if e.kind in ("app_metrics_stats", "pywaggle_stats") and _has_traffic(e.data):
            rejected = {k: v for k, v in (e.data.get("rejected") or {}).items() if v}
            more = (
                f" (rejected: {', '.join(f'{k} {v}' for k, v in rejected.items())})"
                if rejected
                else ""
            )
            out.append(f"{t.name}: {e.message}{more}")
    return out


def _has_traffic(stats: dict[str, Any]) -> bool:
    return bool(stats.get("received") or stats.get("lines") or stats.get("client_reports"))


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    from edgeprof.farm.meta import meta_lines

    c = console or make_console()
    for i, tab in enumerate(summary_tables(summary)):
        c.print(tab)
        if i == 0:  # the run's table: then where and from which build it ran
            for line in meta_lines(summary.run.meta):
                c.print(escape(line), soft_wrap=True)
    for t in summary.targets:
        if t.error:
            c.print(f"[red]{escape(t.name)}: {escape(t.error)}[/red]")
    for t in summary.targets:
        for line in _app_lines(t):
            c.print(escape(line))
    for n in notes(summary):
        c.print(f"[yellow]note:[/yellow] {escape(n)}")


__all__ = [
    "CounterStats",
    "fmt_bytes",
    "fmt_value",
    "make_console",
    "print_summary",
    "runs_table",
    "summary_tables",
]
