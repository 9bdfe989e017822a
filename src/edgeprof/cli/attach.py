"""``edgeprof attach NAME_OR_ID …``: profile running containers somebody else started."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

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

NAME = "attach"
STATS_SOURCES = ("auto", "cgroup", "engine-api")


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="profile running containers (started by somebody else) as one stored run",
        description="Profile running containers with the same collectors and storage as "
        "'run', as one stored run (spec name 'attach', one target per container). A "
        "container that restarts is followed (new process, new cgroup) and marked with an "
        "event; one that is removed ends its series. edgeprof never stops, restarts or "
        "removes a container it attached to. App metrics through edgeprof's socket are not "
        "available: the container was started without it.\n\nIt ends when every container "
        "has exited, when --duration has passed, or on Ctrl-C/SIGTERM, and stores "
        "everything up to then. With --all (or --label without names) it also takes "
        "containers that start while attached, and runs until --duration or Ctrl-C.\n\n"
        "Exit code 0 when done, 2 for a name that does not exist or a container that is not "
        "running, 130 when interrupted (Ctrl-C or SIGTERM), with everything up to then stored.",
    )
    p.add_argument(
        "containers",
        metavar="NAME_OR_ID",
        nargs="*",
        help="running containers to attach to (names or ids)",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="every running container, and those that start while attached",
    )
    p.add_argument(
        "--label",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="only containers with this label (repeatable: all must match; KEY alone: any value)",
    )
    p.add_argument(
        "--duration",
        metavar="TIME",
        help="stop after this long: 90, 90s, 10m or 2h (default: until the containers exit)",
    )
    p.add_argument(
        "-i",
        "--interval",
        metavar="SECONDS",
        type=positive_interval,
        default=1.0,
        help="sampling interval in seconds, at least 0.01 (default: 1)",
    )
    p.add_argument(
        "--metrics",
        metavar="GROUP[,GROUP]",
        action="append",
        help="metric groups, comma-separated or repeated (default: container,system; also "
        "process, gpu-summary, gpu-process, tegrastats)",
    )
    p.add_argument(
        "--stats-source",
        metavar="SOURCE",
        choices=STATS_SOURCES,
        default="auto",
        help="container metrics from 'cgroup' files, the 'engine-api' (1 s resolution), or 'auto' (default)",
    )
    add_db(p)
    p.add_argument(
        "--json", action="store_true", help="print the summary as JSON instead of tables"
    )
    add_tags(p)
    add_live_options(p, "attached", "a line per container every 5 s")
    p.set_defaults(func=main)


def _lines(quiet: bool, view: Any = None) -> Any:
    """Hooks that say what happens while attached, one line each: above the live view when
    there is one, else on stderr."""
    from edgeprof.attach import AttachHooks

    class Lines(AttachHooks):
        def __init__(self) -> None:
            self.run_id: int | None = None

        def _say(self, text: str) -> None:
            if quiet:
                return
            if view is not None and not view.plain:  # above the live table
                view.print(text)
            else:
                print(text, file=sys.stderr, flush=True)

        def run_started(self, run_id: int) -> None:
            self.run_id = run_id
            self._say(f"edgeprof: attach: run {run_id}; Ctrl-C to stop")

        def attached(self, target: str, info: Any) -> None:
            self._say(f"edgeprof: attached to {target} ({info.id[:12]}, {info.image})")

        def note(self, target: str, message: str) -> None:
            self._say(f"edgeprof: {target}: {message}")

        def container_event(self, target: str, kind: str, message: str) -> None:
            self._say(f"edgeprof: {target}: {message}")

    return Lines()


def main(ns: argparse.Namespace) -> int:
    from edgeprof.analyze.summary import summarize
    from edgeprof.attach import (
        attach_profile,
        check_metrics,
        parse_duration,
        parse_labels,
    )
    from edgeprof.engine.docker import DockerEngine
    from edgeprof.errors import StoreUnavailable
    from edgeprof.farm.meta import parse_tags
    from edgeprof.report.terminal import print_summary
    from edgeprof.store import absolute_url

    duration = parse_duration(ns.duration) if ns.duration is not None else None
    labels = parse_labels(ns.label)
    tags = parse_tags(ns.tag)
    metrics = None
    if ns.metrics is not None:
        metrics = check_metrics([m.strip() for v in ns.metrics for m in v.split(",") if m.strip()])
    from edgeprof.prometheus import serve_prometheus
    from edgeprof.signals import DeferSignals

    exporter = serve_prometheus(ns.prometheus)  # before anything: a busy port is exit 2
    sinks: list[Any] = [] if exporter is None else [exporter.sink]
    view = None
    if not (ns.quiet or ns.json):
        from edgeprof.live import LiveView
        from edgeprof.report.terminal import make_console

        view = LiveView(make_console(), title="edgeprof attach")
        sinks.append(view)
    try:
        engine = DockerEngine()
        store = open_for_writing(ns.db)
    except BaseException:
        if exporter is not None:
            exporter.close()
        raise
    ui = _lines(quiet=ns.quiet or ns.json, view=view)
    try:
        if view is not None:
            view.start()
        settle_gc()
        result = attach_profile(
            engine,
            store,
            ns.containers,
            all_running=ns.all,
            label_filters=labels,
            duration_s=duration,
            interval_s=ns.interval,
            metrics=metrics,
            stats_source=ns.stats_source,
            hooks=ui,
            sinks=sinks,
            db_url=absolute_url(db_url(ns.db)),
            tags=tags,
        )
    except KeyboardInterrupt:
        run_id = ui.run_id
        print(
            f"interrupted: run {run_id} stored as interrupted" if run_id else "interrupted",
            file=sys.stderr,
        )
        store.close()
        return 130
    finally:
        with DeferSignals():  # a second Ctrl-C waits until the terminal and port are back
            if view is not None:
                view.stop()
            engine.close()
            if exporter is not None:
                exporter.close()
    try:
        s = summarize(store, result.run_id)
    except StoreUnavailable as e:  # the database went away (its data may be spooled)
        store.close()
        return summary_unavailable(result.run_id, e, None)
    store.close()
    if ns.json:
        print(json.dumps(s.to_json(), indent=2))
    else:
        print_summary(s)
        print(f"run id: {result.run_id}")
    return 0
