"""``edgeprof export RUN_ID``: every sample of a run as CSV, JSON lines or Parquet, or the run
as a Perfetto trace (metrics as counter tracks, sampled stacks as slices)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading
from edgeprof.errors import UserError

NAME = "export"
FORMATS = ("csv", "jsonl", "parquet", "perfetto")


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="every sample of a run as CSV, JSON lines or Parquet, or a Perfetto trace",
        description="Export every sample of a run: run_id, target, metric, labels, unit, "
        "t_ns, value (one sample per row). Parquet keeps the types (t_ns int64, value "
        "float64, labels a map) and needs pyarrow: pip install 'edgeprof[parquet]'.\n\n"
        "perfetto: one Chrome/Perfetto trace (JSON) to open in https://ui.perfetto.dev: "
        "every metric series as a counter track of its target, the stacks sampled from the "
        "target's processes (profiling.code) as slices on the same timeline (microseconds "
        "from the run's start), the run's events as instants.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument(
        "-f",
        "--format",
        metavar="FORMAT",
        choices=FORMATS,
        default="csv",
        help="csv (default), jsonl, parquet or perfetto",
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: standard output)"
    )
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.report.export import _pyarrow, export_parquet, export_run

    binary = ns.format == "parquet"
    if binary:
        _pyarrow()  # a missing extra is said before anything is read or written
        if ns.output is None and sys.stdout.isatty():
            raise UserError("Parquet is binary; give an output file with -o FILE.parquet")
    store = open_for_reading(ns.db)
    try:
        if ns.format == "perfetto":
            return _perfetto(store, ns)
        if ns.output is None:
            if binary:
                export_parquet(store, ns.run_id, sys.stdout.buffer)
            else:
                export_run(store, ns.run_id, ns.format, sys.stdout)
            return 0
        try:
            if binary:
                fh: Any = open(ns.output, "wb")  # noqa: SIM115
            else:
                fh = open(ns.output, "w", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise UserError(
                f"cannot write {ns.output}: {e.strerror}; pick another --output path"
            ) from None
        with fh:
            if binary:
                n = export_parquet(store, ns.run_id, fh)
            else:
                n = export_run(store, ns.run_id, ns.format, fh)
        print(f"wrote {n} samples to {ns.output}", file=sys.stderr)
        return 0
    finally:
        store.close()


def _perfetto(store: Any, ns: argparse.Namespace) -> int:
    from edgeprof.report.perfetto import export_perfetto

    if ns.output is None:
        export_perfetto(store, ns.run_id, sys.stdout)
        return 0
    try:
        fh = open(ns.output, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as e:
        raise UserError(
            f"cannot write {ns.output}: {e.strerror}; pick another --output path"
        ) from None
    with fh:
        r = export_perfetto(store, ns.run_id, fh)
    print(
        f"wrote {r.events} trace events ({r.counters} counter values, {r.slices} stack "
        f"slices) to {ns.output}; open it in https://ui.perfetto.dev",
        file=sys.stderr,
    )
    return 0
