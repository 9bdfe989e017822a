"""A CPU-bound app with a known hot function (80 % of the work) and a cold one (20 %).

Usage: python3 hot_cold.py SECONDS [--child]   With --child, a multiprocessing child runs
child_work() (its own process, its own stacks) beside the parent's loop.
"""

import sys
import time


def hot(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def cold(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def child_work(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hot(20000)


def main() -> None:
    seconds = float(sys.argv[1])
    child = None
    if "--child" in sys.argv:
        import multiprocessing

        child = multiprocessing.Process(target=child_work, args=(seconds,), name="worker")
        child.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(4):
            hot(20000)
        cold(20000)
    if child is not None:
        child.join()


if __name__ == "__main__":
    main()
