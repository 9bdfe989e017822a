"""``runs.meta``: device, CI, image and tags of a run (``edgeprof.farm.meta``).

Device facts are read from fake roots built in ``tmp_path`` (the recorded Jetson files of
``tests/data/jetson-root`` where they exist), CI facts from environment dicts as Jenkins,
GitHub Actions and GitLab set them, git facts from a real repository made here. The last
test runs ``edgeprof run --tag build=42`` on the real engine and reads the stored meta back.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeprof.analyze.summary import summarize
from edgeprof.engine.fake import FakeEngine, Script
from edgeprof.errors import UserError
from edgeprof.farm.meta import (
    ci_meta,
    device_meta,
    dpkg_versions,
    git_head,
    image_meta,
    meta_fields,
    meta_lines,
    parse_tags,
    run_meta,
)
from edgeprof.hostinfo import HostCaps
from edgeprof.runner import RunSettings, run_profile
from edgeprof.spec import parse_spec
from edgeprof.store import open_store

DATA = Path(__file__).resolve().parent.parent / "data"
CLI = [sys.executable, "-m", "edgeprof.cli.main"]

# /proc/cpuinfo of an arm64 kernel on a Jetson Orin: no model name, only the part number
ORIN_CPUINFO = (
    "processor\t: 0\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"
    "CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd42\nCPU revision\t: 1\n"
)

# dpkg status stanzas as installed on a Jetson AGX Xavier with JetPack 5.1.1: the versions
# are those `apt show nvidia-jetpack` / `dpkg-query --show nvidia-l4t-core` printed there
XAVIER_DPKG = """\
Package: nvidia-l4t-core
Status: install ok installed
Priority: standard
Section: misc
Installed-Size: 12345
Maintainer: NVIDIA Corporation
Architecture: arm64
Version: 35.3.1-20230319081403
Description: NVIDIA Core Package
 Core libraries of L4T.
 .
 More text.

Package: nvidia-jetpack
Status: install ok installed
Priority: standard
Section: metapackages
Installed-Size: 194
Maintainer: NVIDIA Corporation
Architecture: arm64
Source: nvidia-jetpack (5.1.1)
Version: 5.1.1-b56
Depends: nvidia-jetpack-runtime (= 5.1.1-b56), nvidia-jetpack-dev (= 5.1.1-b56)
Description: NVIDIA Jetpack Meta Package

Package: bash
Status: install ok installed
Version: 5.0-6ubuntu1.2
"""


def _jetson_root(tmp_path: Path) -> tuple[str, str, str, str]:
    root = tmp_path / "root"
    shutil.copytree(DATA / "jetson-root", root)
    proc, sys_, etc, var = (root / d for d in ("proc", "sys", "etc", "var"))
    (proc / "cpuinfo").write_text(ORIN_CPUINFO)
    (proc / "meminfo").write_text("MemTotal:       31584776 kB\nMemFree:  1000 kB\n")
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "hostname").write_text("orin-07\n")
    (proc / "sys" / "kernel" / "osrelease").write_text("5.10.120-tegra\n")
    (sys_ / "devices" / "system" / "cpu").mkdir(parents=True)
    (sys_ / "devices" / "system" / "cpu" / "present").write_text("0-11\n")
    (etc / "os-release").write_text(
        'NAME="Ubuntu"\nVERSION_ID="20.04"\nPRETTY_NAME="Ubuntu 20.04.6 LTS"\nID=ubuntu\n'
    )
    return str(proc), str(sys_), str(etc), str(var)


ENGINE = {"engine": "docker", "engine_version": "24.0.5", "os": "Ubuntu 20.04.6 LTS"}
JETSON_GPU = {"gpu": "jetson", "jetson_model": "x", "l4t_release": "R35.4.1"}
NVML_GPU = {
    "gpu": "nvidia",
    "gpus": [{"index": 0, "name": "Tesla T4"}],
    "model": "Tesla T4",
    "driver_version": "535.104.05",
    "cuda_driver_version": "12.2",
}


# -- device ---------------------------------------------------------------------------------


def test_jetson_device_from_recorded_files(tmp_path: Path) -> None:
    proc, sys_, etc, var = _jetson_root(tmp_path)
    d = device_meta(HostCaps(ncpu=8), ENGINE, JETSON_GPU, proc, sys_, etc, var)
    assert d == {
        "hostname": "orin-07",
        "model": "NVIDIA Jetson AGX Orin Developer Kit",  # /proc/device-tree/model, NUL cut
        "cpu_model": "ARMv8 part 0xd42",
        "cpu_cores": 12,  # 0-11 present (the 8 of caps are those online)
        "memory_bytes": 31584776 * 1024,
        "l4t": "R35.4.1",  # "# R35 (release), REVISION: 4.1, …"
        "os": "Ubuntu 20.04.6 LTS",
        "kernel": "5.10.120-tegra",
        "engine": "docker",
        "engine_version": "24.0.5",
        "arch": platform.machine(),
    }
    # no jetpack: this root has no dpkg status, and no L4T → JetPack table is guessed
    assert "jetpack" not in d and "gpu_model" not in d


def test_jetpack_and_l4t_from_dpkg_status(tmp_path: Path) -> None:
    proc, sys_, etc, var = _jetson_root(tmp_path)
    os.remove(os.path.join(etc, "nv_tegra_release"))
    os.makedirs(os.path.join(var, "lib", "dpkg"))
    with open(os.path.join(var, "lib", "dpkg", "status"), "w") as f:
        f.write(XAVIER_DPKG)
    d = device_meta(None, {}, JETSON_GPU, proc, sys_, etc, var)
    assert d["jetpack"] == "5.1.1"
    assert d["l4t"] == "R35.3.1"  # from nvidia-l4t-core when nv_tegra_release is absent
    assert dpkg_versions(["nvidia-jetpack", "bash", "absent"], var) == {
        "nvidia-jetpack": "5.1.1-b56",
        "bash": "5.0-6ubuntu1.2",
    }


def test_removed_package_is_not_read(tmp_path: Path) -> None:
    var = tmp_path / "var"
    (var / "lib" / "dpkg").mkdir(parents=True)
    (var / "lib" / "dpkg" / "status").write_text(
        "Package: nvidia-jetpack\nStatus: deinstall ok config-files\nVersion: 6.1+b123\n\n"
        "Package: nvidia-l4t-core\nStatus: install ok installed\nVersion: 36.4.0-20240912212859\n"
    )
    assert dpkg_versions(["nvidia-jetpack", "nvidia-l4t-core"], str(var)) == {
        "nvidia-l4t-core": "36.4.0-20240912212859"
    }
    (var / "lib" / "dpkg" / "status").write_text(
        "Package: nvidia-jetpack\nStatus: install ok installed\nVersion: 6.1+b123\n"
    )
    d = device_meta(
        None, {}, None, str(tmp_path / "p"), str(tmp_path / "s"), "/nonexistent", str(var)
    )
    assert d["jetpack"] == "6.1"


@pytest.mark.parametrize(
    ("vendor", "product", "want"),
    [
        ("Dell Inc.", "PowerEdge R740", "Dell Inc. PowerEdge R740"),
        ("Supermicro", "Super Server", "Supermicro Super Server"),
        ("LENOVO", "LENOVO ThinkStation P330", "LENOVO ThinkStation P330"),  # named already
        ("To be filled by O.E.M.", "X570 AORUS ELITE", "X570 AORUS ELITE"),  # placeholder
        ("System manufacturer", "System Product Name", None),  # placeholders only
        ("Micro-Star International Co., Ltd.", "Not Available", None),
        ("Gigabyte Technology Co., Ltd.", "Type1ProductConfigId", None),
        ("Micro-Star International Co., Ltd.", "INVALID", None),
        (None, None, None),
    ],
)
def test_x86_model_from_dmi(
    tmp_path: Path, vendor: str | None, product: str | None, want: str | None
) -> None:
    dmi = tmp_path / "sys" / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    if vendor is not None:
        (dmi / "sys_vendor").write_text(vendor + "\n")
    if product is not None:
        (dmi / "product_name").write_text(product + "\n")
    proc = tmp_path / "proc"
    proc.mkdir()
    d = device_meta(None, {}, NVML_GPU, str(proc), str(tmp_path / "sys"), str(tmp_path / "etc"))
    assert d.get("model") == want
    assert (d["gpu_model"], d["gpu_driver"], d["cuda"]) == ("Tesla T4", "535.104.05", "12.2")


def test_placeholder_product_takes_the_board_name(tmp_path: Path) -> None:
    dmi = tmp_path / "sys" / "class" / "dmi" / "id"
    dmi.mkdir(parents=True)
    for name, text in (
        ("sys_vendor", "System manufacturer"),
        ("product_name", "System Product Name"),
        ("board_vendor", "ASUSTeK COMPUTER INC."),
        ("board_name", "PRIME X570-PRO"),
    ):
        (dmi / name).write_text(text + "\n")
    d = device_meta(None, {}, None, str(tmp_path / "p"), str(tmp_path / "sys"), "/nonexistent")
    assert d["model"] == "ASUSTeK COMPUTER INC. PRIME X570-PRO"


def test_device_falls_back_to_engine_details(tmp_path: Path) -> None:
    d = device_meta(
        HostCaps(ncpu=3),
        {"os": "Docker Desktop", "kernel": "6.6.1-linuxkit", "engine": "podman"},
        {"gpu": None, "reason": "no NVML"},
        str(tmp_path),
        str(tmp_path),
        str(tmp_path),
    )
    assert d["os"] == "Docker Desktop"
    assert d["kernel"] == "6.6.1-linuxkit"
    assert d["cpu_cores"] == 3
    assert d["engine"] == "podman" and "engine_version" not in d
    assert d["hostname"] == platform.node()
    assert "model" not in d and "gpu_model" not in d and "memory_bytes" not in d


# -- CI -------------------------------------------------------------------------------------

JENKINS = {
    "JENKINS_URL": "https://ci.example.org/",
    "BUILD_URL": "https://ci.example.org/job/edge/job/main/42/",
    "BUILD_TAG": "jenkins-edge-main-42",
    "JOB_NAME": "edge/main",
    "NODE_NAME": "jetson-orin-1",
    "GIT_COMMIT": "ce9a3c1404e8c91be604088670e93434c4253f03",
    "GIT_BRANCH": "origin/release-2",
    "GIT_URL": "https://git.example.org/edge.git",
}
GITHUB = {
    "CI": "true",
    "GITHUB_ACTIONS": "true",
    "GITHUB_SHA": "ffac537e6cbbf934b08745a378932722df287a53",
    "GITHUB_REF": "refs/heads/main",
    "GITHUB_REF_NAME": "main",
    "GITHUB_HEAD_REF": "",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "octo/edge",
    "GITHUB_RUN_ID": "1658821493",
    "GITHUB_WORKFLOW": "profile",
    "RUNNER_NAME": "orin-runner-2",
}
GITLAB = {
    "CI": "true",
    "GITLAB_CI": "true",
    "CI_COMMIT_SHA": "1ecfd275763eff1d6b4844ea3168962458c9f27a",
    "CI_COMMIT_REF_NAME": "feature/x",
    "CI_COMMIT_BRANCH": "feature/x",
    "CI_JOB_URL": "https://gitlab.example.com/grp/edge/-/jobs/7046",
    "CI_JOB_NAME": "profile-orin",
    "CI_PIPELINE_ID": "1000",
    "CI_RUNNER_DESCRIPTION": "xavier shell runner",
    "CI_PROJECT_URL": "https://gitlab.example.com/grp/edge",
}
SECRETS = {
    "GITHUB_TOKEN": "ghs_secret_value_1",
    "CI_JOB_TOKEN": "glcbt-secret_value_2",
    "AWS_SECRET_ACCESS_KEY": "secret_value_3",
    "PGPASSWORD": "secret_value_4",
}


def test_jenkins() -> None:
    assert ci_meta({**JENKINS, **SECRETS}, None) == {
        "system": "jenkins",
        "commit": "ce9a3c1404e8c91be604088670e93434c4253f03",
        "branch": "release-2",  # origin/ stripped
        "build_url": "https://ci.example.org/job/edge/job/main/42/",
        "build_tag": "jenkins-edge-main-42",
        "job_name": "edge/main",
        "node_name": "jetson-orin-1",
        "repo": "https://git.example.org/edge.git",
    }
    # a multibranch pipeline's BRANCH_NAME is the branch itself
    assert ci_meta({**JENKINS, "BRANCH_NAME": "PR-24"}, None)["branch"] == "PR-24"


def test_github_actions() -> None:
    assert ci_meta({**GITHUB, **SECRETS}, None) == {
        "system": "github",
        "commit": "ffac537e6cbbf934b08745a378932722df287a53",
        "branch": "main",
        "build_url": "https://github.com/octo/edge/actions/runs/1658821493",
        "build_tag": "1658821493",
        "job_name": "profile",
        "node_name": "orin-runner-2",
        "repo": "https://github.com/octo/edge",
    }
    pr = {**GITHUB, "GITHUB_REF_NAME": "17/merge", "GITHUB_HEAD_REF": "fix-leak"}
    assert ci_meta(pr, None)["branch"] == "fix-leak"


def test_pull_request_and_tag_branches() -> None:
    # a Jenkins multibranch pull request: BRANCH_NAME is "PR-24", the branch CHANGE_BRANCH
    pr = {**JENKINS, "BRANCH_NAME": "PR-24", "CHANGE_ID": "24", "CHANGE_BRANCH": "fix/leak"}
    assert ci_meta(pr, None)["branch"] == "fix/leak"
    # a tag build names no branch (the tag is not one)
    assert "branch" not in ci_meta(
        {k: v for k, v in {**JENKINS, "BRANCH_NAME": "v1.2", "TAG_NAME": "v1.2"}.items()
         if k != "GIT_BRANCH"},
        None,
    )  # fmt: skip
    gh_tag = {**GITHUB, "GITHUB_REF": "refs/tags/v1.2", "GITHUB_REF_NAME": "v1.2",
              "GITHUB_REF_TYPE": "tag"}  # fmt: skip
    assert "branch" not in ci_meta(gh_tag, None)
    gl_tag = {k: v for k, v in GITLAB.items() if k != "CI_COMMIT_BRANCH"}
    gl_tag.update(CI_COMMIT_REF_NAME="v1.2", CI_COMMIT_TAG="v1.2")
    assert "branch" not in ci_meta(gl_tag, None)


def test_clone_url_credentials_are_not_stored() -> None:
    for url in (
        "https://bot:ghp_token_secret@git.example.org/edge.git",
        "https://ghp_token_secret@git.example.org/edge.git",
        "https://bot:p@ss/ghp_token_secret@git.example.org/edge.git",
    ):
        c = ci_meta({**JENKINS, "GIT_URL": url}, None)
        assert c["repo"] == "https://git.example.org/edge.git", c
        assert "secret" not in json.dumps(c)


def test_gitlab() -> None:
    assert ci_meta({**GITLAB, **SECRETS}, None) == {
        "system": "gitlab",
        "commit": "1ecfd275763eff1d6b4844ea3168962458c9f27a",
        "branch": "feature/x",
        "build_url": "https://gitlab.example.com/grp/edge/-/jobs/7046",
        "build_tag": "1000",
        "job_name": "profile-orin",
        "node_name": "xavier shell runner",
        "repo": "https://gitlab.example.com/grp/edge",
    }


def test_no_secret_is_ever_stored(tmp_path: Path) -> None:
    for env in (JENKINS, GITHUB, GITLAB, {}):
        meta = run_meta(None, {}, None, None, str(tmp_path), {}, env={**env, **SECRETS})
        text = json.dumps(meta)
        assert not any(v in text for v in SECRETS.values()), text


def test_local_without_git(tmp_path: Path) -> None:
    assert ci_meta({}, str(tmp_path)) == {"system": "local"}
    assert ci_meta({}, str(tmp_path / "missing")) == {"system": "local"}


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo.parent),
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    r = tmp_path / "repo"
    (r / "specs").mkdir(parents=True)
    _git(r, "init", "-q", "-b", "main")
    (r / "specs" / "sage.yaml").write_text("name: x\n")
    _git(r, "add", ".")
    _git(r, "commit", "-q", "-m", "first")
    _git(r, "checkout", "-q", "-b", "feature/fast")
    return r


def test_git_commit_and_branch_of_the_spec_folder(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    assert git_head(str(repo / "specs")) == (head, "feature/fast")
    # git wins over the CI's variables: it is the spec's own folder
    c = ci_meta(JENKINS, str(repo / "specs"))
    assert (c["system"], c["commit"], c["branch"]) == ("jenkins", head, "feature/fast")
    assert c["build_tag"] == "jenkins-edge-main-42"
    assert ci_meta({}, str(repo / "specs")) == {
        "system": "local",
        "commit": head,
        "branch": "feature/fast",
    }


def test_detached_head_takes_the_ci_branch(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--detach")
    assert git_head(str(repo)) == (head, None)
    c = ci_meta({**JENKINS, "GIT_COMMIT": head}, str(repo))
    assert (c["commit"], c["branch"]) == (head, "release-2")
    # the CI built another commit: its branch says nothing about this one
    c = ci_meta(JENKINS, str(repo))
    assert c["commit"] == head and "branch" not in c
    assert ci_meta({}, str(repo)) == {"system": "local", "commit": head}


def test_no_git_binary(repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert git_head(str(repo)) == (None, None)
    assert ci_meta({}, str(repo)) == {"system": "local"}


# -- image and tags -------------------------------------------------------------------------


def test_image_meta_asks_the_engine_once() -> None:
    engine = FakeEngine({}, images=("app:1",))
    want = engine.image_info("app:1")["id"]
    assert image_meta(engine, "app:1") == {"id": want, "repo_digests": []}
    info = {"id": "sha256:abc", "repo_digests": ["reg/app@sha256:def"], "size": 3}
    assert image_meta(None, "app:1", info=info) == {
        "id": "sha256:abc",
        "repo_digests": ["reg/app@sha256:def"],
    }


def test_parse_tags() -> None:
    assert parse_tags(["build=42", "board=orin-7", "note=a=b", "empty="]) == {
        "build": "42",
        "board": "orin-7",
        "note": "a=b",
        "empty": "",
    }
    assert parse_tags(None) == {}
    for bad, words in (
        (["build"], "has no '='"),
        (["=42"], "empty key"),
        (["my build=1"], "only letters, digits"),
        (["bä=1"], "only letters, digits"),
        (["build=1", "build=2"], "given twice"),
    ):
        with pytest.raises(UserError, match=words):
            parse_tags(bad)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEPROF_DB", "DOCKER_HOST")}
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", [["run", "spec.yaml"], ["attach", "some-container"]])
def test_bad_tags_exit_2_in_one_sentence(tmp_path: Path, command: list[str]) -> None:
    for tags, words in (
        (["--tag", "build"], "--tag 'build' has no '='; write it as key=value"),
        (["--tag", "=1"], "--tag '=1' has an empty key"),
        (["--tag", "a b=1"], "the key 'a b' may hold only letters, digits"),
        (["--tag", "b=1", "--tag", "b=2"], "--tag 'b' is given twice (b=1 and b=2)"),
    ):
        res = _cli(*command, *tags, cwd=tmp_path)
        assert res.returncode == 2, (res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("edgeprof: error: "), res.stderr
        assert words in lines[0], lines[0]
        assert "Traceback" not in res.stderr


# -- stored and shown -----------------------------------------------------------------------

SPEC = """
name: meta
image: fake:latest
profiling:
  interval: 0.05
  grace: 0.3
  metrics: [container]
  targets:
    - {name: a}
"""


def test_fake_run_stores_and_shows_meta(repo: Path, tmp_path: Path) -> None:
    from rich.console import Console

    from edgeprof.report.terminal import print_summary

    engine = FakeEngine({"a": Script(run_s=0.2)})
    loaded = parse_spec(SPEC, str(repo / "specs" / "sage.yaml"))
    db = f"sqlite:///{tmp_path}/m.db"
    store = open_store(db)
    tags = {"build": "42", "board": "<b>&"}
    try:
        run_profile(
            loaded, store, engine, RunSettings(reaper=False, tags=tags), caps=HostCaps(ncpu=2)
        )
        meta = store.resolve_run("latest").meta
        s = summarize(store, "latest")
    finally:
        store.close()
    head = _git(repo, "rev-parse", "HEAD")
    assert meta["tags"] == tags
    assert meta["image"] == {"id": engine.image_info("fake:latest")["id"], "repo_digests": []}
    assert meta["ci"]["commit"] == head and meta["ci"]["branch"] == "feature/fast"
    assert meta["device"]["engine"] == "fake" and meta["device"]["engine_version"] == "0"
    assert s.run.meta == meta
    con = Console(record=True, width=200)
    print_summary(s, con)
    text = con.export_text()
    system = meta["ci"]["system"]
    assert f"ci: {system} feature/fast@{head[:12]}" in text
    assert "tags: board=<b>& build=42" in text  # stored JSON: keys sorted
    if "cpu_model" in meta["device"]:
        assert f"device: {meta['device']['cpu_model']}" in text


def test_attach_stores_meta(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeprof.attach import attach_profile

    engine = FakeEngine()
    engine.run_detached("web", Script(run_s=0.3))
    monkeypatch.chdir(repo / "specs")  # no spec: the folder attach was started in
    for k in ("JENKINS_URL", "JENKINS_HOME", "BUILD_TAG", "GITHUB_ACTIONS", "GITLAB_CI"):
        monkeypatch.delenv(k, raising=False)
    store = open_store(f"sqlite:///{tmp_path}/a.db")
    try:
        attach_profile(
            engine,
            store,
            ["web"],
            caps=HostCaps(ncpu=2),
            reaper=False,
            interval_s=0.05,
            restart_wait_s=0.1,
            tags={"rig": "r2"},
        )
        meta = store.resolve_run("latest").meta
    finally:
        store.close()
    assert meta["tags"] == {"rig": "r2"}
    assert meta["ci"] == {
        "system": "local",
        "commit": _git(repo, "rev-parse", "HEAD"),
        "branch": "feature/fast",
    }
    assert meta["image"]["id"] == engine.image_info("fake:latest")["id"]
    assert meta["device"]["engine"] == "fake"


def test_meta_lines() -> None:
    meta: dict[str, Any] = {
        "device": {
            "model": "NVIDIA Jetson AGX Orin Developer Kit",
            "cpu_model": "ARMv8 part 0xd42",
        },
        "ci": {
            "system": "jenkins",
            "branch": "main",
            "commit": "ce9a3c1404e8c91be604088670e93434c4253f03",
            "build_tag": "jenkins-edge-42",
        },
        "tags": {"build": "42", "rig": "a"},
    }
    assert meta_lines(meta) == [
        "device: NVIDIA Jetson AGX Orin Developer Kit · ARMv8 part 0xd42",
        "ci: jenkins main@ce9a3c1404e8 jenkins-edge-42",
        "tags: build=42 rig=a",
    ]
    assert meta_lines({"ci": {"system": "local"}, "tags": {}}) == ["ci: local"]
    assert meta_fields({}) == [] and meta_fields(None) == []


def test_html_report_shows_meta_escaped(tmp_path: Path) -> None:
    pytest.importorskip("tsdownsample")
    from edgeprof.report.html import build_report

    engine = FakeEngine({"a": Script(run_s=0.2)})
    loaded = parse_spec(SPEC, str(tmp_path / "sage.yaml"))
    store = open_store(f"sqlite:///{tmp_path}/h.db")
    try:
        run_profile(
            loaded,
            store,
            engine,
            RunSettings(reaper=False, tags={"who": "<script>x</script>"}),
            caps=HostCaps(ncpu=2),
        )
        page, _ = build_report(store, ["latest"])
    finally:
        store.close()
    assert "<dt>tags</dt><dd>who=&lt;script&gt;x&lt;/script&gt;</dd>" in page
    assert "<script>x</script>" not in page
    assert "<dt>ci</dt><dd>local</dd>" in page


# -- a real run -----------------------------------------------------------------------------

REAL_SPEC = """
name: metarun
image: edgeprof-test/busybox:latest
run:
  network: none
profiling:
  interval: 0.25
  grace: 1
  metrics: [container]
  targets:
    - name: nap
      args: ["sh", "-c", "sleep 0.5"]
      timeout: 0
"""

CI_VARS = ("JENKINS_URL", "JENKINS_HOME", "BUILD_TAG", "GITHUB_ACTIONS", "GITLAB_CI")


@pytest.mark.integration
def test_real_run_records_meta(engine: str, repo: Path, tmp_path: Path) -> None:
    spec = repo / "specs" / "metarun.yaml"
    spec.write_text(REAL_SPEC)
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "spec")
    head = _git(repo, "rev-parse", "HEAD")
    db = tmp_path / "run.db"
    env = {k: v for k, v in os.environ.items() if k not in CI_VARS and k != "EDGEPROF_DB"}
    res = subprocess.run(
        [*CLI, "run", str(spec), "--db", f"sqlite:///{db}", "--tag", "build=42", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    store = open_store(f"sqlite:///{db}", readonly=True)
    try:
        meta = store.resolve_run("latest").meta
    finally:
        store.close()
    inspect = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "edgeprof-test/busybox:latest"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )[0]
    assert meta["tags"] == {"build": "42"}
    assert meta["device"]["hostname"] == platform.node()
    assert meta["ci"] == {"system": "local", "commit": head, "branch": "feature/fast"}
    assert meta["image"] == {"id": inspect["Id"], "repo_digests": inspect.get("RepoDigests") or []}
    assert meta["device"]["engine"] in ("docker", "podman")
    version = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert meta["device"]["engine_version"] == version
    out = subprocess.run(
        [*CLI, "summary", "latest", "--db", f"sqlite:///{db}"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert f"ci: local feature/fast@{head[:12]}" in out
    assert "tags: build=42" in out
