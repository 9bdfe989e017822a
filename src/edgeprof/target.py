"""Targets of a run, from container set-up to removal, around one session.

A *group* is what one :class:`~edgeprof.session.Session` observes: one target run alone,
or every member of a scenario run together (:func:`run_group`). For each member the group
opens the collectors it needs before the container exists (the app-metrics socket),
creates and starts it on the run's network (with the data-config mounted when the target
has one), opens the other collectors, and adds it to the session; the session samples until
every member has exited or reached its own timeout. Each member then ends as its own
target row: exit code, OOM kill, duration, logs (:func:`finish_member`: each step runs even
when an earlier one failed, and Ctrl-C or SIGTERM cannot cut it short).

A target's services (:mod:`edgeprof.services`) start and become ready before its app
starts and are removed after it, always; each gets a target row of its own (role
``service``) holding its logs, and one with ``profile: true`` is sampled in the session as
a member with role ``service``. A service that is not ready makes the group's targets an
``error`` with the service's message (its last log lines) and the run goes on.
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
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from edgeprof.cgroups import cgroup_name
from edgeprof.collect.base import CollectContext, Collector
from edgeprof.collect.registry import CollectOptions, Group, GroupEnv
from edgeprof.engine.base import ContainerRequest, Engine, ExitInfo, Handle
from edgeprof.errors import CollectorUnavailable, EngineError, StoreError
from edgeprof.hostinfo import HostCaps
from edgeprof.model import Clock, Event, EventKind, Labels, TargetStatus, labels_of
from edgeprof.plan import TargetRun, build_request, container_name
from edgeprof.reaper import OWNER_LABEL, RUN_UID_LABEL
from edgeprof.sampler import windows_message
from edgeprof.services import (
    DATA_CONFIG_PATH,
    RunningService,
    ServiceFailed,
    StoppedService,
    data_config_json,
    start_services,
    stop_services,
)
from edgeprof.session import Member, Session
from edgeprof.signals import DeferSignals, best_effort
from edgeprof.sinks import LatestValues, MemberInfo, Sink, Tee
from edgeprof.spec import LoadedSpec
from edgeprof.store.base import Store, TargetInfo
from edgeprof.store.writer import BatchWriter

if TYPE_CHECKING:
    from edgeprof.spec.models import ServiceSpec

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

    def service_note(self, message: str) -> None:
        """A service started, became ready (or not), or was removed: one line."""

    def note(self, message: str) -> None:
        """A line about the run as a whole (a scenario left out): shown like a service's."""
        self.service_note(message)


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
    network: str | None = None
    """The run's private network (services, data-config, scenarios); every target and
    service joins it."""
    shared: list[ServiceRow] = field(default_factory=list)
    """The run-scope services, started once before the first target (sampled in every
    session when ``profile: true``)."""
    next_index: int = 0
    """The ``idx`` the next service row gets (after every planned target's)."""

    def container_labels(self) -> dict[str, str]:
        """The labels of every container and network of the run (the reaper finds them)."""
        return {
            "edgeprof.run": str(self.run_id),
            RUN_UID_LABEL: self.run_uid,
            OWNER_LABEL: json.dumps(self.owner, sort_keys=True),
        }

    def take_index(self) -> int:
        self.next_index += 1
        return self.next_index - 1


# -- targets ------------------------------------------------------------------------------


@dataclass
class _Slot:
    """One target of a group: prepared, started, observed, finished."""

    tr: TargetRun
    res: TargetResult
    labels: Labels
    ctx: CollectContext
    env: GroupEnv
    req: ContainerRequest
    tdir: str
    t0: float = field(default_factory=time.monotonic)
    handle: Handle | None = None
    pre: list[Collector] = field(default_factory=list)
    """Collectors opened before the container exists (the app-metrics socket)."""
    opened: list[Collector] = field(default_factory=list)
    """Collectors no session owns (yet): closed by :func:`finish_member`."""
    collectors: list[Collector] = field(default_factory=list)
    member: Member | None = None

    @property
    def pending(self) -> bool:
        """Its ending is not known yet."""
        return self.res.status == "running"

    def event(self, run: RunContext, kind: EventKind, message: str, **data: Any) -> None:
        run.writer.event(Event(run.clock.now_ns(), kind, message, self.tr.name, data))


def run_target(run: RunContext, tr: TargetRun, target_id: int) -> TargetResult:
    """One target alone in its session, with its own services."""
    return run_group(run, [(tr, target_id)], tr.services, tr.name)[0]


def run_group(
    run: RunContext,
    members: Sequence[tuple[TargetRun, int]],
    services: Sequence[ServiceSpec] = (),
    for_name: str | None = None,
) -> list[TargetResult]:
    """Run ``members`` (targets and their row ids) together, observed in one session.

    ``services`` start first, each ready before the next; they are removed after the
    members, always. ``for_name`` names what they serve (the target, or the scenario) in
    their rows' names. Returns each member's result; a member that fails is recorded and the
    others go on. Only a failing database or Ctrl-C/SIGTERM is raised, after every member
    and service was finished and removed.
    """
    writer = run.writer
    slots = [_new_slot(run, tr, tid) for tr, tid in members]
    writer.set_default_target(slots[0].res.target_id)  # host metrics: the first member's
    rows: list[ServiceRow] = []
    session: Session | None = None
    loose: list[Collector] = []  # opened for the session, not yet its own
    in_flight = False  # an exception is on its way out: cleanup errors must not mask it
    try:
        for s in slots:
            run.hooks.target_started(s.tr, s.tr.target.timeout)
        if services:
            try:
                rows = start_service_rows(run, services, for_name, "target", slots[0].tr.name)
            except ServiceFailed as e:
                for s in slots:
                    _fail(run, s, str(e))
                return [s.res for s in slots]
        for s in slots:
            _open_before_start(run, s)
        for s in slots:
            _start(run, s)
        started = [s for s in slots if s.handle is not None]
        if not started:
            return [s.res for s in slots]
        host = _open_after_start(run, started)
        loose += host
        service_members: list[Member] = []
        for r in [*run.shared, *rows]:
            try:
                m = _service_member(run, r)
            except Exception as e:  # noqa: BLE001 - the apps are measured without it
                run.unavailable("service", f"sampling {r.name} failed: {type(e).__name__}: {e}")
                continue
            if m is not None:
                service_members.append(m)
                loose += m.collectors
        latest = LatestValues()

        def on_error(c: Collector, e: BaseException) -> None:
            run.unavailable(c.group, f"failed while sampling: {type(e).__name__}: {e}", c_target(c))

        def c_target(c: Collector) -> str | None:
            for s in started:
                if c in s.collectors:
                    return s.tr.name
            return slots[0].tr.name

        def on_tick(sess: Session) -> None:
            now = time.monotonic()
            for s in started:
                if s.member is None or not s.member.exited.is_set() or len(started) == 1:
                    run.hooks.target_tick(s.tr, now - s.t0, latest.for_labels(s.labels))

        def on_sink_error(sink: object, e: BaseException) -> None:
            run.notes(
                writer.event,
                "note",
                f"sink {type(sink).__name__}",
                f"{type(sink).__name__} failed and is left out from here on: "
                f"{type(e).__name__}: {e} (the store goes on)",
                slots[0].tr.name,
            )

        tee = Tee(writer, latest, *run.sinks, on_error=on_sink_error)
        session = Session(
            run.engine,
            run.clock,
            tee,
            run.interval,
            realtime=run.loaded.spec.profiling.realtime,
            host_collectors=host,
            on_error=on_error,
            on_tick=on_tick,
        )
        loose[:] = [c for c in loose if c not in host]  # the session's now
        grace = run.loaded.spec.profiling.grace
        infos: list[MemberInfo] = []
        for s in started:
            assert s.handle is not None
            s.member = Member(
                s.tr.name,
                "app",
                s.handle,
                s.labels,
                s.collectors,
                timeout_s=s.tr.target.timeout,
                grace_s=grace,
            )
            s.opened.clear()  # the member's collectors are the session's from here
            session.add(s.member)
            infos.append(_member_info(run, s.tr.name, "app", s.handle, s.tr.target.resources))
        for m in service_members:
            loose[:] = [c for c in loose if c not in m.collectors]
            session.add(m)
            infos.append(_member_info(run, m.name, "service", m.handle, None))
        for info in infos:
            tee.member_started(info)
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
            for info in infos:
                tee.member_ended(info.target)
        for s in started:
            if s.pending:
                try:
                    _exit_facts(run, s)
                except StoreError:
                    raise
                except Exception as e:  # noqa: BLE001 - this member only
                    _failed(run, s, e)
    except StoreError:  # the database failed: nothing more can be recorded, stop the run
        in_flight = True
        raise
    except Exception as e:  # noqa: BLE001 - one target's failure must not lose the others
        for s in slots:
            if s.pending:
                _failed(run, s, e)
    except KeyboardInterrupt:
        in_flight = True
        with DeferSignals():
            for s in slots:
                if s.pending:
                    _interrupted(run, s)
        raise
    except BaseException:
        in_flight = True
        raise
    finally:
        with DeferSignals():
            _finish_group(run, slots, session, loose, rows, raise_errors=not in_flight)
    return [s.res for s in slots]


def record_error(run: RunContext, tr: TargetRun, target_id: int, message: str) -> TargetResult:
    """A target that cannot run at all (a run-scope service was not ready): recorded as an
    ``error`` with ``message``; no container is created."""
    run.attempted.add(target_id)
    run.writer.add_target(tr.name, target_id)
    res = TargetResult(name=tr.name, target_id=target_id, status="error", error=message)
    run.writer.event(Event(run.clock.now_ns(), "target_error", message, tr.name, {}))
    errors: list[BaseException] = []
    best_effort(
        lambda: run.store.update_target(
            target_id, status="error", error=message, ended_ns=run.clock.now_ns()
        ),
        errors,
    )
    best_effort(lambda: run.hooks.target_ended(tr, res))
    if errors:
        raise errors[0]
    return res


def _new_slot(run: RunContext, tr: TargetRun, target_id: int) -> _Slot:
    writer = run.writer
    run.attempted.add(target_id)
    writer.add_target(tr.name, target_id)
    labels = labels_of(target=tr.name)
    ctx = CollectContext(
        target=tr.name,
        labels=labels,
        clock=run.clock,
        interval_s=run.interval,
        emit_event=writer.event,
        emit_code=lambda rows: writer.code(tr.name, rows),
        engine=run.engine,
    )
    tdir = tempfile.mkdtemp(prefix=re.sub(r"[^A-Za-z0-9_.-]", "-", tr.name) + "-", dir=run.work_dir)
    os.chmod(tdir, 0o755)
    req = build_request(
        run.loaded, tr, container_name(run.run_id, tr.name), run.image, run.container_labels()
    )
    req.network = _network_of(run, req.network, bool(tr.services or run.shared))
    if tr.data_config:
        path = os.path.join(tdir, "data-config.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(data_config_json(tr.data_config))
        os.chmod(path, 0o644)
        req.volumes.append(f"{path}:{DATA_CONFIG_PATH}:ro")
    env = GroupEnv(
        caps=run.caps,
        opts=run.opts,
        created=True,
        container_dir=tdir,
        host_network=req.network == "host",
        note=lambda msg: run.notes(writer.event, "note", msg, msg, tr.name),
        selected=frozenset(g.name for g in run.groups),
        code=tr.code,
    )
    res = TargetResult(name=tr.name, target_id=target_id, status="running")
    return _Slot(tr, res, labels, ctx, env, req, tdir)


def _network_of(run: RunContext, asked: str | None, has_services: bool) -> str | None:
    """The run's network, unless the target asked for another: ``host``, ``none`` and
    ``container:…`` are kept; another named network is kept unless the target needs
    services (which only the run's network reaches)."""
    if run.network is None or asked == run.network:
        return asked
    if asked is None:
        return run.network
    if asked in ("host", "none") or asked.startswith("container:"):
        return asked
    return run.network if has_services else asked


def _open_before_start(run: RunContext, s: _Slot) -> None:
    for g in run.groups:
        if g.phase == "before_start":
            for c in run.collectors(g, s.env, s.ctx):
                s.pre.append(c)
                s.opened.append(c)
                setup = c.container_setup()
                if setup is not None:
                    s.req.volumes += setup.volumes
                    for k, v in setup.env.items():
                        s.req.env.setdefault(k, v)


def _start(run: RunContext, s: _Slot) -> None:
    """Create and start the container; one the engine refuses is an ``error`` (recorded)."""
    try:
        s.handle = run.engine.start(s.req)
    except EngineError as e:
        s.res.status, s.res.error = "error", str(e)
        s.event(run, "target_error", str(e))
        return
    handle = s.handle
    s.t0 = time.monotonic()
    run.store.update_target(
        s.res.target_id,
        container_id=handle.container_id,
        started_ns=run.clock.now_ns(),
        status="running",
    )
    s.event(
        run,
        "target_started",
        f"container {handle.container_id[:12]} started",
        pid=handle.pid,
        cgroup=handle.cgroup.as_dict() if handle.cgroup else None,
    )
    s.ctx = dataclasses.replace(
        s.ctx, container_id=handle.container_id, pid=handle.pid, cgroup=handle.cgroup
    )


def _open_after_start(run: RunContext, started: list[_Slot]) -> list[Collector]:
    """Each started member's container collectors; the session's host collectors (once,
    through the first member whose process is there), returned."""
    host: list[Collector] = []
    first: _Slot | None = None
    for s in started:
        assert s.handle is not None
        s.collectors = list(s.pre)
        if not s.handle.pid:  # it exited before its first sample: exit info follows
            s.event(run, "exited_before_sampling", "the container exited before its first sample")
            continue
        s.env = dataclasses.replace(s.env, has_cgroup=s.handle.cgroup is not None)
        for g in run.groups:
            if g.phase == "after_start" and g.scope == "container":
                made = run.collectors(g, s.env, s.ctx)
                s.opened += made
                s.collectors += made
        first = first or s
    if first is not None:
        host_ctx = dataclasses.replace(first.ctx, labels=(), container_id=None, pid=0, cgroup=None)
        for g in run.groups:
            if g.phase == "after_start" and g.scope != "container":
                host += run.collectors(g, first.env, host_ctx)
    return host


def _member_info(
    run: RunContext, target: str, role: str, handle: Handle, res: Any | None
) -> MemberInfo:
    limits: dict[str, float] = {}
    if res is not None:
        limits = {k: float(v) for k, v in (("cpus", res.cpus), ("memory_bytes", res.memory)) if v}
    return MemberInfo(
        target=target,
        role=role,
        container_id=handle.container_id,
        name=handle.name,
        image=run.image if role == "app" else "",
        limits=limits,
        cgroup=cgroup_name(handle.cgroup),
    )


def _exit_facts(run: RunContext, s: _Slot) -> None:
    """Exit code, OOM kill, timeout and duration of a member the session saw end."""
    m, res, handle = s.member, s.res, s.handle
    assert m is not None and handle is not None
    grace = run.loaded.spec.profiling.grace
    res.timed_out = m.timed_out
    res.duration_s = time.monotonic() - s.t0
    if m.exited.is_set():
        res.duration_s = m.started_mono - s.t0 + m.elapsed_s
    info = run.engine.exit_info(handle)
    res.exit_code = info.exit_code if info.exit_code is not None else m.exit_code
    if info.duration_s is not None:  # the engine's own start/exit times are exact
        res.duration_s = info.duration_s
    res.oom_killed = info.oom_killed
    res.status = _status(res)
    s.event(
        run,
        "exited",
        f"exit code {res.exit_code}" + (", OOM-killed" if res.oom_killed else ""),
        exit_code=res.exit_code,
        oom_killed=res.oom_killed,
        timed_out=res.timed_out,
    )
    if res.timed_out and res.exit_code == SIGKILL_EXIT and not res.oom_killed:
        s.event(
            run,
            "sigkill_after_grace",
            f"{s.tr.name} ignored SIGTERM and was killed (SIGKILL) after the {grace:g} s "
            "grace: its PID 1 does not act on SIGTERM (a shell, or a program without a "
            "handler); set run.init: true, use the exec form of the command, or handle SIGTERM",
            grace_s=grace,
        )


def _fail(run: RunContext, s: _Slot, message: str) -> None:
    s.res.status, s.res.error = "error", message
    s.res.duration_s = time.monotonic() - s.t0
    s.event(run, "target_error", message)


def _failed(run: RunContext, s: _Slot, e: BaseException) -> None:
    s.res.status, s.res.error = "error", f"{type(e).__name__}: {e}"
    s.res.duration_s = time.monotonic() - s.t0
    s.event(
        run,
        "target_error",
        f"profiling {s.tr.name} failed: {s.res.error}",
        traceback=traceback.format_exc(),
    )


def _interrupted(run: RunContext, s: _Slot) -> None:
    s.res.status = "interrupted"
    s.res.duration_s = time.monotonic() - s.t0
    s.event(run, "interrupted", "run interrupted (Ctrl-C or SIGTERM); container stopped")
    handle = s.handle
    if handle is not None:
        grace = run.loaded.spec.profiling.grace
        best_effort(lambda: run.engine.stop(handle, min(grace, 2.0)))


def _status(res: TargetResult) -> TargetStatus:
    if res.oom_killed:
        return "oom_killed"
    if res.timed_out:
        return "timed_out"
    if res.exit_code == 0:
        return "exited"
    return "failed"


def _finish_group(
    run: RunContext,
    slots: list[_Slot],
    session: Session | None,
    loose: list[Collector],
    rows: list[ServiceRow],
    raise_errors: bool,
) -> None:
    """Stop sampling, finish every member, then remove the services: every step runs
    whatever an earlier one raised (the first exception is raised at the end)."""
    shared: list[BaseException] = []  # failures that concern every member
    if session is not None:
        best_effort(lambda: session.close(slots[0].tr.name), shared)
    for c in loose:
        best_effort(c.close, shared)
    pending: BaseException | None = None
    for s in slots:
        try:
            finish_member(run, s, shared, raise_errors)
        except BaseException as e:  # noqa: BLE001 - the others are finished first
            pending = pending or e
    try:
        end_service_rows(run, rows)
    except BaseException as e:  # noqa: BLE001
        pending = pending or e
    if pending is not None:
        raise pending


def finish_member(
    run: RunContext, s: _Slot, shared: list[BaseException], raise_errors: bool = True
) -> None:
    """Store the member's tail, logs and exit facts and remove its container: each step
    runs even when an earlier one failed (the container is always removed).

    A failed step (or one in ``shared``, such as closing the session) makes the target an
    ``error`` (its data is incomplete) and is recorded; only a failing database is raised
    (``raise_errors``), as nothing more could be stored.
    """
    store, engine, clock, res = run.store, run.engine, run.clock, s.res
    errors: list[BaseException] = list(shared)
    for c in s.opened:
        best_effort(c.close, errors)
    run.writer.end_target(res.target_id)  # its series are complete: final chunks
    best_effort(run.writer.flush, errors)
    res.samples = run.writer.written(res.target_id)
    handle = s.handle
    if handle is not None:

        def logs() -> None:
            out, err = engine.logs(handle)
            if out:
                store.add_log(res.target_id, "stdout", out)
            if err:
                store.add_log(res.target_id, "stderr", err)

        best_effort(logs, errors)
        best_effort(lambda: engine.remove(handle), errors)
    shutil.rmtree(s.tdir, ignore_errors=True)
    failed = [e for e in errors if not isinstance(e, StoreError)]
    if failed:
        what = "; ".join(f"{type(e).__name__}: {e}" for e in failed)
        res.error = f"{res.error}; after it: {what}" if res.error else f"cleaning up: {what}"
        if res.status != "interrupted":  # an interrupted target stays interrupted
            res.status = "error"
        run.writer.event(
            Event(clock.now_ns(), "target_error", f"{s.tr.name}: {res.error}", s.tr.name, {})
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
    best_effort(lambda: run.hooks.target_ended(s.tr, res))
    fatal = [e for e in errors if isinstance(e, StoreError)]
    if fatal and raise_errors:
        raise fatal[0]


# -- services -----------------------------------------------------------------------------


@dataclass
class ServiceRow:
    """A running service and its target row (role ``service``)."""

    name: str
    """The row's name: ``<for>/<service>`` (a target's or scenario's), ``service/<service>``
    for the run's own."""
    running: RunningService
    target_id: int
    for_name: str | None
    t0: float
    """When it was asked to start (monotonic)."""

    @property
    def labels(self) -> Labels:
        return labels_of(target=self.name)


def service_row_name(for_name: str | None, service: str) -> str:
    return f"{for_name}/{service}" if for_name else f"service/{service}"


def _service_config(spec: ServiceSpec, scope: str, for_name: str | None) -> dict[str, Any]:
    return {
        "role": "service",
        "service": spec.name,
        "scope": scope,
        "for": for_name,
        "image": spec.image,
        "profile": spec.profile,
    }


def start_service_rows(
    run: RunContext,
    specs: Sequence[ServiceSpec],
    for_name: str | None,
    scope: str,
    event_target: str | None = None,
) -> list[ServiceRow]:
    """Start ``specs`` on the run's network, each ready before the next, and give each a
    target row. A service that is not ready gets its row (``error``, its logs, the
    message) and :class:`ServiceFailed` is raised; nothing this call started is left.

    Cut short (a service not ready, Ctrl-C, a failing database), every service this call
    started still gets a row with its logs, ended: ``interrupted`` after Ctrl-C, else
    ``error`` saying why it was removed; none stays ``running``."""
    assert run.network is not None, "services need the run's network"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", for_name or "run")
    prefix = f"edgeprof-{run.run_id}-{safe}-{secrets.token_hex(2)}"

    def on_event(message: str, data: dict[str, Any]) -> None:
        run.writer.event(Event(run.clock.now_ns(), "note", message, event_target, data))
        best_effort(lambda: run.hooks.service_note(message))

    t0 = time.monotonic()
    stopped: list[StoppedService] = []
    try:
        running = start_services(
            run.engine,
            list(specs),
            network=run.network,
            labels=run.container_labels(),
            name_prefix=prefix,
            on_event=on_event,
            stopped=stopped,
        )
    except BaseException as e:
        with DeferSignals():
            failed = e.service if isinstance(e, ServiceFailed) else None
            for st in stopped:
                status, why = _cut_short(e, st.ready_s is not None, for_name)
                best_effort(partial(_stopped_row, run, st, scope, for_name, status, why))
            spec = next((x for x in specs if x.name == failed), None)
            if isinstance(e, ServiceFailed) and spec is not None:
                _failed_row(run, spec, e, scope, for_name)
        raise
    rows: list[ServiceRow] = []
    begun: dict[str, int] = {}  # service -> its row, as soon as the row exists
    try:
        for rs in running:
            rows.append(_begin_row(run, rs, scope, for_name, t0, begun))
    except BaseException as e:
        with DeferSignals():
            logs: dict[str, tuple[str, str]] = {}
            best_effort(lambda: logs.update(stop_services(run.engine, running)))
            for rs in running:
                name = rs.spec.name
                st = StoppedService(
                    rs.spec,
                    rs.handle.container_id,
                    rs.ready_s,
                    time.monotonic() - rs.t0,
                    logs.get(name, ("", "")),
                )
                status, why = _cut_short(e, True, for_name)
                best_effort(
                    partial(_stopped_row, run, st, scope, for_name, status, why, begun.get(name))
                )
        raise
    return rows


def _cut_short(e: BaseException, ready: bool, for_name: str | None) -> tuple[TargetStatus, str]:
    """A removed service's status and why, when starting the services was cut short by
    ``e``."""
    when = (
        f"after it was ready, before {for_name or 'the targets'} started"
        if ready
        else "while it started"
    )
    if isinstance(e, ServiceFailed):
        return "error", f"removed {when}: service {e.service!r} was not ready"
    if isinstance(e, Exception):
        return "error", f"removed {when}: {type(e).__name__}: {e}"
    return "interrupted", f"interrupted {when}"


def _stopped_row(
    run: RunContext,
    st: StoppedService,
    scope: str,
    for_name: str | None,
    status: TargetStatus,
    why: str,
    tid: int | None = None,
) -> None:
    """The row of a service removed before it was used (``tid``: its row, if it has one
    already): its logs and how it ended."""
    name = service_row_name(for_name, st.spec.name)
    if tid is None:
        ready = None if st.ready_s is None else round(st.ready_s, 3)
        config = {**_service_config(st.spec, scope, for_name), "ready_s": ready}
        tid = run.store.begin_target(
            TargetInfo(run.run_id, run.take_index(), name, st.spec.argv(), config, status=status)
        )
        run.writer.add_target(name, tid)
    errors: list[BaseException] = []
    message = f"service {st.spec.name} {why}"
    best_effort(
        lambda: run.writer.event(Event(run.clock.now_ns(), "target_error", message, name, {})),
        errors,
    )
    out, err = st.logs
    if out:
        best_effort(partial(run.store.add_log, tid, "stdout", out), errors)
    if err:
        best_effort(partial(run.store.add_log, tid, "stderr", err), errors)
    best_effort(partial(run.writer.end_target, tid), errors)
    run.store.update_target(
        tid,
        container_id=st.container_id,
        status=status,
        error=message,
        duration_s=round(st.elapsed_s, 3),
        ended_ns=run.clock.now_ns(),
    )
    if errors:
        raise errors[0]


def _begin_row(
    run: RunContext,
    rs: RunningService,
    scope: str,
    for_name: str | None,
    t0: float,
    begun: dict[str, int],
) -> ServiceRow:
    spec = rs.spec
    name = service_row_name(for_name, spec.name)
    config = {**_service_config(spec, scope, for_name), "ready_s": round(rs.ready_s, 3)}
    tid = run.store.begin_target(
        TargetInfo(run.run_id, run.take_index(), name, spec.argv(), config, status="running")
    )
    begun[spec.name] = tid
    run.writer.add_target(name, tid)
    now = run.clock.now_ns()
    run.store.update_target(
        tid,
        container_id=rs.handle.container_id,
        started_ns=now - int(rs.ready_s * 1e9),
        status="running",
    )
    run.writer.event(
        Event(
            now,
            "target_started",
            f"service {spec.name} ready after {rs.ready_s:.2f} s "
            f"(container {rs.handle.container_id[:12]})",
            name,
            {"ready_s": rs.ready_s, "pid": rs.handle.pid},
        )
    )
    return ServiceRow(name, rs, tid, for_name, time.monotonic() - rs.ready_s)


def _failed_row(
    run: RunContext, spec: ServiceSpec, e: ServiceFailed, scope: str, for_name: str | None
) -> None:
    name = service_row_name(for_name, spec.name)
    config = {**_service_config(spec, scope, for_name), "ready_s": None}
    tid = run.store.begin_target(
        TargetInfo(run.run_id, run.take_index(), name, spec.argv(), config, status="error")
    )
    run.writer.add_target(name, tid)
    run.writer.event(Event(run.clock.now_ns(), "target_error", str(e), name, {}))
    out, err = e.logs
    if out:
        run.store.add_log(tid, "stdout", out)
    if err:
        run.store.add_log(tid, "stderr", err)
    run.store.update_target(
        tid,
        status="error",
        error=str(e),
        duration_s=round(e.elapsed_s, 3),
        ended_ns=run.clock.now_ns(),
    )


def _service_member(run: RunContext, row: ServiceRow) -> Member | None:
    """A member of role ``service`` sampling ``row``'s container (``profile: true``)."""
    handle = row.running.handle
    if not row.running.spec.profile or not handle.pid:
        return None
    ctx = CollectContext(
        target=row.name,
        labels=row.labels,
        clock=run.clock,
        interval_s=run.interval,
        emit_event=run.writer.event,
        engine=run.engine,
        container_id=handle.container_id,
        pid=handle.pid,
        cgroup=handle.cgroup,
    )
    env = GroupEnv(
        caps=run.caps,
        opts=run.opts,
        has_cgroup=handle.cgroup is not None,
        created=True,
        note=lambda msg: run.notes(run.writer.event, "note", msg, msg, row.name),
        selected=frozenset(g.name for g in run.groups),
    )
    collectors: list[Collector] = []
    for g in run.groups:
        if g.phase == "after_start" and g.scope == "container":
            collectors += run.collectors(g, env, ctx)
    return Member(row.name, "service", handle, row.labels, collectors)


def end_service_rows(run: RunContext, rows: list[ServiceRow]) -> None:
    """Remove the services (their logs read first) and store each one's logs and ending;
    every step runs whatever fails. A service that exited while it was needed is
    ``failed`` (or ``oom_killed``) with its exit code; one removed while running ``exited``."""
    if not rows:
        return
    engine, store, clock = run.engine, run.store, run.clock
    died: dict[str, ExitInfo] = {}
    for r in rows:
        handle = r.running.handle

        def check(r: ServiceRow = r, handle: Handle = handle) -> None:
            info = engine.inspect(handle.container_id)
            if info is None or not info.running:
                died[r.name] = engine.exit_info(handle)

        best_effort(check)

    def on_event(message: str, data: dict[str, Any]) -> None:
        name = service_row_name(
            next((r.for_name for r in rows if r.running.spec.name == data.get("service")), None),
            str(data.get("service")),
        )
        run.writer.event(Event(clock.now_ns(), "target_error", message, name, data))

    logs: dict[str, tuple[str, str]] = {}
    errors: list[BaseException] = []
    try:
        logs = stop_services(engine, [r.running for r in rows], on_event)
    finally:
        for r in rows:
            out, err = logs.get(r.running.spec.name, ("", ""))
            tid = r.target_id
            if out:
                best_effort(partial(store.add_log, tid, "stdout", out), errors)
            if err:
                best_effort(partial(store.add_log, tid, "stderr", err), errors)
            run.writer.end_target(tid)
            ex = died.get(r.name)
            fields: dict[str, Any] = {"status": "exited", "exit_code": None, "error": None}
            if ex is not None:
                what = f"exited with code {ex.exit_code}" + (
                    ", OOM-killed" if ex.oom_killed else ""
                )
                fields = {
                    "status": "oom_killed"
                    if ex.oom_killed
                    else ("exited" if ex.exit_code == 0 else "failed"),
                    "exit_code": ex.exit_code,
                    "oom_killed": ex.oom_killed,
                    "error": f"service {r.running.spec.name} {what} while "
                    + (f"{r.for_name} ran" if r.for_name else "the run went on"),
                }
                run.writer.event(Event(clock.now_ns(), "exited", fields["error"], r.name, {}))
            best_effort(
                partial(
                    store.update_target,
                    tid,
                    duration_s=round(time.monotonic() - r.t0, 3),
                    ended_ns=clock.now_ns(),
                    **fields,
                ),
                errors,
            )
    fatal = [e for e in errors if isinstance(e, StoreError)]
    if fatal:
        raise fatal[0]
