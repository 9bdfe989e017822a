"""``edgeprof export RUN_ID``: every sample of a run as CSV or JSON lines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading
from edgeprof.errors import UserError

NAME = "export"
FORMATS = ("csv", "jsonl")


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="every sample of a run as CSV or JSON lines",
        description="Export every sample of a run: run_id, target, metric, labels, unit, "
        "t_ns, value (one sample per row).",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument(
        "-f",
        "--format",
        metavar="FORMAT",
        choices=FORMATS,
        default="csv",
        help="csv (default) or jsonl",
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: standard output)"
    )
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.report.export import export_run

    store = open_for_reading(ns.db)
    try:
        if ns.output is None:
            export_run(store, ns.run_id, ns.format, sys.stdout)
            return 0
        try:
            fh = open(ns.output, "w", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise UserError(
                f"cannot write {ns.output}: {e.strerror}; pick another --output path"
            ) from None
        with fh:
            n = export_run(store, ns.run_id, ns.format, fh)
        print(f"wrote {n} samples to {ns.output}", file=sys.stderr)
        return 0
    finally:
        store.close()
