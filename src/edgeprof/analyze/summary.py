"""Per-target statistics of a stored run (mean, min, p50, p95, p99, max, count)."""

from __future__ import annotations

import math
from typing import Any

from edgeprof.store.sql import SQLStore


def percentile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) of sorted values, q in 0..1."""
    n = len(sorted_vals)
    if n == 0:
        return math.nan
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * frac


def stats(values: list[float]) -> dict[str, float]:
    vals = sorted(values)
    n = len(vals)
    return {
        "mean": math.fsum(vals) / n,
        "min": vals[0],
        "p50": percentile(vals, 0.50),
        "p95": percentile(vals, 0.95),
        "p99": percentile(vals, 0.99),
        "max": vals[-1],
        "count": n,
    }


def counter_total(vals: list[float]) -> float:
    """Increase of a counter over time-ordered values; a reset (a drop) starts a new count."""
    total = 0.0
    prev = vals[0]
    for v in vals[1:]:
        total += v - prev if v >= prev else v
        prev = v
    return total


def series_key(metric: str, labels: dict[str, str]) -> str:
    """``metric`` or ``metric{k=v,…}`` with the implied ``target`` label left out."""
    extra = {k: v for k, v in labels.items() if k != "target"}
    if not extra:
        return metric
    inner = ",".join(f"{k}={v}" for k, v in sorted(extra.items()))
    return f"{metric}{{{inner}}}"


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def summarize(store: SQLStore, run_ref: str | int) -> dict[str, Any]:
    run = store.resolve_run(run_ref)
    run_id = int(run["id"])
    targets = store.targets(run_id)
    series = store.series(run_id)
    values = store.series_values(run_id)
    events = store.events(run_id)
    by_target: dict[int | None, list[dict[str, Any]]] = {}
    for s in series:
        by_target.setdefault(s["target_id"], []).append(s)
    out_targets = []
    for t in targets:
        metrics: dict[str, Any] = {}
        for s in by_target.get(t["id"], []):
            vals = values.get(s["id"])
            if not vals:
                continue
            key = series_key(s["metric"], s["labels"])
            if s["kind"] == "counter":
                # one query's values come in no promised order; a counter's total needs time order
                ordered = store.ordered_values(s["id"])
                metrics[key] = {
                    "total": counter_total(ordered),
                    "last": ordered[-1],
                    "count": len(ordered),
                    "unit": s["unit"],
                    "kind": "counter",
                }
            else:
                st = {k: _clean(v) for k, v in stats(vals).items()}
                st["unit"] = s["unit"]
                metrics[key] = st
        out_targets.append(
            {
                "name": t["name"],
                "args": t["args"],
                "status": t["status"],
                "exit_code": t["exit_code"],
                "oom_killed": t["oom_killed"],
                "timed_out": t["timed_out"],
                "duration_s": t["duration_s"],
                "error": t["error"],
                "container_id": t["container_id"],
                "config": t["config"],
                "metrics": dict(sorted(metrics.items())),
                "events": [
                    {
                        "t_ns": e["t_ns"],
                        "kind": e["kind"],
                        "message": e["message"],
                        "data": e["data"],
                    }
                    for e in events
                    if e["target_id"] == t["id"]
                ],
            }
        )
    return {
        "run": {
            "id": run_id,
            "spec_name": run["spec_name"],
            "image": run["image"],
            "spec_path": run["spec_path"],
            "status": run["status"],
            "started_ns": run["started_ns"],
            "ended_ns": run["ended_ns"],
            "interval_s": run["interval_s"],
            "host": run["host"],
            "edgeprof_version": run["edgeprof_version"],
            "events": [
                {"t_ns": e["t_ns"], "kind": e["kind"], "message": e["message"], "data": e["data"]}
                for e in events
                if e["target_id"] is None
            ],
        },
        "targets": out_targets,
    }
