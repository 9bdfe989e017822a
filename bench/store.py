"""Store: SQLite ingest rate in the sampler's real batching, and `edgeprof summary` time.

The batch shape is what one real tick produces with every group on (container, system,
process): a short real `edgeprof run` at 100 Hz is made, and its series (metric + labels)
become the template of one tick. The synthetic writer then pushes ticks through the real
`BatchWriter` into a fresh `SQLStore` (one list per tick, the writer thread batching and
committing every 0.5 s), and `edgeprof summary RUN --json` is timed (subprocess, wall
clock) on that run: 1,000,000 samples (full and quick), 20,000 (smoke).

    python bench/store.py [--quick|--smoke]
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BUSY_CMD, EDGEPROF, banner, dump, parse_mode, start_edgeprof, table  # noqa: E402


def tick_template(wd: str) -> tuple[list[tuple[str, tuple[tuple[str, str], ...]]], float]:
    """The (metric, labels) of one real tick at 100 Hz, every group on, and ticks per second."""
    run = start_edgeprof(wd, "store-shape", BUSY_CMD, 0.01, timeout=2.0)
    run.wait()
    with run.store() as s:
        series = s.series(s.resolve_run("latest").id)
    tmpl = [(x.metric, tuple(sorted(x.labels.items()))) for x in series]
    return tmpl, 100.0


def ingest(db: str, tmpl: list[Any], n_samples: int) -> dict[str, Any]:
    from edgeprof.model import MetricSpec, Sample
    from edgeprof.store import BatchWriter, open_store
    from edgeprof.store.base import RunInfo, TargetInfo

    store = open_store(f"sqlite:///{db}")
    run_id = store.begin_run(
        RunInfo(
            spec_name="bench-store", image="synthetic", started_ns=time.time_ns(), interval_s=0.01
        )
    )
    tid = store.begin_target(TargetInfo(run_id, 0, "t", []))
    describe = [
        MetricSpec(m, "1", "counter" if m.endswith("_seconds") else "gauge")
        for m in {m for m, _ in tmpl}
    ]
    ticks = max(1, n_samples // len(tmpl))
    t_ns = time.time_ns()
    # Build the batches first, so the timing is the writer's, not the batch building.
    batches = []
    for k in range(ticks):
        t = t_ns + k * 10_000_000
        batches.append([Sample(m, lab, t, float(k)) for m, lab in tmpl])
    w = BatchWriter(store, run_id, tid)
    w.describe(describe)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for b in batches:
        w.write(b)
    w.close()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    store.end_run(run_id, "completed", time.time_ns())
    store.update_target(tid, status="exited", exit_code=0)
    store.close()
    return {
        "run_id": run_id,
        "samples": w.written(),
        "wall_s": wall,
        "cpu_s": cpu,
        "rate": w.written() / wall,
        "per_tick": len(tmpl),
    }


def time_summary(db: str, run_id: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        p = subprocess.run(
            [*EDGEPROF, "summary", str(run_id), "--db", f"sqlite:///{db}", "--json"],
            capture_output=True,
            text=True,
        )
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-500:])
        best = min(best, dt)
    return best


def run(n_samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-") as wd:
        tmpl, hz = tick_template(wd)
        db = os.path.join(wd, "store.db")
        ing = ingest(db, tmpl, n_samples)
        from edgeprof.store import open_store

        with contextlib.closing(open_store(f"sqlite:///{db}", readonly=True)) as st:
            stored = st.sample_count(ing["run_id"])
        summ = time_summary(db, ing["run_id"])
        # a tiny run for the fixed start-up cost of the CLI
        small = os.path.join(wd, "small.db")
        ing_small = ingest(small, tmpl, len(tmpl) * 10)
        summ_small = time_summary(small, ing_small["run_id"])
    produced = len(tmpl) * hz
    return {
        "per_tick": len(tmpl),
        "sampler_rate_100hz": produced,
        "ingest": ing,
        "stored": stored,
        "summary_s": summ,
        "summary_small_s": summ_small,
        "ingest_ratio": ing["rate"] / produced,
    }


def print_store(res: dict[str, Any]) -> None:
    banner("4. Store (SQLite)")
    ing = res["ingest"]
    table(
        ["what", "value", "goal", "ratio"],
        [
            ["samples per tick, every group on", res["per_tick"], "-", "-"],
            ["sampler output at 100 Hz (samples/s)", res["sampler_rate_100hz"], "-", "-"],
            [
                "BatchWriter ingest (samples/s)",
                ing["rate"],
                f">= {20 * res['sampler_rate_100hz']:,.0f}",
                f"{res['ingest_ratio']:.0f}x ({'met' if res['ingest_ratio'] >= 20 else 'MISSED'})",
            ],
            ["ingest CPU per sample (µs)", 1e6 * ing["cpu_s"] / max(1, ing["samples"]), "-", "-"],
            [
                f"edgeprof summary, {res['stored']:,} samples (s)",
                res["summary_s"],
                "< 2",
                "met" if res["summary_s"] < 2 else "MISSED",
            ],
            ["edgeprof summary, tiny run (CLI start-up, s)", res["summary_small_s"], "-", "-"],
        ],
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ns = parse_mode(__doc__ or "", argv)
    res = run(20_000 if ns.mode == "smoke" else 1_000_000)
    print_store(res)
    dump(ns.json_out, res)
    return res


if __name__ == "__main__":
    main()
