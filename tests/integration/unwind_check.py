#!/usr/bin/env python3
"""unwind_check.py - reads stacks of one process and prints what
unwind_test.sh asserts on, as KEY VALUE lines:

  samples N                 samples read
  root_FRAME FRACTION       share of samples whose outermost user frame is FRAME
  has_FRAME FRACTION        share of samples with FRAME anywhere in the stack
  incl_FRAME FRACTION       same, for the inclusive share of a function
  maxdepth N                most user frames in one stack
  at_maxdepth N             samples with that many
  chain FRACTION            share of samples whose stack holds --chain
                            (comma-separated, outermost first) as
                            consecutive frames
  match FRACTION            share of samples with a frame matching the
                            regular expression --match (a JIT runtime's
                            names: "^JS:" for V8's)

--where REGEX keeps only samples with a frame matching it.

With --top FILE (a /api/v1/top answer), --elf PATH and --object NAME[,NAME...]
instead, checks the rows of NAME's functions nothing names ("[unknown]
NAME+0xOFF"; the store names a file by the first path it met with its
build ID, so a copy may be named after the original) against the
function starts `readelf --debug-dump=frames` lists for PATH (converted
to file offsets through its executable PT_LOAD segments):

  unknown_rows N            rows named "[unknown] ...+0x..."
  unknown_at_fde_start N    those whose offset is an FDE's start
  unknown_inside_fde N      those inside an FDE but not at its start (want 0)
  unknown_same_fde N        pairs of rows within one FDE (want 0)
  unknown_outside_fde N     those no FDE covers (code without unwind
                            info, such as crtstuff's
                            __do_global_dtors_aux): nothing can name
                            them by an FDE, so they stay one row per
                            address
  unknown_outside_cum N     those rows' samples (cumulative)
  top_total N               the answer's total samples

Input: --folded FILE (smolder's folded output: "root;...;leaf COUNT",
kernel frames suffixed _[k]) or --perf FILE (`perf script
-F comm,ip,sym` output: one block per sample, leaf first). Frames named like
"[unknown] obj+0x1" count as anonymous frames.
"""
import argparse
import bisect
import json
import re
import subprocess
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


def fde_offsets(elf):
    """FDE ranges of elf as file offsets, sorted: [(start, end)]."""
    loads = []
    for line in subprocess.run(["readelf", "-lW", elf], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            loads.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    out = []
    for line in subprocess.run(["readelf", "--debug-dump=frames", elf], capture_output=True,
                               text=True, check=True).stdout.splitlines():
        m = re.search(r" FDE cie=[0-9a-f]+ pc=([0-9a-f]+)\.\.([0-9a-f]+)", line)
        if not m:
            continue
        a, b = int(m.group(1), 16), int(m.group(2), 16)
        for off, vaddr, size in loads:
            if vaddr <= a < vaddr + size:
                out.append((a - vaddr + off, b - vaddr + off))
    return sorted(out)


def check_top(top, elf, obj):
    fdes = fde_offsets(elf)
    starts = [a for a, _ in fdes]
    doc = json.load(open(top))
    offs = []
    for r in doc["rows"]:
        m = re.match(r"\[unknown\] (?:" + "|".join(map(re.escape, obj.split(","))) +
                     r")\+0x([0-9a-f]+)$", r["name"])
        if m:
            offs.append((int(m.group(1), 16), r.get("cum", 0)))
    start_set = set(starts)
    at_start = inside = outside = outside_cum = 0
    which = {}
    for o, cum in offs:
        i = bisect.bisect_right(starts, o) - 1
        if i >= 0 and o < fdes[i][1]:
            which[i] = which.get(i, 0) + 1
            if o in start_set:
                at_start += 1
            else:
                inside += 1
                print("inside_fde 0x%x cum %d (FDE 0x%x..0x%x)" % (o, cum, fdes[i][0], fdes[i][1]),
                      file=sys.stderr)
        elif o in start_set:
            at_start += 1   # an empty FDE's start
        else:
            outside += 1
            outside_cum += cum
            print("outside_fde 0x%x cum %d" % (o, cum), file=sys.stderr)
    print("unknown_rows", len(offs))
    print("unknown_at_fde_start", at_start)
    print("unknown_inside_fde", inside)
    print("unknown_same_fde", sum(n - 1 for n in which.values()))
    print("unknown_outside_fde", outside)
    print("unknown_outside_cum", outside_cum)
    print("top_total", doc.get("total", 0))
    return 0


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
    ap.add_argument("--top")
    ap.add_argument("--elf")
    ap.add_argument("--object")
    a = ap.parse_args()
    if a.top:
        return check_top(a.top, a.elf, a.object)
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
    at_max = 0
    for frames, n in src:
        if a.leaf and a.leaf not in frames:
            continue
        if where and not any(where.search(f) for f in frames):
            continue
        if match and any(match.search(f) for f in frames):
            matched += n
        total += n
        if len(frames) > maxdepth:
            maxdepth, at_max = len(frames), 0
        if len(frames) == maxdepth:
            at_max += n
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
    print("at_maxdepth", at_max)
    if chain:
        print("chain %.4f" % (chained / div))
    if match:
        print("match %.4f" % (matched / div))
    return 0


if __name__ == "__main__":
    sys.exit(main())
