"""Cleanup that signals cannot cut short."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


def best_effort(fn: Callable[[], Any], errors: list[BaseException] | None = None) -> None:
    """Run one cleanup step; an error is collected (the first one is raised after)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - cleanup goes on; the first error is re-raised after
        if errors is not None:
            errors.append(e)


class DeferSignals:
    """Hold Ctrl-C/SIGTERM while cleaning up, so cleanup is never cut short; a signal that
    arrived meanwhile is raised as KeyboardInterrupt at the end (not lost)."""

    def __enter__(self) -> DeferSignals:
        self.pending = False
        self.saved: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._hold)
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        for sig, h in self.saved.items():
            signal.signal(sig, h)
        if self.pending and et is None:
            raise KeyboardInterrupt
