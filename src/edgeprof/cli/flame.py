"""``edgeprof flame RUN_ID -o FILE``: a target's stacks as a flame graph or speedscope JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading

NAME = "flame"


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a time from the target's start")
    return v


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="a target's sampled stacks as a flame graph (SVG, HTML) or speedscope JSON",
        description="Draw the stacks sampled from a target's processes (profiling.code) as "
        "a flame graph: self-contained, searchable (regular expressions; the matched share "
        "is shown), click a box to zoom. The format follows the output name: .svg, .html, or "
        ".json for speedscope (https://www.speedscope.app: open the file there).\n\n"
        "--from/--to pick a phase of the run: seconds from the target's start. Stacks are "
        "stored per window of about 1 s, so every window that overlaps [from, to) is drawn "
        "whole; the title gives the span they cover.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        required=True,
        help="flame.svg, flame.html or profile.speedscope.json",
    )
    p.add_argument(
        "--target",
        metavar="NAME",
        help="the target (default: the only one with stacks; a repeat by its full name, base#2)",
    )
    p.add_argument(
        "--from",
        dest="from_s",
        metavar="S",
        type=_seconds,
        help="from S seconds after the target's start",
    )
    p.add_argument(
        "--to", dest="to_s", metavar="S", type=_seconds, help="up to S seconds after its start"
    )
    p.add_argument(
        "--kind",
        choices=("python", "native"),
        metavar="KIND",
        help="python (py-spy) or native (perf) stacks only (default: both)",
    )
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.codeprof.flame import check_output, select, write_flame

    check_output(ns.output)
    store = open_for_reading(ns.db)
    try:
        sel = select(store, ns.run_id, ns.target, ns.from_s, ns.to_s, ns.kind)
    finally:
        store.close()
    what = write_flame(sel, ns.output)
    print(f"wrote the {what} of {sel.title()} to {ns.output}", file=sys.stderr)
    return 0
