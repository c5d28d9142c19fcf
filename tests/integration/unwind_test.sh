#!/bin/sh
# unwind_test.sh - user stacks of code without frame pointers, walked in
# the kernel by the .eh_frame tables the agent loads, with the
# real agent, the real kernel and the real server:
#   - unw_nofp (-O2 -fomit-frame-pointer): >= 99 % of its samples unwind to
#     _start through main, and hot_a's share is within 2 points of what
#     `perf record --call-graph dwarf` measures on the same run;
#   - through libunwlib.so (no frame pointers) and back into the program;
#   - unw_fp (frame pointers) calling libc's qsort (none) and back;
#   - recursion deeper than the walker's 128 frames: 128 frames, counted
#     as truncated, and the counters in the server's /metrics;
#   - CFA DWARF expressions: GCC's stack realignment (DRAP) in unw_nofp,
#     OpenSSL's SHA-512 in libcrypto (Debian's python3.11 hashing): >= 99 %
#     reach _start;
#   - a signal handler's stacks continue through the kernel's signal frame
#     into the interrupted code;
#   - Debian's own xz and gzip on random data: >= 99 % reach
#     __libc_start_main.
# A primer of the subjects' binary runs first until its stacks are whole:
# a new agent on a busy host builds every process' tables, on one thread,
# before it gets to theirs. Samples of a process' first 2 s are left out
# (rows are dated to the second, and until the agent has read its
# mappings the process' frames are looked up one per sample; the agent
# logs how long that took), so each subject runs 6 s or more.
SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
UNW=${SMOLDER_UNW_DIR:-build/tests/unw}
# high enough that the two profilers' shares of hot_a, each from over
# 10 000 samples, differ by sampling noise of about half a point
FREQ=999
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
check="$(dirname "$0")/unwind_check.py"
need_bpf unwind_test.sh

perf_pid=""
busy_pid=""
py_pid=""
stop_unwind() {
	for p in $perf_pid $busy_pid $py_pid; do kill -KILL "$p" 2>/dev/null; done
	stop_all
}
trap stop_unwind EXIT

start_server 127.0.0.1:0
# Only small files are uploaded: the objects named here are (python3.11,
# libcrypto, libc, gzip, the subjects), and on a shared host big binaries
# of other processes (compilers, browsers) would hold the agent's loop for
# seconds while they upload, and its drains with it.
start_agent --frequency $FREQ -v --upload-max-mb 16
ok "agent samples at $FREQ Hz with the table walker"

# Copies with names of this run only (comm is the file name), the library
# beside them ($ORIGIN).
mkdir -p "$tmp/unw"
cp "$UNW/libunwlib.so" "$tmp/unw/"
# One name per run below, so each waits for its own samples.
N=un$$n
L=un$$l
D=un$$d
F=un$$f
R=un$$r
S=un$$s
P=un$$p
for c in $N $L $D $R $S; do cp "$UNW/unw_nofp" "$tmp/unw/$c"; done
cp "$UNW/unw_fp" "$tmp/unw/$F"

# folded COMM FROM: the stacks of COMM stored since unix second FROM
folded() {
	curl -sf -G "$base/api/v1/query" -d format=folded -d from="$2" -d to=now \
		--data-urlencode "query=process_cpu:samples:count:cpu:nanoseconds:delta{comm=\"$1\"}" \
		>"$tmp/$1.folded" || fail "query of $1"
}
# folded_soon COMM FROM: as folded, but a selector that matches no series
# yet (404: the process has not been sampled or its batch not sent) is
# no samples
folded_soon() {
	code=$(curl -s -o "$tmp/$1.folded" -w '%{http_code}' -G "$base/api/v1/query" \
		-d format=folded -d from="$2" -d to=now \
		--data-urlencode "query=process_cpu:samples:count:cpu:nanoseconds:delta{comm=\"$1\"}")
	case $code in
	200) ;;
	404) : >"$tmp/$1.folded" ;;
	*) fail "query of $1: HTTP $code" ;;
	esac
}
# truncated COMM FROM [FRAME]: "TOTAL TRUNCATED" of the JSON tree of COMM
# since FROM (the samples whose walk stopped before the root), or of the
# first node named FRAME; the paths where truncated samples stop go to
# $tmp/COMM.truncated
truncated() {
	curl -sf -G "$base/api/v1/query" -d from="$2" -d to=now \
		--data-urlencode "query=process_cpu:samples:count:cpu:nanoseconds:delta{comm=\"$1\"}" |
		python3 -c 'import json, sys
t = json.load(sys.stdin)
def walk(n, path, out):
    kids = n.get("children", [])
    own = n.get("truncated", 0) - sum(c.get("truncated", 0) for c in kids)
    if own > 0:
        out.write("%d %s\n" % (own, ";".join(path + [n["name"]])))
    for c in kids:
        walk(c, path + [n["name"]], out)
walk(t, [], open(sys.argv[1], "w"))
def find(n, name):
    todo = [n]
    while todo:
        m = todo.pop(0)
        if m["name"] == name:
            return m
        todo += m.get("children", [])
    return {"total": 0}
n = find(t, sys.argv[2]) if sys.argv[2] else t
print(n["total"], n.get("truncated", 0))' "$tmp/$1.truncated" "${3:-}"
}
# settle COMM (agent_lib.sh): here its total must stay put for 3 s, at
# most 30 s
# val KEY FILE: a value unwind_check.py printed
val() { awk -v k="$1" '$1 == k {print $2}' "$2"; }
# atleast A B: A >= B for decimals
atleast() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a >= b)}'; }

# --- the tables first ---
# A new agent builds the tables of every process on the host on one
# builder thread, and on a busy host (browsers, databases, compilers) the
# subjects' and libc's wait seconds behind them; until then their frames
# are walked by frame pointers, which they lack. The checks below are
# about the walk once the tables are in, so a primer, a copy of the same
# binary (the tables go by build ID), runs until its stacks of the last
# 20 s all reach _start.
# The same for Debian's python3.11 and libcrypto (the SHA-512 check
# below), which no other process here may have mapped yet.
Q=un$$q
QP=un$$o
cp "$UNW/unw_nofp" "$tmp/unw/$Q"
cp /usr/bin/python3.11 "$tmp/unw/$QP"
"$tmp/unw/$Q" split 120 &
busy_pid=$!
"$tmp/unw/$QP" -c '
import hashlib, time
data = b"x" * (1 << 20)
h = hashlib.sha512()
end = time.time() + 120
while time.time() < end:
    h.update(data)
' &
py_pid=$!
# primed COMM: its stacks of the last 20 s all reach _start
primed() {
	# the last 20 s: rows are dated to their interval's start and may come late
	folded_soon "$1" $(($(date +%s) - 20))
	python3 "$check" --folded "$tmp/$1.folded" --root _start >"$tmp/ours" || fail "unwind_check.py"
	[ "$(val samples "$tmp/ours")" -ge 200 ] && atleast "$(val root__start "$tmp/ours")" 0.99
}
i=0
until primed "$Q" && primed "$QP"; do
	i=$((i + 1))
	[ "$i" -le 120 ] || fail "the primers' stacks never reached _start: $(cat "$tmp/ours")"
	sleep 1
done
kill "$busy_pid" "$py_pid"
wait "$busy_pid" "$py_pid" 2>/dev/null
busy_pid=""; py_pid=""
ok "the subjects' tables are in: the primers' stacks reach _start (after $i s)"

# --- unw_nofp split, beside perf --call-graph dwarf on the same process ---
t0=$(date +%s)
"$tmp/unw/$N" split 14 &
busy_pid=$!
sleep 1.5
perf record -q -F $FREQ --call-graph dwarf,4096 -o "$tmp/perf.data" -p "$busy_pid" \
	>"$tmp/perf.out" 2>&1 &
perf_pid=$!
wait "$busy_pid"
busy_pid=""
wait "$perf_pid" 2>/dev/null
perf_pid=""
settle "$N" 6 60
folded "$N" $((t0 + 2))
python3 "$check" --folded "$tmp/$N.folded" --root _start --has main --incl hot_a \
	--incl hot_b >"$tmp/ours" || fail "unwind_check.py"
perf script -i "$tmp/perf.data" -F comm,ip,sym 2>"$tmp/perf.err" >"$tmp/perf.txt" ||
	fail "perf script: $(tail -3 "$tmp/perf.err")"
python3 "$check" --perf "$tmp/perf.txt" --comm "$N" --root _start --has main \
	--incl hot_a --incl hot_b >"$tmp/perf" || fail "unwind_check.py on perf"
n=$(val samples "$tmp/ours")
root=$(val root__start "$tmp/ours")
[ "$n" -ge 5000 ] || fail "$N: only $n samples"
atleast "$root" 0.99 || { head -20 "$tmp/$N.folded" >&2; fail "$N: $root of $n samples reach _start"; }
ok "-fomit-frame-pointer program: $root of $n samples unwind to _start (perf: $(val root__start "$tmp/perf") of $(val samples "$tmp/perf"))"
a=$(val incl_hot_a "$tmp/ours")
pa=$(val incl_hot_a "$tmp/perf")
awk -v a="$a" -v b="$pa" 'BEGIN {d = a - b; exit !(d <= 0.02 && d >= -0.02)}' ||
	fail "$N: hot_a has $a of our samples, $pa of perf's"
ok "hot_a's share $a, perf --call-graph dwarf $pa: within 2 points"
# its work, under main, is whole: nothing of it counted as truncated (its
# exit can be: crt's __do_global_dtors_aux has no FDE)
set -- $(truncated "$N" $((t0 + 2)) main)
[ "$1" -ge $((n * 99 / 100)) ] || fail "$N: only $1 of $n samples under main"
[ "${2:-x}" = 0 ] || { cat "$tmp/$N.truncated" >&2; fail "$N: $2 of $1 samples under main counted as truncated, those stacks are whole"; }
ok "complete stacks: 0 of the $1 samples under main counted as truncated"

# --- through the library without frame pointers and back ---
t0=$(date +%s)
"$tmp/unw/$L" lib 6
settle "$L" 6 60
folded "$L" $((t0 + 2))
python3 "$check" --folded "$tmp/$L.folded" --leaf cb_spin --root _start \
	--chain 'main,run_lib,lib_walk,lib_walk,lib_walk,lib_walk,lib_walk,lib_walk,cb_spin' \
	>"$tmp/ours" || fail "unwind_check.py"
n=$(val samples "$tmp/ours")
c=$(val chain "$tmp/ours")
[ "$n" -ge 500 ] || fail "$L lib: only $n samples in cb_spin"
atleast "$c" 0.99 || { head -20 "$tmp/$L.folded" >&2; fail "$L lib: $c of $n cb_spin samples have main → run_lib → 6 x lib_walk → cb_spin"; }
atleast "$(val root__start "$tmp/ours")" 0.99 || fail "$L lib: stacks do not reach _start"
ok "program → library without frame pointers → program: $c of $n samples whole"

# --- a frame-pointer program through libc's qsort (no frame pointers) ---
t0=$(date +%s)
"$tmp/unw/$F" qsort 6
settle "$F" 6 60
folded "$F" $((t0 + 2))
python3 "$check" --folded "$tmp/$F.folded" --leaf cmp_slow --root _start \
	--has run_qsort --has main >"$tmp/ours" || fail "unwind_check.py"
n=$(val samples "$tmp/ours")
h=$(val has_run_qsort "$tmp/ours")
[ "$n" -ge 300 ] || fail "$F qsort: only $n samples in cmp_slow"
atleast "$h" 0.99 || { head -20 "$tmp/$F.folded" >&2; fail "$F qsort: $h of $n cmp_slow samples reach run_qsort"; }
atleast "$(val root__start "$tmp/ours")" 0.99 || fail "$F qsort: stacks do not reach _start"
ok "frame-pointer program → libc qsort → comparator: $h of $n samples whole"

# --- CFA expressions: GCC's stack realignment ---
t0=$(date +%s)
"$tmp/unw/$R" drap 6
settle "$R" 6 60
folded "$R" $((t0 + 2))
python3 "$check" --folded "$tmp/$R.folded" --leaf drap_work --root _start --has run_drap \
	>"$tmp/ours" || fail "unwind_check.py"
n=$(val samples "$tmp/ours")
r=$(val root__start "$tmp/ours")
[ "$n" -ge 300 ] || fail "$R drap: only $n samples in drap_work"
atleast "$r" 0.99 || { head -20 "$tmp/$R.folded" >&2; fail "$R drap: $r of $n drap_work samples reach _start"; }
atleast "$(val has_run_drap "$tmp/ours")" 0.99 || fail "$R drap: stacks skip run_drap"
ok "stack realignment (CFA = *(rbp-8), rbp at [rbp]): $r of $n samples reach _start"

# --- a signal handler, through the kernel's signal frame ---
t0=$(date +%s)
"$tmp/unw/$S" signal 6
settle "$S" 6 60
folded "$S" $((t0 + 2))
python3 "$check" --folded "$tmp/$S.folded" --leaf handler_spin --root _start --has on_signal \
	--has run_signal --has interrupted >"$tmp/ours" || fail "unwind_check.py"
n=$(val samples "$tmp/ours")
r=$(val root__start "$tmp/ours")
h=$(val has_interrupted "$tmp/ours")
[ "$n" -ge 100 ] || fail "$S signal: only $n samples in the handler"
atleast "$h" 0.99 && atleast "$(val has_run_signal "$tmp/ours")" 0.99 ||
	{ grep handler_spin "$tmp/$S.folded" | head -10 >&2; fail "$S signal: $h of $n handler samples continue into the interrupted code"; }
atleast "$r" 0.99 || fail "$S signal: $r of $n handler samples reach _start"
ok "signal handler → __restore_rt → interrupted code → _start: $r of $n samples"

# --- OpenSSL's SHA-512 (libcrypto's CFA expressions), from Python ---
cp /usr/bin/python3.11 "$tmp/unw/$P"
t0=$(date +%s)
"$tmp/unw/$P" -c '
import hashlib, time
data = b"x" * (1 << 20)
h = hashlib.sha512()
end = time.process_time() + 6
while time.process_time() < end:
    h.update(data)
' || fail "python3.11 hashing"
settle "$P" 6 60
folded "$P" $((t0 + 2))
python3 "$check" --folded "$tmp/$P.folded" --root _start --has 'SHA512*' >"$tmp/ours" ||
	fail "unwind_check.py"
n=$(val samples "$tmp/ours")
r=$(val root__start "$tmp/ours")
[ "$n" -ge 1000 ] || fail "$P sha512: only $n samples"
atleast "$(val has_SHA512 "$tmp/ours")" 0.5 || fail "$P sha512: under half the samples in OpenSSL's SHA-512"
atleast "$r" 0.99 || { sort -t' ' -k2 -nr "$tmp/$P.folded" | grep -v '^_start' | head -5 >&2; fail "$P sha512: $r of $n samples reach _start"; }
ok "Python hashing with OpenSSL's SHA-512: $r of $n samples reach _start"

# --- deeper than the walker goes ---
t0=$(date +%s)
"$tmp/unw/$D" deep 4 150
settle "$D" 6 60
folded "$D" "$t0"        # the walk's depth does not wait for tables
python3 "$check" --folded "$tmp/$D.folded" --leaf spin >"$tmp/ours" || fail "unwind_check.py"
d=$(val maxdepth "$tmp/ours")
[ "$d" = 128 ] || fail "deep: at most $d user frames, want 128"
tr=$(grep -o '[0-9]* truncated' "$tmp/agent.err" | tail -1 | cut -d' ' -f1)
[ "${tr:-0}" -gt 0 ] || fail "deep: the agent counted no truncated stack"
ok "150 frames deep: 128 walked, $tr stacks counted as truncated"
# every sample whose walk was cut at 128 frames is counted as truncated,
# and hardly any other (a few of the first moments, walked by frame
# pointers before this copy's table is known)
python3 "$check" --folded "$tmp/$D.folded" >"$tmp/ours" || fail "unwind_check.py"
cut=$(val at_maxdepth "$tmp/ours")
set -- $(truncated "$D" "$t0")
[ "$2" -ge "$cut" ] && [ $(($2 - cut)) -le $(($1 / 100)) ] ||
	{ head "$tmp/$D.truncated" >&2; fail "deep: $2 of $1 samples counted as truncated, $cut were cut at 128 frames"; }
ok "stacks cut on purpose: $2 of $1 samples counted as truncated, $cut of them cut at 128 frames"
# the agent's counters reach the server's /metrics
sleep 2.5     # one more push with the latest counters
curl -sf "$base/metrics" >"$tmp/metrics" || fail "GET /metrics"
mt=$(sed -n 's/^smolder_agent_reported_total{.*counter="unwind_truncated"} \([0-9]*\)$/\1/p' "$tmp/metrics")
mc=$(sed -n 's/^smolder_agent_reported_total{.*counter="unwind_complete"} \([0-9]*\)$/\1/p' "$tmp/metrics")
[ "${mt:-0}" -gt 0 ] && [ "${mc:-0}" -gt 0 ] ||
	fail "/metrics lacks the agent's unwind counters (truncated '$mt', complete '$mc')"
ok "/metrics: unwind_truncated $mt, unwind_complete $mc"

# --- Debian's xz and gzip (no frame pointers) on random data ---
head -c 24000000 /dev/urandom >"$tmp/rand"
for prog in xz gzip; do
	cp "$(command -v $prog)" "$tmp/unw/sm$prog$$"
	c=sm$prog$$
	t0=$(date +%s)
	end=$((t0 + 5))
	while [ "$(date +%s)" -lt "$end" ]; do
		"$tmp/unw/$c" -9 -c "$tmp/rand" >/dev/null
	done
	settle "$c" 6 60
	folded "$c" $((t0 + 2))
	python3 "$check" --folded "$tmp/$c.folded" --has '__libc_start_main*' >"$tmp/ours" ||
		fail "unwind_check.py"
	n=$(val samples "$tmp/ours")
	h=$(val has___libc_start_main "$tmp/ours")
	[ "$n" -ge 300 ] || fail "$prog: only $n samples"
	atleast "$h" 0.99 || { sort -t' ' -k2 -nr "$tmp/$c.folded" | head -5 >&2; fail "$prog: $h of $n samples reach __libc_start_main"; }
	ok "Debian's $prog: $h of $n samples unwind to __libc_start_main"
	# stripped, no debug info here: its functions are named by the start
	# of their FDE, one top row per function (named after the copy, or
	# after Debian's $prog when the host ran that first: one build ID)
	curl -sf -G "$base/api/v1/top" -d from=$((t0 + 2)) -d to=now -d limit=1000 \
		--data-urlencode "query=process_cpu:samples:count:cpu:nanoseconds:delta{comm=\"$c\"}" \
		>"$tmp/$c.top" || fail "top of $c"
	python3 "$check" --top "$tmp/$c.top" --elf "$(command -v $prog)" --object "$c,$prog" >"$tmp/ours" 2>"$tmp/ours.err" ||
		{ cat "$tmp/ours.err" >&2; fail "unwind_check.py --top"; }
	u=$(val unknown_rows "$tmp/ours")
	s=$(val unknown_at_fde_start "$tmp/ours")
	o=$(val unknown_outside_fde "$tmp/ours")
	oc=$(val unknown_outside_cum "$tmp/ours")
	tt=$(val top_total "$tmp/ours")
	[ "$s" -ge 3 ] || fail "$prog: only $s top rows of unnamed functions"
	# every row an FDE covers is at that FDE's start, one row per FDE.
	# Code no FDE covers cannot be named by one and stays per address:
	# crtstuff's __do_global_dtors_aux has none, and a process sampled
	# while it exits has it on the stack (gzip+0x3eb6, under
	# __cxa_finalize). Such rows must stay rare (1 % of the samples).
	[ "$(val unknown_inside_fde "$tmp/ours")" = 0 ] && [ "$(val unknown_same_fde "$tmp/ours")" = 0 ] &&
		[ $((oc * 100)) -le "$tt" ] ||
		{ cat "$tmp/ours.err" >&2; grep -o '"name":"\[unknown\][^"]*"' "$tmp/$c.top" | head >&2; fail "$prog: unnamed rows are not one per FDE start: $(tr '\n' ' ' <"$tmp/ours")"; }
	[ "$o" = 0 ] || { cat "$tmp/ours.err" >&2; echo "# $prog: $o rows at addresses no FDE covers, $oc of $tt samples"; }
	ok "Debian's $prog: $s unnamed functions, one top row each, at the starts readelf lists"
done
grep 'unwinding:' "$tmp/agent.err" | tail -1
