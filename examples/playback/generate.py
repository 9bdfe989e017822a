"""Generate the playback server's videos: rectangles crossing a textured background.

    python3 generate.py OUT_DIR     # writes OUT_DIR/{bottom,top}/live.mp4, images/*.jpg, truth.json

Every object enters at one side edge, crosses the whole frame horizontally at a constant
speed and leaves at the other side, so the true count is known: ``truth(camera)`` (no OpenCV
or numpy needed, the tests import it). Objects in one lane never overlap in time, and lanes
are 120 px apart, so a centroid tracker sees every object as one track. The first
``WARMUP`` frames show only the background (for the background subtractor to learn it).

Run by ``scripts/build-images.sh`` inside the objcounter image (it has OpenCV), as a stage
of the playback image's build; the video is never stored in git.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass

WIDTH, HEIGHT, FPS = 640, 480, 15
WARMUP = 30
LANES = (100, 240, 380)  # lane centres (y); objects are at most 64 px tall
TAIL = 20  # frames of plain background after the last object has left


@dataclass(frozen=True)
class Mover:
    start: int  # first frame the object touches the frame
    lane: int  # index into LANES
    w: int
    h: int
    speed: int  # px per frame; > 0 moves left to right, < 0 right to left
    bgr: tuple[int, int, int]

    def x(self, frame: int) -> int:
        """Left edge at ``frame`` (off screen before start and after leaving)."""
        d = abs(self.speed) * (frame - self.start)
        return -self.w + 1 + d if self.speed > 0 else WIDTH - 1 - d

    def end(self) -> int:
        """First frame the object is fully out of the frame again."""
        return self.start + -(-(WIDTH + self.w) // abs(self.speed))


# (start spacing, objects): a fixed plan per camera, nothing random, so truth is exact
_BRIGHT = ((235, 235, 235), (60, 230, 250), (250, 200, 90), (90, 250, 120))
_DARK = ((15, 15, 15), (40, 20, 120), (110, 30, 20))


def scene(camera: str = "bottom") -> list[Mover]:
    """The objects of a camera's video, in order of appearance."""
    n, spacing = {"bottom": (12, 55), "top": (6, 80)}[camera]
    movers = []
    for i in range(n):
        speed = (5, 6, 7, 8)[(i * 3 + (camera == "top")) % 4]
        color = (_BRIGHT + _DARK)[(i * 5) % (len(_BRIGHT) + len(_DARK))]
        movers.append(
            Mover(
                start=WARMUP + i * spacing,
                lane=i % len(LANES),
                w=(56, 72, 88, 64)[i % 4],
                h=(40, 52, 64)[(i // 2) % 3],
                speed=speed if (i // 3 + i) % 2 == 0 else -speed,
                bgr=color,
            )
        )
    return movers


def frame_count(camera: str = "bottom") -> int:
    return max(m.end() for m in scene(camera)) + TAIL


def truth(camera: str = "bottom") -> dict[str, int]:
    """What a correct counter reports for the whole video."""
    movers = scene(camera)
    ltr = sum(1 for m in movers if m.speed > 0)
    return {
        "objects": len(movers),
        "left_to_right": ltr,
        "right_to_left": len(movers) - ltr,
        "frames": frame_count(camera),
        "fps": FPS,
        "width": WIDTH,
        "height": HEIGHT,
    }


def _check(movers: list[Mover]) -> None:
    """Objects sharing a lane never share the screen (so tracks never merge)."""
    for a in movers:
        for b in movers:
            if a is not b and a.lane == b.lane and a.start < b.start < a.end():
                raise SystemExit(
                    f"scene error: objects starting at {a.start} and {b.start} overlap"
                )


def _background(seed: int):  # noqa: ANN202 - numpy array
    import cv2  # noqa: PLC0415 - only the generator needs OpenCV
    import numpy as np  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (HEIGHT // 8, WIDTH // 8)).astype(np.float32)
    smooth = cv2.resize(noise, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 6, (HEIGHT, WIDTH)).astype(np.float32)  # grain, static
    ramp = np.linspace(-15, 15, WIDTH, dtype=np.float32)[None, :]
    gray = np.clip(120 + 18 * smooth + fine + ramp, 70, 170).astype(np.uint8)
    bg = cv2.merge([gray, (gray * 0.95).astype(np.uint8), (gray * 0.9).astype(np.uint8)])
    return bg


def render(camera: str, out_dir: str) -> dict[str, int]:
    import cv2  # noqa: PLC0415

    movers = scene(camera)
    _check(movers)
    cam_dir = os.path.join(out_dir, camera)
    os.makedirs(os.path.join(cam_dir, "images"), exist_ok=True)
    path = os.path.join(cam_dir, "live.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {path} (no mp4v encoder?)")
    bg = _background(1 if camera == "bottom" else 2)
    n = frame_count(camera)
    for f in range(n):
        img = bg.copy()
        for m in movers:
            x0 = m.x(f)
            if f < m.start or x0 >= WIDTH or x0 + m.w <= 0:
                continue
            y0 = LANES[m.lane] - m.h // 2
            cv2.rectangle(
                img, (max(0, x0), y0), (min(WIDTH, x0 + m.w) - 1, y0 + m.h - 1), m.bgr, -1
            )
        writer.write(img)
        if f % 50 == 25:
            cv2.imwrite(os.path.join(cam_dir, "images", f"frame-{f:05d}.jpg"), img)
    writer.release()
    t = truth(camera)
    with open(os.path.join(cam_dir, "truth.json"), "w") as fh:
        json.dump({**t, "movers": [asdict(m) for m in movers]}, fh, indent=1)
    return t


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for camera in ("bottom", "top"):
        t = render(camera, argv[0])
        print(
            f"{camera}: {t['frames']} frames, {t['objects']} objects "
            f"({t['left_to_right']} left to right, {t['right_to_left']} right to left)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
