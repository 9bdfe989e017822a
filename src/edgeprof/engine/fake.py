"""A scripted container engine for unit tests of the lifecycle (no Docker needed).

Each container behaves as its :class:`Script` says — runs for a while and exits with a
code, ignores SIGTERM, is OOM-killed, cannot start, exits before its first sample — picked
by the ``edgeprof.service`` label of the request (a service), else its ``edgeprof.target``
label. Its stats stream gives the engine-API
collector a steadily growing CPU counter, so a fake run produces real samples. The engine
records every call and every network, so a test can check that nothing was left behind.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edgeprof.engine.base import (
    ContainerEvent,
    ContainerInfo,
    ContainerRequest,
    ExitInfo,
    Handle,
)
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
    restarts: int = 0
    """Started again this many times after it exits (a restart policy), each time as a new
    process that runs ``run_s`` again."""
    restart_delay_s: float = 0.1
    ip: str | None = "127.0.0.1"
    """Its address on any network it joined (a readiness probe connects there)."""
    health: list[tuple[float, str]] | None = None
    """Its HEALTHCHECK: ``(seconds after start, status)`` steps, e.g. ``[(0, "starting"),
    (0.3, "healthy")]``; None: the image has none."""


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
    pid: int = 1
    restarts_left: int = 0
    restarting: bool = False
    on_exit: Callable[[_Container], None] | None = None

    def finish(self, code: int, oom: bool = False) -> None:
        if not self.exited.is_set():
            self.exit_code, self.oom = code, oom
            self.finished_ns = time.time_ns()
            self.exited.set()
            if self.on_exit is not None:
                self.on_exit(self)


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
        self._pids = itertools.count(100)
        self.event_log: list[ContainerEvent] = []
        self._subscribers: list[queue.SimpleQueue[ContainerEvent | None]] = []
        self.networks: dict[str, dict[str, str]] = {}
        """Networks not removed: name → labels."""
        self.network_log: list[str] = []
        """``create NAME`` / ``remove NAME``, in order."""

    # -- engine protocol ---------------------------------------------------------------------
    def ping(self) -> None:
        return None

    def engine_details(self) -> dict[str, Any]:
        return {"engine": "fake", "engine_version": "0"}

    def image_exists(self, image: str) -> bool:
        return image in self.images

    def image_info(self, image: str) -> dict[str, Any]:
        return {"id": f"sha256:{abs(hash(image)):x}", "repo_digests": []}

    def start(self, req: ContainerRequest) -> Handle:
        self.calls.append(f"start {req.name}")
        key = req.labels.get("edgeprof.service") or req.labels.get("edgeprof.target", "")
        script = self.scripts.get(key, Script())
        if self.on_start is not None:
            self.on_start(req)
        if script.start_error:
            raise EngineError(f"the engine could not start {req.name}: {script.start_error}")
        if (
            req.network
            and req.network not in ("none", "host", "bridge", "default")
            and not req.network.startswith("container:")
            and req.network not in self.networks
        ):
            raise EngineError(
                f"the engine refused to create the container for {req.name}: "
                f"network {req.network} not found"
            )
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
            if (c.id == ref or c.req.name == ref or c.id[:12] == ref) and not c.removed:
                return self._info(c)
        return None

    def list_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        return [
            self._info(c)
            for c in self.containers.values()
            if not c.removed
            and all(
                k in c.req.labels if v == "" else c.req.labels.get(k) == v
                for k, v in labels.items()
            )
        ]

    def running_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        return [i for i in self.list_containers(labels) if i.running]

    def handle_of(self, info: ContainerInfo) -> Handle:
        return Handle(info.id, info.name, info.pid, None)

    def events(self, since_ns: int | None) -> tuple[Iterator[ContainerEvent], Callable[[], None]]:
        q: queue.SimpleQueue[ContainerEvent | None] = queue.SimpleQueue()
        with self._lock:
            for ev in self.event_log:
                if since_ns is not None and ev.time_ns >= since_ns:
                    q.put(ev)
            self._subscribers.append(q)

        def gen() -> Iterator[ContainerEvent]:
            while True:
                ev = q.get()
                if ev is None:
                    return
                yield ev

        def end() -> None:
            with self._lock:
                if q in self._subscribers:
                    self._subscribers.remove(q)
            q.put(None)

        return gen(), end

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

    def create_network(self, name: str, labels: dict[str, str]) -> str:
        self.calls.append(f"create network {name}")
        if name in self.networks:
            raise EngineError(f"the engine could not create network {name!r}: it exists")
        self.networks[name] = dict(labels)
        self.network_log.append(f"create {name}")
        return f"net-{name}"

    def remove_network(self, name: str) -> None:
        self.calls.append(f"remove network {name}")
        if self.networks.pop(name, None) is not None:
            self.network_log.append(f"remove {name}")

    def container_ip(self, handle: Handle, network: str) -> str | None:
        c = self.containers[handle.container_id]
        if c.removed or c.req.network != network:
            return None
        return c.script.ip

    def health_status(self, handle: Handle) -> str | None:
        c = self.containers[handle.container_id]
        if c.script.health is None:
            return None
        age = (time.time_ns() - c.started_ns) / 1e9
        status = "starting"
        for at, st in c.script.health:
            if age >= at:
                status = st
        return status

    def close(self) -> None:
        return None

    # -- for tests ---------------------------------------------------------------------------
    def _emit(self, action: str, c: _Container, code: int | None = None) -> None:
        ev = ContainerEvent(action, c.id, c.req.name, time.time_ns(), code, dict(c.req.labels))
        with self._lock:
            self.event_log.append(ev)
            subs = list(self._subscribers)
        for q in subs:
            q.put(ev)

    def _launch(self, c: _Container) -> None:
        """(Re)start ``c`` as a new process that runs its script."""
        c.exited = threading.Event()
        c.exit_code, c.oom, c.finished_ns = None, False, None
        c.pid = next(self._pids)
        c.restarting = False
        c.started_ns = time.time_ns()
        self._emit("start", c)
        if c.script.run_s is not None:
            t = threading.Timer(
                c.script.run_s,
                c.finish,
                args=(137 if c.script.oom else c.script.exit_code, c.script.oom),
            )
            t.daemon = True
            t.start()

    def _exited(self, c: _Container) -> None:
        again = c.restarts_left > 0 and not c.removed
        if again:
            c.restarts_left -= 1
            c.restarting = True
        self._emit("die", c, c.exit_code)
        if again:
            t = threading.Timer(c.script.restart_delay_s, self._relaunch, args=(c,))
            t.daemon = True
            t.start()

    def _relaunch(self, c: _Container) -> None:
        if not c.removed:
            self._launch(c)

    def run_detached(
        self,
        name: str,
        script: Script | None = None,
        labels: dict[str, str] | None = None,
        image: str = "fake:latest",
        cpus: float | None = None,
    ) -> str:
        """Somebody else starts a container (``docker run -d``); its id."""
        with self._lock:
            self._n += 1
            cid = f"{self._n:064x}"
        sc = script or Script(run_s=None)
        req = ContainerRequest(
            image=image, name=name, command=[], labels=dict(labels or {}), cpus=cpus
        )
        c = _Container(cid, req, sc, time.time_ns(), restarts_left=sc.restarts)
        c.on_exit = self._exited
        self.containers[cid] = c
        self._launch(c)
        return cid

    def restart(self, ref: str) -> None:
        """``docker restart``: the process ends (SIGTERM), a new one starts."""
        c = self._find(ref)
        c.restarts_left += 1  # this one comes back whatever its policy
        c.finish(143)

    def kill(self, ref: str, code: int = 137) -> None:
        c = self._find(ref)
        c.finish(code)

    def remove_container(self, ref: str) -> None:
        """``docker rm -f``: it dies (if running) and is gone."""
        c = self._find(ref)
        c.removed = True
        c.finish(137)
        self._emit("destroy", c)

    def _find(self, ref: str) -> _Container:
        for c in self.containers.values():
            if c.id == ref or c.req.name == ref:
                return c
        raise KeyError(ref)

    def running(self) -> list[str]:
        """Names of containers not removed (what a run must never leave behind)."""
        return [c.req.name for c in self.containers.values() if not c.removed]

    def _info(self, c: _Container) -> ContainerInfo:
        return ContainerInfo(
            id=c.id,
            name=c.req.name,
            image=c.req.image,
            running=not c.exited.is_set(),
            pid=0 if c.exited.is_set() else c.pid,
            labels=dict(c.req.labels),
            memory_limit=c.req.memory or 0,
            nano_cpus=round((c.req.cpus or 0) * 1e9),
            started_ns=c.started_ns,
            restarting=c.exited.is_set() and c.restarting and not c.removed,
        )
