"""``edgeprof summary RUN_ID``: per-target statistics of a stored run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading

NAME = "summary"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="per target: mean/p50/p95/p99/max of every metric, exit status, notes",
        description="Summarize a stored run: per target, mean/p50/p95/p99/max of every "
        "metric (counters: their total), exit status and the notes of the run.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    add_db(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: {run, targets: [{name, args, status, exit_code, oom_killed, "
        "duration_s, metrics: {name: {mean, min, p50, p95, p99, max, count, unit}}, events}]}",
    )
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.analyze.summary import summarize
    from edgeprof.owner import owner_gone

    store = open_for_reading(ns.db)
    s = summarize(store, ns.run_id)
    store.close()
    if ns.json:
        print(json.dumps(s.to_json(), indent=2))
        return 0
    from edgeprof.report.terminal import print_summary

    print_summary(s)
    if s.run.status == "running" and owner_gone(s.run.owner):
        print(
            f"note: run {s.run.id} is still marked running but its profiler is gone; "
            "'edgeprof cleanup' marks it crashed"
        )
    return 0
