"""py_leaves.py - python_test.sh's main subject: two hot leaves,
Work.leaf_a and Work.leaf_b, under distinct callers; each leaf call's CPU
time measured with time.thread_time(). Runs until it has used argv[1]
seconds of CPU (a loaded machine gives it less than wall time; at most
ten times that of wall time), then writes
to argv[2] what it measured and what dis says about its own code: the
qualified names, the lines each leaf's instructions are on, and the line
of each call, for python_check.py to hold the profile against."""
import dis
import json
import os
import sys
import time


class Work:
    def leaf_a(self, n):
        s = 0
        for i in range(n):
            s += i * i
        return s

    def leaf_b(self, n):
        s = 0
        for i in range(n):
            s ^= i
        return s


def caller_a(w, cpu):
    t0 = time.thread_time()
    w.leaf_a(30000)
    cpu[0] += time.thread_time() - t0


def caller_b(w, cpu):
    t0 = time.thread_time()
    w.leaf_b(15000)
    cpu[1] += time.thread_time() - t0


def main(seconds):
    w = Work()
    cpu = [0.0, 0.0]
    end = time.monotonic() + 10 * seconds
    used = time.thread_time() + seconds
    while time.monotonic() < end and time.thread_time() < used:
        caller_a(w, cpu)
        caller_b(w, cpu)
    return cpu


def lines(f):
    """Every line an instruction of f's code is on (co_positions)."""
    return sorted({p[0] for p in f.__code__.co_positions() if p[0]})


def call_line(f, callee):
    """The line of f's call of the attribute or global callee."""
    for ins in dis.get_instructions(f):
        if ins.argval == callee and ins.opname in ("LOAD_METHOD", "LOAD_ATTR", "LOAD_GLOBAL"):
            return ins.positions.lineno
    raise SystemExit("no call of %s in %s" % (callee, f.__name__))


if __name__ == "__main__":
    cpu = main(float(sys.argv[1]))
    with open(sys.argv[2], "w") as out:
        json.dump({
            "pid": os.getpid(),
            "file": Work.leaf_a.__code__.co_filename,
            "cpu": {"Work.leaf_a": cpu[0], "Work.leaf_b": cpu[1]},
            "qualname": {f.__name__: f.__qualname__ for f in
                         (Work.leaf_a, Work.leaf_b, caller_a, caller_b, main)},
            "lines": {f.__qualname__: lines(f) for f in (Work.leaf_a, Work.leaf_b)},
            "calls": {
                "caller_a": call_line(caller_a, "leaf_a"),
                "caller_b": call_line(caller_b, "leaf_b"),
                "main": sorted([call_line(main, "caller_a"), call_line(main, "caller_b")]),
            },
        }, out)
