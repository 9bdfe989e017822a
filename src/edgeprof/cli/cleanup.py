"""``edgeprof cleanup``: remove what a killed profiler left behind."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from edgeprof.cli.common import add_db, db_url

NAME = "cleanup"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="remove what a killed profiler left behind",
        description="Remove the containers and networks of runs whose profiler died (on "
        "this host), and mark those runs crashed in the database. Containers of a profiler "
        "that still runs are left alone.",
    )
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.errors import StoreError
    from edgeprof.reaper import cleanup
    from edgeprof.store import open_store, sqlite_path

    client = None
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:  # noqa: BLE001 - no engine: only the database is cleaned
        client = None
        print(
            "no container engine answers (DOCKER_HOST); only the database is checked",
            file=sys.stderr,
        )
    store = None
    url = db_url(ns.db)
    path = sqlite_path(url)
    if path is None or os.path.exists(path):
        try:
            store = open_store(url)
        except StoreError as e:
            print(f"edgeprof: warning: {e}", file=sys.stderr)
    try:
        done = cleanup(client, store)
    finally:
        if store is not None:
            store.close()
        if client is not None:
            client.close()
    print(
        f"removed {len(done.containers)} container(s), {len(done.networks)} network(s); "
        f"marked {len(done.runs)} run(s) crashed"
        + (f" ({', '.join(map(str, done.runs))})" if done.runs else "")
    )
    for name in done.kept:
        print(f"kept {name}: its profiler still runs (or runs on another host)")
    for err in done.errors:
        print(f"could not remove {err}", file=sys.stderr)
    return 0
