"""The device-farm examples (docs/farm.md) are real, checked files.

- ``examples/farm/Jenkinsfile``: compiled by Groovy (Debian's 2.4.21, the Groovy version
  Jenkins runs pipelines with; installed by ``scripts/farm-validators.sh``, skipped with its
  reason where that is impossible), whose outline of blocks must equal the one this file's
  own reader finds; then its declarative structure is checked here (matrix over the agent
  labels, the stages, ``junit``/``archiveArtifacts`` in ``post { always }``, a stash per cell
  and an unstash per cell on the controller, the password only from a Jenkins credential).
  Jenkins' own declarative linter needs a running controller and is not used.
- ``examples/farm/edgeprof-job.yaml``: every document validated against the Kubernetes JSON
  schemas bundled by ``kubernetes-validate`` (strict: unknown fields rejected), for the
  oldest Kubernetes version checked (1.28) and the newest it ships, plus what a schema cannot say (mounts name
  existing volumes, the password from a Secret, TMPDIR on a host path mounted at the same
  path, one Job per Jenkins axis value).
- Every ``edgeprof`` command line in docs/farm.md, the Jenkinsfile and the manifest is
  parsed by edgeprof's own argparse parser (``edgeprof.cli.main.build_parser``). Commands
  using options issue 15 adds (``run --tag``, ``import``, ``runs --where/--since/--tag``,
  ``compare --by/--latest/--where``) carry ``issue15`` in their test id.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from edgeprof.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
JENKINSFILE = ROOT / "examples" / "farm" / "Jenkinsfile"
MANIFEST = ROOT / "examples" / "farm" / "edgeprof-job.yaml"
DOC = ROOT / "docs" / "farm.md"
VALIDATORS = ROOT / "scripts" / "farm-validators.sh"

PLATFORMS = ["jetson-orin", "jetson-xavier", "x86-t4"]
OLDEST_K8S = "1.28"  # k3s releases still met on Jetsons; the newest is what kubernetes-validate has

# Options and commands that other parts of issue 15 add: tests of lines using them are
# named "...-issue15" (re-run them once every part is merged).
ISSUE15 = {
    "run": {"--tag"},
    "attach": {"--tag"},
    "import": {"*"},
    "runs": {"--where", "--since", "--tag"},
    "compare": {"--by", "--latest", "--where", "--tag"},
    "export": {"sqlite"},
}


# ------------------------------------------------------------------ a reader for Jenkinsfiles

TRANSPARENT = {"if", "else", "for", "while", "try", "catch", "finally"}


@dataclass
class Block:
    """``name args { … }`` of a Jenkinsfile: its header, the statements directly in it (one
    string each, string literals kept verbatim) and its nested blocks."""

    header: str
    statements: list[str] = field(default_factory=list)
    children: list[Block] = field(default_factory=list)

    @property
    def name(self) -> str:
        m = re.match(r"[}\s]*([A-Za-z_][A-Za-z0-9_]*)", self.header)
        return m.group(1) if m else ""

    @property
    def label(self) -> str | None:
        """The first argument when it is a plain string: ``stage('Build')`` → ``Build``."""
        m = re.match(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*\(\s*('([^']*)'|\"([^\"$]*)\")", self.header)
        if not m:
            return None
        return m.group(2) if m.group(2) is not None else m.group(3)

    def blocks(self, name: str) -> list[Block]:
        """Nested blocks called ``name``, looking through if/else/for/try blocks."""
        found = []
        for c in self.children:
            if c.name == name:
                found.append(c)
            elif c.name in TRANSPARENT:
                found += c.blocks(name)
        return found

    def block(self, name: str, label: str | None = None) -> Block:
        matches = [b for b in self.blocks(name) if label is None or b.label == label]
        assert len(matches) == 1, (
            f"expected one {name!r} block (label {label!r}) in {self.header!r}, found {len(matches)}"
        )
        return matches[0]

    def walk(self) -> list[Block]:
        out = [self]
        for c in self.children:
            out += c.walk()
        return out

    def outline(self, depth: int = 0) -> list[str]:
        """What ``scripts/farm-validators.sh outline`` prints for the same text."""
        lines = []
        for c in self.children:
            if c.name in TRANSPARENT:
                lines += c.outline(depth)
                continue
            label = c.label
            lines.append("  " * depth + c.name + (f":{label}" if label is not None else ""))
            lines += c.outline(depth + 1)
        return lines


def read_blocks(text: str) -> Block:
    """Groovy's block structure, enough for declarative pipelines: comments dropped, string
    literals (', ", ''', \"\"\") kept whole, braces inside parentheses or strings ignored."""
    root = Block("<file>")
    stack = [root]
    buf: list[str] = []
    depth = 0  # ( and [
    i, n = 0, len(text)

    def flush() -> None:
        s = "".join(buf).strip()
        if s:
            stack[-1].statements.append(s)
        buf.clear()

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            assert end >= 0, "unterminated /* comment"
            i = end + 2
            continue
        if c in "'\"":
            q = text[i : i + 3] if text.startswith(c * 3, i) else c
            j = i + len(q)
            while True:
                assert j < n, f"unterminated string starting {text[i : i + 30]!r}"
                if text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(q, j):
                    j += len(q)
                    break
                assert len(q) == 3 or text[j] != "\n", "newline in a one-line string"
                j += 1
            buf.append(text[i:j])
            i = j
            continue
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif depth == 0 and c == "{":
            b = Block("".join(buf).strip())
            buf.clear()
            stack[-1].children.append(b)
            stack.append(b)
            i += 1
            continue
        elif depth == 0 and c == "}":
            flush()
            assert len(stack) > 1, "unbalanced }"
            stack.pop()
            i += 1
            continue
        elif depth == 0 and c == "\n":
            flush()
            i += 1
            continue
        buf.append(c)
        i += 1
    flush()
    assert len(stack) == 1, "unbalanced {"
    return root


def literals(statement: str) -> list[str]:
    """The contents of the string literals of one statement, in order."""
    out = []
    for m in re.finditer(
        r"'''(.*?)'''|\"\"\"(.*?)\"\"\"|'((?:\\.|[^'\\])*)'|\"((?:\\.|[^\"\\])*)\"", statement, re.S
    ):
        out.append(next(g for g in m.groups() if g is not None))
    return out


@pytest.fixture(scope="module")
def jenkinsfile() -> str:
    return JENKINSFILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pipeline(jenkinsfile: str) -> Block:
    root = read_blocks(jenkinsfile)
    assert [c.name for c in root.children] == ["pipeline"], "the file is one pipeline { } block"
    assert root.statements == [], f"statements outside pipeline {{ }}: {root.statements}"
    return root.children[0]


# ------------------------------------------------------------------ Jenkinsfile: Groovy parser


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else "scripts/farm-validators.sh gave no reason"


def test_jenkinsfile_compiles_with_groovy_and_outline_matches(jenkinsfile: str) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash to run scripts/farm-validators.sh")
    r = subprocess.run(
        [str(VALIDATORS), "outline", str(JENKINSFILE)], capture_output=True, text=True, timeout=600
    )
    if r.returncode == 3:
        pytest.skip(f"Groovy is not available here: {_last_line(r.stderr)}")
    assert r.returncode == 0, f"Groovy rejected the Jenkinsfile:\n{r.stderr}"
    assert r.stdout.splitlines() == read_blocks(jenkinsfile).outline()


def test_groovy_rejects_a_broken_jenkinsfile(tmp_path: Path) -> None:
    """The Groovy check is real: a missing parenthesis fails it."""
    bad = tmp_path / "Jenkinsfile"
    bad.write_text("pipeline {\n  stages {\n    stage('x' {\n    }\n  }\n}\n")
    r = subprocess.run(
        [str(VALIDATORS), "outline", str(bad)], capture_output=True, text=True, timeout=600
    )
    if r.returncode == 3:
        pytest.skip(f"Groovy is not available here: {_last_line(r.stderr)}")
    assert r.returncode == 1
    assert "unexpected token" in r.stderr


def test_reader_handles_strings_comments_and_else() -> None:
    root = read_blocks(
        "a {\n  // x {\n  b('}') { c \"{\" }\n  /* { */\n  if (x) { d { } } else { e { } }\n}\n"
    )
    assert root.outline() == ["a", "  b:}", "  d", "  e"]
    assert root.children[0].children[0].statements == ['c "{"']


# ------------------------------------------------------------------ Jenkinsfile: structure


def _axis_values(matrix: Block) -> tuple[str, list[str]]:
    axis = matrix.block("axes").block("axis")
    name = [literals(s)[0] for s in axis.statements if s.startswith("name ")]
    values = [literals(s) for s in axis.statements if s.startswith("values ")]
    assert len(name) == 1 and len(values) == 1, axis.statements
    return name[0], values[0]


def test_jenkinsfile_matrix_over_device_labels(pipeline: Block) -> None:
    assert "agent none" in pipeline.statements
    stages = pipeline.block("stages")
    names = [s.label for s in stages.blocks("stage")]
    assert names == ["Profile on each device", "Import into PostgreSQL"]
    matrix = stages.block("stage", "Profile on each device").block("matrix")
    axis, values = _axis_values(matrix)
    assert (axis, values) == ("PLATFORM", PLATFORMS)
    assert matrix.block("agent").statements == ['label "${PLATFORM}"']
    cell = [s.label for s in matrix.block("stages").blocks("stage")]
    assert cell == ["Install edgeprof", "Build the image", "Profile", "Report"]


def _sh_scripts(block: Block) -> list[str]:
    """The shell scripts of every ``sh`` step under ``block``."""
    out = []
    for b in block.walk():
        for s in b.statements:
            if re.match(r"(def\s+\w+\s*=\s*)?sh\b", s):
                lits = literals(s)
                if "script:" in s:
                    lits = literals(s.split("script:", 1)[1])[:1]
                out += lits[:1]
    return out


def test_jenkinsfile_cell_steps(pipeline: Block) -> None:
    matrix = pipeline.block("stages").block("stage", "Profile on each device").block("matrix")
    cell = matrix.block("stages")
    build = " ".join(_sh_scripts(cell.block("stage", "Build the image")))
    assert "scripts/build-images.sh example" in build
    profile = "\n".join(_sh_scripts(cell.block("stage", "Profile")))
    assert 'edgeprof run "$SPEC" --db "sqlite:///run-$PLATFORM.db"' in profile
    assert '--junit "results-$PLATFORM.xml"' in profile
    assert '--tag "build=$BUILD_NUMBER"' in profile
    assert "edgeprof report latest" in " ".join(_sh_scripts(cell.block("stage", "Report")))
    profile_steps = cell.block("stage", "Profile").block("steps").statements
    assert 'stash name: "run-${PLATFORM}", includes: "run-${PLATFORM}.db"' in profile_steps
    always = matrix.block("post").block("always").statements
    assert any(s.startswith('junit testResults: "results-${PLATFORM}.xml"') for s in always)
    assert any(
        s.startswith('archiveArtifacts artifacts: "run-${PLATFORM}.db*, report-${PLATFORM}.html"')
        for s in always
    )  # .db*: a cut-off run's samples are in its -wal (transfer.file_version says so)
    install = "\n".join(_sh_scripts(cell.block("stage", "Install edgeprof")))
    assert "rm -f run-*.db run-*.db-wal run-*.db-shm " in install  # no old log archived


def test_jenkinsfile_imports_every_cell_on_the_controller(pipeline: Block) -> None:
    stage = pipeline.block("stages").block("stage", "Import into PostgreSQL")
    assert stage.block("agent").statements == ["label 'built-in'"]
    steps = stage.block("steps")
    unstashed = [literals(s)[0] for s in steps.statements if s.startswith("unstash ")]
    assert unstashed == [f"run-{p}" for p in PLATFORMS]  # one per cell, none forgotten
    script = "\n".join(_sh_scripts(steps))
    assert 'edgeprof import run-*.db --db "$EDGEPROF_PG"' in script
    env = stage.block("environment").statements
    assert env == ["PGPASSWORD = credentials('edgeprof-pg-password')"]


def test_jenkinsfile_has_no_password(jenkinsfile: str, pipeline: Block) -> None:
    env = dict(s.split(" = ", 1) for s in pipeline.block("environment").statements)
    url = urlsplit(literals(env["EDGEPROF_PG"])[0])
    assert url.scheme == "postgresql" and url.username and url.password is None
    for b in pipeline.walk():
        for s in b.statements:
            # PG* secrets only through credentials(); never a literal, never in a Groovy
            # "…" string (Groovy would interpolate it before the shell masks anything)
            if re.search(r"\bPG(PASSWORD|PASSFILE)\s*=", s):
                assert re.search(r"=\s*credentials\('[^']+'\)$", s), s
            for lit in re.findall(r"\"(?:\\.|[^\"\\])*\"", s):
                assert "PGPASSWORD" not in lit and "PGPASSFILE" not in lit, s
    assert not re.search(r"://[^/\s@:]+:[^/\s@]+@", jenkinsfile), "a password in a URL"
    assert not re.search(r"(?i)password\s*[:=]\s*['\"][^'\"]+['\"]", jenkinsfile)


# ------------------------------------------------------------------ Kubernetes manifest


@pytest.fixture(scope="module")
def jobs() -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d is not None]
    assert docs, "no documents"
    return docs


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_manifest_matches_the_kubernetes_schema(jobs: list[dict[str, Any]], which: str) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate", reason="pip install 'edgeprof[dev]' (kubernetes-validate)"
    )
    version = OLDEST_K8S if which == "oldest" else kv.utils.latest_version()
    for doc in jobs:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:  # the schema's own words, and where
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {e}")


def test_schema_check_is_real() -> None:
    """A misspelt field and a wrong type both fail the strict schema check."""
    kv = pytest.importorskip(
        "kubernetes_validate", reason="pip install 'edgeprof[dev]' (kubernetes-validate)"
    )
    doc = yaml.safe_load(MANIFEST.read_text(encoding="utf-8").split("\n---\n")[0])
    doc["spec"]["template"]["spec"]["hostPid"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, kv.utils.latest_version(), strict=True)
    doc = yaml.safe_load(MANIFEST.read_text(encoding="utf-8").split("\n---\n")[0])
    doc["spec"]["backoffLimit"] = "one"
    with pytest.raises(kv.ValidationError):
        kv.validate(doc, kv.utils.latest_version(), strict=True)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_one_job_per_jenkins_platform(jobs: list[dict[str, Any]]) -> None:
    kinds = []
    for job in jobs:
        assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
        kind = job["metadata"]["labels"]["edgeprof/device"]
        assert job["metadata"]["name"] == f"edgeprof-{kind}"
        assert job["spec"]["template"]["spec"]["nodeSelector"] == {"edgeprof/device": kind}
        assert f"platform={kind}" in _container(job)["args"]
        kinds.append(kind)
    assert kinds == PLATFORMS


def _host_path(volumes: dict[str, Any], mounts: dict[str, Any], mount_path: str) -> str:
    """The node's path of the ``hostPath`` volume mounted at ``mount_path``."""
    return str(volumes[mounts[mount_path]["name"]]["hostPath"]["path"])


def test_job_pod_settings(jobs: list[dict[str, Any]]) -> None:
    for job in jobs:
        name = job["metadata"]["name"]
        spec = job["spec"]
        assert isinstance(spec["backoffLimit"], int) and spec["backoffLimit"] <= 2, name
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never", name  # a Job allows Never or OnFailure only
        assert pod["hostPID"] is True, name
        c = _container(job)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert {m["name"] for m in mounts.values()} == set(volumes), (
            f"{name}: unused or missing volumes"
        )
        env = {e["name"]: e for e in c["env"]}

        # the engine's socket, at the path DOCKER_HOST names
        sock = env["DOCKER_HOST"]["value"].removeprefix("unix://")
        assert volumes[mounts[sock]["name"]]["hostPath"] == {
            "path": "/var/run/docker.sock",
            "type": "Socket",
        }
        # the host's cgroups, read-only
        assert (
            _host_path(volumes, mounts, "/sys/fs/cgroup") == "/sys/fs/cgroup"
            and mounts["/sys/fs/cgroup"]["readOnly"]
        )
        # files edgeprof hands the engine to bind-mount must exist at the same path on the node
        tmp = env["TMPDIR"]["value"]
        assert _host_path(volumes, mounts, tmp) == tmp, (
            f"{name}: TMPDIR must be a host path mounted at the same path"
        )
        assert c["workingDir"] == tmp
        # a spool written when PostgreSQL stays away outlives the pod, on the node
        assert (
            _host_path(volumes, mounts, env["EDGEPROF_SPOOL_DIR"]["value"])
            == env["EDGEPROF_SPOOL_DIR"]["value"]
        )
        # the spec from a ConfigMap, and the password from a Secret, never a literal
        spec_file = c["args"][1]
        spec_mount = next(m for p, m in mounts.items() if spec_file.startswith(p + "/"))
        assert "configMap" in volumes[spec_mount["name"]] and spec_mount["readOnly"]
        assert set(env["PGPASSWORD"]) == {"name", "valueFrom"}
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "edgeprof-db",
            "key": "password",
        }
        db = c["args"][c["args"].index("--db") + 1]
        url = urlsplit(db)
        assert url.scheme == "postgresql" and url.username and url.password is None, db
        for v in env.values():
            assert "value" not in v or "password" not in str(v["value"]).lower(), v
        assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"]
    text = MANIFEST.read_text(encoding="utf-8")
    assert "kind: Secret" not in text, "the Secret is created with kubectl, never kept in this file"


# ------------------------------------------------------------------ edgeprof command lines

SHELL_VALUES = {
    "SPEC": "examples/objcounter/profile.yaml",
    "PLATFORM": "jetson-orin",
    "BUILD_NUMBER": "42",
    "EDGEPROF_PG": "postgresql://edgeprof@pg.lab.example:5432/edgeprof",
    "NODE_NAME": "orin-01",
}


def _expand(line: str) -> str:
    line = re.sub(r"\$\((\w+)\)", lambda m: SHELL_VALUES[m.group(1)], line)  # Kubernetes $(VAR)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: SHELL_VALUES.get(m.group(1), m.group(0)), line)


def _edgeprof_argv(line: str) -> list[str] | None:
    words = shlex.split(_expand(line), comments=True)
    for i, w in enumerate(words):
        if os.path.basename(w) == "edgeprof":
            return words[i + 1 :]
    return None


def _doc_command_lines() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            s = line.strip().removeprefix("$ ")
            if s.startswith("edgeprof ") or re.match(r"(\S+=\S+\s+)+edgeprof ", s):
                lines.append(s)
    return lines


def _jenkins_command_lines() -> list[str]:
    root = read_blocks(JENKINSFILE.read_text(encoding="utf-8"))
    return [
        line.strip()
        for script in _sh_scripts(root)
        for line in script.splitlines()
        if re.search(r"(^|/)edgeprof ", line.strip())
    ]


def _manifest_command_lines() -> list[str]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text(encoding="utf-8")) if d]
    return [shlex.join(["edgeprof", *_container(d)["args"]]) for d in docs]


def _cases() -> list[Any]:
    cases = []
    for where, lines in (
        ("docs", _doc_command_lines()),
        ("jenkinsfile", _jenkins_command_lines()),
        ("manifest", _manifest_command_lines()),
    ):
        for line in lines:
            argv = _edgeprof_argv(line) or []
            cmd = argv[0] if argv else ""
            new = ISSUE15.get(cmd, set())
            uses = "*" in new or any(a.split("=", 1)[0] in new for a in argv[1:])
            tail = "-issue15" if uses else ""
            n = sum(1 for c in cases if c.id.startswith(f"{where}:{cmd}#")) + 1
            cases.append(pytest.param(line, id=f"{where}:{cmd}#{n}{tail}"))
    return cases


def test_every_place_has_command_lines() -> None:
    assert len(_doc_command_lines()) >= 6
    assert len(_jenkins_command_lines()) == 4
    assert len(_manifest_command_lines()) == 3


@pytest.mark.parametrize("line", _cases())
def test_command_line_parses(line: str) -> None:
    argv = _edgeprof_argv(line)
    assert argv, f"no edgeprof command in {line!r}"
    assert "-h" not in argv and "--help" not in argv
    ns = build_parser().parse_args(argv)  # a usage error raises UsageError: one sentence
    assert hasattr(ns, "func"), line
