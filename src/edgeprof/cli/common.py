"""What every command shares: the parser class, ``--db``, opening the store."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

from edgeprof.errors import UserError
from edgeprof.store import DEFAULT_DB

DB_HELP = (
    "database URL: sqlite:///path.db (relative) or sqlite:////abs/path.db, or "
    "postgresql://user@host/db (default: $EDGEPROF_DB, else sqlite:///./edgeprof.db)"
)


class UsageError(UserError):
    """A command line that cannot be parsed (unknown option, missing argument, bad value)."""


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one ``edgeprof: error:`` sentence (exit 2)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kw)

    def error(self, message: str) -> Any:
        message = message.removeprefix("argument ")
        if message.startswith("the following arguments are required: "):
            missing = message.split(": ", 1)[1]
            message = f"{missing} {'is' if ',' not in missing else 'are'} missing"
        elif message.startswith("COMMAND: invalid choice: "):
            bad = message.split("invalid choice: ", 1)[1].split(" (", 1)[0]
            choices = message.split("(choose from ", 1)[-1].rstrip(")").replace("'", "")
            message = f"no command {bad} (commands: {choices})"
        raise UsageError(f"{message.rstrip('.')}; see '{self.prog} --help'")


class _Formatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own (blank lines kept)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=min(100, _columns()))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(
            super(_Formatter, self)._fill_text(par, width, indent) for par in text.split("\n\n")
        )


def _columns() -> int:
    try:
        return int(os.environ.get("COLUMNS") or os.get_terminal_size(sys.stdout.fileno()).columns)
    except (OSError, ValueError):
        return 100


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="URL", help=DB_HELP)


def add_live_options(p: argparse.ArgumentParser, while_: str, elsewhere: str) -> None:
    """``-q/--quiet`` and ``--prometheus ADDR``, as ``run`` and ``attach`` share them."""
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no live display (on a terminal: a table of every container, 's' changes its "
        f"sort; elsewhere: {elsewhere})",
    )
    p.add_argument(
        "--prometheus",
        metavar="ADDR",
        help=f"while {while_}, serve current values at http://ADDR/metrics for Prometheus "
        "(cAdvisor's and DCGM exporter's names): PORT (on 127.0.0.1), HOST, HOST:PORT or "
        "[IPv6]:PORT (default port 9464); 0.0.0.0:PORT to listen on every interface",
    )


def add_tags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tag",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a free key=value stored with the run (repeatable; key of letters, digits, '_', "
        "'.', '-'), shown by 'summary' and matched by 'runs --tag KEY=VALUE'",
    )


def positive_interval(text: str) -> float:
    from edgeprof.spec import MIN_INTERVAL_S

    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v >= MIN_INTERVAL_S:
        raise argparse.ArgumentTypeError(
            f"{text} s is below the shortest interval, {MIN_INTERVAL_S} s; pass a larger number"
        )
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def db_url(db: str | None) -> str:
    return db or os.environ.get("EDGEPROF_DB") or DEFAULT_DB


def open_for_reading(db: str | None) -> Any:
    """The store, opened without ever writing to it (a missing database is an error)."""
    from edgeprof.store import open_store

    store = open_store(db_url(db), readonly=True)
    if store.warning:
        print(f"edgeprof: warning: {store.warning}", file=sys.stderr)
    return store


class MigrationProgress:
    """Shows a migration that moves data: a bar on a terminal, a line per tenth elsewhere;
    nothing for small databases."""

    MIN_SAMPLES = 100_000

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._tenth = -1

    def __call__(self, done: int, total: int) -> None:
        if total < self.MIN_SAMPLES:
            return
        if sys.stderr.isatty():
            if self._bar is None:
                from rich.progress import Progress

                self._bar = Progress(transient=False)
                self._bar.start()
                self._task = self._bar.add_task("migrating samples to chunks", total=total)
            self._bar.update(self._task, completed=done)
            if done >= total:
                self._bar.stop()
            return
        tenth = done * 10 // total
        if tenth > self._tenth:
            self._tenth = tenth
            print(
                f"edgeprof: migrating samples to chunks: {tenth * 10} % ({done:,} of {total:,})",
                file=sys.stderr,
            )


def open_for_writing(db: str | None) -> Any:
    """The store, created or migrated (with a progress display when that moves much data)."""
    from edgeprof.store import open_store

    return open_store(db_url(db), progress=MigrationProgress())


def warn_unfinished(run_id: int, status: str) -> None:
    """Verdicts on a run still marked ``running`` are on partial data: say so (stderr)."""
    if status == "running":
        print(
            f"edgeprof: warning: run {run_id} is still running (or its profiler died: "
            "'edgeprof cleanup' marks it crashed); these verdicts use the samples stored so far",
            file=sys.stderr,
        )


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between two collections of the young generation while sampling (Python's
default: 700); the older generations keep their defaults."""


def settle_gc() -> None:
    """Before sampling: collect once, then leave everything alive so far (modules, classes,
    the engine's client, the spec) out of later garbage collections (``gc.freeze``), and
    collect the young generation less often (:data:`GC_YOUNG_THRESHOLD`).

    A sampling process allocates thousands of short-lived tuples a second (samples; almost
    none in reference cycles), so the collector ran at every tick, and each full collection
    walked every object of every imported library. Attached to 30 containers at 10 Hz
    (profiler ~5 % of a core), the freeze saved about 0.7 % of a core and the threshold
    about 0.2 % more. Cycles are still collected: young ones after 20,000 allocations (a
    few seconds), older ones by the older generations' default schedule (ten and a hundred
    times that), each cheap once the start-up objects are frozen. Called by the commands
    that sample (``run``, ``attach``; the process ends with them), not by the library: a
    process that embeds edgeprof keeps its own collector settings."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def summary_unavailable(
    run_id: int, e: Exception, junit: str | None, failed: list[str] | None = None
) -> int:
    """The run finished but its database is unreachable: its summary and budgets cannot be
    computed. Exit 2 (the environment failed, as for an unreachable engine: the verdict is
    unknown, neither a pass nor a target's failure); the JUnit file gets one error case so
    that CI shows why."""
    print(
        f"edgeprof: error: run {run_id} finished, but its summary and budgets cannot be "
        f"computed: {e}; once the database is back (and a spool file named above is "
        "imported), 'edgeprof report' and 'edgeprof check' give them",
        file=sys.stderr,
    )
    if failed:
        print(f"failed targets: {', '.join(failed)}", file=sys.stderr)
    if junit:
        from edgeprof.report.junit import JUnitCase, JUnitSuite, write_junit

        case = JUnitCase("summary and budgets", "error", str(e), kind="database")
        write_junit(junit, [JUnitSuite(f"run {run_id}", [case])])
    return 2
