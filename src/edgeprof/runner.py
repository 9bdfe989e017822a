"""Run a profile: the lifecycle around a session, for every target of a spec.

``run_profile`` is the library function behind ``edgeprof run``. Every planned target is
registered first (so an interrupted run still lists them all). Then each target: open the
collectors its container needs before it exists (the app-metrics socket), create and start
the container, open the rest, observe it in a :class:`~edgeprof.session.Session` until it
exits or times out, record exit code, OOM kill, duration and logs, and remove the
container — always, whatever failed on the way. A failing target is recorded and the run
goes on. ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM turned into it by the CLI) stops and
removes the container, stores every sample taken so far and marks the run interrupted.
A reaper process (:mod:`edgeprof.reaper`) outside the profiler's process group removes
what the run created should the profiler itself be killed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from edgeprof import __version__
from edgeprof.collect.base import CollectContext, Collector
from edgeprof.collect.registry import (
    AppOptions,
    CollectOptions,
    Group,
    GroupEnv,
    StatsSource,
    selected,
)
from edgeprof.engine.base import ContainerRequest, Engine, Handle
from edgeprof.errors import CollectorUnavailable, EngineError, UserError
from edgeprof.hostinfo import HostCaps, detect, host_details
from edgeprof.model import FAILED_STATUSES, Clock, Event, EventKind, TargetStatus, labels_of
from edgeprof.owner import owner_info
from edgeprof.plan import TargetRun, plan
from edgeprof.reaper import OWNER_LABEL, RUN_UID_LABEL, Reaper
from edgeprof.session import Member, Session
from edgeprof.sinks import LatestValues, Tee
from edgeprof.spec import AppMetricsOptions, LoadedSpec
from edgeprof.store.base import RunInfo, Store, TargetInfo
from edgeprof.store.writer import BatchWriter

SIGKILL_EXIT = 128 + signal.SIGKILL


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


@dataclass
class TargetResult:
    name: str
    target_id: int
    status: TargetStatus
    exit_code: int | None = None
    oom_killed: bool = False
    timed_out: bool = False
    duration_s: float = 0.0
    error: str | None = None
    samples: int = 0


@dataclass
class RunResult:
    run_id: int
    status: str
    targets: list[TargetResult] = field(default_factory=list)

    @property
    def failed(self) -> list[TargetResult]:
        return [t for t in self.targets if t.status in FAILED_STATUSES]


class RunHooks:
    """What a live display learns while a run goes on; the defaults do nothing."""

    def run_started(self, run_id: int, image: str, targets: list[TargetRun]) -> None: ...

    def target_started(self, tr: TargetRun, timeout: float) -> None: ...

    def target_tick(self, tr: TargetRun, elapsed: float, latest: dict[str, float]) -> None: ...

    def target_ended(self, tr: TargetRun, result: TargetResult) -> None: ...


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


def _target_config(tr: TargetRun) -> dict[str, Any]:
    return {
        "timeout": tr.target.timeout,
        "resources": tr.target.resources.model_dump(exclude_none=True),
        "env": tr.env,
        "repeat_index": tr.repeat_index,
    }


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


class _Notes:
    """Records each note (collector unavailable, low resolution, …) once per run and target."""

    def __init__(self, clock: Clock) -> None:
        self.seen: set[tuple[str, str, str | None]] = set()
        self.lock = threading.Lock()
        self.clock = clock

    def __call__(
        self,
        emit: Callable[[Event], None],
        kind: EventKind,
        key: str,
        message: str,
        target: str | None = None,
        **data: Any,
    ) -> None:
        with self.lock:
            if (kind, key, target) in self.seen:
                return
            self.seen.add((kind, key, target))
        emit(Event(self.clock.now_ns(), kind, message, target, data))


@dataclass
class _Run:
    """What every target of one run shares."""

    loaded: LoadedSpec
    run_id: int
    run_uid: str
    owner: dict[str, Any]
    image: str
    groups: list[Group]
    interval: float
    store: Store
    engine: Engine
    clock: Clock
    caps: HostCaps
    opts: CollectOptions
    settings: RunSettings
    hooks: RunHooks
    notes: _Notes
    writer: BatchWriter
    work_dir: str
    attempted: set[int] = field(default_factory=set)
    """Targets whose turn came (the rest were never run)."""

    def unavailable(self, group: str, reason: str, target: str | None = None) -> None:
        self.notes(
            self.writer.event,
            "collector_unavailable",
            f"{group}: {reason}",
            f"{group}: {reason}",
            target,
            group=group,
            reason=reason,
        )

    def open(self, c: Collector, ctx: CollectContext) -> bool:
        """Open a collector; one that cannot work here is recorded as unavailable (False)."""
        try:
            c.open(ctx)
        except CollectorUnavailable as e:
            self.unavailable(c.group, str(e), ctx.target)
            return False
        if c.resolution_s and c.resolution_s > self.interval:
            self.notes(
                self.writer.event,
                "low_resolution",
                c.group,
                f"{c.group} metrics come from the engine's stats API: resolution is "
                f"{c.resolution_s:g} s, not {self.interval:g} s",
                ctx.target,
                resolution_s=c.resolution_s,
            )
        return True

    def collectors(self, group: Group, env: GroupEnv, ctx: CollectContext) -> list[Collector]:
        try:
            made = group.factory(env)
        except CollectorUnavailable as e:
            self.unavailable(group.name, str(e), ctx.target)
            return []
        return [c for c in made if self.open(c, ctx)]


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
        store.begin_target(TargetInfo(run_id, tr.index, tr.name, tr.argv, _target_config(tr)))
        for tr in runs
    ]
    result = RunResult(run_id=run_id, status="running")
    reaper = None
    if st.reaper:
        reaper = Reaper.start(run_uid, run_id, st.db_url)
    writer = BatchWriter(store, run_id)
    work_dir: str | None = None
    attempted: set[int] = set()
    try:
        work_dir = tempfile.mkdtemp(prefix=f"edgeprof-run{run_id}-", dir=st.work_dir)
        os.chmod(work_dir, 0o755)
        opts = CollectOptions(
            stats_source=st.stats_source,
            tegrastats_path=prof.tegrastats_path,
            app=_app_options(prof.app_metrics),
        )
        run = _Run(
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
            st,
            ui,
            _Notes(clock),
            writer,
            work_dir,
            attempted,
        )
        ui.run_started(run_id, image, runs)
        for tr, tid in zip(runs, target_ids, strict=True):
            result.targets.append(_run_target(run, tr, tid))
        result.status = "completed"
    except KeyboardInterrupt:
        result.status = "interrupted"
        raise
    finally:
        if result.status == "running":
            result.status = "error"
        with DeferSignals():
            never = [tid for tid in target_ids if tid not in attempted]
            _close_run(store, writer, run_id, result, never, clock, work_dir)
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
    work_dir: str | None,
) -> None:
    errors: list[BaseException] = []
    _best_effort(writer.close, errors)
    for tid in never_run:
        _best_effort(partial(store.update_target, tid, status="not_run"), errors)
    _best_effort(lambda: store.end_run(run_id, result.status, clock.now_ns()), errors)
    if work_dir is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
    if errors and result.status != "interrupted":
        raise errors[0]


def _run_target(run: _Run, tr: TargetRun, target_id: int) -> TargetResult:
    store, engine, clock, ui = run.store, run.engine, run.clock, run.hooks
    prof = run.loaded.spec.profiling
    writer = run.writer
    run.attempted.add(target_id)
    writer.add_target(tr.name, target_id)
    writer.set_default_target(target_id)
    res = TargetResult(name=tr.name, target_id=target_id, status="running")
    timeout = tr.target.timeout
    labels = labels_of(target=tr.name)

    def event(kind: EventKind, message: str, **data: Any) -> None:
        writer.event(Event(clock.now_ns(), kind, message, tr.name, data))

    ctx = CollectContext(
        target=tr.name,
        labels=labels,
        clock=clock,
        interval_s=run.interval,
        emit_event=writer.event,
        engine=engine,
    )
    tdir = tempfile.mkdtemp(prefix=re.sub(r"[^A-Za-z0-9_.-]", "-", tr.name) + "-", dir=run.work_dir)
    os.chmod(tdir, 0o755)
    req = build_request(
        run.loaded,
        tr,
        container_name(run.run_id, tr.name),
        run.image,
        {
            "edgeprof.run": str(run.run_id),
            RUN_UID_LABEL: run.run_uid,
            OWNER_LABEL: json.dumps(run.owner, sort_keys=True),
        },
    )
    env = GroupEnv(
        caps=run.caps,
        opts=run.opts,
        created=True,
        container_dir=tdir,
        host_network=req.network == "host",
        note=lambda msg: run.notes(writer.event, "note", msg, msg, tr.name),
    )
    session: Session | None = None
    handle: Handle | None = None
    pre: list[Collector] = []
    t0 = time.monotonic()
    in_flight = False  # an exception is on its way out: cleanup errors must not mask it
    try:
        ui.target_started(tr, timeout)
        for g in run.groups:
            if g.phase == "before_start":
                for c in run.collectors(g, env, ctx):
                    pre.append(c)
                    setup = c.container_setup()
                    if setup is not None:
                        req.volumes += setup.volumes
                        for k, v in setup.env.items():
                            req.env.setdefault(k, v)
        try:
            handle = engine.start(req)
        except EngineError as e:
            res.status, res.error = "error", str(e)
            event("target_error", str(e))
            for c in pre:
                _best_effort(c.close)
            return res
        t0 = time.monotonic()
        store.update_target(
            target_id, container_id=handle.container_id, started_ns=clock.now_ns(), status="running"
        )
        event(
            "target_started",
            f"container {handle.container_id[:12]} started",
            pid=handle.pid,
            cgroup=handle.cgroup.as_dict() if handle.cgroup else None,
        )
        ctx = dataclasses.replace(
            ctx, container_id=handle.container_id, pid=handle.pid, cgroup=handle.cgroup
        )
        collectors = list(pre)
        host_collectors: list[Collector] = []
        if handle.pid:
            env = dataclasses.replace(env, has_cgroup=handle.cgroup is not None)
            host_ctx = dataclasses.replace(ctx, labels=(), container_id=None, pid=0, cgroup=None)
            for g in run.groups:
                if g.phase == "after_start" and g.scope == "container":
                    collectors += run.collectors(g, env, ctx)
                elif g.phase == "after_start":
                    host_collectors += run.collectors(g, env, host_ctx)
        else:  # the app exited before its first sample: nothing to sample; exit info follows
            event("exited_before_sampling", "the container exited before its first sample")
        latest = LatestValues()

        def on_error(c: Collector, e: BaseException) -> None:
            run.unavailable(c.group, f"failed while sampling: {type(e).__name__}: {e}", tr.name)

        def on_tick(s: Session) -> None:
            ui.target_tick(tr, time.monotonic() - t0, latest.for_labels(labels))

        session = Session(
            engine,
            clock,
            Tee(writer, latest),
            run.interval,
            realtime=prof.realtime,
            host_collectors=host_collectors,
            on_error=on_error,
            on_tick=on_tick,
        )
        member = Member(
            tr.name, "app", handle, labels, collectors, timeout_s=timeout, grace_s=prof.grace
        )
        session.add(member)
        windows = session.sampler.rate_windows()
        if windows:
            run.notes(
                writer.event,
                "rate_windows",
                "rate_windows",
                _windows_message(windows, run.interval),
                None,
                windows=windows,
                interval_s=run.interval,
            )
        session.run()
        res.timed_out = member.timed_out
        res.duration_s = time.monotonic() - t0
        info = engine.exit_info(handle)
        res.exit_code = info.exit_code if info.exit_code is not None else member.exit_code
        if info.duration_s is not None:  # the engine's own start/exit times are exact
            res.duration_s = info.duration_s
        res.oom_killed = info.oom_killed
        res.status = _status(res)
        event(
            "exited",
            f"exit code {res.exit_code}" + (", OOM-killed" if res.oom_killed else ""),
            exit_code=res.exit_code,
            oom_killed=res.oom_killed,
            timed_out=res.timed_out,
        )
        if res.timed_out and res.exit_code == SIGKILL_EXIT and not res.oom_killed:
            event(
                "sigkill_after_grace",
                f"{tr.name} ignored SIGTERM and was killed (SIGKILL) after the {prof.grace:g} s "
                "grace: its PID 1 does not act on SIGTERM (a shell, or a program without a "
                "handler); set run.init: true, use the exec form of the command, or handle SIGTERM",
                grace_s=prof.grace,
            )
    except KeyboardInterrupt:
        in_flight = True
        res.status = "interrupted"
        res.duration_s = time.monotonic() - t0
        with DeferSignals():
            event("interrupted", "run interrupted (Ctrl-C or SIGTERM); container stopped")
            if handle is not None:
                _best_effort(lambda: engine.stop(handle, min(prof.grace, 2.0)))
        raise
    except BaseException:
        in_flight = True
        raise
    finally:
        with DeferSignals():
            _finish_target(run, tr, res, session, pre, handle, tdir, raise_errors=not in_flight)
    return res


def _status(res: TargetResult) -> TargetStatus:
    if res.oom_killed:
        return "oom_killed"
    if res.timed_out:
        return "timed_out"
    if res.exit_code == 0:
        return "exited"
    return "failed"


def _windows_message(windows: dict[str, dict[str, float | None]], interval: float) -> str:
    parts = []
    for name, w in sorted(windows.items()):
        g = w.get("granularity_s")
        step = f" (its counter advances in {g * 1000:g} ms steps)" if g else ""
        parts.append(f"{name} over {(w['window_s'] or 0) * 1000:g} ms windows{step}")
    return (
        f"rates at this {interval * 1000:g} ms interval are taken over longer windows, so "
        "that no sample shows more than the hardware can do: " + "; ".join(parts)
    )


def _best_effort(fn: Callable[[], Any], errors: list[BaseException] | None = None) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - cleanup goes on; the first error is re-raised after
        if errors is not None:
            errors.append(e)


def _finish_target(
    run: _Run,
    tr: TargetRun,
    res: TargetResult,
    session: Session | None,
    pre: list[Collector],
    handle: Handle | None,
    tdir: str,
    raise_errors: bool = True,
) -> None:
    """Stop sampling, store the tail, logs and exit facts, remove the container: each step
    runs even when an earlier one failed (the container is always removed)."""
    store, engine, clock = run.store, run.engine, run.clock
    errors: list[BaseException] = []
    if session is not None:
        _best_effort(lambda: session.close(tr.name), errors)
    else:
        for c in pre:
            _best_effort(c.close)
    _best_effort(run.writer.flush, errors)
    res.samples = run.writer.written(res.target_id)
    if handle is not None:

        def logs() -> None:
            out, err = engine.logs(handle)
            if out:
                store.add_log(res.target_id, "stdout", out)
            if err:
                store.add_log(res.target_id, "stderr", err)

        _best_effort(logs, errors)
        _best_effort(lambda: engine.remove(handle), errors)
    shutil.rmtree(tdir, ignore_errors=True)
    _best_effort(
        lambda: store.update_target(
            res.target_id,
            status=res.status,
            exit_code=res.exit_code,
            oom_killed=res.oom_killed,
            timed_out=res.timed_out,
            duration_s=round(res.duration_s, 3),
            ended_ns=clock.now_ns(),
            error=res.error,
        ),
        errors,
    )
    _best_effort(lambda: run.hooks.target_ended(tr, res))
    if errors and raise_errors:
        raise errors[0]


class DeferSignals:
    """Hold Ctrl-C/SIGTERM while cleaning up, so cleanup is never cut short; a signal that
    arrived meanwhile is raised as KeyboardInterrupt at the end (not lost)."""

    def __enter__(self) -> DeferSignals:
        self.pending = False
        self.saved: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._hold)
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: Any) -> None:
        for sig, h in self.saved.items():
            signal.signal(sig, h)
        if self.pending and et is None:
            raise KeyboardInterrupt
