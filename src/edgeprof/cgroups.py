"""Finding a process's cgroup (v1 or v2), shared by the engine and the collectors.

A container's cgroup is found from ``/proc/<pid>/cgroup`` and the cgroup mounts in
``/proc/self/mountinfo``, so it works for dockerd, Podman and containerd alike. Parsers are
pure functions of file text, tested on recorded files. This module depends on nothing else
in edgeprof, so ``engine`` and ``collect`` can both use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class CgroupNotFound(Exception):
    """The cgroup of a process cannot be located or read."""


@dataclass(frozen=True)
class CgroupPaths:
    """Where a container's cgroup lives. ``version`` is 1 or 2.

    For v1, ``controllers`` maps controller name (``cpu``, ``cpuacct``, ``memory``,
    ``blkio``, ``pids``, …) to its directory. For v2, ``unified`` is the one directory.
    """

    version: int
    controllers: dict[str, str] = field(default_factory=dict)
    unified: str | None = None

    def dir_for(self, controller: str) -> str | None:
        if self.version == 2:
            return self.unified
        return self.controllers.get(controller)

    def procs_path(self) -> str | None:
        """The ``cgroup.procs`` file listing the container's processes, or None."""
        if self.version == 1:
            d = self.dir_for("pids") or self.dir_for("memory") or self.dir_for("cpuacct")
        else:
            d = self.unified
        return None if d is None else f"{d}/cgroup.procs"

    def as_dict(self) -> dict[str, object]:
        return {"version": self.version, "controllers": self.controllers, "unified": self.unified}


def parse_proc_cgroup(text: str) -> tuple[dict[str, str], str | None]:
    """``/proc/<pid>/cgroup`` → (v1 controller → path, v2 unified path or None)."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        else:
            for c in controllers.split(","):
                v1[c.removeprefix("name=")] = path
    return v1, v2


def parse_cgroup_mounts(
    mountinfo: str,
) -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """``/proc/self/mountinfo`` → (v1 controller → (mount root, mount point), v2 mount)."""
    v1: dict[str, tuple[str, str]] = {}
    v2: tuple[str, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        root, mountpoint = fields[3], fields[4]
        fstype, options = rfields[0], rfields[2]
        if fstype == "cgroup2":
            if v2 is None or mountpoint == "/sys/fs/cgroup":
                v2 = (root, mountpoint)
        elif fstype == "cgroup":
            for opt in options.split(","):
                if opt in ("rw", "ro") or opt.startswith(("relatime", "noexec", "nosuid", "nodev")):
                    continue
                v1.setdefault(opt.removeprefix("name="), (root, mountpoint))
    return v1, v2


def _join(mount: tuple[str, str], path: str) -> str:
    root, point = mount
    if root != "/" and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    return point + path if path.startswith("/") else f"{point}/{path}"


def find_cgroup(pid: int, proc_root: str = "/proc") -> CgroupPaths:
    """Locate the cgroup directories of process ``pid`` (as seen from this host)."""
    try:
        with open(f"{proc_root}/{pid}/cgroup") as f:
            proc_text = f.read()
        with open(f"{proc_root}/self/mountinfo") as f:
            mounts_text = f.read()
    except OSError as e:
        raise CgroupNotFound(f"cannot read the cgroup of pid {pid}: {e}") from None
    v1_paths, v2_path = parse_proc_cgroup(proc_text)
    v1_mounts, v2_mount = parse_cgroup_mounts(mounts_text)
    controllers = {
        c: _join(v1_mounts[c], p) for c, p in v1_paths.items() if c in v1_mounts and c != "systemd"
    }
    if "memory" in controllers or "cpuacct" in controllers:
        return CgroupPaths(version=1, controllers=controllers)
    if v2_path is not None and v2_mount is not None:
        return CgroupPaths(version=2, unified=_join(v2_mount, v2_path))
    raise CgroupNotFound(f"no cgroup v1 or v2 hierarchy found for pid {pid}")


def cgroup_procs(cg: CgroupPaths) -> list[int]:
    """PIDs in the container's cgroup (all processes, not threads); [] when unreadable."""
    path = cg.procs_path()
    if path is None:
        return []
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def cgroup_name(paths: CgroupPaths | None) -> str:
    """The container's cgroup as the kernel names it, relative to the hierarchy's root
    (``/docker/<id>``, ``/system.slice/docker-<id>.scope``): cAdvisor's ``id`` label.
    Empty when unknown."""
    if paths is None:
        return ""
    d = paths.unified if paths.version == 2 else paths.dir_for("memory") or paths.dir_for("cpu")
    if not d:
        return ""
    marker = "/sys/fs/cgroup/"
    at = d.find(marker)
    if at < 0:
        return ""
    rest = d[at + len(marker) :]
    if paths.version != 2:  # v1: the first component is the controller's mount
        rest = rest.split("/", 1)[1] if "/" in rest else ""
    return "/" + rest.strip("/")
