"""The Engine protocol: create and start containers, wait for them, stop and remove them,
and inspect containers somebody else started.

Engine implementations: :mod:`.docker` (the Docker Engine API: dockerd and Podman) and
:mod:`.fake` (scripted containers for unit tests of the lifecycle).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from edgeprof.cgroups import CgroupPaths


@dataclass
class ContainerRequest:
    """Everything needed to create one container (engine independent)."""

    image: str
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    entrypoint: str | list[str] | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    memory: int | None = None
    memory_swap: int | None = None
    shm_size: int | None = None
    pids_limit: int | None = None
    cpuset: str | None = None
    volumes: list[str] = field(default_factory=list)
    network: str | None = None
    aliases: list[str] = field(default_factory=list)
    """Names the container answers to on ``network`` (a user-defined network only)."""
    ipc: str | None = None
    pid_mode: str | None = None
    runtime: str | None = None
    gpus: str | int | None = None
    ulimits: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    workdir: str | None = None
    privileged: bool = False
    devices: list[str] = field(default_factory=list)
    init: bool = False
    ports: dict[str, int | str | None] = field(default_factory=dict)
    """container port (``8090/tcp``) → host port (int), ``host_ip:port`` or None (any)."""
    log_driver: str | None = None
    log_options: dict[str, str] = field(default_factory=dict)


@dataclass
class Handle:
    container_id: str
    name: str
    pid: int
    cgroup: CgroupPaths | None


@dataclass
class ContainerInfo:
    """What the engine says about a container (``docker inspect``)."""

    id: str
    name: str
    image: str
    running: bool
    pid: int
    labels: dict[str, str] = field(default_factory=dict)
    memory_limit: int = 0
    """bytes; 0 = no limit."""
    nano_cpus: int = 0
    started_ns: int | None = None
    restart_count: int = 0
    restarting: bool = False
    """It exited and its restart policy will start it again."""


@dataclass(frozen=True)
class ContainerEvent:
    """One change of a container's state, from the engine's event stream."""

    action: str
    """``start``, ``die`` or ``destroy`` (a restart is a ``die`` then a ``start``)."""
    container_id: str
    name: str
    time_ns: int
    """When the engine says it happened (Unix time, ns)."""
    exit_code: int | None = None
    """On ``die``."""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ExitInfo:
    exit_code: int | None
    oom_killed: bool
    error: str | None = None
    started_ns: int | None = None
    finished_ns: int | None = None

    @property
    def duration_s(self) -> float | None:
        """Run time as the engine measured it (start to exit), when it knows both."""
        if self.started_ns and self.finished_ns and self.finished_ns >= self.started_ns:
            return (self.finished_ns - self.started_ns) / 1e9
        return None


class Engine(Protocol):
    description: str

    def ping(self) -> None: ...

    def engine_details(self) -> dict[str, Any]: ...

    def image_exists(self, image: str) -> bool: ...

    def image_info(self, image: str) -> dict[str, Any]: ...

    def start(self, req: ContainerRequest) -> Handle: ...

    def wait(self, handle: Handle, timeout: float | None) -> int | None:
        """Block until the container exits; its exit code, or None (timeout, gone)."""
        ...

    def stop(self, handle: Handle, grace: float) -> None:
        """SIGTERM, ``grace`` seconds, SIGKILL."""
        ...

    def exit_info(self, handle: Handle) -> ExitInfo: ...

    def logs(self, handle: Handle) -> tuple[str, str]: ...

    def remove(self, handle: Handle) -> None: ...

    def inspect(self, ref: str) -> ContainerInfo | None:
        """The container named or id'd ``ref``, or None when there is none."""
        ...

    def list_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        """Every container (running or not) carrying all these labels."""
        ...

    def running_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        """Every running container carrying all these labels (``{}``: every one)."""
        ...

    def handle_of(self, info: ContainerInfo) -> Handle:
        """A handle on a running container somebody else started (pid, cgroup)."""
        ...

    def events(self, since_ns: int | None) -> tuple[Iterator[ContainerEvent], Callable[[], None]]:
        """Container ``start``/``die``/``destroy`` events from ``since_ns`` on (None: now),
        and a function that ends the stream (from any thread)."""
        ...

    def stats_stream(self, container_id: str) -> tuple[Any, Callable[[], None]]:
        """The engine's stats documents of a container, and a function that ends them."""
        ...

    def create_network(self, name: str, labels: dict[str, str]) -> str:
        """A user-defined bridge network carrying ``labels``; its id."""
        ...

    def remove_network(self, name: str) -> None:
        """Remove a network (containers still attached are disconnected first); no error
        when there is none of that name."""
        ...

    def container_ip(self, handle: Handle, network: str) -> str | None:
        """The container's address on ``network``; None when it has none (yet)."""
        ...

    def health_status(self, handle: Handle) -> str | None:
        """``starting``, ``healthy`` or ``unhealthy`` (the image's HEALTHCHECK); None when the
        container has no health check."""
        ...

    def close(self) -> None: ...
