"""Export a run's samples as CSV, JSON lines or Parquet (one sample per row, long format);
the ``perfetto`` format (a Chrome/Perfetto trace) is :mod:`edgeprof.report.perfetto`.

Parquet (the ``[parquet]`` extra, pyarrow) keeps the types: ``t_ns`` int64, ``value``
float64 (the stored bits, exactly), ``labels`` a map of strings, and target, metric and unit
dictionary-encoded. It is written in row groups of a bounded size as the store's sweep
yields samples, so a long run never sits in memory whole.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

from edgeprof.errors import UserError
from edgeprof.store.base import Store

FORMATS = ("csv", "jsonl", "parquet", "perfetto")
TEXT_FORMATS = ("csv", "jsonl")
PARQUET_ROWS = 262_144
"""Samples per Parquet row group (about 4 MiB of values and times)."""
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
        raise ValueError(
            f"unknown text export format {fmt!r}; choose {' or '.join(TEXT_FORMATS)}"
            " (parquet: export_parquet)"
        )
    return n


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(
            "Parquet export needs pyarrow; install it with: pip install 'edgeprof[parquet]'"
        ) from None
    return pa, pq


def parquet_schema() -> Any:
    pa, _ = _pyarrow()
    text = pa.dictionary(pa.int32(), pa.string())
    return pa.schema(
        [
            pa.field("run_id", pa.int64(), nullable=False),
            pa.field("target", text, nullable=False),
            pa.field("metric", text, nullable=False),
            pa.field("labels", pa.map_(pa.string(), pa.string()), nullable=False),
            pa.field("unit", text, nullable=False),
            pa.field("t_ns", pa.int64(), nullable=False),
            pa.field("value", pa.float64(), nullable=False),
        ]
    )


def export_parquet(store: Store, run_ref: str | int, out: str | IO[bytes]) -> int:
    """Write every sample of the run as Parquet to a path or binary file; returns the rows."""
    pa, pq = _pyarrow()
    import numpy as np

    run_id = store.resolve_run(run_ref).id
    targets = {t.id: t.name for t in store.targets(run_id)}
    schema = parquet_schema()
    # per series: its fixed columns, made once (a run has hundreds of series, not millions)
    fixed: dict[int, tuple[str, str, list[tuple[str, str]], str]] = {}
    for s in store.series(run_id):
        fixed[s.id] = (
            targets.get(s.target_id, "") if s.target_id is not None else "",
            s.metric,
            sorted((k, v) for k, v in s.labels.items() if k != "target"),
            s.unit or "",
        )
    n = 0
    sids: list[int] = []
    ts: list[int] = []
    vals: list[float] = []

    def batch() -> Any:
        cols = [fixed[i] for i in sids]
        return pa.record_batch(
            [
                pa.array(np.full(len(sids), run_id, dtype=np.int64)),
                pa.array([c[0] for c in cols], pa.string()).dictionary_encode(),
                pa.array([c[1] for c in cols], pa.string()).dictionary_encode(),
                pa.array([c[2] for c in cols], pa.map_(pa.string(), pa.string())),
                pa.array([c[3] for c in cols], pa.string()).dictionary_encode(),
                pa.array(np.asarray(ts, dtype=np.int64)),
                pa.array(np.asarray(vals, dtype=np.float64)),
            ],
            schema=schema,
        )

    with pq.ParquetWriter(out, schema, compression="zstd") as w:
        for sid, t_ns, value in store.iter_samples(run_id):
            sids.append(sid)
            ts.append(t_ns)
            vals.append(value)
            if len(sids) >= PARQUET_ROWS:
                w.write_batch(batch())
                n += len(sids)
                sids, ts, vals = [], [], []
        if sids or n == 0:
            w.write_batch(batch())
            n += len(sids)
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
