"""``edgeprof recommend RUN_ID``: resource requests and limits from what a run measured."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading, warn_unfinished

NAME = "recommend"


def _headroom(text: str) -> float:
    from edgeprof.analyze.recommend import parse_headroom

    try:
        return parse_headroom(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add(sub: Any) -> None:
    from edgeprof.analyze.recommend import FORMATS, RULES

    p = sub.add_parser(
        NAME,
        help="CPU and memory requests and limits from a run, with the evidence for each",
        description="Recommend CPU and memory requests and limits for each target of a "
        "stored run (repeats pooled; services apart), each number with the statistic, "
        "sample count and duration it came from. A throttled target's CPU counts its "
        "throttled time as demand; an OOM-killed target's memory is bumped above the limit "
        "it was killed at. Warns when the run was too short or had too few samples.\n\n"
        "Rules: vpa (default; the Kubernetes VPA recommender: CPU request p90 × (1 + "
        "headroom), CPU limit peak × (1 + headroom), memory request = limit = peak × (1 + "
        "headroom), minimums 25m and 250Mi, memory +20% after an OOM kill) and krr (robusta "
        "krr's simple strategy: CPU request p95, no CPU limit, memory = peak × (1 + "
        "headroom)).",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument(
        "--target",
        metavar="T",
        help="only this target (its name as planned, e.g. 'burn' for burn#1, burn#2…; or "
        "one repeat, 'burn#2')",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="pluginctl",
        help="pluginctl: Waggle's --resource string (default); k8s: a resources: block; "
        "compose: a deploy.resources block; docker: --cpus/--memory flags. Evidence is "
        "printed as # comments",
    )
    p.add_argument(
        "--headroom",
        type=_headroom,
        default=0.15,
        metavar="PCT",
        help="margin added to the measured figures, 0%%–100%% (default 15%%, VPA's safety "
        "margin and krr's memory buffer; krr adds none to CPU)",
    )
    p.add_argument("--rule", choices=RULES, default="vpa", help="vpa (default) or krr; see above")
    add_db(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: {run, rule, headroom, recommendations: [{name, role, targets, "
        "cpu: {request, limit}, memory: {request, limit}, throttling, oom_killed, notes, "
        "warnings, formats}]}; each figure {value, text, statistic, measured, factor, "
        "samples, duration_s, minimum_applied, how}",
    )
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.analyze.recommend import recommend, render_all

    store = open_for_reading(ns.db)
    try:
        result = recommend(store, ns.run_id, target=ns.target, rule=ns.rule, headroom=ns.headroom)
        status = store.resolve_run(result.run_id).status
    finally:
        store.close()
    warn_unfinished(result.run_id, status)
    if ns.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render_all(result, ns.format), end="")
    return 0
