"""``edgeprof check RUN_ID``: a stored run's budgets (or those of a file), pass or fail."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from edgeprof.cli.common import add_db, open_for_reading, warn_unfinished
from edgeprof.errors import UserError

NAME = "check"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="check a stored run against its budgets (or a file's); JUnit XML for CI",
        description="Evaluate the budgets of a stored run — those of its spec, stored with "
        "it — or those of --budgets FILE, and print each with its measured value and "
        "verdict. A budget on a metric the run did not produce fails with 'no data'. "
        "Every repeat of a target (base#1, base#2…) is checked on its own.\n\n"
        "Exit code 0 when every budget passed; 1 when one failed; 2 for an unknown run, a "
        "bad budgets file or a run without budgets.",
    )
    p.add_argument("run_id", metavar="RUN_ID", help="run id, or 'latest'")
    p.add_argument(
        "--budgets",
        metavar="FILE",
        help="YAML file holding a 'budgets:' mapping (for every target), or a whole profile "
        "spec (its budgets and its targets'); default: the run's own",
    )
    add_db(p)
    add_junit(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: {run, passed, results: [{target, name, verdict, measured, unit, "
        "message, …}]}",
    )
    p.set_defaults(func=main)


def add_junit(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--junit",
        metavar="FILE",
        help="also write JUnit XML (one testsuite per target, one testcase per budget) "
        "for Jenkins' junit step",
    )


def check_junit_path(path: str | None) -> None:
    """A --junit FILE whose folder is missing is an error before any work is done."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(
            f"--junit {path}: the folder {folder} does not exist; create it or pick another path"
        )
    if os.path.isdir(path):
        raise UserError(f"--junit {path} is a folder; name a file, e.g. {path}/budgets.xml")


def report(
    s: Any, results: list[Any], junit: str | None, *, as_json: bool = False, stream: Any = None
) -> bool:
    """Print the budget verdicts (a table, or JSON), write JUnit XML when asked; True when
    every budget passed."""
    from edgeprof.analyze.budgets import failed, format_table, junit_suites

    out = stream or sys.stdout
    ok = not failed(results)
    if as_json:
        doc = {"run": s.run.id, "passed": ok, "results": [r.to_json() for r in results]}
        print(json.dumps(doc, indent=2), file=out)
    elif results:
        print("\n".join(format_table(results)), file=out)
    if junit:
        from edgeprof.report.junit import write_junit

        write_junit(junit, junit_suites(s, results))
    return ok


def main(ns: argparse.Namespace) -> int:
    from edgeprof.analyze.budgets import evaluate_run, load_budget_file, stored_budgets
    from edgeprof.analyze.summary import summarize

    check_junit_path(ns.junit)
    budgets_for = load_budget_file(ns.budgets) if ns.budgets else stored_budgets
    store = open_for_reading(ns.db)
    try:
        s = summarize(store, ns.run_id)
    finally:
        store.close()
    if not any(budgets_for(t) for t in s.targets):
        if ns.budgets:
            raise UserError(
                f"{ns.budgets} holds no budget for the targets of run {s.run.id} "
                f"({', '.join(t.name for t in s.targets) or 'none'}); add a 'budgets:' mapping"
            )
        raise UserError(
            f"run {s.run.id} has no budgets; add 'budgets:' to its spec, or pass --budgets FILE"
        )
    warn_unfinished(s.run.id, s.run.status)
    results = evaluate_run(s, budgets_for)
    return 0 if report(s, results, ns.junit, as_json=ns.json) else 1
