"""The ``edgeprof`` command line: thin commands over the library, one module each.

Built on the standard library's ``argparse``: a command line's help text and error format
are a contract users and tests rely on, and typer's releases changed both under us (its
0.29 vendored click and renamed every metavar to a Python type), so the parser is not a
moving dependency. Every command that touches stored runs takes ``--db URL`` (default:
``$EDGEPROF_DB``, else ``sqlite:///./edgeprof.db``). Errors a user can fix — a bad spec, a
bad option value, an unknown command — print one sentence (``edgeprof: error: …``) and
exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from edgeprof import __version__
from edgeprof.cli import (
    attach,
    check,
    cleanup,
    compare,
    export,
    flame,
    import_runs,
    logs,
    migrate,
    plot,
    recommend,
    report,
    run,
    runs,
    summary,
)
from edgeprof.cli.common import Parser, UsageError
from edgeprof.errors import UserError

MODULES = (
    run,
    runs,
    attach,
    summary,
    check,
    compare,
    recommend,
    report,
    export,
    flame,
    plot,
    logs,
    cleanup,
    migrate,
    import_runs,
)
COMMANDS = [m.NAME for m in MODULES]


def build_parser() -> Parser:
    p = Parser(
        prog="edgeprof",
        description="Profile containerized ML and edge apps: run targets from a profile spec, "
        "sample container, process, host, GPU and app metrics, store them and report.",
    )
    p.add_argument("--version", action="version", version=f"edgeprof {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    for m in MODULES:
        m.add(sub)
    return p


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _sigterm)
    args = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if not args:
            parser.print_help()
            sys.exit(2)
        ns = parser.parse_args(args)
        if not hasattr(ns, "func"):
            raise UsageError("no command given; see 'edgeprof --help'")
        rv = ns.func(ns)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    except UserError as e:
        print(f"edgeprof: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `edgeprof export 1 | head`: the reader has all it wanted
        # quiet: no traceback, and no second error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)  # as Python's documentation and rich (our tables) do on EPIPE
    sys.exit(rv if isinstance(rv, int) else 0)


__all__ = ["COMMANDS", "argparse", "build_parser", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
