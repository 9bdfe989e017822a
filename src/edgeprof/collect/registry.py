"""Every metric group, registered once: its name, what it measures, how its collectors are
made, where they run and when they open.

The spec's validation (``profiling.metrics``), the help text and the choice of collectors
for a container all derive from :data:`GROUPS`. A new collector or GPU backend is one
module plus one :func:`register` call here. Factories import their collector modules
lazily, so loading a spec never imports psutil, NVML or the socket code.

* ``scope="container"``: one set of collectors per observed container (labels ``target``);
  ``scope="host"``: one set per session (host CPU, GPUs), without a ``target`` label.
* ``phase="before_start"``: opened before the container is created, because the container
  needs something from them (the app-metrics socket mounted into it).
* ``always``: on whatever ``profiling.metrics`` lists (``container``; ``app``, unless its
  options turn every source off).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from edgeprof.collect.base import Collector
from edgeprof.errors import CollectorUnavailable
from edgeprof.hostinfo import HostCaps

if TYPE_CHECKING:
    from edgeprof.spec.code import CodeOptions

Scope = Literal["container", "host"]
Phase = Literal["before_start", "after_start"]
StatsSource = Literal["auto", "cgroup", "engine-api"]


@dataclass(frozen=True)
class AppOptions:
    """How the app reports its own metrics (the spec's ``profiling.app_metrics``)."""

    socket: bool = True
    udp_port: int | None = None
    pywaggle: bool = True
    pywaggle_tz: str | None = None
    statsd_dialect: str = "etsy"

    @property
    def any_source(self) -> bool:
        return self.socket or self.pywaggle or self.udp_port is not None


@dataclass(frozen=True)
class CollectOptions:
    """Run-wide collector settings, from the spec and the command line."""

    stats_source: StatsSource = "auto"
    tegrastats_path: str | None = None
    app: AppOptions = field(default_factory=AppOptions)


def _no_note(message: str) -> None:
    return None


@dataclass(frozen=True)
class GroupEnv:
    """What a group's factory may look at when making collectors for one container."""

    caps: HostCaps
    opts: CollectOptions = field(default_factory=CollectOptions)
    has_cgroup: bool = True
    """The container's cgroup files are readable from here."""
    created: bool = True
    """edgeprof creates the container (False: attached to one somebody else started)."""
    container_dir: str | None = None
    """A private folder for this container's sockets and logs (when created)."""
    host_network: bool = False
    note: Callable[[str], None] = _no_note
    """Tell the user something true about this group (stored and printed once)."""
    selected: frozenset[str] = frozenset()
    """Every group selected for this run (so that two groups never read the same source)."""
    code: CodeOptions | None = None
    """The target's ``profiling.code`` (its fields over the spec's); None: no stacks."""


Factory = Callable[[GroupEnv], list[Collector]]


@dataclass(frozen=True)
class Group:
    name: str
    description: str
    factory: Factory
    scope: Scope = "container"
    phase: Phase = "after_start"
    always: bool = False


GROUPS: dict[str, Group] = {}


def register(group: Group) -> Group:
    if group.name in GROUPS:
        raise ValueError(f"metric group {group.name!r} is registered twice")
    GROUPS[group.name] = group
    return group


# --- the groups ---------------------------------------------------------------------------


def _container(env: GroupEnv) -> list[Collector]:
    src = env.opts.stats_source
    if src == "engine-api" or (src == "auto" and not env.has_cgroup):
        from edgeprof.collect.enginestats import EngineStatsCollector

        return [EngineStatsCollector(env.caps.cpu_percent_max)]
    if not env.has_cgroup:
        raise CollectorUnavailable(
            "--stats-source cgroup: the container's cgroup files are not readable from here"
        )
    from edgeprof.collect.cgroup import CgroupCollector, NetCollector

    return [CgroupCollector(env.caps.sched_tick_s, env.caps.cpu_percent_max), NetCollector()]


def _system(env: GroupEnv) -> list[Collector]:
    from edgeprof.collect.host import HostCollector

    return [HostCollector(env.caps.cpu_percent_max)]


def _process(env: GroupEnv) -> list[Collector]:
    from edgeprof.collect.procs import ProcessCollector

    return [ProcessCollector(env.caps.cpu_percent_max)]


def _gpu_summary(env: GroupEnv) -> list[Collector]:
    from edgeprof.collect.gpu import gpu_summary_collectors

    if env.caps.jetson and "tegrastats" in env.selected:
        return []  # the tegrastats group reads the same tegrastats: one reader, not two
    return gpu_summary_collectors(env.caps, env.opts.tegrastats_path)


def _gpu_process(env: GroupEnv) -> list[Collector]:
    from edgeprof.collect.gpu import gpu_process_collectors

    return gpu_process_collectors(env.caps)


def _tegrastats(env: GroupEnv) -> list[Collector]:
    from edgeprof.collect.gpu import tegrastats_collectors

    return tegrastats_collectors(env.caps, env.opts.tegrastats_path)


def _app(env: GroupEnv) -> list[Collector]:
    o = env.opts.app
    if not o.any_source:
        return []
    if not env.created or env.container_dir is None:
        raise CollectorUnavailable(
            "app metrics need the socket edgeprof mounts into containers it starts; this "
            "container was started without it"
        )
    from edgeprof.collect.app.listener import AppMetricsCollector
    from edgeprof.collect.app.pywaggle import PywaggleLogCollector

    out: list[Collector] = []
    udp = o.udp_port
    if udp is not None and not env.host_network:
        env.note(
            "app_metrics.udp_port is not offered to this container: it is not on the host "
            "network (run.network: host), so it cannot reach the host's loopback; its "
            "metrics socket works as usual"
        )
        udp = None
    if o.socket or udp is not None:
        sock = os.path.join(env.container_dir, "sock", "metrics.sock") if o.socket else None
        out.append(
            AppMetricsCollector(sock, udp, dialect=o.statsd_dialect, host_network=env.host_network)
        )
    if o.pywaggle:
        out.append(
            PywaggleLogCollector(os.path.join(env.container_dir, "pywaggle"), tz=o.pywaggle_tz)
        )
    return out


def _code(env: GroupEnv) -> list[Collector]:
    o = env.code
    if o is None or not o.enabled:
        return []
    from edgeprof.codeprof.collector import code_collectors

    return code_collectors(o, env.caps, env.container_dir)


register(
    Group(
        "container",
        "container cgroup: CPU, throttling, memory, OOM kills, I/O, pids; network from "
        "/proc/<pid>/net/dev (or the engine's stats API)",
        _container,
        always=True,
    )
)
register(Group("system", "host CPU, memory and load", _system, scope="host"))
register(Group("process", "per-process CPU, memory and threads inside the container", _process))
register(
    Group(
        "gpu-summary",
        "per-GPU utilization, memory, power, temperature, clocks (NVML, or tegrastats on a Jetson)",
        _gpu_summary,
        scope="host",
    )
)
register(
    Group(
        "gpu-process",
        "GPU memory and SM utilization of the container's processes (NVML; GPU memory from "
        "the nvmap client table on a Jetson)",
        _gpu_process,
    )
)
register(
    Group(
        "tegrastats",
        "Jetson tegrastats: GPU, EMC, per-core CPU, temperatures, power rails",
        _tegrastats,
        scope="host",
    )
)
register(
    Group(
        "app",
        "metrics the app reports itself (socket: JSON or StatsD; pywaggle's run log)",
        _app,
        phase="before_start",
        always=True,
    )
)

register(
    Group(
        "code",
        "sampled stacks from the host (profiling.code: py-spy on the container's Python "
        "processes, perf on its cgroup); stored with the run, not as series",
        _code,
        always=True,
    )
)

KNOWN_GROUPS: dict[str, str] = {g.name: g.description for g in GROUPS.values()}
DEFAULT_GROUPS: list[str] = ["container", "system"]


def selected(metrics: list[str]) -> list[Group]:
    """The groups a run uses: those always on, then those listed, in registry order."""
    wanted = set(metrics)
    return [g for g in GROUPS.values() if g.always or g.name in wanted]
