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

Probes connect from this host to the container's address on the network (a user-defined
bridge network is routed from the host). A service that exits before it is ready fails at
once, one that is not ready within its ``start_timeout`` fails then, and either way
:class:`ServiceFailed` names the service, what was waited for and for how long, and ends
with its last log lines; everything that call started is removed first.

:func:`data_config_json` writes the data-config pywaggle reads to resolve a stream name
(``Camera("bottom_camera")``) to a URL.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from edgeprof.engine.base import ContainerRequest, Engine, Handle
from edgeprof.errors import EngineError
from edgeprof.model import parse_rfc3339

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
) -> list[RunningService]:
    """Start ``specs`` one after another on ``network``, each ready before the next.

    Raises :class:`ServiceFailed` (after removing every container this call started) when
    one cannot start, exits, or is not ready within its ``start_timeout``; on any other
    exception (Ctrl-C included) it removes them too and re-raises.
    """
    running: list[RunningService] = []
    try:
        for spec in specs:
            running.append(_start_one(engine, spec, network, labels, name_prefix, on_event))
    except BaseException:
        for rs in reversed(running):
            with contextlib.suppress(Exception):
                engine.remove(rs.handle)
        raise
    return running


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
        _wait_ready(engine, spec, handle, network, t0)
        ready_s = time.monotonic() - t0
        if on_event is not None:
            on_event(
                f"service {spec.name} ready after {ready_s:.2f} s ({what})",
                {"service": spec.name, "ready_s": ready_s},
            )
    except BaseException:  # not ready, or Ctrl-C: this one goes too
        with contextlib.suppress(Exception):
            engine.remove(handle)
        raise
    return RunningService(spec=spec, handle=handle, ready_s=ready_s)


def _wait_ready(engine: Engine, spec: ServiceSpec, handle: Handle, network: str, t0: float) -> None:
    ready = spec.ready
    deadline = t0 + spec.start_timeout
    pattern = re.compile(ready.log, re.MULTILINE) if ready is not None and ready.log else None
    last = ""  # the probe's last answer, for the failure message
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
        if ready.healthcheck:
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
            if status == "unhealthy":
                _fail(
                    engine,
                    spec,
                    handle,
                    t0,
                    f"was reported unhealthy by its HEALTHCHECK after "
                    f"{time.monotonic() - t0:.1f} s",
                )
            last = f"health: {status}"
        elif pattern is not None:
            if pattern.search(_plain("\n".join(_merged(engine.logs(handle))))):
                return
        else:
            ip = engine.container_ip(handle, network)
            if ip is None:
                last = f"no address on network {network}"
            else:
                ok, last = _probe(ip, ready, max(0.05, min(2.0, remaining)))
                if ok:
                    return
                last = f"{last} at {ip}"
        if time.monotonic() >= deadline:
            detail = f" (last: {last})" if last else ""
            _fail(
                engine,
                spec,
                handle,
                t0,
                f"was not ready after {spec.start_timeout:g} s waiting for "
                f"{probe_text(spec)}{detail}",
            )
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 1.5, 0.25)


def _probe(ip: str, ready: ReadyProbe, timeout: float) -> tuple[bool, str]:
    """One try of a tcp or http probe: (ready, what happened)."""
    host = f"[{ip}]" if ":" in ip else ip
    if ready.tcp is not None:
        try:
            with socket.create_connection((ip, ready.tcp), timeout=timeout):
                return True, "connected"
        except OSError as e:
            return False, _oserror(e)
    assert ready.http is not None  # a tcp or http probe
    port, path = ready.http.port, _path(ready.http.path)
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": f"{host}:{port}"})
        resp = conn.getresponse()
        resp.read(1 << 16)
        if 200 <= resp.status < 300:
            return True, f"HTTP {resp.status}"
        return False, f"HTTP {resp.status} {resp.reason}".rstrip()
    except (OSError, http.client.HTTPException) as e:
        return False, _oserror(e)
    finally:
        conn.close()


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
