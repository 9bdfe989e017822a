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
    GroupComparison,
    RuleResult,
    StatComparison,
    TargetComparison,
)
from edgeprof.report.terminal import fmt_value, make_console, short_model

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


# -- compare --by KEY: one table, a column per group ---------------------------------------


def group_label(c: GroupComparison, value: str) -> str:
    """A group's column header: its value (a device model shortened, unless two models
    would read the same)."""
    if c.by != "device.model":
        return value
    short = [short_model(g.value) for g in c.groups]
    return value if len(set(short)) < len(short) else short_model(value)


def _group_notes(c: GroupComparison) -> list[str]:
    """Notes of single verdicts beyond their target's (marked with * in the table)."""
    seen: list[str] = []
    for t in c.targets:
        for m in t.metrics.values():
            for per in m.vs_baseline.values():
                for g, s in per.items():
                    if s.note and s.note != t.notes.get(g) and s.note not in seen:
                        seen.append(s.note)
    return seen


def _target_notes(c: GroupComparison) -> list[str]:
    """A target's note against the baseline (one repeat, too few for Mann–Whitney U…),
    once per target and note, naming the groups it concerns."""
    out = []
    for t in c.targets:
        by_note: dict[str, list[str]] = {}
        for g, note in t.notes.items():
            if note:
                by_note.setdefault(note, []).append(group_label(c, g))
        for note, groups in by_note.items():
            out.append(f"{t.name} ({', '.join(groups)} vs the baseline): {note}")
    return out


def _group_rows(c: GroupComparison) -> list[list[str]]:
    """target, metric, stat, then per group its figure and (after the baseline) its
    change against the baseline."""
    notes = _group_notes(c)
    rows = []
    for t in c.targets:
        first_t = True
        for key, m in t.metrics.items():
            first_m = True
            for stat, vals in m.values.items():
                row = [t.name if first_t else "", key if first_m else "", stat]
                for i, g in enumerate(c.groups):
                    row.append(fmt_value(vals.get(g.value), m.unit))
                    if i == 0:
                        continue
                    s = m.vs_baseline.get(stat, {}).get(g.value)
                    if s is None:
                        row.append("")
                        continue
                    own = s.note in notes and s.note != t.notes.get(g.value)
                    mark = " " + "*" * (notes.index(str(s.note)) + 1) if own else ""
                    row.append(_change(s) + mark)
                rows.append(row)
                first_t = first_m = False
        if first_t:  # no metric compared: the target and where it ran
            where = [group_label(c, g) for g, n in t.repeats.items() if n]
            rows.append(
                [t.name, f"(only in {', '.join(where)})", "", *[""] * (2 * len(c.groups) - 1)]
            )
    return rows


def _group_legend(c: GroupComparison) -> list[str]:
    out = []
    for i, g in enumerate(c.groups):
        runs = f"run{'s' if len(g.runs) > 1 else ''} {', '.join(str(r) for r in g.runs)}"
        label = group_label(c, g.value)
        full = f" ({g.value})" if label != g.value else ""
        out.append(f"{label}{full}: {runs}{' (baseline)' if i == 0 else ''}")
    return out


GROUP_FOOTER = (
    "change: against the baseline; ~: not significant at α = 0.05 (Mann–Whitney U when "
    "both groups have ≥ 4 repeats over their runs; else a block bootstrap 95 % interval "
    "over the time series); a figure is the median of the repeats' statistic"
)


def _group_headers(c: GroupComparison) -> list[str]:
    cols = ["target", "metric", "stat"]
    for i, g in enumerate(c.groups):
        cols.append(group_label(c, g.value))
        if i:
            cols.append("change")
    return cols


def print_group_comparison(c: GroupComparison) -> None:
    con = make_console()
    tab = Table(
        title=escape(f"compare by {c.by}: baseline {group_label(c, c.baseline.value)}"),
        title_justify="left",
    )
    for col in _group_headers(c):
        tab.add_column(
            escape(col), justify="left" if col in ("target", "metric", "stat") else "right"
        )
    for row in _group_rows(c):
        tab.add_row(*(escape(x) for x in row))
    con.print(tab)
    for line in _group_legend(c):
        con.print("  " + escape(line), highlight=False)
    for line in _target_notes(c):
        con.print("  " + escape(line), highlight=False)
    for i, n in enumerate(_group_notes(c)):
        con.print("  " + escape(f"{'*' * (i + 1)} {n}"), highlight=False)
    con.print(GROUP_FOOTER, highlight=False)


def group_markdown(c: GroupComparison) -> str:
    lines = [f"### edgeprof compare by `{c.by}`", ""]
    for line in _group_legend(c):
        lines.append(f"- {_md(line)}")
    lines.append("")
    heads = _group_headers(c)
    lines.append("| " + " | ".join(_md(h) for h in heads) + " |")
    lines.append("|" + "|".join("---" if i < 3 else "--:" for i in range(len(heads))) + "|")
    for row in _group_rows(c):
        cells = [_md(row[0]), _code(row[1]) if row[1] else "", *(_md(x) for x in row[2:])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for line in _target_notes(c):
        lines.append(f"_{_md(line)}_")
        lines.append("")
    for i, n in enumerate(_group_notes(c)):
        lines.append(f"_{_md('*' * (i + 1) + ' ' + n)}_")
        lines.append("")
    lines.append(_md(GROUP_FOOTER) + ".")
    return "\n".join(lines)
