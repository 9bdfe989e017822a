"""Run a profile: every target in a fresh container, sampled, stored, cleaned up.

``run_profile`` is the library function behind ``edgeprof run``. Each target: create and
start its container, open the collectors of the spec's metric groups, sample until the app
exits or its timeout (then SIGTERM, grace, SIGKILL), record exit code, OOM kill, duration
and logs, close everything and remove the container. A failing target is recorded and the
run goes on. ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM turned into it by the CLI) stops
and removes the container, stores every sample taken so far and marks the run interrupted.
"""

from __future__ import annotations

import os
import platform
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeprof import __version__
from edgeprof.collect.base import CollectContext, Collector
from edgeprof.engine.base import ContainerRequest, Engine, Handle
from edgeprof.errors import CollectorUnavailable, EngineError, UserError
from edgeprof.model import Clock, Event, labels_of
from edgeprof.sampler import Sampler
from edgeprof.spec import LoadedSpec, TargetRun, plan
from edgeprof.store.sql import BatchWriter, SQLStore

METRICS_DIR_IN_CONTAINER = "/run/edgeprof"
METRICS_SOCKET_IN_CONTAINER = f"{METRICS_DIR_IN_CONTAINER}/metrics.sock"
PYWAGGLE_DIR_IN_CONTAINER = "/run/pywaggle"


@dataclass
class RunOptions:
    interval_s: float | None = None
    stats_source: str = "auto"  # auto | cgroup | engine-api
    only_targets: list[str] | None = None
    work_dir: str | None = None


@dataclass
class TargetResult:
    name: str
    target_id: int
    status: str
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
        return [t for t in self.targets if t.status in ("failed", "oom_killed", "error")]


class Progress:
    """Callbacks for the CLI's live display; the default does nothing."""

    def run_started(self, run_id: int, image: str, targets: list[TargetRun]) -> None: ...

    def target_started(self, tr: TargetRun, timeout: float) -> None: ...

    def target_tick(self, tr: TargetRun, elapsed: float, latest: dict[str, float]) -> None: ...

    def target_ended(self, tr: TargetRun, result: TargetResult) -> None: ...

    def note(self, message: str) -> None: ...


def host_details(engine: Any) -> dict[str, Any]:
    import psutil

    details: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": psutil.cpu_count(),
        "memory_total_bytes": psutil.virtual_memory().total,
    }
    if hasattr(engine, "engine_details"):
        details.update(engine.engine_details())
    try:
        from edgeprof.collect.gpu import gpu_host_details

        details["gpu"] = gpu_host_details()
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001 - host details are best effort
        details["gpu"] = {"gpu": None, "reason": str(e)}
    return details


def _container_name(run_id: int, tr: TargetRun) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", tr.name)
    return f"edgeprof-{run_id}-{safe}-{secrets.token_hex(3)}"


class _Unavailable:
    """Records each (group, reason) once per run (called from the main and sampler threads)."""

    def __init__(self, clock: Clock, progress: Progress) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.clock, self.progress = clock, progress

    def __call__(self, group: str, reason: str, emit: Callable[[Event], None]) -> None:
        with self.lock:
            if (group, reason) in self.seen:
                return
            self.seen.add((group, reason))
        emit(
            Event(
                self.clock.now_ns(),
                "collector_unavailable",
                f"{group}: {reason}",
                data={"group": group, "reason": reason},
            )
        )
        self.progress.note(f"metric group '{group}' unavailable: {reason}")


def _collectors_for(
    groups: list[str],
    *,
    has_cgroup: bool,
    stats_source: str,
    unavailable: Callable[[str, str], None],
) -> list[Collector]:
    """Collectors that open after the container started (they need its pid/cgroup)."""
    from edgeprof.collect.cgroup import CgroupCollector, NetCollector
    from edgeprof.collect.enginestats import EngineStatsCollector
    from edgeprof.collect.host import HostCollector
    from edgeprof.collect.procs import ProcessCollector

    out: list[Collector] = []
    use_api = stats_source == "engine-api" or (stats_source == "auto" and not has_cgroup)
    if use_api:
        out.append(EngineStatsCollector())
    else:
        out += [CgroupCollector(), NetCollector()]
    for g in groups:
        if g in ("container", "app"):
            continue
        if g == "system":
            out.append(HostCollector())
        elif g == "process":
            out.append(ProcessCollector())
        elif g in ("gpu-summary", "gpu-process", "tegrastats"):
            try:
                from edgeprof.collect.gpu import gpu_collectors
            except ImportError:
                unavailable(g, "GPU collectors are not part of this build")
                continue
            try:
                out += gpu_collectors(g)
            except CollectorUnavailable as e:
                unavailable(g, str(e))
        else:  # pragma: no cover - spec validation rejects unknown groups
            unavailable(g, "unknown metric group")
    return out


class _AppMetrics:
    """The per-target metrics socket and pywaggle log folder, opened before each container.

    On by default for every target (opt out with ``profiling.app_metrics``): the socket's
    folder is mounted read-only at ``/run/edgeprof`` (sending works on a read-only mount;
    the container cannot remove or replace the socket), and ``EDGEPROF_METRICS_SOCKET``
    points at it; pywaggle's ``PYWAGGLE_LOG_DIR`` is a writable folder followed from here.
    """

    def __init__(self, loaded: LoadedSpec, work_dir: str) -> None:
        self.opts = loaded.spec.profiling.app_metrics
        self.work_dir = work_dir

    def prepare(
        self, ctx: CollectContext, req: ContainerRequest, unavailable: Callable[[str, str], None]
    ) -> list[Collector]:
        if not (self.opts.socket or self.opts.pywaggle or self.opts.udp_port is not None):
            return []
        from edgeprof.collect.appmetrics import AppMetricsCollector, PywaggleLogCollector

        out: list[Collector] = []
        tdir = tempfile.mkdtemp(prefix=f"{ctx.target.replace('/', '-')}-", dir=self.work_dir)
        os.chmod(tdir, 0o755)
        if self.opts.socket or self.opts.udp_port is not None:
            if self.opts.socket:
                ctx.options["socket_path"] = os.path.join(tdir, "sock", "metrics.sock")
            if self.opts.udp_port is not None:
                ctx.options["udp_port"] = self.opts.udp_port
            c = AppMetricsCollector()
            if _open(c, ctx, unavailable):
                out.append(c)
                if self.opts.socket:
                    req.volumes.append(
                        f"{os.path.join(tdir, 'sock')}:{METRICS_DIR_IN_CONTAINER}:ro"
                    )
                    req.env.setdefault("EDGEPROF_METRICS_SOCKET", METRICS_SOCKET_IN_CONTAINER)
                if c.udp_port and req.network == "host":
                    req.env.setdefault("EDGEPROF_METRICS_UDP", f"127.0.0.1:{c.udp_port}")
                elif c.udp_port:
                    unavailable(
                        "app",
                        "app_metrics.udp_port needs run.network: host (the "
                        "container's own loopback cannot reach the listener)",
                    )
        if self.opts.pywaggle:
            ctx.options["pywaggle_dir"] = os.path.join(tdir, "pywaggle")
            ctx.options["pywaggle_container_dir"] = PYWAGGLE_DIR_IN_CONTAINER
            if self.opts.pywaggle_tz:
                ctx.options["pywaggle_tz"] = self.opts.pywaggle_tz
            pc = PywaggleLogCollector()
            if _open(pc, ctx, unavailable):
                out.append(pc)
                req.volumes.append(f"{ctx.options['pywaggle_dir']}:{PYWAGGLE_DIR_IN_CONTAINER}:rw")
                req.env.setdefault("PYWAGGLE_LOG_DIR", PYWAGGLE_DIR_IN_CONTAINER)
        return out


def _open(c: Collector, ctx: CollectContext, unavailable: Callable[[str, str], None]) -> bool:
    """Open a collector; one that cannot work here is recorded as unavailable (False)."""
    try:
        c.open(ctx)
    except CollectorUnavailable as e:
        unavailable(c.group, str(e))
        return False
    return True


def _request(loaded: LoadedSpec, tr: TargetRun, run_id: int, image: str) -> ContainerRequest:
    ro = tr.run
    res = tr.target.resources
    return ContainerRequest(
        image=image,
        name=_container_name(run_id, tr),
        command=tr.argv,
        env=dict(tr.env),
        labels={
            "edgeprof.run": str(run_id),
            "edgeprof.target": tr.name,
            "edgeprof.spec": loaded.spec.name,
        },
        entrypoint=ro.entrypoint,
        cpus=res.cpus,
        memory=res.memory,
        shm_size=res.shm_size or ro.shm_size,
        pids_limit=res.pids_limit,
        cpuset=res.cpuset,
        volumes=list(ro.volumes),
        network=ro.network,
        ipc=ro.ipc,
        runtime=ro.runtime,
        gpus=ro.gpus,
        ulimits={
            k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in ro.ulimits.items()
        },
        user=ro.user,
        workdir=ro.workdir,
        privileged=ro.privileged,
        devices=list(ro.devices),
    )


def _target_config(tr: TargetRun) -> dict[str, Any]:
    return {
        "timeout": tr.target.timeout,
        "resources": tr.target.resources.model_dump(exclude_none=True),
        "env": tr.env,
        "repeat_index": tr.repeat_index,
    }


class _Waiter:
    """Waits for the container's exit in a thread (one long API call, no polling)."""

    def __init__(self, engine: Engine, handle: Handle) -> None:
        self.done = threading.Event()
        self.code: int | None = None
        self._t = threading.Thread(
            target=self._run, args=(engine, handle), daemon=True, name="edgeprof-wait"
        )
        self._t.start()

    def _run(self, engine: Engine, handle: Handle) -> None:
        self.code = engine.wait(handle, None)
        self.done.set()


@dataclass
class _Run:
    """What every target of one run shares."""

    loaded: LoadedSpec
    run_id: int
    image: str
    groups: list[str]
    interval: float
    store: SQLStore
    engine: Engine
    clock: Clock
    opts: RunOptions
    ui: Progress
    unavailable: _Unavailable
    app: _AppMetrics


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
    store: SQLStore,
    engine: Engine,
    options: RunOptions | None = None,
    progress: Progress | None = None,
) -> RunResult:
    opts = options or RunOptions()
    ui = progress or Progress()
    spec = loaded.spec
    prof = spec.profiling
    interval = opts.interval_s or prof.interval
    runs = _select(plan(spec), opts.only_targets, loaded.path)
    image = spec.image_ref()
    if not engine.image_exists(image):
        raise EngineError(
            f"image {image!r} (from {loaded.path}: "
            + ("'image'" if spec.image else "namespace/name:version")
            + f") is not present on the {engine.description}; build or load it first (edgeprof never pulls)"
        )
    host = {**host_details(engine), "image": engine.image_info(image)}
    clock = Clock()
    run_id = store.begin_run(
        spec_name=spec.name,
        image=image,
        spec_path=os.path.abspath(loaded.path),
        spec_text=loaded.text,
        started_ns=clock.now_ns(),
        interval_s=interval,
        host=host,
        version=__version__,
    )
    result = RunResult(run_id=run_id, status="running")
    work_dir: str | None = None
    try:
        work_dir = tempfile.mkdtemp(prefix=f"edgeprof-run{run_id}-", dir=opts.work_dir)
        os.chmod(work_dir, 0o755)
        run = _Run(
            loaded,
            run_id,
            image,
            list(dict.fromkeys(["container", *prof.metrics])),
            interval,
            store,
            engine,
            clock,
            opts,
            ui,
            _Unavailable(clock, ui),
            _AppMetrics(loaded, work_dir),
        )
        ui.run_started(run_id, image, runs)
        for tr in runs:
            result.targets.append(_run_target(run, tr))
        result.status = "completed"
    except KeyboardInterrupt:
        result.status = "interrupted"
        raise
    finally:
        if result.status == "running":
            result.status = "error"
        with _DeferSignals():
            store.end_run(run_id, result.status, clock.now_ns())
            if work_dir is not None:
                shutil.rmtree(work_dir, ignore_errors=True)
    return result


def _run_target(run: _Run, tr: TargetRun) -> TargetResult:
    store, engine, clock, ui = run.store, run.engine, run.clock, run.ui
    prof = run.loaded.spec.profiling
    target_id = store.begin_target(run.run_id, tr.index, tr.name, tr.argv, _target_config(tr))
    res = TargetResult(name=tr.name, target_id=target_id, status="running")
    timeout = tr.target.timeout
    describe: dict[str, tuple[str, str]] = {}
    # Every event and sample of the target goes through the writer's thread: the sampler
    # thread never waits on the database.
    writer = BatchWriter(store, run.run_id, target_id, describe)

    def event(kind: str, message: str, **data: Any) -> None:
        writer.event(Event(clock.now_ns(), kind, message, tr.name, data))

    def unavail(group: str, reason: str) -> None:
        run.unavailable(group, reason, writer.event)

    ctx = CollectContext(
        target=tr.name,
        labels=labels_of(target=tr.name),
        interval_s=run.interval,
        options={
            "clock": clock,
            **({"tegrastats_path": prof.tegrastats_path} if prof.tegrastats_path else {}),
        },
        emit_event=writer.event,
        engine=engine,
    )
    collectors: list[Collector] = []
    handle: Handle | None = None
    sampler: Sampler | None = None
    t0 = time.monotonic()
    in_flight = False  # an exception is already on its way out: cleanup errors must not mask it
    ui.target_started(tr, timeout)
    try:
        req = _request(run.loaded, tr, run.run_id, run.image)
        collectors += run.app.prepare(ctx, req, unavail)
        try:
            handle = engine.start(req)
        except EngineError as e:
            res.status, res.error = "error", str(e)
            event("target_error", str(e))
            return res
        t0 = time.monotonic()
        store.update_target(
            target_id, container_id=handle.container_id, started_ns=clock.now_ns(), status="running"
        )
        event(
            "target_started",
            f"container {handle.container_id[:12]} started",
            pid=handle.pid,
            cgroup=handle.cgroup.__dict__ if handle.cgroup else None,
        )
        ctx.container_id, ctx.pid, ctx.cgroup = handle.container_id, handle.pid, handle.cgroup
        if handle.pid:
            late = _collectors_for(
                run.groups,
                has_cgroup=handle.cgroup is not None,
                stats_source=run.opts.stats_source,
                unavailable=unavail,
            )
        else:  # the app exited before its first sample: nothing to sample; exit info follows
            late = []
            event("exited_before_sampling", "the container exited before its first sample")
        for c in late:
            if not _open(c, ctx, unavail):
                continue
            collectors.append(c)
            resolution = getattr(c, "resolution_s", None)
            if resolution:
                event(
                    "low_resolution",
                    f"container metrics come from the engine's stats API: resolution "
                    f"is {resolution:g} s, not {run.interval:g} s",
                    resolution_s=resolution,
                )

        def on_error(c: Collector, e: BaseException) -> None:
            unavail(c.group, f"failed while sampling: {type(e).__name__}: {e}")

        sampler = Sampler(
            collectors,
            run.interval,
            clock,
            writer,
            on_error,
            realtime=prof.realtime,
            describe=describe,
        )
        sampler.start()
        waiter = _Waiter(engine, handle)
        while not waiter.done.wait(min(0.25, max(0.05, run.interval))):
            elapsed = time.monotonic() - t0
            ui.target_tick(tr, elapsed, sampler.latest)
            if timeout > 0 and elapsed >= timeout:
                res.timed_out = True
                event(
                    "timed_out",
                    f"timeout of {timeout:g} s reached; stopping (SIGTERM, "
                    f"{prof.grace:g} s grace, SIGKILL)",
                )
                engine.stop(handle, prof.grace)
                waiter.done.wait(prof.grace + 10)
                break
        res.duration_s = time.monotonic() - t0
        ui.target_tick(tr, res.duration_s, sampler.latest)
        info = engine.exit_info(handle)
        res.exit_code = info.exit_code if info.exit_code is not None else waiter.code
        if info.duration_s is not None:  # the engine's own start/exit times are exact
            res.duration_s = info.duration_s
        res.oom_killed = info.oom_killed
        if res.oom_killed:
            res.status = "oom_killed"
        elif res.timed_out:
            res.status = "timed_out"
        elif res.exit_code == 0:
            res.status = "exited"
        else:
            res.status = "failed"
        event(
            "exited",
            f"exit code {res.exit_code}" + (", OOM-killed" if res.oom_killed else ""),
            exit_code=res.exit_code,
            oom_killed=res.oom_killed,
            timed_out=res.timed_out,
        )
    except KeyboardInterrupt:
        in_flight = True
        res.status = "interrupted"
        res.duration_s = time.monotonic() - t0
        with _DeferSignals():
            event("interrupted", "run interrupted (Ctrl-C or SIGTERM); container stopped")
            if handle is not None:
                _best_effort(lambda: engine.stop(handle, min(prof.grace, 2.0)))
        raise
    except BaseException:
        in_flight = True
        raise
    finally:
        with _DeferSignals():
            _finish_target(
                run, tr, res, writer, sampler, collectors, handle, raise_errors=not in_flight
            )
    return res


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
    writer: BatchWriter,
    sampler: Sampler | None,
    collectors: list[Collector],
    handle: Handle | None,
    raise_errors: bool = True,
) -> None:
    """Stop sampling, store the tail, logs and exit facts, remove the container: each step
    runs even when an earlier one failed (the container is always removed)."""
    store, engine, clock = run.store, run.engine, run.clock
    errors: list[BaseException] = []

    def stop_sampler() -> None:
        assert sampler is not None
        sampler.stop(final_sample=True)
        writer.event(
            Event(
                clock.now_ns(),
                "sampler_timing",
                "sampler schedule and own CPU use",
                tr.name,
                {**sampler.timing().as_dict(), "realtime_error": sampler.realtime_error},
            )
        )

    if sampler is not None:
        _best_effort(stop_sampler, errors)
    for c in collectors:
        _best_effort(c.close)
        if getattr(c, "sample_after_close", False):  # close() drained its socket: the last messages

            def tail(c: Collector = c) -> None:
                batch = c.sample(clock.now_ns())
                if sampler is not None:
                    sampler.learn(c)  # units of metrics first seen in this tail
                writer(batch)

            _best_effort(tail)
    try:
        writer.close()
        res.samples = writer.written
    except Exception as e:  # noqa: BLE001
        errors.append(e)
    if handle is not None:

        def logs() -> None:
            out, err = engine.logs(handle)
            if out:
                store.add_log(res.target_id, "stdout", out)
            if err:
                store.add_log(res.target_id, "stderr", err)

        _best_effort(logs, errors)
        _best_effort(lambda: engine.remove(handle), errors)
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
    _best_effort(lambda: run.ui.target_ended(tr, res))
    if errors and raise_errors:
        raise errors[0]


class _DeferSignals:
    """Hold Ctrl-C/SIGTERM while cleaning up, so cleanup is never cut short; a signal that
    arrived meanwhile is raised as KeyboardInterrupt at the end (not lost)."""

    def __enter__(self) -> _DeferSignals:
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
