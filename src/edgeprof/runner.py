"""Run a profile: every target of a spec, each in a fresh container (see :mod:`.target`).

``run_profile`` is the library function behind ``edgeprof run``. Every planned target is
registered first (so an interrupted run still lists them all), a reaper process
(:mod:`edgeprof.reaper`) is started outside the profiler's process group to remove what the
run created should the profiler itself be killed, and the targets run one after the
other; then each scenario's members run together, observed in one session. A failing
target is recorded and the run goes on. ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM turned
into it by the CLI) stops and removes the containers, stores every sample taken so far and
marks the run interrupted.

A run with services, a data-config or a scenario gets a private network (removed at the
end, always); every target and service joins it, so an app reaches a service by its name.
The run's own services (``scope: run``) start once before the first target and are removed
after the last; one that is not ready makes every target an ``error`` with its message.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from edgeprof import __version__
from edgeprof.collect.registry import AppOptions, CollectOptions, StatsSource, selected
from edgeprof.engine.base import Engine, Handle
from edgeprof.errors import EngineError, UserError
from edgeprof.farm.meta import gpu_details, run_meta
from edgeprof.hostinfo import HostCaps, detect, host_details
from edgeprof.model import FAILED_STATUSES, Clock, Event
from edgeprof.owner import owner_info
from edgeprof.plan import ScenarioRun, TargetRun, plan, plan_scenarios, run_services, target_config
from edgeprof.reaper import RUN_UID_LABEL, Reaper
from edgeprof.services import ServiceFailed, network_name
from edgeprof.signals import DeferSignals, best_effort
from edgeprof.sinks import Sink
from edgeprof.spec import AppMetricsOptions, LoadedSpec
from edgeprof.spec.models import ServiceSpec, Spec
from edgeprof.store.base import RunInfo, Store, TargetInfo
from edgeprof.store.resilient import resilient
from edgeprof.store.writer import BatchWriter
from edgeprof.target import (
    Notes,
    RunContext,
    RunHooks,
    TargetResult,
    end_service_rows,
    record_error,
    run_group,
    run_target,
    start_service_rows,
)


@dataclass
class RunSettings:
    """Choices of ``edgeprof run`` beyond the spec (command-line options)."""

    interval_s: float | None = None
    stats_source: StatsSource = "auto"
    only_targets: list[str] | None = None
    work_dir: str | None = None
    reaper: bool = True
    db_url: str | None = None
    """Where the reaper marks the run crashed should the profiler die (None: it cannot)."""
    sinks: list[Sink] = field(default_factory=list)
    """More consumers of every sample besides the store (a live view, a Prometheus
    endpoint); they also learn of each container (``sinks.member_started``)."""
    tags: dict[str, str] = field(default_factory=dict)
    """``--tag key=value`` pairs, stored in the run's ``meta["tags"]``."""


@dataclass
class RunResult:
    run_id: int
    status: str
    targets: list[TargetResult] = field(default_factory=list)

    @property
    def failed(self) -> list[TargetResult]:
        return [t for t in self.targets if t.status in FAILED_STATUSES]


def _select(
    runs: list[TargetRun],
    scenarios: list[ScenarioRun],
    only: list[str] | None,
    path: str,
    groups: dict[str, list[str]] | None = None,
) -> tuple[list[TargetRun], list[ScenarioRun], list[str]]:
    """The targets and scenarios ``--target`` names (every one without it), and a note for
    each scenario left out. A name selects that target, every repeat of it (``base`` for
    ``base#1``…) or, as a matrix target's name (a key of ``groups``), every target its
    matrix expands into. A scenario runs only when each of its targets is selected; naming
    a scenario selects its targets."""
    if not only:
        return runs, scenarios, []
    groups = groups or {}
    wanted = set(only)
    for n in only:
        wanted |= set(groups.get(n, ()))
    for sc in scenarios:
        if sc.name in wanted:
            wanted |= {_base_of(m) for m in sc.members}
    known = {r.name for r in runs} | {r.name.split("#")[0] for r in runs} | set(groups)
    unknown = [n for n in only if n not in known and n not in {sc.name for sc in scenarios}]
    if unknown:
        names = [r.name for r in runs] + [sc.name for sc in scenarios]
        raise UserError(
            f"no target named {unknown[0]!r} in {path}; targets are: " + ", ".join(names)
        )
    chosen = [r for r in runs if r.name in wanted or r.name.split("#")[0] in wanted]
    bases = {r.name.split("#")[0] for r in chosen} | {r.name for r in chosen}
    kept: list[ScenarioRun] = []
    notes: list[str] = []
    for sc in scenarios:
        missing = [b for b in dict.fromkeys(_base_of(m) for m in sc.members) if b not in bases]
        if not missing:
            kept.append(sc)
        elif bases & {_base_of(m) for m in sc.members}:  # part of it was asked for
            notes.append(
                f"scenario {sc.name} not run: {', '.join(missing)} not selected "
                f"(--target {sc.name} runs it with all its targets)"
            )
    return chosen, kept, notes


def _matrix_groups(spec: Spec) -> dict[str, list[str]]:
    """A matrix target's name → the names of the targets it expands into."""
    prof = spec.profiling
    groups: dict[str, list[str]] = {}
    for i, cell in prof.expanded():
        if prof.targets[i].matrix:
            groups.setdefault(prof.base_name(i), []).append(cell.name)
    return groups


def _base_of(member: TargetRun) -> str:
    return member.base_target or member.name


def _group_services(sc: ScenarioRun, path: str) -> list[ServiceSpec]:
    """The services a scenario's members need, each once (one network holds one service of
    a name)."""
    out: dict[str, tuple[ServiceSpec, str]] = {}
    for m in sc.members:
        for svc in m.services:
            seen = out.get(svc.name)
            if seen is None:
                out[svc.name] = (svc, _base_of(m))
            elif seen[0] != svc:
                raise UserError(
                    f"scenario {sc.name!r} in {path}: targets {seen[1]!r} and {_base_of(m)!r} "
                    f"each define a service named {svc.name!r}, differently, and together they "
                    "share one network; define it once (under profiling.services) or rename one"
                )
    return [v[0] for v in out.values()]


def _check_services(
    engine: Engine,
    shared: list[ServiceSpec],
    groups: list[tuple[list[ServiceSpec], str]],
    path: str,
) -> None:
    """Bad service set-ups, before any container: a missing image, a target's service named
    like one of the run's."""
    names = {s.name for s in shared}
    images: dict[str, str] = {s.image: s.name for s in shared}
    for specs, owner in groups:
        for svc in specs:
            images.setdefault(svc.image, svc.name)
            if svc.name in names:
                raise UserError(
                    f"{path}: service {svc.name!r} of {owner!r} has the name of a run-scope "
                    "service, and both would answer to it on the run's network; rename one"
                )
    for image, name in images.items():
        if not engine.image_exists(image):
            raise EngineError(
                f"image {image!r} of service {name!r} (from {path}) is not present on the "
                f"{engine.description}; build or load it first (edgeprof never pulls)"
            )


def run_profile(
    loaded: LoadedSpec,
    store: Store,
    engine: Engine,
    settings: RunSettings | None = None,
    hooks: RunHooks | None = None,
    caps: HostCaps | None = None,
) -> RunResult:
    st = settings or RunSettings()
    ui = hooks or RunHooks()
    store = resilient(store)  # PostgreSQL: survives an outage, spools what never got there
    spec = loaded.spec
    prof = spec.profiling
    interval = st.interval_s or prof.interval
    planned = plan(spec)
    runs, scenarios, left_out = _select(
        planned, plan_scenarios(spec, planned), st.only_targets, loaded.path, _matrix_groups(spec)
    )
    shared_specs = list(run_services(spec))
    scenario_services = [_group_services(sc, loaded.path) for sc in scenarios]
    members = [m for sc in scenarios for m in sc.members]
    image = spec.image_ref()
    if not engine.image_exists(image):
        raise EngineError(
            f"image {image!r} (from {loaded.path}: "
            + ("'image'" if spec.image else "namespace/name:version")
            + f") is not present on the {engine.description}; build or load it first (edgeprof never pulls)"
        )
    _check_services(
        engine,
        shared_specs,
        [(list(r.services), r.name) for r in runs]
        + [(svcs, sc.name) for svcs, sc in zip(scenario_services, scenarios, strict=True)],
        loaded.path,
    )
    needs_network = bool(
        shared_specs or scenarios or any(r.services or r.data_config for r in [*runs, *members])
    )
    caps = caps or detect()
    host = {**host_details(caps), **engine.engine_details(), "image": engine.image_info(image)}
    host["gpu"] = gpu_details(caps)
    spec_dir = os.path.dirname(os.path.abspath(loaded.path))
    meta = run_meta(caps, host, host["gpu"], host["image"], spec_dir, st.tags)
    clock = Clock()
    run_uid = secrets.token_hex(8)
    owner = owner_info()
    run_id = store.begin_run(
        RunInfo(
            spec_name=spec.name,
            image=image,
            started_ns=clock.now_ns(),
            interval_s=interval,
            spec_path=os.path.abspath(loaded.path),
            spec_text=loaded.text,
            host=host,
            version=__version__,
            owner={**owner, "run_uid": run_uid},
            meta=meta,
        )
    )
    target_ids = [
        store.begin_target(TargetInfo(run_id, tr.index, tr.name, tr.argv, target_config(tr)))
        for tr in runs
    ]
    member_ids = [
        [
            store.begin_target(TargetInfo(run_id, m.index, m.name, m.argv, _member_config(m, sc)))
            for m in sc.members
        ]
        for sc in scenarios
    ]
    all_ids = target_ids + [tid for ids in member_ids for tid in ids]
    result = RunResult(run_id=run_id, status="running")
    work_dir = tempfile.mkdtemp(prefix=f"edgeprof-run{run_id}-", dir=st.work_dir)
    os.chmod(work_dir, 0o755)
    reaper = Reaper.start(run_uid, run_id, st.db_url, work_dir) if st.reaper else None
    writer = BatchWriter(store, run_id)
    attempted: set[int] = set()
    run: RunContext | None = None
    try:
        opts = CollectOptions(
            stats_source=st.stats_source,
            tegrastats_path=prof.tegrastats_path,
            app=_app_options(prof.app_metrics),
        )
        run = RunContext(
            loaded,
            run_id,
            run_uid,
            owner,
            image,
            selected(prof.metrics),
            interval,
            store,
            engine,
            clock,
            caps,
            opts,
            ui,
            Notes(clock),
            writer,
            work_dir,
            attempted,
            list(st.sinks),
            next_index=1 + max([tr.index for tr in [*runs, *members]], default=-1),
        )
        if needs_network:
            run.network = network_name(run_id, run_uid)
            engine.create_network(run.network, run.container_labels())
        ui.run_started(run_id, image, [*runs, *members])
        for note in left_out:  # a scenario only partly selected by --target
            writer.event(Event(clock.now_ns(), "note", note, None, {"left_out": True}))
            best_effort(partial(ui.note, note))
        failed_shared: str | None = None
        if shared_specs:
            try:
                run.shared = start_service_rows(run, shared_specs, None, "run")
            except ServiceFailed as e:
                failed_shared = str(e)
        for tr, tid in zip(runs, target_ids, strict=True):
            if failed_shared is not None:
                result.targets.append(record_error(run, tr, tid, failed_shared))
                continue
            result.targets.append(run_target(run, tr, tid))
            if writer.error is not None:  # samples can no longer be stored: stop here
                break
        for sc, svcs, ids in zip(scenarios, scenario_services, member_ids, strict=True):
            if writer.error is not None:
                break
            if failed_shared is not None:
                for m, tid in zip(sc.members, ids, strict=True):
                    result.targets.append(record_error(run, m, tid, failed_shared))
                continue
            result.targets += run_group(run, list(zip(sc.members, ids, strict=True)), svcs, sc.name)
        result.status = "completed"
    except KeyboardInterrupt:
        result.status = "interrupted"
        raise
    finally:
        if result.status == "running":
            result.status = "error"
        with DeferSignals():
            never = [tid for tid in all_ids if tid not in attempted]
            try:
                errors: list[BaseException] = []
                if run is not None:
                    best_effort(partial(end_service_rows, run, run.shared), errors)
                    if run.network is not None:
                        best_effort(partial(_sweep, engine, run_uid), errors)
                        best_effort(partial(engine.remove_network, run.network), errors)
                try:
                    _close_run(store, writer, run_id, result, never, clock, work_dir)
                finally:
                    if errors and result.status != "interrupted":
                        raise errors[0]
            finally:
                if reaper is not None:
                    reaper.done()
    return result


def _member_config(m: TargetRun, sc: ScenarioRun) -> dict[str, Any]:
    return {
        **target_config(m),
        "scenario": sc.name,
        "base_target": _base_of(m),
        "together": [_base_of(x) for x in sc.members],
    }


def _sweep(engine: Engine, run_uid: str) -> None:
    """Remove any container of this run still there (none should be: each is removed after
    its target), so that its network can go too."""
    for info in engine.list_containers({RUN_UID_LABEL: run_uid}):
        engine.remove(Handle(info.id, info.name, 0, None))


def _app_options(app: AppMetricsOptions) -> AppOptions:
    return AppOptions(
        socket=app.socket,
        udp_port=app.udp_port,
        pywaggle=app.pywaggle,
        pywaggle_tz=app.pywaggle_tz,
        statsd_dialect=app.statsd_dialect,
    )


def _close_run(
    store: Store,
    writer: BatchWriter,
    run_id: int,
    result: RunResult,
    never_run: list[int],
    clock: Clock,
    work_dir: str,
) -> None:
    errors: list[BaseException] = []
    best_effort(writer.close, errors)
    if errors and result.status == "completed":
        result.status = "error"  # its samples could not all be stored
    for tid in never_run:
        best_effort(partial(store.update_target, tid, status="not_run"), errors)
    best_effort(lambda: store.end_run(run_id, result.status, clock.now_ns()), errors)
    shutil.rmtree(work_dir, ignore_errors=True)
    if errors and result.status != "interrupted":
        raise errors[0]
