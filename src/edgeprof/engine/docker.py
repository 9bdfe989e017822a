"""The Docker Engine API engine (dockerd, and Podman's Docker-compatible service).

Talks to the engine through the ``docker`` SDK and honours ``DOCKER_HOST``. A container's
cgroup is found from ``/proc/<pid>/cgroup``, which works for dockerd and Podman on cgroup
v1 and v2; when the engine is remote, the pid is not ours to read and the caller falls
back to the engine's stats API.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from typing import Any

from edgeprof.cgroups import CgroupNotFound, CgroupPaths, find_cgroup
from edgeprof.engine.base import (
    ContainerEvent,
    ContainerInfo,
    ContainerRequest,
    ExitInfo,
    Handle,
)
from edgeprof.errors import EngineError
from edgeprof.model import parse_rfc3339

_DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or _DEFAULT_SOCKET


def _where() -> str:
    if os.environ.get("DOCKER_HOST"):
        return f"DOCKER_HOST={os.environ['DOCKER_HOST']}"
    return f"{_DEFAULT_SOCKET} (DOCKER_HOST is not set)"


def is_local(address: str) -> bool:
    return address.startswith(("unix://", "npipe://")) or address.startswith("/")


class DockerEngine:
    """Engine implementation over the Docker Engine API."""

    def __init__(self, timeout: float = 30.0) -> None:
        try:
            import docker
            import docker.errors
        except ImportError as e:  # pragma: no cover - docker is a hard dependency
            raise EngineError(
                f"the 'docker' Python package is missing ({e}); pip install docker"
            ) from None
        self._docker = docker
        import requests

        # docker-py does not wrap requests' connection errors: both mean "the engine failed".
        self._failures: tuple[type[BaseException], ...] = (
            docker.errors.DockerException,
            requests.exceptions.RequestException,
        )
        self.address = engine_address()
        self.description = f"container engine at {_where()}"
        try:
            self.client = docker.from_env(timeout=int(timeout))
            self.client.ping()
        except Exception as e:  # noqa: BLE001 - any failure here means "cannot reach"
            raise EngineError(
                f"cannot reach the container engine at {_where()}: {_reason(e)}; start dockerd "
                "(or Podman's API service) or point DOCKER_HOST at a running engine"
            ) from None
        self.local = is_local(self.address)
        try:
            self.info: dict[str, Any] = self.client.info()
        except Exception:  # noqa: BLE001
            self.info = {}

    def ping(self) -> None:
        try:
            self.client.ping()
        except Exception as e:  # noqa: BLE001
            raise EngineError(
                f"the container engine at {_where()} stopped answering: {_short(e)}"
            ) from None

    def engine_details(self) -> dict[str, Any]:
        i = self.info
        return {
            "engine": self._engine_name(),
            "engine_version": i.get("ServerVersion"),
            "cgroup_version": i.get("CgroupVersion"),
            "cgroup_driver": i.get("CgroupDriver"),
            "engine_host": self.address,
            "kernel": i.get("KernelVersion"),
            "os": i.get("OperatingSystem"),
            "ncpu": i.get("NCPU"),
            "mem_total": i.get("MemTotal"),
            "runtimes": sorted((i.get("Runtimes") or {}).keys()),
        }

    def _engine_name(self) -> str:
        try:
            comps = self.client.version().get("Components") or []
        except Exception:  # noqa: BLE001
            return "docker"
        names = " ".join(str(c.get("Name", "")) for c in comps).lower()
        return "podman" if "podman" in names else "docker"

    def image_exists(self, image: str) -> bool:
        try:
            self.client.images.get(image)
            return True
        except self._docker.errors.ImageNotFound:
            return False
        except self._failures as e:
            raise EngineError(
                f"cannot look up image {image!r} on the {self.description}: {_short(e)}"
            ) from None

    def image_info(self, image: str) -> dict[str, Any]:
        try:
            img = self.client.images.get(image)
        except self._failures:
            return {}
        attrs = img.attrs
        return {
            "id": img.id,
            "size": attrs.get("Size"),
            "architecture": attrs.get("Architecture"),
            "created": attrs.get("Created"),
            "repo_digests": list(attrs.get("RepoDigests") or []),
        }

    def _create_kwargs(self, req: ContainerRequest) -> dict[str, Any]:
        types = self._docker.types
        kw: dict[str, Any] = {
            "image": req.image,
            "command": req.command or None,
            "name": req.name,
            "environment": req.env,
            "labels": req.labels,
            "detach": True,
        }
        if req.entrypoint is not None:
            kw["entrypoint"] = req.entrypoint
        if req.cpus is not None:
            kw["nano_cpus"] = round(req.cpus * 1e9)
        if req.cpu_shares is not None:
            kw["cpu_shares"] = req.cpu_shares
        if req.memory is not None:
            kw["mem_limit"] = req.memory
            # no swap unless asked: an OOM is an OOM, as on edge devices
            kw["memswap_limit"] = req.memory if req.memory_swap is None else req.memory_swap
        elif req.memory_swap is not None:
            kw["memswap_limit"] = req.memory_swap
        if req.shm_size is not None:
            kw["shm_size"] = req.shm_size
        if req.pids_limit is not None:
            kw["pids_limit"] = req.pids_limit
        if req.cpuset:
            kw["cpuset_cpus"] = req.cpuset
        if req.volumes:
            kw["volumes"] = list(req.volumes)
        if req.network:
            if _builtin_network(req.network):
                kw["network_mode"] = req.network
            else:
                kw["network"] = req.network
                if req.aliases:
                    ep = self.client.api.create_endpoint_config(aliases=list(req.aliases))
                    kw["networking_config"] = {req.network: ep}
        if req.ipc:
            kw["ipc_mode"] = req.ipc
        if req.pid_mode:
            kw["pid_mode"] = req.pid_mode
        if req.init:
            kw["init"] = True
        if req.ports:
            kw["ports"] = {k: _host_binding(v) for k, v in req.ports.items()}
        if req.log_driver or req.log_options:
            kw["log_config"] = types.LogConfig(
                type=req.log_driver or "json-file", config=dict(req.log_options)
            )
        if req.runtime:
            kw["runtime"] = req.runtime
        if req.gpus is not None:
            if req.gpus == "all":
                dr = types.DeviceRequest(count=-1, capabilities=[["gpu"]])
            elif isinstance(req.gpus, int):
                dr = types.DeviceRequest(count=req.gpus, capabilities=[["gpu"]])
            else:
                ids = str(req.gpus).removeprefix("device=").split(",")
                dr = types.DeviceRequest(device_ids=ids, capabilities=[["gpu"]])
            kw["device_requests"] = [dr]
        if req.ulimits:
            uls = []
            for name, val in req.ulimits.items():
                if isinstance(val, dict):
                    uls.append(types.Ulimit(name=name, soft=val["soft"], hard=val["hard"]))
                else:
                    uls.append(types.Ulimit(name=name, soft=int(val), hard=int(val)))
            kw["ulimits"] = uls
        if req.user:
            kw["user"] = req.user
        if req.workdir:
            kw["working_dir"] = req.workdir
        if req.privileged:
            kw["privileged"] = True
        if req.devices:
            kw["devices"] = list(req.devices)
        return kw

    def start(self, req: ContainerRequest) -> Handle:
        try:
            c = self.client.containers.create(**self._create_kwargs(req))
        except self._docker.errors.ImageNotFound:
            raise EngineError(
                f"image {req.image!r} is not present on the engine; build or load it first"
            ) from None
        except self._failures as e:
            raise EngineError(
                f"the engine refused to create the container for {req.name}: {_short(e)}"
            ) from None
        try:
            c.start()
            c.reload()
            pid = int(c.attrs.get("State", {}).get("Pid") or 0)
            cgroup: CgroupPaths | None = None
            if pid and self.local:
                with contextlib.suppress(CgroupNotFound):
                    cgroup = find_cgroup(pid)
        except self._failures as e:
            self._safe_remove(c.id)
            raise EngineError(f"the engine could not start {req.name}: {_short(e)}") from None
        except BaseException:  # Ctrl-C between create and start: leave nothing behind
            self._safe_remove(c.id)
            raise
        return Handle(container_id=c.id, name=req.name, pid=pid, cgroup=cgroup)

    def wait(self, handle: Handle, timeout: float | None) -> int | None:
        """Block until the container exits (one long API call, no polling)."""
        try:
            res = self.client.api.wait(handle.container_id, timeout=timeout)
        except Exception:  # noqa: BLE001 - timeouts and removed containers
            return None
        return int(res.get("StatusCode", -1))

    def stop(self, handle: Handle, grace: float) -> None:
        try:
            # the API takes whole seconds: round a fractional grace up, never down to SIGKILL
            self.client.api.stop(handle.container_id, timeout=max(0, math.ceil(grace)))
        except self._docker.errors.NotFound:
            pass
        except self._failures:
            with contextlib.suppress(*self._failures):
                self.client.api.kill(handle.container_id)

    def exit_info(self, handle: Handle) -> ExitInfo:
        try:
            state = self.client.api.inspect_container(handle.container_id)["State"]
        except self._failures as e:
            return ExitInfo(exit_code=None, oom_killed=False, error=_short(e))
        return ExitInfo(
            exit_code=state.get("ExitCode"),
            oom_killed=bool(state.get("OOMKilled")),
            error=state.get("Error") or None,
            started_ns=parse_rfc3339(str(state.get("StartedAt") or "")),
            finished_ns=parse_rfc3339(str(state.get("FinishedAt") or "")),
        )

    def logs(self, handle: Handle) -> tuple[str, str]:
        api = self.client.api
        try:
            out = api.logs(handle.container_id, stdout=True, stderr=False, timestamps=True)
            err = api.logs(handle.container_id, stdout=False, stderr=True, timestamps=True)
        except self._failures:
            return "", ""
        return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def logs_since(
        self, handle: Handle, since_ns: tuple[int | None, int | None]
    ) -> tuple[str, str]:
        """Like :meth:`logs`, each stream only from its ``since_ns`` on (None: all of it);
        a line at exactly that time comes again (the engine's filter keeps it; 1 us of
        margin covers the float the API takes)."""
        api = self.client.api
        texts: list[str] = []
        for stdout, since in ((True, since_ns[0]), (False, since_ns[1])):
            kw: dict[str, Any] = {}
            if since is not None and since > 1000:
                kw["since"] = since / 1e9 - 1e-6
            try:
                raw = api.logs(
                    handle.container_id, stdout=stdout, stderr=not stdout, timestamps=True, **kw
                )
            except self._failures as e:
                raise EngineError(f"cannot read the logs of {handle.name}: {_short(e)}") from None
            texts.append(raw.decode("utf-8", "replace"))
        return texts[0], texts[1]

    def _safe_remove(self, container_id: str) -> None:
        with contextlib.suppress(*self._failures):
            self.client.api.remove_container(container_id, force=True, v=True)

    def remove(self, handle: Handle) -> None:
        self._safe_remove(handle.container_id)

    def inspect(self, ref: str) -> ContainerInfo | None:
        try:
            attrs = self.client.api.inspect_container(ref)
        except self._docker.errors.NotFound:
            return None
        except self._failures as e:
            raise EngineError(f"cannot inspect container {ref!r}: {_short(e)}") from None
        return _info(attrs)

    def list_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        try:
            rows = self.client.api.containers(all=True, filters=filters)
            out = []
            for row in rows:
                with contextlib.suppress(self._docker.errors.NotFound):
                    out.append(_info(self.client.api.inspect_container(row["Id"])))
            return out
        except self._failures as e:
            raise EngineError(f"cannot list containers: {_short(e)}") from None

    def running_containers(self, labels: dict[str, str]) -> list[ContainerInfo]:
        filters: dict[str, Any] = {"status": "running"}
        if labels:
            # KEY alone (value ""): any value — Docker reads "KEY=" as "an empty value"
            filters["label"] = [k if v == "" else f"{k}={v}" for k, v in labels.items()]
        try:
            rows = self.client.api.containers(all=False, filters=filters)
            out = []
            for row in rows:
                with contextlib.suppress(self._docker.errors.NotFound):
                    info = _info(self.client.api.inspect_container(row["Id"]))
                    if info.running:
                        out.append(info)
            return out
        except self._failures as e:
            raise EngineError(f"cannot list containers: {_short(e)}") from None

    def handle_of(self, info: ContainerInfo) -> Handle:
        cgroup: CgroupPaths | None = None
        if info.pid and self.local:
            with contextlib.suppress(CgroupNotFound):
                cgroup = find_cgroup(info.pid)
        return Handle(container_id=info.id, name=info.name, pid=info.pid, cgroup=cgroup)

    def events(self, since_ns: int | None) -> tuple[Iterator[ContainerEvent], Callable[[], None]]:
        """The engine's container events (one long API call on a client of its own, whose
        closing ends a reader blocked in it)."""
        client = self._docker.from_env(timeout=30)
        filters = {"type": "container", "event": ["start", "die", "destroy"]}
        since = None if since_ns is None else f"{since_ns // 10**9}.{since_ns % 10**9:09d}"
        try:
            raw = client.api.events(since=since, filters=filters, decode=True)
        except self._failures as e:
            client.close()
            raise EngineError(f"cannot follow the engine's events: {_short(e)}") from None

        def gen() -> Iterator[ContainerEvent]:
            try:
                for doc in raw:
                    ev = _event(doc)
                    if ev is not None:
                        yield ev
            except self._failures:
                return
            except (OSError, ValueError, AttributeError):  # the stream was closed under us
                return

        def end() -> None:
            with contextlib.suppress(Exception):
                raw.close()
            with contextlib.suppress(Exception):
                client.close()

        return gen(), end

    def stats_stream(self, container_id: str) -> tuple[Any, Callable[[], None]]:
        """The engine's stats stream for a container, and a function that ends it.

        It gets a client of its own: closing that client's connection is what stops a
        reader blocked in the stream (closing the generator from another thread cannot).
        """
        client = self._docker.from_env(timeout=30)
        try:
            stream = client.api.stats(container_id, stream=True, decode=True)
        except self._failures:
            client.close()
            raise
        return stream, client.close

    def create_network(self, name: str, labels: dict[str, str]) -> str:
        try:
            net = self.client.networks.create(
                name, driver="bridge", labels=dict(labels), check_duplicate=True
            )
        except self._failures as e:
            raise EngineError(
                f"the engine could not create network {name!r}: {_short(e)}"
            ) from None
        return str(net.id)

    def remove_network(self, name: str) -> None:
        api = self.client.api
        try:
            attrs = api.inspect_network(name)
        except self._docker.errors.NotFound:
            return
        except self._failures as e:
            raise EngineError(f"cannot inspect network {name!r}: {_short(e)}") from None
        # a container still attached would make the removal fail: detach it first
        for cid in attrs.get("Containers") or {}:
            with contextlib.suppress(*self._failures):
                api.disconnect_container_from_network(cid, attrs["Id"], force=True)
        try:
            api.remove_network(attrs["Id"])
        except self._docker.errors.NotFound:
            return
        except self._failures as e:
            raise EngineError(
                f"the engine could not remove network {name!r}: {_short(e)}"
            ) from None

    def container_ip(self, handle: Handle, network: str) -> str | None:
        try:
            attrs = self.client.api.inspect_container(handle.container_id)
        except self._failures:
            return None
        nets = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
        ep = nets.get(network)
        if ep is None:  # named by id, or by a name the engine spells otherwise
            ep = next(
                (v for v in nets.values() if v and str(v.get("NetworkID", "")).startswith(network)),
                None,
            )
        ip = str((ep or {}).get("IPAddress") or "")
        return ip or None

    def health_status(self, handle: Handle) -> str | None:
        try:
            state = self.client.api.inspect_container(handle.container_id).get("State") or {}
        except self._failures as e:
            raise EngineError(f"cannot inspect container {handle.name}: {_short(e)}") from None
        health = state.get("Health")
        if not health:
            return None
        return str(health.get("Status") or "") or None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def _builtin_network(network: str) -> bool:
    """Network modes that are not a user-defined network (no aliases there)."""
    return network in ("none", "host", "bridge", "default") or network.startswith("container:")


def _host_binding(v: int | str | None) -> int | tuple[str, int] | None:
    """``8080`` → 8080, ``"127.0.0.1:8080"`` → ("127.0.0.1", 8080): the SDK's forms."""
    if isinstance(v, str):
        ip, _, port = v.rpartition(":")
        return (ip, int(port)) if ip else int(port)
    return v


def _info(attrs: dict[str, Any]) -> ContainerInfo:
    state = attrs.get("State") or {}
    host = attrs.get("HostConfig") or {}
    config = attrs.get("Config") or {}
    return ContainerInfo(
        id=attrs["Id"],
        name=str(attrs.get("Name") or "").lstrip("/"),
        image=str(config.get("Image") or attrs.get("Image") or ""),
        running=bool(state.get("Running")),
        pid=int(state.get("Pid") or 0),
        labels=dict(config.get("Labels") or {}),
        memory_limit=int(host.get("Memory") or 0),
        nano_cpus=_nano_cpus(host),
        started_ns=parse_rfc3339(str(state.get("StartedAt") or "")),
        restart_count=int(attrs.get("RestartCount") or 0),
        restarting=bool(state.get("Restarting")),
    )


def _nano_cpus(host: dict[str, Any]) -> int:
    """The CPU limit in billionths of a CPU: ``--cpus`` (NanoCpus), or the same limit set
    as ``--cpu-quota``/``--cpu-period`` (period 100 ms when not given); 0 when unlimited."""
    nano = int(host.get("NanoCpus") or 0)
    if nano:
        return nano
    quota = int(host.get("CpuQuota") or 0)
    period = int(host.get("CpuPeriod") or 0) or 100_000
    return quota * 1_000_000_000 // period if quota > 0 else 0


def _event(doc: dict[str, Any]) -> ContainerEvent | None:
    """A container event of the API (``Action``, ``Actor``, ``timeNano``) → ContainerEvent."""
    action = str(doc.get("Action") or doc.get("status") or "")
    if doc.get("Type", "container") != "container" or action not in ("start", "die", "destroy"):
        return None
    actor = doc.get("Actor") or {}
    attrs = dict(actor.get("Attributes") or {})
    cid = str(actor.get("ID") or doc.get("id") or "")
    code = attrs.pop("exitCode", None)
    name = str(attrs.pop("name", "") or "")
    t = doc.get("timeNano") or int(doc.get("time") or 0) * 10**9
    return ContainerEvent(
        action=action,
        container_id=cid,
        name=name,
        time_ns=int(t),
        exit_code=int(code) if code is not None and str(code).lstrip("-").isdigit() else None,
        labels={k: str(v) for k, v in attrs.items()},
    )


def _reason(e: BaseException) -> str:
    """Why the engine could not be reached, in a few words."""
    text = str(e)
    for needle, reason in (
        ("FileNotFoundError", "no socket at that path"),
        ("No such file", "no socket at that path"),
        ("Connection refused", "connection refused"),
        ("ConnectionRefused", "connection refused"),
        ("Permission denied", "permission denied on the socket"),
        ("PermissionError", "permission denied on the socket"),
        ("timed out", "timed out"),
        ("Name or service not known", "unknown host name"),
    ):
        if needle in text:
            return reason
    return _short(e)


def _short(e: BaseException) -> str:
    text = getattr(e, "explanation", None) or str(e) or type(e).__name__
    text = str(text).strip().splitlines()[0] if str(text).strip() else type(e).__name__
    return text[:300].rstrip(".")
