"""Per-target statistics of a stored run (mean, min, p50, p95, p99, max, count).

Gauges (and rates) get their distribution; counters their total over the run: the
increase of a kernel counter (a drop is a reset), the last value of a running total (an
app's StatsD counter, which starts at zero and may go down).

A run with scenarios (apps run together) also gets their alone-vs-together comparison
(:mod:`edgeprof.analyze.scenarios`); service rows stay among the targets, told apart by
``config.role == "service"`` (:attr:`RunSummary.services`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgeprof.analyze.model import (
    CounterStats,
    EventInfo,
    GaugeStats,
    MetricStats,
    RunMeta,
    RunSummary,
    ScenarioSummary,
    TargetSummary,
)
from edgeprof.stats import counter_increase, describe
from edgeprof.store.base import SeriesRecord, Store

if TYPE_CHECKING:
    from edgeprof.codeprof.top import CodeSummary


def series_key(metric: str, labels: dict[str, str]) -> str:
    """``metric`` or ``metric{k=v,…}`` with the implied ``target`` label left out."""
    extra = {k: v for k, v in labels.items() if k != "target"}
    if not extra:
        return metric
    inner = ",".join(f"{k}={v}" for k, v in sorted(extra.items()))
    return f"{metric}{{{inner}}}"


def metric_stats(s: SeriesRecord, vals: Any) -> MetricStats:
    """Statistics of one series' values, in the order they were written."""
    if s.kind in ("counter", "total"):
        last = float(vals[-1])
        total = last if s.kind == "total" else counter_increase(vals)
        return CounterStats(total=total, last=last, count=len(vals), unit=s.unit)
    st = describe(vals)
    return GaugeStats(
        mean=st["mean"],
        min=st["min"],
        p50=st["p50"],
        p95=st["p95"],
        p99=st["p99"],
        max=st["max"],
        count=int(st["count"]),
        unit=s.unit,
    )


def code_summary(store: Store, target_id: int) -> CodeSummary | None:
    """The top functions of a target's stack samples (``profiling.code``), or None."""
    from edgeprof.codeprof.top import top_functions

    code = top_functions(store.code_samples(target_id))
    return code if code.samples else None


def summarize(store: Store, run_ref: str | int) -> RunSummary:
    run = store.resolve_run(run_ref)
    targets = store.targets(run.id)
    series = store.series(run.id)
    values = store.series_values(run.id)
    events = store.events(run.id)
    by_target: dict[int | None, list[SeriesRecord]] = {}
    for s in series:
        by_target.setdefault(s.target_id, []).append(s)
    out: list[TargetSummary] = []
    for t in targets:
        metrics: dict[str, MetricStats] = {}
        for s in by_target.get(t.id, []):
            vals = values.get(s.id)
            if vals is not None and len(vals):
                metrics[series_key(s.metric, s.labels)] = metric_stats(s, vals)
        out.append(
            TargetSummary(
                name=t.name,
                args=t.args,
                status=t.status,
                exit_code=t.exit_code,
                oom_killed=t.oom_killed,
                timed_out=t.timed_out,
                duration_s=t.duration_s,
                error=t.error,
                container_id=t.container_id,
                config=t.config,
                metrics=dict(sorted(metrics.items())),
                events=[
                    EventInfo(e.t_ns, e.kind, e.message, e.data)
                    for e in events
                    if e.target_id == t.id
                ],
                code=code_summary(store, t.id),
            )
        )
    meta = RunMeta(
        id=run.id,
        spec_name=run.spec_name,
        image=run.image,
        spec_path=run.spec_path,
        status=run.status,
        started_ns=run.started_ns,
        ended_ns=run.ended_ns,
        interval_s=run.interval_s,
        host=run.host,
        edgeprof_version=run.edgeprof_version,
        owner=run.owner,
        meta=run.meta,
        events=[
            EventInfo(e.t_ns, e.kind, e.message, e.data) for e in events if e.target_id is None
        ],
    )
    scenarios: list[ScenarioSummary] = []
    if any(t.config.get("scenario") is not None for t in targets):
        from edgeprof.analyze.scenarios import analyze_scenarios

        scenarios = analyze_scenarios(targets, series, values)
    return RunSummary(meta, out, scenarios)
