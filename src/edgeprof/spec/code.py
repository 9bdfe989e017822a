"""``profiling.code``: code-level profiles taken from the host (per spec or per target).

``python: true`` runs py-spy on every Python process of the target's container (processes
that start later included); ``native: true`` adds ``perf record`` filtered to the
container's cgroup. A target's ``code`` is laid over the spec's, field by field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SMALL_DEVICE_CPUS = 4
"""Hosts with this many CPUs or fewer (and every Jetson) sample at :data:`SMALL_RATE_HZ` by
default: py-spy falls behind at 100 Hz on a Jetson Orin NX."""
DEFAULT_RATE_HZ = 100
SMALL_RATE_HZ = 50


class CodeOptions(BaseModel):
    """Where the time goes inside the app: stacks sampled from the host."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: bool = Field(
        default=False,
        description="py-spy record from the host on every Python process of the container",
    )
    native: bool = Field(
        default=False,
        description="perf record -e cpu-clock filtered to the container's cgroup (C/C++ frames)",
    )
    rate: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description=f"samples per second; default {DEFAULT_RATE_HZ}, or {SMALL_RATE_HZ} on a "
        f"Jetson or a host with {SMALL_DEVICE_CPUS} CPUs or fewer",
    )
    idle: bool = Field(default=False, description="include the stacks of idle threads")

    @property
    def enabled(self) -> bool:
        return self.python or self.native

    def rate_for(self, ncpu: int, jetson: bool) -> int:
        """The rate to sample at on this host."""
        if self.rate is not None:
            return self.rate
        return SMALL_RATE_HZ if jetson or ncpu <= SMALL_DEVICE_CPUS else DEFAULT_RATE_HZ


def merge_code(spec: CodeOptions | None, target: CodeOptions | None) -> CodeOptions | None:
    """The target's fields (those it sets) over the spec's."""
    if target is None:
        return spec
    if spec is None:
        return target
    return spec.model_copy(update=target.model_dump(exclude_unset=True))
