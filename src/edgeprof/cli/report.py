"""``edgeprof report RUN_ID [RUN_ID …] -o report.html``: one self-contained HTML file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading

NAME = "report"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="one self-contained HTML report (charts, summary, events, logs) of stored runs",
        description="Write one self-contained HTML file that opens offline (no network "
        "request of any kind): run metadata, a summary table per target, interactive charts "
        "per metric group with the run's events on the time axis, the events and each "
        "container's log tail. With several runs, each chart shows the same target across "
        "them. Needs the report extra: pip install 'edgeprof[report]'.",
    )
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default="report.html",
        help="the HTML file to write (default: report.html)",
    )
    p.add_argument(
        "--target",
        metavar="T",
        help="only this target (a repeated target's base name selects all its repeats)",
    )
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.report.html import check_extra, write_report

    check_extra()  # before opening anything: a missing extra is one sentence
    store = open_for_reading(ns.db)
    try:
        res = write_report(store, ns.run_ids, ns.output, target=ns.target)
    finally:
        store.close()
    runs = ", ".join(str(r) for r in res.runs)
    print(
        f"wrote {res.path} ({res.size_bytes / 1024:,.0f} KiB; run {runs}; {res.charts} charts, "
        f"{res.shown_points:,} of {res.raw_samples:,} samples shown) in {res.seconds:.2f} s",
        file=sys.stderr,
    )
    return 0
