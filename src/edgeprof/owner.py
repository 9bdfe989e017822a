"""Who owns a run: the profiler process that writes it, and whether it is still alive.

A run records its owner (host name, boot id, pid and the pid's start time). A run still
marked ``running`` whose owner is gone on this host — the process ended, or the machine
rebooted — was not finished by its profiler: the reaper or ``edgeprof cleanup`` marks it
``crashed``; every other command says so when it shows it.
"""

from __future__ import annotations

import os
import platform
from typing import Any


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def pid_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
        return int(text[text.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_info(pid: int | None = None) -> dict[str, Any]:
    pid = os.getpid() if pid is None else pid
    return {
        "host": platform.node(),
        "boot_id": _boot_id(),
        "pid": pid,
        "pid_start": pid_start(pid),
    }


def owner_gone(owner: dict[str, Any]) -> bool | None:
    """True when the owner is certainly gone, False when it runs, None when this host
    cannot tell (another machine, or no owner recorded)."""
    if not owner or owner.get("host") != platform.node():
        return None
    if owner.get("boot_id") and owner.get("boot_id") != _boot_id():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return None
    start = pid_start(pid)
    return start is None or (owner.get("pid_start") is not None and start != owner["pid_start"])
