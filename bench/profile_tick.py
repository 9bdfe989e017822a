"""Profile one sampler tick with every group on (container, system, process).

Starts a busy container, opens the real collectors on it the way the runner does, and runs
``Sampler.tick`` N times back to back: prints the cost per tick, and with --profile the
pyinstrument (or cProfile) profile of the hot path.

    python bench/profile_tick.py [--ticks 3000] [--profile]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BUSY_CMD, container, container_pid  # noqa: E402


def open_collectors(cid: str, pid: int) -> list:
    """The collectors the registry gives a container with these groups, opened."""
    from edgeprof.cgroups import find_cgroup
    from edgeprof.collect.base import CollectContext
    from edgeprof.collect.registry import GroupEnv, selected
    from edgeprof.hostinfo import detect
    from edgeprof.model import labels_of

    ctx = CollectContext(
        target="t",
        labels=labels_of(target="t"),
        interval_s=0.01,
        container_id=cid,
        pid=pid,
        cgroup=find_cgroup(pid),
    )
    env = GroupEnv(caps=detect())
    cols = []
    for g in selected(["container", "system", "process"]):
        if g.phase == "after_start":
            cols += g.factory(env)
    for c in cols:
        c.open(ctx)
    return cols


def per_tick(cols: list, n: int) -> tuple[float, float, int]:
    """(wall µs per tick, thread CPU µs per tick, samples per tick)."""
    from edgeprof.model import Clock
    from edgeprof.sampler import Sampler
    from edgeprof.sinks import NullSink

    s = Sampler(cols, 0.01, Clock(), NullSink())
    got = len(s.tick(time.time_ns()))
    c0, w0 = time.thread_time(), time.perf_counter()
    for _ in range(n):
        s.tick(time.time_ns())
    return (time.perf_counter() - w0) / n * 1e6, (time.thread_time() - c0) / n * 1e6, got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ticks", type=int, default=3000)
    ap.add_argument("--profile", action="store_true")
    ns = ap.parse_args()
    with container(BUSY_CMD) as cid:
        pid = container_pid(cid)
        time.sleep(0.5)
        cols = open_collectors(cid, pid)
        for c in cols:
            w, cpu, _ = per_tick([c], ns.ticks)
            print(f"{type(c).__name__:18s} {w:8.1f} µs wall  {cpu:8.1f} µs CPU per tick")
        w, cpu, n = per_tick(cols, ns.ticks)
        print(
            f"{'all (Sampler.tick)':18s} {w:8.1f} µs wall  {cpu:8.1f} µs CPU per tick,"
            f" {n} samples; at 100 Hz = {cpu * 100 / 1e4:.2f} % of a core"
        )
        if ns.profile:
            try:
                from pyinstrument import Profiler
            except ImportError:
                import cProfile
                import pstats

                pr = cProfile.Profile()
                pr.runcall(per_tick, cols, ns.ticks)
                pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
            else:
                p = Profiler(interval=0.0001)
                p.start()
                per_tick(cols, ns.ticks)
                p.stop()
                print(p.output_text(unicode=False, color=False, show_all=False))
        for c in cols:
            c.close()


if __name__ == "__main__":
    main()
