"""Compare: time of ``edgeprof compare`` of two 1,000,000-sample runs (a benchmark: prints
figures, asserts nothing). Goal: < 2 s.

Two runs of one target, one repeat each (so every verdict is a block bootstrap, the
costly path), are written through the real ``BatchWriter`` into a fresh SQLite database
and compared through the store, in two shapes:

* 20 gauges of 50,000 samples each (a run's usual shape: many series), AR(1) values
  (φ = 0.9), run B's means 5 % higher;
* one gauge of 1,000,000 samples (the longest series: the bootstrap's worst case).

Timed: ``compare()`` in process (best of 3; reading, statistics and bootstrap), and the
CLI ``edgeprof compare A B --json`` in a subprocess (wall clock, best of 3).

    python bench/compare.py [--smoke]      # --smoke: 20,000 samples per run
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import EDGEPROF, banner, dump, parse_mode, table  # noqa: E402

GOAL_S = 2.0


def ar1(n: int, phi: float, seed: int, mu: float) -> Any:
    """AR(1) values (numpy only: the bench needs no scipy)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    e = rng.normal(size=n) * 5.0 * (1 - phi * phi) ** 0.5
    # x_t = φ x_{t-1} + e_t in blocks: x = φ^(t-s) x_s + Σ φ^(t-j) e_j within a block
    out = np.empty(n)
    prev = 0.0
    step = 256
    pw = phi ** np.arange(step)
    for s in range(0, n, step):
        blk = e[s : s + step]
        m = len(blk)
        # convolution of the block with φ^k, plus the carried state
        conv = np.convolve(blk, pw[:m])[:m]
        out[s : s + m] = conv + prev * phi * pw[:m]
        prev = out[s + m - 1]
    return mu + out


def write_run(db: str, n_series: int, per_series: int, shift: float, seed: int) -> int:
    from edgeprof.model import MetricSpec, Sample
    from edgeprof.store import BatchWriter, open_store
    from edgeprof.store.base import RunInfo, TargetInfo

    store = open_store(db)
    rid = store.begin_run(
        RunInfo(spec_name="bench-compare", image="synthetic", started_ns=1, interval_s=0.01)
    )
    tid = store.begin_target(TargetInfo(rid, 0, "app", [], {"repeat_index": 0}))
    w = BatchWriter(store, rid, tid)
    names = [f"bench.gauge{i:02d}" for i in range(n_series)]
    w.describe([MetricSpec(m, "%", "gauge") for m in names])
    vals = [
        ar1(per_series, 0.9, seed * 1000 + i, 50.0 * (1 + shift)).tolist() for i in range(n_series)
    ]
    t0 = time.time_ns()
    for k0 in range(0, per_series, 5000):
        batch = [
            Sample(m, (), t0 + k * 10_000_000, v[k])
            for k in range(k0, min(per_series, k0 + 5000))
            for m, v in zip(names, vals, strict=True)
        ]
        w.write(batch)
    w.close()
    store.update_target(tid, status="exited", exit_code=0)
    store.end_run(rid, "completed", time.time_ns())
    store.close()
    return rid


def time_compare(db: str, a: int, b: int) -> tuple[float, dict[str, Any]]:
    from edgeprof.analyze.compare import compare
    from edgeprof.store import open_store

    best = float("inf")
    doc: dict[str, Any] = {}
    for _ in range(3):
        store = open_store(db, readonly=True)
        t0 = time.perf_counter()
        c = compare(store, a, b)
        best = min(best, time.perf_counter() - t0)
        store.close()
        doc = c.to_json()
    return best, doc


def time_cli(db: str, a: int, b: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        p = subprocess.run(
            [*EDGEPROF, "compare", str(a), str(b), "--db", db, "--json"],
            capture_output=True,
            text=True,
        )
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-500:])
        json.loads(p.stdout)
        best = min(best, dt)
    return best


def run(n_samples: int) -> dict[str, Any]:
    shapes = [(20, n_samples // 20), (1, n_samples)]
    out: dict[str, Any] = {"samples_per_run": n_samples, "shapes": []}
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-compare-") as wd:
        for n_series, per in shapes:
            db = f"sqlite:///{os.path.join(wd, f'c{n_series}.db')}"
            a = write_run(db, n_series, per, 0.0, 1)
            b = write_run(db, n_series, per, 0.05, 2)
            lib, doc = time_compare(db, a, b)
            cli = time_cli(db, a, b)
            stats = [s for t in doc["targets"] for m in t["metrics"].values() for s in m.values()]
            out["shapes"].append(
                {
                    "series": n_series,
                    "per_series": per,
                    "compare_s": lib,
                    "cli_s": cli,
                    "verdicts": len(stats),
                    "significant": sum(bool(s["significant"]) for s in stats),
                    "method": doc["method"],
                    "block_lengths": sorted(
                        {
                            L
                            for s in stats
                            for L in (*s.get("block_length_a", []), *s.get("block_length_b", []))
                        }
                    ),
                }
            )
    return out


def print_compare(res: dict[str, Any]) -> None:
    banner(f"Compare: two runs of {res['samples_per_run']:,} samples each, one repeat (bootstrap)")
    rows = []
    for s in res["shapes"]:
        shape = f"{s['series']} series x {s['per_series']:,}"
        for what, v in (
            ("compare() in process (s)", s["compare_s"]),
            ("`edgeprof compare --json`, wall (s)", s["cli_s"]),
        ):
            rows.append([shape, what, v, f"< {GOAL_S:g}", "met" if v < GOAL_S else "MISSED"])
    table(["runs", "what", "time", "goal", ""], rows)
    for s in res["shapes"]:
        print(
            f"{s['series']} series: {s['verdicts']} verdicts ({s['method']}), "
            f"{s['significant']} significant (B's means are 5 % higher), "
            f"block lengths {s['block_lengths']}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ns = parse_mode(__doc__ or "", argv)
    res = run(20_000 if ns.mode == "smoke" else 1_000_000)
    print_compare(res)
    dump(ns.json_out, res)
    return res


if __name__ == "__main__":
    main()
