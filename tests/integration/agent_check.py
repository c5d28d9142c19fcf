#!/usr/bin/env python3
"""agent_check.py - reads what the server stored for one test program and
checks it against the program's own ELF file: the sample count against the
CPU time the program reported, the stacks against its symbol table (every
stack reaches main; hot_a gets about three times hot_b's samples), and the
series labels against what the agent should have put there.

usage: agent_check.py BASE_URL BINARY COMM CPU_NS FREQUENCY key=value...
Exits non-zero with a message on the first failed check."""
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

TYPE = "process_cpu:samples:count:cpu:nanoseconds:delta"


def get(base, path, **params):
    url = base + path + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def symbols(binary):
    """name -> (file_offset_start, file_offset_end) of functions, mapping
    virtual addresses to file offsets through the LOAD segments."""
    loads = []
    for line in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[2], 16), int(f[1], 16), int(f[4], 16)))  # vaddr, off, filesz
    out = {}
    for line in subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        f = line.split()
        if len(f) != 4 or f[2] not in "tT":
            continue
        addr, size = int(f[0], 16), int(f[1], 16)
        for vaddr, off, filesz in loads:
            if vaddr <= addr < vaddr + filesz:
                out[f[3]] = (addr - vaddr + off, addr - vaddr + off + size)
    return out


def build_id(binary):
    out = subprocess.run(["readelf", "-n", binary], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:")[1].strip()
    return None


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    base, binary, comm, cpu_ns, freq = sys.argv[1:6]
    want_labels = dict(a.split("=", 1) for a in sys.argv[6:])
    cpu_s, freq = int(cpu_ns) / 1e9, int(freq)
    sel = '%s{comm="%s"}' % (TYPE, comm)
    folded = get(base, "/api/v1/query", query=sel, format="folded", **{"from": "now-1h"})
    syms = symbols(binary)
    # The server names an object by the first file name it saw for its
    # build ID: a copy of the binary under another name shares it, so the
    # caller may give the prefix all copies' names share.
    name = os.environ.get("OBJECT_PREFIX") or binary.rsplit("/", 1)[-1]

    def in_fn(frame, fn):
        # named by the server's symbolizer once the agent uploaded the
        # binary, or still "[unknown] file+0xoffset" before
        if frame == fn:
            return True
        pre = "[unknown] %s" % name
        if not frame.startswith(pre) or "+0x" not in frame:
            return False
        off = int(frame.rsplit("+0x", 1)[1], 16)
        lo, hi = syms[fn]
        return lo <= off < hi

    total = reached_main = a = b = 0
    for line in folded.splitlines():
        stack, n = line.rsplit(" ", 1)
        n = int(n)
        frames = stack.split(";")
        total += n
        if any(in_fn(f, "main") for f in frames):
            reached_main += n
        elif n * 50 >= total:
            print("stack without main: %s %d" % (stack, n))
        if any(in_fn(f, "hot_a") for f in frames):
            a += n
        if any(in_fn(f, "hot_b") for f in frames):
            b += n
    want = cpu_s * freq
    print("samples %d, expected %.0f (%.2f CPU s x %d Hz); reach main %d; hot_a %d hot_b %d"
          % (total, want, cpu_s, freq, total and reached_main, a, b))
    if not (0.85 * want <= total <= 1.15 * want):
        fail("%d samples for %s, expected %.0f +-15%%" % (total, comm, want))
    if reached_main < 0.98 * total:
        fail("only %d of %d samples have main on the stack" % (reached_main, total))
    share = a / max(a + b, 1)
    if not (0.65 <= share <= 0.85):
        fail("hot_a has %.0f%% of hot_a+hot_b samples, expected about 75%%" % (100 * share))
    rng = json.loads(get(base, "/api/v1/range", query=sel, step="1h", **{"from": "now-1h"}))
    if len(rng["series"]) != 1:
        fail("expected one series for %s, got %d" % (comm, len(rng["series"])))
    labels = rng["series"][0]["labels"]
    want_labels.setdefault("build_id", build_id(binary))
    for k, v in want_labels.items():
        if labels.get(k) != v:
            fail("label %s is %r, expected %r (all: %s)" % (k, labels.get(k), v, labels))
    print("labels ok: %s" % labels)


main()
