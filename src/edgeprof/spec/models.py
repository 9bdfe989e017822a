"""The profile spec's models: the Waggle ``sage.yaml`` shape with a ``profiling:`` section.

pydantic models with ``extra="forbid"`` (an unknown key is an error, reported with its
line by :mod:`.load`). Sizes take docker's binary units (``256m``, ``1g``).
"""

from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edgeprof.collect.registry import DEFAULT_GROUPS, KNOWN_GROUPS
from edgeprof.spec.code import CodeOptions

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


class SpecProblem(ValueError):
    """A problem a validator finds below the field it checks; ``loc`` is where, relative to
    that field or model (``("targets", 2, "name")``), so the loader names the file and line."""

    def __init__(self, message: str, loc: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.loc = loc


def _coerce_args(v: Any) -> Any:
    """YAML reads ``[-interval, 1]`` with an int and ``[true]`` with a bool: args are strings."""
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


def _check_args(v: str | list[str]) -> str | list[str]:
    if isinstance(v, str):
        try:
            shlex.split(v)
        except ValueError as e:
            raise ValueError(f"args {v!r} cannot be split like a shell line: {e}") from e
    return v


def _split_args(v: str | list[str]) -> list[str]:
    return shlex.split(v) if isinstance(v, str) else list(v)


def _check_volumes(v: list[str]) -> list[str]:
    for vol in v:
        if ":" not in vol:
            raise ValueError(f"volume {vol!r} must be HOST_PATH:CONTAINER_PATH[:ro]")
    return v


class Resources(_Model):
    cpus: float | None = Field(
        default=None, gt=0, description="CPU limit in cores (0.5 = half a core)"
    )
    cpu_shares: int | None = Field(
        default=None,
        ge=2,
        le=262144,
        description="relative CPU weight when containers compete for cores (docker --cpu-shares, default 1024)",
    )
    memory: int | None = Field(default=None, description="memory limit, e.g. 256m")
    memory_swap: int | None = Field(
        default=None,
        description="memory + swap limit (docker --memory-swap); -1 = unlimited swap; default: no swap",
    )
    shm_size: int | None = None
    pids_limit: int | None = Field(default=None, gt=0)
    cpuset: str | None = None

    @field_validator("memory", "shm_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return None if v is None else parse_size(v)

    @field_validator("memory_swap", mode="before")
    @classmethod
    def _swap(cls, v: Any) -> Any:
        if v is None or v == -1 or v == "-1":
            return None if v is None else -1
        return parse_size(v)

    @model_validator(mode="after")
    def _swap_needs_memory(self) -> Resources:
        if self.memory_swap is not None and self.memory_swap != -1:
            if self.memory is None:
                raise ValueError("memory_swap needs memory too (docker's --memory-swap does)")
            if self.memory_swap < self.memory:
                raise ValueError("memory_swap is memory + swap, so it cannot be below memory")
        return self


class Ulimit(_Model):
    soft: int
    hard: int


_PORT_RE = re.compile(
    r"^(?:(?:(\[[0-9a-fA-F:.]+\]|[0-9.]+):)?(\d{1,5})?:)?(\d{1,5})(?:/(tcp|udp|sctp))?$"
)


def parse_port(text: str) -> tuple[str, int | str | None]:
    """docker's ``-p`` forms → (``container_port/proto``, host binding).

    ``"8090"`` → ("8090/tcp", None) (any free host port); ``"8080:8090"`` → ("8090/tcp",
    8080); ``"127.0.0.1:8080:8090/udp"`` → ("8090/udp", "127.0.0.1:8080").
    """
    m = _PORT_RE.match(str(text).strip())
    if not m:
        raise ValueError(
            f"port {text!r} must look like CONTAINER_PORT, HOST_PORT:CONTAINER_PORT or "
            "IP:HOST_PORT:CONTAINER_PORT, with an optional /tcp or /udp"
        )
    ip, host, cont, proto = m.groups()
    for p in (host, cont):
        if p is not None and not 1 <= int(p) <= 65535:
            raise ValueError(f"port {p} in {text!r} is outside 1-65535")
    key = f"{int(cont)}/{proto or 'tcp'}"
    if host is None:
        return key, (f"{ip.strip('[]')}:0" if ip else None)
    return key, (f"{ip.strip('[]')}:{int(host)}" if ip else int(host))


class LogOptions(_Model):
    """The container's log driver (docker ``--log-driver`` / ``--log-opt``)."""

    driver: str = "json-file"
    mode: Literal["blocking", "non-blocking"] | None = Field(
        default=None,
        description="non-blocking: the app never waits for the log driver (lines may drop when its buffer is full)",
    )
    max_buffer_size: int | None = Field(default=None, description="non-blocking buffer, e.g. 4m")
    options: dict[str, str] = Field(default_factory=dict, description="other --log-opt key: value")

    @field_validator("max_buffer_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return None if v is None else parse_size(v)

    @model_validator(mode="after")
    def _buffer_needs_non_blocking(self) -> LogOptions:
        if self.max_buffer_size is not None and self.mode != "non-blocking":
            raise ValueError("max_buffer_size applies only with mode: non-blocking")
        return self

    def log_opts(self) -> dict[str, str]:
        opts = dict(self.options)
        if self.mode:
            opts["mode"] = self.mode
        if self.max_buffer_size is not None:
            opts["max-buffer-size"] = f"{self.max_buffer_size}b"
        return opts


class RunOptions(_Model):
    """``docker run`` options edge ML apps need."""

    volumes: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    network: str | None = None
    ipc: str | None = None
    pid: str | None = Field(default=None, description="host, or container:NAME (docker --pid)")
    init: bool = Field(default=False, description="a PID 1 that forwards signals (docker --init)")
    ports: list[str] = Field(default_factory=list, description="docker -p forms")
    log: LogOptions | None = None
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
        return _check_volumes(v)

    @field_validator("pid")
    @classmethod
    def _pid(cls, v: str | None) -> str | None:
        if v is None or v == "host" or (v.startswith("container:") and len(v) > 10):
            return v
        raise ValueError("pid must be host or container:NAME")

    @field_validator("ports", mode="before")
    @classmethod
    def _ports(cls, v: Any) -> Any:
        if isinstance(v, list):
            out = []
            for p in v:
                if isinstance(p, bool) or not isinstance(p, str | int):
                    raise ValueError(f'port {p!r} must be a string such as "8080:8090"')
                parse_port(str(p))
                out.append(str(p))
            return out
        return v

    def port_map(self) -> dict[str, int | str | None]:
        return dict(parse_port(p) for p in self.ports)

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
        return {str(k): _env_value(val) for k, val in v.items()}
    return v


def _env_value(val: Any) -> Any:
    """An environment value as text: YAML's booleans (``on``, ``yes``, ``true``) as
    ``true``/``false``, null as empty; a mapping or list is left for pydantic to refuse."""
    if val is None:
        return ""
    if isinstance(val, bool):
        return "true" if val else "false"
    if isinstance(val, dict | list):
        return val
    return str(val)


def _check_budgets(v: Any) -> Any:
    """``budgets:`` checked when the spec loads (see :mod:`edgeprof.analyze.budgets`)."""
    from edgeprof.analyze.budgets import validate_budgets

    return validate_budgets(v)


BUDGETS_HELP = (
    "metric → k6-style expressions on its summary statistics, e.g. "
    'cpu.percent: ["p95 < 150"], exit_code: ["== 0"]'
)


_HOSTNAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
_TARGET_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
PROBE_KINDS = ("tcp", "http", "log", "healthcheck")
SERVICE_ROWS = "service"
"""The name run-scope services are stored under (``service/NAME``): no target or scenario
may take it."""


def _check_port(v: Any) -> Any:
    if v is None:
        return v
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f"port {v!r} must be a number between 1 and 65535")
    if isinstance(v, str) and not re.fullmatch(r"[0-9]{1,5}", v):
        raise ValueError(f"port {v!r} must be a number between 1 and 65535, digits only")
    port = int(v)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535; use a port between 1 and 65535")
    return port


class HttpProbe(_Model):
    """Ready when ``GET http://SERVICE:port/path`` answers 2xx."""

    port: int
    path: str = "/"

    _port = field_validator("port", mode="before")(_check_port)

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path {v!r} must start with '/', e.g. /bottom/image.jpg")
        if not v.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError(
                f"path {v!r} has a space, control or non-ASCII character, which cannot go "
                "in a request line; percent-encode it (a space is %20)"
            )
        return v


class ReadyProbe(_Model):
    """How to tell that a service is ready: exactly one of ``tcp`` (a port accepts a
    connection), ``http`` (a 2xx answer), ``log`` (a regular expression matches a log line)
    or ``healthcheck: true`` (the image's own HEALTHCHECK says healthy)."""

    tcp: int | None = None
    http: HttpProbe | None = None
    log: str | None = None
    healthcheck: bool | None = None

    _tcp = field_validator("tcp", mode="before")(_check_port)

    @field_validator("log")
    @classmethod
    def _log(cls, v: str | None) -> str | None:
        if v is not None:
            if not v.strip():
                raise ValueError(
                    "log pattern is empty, which every line matches; give a regular "
                    "expression of the line that says it is ready, e.g. log: 'listening on'"
                )
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(
                    f"log pattern {v!r} is not a valid regular expression ({e}); fix the pattern"
                ) from None
        return v

    @field_validator("healthcheck")
    @classmethod
    def _healthcheck(cls, v: bool | None) -> bool | None:
        if v is False:
            raise ValueError("healthcheck: false is no probe; write healthcheck: true or remove it")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ReadyProbe:
        kinds = self.kinds()
        if not kinds:
            raise ValueError(
                "a readiness probe needs one kind: tcp, http, log or healthcheck "
                "(e.g. ready: {tcp: 8090})"
            )
        if len(kinds) > 1:
            raise ValueError(
                f"a readiness probe has one kind, but {' and '.join(kinds)} are both set; keep one"
            )
        return self

    def kinds(self) -> list[str]:
        return [k for k in PROBE_KINDS if getattr(self, k) is not None]

    @property
    def kind(self) -> str:
        return self.kinds()[0]


class ServiceSpec(_Model):
    """A container an app needs while it runs (a stream server, a broker), started on the
    run's network before the app, reachable by ``name``, torn down after."""

    name: str = Field(description="a hostname label: the app reaches the service by this name")
    image: str = Field(min_length=1)
    args: str | list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    volumes: list[str] = Field(default_factory=list, description="HOST:CONTAINER[:ro]")
    start_timeout: float = Field(
        default=60, gt=0, le=3600, allow_inf_nan=False, description="seconds to become ready"
    )
    profile: bool = Field(default=False, description="sample it too (role service)")
    ready: ReadyProbe | None = Field(default=None, description="None: ready once it runs")
    scope: Literal["run", "target"] = Field(
        default="target", description="target: started before each target; run: once per run"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _HOSTNAME_RE.fullmatch(v):
            raise ValueError(
                f"service name {v!r} is not a valid hostname; use letters, digits and '-' "
                "(not first or last), at most 63 characters"
            )
        return v

    _coerce = field_validator("args", mode="before")(_coerce_args)
    _args = field_validator("args")(_check_args)
    _env = field_validator("env", mode="before")(_env_dict)
    _volumes = field_validator("volumes")(_check_volumes)

    def argv(self) -> list[str]:
        return _split_args(self.args)


class ScenarioSpec(_Model):
    """Targets that run together under one session (each also runs alone)."""

    name: str
    together: list[str] = Field(description="target names (after matrix expansion), at least two")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _TARGET_NAME_RE.fullmatch(v):
            raise ValueError(
                f"scenario name {v!r} must be letters, digits, '.', '_' or '-' (at most 63)"
            )
        return v

    @field_validator("together")
    @classmethod
    def _together(cls, v: list[str]) -> list[str]:
        seen: set[str] = set()
        for i, name in enumerate(v):
            if name in seen:
                raise SpecProblem(f"together lists {name!r} twice; name each target once", (i,))
            seen.add(name)
        if len(v) < 2:
            raise ValueError("together needs at least two targets, e.g. together: [gpu, cpu]")
        return v


_RESOURCE_KEYS = (
    "cpus",
    "cpu_shares",
    "memory",
    "memory_swap",
    "shm_size",
    "pids_limit",
    "cpuset",
)
MATRIX_KEYS_HELP = "args, env.NAME or a resources field (" + ", ".join(_RESOURCE_KEYS) + ")"
MAX_MATRIX_TARGETS = 1000
_ENV_NAME_RE = re.compile(r"[^=\s\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class MatrixCell:
    """One target a matrix expands into: its name, the matrix values (as written) and the
    target with them applied (``matrix`` cleared)."""

    name: str
    values: dict[str, Any]
    target: TargetSpec


def _name_part(value: Any, position: int) -> str:
    """A matrix value → the part of a target name: its text with every run of characters
    other than letters, digits, '_' and '.' made one '-' (``"--threads 1"`` → ``threads-1``,
    ``0.5`` → ``0.5``, ``true`` → ``true``); a value with nothing left is its position (1…)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = " ".join(
            ("true" if x else "false") if isinstance(x, bool) else str(x) for x in value
        )
    elif value is None:
        text = ""
    else:
        text = str(value)
    part = re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-")
    return part or str(position + 1)


class TargetSpec(_Model):
    name: str | None = None
    args: str | list[str] = Field(default_factory=list)
    timeout: float = Field(default=0, ge=0, description="seconds; 0 = until the app exits")
    env: dict[str, str] = Field(default_factory=dict)
    repeat: int = Field(default=1, ge=1, le=1000)
    resources: Resources = Field(default_factory=Resources)
    run: RunOptions | None = None
    budgets: dict[str, list[str]] = Field(
        default_factory=dict, description=BUDGETS_HELP + " (over the spec's, per metric)"
    )
    services: list[ServiceSpec] = Field(
        default_factory=list,
        description="this target's own services (scope target); same name as a spec service replaces it",
    )
    data_config: dict[str, str] | None = Field(
        default=None, description="pywaggle stream name → URL (over the spec's, per key)"
    )
    matrix: dict[str, list[Any]] | None = Field(
        default=None,
        description="key → values; one target per combination (keys: " + MATRIX_KEYS_HELP + ")",
    )
    code: CodeOptions | None = Field(
        default=None, description="code-level profile (over the spec's profiling.code, per key)"
    )

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        return _env_dict(v)

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, v: Any) -> Any:
        return _check_budgets(v)

    _coerce = field_validator("args", mode="before")(_coerce_args)
    _args = field_validator("args")(_check_args)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not _TARGET_NAME_RE.fullmatch(v):
            raise ValueError(
                f"target name {v!r} must be letters, digits, '.', '_' or '-' (at most 63)"
            )
        return v

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[ServiceSpec]) -> list[ServiceSpec]:
        _unique_services(v, "this target's services")
        for i, s in enumerate(v):
            if s.scope == "run":
                raise SpecProblem(
                    f"service {s.name!r} of a target cannot have scope run; "
                    "run scope belongs on profiling.services",
                    (i, "scope"),
                )
        return v

    @field_validator("data_config")
    @classmethod
    def _data_config(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return _check_data_config(v)

    @field_validator("matrix", mode="before")
    @classmethod
    def _matrix_shape(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, dict):
            raise ValueError(
                "matrix must map keys to lists of values, e.g. matrix: {cpus: [0.5, 1]}"
            )
        for key, values in v.items():
            if not isinstance(key, str) or not (
                key in ("args", *_RESOURCE_KEYS) or (key.startswith("env.") and len(key) > 4)
            ):
                raise SpecProblem(
                    f"unknown matrix key {key!r}; matrix keys are {MATRIX_KEYS_HELP}", (key,)
                )
            if key.startswith("env.") and not _ENV_NAME_RE.fullmatch(key[4:]):
                raise SpecProblem(
                    f"matrix key {key!r} names no valid environment variable (no '=', spaces "
                    "or control characters); write env.NAME, e.g. env.MODE",
                    (key,),
                )
            if not isinstance(values, list) or not values:
                raise SpecProblem(
                    f"matrix key {key!r} needs a list of values, e.g. {key}: [a, b]", (key,)
                )
        if not v:
            raise ValueError("matrix is empty; give it a key, e.g. matrix: {cpus: [0.5, 1]}")
        return v

    @model_validator(mode="after")
    def _matrix_cells(self) -> TargetSpec:
        if self.matrix:
            count = 1
            for values in self.matrix.values():
                count *= len(values)
            if count > MAX_MATRIX_TARGETS:
                raise SpecProblem(
                    f"matrix expands into {count} targets, more than {MAX_MATRIX_TARGETS}; "
                    "give fewer values",
                    ("matrix",),
                )
            self.expand(self.name or "t")  # every combination must make a valid target
        return self

    def argv(self) -> list[str]:
        return _split_args(self.args)

    def expand(self, base: str) -> list[MatrixCell]:
        """The targets this one stands for: itself when it has no matrix, else one per
        combination of the matrix's values (the product in the matrix's key order, the first
        key varying slowest).

        Each is named ``base`` followed by ``-PART`` per key in key order, PART being the
        value made name-safe (:func:`_name_part`): ``{cpus: [0.5, 1], args: ["--threads 1"]}``
        on ``infer`` gives ``infer-0.5-threads-1`` and ``infer-1-threads-1``. Where two
        values of one key give the same PART (``cpuset: ['0-1', '0,1']``), every value of
        that key is named by its position instead (1, 2…); where whole names still clash
        (parts of different keys joining alike), every key is. A matrix value of ``args``
        (a shell line or a list) is appended to the target's args (YAML booleans as
        ``true``/``false``); a resources field or ``env.NAME`` value replaces the
        target's."""
        if not self.matrix:
            return [MatrixCell(base, {}, self)]
        keys = list(self.matrix)
        parts: dict[str, list[str]] = {}
        for k in keys:
            named = [_name_part(v, i) for i, v in enumerate(self.matrix[k])]
            unique = len(set(named)) == len(named)
            parts[k] = named if unique else [str(i + 1) for i in range(len(named))]
        combos = list(itertools.product(*(range(len(self.matrix[k])) for k in keys)))
        names = [
            base + "".join(f"-{parts[k][i]}" for k, i in zip(keys, c, strict=True)) for c in combos
        ]
        if len(set(names)) != len(names):
            names = [base + "".join(f"-{i + 1}" for i in c) for c in combos]
        cells: list[MatrixCell] = []
        for combo, name in zip(combos, names, strict=True):
            values = {k: self.matrix[k][i] for k, i in zip(keys, combo, strict=True)}
            positions = dict(zip(keys, combo, strict=True))
            cells.append(MatrixCell(name, values, self._apply(name, values, positions)))
        return cells

    def _apply(self, name: str, values: dict[str, Any], positions: dict[str, int]) -> TargetSpec:
        args = self.argv()
        env = dict(self.env)
        res = self.resources.model_dump(exclude_unset=True)
        for key, value in values.items():
            loc: tuple[str | int, ...] = ("matrix", key, positions[key])
            if key == "args":
                if isinstance(value, bool):  # YAML's on/off/yes/no, like a target's own args
                    args.append("true" if value else "false")
                elif isinstance(value, list) and all(
                    isinstance(a, str | int | float) for a in value
                ):
                    args += _coerce_args(value)
                elif isinstance(value, str | int | float):
                    try:
                        args += shlex.split(str(value))
                    except ValueError as e:
                        raise SpecProblem(
                            f"matrix value {value!r} of args cannot be split like a shell line: {e}",
                            loc,
                        ) from None
                else:
                    raise SpecProblem(
                        f"matrix value {value!r} of args must be a shell line or a list of arguments",
                        loc,
                    )
            elif key.startswith("env."):
                if isinstance(value, dict | list):
                    raise SpecProblem(
                        f"matrix value {value!r} of {key} must be a single value", loc
                    )
                env[key[4:]] = _env_value(value)
            else:
                res[key] = value
        try:
            resources = Resources.model_validate(res)
        except ValidationError as e:
            err = e.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else ""
            key = field if field in values else next(k for k in values if k in _RESOURCE_KEYS)
            detail = str(err["msg"]).removeprefix("Value error, ")
            raise SpecProblem(
                f"matrix value {values[key]!r} of {key} is not valid: {detail}",
                ("matrix", key, positions[key]),
            ) from None
        return self.model_copy(
            update={"name": name, "args": args, "env": env, "resources": resources, "matrix": None}
        )


def _unique_services(services: list[ServiceSpec], where: str) -> None:
    seen: set[str] = set()
    for i, s in enumerate(services):
        if s.name.lower() in seen:
            raise SpecProblem(
                f"service name {s.name!r} is used twice in {where}; give each service a unique name",
                (i, "name"),
            )
        seen.add(s.name.lower())


def _check_data_config(v: dict[str, str] | None) -> dict[str, str] | None:
    for key, url in (v or {}).items():
        if not key.strip():
            raise ValueError("a data_config stream name is empty; name it, e.g. bottom_camera")
        if not url.strip():
            raise SpecProblem(
                f"data_config stream {key!r} has no URL; give one, e.g. http://playback:8090/bottom/live.mp4",
                (key,),
            )
    return v


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
    statsd_dialect: Literal["etsy", "dogstatsd"] = Field(
        default="etsy",
        description="how a signed StatsD gauge without DogStatsD tags is read: etsy (a change) or dogstatsd (a value)",
    )

    @property
    def any_source(self) -> bool:
        return self.socket or self.pywaggle or self.udp_port is not None


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
    code: CodeOptions | None = Field(
        default=None, description="code-level profile: {python, native, rate, idle}"
    )
    budgets: dict[str, list[str]] = Field(default_factory=dict, description=BUDGETS_HELP)
    services: list[ServiceSpec] = Field(
        default_factory=list,
        description="containers the apps need: scope target (before each target) or run (once)",
    )
    data_config: dict[str, str] | None = Field(
        default=None,
        description="pywaggle stream name → URL, mounted as the data-config JSON in every target",
    )
    scenarios: list[ScenarioSpec] = Field(
        default_factory=list,
        description="targets that also run together, e.g. {name: both, together: [gpu, cpu]}",
    )

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, v: Any) -> Any:
        return _check_budgets(v)

    @field_validator("services")
    @classmethod
    def _services(cls, v: list[ServiceSpec]) -> list[ServiceSpec]:
        _unique_services(v, "profiling.services")
        return v

    @field_validator("data_config")
    @classmethod
    def _data_config(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        return _check_data_config(v)

    def base_name(self, index: int) -> str:
        """The name of target ``index`` before matrix expansion and repeats."""
        return self.targets[index].name or f"t{index + 1}"

    def expanded(self) -> list[tuple[int, MatrixCell]]:
        """Every target after matrix expansion, with the index of the target it comes from."""
        return [(i, c) for i, t in enumerate(self.targets) for c in t.expand(self.base_name(i))]

    @model_validator(mode="after")
    def _names(self) -> Profiling:
        run_scope = {s.name.lower(): s.name for s in self.services if s.scope == "run"}
        owner: dict[str, int] = {}
        expanded: dict[str, list[str]] = {}
        for i, t in enumerate(self.targets):
            for k, s in enumerate(t.services):
                if s.name.lower() in run_scope:
                    raise SpecProblem(
                        f"service name {s.name!r} is also the name of a run-scope service in "
                        "profiling.services (both would answer to it); rename one",
                        ("targets", i, "services", k, "name"),
                    )
            cells = t.expand(self.base_name(i))
            if t.matrix:
                expanded[self.base_name(i)] = [c.name for c in cells]
            for c in cells:
                if c.name == SERVICE_ROWS:
                    raise SpecProblem(
                        f"target name {SERVICE_ROWS!r} is reserved (run-scope services are "
                        f"stored as {SERVICE_ROWS}/NAME); rename the target",
                        ("targets", i, "matrix" if t.matrix else "name"),
                    )
                if c.name in owner and owner[c.name] == i:
                    raise SpecProblem(
                        f"the matrix of profiling.targets[{i}] names two targets {c.name!r} "
                        "(a name joins the values with non-name characters made '-'); "
                        "give values that differ in letters or digits",
                        ("targets", i, "matrix"),
                    )
                if c.name in owner:
                    how = " (through its matrix)" if t.matrix else ""
                    raise SpecProblem(
                        f"target name {c.name!r} is used twice, by profiling.targets[{owner[c.name]}] "
                        f"and profiling.targets[{i}]{how}; give each target a unique name",
                        ("targets", i, "matrix" if t.matrix else "name"),
                    )
                owner[c.name] = i
        scenario_names: set[str] = set()
        for k, sc in enumerate(self.scenarios):
            if sc.name in scenario_names:
                raise SpecProblem(
                    f"scenario name {sc.name!r} is used twice; give each scenario a unique name",
                    ("scenarios", k, "name"),
                )
            scenario_names.add(sc.name)
            if sc.name == SERVICE_ROWS or sc.name in owner:
                what = (
                    f"is reserved (run-scope services are stored as {SERVICE_ROWS}/NAME)"
                    if sc.name == SERVICE_ROWS
                    else "is also a target's name (its members, stored as "
                    f"{sc.name}/TARGET, would clash with that target's services)"
                )
                raise SpecProblem(
                    f"scenario name {sc.name!r} {what}; rename the scenario",
                    ("scenarios", k, "name"),
                )
            for m, name in enumerate(sc.together):
                if name in owner:
                    continue
                loc: tuple[str | int, ...] = ("scenarios", k, "together", m)
                if name in expanded:
                    raise SpecProblem(
                        f"target {name!r} in scenario {sc.name!r} is expanded by its matrix; "
                        f"name one of {', '.join(expanded[name])}",
                        loc,
                    )
                raise SpecProblem(
                    f"scenario {sc.name!r} names no target {name!r}; "
                    f"name targets of this spec: {', '.join(owner)}",
                    loc,
                )
        return self

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        for g in v:
            if g not in KNOWN_GROUPS:
                raise ValueError(
                    f"unknown metric group {g!r}; choose from {', '.join(KNOWN_GROUPS)}"
                )
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _app_listed_but_off(self) -> Profiling:
        if "app" in self.metrics and not self.app_metrics.any_source:
            raise ValueError(
                "metrics lists 'app' but app_metrics turns off socket and pywaggle; "
                "remove 'app' from metrics or turn a source on"
            )
        return self


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

    @model_validator(mode="after")
    def _services_need_the_run_network(self) -> Spec:
        prof = self.profiling
        shared = list(prof.services)  # run scope and spec-level target scope
        for i, t in enumerate(prof.targets):
            if not (shared or t.services):
                continue
            own = t.run is not None and "network" in t.run.model_fields_set
            network = t.run.network if own and t.run is not None else self.run.network
            if network is not None:
                where = f"profiling.targets[{i}].run.network" if own else "run.network"
                raise SpecProblem(
                    f"target {prof.base_name(i)!r} has services, which it reaches on the run's "
                    f"own network, so it cannot also use network {network!r}; remove {where}",
                    ("profiling", "targets", i, "run", "network") if own else ("run", "network"),
                )
        return self

    def image_ref(self) -> str:
        if self.image:
            return self.image
        base = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{base}:{self.version or 'latest'}"
