"""plan() with matrix, services and data_config; run_services(); plan_scenarios(); and the
CLI's exit 2 before any container for a bad spec of these kinds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeprof.errors import SpecError
from edgeprof.plan import (
    ScenarioRun,
    TargetRun,
    plan,
    plan_scenarios,
    run_services,
    target_config,
)
from edgeprof.spec import RunOptions, Spec, TargetSpec, parse_spec


def _spec(text: str) -> Spec:
    return parse_spec(textwrap.dedent(text)).spec


# -- matrix ------------------------------------------------------------------------------------


def test_matrix_expands_the_product_in_key_order_with_value_names() -> None:
    spec = _spec(
        """\
        name: a
        profiling:
          targets:
            - name: infer
              args: --model yolo
              env: {MODE: fast}
              resources: {memory: 256m}
              matrix:
                cpus: [0.5, 1, 2]
                args: ["--threads 1", [--threads, 2]]
            - name: tail
        """
    )
    runs = plan(spec)
    assert [r.name for r in runs] == [
        "infer-0.5-threads-1",
        "infer-0.5-threads-2",
        "infer-1-threads-1",
        "infer-1-threads-2",
        "infer-2-threads-1",
        "infer-2-threads-2",
        "tail",
    ]
    assert [r.index for r in runs] == list(range(7))
    assert [r.target.resources.cpus for r in runs[:6]] == [0.5, 0.5, 1, 1, 2, 2]
    # the matrix's args follow the target's own
    assert runs[0].argv == ["--model", "yolo", "--threads", "1"]
    assert runs[1].argv == ["--model", "yolo", "--threads", "2"]
    # what the matrix does not set is the target's
    assert all(r.target.resources.memory == 256 * 1024**2 for r in runs[:6])
    assert all(r.env == {"MODE": "fast"} for r in runs[:6])
    assert runs[3].matrix == {"cpus": 1, "args": ["--threads", 2]}
    assert runs[3].target.name == "infer-1-threads-2" and runs[3].target.matrix is None
    assert runs[6].matrix == {} and runs[6].argv == []
    cfg = target_config(runs[3])
    assert cfg["matrix"] == {"cpus": 1, "args": ["--threads", 2]}
    assert cfg["resources"] == {"cpus": 1.0, "memory": 256 * 1024**2}
    assert "matrix" not in target_config(runs[6])
    json.dumps(cfg)  # stored as JSON


def test_matrix_env_and_resource_values_and_default_names() -> None:
    spec = _spec(
        """\
        name: a
        run:
          env: {A: spec}
        profiling:
          targets:
            - env: {B: target}
              matrix:
                env.B: [x, 2, true]
                memory: [256m, 1g]
        """
    )
    runs = plan(spec)
    assert [r.name for r in runs] == [
        "t1-x-256m",
        "t1-x-1g",
        "t1-2-256m",
        "t1-2-1g",
        "t1-true-256m",
        "t1-true-1g",
    ]
    assert [r.env["B"] for r in runs] == ["x", "x", "2", "2", "true", "true"]
    assert all(r.env["A"] == "spec" for r in runs)
    assert [r.target.resources.memory for r in runs[:2]] == [256 * 1024**2, 1024**3]


def test_matrix_value_with_no_name_characters_is_named_by_position() -> None:
    runs = plan(_spec("name: a\nprofiling:\n  targets:\n    - matrix: {args: ['--', '-v']}\n"))
    assert [r.name for r in runs] == ["t1-1", "t1-v"]
    assert [r.argv for r in runs] == [["--"], ["-v"]]


def test_matrix_with_repeat_repeats_each_expanded_target() -> None:
    runs = plan(
        _spec(
            "name: a\nprofiling:\n  targets:\n"
            "    - {name: gpu, repeat: 2, matrix: {cpus: [1, 2]}}\n    - {name: cpu}\n"
        )
    )
    assert [r.name for r in runs] == ["gpu-1#1", "gpu-1#2", "gpu-2#1", "gpu-2#2", "cpu"]
    assert [r.repeat_index for r in runs] == [0, 1, 0, 1, 0]
    assert [r.alone_name for r in runs] == ["gpu-1", "gpu-1", "gpu-2", "gpu-2", "cpu"]
    assert [target_config(r)["repeat_index"] for r in runs] == [0, 1, 0, 1, 0]


def test_plan_still_takes_a_spec_without_any_of_it() -> None:
    runs = plan(_spec("name: a\nprofiling:\n  targets: [{args: --x}]\n"))
    (r,) = runs
    assert (r.services, r.data_config, r.scenario, r.base_target, r.matrix) == (
        (),
        None,
        None,
        None,
        {},
    )
    cfg = target_config(r)
    assert set(cfg) == {"timeout", "resources", "env", "repeat_index"}
    # the old positional construction keeps working
    t = TargetSpec()
    tr = TargetRun(0, "x", t, [], 0, RunOptions())
    assert tr.services == () and tr.scenario is None and tr.alone_name == "x"


def test_plan_guards_hand_built_specs() -> None:
    spec = _spec("name: a\nprofiling:\n  targets: [{name: a}, {name: b}]\n")
    bad = spec.model_copy(
        update={
            "profiling": spec.profiling.model_copy(
                update={"targets": [TargetSpec(name="a"), TargetSpec(name="a")]}
            )
        }
    )
    with pytest.raises(SpecError, match="'a' is used twice"):
        plan(bad)


# -- services and data_config -----------------------------------------------------------------

SERVICES = """\
name: a
profiling:
  services:
    - {name: playback, image: play:1, ready: {tcp: 8090}}
    - {name: broker, image: mqtt:2, scope: run}
    - {name: cache, image: redis:7}
  data_config:
    bottom_camera: http://playback:8090/bottom/live.mp4
    top_camera: http://playback:8090/top/live.mp4
  targets:
    - name: plain
    - name: own
      services:
        - {name: extra, image: extra:1}
        - {name: Playback, image: play:2, start_timeout: 5}
      data_config: {top_camera: "rtsp://cam/top"}
    - name: nodc
      data_config: {}
"""


def test_target_scope_services_spec_then_own_with_replacement() -> None:
    spec = _spec(SERVICES)
    plain, own, nodc = plan(spec)
    assert [(s.name, s.image) for s in plain.services] == [
        ("playback", "play:1"),
        ("cache", "redis:7"),
    ]
    # the target's Playback takes the place of the spec's playback; its new one comes last
    assert [(s.name, s.image) for s in own.services] == [
        ("Playback", "play:2"),
        ("cache", "redis:7"),
        ("extra", "extra:1"),
    ]
    assert own.services[0].start_timeout == 5
    assert all(s.scope == "target" for r in (plain, own, nodc) for s in r.services)
    assert [s.name for s in run_services(spec)] == ["broker"]
    assert target_config(own)["services"] == ["Playback", "cache", "extra"]


def test_data_config_merges_spec_then_target_per_key() -> None:
    plain, own, nodc = plan(_spec(SERVICES))
    spec_dc = {
        "bottom_camera": "http://playback:8090/bottom/live.mp4",
        "top_camera": "http://playback:8090/top/live.mp4",
    }
    assert plain.data_config == spec_dc
    assert own.data_config == {**spec_dc, "top_camera": "rtsp://cam/top"}
    assert nodc.data_config == spec_dc
    assert target_config(own)["data_config"] == own.data_config
    # only on a target
    (t,) = plan(_spec("name: a\nprofiling:\n  targets: [{data_config: {c: 'http://x/'}}]\n"))
    assert t.data_config == {"c": "http://x/"}
    assert run_services(_spec("name: a\nprofiling:\n  targets: [{}]\n")) == []


def test_matrix_targets_keep_services_and_data_config() -> None:
    runs = plan(
        _spec(
            "name: a\nprofiling:\n  services: [{name: s, image: x}]\n"
            "  data_config: {c: 'http://s/'}\n  targets:\n    - matrix: {cpus: [1, 2]}\n"
        )
    )
    assert [[s.name for s in r.services] for r in runs] == [["s"], ["s"]]
    assert [r.data_config for r in runs] == [{"c": "http://s/"}, {"c": "http://s/"}]


# -- scenarios ---------------------------------------------------------------------------------

SCENARIOS = """\
name: a
profiling:
  services: [{name: playback, image: play:1}]
  targets:
    - {name: gpu, args: --gpu, repeat: 2}
    - {name: infer, matrix: {cpus: [0.5, 1]}}
    - {name: cpu, args: --cpu, data_config: {c: 'http://playback/'}}
  scenarios:
    - {name: both, together: [gpu, cpu]}
    - {name: trio, together: [infer-1, cpu, gpu]}
"""


def test_plan_scenarios_members_continue_the_indexes() -> None:
    spec = _spec(SCENARIOS)
    runs = plan(spec)
    assert [r.name for r in runs] == ["gpu#1", "gpu#2", "infer-0.5", "infer-1", "cpu"]
    scen = plan_scenarios(spec, runs)
    assert [type(s) for s in scen] == [ScenarioRun, ScenarioRun]
    assert [s.name for s in scen] == ["both", "trio"]
    both, trio = scen
    assert [m.name for m in both.members] == ["both/gpu", "both/cpu"]
    assert [m.name for m in trio.members] == ["trio/infer-1", "trio/cpu", "trio/gpu"]
    assert [m.index for s in scen for m in s.members] == [5, 6, 7, 8, 9]
    assert all(m.repeat_index == 0 for s in scen for m in s.members)
    assert [(m.scenario, m.base_target) for m in trio.members] == [
        ("trio", "infer-1"),
        ("trio", "cpu"),
        ("trio", "gpu"),
    ]
    assert [m.alone_name for m in trio.members] == ["infer-1", "cpu", "gpu"]
    g, c = both.members
    assert g.argv == ["--gpu"] and c.argv == ["--cpu"]
    assert c.data_config == {"c": "http://playback/"}
    assert [s.name for s in g.services] == ["playback"]
    assert trio.members[0].target.resources.cpus == 1
    cfg = target_config(g)
    assert (cfg["scenario"], cfg["base_target"], cfg["repeat_index"]) == ("both", "gpu", 0)


def test_plan_scenarios_from_narrowed_runs_and_without_scenarios() -> None:
    spec = _spec(SCENARIOS)
    only_cpu = [r for r in plan(spec) if r.name == "cpu"]
    both = plan_scenarios(spec, only_cpu)[0]
    assert [(m.name, m.index) for m in both.members] == [("both/gpu", 5), ("both/cpu", 6)]
    assert [m.index for m in plan_scenarios(spec, [])[0].members] == [0, 1]
    assert plan_scenarios(_spec("name: a\nprofiling:\n  targets: [{}]\n"), []) == []


# -- the CLI: one sentence, exit 2, before any container ---------------------------------------

BAD_SPECS = {
    "unknown target in together": (
        "profiling:\n  targets: [{name: gpu}, {name: cpu}]\n"
        "  scenarios: [{name: both, together: [gpu, npu]}]\n",
        "profiling.scenarios[0].together[1]",
    ),
    "name used twice after matrix": (
        "profiling:\n  targets:\n    - {name: a, matrix: {cpus: [1, 2]}}\n    - {name: a-2}\n",
        "profiling.targets[1].name",
    ),
    "service name not a hostname": (
        "profiling:\n  services: [{name: my_cam, image: x}]\n  targets: [{}]\n",
        "profiling.services[0].name",
    ),
    "port outside 1-65535": (
        "profiling:\n  services: [{name: cam, image: x, ready: {tcp: 99999}}]\n  targets: [{}]\n",
        "profiling.services[0].ready.tcp",
    ),
    "probe with no kind": (
        "profiling:\n  services: [{name: cam, image: x, ready: {}}]\n  targets: [{}]\n",
        "profiling.services[0].ready",
    ),
    "unknown matrix key": (
        "profiling:\n  targets: [{matrix: {threads: [1, 2]}}]\n",
        "profiling.targets[0].matrix.threads",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_cli_run_exits_2_with_one_sentence(tmp_path: Path, case: str) -> None:
    body, key = BAD_SPECS[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: a\nimage: no-such-image:never\n" + body)
    db = tmp_path / "runs.db"
    # an engine address that cannot answer: the spec must fail before edgeprof asks it anything
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = subprocess.run(
        [sys.executable, "-m", "edgeprof.cli.main", "run", str(spec), "--db", str(db)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert err.startswith(f"edgeprof: error: {spec}:"), err
    assert f"'{key}'" in err and "\n" not in err and "Traceback" not in err
    assert proc.stdout == ""
    assert not db.exists()  # nothing was stored either
