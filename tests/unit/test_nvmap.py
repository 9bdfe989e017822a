"""nvmap client table (Jetson GPU memory per process): the parser on recorded and
kernel-formatted tables, the collector on a fake sysfs/proc tree, the Jetson source choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nvml_stand_in import StandInNvml

from edgeprof.cgroups import CgroupPaths
from edgeprof.collect.base import CollectContext
from edgeprof.collect.gpu import gpu_process_collectors
from edgeprof.collect.gpu.nvmap import (
    CLIENTS_REL,
    JetsonGpuProcessCollector,
    NvmapClient,
    NvmapProcessCollector,
    parse_nvmap_clients,
    parse_nvmap_meminfo,
)
from edgeprof.collect.gpu.nvml import NvmlProcessCollector
from edgeprof.errors import CollectorUnavailable
from edgeprof.hostinfo import HostCaps
from edgeprof.model import Event, Sample, labels_of

DATA = Path(__file__).resolve().parents[1] / "data" / "jetson-nvmap"
K = 1024
CID = "0123456789abcdef" * 4


class NoGpuNvml(StandInNvml):
    """STAND-IN: NVML that loads but finds no GPU."""

    def nvmlDeviceGetCount(self):  # noqa: N802
        return 0


def kernel_table(rows: list[tuple[str, str, int, int]], total_k: int) -> str:
    """SYNTHESIZED: a table printed with the kernel's formats (nvmap_debug_clients_show)."""
    # the kernel's printf formats, kept as written there
    out = "%-18s %18s %8s %11s\n" % ("CLIENT", "PROCESS", "PID", "SIZE")  # noqa: UP031
    for client, comm, pid, kib in rows:
        out += "%-18s %18s %8u" % (client, comm, pid) + " %10uK\n" % kib  # noqa: UP031
    return out + "%-18s %18s %8s %10uK\n" % ("total", "", "", total_k)  # noqa: UP031


# --- parser -------------------------------------------------------------------------------


def test_recorded_gimbal_table_every_line() -> None:
    t = parse_nvmap_clients((DATA / "clients-gimbal.txt").read_text())
    assert t.clients == [
        NvmapClient("gem", 4481, 118372 * K),
        NvmapClient("gnome-shell", 2831, 5384 * K),
        NvmapClient("Xorg", 1731, 18140 * K),
        NvmapClient("nvargus-daemon", 1012, 0),
    ]
    assert t.total_bytes == 141896 * K == sum(c.bytes for c in t.clients)
    assert t.has_data


def test_htop_example_table_every_line() -> None:
    t = parse_nvmap_clients((DATA / "clients-htop-example.txt").read_text())
    assert [(c.process, c.pid, c.bytes) for c in t.clients] == [
        ("gpu_burn", 7979, 23525644 * K),
        ("gnome_shell", 8119, 5800 * K),
        ("Xorg", 2651, 17876 * K),
    ]
    assert t.total_bytes == 23549320 * K == sum(c.bytes for c in t.clients)


def test_recorded_files_have_the_kernel_column_widths() -> None:
    for f in ("clients-gimbal.txt", "clients-htop-example.txt"):
        for line in (DATA / f).read_text().splitlines():
            assert len(line) == 18 + 1 + 18 + 1 + 8 + 1 + 11, (f, line)


def test_synthesized_kernel_rows_spaces_duplicates_kernel_client() -> None:
    text = kernel_table(
        [
            ("user", "python3", 5001, 2048),
            ("user", "Web Content", 5002, 10),  # comm with a space
            ("user", "python3", 5001, 1024),  # second client of the same process
            ("nvhost", "kernel", 0, 0),
            ("user", "VLLM::EngineCor", 1792595, 14617792),  # 7-digit PID, 15-char comm
        ],
        14620874,
    )
    t = parse_nvmap_clients(text)
    assert t.clients == [
        NvmapClient("python3", 5001, 2048 * K),
        NvmapClient("Web Content", 5002, 10 * K),
        NvmapClient("python3", 5001, 1024 * K),
        NvmapClient("kernel", 0, 0, "nvhost"),
        NvmapClient("VLLM::EngineCor", 1792595, 14617792 * K),
    ]
    assert t.total_bytes == 14620874 * K


def test_empty_thor_style_table_and_junk() -> None:
    t = parse_nvmap_clients(kernel_table([], 0))  # SYNTHESIZED: header and a 0K total only
    assert t.clients == [] and t.total_bytes == 0 and not t.has_data
    assert parse_nvmap_clients("") == ([], None)
    odd = "user  x  12  7M\nuser y 13 2G\nuser z 14 99\nuser w abc 5K\nuser v 15 5Q\ntotal\n"
    t = parse_nvmap_clients(odd)
    assert [(c.pid, c.bytes) for c in t.clients] == [(12, 7 * K * K), (13, 2 * K**3), (14, 99)]
    assert t.total_bytes is None


def test_meminfo_nvmap_line() -> None:
    assert parse_nvmap_meminfo("MemTotal: 7991 kB\nNvMapMemUsed:     123456 kB\n") == 123456 * K
    assert parse_nvmap_meminfo("MemTotal: 7991 kB\n") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_without_error(raw: bytes) -> None:
    text = raw.decode("utf-8", errors="replace")
    t = parse_nvmap_clients(text)
    assert all(c.pid >= 0 and c.bytes >= 0 for c in t.clients)
    parse_nvmap_meminfo(text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["user", "nvhost"]),
            st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=15),
            st.integers(1, 4_194_304),
            st.integers(0, 2**40),
        ),
        max_size=20,
    )
)
def test_kernel_formatted_rows_round_trip(rows: list[tuple[str, str, int, int]]) -> None:
    t = parse_nvmap_clients(kernel_table(rows, sum(r[3] for r in rows)))
    assert [(c.client, c.process, c.pid, c.bytes) for c in t.clients] == [
        (a, b, p, s * K) for a, b, p, s in rows
    ]
    assert t.total_bytes == sum(r[3] for r in rows) * K


# --- collector on a fake tree -------------------------------------------------------------


def fake_jetson(
    tmp: Path,
    table: str | None,
    nvgpu: bool = True,
    in_cgroup: tuple[int, ...] = (),
    named: tuple[int, ...] = (),
) -> tuple[CollectContext, list[Event]]:
    """A sysfs/proc tree: the client table (None: debugfs not mounted), meminfo, a cgroup v2
    directory listing ``in_cgroup`` and /proc/<pid>/cgroup naming the container for ``named``."""
    sys_root, proc = tmp / "sys", tmp / "proc"
    (sys_root / "kernel" / "debug").mkdir(parents=True)
    if table is not None:
        clients = sys_root / CLIENTS_REL
        clients.parent.mkdir(parents=True)
        clients.write_text(table)
    proc.mkdir()
    (proc / "meminfo").write_text(
        "MemTotal:        7991172 kB\n" + ("NvMapMemUsed:     524288 kB\n" if nvgpu else "")
    )
    cg = tmp / "cg"
    cg.mkdir()
    (cg / "cgroup.procs").write_text("".join(f"{p}\n" for p in in_cgroup))
    for pid in named:
        (proc / str(pid)).mkdir()
        (proc / str(pid) / "cgroup").write_text(f"0::/system.slice/docker-{CID}.scope\n")
    (proc / "9999").mkdir()  # a host process in another cgroup
    (proc / "9999" / "cgroup").write_text("0::/user.slice/session-1.scope\n")
    events: list[Event] = []
    ctx = CollectContext(
        target="app",
        labels=labels_of(target="app"),
        container_id=CID,
        pid=4481,
        cgroup=CgroupPaths(version=2, unified=str(cg)),
        proc_root=str(proc),
        sys_root=str(sys_root),
        emit_event=events.append,
    )
    return ctx, events


def values(samples: list[Sample]) -> dict[tuple[str, str | None], float]:
    return {(s.metric, dict(s.labels).get("pid")): s.value for s in samples}


def test_collector_sums_the_containers_processes(tmp_path: Path) -> None:
    table = kernel_table(
        [
            ("user", "detector", 4481, 300_000),  # the main PID
            ("user", "worker", 4490, 20_000),  # in cgroup.procs
            ("user", "worker", 4490, 480),  # same process, second client
            ("user", "helper", 4495, 64),  # only /proc/<pid>/cgroup names the container
            ("user", "Xorg", 9999, 18_140),  # the host's
            ("nvhost", "kernel", 0, 0),
        ],
        338_684,
    )
    ctx, _ = fake_jetson(tmp_path, table, in_cgroup=(4481, 4490), named=(4495,))
    c = NvmapProcessCollector()
    c.open(ctx)
    got = values(c.sample(123))
    c.close()
    assert got == {
        ("gpu.process.memory_used_bytes", "4481"): 300_000 * K,
        ("gpu.process.memory_used_bytes", "4490"): 20_480 * K,
        ("gpu.process.memory_used_bytes", "4495"): 64 * K,
        ("gpu.container.memory_used_bytes", None): (300_000 + 20_480 + 64) * K,
    }


def test_labels_match_nvmls_process_collector(tmp_path: Path) -> None:
    ctx, _ = fake_jetson(tmp_path, (DATA / "clients-gimbal.txt").read_text(), in_cgroup=(4481,))
    c = NvmapProcessCollector()
    c.open(ctx)
    mine = c.sample(1)
    c.close()
    nv = NvmlProcessCollector(nvml=StandInNvml())
    nv.open(CollectContext(target="app", labels=labels_of(target="app"), pid=4242))
    theirs = nv.sample(1)
    nv.close()
    assert {s.metric for s in mine} <= {m.name for m in nv.metrics()}
    keys = {s.metric: {k for k, _ in s.labels} for s in theirs}
    for s in mine:
        assert {k for k, _ in s.labels} == keys[s.metric], s
    assert [(s.metric, s.value) for s in mine] == [
        ("gpu.process.memory_used_bytes", 118372.0 * K),
        ("gpu.container.memory_used_bytes", 118372.0 * K),
    ]


def test_table_follows_the_file_each_tick(tmp_path: Path) -> None:
    ctx, _ = fake_jetson(tmp_path, kernel_table([], 0), in_cgroup=(4481,))
    c = NvmapProcessCollector()
    c.open(ctx)
    assert values(c.sample(1)) == {("gpu.container.memory_used_bytes", None): 0.0}
    (Path(ctx.sys_root) / CLIENTS_REL).write_text(
        kernel_table([("user", "detector", 4481, 4096)], 4096)
    )
    assert values(c.sample(2))[("gpu.container.memory_used_bytes", None)] == 4096 * K
    (Path(ctx.sys_root) / CLIENTS_REL).unlink()
    assert c.sample(3) == []  # a failed read is a missing sample, not a zero
    c.close()


def test_unreadable_table_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    ctx, _ = fake_jetson(tmp_path, None)
    with pytest.raises(CollectorUnavailable, match="iovmm/clients not readable.*debugfs"):
        NvmapProcessCollector().open(ctx)
    with pytest.raises(CollectorUnavailable, match="container id or cgroup"):
        NvmapProcessCollector().open(CollectContext(sys_root=ctx.sys_root))


def test_clients_path_override(tmp_path: Path) -> None:
    ctx, _ = fake_jetson(tmp_path, None, in_cgroup=(4481,))
    f = tmp_path / "elsewhere"
    f.write_text((DATA / "clients-gimbal.txt").read_text())
    c = NvmapProcessCollector(clients_path=str(f))
    c.open(ctx)
    assert values(c.sample(1))[("gpu.container.memory_used_bytes", None)] == 118372 * K
    c.close()


# --- which source on a Jetson -------------------------------------------------------------


def test_orin_picks_nvmap_and_says_so(tmp_path: Path) -> None:
    ctx, events = fake_jetson(
        tmp_path, (DATA / "clients-gimbal.txt").read_text(), in_cgroup=(4481,)
    )
    c = JetsonGpuProcessCollector(nvml=StandInNvml())
    c.open(ctx)
    assert c.source == "nvmap"
    assert values(c.sample(1))[("gpu.container.memory_used_bytes", None)] == 118372 * K
    c.close()
    assert [(e.kind, e.data["source"]) for e in events] == [("note", "nvmap")]
    assert "nvmap client table" in events[0].message and CLIENTS_REL in events[0].message


def test_orin_with_empty_table_still_nvmap(tmp_path: Path) -> None:
    ctx, _ = fake_jetson(tmp_path, kernel_table([], 0), nvgpu=True)
    c = JetsonGpuProcessCollector(nvml=StandInNvml())
    c.open(ctx)
    assert c.source == "nvmap"  # nvgpu stack: NvMapMemUsed present, the table is the source
    c.close()


def test_orin_without_root_is_unavailable_not_nvml(tmp_path: Path) -> None:
    ctx, _ = fake_jetson(tmp_path, None, nvgpu=True)
    with pytest.raises(CollectorUnavailable, match="comes only from nvmap.*not readable"):
        JetsonGpuProcessCollector(nvml=StandInNvml()).open(ctx)


def test_thor_empty_table_picks_nvml_and_says_so(tmp_path: Path) -> None:
    ctx, events = fake_jetson(tmp_path, kernel_table([("user", "x", 4481, 0)], 0), nvgpu=False)
    c = JetsonGpuProcessCollector(nvml=StandInNvml())
    c.open(ctx)
    assert c.source == "nvml"
    names = {s.metric for s in c.sample(1)}
    assert "gpu.container.memory_used_bytes" in names
    c.close()
    assert [e.data["source"] for e in events] == ["nvml"]
    assert "from NVML" in events[0].message and "table is empty" in events[0].message


def test_thor_without_debugfs_picks_nvml(tmp_path: Path) -> None:
    ctx, events = fake_jetson(tmp_path, None, nvgpu=False)
    c = JetsonGpuProcessCollector(nvml=StandInNvml())
    c.open(ctx)
    assert c.source == "nvml" and "not readable" in events[0].message
    c.close()


def test_neither_source_is_unavailable_with_both_reasons(tmp_path: Path) -> None:
    ctx, _ = fake_jetson(tmp_path, None, nvgpu=False)
    with pytest.raises(CollectorUnavailable, match="not readable.*; .*NVML"):
        JetsonGpuProcessCollector(nvml=NoGpuNvml()).open(ctx)


def test_jetson_host_gets_the_jetson_collector() -> None:
    (c,) = gpu_process_collectors(HostCaps(jetson=True))
    assert isinstance(c, JetsonGpuProcessCollector) and c.group == "gpu-process"
    (d,) = gpu_process_collectors(HostCaps(jetson=False))
    assert isinstance(d, NvmlProcessCollector)
