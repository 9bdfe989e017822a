"""A scripted container engine for unit tests of the lifecycle (no Docker needed).

Each container behaves as its :class:`Script` says — runs for a while and exits with a
code, ignores SIGTERM, is OOM-killed, cannot start, exits before its first sample — picked
by the ``edgeprof.target`` label of the request. Its stats stream gives the engine-API
collector a steadily growing CPU counter, so a fake run produces real samples. The engine
records every call, so a test can check that nothing was left behind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edgeprof.engine.base import ContainerInfo, ContainerRequest, ExitInfo, Handle
from edgeprof.errors import EngineError


@dataclass
class Script:
    """How one fake container behaves."""

    run_s: float | None = 0.2
    """Seconds until it exits by itself; None: until stopped."""
    exit_code: int = 0
    ignores_sigterm: bool = False
    oom: bool = False
    """Exits after ``run_s`` as OOM-killed (137)."""
    start_error: str | None = None
    """The engine refuses to start it with this message."""
    exits_before_sampling: bool = False
    """Its process is gone before the profiler sees it (no pid)."""
    cpu_per_s: float = 0.5
    """CPU seconds per second its stats stream reports."""
    stdout: str = "hello from the fake container\n"


@dataclass
class _Container:
    id: str
    req: ContainerRequest
    script: Script
    started_ns: int
    exited: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None
    oom: bool = False
    finished_ns: int | None = None
    removed: bool = False
    signals: list[str] = field(default_factory=list)

    def finish(self, code: int, oom: bool = False) -> None:
        if not self.exited.is_set():
            self.exit_code, self.oom = code, oom
            self.finished_ns = time.time_ns()
            self.exited.set()


class FakeEngine:
    description = "fake engine"

    def __init__(
        self, scripts: dict[str, Script] | None = None, images: tuple[str, ...] = ("fake:latest",)
    ) -> None:
        self.scripts = scripts or {}
        self.images = set(images)
        self.containers: dict[str, _Container] = {}
        self.calls: list[str] = []
        self._n = 0
        self._lock = threading.Lock()
        self.on_start: Callable[[ContainerRequest], None] | None = None

    # -- engine protocol ---------------------------------------------------------------------
    def ping(self) -> None:
        return None

    def engine_details(self) -> dict[str, Any]:
        return {"engine": "fake", "engine_version": "0"}

    def image_exists(self, image: str) -> bool:
        return image in self.images

    def image_info(self, image: str) -> dict[str, Any]:
        return {"id": f"sha256:{abs(hash(image)):x}"}

    def start(self, req: ContainerRequest) -> Handle:
        self.calls.append(f"start {req.name}")
        script = self.scripts.get(req.labels.get("edgeprof.target", ""), Script())
        if self.on_start is not None:
            self.on_start(req)
        if script.start_error:
            raise EngineError(f"the engine could not start {req.name}: {script.start_error}")
        with self._lock:
            self._n += 1
            cid = f"{self._n:064x}"
        c = _Container(cid, req, script, time.time_ns())
        self.containers[cid] = c
        if script.exits_before_sampling:
            c.finish(script.exit_code)
            return Handle(cid, req.name, 0, None)
        if script.run_s is not None:
            t = threading.Timer(
                script.run_s, c.finish, args=(137 if script.oom else script.exit_code, script.oom)
            )
            t.daemon = True
            t.start()
        return Handle(cid, req.name, 1, None)

    def wait(self, handle: Handle, timeout: float | None) -> int | None:
        c = self.containers[handle.container_id]
        if not c.exited.wait(timeout):
            return None
        return c.exit_code

    def stop(self, handle: Handle, grace: float) -> None:
        c = self.containers[handle.container_id]
        self.calls.append(f"stop {handle.name}")
        c.signals.append("SIGTERM")
        if not c.script.ignores_sigterm:
            c.finish(143)
            return
        if not c.exited.wait(grace):
            c.signals.append("SIGKILL")
            c.finish(137)

    def exit_info(self, handle: Handle) -> ExitInfo:
        c = self.containers[handle.container_id]
        return ExitInfo(c.exit_code, c.oom, None, c.started_ns, c.finished_ns)

    def logs(self, handle: Handle) -> tuple[str, str]:
        return self.containers[handle.container_id].script.stdout, ""

    def remove(self, handle: Handle) -> None:
        c = self.containers[handle.container_id]
        self.calls.append(f"remove {handle.name}")
        c.finish(137)
        c.removed = True

    def inspect(self, ref: str) -> ContainerInfo | None:
        for c in self.containers.values():
            if (c.id == ref or c.req.name == ref) and not c.removed:
                return self._info(c)
        return None

    def list_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        return [
            self._info(c)
            for c in self.containers.values()
            if not c.removed and all(c.req.labels.get(k) == v for k, v in labels.items())
        ]

    def stats_stream(
        self, container_id: str
    ) -> tuple[Iterator[dict[str, Any]], Callable[[], None]]:
        c = self.containers[container_id]
        ended = threading.Event()

        def docs() -> Iterator[dict[str, Any]]:
            t0 = time.monotonic()
            while not ended.is_set() and not c.exited.is_set():
                cpu_ns = int((time.monotonic() - t0) * c.script.cpu_per_s * 1e9)
                yield {
                    "read": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
                    "cpu_stats": {"cpu_usage": {"total_usage": cpu_ns}},
                    "memory_stats": {"usage": 10 << 20, "limit": 1 << 30, "stats": {}},
                    "pids_stats": {"current": 1},
                }
                ended.wait(0.05)

        return docs(), ended.set

    def close(self) -> None:
        return None

    # -- for tests ---------------------------------------------------------------------------
    def running(self) -> list[str]:
        """Names of containers not removed (what a run must never leave behind)."""
        return [c.req.name for c in self.containers.values() if not c.removed]

    def _info(self, c: _Container) -> ContainerInfo:
        return ContainerInfo(
            id=c.id,
            name=c.req.name,
            image=c.req.image,
            running=not c.exited.is_set(),
            pid=0 if c.exited.is_set() else 1,
            labels=dict(c.req.labels),
            memory_limit=c.req.memory or 0,
            started_ns=c.started_ns,
        )
