"""``edgeprof compare`` for people: a terminal table per target, or a Markdown comment.

Each row is one statistic of one metric: A, B, the change from A to B, the p-value and
the method that gave it. A change that is not significant at α = 0.05 shows as ``~``
(benchstat's mark); metrics or targets in one run only are listed as such.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from edgeprof.analyze.compare import (
    ALPHA,
    BOOT,
    MWU,
    Comparison,
    RuleResult,
    StatComparison,
    TargetComparison,
)
from edgeprof.report.terminal import fmt_value, make_console

METHOD_NAMES = {MWU: "Mann–Whitney U", BOOT: "block bootstrap"}
MAX_LISTED = 6


def _change(s: StatComparison) -> str:
    if not s.significant:
        return "~"
    if s.change_pct is None:
        return "+inf %" if s.b > s.a else "-inf %"
    return f"{s.change_pct:+.1f} %"


def _p(s: StatComparison) -> str:
    if not math.isfinite(s.p_value):
        return "–"
    return f"{s.p_value:.3f}" if s.p_value >= 0.001 else f"{s.p_value:.1e}"


def _heading(c: Comparison, t: TargetComparison) -> str:
    if t.only_in is not None:
        return f"{t.name}: {t.note}"
    method = METHOD_NAMES.get(t.method or "", t.method or "")
    reps = (
        f"{t.repeats_a} vs {t.repeats_b} repeat{'s' if max(t.repeats_a, t.repeats_b) > 1 else ''}"
    )
    text = f"{t.name}: run {c.run_a} vs run {c.run_b}, {reps}, {method}, α = {ALPHA:g}"
    if t.note:
        text += f" ({t.note})"
    return text


def _notes(t: TargetComparison) -> list[str]:
    """Notes of single verdicts (too few samples, no finite data) beyond the target's."""
    seen: list[str] = []
    for m in t.metrics.values():
        for s in m.stats.values():
            if s.note and s.note != t.note and s.note not in seen:
                seen.append(s.note)
    return seen


def _rows(t: TargetComparison) -> list[list[str]]:
    rows = []
    notes = _notes(t)
    for key, m in t.metrics.items():
        first = True
        for stat, s in m.stats.items():
            mark = ""
            if s.note and s.note in notes:
                mark = " " + "*" * (notes.index(s.note) + 1)
            rows.append(
                [
                    key if first else "",
                    stat,
                    fmt_value(s.a, m.unit),
                    fmt_value(s.b, m.unit),
                    _change(s) + mark,
                    _p(s),
                ]
            )
            first = False
    return rows


def _note_lines(t: TargetComparison) -> list[str]:
    return [f"{'*' * (i + 1)} {n}" for i, n in enumerate(_notes(t))]


def _only(t: TargetComparison, c: Comparison) -> list[str]:
    out = []
    for names, run in ((t.only_in_a, c.run_a), (t.only_in_b, c.run_b)):
        if names:
            shown = ", ".join(names[:MAX_LISTED])
            more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
            out.append(f"only in run {run}: {shown}{more}")
    return out


def _rule_line(r: RuleResult) -> str:
    mark = {"failed": "FAIL", "passed": "ok", "skipped": "skip"}[r.outcome]
    return f"{mark}  {r.target}: {r.rule.text} — {r.message}"


def print_comparison(c: Comparison, results: Sequence[RuleResult] = ()) -> None:
    con = make_console()
    for t in c.targets:
        if t.only_in is not None or not t.metrics:
            con.print(escape(_heading(c, t)), highlight=False)
            for line in _only(t, c):
                con.print("  " + escape(line), highlight=False)
            continue
        tab = Table(title=escape(_heading(c, t)), title_justify="left")
        for col in ("metric", "stat", f"A (run {c.run_a})", f"B (run {c.run_b})", "change", "p"):
            tab.add_column(col, justify="left" if col in ("metric", "stat") else "right")
        for row in _rows(t):
            tab.add_row(*(escape(x) for x in row))
        con.print(tab)
        for line in _note_lines(t) + _only(t, c):
            con.print("  " + escape(line), highlight=False)
    con.print(
        "~: not significant at α = 0.05 (Mann–Whitney U over ≥ 4 repeats; else a block "
        "bootstrap 95 % interval over the time series)",
        highlight=False,
    )
    for r in results:
        con.print(escape(_rule_line(r)), highlight=False)


def _md(text: str) -> str:
    """A table cell: pipes escaped, no line breaks, no HTML."""
    return (
        text.replace("\\", "\\\\")
        .replace("|", "\\|")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\n", " ")
    )


def _code(text: str) -> str:
    """A code span in a table cell: shown literally (no entities: GitHub does not decode
    them inside code), pipes escaped for the table, a longer fence around backticks."""
    body = text.replace("|", "\\|").replace("\n", " ")
    fence = "``" if "`" in body else "`"
    return f"{fence} {body} {fence}" if fence == "``" else f"`{body}`"


def markdown(c: Comparison, results: Sequence[RuleResult] = ()) -> str:
    lines = [f"### edgeprof compare: run {c.run_a} (A) vs run {c.run_b} (B)", ""]
    for t in c.targets:
        lines.append(f"#### {_md(_heading(c, t))}")
        lines.append("")
        if t.metrics:
            lines.append("| metric | stat | A | B | change | p |")
            lines.append("|---|---|--:|--:|--:|--:|")
            for row in _rows(t):
                cells = [_code(row[0]) if row[0] else "", *(_md(x) for x in row[1:])]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        for line in _note_lines(t) + _only(t, c):
            lines.append(f"_{_md(line)}_")
            lines.append("")
    if results:
        lines.append("| check | target | result |")
        lines.append("|---|---|---|")
        for r in results:
            mark = {"failed": "❌ fail", "passed": "✅ pass", "skipped": "skipped"}[r.outcome]
            lines.append(f"| {_code(r.rule.text)} | {_md(r.target)} | {mark}: {_md(r.message)} |")
        lines.append("")
    lines.append(
        "`~`: not significant at α = 0.05 (Mann–Whitney U over ≥ 4 repeats; else a block "
        "bootstrap 95 % interval over the time series)."
    )
    return "\n".join(lines)
