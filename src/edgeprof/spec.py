"""Profile specs: the Waggle ``sage.yaml`` shape with a ``profiling:`` section.

``load_spec(path)`` parses YAML, validates it with pydantic models (unknown keys are
errors) and turns every problem into one :class:`~edgeprof.errors.SpecError` sentence that
names the file, the line, the key path (``profiling.targets[1].timout``) and the fix.
``plan(spec)`` expands targets (``repeat``) into the ordered list of runs to perform.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeprof.collect.base import DEFAULT_GROUPS, KNOWN_GROUPS
from edgeprof.errors import SpecError

MIN_INTERVAL_S = 0.01

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: int | str) -> int:
    """``256m``, ``1g``, ``512MiB``, ``1048576`` → bytes (docker's binary units)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 256m or 1g")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a size must be positive")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size; write e.g. 256m, 1g or a number of bytes")
    number, unit, _ = m.groups()
    size = int(float(number) * _SIZE_MULT[unit.lower()])
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Model):
    cpus: float | None = Field(
        default=None, gt=0, description="CPU limit in cores (0.5 = half a core)"
    )
    memory: int | None = Field(default=None, description="memory limit, e.g. 256m")
    shm_size: int | None = None
    pids_limit: int | None = Field(default=None, gt=0)
    cpuset: str | None = None

    @field_validator("memory", "shm_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return None if v is None else parse_size(v)


class Ulimit(_Model):
    soft: int
    hard: int


class RunOptions(_Model):
    """``docker run`` options edge ML apps need."""

    volumes: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    network: str | None = None
    ipc: str | None = None
    shm_size: int | None = None
    runtime: str | None = None
    gpus: str | int | None = None
    entrypoint: str | list[str] | None = None
    ulimits: dict[str, int | Ulimit] = Field(default_factory=dict)
    user: str | None = None
    workdir: str | None = None
    privileged: bool = False
    devices: list[str] = Field(default_factory=list)

    @field_validator("shm_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return None if v is None else parse_size(v)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        return _env_dict(v)

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[str]) -> list[str]:
        for vol in v:
            if ":" not in vol:
                raise ValueError(f"volume {vol!r} must be HOST_PATH:CONTAINER_PATH[:ro]")
        return v

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus(cls, v: Any) -> Any:
        if v is None or isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        if isinstance(v, str) and (v == "all" or v.isdigit() or v.startswith("device=")):
            return int(v) if v.isdigit() else v
        raise ValueError('gpus must be all, a count, or "device=0,1"')


def _env_dict(v: Any) -> Any:
    if isinstance(v, list):
        out: dict[str, str] = {}
        for item in v:
            if not isinstance(item, str) or "=" not in item:
                raise ValueError(f"env entry {item!r} must be NAME=value")
            k, _, val = item.partition("=")
            out[k] = val
        return out
    if isinstance(v, dict):
        return {str(k): "" if val is None else str(val) for k, val in v.items()}
    return v


class TargetSpec(_Model):
    name: str | None = None
    args: str | list[str] = Field(default_factory=list)
    timeout: float = Field(default=0, ge=0, description="seconds; 0 = until the app exits")
    env: dict[str, str] = Field(default_factory=dict)
    repeat: int = Field(default=1, ge=1, le=1000)
    resources: Resources = Field(default_factory=Resources)
    run: RunOptions | None = None

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        return _env_dict(v)

    @field_validator("args", mode="before")
    @classmethod
    def _scalar_args(cls, v: Any) -> Any:
        # YAML reads `[-interval, 1]` with an int and `[true]` with a bool: args are strings.
        if isinstance(v, list):
            return [
                ("true" if a else "false")
                if isinstance(a, bool)
                else str(a)
                if isinstance(a, int | float)
                else a
                for a in v
            ]
        if isinstance(v, int | float) and not isinstance(v, bool):
            return str(v)
        return v

    @field_validator("args")
    @classmethod
    def _args(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str):
            try:
                shlex.split(v)
            except ValueError as e:
                raise ValueError(f"args {v!r} cannot be split like a shell line: {e}") from e
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", v):
            raise ValueError(
                f"target name {v!r} must be letters, digits, '.', '_' or '-' (at most 63)"
            )
        return v

    def argv(self) -> list[str]:
        return shlex.split(self.args) if isinstance(self.args, str) else list(self.args)


class AppMetricsOptions(_Model):
    """Metrics the app reports itself. On by default; ``socket: false`` / ``pywaggle: false`` opt out."""

    socket: bool = True
    udp_port: int | None = Field(
        default=None, ge=0, le=65535, description="also listen on 127.0.0.1:PORT (0: any)"
    )
    pywaggle: bool = True
    pywaggle_tz: str | None = Field(
        default=None, description="time zone of pywaggle's naive timestamps (default: auto)"
    )


class Profiling(_Model):
    targets: list[TargetSpec] = Field(min_length=1)
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_GROUPS))
    interval: float = Field(default=1.0, ge=MIN_INTERVAL_S, le=3600)
    grace: float = Field(
        default=5.0, ge=0, le=600, description="seconds between SIGTERM and SIGKILL"
    )
    realtime: bool = Field(
        default=True,
        description="sampler thread at SCHED_FIFO 1 when allowed (timely ticks under load)",
    )
    app_metrics: AppMetricsOptions = Field(default_factory=AppMetricsOptions)
    tegrastats_path: str | None = None

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        for g in v:
            if g not in KNOWN_GROUPS:
                raise ValueError(
                    f"unknown metric group {g!r}; choose from {', '.join(KNOWN_GROUPS)}"
                )
        return list(dict.fromkeys(v))


class Spec(_Model):
    name: str
    namespace: str | None = None
    version: str | None = None
    image: str | None = None
    description: str | None = None
    # Waggle sage.yaml keys that edgeprof reads but does not use.
    authors: Any = None
    collaborators: Any = None
    funding: Any = None
    license: Any = None
    keywords: Any = None
    homepage: Any = None
    source: Any = None
    inputs: Any = None
    metadata: Any = None
    testing: Any = None
    resources: Any = None
    # edgeprof's own sections.
    run: RunOptions = Field(default_factory=RunOptions)
    profiling: Profiling

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        return None if v is None else str(v)

    def image_ref(self) -> str:
        if self.image:
            return self.image
        base = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{base}:{self.version or 'latest'}"


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


@dataclass(frozen=True)
class LoadedSpec:
    spec: Spec
    path: str
    text: str


def load_spec(path: str | Path) -> LoadedSpec:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file; pass the path of a profile spec (YAML)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read the profile spec ({e})") from None
    return parse_spec(text, str(p))


def parse_spec(text: str, source: str = "<spec>") -> LoadedSpec:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{where}: YAML syntax error: {problem}; fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: a profile spec must be a YAML mapping with a 'profiling:' section"
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_explain(e, node, source)) from None
    _check_target_names(spec, node, source)
    return LoadedSpec(spec=spec, path=source, text=text)


def _check_target_names(spec: Spec, node: Any, source: str) -> None:
    """Duplicate target names are reported at load time, with file:line and key path."""
    used: set[str] = set()
    for i, t in enumerate(spec.profiling.targets):
        base = t.name or f"t{i + 1}"
        if base in used:
            loc: tuple[Any, ...] = ("profiling", "targets", i, "name")
            line = _node_line(node, loc)
            where = f"{source}:{line}" if line else source
            raise SpecError(
                f"{where}: target name {base!r} in '{_loc_path(loc)}' is used twice; "
                "give each target a unique name"
            )
        used.add(base)


def _loc_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _node_line(node: Any, loc: tuple[Any, ...]) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _data_loc(loc: tuple[Any, ...], node: Any, kind: str) -> tuple[Any, ...]:
    """Keep the parts of a pydantic error location that are keys/indices of the document.

    pydantic adds union-member tags (``str``, ``list[str]``, ``int``, ``Ulimit``) to the
    location; they are not keys the user wrote, so they are dropped. A key that is absent
    is kept only as the last part of a ``missing`` error.
    """
    out: list[Any] = []
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            nxt = next((v for k, v in node.value if k.value == part), None)
            if nxt is not None:
                out.append(part)
                node = nxt
                continue
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            out.append(part)
            node = node.value[part]
            continue
        if kind == "missing" and i == len(loc) - 1:
            out.append(part)
    return tuple(out)


def _explain(err: ValidationError, node: Any, source: str) -> str:
    e = err.errors()[0]
    loc = _data_loc(tuple(e["loc"]), node, e["type"])
    path = _loc_path(loc) or "(top level)"
    line = _node_line(node, loc)
    where = f"{source}:{line}" if line else source
    kind = e["type"]
    if kind == "extra_forbidden":
        msg = f"unknown key '{path}'; remove it or check its spelling"
    elif kind == "missing":
        msg = f"missing required key '{path}'; add it"
    else:
        detail = str(e["msg"])
        detail = detail.removeprefix("Value error, ")
        value = e.get("input")
        shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
        msg = f"invalid value for '{path}'{shown}: {detail}"
        if isinstance(value, bool) and "string" in detail:
            msg += "; put it in quotes (YAML reads yes/no/on/off/true/false as booleans)"
    more = len(err.errors()) - 1
    suffix = f" ({more} more problem{'s' if more > 1 else ''} after this one)" if more else ""
    return f"{where}: {msg}{suffix}"


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
        elif key in ("volumes", "devices"):
            merged[key] = [*getattr(base, key), *val]
        else:
            merged[key] = val.model_dump() if isinstance(val, BaseModel) else val
    return RunOptions.model_validate(merged)
