#!/bin/sh
# gosym_test.sh - a stripped Go binary named end to end: Debian's golang-go
# builds tests/programs/go_busy.go with -ldflags='-s -w' (no .symtab, no
# DWARF: the Makefile's $SMOLDER_SYM_DIR/go_busy_stripped), the real agent
# samples it with real eBPF at 99 Hz and uploads the file (named by its
# content: Go's linker writes a Go build ID note, no GNU one), and the
# real server names its frames from .gopclntab alone. At least 95 % of the
# process' samples must be in its own main.* functions (one on the stack,
# by name, with go_busy.go and a line) and at least 90 % must have one as
# their innermost user frame (the rest: the runtime's preemption signals,
# getrusage, the sysmon thread); the inlined main.mix must show as its own
# frame under main.hashLoop, each caller at the line of its call, and
# main.hashLoop, a leaf Go gives no frame of its own, must have its caller
# main.work directly above it in at least 95 % of its samples (Go binaries
# have no .eh_frame: the agent's table comes from .gopclntab). Then bad
# input: a copy whose .gopclntab magic is no Go version stays an address
# ([unknown] FILE+0xOFFSET) and is counted in /metrics.
#
# Binaries come from $SMOLDER_SERVER, $SMOLDER_AGENT, $SMOLDER_MKBATCH and
# $SMOLDER_SYM_DIR (the Makefile passes them). Needs root and a kernel
# with BTF; anywhere else it says loudly that it skipped.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
MKBATCH=${SMOLDER_MKBATCH:-build/tests/mkbatch}
SYM_DIR=${SMOLDER_SYM_DIR:-build/tests/sym}
TYPE='process_cpu:samples:count:cpu:nanoseconds:delta'
SRC=$(cd "$(dirname "$0")/../programs" && pwd)/go_busy.go
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/agent_lib.sh"
need_bpf gosym_test.sh

mkdir "$tmp/bin"
cp "$SYM_DIR/go_busy_stripped" "$tmp/bin/go_busy" || fail "no $SYM_DIR/go_busy_stripped"
readelf -S "$tmp/bin/go_busy" | grep -q '\.gopclntab' || fail "go_busy has no .gopclntab"
if readelf -S "$tmp/bin/go_busy" | grep -q -e '\.symtab' -e '\.debug_info'; then
	fail "go_busy is not stripped: $(readelf -S "$tmp/bin/go_busy" | grep -e symtab -e debug_)"
fi
ok "go_busy built with -ldflags='-s -w': .gopclntab, no .symtab, no DWARF"

start_server 127.0.0.1:0
start_agent --frequency 99 --label service=go-test --verbose
ok "agent samples at 99 Hz"

# The table first: a new agent builds the tables of every process on the
# host on one builder thread, and on a busy host (other builds, a
# sanitized agent) go_busy's waits behind them, its samples meanwhile
# walked by frame pointers, which lose main.hashLoop's caller. The check
# below is about the walk once the table is in, so a primer, a copy of
# the same file (tables go by the file's content ID), runs until its
# stacks show main.work above main.hashLoop.
primer_pid=""
stop_primer() {
	[ -z "$primer_pid" ] || kill -KILL "$primer_pid" 2>/dev/null
	stop_all
}
trap stop_primer EXIT
P=gop$$
cp "$tmp/bin/go_busy" "$tmp/bin/$P"
"$tmp/bin/$P" 120 >/dev/null &
primer_pid=$!
i=0
until curl -sfG "$base/api/v1/query" --data-urlencode "query={comm=\"$P\"}" \
	--data-urlencode from=now-1h --data-urlencode format=folded |
	grep -q 'main\.work;main\.hashLoop'; do
	i=$((i + 1))
	[ "$i" -le 120 ] || fail "the primer's stacks never had main.work above main.hashLoop"
	sleep 1
done
kill "$primer_pid"
wait "$primer_pid" 2>/dev/null || true
primer_pid=""
ok "go_busy's table is in: a primer's stacks have main.work above main.hashLoop (after $i s)"

# 3 s of its own CPU time: about 300 samples at 99 Hz however loaded the
# machine is
"$tmp/bin/go_busy" 3 >"$tmp/go_busy.out" || fail "go_busy failed"
settle go_busy
ok "samples of go_busy stored: $(total go_busy)"

# the agent uploaded the binary under its content ID
bid=$("$MKBATCH" --fallback-id "$tmp/bin/go_busy") || fail "mkbatch --fallback-id"
i=0
until curl -sf -o /dev/null -I "$base/api/v1/debuginfo/$bid"; do
	i=$((i + 1))
	[ "$i" -le 300 ] || fail "go_busy ($bid) not uploaded within 30 s"
	sleep 0.1
done
ok "the agent uploaded go_busy as $bid"

q() {  # q ENDPOINT [PARAM...]: GET with go_busy's selector
	ep=$1
	shift
	curl -sfG "$base/api/v1/$ep" --data-urlencode "query=$TYPE{comm=\"go_busy\"}" \
		--data-urlencode from=now-1h "$@"
}
q query --data-urlencode format=json >"$tmp/go.json" || fail "json query"
q query --data-urlencode format=folded >"$tmp/go.folded" || fail "folded query"

/usr/bin/python3 - "$tmp/go.json" "$tmp/go.folded" "$SRC" <<'EOF' || fail "go_busy's frames (above)"
import json, os, sys

tree = json.load(open(sys.argv[1]))
folded = open(sys.argv[2]).read().splitlines()
src = open(sys.argv[3]).read().splitlines()
bad = []

def line_of(text):
    return next(i for i, l in enumerate(src, 1) if text in l)

total = inside = leaf_own = 0
paths = []

def own(n):
    """one of go_busy's own functions, named, with its file and a line"""
    return (n["name"].startswith("main.") and not n.get("kernel") and
            os.path.basename(n.get("file") or "") == "go_busy.go" and n.get("line", 0) > 0)

def walk(node, path):
    global total, inside, leaf_own
    p = path + [node]
    paths.append(p)
    kids = node.get("children", [])
    self_v = node["total"] - sum(c["total"] for c in kids)
    if self_v > 0:
        total += self_v
        if any(own(n) for n in p):
            inside += self_v
        user = [n for n in p if not n.get("kernel")]
        if user and own(user[-1]):
            leaf_own += self_v
    for c in kids:
        walk(c, p)

for c in tree.get("children", []):
    walk(c, [])
share = inside / total if total else 0
leaf_share = leaf_own / total if total else 0
print("go_busy: %d samples; in its main.* functions, named with go_busy.go:LINE: %d "
      "(%.1f %%); with such a function as the innermost user frame: %d (%.1f %%)" %
      (total, inside, 100 * share, leaf_own, 100 * leaf_share))
if total < 150:
    bad.append("only %d samples in 3 s of go_busy's CPU time at 99 Hz" % total)
# in a main.* function: one is on the stack, named, with file and line
# (a sample in the runtime's preemption signal handler or in getrusage,
# called from main.work, is in main.work); and the leaves are named too:
# most samples have one as their innermost user frame
if share < 0.95:
    bad.append("%.1f %% of samples in main.* functions, want >= 95 %%" % (100 * share))
if leaf_share < 0.90:
    bad.append("%.1f %% of samples with a main.* function innermost, want >= 90 %%" %
               (100 * leaf_share))

# the inlined main.mix as its own frame under main.hashLoop, and
# main.sieve under main.work, each frame at a line of its own function's
# body. (A native function is one node per function and file, carrying
# one of its locations' lines: main.hashLoop's samples at its loop test,
# line 27, and those in the inlined main.mix, called from line 28, are
# one node. The exact line of each call, at every instruction, is
# test_gopclntab's check of the table against the DWARF of an unstripped
# twin.)
# main.hashLoop is a leaf without a frame of its own (no rbp pushed): its
# caller, main.work, is found from .gopclntab's SP deltas, not by frame
# pointer.
def body(fn):
    """the lines of func fn's body in go_busy.go: its func line to its closing brace"""
    first = line_of("func %s(" % fn)
    last = next(i for i in range(first, len(src) + 1) if src[i - 1] == "}")
    return range(first, last + 1)

def check(names):
    k = len(names)
    hits = [p[-k:] for p in paths if [n["name"] for n in p[-k:]] == names]
    if not hits:
        bad.append("no path ends in %s" % " > ".join(names))
        return
    for name, n in zip(names, max(hits, key=lambda h: h[-1]["total"])):
        lines = body(name[len("main."):])
        if os.path.basename(n.get("file") or "") != "go_busy.go" or n.get("line") not in lines:
            bad.append("%s at %s:%s, want go_busy.go:%d-%d" % (name, n.get("file"), n.get("line"),
                                                              lines[0], lines[-1]))

check(["main.work", "main.hashLoop", "main.mix"])
check(["main.work", "main.sieve"])

# the frameless leaf keeps its caller: of the samples whose innermost user
# frame is main.hashLoop (or main.mix inlined in it), at least 95 % have
# main.work directly above it
in_leaf = with_caller = 0
for p in paths:
    kids = p[-1].get("children", [])
    self_v = p[-1]["total"] - sum(c["total"] for c in kids)
    user = [n["name"] for n in p if not n.get("kernel")]
    while user and user[-1] == "main.mix":
        user.pop()
    if self_v <= 0 or not user or user[-1] != "main.hashLoop":
        continue
    in_leaf += self_v
    if len(user) >= 2 and user[-2] == "main.work":
        with_caller += self_v
leaf_caller = with_caller / in_leaf if in_leaf else 0
print("go_busy: %d samples in the frameless main.hashLoop, %d (%.1f %%) with main.work "
      "directly above it" % (in_leaf, with_caller, 100 * leaf_caller))
if in_leaf < 30:
    bad.append("only %d samples in main.hashLoop" % in_leaf)
elif leaf_caller < 0.95:
    bad.append("%.1f %% of main.hashLoop's samples with main.work as its caller, want >= 95 %%" %
               (100 * leaf_caller))
if not any(n["name"] == "main.main" for p in paths for n in p):
    bad.append("no main.main")
for l in folded:
    if "[unknown]" in l and "go_busy" in l:
        bad.append("an unnamed frame of go_busy: " + l)
        break
for b in bad:
    print("FAIL: " + b, file=sys.stderr)
if bad:
    print("the heaviest folded stacks:", file=sys.stderr)
    for l in sorted(folded, key=lambda l: -int(l.rsplit(" ", 1)[1]))[:8]:
        print("  " + l, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
ok "95 % or more of go_busy's samples in its main.* functions with file and line (90 % innermost); main.mix inlined under main.hashLoop, each at a line of its body; the frameless main.hashLoop under its caller main.work in 95 % or more of its samples"

kill -TERM "$apid"
wait "$apid" 2>/dev/null || true
apid=""

# Bad input: the same file with a .gopclntab magic of no Go version,
# uploaded under its own content ID, and a batch with a stack in its code.
/usr/bin/python3 - "$tmp/bin/go_busy" "$tmp/bad_go" "$tmp/bad_off" <<'EOF' || fail "patching"
import struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
shoff, = struct.unpack_from("<Q", d, 0x28)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", d, 0x3a)
def sh(i):
    return struct.unpack_from("<IIQQQQIIQQ", d, shoff + i * shentsize)
stroff = sh(shstrndx)[4]
def name(i):
    o = stroff + sh(i)[0]
    return bytes(d[o:d.index(0, o)]).decode()
tab = next(sh(i) for i in range(shnum) if name(i) == ".gopclntab")
off = tab[4]
assert struct.unpack_from("<I", d, off)[0] == 0xfffffff0, "not a Go 1.18/1.19 table"
struct.pack_into("<I", d, off, 0xfffffff2)   # no Go version has it
open(sys.argv[2], "wb").write(d)
# offset 0x1000: .text's first function (internal/cpu.Initialize in the
# intact file)
open(sys.argv[3], "w").write("%x" % 0x1000)
EOF
fid=$("$MKBATCH" --fallback-id "$tmp/bad_go") || fail "mkbatch --fallback-id"
curl -sf -o /dev/null -X PUT --data-binary @"$tmp/bad_go" "$base/api/v1/debuginfo/$fid" ||
	fail "upload of the patched file"
off=$(cat "$tmp/bad_off")
now=$(($(date +%s) * 1000000000))
"$MKBATCH" --app-build-id "$fid" --app-offset "$off" --start-ns "$now" "$tmp/bad.bin" >/dev/null
curl -sf -o /dev/null -H 'Content-Type: application/x-smolder-batch' \
	--data-binary @"$tmp/bad.bin" "$base/api/v1/ingest" || fail "ingest of the batch"
curl -sfG "$base/api/v1/query" --data-urlencode 'query={comm="proc0"}' \
	--data-urlencode from=now-1h --data-urlencode format=folded >"$tmp/bad.folded" ||
	fail "query of the batch"
grep -q "\[unknown\] [^;]*+0x$off" "$tmp/bad.folded" ||
	fail "the frame is not [unknown] FILE+0x$off: $(head -3 "$tmp/bad.folded")"
curl -sf "$base/metrics" >"$tmp/metrics" || fail "/metrics"
grep -q '^smolder_symbolizer_gopclntab_unsupported_total 1$' "$tmp/metrics" ||
	fail "gopclntab_unsupported: $(grep gopclntab "$tmp/metrics")"
grep -q "$fid.*\.gopclntab has a magic of no Go version" "$tmp/err" ||
	fail "no log line for the unknown magic"
ok "a .gopclntab with an unknown magic: [unknown] FILE+0x$off, counted in /metrics, logged"
