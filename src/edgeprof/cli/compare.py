"""``edgeprof compare RUN_A RUN_B``: per target and metric, A vs B with a verdict on noise."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, cast

from edgeprof.cli.common import add_db, open_for_reading, warn_unfinished
from edgeprof.cli.runs import add_filters

NAME = "compare"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="A vs B per target and metric: mean/p95/max, change in %%, significant or ~ "
        "(--by KEY: across devices)",
        description="Compare two stored runs target by target (matched by name; the repeats "
        "of a target, name#1…name#N, are its observations): mean, p95 and max of every "
        "metric (counters: their total), the change from A to B in %, and whether it is "
        "significant at α = 0.05 ('~' when not). With ≥ 4 repeats on both sides: the "
        "Mann–Whitney U test over the repeats' statistics; with fewer: a circular block "
        "bootstrap interval over the time series (samples of one run are autocorrelated)."
        "\n\n"
        "Across devices: 'compare --by device.model RUN RUN [RUN…]' groups the runs by a "
        "metadata key (any key of 'runs --where') into one table, a column per value with "
        "its change against the first (the baseline); several runs of one value are that "
        "group's observations, as repeats are. 'compare --latest --where spec=objcounter "
        "--by device.model' takes the newest completed run of each value.",
    )
    p.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="RUN_A RUN_B: the baseline run (id, UUID or its first 8+ characters, or "
        "'latest') and the run compared with it; with --by: two or more runs, grouped",
    )
    p.add_argument(
        "--by",
        metavar="KEY",
        help="compare groups of runs by the value of KEY (e.g. device.model, ci.branch, "
        "tag.NAME: the keys of 'runs --where'): one table with a column per value; runs "
        "of one value are that group's observations, as repeats are; the first run's "
        "value is the baseline",
    )
    p.add_argument(
        "--latest",
        action="store_true",
        help="with --by: for each value of KEY, the newest completed run matching "
        "--where/--tag/--since (values in sorted order, the first the baseline)",
    )
    p.add_argument(
        "--baseline",
        metavar="VALUE",
        help="with --by: the value of KEY whose group the others are compared with",
    )
    add_filters(p)
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

    if ns.by is not None:
        return main_by(ns)
    given = [
        o
        for o, v in (
            ("--latest", ns.latest),
            ("--baseline", ns.baseline),
            ("--where", ns.where),
            ("--tag", ns.tag),
            ("--since", ns.since),
        )
        if v
    ]
    if given:
        raise UserError(
            f"{given[0]} goes with --by KEY (a comparison of runs grouped by KEY); add e.g. "
            "--by device.model, or leave it out"
        )
    if len(ns.runs) != 2:
        raise UserError(
            f"compare takes two runs, RUN_A RUN_B (got {len(ns.runs)}); to compare more, "
            "group them with --by KEY, e.g. --by device.model"
        )
    ns.run_a, ns.run_b = ns.runs
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


def main_by(ns: argparse.Namespace) -> int:
    """``compare --by KEY RUN…`` or ``compare --latest --by KEY``: runs grouped by a
    metadata value, each group against the baseline's."""
    from edgeprof.analyze.compare import DEFAULT_SEED, compare_groups
    from edgeprof.errors import UserError
    from edgeprof.farm.where import (
        check_key,
        conditions,
        latest_by,
        parse_since,
        run_value,
    )

    key = check_key(ns.by, "--by")
    if ns.fail_on is not None or ns.junit:
        raise UserError(
            f"{'--fail-on' if ns.fail_on is not None else '--junit'} checks two runs; "
            "with --by, compare the two runs by id instead (or leave it out)"
        )
    conds = conditions(ns.where, ns.tag)
    since = parse_since(ns.since) if ns.since is not None else None
    store = open_for_reading(ns.db)
    try:
        groups: dict[str, list[int]] = {}
        if ns.latest:
            if ns.runs:
                raise UserError(
                    "--latest picks the runs itself; name runs or pass --latest, not both"
                )
            picked = latest_by(store, key, conds, since)
            if len(picked) < 2:
                found = ", ".join(f"{v} (run {r.id})" for v, r in picked.items()) or "none"
                raise UserError(
                    f"--latest needs completed runs of at least 2 values of {key} among the "
                    f"runs matching the filters (found: {found}); widen --where/--tag/--since"
                )
            for v in sorted(picked):
                groups[v] = [picked[v].id]
        else:
            if conds or since is not None:
                raise UserError(
                    "--where, --tag and --since pick the runs of --latest; with runs named, "
                    "leave them out (or pass --latest instead of the runs)"
                )
            if len(ns.runs) < 2:
                raise UserError(
                    f"compare --by {key} takes at least two runs (got {len(ns.runs)}), or "
                    "--latest to pick the newest run of each value"
                )
            for ref in ns.runs:
                rec = store.resolve_run(ref)
                value = run_value(rec, key)
                if value is None:
                    raise UserError(
                        f"run {rec.id} has no {key}, so it cannot be grouped by it; leave it "
                        "out or group by another key ('edgeprof runs --json' shows each run's "
                        "metadata)"
                    )
                warn_unfinished(rec.id, rec.status)
                ids = groups.setdefault(value, [])
                if rec.id not in ids:
                    ids.append(rec.id)
        if ns.baseline is not None:
            if ns.baseline not in groups:
                raise UserError(
                    f"--baseline {ns.baseline!r} is not a value of {key} of the runs compared "
                    f"({', '.join(groups)}); pass one of those"
                )
            groups = {ns.baseline: groups[ns.baseline]} | groups
        if len(groups) < 2:
            (value,) = groups
            raise UserError(
                f"every run given has {key} = {value!r}: one group; --by needs runs of at "
                "least 2 values (compare two of them without --by)"
            )
        c = compare_groups(
            store,
            key,
            list(groups.items()),
            targets=ns.target,
            metrics=ns.metric,
            seed=DEFAULT_SEED if ns.seed is None else ns.seed,
        )
    finally:
        store.close()
    if ns.json:
        print(json.dumps(c.to_json(), indent=2))
    elif ns.markdown:
        from edgeprof.report.compare import group_markdown

        print(group_markdown(c))
    else:
        from edgeprof.report.compare import print_group_comparison

        print_group_comparison(c)
    return 0
