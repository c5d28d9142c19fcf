"""python_check.py - checks python_test.sh's profiles: the JSON tree the
server returns for one process (GET /api/v1/query?format=json) against
what the workload measured and what dis said about its code.

  python_check.py leaves TREE EXPECT   py_leaves.py's run (EXPECT: its JSON)
  python_check.py threads TREE         py_threads.py's run
  python_check.py native TREE LIB      a process that must show no Python
                                       frames, and frames in its library LIB

Prints what it measured, one "key value" per line; exits 1 with the
reason when a check fails."""
import json
import sys


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def samples(tree):
    """(path root first, self value) for every node with self samples."""
    out = []
    stack = [(tree, [])]
    while stack:
        n, path = stack.pop()
        here = path + [n] if n is not tree else path
        if n is not tree and n.get("self", 0):
            out.append((here, n["self"]))
        for c in n.get("children", []):
            stack.append((c, here))
    return out


def py(path):
    """The Python frames of a path, root first."""
    return [n for n in path if n.get("lang") == "python"]


def check_leaves(tree, expect):
    total = tree["total"]
    if total < 300:
        fail("only %d samples of py_leaves.py" % total)
    leaf = {}
    with_caller = {}
    named = 0
    caller_of = {"Work.leaf_a": "caller_a", "Work.leaf_b": "caller_b"}
    seen_lines = {k: set() for k in caller_of}
    for path, v in samples(tree):
        p = py(path)
        if not p or p[-1]["name"] not in caller_of:
            continue
        inner = p[-1]
        named += v
        leaf[inner["name"]] = leaf.get(inner["name"], 0) + v
        # the Python caller right above the leaf, at the line of its call
        if len(p) >= 2 and p[-2]["name"] == caller_of[inner["name"]]:
            with_caller[inner["name"]] = with_caller.get(inner["name"], 0) + v
            want = expect["calls"][p[-2]["name"]]
            if p[-2].get("line") != want:
                fail("%s called %s at line %s, dis says %d" %
                     (p[-2]["name"], inner["name"], p[-2].get("line"), want))
            if len(p) >= 3 and p[-3]["name"] == "main" and \
                    p[-3].get("line") not in expect["calls"]["main"]:
                fail("main called %s at line %s, dis says %s" %
                     (p[-2]["name"], p[-3].get("line"), expect["calls"]["main"]))
        # the leaf's own line: one its code has instructions on
        if inner.get("file") != expect["file"]:
            fail("%s in file %r, not %r" % (inner["name"], inner.get("file"), expect["file"]))
        if inner.get("line") not in expect["lines"][inner["name"]]:
            fail("%s at line %s, its code is on lines %s" %
                 (inner["name"], inner.get("line"), expect["lines"][inner["name"]]))
        seen_lines[inner["name"]].add(inner["line"])
    a, b = leaf.get("Work.leaf_a", 0), leaf.get("Work.leaf_b", 0)
    if not a or not b:
        fail("leaves in the profile: %s" % leaf)
    ca, cb = expect["cpu"]["Work.leaf_a"], expect["cpu"]["Work.leaf_b"]
    share, want = 100.0 * a / (a + b), 100.0 * ca / (ca + cb)
    print("samples %d" % total)
    print("named_leaf_pct %.1f" % (100.0 * named / total))
    print("leaf_a_share %.2f" % share)
    print("leaf_a_cpu_share %.2f" % want)
    print("caller_above_pct %.1f" % (100.0 * sum(with_caller.values()) / named))
    print("leaf_a_lines %s" % sorted(seen_lines["Work.leaf_a"]))
    print("leaf_b_lines %s" % sorted(seen_lines["Work.leaf_b"]))
    if 100.0 * named / total < 80:
        fail("%.1f %% of the samples under a named Python leaf, want >= 80" %
             (100.0 * named / total))
    if 100.0 * sum(with_caller.values()) / named < 95:
        fail("%.1f %% of the leaves' samples show their caller, want >= 95" %
             (100.0 * sum(with_caller.values()) / named))
    if abs(share - want) > 3:
        fail("leaf_a's share %.2f %% is off its CPU time's %.2f %% by more than 3 points" %
             (share, want))
    for k, s in seen_lines.items():
        if len(s) < 2:
            fail("%s only ever at line %s: not the line being executed" % (k, s))
    for q in ("leaf_a", "leaf_b"):
        if expect["qualname"][q] not in leaf:
            fail("no frame named %s" % expect["qualname"][q])


def check_threads(tree):
    spin = {"spin_a": 0, "spin_b": 0}
    zlib_native = 0
    squeeze = 0
    for path, v in samples(tree):
        p = py(path)
        names = [n["name"] for n in p]
        if not p:
            continue
        inner = names[-1]
        if inner in spin:
            # each thread's own stack: its own caller, never the other's
            own, other = ("thread_a", "thread_b") if inner == "spin_a" else ("thread_b", "thread_a")
            if len(names) < 2 or names[-2] != own or other in names:
                fail("%s under %s" % (inner, ";".join(names)))
            spin[inner] += v
        if inner == "squeeze":
            squeeze += v
            # Python calling C: the native frames below the Python caller
            below = path[path.index(p[-1]) + 1:]
            if any("libz" in n["name"] or n["name"].startswith("deflate") for n in below):
                zlib_native += v
    print("spin_a %d" % spin["spin_a"])
    print("spin_b %d" % spin["spin_b"])
    print("squeeze %d" % squeeze)
    print("squeeze_in_libz %d" % zlib_native)
    if spin["spin_a"] < 20 or spin["spin_b"] < 20:
        fail("thread samples: %s" % spin)
    if zlib_native < 10:
        fail("only %d samples of libz under squeeze" % zlib_native)


def check_native(tree, lib):
    found = 0
    for path, v in samples(tree):
        if py(path) or any(n["name"] == "[python]" for n in path):
            fail("a Python frame in %s" % ";".join(n["name"] for n in path))
        # unsymbolized ("[unknown] LIB+0x...") or named with the file
        if any(lib in n["name"] or lib in n.get("file", "") for n in path):
            found += v
    print("samples %d" % tree["total"])
    print("in_lib %d" % found)
    if found < 10:
        fail("only %d samples in %s" % (found, lib))


def main():
    mode, tree = sys.argv[1], json.load(open(sys.argv[2]))
    if mode == "leaves":
        check_leaves(tree, json.load(open(sys.argv[3])))
    elif mode == "threads":
        check_threads(tree)
    else:
        check_native(tree, sys.argv[3])


main()
