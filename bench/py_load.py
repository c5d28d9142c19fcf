"""py_load.py - bench/agent_overhead's Python workload: SECONDS of a hot
loop 20 Python calls deep (a web handler's depth), in Debian's
python3.11 as the agent finds it on a host."""
import sys
import time


def work(n):
    s = 0
    for i in range(n):
        s += i * i
    return s


def level(depth, n):
    if depth:
        return level(depth - 1, n)
    return work(n)


def main(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        level(20, 2000)


main(float(sys.argv[1]))
