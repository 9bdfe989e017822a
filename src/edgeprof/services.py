"""Services: containers an app needs while it runs (a video playback server, a broker, a
database), started before it on the run's private network and torn down after.

:func:`start_services` starts each service in the order given, on ``network`` with its
name as network alias, and waits until it is ready before starting the next (so a later
service may rely on an earlier one):

- ``tcp: PORT`` — a TCP connection to the container's address on the network succeeds;
- ``http: {port, path}`` — ``GET http://ADDRESS:PORT/PATH`` answers 2xx;
- ``log: REGEX`` — a line of its output (stdout or stderr) matches;
- ``healthcheck: true`` — the engine reports the image's HEALTHCHECK ``healthy``;
- no probe — ready once it runs.

``tcp`` and ``http`` probes connect from this host to the container's address on the
network (a user-defined bridge network is routed from the host). They cannot where the
engine's networks are not this host's: a remote engine (``DOCKER_HOST=tcp://…`` or
``ssh://…``), rootless Docker or Podman, Docker Desktop. Such an engine is named when
probing starts and in the failure message, with the fix: ``ready: {log: …}`` or
``{healthcheck: true}``, which work with any engine. An HTTP probe sends one
``GET PATH HTTP/1.1`` (``Connection: close``) and decides on the status line alone (never
reading the body, so a streaming endpoint such as ``/bottom/live.mp4`` is ready once it
answers 2xx; a 3xx is not ready); each try has at most 2 s (less near ``start_timeout``)
for connecting, sending and reading that line together. A log probe searches each new line
(stdout and stderr, the engine's timestamps stripped) on its own, fetching only lines
newer than those already searched where the engine can. A HEALTHCHECK that reports
``unhealthy`` is waited on until ``start_timeout`` (health may recover; an image without
a start period reports unhealthy while it starts). An engine that fails while a service is
watched fails that service too. A service that exits before it is ready fails at once,
one that is not ready within its ``start_timeout`` fails then, and either way
:class:`ServiceFailed` names the service, what was waited for and for how long, and ends
with its last log lines; everything that call started is removed first.

:func:`data_config_json` writes the data-config pywaggle reads to resolve a stream name
(``Camera("bottom_camera")``) to a URL.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from edgeprof.engine.base import ContainerRequest, Engine, Handle
from edgeprof.errors import EngineError
from edgeprof.model import parse_rfc3339
from edgeprof.signals import DeferSignals

if TYPE_CHECKING:
    from edgeprof.spec.models import ReadyProbe, ServiceSpec

DATA_CONFIG_PATH = "/run/waggle/data-config.json"
"""Where pywaggle looks for its data-config (``$WAGGLE_DATA_CONFIG_PATH`` by default)."""
SERVICE_LABEL = "edgeprof.service"
"""Label naming the service a container runs."""
LOG_LINES = 20
"""Log lines a failure message ends with."""

OnEvent = Callable[[str, dict[str, Any]], None]
"""``on_event(message, data)``: one line about a service (``data["service"]`` names it)."""

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d) ")
_IMAGE_PATH = re.compile(r"\.(jpe?g|png|bmp)$", re.IGNORECASE)


class ServiceFailed(Exception):
    """A service did not become ready. The message names it, what was waited for and for
    how long, and ends with its last log lines."""

    def __init__(
        self, service: str, message: str, logs: tuple[str, str] = ("", ""), elapsed_s: float = 0
    ) -> None:
        super().__init__(message)
        self.service = service
        self.logs = logs
        """(stdout, stderr) of the failed service, as the engine gave them."""
        self.elapsed_s = elapsed_s


@dataclass
class RunningService:
    spec: ServiceSpec
    handle: Handle
    ready_s: float
    """Seconds from asking the engine to start it to its probe succeeding."""
    t0: float = field(default_factory=time.monotonic)
    """When the engine was asked to start it (monotonic)."""


@dataclass
class StoppedService:
    """A service :func:`start_services` started and removed again on its way out (a later
    service was not ready, or Ctrl-C, or another error): its logs were read before."""

    spec: ServiceSpec
    container_id: str
    ready_s: float | None
    """Seconds it took to be ready; None: it was not ready yet."""
    elapsed_s: float
    """Seconds from asking the engine to start it to its removal."""
    logs: tuple[str, str]
    """(stdout, stderr), ``("", "")`` when they could not be read."""


def network_name(run_id: int, run_uid: str) -> str:
    """The name of a run's private network."""
    return f"edgeprof-{run_id}-{run_uid[:8]}"


def data_config_json(mapping: dict[str, str]) -> str:
    """pywaggle's data-config for ``{stream name: URL}``.

    pywaggle's ``Camera(name)`` (``waggle.data.vision``) reads a JSON list, keeps the
    entries whose ``match`` has an ``id`` and takes ``handler.args.url`` of the one whose
    id is the name; the older ``waggle.data_shim`` picks the handler by ``handler.type``:
    ``image`` (one still image per request) for a URL whose path ends in .jpg/.jpeg/.png/
    .bmp, ``video`` otherwise.
    """
    entries = [
        {
            "match": {"id": name},
            "handler": {
                "type": "image" if _IMAGE_PATH.search(urlsplit(url).path) else "video",
                "args": {"url": url},
            },
        }
        for name, url in mapping.items()
    ]
    return json.dumps(entries, indent=2) + "\n"


def probe_text(spec: ServiceSpec) -> str:
    """What readiness of ``spec`` means, in words."""
    r = spec.ready
    if r is None:
        return "the container to run"
    if r.tcp is not None:
        return f"a TCP connection to port {r.tcp}"
    if r.http is not None:
        return f"a 2xx answer to GET :{r.http.port}{_path(r.http.path)}"
    if r.log is not None:
        return f"a log line matching {r.log!r}"
    return "its HEALTHCHECK to report healthy"


def start_services(
    engine: Engine,
    specs: list[ServiceSpec] | tuple[ServiceSpec, ...],
    *,
    network: str,
    labels: dict[str, str],
    name_prefix: str,
    on_event: OnEvent | None = None,
    stopped: list[StoppedService] | None = None,
) -> list[RunningService]:
    """Start ``specs`` one after another on ``network``, each ready before the next.

    Raises :class:`ServiceFailed` (after removing every container this call started) when
    one cannot start, exits, or is not ready within its ``start_timeout``; on any other
    exception (Ctrl-C included) it removes them too and re-raises. Each container removed
    so, other than the failed service's own (whose logs the :class:`ServiceFailed` holds),
    has its logs read first and is added to ``stopped`` in the order started.
    """
    running: list[RunningService] = []
    current: list[StoppedService] = []  # the one being started when it was cut short
    try:
        for spec in specs:
            running.append(
                _start_one(engine, spec, network, labels, name_prefix, on_event, current)
            )
    except BaseException:
        with DeferSignals():
            done = [
                _stop_one(engine, rs.spec, rs.handle, rs.ready_s, rs.t0) for rs in reversed(running)
            ]
            if stopped is not None:
                stopped += [*reversed(done), *current]
        raise
    return running


def _stop_one(
    engine: Engine, spec: ServiceSpec, handle: Handle, ready_s: float | None, t0: float
) -> StoppedService:
    """Read a service's logs, then remove it (each step whatever the other did)."""
    try:
        logs = engine.logs(handle)
    except Exception:  # noqa: BLE001 - the removal matters more
        logs = ("", "")
    with contextlib.suppress(Exception):
        engine.remove(handle)
    return StoppedService(spec, handle.container_id, ready_s, time.monotonic() - t0, logs)


def stop_services(
    engine: Engine, running: list[RunningService], on_event: OnEvent | None = None
) -> dict[str, tuple[str, str]]:
    """Collect each service's logs, then remove it, every one whatever fails; the logs by
    service name (``("", "")`` when they could not be read). A failed removal is told
    through ``on_event`` and does not stop the others; Ctrl-C while removing still removes
    the rest, then propagates."""
    logs: dict[str, tuple[str, str]] = {}
    pending: BaseException | None = None
    for rs in reversed(running):
        name = rs.spec.name
        try:
            logs[name] = engine.logs(rs.handle)
        except Exception:  # noqa: BLE001 - the removal matters more
            logs[name] = ("", "")
        except BaseException as e:  # Ctrl-C: remove everything first
            logs[name] = ("", "")
            pending = pending or e
        try:
            engine.remove(rs.handle)
        except Exception as e:  # noqa: BLE001 - remove the others
            if on_event is not None:
                on_event(
                    f"service {name}: could not remove container {rs.handle.name}: {e}",
                    {"service": name, "container": rs.handle.name},
                )
        except BaseException as e:
            pending = pending or e
            with contextlib.suppress(Exception):
                engine.remove(rs.handle)
    if pending is not None:
        raise pending
    return dict(reversed(list(logs.items())))


def _start_one(
    engine: Engine,
    spec: ServiceSpec,
    network: str,
    labels: dict[str, str],
    name_prefix: str,
    on_event: OnEvent | None,
    stopped: list[StoppedService],
) -> RunningService:
    req = ContainerRequest(
        image=spec.image,
        name=f"{name_prefix}-{spec.name}",
        command=spec.argv(),
        env=dict(spec.env),
        labels={**labels, SERVICE_LABEL: spec.name},
        volumes=list(spec.volumes),
        network=network,
        aliases=[spec.name],
    )
    what = probe_text(spec)
    t0 = time.monotonic()
    try:
        handle = engine.start(req)
    except EngineError as e:
        raise ServiceFailed(
            spec.name, f"service {spec.name!r} ({spec.image}) could not start: {e}"
        ) from None
    try:
        if on_event is not None:
            on_event(
                f"service {spec.name} started ({spec.image}) on network {network}; "
                f"waiting up to {spec.start_timeout:g} s for {what}",
                {"service": spec.name, "container": handle.name, "image": spec.image},
            )
        caveat = None
        if spec.ready is not None and (spec.ready.tcp is not None or spec.ready.http is not None):
            caveat = host_probe_caveat(engine)
            if caveat is not None and on_event is not None:
                on_event(
                    f"service {spec.name}: {caveat}, so this host may not reach the container "
                    f"to probe it; {_PROBE_FIX}",
                    {"service": spec.name, "caveat": caveat},
                )
        try:
            _wait_ready(engine, spec, handle, network, t0, caveat)
        except EngineError as e:  # the engine failed us while we watched: still this service's
            _fail(
                engine,
                spec,
                handle,
                t0,
                f"could not be watched while it started ({probe_text(spec)}): {e}",
            )
        ready_s = time.monotonic() - t0
        if on_event is not None:
            on_event(
                f"service {spec.name} ready after {ready_s:.2f} s ({what})",
                {"service": spec.name, "ready_s": ready_s},
            )
    except ServiceFailed:  # not ready: its logs are in the exception; it goes too
        with DeferSignals(), contextlib.suppress(Exception):
            engine.remove(handle)
        raise
    except BaseException:  # Ctrl-C or another error: its logs are kept, and it goes too
        with DeferSignals():
            stopped.append(_stop_one(engine, spec, handle, None, t0))
        raise
    return RunningService(spec=spec, handle=handle, ready_s=ready_s, t0=t0)


_PROBE_FIX = "use ready: {log: REGEX} or ready: {healthcheck: true}, which work with any engine"
_LOCAL_TCP = re.compile(r"^tcp://(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?/?$")


def host_probe_caveat(engine: Engine) -> str | None:
    """Why this host may not reach a container's address on the engine's networks (a
    remote engine, rootless Docker or Podman, Docker Desktop), in words; None when nothing
    says so. tcp and http probes connect from this host; log and healthcheck probes do not."""
    address = str(getattr(engine, "address", "") or "")
    if getattr(engine, "local", True) is False and not _LOCAL_TCP.match(address):
        return f"the engine is not on this host ({address or engine.description})"
    info = getattr(engine, "info", None)
    if isinstance(info, dict):
        opts = " ".join(str(o) for o in info.get("SecurityOptions") or [])
        if "name=rootless" in opts:
            return "the engine runs rootless (its networks live in its own namespace)"
        if "docker desktop" in str(info.get("OperatingSystem") or "").lower():
            return "the engine runs in Docker Desktop's virtual machine"
    return None


class _LogFollower:
    """The lines a container wrote since the last call (stdout's, then stderr's), without
    the engine's timestamps. Where the engine can (``logs_since``) and a stream's lines
    carry timestamps, only lines from the last one seen on are fetched (that line comes
    again: harmless for a search); otherwise all, skipping those returned before."""

    def __init__(self, engine: Engine, handle: Handle) -> None:
        self.engine = engine
        self.handle = handle
        self.since: list[int | None] = [None, None]
        self.seen = [0, 0]

    def new_lines(self) -> list[str]:
        fetch = getattr(self.engine, "logs_since", None)
        if callable(fetch):
            texts: tuple[str, str] = fetch(self.handle, (self.since[0], self.since[1]))
        else:
            texts = self.engine.logs(self.handle)
        out: list[str] = []
        for k, text in enumerate(texts):
            lines = text.splitlines()
            if callable(fetch) and self.since[k] is not None:
                fresh = lines
            else:
                fresh = lines[self.seen[k] :]
                self.seen[k] = max(self.seen[k], len(lines))
            stamps = [_stamp(x) for x in lines]
            if callable(fetch) and lines and all(t is not None for t in stamps):
                self.since[k] = max(t for t in stamps if t is not None)
            out += [_TIMESTAMP.sub("", x) for x in fresh]
        return out


def _stamp(line: str) -> int | None:
    if not _TIMESTAMP.match(line):
        return None
    return parse_rfc3339(line.split(" ", 1)[0])


def _wait_ready(
    engine: Engine,
    spec: ServiceSpec,
    handle: Handle,
    network: str,
    t0: float,
    caveat: str | None = None,
) -> None:
    ready = spec.ready
    deadline = t0 + spec.start_timeout
    pattern = re.compile(ready.log) if ready is not None and ready.log is not None else None
    follower = _LogFollower(engine, handle) if pattern is not None else None
    last = ""  # the probe's last answer, for the failure message
    reached = False  # a tcp/http probe got an answer (a refusal counts) from the address
    pause = 0.02
    while True:
        info = engine.inspect(handle.container_id)
        if info is None or not info.running:
            ex = engine.exit_info(handle)
            code = "" if ex.exit_code is None else f" with code {ex.exit_code}"
            oom = " (OOM-killed)" if ex.oom_killed else ""
            _fail(
                engine,
                spec,
                handle,
                t0,
                f"exited{code}{oom} after {time.monotonic() - t0:.1f} s, before it was ready "
                f"(waiting for {probe_text(spec)})",
            )
        now = time.monotonic()
        remaining = deadline - now
        if ready is None:
            return
        hint = ""
        if ready.healthcheck is not None:
            status = engine.health_status(handle)
            if status is None:
                _fail(
                    engine,
                    spec,
                    handle,
                    t0,
                    f"has 'ready: {{healthcheck: true}}' but image {spec.image} has no "
                    "HEALTHCHECK; give the service a tcp, http or log probe instead",
                )
            if status == "healthy":
                return
            # "unhealthy" may still recover (an image without a start period reports it
            # while starting): wait on until start_timeout
            last = f"health: {status}"
            hint = (
                "; Docker runs a HEALTHCHECK every 30 s unless the image sets --interval, so "
                "a start_timeout shorter than that may see no check at all"
            )
        elif follower is not None and pattern is not None:
            if any(pattern.search(line) for line in follower.new_lines()):
                return
        else:
            ip = engine.container_ip(handle, network)
            if ip is None:
                last = f"no address on network {network}"
            else:
                ok, last, answered = _probe(ip, ready, max(0.05, min(2.0, remaining)))
                if ok:
                    return
                reached = reached or answered
                last = f"{last} at {ip}"
            if caveat is not None or not reached:
                why = caveat or "this host never reached the container's address"
                hint = f"; {why}, and tcp/http probes connect from this host: {_PROBE_FIX}"
        if time.monotonic() >= deadline:
            detail = f" (last: {last})" if last else ""
            _fail(
                engine,
                spec,
                handle,
                t0,
                f"was not ready after {spec.start_timeout:g} s waiting for "
                f"{probe_text(spec)}{detail}{hint}",
            )
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.25)


_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})(?: ([^\r\n]*))?\r?\n")
_MAX_STATUS_LINE = 8192


def _probe(ip: str, ready: ReadyProbe, timeout: float) -> tuple[bool, str, bool]:
    """One try of a tcp or http probe within ``timeout`` seconds in all: (ready, what
    happened, whether the address answered at all — a refusal counts)."""
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out")
        return remaining

    port = ready.tcp if ready.tcp is not None else ready.http.port if ready.http else 0
    try:
        sock = socket.create_connection((ip, port), timeout=left())
    except OSError as e:
        return False, _oserror(e), isinstance(e, ConnectionRefusedError)
    with sock:
        if ready.tcp is not None:
            return True, "connected", True
        assert ready.http is not None  # a tcp or http probe
        host = f"[{ip}]" if ":" in ip else ip
        request = (
            f"GET {_path(ready.http.path)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "User-Agent: edgeprof\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
        buf = b""
        try:
            sock.settimeout(left())
            sock.sendall(request.encode("ascii"))
            while b"\n" not in buf and len(buf) < _MAX_STATUS_LINE:
                sock.settimeout(left())
                chunk = sock.recv(1024)
                if not chunk:
                    break
                buf += chunk
        except OSError as e:
            return False, _oserror(e) + (" (before a status line)" if not buf else ""), True
        m = _STATUS_LINE.match(buf)
        if m is None:
            got = buf.split(b"\n", 1)[0][:60].decode("latin-1")
            return (
                False,
                (f"not an HTTP answer: {got!r}" if buf else "closed without an answer"),
                True,
            )
        status, reason = int(m.group(1)), (m.group(2) or b"").decode("latin-1").strip()
        if 200 <= status < 300:
            return True, f"HTTP {status}", True
        return False, f"HTTP {status} {reason}".rstrip(), True


def _oserror(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e) or type(e).__name__


def _path(path: str) -> str:
    return path if path.startswith("/") else "/" + path


def _fail(engine: Engine, spec: ServiceSpec, handle: Handle, t0: float, what: str) -> None:
    try:
        logs = engine.logs(handle)
    except Exception:  # noqa: BLE001
        logs = ("", "")
    lines = _merged(logs)[-LOG_LINES:]
    tail = (
        f"; its last {len(lines)} log line(s):\n" + "\n".join(_plain(x) for x in lines)
        if lines
        else "; it wrote no log lines"
    )
    raise ServiceFailed(
        spec.name,
        f"service {spec.name!r} ({spec.image}) {what}{tail}",
        logs,
        time.monotonic() - t0,
    )


def _merged(logs: tuple[str, str]) -> list[str]:
    """stdout and stderr lines in the order written (the engine's timestamps lead each
    line when it gives them; lines without one keep their place after stdout's)."""
    out = [x for x in logs[0].splitlines() if x.strip()]
    err = [x for x in logs[1].splitlines() if x.strip()]
    if all(_TIMESTAMP.match(x) for x in out + err):
        return sorted(out + err, key=lambda x: parse_rfc3339(x.split(" ", 1)[0]) or 0)
    return out + err


def _plain(text: str) -> str:
    """Log text without the engine's leading timestamps."""
    return "\n".join(_TIMESTAMP.sub("", x) for x in text.split("\n"))
