"""Shared test set-up: integration tests get a real container engine and test images.

The engine is started by ``scripts/engine.sh`` (installs Debian's docker.io if missing and
starts a private dockerd when none is reachable) and the images are built from local files
by ``scripts/build-images.sh``. Both are idempotent, so a second session is quick.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A shell without job control starts its background commands (`… &` in a script) with
# Ctrl-C ignored, and Python then keeps ignoring it, as do the profilers the tests start:
# the tests of Ctrl-C would wait for an interrupt that never comes. Take it back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _start_engine() -> str:
    res = subprocess.run(
        [str(ROOT / "scripts" / "engine.sh"), "start"], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"could not start a container engine:\n{res.stderr[-3000:]}")
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("export DOCKER_HOST="), res.stdout
    return line.split("=", 1)[1].strip().strip("'\"")


@pytest.fixture(scope="session")
def engine() -> str:
    """DOCKER_HOST of a running engine, with the test images built."""
    host = _start_engine()
    os.environ["DOCKER_HOST"] = host
    res = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh")], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"could not build the test images:\n{res.stderr[-3000:]}")
    return host


def _tool(script: str, what: str) -> str:
    """Path of a program a test drives, from ``scripts/<script>`` (which installs Debian's
    package when it is missing). Outside CI a machine without it (and no root to install
    it) skips the test with the reason; under CI=true that is a failure, so a missing
    install step shows."""
    res = subprocess.run([str(ROOT / "scripts" / script)], capture_output=True, text=True)
    if res.returncode != 0:
        why = f"no {what}: {res.stderr.strip()[-500:]}"
        if os.environ.get("CI"):
            raise RuntimeError(why)
        pytest.skip(why)
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless-capable Chromium, for the report tests."""
    return _tool("chromium.sh", "Chromium for the report tests")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """A Prometheus server binary, for the scrape test."""
    return _tool("prometheus.sh", "Prometheus server for the scrape test")


@pytest.fixture(scope="session")
def tmux() -> str:
    """tmux, for the live-view test."""
    return _tool("tmux.sh", "tmux for the live-view test")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of a private PostgreSQL server (started by scripts/postgres.sh)."""
    res = subprocess.run(
        [str(ROOT / "scripts" / "postgres.sh"), "start"], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"could not start PostgreSQL:\n{res.stderr[-3000:]}")
    return res.stdout.strip().splitlines()[-1].split("=", 1)[1]


@pytest.fixture
def pg_url(postgres_server: str) -> str:
    """A fresh, empty database on the test server, dropped afterwards."""
    import secrets

    psycopg = pytest.importorskip("psycopg")
    name = f"edgeprof_test_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    base = postgres_server.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
