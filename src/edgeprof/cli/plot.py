"""``edgeprof plot RUN_ID --metric M -o chart.png``: a static chart for papers and READMEs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading

NAME = "plot"


def _size(text: str) -> tuple[float, float]:
    try:
        w, h = (float(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not WIDTHxHEIGHT in inches, e.g. 8x4"
        ) from None
    if not (0 < w <= 100 and 0 < h <= 100):
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be 0–100 inches")
    return w, h


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="draw metrics of a run to a PNG, SVG or PDF file (needs edgeprof[plot])",
        description="Draw one panel per --metric (every target of the run, or those given "
        "with --target), x in seconds since each target started, CPU and memory with their "
        "limits. The format follows the -o file name: .png, .svg or .pdf. Needs matplotlib: "
        "pip install 'edgeprof[plot]'.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument(
        "-m",
        "--metric",
        metavar="METRIC",
        action="append",
        required=True,
        help="metric name as 'summary' prints it, e.g. cpu.percent (repeatable)",
    )
    p.add_argument(
        "-t", "--target", metavar="NAME", action="append", help="only this target (repeatable)"
    )
    p.add_argument("-o", "--output", metavar="FILE", required=True, help="chart.png|svg|pdf")
    p.add_argument("--title", metavar="TITLE", help="figure title (default: run, spec, image)")
    p.add_argument("--size", metavar="WxH", type=_size, help="figure size in inches, e.g. 8x4")
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.report.plot import plot_run

    store = open_for_reading(ns.db)
    try:
        panels = plot_run(
            store, ns.run_id, ns.metric, ns.output, ns.target, title=ns.title, size=ns.size
        )
    finally:
        store.close()
    print(f"wrote {ns.output}: " + "; ".join(panels), file=sys.stderr)
    return 0
