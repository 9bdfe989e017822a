"""One target of a run, from container set-up to removal, around a session.

``run_target`` opens the collectors the container needs before it exists (the app-metrics
socket), creates and starts the container, opens the other collectors, observes it in a
:class:`~edgeprof.session.Session` until it exits or times out, and records exit code, OOM
kill, duration and logs. ``finish_target`` then stops sampling, stores the tail, the logs
and the exit facts and removes the container: each step runs even when an earlier one
failed, and Ctrl-C or SIGTERM cannot cut it short.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgeprof.cgroups import cgroup_name
from edgeprof.collect.base import CollectContext, Collector
from edgeprof.collect.registry import CollectOptions, Group, GroupEnv
from edgeprof.engine.base import Engine, Handle
from edgeprof.errors import CollectorUnavailable, EngineError, StoreError
from edgeprof.hostinfo import HostCaps
from edgeprof.model import Clock, Event, EventKind, TargetStatus, labels_of
from edgeprof.plan import TargetRun, build_request, container_name
from edgeprof.reaper import OWNER_LABEL, RUN_UID_LABEL
from edgeprof.sampler import windows_message
from edgeprof.session import Member, Session
from edgeprof.signals import DeferSignals, best_effort
from edgeprof.sinks import LatestValues, MemberInfo, Sink, Tee
from edgeprof.spec import LoadedSpec
from edgeprof.store.base import Store
from edgeprof.store.writer import BatchWriter

SIGKILL_EXIT = 128 + signal.SIGKILL


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


class RunHooks:
    """What a live display learns while a run goes on; the defaults do nothing."""

    def run_started(self, run_id: int, image: str, targets: list[TargetRun]) -> None: ...

    def target_started(self, tr: TargetRun, timeout: float) -> None: ...

    def target_tick(self, tr: TargetRun, elapsed: float, latest: dict[str, float]) -> None: ...

    def target_ended(self, tr: TargetRun, result: TargetResult) -> None: ...


class Notes:
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


class CollectorOpening:
    """Opening collectors the same way for ``run`` and ``attach``: a group or collector
    that cannot work here is recorded once as unavailable (with the reason), and one whose
    data is coarser than the interval says so. Needs ``notes``, ``writer``, ``interval``."""

    notes: Notes
    writer: BatchWriter
    interval: float

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


@dataclass
class RunContext(CollectorOpening):
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
    hooks: RunHooks
    notes: Notes
    writer: BatchWriter
    work_dir: str
    attempted: set[int] = field(default_factory=set)
    """Targets whose turn came (the rest were never run)."""
    sinks: list[Sink] = field(default_factory=list)
    """Consumers of every sample besides the store and the progress display."""


def run_target(run: RunContext, tr: TargetRun, target_id: int) -> TargetResult:
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
        selected=frozenset(g.name for g in run.groups),
    )
    session: Session | None = None
    handle: Handle | None = None
    pre: list[Collector] = []
    opened: list[Collector] = []  # closed by finish_target until a session owns them
    t0 = time.monotonic()
    in_flight = False  # an exception is on its way out: cleanup errors must not mask it
    try:
        ui.target_started(tr, timeout)
        for g in run.groups:
            if g.phase == "before_start":
                for c in run.collectors(g, env, ctx):
                    pre.append(c)
                    opened.append(c)
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
            return res  # finish_target closes what was opened
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
                if g.phase != "after_start":
                    continue
                made = run.collectors(g, env, ctx if g.scope == "container" else host_ctx)
                opened += made
                (collectors if g.scope == "container" else host_collectors).extend(made)
        else:  # the app exited before its first sample: nothing to sample; exit info follows
            event("exited_before_sampling", "the container exited before its first sample")
        latest = LatestValues()

        def on_error(c: Collector, e: BaseException) -> None:
            run.unavailable(c.group, f"failed while sampling: {type(e).__name__}: {e}", tr.name)

        def on_tick(s: Session) -> None:
            ui.target_tick(tr, time.monotonic() - t0, latest.for_labels(labels))

        def on_sink_error(sink: object, e: BaseException) -> None:
            run.notes(
                writer.event,
                "note",
                f"sink {type(sink).__name__}",
                f"{type(sink).__name__} failed and is left out from here on: "
                f"{type(e).__name__}: {e} (the store goes on)",
                tr.name,
            )

        tee = Tee(writer, latest, *run.sinks, on_error=on_sink_error)
        session = Session(
            engine,
            clock,
            tee,
            run.interval,
            realtime=prof.realtime,
            host_collectors=host_collectors,
            on_error=on_error,
            on_tick=on_tick,
        )
        opened[:] = [c for c in opened if c not in host_collectors]  # the session's now
        member = Member(
            tr.name, "app", handle, labels, collectors, timeout_s=timeout, grace_s=prof.grace
        )
        opened.clear()  # the member's collectors are the session's from here (add() keeps it)
        session.add(member)
        res_ = tr.target.resources
        tee.member_started(
            MemberInfo(
                target=tr.name,
                role="app",
                container_id=handle.container_id,
                name=handle.name,
                image=run.image,
                limits={
                    k: float(v)
                    for k, v in (("cpus", res_.cpus), ("memory_bytes", res_.memory))
                    if v
                },
                cgroup=cgroup_name(handle.cgroup),
            )
        )
        windows = session.sampler.rate_windows()
        if windows:
            run.notes(
                writer.event,
                "rate_windows",
                "rate_windows",
                windows_message(windows, run.interval),
                None,
                windows=windows,
                interval_s=run.interval,
            )
        try:
            session.run()
        finally:
            tee.member_ended(tr.name)
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
    except StoreError:  # the database failed: nothing more can be recorded, stop the run
        in_flight = True
        raise
    except Exception as e:  # noqa: BLE001 - one target's failure must not lose the others
        res.status, res.error = "error", f"{type(e).__name__}: {e}"
        res.duration_s = time.monotonic() - t0
        event(
            "target_error",
            f"profiling {tr.name} failed: {res.error}",
            traceback=traceback.format_exc(),
        )
    except KeyboardInterrupt:
        in_flight = True
        res.status = "interrupted"
        res.duration_s = time.monotonic() - t0
        with DeferSignals():
            event("interrupted", "run interrupted (Ctrl-C or SIGTERM); container stopped")
            if handle is not None:
                best_effort(lambda: engine.stop(handle, min(prof.grace, 2.0)))
        raise
    except BaseException:
        in_flight = True
        raise
    finally:
        with DeferSignals():
            finish_target(run, tr, res, session, opened, handle, tdir, raise_errors=not in_flight)
    return res


def _status(res: TargetResult) -> TargetStatus:
    if res.oom_killed:
        return "oom_killed"
    if res.timed_out:
        return "timed_out"
    if res.exit_code == 0:
        return "exited"
    return "failed"


def finish_target(
    run: RunContext,
    tr: TargetRun,
    res: TargetResult,
    session: Session | None,
    opened: list[Collector],
    handle: Handle | None,
    tdir: str,
    raise_errors: bool = True,
) -> None:
    """Stop sampling, store the tail, logs and exit facts, remove the container: each step
    runs even when an earlier one failed (the container is always removed).

    ``opened`` are collectors no session owns (yet). A failed step makes the target an
    ``error`` (its data is incomplete) and is recorded; only a failing database is raised
    (``raise_errors``), as nothing more could be stored.
    """
    store, engine, clock = run.store, run.engine, run.clock
    errors: list[BaseException] = []
    if session is not None:
        best_effort(lambda: session.close(tr.name), errors)
    for c in opened:
        best_effort(c.close, errors)
    run.writer.end_target(res.target_id)  # its series are complete: final chunks
    best_effort(run.writer.flush, errors)
    res.samples = run.writer.written(res.target_id)
    if handle is not None:

        def logs() -> None:
            out, err = engine.logs(handle)
            if out:
                store.add_log(res.target_id, "stdout", out)
            if err:
                store.add_log(res.target_id, "stderr", err)

        best_effort(logs, errors)
        best_effort(lambda: engine.remove(handle), errors)
    shutil.rmtree(tdir, ignore_errors=True)
    failed = [e for e in errors if not isinstance(e, StoreError)]
    if failed:
        what = "; ".join(f"{type(e).__name__}: {e}" for e in failed)
        res.error = f"{res.error}; after it: {what}" if res.error else f"cleaning up: {what}"
        if res.status != "interrupted":  # an interrupted target stays interrupted
            res.status = "error"
        run.writer.event(
            Event(clock.now_ns(), "target_error", f"{tr.name}: {res.error}", tr.name, {})
        )
        best_effort(run.writer.flush, errors)
    best_effort(
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
    best_effort(lambda: run.hooks.target_ended(tr, res))
    fatal = [e for e in errors if isinstance(e, StoreError)]
    if fatal and raise_errors:
        raise fatal[0]
