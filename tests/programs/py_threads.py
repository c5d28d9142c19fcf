"""py_threads.py - python_test.sh's second subject: each of two threads
spins in its own function under its own caller, a third compresses with
zlib (Python calling C calling libz), for argv[1] seconds."""
import os
import sys
import threading
import time
import zlib


def spin_a(end):
    x = 0
    while time.monotonic() < end:
        x += 1


def spin_b(end):
    y = 0
    while time.monotonic() < end:
        y -= 1


def thread_a(end):
    spin_a(end)


def thread_b(end):
    spin_b(end)


def squeeze(end, data):
    while time.monotonic() < end:
        zlib.compress(data, 9)


def main(seconds):
    end = time.monotonic() + seconds
    data = os.urandom(1 << 15) + bytes(1 << 16)
    ts = [threading.Thread(target=thread_a, args=(end,)),
          threading.Thread(target=thread_b, args=(end,)),
          threading.Thread(target=squeeze, args=(end, data))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


if __name__ == "__main__":
    main(float(sys.argv[1]))
