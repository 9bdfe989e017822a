"""What a run records about where and from which build it ran: ``runs.meta``.

::

    {"device": {"hostname", "model", "cpu_model", "cpu_cores", "memory_bytes", "gpu_model",
                "gpu_driver", "cuda", "jetpack", "l4t", "os", "kernel", "engine",
                "engine_version", "arch"},
     "ci":     {"system": "jenkins"|"github"|"gitlab"|"local", "commit", "branch",
                "build_url", "build_tag", "job_name", "node_name", "repo"},
     "image":  {"id", "repo_digests": [...]},
     "tags":   {"build": "42", ...}}

A key is absent when its value is unknown. Everything is read from files (roots injectable
for tests), the GPU and engine details the run already gathered, a fixed list of CI
variables (never the whole environment: it holds secrets) and one ``git`` call on the
spec's folder (2 s timeout; no git, no repository or a refusal leave the commit out).

* ``model``: a Jetson's ``/proc/device-tree/model``, else DMI's ``product_name`` (with
  ``sys_vendor`` in front when the product name does not already name it).
* ``jetpack``: the ``nvidia-jetpack`` package's version as dpkg installed it (``5.1.1-b56``
  → ``5.1.1``); a Jetson without that package has none (no L4T → JetPack table is guessed).
  ``l4t``: ``/etc/nv_tegra_release`` (``R35.4.1``), else the ``nvidia-l4t-core`` package.
* ``gpu_model``/``gpu_driver``/``cuda``: from NVML (``cuda`` is the CUDA version the driver
  supports, ``nvmlSystemGetCudaDriverVersion``).
* ``ci.commit``/``ci.branch``: the spec folder's git ``HEAD`` and branch; a detached
  ``HEAD`` (the usual CI checkout) takes the branch of the CI's variables, and no
  repository takes both from them. A pull request's branch is its source branch
  (Jenkins ``CHANGE_BRANCH``, GitHub ``GITHUB_HEAD_REF``), a tag build has none; a URL
  (``repo``, ``build_url``) is stored without the user and token a clone URL may carry.
* ``model`` on a desktop board whose DMI product name is a placeholder: the board's name.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from edgeprof.errors import UserError
from edgeprof.hostinfo import HostCaps, cpu_model, jetson_model, l4t_release
from edgeprof.hostinfo import read_text as _read

GIT_TIMEOUT_S = 2.0

_TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

_DMI_PLACEHOLDERS = {
    "",
    "to be filled by o.e.m.",
    "default string",
    "system product name",
    "system manufacturer",
    "not specified",
    "not applicable",
    "none",
    "o.e.m.",
    "oem",
    "unknown",
    "not available",
    "n/a",
    "invalid",
    "default",
    "product name",
    "type1productconfigid",
    "0123456789",
    "1234567890",
    "x.x",
}

_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://).*@(?=[^@/]*(?:[/?#]|$))", re.S)


def _dmi(sys_root: str, name: str) -> str | None:
    text = _read(os.path.join(sys_root, "class", "dmi", "id", name))
    if text is None:
        return None
    text = " ".join(text.split())
    return None if text.lower() in _DMI_PLACEHOLDERS else text


def device_model(proc_root: str = "/proc", sys_root: str = "/sys") -> str | None:
    """A Jetson's device-tree model, else DMI's product name (vendor in front when useful)."""
    dt_model = jetson_model(proc_root)
    if dt_model:
        return " ".join(dt_model.split())
    product = _dmi(sys_root, "product_name")
    vendor = _dmi(sys_root, "sys_vendor")
    if product is None:  # a desktop board's "System Product Name": the board names it
        product = _dmi(sys_root, "board_name")
        vendor = _dmi(sys_root, "board_vendor") or vendor
    if product is None:
        return None
    if vendor and vendor.split()[0].lower() not in product.lower():
        return f"{vendor} {product}"
    return product


def _cpu_count(text: str | None) -> int | None:
    """``0-3,5`` (a kernel CPU list) → 5."""
    if not text:
        return None
    n = 0
    try:
        for part in text.strip().split(","):
            lo, sep, hi = part.partition("-")
            n += int(hi) - int(lo) + 1 if sep else 1
    except ValueError:
        return None
    return n or None


def _mem_total(proc_root: str) -> int | None:
    for line in (_read(os.path.join(proc_root, "meminfo")) or "").splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            try:
                return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
            except (IndexError, ValueError):
                return None
    return None


def os_pretty_name(etc_root: str = "/etc") -> str | None:
    """``PRETTY_NAME`` of ``os-release`` (``/etc``, else ``/usr/lib`` next to it)."""
    text = _read(os.path.join(etc_root, "os-release"))
    if text is None:
        text = _read(os.path.join(os.path.dirname(etc_root.rstrip("/")), "usr/lib/os-release"))
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "PRETTY_NAME":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            return value or None
    return None


def dpkg_versions(names: Sequence[str], var_root: str = "/var") -> dict[str, str]:
    """Versions of the installed packages among ``names`` from dpkg's status file (only
    their stanzas are parsed: the file is ~1 MB on a desktop install)."""
    text = _read(os.path.join(var_root, "lib", "dpkg", "status"))
    out: dict[str, str] = {}
    if not text:
        return out
    text = "\n" + text.replace("\r\n", "\n") + "\n"
    for name in names:
        head = f"\nPackage: {name}\n"
        at = text.find(head)
        while at >= 0:
            start = at + len(head)
            end = text.find("\n\n", start)
            fields: dict[str, str] = {}
            for line in text[start : None if end < 0 else end].splitlines():
                field, sep, value = line.partition(":")
                if sep and line[:1] not in (" ", "\t"):
                    fields[field.strip().lower()] = value.strip()
            status = fields.get("status", "install ok installed").split()
            if "version" in fields and status[-1:] == ["installed"]:
                out[name] = fields["version"]
                break
            at = text.find(head, start)
    return out


def _upstream(version: str) -> str:
    """``5.1.1-b56`` / ``6.1+b123`` / ``35.3.1-20230319081403`` → the part before -/+."""
    return re.split(r"[-+~]", version, maxsplit=1)[0]


def device_meta(
    caps: HostCaps | None,
    engine_details: Mapping[str, Any],
    gpu: Mapping[str, Any] | None,
    proc_root: str = "/proc",
    sys_root: str = "/sys",
    etc_root: str = "/etc",
    var_root: str = "/var",
) -> dict[str, Any]:
    """``meta["device"]``: this machine (see the module docstring); unknown keys left out."""
    d: dict[str, Any] = {}
    d["hostname"] = _read(os.path.join(proc_root, "sys", "kernel", "hostname")) or (
        platform.node() or None
    )
    d["model"] = device_model(proc_root, sys_root)
    d["cpu_model"] = cpu_model(proc_root)
    d["cpu_cores"] = _cpu_count(
        _read(os.path.join(sys_root, "devices", "system", "cpu", "present"))
    ) or (caps.ncpu if caps is not None else None)
    d["memory_bytes"] = _mem_total(proc_root)
    g = gpu or {}
    if g.get("gpu") == "nvidia":
        d["gpu_model"] = g.get("model")
        d["gpu_driver"] = g.get("driver_version")
        d["cuda"] = g.get("cuda_driver_version")
    pkgs = dpkg_versions(("nvidia-jetpack", "nvidia-l4t-core"), var_root)
    if "nvidia-jetpack" in pkgs:
        d["jetpack"] = _upstream(pkgs["nvidia-jetpack"])
    d["l4t"] = l4t_release(etc_root) or (
        f"R{_upstream(pkgs['nvidia-l4t-core'])}" if "nvidia-l4t-core" in pkgs else None
    )
    d["os"] = os_pretty_name(etc_root) or engine_details.get("os")
    d["kernel"] = _read(os.path.join(proc_root, "sys", "kernel", "osrelease")) or (
        engine_details.get("kernel") or platform.release() or None
    )
    d["engine"] = engine_details.get("engine")
    d["engine_version"] = engine_details.get("engine_version")
    d["arch"] = platform.machine() or None
    return {k: v for k, v in d.items() if v not in (None, "")}


def gpu_details(caps: HostCaps) -> dict[str, Any]:
    """The GPU details a run stores (``edgeprof.collect.gpu.gpu_host_details``), or
    ``{"gpu": None, "reason": …}`` when asking fails."""
    try:
        from edgeprof.collect.gpu import gpu_host_details

        return gpu_host_details(caps.proc_root, caps.etc_root)
    except Exception as e:  # noqa: BLE001 - details are best effort
        return {"gpu": None, "reason": str(e)}


def git_head(path: str, timeout_s: float = GIT_TIMEOUT_S) -> tuple[str | None, str | None]:
    """(commit, branch) of the git work tree holding ``path``; branch None when detached;
    (None, None) without git, outside a repository, on a refusal or a timeout."""
    try:
        res = subprocess.run(
            ["git", "-C", path, "rev-parse", "HEAD", "--abbrev-ref", "HEAD"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    lines = res.stdout.split()
    if res.returncode != 0 or not lines or not re.fullmatch(r"[0-9a-f]{40,64}", lines[0]):
        return None, None
    branch = lines[1] if len(lines) > 1 and lines[1] != "HEAD" else None
    return lines[0], branch


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for n in names:
        v = (env.get(n) or "").strip()
        if v:
            return v
    return None


def _no_credentials(url: str | None) -> str | None:
    """``https://user:token@host/repo.git`` → ``https://host/repo.git``: a CI's clone URL
    may carry a token, which a run's metadata must never store."""
    if url is None:
        return None
    return _USERINFO.sub(r"\1", url)


def _strip_remote(branch: str | None) -> str | None:
    """Jenkins' ``GIT_BRANCH`` is ``origin/main``; ``refs/heads/main`` also seen."""
    if branch is None:
        return None
    for prefix in ("refs/heads/", "refs/remotes/origin/", "origin/"):
        if branch.startswith(prefix):
            return branch[len(prefix) :] or None
    return branch


def ci_system(env: Mapping[str, str]) -> str:
    if (env.get("GITHUB_ACTIONS") or "").lower() == "true":
        return "github"
    if env.get("GITLAB_CI"):
        return "gitlab"
    if (
        env.get("JENKINS_URL")
        or env.get("JENKINS_HOME")
        or env.get("BUILD_TAG", "").startswith("jenkins-")
    ):
        return "jenkins"
    return "local"


def ci_meta(env: Mapping[str, str], spec_dir: str | None) -> dict[str, Any]:
    """``meta["ci"]``: the CI system's build (only the variables named here are read) and
    the git commit and branch of ``spec_dir``."""
    system = ci_system(env)
    c: dict[str, Any] = {"system": system}
    if system == "jenkins":
        c["commit"] = _env(env, "GIT_COMMIT")
        # a multibranch pull request's BRANCH_NAME is "PR-24": its branch is CHANGE_BRANCH;
        # a tag build's BRANCH_NAME is the tag (TAG_NAME): no branch
        branch = _strip_remote(_env(env, "CHANGE_BRANCH", "BRANCH_NAME", "GIT_BRANCH"))
        c["branch"] = None if branch is not None and branch == _env(env, "TAG_NAME") else branch
        c["build_url"] = _env(env, "BUILD_URL")
        c["build_tag"] = _env(env, "BUILD_TAG")
        c["job_name"] = _env(env, "JOB_NAME")
        c["node_name"] = _env(env, "NODE_NAME")
        c["repo"] = _env(env, "GIT_URL")
    elif system == "github":
        server, repo, run = (
            _env(env, "GITHUB_SERVER_URL"),
            _env(env, "GITHUB_REPOSITORY"),
            _env(env, "GITHUB_RUN_ID"),
        )
        c["commit"] = _env(env, "GITHUB_SHA")
        # a pull request's GITHUB_REF_NAME is "<n>/merge": its source branch is HEAD_REF
        # a tag push's GITHUB_REF_NAME is the tag, not a branch
        tag = (env.get("GITHUB_REF_TYPE") or "") == "tag"
        c["branch"] = _env(env, "GITHUB_HEAD_REF", *(() if tag else ("GITHUB_REF_NAME",)))
        if server and repo and run:
            c["build_url"] = f"{server.rstrip('/')}/{repo}/actions/runs/{run}"
        c["build_tag"] = run
        c["job_name"] = _env(env, "GITHUB_WORKFLOW")
        c["node_name"] = _env(env, "RUNNER_NAME")
        c["repo"] = f"{server.rstrip('/')}/{repo}" if server and repo else repo
    elif system == "gitlab":
        c["commit"] = _env(env, "CI_COMMIT_SHA")
        # a tag pipeline's CI_COMMIT_REF_NAME is the tag (CI_COMMIT_TAG), not a branch
        ref = () if _env(env, "CI_COMMIT_TAG") else ("CI_COMMIT_REF_NAME",)
        c["branch"] = _env(env, "CI_COMMIT_BRANCH", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", *ref)
        c["build_url"] = _env(env, "CI_JOB_URL")
        c["build_tag"] = _env(env, "CI_PIPELINE_ID")
        c["job_name"] = _env(env, "CI_JOB_NAME")
        c["node_name"] = _env(env, "CI_RUNNER_DESCRIPTION")
        c["repo"] = _env(env, "CI_PROJECT_URL")
    for k in ("build_url", "repo"):
        c[k] = _no_credentials(c.get(k))
    if spec_dir:
        commit, branch = git_head(spec_dir)
        if commit is not None:
            # detached (the usual CI checkout): the CI's branch, when it built this commit
            if branch is None and c.get("commit") not in (None, commit):
                c.pop("branch", None)
            c["commit"] = commit
            if branch is not None:
                c["branch"] = branch
    return {k: v for k, v in c.items() if v not in (None, "")}


def image_meta(engine: Any, image: str, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``meta["image"]``: the image's id and repo digests (``info``: the engine's
    ``image_info(image)`` when the caller already has it; then ``engine`` is not asked)."""
    i = info if info is not None else engine.image_info(image)
    out: dict[str, Any] = {}
    if i.get("id"):
        out["id"] = i["id"]
    out["repo_digests"] = list(i.get("repo_digests") or [])
    return out


def parse_tags(items: Sequence[str] | None, option: str = "--tag") -> dict[str, str]:
    """``["build=42", "board=a"]`` → ``{"build": "42", "board": "a"}``; bad input is a
    :class:`UserError` (no ``=``, a key outside ``[A-Za-z0-9_.-]``, a key given twice)."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(
                f"{option} {item!r} has no '='; write it as key=value, e.g. {option} build=42"
            )
        if not key:
            raise UserError(f"{option} {item!r} has an empty key; write it as key=value")
        if not _TAG_KEY_RE.match(key):
            raise UserError(
                f"{option} {item!r}: the key {key!r} may hold only letters, digits, '_', '.' "
                "and '-'"
            )
        if key in out:
            raise UserError(
                f"{option} {key!r} is given twice ({key}={out[key]} and {item}); give each key once"
            )
        out[key] = value
    return out


def run_meta(
    caps: HostCaps | None,
    engine_details: Mapping[str, Any],
    gpu: Mapping[str, Any] | None,
    image_info: Mapping[str, Any] | None,
    spec_dir: str | None,
    tags: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The whole ``runs.meta`` of a run (``image`` left out when ``image_info`` is None)."""
    c = caps or HostCaps()
    meta: dict[str, Any] = {
        "device": device_meta(caps, engine_details, gpu, c.proc_root, c.sys_root, c.etc_root),
        "ci": ci_meta(os.environ if env is None else env, spec_dir),
    }
    if image_info is not None:
        meta["image"] = image_meta(None, "", info=image_info)
    meta["tags"] = dict(tags or {})
    return meta


# --- how it is shown ------------------------------------------------------------------


def _section(meta: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    v = meta.get(key)
    return v if isinstance(v, Mapping) else {}


def meta_fields(meta: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``[("device", "<model> · <cpu> · <gpu>"), ("ci", "<system> <branch>@<commit> <tag>"),
    ("tags", "k=v …")]``, each only when there is something to say (plain text)."""
    m = meta or {}
    out: list[tuple[str, str]] = []
    dev = _section(m, "device")
    parts = [str(dev[k]) for k in ("model", "cpu_model", "gpu_model") if dev.get(k)]
    if parts:
        out.append(("device", " · ".join(parts)))
    ci = _section(m, "ci")
    if ci:
        commit = str(ci.get("commit") or "")[:12]
        branch = str(ci.get("branch") or "")
        ref = f"{branch}@{commit}" if branch and commit else branch or commit
        words = [str(ci.get("system") or "local"), ref, str(ci.get("build_tag") or "")]
        out.append(("ci", " ".join(w for w in words if w)))
    tags = _section(m, "tags")
    if tags:
        out.append(("tags", " ".join(f"{k}={v}" for k, v in tags.items())))
    return out


def meta_lines(meta: Mapping[str, Any] | None) -> list[str]:
    """:func:`meta_fields` as ``label: text`` lines."""
    return [f"{k}: {v}" for k, v in meta_fields(meta)]


__all__ = [
    "ci_meta",
    "device_meta",
    "git_head",
    "gpu_details",
    "image_meta",
    "meta_fields",
    "meta_lines",
    "parse_tags",
    "run_meta",
]
