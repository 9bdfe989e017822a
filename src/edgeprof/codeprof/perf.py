"""``perf record`` filtered to one container's cgroup, read back with ``perf script``.

``perf record -e cpu-clock -F RATE -a -g --cgroup=CG -k CLOCK_MONOTONIC`` samples every
CPU but keeps only the container's tasks; timestamps on CLOCK_MONOTONIC are mapped to the
run's clock. Symbols are resolved from the container's own file system: a handle on
``/proc/<pid>/root`` is taken while the process runs, and the binaries the samples name are
copied from it into a private ``--symfs`` folder for ``perf script`` (they need not exist
on the host, and the container may be gone by then). Build-ids are not collected (``-B``),
so nothing is written to ``~/.debug``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil

from edgeprof.codeprof.model import SLICE_NS, CodeSample, Frame, merge
from edgeprof.model import Clock

_HEAD_RE = re.compile(r"^(?P<comm>.*?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+(?P<t>\d+\.\d+):")


def find_perf() -> str | None:
    return shutil.which("perf")


def paranoid_reason(proc_root: str = "/proc") -> str | None:
    """Why perf may not sample other processes here; None when it may."""
    if os.geteuid() == 0:
        return None
    try:
        with open(f"{proc_root}/sys/kernel/perf_event_paranoid") as f:
            level = int(f.read().strip())
    except (OSError, ValueError):
        return "perf_event_paranoid cannot be read"
    if level > 0:
        return (
            f"kernel.perf_event_paranoid is {level}: a system-wide perf needs 0 or less, or "
            "root (sysctl kernel.perf_event_paranoid=0)"
        )
    return None


def perf_cgroup(pid: int, proc_root: str = "/proc") -> str | None:
    """The process's cgroup relative to the hierarchy perf filters on: the v1 perf_event
    controller's when it is mounted, else the unified (v2) one. Without a leading slash."""
    try:
        with open(f"{proc_root}/{pid}/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    v2 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if "perf_event" in parts[1].split(","):
            return parts[2].lstrip("/") or None
        if parts[1] == "":
            v2 = parts[2].lstrip("/") or None
    return v2


def parse_script(text: str, clock: Clock, t0_ns: int, slice_ns: int = SLICE_NS) -> list[CodeSample]:
    """``perf script -F comm,pid,tid,time,ip,sym,dso`` output → native samples in slices of
    ``slice_ns`` from ``t0_ns`` (the run's clock)."""
    rows: list[CodeSample] = []
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        m = _HEAD_RE.match(lines[0])
        if m is None:
            continue
        t_ns = clock.from_monotonic(round(float(m["t"]) * 1e9))
        start = t0_ns + max(0, (t_ns - t0_ns) // slice_ns) * slice_ns
        frames: list[Frame] = []
        for ln in lines[1:]:
            parts = ln.strip().split(None, 1)
            if len(parts) < 2:
                continue
            rest = parts[1]
            sym, _, dso = rest.rpartition(" (")
            dso = dso.rstrip(")")
            sym = re.sub(r"\+0x[0-9a-f]+$", "", sym.strip())
            if sym == "[unknown]" and dso == "[unknown]":
                continue
            if dso.startswith("[kernel"):
                sym, dso = "[kernel]", "[kernel]"
            frames.append(Frame(sym or "[unknown]", dso, 0))
        if not frames:
            continue
        frames.reverse()  # perf prints the leaf first
        rows.append(
            CodeSample(
                int(m["pid"]), m["comm"].strip(), start, tuple(frames), 1, "native", m["tid"]
            )
        )
    return merge(rows)


def record_argv(perf: str, buildid_dir: str, rate: int, cgroup: str, out: str) -> list[str]:
    return [
        perf, "--buildid-dir", buildid_dir, "record", "-e", "cpu-clock", "-F", str(rate),
        "-a", "-g", f"--cgroup={cgroup}", "-k", "CLOCK_MONOTONIC", "-B", "-q", "-o", out,
    ]  # fmt: skip


def script_argv(perf: str, buildid_dir: str, data: str, symfs: str | None) -> list[str]:
    argv = [
        perf, "--buildid-dir", buildid_dir, "script", "-i", data,
        "-F", "comm,pid,tid,time,ip,sym,dso",
    ]  # fmt: skip
    if symfs is not None:
        argv.append(f"--symfs={symfs}")
    return argv


def dsos_of(script_text: str) -> set[str]:
    """The binaries (absolute paths) named in ``perf script`` output."""
    out: set[str] = set()
    for ln in script_text.splitlines():
        if ln.startswith(("\t", " ")) and ln.endswith(")") and " (/" in ln:
            out.add(ln[ln.rindex(" (/") + 2 : -1])
    return out


def copy_dsos(paths: set[str], root: str, symfs: str, limit_bytes: int = 1 << 30) -> int:
    """Copy each binary from the container's root into ``symfs`` (same path); how many."""
    n = 0
    total = 0
    for p in sorted(paths):
        src = root + p
        dst = symfs + p
        with contextlib.suppress(OSError):
            size = os.path.getsize(src)
            if total + size > limit_bytes:
                continue
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            total += size
            n += 1
    return n
