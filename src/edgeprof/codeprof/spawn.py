"""Starting the profilers (py-spy, perf) so that they never outlive edgeprof.

Each one is started with a parent-death signal (Linux ``PR_SET_PDEATHSIG``: SIGKILL when
the thread that started it ends, which includes edgeprof being killed with SIGKILL) and in
a session of its own, so that the terminal's Ctrl-C reaches edgeprof alone, and edgeprof
ends the profilers itself when it closes (py-spy and perf then write what they have). The
signal is sent when the *thread* that forked the child ends, so callers start profilers from
a thread that lives as long as the profiler does (py-spy: the chain's own thread; perf: a
keeper thread). A grandchild (py-spy started through ``nsenter``) does not inherit the
signal, but it ends by itself within its one-second window.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from typing import Any

PR_SET_PDEATHSIG = 1

_libc: Any = None


def _load_libc() -> Any:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _tie_to(parent: int) -> Any:
    libc = _load_libc()  # loaded before fork: the child only calls it

    def tie() -> None:  # in the child, between fork and exec: no allocation-heavy work
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # edgeprof died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return tie


def popen_tied(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` in a new session, killed when the calling thread ends."""
    return subprocess.Popen(argv, preexec_fn=_tie_to(os.getpid()), start_new_session=True, **kwargs)


def interrupt(p: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    """Send ``sig`` to the child's whole process group (py-spy under ``nsenter`` too)."""
    if p.poll() is not None:
        return
    with contextlib.suppress(OSError):
        os.killpg(p.pid, sig)
