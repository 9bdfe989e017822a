"""``edgeprof import FILE.db …``: load the runs of edgeprof SQLite files (a device's
``run.db``, a spool written while PostgreSQL was unreachable) into a database."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from edgeprof.cli.common import add_db, open_for_writing

NAME = "import"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="load the runs of edgeprof SQLite files into a database (e.g. PostgreSQL)",
        description="Load every run of edgeprof SQLite files (written with 'edgeprof run "
        "--db sqlite:///run.db' on a device, archived by CI) into the database --db names, "
        "e.g. a shared PostgreSQL. Idempotent: a run has a UUID, and a run already there is "
        "skipped, except that a complete copy replaces a partial one (running, crashed, "
        "interrupted) and a spool file (written when PostgreSQL stayed unreachable during "
        "a run) is merged into the run it belongs to, once. Files of older edgeprof versions "
        "are migrated on the way (a temporary copy; the file is never written). A run that "
        "was never finished (the device lost power, the profiler was killed) is imported up "
        "to its last complete batch and marked crashed, with a warning.\n\n"
        "Exit status 2 when a file cannot be read (not an edgeprof database, truncated): "
        "the other files are still imported.",
    )
    p.add_argument("files", metavar="FILE.db", nargs="+", help="edgeprof SQLite files")
    add_db(p)
    p.add_argument("--json", action="store_true", help="one JSON object (results, totals)")
    p.set_defaults(func=main)


def _line(r: Any) -> str:
    short = r.uuid[:8] + "…"
    what = f"{r.spec_name}, {r.targets} target{'s' if r.targets != 1 else ''}"
    if r.action == "added":
        return f"added run {r.dst_run_id} (uuid {short}, {what}, {r.samples:,} samples)"
    if r.action == "skipped":
        return f"skipped run {short} ({r.spec_name}) from {r.source}: {r.note}"
    if r.action == "merged":
        return (
            f"merged spool {short} ({r.spec_name}) into run {r.dst_run_id}: {r.samples:,} "
            f"samples added, status {r.status}" + (f"; {r.note}" if r.note else "")
        )
    return f"replaced partial run {r.dst_run_id} (uuid {short}, {what}, {r.samples:,} samples): {r.note}"


def main(ns: argparse.Namespace) -> int:
    from edgeprof.errors import UserError
    from edgeprof.store.transfer import file_version, import_files

    failed: list[str] = []
    warned: list[str] = []

    def warn(text: str) -> None:
        warned.append(text)
        print(f"edgeprof: warning: {text}", file=sys.stderr)

    def error(text: str) -> None:
        failed.append(text)
        print(f"edgeprof: error: {text}", file=sys.stderr)

    def report(r: Any) -> None:
        if not ns.json:
            print(_line(r), flush=True)

    # files that cannot be read are said before the database is opened (or created)
    readable = []
    for path in ns.files:
        try:
            file_version(path)
            readable.append(path)
        except UserError as e:
            error(str(e))
    if not readable:
        return 2
    store = open_for_writing(ns.db)
    t0 = time.perf_counter()
    try:
        results = import_files(readable, store, warn=warn, error=error, report=report)
    finally:
        store.close()
    wall = time.perf_counter() - t0
    moved = sum(r.samples for r in results)
    counts = {
        a: sum(r.action == a for r in results) for a in ("added", "merged", "replaced", "skipped")
    }
    rate = moved / wall if wall > 0 else 0.0
    if ns.json:
        print(
            json.dumps(
                {
                    "runs": [r.as_dict() for r in results],
                    "samples": moved,
                    "seconds": round(wall, 3),
                    "samples_per_s": round(rate),
                    **counts,
                    "warnings": warned,
                    "errors": failed,
                },
                indent=1,
            )
        )
    else:
        parts = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
        print(
            f"{len(results)} run{'s' if len(results) != 1 else ''} from {len(ns.files) - len(failed)}"
            f" file{'s' if len(ns.files) - len(failed) != 1 else ''} ({parts or 'none'}):"
            f" {moved:,} samples in {wall:.2f} s ({rate:,.0f} samples/s)"
            + (f"; {len(failed)} file{'s' if len(failed) != 1 else ''} failed" if failed else "")
        )
    return 2 if failed else 0
