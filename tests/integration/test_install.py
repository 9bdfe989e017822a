"""edgeprof as a fresh ``pip install`` gets it: a clean virtual environment holding only the
declared dependencies, at their lowest allowed releases and at the newest ones.

Every command-line error path ends in one sentence without a traceback, and a real profile
runs, in both. (A dependency that changes under us — typer 0.29 dropping click, docker 7.0
failing with requests 2.32 — is found here, not by a user.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.install]

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> list[str]:
    """The ``dependencies = [...]`` of pyproject.toml (no tomllib on Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = text.split("\ndependencies = [", 1)[1].split("]", 1)[0]
    return re.findall(r'"([^"]+)"', block)


def _lowest(req: str) -> str:
    name, lower = re.match(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", req).groups()  # type: ignore[union-attr]
    return f"{name}=={lower}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("edgeprof-*.whl")
    return whl


def _venv(tmp: Path, wheel: Path, reqs: list[str]) -> Path:
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    pip = [
        str(env_dir / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    res = subprocess.run([*pip, *reqs], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    res = subprocess.run([*pip, "--no-deps", str(wheel)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return env_dir / "bin" / "edgeprof"


ERRORS = [
    ([], None),  # the help, exit 2
    (["bogus"], "no command 'bogus'"),
    (["summary"], "RUN_ID is missing"),
    (["runs", "--limit", "x"], "not a whole number"),
    (["run", "spec.yaml", "--interval", "0.001"], "below the shortest interval"),
    (["runs", "--db", "/tmp/x.db"], "sqlite:////tmp/x.db"),
    (["runs", "--db", "sqlite:///missing.db"], "no database at missing.db"),
    (["run", "missing.yaml"], "missing.yaml: no such file"),
    (["run", "typo.yaml"], "unknown key 'profiling.targets[0].timout'"),
]


@pytest.mark.parametrize("bounds", ["lowest", "newest"])
def test_clean_install_error_paths_and_a_real_run(
    engine: str, wheel: Path, tmp_path: Path, bounds: str
) -> None:
    reqs = _requirements()
    if bounds == "lowest":
        reqs = [_lowest(r) for r in reqs]
    exe = _venv(tmp_path, wheel, reqs)
    (tmp_path / "typo.yaml").write_text(
        "name: x\nprofiling:\n  targets:\n    - {args: a, timout: 1}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "EDGEPROF_DB"}
    for args, expected in ERRORS:
        res = subprocess.run(
            [str(exe), *args], capture_output=True, text=True, cwd=tmp_path, env=env
        )
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stdout + res.stderr, (args, res.stderr)
        if expected is not None:
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("edgeprof: error: "), res.stderr
            assert expected in lines[0], (args, lines[0])
    spec = tmp_path / "ok.yaml"
    spec.write_text(
        "name: ok\nimage: edgeprof-test/busybox:latest\nrun: {network: none}\nprofiling:\n"
        "  interval: 0.2\n  targets:\n    - {name: t, args: [sh, -c, 'echo hi; sleep 1']}\n"
    )
    res = subprocess.run(
        [str(exe), "run", str(spec), "--db", f"sqlite:///{tmp_path}/ok.db", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert "exited (0)" in res.stdout
