"""Run a profile: every target of a spec, each in a fresh container (see :mod:`.target`).

``run_profile`` is the library function behind ``edgeprof run``. Every planned target is
registered first (so an interrupted run still lists them all), a reaper process
(:mod:`edgeprof.reaper`) is started outside the profiler's process group to remove what the
run created should the profiler itself be killed, and the targets run one after the
other. A failing target is recorded and the run goes on. ``KeyboardInterrupt`` (Ctrl-C, or
SIGTERM turned into it by the CLI) stops and removes the container, stores every sample
taken so far and marks the run interrupted.
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
from edgeprof.engine.base import Engine
from edgeprof.errors import EngineError, UserError
from edgeprof.hostinfo import HostCaps, detect, host_details
from edgeprof.model import FAILED_STATUSES, Clock
from edgeprof.owner import owner_info
from edgeprof.plan import TargetRun, plan, target_config
from edgeprof.reaper import Reaper
from edgeprof.signals import DeferSignals, best_effort
from edgeprof.sinks import Sink
from edgeprof.spec import AppMetricsOptions, LoadedSpec
from edgeprof.store.base import RunInfo, Store, TargetInfo
from edgeprof.store.writer import BatchWriter
from edgeprof.target import Notes, RunContext, RunHooks, TargetResult, run_target


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


@dataclass
class RunResult:
    run_id: int
    status: str
    targets: list[TargetResult] = field(default_factory=list)

    @property
    def failed(self) -> list[TargetResult]:
        return [t for t in self.targets if t.status in FAILED_STATUSES]


def _select(runs: list[TargetRun], only: list[str] | None, path: str) -> list[TargetRun]:
    if not only:
        return runs
    known = {r.name for r in runs} | {r.name.split("#")[0] for r in runs}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise UserError(
            f"no target named {unknown[0]!r} in {path}; targets are: "
            + ", ".join(r.name for r in runs)
        )
    return [r for r in runs if r.name in only or r.name.split("#")[0] in only]


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
    spec = loaded.spec
    prof = spec.profiling
    interval = st.interval_s or prof.interval
    runs = _select(plan(spec), st.only_targets, loaded.path)
    image = spec.image_ref()
    if not engine.image_exists(image):
        raise EngineError(
            f"image {image!r} (from {loaded.path}: "
            + ("'image'" if spec.image else "namespace/name:version")
            + f") is not present on the {engine.description}; build or load it first (edgeprof never pulls)"
        )
    caps = caps or detect()
    host = {**host_details(caps), **engine.engine_details(), "image": engine.image_info(image)}
    host["gpu"] = _gpu_details(caps)
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
        )
    )
    target_ids = [
        store.begin_target(TargetInfo(run_id, tr.index, tr.name, tr.argv, target_config(tr)))
        for tr in runs
    ]
    result = RunResult(run_id=run_id, status="running")
    work_dir = tempfile.mkdtemp(prefix=f"edgeprof-run{run_id}-", dir=st.work_dir)
    os.chmod(work_dir, 0o755)
    reaper = Reaper.start(run_uid, run_id, st.db_url, work_dir) if st.reaper else None
    writer = BatchWriter(store, run_id)
    attempted: set[int] = set()
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
        )
        ui.run_started(run_id, image, runs)
        for tr, tid in zip(runs, target_ids, strict=True):
            result.targets.append(run_target(run, tr, tid))
            if writer.error is not None:  # samples can no longer be stored: stop here
                break
        result.status = "completed"
    except KeyboardInterrupt:
        result.status = "interrupted"
        raise
    finally:
        if result.status == "running":
            result.status = "error"
        with DeferSignals():
            never = [tid for tid in target_ids if tid not in attempted]
            try:
                _close_run(store, writer, run_id, result, never, clock, work_dir)
            finally:
                if reaper is not None:
                    reaper.done()
    return result


def _app_options(app: AppMetricsOptions) -> AppOptions:
    return AppOptions(
        socket=app.socket,
        udp_port=app.udp_port,
        pywaggle=app.pywaggle,
        pywaggle_tz=app.pywaggle_tz,
        statsd_dialect=app.statsd_dialect,
    )


def _gpu_details(caps: HostCaps) -> dict[str, Any]:
    try:
        from edgeprof.collect.gpu import gpu_host_details

        return gpu_host_details(caps.proc_root, caps.etc_root)
    except Exception as e:  # noqa: BLE001 - host details are best effort
        return {"gpu": None, "reason": str(e)}


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
