"""Shared helpers for the benchmarks: modes, the engine, specs, CPU meters, peers, tables.

These are scripts, not tests: they print numbers and never assert on timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
from edgeprof.stats import mean, percentile  # noqa: E402

__all__ = ["mean"]  # re-exported for the benchmarks

os.environ.setdefault("DOCKER_HOST", "unix:///tmp/edgeprof-engine/docker.sock")

ENGINE_PID_FILE = "/tmp/edgeprof-engine/dockerd.pid"
PY_IMAGE = "edgeprof-test/python:latest"
# The CLI exactly as users run it; `edgeprof` on PATH is a pyenv bash shim, so start the
# interpreter directly to have the profiler's own pid.
EDGEPROF = [sys.executable, "-m", "edgeprof.cli.main"]
BENCH_LABEL = "edgeprof-bench=1"
BUSY_CMD = ["stress-ng", "--cpu", "1", "--cpu-load", "50"]

WINDOWS = {"full": 60.0, "quick": 15.0, "smoke": 3.0}


def parse_mode(
    description: str,
    argv: Sequence[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    if extra is not None:
        extra(ap)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="15 s windows instead of 60 s")
    g.add_argument("--smoke", action="store_true", help="a few seconds each (CI)")
    ap.add_argument("--window", type=float, default=None, help="override the window (s)")
    ap.add_argument("--json", dest="json_out", default=None, help="also write results here")
    ns = ap.parse_args(argv)
    ns.mode = "smoke" if ns.smoke else "quick" if ns.quick else "full"
    ns.window = ns.window or WINDOWS[ns.mode]
    return ns


def banner(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_fmt(c) for c in r] for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)))
    sys.stdout.flush()


def _fmt(c: Any) -> str:
    if c is None:
        return "-"
    if isinstance(c, float):
        if c != c:
            return "-"
        a = abs(c)
        return f"{c:.3f}" if a < 10 else f"{c:.1f}" if a < 1000 else f"{c:,.0f}"
    return str(c)


def ratio(peer: float | None, ours: float | None) -> str:
    if peer is None or ours is None:
        return "-"
    if ours <= 0:
        return "inf" if peer > 0 else "-"
    return f"{peer / ours:.1f}x"


def pct(vals: Sequence[float], q: float) -> float:
    """The percentile edgeprof uses everywhere (edgeprof.stats)."""
    return percentile(sorted(vals), q)


# -- docker ------------------------------------------------------------------------------


def docker(*args: str, check: bool = True) -> str:
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {p.stderr.strip()}")
    return p.stdout.strip()


def run_container(cmd: Sequence[str], cpus: float | None = None) -> str:
    extra = ["--cpus", str(cpus)] if cpus else []
    return docker("run", "-d", "--network", "none", "--label", BENCH_LABEL, *extra, PY_IMAGE, *cmd)


def container_pid(cid: str) -> int:
    return int(docker("inspect", "-f", "{{.State.Pid}}", cid))


def remove(cid: str) -> None:
    docker("rm", "-f", cid, check=False)


@contextlib.contextmanager
def container(cmd: Sequence[str], cpus: float | None = None) -> Iterator[str]:
    cid = run_container(cmd, cpus)
    try:
        yield cid
    finally:
        remove(cid)


def docker_version() -> str:
    return docker("version", "--format", "{{.Server.Version}}", check=False) or "unknown"


# -- CPU meters --------------------------------------------------------------------------


def engine_pids() -> list[int]:
    """dockerd, containerd and the containerd shims: everything the engine runs."""
    out = []
    with contextlib.suppress(OSError, ValueError), open(ENGINE_PID_FILE) as f:
        out.append(int(f.read().strip()))
    for p in psutil.process_iter(["name"]):
        n = p.info["name"] or ""
        if n.startswith("containerd") and p.pid not in out:
            out.append(p.pid)
    return out


def cpu_snapshot(pids: Sequence[int], children: bool = False) -> dict[int, float]:
    snap: dict[int, float] = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            t = p.cpu_times()
            v = t.user + t.system
            if children:
                v += t.children_user + t.children_system
            snap[pid] = v
        except psutil.Error:
            continue
    return snap


def cpu_delta(a: dict[int, float], b: dict[int, float]) -> float:
    return sum(b[p] - a[p] for p in a if p in b)


@dataclass
class Window:
    """CPU seconds used by a tool's process(es) and by the engine over one wall window."""

    tool_pids: list[int]
    t0: float = 0.0
    wall: float = 0.0
    tool_cpu: float = 0.0
    engine_cpu: float = 0.0
    _a: dict[int, float] = field(default_factory=dict)
    _e: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self._e = cpu_snapshot(engine_pids())
        self._a = cpu_snapshot(self.tool_pids, children=True)
        self.t0 = time.monotonic()

    def stop(self) -> None:
        b = cpu_snapshot(self.tool_pids, children=True)
        e = cpu_snapshot(list(self._e))
        self.wall = time.monotonic() - self.t0
        self.tool_cpu = cpu_delta(self._a, b)
        self.engine_cpu = cpu_delta(self._e, e)

    def measure(self, seconds: float) -> Window:
        self.start()
        time.sleep(seconds)
        self.stop()
        return self

    @property
    def tool_pct(self) -> float:
        return 100.0 * self.tool_cpu / self.wall if self.wall else float("nan")

    @property
    def engine_pct(self) -> float:
        return 100.0 * self.engine_cpu / self.wall if self.wall else float("nan")


# -- edgeprof ----------------------------------------------------------------------------


def write_spec(
    path: str,
    name: str,
    args: Sequence[str],
    interval: float,
    timeout: float,
    metrics: Sequence[str] = ("container", "system", "process"),
    cpus: float | None = None,
) -> str:
    target: dict[str, Any] = {"name": "t", "args": list(args), "timeout": timeout}
    if cpus:
        target["resources"] = {"cpus": cpus}
    spec = {
        "name": name,
        "image": PY_IMAGE,
        "run": {"network": "none"},
        "profiling": {
            "interval": interval,
            "metrics": list(metrics),
            "targets": [target],
            "app_metrics": {"socket": False, "pywaggle": False},
        },
    }
    with open(path, "w") as f:
        json.dump(spec, f)  # JSON is YAML
    return path


@dataclass
class EdgeprofRun:
    proc: subprocess.Popen[str]
    db_path: str
    spec_name: str
    container_id: str = ""
    container_pid: int = 0
    started_wall: float = 0.0

    def wait(self, timeout: float = 120) -> int:
        try:
            self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            self.proc.communicate(timeout=30)
        return self.proc.returncode

    @contextlib.contextmanager
    def store(self) -> Iterator[Any]:
        """The run's database through edgeprof's own store (read-only), never raw SQL."""
        from edgeprof.store import open_store

        s = open_store(f"sqlite:///{self.db_path}", readonly=True)
        try:
            yield s
        finally:
            s.close()

    def run_id(self) -> int:
        with self.store() as s:
            return s.resolve_run("latest").id

    def timing(self) -> dict[str, float]:
        with self.store() as s:
            evs = [e for e in s.events(s.resolve_run("latest").id) if e.kind == "sampler_timing"]
        return evs[-1].data if evs else {}

    def samples(self, metric: str) -> list[tuple[float, float]]:
        """(wall seconds, value) of one metric of the target (no extra labels)."""
        with self.store() as s:
            run = s.resolve_run("latest").id
            (series,) = [x for x in s.series(run) if x.metric == metric and len(x.labels) <= 1]
            t, v = s.series_samples(series.id)
        return [(a / 1e9, b) for a, b in zip(t, v, strict=True)]

    def sample_count(self) -> int:
        with self.store() as s:
            return s.sample_count(s.resolve_run("latest").id)

    def series_count(self) -> int:
        with self.store() as s:
            return len(s.series(s.resolve_run("latest").id))


def start_edgeprof(
    workdir: str,
    name: str,
    args: Sequence[str],
    interval: float,
    timeout: float,
    metrics: Sequence[str] = ("container", "system", "process"),
    cpus: float | None = None,
) -> EdgeprofRun:
    """Start ``edgeprof run`` on a one-target spec; return once its container runs."""
    spec = write_spec(
        os.path.join(workdir, f"{name}.yaml"), name, args, interval, timeout, metrics, cpus
    )
    db = os.path.join(workdir, f"{name}.db")
    with contextlib.suppress(FileNotFoundError):
        os.remove(db)
    proc = subprocess.Popen(
        [*EDGEPROF, "run", spec, "--db", f"sqlite:///{db}", "--quiet", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = EdgeprofRun(proc, db, name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cid = docker(
            "ps", "-q", "--no-trunc", "--filter", f"label=edgeprof.spec={name}", check=False
        )
        if cid:
            run.container_id = cid.splitlines()[0]
            run.container_pid = container_pid(run.container_id)
            run.started_wall = time.time()
            return run
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    out, err = proc.communicate(timeout=30) if proc.poll() is None else proc.communicate()
    raise RuntimeError(f"edgeprof run did not start its container: {err.strip()[-500:]}")


# -- peers -------------------------------------------------------------------------------


class DockerStats:
    """``docker stats --format '{{json .}}' ID`` streaming (1 Hz), lines timestamped."""

    def __init__(self, cid: str) -> None:
        self.proc = subprocess.Popen(
            ["docker", "stats", "--format", "{{json .}}", cid],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.rows: list[tuple[float, float, float]] = []  # (wall, cpu %, mem bytes)
        import threading

        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            i = line.find("{")
            if i < 0:
                continue
            try:
                d = json.loads(line[i:])
                cpu = float(d["CPUPerc"].rstrip("%"))
                mem = parse_docker_size(d["MemUsage"].split("/")[0])
            except (ValueError, KeyError):
                continue
            # The CLI redraws every 0.5 s; the daemon has a new sample once a second.
            if self.rows and self.rows[-1][1:] == (cpu, mem):
                continue
            self.rows.append((time.time(), cpu, mem))

    def stop(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._t.join(timeout=2)


def parse_docker_size(s: str) -> float:
    s = s.strip()
    units = {
        "KiB": 1024,
        "MiB": 1024**2,
        "GiB": 1024**3,
        "TiB": 1024**4,
        "kB": 1e3,
        "KB": 1e3,
        "MB": 1e6,
        "GB": 1e9,
        "B": 1,
    }
    for u in sorted(units, key=len, reverse=True):
        if s.endswith(u):
            return float(s[: -len(u)]) * units[u]
    return float(s)


class Psrecord:
    """``psrecord PID --interval I --include-children --log FILE`` (psutil polling)."""

    def __init__(self, pid: int, interval: float, workdir: str) -> None:
        fd, self.log = tempfile.mkstemp(prefix="psrecord-", suffix=".log", dir=workdir)
        os.close(fd)
        self.t_start = time.time()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "psrecord",
                str(pid),
                "--interval",
                str(interval),
                "--include-children",
                "--log",
                self.log,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def rows(self) -> list[tuple[float, float, float]]:
        """(elapsed s, cpu %, rss bytes) per sample."""
        out = []
        with open(self.log) as f:
            for line in f:
                if line.lstrip().startswith("#") or not line.strip():
                    continue
                parts = line.split()
                try:
                    out.append((float(parts[0]), float(parts[1]), float(parts[2]) * 1024 * 1024))
                except (ValueError, IndexError):
                    continue
        return out


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    return {
        "cpus": psutil.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "docker": docker_version(),
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


def dump(path: str | None, data: dict[str, Any]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(data, f, indent=2, default=str)
