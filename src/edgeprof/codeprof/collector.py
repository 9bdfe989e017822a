"""The metric group ``code``: sampled stacks of one container's processes, from the host.

It records no metric series; its stacks go to ``CollectContext.emit_code`` (the batch
writer stores them with the target). :class:`PySpyCollector` watches the container's
``cgroup.procs`` (every :data:`POLL_S`, so forked workers and ``multiprocessing`` children
are found) and runs py-spy on each Python process (:mod:`.pyspy`); :class:`PerfCollector`
runs one ``perf record`` on the container's cgroup (:mod:`.perf`). Both run on the host,
outside the container's cgroup: their CPU is not the app's (py-spy enters the container's
PID namespace so that its idle filter works, see :mod:`.pyspy`). Both are started in their
own session with a parent-death signal (:mod:`.spawn`) and keep their files in the target's
folder (``GroupEnv.container_dir``, removed by the reaper after a crash). Every reason
stacks cannot be taken is one event; the run goes on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from typing import Any

from edgeprof.cgroups import cgroup_procs
from edgeprof.codeprof import perf as perfmod
from edgeprof.codeprof.model import CodeSample
from edgeprof.codeprof.pyspy import (
    NsEnter,
    PySpyProcess,
    exe_of,
    find_pyspy,
    is_python,
    namespace,
    ns_pid,
    proc_name,
    proc_start,
    python_version,
    watch_interrupts,
)
from edgeprof.codeprof.spawn import interrupt, popen_tied
from edgeprof.collect.base import BaseCollector, CollectContext, Collector
from edgeprof.errors import CollectorUnavailable
from edgeprof.hostinfo import HostCaps
from edgeprof.model import Event, MetricSpec, Sample

POLL_S = 0.2
"""How often the container's process list is read for new processes."""

INSTALL_HINT = "pip install 'edgeprof[code]'"


def code_collectors(opts: Any, caps: HostCaps, work_dir: str | None = None) -> list[Collector]:
    """The collectors ``profiling.code`` asks for (``opts`` is a ``CodeOptions``);
    ``work_dir``: the target's private folder, for the profilers' files (None: the
    system's temporary folder)."""
    rate = opts.rate_for(caps.ncpu, caps.jetson)
    out: list[Collector] = []
    if opts.python:
        out.append(PySpyCollector(find_pyspy(), rate, opts.idle, work_dir=work_dir))
    if opts.native:
        out.append(PerfCollector(perfmod.find_perf(), rate, work_dir=work_dir))
    return out


class _Notes:
    """Events of one collector, each distinct key once."""

    def __init__(self, ctx: CollectContext) -> None:
        self.ctx = ctx
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, key: str, message: str, data: dict[str, object]) -> None:
        with self.lock:
            if key in self.seen:
                return
            self.seen.add(key)
        ev = Event(self.ctx.clock.now_ns(), "note", message, self.ctx.target, {"code": key, **data})
        self.ctx.emit_event(ev)


def _emitter(ctx: CollectContext) -> Callable[[Sequence[CodeSample]], None]:
    emit = getattr(ctx, "emit_code", None)
    return emit if emit is not None else (lambda rows: None)


class PySpyCollector(BaseCollector):
    group = "code"

    def __init__(
        self,
        binary: str | None,
        rate: int,
        idle: bool = False,
        nonblocking: bool = True,
        work_dir: str | None = None,
        enter: NsEnter | None | bool = True,
    ) -> None:
        """``enter``: how to start py-spy inside a container's PID namespace (True: find
        ``nsenter``/``unshare``; False/None: never)."""
        self.binary = binary
        self.nonblocking = nonblocking
        self.rate = rate
        self.idle = idle
        self.work_dir = work_dir
        self.enter: NsEnter | None = (
            NsEnter.find() if enter is True else enter if isinstance(enter, NsEnter) else None
        )
        self.procs: dict[tuple[int, int], PySpyProcess] = {}
        self.others: dict[tuple[int, int], tuple[str, str]] = {}
        """Processes seen that do not run Python (so far): their name and binary."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_any = False

    def metrics(self) -> list[MetricSpec]:
        return []

    def open(self, ctx: CollectContext) -> None:
        if self.binary is None:
            raise CollectorUnavailable(
                f"py-spy is not installed ({INSTALL_HINT}), so no Python stacks are taken"
            )
        if ctx.cgroup is None and not ctx.pid:
            raise CollectorUnavailable("the container's processes are unknown, so are its stacks")
        self.ctx = ctx
        self.notes = _Notes(ctx)
        self.emit = _emitter(ctx)
        watch_interrupts()  # no new py-spy window once edgeprof got Ctrl-C
        self._poll()
        self._thread = threading.Thread(target=self._loop, name="edgeprof-code", daemon=True)
        self._thread.start()

    def _pids(self) -> list[int]:
        ctx = self.ctx
        if ctx.cgroup is not None:
            return cgroup_procs(ctx.cgroup)
        return [ctx.pid] if os.path.exists(f"{ctx.proc_root}/{ctx.pid}") else []

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self._poll()

    def _poll(self) -> None:
        root = self.ctx.proc_root
        for pid in self._pids():
            start = proc_start(pid, root)
            if start is None:
                continue
            key = (pid, start)
            if key in self.procs:
                continue
            self._seen_any = True
            exe = exe_of(pid, root)
            seen = self.others.get(key)
            if seen is not None and seen[1] == exe:
                continue  # not Python when last read, and it has not exec()ed since
            py = is_python(pid, root)
            if py is None:
                continue
            if not py:
                self.others[key] = (proc_name(pid, root), exe)
                continue
            self.others.pop(key, None)
            assert self.binary is not None
            enter, inner = self._how(pid, root)
            p = PySpyProcess(
                self.binary,
                pid,
                proc_name(pid, root),
                start,
                self.rate,
                self.idle,
                self.ctx.clock,
                self.emit,
                self.notes,
                root,
                self.nonblocking,
                enter,
                inner,
                self.work_dir,
            )
            self.procs[key] = p
            p.start_thread()

    def _how(self, pid: int, root: str) -> tuple[NsEnter | None, int | None]:
        """Whether py-spy must enter the process's PID namespace for its idle filter (and
        the PID to give it there); one note where idle time will be counted anyway."""
        if self.idle:
            return None, None  # idle stacks are wanted: py-spy from the host counts them all
        version = python_version(pid, root)
        if version is not None and version < (3, 11):
            self.notes(
                "idle-old-python",
                f"py-spy cannot tell sleeping threads from running ones in Python "
                f"{version[0]}.{version[1]} without pausing the app (it needs Python 3.11+), "
                "so time in time.sleep and blocking calls counts as if it ran",
                {"pid": pid, "python": f"{version[0]}.{version[1]}"},
            )
            return None, None
        mine, theirs = namespace("self", "pid", root), namespace(pid, "pid", root)
        if mine is None or theirs is None or mine == theirs:
            return None, None  # on the host (or unknown): py-spy matches the threads itself
        inner = ns_pid(pid, root)
        if self.enter is None or inner is None:
            self.notes(
                "idle-unfiltered",
                "py-spy cannot tell sleeping threads from running ones in a container unless "
                "it runs in the container's PID namespace (as root, with nsenter and unshare "
                "from util-linux), so time in time.sleep and blocking calls counts as if it "
                "ran",
                {"pid": pid},
            )
            return None, None
        return self.enter, inner

    def sample(self, now_ns: int) -> list[Sample]:
        return []

    def close(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(5)
        self._thread = None
        for p in self.procs.values():
            p.stop()
        for p in self.procs.values():
            p.join(5)
        names = sorted({name for name, _ in self.others.values()})
        taken = sum(p.samples for p in self.procs.values())
        if names and (taken > 0 or self.procs):  # else the one note below names them
            self.notes(
                "not-python",
                f"not Python, so no Python stacks: {', '.join(names)}",
                {"processes": names},
            )
        if taken == 0:
            if not self._seen_any:
                why = "the container's processes exited before py-spy could attach"
            elif not self.procs:
                why = "no process of the container runs Python" + (
                    f" ({', '.join(names)})" if names else ""
                )
            else:
                why = (
                    "every Python process exited before py-spy could read it, or py-spy "
                    "could not read them (see the events before)"
                )
            self.notes("none", f"no Python stacks were taken: {why}", {"reason": why})


class PerfCollector(BaseCollector):
    group = "code"

    def __init__(self, binary: str | None, rate: int, work_dir: str | None = None) -> None:
        self.binary = binary
        self.rate = rate
        self.work_dir = work_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self._keeper: threading.Thread | None = None
        self._err = b""
        self.root_fd: int | None = None
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.t0_ns = 0
        self.samples = 0

    def metrics(self) -> list[MetricSpec]:
        return []

    def open(self, ctx: CollectContext) -> None:
        if self.binary is None:
            raise CollectorUnavailable(
                "perf is not installed (Debian: linux-perf), so no native stacks are taken"
            )
        why = perfmod.paranoid_reason(ctx.proc_root)
        if why is not None:
            raise CollectorUnavailable(f"perf cannot sample the container: {why}")
        cg = perfmod.perf_cgroup(ctx.pid, ctx.proc_root) if ctx.pid else None
        if cg is None:
            raise CollectorUnavailable(
                "the container's cgroup is unknown, so perf cannot filter on it"
            )
        self.ctx = ctx
        self.notes = _Notes(ctx)
        self.emit = _emitter(ctx)
        with contextlib.suppress(OSError):
            self.root_fd = os.open(f"{ctx.proc_root}/{ctx.pid}/root", os.O_PATH | os.O_DIRECTORY)
        if self.work_dir is not None:
            os.makedirs(self.work_dir, exist_ok=True)
        self.tmp = tempfile.TemporaryDirectory(prefix="edgeprof-perf-", dir=self.work_dir)
        d = self.tmp.name
        self.data = os.path.join(d, "perf.data")
        self.t0_ns = ctx.clock.now_ns()
        argv = perfmod.record_argv(self.binary, d, self.rate, cg, self.data)
        # perf is started by a thread of its own that lives as long as perf does: its
        # parent-death signal fires when the thread that forked it ends (spawn.py)
        started: list[subprocess.Popen[bytes] | OSError] = []
        ready = threading.Event()
        self._keeper = threading.Thread(
            target=self._keep, args=(argv, started, ready), name="edgeprof-perf", daemon=True
        )
        self._keeper.start()
        ready.wait()
        if isinstance(started[0], OSError):
            self._keeper.join()
            self._keeper = None
            self._cleanup()
            raise CollectorUnavailable(f"perf could not be started: {started[0]}") from None
        self.proc = started[0]

    def _keep(
        self,
        argv: list[str],
        started: list[subprocess.Popen[bytes] | OSError],
        ready: threading.Event,
    ) -> None:
        try:
            p = popen_tied(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as e:
            started.append(e)
            ready.set()
            return
        started.append(p)
        ready.set()
        _, err = p.communicate()  # perf's messages; returns when perf has ended
        self._err = err

    def sample(self, now_ns: int) -> list[Sample]:
        return []

    def close(self) -> None:
        p = self.proc
        if p is None:
            return
        self.proc = None
        keeper, self._keeper = self._keeper, None
        try:
            interrupt(p)  # perf writes perf.data and ends
            if keeper is not None:
                keeper.join(30)
                if keeper.is_alive():
                    interrupt(p, signal.SIGKILL)
                    keeper.join()
            err = self._err
            if not os.path.exists(self.data) or os.path.getsize(self.data) == 0:
                lines = [ln for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
                why = lines[-1].strip() if lines else f"perf exited with status {p.returncode}"
                self.notes(
                    "perf-failed", f"perf could not sample the container: {why}", {"reason": why}
                )
                return
            self._read()
        finally:
            self._cleanup()

    def _script(self, symfs: str | None) -> str | None:
        assert self.binary is not None and self.tmp is not None
        try:
            res = subprocess.run(
                perfmod.script_argv(self.binary, self.tmp.name, self.data, symfs),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=300,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            self.notes("perf-script", f"perf script failed: {e}", {})
            return None
        return res.stdout.decode("utf-8", "replace")

    def _read(self) -> None:
        assert self.tmp is not None
        text = self._script(None)
        if text is None:
            return
        if self.root_fd is not None:
            # perf resolves --symfs to a real path, so the container's root (held open
            # since the start: its binaries are not on the host) is copied from, per binary
            symfs = os.path.join(self.tmp.name, "symfs")
            if perfmod.copy_dsos(perfmod.dsos_of(text), f"/proc/self/fd/{self.root_fd}", symfs):
                text = self._script(symfs) or text
        rows = perfmod.parse_script(text, self.ctx.clock, self.t0_ns)
        self.samples = sum(r.count for r in rows)
        if rows:
            self.emit(rows)
        else:
            self.notes(
                "perf-empty",
                "perf took no samples of the container (it used no CPU while perf ran)",
                {},
            )

    def _cleanup(self) -> None:
        if self.root_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.root_fd)
            self.root_fd = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None
