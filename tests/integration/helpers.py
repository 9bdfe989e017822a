"""Run the CLI the way users do: in a subprocess, against the real engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

EDGEPROF = [sys.executable, "-m", "edgeprof.cli.main"]


def edgeprof(
    *args: str,
    db: Path | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    check: int | None = None,
) -> subprocess.CompletedProcess[str]:
    cmd = [*EDGEPROF, *args]
    if db is not None:
        cmd += ["--db", f"sqlite:///{db}"]
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if check is not None:
        assert res.returncode == check, (
            f"exit {res.returncode}\nstdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}"
        )
    return res


def summary(db: Path, run: str = "latest") -> dict[str, Any]:
    res = edgeprof("summary", run, "--json", db=db, check=0)
    return json.loads(res.stdout)


def target(s: dict[str, Any], name: str) -> dict[str, Any]:
    for t in s["targets"]:
        if t["name"] == name:
            return t
    raise KeyError(name)


def docker(*args: str, timeout: float = 60) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=True
    ).stdout
