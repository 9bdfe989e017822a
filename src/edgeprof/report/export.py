"""Export a run's samples as CSV or JSON lines (one sample per row, long format)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

from edgeprof.errors import UserError
from edgeprof.store.base import Store

FORMATS = ("csv", "jsonl")
COLUMNS = ["run_id", "target", "metric", "labels", "unit", "t_ns", "value"]


def _rows(store: Store, run_id: int) -> Iterator[dict[str, Any]]:
    targets = {t.id: t.name for t in store.targets(run_id)}
    series = {s.id: s for s in store.series(run_id)}
    for sid, t_ns, value in store.iter_samples(run_id):
        s = series[sid]
        labels = {k: v for k, v in s.labels.items() if k != "target"}
        yield {
            "run_id": run_id,
            "target": targets.get(s.target_id, "") if s.target_id is not None else "",
            "metric": s.metric,
            "labels": labels,
            "unit": s.unit or "",
            "t_ns": t_ns,
            "value": value,
        }


def export_run(store: Store, run_ref: str | int, fmt: str, out: IO[str]) -> int:
    """Write every sample of the run to ``out``; returns the number of rows."""
    run_id = store.resolve_run(run_ref).id
    n = 0
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(COLUMNS)
        for r in _rows(store, run_id):
            labels = ";".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
            w.writerow(
                [
                    r["run_id"],
                    r["target"],
                    r["metric"],
                    labels,
                    r["unit"],
                    r["t_ns"],
                    repr(r["value"]),
                ]
            )
            n += 1
    elif fmt == "jsonl":
        for r in _rows(store, run_id):
            out.write(json.dumps(r, separators=(",", ":")) + "\n")
            n += 1
    else:  # the CLI validates the choice; the library says the same
        raise ValueError(f"unknown export format {fmt!r}; choose {' or '.join(FORMATS)}")
    return n


def run_logs(
    store: Store, run_ref: str | int, target: str | None = None
) -> list[tuple[str, str, str]]:
    """``(target, stream, text)`` of the logs stored with a run, in target order."""
    run_id = store.resolve_run(run_ref).id
    targets = store.targets(run_id)
    if target is not None:
        chosen = [t for t in targets if t.name == target]
        if not chosen:
            names = ", ".join(t.name for t in targets) or "none"
            raise UserError(
                f"run {run_id} has no target named {target!r}; its targets are: {names}"
            )
        targets = chosen
    out = []
    for t in targets:
        for stream, text in sorted(store.logs(t.id).items(), reverse=True):
            out.append((t.name, stream, text))
    return out
