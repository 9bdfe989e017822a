"""``docker run`` options users reach for, on the real engine: --memory-swap, --cpu-shares,
--init, --pid, -p and the log driver's non-blocking mode.

Each is checked twice: the engine's own ``inspect`` of the running container says it was
passed, and the app inside sees its effect (its cgroup limits, PID 1, a served port).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from .helpers import edgeprof, summary, target

pytestmark = pytest.mark.integration

APP = r"""
echo "pid1=$(cat /proc/1/comm)"
echo "shares=$(cat /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null || cat /sys/fs/cgroup/cpu.weight)"
echo "memsw=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || echo -)"
httpd -p 8090 -h /etc
sleep 4
"""

SPEC = """
name: options
image: edgeprof-test/busybox:latest
run:
  network: {net}
profiling:
  interval: 0.5
  grace: 1
  targets:
    - name: opts
      args: [sh, -c, '{app}']
      timeout: 20
      resources: {{memory: 64m, memory_swap: 128m, cpu_shares: 512}}
      run:
        init: true
        ports: ["127.0.0.1:18091:8090"]
        log: {{driver: json-file, mode: non-blocking, max_buffer_size: 4m, options: {{max-size: 10m}}}}
    - name: hostpid
      args: [sh, -c, 'echo "pid1=$(cat /proc/1/comm)"; ls /proc | grep -c "^[0-9]"']
      run: {{pid: host, network: none}}
"""


def _inspect_when_running(label: str, out: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        ids = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label=edgeprof.target={label}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if ids:
            time.sleep(1.0)  # httpd is up
            info = json.loads(
                subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True).stdout
            )
            out["host_config"] = info[0]["HostConfig"]
            try:
                with urllib.request.urlopen("http://127.0.0.1:18091/passwd", timeout=5) as r:
                    out["served"] = r.read().decode()
            except OSError as e:
                out["served"] = f"error: {e}"
            return
        time.sleep(0.1)


def test_run_options_reach_the_engine_and_the_app(engine: str, tmp_path: Path) -> None:
    net = f"edgeprof-opts-{int(time.time())}"
    subprocess.run(["docker", "network", "create", net], check=True, capture_output=True)
    try:
        spec = tmp_path / "opts.yaml"
        spec.write_text(SPEC.format(net=net, app=APP.replace("'", "").strip().replace("\n", "; ")))
        got: dict = {}
        stop = threading.Event()
        th = threading.Thread(target=_inspect_when_running, args=("opts", got, stop), daemon=True)
        th.start()
        db = tmp_path / "o.db"
        try:
            edgeprof("run", str(spec), db=db, check=0)
        finally:
            stop.set()
            th.join(30)
    finally:
        subprocess.run(["docker", "network", "rm", net], capture_output=True)
    hc = got["host_config"]
    assert hc["Memory"] == 64 * 2**20 and hc["MemorySwap"] == 128 * 2**20
    assert hc["CpuShares"] == 512
    assert hc["Init"] is True
    assert hc["PortBindings"] == {"8090/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18091"}]}
    assert hc["LogConfig"] == {
        "Type": "json-file",
        "Config": {"mode": "non-blocking", "max-buffer-size": f"{4 * 2**20}b", "max-size": "10m"},
    }
    assert got["served"].startswith("root:"), got["served"]
    logs = edgeprof("logs", "latest", "opts", "--db", f"sqlite:///{db}", check=0).stdout
    assert "pid1=docker-init" in logs  # --init: a PID 1 that forwards signals
    assert "shares=512" in logs
    assert f"memsw={128 * 2**20}" in logs or "memsw=-" in logs
    host = edgeprof("logs", "latest", "hostpid", "--db", f"sqlite:///{db}", check=0).stdout
    assert "pid1=docker-init" not in host and "pid1=sh" not in host  # the host's PID 1
    s = summary(db)
    assert target(s, "opts")["exit_code"] == 0 and target(s, "hostpid")["exit_code"] == 0


def test_sigterm_ignored_without_init_is_explained(engine: str, tmp_path: Path) -> None:
    """A shell as PID 1 ignores SIGTERM: killed after the grace, and the run says why."""
    spec = tmp_path / "stubborn.yaml"
    spec.write_text(
        "name: stubborn\nimage: edgeprof-test/busybox:latest\nrun: {network: none}\n"
        "profiling:\n  grace: 1\n  targets:\n"
        "    - {name: shell, args: [sh, -c, 'while :; do sleep 1; done'], timeout: 1}\n"
        "    - {name: init, args: [sh, -c, 'while :; do sleep 1; done'], timeout: 1, run: {init: true}}\n"
    )
    db = tmp_path / "s.db"
    res = edgeprof("run", str(spec), db=db, check=0)
    assert "ignored SIGTERM" in res.stdout and "run.init: true" in res.stdout
    s = summary(db)
    shell, init = target(s, "shell"), target(s, "init")
    assert shell["exit_code"] == 137 and [
        e for e in shell["events"] if e["kind"] == "sigkill_after_grace"
    ]
    assert init["exit_code"] == 143 and not [
        e for e in init["events"] if e["kind"] == "sigkill_after_grace"
    ]
