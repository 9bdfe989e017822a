"""Apps run together: each member's statistics alone vs together, and the slowdowns.

A scenario (``scenarios: [{name: both, together: [gpu, cpu]}]``) stores one target row
per member of its together-run, named ``both/gpu``, with ``config = {"scenario": "both",
"base_target": "gpu", "together": [...]}``. The member's *alone* statistics come from
the rows of ``base_target`` in the same run, every repeat (``gpu#1``, ``gpu#2``…) pooled:
their samples are put together and summarised as one. Rows of one scenario and base
target (a repeated together-run) are pooled the same way.

Compared, per member (every label set of a metric on its own, e.g. per GPU):

======================================  ==============  ==================================
metric                                  statistics      slowdown
======================================  ==============  ==================================
``cpu.percent``                         mean            together ÷ alone
``memory.working_set_bytes``            mean, max       together ÷ alone
``gpu.utilization_percent``             mean            together ÷ alone
``gpu.container.memory_used_bytes``     max             together ÷ alone
app latency (timers, in ms; or gauges  p50, p99        together ÷ alone
named ``*latency*``, ``*duration*``,
``*_ms``, ``*_seconds``, ``*_time``)
app throughput (``app.fps``, ``*fps``,  mean, p50       alone ÷ together
``*.rate``, ``*_per_s``,
``*_per_second``)
======================================  ==============  ==================================

so a slowdown above 1 always means worse for the app (more resources used, longer
latency, fewer frames a second). For resources the ratio is one of usage, not of speed:
an app that gets less CPU together (contention) has a CPU ratio below 1, which is no
gain; the summary and the report mark these ratios ``× use`` and say so (:data:`RATIO_NOTE`). A slowdown is given only where both sides have a
positive value; the statistics themselves are given either way. A member whose base
target has no row in the run (left out with ``--target``) gets ``alone = None`` and a
note saying so, never invented numbers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeprof.analyze.model import GaugeStats, ScenarioMember, ScenarioSummary
from edgeprof.analyze.summary import metric_stats, series_key
from edgeprof.store.base import SeriesRecord, Store, TargetRecord

RESOURCE_STATS: dict[str, tuple[str, ...]] = {
    "cpu.percent": ("mean",),
    "memory.working_set_bytes": ("mean", "max"),
    "gpu.utilization_percent": ("mean",),
    "gpu.container.memory_used_bytes": ("max",),
}
"""Resource metrics compared, and the statistics whose slowdown is given."""
LATENCY_STATS = ("p50", "p99")
THROUGHPUT_STATS = ("mean", "p50")
THROUGHPUT_SUFFIXES = (".rate", "_per_s", "_per_second", "fps")
LATENCY_NAME = re.compile(r"latency|duration|_ms$|_seconds$|_time$")


RATIO_NOTE = (
    "for resources (CPU, memory, GPU), marked '× use', the ratio is together ÷ alone "
    "usage: < 1 under CPU contention means the app got less CPU, not that it ran better; "
    "throughput and latency ratios > 1 mean slower"
)
"""How to read the ratios, under the tables of the summary and the report."""


def is_resource(metric: str) -> bool:
    """A resource usage metric (CPU, memory, GPU): its ratio is of usage, not speed."""
    return base_metric(metric) in RESOURCE_STATS


def is_throughput(metric: str) -> bool:
    """A metric where more is better (frames a second, a rate): its slowdown is
    alone ÷ together."""
    return metric.endswith(THROUGHPUT_SUFFIXES)


def is_latency(metric: str, unit: str | None) -> bool:
    """A time per item where less is better: an app timer (ms), or an app gauge named as
    one (``latency``, ``duration``, ``*_ms``, ``*_seconds``, ``*_time``: what a pywaggle
    plugin publishes without a unit)."""
    if is_throughput(metric):
        return False
    return unit == "ms" or LATENCY_NAME.search(metric.rsplit(".", 1)[-1]) is not None


def compared_stats(metric: str, unit: str | None) -> tuple[str, ...]:
    """The statistics whose slowdown is given for ``metric`` (empty: not compared)."""
    if metric in RESOURCE_STATS:
        return RESOURCE_STATS[metric]
    if metric.startswith("app."):
        if is_throughput(metric):
            return THROUGHPUT_STATS
        if is_latency(metric, unit):
            return LATENCY_STATS
    return ()


def order(key: str, unit: str | None) -> tuple[int, str]:
    """Resources first (CPU, memory, GPU, GPU memory), then throughput, then latency."""
    metric = base_metric(key)
    resources = list(RESOURCE_STATS)
    if metric in resources:
        return resources.index(metric), key
    return (len(resources) if is_throughput(metric) else len(resources) + 1), key


def base_metric(key: str) -> str:
    """``gpu.utilization_percent{gpu=0}`` → ``gpu.utilization_percent``."""
    return key.split("{", 1)[0]


def slowdown(metric: str, stat: str, alone: float | None, together: float | None) -> float | None:
    """together ÷ alone (alone ÷ together for throughput); None when a side is missing
    or not positive."""
    if alone is None or together is None or not alone > 0 or not together > 0:
        return None
    return alone / together if is_throughput(metric) else together / alone


def is_service(t: TargetRecord) -> bool:
    return t.config.get("role") == "service"


def _base_name(t: TargetRecord) -> str:
    from edgeprof.analyze.compare import base_name

    return base_name(t.name, t.config)


@dataclass
class _Pool:
    """Samples of the compared series of some target rows, by series key."""

    units: dict[str, str | None]
    values: dict[str, list[Any]]
    record: dict[str, SeriesRecord]

    def stats(self) -> dict[str, GaugeStats]:
        """Pooled statistics by key, in :func:`order`."""
        out: dict[str, GaugeStats] = {}
        for key in sorted(self.values, key=lambda k: order(k, self.units[k])):
            vals = np.concatenate(self.values[key])
            st = metric_stats(self.record[key], vals)
            if isinstance(st, GaugeStats):
                out[key] = st
        return out


def _pool(
    rows: Sequence[TargetRecord],
    series: Mapping[int, list[SeriesRecord]],
    values: Mapping[int, Any],
) -> _Pool:
    pool = _Pool({}, {}, {})
    for t in rows:
        for s in series.get(t.id, []):
            if s.kind in ("counter", "total") or not compared_stats(s.metric, s.unit):
                continue
            vals = values.get(s.id)
            if vals is None or not len(vals):
                continue
            key = series_key(s.metric, s.labels)
            pool.values.setdefault(key, []).append(np.asarray(vals, dtype=np.float64))
            pool.record.setdefault(key, s)
            pool.units.setdefault(key, s.unit)
    return pool


def _slowdowns(
    alone: Mapping[str, GaugeStats], together: Mapping[str, GaugeStats]
) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, tg in together.items():
        al = alone.get(key)
        if al is None:
            continue
        metric = base_metric(key)
        for stat in compared_stats(metric, tg.unit):
            r = slowdown(metric, stat, getattr(al, stat), getattr(tg, stat))
            if r is not None:
                out[f"{key}.{stat}"] = r
    return out


def _statuses(rows: Sequence[TargetRecord]) -> str:
    return ", ".join(sorted({t.status for t in rows}))


def analyze_scenarios(
    targets: Sequence[TargetRecord],
    series: Sequence[SeriesRecord],
    values: Mapping[int, Any],
) -> list[ScenarioSummary]:
    """The scenarios of a run's target rows (in the order their members were stored)."""
    by_target: dict[int, list[SeriesRecord]] = {}
    for s in series:
        if s.target_id is not None:
            by_target.setdefault(s.target_id, []).append(s)
    apps = [t for t in sorted(targets, key=lambda t: t.idx) if not is_service(t)]
    members: dict[str, dict[str, list[TargetRecord]]] = {}
    for t in apps:
        scn = t.config.get("scenario")
        if scn is None:
            continue
        base = str(t.config.get("base_target") or t.name.split("/", 1)[-1])
        members.setdefault(str(scn), {}).setdefault(base, []).append(t)
    alone_rows: dict[str, list[TargetRecord]] = {}
    for t in apps:
        if t.config.get("scenario") is None:
            alone_rows.setdefault(_base_name(t), []).append(t)
    out: list[ScenarioSummary] = []
    for scn, bases in members.items():
        entries: list[ScenarioMember] = []
        for base, rows in bases.items():
            together = _pool(rows, by_target, values).stats()
            name = rows[0].name
            alone_of = alone_rows.get(base, [])
            notes: list[str] = []
            alone: dict[str, GaugeStats] | None
            if not alone_of:
                alone = None
                notes.append(
                    f"no alone run of {base!r} in this run (left out with --target?): "
                    "no alone figures and no slowdown"
                )
            else:
                alone = _pool(alone_of, by_target, values).stats()
                if not alone:
                    notes.append(
                        f"the alone run of {base!r} ({_statuses(alone_of)}) stored none of "
                        "the compared metrics: no slowdown"
                    )
            if not together:
                notes.append(
                    f"{name} ({_statuses(rows)}) stored none of the compared metrics "
                    "together: no slowdown"
                )
            entries.append(
                ScenarioMember(
                    name=name,
                    base_target=base,
                    status=_statuses(rows),
                    alone_targets=[t.name for t in alone_of],
                    alone=alone,
                    together=together,
                    slowdown=_slowdowns(alone or {}, together),
                    note="; ".join(notes) or None,
                )
            )
        out.append(ScenarioSummary(scn, entries))
    return out


@dataclass(frozen=True)
class Row:
    """One compared statistic of one member, as the summary and the report show it."""

    member: ScenarioMember
    key: str
    stat: str
    unit: str | None
    alone: float | None
    together: float | None
    slowdown: float | None

    @property
    def resource(self) -> bool:
        """Its ratio is of usage (CPU, memory, GPU), not of speed."""
        return is_resource(self.key)

    def ratio_text(self) -> str:
        """The ratio as shown: ``2.00×``, ``0.52× use`` for a resource, ``-`` for none."""
        if self.slowdown is None:
            return "-"
        return f"{self.slowdown:.2f}×" + (" use" if self.resource else "")


def comparison_rows(member: ScenarioMember) -> list[Row]:
    """The member's compared statistics: its together series in order, then any only
    alone has; empty when neither side stored a compared metric."""
    alone = member.alone or {}
    keys = list(member.together) + [k for k in alone if k not in member.together]
    rows: list[Row] = []
    for key in keys:
        tg = member.together.get(key)
        al = alone.get(key)
        unit = tg.unit if tg is not None else al.unit if al is not None else None
        for stat in compared_stats(base_metric(key), unit):
            rows.append(
                Row(
                    member,
                    key,
                    stat,
                    unit,
                    None if al is None else getattr(al, stat),
                    None if tg is None else getattr(tg, stat),
                    member.slowdown.get(f"{key}.{stat}"),
                )
            )
    return rows


def scenarios(store: Store, run_ref: str | int) -> list[ScenarioSummary]:
    """The scenarios of a stored run (empty when it ran none)."""
    run = store.resolve_run(run_ref)
    targets = store.targets(run.id)
    if not any(t.config.get("scenario") is not None for t in targets):
        return []
    return analyze_scenarios(targets, store.series(run.id), store.series_values(run.id))


__all__ = [
    "RATIO_NOTE",
    "Row",
    "analyze_scenarios",
    "comparison_rows",
    "compared_stats",
    "is_resource",
    "is_throughput",
    "scenarios",
    "slowdown",
]
