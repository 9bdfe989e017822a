"""Profile specs: the models (:mod:`.models`) and the loader (:mod:`.load`)."""

from edgeprof.spec.load import LoadedSpec, load_spec, parse_spec
from edgeprof.spec.models import (
    MIN_INTERVAL_S,
    AppMetricsOptions,
    LogOptions,
    Profiling,
    Resources,
    RunOptions,
    Spec,
    TargetSpec,
    parse_port,
    parse_size,
)

__all__ = [
    "MIN_INTERVAL_S",
    "AppMetricsOptions",
    "LoadedSpec",
    "LogOptions",
    "Profiling",
    "Resources",
    "RunOptions",
    "Spec",
    "TargetSpec",
    "load_spec",
    "parse_port",
    "parse_size",
    "parse_spec",
]
