"""``edgeprof run SPEC``: profile every target of a spec, print the summary."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgeprof.cli.check import add_junit, check_junit_path
from edgeprof.cli.check import report as report_budgets
from edgeprof.cli.common import (
    add_db,
    add_live_options,
    add_tags,
    db_url,
    open_for_writing,
    positive_interval,
    settle_gc,
    summary_unavailable,
)
from edgeprof.errors import StoreUnavailable

NAME = "run"


STATS_SOURCES = ("auto", "cgroup", "engine-api")


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="run every target of a spec in a fresh container, sample, store, summarize",
        description="Run every target of SPEC in a fresh container, sample it, store it and "
        "print a summary (services start before the targets that need them, on a private "
        "network, and are removed after; scenarios run their targets together, after the "
        "alone runs); then check the spec's budgets (profiling.budgets, and each "
        "target's) and print each with its measured value and verdict.\n\nExit code 0 when "
        "every target ran (exited, or stopped at its timeout) and every budget passed; 1 when "
        "a target failed (non-zero exit, OOM kill, could not start) or a budget failed (or "
        "had no data); 2 for a bad spec (budgets included) or environment; 130 when "
        "interrupted (Ctrl-C or SIGTERM), with everything up to then stored.",
    )
    p.add_argument(
        "spec", metavar="SPEC", help="profile spec (a Waggle sage.yaml with a profiling: section)"
    )
    add_db(p)
    p.add_argument(
        "-i",
        "--interval",
        metavar="SECONDS",
        type=positive_interval,
        help="sampling interval in seconds, at least 0.01 (default: profiling.interval, else 1)",
    )
    p.add_argument(
        "-t",
        "--target",
        metavar="NAME",
        action="append",
        help="run only this target (repeatable); a matrix target's name selects all its "
        "expansions; a scenario runs when all its targets are selected, and naming a scenario "
        "selects its targets",
    )
    p.add_argument(
        "--stats-source",
        metavar="SOURCE",
        choices=STATS_SOURCES,
        default="auto",
        help="container metrics from 'cgroup' files, the 'engine-api' (1 s resolution), or 'auto' (default)",
    )
    p.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of tables"
    )
    add_tags(p)
    add_live_options(p, "running", "a line per target")
    add_junit(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.analyze.budgets import evaluate_run
    from edgeprof.analyze.summary import summarize
    from edgeprof.cli.progress import make_progress
    from edgeprof.cli.summary import print_text
    from edgeprof.engine.docker import DockerEngine
    from edgeprof.farm.meta import parse_tags
    from edgeprof.prometheus import serve_prometheus
    from edgeprof.runner import RunSettings, run_profile
    from edgeprof.signals import DeferSignals
    from edgeprof.spec import load_spec
    from edgeprof.store import absolute_url

    tags = parse_tags(ns.tag)
    loaded = load_spec(ns.spec)
    check_junit_path(ns.junit)
    exporter = serve_prometheus(ns.prometheus)  # before any container: a busy port is exit 2
    store = open_for_writing(ns.db)
    engine = DockerEngine()
    ui = make_progress(quiet=ns.quiet or ns.json, live=sys.stdout.isatty())
    settings = RunSettings(
        sinks=ui.sinks(),  # the live view, on a terminal
        interval_s=ns.interval,
        stats_source=ns.stats_source,
        only_targets=ns.target or None,
        db_url=absolute_url(db_url(ns.db)),  # the reaper runs from another directory
        tags=tags,
    )
    if exporter is not None:
        settings.sinks.append(exporter.sink)
    try:
        settle_gc()
        with ui:
            result = run_profile(loaded, store, engine, settings, ui)
    except KeyboardInterrupt:
        run_id = getattr(ui, "run_id", None)
        print(
            f"interrupted: run {run_id} stored as interrupted" if run_id else "interrupted",
            file=sys.stderr,
        )
        store.close()
        return 130
    finally:
        with DeferSignals():
            engine.close()
            if exporter is not None:
                exporter.close()
    try:
        s = summarize(store, result.run_id)
    except StoreUnavailable as e:  # the database went away (its data may be spooled)
        store.close()
        return summary_unavailable(result.run_id, e, ns.junit, [t.name for t in result.failed])
    store.close()
    if ns.json:
        print(json.dumps(s.to_json(), indent=2))
    else:
        print_text(s)  # apps, then services and scenarios apart
        print(f"run id: {result.run_id}")
    # budgets: after every target finished; under --json the table goes to stderr
    results = evaluate_run(s)
    if results and not ns.json:
        print()
    budgets_ok = report_budgets(s, results, ns.junit, stream=sys.stderr if ns.json else None)
    rc = 0
    if result.failed:
        names = ", ".join(f"{t.name} ({t.status})" for t in result.failed)
        print(f"failed targets: {names}", file=sys.stderr)
        rc = 1
    if not budgets_ok:
        bad = [r for r in results if not r.ok]
        print(f"failed budgets: {len(bad)} of {len(results)}", file=sys.stderr)
        rc = 1
    return rc
