"""Profile specs: the models (:mod:`.models`) and the loader (:mod:`.load`)."""

from edgeprof.spec.load import LoadedSpec, load_spec, parse_spec
from edgeprof.spec.models import (
    MIN_INTERVAL_S,
    AppMetricsOptions,
    HttpProbe,
    LogOptions,
    MatrixCell,
    Profiling,
    ReadyProbe,
    Resources,
    RunOptions,
    ScenarioSpec,
    ServiceSpec,
    Spec,
    SpecProblem,
    TargetSpec,
    parse_port,
    parse_size,
)

__all__ = [
    "MIN_INTERVAL_S",
    "AppMetricsOptions",
    "HttpProbe",
    "LoadedSpec",
    "LogOptions",
    "MatrixCell",
    "Profiling",
    "ReadyProbe",
    "Resources",
    "RunOptions",
    "ScenarioSpec",
    "ServiceSpec",
    "Spec",
    "SpecProblem",
    "TargetSpec",
    "load_spec",
    "parse_port",
    "parse_size",
    "parse_spec",
]
