"""objcounter: a pure-Python stand-in for Waggle's plugin-objectcounter.

Simulates a vision pipeline without torch: it renders synthetic grayscale frames (a few
bright blobs moving over a noisy background), smooths and thresholds them, and counts the
connected components ("objects") of each frame.

    python3 app.py --use-cpu                # process --frames frames, then exit 0
    python3 app.py -interval 5 --use-gpu    # every 5 s process a burst, report, forever

Prints `objects=N fps=F` once per report interval. Exits 0 promptly on SIGTERM/SIGINT after
a final line. When EDGEPROF_METRICS_SOCKET is set and edgeprof.client can be imported, it
publishes `fps`, `objects` and an `infer` timer for every frame.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import math
import os
import random
import signal
import sys
import time

WIDTH, HEIGHT = 320, 240
THRESHOLD = 128
_stop = False


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} objcounter: {msg}", flush=True)


def _on_signal(signum: int, _frame: object) -> None:
    global _stop
    _stop = True


class Metrics:
    """Optional edgeprof.client publisher; every failure just turns publishing off."""

    def __init__(self) -> None:
        self.client = None
        if not os.environ.get("EDGEPROF_METRICS_SOCKET"):
            return
        try:
            import edgeprof.client as client  # noqa: PLC0415
        except ImportError as exc:
            log(f"EDGEPROF_METRICS_SOCKET set but edgeprof.client unavailable ({exc})")
            return
        self.client = client
        log("publishing metrics through edgeprof.client")

    def publish(self, name: str, value: float) -> None:
        if self.client is None:
            return
        try:
            self.client.publish(name, value)
        except Exception as exc:  # noqa: BLE001 - metrics must never kill the app
            log(f"edgeprof.client.publish failed, metrics off: {exc!r}")
            self.client = None

    def timer(self, name: str):  # noqa: ANN201
        if self.client is None:
            return contextlib.nullcontext()
        try:
            return self.client.timer(name)
        except Exception as exc:  # noqa: BLE001
            log(f"edgeprof.client.timer failed, metrics off: {exc!r}")
            self.client = None
            return contextlib.nullcontext()


class Scene:
    """A few bright discs bouncing around a noisy dark background."""

    def __init__(self, n_blobs: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.blobs = []
        for _ in range(n_blobs):
            r = self.rng.randint(8, 20)
            self.blobs.append(
                [
                    self.rng.uniform(r, WIDTH - r),
                    self.rng.uniform(r, HEIGHT - r),
                    self.rng.uniform(-6, 6),
                    self.rng.uniform(-4, 4),
                    r,
                ]
            )
        # pre-rendered noise rows, picked at random per frame (cheap "sensor noise")
        self.noise = [bytes(self.rng.randrange(0, 90) for _ in range(WIDTH)) for _ in range(64)]

    def step(self) -> bytearray:
        frame = bytearray(WIDTH * HEIGHT)
        pick = self.rng.randrange
        for y in range(HEIGHT):
            frame[y * WIDTH : (y + 1) * WIDTH] = self.noise[pick(64)]
        for b in self.blobs:
            b[0] += b[2]
            b[1] += b[3]
            x, y, _, _, r = b
            if not r <= x <= WIDTH - r:
                b[2] = -b[2]
            if not r <= y <= HEIGHT - r:
                b[3] = -b[3]
            cx, cy = int(b[0]), int(b[1])
            for yy in range(max(0, cy - r), min(HEIGHT, cy + r + 1)):
                dx = int(math.sqrt(max(0, r * r - (yy - cy) ** 2)))
                x0, x1 = max(0, cx - dx), min(WIDTH, cx + dx + 1)
                if x1 > x0:
                    frame[yy * WIDTH + x0 : yy * WIDTH + x1] = b"\xf0" * (x1 - x0)
        return frame


def smooth(frame: bytearray) -> bytearray:
    """The 'model': 5x5 Gaussian (separable, 1-4-6-4-1) then a 3x3 gradient-energy
    suppression, all per pixel in pure Python -- roughly what a tiny conv layer costs."""
    w, n = WIDTH, len(frame)
    f = frame
    h = [0] * n
    for i in range(2, n - 2):
        h[i] = f[i - 2] + 4 * f[i - 1] + 6 * f[i] + 4 * f[i + 1] + f[i + 2]
    w2 = 2 * w
    v = [0] * n
    for i in range(w2, n - w2):
        v[i] = (h[i - w2] + 4 * h[i - w] + 6 * h[i] + 4 * h[i + w] + h[i + w2]) >> 8
    out = bytearray(n)
    for i in range(w + 1, n - w - 1):
        gx = v[i + 1] - v[i - 1]
        gy = v[i + w] - v[i - w]
        e = v[i] - ((abs(gx) + abs(gy)) >> 3)
        out[i] = e if e > 0 else 0
    return out


_LUT = bytes(1 if v >= THRESHOLD else 0 for v in range(256))


def count_objects(frame: bytearray) -> int:
    """Threshold, then count 4-connected components with an iterative flood fill."""
    mask = bytearray(frame.translate(_LUT))
    w, n = WIDTH, len(mask)
    count = 0
    i = mask.find(1)
    while i >= 0:
        count += 1
        mask[i] = 0
        stack = [i]
        while stack:
            p = stack.pop()
            x = p % w
            if x > 0 and mask[p - 1]:
                mask[p - 1] = 0
                stack.append(p - 1)
            if x < w - 1 and mask[p + 1]:
                mask[p + 1] = 0
                stack.append(p + 1)
            if p >= w and mask[p - w]:
                mask[p - w] = 0
                stack.append(p - w)
            if p + w < n and mask[p + w]:
                mask[p + w] = 0
                stack.append(p + w)
        i = mask.find(1, i + 1)
    return count


def pick_device(use_gpu: bool) -> str:
    if not use_gpu:
        return "cpu"
    if glob.glob("/dev/nvidia[0-9]*") or glob.glob("/dev/nvhost-gpu"):
        log("CUDA device node present, but this stand-in has no torch; using CPU")
    else:
        log("no CUDA device found, falling back to CPU")
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "-interval",
        "--interval",
        type=float,
        default=0,
        help="seconds between reports; with it the app runs until stopped",
    )
    ap.add_argument("--use-gpu", action="store_true", help="use the GPU (falls back to CPU)")
    ap.add_argument("--use-cpu", action="store_true", help="use the CPU")
    ap.add_argument(
        "--frames",
        type=int,
        default=250,
        help="frames to process without -interval, then exit (default 250)",
    )
    ap.add_argument(
        "--burst", type=int, default=10, help="frames per sample with -interval (default 10)"
    )
    ap.add_argument("--blobs", type=int, default=5, help="moving objects in the scene")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    device = pick_device(args.use_gpu and not args.use_cpu)
    metrics = Metrics()
    scene = Scene(args.blobs, args.seed)
    mode = (
        f"periodic, interval={args.interval:g}s"
        if args.interval > 0
        else f"batch, frames={args.frames}"
    )
    log(f"starting on {device} ({mode}), frame {WIDTH}x{HEIGHT}")

    total = 0
    objects = 0
    t_start = time.monotonic()

    def process(n: int) -> float:
        """Process up to n frames; returns frames per second of the processing."""
        nonlocal total, objects
        t0 = time.monotonic()
        done = 0
        while done < n and not _stop:
            t = time.monotonic()
            with metrics.timer("infer"):
                objects = count_objects(smooth(scene.step()))
            done += 1
            total += 1
            dt = time.monotonic() - t
            metrics.publish("objects", objects)
            metrics.publish("fps", 1.0 / dt if dt > 0 else 0.0)
        elapsed = time.monotonic() - t0
        return done / elapsed if elapsed > 0 else 0.0

    if args.interval > 0:
        next_report = time.monotonic()
        while not _stop:
            fps = process(args.burst)
            if _stop:
                break
            log(f"objects={objects} fps={fps:.1f}")
            next_report += args.interval
            while not _stop and time.monotonic() < next_report:
                time.sleep(min(0.1, max(0.0, next_report - time.monotonic())))
            if time.monotonic() > next_report + args.interval:  # fell behind: resync
                next_report = time.monotonic()
    else:
        remaining = args.frames
        while remaining > 0 and not _stop:
            t0, n0 = time.monotonic(), total
            # report about once per second
            while remaining > 0 and not _stop and time.monotonic() - t0 < 1.0:
                process(1)
                remaining -= 1
            dt = time.monotonic() - t0
            log(f"objects={objects} fps={(total - n0) / dt if dt > 0 else 0.0:.1f}")

    elapsed = time.monotonic() - t_start
    why = "stopped by signal" if _stop else "done"
    avg = total / elapsed if elapsed > 0 else 0.0
    log(f"{why}: frames={total} objects={objects} avg_fps={avg:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
