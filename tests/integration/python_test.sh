#!/bin/sh
# python_test.sh - CPython functions in the profile, their interpreter
# frames walked in BPF, with the real agent, the real kernel, the real
# server and Debian's own /usr/bin/python3.11:
#   - py_leaves.py's two hot leaves under distinct callers: the split
#     between them within 3 points of the CPU time it measured in each, at
#     least 80 % of its samples under a named leaf and 95 % of those with
#     the Python caller above, qualified names, the file, and lines that
#     dis says its code is on (the caller's: the line of the call);
#   - py_threads.py: each thread's own Python stack, and Python calling
#     zlib.compress shown above libz's native frames;
#   - a process mapping a libpython3.11.so.1.0 that is no CPython, and one
#     of an unknown CPython (3.99): profiled as native code, counted, the
#     unknown version logged once;
#   - the counters in the server's /metrics.
# Every subject runs at once; samples of their first 2 s are left out
# (until the agent has read a process and loaded its tables it is walked
# by frame pointers, without Python frames).
SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
FAKE=${SMOLDER_PYFAKE_DIR:-build/tests/pyfake}
PY=/usr/bin/python3.11
FREQ=999
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
here=$(cd "$(dirname "$0")" && pwd)
check="$here/python_check.py"
progs=$(cd "$here/../programs" && pwd)
need_bpf python_test.sh
[ -x "$PY" ] || fail "$PY is missing: make deps installs Debian's python3.11"

subjects=""
stop_python() {
	for p in $subjects; do kill -KILL "$p" 2>/dev/null; done
	stop_all
}
trap stop_python EXIT

start_server 127.0.0.1:0
# --no-upload: a first run uploads every file of this host, seconds in
# which the agent's one thread neither drains nor reads names (a full map
# drops samples); nothing here needs names from debug info
start_agent --frequency $FREQ --pid-label --no-upload -v
ok "agent samples at $FREQ Hz"

# A warm-up interpreter first: until the agent has python3.11's unwind
# table (built once per file, seconds on a busy host) its processes are
# walked by frame pointers, which it lacks, and never reach Python. Later
# processes of the same file get the table at once.
"$PY" -c 'def warm_up():
    while True:
        pass
warm_up()' &
warm=$!
subjects=$warm
i=0
while ! curl -sf "$base/api/v1/query?format=folded&from=now-1h" --data-urlencode \
		"query=process_cpu:samples:count:cpu:nanoseconds:delta{pid=\"$warm\"}" -G |
		grep -q ';warm_up '; do
	i=$((i + 1))
	[ "$i" -le 120 ] || fail "no Python frame of the warm-up interpreter within 60 s"
	sleep 0.5
done
kill -KILL "$warm"
wait "$warm" 2>/dev/null
subjects=""
ok "a warm-up interpreter's frames show warm_up ($((i / 2)) s)"

t0=$(date +%s)
"$PY" "$progs/py_leaves.py" 4 "$tmp/leaves.json" &     # 4 s of its own CPU
leaves=$!
"$PY" "$progs/py_threads.py" 10 &
threads=$!
"$FAKE/not/py_fake_not" 8 >/dev/null &
not=$!
"$FAKE/unknown/py_fake_unknown" 8 >/dev/null &
unknown=$!
subjects="$leaves $threads $not $unknown"
for p in $subjects; do wait "$p" || fail "subject $p failed"; done
subjects=""

# tree PID NAME: the JSON tree of PID since t0 + 2 into $tmp/NAME.tree
tree() {
	settle "pid=\"$1\"" 6 60   # agent_lib.sh: its total still for 3 s, 30 s at most
	curl -sf -G "$base/api/v1/query" -d format=json -d from=$((t0 + 2)) -d to=now \
		--data-urlencode "query=process_cpu:samples:count:cpu:nanoseconds:delta{pid=\"$1\"}" \
		>"$tmp/$2.tree" || fail "query of $2"
}
# val KEY FILE: a value python_check.py printed
val() { awk -v k="$1" '$1 == k {$1 = ""; sub(/^ /, ""); print}' "$2"; }

# --- two leaves, their callers, names, files and lines ---
tree "$leaves" leaves
python3 "$check" leaves "$tmp/leaves.tree" "$tmp/leaves.json" >"$tmp/out.leaves" 2>&1 ||
	{ cat "$tmp/out.leaves"; fail "python_check.py leaves"; }
cat "$tmp/out.leaves"
ok "py_leaves.py: Work.leaf_a $(val leaf_a_share "$tmp/out.leaves") % of the leaves' samples, $(val leaf_a_cpu_share "$tmp/out.leaves") % of their CPU time (within 3 points)"
ok "py_leaves.py: $(val named_leaf_pct "$tmp/out.leaves") % of $(val samples "$tmp/out.leaves") samples under a named leaf, $(val caller_above_pct "$tmp/out.leaves") % of those with the caller above"
ok "py_leaves.py: qualified names, file, the leaves' lines $(val leaf_a_lines "$tmp/out.leaves") and $(val leaf_b_lines "$tmp/out.leaves") and the callers' call lines as dis says"

# --- threads, and Python calling C ---
tree "$threads" threads
python3 "$check" threads "$tmp/threads.tree" >"$tmp/out.threads" 2>&1 ||
	{ cat "$tmp/out.threads"; fail "python_check.py threads"; }
ok "py_threads.py: each thread under its own caller ($(val spin_a "$tmp/out.threads") and $(val spin_b "$tmp/out.threads") samples)"
ok "py_threads.py: squeeze → zlib.compress → libz in $(val squeeze_in_libz "$tmp/out.threads") samples"

# --- not CPython, and a CPython this agent does not know ---
for p in "$not:py_fake_not:libpython3.11.so.1.0" "$unknown:py_fake_unknown:libpython3.99.so"; do
	name=$(echo "$p" | cut -d: -f2)
	lib=$(echo "$p" | cut -d: -f3)
	tree "${p%%:*}" "$name"
	python3 "$check" native "$tmp/$name.tree" "$lib" >"$tmp/out.fake" 2>&1 ||
		{ cat "$tmp/out.fake"; fail "python_check.py native $name"; }
	ok "$name: profiled as native code ($(val in_lib "$tmp/out.fake") samples in $lib), no Python frames"
done
# this test's library only: the agent profiles the whole host, where another
# checkout's test may run its own libpython3.99.so at the same time
lib399="$(cd "$FAKE/unknown" && pwd -P)/libpython3.99.so"
n=$(grep -cF "$lib399 is CPython 3.99, whose structures this agent does not know" "$tmp/agent.err")
[ "$n" = 1 ] || { grep "CPython 3.99" "$tmp/agent.err" >&2; fail "the unknown CPython 3.99 was logged $n times, want once"; }
ok "the unknown version is logged once"

# --- the counters in /metrics ---
sleep 2.5     # one more push with the latest counters
curl -sf "$base/metrics" >"$tmp/metrics" || fail "GET /metrics"
m() { sed -n "s/^smolder_agent_reported_total{.*counter=\"$1\"} \([0-9]*\)$/\1/p" "$tmp/metrics"; }
for c in python_samples python_frames python_code_objects python_not_cpython \
		python_unknown_version; do
	[ "$(m $c)" -gt 0 ] 2>/dev/null || fail "/metrics: $c is '$(m $c)', want > 0"
done
ok "/metrics: python_samples $(m python_samples), python_frames $(m python_frames), python_not_cpython $(m python_not_cpython), python_unknown_version $(m python_unknown_version), python_read_errors $(m python_read_errors), python_frames_lost $(m python_frames_lost)"
