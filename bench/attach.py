"""Cost of ``edgeprof attach`` on N = 1, 10, 30 busy containers, against ``docker stats``.

Each container is a busybox CPU burner limited to ``--cpus 0.05`` (30 of them fit on two
cores). For each N, over windows of the same length and with the same containers running:

* idle: no tool, the engine's (dockerd + containerd + shims) CPU: the baseline;
* ``edgeprof attach NAMES… -i 1`` and ``-i 0.1`` (groups container + system, SQLite);
* ``docker stats NAMES…`` streaming (the CLI asks the daemon for every container's stats
  stream; with only the bench's containers running that is ``docker stats`` of all).

Each tool's own CPU (its process and children) and the engine's CPU above the idle
baseline ("on its behalf") are measured with psutil over the window (see ``_common``);
start-up is excluded (the window starts after a settle time).

    python bench/attach.py [--quick|--smoke] [--json FILE]
"""

from __future__ import annotations

import argparse
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BENCH_LABEL,
    EDGEPROF,
    Window,
    banner,
    docker,
    dump,
    parse_mode,
    table,
)

BUSYBOX = "edgeprof-test/busybox:latest"
BURN = ["sh", "-c", "while :; do :; done"]
CPUS = 0.05
SETTLE = 3.0
GOAL_10HZ_30 = 5.0


def start_burners(n: int) -> list[str]:
    tag = secrets.token_hex(3)
    names = []
    for i in range(n):
        name = f"ep-bench-attach-{tag}-{i}"
        docker(
            "run", "-d", "--name", name, "--network", "none", "--label", BENCH_LABEL,
            "--cpus", str(CPUS), BUSYBOX, *BURN,
        )  # fmt: skip
        names.append(name)
    return names


def remove(names: list[str]) -> None:
    if names:
        docker("rm", "-f", *names, check=False)


def measure_idle(window: float) -> Window:
    return Window([]).measure(window)


def measure_edgeprof(names: list[str], hz: int, window: float, workdir: str) -> Window:
    db = Path(workdir) / f"attach-{len(names)}-{hz}-{secrets.token_hex(2)}.db"
    p = subprocess.Popen(
        [*EDGEPROF, "attach", *names, "-i", str(1.0 / hz), "-q", "--db", f"sqlite:///{db}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(SETTLE + min(0.05 * len(names), 3.0))  # imports, attaching, first ticks
        if p.poll() is not None:
            raise RuntimeError(
                f"edgeprof attach ended early: {p.stderr.read() if p.stderr else ''}"
            )
        w = Window([p.pid]).measure(window)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            _, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
    if p.returncode != 130:
        raise RuntimeError(f"edgeprof attach exited {p.returncode}: {err[-2000:]}")
    return w


def measure_docker_stats(names: list[str], window: float) -> Window:
    p = subprocess.Popen(
        ["docker", "stats", "--format", "{{json .}}", *names],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(SETTLE)
        w = Window([p.pid]).measure(window)
    finally:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return w


def run(window: float, ns_: tuple[int, ...], rates: tuple[int, ...]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-attach-") as wd:
        for n in ns_:
            names: list[str] = []
            try:
                names = start_burners(n)
                time.sleep(SETTLE)
                idle = measure_idle(window)
                idle_rate = idle.engine_cpu / idle.wall
                peer = measure_docker_stats(names, window)
                peer_engine = max(0.0, 100.0 * (peer.engine_cpu / peer.wall - idle_rate))
                peer_total = peer.tool_pct + peer_engine
                for hz in rates:
                    w = measure_edgeprof(names, hz, window, wd)
                    engine = max(0.0, 100.0 * (w.engine_cpu / w.wall - idle_rate))
                    rows.append(
                        {
                            "n": n,
                            "hz": hz,
                            "edgeprof_pct": w.tool_pct,
                            "engine_pct": engine,
                            "total_pct": w.tool_pct + engine,
                            "docker_stats_pct": peer.tool_pct,
                            "docker_stats_engine_pct": peer_engine,
                            "docker_stats_total_pct": peer_total,
                            "idle_engine_pct": 100.0 * idle_rate,
                            "window_s": w.wall,
                        }
                    )
            finally:
                remove(names)
    return {"window_s": window, "cpus_each": CPUS, "rows": rows}


def print_table(res: dict[str, Any]) -> None:
    banner(
        f"attach: CPU, % of one core, N busybox burners at --cpus {res['cpus_each']:g}, "
        f"{res['window_s']:g} s windows"
    )
    out = []
    for r in res["rows"]:
        ratio = r["docker_stats_total_pct"] / r["total_pct"] if r["total_pct"] > 0 else None
        goal = ""
        if r["hz"] == 1:
            goal = "< docker stats: " + (
                "met" if r["total_pct"] < r["docker_stats_total_pct"] else "MISSED"
            )
        elif r["hz"] == 10 and r["n"] == 30:
            goal = f"< {GOAL_10HZ_30:g}: " + ("met" if r["total_pct"] < GOAL_10HZ_30 else "MISSED")
        out.append(
            [
                r["n"],
                f"{r['hz']} Hz",
                r["edgeprof_pct"],
                r["engine_pct"],
                r["total_pct"],
                r["docker_stats_pct"],
                r["docker_stats_engine_pct"],
                r["docker_stats_total_pct"],
                f"{ratio:.1f}x" if ratio is not None else "-",
                goal,
            ]
        )
    table(
        [
            "N",
            "rate",
            "edgeprof %",
            "engine %",
            "total %",
            "docker stats %",
            "its engine %",
            "docker stats total %",
            "stats / edgeprof",
            "goal",
        ],
        out,
    )
    if res["window_s"] < 10:
        print("(windows this short only show that it works; one 10 ms CPU tick is 0.33 %)")
    print("(engine % = dockerd + containerd + shims above the idle baseline of the same N)")


def _sizes_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--n",
        dest="sizes",
        type=int,
        action="append",
        metavar="N",
        help="measure only N containers (repeatable; default 1, 10 and 30)",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ns = parse_mode(__doc__ or "", argv, _sizes_option)
    if ns.sizes:
        res = run(ns.window, tuple(ns.sizes), (1, 10))
    elif ns.mode == "smoke":
        res = run(ns.window, (1, 3), (1, 10))
    else:
        res = run(ns.window, (1, 10, 30), (1, 10))
    print_table(res)
    dump(ns.json_out, res)
    return res


if __name__ == "__main__":
    main()
