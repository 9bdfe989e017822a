"""``edgeprof summary RUN_ID``: per-target statistics of a stored run.

The apps' tables come first; the services started for them (``services:``) are listed
apart, with their readiness and, when profiled, their own statistics; scenarios (apps
run together) get one table each: every member alone vs together, with the slowdowns.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from edgeprof.cli.common import add_db, open_for_reading

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from edgeprof.analyze.model import RunSummary, ScenarioSummary

NAME = "summary"

STAT_NAMES = {"mean": "mean", "max": "peak", "p50": "p50", "p95": "p95", "p99": "p99"}


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="per target: mean/p50/p95/p99/max of every metric, exit status, notes",
        description="Summarize a stored run: per target, mean/p50/p95/p99/max of every "
        "metric (counters: their total), exit status and the notes of the run; the "
        "services started for the targets apart; per scenario, each app alone vs "
        "together with the slowdown (> 1: worse).",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    add_db(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: {run, targets: [{name, args, status, exit_code, oom_killed, "
        "duration_s, metrics: {name: {mean, min, p50, p95, p99, max, count, unit}}, events, "
        "code: {samples, top: [{function, file, line, self_pct, total_pct}]} (when stacks "
        "were sampled)}], "
        "services: [...] (when any), scenarios: [{name, targets: [{name, alone, together, "
        "slowdown}]}] (when any)}",
    )
    p.set_defaults(func=main)


def metric_label(key: str) -> str:
    """``cpu.percent`` → ``CPU``; an app's metric (or a labelled series) as it is."""
    from edgeprof.report.terminal import MAIN_METRICS

    base, _, rest = key.partition("{")
    label = dict(MAIN_METRICS).get(base, base)
    return f"{label} {{{rest}" if rest else label


def scenario_rows(s: ScenarioSummary) -> list[tuple[str, str, str, str, str]]:
    """Rows ``(app, metric and statistic, alone, together, slowdown)`` of a scenario, as
    printed; a member with no compared metric gets one row saying so."""
    from edgeprof.analyze.scenarios import comparison_rows
    from edgeprof.report.terminal import fmt_value

    rows: list[tuple[str, str, str, str, str]] = []
    for m in s.targets:
        got = comparison_rows(m)
        for i, r in enumerate(got):
            rows.append(
                (
                    m.name if i == 0 else "",
                    f"{metric_label(r.key)} {STAT_NAMES.get(r.stat, r.stat)}",
                    "no alone run" if m.alone is None else fmt_value(r.alone, r.unit),
                    fmt_value(r.together, r.unit),
                    r.ratio_text(),
                )
            )
        if not got:
            rows.append((m.name, "(no compared metric stored)", "-", "-", "-"))
    return rows


def scenario_tables(summary: RunSummary) -> list[Table]:
    from rich.markup import escape
    from rich.table import Table

    from edgeprof.analyze.scenarios import RATIO_NOTE

    out = []
    for s in summary.scenarios:
        tab = Table(
            title=escape(f"Scenario {s.name}: alone vs together"),
            title_justify="left",
            caption=escape(
                "slowdown: together ÷ alone (alone ÷ together for throughput); > 1 is "
                f"worse; {RATIO_NOTE}. Alone: the target's own run, repeats pooled."
            ),
        )
        for col in ("app", "metric", "alone", "together", "slowdown"):
            tab.add_column(col, justify="left" if col in ("app", "metric") else "right")
        for row in scenario_rows(s):
            tab.add_row(*(escape(c) for c in row))
        out.append(tab)
    return out


def services_table(summary: RunSummary) -> Table | None:
    from rich.markup import escape
    from rich.table import Table

    from edgeprof.report.terminal import fmt_value

    services = summary.services
    if not services:
        return None
    tab = Table(title="Services (started for the apps)", title_justify="left")
    for col in ("service", "scope", "for", "ready after", "status", "stored samples"):
        tab.add_column(col, justify="right" if col in ("ready after", "stored samples") else "left")
    for t in services:
        c = t.config
        ready = c.get("ready_s")
        status = t.status + (f" ({t.exit_code})" if t.exit_code is not None else "")
        tab.add_row(
            escape(str(c.get("service") or t.name)),
            escape(str(c.get("scope") or "-")),
            escape(str(c.get("for") or "(every target)")),
            fmt_value(float(ready), "s") if isinstance(ready, int | float) else "-",
            escape(status),
            f"{t.samples:,}" if t.metrics else "-",
        )
    return tab


def code_tables(summary: RunSummary) -> list[Table]:
    """Per app with stack samples (``profiling.code``): its top functions by self time."""
    from rich.markup import escape
    from rich.table import Table

    out = []
    for t in summary.apps:
        if t.code is None:
            continue
        tab = Table(
            title=escape(f"Code: top functions of {t.name} ({t.code.samples:,} stack samples)"),
            title_justify="left",
            caption="self: running in the function; total: the function on the stack "
            "(recursion counted once). 'edgeprof flame' draws them all.",
        )
        for col in ("function", "file:line", "self", "total"):
            tab.add_column(col, justify="right" if col in ("self", "total") else "left")
        for f in t.code.top:
            loc = f"{f.file}:{f.line}" if f.line else f.file
            tab.add_row(
                escape(f.function), escape(loc), f"{f.self_pct:.1f} %", f"{f.total_pct:.1f} %"
            )
        out.append(tab)
    return out


def print_text(summary: RunSummary, console: Console | None = None) -> None:
    """The apps (as ``print_summary`` prints them), then services, then scenarios."""
    from rich.markup import escape

    from edgeprof.analyze.model import RunSummary
    from edgeprof.report.terminal import make_console, notes, print_summary, target_table

    c = console or make_console()
    print_summary(RunSummary(summary.run, summary.apps), c)
    for ct in code_tables(summary):
        c.print(ct)
    services = summary.services
    tab = services_table(summary)
    if tab is not None:
        c.print(tab)
        for t in services:
            st = target_table(t)
            if st is not None:
                st.title = escape(f"service {t.name}")
                c.print(st)
        for t in services:
            if t.error:
                c.print(f"[red]{escape(t.name)}: {escape(t.error)}[/red]")
        only = RunSummary(dataclasses.replace(summary.run, events=[]), services)
        for n in notes(only):
            c.print(f"[yellow]note:[/yellow] {escape(n)}")
    for st in scenario_tables(summary):
        c.print(st)
    for s in summary.scenarios:
        for m in s.targets:
            if m.note:
                c.print(f"[yellow]note:[/yellow] {escape(f'{s.name}: {m.note}')}")


def main(ns: argparse.Namespace) -> int:
    from edgeprof.analyze.summary import summarize
    from edgeprof.owner import owner_gone

    store = open_for_reading(ns.db)
    s = summarize(store, ns.run_id)
    store.close()
    if ns.json:
        print(json.dumps(s.to_json(), indent=2))
        return 0
    print_text(s)
    if s.run.status == "running" and owner_gone(s.run.owner):
        print(
            f"note: run {s.run.id} is still marked running but its profiler is gone; "
            "'edgeprof cleanup' marks it crashed"
        )
    return 0
