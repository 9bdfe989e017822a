"""How a target's spec becomes Docker Engine API create options (no engine needed)."""

from __future__ import annotations

import docker

from edgeprof.engine.base import ContainerRequest
from edgeprof.engine.docker import DockerEngine
from edgeprof.plan import build_request, plan
from edgeprof.spec import parse_spec


def _engine() -> DockerEngine:
    e = DockerEngine.__new__(DockerEngine)
    e._docker = docker
    return e


SPEC = """
name: app
image: me/app:1
run:
  network: host
  gpus: all
  env: {A: "1"}
  ulimits: {nofile: 1024, memlock: {soft: -1, hard: -1}}
  volumes: ["/data:/data:ro"]
profiling:
  targets:
    - {name: all, args: "--x 'two words'"}
    - name: jetson
      args: [--y]
      resources: {cpus: 1.5, memory: 512m, shm_size: 1g, pids_limit: 50}
      env: {B: "2"}
      run: {runtime: nvidia, gpus: "device=0,1", network: mynet, env: {A: "3"}}
    - {name: two, run: {gpus: 2}}
"""


def test_gpus_runtime_resources_and_options() -> None:
    loaded = parse_spec(SPEC, "p.yaml")
    runs = plan(loaded.spec)
    kw = [
        _engine()._create_kwargs(
            build_request(loaded, r, f"edgeprof-7-{r.name}", "me/app:1", {"edgeprof.run": "7"})
        )
        for r in runs
    ]

    a, j, two = kw
    assert a["command"] == ["--x", "two words"]
    assert a["network_mode"] == "host"
    (dr,) = a["device_requests"]
    assert dr["Count"] == -1 and dr["Capabilities"] == [["gpu"]]
    assert {u["Name"]: (u["Soft"], u["Hard"]) for u in a["ulimits"]} == {
        "nofile": (1024, 1024),
        "memlock": (-1, -1),
    }
    assert a["volumes"] == ["/data:/data:ro"]
    assert a["labels"]["edgeprof.run"] == "7" and a["labels"]["edgeprof.target"] == "all"

    assert j["runtime"] == "nvidia"
    assert j["device_requests"][0]["DeviceIDs"] == ["0", "1"]
    assert j["network"] == "mynet" and "network_mode" not in j
    assert j["nano_cpus"] == 1_500_000_000
    assert j["mem_limit"] == 512 * 2**20 and j["memswap_limit"] == 512 * 2**20
    assert j["shm_size"] == 2**30 and j["pids_limit"] == 50
    assert j["environment"] == {"A": "3", "B": "2"}
    assert j["volumes"] == ["/data:/data:ro"]

    assert two["device_requests"][0]["Count"] == 2


def test_request_defaults() -> None:
    req = ContainerRequest(image="x", name="n", command=[])
    kw = _engine()._create_kwargs(req)
    assert kw["command"] is None
    assert not {"nano_cpus", "mem_limit", "device_requests", "runtime", "network_mode"} & set(kw)
