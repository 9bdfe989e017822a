"""cgroup discovery, parsers and collectors against recorded trees.

``tests/data/cgroup/v1`` was recorded from a running busybox container on a cgroup v1
(hybrid) host; ``tests/data/cgroup/v2`` is hand-written from the kernel's documented
formats (see its README).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgeprof.cgroups import (
    CgroupNotFound,
    CgroupPaths,
    cgroup_procs,
    find_cgroup,
    parse_cgroup_mounts,
    parse_proc_cgroup,
)
from edgeprof.collect.base import CollectContext
from edgeprof.collect.cgroup import (
    CgroupCollector,
    NetCollector,
    parse_blkio_v1,
    parse_flat_keyed,
    parse_io_stat_v2,
    parse_net_dev,
)
from edgeprof.errors import CollectorUnavailable
from edgeprof.model import labels_of

DATA = Path(__file__).resolve().parent.parent / "data" / "cgroup"
V1 = DATA / "v1"
V2 = DATA / "v2"
V1_ID = "f8341f78f8507a59e0dcd9cc6b9f775d571c6de0c4ccfc4a00ad877274a78aa3"
V1_PID = 31232
V2_ID = "3f9a1c0e5b7d2a4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5"
V2_PID = 4242
LABELS = labels_of(target="t1")


def _fake_proc(tmp_path: Path, pid: int, cgroup: str, mountinfo: str) -> str:
    root = tmp_path / "proc"
    (root / str(pid)).mkdir(parents=True)
    (root / "self").mkdir()
    (root / str(pid) / "cgroup").write_text(cgroup)
    (root / "self" / "mountinfo").write_text(mountinfo)
    return str(root)


def _recorded_proc(tmp_path: Path, tree: Path, pid: int) -> str:
    """The recorded /proc with its cgroup mount points moved under the recorded /sys."""
    mountinfo = (tree / "proc" / "self" / "mountinfo").read_text()
    mountinfo = mountinfo.replace(" /sys/fs/cgroup", f" {tree}/sys/fs/cgroup")
    cgroup = (tree / "proc" / str(pid) / "cgroup").read_text()
    return _fake_proc(tmp_path, pid, cgroup, mountinfo)


def _values(samples: list) -> dict[str, float]:
    out = {s.metric: s.value for s in samples}
    assert len(out) == len(samples), "a metric was reported twice"
    return out


# -- /proc/<pid>/cgroup and mountinfo ---------------------------------------------------------


def test_parse_proc_cgroup_recorded_v1_hybrid() -> None:
    v1, v2 = parse_proc_cgroup((V1 / "proc" / str(V1_PID) / "cgroup").read_text())
    path = f"/docker/{V1_ID}"
    assert v2 == path  # the hybrid host also shows the unified line
    assert set(v1) == {
        "systemd",
        "pids",
        "blkio",
        "freezer",
        "devices",
        "memory",
        "cpuset",
        "cpuacct",
        "cpu",
    }
    assert all(p == path for p in v1.values())


def test_parse_proc_cgroup_comounted_and_v2_only() -> None:
    v1, v2 = parse_proc_cgroup(
        "12:cpu,cpuacct:/docker/abc\n11:name=systemd:/docker/abc\nbogus line\n"
    )
    assert v1 == {"cpu": "/docker/abc", "cpuacct": "/docker/abc", "systemd": "/docker/abc"}
    assert v2 is None
    assert parse_proc_cgroup("0::/system.slice/docker-x.scope\n") == (
        {},
        "/system.slice/docker-x.scope",
    )


def test_parse_cgroup_mounts_recorded_v1() -> None:
    v1, v2 = parse_cgroup_mounts((V1 / "proc" / "self" / "mountinfo").read_text())
    for c in ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"):
        assert v1[c] == ("/", f"/sys/fs/cgroup/{c}")
    assert v1["systemd"] == ("/", "/sys/fs/cgroup/systemd")
    assert "rw" not in v1 and "relatime" not in v1
    assert v2 == ("/", "/sys/fs/cgroup/unified")


def test_parse_cgroup_mounts_v2_and_comounted_v1() -> None:
    v1, v2 = parse_cgroup_mounts((V2 / "proc" / "self" / "mountinfo").read_text())
    assert v1 == {}
    assert v2 == ("/", "/sys/fs/cgroup")
    v1, v2 = parse_cgroup_mounts(
        "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10"
        " - cgroup cgroup rw,cpu,cpuacct\n"
    )
    assert v1 == {
        "cpu": ("/", "/sys/fs/cgroup/cpu,cpuacct"),
        "cpuacct": ("/", "/sys/fs/cgroup/cpu,cpuacct"),
    }
    assert v2 is None


def test_find_cgroup_recorded_hybrid_host_v1_wins(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        V1_PID,
        (V1 / "proc" / str(V1_PID) / "cgroup").read_text(),
        (V1 / "proc" / "self" / "mountinfo").read_text(),
    )
    cg = find_cgroup(V1_PID, proc_root=proc)
    assert cg.version == 1
    assert cg.unified is None
    for c in ("cpu", "cpuacct", "memory", "blkio", "pids"):
        assert cg.dir_for(c) == f"/sys/fs/cgroup/{c}/docker/{V1_ID}"
    assert "systemd" not in cg.controllers


def test_find_cgroup_v2(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        V2_PID,
        (V2 / "proc" / str(V2_PID) / "cgroup").read_text(),
        (V2 / "proc" / "self" / "mountinfo").read_text(),
    )
    cg = find_cgroup(V2_PID, proc_root=proc)
    assert cg == CgroupPaths(version=2, unified=f"/sys/fs/cgroup/system.slice/docker-{V2_ID}.scope")
    assert cg.dir_for("memory") == cg.unified


def test_find_cgroup_nested_mount_root_v1(tmp_path: Path) -> None:
    # edgeprof itself inside a container: the hierarchy is mounted from /docker/outer.
    proc = _fake_proc(
        tmp_path,
        7,
        "4:memory:/docker/outer/inner\n2:cpu,cpuacct:/docker/outer/inner\n",
        "40 31 0:32 /docker/outer /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n"
        "41 31 0:33 /docker/outer /sys/fs/cgroup/cpu,cpuacct ro,relatime"
        " - cgroup cgroup rw,cpu,cpuacct\n",
    )
    cg = find_cgroup(7, proc_root=proc)
    assert cg.version == 1
    assert cg.controllers == {
        "memory": "/sys/fs/cgroup/memory/inner",
        "cpu": "/sys/fs/cgroup/cpu,cpuacct/inner",
        "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/inner",
    }


def test_find_cgroup_nested_mount_root_v2(tmp_path: Path) -> None:
    proc = _fake_proc(
        tmp_path,
        8,
        "0::/kubepods/pod1/ctr/app\n",
        "50 40 0:26 /kubepods/pod1/ctr /sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw\n",
    )
    assert find_cgroup(8, proc_root=proc) == CgroupPaths(version=2, unified="/sys/fs/cgroup/app")
    # The process sits at the mount root itself.
    proc = _fake_proc(
        tmp_path / "b",
        8,
        "0::/kubepods/pod1/ctr\n",
        "50 40 0:26 /kubepods/pod1/ctr /sys/fs/cgroup ro,relatime - cgroup2 cgroup2 rw\n",
    )
    cg = find_cgroup(8, proc_root=proc)
    assert cg.unified is not None
    assert os.path.normpath(cg.unified) == "/sys/fs/cgroup"


def test_find_cgroup_v2_line_without_v2_mount_and_no_v1(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 9, "0::/docker/x\n", "22 1 259:2 / / rw - ext4 /dev/sda1 rw\n")
    with pytest.raises(CgroupNotFound, match="pid 9"):
        find_cgroup(9, proc_root=proc)


def test_find_cgroup_missing_pid(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text("")
    with pytest.raises(CgroupNotFound, match="pid 123"):
        find_cgroup(123, proc_root=str(tmp_path))


# -- pure parsers -----------------------------------------------------------------------------


def test_parse_flat_keyed_recorded_memory_stat() -> None:
    ms = parse_flat_keyed(
        next((V1 / "sys/fs/cgroup/memory/docker").iterdir()).joinpath("memory.stat").read_text()
    )
    assert ms["total_inactive_file"] == 430080
    assert ms["total_rss"] == 57344
    assert ms["total_cache"] == 827392
    assert ms["hierarchical_memory_limit"] == 9223372036854771712
    assert parse_flat_keyed("a 1\nb notanumber\nc\n\nd 4\n") == {"a": 1, "d": 4}


def test_parse_blkio_v1() -> None:
    text = (
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n8:0 Discard 0\n"
        "8:0 Total 12288\n8:16 Read 100\n8:16 Write 1\n8:16 Total 101\nTotal 12389\n"
    )
    assert parse_blkio_v1(text) == (4196, 8193)
    assert parse_blkio_v1("Total 0\n") == (0, 0)  # recorded: a container that did no I/O


def test_parse_io_stat_v2() -> None:
    text = (V2 / "sys/fs/cgroup/system.slice" / f"docker-{V2_ID}.scope" / "io.stat").read_text()
    assert parse_io_stat_v2(text) == (1048576 + 2097152, 4096 + 8192)
    assert parse_io_stat_v2("") == (0, 0)


def test_parse_net_dev_excludes_lo() -> None:
    text = (V2 / "proc" / str(V2_PID) / "net" / "dev").read_text()
    assert parse_net_dev(text) == (123456, 321, 65432, 210)
    assert parse_net_dev(text, skip=()) == (124456, 331, 66432, 220)
    recorded = (V1 / "proc" / str(V1_PID) / "net" / "dev").read_text()
    assert parse_net_dev(recorded) == (0, 0, 0, 0)


# -- collectors against the recorded trees ----------------------------------------------------


def test_cgroup_collector_v1_recorded(tmp_path: Path) -> None:
    proc = _recorded_proc(tmp_path, V1, V1_PID)
    cg = find_cgroup(V1_PID, proc_root=proc)
    assert cg.dir_for("memory") == f"{V1}/sys/fs/cgroup/memory/docker/{V1_ID}"
    c = CgroupCollector()
    c.open(CollectContext(target="t1", labels=LABELS, pid=V1_PID, cgroup=cg, proc_root=proc))
    try:
        samples = c.sample(123)
        again = c.sample(456)  # files are re-read with pread
    finally:
        c.close()
    assert all(s.t_ns == 123 and s.labels == LABELS for s in samples)
    assert _values(samples) == {
        "cpu.usage_seconds": 3930017688 / 1e9,
        "cpu.throttled_seconds": 3865665833 / 1e9,
        "memory.usage_bytes": 1159168,
        "memory.working_set_bytes": 1159168 - 430080,
        "memory.rss_bytes": 57344,
        "memory.cache_bytes": 827392,
        "memory.oom_kills": 0,
        "io.read_bytes": 0,
        "io.write_bytes": 0,
        "pids.count": 1,
    }
    # memory.limit_in_bytes = 9223372036854771712 means unlimited: no limit series.
    assert "memory.limit_bytes" not in _values(samples)
    assert _values(again) == _values(samples)
    assert {s.metric for s in samples} <= {m.name for m in c.metrics()}
    assert cgroup_procs(cg) == [V1_PID]


def test_cgroup_collector_v2(tmp_path: Path) -> None:
    proc = _recorded_proc(tmp_path, V2, V2_PID)
    cg = find_cgroup(V2_PID, proc_root=proc)
    c = CgroupCollector()
    c.open(CollectContext(target="t1", labels=LABELS, pid=V2_PID, cgroup=cg))
    try:
        got = _values(c.sample(1))
    finally:
        c.close()
    assert got == {
        "cpu.usage_seconds": 2.5,
        "cpu.throttled_seconds": 0.75,
        "memory.usage_bytes": 104857600,
        "memory.working_set_bytes": 104857600 - 20971520,
        "memory.rss_bytes": 62914560,
        "memory.cache_bytes": 31457280,
        "memory.limit_bytes": 268435456,
        "memory.oom_kills": 1,
        "io.read_bytes": 3145728,
        "io.write_bytes": 12288,
        "pids.count": 7,
    }
    assert cgroup_procs(cg) == [4242, 4250]


def test_cgroup_collector_v2_unlimited_and_missing_files(tmp_path: Path) -> None:
    d = tmp_path / "cg"
    shutil.copytree(V2 / "sys/fs/cgroup/system.slice" / f"docker-{V2_ID}.scope", d)
    (d / "memory.max").write_text("max\n")
    (d / "io.stat").unlink()
    (d / "memory.stat").unlink()
    c = CgroupCollector()
    c.open(CollectContext(target="t1", cgroup=CgroupPaths(version=2, unified=str(d))))
    got = _values(c.sample(1))
    c.close()
    assert "memory.limit_bytes" not in got
    assert "io.read_bytes" not in got and "memory.working_set_bytes" not in got
    assert got["memory.usage_bytes"] == 104857600
    assert got["pids.count"] == 7


def test_cgroup_collector_v1_with_limit(tmp_path: Path) -> None:
    controllers = {}
    for c in ("cpuacct", "cpu", "memory", "blkio", "pids"):
        dst = tmp_path / c
        shutil.copytree(V1 / "sys/fs/cgroup" / c / "docker" / V1_ID, dst)
        controllers[c] = str(dst)
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("268435456\n")
    col = CgroupCollector()
    col.open(CollectContext(target="t1", cgroup=CgroupPaths(version=1, controllers=controllers)))
    got = _values(col.sample(1))
    col.close()
    assert got["memory.limit_bytes"] == 268435456


def test_cgroup_collector_unavailable(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailable):
        CgroupCollector().open(CollectContext(target="t1"))
    empty = CgroupPaths(version=2, unified=str(tmp_path / "gone"))
    with pytest.raises(CollectorUnavailable):
        CgroupCollector().open(CollectContext(target="t1", cgroup=empty))


def test_net_collector_recorded_and_v2(tmp_path: Path) -> None:
    n = NetCollector()
    n.open(CollectContext(target="t1", labels=LABELS, pid=V1_PID, proc_root=str(V1 / "proc")))
    assert _values(n.sample(5)) == {
        "net.rx_bytes": 0,
        "net.tx_bytes": 0,
        "net.rx_packets": 0,
        "net.tx_packets": 0,
    }
    n.close()
    n = NetCollector()
    n.open(CollectContext(target="t1", labels=LABELS, pid=V2_PID, proc_root=str(V2 / "proc")))
    samples = n.sample(5)
    n.close()
    assert all(s.labels == LABELS and s.t_ns == 5 for s in samples)
    assert _values(samples) == {
        "net.rx_bytes": 123456,
        "net.tx_bytes": 65432,
        "net.rx_packets": 321,
        "net.tx_packets": 210,
    }
    assert n.sample(6) == []  # closed


def test_net_collector_unavailable(tmp_path: Path) -> None:
    with pytest.raises(CollectorUnavailable):
        NetCollector().open(CollectContext(target="t1", pid=0))
    with pytest.raises(CollectorUnavailable):
        NetCollector().open(CollectContext(target="t1", pid=99, proc_root=str(tmp_path)))


def test_cgroup_name_is_relative_to_the_hierarchy_root() -> None:
    """cAdvisor's ``id`` label: the same name under either cgroup version and driver."""
    from edgeprof.cgroups import CgroupPaths, cgroup_name

    v1 = CgroupPaths(1, {"memory": "/sys/fs/cgroup/memory/docker/abc", "cpu": "/x"})
    assert cgroup_name(v1) == "/docker/abc"
    v2 = CgroupPaths(2, {}, "/sys/fs/cgroup/system.slice/docker-abc.scope")
    assert cgroup_name(v2) == "/system.slice/docker-abc.scope"
    assert cgroup_name(CgroupPaths(1, {"memory": "/tmp/fake/memory/docker/abc"})) == ""
    assert cgroup_name(None) == ""
