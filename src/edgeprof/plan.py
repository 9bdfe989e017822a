"""Planning: a loaded spec → the ordered list of containers to run.

Each target of the spec runs ``repeat`` times; every repetition is a :class:`TargetRun`
with its merged ``run:`` options (the target's over the spec's) and environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from edgeprof.errors import SpecError
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


def plan(spec: Spec) -> list[TargetRun]:
    runs: list[TargetRun] = []
    used: set[str] = set()
    for i, t in enumerate(spec.profiling.targets):
        base = t.name or f"t{i + 1}"
        if base in used:
            raise SpecError(f"target name {base!r} is used twice; give each target a unique name")
        used.add(base)
        run_opts = _merge_run(spec.run, t.run)
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
