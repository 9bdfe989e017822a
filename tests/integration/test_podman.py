"""``edgeprof run`` against Podman's Docker-compatible API service (scripts/podman.sh).

Same ground truth as test_run.py, on Podman: a ``cpus: 0.5`` burner reads ~50 % from the
container's own cgroup (``/libpod_parent/libpod-<id>`` with Podman's cgroupfs manager),
exit code 3 is recorded, memory metrics are there, the run's host details name the engine
``podman``, and no container is left behind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .helpers import edgeprof, summary, target

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SPEC = """
name: podman-check
image: edgeprof-test/busybox:latest
run: {network: none}
profiling:
  interval: 0.25
  grace: 1
  metrics: [container, system, process]
  targets:
    - {name: burn, args: [sh, -c, 'while :; do :; done'], timeout: 6, resources: {cpus: 0.5}}
    - {name: exit3, args: [sh, -c, 'exit 3']}
"""


@pytest.fixture(scope="module")
def podman_host() -> str:
    """DOCKER_HOST of Podman's API service, with edgeprof-test/busybox loaded into it."""
    res = subprocess.run(
        [str(ROOT / "scripts" / "podman.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if res.returncode != 0:
        # Podman is expected to work here: a failure is a failure, not a skip.
        err = res.stderr
        shown = err if len(err) <= 4000 else f"{err[:1500]}\n…\n{err[-2500:]}"  # cause + tail
        pytest.fail(f"scripts/podman.sh start failed:\n{shown}")
    line = res.stdout.strip().splitlines()[-1]
    assert line.startswith("export EDGEPROF_PODMAN_HOST="), res.stdout
    return line.split("=", 1)[1].strip().strip("'\"")


def test_run_on_podman(podman_host: str, tmp_path: Path) -> None:
    import docker
    import docker.errors

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    db = tmp_path / "podman.db"
    env = {"DOCKER_HOST": podman_host}
    # exit3 fails on purpose, so the run exits 1
    edgeprof("run", str(spec), db=db, env=env, timeout=120, check=1)
    s = summary(db)

    assert s["run"]["host"]["engine"] == "podman", s["run"]["host"]

    burn = target(s, "burn")
    assert burn["status"] == "timed_out", burn
    cpu = burn["metrics"]["cpu.percent"]["mean"]
    assert 40 <= cpu <= 60, f"cpu.percent mean {cpu} (cpus: 0.5)"
    assert "memory.working_set_bytes" in burn["metrics"], sorted(burn["metrics"])
    assert burn["metrics"]["memory.working_set_bytes"]["max"] > 0
    started = next(e for e in burn["events"] if e["kind"] == "target_started")
    cgroup = started["data"]["cgroup"]
    assert cgroup is not None, "cgroup of the Podman container not found from /proc/<pid>/cgroup"
    assert "libpod" in str(cgroup), cgroup

    exit3 = target(s, "exit3")
    assert exit3["exit_code"] == 3, exit3
    assert exit3["status"] == "failed", exit3

    client = docker.DockerClient(base_url=podman_host)
    try:
        for t in (burn, exit3):
            with pytest.raises(docker.errors.NotFound):
                client.containers.get(t["container_id"])
        left = client.containers.list(all=True, filters={"label": "edgeprof.target"})
        assert not left, f"containers left in podman: {[c.name for c in left]}"
    finally:
        client.close()
