"""The typed summary of a run: run → targets → metric statistics, with a stable JSON form.

``RunSummary.to_json()`` is the ``edgeprof summary --json`` document; its keys are a
contract (scripts and CI read them), so they only ever grow by new fields documented in
the README, never change. Two keys appear only when the run has them: ``"services"``
(the rows of the services started for the apps, kept apart from the apps' ``"targets"``)
and ``"scenarios"`` (apps run together: alone vs together, see
:mod:`edgeprof.analyze.scenarios`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgeprof.codeprof.top import CodeSummary


def _clean(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


@dataclass(frozen=True)
class GaugeStats:
    """Statistics of a gauge (or a derived rate) over a target's run."""

    mean: float | None
    min: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    count: int
    unit: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "mean": _clean(self.mean),
            "min": _clean(self.min),
            "p50": _clean(self.p50),
            "p95": _clean(self.p95),
            "p99": _clean(self.p99),
            "max": _clean(self.max),
            "count": self.count,
            "unit": self.unit,
        }


@dataclass(frozen=True)
class CounterStats:
    """A counter's total over the run (its increase, or a running total's last value)."""

    total: float
    last: float
    count: int
    unit: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "last": self.last,
            "count": self.count,
            "unit": self.unit,
            "kind": "counter",
        }


MetricStats = GaugeStats | CounterStats


@dataclass(frozen=True)
class EventInfo:
    t_ns: int
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"t_ns": self.t_ns, "kind": self.kind, "message": self.message, "data": self.data}


@dataclass(frozen=True)
class TargetSummary:
    name: str
    args: list[str]
    status: str
    exit_code: int | None
    oom_killed: bool | None
    timed_out: bool | None
    duration_s: float | None
    error: str | None
    container_id: str | None
    config: dict[str, Any]
    metrics: dict[str, MetricStats]
    events: list[EventInfo]
    code: CodeSummary | None = None
    """Its stack samples' top functions (``profiling.code``); None when it has none."""

    @property
    def role(self) -> str:
        """``"service"`` for a service started for the apps, else ``"app"``."""
        return "service" if self.config.get("role") == "service" else "app"

    @property
    def is_service(self) -> bool:
        return self.role == "service"

    def gauge(self, key: str) -> GaugeStats | None:
        m = self.metrics.get(key)
        return m if isinstance(m, GaugeStats) else None

    def counter(self, key: str) -> CounterStats | None:
        m = self.metrics.get(key)
        return m if isinstance(m, CounterStats) else None

    @property
    def samples(self) -> int:
        """Stored samples of every series of the target."""
        return sum(m.count for m in self.metrics.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "args": self.args,
            "status": self.status,
            "exit_code": self.exit_code,
            "oom_killed": self.oom_killed,
            "timed_out": self.timed_out,
            "duration_s": self.duration_s,
            "error": self.error,
            "container_id": self.container_id,
            "config": self.config,
            "metrics": {k: m.to_json() for k, m in self.metrics.items()},
            "events": [e.to_json() for e in self.events],
            **({"code": self.code.to_json()} if self.code is not None else {}),
        }


@dataclass(frozen=True)
class RunMeta:
    id: int
    spec_name: str
    image: str
    spec_path: str | None
    status: str
    started_ns: int
    ended_ns: int | None
    interval_s: float
    host: dict[str, Any]
    edgeprof_version: str | None
    events: list[EventInfo]
    owner: dict[str, Any] = field(default_factory=dict)
    """Who ran it (host, pid, boot): to tell a crashed run; not part of the JSON."""
    meta: dict[str, Any] = field(default_factory=dict)
    """``runs.meta``: device, CI, image and tags (:mod:`edgeprof.farm.meta`); not part of
    the JSON (its keys are a contract)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "spec_name": self.spec_name,
            "image": self.image,
            "spec_path": self.spec_path,
            "status": self.status,
            "started_ns": self.started_ns,
            "ended_ns": self.ended_ns,
            "interval_s": self.interval_s,
            "host": self.host,
            "edgeprof_version": self.edgeprof_version,
            "events": [e.to_json() for e in self.events],
        }


@dataclass(frozen=True)
class ScenarioMember:
    """One app of a together-run: its statistics alone (the ``base_target``'s rows, every
    repeat pooled) and together, and the slowdowns (> 1 always means worse).

    ``alone`` is None when the run holds no alone run of ``base_target`` (``note`` says
    so); ``slowdown`` holds only the ratios both sides allow (a zero or missing side: none).
    """

    name: str
    base_target: str
    status: str
    alone_targets: list[str]
    alone: dict[str, GaugeStats] | None
    together: dict[str, GaugeStats]
    slowdown: dict[str, float]
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "base_target": self.base_target,
            "status": self.status,
            "alone_targets": self.alone_targets,
            "alone": None
            if self.alone is None
            else {k: m.to_json() for k, m in self.alone.items()},
            "together": {k: m.to_json() for k, m in self.together.items()},
            "slowdown": dict(self.slowdown),
            "note": self.note,
        }


@dataclass(frozen=True)
class ScenarioSummary:
    """A scenario of a run: the apps that ran together, in target order."""

    name: str
    targets: list[ScenarioMember]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "targets": [m.to_json() for m in self.targets]}


def service_json(t: TargetSummary) -> dict[str, Any]:
    """A service row: the target fields plus what its config says about the service."""
    c = t.config
    return {
        "service": c.get("service", t.name),
        "scope": c.get("scope"),
        "for": c.get("for"),
        "ready_s": c.get("ready_s"),
        **t.to_json(),
    }


@dataclass(frozen=True)
class RunSummary:
    run: RunMeta
    targets: list[TargetSummary]
    """Every target row of the run, services included (see :attr:`apps`)."""
    scenarios: list[ScenarioSummary] = field(default_factory=list)

    @property
    def apps(self) -> list[TargetSummary]:
        """The rows of the apps (targets and together-run members), services left out."""
        return [t for t in self.targets if not t.is_service]

    @property
    def services(self) -> list[TargetSummary]:
        """The rows of the services started for the apps (``config.role == "service"``)."""
        return [t for t in self.targets if t.is_service]

    def target(self, name: str) -> TargetSummary:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)

    def all_events(self) -> list[tuple[str | None, EventInfo]]:
        """Every event with the name of its target (None: the run's own)."""
        out: list[tuple[str | None, EventInfo]] = [(None, e) for e in self.run.events]
        for t in self.targets:
            out += [(t.name, e) for e in t.events]
        return out

    def to_json(self) -> dict[str, Any]:
        """``{"run", "targets"}`` (the apps), plus ``"services"`` and ``"scenarios"`` when
        the run has any."""
        out: dict[str, Any] = {
            "run": self.run.to_json(),
            "targets": [t.to_json() for t in self.apps],
        }
        services = self.services
        if services:
            out["services"] = [service_json(t) for t in services]
        if self.scenarios:
            out["scenarios"] = [s.to_json() for s in self.scenarios]
        return out
