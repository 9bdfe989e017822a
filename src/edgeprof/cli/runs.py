"""``edgeprof runs``: the stored runs, newest first."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading, positive_int

NAME = "runs"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="list stored runs (failures counted, a run whose profiler died flagged)",
        description="List stored runs, newest first: id, spec, image, started, duration, "
        "targets and status (failed targets counted; a run whose profiler died is flagged).",
    )
    add_db(p)
    p.add_argument(
        "-n",
        "--limit",
        metavar="N",
        type=positive_int,
        default=50,
        help="show at most N runs (default 50)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.owner import owner_gone
    from edgeprof.report.terminal import make_console, runs_table

    store = open_for_reading(ns.db)
    url = store.url
    rows = store.list_runs(ns.limit)
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
            }
            for r in rows
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not rows:
        print(f"no runs stored in {url}")
        return 0
    make_console().print(runs_table(rows))
    for r in rows:
        if r.status == "running" and owner_gone(r.owner):
            print(
                f"note: run {r.id} is still marked running but its profiler (pid "
                f"{r.owner.get('pid')}) is gone; 'edgeprof cleanup' marks it crashed and "
                "removes any container it left"
            )
    return 0
