"""Live display of a run: a progress bar per target (elapsed / timeout, CPU, memory).

When stdout is a terminal it is the live view (:mod:`edgeprof.live`: a table of every
target's container with the current one's elapsed/timeout); with only stderr a terminal, a
rich progress display; elsewhere (CI logs) one line per target start and end, and a status
line every 10 s, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from edgeprof.plan import TargetRun
from edgeprof.report.terminal import fmt_bytes, make_console
from edgeprof.sinks import Sink
from edgeprof.target import RunHooks, TargetResult


def _live(latest: dict[str, float]) -> str:
    cpu = latest.get("cpu.percent")
    mem = latest.get("memory.working_set_bytes")
    parts = []
    if cpu is not None:
        parts.append(f"CPU {cpu:5.1f}%")
    if mem is not None:
        parts.append(f"mem {fmt_bytes(mem)}")
    return "  ".join(parts)


def _end_line(tr: TargetRun, r: TargetResult) -> str:
    code = "" if r.exit_code is None else f" exit {r.exit_code}"
    err = f": {r.error}" if r.error else ""
    return (
        f"{tr.name}: {r.status}{code} after {r.duration_s:.1f} s, {r.samples} samples stored{err}"
    )


class QuietProgress(RunHooks):
    run_id: int | None = None

    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def run_started(self, run_id: int, image: str, targets: list[TargetRun]) -> None:
        self.run_id = run_id

    def sinks(self) -> list[Sink]:
        """Sinks the display needs in every target's Tee (``RunSettings.sinks``)."""
        return []


class LineProgress(QuietProgress):
    """Plain lines, for logs."""

    def __init__(self, console: Console) -> None:
        self.c = console
        self._last = 0.0

    def run_started(self, run_id: int, image: str, targets: list[TargetRun]) -> None:
        self.run_id = run_id
        self.c.print(f"run {run_id}: {len(targets)} target(s) of {image}")

    def target_started(self, tr: TargetRun, timeout: float) -> None:
        limit = f"timeout {timeout:g} s" if timeout else "until it exits"
        self.c.print(f"{tr.name}: starting ({' '.join(tr.argv) or 'no args'}; {limit})")
        self._last = time.monotonic()

    def target_tick(self, tr: TargetRun, elapsed: float, latest: dict[str, float]) -> None:
        if time.monotonic() - self._last >= 10:
            self._last = time.monotonic()
            self.c.print(f"{tr.name}: {elapsed:.0f} s  {_live(latest)}")

    def target_ended(self, tr: TargetRun, result: TargetResult) -> None:
        self.c.print(_end_line(tr, result))

    def service_note(self, message: str) -> None:
        self.c.print(message)


class RichProgress(LineProgress):
    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.p = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[clock]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[live]}"),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.p.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.p.__exit__(et, e, tb)

    def target_started(self, tr: TargetRun, timeout: float) -> None:
        self.tasks[tr.name] = self.p.add_task(tr.name, total=timeout or None, clock="", live="")

    def target_tick(self, tr: TargetRun, elapsed: float, latest: dict[str, float]) -> None:
        task = self.tasks.get(tr.name)
        if task is None:
            return
        total = self.p.tasks[task].total
        clock = f"{elapsed:.0f}/{total:.0f} s" if total else f"{elapsed:.0f} s"
        self.p.update(
            task, completed=min(elapsed, total) if total else None, clock=clock, live=_live(latest)
        )

    def target_ended(self, tr: TargetRun, result: TargetResult) -> None:
        task = self.tasks.get(tr.name)
        if task is not None:
            total = self.p.tasks[task].total
            self.p.update(task, completed=total or 1, total=total or 1, live=result.status)
        self.p.console.print(_end_line(tr, result))


_SHORT_STATUS = {"oom_killed": "OOM", "timed_out": "timeout", "interrupted": "stopped"}


class LiveProgress(QuietProgress):
    """The live view on stdout; the target being run shows ``elapsed/timeout`` as its state,
    ended ones their status; start and end lines print above the table."""

    def __init__(self, console: Console) -> None:
        from edgeprof.live import LiveView

        self.view = LiveView(console, plain=False, title="edgeprof run")
        self._timeouts: dict[str, float] = {}
        self._n = 0
        self._i = 0

    def sinks(self) -> list[Sink]:
        return [self.view]

    def __enter__(self) -> LiveProgress:
        self.view.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        from edgeprof.signals import DeferSignals

        with DeferSignals():  # a second Ctrl-C must not leave the terminal without echo
            self.view.stop()

    def run_started(self, run_id: int, image: str, targets: list[TargetRun]) -> None:
        self.run_id = run_id
        self._n = len(targets)
        self.view.title = f"edgeprof run {run_id}"
        self.view.print(f"run {run_id}: {len(targets)} target(s) of {image}")

    def target_started(self, tr: TargetRun, timeout: float) -> None:
        self._i += 1
        self._timeouts[tr.name] = timeout
        self.view.title = f"edgeprof run {self.run_id} target {self._i}/{self._n}"
        self.view.set_state(tr.name, "starting")

    def target_tick(self, tr: TargetRun, elapsed: float, latest: dict[str, float]) -> None:
        timeout = self._timeouts.get(tr.name)
        if timeout and elapsed >= timeout:
            state = "stopping"  # its timeout passed: SIGTERM, then the grace
        else:
            state = f"{elapsed:.0f}/{timeout:g}s" if timeout else f"{elapsed:.0f}s"
        self.view.set_state(tr.name, state)

    def service_note(self, message: str) -> None:
        self.view.print(message)

    def target_ended(self, tr: TargetRun, result: TargetResult) -> None:
        if result.status in ("exited", "failed") and result.exit_code is not None:
            state = f"exit {result.exit_code}"
        else:
            state = _SHORT_STATUS.get(result.status, result.status)
        self.view.set_state(tr.name, state)
        self.view.print(_end_line(tr, result))


def make_progress(quiet: bool = False, live: bool = False) -> Any:
    """The run's display: nothing (``quiet``), the live view (``live``: stdout is a
    terminal), a progress display on a terminal stderr, else plain lines."""
    if quiet:
        return QuietProgress()
    if live:
        return LiveProgress(make_console(stderr=False))
    console = make_console(stderr=True)
    if sys.stderr.isatty():
        return RichProgress(console)
    return LineProgress(console)
