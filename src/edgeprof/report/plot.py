"""Static charts of stored series for papers and READMEs (PNG, SVG or PDF via matplotlib).

One panel per metric, one line per target (and per label set of the metric), x in seconds
since each target started, y in a readable multiple of the metric's unit (MiB, GiB, ms …).
CPU gets its ``cpus`` limit and memory its limit as dashed lines, as in the terminal
summary. Every point the store holds is drawn (no downsampling: a figure is for a chosen
metric, and matplotlib's path simplification keeps peaks of long lines).
matplotlib is the ``[plot]`` extra, imported only here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from edgeprof.errors import UserError
from edgeprof.store.base import SeriesRecord, Store, TargetRecord

FORMATS = ("png", "svg", "pdf")


@dataclass(frozen=True)
class Line:
    target: str
    label: str
    x_s: Any
    """seconds since the target started (numpy float64)"""
    y: Any


def _scale(unit: str | None, peak: float) -> tuple[float, str]:
    """A divisor and the unit to show for values up to ``peak``."""
    if unit in ("B", "B/s"):
        suffix = "/s" if unit == "B/s" else ""
        for div, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if peak >= div:
                return float(div), name + suffix
        return 1.0, unit
    if unit == "s" and 0 < peak < 1:
        return 1e-3, "ms"
    if unit == "1" or unit is None:
        return 1.0, ""
    return 1.0, unit


def _matches(s: SeriesRecord, metric: str) -> bool:
    from edgeprof.analyze.summary import series_key

    return s.metric == metric or series_key(s.metric, s.labels) == metric


def _cpu_limit(t: TargetRecord) -> float | None:
    cpus = (t.config.get("resources") or {}).get("cpus")
    return float(cpus) * 100.0 if cpus else None


def collect_lines(
    store: Store, run_id: int, metric: str, targets: list[TargetRecord]
) -> tuple[list[Line], str | None, list[tuple[str, float]]]:
    """The lines of one metric, its unit and the ``(target, limit)`` pairs to draw."""
    by_id = {t.id: t for t in targets}
    lines: list[Line] = []
    unit: str | None = None
    limits: dict[tuple[str, float], None] = {}
    series = store.series(run_id)
    for s in series:
        t = by_id.get(s.target_id) if s.target_id is not None else None
        if t is None or not _matches(s, metric):
            continue
        ts, vals = store.series_samples(s.id)
        if not len(ts):
            continue
        start = t.started_ns if t.started_ns is not None else int(ts[0])
        extra = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "target")
        lines.append(Line(t.name, extra, (ts - start) / 1e9, vals))
        unit = s.unit
        if s.metric == "cpu.percent" and (lim := _cpu_limit(t)) is not None:
            limits[(t.name, lim)] = None
        if s.metric == "memory.working_set_bytes":
            for m in series:
                if m.target_id == t.id and m.metric == "memory.limit_bytes":
                    _, lv = store.series_samples(m.id)
                    if len(lv) and math.isfinite(float(lv.max())):
                        limits[(t.name, float(lv.max()))] = None
    return lines, unit, list(limits)


def plot_run(
    store: Store,
    run_ref: str | int,
    metrics: list[str],
    output: str,
    targets: list[str] | None = None,
    title: str | None = None,
    size: tuple[float, float] | None = None,
) -> list[str]:
    """Draw ``metrics`` of the run into ``output``; returns one line per panel drawn."""
    fmt = os.path.splitext(output)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise UserError(
            f"cannot tell the image format of {output!r}; end the -o file name with "
            + ", ".join(f".{f}" for f in FORMATS)
        )
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(
            "edgeprof plot needs matplotlib; install it with: pip install 'edgeprof[plot]'"
        ) from None
    run = store.resolve_run(run_ref)
    all_targets = store.targets(run.id)
    chosen = all_targets
    if targets:
        # a repeated target's base name (``burn``) selects its repeats (``burn#1`` …)
        names = {t.name for t in all_targets} | {t.name.split("#")[0] for t in all_targets}
        missing = [n for n in targets if n not in names]
        if missing:
            raise UserError(
                f"run {run.id} has no target named {missing[0]!r}; its targets are: "
                + (", ".join(t.name for t in all_targets) or "none")
            )
        chosen = [t for t in all_targets if t.name in targets or t.name.split("#")[0] in targets]
    panels = []
    for metric in metrics:
        lines, unit, limits = collect_lines(store, run.id, metric, chosen)
        if not lines:
            known = sorted({s.metric for s in store.series(run.id)})
            raise UserError(
                f"run {run.id} has no samples of {metric!r}"
                + (f" for target {', '.join(targets)}" if targets else "")
                + f"; its metrics are: {', '.join(known) or 'none'}"
            )
        panels.append((metric, lines, unit, limits))

    w, h = size or (8.0, 2.6 * len(panels) + 0.6)
    fig, axes = plt.subplots(len(panels), 1, figsize=(w, h), sharex=True, squeeze=False)
    out = []
    for ax, (metric, lines, unit, limits) in zip(axes[:, 0], panels, strict=True):
        peak = max([float(abs(ln.y).max()) for ln in lines] + [v for _, v in limits])
        div, shown = _scale(unit, peak)
        several = len({ln.target for ln in lines}) > 1
        colors: dict[str, Any] = {}
        for ln in lines:
            label = ln.target if several or not ln.label else ""
            if ln.label:
                label = f"{label} {ln.label}".strip()
            (drawn,) = ax.plot(ln.x_s, ln.y / div, linewidth=1.0, label=label or None)
            colors.setdefault(ln.target, drawn.get_color())
        for name, lim in limits:
            color = colors.get(name, "0.3")
            ax.axhline(lim / div, color=color, linestyle="--", linewidth=0.8)
            ax.annotate(
                f"{name} limit" if several else "limit",
                (0.995, lim / div),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="top",
                fontsize=7,
                color=color,
            )
        ax.set_ylabel(f"{metric} ({shown})" if shown else metric, fontsize=9)
        ax.grid(True, linewidth=0.3)
        if any(ln.target or ln.label for ln in lines) and (several or len(lines) > 1):
            ax.legend(fontsize=8, loc="best")
        n = sum(len(ln.y) for ln in lines)
        out.append(f"{metric}: {len(lines)} line(s), {n} samples")
    axes[-1, 0].set_xlabel("seconds since the target started")
    fig.suptitle(title or f"run {run.id} · {run.spec_name} · {run.image}", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(output, format=fmt, dpi=150 if fmt == "png" else None)
    except OSError as e:
        raise UserError(f"cannot write {output}: {e.strerror}; pick another -o path") from None
    finally:
        plt.close(fig)
    return out
