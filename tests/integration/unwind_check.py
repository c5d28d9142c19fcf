#!/usr/bin/env python3
"""unwind_check.py - reads stacks of one process and prints what
unwind_test.sh asserts on, as KEY VALUE lines:

  samples N                 samples read
  root_FRAME FRACTION       share of samples whose outermost user frame is FRAME
  has_FRAME FRACTION        share of samples with FRAME anywhere in the stack
  incl_FRAME FRACTION       same, for the inclusive share of a function
  maxdepth N                most user frames in one stack
  chain FRACTION            share of samples whose stack holds --chain
                            (comma-separated, outermost first) as
                            consecutive frames
  match FRACTION            share of samples with a frame matching the
                            regular expression --match (a JIT runtime's
                            names: "^JS:" for V8's)

--where REGEX keeps only samples with a frame matching it.

Input: --folded FILE (smolder's folded output: "root;...;leaf COUNT",
kernel frames suffixed _[k]) or --perf FILE (`perf script
-F comm,ip,sym` output: one block per sample, leaf first). Frames named like
"[unknown] obj+0x1" count as anonymous frames.
"""
import argparse
import re
import sys


def read_folded(path):
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.endswith("_[k]")]
        yield frames, int(count)


def read_perf(path, comm):
    """`perf script -F comm,ip,sym`: a header line (the comm, indented by
    spaces), then one tab-indented "ADDR SYMBOL" line per frame, leaf
    first, then a blank line."""
    frames, head = [], None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if head is not None and (not comm or head == comm):
                yield list(reversed(frames)), 1
            frames, head = [], None
            continue
        if not line.startswith("\t"):
            head = line.strip()
            continue
        parts = line.split(None, 1)
        sym = parts[1] if len(parts) > 1 else "[unknown]"
        if "[kernel.kallsyms]" in sym:
            continue
        sym = sym.replace(" (inlined)", "").split("+0x")[0].strip()
        frames.append(sym)
    if head is not None and (not comm or head == comm):
        yield list(reversed(frames)), 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folded")
    ap.add_argument("--perf")
    ap.add_argument("--comm", default="")
    ap.add_argument("--root", action="append", default=[])
    ap.add_argument("--has", action="append", default=[])
    ap.add_argument("--incl", action="append", default=[])
    ap.add_argument("--chain", default="")
    ap.add_argument("--leaf", default="", help="only samples whose stack holds this frame")
    ap.add_argument("--where", default="", help="only samples with a frame matching this regex")
    ap.add_argument("--match", default="")
    a = ap.parse_args()
    src = read_folded(a.folded) if a.folded else read_perf(a.perf, a.comm)
    total = 0
    root = {r: 0 for r in a.root}
    has = {h: 0 for h in a.has}
    incl = {f: 0 for f in a.incl}
    chain = [c for c in a.chain.split(",") if c]
    chained = 0
    maxdepth = 0
    matched = 0
    where = re.compile(a.where) if a.where else None
    match = re.compile(a.match) if a.match else None
    for frames, n in src:
        if a.leaf and a.leaf not in frames:
            continue
        if where and not any(where.search(f) for f in frames):
            continue
        if match and any(match.search(f) for f in frames):
            matched += n
        total += n
        maxdepth = max(maxdepth, len(frames))
        if frames:
            for r in a.root:
                if frames[0] == r:
                    root[r] += n
        for h in a.has:
            # NAME* matches by prefix: __libc_start_main* is the frame
            # whether libc's DWARF names it __libc_start_main_impl or its
            # dynamic symbol __libc_start_main
            if (h.endswith("*") and any(f.startswith(h[:-1]) for f in frames)) or h in frames:
                has[h] += n
        for f in a.incl:
            if f in frames:
                incl[f] += n
        if chain:
            for i in range(len(frames) - len(chain) + 1):
                if frames[i:i + len(chain)] == chain:
                    chained += n
                    break
    print("samples", total)
    div = total or 1
    for r in a.root:
        print("root_%s %.4f" % (r, root[r] / div))
    for h in a.has:
        print("has_%s %.4f" % (h.rstrip("*"), has[h] / div))
    for f in a.incl:
        print("incl_%s %.4f" % (f, incl[f] / div))
    print("maxdepth", maxdepth)
    if chain:
        print("chain %.4f" % (chained / div))
    if match:
        print("match %.4f" % (matched / div))
    return 0


if __name__ == "__main__":
    sys.exit(main())
