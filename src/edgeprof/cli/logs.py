"""``edgeprof logs RUN_ID [TARGET]``: the container logs stored with a run."""

from __future__ import annotations

import argparse
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading

NAME = "logs"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="print the container logs stored with a run",
        description="Print the container logs stored with a run (stdout and stderr, timestamped).",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument("target", metavar="TARGET", nargs="?", help="one target (default: every target)")
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.report.export import run_logs

    store = open_for_reading(ns.db)
    try:
        for name, stream, text in run_logs(store, ns.run_id, ns.target):
            print(f"==> {name} ({stream}) <==")
            print(text.rstrip("\n"))
    finally:
        store.close()
    return 0
