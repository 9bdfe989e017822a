"""The ``edgeprof`` command line: thin commands over the library.

Every command that touches stored runs takes ``--db URL`` (default: ``$EDGEPROF_DB``, else
``sqlite:///./edgeprof.db``). Errors a user can fix print one sentence and exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from edgeprof import __version__
from edgeprof.errors import UserError

app = typer.Typer(
    name="edgeprof",
    help="Profile containerized ML and edge apps: run targets from a profile spec, sample "
    "container, process, host, GPU and app metrics, store them and report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DB_HELP = "Database URL: sqlite:///path.db or postgresql://user@host/db (default: $EDGEPROF_DB, else sqlite:///./edgeprof.db)."


def _db_url(db: str | None) -> str:
    from edgeprof.store import DEFAULT_DB

    return db or os.environ.get("EDGEPROF_DB") or DEFAULT_DB


def _open(db: str | None) -> Any:
    from edgeprof.store import open_store

    return open_store(_db_url(db))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeprof {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """edgeprof: a profiler for containerized ML and edge apps."""


@app.command()
def run(
    spec: Path = typer.Argument(
        ..., help="Profile spec (Waggle sage.yaml with a profiling: section)."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    interval: float | None = typer.Option(
        None,
        "--interval",
        "-i",
        min=0.01,
        help="Sampling interval in seconds (default: profiling.interval, else 1).",
    ),
    target: list[str] | None = typer.Option(
        None, "--target", "-t", help="Run only this target (repeatable)."
    ),
    stats_source: str = typer.Option(
        "auto",
        "--stats-source",
        help="Container metrics from 'cgroup' files, the 'engine-api' (1 s), or 'auto'.",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print the summary as JSON instead of tables."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live progress display."),
) -> None:
    """Run every target of SPEC in a fresh container, sample it, store it, print a summary.

    Exit code 0 when every target ran (exited, or stopped at its timeout); 1 when a target
    failed (non-zero exit, OOM kill, could not start); 2 for a bad spec or environment;
    130 when interrupted (Ctrl-C or SIGTERM), with everything up to then stored.
    """
    from edgeprof.analyze.summary import summarize
    from edgeprof.cli.progress import make_progress
    from edgeprof.engine.docker import DockerEngine
    from edgeprof.report.terminal import print_summary
    from edgeprof.runner import RunOptions, run_profile
    from edgeprof.spec import load_spec

    if stats_source not in ("auto", "cgroup", "engine-api"):
        raise UserError(f"--stats-source {stats_source!r} is not one of auto, cgroup, engine-api")
    loaded = load_spec(spec)
    store = _open(db)
    engine = DockerEngine()
    ui = make_progress(quiet=quiet or json_out)
    opts = RunOptions(interval_s=interval, stats_source=stats_source, only_targets=target or None)
    try:
        with ui:
            result = run_profile(loaded, store, engine, opts, ui)
    except KeyboardInterrupt:
        run_id = getattr(ui, "run_id", None)
        typer.echo(
            f"interrupted: run {run_id} stored as interrupted" if run_id else "interrupted",
            err=True,
        )
        store.close()
        raise typer.Exit(130) from None
    finally:
        engine.close()
    summary = summarize(store, result.run_id)
    store.close()
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
        typer.echo(f"run id: {result.run_id}")
    if result.failed:
        names = ", ".join(f"{t.name} ({t.status})" for t in result.failed)
        typer.echo(f"failed targets: {names}", err=True)
        raise typer.Exit(1)


@app.command()
def runs(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    limit: int = typer.Option(
        50, "--limit", "-n", min=1, help="Show at most this many runs, newest first."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List stored runs (id, spec name, image, started, targets, status)."""
    from edgeprof.report.terminal import make_console, runs_table

    store = _open(db)
    rows = store.list_runs(limit)
    store.close()
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo(f"no runs stored in {_db_url(db)}")
    else:
        make_console().print(runs_table(rows))


@app.command()
def summary(
    run_id: str = typer.Argument(..., help="Run id, or 'latest'."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    json_out: bool = typer.Option(
        False,
        "--json",
        help="Print JSON: {run, targets: [{name, args, exit_code, "
        "oom_killed, duration_s, metrics: {name: {mean,min,p50,p95,p99,max,count}}}]}.",
    ),
) -> None:
    """Summarize a stored run: per target, mean/p50/p95/p99/max of every metric."""
    from edgeprof.analyze.summary import summarize
    from edgeprof.report.terminal import print_summary

    store = _open(db)
    s = summarize(store, run_id)
    store.close()
    if json_out:
        typer.echo(json.dumps(s, indent=2))
    else:
        print_summary(s)


@app.command()
def export(
    run_id: str = typer.Argument(..., help="Run id, or 'latest'."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or jsonl."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file (default: stdout)."
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Export every sample of a run (run_id, target, metric, labels, unit, t_ns, value)."""
    from edgeprof.report.export import FORMATS, export_run

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not supported; choose {' or '.join(FORMATS)}")
    store = _open(db)
    try:
        if output is None:
            export_run(store, run_id, fmt, sys.stdout)
        else:
            try:
                fh = open(output, "w", newline="", encoding="utf-8")  # noqa: SIM115
            except OSError as e:
                raise UserError(
                    f"cannot write {output}: {e.strerror}; pick another --output path"
                ) from None
            with fh:
                n = export_run(store, run_id, fmt, fh)
            typer.echo(f"wrote {n} samples to {output}", err=True)
    finally:
        store.close()


@app.command()
def logs(
    run_id: str = typer.Argument(..., help="Run id, or 'latest'."),
    target: str | None = typer.Argument(None, help="Target name (default: every target)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Print the container logs stored with a run (stdout and stderr, timestamped)."""
    from edgeprof.report.export import run_logs

    store = _open(db)
    try:
        for name, stream, text in run_logs(store, run_id, target):
            typer.echo(f"==> {name} ({stream}) <==")
            typer.echo(text.rstrip("\n"))
    finally:
        store.close()


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        rv = app(args=argv, standalone_mode=False)
    except UserError as e:
        typer.echo(f"edgeprof: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click's usage errors
        import click

        # Newer typer vendors click as ``typer._click``: its usage errors are not click's.
        usage_errors: tuple[type[Exception], ...] = (click.ClickException,)
        try:
            from typer._click import exceptions as _typer_click

            usage_errors += (_typer_click.ClickException,)
        except ImportError:  # older typer uses click itself
            pass
        if isinstance(e, click.exceptions.Abort | typer.Abort):
            sys.exit(130)
        if isinstance(e, usage_errors):
            e.show()  # type: ignore[attr-defined]
            sys.exit(2)
        raise
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
