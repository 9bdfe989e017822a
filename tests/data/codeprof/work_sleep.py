"""Half busy, half asleep: 1 s of CPU work in work(), then 1 s in time.sleep() in rest().

Usage: python3 work_sleep.py SECONDS
"""

import sys
import time


def work(seconds: float) -> int:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def rest(seconds: float) -> None:
    time.sleep(seconds)


def main() -> None:
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        work(1.0)
        rest(1.0)


if __name__ == "__main__":
    main()
