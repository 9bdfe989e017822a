"""Run the sampler, store and compare benchmarks in one go and print their sections.

(bench/app_ingest.py, bench/logs.py and bench/report.py run on their own.)

    python bench/run_all.py            # 60 s windows (~12 min)
    python bench/run_all.py --quick    # 15 s windows (~5 min)
    python bench/run_all.py --smoke    # 3 s windows, 20k-sample store (~2 min; CI, no asserts)

Results also go to bench/results-<mode>.json unless --json names another file.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy  # noqa: E402
import compare  # noqa: E402
import overhead  # noqa: E402
import store  # noqa: E402
from _common import dump, machine, parse_mode  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ns = parse_mode(__doc__ or "", argv)
    m = machine()
    print(
        f"edgeprof benchmarks, mode {ns.mode} ({ns.window:g} s windows), "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}"
    )
    print(
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Docker {m['docker']}, Python {m['python']}, kernel {m['kernel']}"
    )
    ov = overhead.run(ns.window)
    ac = accuracy.run(ns.window)
    st = store.run(
        20_000 if ns.mode == "smoke" else 1_000_000,
        {"smoke": 2.0, "quick": 15.0}.get(ns.mode, 60.0),
        pg=False,
    )
    cmp = compare.run(20_000 if ns.mode == "smoke" else 1_000_000)
    overhead.print_overhead(ov)
    overhead.print_resolution(ov)
    accuracy.print_accuracy(ac)
    store.print_store(st)
    compare.print_compare(cmp)
    out = ns.json_out or str(Path(__file__).resolve().parent / f"results-{ns.mode}.json")
    dump(
        out,
        {
            "mode": ns.mode,
            "machine": m,
            "overhead": ov,
            "accuracy": ac,
            "store": st,
            "compare": cmp,
        },
    )
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
