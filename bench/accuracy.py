"""Accuracy: CPU and memory reported by edgeprof, `docker stats` and psrecord, watching the
same container at the same time, against ground truth.

Cases (each one container started by `edgeprof run`; docker stats and psrecord attach to it):
  cpu-load-50   stress-ng --cpu 1 --cpu-load 50              truth: 50 % of a core
  cpus-limit    stress-ng --cpu 2, resources.cpus 0.75        truth: 75 % (the quota)
  mem-200MiB    python holding a 200 MiB bytes object        truth: 200 MiB + interpreter
  burst         python: 200 ms of full CPU every 2 s         truth: mean 10 %, peak 100 %
edgeprof samples at 10 Hz (100 Hz for the burst); docker stats at its 1 Hz; psrecord at 1 Hz
and 10 Hz. Burst "seen" = share of the CPU-seconds a tool reports in samples at >= 50 %
(i.e. recognisable as a burst; a 1 s average turns a 200 ms burst into a 20 % blip).

    python bench/accuracy.py [--quick|--smoke]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DockerStats, Psrecord, banner, dump, mean, parse_mode, start_edgeprof, table  # noqa: E402

MIB = 1024 * 1024
BURST = (
    "import time\n"
    "t = time.monotonic()\n"
    "while True:\n"
    "    e = t + 0.2\n"
    "    while time.monotonic() < e: pass\n"
    "    t += 2.0\n"
    "    time.sleep(max(0.0, t - time.monotonic()))\n"
)
MEM = "import time\nx = b'\\x01' * (200 << 20)\ntime.sleep(3600)\n"

CASES: list[dict[str, Any]] = [
    {
        "name": "cpu-load-50",
        "args": ["stress-ng", "--cpu", "1", "--cpu-load", "50"],
        "truth_cpu": 50.0,
    },
    {"name": "cpus-limit", "args": ["stress-ng", "--cpu", "2"], "cpus": 0.75, "truth_cpu": 75.0},
    {"name": "mem-200MiB", "args": ["python3", "-c", MEM], "truth_mem": 200 * MIB},
    {
        "name": "burst",
        "args": ["python3", "-c", BURST],
        "truth_cpu": 10.0,
        "burst": True,
        "hz": 100,
    },
]


def _in(rows: list[tuple[float, float]], t0: float, t1: float) -> list[float]:
    return [v for t, v in rows if t0 <= t <= t1]


def _burst_seen(vals: list[float]) -> float:
    tot = sum(vals)
    return 100.0 * sum(v for v in vals if v >= 50.0) / tot if tot > 0 else float("nan")


def run_case(wd: str, case: dict[str, Any], window: float) -> dict[str, Any]:
    hz = case.get("hz", 10)
    settle = 2.0
    ep = start_edgeprof(
        wd,
        f"acc-{case['name']}",
        case["args"],
        1.0 / hz,
        timeout=settle + window + 3.0,
        metrics=("container",),
        cpus=case.get("cpus"),
    )
    ds = DockerStats(ep.container_id)
    p1 = Psrecord(ep.container_pid, 1.0, wd)
    p10 = Psrecord(ep.container_pid, 0.1, wd)
    time.sleep(settle)
    t0 = time.time()
    time.sleep(window)
    t1 = time.time()
    for p in (ds, p1, p10):
        p.stop()
    ep.wait()
    tools: dict[str, dict[str, list[float]]] = {
        f"edgeprof {hz} Hz": {
            "cpu": _in(ep.samples("cpu.percent"), t0, t1),
            "mem": _in(ep.samples("memory.working_set_bytes"), t0, t1),
        },
        "docker stats 1 Hz": {
            "cpu": _in([(r[0], r[1]) for r in ds.rows], t0, t1),
            "mem": _in([(r[0], r[2]) for r in ds.rows], t0, t1),
        },
    }
    for label, pr in (("psrecord 1 Hz", p1), ("psrecord 10 Hz", p10)):
        rows = pr.rows()
        tools[label] = {
            "cpu": _in([(pr.t_start + r[0], r[1]) for r in rows], t0, t1),
            "mem": _in([(pr.t_start + r[0], r[2]) for r in rows], t0, t1),
        }
    out = {"case": case["name"], "window_s": window, "tools": {}}
    for label, d in tools.items():
        out["tools"][label] = {
            "n": len(d["cpu"]),
            "cpu_mean": mean(d["cpu"]),
            "cpu_max": max(d["cpu"]) if d["cpu"] else float("nan"),
            "mem_mean_mib": mean(d["mem"]) / MIB if d["mem"] else float("nan"),
            "burst_seen_pct": _burst_seen(d["cpu"]),
        }
    return out


def run(window: float) -> dict[str, Any]:
    res: dict[str, Any] = {"window_s": window, "cases": []}
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-") as wd:
        for case in CASES:
            r = run_case(wd, case, window)
            r["truth_cpu"] = case.get("truth_cpu")
            r["truth_mem_mib"] = case["truth_mem"] / MIB if "truth_mem" in case else None
            r["burst"] = bool(case.get("burst"))
            res["cases"].append(r)
    return res


def print_accuracy(res: dict[str, Any]) -> None:
    banner(f"3. Accuracy: same container, same {res['window_s']:g} s window")
    rows = []
    for c in res["cases"]:
        for label, t in c["tools"].items():
            if c["burst"]:
                rows.append(
                    [
                        c["case"],
                        label,
                        t["n"],
                        t["cpu_mean"],
                        "10.0",
                        t["cpu_max"],
                        "100",
                        t["burst_seen_pct"],
                        "-",
                        "-",
                    ]
                )
            elif c["truth_mem_mib"]:
                rows.append(
                    [
                        c["case"],
                        label,
                        t["n"],
                        t["cpu_mean"],
                        "-",
                        t["cpu_max"],
                        "-",
                        "-",
                        t["mem_mean_mib"],
                        f"{c['truth_mem_mib']:g}",
                    ]
                )
            else:
                rows.append(
                    [
                        c["case"],
                        label,
                        t["n"],
                        t["cpu_mean"],
                        f"{c['truth_cpu']:g}",
                        t["cpu_max"],
                        "-",
                        "-",
                        t["mem_mean_mib"],
                        "-",
                    ]
                )
    table(
        [
            "case",
            "tool",
            "samples",
            "cpu % mean",
            "truth",
            "cpu % max",
            "truth",
            "burst seen %",
            "mem MiB",
            "truth",
        ],
        rows,
    )
    print(
        "(edgeprof memory = memory.working_set_bytes, as docker stats computes it; "
        "psrecord = RSS sum of the processes; mem truth excludes the interpreter)"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ns = parse_mode(__doc__ or "", argv)
    res = run(ns.window)
    print_accuracy(res)
    dump(ns.json_out, res)
    return res


if __name__ == "__main__":
    main()
