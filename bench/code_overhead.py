"""What py-spy (``profiling.code.python``) costs the app it profiles.

One CPU-bound Python target (it prints its own iterations per second) runs in a container
limited to one CPU; phases of ``--phase`` seconds alternate without and with the ``code``
collector at ``--rate`` Hz (py-spy from the host, one-second windows, ``--nonblocking``;
``--blocking`` also measures py-spy's default, which pauses the app at each sample). For
each mode it prints the app's throughput (the median of its half-second reports), the container's ``cpu.percent`` (its cgroup's
CPU time over the phase) and py-spy's own CPU (the collector's child processes), and the
ratio of throughputs measured in this same run. ``--process`` runs the app as a plain
process instead (a machine without an engine; its CPU from ``/proc``). For the py-spy modes
it also prints the coverage: samples taken ÷ (rate × the seconds the collector was open),
and how far apart the one-second windows start (median and max).

    python bench/code_overhead.py [--phase 5] [--rounds 6] [--rate 100] [--blocking]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
from edgeprof.cgroups import find_cgroup  # noqa: E402
from edgeprof.codeprof import collector as collmod  # noqa: E402
from edgeprof.codeprof import pyspy as pyspymod  # noqa: E402
from edgeprof.collect.base import CollectContext  # noqa: E402
from edgeprof.model import Clock  # noqa: E402
from edgeprof.stats import percentile  # noqa: E402

os.environ.setdefault("DOCKER_HOST", "unix:///tmp/edgeprof-engine/docker.sock")

APP = r"""
import sys, time
def work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
it, t0 = 0, time.time()
while True:
    work(2000)
    it += 1
    now = time.time()
    if now - t0 >= 0.5:
        print(f"{now:.6f} {it / (now - t0):.3f}", flush=True)
        it, t0 = 0, now
"""


@dataclass
class Phase:
    mode: str
    t0: float
    t1: float
    cpu_s: float  # the container's CPU time (its cgroup)
    pyspy_cpu_s: float  # py-spy's CPU time (the collector's children)
    samples: int = 0  # stacks' samples the collector emitted
    open_s: float = 0.0  # how long the collector was open
    starts: tuple[int, ...] = ()  # the windows' start times (ns)


def cgroup_cpu_s(pid: int) -> float:
    cg = find_cgroup(pid)
    if cg.version == 1:
        with open(f"{cg.dir_for('cpuacct')}/cpuacct.usage") as f:
            return int(f.read()) / 1e9
    with open(f"{cg.unified}/cpu.stat") as f:
        return int(re.search(r"usage_usec (\d+)", f.read())[1]) / 1e6  # type: ignore[index]


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", type=float, default=5.0, help="seconds per phase")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rate", type=int, default=100)
    ap.add_argument("--cpus", default="1")
    ap.add_argument("--blocking", action="store_true", help="also py-spy without --nonblocking")
    ap.add_argument("--image", default="edgeprof-test/python:latest")
    ap.add_argument(
        "--process", action="store_true", help="no engine: run the app as a plain process"
    )
    ap.add_argument(
        "--no-nsenter",
        action="store_true",
        help="py-spy from the host even on a container (its idle filter then counts sleep)",
    )
    a = ap.parse_args()
    binary = pyspymod.find_pyspy()
    if binary is None:
        sys.exit("py-spy is not installed: pip install 'edgeprof[code]'")
    modes = ["off", "py-spy --nonblocking"] + (["py-spy (blocking)"] if a.blocking else [])
    phases: list[Phase] = []
    if a.process:  # no engine: the app as a plain process (its CPU from /proc)
        app = subprocess.Popen(
            [sys.executable, "-c", APP], stdout=subprocess.PIPE, text=True
        )  # fmt: skip
        pid, cid = app.pid, ""
        cpu_s = lambda: proc_cpu_s(pid)  # noqa: E731
        ctx_cgroup = None
    else:
        cid = subprocess.run(
            ["docker", "run", "-d", "--cpus", a.cpus, "--entrypoint", "python3", a.image,
             "-c", APP], capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        pid = int(subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", cid],
                                 capture_output=True, text=True, check=True).stdout)  # fmt: skip
        cpu_s = lambda: cgroup_cpu_s(pid)  # noqa: E731
        ctx_cgroup = find_cgroup(pid)
    try:
        time.sleep(2.0)  # warm up
        for _ in range(a.rounds):
            for mode in modes:
                c0, p0, t0 = cpu_s(), children_cpu_s(), time.time()
                coll = None
                rows: list = []
                if mode != "off":
                    coll = collmod.PySpyCollector(
                        binary, a.rate, nonblocking="blocking)" not in mode,
                        enter=not a.no_nsenter,
                    )  # fmt: skip
                    m0 = time.monotonic()
                    coll.open(CollectContext(target="b", clock=Clock(), pid=pid, cgroup=ctx_cgroup,
                                             emit_code=rows.extend))  # fmt: skip
                time.sleep(a.phase)
                open_s = 0.0
                if coll is not None:
                    coll.close()
                    open_s = time.monotonic() - m0
                phases.append(Phase(mode, t0, time.time(), cpu_s() - c0, children_cpu_s() - p0,
                                    sum(r.count for r in rows), open_s,
                                    tuple(sorted({r.t_ns for r in rows}))))  # fmt: skip
        if a.process:
            app.kill()
            logs = app.communicate()[0]
        else:
            logs = subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stdout
    finally:
        if a.process:
            app.kill()
        else:
            subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
    points = [(float(t), float(v)) for t, v in (ln.split() for ln in logs.splitlines() if ln)]
    where = "a plain process" if a.process else f"a container, --cpus {a.cpus}"
    print(f"CPU-bound Python target in {where}, py-spy at {a.rate} Hz, "
          f"{a.rounds} rounds of {a.phase:g} s per mode\n")  # fmt: skip
    print(f"{'mode':<24}{'app it/s':>12}{'app cpu %':>18}{'py-spy cpu %':>15}")
    base = None
    for mode in modes:
        ps = [p for p in phases if p.mode == mode]
        # the app's own reports inside each phase (first report skipped: it spans the switch)
        vals = [v for p in ps for i, (t, v) in enumerate(
            [x for x in points if p.t0 < x[0] <= p.t1]) if i > 0]  # fmt: skip
        thr = percentile(sorted(vals), 0.5)  # the median: robust to other load's bursts
        dur = sum(p.t1 - p.t0 for p in ps)
        cpu = 100 * sum(p.cpu_s for p in ps) / dur
        spy = 100 * sum(p.pyspy_cpu_s for p in ps) / dur
        base = base or thr
        print(f"{mode:<24}{thr:>12.1f}{cpu:>18.1f}{spy:>15.1f}")
        if mode != "off":
            print(
                f"  throughput ratio vs off: {thr / base:.4f}  (drop {100 * (1 - thr / base):.2f} %)"
            )
            cover = sum(p.samples for p in ps) / (a.rate * sum(p.open_s for p in ps))
            gaps = sorted(
                (b - x) / 1e9 for p in ps for x, b in zip(p.starts, p.starts[1:], strict=False)
            )
            if gaps:
                print(
                    f"  coverage: {100 * cover:.1f} % of rate × open time; windows start "
                    f"{percentile(gaps, 0.5):.3f} s apart (median), {gaps[-1]:.3f} s (max)"
                )


if __name__ == "__main__":
    main()
