"""Jetson ``tegrastats`` as a collector: the process run, its lines parsed as they come.

The parser itself, and the decisions behind every field, are in :mod:`.tegrastats_parse`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections import deque

from edgeprof.collect.base import BaseCollector, CollectContext
from edgeprof.collect.gpu.tegrastats_parse import TEGRASTATS_METRICS, TegraReading, parse_line
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import Event, Labels, MetricSpec, Sample, labels_of

__all__ = ["TEGRASTATS_METRICS", "TegraReading", "TegrastatsCollector", "interval_ms", "parse_line"]


def interval_ms(interval_s: float) -> int:
    """tegrastats --interval in ms: the sampling interval, at least 100 ms."""
    return max(100, round(interval_s * 1000))


class TegrastatsCollector(BaseCollector):
    """Runs ``tegrastats --interval <ms>`` and turns every line into samples.

    Lines are read in a background thread and stamped with the monotonic time they arrived;
    ``sample(now_ns)`` maps that time onto the sampler's clock (``now_ns`` minus the age of
    the line), so a line keeps its arrival time even when drained a tick later.
    """

    START_TIMEOUT_S = 2.0
    MAX_PENDING = 10_000

    def __init__(self, group: str = "tegrastats", path: str | None = None) -> None:
        self.group = group
        self._path = path
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: deque[tuple[int, TegraReading]] = deque(maxlen=self.MAX_PENDING)
        self._unparsed: deque[str] = deque(maxlen=5)
        self._first = threading.Event()
        self._labels: Labels = ()
        self._ctx: CollectContext | None = None
        self._exit_reported = False
        self._last_t = 0

    def metrics(self) -> list[MetricSpec]:
        return list(TEGRASTATS_METRICS)

    def open(self, ctx: CollectContext) -> None:
        self._ctx = ctx
        self._labels = ctx.labels
        path = self._path or shutil.which("tegrastats")
        if not path:
            raise CollectorUnavailable(
                "tegrastats not found on PATH (set profiling.tegrastats_path to its location)"
            )
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise CollectorUnavailable(f"tegrastats at {path} is not an executable file")
        ms = interval_ms(ctx.interval_s)
        try:
            self._proc = subprocess.Popen(
                [path, "--interval", str(ms)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                errors="replace",
            )
        except OSError as e:
            raise CollectorUnavailable(f"cannot start tegrastats at {path}: {e}") from e
        self._thread = threading.Thread(target=self._read, name="tegrastats-reader", daemon=True)
        self._thread.start()
        # Wait for the first parsed line, or for the child to exit at once.
        deadline = time.monotonic() + max(self.START_TIMEOUT_S, 2 * ms / 1000.0)
        try:
            while not self._first.wait(0.02):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    break
        except BaseException:  # Ctrl-C while waiting: no tegrastats is left running
            self.close()
            raise
        if not self._first.is_set():
            rc = self._proc.poll()
            out = " | ".join(self._unparsed)
            self.close()
            if rc is not None:
                raise CollectorUnavailable(
                    f"tegrastats at {path} exited at once with code {rc}"
                    + (f": {out}" if out else "")
                )
            raise CollectorUnavailable(
                f"tegrastats at {path} printed no parsable line within "
                f"{self.START_TIMEOUT_S:.0f} s" + (f": {out}" if out else "")
            )

    def _read(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            mono = time.monotonic_ns()
            reading = parse_line(line)
            if not reading:
                if line.strip():
                    self._unparsed.append(line.strip()[:200])
                continue
            with self._lock:
                self._pending.append((mono, reading))
            self._first.set()

    def sample(self, now_ns: int) -> list[Sample]:
        mono_now = time.monotonic_ns()
        with self._lock:
            drained = list(self._pending)
            self._pending.clear()
        out: list[Sample] = []
        base = dict(self._labels)
        cache: dict[Labels, Labels] = {}
        for mono, reading in drained:
            t = min(now_ns, now_ns - (mono_now - mono))
            t = max(t, self._last_t)
            self._last_t = t
            for metric, lab, value in reading.values:
                full = cache.get(lab)
                if full is None:
                    full = labels_of(base, **dict(lab)) if lab else self._labels
                    cache[lab] = full
                out.append(Sample(metric, full, t, value))
        self._check_exit(now_ns, drained)
        return out

    def _check_exit(self, now_ns: int, drained: list[tuple[int, TegraReading]]) -> None:
        proc = self._proc
        if drained or proc is None or self._exit_reported or proc.poll() is None:
            return
        self._exit_reported = True
        if self._ctx is not None:
            self._ctx.emit_event(
                Event(
                    t_ns=now_ns,
                    kind="collector_failed",
                    message=f"tegrastats exited with code {proc.returncode}",
                    target=self._ctx.target,
                    data={"group": self.group},
                )
            )

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5.0)
            if proc.stdout is not None:
                with contextlib.suppress(OSError):
                    proc.stdout.close()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2.0)
