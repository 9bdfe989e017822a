"""``edgeprof migrate``: bring a database written by an older edgeprof to this schema."""

from __future__ import annotations

import argparse
import os
from typing import Any

from edgeprof.cli.common import add_db, db_url, open_for_writing

NAME = "migrate"


def add(sub: Any) -> None:
    p = sub.add_parser(
        NAME,
        help="migrate a database written by an older edgeprof, in place",
        description="Migrate the database in place to this edgeprof's schema. Commands that "
        "only read never migrate; 'run' migrates on its own.",
    )
    add_db(p)
    p.set_defaults(func=main)


def main(ns: argparse.Namespace) -> int:
    from edgeprof.errors import StoreError
    from edgeprof.store import sqlite_path

    url = db_url(ns.db)
    path = sqlite_path(url)
    if path is not None and path != ":memory:" and not os.path.exists(path):
        raise StoreError(f"no database at {path}; nothing to migrate")
    store = open_for_writing(ns.db)
    before, after = store.migrated
    store.close()
    if before == after:
        print(f"{store.url} is at schema version {after} already")
    else:
        print(f"{store.url}: migrated from schema version {before} to {after}")
    return 0
