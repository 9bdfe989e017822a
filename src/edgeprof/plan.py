"""Planning: a loaded spec → the ordered list of containers to run, and their requests.

Each target of the spec runs ``repeat`` times; every repetition is a :class:`TargetRun`
with its merged ``run:`` options (the target's over the spec's) and environment;
:func:`build_request` turns one into the engine-independent container request.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from edgeprof.engine.base import ContainerRequest
from edgeprof.errors import SpecError
from edgeprof.spec.load import LoadedSpec
from edgeprof.spec.models import RunOptions, Spec, TargetSpec


@dataclass(frozen=True)
class TargetRun:
    """One container to run: a target of the spec, one repetition of it."""

    index: int
    name: str
    target: TargetSpec
    argv: list[str]
    repeat_index: int
    run: RunOptions
    env: dict[str, str] = field(default_factory=dict)
    budgets: dict[str, list[str]] = field(default_factory=dict)
    """The spec's budgets with the target's over them (the target's list wins per metric)."""


def plan(spec: Spec) -> list[TargetRun]:
    runs: list[TargetRun] = []
    used: set[str] = set()
    for i, t in enumerate(spec.profiling.targets):
        base = t.name or f"t{i + 1}"
        if base in used:
            raise SpecError(f"target name {base!r} is used twice; give each target a unique name")
        used.add(base)
        run_opts = _merge_run(spec.run, t.run)
        budgets = {**spec.profiling.budgets, **t.budgets}
        for r in range(t.repeat):
            name = base if t.repeat == 1 else f"{base}#{r + 1}"
            env = {**run_opts.env, **t.env}
            runs.append(
                TargetRun(
                    index=len(runs),
                    name=name,
                    target=t,
                    argv=t.argv(),
                    repeat_index=r,
                    run=run_opts,
                    env=env,
                    budgets=budgets,
                )
            )
    return runs


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
    return config
