"""Does profiling slow an app that logs heavily? (a benchmark: prints figures, asserts nothing)

The same app — Python printing N lines as fast as it can and timing itself — runs under:
plain ``docker run`` (the peer, json-file driver, default blocking mode), ``edgeprof run``
with the same driver, and ``edgeprof run`` with ``log: {mode: non-blocking,
max_buffer_size: 4m}``. edgeprof reads a container's log once, after it exited, so the
app's own lines/s should match the peer's; the non-blocking mode shows what the driver's
buffer buys on top (and how many lines the driver dropped for it).

    python bench/logs.py [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from _common import EDGEPROF, PY_IMAGE, docker, table

APP = (
    "import sys,time\n"
    "n=int(sys.argv[1]); t=time.perf_counter(); w=sys.stdout.write\n"
    "for i in range(n): w(f'log line {i:08d} with some payload to look like an app\\n')\n"
    "sys.stdout.flush(); e=time.perf_counter()-t\n"
    "time.sleep(1)  # let a non-blocking log buffer drain before the line that matters\n"
    "sys.stderr.write(f'ELAPSED {e:.6f}\\n')\n"
)


def _elapsed(text: str) -> float:
    m = re.search(r"ELAPSED ([0-9.]+)", text)
    if m is None:
        raise RuntimeError(f"no ELAPSED line in: {text[-300:]}")
    return float(m.group(1))


def plain(n: int) -> tuple[float, int]:
    cid = docker("run", "-d", "--network", "none", PY_IMAGE, "python3", "-c", APP, str(n)).strip()
    try:
        docker("wait", cid)
        res = subprocess.run(["docker", "logs", cid], capture_output=True, text=True)
        return _elapsed(res.stderr), res.stdout.count("log line ")
    finally:
        docker("rm", "-f", cid, check=False)


def profiled(n: int, wd: str, non_blocking: bool) -> tuple[float, int]:
    spec = os.path.join(wd, "logs.yaml")
    log = "        log: {mode: non-blocking, max_buffer_size: 4m}\n" if non_blocking else ""
    with open(spec, "w") as f:
        f.write(
            f"name: logs\nimage: {PY_IMAGE}\nrun: {{network: none}}\nprofiling:\n"
            f"  interval: 0.1\n  targets:\n    - name: app\n"
            f"      args: {json.dumps(['python3', '-c', APP, str(n)])}\n"
            + (f"      run:\n{log}" if log else "")
        )
    db = f"sqlite:///{wd}/logs.db"
    subprocess.run([*EDGEPROF, "run", spec, "--db", db, "--quiet"], check=True, capture_output=True)
    out = subprocess.run(
        [*EDGEPROF, "logs", "latest", "--db", db], capture_output=True, text=True
    ).stdout
    return _elapsed(out), out.count("log line ")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="fewer lines (CI)")
    args = ap.parse_args()
    n = 20_000 if args.smoke else 500_000
    rounds = 1 if args.smoke else 3
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgeprof-bench-") as wd:
        peer, peer_kept = min(plain(n) for _ in range(rounds))
        rows.append(["docker run (peer), json-file, blocking", n / peer, "1.00", peer_kept])
        for nb in (False, True):
            best, kept = min(profiled(n, wd, nb) for _ in range(rounds))
            label = "edgeprof run, " + (
                "non-blocking, 4 MiB buffer" if nb else "json-file, blocking"
            )
            rows.append([label, n / best, f"{peer / best:.2f}", kept])
    print(f"\n=== an app printing {n:,} lines as fast as it can (best of {rounds}) ===")
    table(["how it ran", "app lines/s", "speed vs peer", "lines stored"], rows)
    print("speed vs peer: the app's own lines/s divided by the peer's (1.00 = not slowed)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
