"""``edgeprof export RUN_ID``: every sample of a run as CSV, JSON lines or Parquet, the run
as a Perfetto trace (metrics as counter tracks, sampled stacks as slices), or the whole run
into an edgeprof SQLite file (``--format sqlite``: what ``edgeprof import`` loads)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading
from edgeprof.errors import UserError

NAME = "export"
FORMATS = ("csv", "jsonl", "parquet", "perfetto", "sqlite")


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="every sample of a run as CSV, JSON lines or Parquet, a Perfetto trace, or "
        "the run as an edgeprof SQLite file",
        description="Export every sample of a run: run_id, target, metric, labels, unit, "
        "t_ns, value (one sample per row). Parquet keeps the types (t_ns int64, value "
        "float64, labels a map) and needs pyarrow: pip install 'edgeprof[parquet]'.\n\n"
        "perfetto: one Chrome/Perfetto trace (JSON) to open in https://ui.perfetto.dev: "
        "every metric series as a counter track of its target, the stacks sampled from the "
        "target's processes (profiling.code) as slices on the same timeline (microseconds "
        "from the run's start), the run's events as instants.\n\n"
        "sqlite: the whole run (targets, samples, events, logs, stacks; same UUID and "
        "metadata) into an edgeprof SQLite file, new or existing (-o is required), as "
        "'edgeprof import' loads it elsewhere; a run the file already holds is not written "
        "twice.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument(
        "-f",
        "--format",
        metavar="FORMAT",
        choices=FORMATS,
        default="csv",
        help="csv (default), jsonl, parquet, perfetto or sqlite",
    )
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: standard output)"
    )
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.report.export import _pyarrow, export_parquet, export_run

    if ns.format == "sqlite":
        return _sqlite(ns)
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


def _sqlite(ns: argparse.Namespace) -> int:
    import os
    import sqlite3

    from edgeprof.store import open_store
    from edgeprof.store.transfer import copy_run

    if not ns.output:
        raise UserError("--format sqlite writes a database file; give it with -o FILE.db")
    out = ns.output
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise UserError(
            f"cannot write {out}: folder {folder} does not exist; create it or pick another -o path"
        )
    if os.path.isdir(out):
        raise UserError(
            f"{out} is a folder; give a file path with -o, e.g. -o {os.path.join(out, 'run.db')}"
        )
    if os.path.exists(out) and os.path.getsize(out) > 0:
        try:  # never turn someone else's SQLite file into an edgeprof database
            with open(out, "rb") as fh:
                is_sqlite = fh.read(16) == b"SQLite format 3\x00"
            if not is_sqlite:
                raise UserError(f"{out} exists and is not a SQLite file; pick another -o path")
            c = sqlite3.connect(f"file:{os.path.abspath(out)}?mode=ro", uri=True)
            try:
                names = {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
            finally:
                c.close()
        except sqlite3.DatabaseError as e:
            raise UserError(f"{out} cannot be read as SQLite ({e}); pick another -o path") from None
        if names and "schema_version" not in names:
            raise UserError(
                f"{out} is a SQLite file but not an edgeprof database; pick another -o path"
            )
    src = open_for_reading(ns.db)
    try:
        run = src.resolve_run(ns.run_id)
        dst = open_store("sqlite:///" + os.path.abspath(out))
        try:
            res = copy_run(src, run.id, dst)
        finally:
            dst.close()
    finally:
        src.close()
    short = res.uuid[:8] + "…"
    if res.action == "skipped":
        print(
            f"{out} already holds run {run.id} (uuid {short}) as run {res.dst_run_id}; "
            "nothing written",
            file=sys.stderr,
        )
        return 0
    if res.partial:  # as 'import' says of such a run: the copy is marked crashed
        from edgeprof.report.terminal import fmt_time as fmt_ns

        print(
            f"edgeprof: warning: run {run.id} is still running (or its profiler died): {out} "
            f"holds what it had so far ({res.samples:,} samples, last at "
            f"{fmt_ns(res.last_ns)}), marked crashed; export it again to the same file once "
            "the run has ended to replace it",
            file=sys.stderr,
        )
    verb = "replaced the partial copy of" if res.action == "replaced" else "wrote"
    print(
        f"{verb} run {run.id} (uuid {short}, {res.spec_name}, {res.targets} "
        f"target{'s' if res.targets != 1 else ''}, "
        f"{res.samples:,} samples) to {out} (run {res.dst_run_id} there) in {res.seconds:.2f} s",
        file=sys.stderr,
    )
    return 0
