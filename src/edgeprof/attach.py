"""Attach to running containers somebody else started: one stored run, one target each.

``attach_profile`` is the library function behind ``edgeprof attach``. It finds the
containers (by name or id, or every running one with ``--all``, filtered by labels),
subscribes to the engine's container events *before* looking them up (so nothing that
happens in between is missed), opens the same collectors ``run`` would for each, and
samples them in one :class:`~edgeprof.session.Session` (role ``attached``) into one run
(spec name ``attach``).

A container that dies and starts again — a restart policy, ``docker restart`` — is the
same target: its collectors are reopened on the new process and cgroup, and a
``container_restarted`` event marks the moment. One that is removed ends its series
(``container_removed``). With ``--all`` (or ``--label``) containers that start while
attached are picked up too. It ends when every container has exited (and none is about to
restart), when ``duration_s`` has passed, or on Ctrl-C/SIGTERM (``KeyboardInterrupt``,
re-raised after everything up to then is stored and the run marked ``interrupted``).

Attach never stops, restarts or removes a container: it has no label of the run's, so
neither the reaper (which only removes what carries the run's ``edgeprof.run_uid``) nor
``edgeprof cleanup`` touches it.
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from edgeprof import __version__
from edgeprof.cgroups import cgroup_name
from edgeprof.collect.base import CollectContext, Collector
from edgeprof.collect.registry import (
    DEFAULT_GROUPS,
    KNOWN_GROUPS,
    CollectOptions,
    Group,
    GroupEnv,
    StatsSource,
    selected,
)
from edgeprof.engine.base import ContainerEvent, ContainerInfo, Engine, Handle
from edgeprof.errors import UserError
from edgeprof.farm.meta import gpu_details, run_meta
from edgeprof.hostinfo import HostCaps, detect, host_details
from edgeprof.model import Clock, Event, EventKind, TargetStatus, labels_of
from edgeprof.owner import owner_info
from edgeprof.reaper import Reaper
from edgeprof.sampler import windows_message
from edgeprof.session import Member, Session, close_collector
from edgeprof.signals import DeferSignals, best_effort
from edgeprof.sinks import MemberInfo, Sink, Tee
from edgeprof.store.base import RunInfo, Store, TargetInfo
from edgeprof.store.resilient import resilient
from edgeprof.store.writer import BatchWriter
from edgeprof.target import CollectorOpening, Notes

SPEC_NAME = "attach"
RESTART_WAIT_S = 2.0
"""After a container exits, how long to wait for it to start again (``docker restart``)
before counting it as gone (a restart policy's back-off is seen as ``restarting``)."""

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``2h`` → seconds; anything else is a :class:`UserError`."""
    m = _DURATION_RE.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise UserError(
            f"--duration {text!r} is not a duration; give seconds or a number with s, m or h "
            "(90, 90s, 10m, 2h)"
        )
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """``key=value`` (or just ``key``: any value) → a dict; a bad item is a UserError."""
    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not k.strip():
            raise UserError(f"--label {item!r} has no key; write it as key=value (or key)")
        out[k.strip()] = v if sep else ""
    return out


class AttachHooks:
    """What a display learns while attached; the defaults do nothing."""

    def run_started(self, run_id: int) -> None: ...

    def attached(self, target: str, info: ContainerInfo) -> None: ...

    def note(self, target: str, message: str) -> None:
        """Something the user should know about this container (said once)."""

    def container_event(self, target: str, kind: str, message: str) -> None: ...

    def tick(self, elapsed_s: float) -> None: ...


@dataclass
class AttachedTarget:
    """One container of an attach run, as it ended."""

    name: str
    target_id: int
    container_id: str
    image: str
    status: TargetStatus = "running"
    exit_code: int | None = None
    oom_killed: bool = False
    restarts: int = 0
    removed: bool = False
    samples: int = 0


@dataclass
class AttachResult:
    run_id: int
    status: str
    """``completed`` or ``interrupted`` (``error`` when storing failed)."""
    ended_by: str = ""
    """``exited`` (every container), ``duration`` or ``interrupted``."""
    targets: list[AttachedTarget] = field(default_factory=list)


class _Waits:
    """The session's engine, with ``wait`` answered from the event stream (one long API
    call per attached container would cost the engine a connection each)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._done: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def event_for(self, handle: Handle) -> threading.Event:
        with self._lock:
            return self._done.setdefault(id(handle), threading.Event())

    def wait(self, handle: Handle, timeout: float | None) -> int | None:
        self.event_for(handle).wait(timeout)
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@dataclass
class _Watched:
    """An attached container across its restarts."""

    info: ContainerInfo
    target: AttachedTarget
    labels: Any
    member: Member | None = None
    incarnation_ns: int = 0
    """When its current process started (the engine's ``StartedAt``)."""
    exited_mono: float | None = None
    restarting: bool = False
    observed_s: float = 0.0


_END = object()


class _Attach(CollectorOpening):
    """The state of one attach run (see :func:`attach_profile`)."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        run_id: int,
        clock: Clock,
        caps: HostCaps,
        groups: list[Group],
        opts: CollectOptions,
        interval_s: float,
        writer: BatchWriter,
        tee: Tee,
        hooks: AttachHooks,
        label_filters: dict[str, str],
        follow_new: bool,
        restart_wait_s: float,
    ) -> None:
        self.engine, self.store, self.run_id, self.clock = engine, store, run_id, clock
        self.caps, self.groups, self.opts, self.interval = caps, groups, opts, interval_s
        self.writer, self.tee, self.hooks = writer, tee, hooks
        self.label_filters, self.follow_new = label_filters, follow_new
        self.restart_wait_s = restart_wait_s
        self.notes = Notes(clock)
        self.said: set[tuple[str, str]] = set()
        self.waits = _Waits(engine)
        self.session = Session(
            cast(Engine, self.waits),
            clock,
            tee,
            interval_s,
            host_collectors=(),
            on_error=self._on_error,
        )
        self.watched: dict[str, _Watched] = {}
        self.to_close: list[tuple[float, list[Collector]]] = []
        self.names: set[str] = set()
        self.windows_said = False
        self.events: queue.Queue[Any] = queue.Queue()
        self.stream_end: Callable[[], None] | None = None
        self.pump: threading.Thread | None = None

    # -- notes and events -------------------------------------------------------------------
    def event(self, target: str | None, kind: EventKind, message: str, **data: Any) -> None:
        self.writer.event(Event(self.clock.now_ns(), kind, message, target, data))
        if target is not None and kind in ("container_restarted", "container_removed", "exited"):
            best_effort(lambda: self.hooks.container_event(target, kind, message))

    def unavailable(self, group: str, reason: str, target: str | None = None) -> None:
        super().unavailable(group, reason, target)
        if target is not None and (target, group) not in self.said:
            self.said.add((target, group))
            best_effort(lambda: self.hooks.note(target, f"{group}: {reason}"))

    def _on_error(self, c: Collector, e: BaseException) -> None:
        self.unavailable(c.group, f"failed while sampling: {type(e).__name__}: {e}", None)

    def open_groups(self, scope: str, env: GroupEnv, ctx: CollectContext) -> list[Collector]:
        return [c for g in self.groups if g.scope == scope for c in self.collectors(g, env, ctx)]

    def env(self, has_cgroup: bool, target: str | None) -> GroupEnv:
        def note(msg: str) -> None:
            self.notes(self.writer.event, "note", msg, msg, target)

        return GroupEnv(
            caps=self.caps,
            opts=self.opts,
            has_cgroup=has_cgroup,
            created=False,
            note=note,
            selected=frozenset(g.name for g in self.groups),
        )

    # -- the event stream -------------------------------------------------------------------
    def subscribe(self, since_ns: int) -> None:
        """Follow the engine's container events from ``since_ns`` on (replayed up to now)."""
        stream, end = self.engine.events(since_ns)
        self.stream_end = end

        def pump() -> None:
            try:
                for ev in stream:
                    self.events.put(ev)
            except Exception as e:  # noqa: BLE001 - reported; the run goes on
                self.events.put(e)
            self.events.put(_END)

        self.pump = threading.Thread(target=pump, name="edgeprof-attach-events", daemon=True)
        self.pump.start()

    def unsubscribe(self) -> None:
        if self.stream_end is not None:
            best_effort(self.stream_end)
        if self.pump is not None:
            self.pump.join(5)

    # -- containers -------------------------------------------------------------------------
    def wants(self, info: ContainerInfo) -> bool:
        return all(
            k in info.labels and (v == "" or info.labels[k] == v)
            for k, v in self.label_filters.items()
        )

    def _target_name(self, info: ContainerInfo) -> str:
        name = info.name or info.id[:12]
        if name in self.names:  # a removed container's name given to a new one
            name = f"{name}@{info.id[:12]}"
        self.names.add(name)
        return name

    def attach(self, info: ContainerInfo) -> _Watched:
        name = self._target_name(info)
        config = {
            "attached": True,
            "container_id": info.id,
            "container_name": info.name,
            "image": info.image,
            "labels": dict(info.labels),
            "limits": _limits(info),
            # the same key as a run's targets, so reports show the limits
            "resources": {
                k: v
                for k, v in (
                    ("cpus", info.nano_cpus / 1e9 if info.nano_cpus else None),
                    ("memory", info.memory_limit or None),
                )
                if v
            },
        }
        tid = self.store.begin_target(
            TargetInfo(self.run_id, len(self.watched), name, [], config, status="running")
        )
        self.writer.add_target(name, tid)
        if len(self.watched) == 0:
            self.writer.set_default_target(tid)  # host metrics: the first container's
        t = AttachedTarget(name, tid, info.id, info.image)
        w = _Watched(info, t, labels_of(target=name))
        self.watched[info.id] = w
        self.store.update_target(
            tid, container_id=info.id, started_ns=self.clock.now_ns(), status="running"
        )
        best_effort(lambda: self.hooks.attached(name, info))
        self.start_incarnation(w, info, first=True)
        return w

    def start_incarnation(self, w: _Watched, info: ContainerInfo, first: bool) -> None:
        name = w.target.name
        w.info = info
        w.incarnation_ns = info.started_ns or 0
        w.exited_mono = None
        w.restarting = False
        w.target.exit_code = None  # a new incarnation: the last one's exit is history
        w.target.oom_killed = False
        handle = self.engine.handle_of(info)
        data = {
            "container_id": info.id,
            "pid": handle.pid,
            "cgroup": handle.cgroup.as_dict() if handle.cgroup else None,
        }
        if first:
            self.event(
                name,
                "target_started",
                f"attached to container {info.id[:12]} ({info.image}), started by somebody "
                "else: edgeprof only observes it",
                **data,
            )
        else:
            w.target.restarts += 1
            self.event(
                name,
                "container_restarted",
                f"container {info.id[:12]} started again (restart {w.target.restarts}); "
                f"following its new process {handle.pid}",
                restarts=w.target.restarts,
                **data,
            )
        if not handle.pid:
            self.event(
                name, "exited_before_sampling", "the container exited before its first sample"
            )
            self._record_exit(w, None)
            return
        ctx = CollectContext(
            target=name,
            labels=w.labels,
            clock=self.clock,
            interval_s=self.interval,
            emit_event=self.writer.event,
            engine=self.engine,
            container_id=info.id,
            pid=handle.pid,
            cgroup=handle.cgroup,
        )
        collectors = self.open_groups("container", self.env(handle.cgroup is not None, name), ctx)
        m = Member(name, "attached", handle, w.labels, collectors)
        self.waits.event_for(handle)
        w.member = m
        self.session.add(m)
        best_effort(
            lambda: self.tee.member_started(
                MemberInfo(
                    target=name,
                    role="attached",
                    container_id=info.id,
                    name=info.name,
                    image=info.image,
                    limits=_limits(info),
                    labels=dict(info.labels),
                    cgroup=cgroup_name(handle.cgroup),
                )
            )
        )
        if not self.windows_said:
            windows = self.session.sampler.rate_windows()
            if windows:
                self.windows_said = True
                self.notes(
                    self.writer.event,
                    "rate_windows",
                    "rate_windows",
                    windows_message(windows, self.interval),
                    None,
                    windows=windows,
                    interval_s=self.interval,
                )

    def end_incarnation(self, w: _Watched) -> None:
        """Stop sampling its current process (it exited); close its collectors a little
        later, once no tick can be using them."""
        m = w.member
        if m is None:
            return
        w.member = None
        w.observed_s += time.monotonic() - m.started_mono
        self.session.sampler.remove(m.collectors)
        if m in self.session.members:
            self.session.members.remove(m)
        self.waits.event_for(m.handle).set()
        m.exited.set()
        self.to_close.append((time.monotonic() + max(0.3, 2 * self.interval), m.collectors))
        best_effort(lambda: self.tee.member_ended(w.target.name))

    def close_due(self, now: float, everything: bool = False) -> None:
        keep = []
        for due, cs in self.to_close:
            if everything or now >= due:
                for c in cs:
                    close_collector(c, self.session.sampler)
            else:
                keep.append((due, cs))
        self.to_close = keep

    def _record_exit(self, w: _Watched, code: int | None) -> None:
        info = self.engine.inspect(w.info.id)
        oom = False
        if code is None or info is not None:
            try:
                ex = self.engine.exit_info(self.engine.handle_of(w.info))
                if code is None:
                    code = ex.exit_code
                oom = ex.oom_killed
            except Exception:  # noqa: BLE001 - a removed container: the event's code stands
                pass
        w.target.exit_code = code
        w.target.oom_killed = oom
        w.exited_mono = time.monotonic()
        w.restarting = bool(info is not None and info.restarting)
        self.event(
            w.target.name,
            "exited",
            f"exit code {code}"
            + (", OOM-killed" if oom else "")
            + ("; its restart policy starts it again" if w.restarting else ""),
            exit_code=code,
            oom_killed=oom,
            restarting=w.restarting,
        )

    def handle(self, ev: ContainerEvent) -> None:
        w = self.watched.get(ev.container_id)
        if ev.action == "start":
            if w is None and not self.follow_new:
                return  # somebody else's container: not even an inspect
            info = self.engine.inspect(ev.container_id)
            if info is None or not info.running:
                return  # gone again already: its die/destroy events follow
            if w is None:
                if self.follow_new and self.wants(info):
                    self.attach(info)
                return
            if w.target.removed:
                return
            if w.member is not None:
                if w.member.handle.pid == info.pid:
                    return  # the incarnation we follow (a replayed event)
                self.end_incarnation(w)  # its die event was missed
            self.start_incarnation(w, info, first=False)
        elif ev.action == "die" and w is not None:
            if w.member is None or ev.time_ns < w.incarnation_ns:
                return  # an earlier process (replayed), or already seen exiting
            self.end_incarnation(w)
            self._record_exit(w, ev.exit_code)
        elif ev.action == "destroy" and w is not None and not w.target.removed:
            if w.member is not None:
                self.end_incarnation(w)
                self._record_exit(w, ev.exit_code)
            w.target.removed = True
            w.restarting = False
            self.event(
                w.target.name,
                "container_removed",
                f"container {ev.container_id[:12]} was removed; its series end here",
            )
            self.writer.end_target(w.target.target_id)

    def all_gone(self, now: float) -> bool:
        """Every container exited for good (none running, restarting or just exited)."""
        for w in self.watched.values():
            if w.target.removed:
                continue
            if w.member is not None or w.restarting:
                return False
            if w.exited_mono is not None and now - w.exited_mono < self.restart_wait_s:
                return False
        return True

    def loop(self, duration_s: float | None) -> str:
        t0 = time.monotonic()
        stream_alive = True
        while True:
            now = time.monotonic()
            if duration_s is not None and now - t0 >= duration_s:
                return "duration"
            if not self.follow_new and self.all_gone(now):
                return "exited"
            self.close_due(now)
            best_effort(partial(self.hooks.tick, now - t0))
            wait = 0.25
            if duration_s is not None:
                wait = max(0.0, min(wait, duration_s - (now - t0)))
            try:
                ev = self.events.get(timeout=wait) if stream_alive else None
                if not stream_alive:
                    time.sleep(wait)
            except queue.Empty:
                continue
            while ev is not None:
                if ev is _END:
                    stream_alive = False
                    self.notes(
                        self.writer.event,
                        "note",
                        "events",
                        "the engine's event stream ended: restarts and new containers are no "
                        "longer followed; exits are seen by polling",
                        None,
                    )
                    self.poll_exits()
                elif isinstance(ev, BaseException):
                    self.notes(
                        self.writer.event, "note", "events-error", f"engine events: {ev}", None
                    )
                else:
                    self.handle(ev)
                try:
                    ev = self.events.get_nowait()
                except queue.Empty:
                    ev = None
            if not stream_alive:
                self.poll_exits()

    def poll_exits(self) -> None:
        """Without events: a container no longer running is an exit."""
        for w in self.watched.values():
            if w.member is None:
                continue
            info = self.engine.inspect(w.info.id)
            if info is None or not info.running or info.pid != w.member.handle.pid:
                self.end_incarnation(w)
                self._record_exit(w, None)
                w.restarting = False

    def finish(self, status: str) -> None:
        """Stop sampling (one last sample), close every collector, record each container's
        end; each step runs even when an earlier one failed."""
        self.unsubscribe()
        best_effort(lambda: self.session.close(None))
        self.close_due(0, everything=True)
        now = time.monotonic()
        for w in self.watched.values():
            t = w.target
            if w.member is not None:
                self.waits.event_for(w.member.handle).set()  # ends the session's waiter
                w.observed_s += now - w.member.started_mono
                best_effort(partial(self.tee.member_ended, t.name))
                t.status = "detached"
                self.event(
                    t.name,
                    "detached",
                    "profiling ended ("
                    + ("interrupted" if status == "interrupted" else "attach finished")
                    + "); the container goes on running",
                )
            elif t.exit_code is None and w.exited_mono is None:
                t.status = "error"
            else:
                t.status = (
                    "oom_killed" if t.oom_killed else "exited" if t.exit_code == 0 else "failed"
                )
            self.writer.end_target(t.target_id)
        best_effort(lambda: self.writer.flush())
        for w in self.watched.values():
            t = w.target
            t.samples = self.writer.written(t.target_id)
            best_effort(
                partial(
                    self.store.update_target,
                    t.target_id,
                    status=t.status,
                    exit_code=t.exit_code,
                    oom_killed=t.oom_killed,
                    duration_s=round(w.observed_s, 3),
                    ended_ns=self.clock.now_ns(),
                )
            )


def _limits(info: ContainerInfo) -> dict[str, float]:
    out: dict[str, float] = {}
    if info.nano_cpus:
        out["cpus"] = info.nano_cpus / 1e9
    if info.memory_limit:
        out["memory_bytes"] = float(info.memory_limit)
    return out


def check_metrics(metrics: Sequence[str]) -> list[str]:
    unknown = [m for m in metrics if m not in KNOWN_GROUPS]
    if unknown:
        raise UserError(
            f"--metrics: unknown metric group {unknown[0]!r}; known groups are: "
            + ", ".join(KNOWN_GROUPS)
        )
    return list(metrics)


def find_containers(
    engine: Engine, refs: Sequence[str], all_running: bool, label_filters: dict[str, str]
) -> list[ContainerInfo]:
    """The running containers to attach to; a missing or stopped one is a UserError."""
    if refs and all_running:
        raise UserError("name containers or pass --all, not both")
    if not refs and not all_running and not label_filters:
        raise UserError("name at least one running container (name or id), or pass --all")
    if not refs:
        infos = engine.running_containers(label_filters)
        return sorted(infos, key=lambda i: i.name)
    out: list[ContainerInfo] = []
    for ref in refs:
        info = engine.inspect(ref)
        if info is None:
            raise UserError(
                f"no container named or with id {ref!r} on the {engine.description}; "
                "'docker ps' lists the running ones"
            )
        if not info.running:
            raise UserError(
                f"container {ref!r} is not running; start it first (docker start {ref}) or "
                "attach to a running one"
            )
        if label_filters and not all(
            k in info.labels and (v == "" or info.labels[k] == v) for k, v in label_filters.items()
        ):
            raise UserError(f"container {ref!r} does not carry the labels given with --label")
        if all(o.id != info.id for o in out):
            out.append(info)
    return out


def attach_profile(
    engine: Engine,
    store: Store,
    refs: Sequence[str] = (),
    *,
    all_running: bool = False,
    label_filters: dict[str, str] | None = None,
    duration_s: float | None = None,
    interval_s: float = 1.0,
    metrics: Sequence[str] | None = None,
    stats_source: StatsSource = "auto",
    sinks: Sequence[Sink] = (),
    hooks: AttachHooks | None = None,
    caps: HostCaps | None = None,
    reaper: bool = True,
    db_url: str | None = None,
    restart_wait_s: float = RESTART_WAIT_S,
    tags: dict[str, str] | None = None,
) -> AttachResult:
    """Profile running containers as one stored run (see the module docstring).

    ``refs`` name containers (names or ids); ``all_running`` takes every running one and
    those that start while attached; ``label_filters`` (key → value, ``""``: any value)
    narrows both and, without ``refs``, implies ``all_running``. ``tags`` (``--tag``) are
    stored in the run's ``meta["tags"]``.
    """
    ui = hooks or AttachHooks()
    store = resilient(store)  # PostgreSQL: survives an outage, spools what never got there
    filters = dict(label_filters or {})
    groups = selected(check_metrics(list(metrics) if metrics is not None else DEFAULT_GROUPS))
    follow_new = not refs
    clock = Clock()
    caps = caps or detect()
    run_uid = secrets.token_hex(8)
    owner = owner_info()
    attach_args = {
        "refs": list(refs),
        "all": all_running or follow_new,
        "labels": filters,
        "duration_s": duration_s,
        "interval_s": interval_s,
    }
    # the event subscription replays from just before the look-up, so a container that
    # starts, exits or restarts in between is seen (the engine's clock may lag a little)
    since_ns = time.time_ns() - 1_000_000_000
    infos = find_containers(engine, refs, all_running, filters)
    images = list(dict.fromkeys(i.image for i in infos))
    host = {**host_details(caps), **engine.engine_details(), "attach": attach_args}
    if len(images) == 1:
        host["image"] = engine.image_info(images[0])
    # no spec: the commit is that of the folder attach was started in
    meta = run_meta(caps, host, gpu_details(caps), host.get("image"), os.getcwd(), tags)
    run_id = store.begin_run(
        RunInfo(
            spec_name=SPEC_NAME,
            image=", ".join(images),
            started_ns=clock.now_ns(),
            interval_s=interval_s,
            spec_path=None,
            spec_text=None,
            host=host,
            version=__version__,
            owner={**owner, "run_uid": run_uid},
            meta=meta,
        )
    )
    result = AttachResult(run_id=run_id, status="running")
    proc = Reaper.start(run_uid, run_id, db_url) if reaper else None
    writer = BatchWriter(store, run_id)

    def on_sink_error(sink: object, e: BaseException) -> None:
        msg = (
            f"{type(sink).__name__} failed and is left out from here on: "
            f"{type(e).__name__}: {e} (the store goes on)"
        )
        writer.event(Event(clock.now_ns(), "note", msg, None, {}))

    tee = Tee(writer, *sinks, on_error=on_sink_error)
    a = _Attach(
        engine,
        store,
        run_id,
        clock,
        caps,
        groups,
        CollectOptions(stats_source=stats_source),
        interval_s,
        writer,
        tee,
        ui,
        filters,
        follow_new,
        restart_wait_s,
    )
    try:
        a.subscribe(since_ns)
        ui.run_started(run_id)
        host_ctx = CollectContext(clock=clock, interval_s=interval_s, emit_event=writer.event)
        host_cs = a.open_groups("host", a.env(True, None), host_ctx)
        a.session.host_collectors = host_cs
        a.session.sampler.add(host_cs)
        for info in infos:
            a.attach(info)
        a.session.start()
        result.ended_by = a.loop(duration_s)
        result.status = "completed"
    except KeyboardInterrupt:
        result.status = "interrupted"
        result.ended_by = "interrupted"
        raise
    finally:
        if result.status == "running":
            result.status = "error"
        with DeferSignals():
            errors: list[BaseException] = []
            best_effort(lambda: a.finish(result.status), errors)
            best_effort(writer.close, errors)
            if errors and result.status == "completed":
                result.status = "error"
            best_effort(lambda: store.end_run(run_id, result.status, clock.now_ns()), errors)
            result.targets = [w.target for w in a.watched.values()]
            if proc is not None:
                proc.done()
            if errors and result.status not in ("interrupted",):
                raise errors[0]
    return result


__all__ = [
    "AttachHooks",
    "AttachResult",
    "AttachedTarget",
    "attach_profile",
    "check_metrics",
    "find_containers",
    "parse_duration",
    "parse_labels",
]
