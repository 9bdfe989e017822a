"""py-spy from the host on one process: back-to-back one-second recordings.

py-spy's ``record`` writes its output only when it stops, and none of its formats holds both
per-sample times and py-spy's idle filter (``raw`` and ``speedscope`` have no times;
``chrometrace`` has them, but a thread that goes idle or exits keeps its last stack open
until the next change, so idle time is charged to the code that ran before it). So each
process gets a chain of ``py-spy record --duration 1 --format raw`` windows, one per time
slice: exact sample counts, py-spy's own idle rule, and each slice time-stamped by the
run's clock when its window starts. Attaching costs py-spy about 7 ms of CPU and leaves a
gap between windows (see docs/performance.md §11 for what a window chain takes; the pyenv
shim in front of the binary costs ten times that, so the binary next to the interpreter is
preferred). ``--nonblocking``: the app is never paused to be read.

Idle stacks: py-spy decides whether a thread sleeps from the OS (``/proc/PID/task/TID/stat``)
and matches Python threads to OS threads through ``PyThreadState.native_thread_id``
(Python 3.11+). In a container that id is the thread's id *in the container's PID
namespace*, while py-spy on the host lists host ids, so no thread matches and every sleeping
thread counts as running (benfred/py-spy#490). So, unless ``idle`` is asked for, py-spy on a
container's process is started inside the container's PID namespace, with a /proc of that
namespace in a private mount namespace (``nsenter --target PID --pid -- unshare
--mount-proc py-spy … --pid NSPID``; root only, which py-spy from the host needs anyway):
the ids then match and py-spy's own idle filter works, and the binary, the output file and
the host's files stay where they are. The price: when the container's PID 1 exits, the
kernel kills every process of its namespace, py-spy too, so the last (partial) window of
PID 1 is lost. Where this cannot be done (not root, no nsenter/unshare) py-spy runs as
before and one event says that idle time is counted. For Python before 3.11 py-spy has no
thread id without pausing the app (``--nonblocking``) and falls back on a guess from the
top frame (``threading.wait``, ``select``…): ``time.sleep`` still counts; one event says so.
(``--gil`` would drop sleeping threads but also native code that releases the GIL — numpy,
OpenCV — so it is not used.)

Every py-spy runs in a session of its own with a parent-death signal (:mod:`.spawn`): the
terminal's Ctrl-C does not end a window early, no new window starts once edgeprof got
Ctrl-C or SIGTERM (:data:`INTERRUPTED`) or closing began (the collector then ends the
window in flight, which writes what it has), and a py-spy never outlives edgeprof by more
than its window.

py-spy prints "behind in sampling" only when it is more than a second late, which a one-
second window cannot be; a window that takes much longer than a second says the same
thing, and either becomes one event.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeprof.codeprof.model import CodeSample, Frame
from edgeprof.codeprof.spawn import interrupt, popen_tied
from edgeprof.model import Clock

BEHIND_FACTOR = 1.25
"""A one-second window that lasts longer than this many seconds fell behind in sampling."""

NO_FRAMES = Frame("[no Python frames]", "", 0)
"""The stack of a sample taken while the thread ran no Python code (starting, exiting)."""

_FRAME_RE = re.compile(r"^(?P<fn>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
_THREAD_RE = re.compile(r"^thread \((?P<tid>0x[0-9A-Fa-f]+|\d+)\)(?:: (?P<name>.*))?$")


def find_pyspy() -> str | None:
    """The py-spy binary: the one installed beside this interpreter (``pip install
    'edgeprof[code]'``), else the first on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("py-spy")


def parse_frame(text: str) -> Frame:
    """``func (file:line)`` · ``func (file)`` · ``func`` → a frame (line 0 when unknown)."""
    m = _FRAME_RE.match(text)
    if m is None:
        return Frame(text, "", 0)
    return Frame(m["fn"], m["file"], int(m["line"] or 0))


def parse_raw(text: str, pid: int, process: str, t_ns: int) -> list[CodeSample]:
    """py-spy's ``raw`` output (folded stacks, root first, with ``--threads``) → samples."""
    out: list[CodeSample] = []
    for line in text.splitlines():
        stack_text, sep, count_text = line.rpartition(" ")
        if not sep or not count_text.isdigit():
            continue
        parts = stack_text.split(";")
        thread: str | None = None
        m = _THREAD_RE.match(parts[0]) if parts else None
        if m is not None:
            thread = m["name"] or m["tid"]
            parts = parts[1:]
        stack = tuple(parse_frame(p) for p in parts if p) or (NO_FRAMES,)
        out.append(CodeSample(pid, process, t_ns, stack, int(count_text), "python", thread))
    return out


def exe_of(pid: int, proc_root: str = "/proc") -> str:
    """The process's binary ("" when unreadable): it changes when the process exec()s."""
    try:
        return os.readlink(f"{proc_root}/{pid}/exe")
    except OSError:
        return ""


def is_python(pid: int, proc_root: str = "/proc") -> bool | None:
    """Whether the process runs a Python interpreter (its binary or a loaded libpython);
    None when it is gone or cannot be read."""
    exe = os.path.basename(exe_of(pid, proc_root))
    if exe.startswith(("python", "pypy")):
        return True
    try:
        with open(f"{proc_root}/{pid}/maps", "rb") as f:
            return b"libpython" in f.read()
    except OSError:
        return None


def proc_start(pid: int, proc_root: str = "/proc", *, running: bool = False) -> int | None:
    """The process's start time (clock ticks since boot): with the PID, its identity.
    ``running``: None for a process that has exited but was not reaped yet (a zombie)."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as f:
            text = f.read()
        fields = text[text.rindex(b")") + 2 :].split()
        if running and fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def namespace(pid: int | str, kind: str, proc_root: str = "/proc") -> str | None:
    """The process's namespace of ``kind`` (``pid``, ``mnt``) as ``pid:[4026531836]``."""
    try:
        return os.readlink(f"{proc_root}/{pid}/ns/{kind}")
    except OSError:
        return None


def ns_pid(pid: int, proc_root: str = "/proc") -> int | None:
    """The process's PID in its own (innermost) PID namespace (``NSpid``'s last field)."""
    try:
        with open(f"{proc_root}/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


_VERSION_RE = re.compile(rb"(?:python|libpython)(\d)\.(\d+)")


def python_version(pid: int, proc_root: str = "/proc") -> tuple[int, int] | None:
    """The interpreter's version from its binary's or libpython's name (None: unknown)."""
    m = _VERSION_RE.search(os.path.basename(exe_of(pid, proc_root)).encode())
    if m is None:
        try:
            with open(f"{proc_root}/{pid}/maps", "rb") as f:
                m = _VERSION_RE.search(f.read())
        except OSError:
            return None
    return (int(m[1]), int(m[2])) if m is not None else None


@dataclass(frozen=True)
class NsEnter:
    """How to start py-spy inside a container's PID namespace (see the module's text)."""

    nsenter: str
    unshare: str

    @classmethod
    def find(cls) -> NsEnter | None:
        """None unless this process is root and has ``nsenter`` and ``unshare``."""
        nsenter, unshare = shutil.which("nsenter"), shutil.which("unshare")
        if os.geteuid() != 0 or nsenter is None or unshare is None:
            return None
        return cls(nsenter, unshare)

    def prefix(self, host_pid: int) -> list[str]:
        return [self.nsenter, "--target", str(host_pid), "--pid", "--",
                self.unshare, "--mount-proc"]  # fmt: skip


def proc_name(pid: int, proc_root: str = "/proc") -> str:
    try:
        with open(f"{proc_root}/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return str(pid)


INTERRUPTED = threading.Event()
"""Set when edgeprof got Ctrl-C or SIGTERM (see :func:`watch_interrupts`): no new window
starts after it, while the run stops its containers and then closes the collectors."""


def _watching(handler: object) -> bool:
    return bool(getattr(handler, "_edgeprof_watch", False))


def watch_interrupts() -> None:
    """Chain a handler for SIGINT and SIGTERM that sets :data:`INTERRUPTED` before doing
    what the handler before it did (raise KeyboardInterrupt, as a rule). Only from the main
    thread (elsewhere Python cannot set handlers), once; a handler that ignores the signal
    is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        prev = signal.getsignal(sig)
        if _watching(prev) or prev in (signal.SIG_IGN, None):
            continue

        def handler(signum: int, frame: Any, prev: Any = prev) -> None:
            INTERRUPTED.set()
            if callable(prev):
                prev(signum, frame)
            else:  # SIG_DFL: end as the default action would
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        handler._edgeprof_watch = True  # type: ignore[attr-defined]
        signal.signal(sig, handler)


Note = Callable[[str, str, dict[str, object]], None]
"""``note(key, message, data)``: one event per distinct key."""


@dataclass
class PySpyProcess:
    """The chain of py-spy windows on one process, in its own thread."""

    binary: str
    pid: int
    process: str
    start: int | None
    rate: int
    idle: bool
    clock: Clock
    emit: Callable[[list[CodeSample]], None]
    note: Note
    proc_root: str = "/proc"
    nonblocking: bool = True
    """False: py-spy's default, which pauses the app while it reads each sample."""
    enter: NsEnter | None = None
    """Start py-spy inside the process's PID namespace (so that its idle filter works)."""
    inner_pid: int | None = None
    """The process's PID in its namespace (with ``enter``)."""
    work_dir: str | None = None
    """Where the window's output goes (the target's folder: removed even after a crash)."""
    samples: int = 0
    windows: int = 0
    behind: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _current: subprocess.Popen[bytes] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start_thread(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"edgeprof-pyspy-{self.pid}", daemon=True
        )
        self._thread.start()

    def alive(self) -> bool:
        return (
            self.start is not None
            and proc_start(self.pid, self.proc_root, running=True) == self.start
        )

    def stop(self) -> None:
        """Ask the current window to write what it has and end (py-spy's Ctrl-C)."""
        with self._lock:  # no window starts after this
            self._stop.set()
            p = self._current
            if p is not None:
                interrupt(p)

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _argv(self, out: str) -> list[str]:
        inside = self.enter is not None and self.inner_pid is not None
        pid = self.inner_pid if inside else self.pid
        prefix = self.enter.prefix(self.pid) if self.enter is not None and inside else []
        argv = prefix + [
            self.binary, "record", "--pid", str(pid), "--duration", "1",
            "--rate", str(self.rate), "--format", "raw", "--output", out,
            "--full-filenames", "--threads", "--hideprogress",
        ]  # fmt: skip
        if self.nonblocking:
            argv.append("--nonblocking")
        if self.idle:
            argv.append("--idle")
        return argv

    def _run(self) -> None:
        if self.work_dir is not None:
            os.makedirs(self.work_dir, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="edgeprof-pyspy-", dir=self.work_dir) as tmp:
            out = os.path.join(tmp, "window.txt")
            while not self._stop.is_set():
                if not self._window(out):
                    break

    def _window(self, out: str) -> bool:
        """One recording; False when the chain ends (the process is gone, or py-spy cannot
        read it)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out)
        t_ns = self.clock.now_ns()
        m0 = time.monotonic()
        with self._lock:
            if self._stop.is_set() or INTERRUPTED.is_set():
                return False
            try:  # from this thread, which outlives the window (the parent-death signal)
                p = popen_tied(
                    self._argv(out),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            except OSError as e:
                self.note("spawn", f"py-spy could not be started: {e}", {"pid": self.pid})
                return False
            self._current = p
        text, _ = p.communicate()
        elapsed = time.monotonic() - m0
        with self._lock:
            self._current = None
        self.windows += 1
        log = text.decode("utf-8", "replace")
        rows: list[CodeSample] = []
        try:
            with open(out, encoding="utf-8", errors="replace") as f:
                rows = parse_raw(f.read(), self.pid, self.process, t_ns)
        except OSError:
            pass
        if rows:
            self.samples += sum(r.count for r in rows)
            self.emit(rows)
        alive = self.alive()
        if alive and self.enter is not None and p.returncode == -signal.SIGKILL:
            # py-spy in the container's PID namespace is killed when its PID 1 exits; the
            # process may still be a zombie for a moment
            time.sleep(0.1)
            alive = self.alive()
        if "behind in sampling" in log or (
            alive and not self._stop.is_set() and p.returncode == 0 and elapsed > BEHIND_FACTOR
        ):
            self.behind += 1
            self.note(
                "behind",
                f"py-spy fell behind in sampling {self.process} (pid {self.pid}): a one-second "
                f"window at {self.rate} Hz took {elapsed:.2f} s; its stacks are fewer than "
                "asked. Lower profiling.code.rate",
                {"pid": self.pid, "rate": self.rate, "window_s": round(elapsed, 3)},
            )
        if p.returncode != 0 and not self._stop.is_set():
            if not alive:
                if self.samples == 0:
                    self.note(
                        f"early:{self.pid}",
                        f"{self.process} (pid {self.pid}) exited before py-spy could take "
                        "its stacks",
                        {"pid": self.pid, "process": self.process},
                    )
                return False
            last = [ln for ln in log.strip().splitlines() if ln.strip()]
            why = last[-1].removeprefix("Error: ") if last else f"exit status {p.returncode}"
            self.note(
                f"error:{why}",
                f"py-spy cannot take the stacks of {self.process} (pid {self.pid}): {why}",
                {"pid": self.pid, "process": self.process, "reason": why},
            )
            return False
        if alive and elapsed < 0.5:  # a window that ended at once: never spin
            self._stop.wait(1.0 - elapsed)
        return alive and "process exited" not in log
