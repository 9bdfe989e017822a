"""Planning: a loaded spec → the ordered list of containers to run, and their requests.

Each target of the spec is first expanded by its ``matrix:`` (one target per combination
of values, named ``{base}-{value}…``: see :meth:`~edgeprof.spec.models.TargetSpec.expand`),
then each runs ``repeat`` times; every repetition is a :class:`TargetRun` with its merged
``run:`` options (the target's over the spec's), environment, budgets, services (the spec's
target-scope services, then the target's own) and ``data_config`` (the target's keys over
the spec's). :func:`run_services` lists the services started once per run;
:func:`plan_scenarios` the members of each ``scenarios:`` entry, which run together after
the alone targets. :func:`build_request` turns one run into the engine-independent
container request.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from edgeprof.engine.base import ContainerRequest
from edgeprof.errors import SpecError
from edgeprof.spec.code import CodeOptions, merge_code
from edgeprof.spec.load import LoadedSpec
from edgeprof.spec.models import RunOptions, ServiceSpec, Spec, TargetSpec


@dataclass(frozen=True)
class TargetRun:
    """One container to run: a target of the spec (after matrix expansion), one repetition
    of it, or one member of a scenario."""

    index: int
    name: str
    target: TargetSpec
    """The target with its matrix values applied (``matrix`` cleared, ``name`` expanded)."""
    argv: list[str]
    repeat_index: int
    run: RunOptions
    env: dict[str, str] = field(default_factory=dict)
    budgets: dict[str, list[str]] = field(default_factory=dict)
    """The spec's budgets with the target's over them (the target's list wins per metric)."""
    services: tuple[ServiceSpec, ...] = ()
    """Target-scope services for this target: the spec's (scope target), then the target's
    own (one with the name of a spec service takes its place)."""
    data_config: dict[str, str] | None = None
    """pywaggle stream name → URL: the target's keys over the spec's; None when neither has one."""
    scenario: str | None = None
    """The scenario this run is a member of (it runs together with the others)."""
    base_target: str | None = None
    """For a scenario member: the name of the alone target it is (``gpu`` for ``both/gpu``)."""
    matrix: dict[str, Any] = field(default_factory=dict)
    """The matrix values (as written in the spec) that made this target; empty without one."""
    code: CodeOptions | None = None
    """``profiling.code``: the target's fields over the spec's; None when neither asks."""

    @property
    def alone_name(self) -> str:
        """The target's name without its repeat number: ``gpu`` for ``gpu#2``."""
        return self.base_target or self.name.split("#")[0]


def _services(spec: Spec, t: TargetSpec) -> tuple[ServiceSpec, ...]:
    out = [s for s in spec.profiling.services if s.scope == "target"]
    for own in t.services:
        at = next((k for k, s in enumerate(out) if s.name.lower() == own.name.lower()), None)
        if at is None:
            out.append(own)
        else:
            out[at] = own
    return tuple(out)


def _data_config(spec: Spec, t: TargetSpec) -> dict[str, str] | None:
    if spec.profiling.data_config is None and t.data_config is None:
        return None
    return {**(spec.profiling.data_config or {}), **(t.data_config or {})}


def _alone(spec: Spec) -> list[TargetRun]:
    """One run per target after matrix expansion (repeat index 0, indexes unset)."""
    out: list[TargetRun] = []
    for i, cell in spec.profiling.expanded():
        t = spec.profiling.targets[i]
        run_opts = _merge_run(spec.run, t.run)
        out.append(
            TargetRun(
                index=-1,
                name=cell.name,
                target=cell.target,
                argv=cell.target.argv(),
                repeat_index=0,
                run=run_opts,
                env={**run_opts.env, **cell.target.env},
                budgets={**spec.profiling.budgets, **t.budgets},
                services=_services(spec, t),
                data_config=_data_config(spec, t),
                matrix=dict(cell.values),
                code=merge_code(spec.profiling.code, cell.target.code),
            )
        )
    return out


def plan(spec: Spec) -> list[TargetRun]:
    """The alone targets in spec order: each target's matrix expanded (in key order), each
    of those repeated ``repeat`` times (``name#1``, ``name#2``… when repeat > 1)."""
    runs: list[TargetRun] = []
    used: set[str] = set()
    for tr in _alone(spec):
        if tr.name in used:  # the spec's validators say where; this guards hand-built specs
            raise SpecError(
                f"target name {tr.name!r} is used twice; give each target a unique name"
            )
        used.add(tr.name)
        repeat = tr.target.repeat
        for r in range(repeat):
            name = tr.name if repeat == 1 else f"{tr.name}#{r + 1}"
            runs.append(replace(tr, index=len(runs), name=name, repeat_index=r))
    return runs


def run_services(spec: Spec) -> list[ServiceSpec]:
    """The services started once per run (``scope: run``), before the first target."""
    return [s for s in spec.profiling.services if s.scope == "run"]


@dataclass(frozen=True)
class ScenarioRun:
    """Targets that run together under one session."""

    name: str
    members: tuple[TargetRun, ...]


def plan_scenarios(spec: Spec, runs: list[TargetRun]) -> list[ScenarioRun]:
    """Each ``scenarios:`` entry → its members, in ``together:`` order: the alone target
    (matrix expanded, repeat index 0) renamed ``{scenario}/{target}`` (``both/gpu``), with
    ``scenario`` and ``base_target`` set; their indexes continue after those of ``runs``.

    Members are built from the whole spec, so a ``runs`` narrowed to some targets still
    gives every member (running the alone targets a scenario needs is the runner's choice).
    """
    alone = {tr.name: tr for tr in _alone(spec)}
    index = max((r.index for r in runs), default=-1) + 1
    out: list[ScenarioRun] = []
    for sc in spec.profiling.scenarios:
        members: list[TargetRun] = []
        for t in sc.together:
            if t not in alone:  # the spec's validators say where; this guards hand-built specs
                raise SpecError(
                    f"scenario {sc.name!r} names no target {t!r}; "
                    f"name targets of this spec: {', '.join(alone)}"
                )
            members.append(
                replace(
                    alone[t],
                    index=index,
                    name=f"{sc.name}/{t}",
                    scenario=sc.name,
                    base_target=t,
                    repeat_index=0,
                )
            )
            index += 1
        out.append(ScenarioRun(sc.name, tuple(members)))
    return out


def _merge_run(base: RunOptions, override: RunOptions | None) -> RunOptions:
    if override is None:
        return base
    merged = base.model_dump()
    for key in override.model_fields_set:
        val = getattr(override, key)
        if key == "env":
            merged["env"] = {**base.env, **val}
        elif key in ("volumes", "devices", "ports"):
            merged[key] = [*getattr(base, key), *val]
        else:
            merged[key] = val.model_dump() if isinstance(val, BaseModel) else val
    return RunOptions.model_validate(merged)


def container_name(run_id: int, target: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", target)
    return f"edgeprof-{run_id}-{safe}-{secrets.token_hex(3)}"


def build_request(
    loaded: LoadedSpec, tr: TargetRun, name: str, image: str, labels: dict[str, str]
) -> ContainerRequest:
    ro = tr.run
    res = tr.target.resources
    log = ro.log
    return ContainerRequest(
        image=image,
        name=name,
        command=tr.argv,
        env=dict(tr.env),
        labels={**labels, "edgeprof.target": tr.name, "edgeprof.spec": loaded.spec.name},
        entrypoint=ro.entrypoint,
        cpus=res.cpus,
        cpu_shares=res.cpu_shares,
        memory=res.memory,
        memory_swap=res.memory_swap,
        shm_size=res.shm_size or ro.shm_size,
        pids_limit=res.pids_limit,
        cpuset=res.cpuset,
        volumes=list(ro.volumes),
        network=ro.network,
        ipc=ro.ipc,
        pid_mode=ro.pid,
        runtime=ro.runtime,
        gpus=ro.gpus,
        ulimits={
            k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in ro.ulimits.items()
        },
        user=ro.user,
        workdir=ro.workdir,
        privileged=ro.privileged,
        devices=list(ro.devices),
        init=ro.init,
        ports=ro.port_map(),
        log_driver=log.driver if log else None,
        log_options=log.log_opts() if log else {},
    )


def target_config(tr: TargetRun) -> dict[str, Any]:
    config: dict[str, Any] = {
        "timeout": tr.target.timeout,
        "resources": tr.target.resources.model_dump(exclude_none=True),
        "env": tr.env,
        "repeat_index": tr.repeat_index,
    }
    if tr.budgets:  # stored with the run, so that `edgeprof check` finds them
        config["budgets"] = tr.budgets
    if tr.matrix:
        config["matrix"] = tr.matrix
    if tr.services:
        config["services"] = [s.name for s in tr.services]
    if tr.data_config is not None:
        config["data_config"] = tr.data_config
    if tr.scenario is not None:
        config["scenario"] = tr.scenario
        config["base_target"] = tr.base_target
    if tr.code is not None and tr.code.enabled:
        config["code"] = tr.code.model_dump()
    return config
