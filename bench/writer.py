"""The batch writer's thread alone: CPU per tick of data and write-ahead log per flush.

Simulates ``edgeprof attach`` of N containers × S series at R Hz for a given span of data
(default 30 × 28 at 10 Hz for 130 s: one whole 120 s chunk and its finalization) through
the real ``BatchWriter`` into a fresh SQLite file, one flush per 0.5 s of data, as fast as
the writer goes (no sleeping: the data of 0.5 s is queued, then ``flush()``). Measured per
flush: the writer thread's CPU time (``pthread_getcpuclockid``) and the bytes the flush
appended to the write-ahead log (automatic checkpoints off for the run, so the log only
grows; the timing pass keeps SQLite's defaults).

    python bench/writer.py [--containers 30] [--series 28] [--hz 10] [--seconds 130]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402,F401  (puts this tree's src first on sys.path)

from edgeprof.model import Sample  # noqa: E402
from edgeprof.store import BatchWriter, open_store  # noqa: E402
from edgeprof.store.base import RunInfo, TargetInfo  # noqa: E402

FLUSH_S = 0.5


def ticks(n_cont: int, n_series: int, hz: float, seconds: float) -> list[list[Sample]]:
    """Batches like the sampler's: one per tick, every series of every container."""
    rng = random.Random(1)
    step = int(1e9 / hz)
    t0 = 1_700_000_000 * 10**9
    labels = [(("target", f"c{c}"),) for c in range(n_cont)]
    state = [[0.0] * n_series for _ in range(n_cont)]
    out = []
    for k in range(int(seconds * hz)):
        t = t0 + k * step + rng.randint(-50_000, 50_000)
        batch = []
        for c in range(n_cont):
            st = state[c]
            for i in range(n_series):
                if i % 4 == 0:  # counters (bytes, ns)
                    st[i] += rng.randint(0, 4096)
                    v = st[i]
                elif i % 4 == 1:  # rates, percentages
                    v = rng.random() * 100
                elif i % 4 == 2:  # constants (limits)
                    v = 1024.0 * 1024 * 256
                else:  # gauges that move a little (memory)
                    v = 1e8 + rng.randint(-5, 5) * 4096
                batch.append(Sample(f"m{i}", labels[c], t, float(v)))
        out.append(batch)
    return out


def run(data: list[list[Sample]], per_flush: int, n_cont: int, wal_pass: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-writer-") as wd:
        db = os.path.join(wd, "w.db")
        store = open_store(f"sqlite:///{db}")
        if wal_pass:
            store.conn.execute("PRAGMA wal_autocheckpoint=0")
        run_id = store.begin_run(RunInfo("w", "i", data[0][0].t_ns, 0.1))
        w = BatchWriter(store, run_id, None, flush_s=3600.0)  # flushed by us only
        for c in range(n_cont):
            w.add_target(f"c{c}", store.begin_target(TargetInfo(run_id, c, f"c{c}", [])))
        w.flush()
        clock = time.pthread_getcpuclockid(w._thread.ident)  # type: ignore[arg-type]
        wal = db + "-wal"
        cpu: list[float] = []
        walb: list[int] = []
        for a in range(0, len(data), per_flush):
            for b in data[a : a + per_flush]:
                w.write(b)
            c0 = time.clock_gettime(clock)
            s0 = os.path.getsize(wal)
            w.flush()
            cpu.append(time.clock_gettime(clock) - c0)
            walb.append(os.path.getsize(wal) - s0)
        n = w.written()
        w.close()
        store.close()
    return {"cpu_s": cpu, "wal_bytes": walb, "samples": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--containers", type=int, default=30)
    ap.add_argument("--series", type=int, default=28)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=130.0)
    ap.add_argument("--json", dest="json_out", default=None)
    ns = ap.parse_args()
    data = ticks(ns.containers, ns.series, ns.hz, ns.seconds)
    per_flush = max(1, round(FLUSH_S * ns.hz))
    timing = run(data, per_flush, ns.containers, wal_pass=False)
    walp = run(data, per_flush, ns.containers, wal_pass=True)
    cpu, wal = timing["cpu_s"], walp["wal_bytes"]
    nf = len(cpu)
    first = slice(0, nf // 12)  # the first ~10 s of data
    chunk_f = int(120 / FLUSH_S)
    late = slice(max(0, chunk_f - nf // 12), chunk_f - 1)  # the last ~10 s before 120 s
    ms_tick = [1000 * c / per_flush for c in cpu]
    res = {
        "shape": f"{ns.containers} x {ns.series} at {ns.hz:g} Hz, {ns.seconds:g} s of data",
        "flushes": nf,
        "samples": timing["samples"],
        "ms_per_tick_mean": statistics.mean(ms_tick),
        "ms_per_tick_first_10s": statistics.mean(ms_tick[first]),
        "ms_per_tick_last_10s_of_chunk": statistics.mean(ms_tick[late]) if nf > chunk_f else None,
        "finalizing_flush_ms": max(1000 * c for c in cpu),
        "wal_kb_per_flush_median": statistics.median(wal) / 1024,
        "wal_kb_per_flush_first_10s": statistics.mean(wal[first]) / 1024,
        "wal_kb_per_flush_last_10s_of_chunk": statistics.mean(wal[late]) / 1024
        if nf > chunk_f
        else None,
        "wal_kb_finalizing_flush": max(wal) / 1024,
        "writer_pct_of_core": 100 * sum(cpu) / (nf * FLUSH_S),
    }
    for k, v in res.items():
        print(f"{k:36} {v:.3f}" if isinstance(v, float) else f"{k:36} {v}")
    if ns.json_out:
        Path(ns.json_out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
