"""Profile specs: the Waggle sage.yaml shape, plan(), and one clear error per bad input."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from edgeprof.errors import SpecError, UserError
from edgeprof.plan import plan
from edgeprof.spec import load_spec, parse_size, parse_spec

SAGE_YAML = """\
name: objcounter
namespace: waggle
version: "0.0.0"
description: "Object Counter"
source:
    architectures:
        - linux/arm64
    url: https://github.com/waggle-sensor/plugin-objectcounter.git
inputs:
    - id: interval
      type: int
metadata:
  ontology: env.counter
testing:
  command: [test.py]
profiling:
  targets:
    - {args: "-interval 1 --use-gpu", timeout: 120}
    - {args: "--use-gpu", timeout: 60}
    - {args: "--use-cpu", timeout: 0}
  metrics: ['system', 'gpu-summary']
"""


def _write(tmp_path: Path, text: str, name: str = "sage.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def _error(tmp_path: Path, text: str) -> tuple[str, Path]:
    p = _write(tmp_path, text)
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    return str(ei.value), p


def _assert_where(msg: str, path: Path, line: int, key: str | None) -> None:
    assert msg.startswith(f"{path}:{line}: "), msg
    if key is not None:
        assert f"'{key}'" in msg, msg
    assert "\n" not in msg


# -- the Waggle example ---------------------------------------------------------------------


def test_waggle_sage_yaml_loads(tmp_path: Path) -> None:
    loaded = load_spec(_write(tmp_path, SAGE_YAML))
    spec = loaded.spec
    assert loaded.path == str(tmp_path / "sage.yaml")
    assert loaded.text == SAGE_YAML
    assert spec.name == "objcounter"
    assert spec.image_ref() == "waggle/objcounter:0.0.0"
    assert spec.profiling.metrics == ["system", "gpu-summary"]
    assert spec.profiling.interval == 1.0
    runs = plan(spec)
    assert [r.name for r in runs] == ["t1", "t2", "t3"]
    assert [r.index for r in runs] == [0, 1, 2]
    assert [r.argv for r in runs] == [
        ["-interval", "1", "--use-gpu"],
        ["--use-gpu"],
        ["--use-cpu"],
    ]
    assert [r.target.timeout for r in runs] == [120, 60, 0]
    assert all(r.repeat_index == 0 for r in runs)


def test_version_number_becomes_string_and_defaults() -> None:
    spec = parse_spec("name: app\nversion: 1.2\nprofiling:\n  targets: [{}]\n").spec
    assert spec.version == "1.2"
    assert spec.image_ref() == "app:1.2"
    assert parse_spec("name: app\nprofiling:\n  targets: [{}]\n").spec.image_ref() == "app:latest"
    spec = parse_spec("name: app\nprofiling:\n  targets: [{}]\n").spec
    assert spec.profiling.metrics == ["container", "system"]
    assert plan(spec)[0].argv == []


def test_image_overrides_namespace_name_version() -> None:
    spec = parse_spec(
        "name: objcounter\nnamespace: waggle\nversion: '0.0.0'\n"
        "image: registry.local/objcounter:dev\nprofiling:\n  targets: [{}]\n"
    ).spec
    assert spec.image_ref() == "registry.local/objcounter:dev"


def test_args_string_is_split_like_a_shell_and_list_is_kept() -> None:
    spec = parse_spec(
        textwrap.dedent(
            """\
            name: a
            profiling:
              targets:
                - args: "--model 'yolo v8.pt' --thr=0.5"
                - args: ["--model", "yolo v8.pt", "it's"]
            """
        )
    ).spec
    a, b = plan(spec)
    assert a.argv == ["--model", "yolo v8.pt", "--thr=0.5"]
    assert b.argv == ["--model", "yolo v8.pt", "it's"]


def test_env_as_list_or_dict_and_merge_order() -> None:
    spec = parse_spec(
        textwrap.dedent(
            """\
            name: a
            run:
              env: [A=1, B=x=y, EMPTY=]
            profiling:
              targets:
                - name: list
                  env: [B=2, C=3]
                - name: dict
                  env: {C: 4, N: null}
            """
        )
    ).spec
    assert spec.run.env == {"A": "1", "B": "x=y", "EMPTY": ""}
    t1, t2 = plan(spec)
    assert t1.env == {"A": "1", "B": "2", "EMPTY": "", "C": "3"}
    assert t2.env == {"A": "1", "B": "x=y", "EMPTY": "", "C": "4", "N": ""}


def test_repeat_expands_to_numbered_runs() -> None:
    spec = parse_spec(
        "name: a\nprofiling:\n  targets:\n    - {name: gpu, args: --gpu, repeat: 3}\n"
        "    - {args: --cpu}\n"
    ).spec
    runs = plan(spec)
    assert [r.name for r in runs] == ["gpu#1", "gpu#2", "gpu#3", "t2"]
    assert [r.repeat_index for r in runs] == [0, 1, 2, 0]
    assert [r.index for r in runs] == [0, 1, 2, 3]
    assert all(r.argv == ["--gpu"] for r in runs[:3])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("256m", 256 * 1024**2),
        ("1g", 1024**3),
        ("1G", 1024**3),
        ("512MiB", 512 * 1024**2),
        ("1.5g", int(1.5 * 1024**3)),
        ("64k", 65536),
        ("1048576", 1048576),
        (1048576, 1048576),
    ],
)
def test_parse_size(value: int | str, expected: int) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["lots", "-1m", "0", 0, -5, True, "1x"])
def test_parse_size_rejects(value: int | str) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


def test_resources_sizes_in_spec() -> None:
    spec = parse_spec(
        textwrap.dedent(
            """\
            name: a
            profiling:
              targets:
                - resources: {cpus: 0.5, memory: 256m, shm_size: 1g, pids_limit: 100}
                - resources: {memory: 134217728}
            """
        )
    ).spec
    r0 = spec.profiling.targets[0].resources
    assert (r0.cpus, r0.memory, r0.shm_size, r0.pids_limit) == (0.5, 256 * 1024**2, 1024**3, 100)
    assert spec.profiling.targets[1].resources.memory == 134217728
    assert spec.profiling.targets[1].resources.cpus is None


def test_run_options_merged_with_target_run() -> None:
    spec = parse_spec(
        textwrap.dedent(
            """\
            name: a
            run:
              volumes: [/data:/data:ro]
              devices: [/dev/video0]
              env: {A: "1", B: "1"}
              network: host
              shm_size: 1g
              gpus: all
              ipc: host
            profiling:
              targets:
                - name: base
                - name: over
                  run:
                    volumes: [/models:/models]
                    env: {B: "2"}
                    gpus: "device=1"
                    network: none
                    ulimits: {memlock: -1, nofile: {soft: 1024, hard: 2048}}
            """
        )
    ).spec
    base, over = plan(spec)
    assert base.run == spec.run
    assert over.run.volumes == ["/data:/data:ro", "/models:/models"]
    assert over.run.devices == ["/dev/video0"]
    assert over.run.env == {"A": "1", "B": "2"}
    assert over.env == {"A": "1", "B": "2"}
    assert over.run.gpus == "device=1"
    assert over.run.network == "none"
    assert over.run.ipc == "host"  # not overridden: kept from the run level
    assert over.run.shm_size == 1024**3
    assert over.run.ulimits["memlock"] == -1
    nofile = over.run.ulimits["nofile"]
    assert not isinstance(nofile, int)
    assert (nofile.soft, nofile.hard) == (1024, 2048)


@pytest.mark.parametrize(("gpus", "expected"), [("all", "all"), (2, 2), ("'1'", 1)])
def test_gpus_values(gpus: object, expected: object) -> None:
    spec = parse_spec(f"name: a\nrun: {{gpus: {gpus}}}\nprofiling:\n  targets: [{{}}]\n").spec
    assert spec.run.gpus == expected


# -- errors: one sentence naming file:line and key path ---------------------------------------


def test_unknown_key_names_path_and_line(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: objcounter
        profiling:
          targets:
            - args: --a
              timeout: 5
            - args: --b
              timout: 60
        """,
    )
    _assert_where(msg, p, 7, "profiling.targets[1].timout")
    assert "spelling" in msg


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: objcounter
        profiling:
          targets: [
            - args: a
        """,
    )
    assert re.match(rf"{re.escape(str(p))}:\d+: YAML syntax error", msg), msg
    assert msg.startswith(f"{p}:4: ")


def test_tab_indentation_is_a_syntax_error_with_line(tmp_path: Path) -> None:
    p = tmp_path / "tab.yaml"
    p.write_text("name: a\nprofiling:\n\ttargets: []\n")
    with pytest.raises(SpecError, match=rf"^{re.escape(str(p))}:3: YAML syntax error"):
        load_spec(p)


def test_wrong_type(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: objcounter
        profiling:
          targets:
            - args: --a
            - args: --b
              timeout: soon
        """,
    )
    _assert_where(msg, p, 6, "profiling.targets[1].timeout")
    assert "'soon'" in msg


def test_wrong_type_in_union_does_not_leak_type_tags(tmp_path: Path) -> None:
    msg, p = _error(tmp_path, "name: a\nprofiling:\n  targets:\n    - args: {a: 1}\n")
    _assert_where(msg, p, 4, "profiling.targets[0].args")
    msg, p = _error(tmp_path, "name: a\nrun:\n  entrypoint: {a: 1}\nprofiling:\n  targets: [{}]\n")
    _assert_where(msg, p, 3, "run.entrypoint")
    msg, p = _error(
        tmp_path,
        "name: a\nrun:\n  ulimits: {nofile: {soft: 1, hard: x}}\nprofiling:\n  targets: [{}]\n",
    )
    _assert_where(msg, p, 3, "run.ulimits.nofile")


def test_unknown_metric_group(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: objcounter
        profiling:
          targets: [{}]
          metrics: [system, gpu]
        """,
    )
    _assert_where(msg, p, 4, "profiling.metrics")
    assert "'gpu'" in msg and "gpu-summary" in msg


@pytest.mark.parametrize("gpus", ["two", "true", "-1"])
def test_bad_gpus(tmp_path: Path, gpus: str) -> None:
    msg, p = _error(
        tmp_path,
        f"""\
        name: objcounter
        profiling:
          targets:
            - args: a
              run:
                gpus: {gpus}
        """,
    )
    _assert_where(msg, p, 6, "profiling.targets[0].run.gpus")
    assert "device=" in msg


def test_missing_profiling_section(tmp_path: Path) -> None:
    msg, p = _error(tmp_path, "name: objcounter\nversion: '1'\n")
    _assert_where(msg, p, 1, "profiling")
    assert "missing" in msg


def test_empty_targets(tmp_path: Path) -> None:
    msg, p = _error(tmp_path, "name: a\nprofiling:\n  targets: []\n")
    _assert_where(msg, p, 3, "profiling.targets")


def test_duplicate_target_names(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: objcounter
        profiling:
          targets:
            - name: gpu
            - name: cpu
            - name: gpu
              args: --again
        """,
    )
    _assert_where(msg, p, 6, "profiling.targets[2].name")
    assert "'gpu'" in msg and "unique" in msg


def test_explicit_name_clashing_with_default_name(tmp_path: Path) -> None:
    msg, p = _error(tmp_path, "name: a\nprofiling:\n  targets:\n    - name: t2\n    - args: x\n")
    assert msg.startswith(f"{p}:5: ") and "'t2'" in msg


def test_interval_below_10ms(tmp_path: Path) -> None:
    msg, p = _error(tmp_path, "name: a\nprofiling:\n  interval: 0.005\n  targets: [{}]\n")
    _assert_where(msg, p, 3, "profiling.interval")
    assert "0.01" in msg
    # 10 ms itself is accepted
    assert parse_spec("name: a\nprofiling:\n  interval: 0.01\n  targets: [{}]\n").spec


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_non_mapping_document(tmp_path: Path, text: str) -> None:
    msg, p = _error(tmp_path, text)
    assert msg.startswith(f"{p}")
    assert "mapping" in msg and "profiling" in msg


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope" / "sage.yaml"
    with pytest.raises(SpecError) as ei:
        load_spec(p)
    assert str(ei.value).startswith(f"{p}: no such file")


def test_spec_error_is_a_user_error() -> None:
    assert issubclass(SpecError, UserError)
    assert SpecError("x").exit_code == 2


@pytest.mark.parametrize(
    ("snippet", "key", "line"),
    [
        ("targets:\n    - repeat: 0", "profiling.targets[0].repeat", 4),
        ("targets:\n    - name: 'bad name'", "profiling.targets[0].name", 4),
        ('targets:\n    - args: "\'unterminated"', "profiling.targets[0].args", 4),
        ("targets:\n    - resources: {memory: lots}", "profiling.targets[0].resources.memory", 4),
        ("targets:\n    - env: [NOEQUALS]", "profiling.targets[0].env", 4),
        ("targets:\n    - run: {volumes: [/no-colon]}", "profiling.targets[0].run.volumes", 4),
        ("targets: [{}]\n  grace: -1", "profiling.grace", 4),
        ("targets: [{}]\n  app_metrics: {udp_port: 70000}", "profiling.app_metrics.udp_port", 4),
    ],
)
def test_other_invalid_values(tmp_path: Path, snippet: str, key: str, line: int) -> None:
    msg, p = _error(tmp_path, f"name: a\nprofiling:\n  {snippet}\n")
    _assert_where(msg, p, line, key)


# -- services, scenarios, matrix: models and their errors ------------------------------------

SERVICES_YAML = """\
name: objcounter
profiling:
  services:
    - name: playback
      image: waggle/playback-server:0.1
      args: [--port, 8090]
      env: [MODE=loop]
      volumes: [/videos:/videos:ro]
      ready: {http: {port: 8090, path: /bottom/image.jpg}}
      start_timeout: 30
    - name: broker
      image: eclipse-mosquitto:2
      scope: run
      profile: true
      ready: {tcp: 1883}
    - {name: logs, image: x, ready: {log: "listening on .*"}}
    - {name: health, image: x, ready: {healthcheck: true}}
  data_config: {bottom_camera: "http://playback:8090/bottom/live.mp4"}
  scenarios:
    - {name: both, together: [gpu, cpu]}
  targets:
    - name: gpu
    - name: cpu
"""


def test_services_scenarios_and_data_config_load() -> None:
    prof = parse_spec(SERVICES_YAML).spec.profiling
    play, broker, logs, health = prof.services
    assert (play.name, play.image, play.argv(), play.env) == (
        "playback",
        "waggle/playback-server:0.1",
        ["--port", "8090"],
        {"MODE": "loop"},
    )
    assert play.volumes == ["/videos:/videos:ro"]
    assert (play.start_timeout, play.profile, play.scope) == (30, False, "target")
    assert play.ready is not None and play.ready.http is not None
    assert (play.ready.kind, play.ready.http.port, play.ready.http.path) == (
        "http",
        8090,
        "/bottom/image.jpg",
    )
    assert (broker.scope, broker.profile, broker.start_timeout) == ("run", True, 60)
    assert broker.ready is not None and (broker.ready.kind, broker.ready.tcp) == ("tcp", 1883)
    assert logs.ready is not None and (logs.ready.kind, logs.ready.log) == (
        "log",
        "listening on .*",
    )
    assert health.ready is not None and health.ready.kind == "healthcheck"
    assert prof.data_config == {"bottom_camera": "http://playback:8090/bottom/live.mp4"}
    assert [(s.name, s.together) for s in prof.scenarios] == [("both", ["gpu", "cpu"])]
    # defaults: no services, no data_config, no scenarios, ready once running
    bare = parse_spec("name: a\nprofiling:\n  services: [{name: s, image: x}]\n  targets: [{}]\n")
    assert bare.spec.profiling.services[0].ready is None
    assert bare.spec.profiling.scenarios == [] and bare.spec.profiling.data_config is None


def test_service_name_is_a_hostname_label_in_any_case() -> None:
    for name in ("playback", "Play-Back-2", "a", "x" * 63, "9lives"):
        spec = parse_spec(
            f"name: a\nprofiling:\n  services: [{{name: {name}, image: x}}]\n  targets: [{{}}]\n"
        ).spec
        assert spec.profiling.services[0].name == name


SVC = "name: a\nprofiling:\n  targets: [{name: gpu}, {name: cpu}]\n  services:\n    - name: playback\n      image: x\n"


@pytest.mark.parametrize(
    ("extra", "line", "key", "words"),
    [
        ("      ready: {tcp: 70000}\n", 7, "profiling.services[0].ready.tcp", ["70000", "1-65535"]),
        ("      ready: {tcp: 0}\n", 7, "profiling.services[0].ready.tcp", ["port 0", "1-65535"]),
        (
            "      ready: {http: {port: 65536}}\n",
            7,
            "profiling.services[0].ready.http.port",
            ["65536", "1-65535"],
        ),
        (
            "      ready: {tcp: web}\n",
            7,
            "profiling.services[0].ready.tcp",
            ["'web'", "1 and 65535"],
        ),
        (
            "      ready: {}\n",
            7,
            "profiling.services[0].ready",
            ["needs one kind: tcp, http, log or healthcheck"],
        ),
        (
            "      ready: {tcp: 80, http: {port: 80}}\n",
            7,
            "profiling.services[0].ready",
            ["tcp and http are both set", "keep one"],
        ),
        (
            "      ready: {log: 'up ('}\n",
            7,
            "profiling.services[0].ready.log",
            ["'up ('", "regular expression"],
        ),
        (
            "      ready: {healthcheck: false}\n",
            7,
            "profiling.services[0].ready.healthcheck",
            ["healthcheck: true"],
        ),
        (
            "      ready: {http: {port: 80, path: image.jpg}}\n",
            7,
            "profiling.services[0].ready.http.path",
            ["'image.jpg'", "start with '/'"],
        ),
        ("      ready: {udp: 80}\n", 7, "profiling.services[0].ready.udp", ["spelling"]),
        # a port is digits: int() would take these
        *(
            (f"      ready: {{tcp: '{v}'}}\n", 7, "profiling.services[0].ready.tcp", ["digits"])
            for v in ("8_0", "+80", " 80 ", "٨٠")
        ),
        (
            "      ready: {http: {port: '8_090'}}\n",
            7,
            "profiling.services[0].ready.http.port",
            ["'8_090'", "digits"],
        ),
        # an empty pattern matches every line: the service would be "ready" at its first line
        *(
            (f"      ready: {{log: '{v}'}}\n", 7, "profiling.services[0].ready.log", ["empty"])
            for v in ("", "  ")
        ),
        *(
            (
                f'      ready: {{http: {{port: 80, path: "{v}"}}}}\n',
                7,
                "profiling.services[0].ready.http.path",
                ["percent-encode", "%20"],
            )
            for v in ("/a b", "/a\\tb", "/caméra")
        ),
        *(
            (f"      start_timeout: {v}\n", 7, "profiling.services[0].start_timeout", [])
            for v in (".inf", ".nan", "3601")
        ),
        ("      start_timeout: 0\n", 7, "profiling.services[0].start_timeout", []),
        ("      scope: always\n", 7, "profiling.services[0].scope", []),
        ("      volumes: [/nocolon]\n", 7, "profiling.services[0].volumes", ["HOST_PATH"]),
        (
            "    - {name: PlayBack, image: y}\n",
            7,
            "profiling.services[1].name",
            ["'PlayBack'", "used twice", "profiling.services", "unique"],
        ),
        (
            "    - {name: playback, image: y, scope: run}\n",
            7,
            "profiling.services[1].name",
            ["used twice"],
        ),
    ],
)
def test_bad_service(tmp_path: Path, extra: str, line: int, key: str, words: list[str]) -> None:
    msg, p = _error(tmp_path, SVC + extra)
    _assert_where(msg, p, line, key)
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("name", ["play_back", "-play", "play-", "play.back", "x" * 64, "på"])
def test_service_name_not_a_hostname(tmp_path: Path, name: str) -> None:
    msg, p = _error(
        tmp_path,
        f"name: a\nprofiling:\n  targets: [{{}}]\n  services:\n    - name: '{name}'\n      image: x\n",
    )
    _assert_where(msg, p, 5, "profiling.services[0].name")
    assert f"{name!r}" in msg and "not a valid hostname" in msg


def test_target_service_with_run_scope(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: a
        profiling:
          targets:
            - name: gpu
              services:
                - name: playback
                  image: x
                  scope: run
        """,
    )
    _assert_where(msg, p, 8, "profiling.targets[0].services[0].scope")
    assert "run scope belongs on profiling.services" in msg


def test_two_services_of_one_name_on_a_target(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: a
        profiling:
          targets:
            - name: gpu
              services:
                - {name: playback, image: x}
                - {name: playback, image: y}
        """,
    )
    _assert_where(msg, p, 7, "profiling.targets[0].services[1].name")
    assert "used twice" in msg


def test_target_service_named_like_a_run_scope_service(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: a
        profiling:
          services: [{name: broker, image: x, scope: run}]
          targets:
            - name: gpu
              services: [{name: broker, image: y}]
        """,
    )
    _assert_where(msg, p, 6, "profiling.targets[0].services[0].name")
    assert "'broker'" in msg and "run-scope" in msg and "rename one" in msg


@pytest.mark.parametrize("network", ["host", "none", "bridge"])
def test_services_with_a_network_of_their_own(tmp_path: Path, network: str) -> None:
    # on the spec's run: every target with services is hit; the first one is named
    msg, p = _error(
        tmp_path,
        f"name: a\nrun: {{network: {network}}}\nprofiling:\n"
        "  services: [{name: playback, image: x}]\n  targets: [{name: gpu}]\n",
    )
    _assert_where(msg, p, 2, "run.network")
    assert f"network {network!r}" in msg and "'gpu'" in msg and "remove run.network" in msg
    # on the target itself, with the target's own service
    msg, p = _error(
        tmp_path,
        f"""\
        name: a
        profiling:
          targets:
            - name: cpu
            - name: gpu
              services: [{{name: playback, image: x}}]
              run:
                network: {network}
        """,
    )
    _assert_where(msg, p, 8, "profiling.targets[1].run.network")
    assert "remove profiling.targets[1].run.network" in msg


def test_network_is_fine_without_services_and_a_target_may_reset_it() -> None:
    assert parse_spec("name: a\nrun: {network: host}\nprofiling:\n  targets: [{}]\n").spec
    # a target that sets network back to null (docker's default) may have services
    spec = parse_spec(
        "name: a\nrun: {network: host}\nprofiling:\n  targets:\n"
        "    - {services: [{name: s, image: x}], run: {network: null}}\n"
    ).spec
    assert spec.profiling.targets[0].run is not None


def test_data_config_needs_urls(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        "name: a\nprofiling:\n  targets:\n    - data_config: {top: ' '}\n",
    )
    _assert_where(msg, p, 4, "profiling.targets[0].data_config.top")
    assert "'top' has no URL" in msg
    msg, p = _error(tmp_path, "name: a\nprofiling:\n  data_config: [a]\n  targets: [{}]\n")
    _assert_where(msg, p, 3, "profiling.data_config")


# -- scenarios ---------------------------------------------------------------------------------

SCEN = "name: a\nprofiling:\n  targets:\n    - name: gpu\n      matrix: {cpus: [0.5, 1]}\n    - name: cpu\n  scenarios:\n"


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        (
            "    - {name: both, together: [gpu-1, cpux]}\n",
            "profiling.scenarios[0].together[1]",
            ["'cpux'", "'both'", "gpu-0.5, gpu-1, cpu"],
        ),
        (
            "    - {name: both, together: [gpu, cpu]}\n",
            "profiling.scenarios[0].together[0]",
            ["'gpu'", "expanded by its matrix", "gpu-0.5, gpu-1"],
        ),
        (
            "    - {name: both, together: [cpu#1, gpu-1]}\n",
            "profiling.scenarios[0].together[0]",
            ["'cpu#1'"],
        ),
        (
            "    - {name: both, together: [cpu, cpu]}\n",
            "profiling.scenarios[0].together[1]",
            ["'cpu' twice"],
        ),
        (
            "    - {name: both, together: [cpu]}\n",
            "profiling.scenarios[0].together",
            ["at least two"],
        ),
        ("    - {name: both}\n", "profiling.scenarios[0].together", ["missing"]),
        (
            "    - {name: 'a/b', together: [cpu, gpu-1]}\n",
            "profiling.scenarios[0].name",
            ["'a/b'"],
        ),
        (
            "    - {name: x, together: [cpu, gpu-1]}\n    - {name: x, together: [gpu-0.5, cpu]}\n",
            "profiling.scenarios[1].name",
            ["'x' is used twice"],
        ),
    ],
)
def test_bad_scenario(tmp_path: Path, entry: str, key: str, words: list[str]) -> None:
    msg, p = _error(tmp_path, SCEN + entry)
    line = 9 if "[1]" in key.split(".")[1] else 8
    _assert_where(msg, p, line, key)
    for w in words:
        assert w in msg, msg


# -- matrix ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("matrix", "key", "words"),
    [
        (
            "{cpu: [1, 2]}",
            "profiling.targets[0].matrix.cpu",
            ["unknown matrix key 'cpu'", "env.NAME"],
        ),
        ("{timeout: [1, 2]}", "profiling.targets[0].matrix.timeout", ["unknown matrix key"]),
        ("{env.: [1]}", "profiling.targets[0].matrix.env.", ["unknown matrix key"]),
        ("{cpus: 1}", "profiling.targets[0].matrix.cpus", ["needs a list"]),
        ("{cpus: []}", "profiling.targets[0].matrix.cpus", ["needs a list"]),
        ("{}", "profiling.targets[0].matrix", ["empty"]),
        ("[cpus]", "profiling.targets[0].matrix", ["map keys to lists"]),
        ("{cpus: [1, -1]}", "profiling.targets[0].matrix.cpus[1]", ["-1", "cpus"]),
        ("{memory: [1g, lots]}", "profiling.targets[0].matrix.memory[1]", ["'lots'", "size"]),
        ("{args: ['ok', \"'open\"]}", "profiling.targets[0].matrix.args[1]", ["shell line"]),
        ("{args: [{a: 1}]}", "profiling.targets[0].matrix.args[0]", ["shell line or a list"]),
        ("{env.MODE: [[1]]}", "profiling.targets[0].matrix.env.MODE[0]", ["single value"]),
        *(
            (
                f"{{'{k}': [1, 2]}}",
                f"profiling.targets[0].matrix.{k}",
                [f"'{k}'", "environment variable"],
            )
            for k in ("env.A=B", "env.A B", "env. ")
        ),
    ],
)
def test_bad_matrix(tmp_path: Path, matrix: str, key: str, words: list[str]) -> None:
    msg, p = _error(
        tmp_path, f"name: a\nprofiling:\n  targets:\n    - name: t\n      matrix: {matrix}\n"
    )
    _assert_where(msg, p, 5, key)
    for w in words:
        assert w in msg, msg


def test_matrix_checks_every_combination_with_the_target(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: a
        profiling:
          targets:
            - name: t
              resources: {memory: 256m, memory_swap: 512m}
              matrix:
                memory: [256m, 1g]
        """,
    )
    _assert_where(msg, p, 7, "profiling.targets[0].matrix.memory[1]")
    assert "'1g'" in msg and "memory_swap" in msg


def test_matrix_too_large(tmp_path: Path) -> None:
    values = list(range(1, 33))
    msg, p = _error(
        tmp_path,
        f"name: a\nprofiling:\n  targets:\n    - matrix: {{cpu_shares: {[v + 1 for v in values]}, env.N: {values}}}\n",
    )
    _assert_where(msg, p, 4, "profiling.targets[0].matrix")
    assert "1024 targets" in msg and "1000" in msg


def test_target_name_used_twice_after_matrix_expansion(tmp_path: Path) -> None:
    msg, p = _error(
        tmp_path,
        """\
        name: a
        profiling:
          targets:
            - name: infer-1
            - name: infer
              matrix: {cpus: [0.5, 1]}
        """,
    )
    _assert_where(msg, p, 6, "profiling.targets[1].matrix")
    assert "'infer-1' is used twice" in msg and "profiling.targets[0]" in msg
    assert "through its matrix" in msg and "unique" in msg
    # the other way round: the plain target comes second
    msg, p = _error(
        tmp_path,
        "name: a\nprofiling:\n  targets:\n    - {name: infer, matrix: {cpus: [1]}}\n"
        "    - name: infer-1\n",
    )
    _assert_where(msg, p, 5, "profiling.targets[1].name")
    assert "'infer-1' is used twice" in msg


def test_matrix_values_alike_but_for_punctuation_are_named_by_position() -> None:
    def names(matrix: str) -> list[str]:
        text = f"name: a\nprofiling:\n  targets:\n    - name: t\n      matrix: {matrix}\n"
        return [tr.name for tr in plan(parse_spec(text).spec)]

    # within one key: that key's values go by position, the other keys keep their values
    assert names("{cpus: [1, 2], cpuset: ['0-1', '0,1']}") == ["t-1-1", "t-1-2", "t-2-1", "t-2-2"]
    assert names("{env.A: ['x y', 'x-y'], memory: [1g]}") == ["t-1-1g", "t-2-1g"]
    runs = plan(
        parse_spec(
            "name: a\nprofiling:\n  targets:\n    - {name: t, matrix: {args: ['--n 1', '--n=1']}}\n"
        ).spec
    )
    assert [(r.name, r.argv) for r in runs] == [("t-1", ["--n", "1"]), ("t-2", ["--n=1"])]
    assert [
        r.target.resources.cpuset
        for r in plan(
            parse_spec(
                "name: a\nprofiling:\n  targets:\n    - {name: t, matrix: {cpuset: ['0-1', '0,1']}}\n"
            ).spec
        )
    ] == ["0-1", "0,1"]
    # across keys (parts joining alike): every key by position
    assert names("{env.A: ['x-y', x], env.B: [z, 'y-z']}") == ["t-1-1", "t-1-2", "t-2-1", "t-2-2"]
    # values that differ keep their names
    assert names("{cpus: [0.5, 1]}") == ["t-0.5", "t-1"]


def test_matrix_args_booleans_are_true_and_false_like_a_targets_args() -> None:
    spec = parse_spec(
        "name: a\nprofiling:\n  targets:\n"
        "    - {name: t, args: [-v, yes], matrix: {args: [on, off, [no, 2]]}}\n"
    ).spec
    assert [(r.name, r.argv) for r in plan(spec)] == [
        ("t-true", ["-v", "true", "true"]),
        ("t-false", ["-v", "true", "false"]),
        ("t-false-2", ["-v", "true", "false", "2"]),
    ]


def test_env_booleans_are_true_and_false() -> None:
    spec = parse_spec(
        "name: a\nrun: {env: {R: yes}}\nprofiling:\n  targets:\n"
        "    - {name: t, env: {A: on, B: off, C: null, D: 1}, matrix: {env.M: [on, 'on']}}\n"
    ).spec
    runs = plan(spec)
    assert [r.env for r in runs] == [
        {"R": "true", "A": "true", "B": "false", "C": "", "D": "1", "M": m} for m in ("true", "on")
    ]
    assert [r.name for r in runs] == ["t-true", "t-on"]


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        (
            "  targets: [{name: gpu}, {name: cpu}]\n  scenarios:\n    - {name: gpu, together: [gpu, cpu]}\n",
            5,
            "profiling.scenarios[0].name",
            ["scenario name 'gpu'", "also a target's name", "rename the scenario"],
        ),
        (
            "  targets: [{name: gpu, matrix: {cpus: [1, 2]}}, {name: cpu}]\n  scenarios:\n"
            "    - {name: gpu-2, together: [gpu-1, cpu]}\n",
            5,
            "profiling.scenarios[0].name",
            ["'gpu-2'", "also a target's name"],
        ),
        (
            "  targets: [{}, {}]\n  scenarios:\n    - {name: t2, together: [t1, t2]}\n",
            5,
            "profiling.scenarios[0].name",
            ["'t2'", "also a target's name"],
        ),
        (
            "  targets: [{name: gpu}, {name: cpu}]\n  scenarios:\n    - {name: service, together: [gpu, cpu]}\n",
            5,
            "profiling.scenarios[0].name",
            ["'service' is reserved", "service/NAME", "rename the scenario"],
        ),
        (
            "  targets: [{name: gpu}, {name: service}]\n",
            3,
            "profiling.targets[1].name",
            ["target name 'service' is reserved", "rename the target"],
        ),
    ],
)
def test_names_that_would_clash_with_service_and_member_rows(
    tmp_path: Path, text: str, line: int, key: str, words: list[str]
) -> None:
    msg, p = _error(tmp_path, "name: a\nprofiling:\n" + text)
    _assert_where(msg, p, line, key)
    for w in words:
        assert w in msg, msg
