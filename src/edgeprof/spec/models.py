"""The profile spec's models: the Waggle ``sage.yaml`` shape with a ``profiling:`` section.

pydantic models with ``extra="forbid"`` (an unknown key is an error, reported with its
line by :mod:`.load`). Sizes take docker's binary units (``256m``, ``1g``).
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgeprof.collect.registry import DEFAULT_GROUPS, KNOWN_GROUPS

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
        for vol in v:
            if ":" not in vol:
                raise ValueError(f"volume {vol!r} must be HOST_PATH:CONTAINER_PATH[:ro]")
        return v

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
        return {str(k): "" if val is None else str(val) for k, val in v.items()}
    return v


def _check_budgets(v: Any) -> Any:
    """``budgets:`` checked when the spec loads (see :mod:`edgeprof.analyze.budgets`)."""
    from edgeprof.analyze.budgets import validate_budgets

    return validate_budgets(v)


BUDGETS_HELP = (
    "metric → k6-style expressions on its summary statistics, e.g. "
    'cpu.percent: ["p95 < 150"], exit_code: ["== 0"]'
)


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

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        return _env_dict(v)

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, v: Any) -> Any:
        return _check_budgets(v)

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
    budgets: dict[str, list[str]] = Field(default_factory=dict, description=BUDGETS_HELP)

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets(cls, v: Any) -> Any:
        return _check_budgets(v)

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

    def image_ref(self) -> str:
        if self.image:
            return self.image
        base = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{base}:{self.version or 'latest'}"
