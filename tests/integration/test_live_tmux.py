"""The live view the way a person sees it: ``edgeprof run`` in an 80×24 tmux pane.

A CPU burner limited to ``cpus: 0.5`` runs for 14 s; ``tmux capture-pane -p`` reads the
screen while it runs: the row of ``burn`` shows CPU near 50 % of its 50 % limit and its
memory limit, the key ``s`` changes the sort, and when the run ends the summary follows and
the terminal is back in its normal mode (``icanon`` and ``echo`` on). The text of the screen
is saved as ``tests/artifacts/live-80x24.txt`` (or under ``$EDGEPROF_TEST_ARTIFACTS``).

tmux comes from Debian's ``tmux`` package; where it is missing and cannot be installed the
test is skipped with the reason (under ``CI=true`` that is a failure).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import docker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPEC = """\
name: {name}
image: edgeprof-test/busybox:latest
run:
  network: none
profiling:
  interval: 0.5
  grace: 1
  metrics: [container]
  targets:
    - name: burn
      args: ["sh", "-c", "while :; do :; done"]
      timeout: {timeout}
      resources: {{cpus: 0.5, memory: 64m}}
"""
ROW = re.compile(r"^burn\s+(\d+)/\d+s\s+(\d+\.\d)%/50%\s+\S*\s*(\S+)/64M")
"""The burner's row while it runs: elapsed/timeout, CPU/limit, sparkline, memory/limit."""


def artifacts_dir() -> Path:
    d = Path(os.environ.get("EDGEPROF_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


class Pane:
    """``edgeprof run SPEC`` in a detached 80×24 tmux session on a private server; after it
    the pane shows ``EDGEPROF-EXIT=<code>`` and the terminal's ``icanon``/``echo`` modes."""

    def __init__(self, tmux: str, engine: str, tmp: Path, timeout: int) -> None:
        self.spec_name = f"livetmux{secrets.token_hex(3)}"
        spec = tmp / "live.yaml"
        spec.write_text(SPEC.format(name=self.spec_name, timeout=timeout))
        run = [sys.executable, "-m", "edgeprof.cli.main", "run", str(spec)]
        run += ["--db", f"sqlite:///{tmp / 'live.db'}"]
        script = tmp / "go.sh"
        script.write_text(
            "unset COLUMNS LINES NO_COLOR\n"  # the pane's own size, as a person's terminal
            "trap : INT\n"  # Ctrl-C is for edgeprof (which inherits the default): sh goes on
            f"export DOCKER_HOST={shlex.quote(engine)}\n"
            f"export PYTHONPATH={shlex.quote(str(ROOT / 'src'))}\n"
            f"cd {shlex.quote(str(tmp))}\n"
            f"{shlex.join(run)}\n"
            'echo "EDGEPROF-EXIT=$?"\n'
            "stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\?icanon' -e '-\\?echo' | tr '\\n' ' '\n"
            "echo\nsleep 600\n"
        )
        self.base = [tmux, "-L", f"edgeprof-live-{secrets.token_hex(4)}", "-f", "/dev/null"]
        self.script = script

    def __enter__(self) -> Pane:
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", "live", "-x", "80", "-y", "24"]
            + [f"sh {self.script}"],
            check=True,
            timeout=20,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=20)
        left = docker("ps", "-aq", "--filter", f"label=edgeprof.spec={self.spec_name}").split()
        if left:
            docker("rm", "-f", *left)

    def capture(self, history: bool = False) -> str:
        return subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", "live", *(["-S", "-"] if history else [])],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "live", *keys], check=True, timeout=10)

    def wait_exit(self, within: float) -> str:
        """The whole pane's text (scrollback too) once the run has ended."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < within and "EDGEPROF-EXIT=" not in self.capture():
            time.sleep(0.5)
        return self.capture(history=True)


def test_live_view_in_an_80x24_terminal(engine: str, tmux: str, tmp_path: Path) -> None:
    with Pane(tmux, engine, tmp_path, timeout=14) as pane:
        capture = pane.capture
        t0 = time.monotonic()
        cpus: list[float] = []
        shot = ""
        sorted_by_mem = False
        while time.monotonic() - t0 < 60:
            screen = capture()
            if "EDGEPROF-EXIT=" in screen:
                break
            rows = [m for line in screen.splitlines() if (m := ROW.match(line))]
            if rows:
                elapsed = int(rows[0].group(1))
                if elapsed >= 4:  # past the start: the quota holds it at 50 %
                    cpus.append(float(rows[0].group(2)))
                    shot = shot if sorted_by_mem else screen  # the screen as first sorted
                if elapsed >= 8 and not sorted_by_mem:
                    pane.keys("s")
                    sorted_by_mem = True
            time.sleep(0.5)
        assert shot, f"no row of burn with CPU seen; the screen:\n{capture()}"
        (artifacts_dir() / "live-80x24.txt").write_text(shot)
        print(f"CPU % in the pane, 4 s on: {cpus}")
        assert len(cpus) >= 5, cpus
        assert 45.0 <= statistics.median(cpus) <= 55.0, cpus
        # each is the rate over one 0.5 s interval (five CFS periods): most are near 50
        assert sum(40.0 <= c <= 60.0 for c in cpus) >= 0.75 * len(cpus), cpus
        lines = shot.splitlines()
        assert lines[0].startswith("run 1: 1 target(s) of edgeprof-test/busybox:latest")
        assert any(x.startswith("burn: started (edgeprof-test/busybox:latest") for x in lines)
        title = next(
            i for i, x in enumerate(lines) if x.startswith("edgeprof run 1 target 1/1  1 container")
        )  # below the lines printed above the table (run start, container start)
        assert "1 running" in lines[title] and "sort: cpu (s)" in lines[title]
        assert lines[title + 1].split()[:4] == ["NAME", "STATE", "CPU▼", "MEM"]
        assert all(len(line) <= 80 for line in lines)
        # the key `s` changed the sort (cpu → mem); wait for the run's end
        screen = pane.wait_exit(60)  # the summary may have scrolled the table up
        (artifacts_dir() / "live-80x24-end.txt").write_text(screen)
        assert "EDGEPROF-EXIT=0" in screen, screen
        assert "sort: mem" in screen and "MEM▼" in screen, screen
        assert re.search(r"^burn\s+timeout\s", screen, re.M), screen  # stays, marked
        assert "burn: timed_out" in screen and "run id: 1" in screen, screen
        # the terminal is back in its normal mode
        assert re.search(r"^icanon echo\s*$", screen, re.M), screen


def test_ctrl_c_stops_the_run_and_gives_the_terminal_back(
    engine: str, tmux: str, tmp_path: Path
) -> None:
    """The view reads keys in cbreak mode with signals on: Ctrl-C still interrupts (exit
    130, the run stored as interrupted) and the terminal's modes are restored."""
    with Pane(tmux, engine, tmp_path, timeout=60) as pane:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 40 and not any(
            ROW.match(line) for line in pane.capture().splitlines()
        ):
            time.sleep(0.5)
        pane.keys("C-c")
        screen = pane.wait_exit(30)
    assert "EDGEPROF-EXIT=130" in screen, screen
    assert "interrupted: run 1 stored as interrupted" in screen, screen
    assert re.search(r"^icanon echo\s*$", screen, re.M), screen
