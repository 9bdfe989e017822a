"""Nothing outlives a killed profiler: a reaper process, and ``edgeprof cleanup``.

Every container (and network) a run creates carries labels naming its run
(``edgeprof.run_uid``) and its owner (``edgeprof.owner``: host, boot id, pid, pid start).
When a run begins, :meth:`Reaper.start` launches ``python -m edgeprof.reaper`` in a
session of its own (outside the profiler's process group, so the Ctrl-C or SIGTERM meant
for the profiler does not reach it; without the variables Jenkins uses to kill a build's
processes). It holds one end of a pipe whose other end only the profiler has. A clean end
of the run writes ``done`` into it; if the pipe closes without that — the profiler was
SIGKILLed, OOM-killed, lost its session — the reaper removes the run's containers and
networks and marks the run ``crashed`` in the database. After the idea of testcontainers'
Ryuk.

:func:`cleanup` does the same later, for whatever a crash left: containers whose owner is
gone, and runs still marked ``running`` whose owner is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

RUN_UID_LABEL = "edgeprof.run_uid"
OWNER_LABEL = "edgeprof.owner"
DB_ENV = "EDGEPROF_REAPER_DB"
_JOB_KILLER_VARS = ("JENKINS_NODE_COOKIE", "BUILD_ID", "HUDSON_COOKIE", "JENKINS_SERVER_COOKIE")


class Reaper:
    """The watchdog of one run (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @classmethod
    def start(
        cls, run_uid: str, run_id: int, db_url: str | None, work_dir: str | None = None
    ) -> Reaper | None:
        """``db_url`` must not be relative (the reaper runs from ``/``); ``work_dir`` is the
        run's folder of sockets and logs, removed too should the profiler die."""
        env = {k: v for k, v in os.environ.items() if k not in _JOB_KILLER_VARS}
        if db_url:
            env[DB_ENV] = db_url  # not on the command line, where `ps` would show a password
        argv = [sys.executable, "-m", "edgeprof.reaper", run_uid, str(run_id), str(os.getpid())]
        if work_dir:
            argv.append(work_dir)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                env=env,
                cwd="/",
            )
        except OSError:
            return None
        return cls(proc)

    def done(self) -> None:
        """The run ended cleanly: the reaper exits without touching anything."""
        stdin = self.proc.stdin
        try:
            if stdin is not None:
                stdin.write(b"done\n")
                stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Reaped:
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """Containers left alone: their owner is alive, or another host's."""
    errors: list[str] = field(default_factory=list)


def _remove_run_objects(
    client: Any, filters: dict[str, Any], out: Reaped, owner_check: bool
) -> None:
    from edgeprof.owner import owner_gone

    for c in client.api.containers(all=True, filters=filters):
        labels = c.get("Labels") or {}
        name = (c.get("Names") or [c["Id"][:12]])[0].lstrip("/")
        if owner_check:
            try:
                owner = json.loads(labels.get(OWNER_LABEL) or "{}")
            except ValueError:
                owner = {}
            if owner_gone(owner) is not True:
                out.kept.append(name)
                continue
        try:
            client.api.remove_container(c["Id"], force=True, v=True)
            out.containers.append(name)
        except Exception as e:  # noqa: BLE001 - go on with the others
            out.errors.append(f"{name}: {e}")
    for n in client.api.networks(filters=filters):
        if owner_check:
            try:
                owner = json.loads((n.get("Labels") or {}).get(OWNER_LABEL) or "{}")
            except ValueError:
                owner = {}
            if owner_gone(owner) is not True:
                continue
        try:
            _detach_all(client, n["Id"])
            client.api.remove_network(n["Id"])
            out.networks.append(n.get("Name", n["Id"][:12]))
        except Exception as e:  # noqa: BLE001
            out.errors.append(f"network {n.get('Name')}: {e}")


def _detach_all(client: Any, network_id: str) -> None:
    """Disconnect whatever is still attached (a container without the run's labels, or
    one being removed), which would make removing the network fail."""
    try:
        attached = client.api.inspect_network(network_id).get("Containers") or {}
    except Exception:  # noqa: BLE001 - the removal will say what is wrong
        return
    for cid in attached:
        try:
            client.api.disconnect_container_from_network(cid, network_id, force=True)
        except Exception:  # noqa: BLE001
            pass


def reap_run(run_uid: str, run_id: int, dead_pid: int, db_url: str | None) -> Reaped:
    """Remove what run ``run_uid`` created and mark it crashed (the profiler died)."""
    out = Reaped()
    try:
        import docker

        client = docker.from_env(timeout=30)
        _remove_run_objects(client, {"label": [f"{RUN_UID_LABEL}={run_uid}"]}, out, False)
        client.close()
    except Exception as e:  # noqa: BLE001 - the database is still marked
        out.errors.append(f"engine: {e}")
    if db_url:
        _mark(db_url, run_id, dead_pid, out)
    return out


def _mark(db_url: str, run_id: int, dead_pid: int, out: Reaped) -> None:
    from edgeprof.store import open_store

    try:
        store = open_store(db_url)
    except Exception as e:  # noqa: BLE001
        out.errors.append(f"database: {e}")
        return
    try:
        mark_crashed(store, run_id, dead_pid, out, "the reaper")
    finally:
        store.close()


def mark_crashed(store: Any, run_id: int, dead_pid: Any, out: Reaped, who: str) -> None:
    """Mark a run whose profiler died ``crashed``, with an event saying what was removed."""
    from edgeprof.model import Event

    now = time.time_ns()
    if store.mark_crashed(run_id, now):
        out.runs.append(run_id)
        msg = (
            f"the profiler (pid {dead_pid}) ended without finishing the run; {who} removed "
            f"{len(out.containers)} container(s) and {len(out.networks)} network(s)"
        )
        data = {"pid": dead_pid, "containers": out.containers, "networks": out.networks}
        store.add_event(run_id, None, Event(now, "crashed", msg, None, data))


def cleanup(engine_client: Any, store: Any | None) -> Reaped:
    """Remove containers and networks whose owner is gone; mark their runs crashed."""
    from edgeprof.owner import owner_gone

    out = Reaped()
    if engine_client is not None:
        _remove_run_objects(engine_client, {"label": [RUN_UID_LABEL]}, out, True)
    if store is not None:
        for r in store.list_runs(limit=10_000):
            if r.status == "running" and owner_gone(r.owner) is True:
                mark_crashed(store, r.id, r.owner.get("pid"), out, "edgeprof cleanup")
    return out


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    run_uid, run_id, pid = argv[1], int(argv[2]), int(argv[3])
    work_dir = argv[4] if len(argv) > 4 else None
    try:
        said = sys.stdin.buffer.read()
    except OSError:
        said = b""
    if b"done" in said:
        return 0
    reap_run(run_uid, run_id, pid, os.environ.get(DB_ENV))
    if work_dir and os.path.basename(work_dir).startswith("edgeprof-run"):
        import shutil

        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
