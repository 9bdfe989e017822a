"""The Engine protocol: start a target's container, wait for it, stop and remove it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from edgeprof.collect.base import CgroupPaths


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
    memory: int | None = None
    shm_size: int | None = None
    pids_limit: int | None = None
    cpuset: str | None = None
    volumes: list[str] = field(default_factory=list)
    network: str | None = None
    ipc: str | None = None
    runtime: str | None = None
    gpus: str | int | None = None
    ulimits: dict[str, Any] = field(default_factory=dict)
    user: str | None = None
    workdir: str | None = None
    privileged: bool = False
    devices: list[str] = field(default_factory=list)


@dataclass
class Handle:
    container_id: str
    name: str
    pid: int
    cgroup: CgroupPaths | None
    started_ns: int = 0


@dataclass
class ExitInfo:
    exit_code: int | None
    oom_killed: bool
    error: str | None = None
    finished_at: str | None = None


class Engine(Protocol):
    description: str

    def ping(self) -> None: ...

    def image_exists(self, image: str) -> bool: ...

    def image_info(self, image: str) -> dict[str, Any]: ...

    def start(self, req: ContainerRequest) -> Handle: ...

    def wait(self, handle: Handle, timeout: float | None) -> int | None: ...

    def stop(self, handle: Handle, grace: float) -> None: ...

    def exit_info(self, handle: Handle) -> ExitInfo: ...

    def logs(self, handle: Handle) -> tuple[str, str]: ...

    def remove(self, handle: Handle) -> None: ...

    def stats_stream(self, handle: Handle) -> Any: ...
