#!/bin/sh
# symbolize_test.sh - central symbolization end to end: the real agent with
# real eBPF samples the symbolizer's test subjects (a PIE and a non-PIE C
# program at -O2 with an always_inline function in their hot loop, calling
# into libsymlib.so, and a C++ program with templates in a namespace) at
# 99 Hz, uploads their ELF files, and the real server names the frames:
# folded stacks, JSON nodes with file and line, and the top table show the
# functions with their callers, the inlined function as its own frame
# under the one it was inlined into, the shared library's functions, and
# demangled C++ names; kernel frames are marked as such.
#
# Binaries come from $SMOLDER_SERVER, $SMOLDER_AGENT and $SMOLDER_SYM_DIR
# (the Makefile passes them). Needs root and a kernel with BTF; anywhere
# else it says loudly that it skipped.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
SYM_DIR=${SMOLDER_SYM_DIR:-build/tests/sym}
TYPE='process_cpu:samples:count:cpu:nanoseconds:delta'
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/agent_lib.sh"
need_bpf symbolize_test.sh

start_server 127.0.0.1:0
start_agent --frequency 99 --label service=sym-test --verbose
ok "agent samples at 99 Hz"

# The subjects run from their own directory (libsymlib.so found through
# $ORIGIN), all at once: 4 s of wall time each.
mkdir "$tmp/bin"
for f in sym_c_pie sym_c_nopie sym_cpp libsymlib.so; do
	cp "$SYM_DIR/$f" "$tmp/bin/$f" || fail "no $SYM_DIR/$f (SMOLDER_SYM_DIR)"
done
for p in sym_c_pie sym_c_nopie sym_cpp; do
	"$tmp/bin/$p" 4 >"$tmp/$p.out" &
done
wait_subjects() {
	for p in sym_c_pie sym_c_nopie sym_cpp; do
		while pgrep -x "$p" >/dev/null; do sleep 0.2; done
	done
}
wait_subjects

q() {  # q ENDPOINT COMM [PARAM...]: GET with the comm's selector
	ep=$1 comm=$2
	shift 2
	curl -sfG "$base/api/v1/$ep" --data-urlencode "query=$TYPE{comm=\"$comm\"}" \
		--data-urlencode from=now-1h "$@"
}

# settle: every subject's stored total (total, agent_lib.sh) stopped
# growing for 2.5 s (the agent pushes every 2 s), at most 30 s
last=""; same=0; i=0
while [ "$same" -lt 5 ]; do
	now=$(for p in sym_c_pie sym_c_nopie sym_cpp; do total "$p" || echo -1; done | tr '\n' ' ')
	case " $now" in *" 0 "* | *" -1 "*) same=0 ;; *) [ "$now" = "$last" ] && same=$((same + 1)) || same=0 ;; esac
	last=$now
	i=$((i + 1))
	[ "$i" -le 60 ] || fail "samples still changing (or none) after 30 s: $now"
	sleep 0.5
done
ok "samples of the three subjects stored: $last"

# the agent uploaded every file the samples name
for f in sym_c_pie sym_c_nopie sym_cpp libsymlib.so; do
	bid=$(readelf -n "$tmp/bin/$f" | sed -n 's/.*Build ID: *//p')
	i=0
	until curl -sf -o /dev/null -I "$base/api/v1/debuginfo/$bid"; do
		i=$((i + 1))
		[ "$i" -le 300 ] || fail "debug info of $f ($bid) not uploaded within 30 s"
		sleep 0.1
	done
done
ok "the agent uploaded the subjects' files and libsymlib.so"

for p in sym_c_pie sym_c_nopie sym_cpp; do
	q query "$p" --data-urlencode format=folded >"$tmp/$p.folded" || fail "folded query of $p"
	q query "$p" --data-urlencode format=json >"$tmp/$p.json" || fail "json query of $p"
	q top "$p" --data-urlencode limit=1000 >"$tmp/$p.top" || fail "top of $p"
done

# Names, callers, files and lines, checked in Python: each expected path
# (root side first) must be a path of the tree, with the files given.
python3 - "$tmp" "$(dirname "$0")/../programs" <<'EOF' || fail "symbolized profiles (above)"
import json, os, sys

tmp, src = sys.argv[1], sys.argv[2]
bad = []

def line_of(file, text):
    """the line of file (tests/programs) where text first appears"""
    with open(os.path.join(src, file)) as f:
        for i, l in enumerate(f, 1):
            if text in l:
                return i
    raise SystemExit("no %r in %s" % (text, file))

def load(p):
    with open(os.path.join(tmp, p)) as f:
        return f.read()

def kernel_names():
    names = set()
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                names.add(parts[2])
    return names

KSYMS = kernel_names()

def walk(node, path, out):
    """every node, with the nodes from the root's child down to it"""
    p = path + [node]
    out.append(p)
    for c in node.get("children", []):
        walk(c, p, out)

def check(comm, chains, top_names):
    folded = load(comm + ".folded")
    lines = [l.rsplit(" ", 1)[0].split(";") for l in folded.splitlines() if l.strip()]
    tree = json.loads(load(comm + ".json"))
    paths = []
    for c in tree.get("children", []):
        walk(c, [], paths)
    nodes = [p[-1] for p in paths]
    top = json.loads(load(comm + ".top"))
    for chain in chains:  # [(name, file basename, call text or None), ...], caller first
        names = [c[0] for c in chain]
        k = len(names)
        if not any(any(l[i:i + k] == names for i in range(len(l) - k + 1)) for l in lines):
            bad.append("%s: no folded stack has %s" % (comm, ";".join(names)))
        hits = [p[-k:] for p in paths if [n["name"] for n in p[-k:]] == names]
        if not hits:
            bad.append("%s: no JSON path ends in %s" % (comm, " > ".join(names)))
            continue
        # the heaviest such path: each of its nodes has its file and a line;
        # a caller with one call site the line of that call (the agent sends
        # return address minus one, so the address falls inside the call).
        # A node merges every location of its function on that path, so one
        # with several call sites, or samples of its own, shows one of them.
        for (name, fb, call), n in zip(chain, max(hits, key=lambda h: h[-1]["total"])):
            want = line_of(fb, call) if call else None
            if (os.path.basename(n.get("file") or "") != fb or not n.get("line", 0) > 0 or
                    (want and n["line"] != want)):
                bad.append("%s: node %s has file %r line %r, want %s:%s" %
                           (comm, name, n.get("file"), n.get("line"), fb, want or "N"))
    rows = {r["name"]: r for r in top.get("rows", [])}
    for name, fb in top_names:
        r = rows.get(name)
        if not r:
            bad.append("%s: %s not in /top (rows: %s)" % (comm, name, sorted(rows)[:20]))
        elif r["flat"] <= 0 or os.path.basename(r.get("file") or "") != fb:
            bad.append("%s: /top row %r" % (comm, r))
    # no frame of our own files left unnamed
    for l in lines:
        for fr in l:
            if fr.startswith("[unknown]") and ("sym_" in fr or "libsymlib" in fr):
                bad.append("%s: unsymbolized frame %s" % (comm, fr))
                break
    # kernel frames: marked in folded (_[k]) and JSON ("kernel": true),
    # named from kallsyms, and only ever below (leafward of) user frames
    kf = [fr for l in lines for fr in l if fr.endswith("_[k]")]
    kj = [n for n in nodes if n.get("kernel")]
    for n in kj:
        if n["name"] not in KSYMS:
            bad.append("%s: kernel node %r not in /proc/kallsyms" % (comm, n["name"]))
    for fr in kf:
        if fr[:-4] not in KSYMS:
            bad.append("%s: folded kernel frame %r not in /proc/kallsyms" % (comm, fr))
    marked = set(n["name"] for n in kj)
    for l in lines:
        for fr in l:
            if not fr.endswith("_[k]") and fr in marked:
                bad.append("%s: kernel frame %s unmarked in folded output" % (comm, fr))
    print("%s: %d folded stacks, %d kernel frames marked, top: %s" %
          (comm, len(lines), len(kf), ", ".join(r["name"] for r in top["rows"][:4])))

C = [
    [("main", "sym_c.c", None), ("caller_plain", "sym_c.c", "leaf_spin(200000);"),
     ("leaf_spin", "sym_c.c", None)],
    # the always_inline function as its own frame under hot_loop
    [("main", "sym_c.c", None), ("caller_inline", "sym_c.c", "hot_loop(600000);"),
     ("hot_loop", "sym_c.c", None), ("mix_step", "sym_c.c", None)],
    # into the shared library
    [("main", "sym_c.c", None), ("caller_lib", "sym_c.c", "symlib_work(300000)"),
     ("symlib_work", "sym_lib.c", None), ("symlib_hash", "sym_lib.c", None)],
]
C_TOP = [("leaf_spin", "sym_c.c"), ("mix_step", "sym_c.c"), ("symlib_hash", "sym_lib.c")]
check("sym_c_pie", C, C_TOP)
check("sym_c_nopie", C, C_TOP)
CPP = [
    [("main", "sym_cpp.cpp", None), ("ns::drive(int)", "sym_cpp.cpp", None),
     ("ns::Worker<int>::run(unsigned long)", "sym_cpp.cpp", None)],
    [("main", "sym_cpp.cpp", None), ("ns::drive(int)", "sym_cpp.cpp", None),
     ("ns::Worker<long>::run(unsigned long)", "sym_cpp.cpp", None)],
    [("main", "sym_cpp.cpp", None), ("ns::drive(int)", "sym_cpp.cpp", None),
     ("ns::detail::churn(unsigned long)", "sym_cpp.cpp", None)],
]
check("sym_cpp", CPP, [("ns::Worker<int>::run(unsigned long)", "sym_cpp.cpp"),
                       ("ns::detail::churn(unsigned long)", "sym_cpp.cpp")])
for b in bad:
    print("FAIL: " + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
ok "functions, callers, inlined frames, the library and C++ names with files and lines"

[ -n "${SYM_KEEP:-}" ] && cp "$tmp"/*.folded "$tmp"/*.json "$tmp"/*.top "$SYM_KEEP"/
kill -TERM "$apid"
wait "$apid" 2>/dev/null || true
apid=""
