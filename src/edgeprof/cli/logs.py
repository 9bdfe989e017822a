"""``edgeprof logs RUN_ID [TARGET] [--service NAME [--target T]]``: the container logs
stored with a run (a target's, or a service's)."""

from __future__ import annotations

import argparse
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading
from edgeprof.errors import UserError
from edgeprof.store.base import Store

NAME = "logs"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="print the container logs stored with a run",
        description="Print the container logs stored with a run (stdout and stderr, "
        "timestamped): every target's, one target's, or with --service a service's (for "
        "every target it served, or the one named by --target).",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument("target", metavar="TARGET", nargs="?", help="one target (default: every target)")
    p.add_argument(
        "--service",
        metavar="NAME",
        help="the logs of this service (profiling.services or a target's services)",
    )
    p.add_argument(
        "--target",
        dest="for_target",
        metavar="T",
        help="with --service: only the service that served this target (a repeated "
        "target's name: every repeat) or scenario",
    )
    add_db(p)
    p.set_defaults(func=main)


def service_logs(
    store: Store, run_ref: str | int, service: str, for_target: str | None = None
) -> list[tuple[str, str, str]]:
    """``(row name, stream, text)`` of a service's stored logs, in target order: every
    instance of it (one per target it served, or the run's), or those serving
    ``for_target`` (a target's or scenario's name; a repeated target's name without
    ``#N`` names every repeat)."""
    run_id = store.resolve_run(run_ref).id
    rows = [
        t
        for t in store.targets(run_id)
        if (t.config or {}).get("role") == "service" and (t.config or {}).get("service") == service
    ]
    if not rows:
        names = sorted(
            {
                str(t.config.get("service"))
                for t in store.targets(run_id)
                if (t.config or {}).get("role") == "service"
            }
        )
        raise UserError(
            f"run {run_id} has no service named {service!r}; "
            + (f"its services are: {', '.join(names)}" if names else "it ran no services")
        )
    if for_target is not None:  # a repeated target's name stands for each repeat (a#1, a#2…)
        chosen = [
            t
            for t in rows
            if t.config.get("for") is None
            or t.config.get("for") == for_target
            or ("#" not in for_target and str(t.config.get("for")).split("#")[0] == for_target)
        ]
        if not chosen:
            served = ", ".join(sorted(str(t.config.get("for")) for t in rows))
            raise UserError(
                f"service {service!r} of run {run_id} did not serve {for_target!r}; "
                f"it served: {served}"
            )
        rows = chosen
    out = []
    for t in rows:
        for stream, text in sorted(store.logs(t.id).items(), reverse=True):
            out.append((t.name, stream, text))
    return out


def main(ns: argparse.Namespace) -> int:
    from edgeprof.report.export import run_logs

    if ns.for_target is not None and ns.service is None:
        raise UserError(
            "--target goes with --service NAME; for a target's own logs give it as TARGET"
        )
    store = open_for_reading(ns.db)
    try:
        if ns.service is not None:
            found = service_logs(store, ns.run_id, ns.service, ns.for_target or ns.target)
        else:
            found = run_logs(store, ns.run_id, ns.target)
        for name, stream, text in found:
            print(f"==> {name} ({stream}) <==")
            print(text.rstrip("\n"))
    finally:
        store.close()
    return 0
