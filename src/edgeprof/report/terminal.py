"""Terminal tables (rich): stored runs, and a run's per-target summary."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table

# The main metrics shown per target, in order, with how to format them.
MAIN_METRICS = [
    ("cpu.percent", "CPU %", "pct"),
    ("memory.working_set_bytes", "Mem (working set)", "bytes"),
    ("io.read_bytes_per_second", "I/O read/s", "bytes"),
    ("io.write_bytes_per_second", "I/O write/s", "bytes"),
    ("net.rx_bytes_per_second", "Net rx/s", "bytes"),
    ("net.tx_bytes_per_second", "Net tx/s", "bytes"),
    ("pids.count", "PIDs", "num"),
    ("gpu.utilization_percent", "GPU %", "pct"),
    ("gpu.memory_used_bytes", "GPU mem", "bytes"),
    ("host.cpu.percent", "Host CPU %", "pct"),
]


def make_console(stderr: bool = False) -> Console:
    """A console that does not wrap at 80 columns when writing to a log or a pipe."""
    import sys

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=140, soft_wrap=True)


def fmt_bytes(v: float | None) -> str:
    if v is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(v) < 1024 or unit == "TiB":
            return f"{v:.0f} {unit}" if unit == "B" else f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"


def fmt_value(v: float | None, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "bytes":
        return fmt_bytes(v)
    if kind == "pct":
        return f"{v:.1f}"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3g}"


def fmt_time(ns: int | None) -> str:
    if not ns:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def runs_table(runs: list[dict[str, Any]]) -> Table:
    t = Table(title="Stored runs")
    for col in ("id", "spec", "image", "started", "targets", "status"):
        t.add_column(col, justify="right" if col in ("id", "targets") else "left")
    for r in runs:
        t.add_row(
            str(r["id"]),
            r["spec_name"],
            r["image"],
            fmt_time(r["started_ns"]),
            str(r["targets"]),
            r["status"],
        )
    return t


def _status(t: dict[str, Any]) -> str:
    s = t["status"]
    if t.get("exit_code") is not None:
        s += f" ({t['exit_code']})"
    return s


def summary_tables(summary: dict[str, Any]) -> list[Table]:
    run = summary["run"]
    tables: list[Table] = []
    head = Table(title=f"Run {run['id']}: {run['spec_name']} ({run['image']}) — {run['status']}")
    for col in ("target", "args", "status (exit)", "duration", "samples"):
        head.add_column(col)
    for t in summary["targets"]:
        n = sum(int(m.get("count", 0)) for m in t["metrics"].values())
        dur = "-" if t["duration_s"] is None else f"{t['duration_s']:.1f} s"
        status = _status(t) + (" OOM" if t.get("oom_killed") and "oom" not in t["status"] else "")
        head.add_row(t["name"], " ".join(t["args"]), status, dur, str(n))
    tables.append(head)
    for t in summary["targets"]:
        tab = Table(
            title=f"{t['name']}: {' '.join(t['args']) or '(no args)'}", title_justify="left"
        )
        for col in ("metric", "mean", "p50", "p95", "p99", "max", "count"):
            tab.add_column(col, justify="left" if col == "metric" else "right")
        shown = set()
        rows: list[tuple[str, dict[str, Any], str]] = []
        for name, label, kind in MAIN_METRICS:
            m = t["metrics"].get(name)
            if m is not None and "mean" in m:
                rows.append((label, m, kind))
                shown.add(name)
        for name, m in t["metrics"].items():
            if name.startswith("app.") and "mean" in m and name not in shown:
                rows.append((name, m, "num"))
        for label, m, kind in rows:
            tab.add_row(
                label,
                *(fmt_value(m.get(k), kind) for k in ("mean", "p50", "p95", "p99", "max")),
                str(m["count"]),
            )
        if rows:
            tables.append(tab)
    return tables


def _has_traffic(stats: dict[str, Any]) -> bool:
    return bool(stats.get("received") or stats.get("lines") or stats.get("client_reports"))


def print_summary(summary: dict[str, Any], console: Console | None = None) -> None:
    c = console or make_console()
    for tab in summary_tables(summary):
        c.print(tab)
    for t in summary["targets"]:
        if t.get("error"):
            c.print(f"[red]{t['name']}: {t['error']}[/red]")
    for t in summary["targets"]:
        for e in t["events"]:
            if e["kind"] in ("app_metrics_stats", "pywaggle_stats") and _has_traffic(e["data"]):
                rejected = {k: v for k, v in (e["data"].get("rejected") or {}).items() if v}
                more = (
                    f" (rejected: {', '.join(f'{k} {v}' for k, v in rejected.items())})"
                    if rejected
                    else ""
                )
                c.print(f"{t['name']}: {e['message']}{more}")
    unavailable = [e for e in summary["run"]["events"] if e["kind"] == "collector_unavailable"]
    unavailable += [
        e for t in summary["targets"] for e in t["events"] if e["kind"] == "collector_unavailable"
    ]
    for e in unavailable:
        c.print(f"[yellow]unavailable: {e['message']}[/yellow]")
