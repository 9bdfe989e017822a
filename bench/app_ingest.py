"""App-metrics ingest benchmark (not a timed test): prints figures, asserts nothing.

This process is the profiler side: an ``AppMetricsCollector`` (socket, pump process, reader
thread), drained by ``sample()`` every 10 ms as a 100 Hz sampler does, while a thread of
busy Python work competes for the interpreter lock as the sampler and the database writer
do. The senders are separate processes:

(a) third-party StatsD clients, unchanged, with their DEFAULT settings over the Unix socket:
    datadog's ``DogStatsd`` (non-blocking, one datagram per metric, drops when the socket
    is full) in bursts of 1,200 and 12,000 messages and flat out; its buffered and its
    aggregating modes at 100,000 messages/s; jsocol's ``statsd`` over UDP. For every case:
    messages sent, what the client itself counted as dropped (its own telemetry), what
    edgeprof accepted, and the exact check of counter totals. A peer measured in the same
    run: the same bursts into a socket read by a receiver thread inside the profiler (the
    previous design), with the kernel's default queue length.
(b) edgeprof's own client sustained at 100,000+ messages/s.
(c) App-side cost of ``edgeprof.client.publish()`` next to a plain ``sock.send``.

    python bench/app_ingest.py [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(os.path.dirname(HERE), "src")
sys.path.insert(0, SRC)

from edgeprof.collect.app.listener import AppMetricsCollector  # noqa: E402
from edgeprof.collect.app.sockets import current_qlen  # noqa: E402
from edgeprof.collect.app.wire import parse_datagram  # noqa: E402
from edgeprof.collect.base import CollectContext  # noqa: E402

DOGSTATSD = r"""
import json, sys, time
from datadog import DogStatsd
path, mode, n, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
kw = {}
if mode == "buffered":
    kw["disable_buffering"] = False
elif mode == "aggregated":
    kw["disable_aggregation"] = False
s = DogStatsd(socket_path=path, **kw)
t0 = time.perf_counter()
i = 0
while i < n:
    if rate > 0:
        while i >= (time.perf_counter() - t0) * rate:
            pass
    s.increment("frames", tags=[f"camera:{i % 300}"])  # 100 series
    s.gauge("queue", i % 17)
    s.histogram("infer_ms", 12.5)
    i += 3
wall = time.perf_counter() - t0
if mode == "aggregated":
    s.flush_aggregated_metrics()  # a well-behaved app's last flush: one datagram per series
s.flush()
dropped = s.packets_dropped if hasattr(s, "packets_dropped") else None
print(json.dumps({"sent": i, "frames": (i + 2) // 3, "wall": wall, "client_dropped": dropped}))
"""

JSOCOL = r"""
import json, sys, time
import statsd
c = statsd.StatsClient("127.0.0.1", int(sys.argv[1]))
n = int(sys.argv[2])
t0 = time.perf_counter()
for i in range(n):
    c.incr("frames")
print(json.dumps({"sent": n, "frames": n, "wall": time.perf_counter() - t0, "client_dropped": None}))
"""

EDGEPROF_CLIENT = r"""
import os, sys, time, json
from edgeprof import client
client.configure(socket_path=sys.argv[1])
rate, seconds = float(sys.argv[2]), float(sys.argv[3])
publish = client.publish
names = ["fps", "infer_ms", "detections", "queue_len"]
n = 0
t0 = time.perf_counter()
end = t0 + seconds
while True:  # catch up with the target count at every check: an even pace
    now = time.perf_counter()
    if now >= end:
        break
    target = (now - t0) * rate if rate > 0 else n + 1000
    while n < target:
        publish(names[n & 3], n * 0.5)
        n += 1
wall = time.perf_counter() - t0
client.flush(1.0)
st = client.stats()
print(json.dumps({"sent": n, "wall": wall, "client_dropped": st["dropped"], "frames": 0}))
"""


class Busy:
    """A thread of Python work holding the interpreter lock, as a sampler and writer do."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        x = 0
        while not self._stop.is_set():
            for i in range(20000):
                x += i
            time.sleep(0.002)

    def __enter__(self) -> Busy:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def run_case(sender: str, args: list[str], udp: bool = False, busy: bool = True) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="edgeprof-bench-")
    path = os.path.join(tmp, "run", "metrics.sock")
    col = AppMetricsCollector(None if udp else path, udp_port=0 if udp else None)
    col.open(CollectContext(target="bench", labels=(("target", "bench"),)))
    dest = str(col.udp_port) if udp else path
    totals: dict[Any, float] = {}  # last running total of every app.frames series
    ours = 0  # messages of the app (not the client's own telemetry, not derived totals)
    stop = threading.Event()

    def take() -> None:
        nonlocal ours
        for s in col.sample(time.time_ns()):
            if s.metric == "app.frames.total":
                totals[s.labels] = s.value
            elif not s.metric.endswith(".total") and not s.metric.startswith("app.datadog."):
                ours += 1

    def sampler() -> None:
        while not stop.wait(0.01):
            take()

    t = threading.Thread(target=sampler, daemon=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with Busy() if busy else contextlib.nullcontext():
        t.start()
        res = subprocess.run(
            [sys.executable, "-c", sender, dest, *args],
            env=dict(os.environ, PYTHONPATH=SRC),
            capture_output=True,
            text=True,
            timeout=300,
        )
        time.sleep(1.0)
        stop.set()
        t.join()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    col.close()
    take()
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    out = json.loads(res.stdout.strip().splitlines()[-1])
    st = col.stats()
    return {
        **out,
        "accepted": ours,
        "datagrams": st["datagrams"],
        "frames_total": sum(totals.values()),
        "rate": out["sent"] / out["wall"],
        "profiler_cpu": cpu / wall,
        "queue_len": col.queue_len,
    }


def thread_receiver_peer(n: int) -> dict[str, Any]:
    """The previous design: a receiver thread in the profiler, the default queue length."""
    tmp = tempfile.mkdtemp(prefix="edgeprof-bench-")
    path = os.path.join(tmp, "peer.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o777)
    got = 0
    stop = threading.Event()

    def recv() -> None:
        nonlocal got
        sock.settimeout(0.2)
        buf = bytearray(65537)
        while not stop.is_set():
            try:
                n_ = sock.recv_into(buf)
            except TimeoutError:
                continue
            got += len(parse_datagram(bytes(buf[:n_]), time.time_ns())[0])

    t = threading.Thread(target=recv, daemon=True)
    with Busy():
        t.start()
        res = subprocess.run(
            [sys.executable, "-c", DOGSTATSD, path, "default", str(n), "0"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        time.sleep(1.0)
        stop.set()
        t.join()
    sock.close()
    os.unlink(path)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {**out, "accepted": got}


DRAIN = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("ready", flush=True)
buf = bytearray(70000)
while True:
    if s.recv_into(buf) == 4 and buf[:4] == b"STOP":
        break
"""


def publish_cost(n: int) -> dict[str, float]:
    from edgeprof import client

    tmp = tempfile.mkdtemp(prefix="edgeprof-bench-")
    path = os.path.join(tmp, "drain.sock")
    drain = subprocess.Popen([sys.executable, "-c", DRAIN, path], stdout=subprocess.PIPE)
    assert drain.stdout is not None
    drain.stdout.readline()
    res: dict[str, float] = {}
    client.configure()  # no profiler: the no-op path
    t0 = time.perf_counter_ns()
    for _ in range(n):
        client.publish("fps", 29.7)
    res["noop"] = (time.perf_counter_ns() - t0) / n
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(path)
    sock.setblocking(False)
    data = b'{"name":"fps","value":29.7}'
    send = sock.send
    best_send = best_pub = float("inf")
    client.configure(socket_path=path)
    for _ in range(5):  # interleaved rounds, best of each
        t0 = time.perf_counter_ns()
        for _ in range(n):
            try:
                send(data)
            except BlockingIOError:
                pass
        best_send = min(best_send, (time.perf_counter_ns() - t0) / n)
        t0 = time.perf_counter_ns()
        for _ in range(n):
            client.publish("fps", 29.7)
        best_pub = min(best_pub, (time.perf_counter_ns() - t0) / n)
    res["send"], res["publish"] = best_send, best_pub
    client.flush(1.0)
    sock.setblocking(True)
    sock.send(b"STOP")
    drain.wait(5)
    sock.close()
    os.unlink(path)
    return res


def _row(name: str, r: dict[str, Any]) -> str:
    dropped = "-" if r.get("client_dropped") is None else f"{r['client_dropped']:,}"
    frames_ok = (
        "-"
        if not r.get("frames")
        else (
            "exact"
            if r["frames_total"] == r["frames"]
            else f"{r['frames_total']:,.0f}/{r['frames']:,}"
        )
    )
    lost = "n/a" if "aggregated" in name else f"{r['sent'] - r['accepted']:,}"
    return (
        f"{name:<34} {r['sent']:>9,} {r['rate']:>10,.0f} {dropped:>9} {r['accepted']:>9,} "
        f"{lost:>6} {frames_ok:>9} {r['datagrams']:>9,} {r['profiler_cpu']:>7.0%}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="small counts (CI)")
    args = ap.parse_args()
    big = 30_000 if args.smoke else 1_000_000  # 10 s at 100,000/s
    print(
        f"kernel net.unix.max_dgram_qlen: {current_qlen()}; cpus: {os.cpu_count()}; "
        "a busy thread competes for the profiler's interpreter lock throughout"
    )
    print("\n(a) third-party clients with default settings -> edgeprof's app-metrics socket")
    hdr = (
        f"{'case':<34} {'sent':>9} {'sent/s':>10} {'cl.drop':>9} {'accepted':>9} {'lost':>6} "
        f"{'frames':>9} {'datagrams':>9} {'prof.CPU':>7}"
    )
    print(hdr)
    cases: list[tuple[str, str, list[str], bool]] = [
        ("DogStatsd default, burst 1,200", DOGSTATSD, ["default", "1200", "0"], False),
        ("DogStatsd default, burst 12,000", DOGSTATSD, ["default", "12000", "0"], False),
        (f"DogStatsd default, flat out {big:,}", DOGSTATSD, ["default", str(big), "0"], False),
        ("DogStatsd default, 100,000/s", DOGSTATSD, ["default", str(big), "100000"], False),
        ("DogStatsd buffered, 100,000/s", DOGSTATSD, ["buffered", str(big), "100000"], False),
        ("DogStatsd aggregated, 100,000/s", DOGSTATSD, ["aggregated", str(big), "100000"], False),
        ("jsocol statsd over UDP, 30,000", JSOCOL, ["30000"], True),
    ]
    worst = 0
    for name, sender, a, udp in cases:
        try:
            r = run_case(sender, a, udp)
        except (RuntimeError, json.JSONDecodeError) as e:
            print(f"{name:<34} not run: {str(e).strip().splitlines()[-1][:80]}")
            continue
        if "aggregated" not in name:  # the client combines messages: its totals are the check
            worst = max(worst, r["sent"] - r["accepted"])
        worst = max(worst, int(r["frames"] - r["frames_total"]) if r.get("frames") else 0)
        print(_row(name, r))
    peer = thread_receiver_peer(1200)
    print(
        f"peer: receiver thread in the profiler, default queue, DogStatsd burst 1,200: "
        f"{peer['accepted']:,} of {peer['sent']:,} accepted "
        f"({peer['sent'] - peer['accepted']:,} lost; the client counted {peer['client_dropped']} dropped)"
    )
    print(
        f"largest loss through edgeprof's socket above: {worst:,} messages "
        "(aggregated: counter totals checked exactly; its 'accepted' counts combined messages)"
    )
    print("\n(b) edgeprof.client, one sender, paced (no busy thread: the sender's own limit)")
    for rate in (100_000, 0):
        secs = "2" if args.smoke else "10"
        r = run_case(EDGEPROF_CLIENT, [str(rate), secs], busy=False)
        print(_row(f"edgeprof.client {'max' if rate == 0 else f'{rate:,}/s'}", r))
    n = 20_000 if args.smoke else 200_000
    c = publish_cost(n)
    print(f"\n(c) app-side cost per call (best of 5 x {n:,} calls)")
    print(f"  plain sock.send(same bytes)  {c['send']:8.0f} ns")
    print(
        f"  client.publish('fps', 29.7)  {c['publish']:8.0f} ns  ({c['publish'] / c['send']:.2f}x send)"
    )
    print(f"  publish() without profiler   {c['noop']:8.0f} ns  (no-op)")


if __name__ == "__main__":
    main()
