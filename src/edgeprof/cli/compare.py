"""``edgeprof compare RUN_A RUN_B``: per target and metric, A vs B with a verdict on noise."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, cast

from edgeprof.cli.common import add_db, open_for_reading, warn_unfinished

NAME = "compare"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="A vs B per target and metric: mean/p95/max, change in %%, significant or ~",
        description="Compare two stored runs target by target (matched by name; the repeats "
        "of a target, name#1…name#N, are its observations): mean, p95 and max of every "
        "metric (counters: their total), the change from A to B in %, and whether it is "
        "significant at α = 0.05 ('~' when not). With ≥ 4 repeats on both sides: the "
        "Mann–Whitney U test over the repeats' statistics; with fewer: a circular block "
        "bootstrap interval over the time series (samples of one run are autocorrelated).",
    )
    p.add_argument("run_a", metavar="RUN_A", help="the baseline run id, or 'latest'")
    p.add_argument("run_b", metavar="RUN_B", help="the run compared with it, or 'latest'")
    p.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="T",
        help="compare only this target (its base name; repeatable)",
    )
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="M",
        help="compare only this metric (a name, or name{labels}; repeatable)",
    )
    add_db(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help="print JSON: {method, targets: [{name, metrics: {metric: {mean: {a, b, "
        "change_pct, p_value, significant, method}, p95, max}}}]}",
    )
    out.add_argument(
        "--markdown", action="store_true", help="print a Markdown table (a pull-request comment)"
    )
    p.add_argument(
        "--fail-on",
        metavar="RULES",
        help="exit 1 on a significant change past a threshold: METRIC.STAT:+N%% (a rise of "
        "more than N %% fails) or METRIC.STAT:-N%% (a drop), comma-separated, e.g. "
        "'cpu.percent.mean:+10%%,app.fps.p50:-5%%'",
    )
    p.add_argument(
        "--junit",
        metavar="FILE",
        help="write JUnit XML: a testsuite per target, a testcase per --fail-on rule",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the bootstrap (default 1: the same runs always give the same verdicts)",
    )
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.analyze.compare import (
        DEFAULT_SEED,
        DEFAULT_STATS,
        GAUGE_STATS,
        check_rules_known,
        compare,
        evaluate_rules,
        known_metrics,
        parse_fail_on,
    )
    from edgeprof.errors import UserError

    rules = parse_fail_on(ns.fail_on) if ns.fail_on is not None else []
    if ns.junit and not rules:
        raise UserError("--junit writes a test case per --fail-on rule; pass --fail-on too")
    stats = list(DEFAULT_STATS)
    for r in rules:
        if r.stat in GAUGE_STATS and r.stat not in stats:
            stats.append(r.stat)
    metrics = list(ns.metric)
    if metrics:
        metrics += [r.metric for r in rules if r.metric not in metrics]
    store = open_for_reading(ns.db)
    try:
        for ref in (ns.run_a, ns.run_b):
            rec = store.resolve_run(ref)
            warn_unfinished(rec.id, rec.status)
        c = compare(
            store,
            ns.run_a,
            ns.run_b,
            targets=ns.target,
            metrics=metrics,
            stats=stats,
            seed=DEFAULT_SEED if ns.seed is None else ns.seed,
        )
        if rules:
            check_rules_known(c, rules, known_metrics(c, store))
    finally:
        store.close()
    results = evaluate_rules(c, rules)
    if ns.json:
        doc = c.to_json()
        if rules:
            doc["fail_on"] = [
                {
                    "target": r.target,
                    "rule": r.rule.text,
                    "outcome": r.outcome,
                    "message": r.message,
                }
                for r in results
            ]
        print(json.dumps(doc, indent=2))
    elif ns.markdown:
        from edgeprof.report.compare import markdown

        print(markdown(c, results))
    else:
        from edgeprof.report.compare import print_comparison

        print_comparison(c, results)
    if ns.junit:
        from edgeprof.report.junit import JUnitCase, JUnitSuite, Outcome, write_junit

        suites: dict[str, list[JUnitCase]] = {}
        for x in results:
            suites.setdefault(x.target, []).append(
                JUnitCase(name=x.rule.text, outcome=cast(Outcome, x.outcome), message=x.message)
            )
        write_junit(
            ns.junit,
            [JUnitSuite(name=t, cases=cases) for t, cases in suites.items()],
            name=f"edgeprof compare {c.run_a} {c.run_b}",
        )
    failed = [x for x in results if x.outcome == "failed"]
    if failed:
        print(
            f"edgeprof: {len(failed)} --fail-on check{'s' if len(failed) > 1 else ''} failed",
            file=sys.stderr,
        )
        return 1
    return 0
