"""objcounter: count objects crossing a camera's view, like Waggle's plugin-objectcounter.

A real OpenCV pipeline: frames come from a camera stream (on a Waggle node the playback
server or a camera; here the playback service), a MOG2 background subtractor and contours
find the moving objects, a centroid tracker follows them and each object is counted once,
when its track crosses the vertical line in the middle of the frame.

    python3 app.py --use-cpu                      # read --stream once, count, exit 0
    python3 app.py -interval 5                    # read it again every 5 s until stopped

``--stream`` is a URL (http://, rtsp://, file://) or a stream name such as ``bottom_camera``,
looked up in the data-config JSON ($WAGGLE_DATA_CONFIG_PATH, default
/run/waggle/data-config.json) exactly as pywaggle does. With pywaggle installed the frames
come through ``waggle.data.vision.Camera`` and metrics are published with ``Plugin.publish``
(edgeprof follows pywaggle's run log); without it (or with ``--no-pywaggle``) OpenCV reads
the URL itself and metrics go through ``edgeprof.client`` when EDGEPROF_METRICS_SOCKET is set.
Published: ``fps`` (frames/s, once a second), ``latency`` (ms from a frame's capture to its
result, every frame) and ``objects`` (objects counted so far, once a second and at the end).

Prints a progress line once a second and, per pass, ``counted objects=N left_to_right=L
right_to_left=R frames=F avg_fps=X``. SIGTERM/SIGINT: a final line, exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

DATA_CONFIG = "/run/waggle/data-config.json"
_stop = False


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} objcounter: {msg}", flush=True)


def _on_signal(signum: int, _frame: object) -> None:
    global _stop
    _stop = True


# ------------------------------------------------------------------------- frames
def resolve_stream(stream: str) -> str:
    """A URL as is; a name through the data-config JSON (pywaggle's shape and rules)."""
    m = re.match(r"([A-Za-z0-9]+)://(.*)$", stream)
    if m is not None:
        return m.group(2) if m.group(1) == "file" else stream
    path = os.environ.get("WAGGLE_DATA_CONFIG_PATH", DATA_CONFIG)
    try:
        with open(path) as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"objcounter: cannot read the data config {path} for stream {stream!r}: {exc}"
        ) from None
    for section in config:
        if section.get("match", {}).get("id") == stream:
            try:
                return str(section["handler"]["args"]["url"])
            except KeyError:
                raise SystemExit(
                    f"objcounter: {path}: stream {stream!r} has no handler.args.url"
                ) from None
    raise SystemExit(f"objcounter: {path} has no stream {stream!r}")


def frames_pywaggle(stream: str) -> Iterator[tuple[Any, int]]:
    """Frames through pywaggle's Camera: every frame of the stream, in order (``stream()``
    without ``with`` reads sequentially), with the capture time pywaggle stamps."""
    from waggle.data.vision import BGR, Camera  # noqa: PLC0415

    for sample in Camera(stream, format=BGR).stream():
        yield sample.data, sample.timestamp


def frames_opencv(stream: str) -> Iterator[tuple[Any, int]]:
    import cv2  # noqa: PLC0415

    url = resolve_stream(stream)
    cap = cv2.VideoCapture(url)
    if not cap.isOpened():
        raise RuntimeError(f"unable to open video capture for device {url!r}")
    try:
        while cap.grab():
            ts = time.time_ns()
            ok, frame = cap.retrieve()
            if not ok:
                break
            yield frame, ts
    finally:
        cap.release()


def open_frames(stream: str, use_pywaggle: bool, tries: int = 5) -> Iterator[tuple[Any, int]]:
    """The first frame is fetched here, with a few retries while the source is not up yet."""
    reader = frames_pywaggle if use_pywaggle else frames_opencv
    for attempt in range(1, tries + 1):
        it = reader(stream)
        try:
            first = next(it)
        except StopIteration:
            first = None
        except RuntimeError as exc:
            log(f"{exc} (try {attempt}/{tries})")
            first = None
        if first is not None:
            return itertools.chain([first], it)
        if _stop or attempt == tries:
            break
        time.sleep(1.0)
    raise SystemExit(f"objcounter: no frames from stream {stream!r}")


# ------------------------------------------------------------------------- counting
class Counter:
    """MOG2 background subtraction → contours → greedy nearest-centroid tracks → line count."""

    def __init__(self, min_area: int = 500, max_dist: float = 60.0, max_missed: int = 5) -> None:
        import cv2  # noqa: PLC0415

        self.cv2 = cv2
        self.sub = cv2.createBackgroundSubtractorMOG2(
            history=300, varThreshold=32, detectShadows=False
        )
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.min_area = min_area
        self.max_dist2 = max_dist * max_dist
        self.max_missed = max_missed
        self.tracks: dict[int, list[float]] = {}  # id -> [cx, cy, missed, counted]
        self.next_id = 0
        self.left_to_right = 0
        self.right_to_left = 0

    @property
    def total(self) -> int:
        return self.left_to_right + self.right_to_left

    def detect(self, frame: Any) -> list[tuple[float, float]]:
        cv2 = self.cv2
        blur = cv2.GaussianBlur(frame, (5, 5), 0)
        mask = self.sub.apply(blur)
        _, mask = cv2.threshold(mask, 200, 255, cv2.THRESH_BINARY)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.kernel, iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        out = []
        for c in contours:
            if cv2.contourArea(c) < self.min_area:
                continue
            x, y, w, h = cv2.boundingRect(c)
            out.append((x + w / 2.0, y + h / 2.0))
        return out

    def step(self, frame: Any) -> int:
        """Process one frame; returns the objects in view."""
        line = frame.shape[1] / 2.0
        dets = self.detect(frame)
        pairs = sorted(
            (
                (dx * dx + dy * dy, tid, i)
                for tid, t in self.tracks.items()
                for i, (cx, cy) in enumerate(dets)
                for dx, dy in [(cx - t[0], cy - t[1])]
            ),
        )
        used_t: set[int] = set()
        used_d: set[int] = set()
        for d2, tid, i in pairs:
            if d2 > self.max_dist2 or tid in used_t or i in used_d:
                continue
            used_t.add(tid)
            used_d.add(i)
            t = self.tracks[tid]
            cx, cy = dets[i]
            if not t[3]:
                if t[0] < line <= cx:
                    self.left_to_right += 1
                    t[3] = 1
                elif t[0] >= line > cx:
                    self.right_to_left += 1
                    t[3] = 1
            t[0], t[1], t[2] = cx, cy, 0
        for tid in [tid for tid in self.tracks if tid not in used_t]:
            self.tracks[tid][2] += 1
            if self.tracks[tid][2] > self.max_missed:
                del self.tracks[tid]
        for i, (cx, cy) in enumerate(dets):
            if i not in used_d:
                self.tracks[self.next_id] = [cx, cy, 0, 0]
                self.next_id += 1
        return len(dets)


# ------------------------------------------------------------------------- metrics
class Publisher:
    """pywaggle's Plugin, edgeprof.client, or nothing; a failure only turns publishing off."""

    def __init__(self, mode: str) -> None:
        self.mode = "none"
        self.plugin: Any = None
        self.client: Any = None
        self._stack = contextlib.ExitStack()
        if mode == "pywaggle":
            from waggle.plugin import Plugin  # noqa: PLC0415

            self.plugin = self._stack.enter_context(Plugin())
            self.mode = "pywaggle"
        elif mode == "client" and os.environ.get("EDGEPROF_METRICS_SOCKET"):
            try:
                import edgeprof.client as client  # noqa: PLC0415
            except ImportError as exc:
                log(f"EDGEPROF_METRICS_SOCKET set but edgeprof.client unavailable ({exc})")
            else:
                self.client = client
                self.mode = "client"
        log(f"publishing metrics through {self.mode}")

    def publish(self, name: str, value: float, ts: int | None = None) -> None:
        try:
            if self.plugin is not None:
                self.plugin.publish(name, value, timestamp=ts)
            elif self.client is not None:
                self.client.publish(name, value, ts=ts)
        except Exception as exc:  # noqa: BLE001 - metrics must never kill the app
            log(f"publishing {name} failed, metrics off: {exc!r}")
            self.plugin = self.client = None

    def latency(self) -> Any:
        """A context for the client's ``latency`` timer (ms); None elsewhere."""
        if self.client is not None:
            return self.client.timer("latency")
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()


def pick_device(use_gpu: bool) -> str:
    if not use_gpu:
        return "cpu"
    import cv2  # noqa: PLC0415

    try:
        n = cv2.cuda.getCudaEnabledDeviceCount()
    except (AttributeError, cv2.error):
        n = 0
    if n > 0:
        log(f"{n} CUDA device(s), but this pipeline has no CUDA path; using the CPU")
    else:
        log("no CUDA device found (opencv-python-headless has no CUDA), falling back to CPU")
    return "cpu"


# ------------------------------------------------------------------------- main
def run_pass(stream: str, use_pywaggle: bool, pub: Publisher, counted_before: int) -> Counter:
    counter = Counter()
    frames = open_frames(stream, use_pywaggle)
    n = 0
    t_start = time.monotonic()
    t_win, n_win, lat_win = t_start, 0, []
    for frame, ts in frames:
        timer = pub.latency()
        if timer is not None:
            timer.__enter__()
        counter.step(frame)
        done_ns = time.time_ns()
        if timer is not None:
            timer.__exit__(None, None, None)
        lat_ms = (done_ns - ts) / 1e6
        if pub.plugin is not None:
            pub.publish("latency", lat_ms, ts=done_ns)
        lat_win.append(lat_ms)
        n += 1
        n_win += 1
        now = time.monotonic()
        if now - t_win >= 1.0:
            fps = n_win / (now - t_win)
            pub.publish("fps", fps)
            pub.publish("objects", counted_before + counter.total)
            lat_win.sort()
            log(
                f"frames={n} fps={fps:.1f} latency_p50={lat_win[len(lat_win) // 2]:.1f}ms "
                f"objects={counter.total}"
            )
            t_win, n_win, lat_win = now, 0, []
        if _stop:
            break
    elapsed = time.monotonic() - t_start
    pub.publish("objects", counted_before + counter.total)
    log(
        f"counted objects={counter.total} left_to_right={counter.left_to_right} "
        f"right_to_left={counter.right_to_left} frames={n} "
        f"avg_fps={n / elapsed if elapsed > 0 else 0.0:.1f}"
        + (" (pass cut short)" if _stop else "")
    )
    return counter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--stream", default="bottom_camera", help="stream name or URL")
    ap.add_argument(
        "-interval",
        "--interval",
        type=float,
        default=0,
        help="read the stream again every N s until stopped (default: once, then exit)",
    )
    ap.add_argument("--passes", type=int, default=1, help="without -interval: read it N times")
    ap.add_argument("--use-gpu", action="store_true", help="use the GPU (falls back to the CPU)")
    ap.add_argument("--use-cpu", action="store_true", help="use the CPU")
    ap.add_argument("--threads", type=int, default=0, help="OpenCV threads (0: OpenCV's default)")
    ap.add_argument(
        "--no-pywaggle",
        action="store_true",
        help="read with OpenCV and publish with edgeprof.client even when pywaggle is installed",
    )
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    import cv2  # noqa: PLC0415

    if args.threads > 0:
        cv2.setNumThreads(args.threads)
    device = pick_device(args.use_gpu and not args.use_cpu)
    have_pywaggle = importlib.util.find_spec("waggle") is not None and not args.no_pywaggle
    pub = Publisher("pywaggle" if have_pywaggle else "client")
    log(
        f"starting on {device}: OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads, "
        f"stream {args.stream!r} via {'pywaggle Camera' if have_pywaggle else 'OpenCV'}"
    )
    total, passes = 0, 0
    try:
        while not _stop:
            counter = run_pass(args.stream, have_pywaggle, pub, total)
            total += counter.total
            passes += 1
            if args.interval <= 0:
                if passes >= args.passes:
                    break
                continue
            deadline = time.monotonic() + args.interval
            while not _stop and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        pub.close()
    log(f"{'stopped by signal' if _stop else 'done'}: passes={passes} objects={total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
