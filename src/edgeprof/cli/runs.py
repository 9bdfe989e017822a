"""``edgeprof runs``: the stored runs, newest first."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading, positive_int

NAME = "runs"


def add_filters(p: argparse.ArgumentParser) -> None:
    """``--where``, ``--tag`` and ``--since`` (as ``runs`` and ``compare --latest`` take them)."""
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only runs whose KEY equals VALUE (KEY~VALUE: contains it, any case); keys: "
        "spec, image, status, uuid, device.<name>, ci.<name>, tag.<name> (repeatable: all "
        "must hold)",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="only runs tagged NAME=VALUE (as 'run --tag' set it; repeatable)",
    )
    p.add_argument(
        "--since",
        metavar="AGE|DATE",
        help="only runs started since then: an age (90s, 30m, 12h, 7d, 2w) or an ISO date "
        "or time (2026-11-20, 2026-11-20T10:00, local time)",
    )


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="list stored runs (failures counted, a run whose profiler died flagged)",
        description="List stored runs, newest first: id, spec, image, started, duration, "
        "targets and status (failed targets counted; a run whose profiler died is flagged); "
        "the device's model and the run's tags when any run listed has them.\n\n"
        "Filters (all must hold): --where KEY=VALUE (equals) or KEY~VALUE (contains, any "
        "case) on the run's metadata: spec, image, status, uuid, device.hostname, "
        "device.model, device.cpu_model, device.gpu_model, device.l4t, … ci.commit, "
        "ci.branch, ci.build_url, ci.build_tag, ci.job_name, ci.node_name, … tag.NAME; "
        "--tag NAME=VALUE; --since 7d or 2026-11-20. E.g. "
        "'edgeprof runs --where device.model~Orin --where ci.branch=main --since 7d'.",
    )
    add_db(p)
    p.add_argument(
        "-n",
        "--limit",
        metavar="N",
        type=positive_int,
        default=50,
        help="show at most N runs (default 50): the newest N that match the filters",
    )
    add_filters(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.farm.where import conditions, parse_since, select_runs
    from edgeprof.owner import owner_gone
    from edgeprof.report.terminal import make_console, runs_table

    conds = conditions(ns.where, ns.tag)
    since = parse_since(ns.since) if ns.since is not None else None
    store = open_for_reading(ns.db)
    url = store.url
    try:
        rows = select_runs(store, conds, since, ns.limit)
    finally:
        store.close()
    if ns.json:
        out = [
            {
                "id": r.id,
                "spec_name": r.spec_name,
                "image": r.image,
                "started_ns": r.started_ns,
                "ended_ns": r.ended_ns,
                "status": r.status,
                "targets": r.targets,
                "failed_targets": r.failed_targets,
                "services": r.services,
                "duration_s": r.duration_s,
                "owner_gone": r.status == "running" and owner_gone(r.owner) is True,
                "uuid": r.uuid,
                "meta": r.meta,
            }
            for r in rows
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not rows:
        if conds or since is not None:
            print(f"no runs in {url} match the filters")
        else:
            print(f"no runs stored in {url}")
        return 0
    con = make_console()
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0 and not sys.stdout.isatty():
        # an explicit width for a pipe or a log (a terminal's own width is used anyway)
        from rich.console import Console

        con = Console(width=int(cols))
    con.print(runs_table(rows, con.width))
    for r in rows:
        if r.status == "running" and owner_gone(r.owner):
            print(
                f"note: run {r.id} is still marked running but its profiler (pid "
                f"{r.owner.get('pid')}) is gone; 'edgeprof cleanup' marks it crashed and "
                "removes any container it left"
            )
    return 0
