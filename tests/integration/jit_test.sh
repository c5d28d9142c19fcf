#!/bin/sh
# jit_test.sh - JIT runtimes named through their perf maps, their stacks
# walked whole, with the real agent, the real kernel, the real server and
# the real runtimes:
#   - node --perf-basic-prof (tests/programs/jit_hot.js): >= 80 % of the
#     process' samples under a named JS function, and those stacks reach
#     from the JS functions through node's own frames (V8's builtins, which
#     no FDE covers, walked by frame pointer) to _start;
#   - JDK 17 with -XX:+PreserveFramePointer (tests/programs/JitBurn.java),
#     `jcmd PID Compiler.perfmap` after warm-up: from then on >= 80 % of
#     its samples under a named Java method, and the split between its two
#     hot methods within 5 points of the program's own thread CPU time,
#     stacks through the JVM to the launcher's thread;
#   - bad perf maps (garbage, an unfinished last line, one over
#     --perf-map-max-mb) beside node processes that write none: counted,
#     logged, their JIT frames "[jit] 0x...", never "[anon]";
#   - JIT frames carry the runtime's language tag (js, java) in the top
#     table, as Python frames carry theirs;
#   - the fallback and perf-map counters in the server's /metrics.
# A node primer waits for node's unwind table first (a new agent on a busy
# host builds every process' tables before it gets to node's).
# Processes are selected by the pid label (the JVM's comm is its first
# sampled thread's). Samples of a process' first seconds are left out (its
# tables load meanwhile, see unwind_test.sh).
SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
CLI=${SMOLDER_CLI:-bin/smolder}
JIT=${SMOLDER_JIT_DIR:-build/tests/jit}
PROGS="$(dirname "$0")/../programs"
# two methods' split within 5 points needs a few thousand samples (the
# JVM may get a fraction of a CPU on a loaded machine)
FREQ=999
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
check="$(dirname "$0")/unwind_check.py"
need_bpf jit_test.sh
for c in node java jcmd; do
	command -v $c >/dev/null || fail "$c not installed (make deps installs nodejs and openjdk-17-jdk-headless)"
done
[ -f "$JIT/JitBurn.class" ] || fail "$JIT/JitBurn.class not built"

kids=""
stop_jit() {
	for p in $kids; do kill -KILL "$p" 2>/dev/null; done
	for p in $kids; do rm -f "/tmp/perf-$p.map"; done
	stop_all
}
trap stop_jit EXIT

start_server 127.0.0.1:0
# The runtimes' own files, for the names of their native frames, sent with
# the command line: an agent uploads every new binary on the host it
# profiles, and on a busy machine (compilers, browsers) node's 100 MB and
# libjvm waited behind hundreds of megabytes of others while its pushes
# were held up. A small perf-map bound, so that one test map can pass it.
jvm=$(dirname "$(readlink -f "$(command -v java)")")/../lib
"$CLI" --server "$base" debuginfo upload "$(readlink -f "$(command -v node)")" \
	"$jvm/server/libjvm.so" "$jvm/libjli.so" >"$tmp/cli.out" 2>"$tmp/cli.err" ||
	fail "smolder debuginfo upload: $(cat "$tmp/cli.err")"
start_agent --frequency $FREQ --pid-label --perf-map-max-mb 1 --no-upload -v
ok "agent samples at $FREQ Hz; node, libjvm and libjli uploaded"

# folded PID FROM: the stacks of process PID stored since unix second FROM
folded() {
	curl -sf -G "$base/api/v1/query" -d format=folded -d from="$2" -d to=now \
		--data-urlencode "query=process_cpu:samples:count:cpu:nanoseconds:delta{pid=\"$1\"}" \
		>"$tmp/$1.folded" || fail "query of pid $1"
}
# folded_soon PID FROM: as folded, but a selector that matches no series
# yet (404: the process has not been sampled or its batch not sent) is
# no samples
folded_soon() {
	code=$(curl -s -o "$tmp/$1.folded" -w '%{http_code}' -G "$base/api/v1/query" \
		-d format=folded -d from="$2" -d to=now \
		--data-urlencode "query=process_cpu:samples:count:cpu:nanoseconds:delta{pid=\"$1\"}")
	case $code in
	200) ;;
	404) : >"$tmp/$1.folded" ;;
	*) fail "query of pid $1: HTTP $code" ;;
	esac
}
# langs PID FROM PATTERN: "name<TAB>lang" of the top rows (GET
# /api/v1/top) of process PID whose name matches PATTERN, lang "-" when
# the row has none
langs() {
	curl -sf -G "$base/api/v1/top" -d from="$2" -d to=now -d limit=100000 \
		--data-urlencode "query=process_cpu:samples:count:cpu:nanoseconds:delta{pid=\"$1\"}" |
		python3 -c 'import json, re, sys
for r in json.load(sys.stdin)["rows"]:
    if re.search(sys.argv[1], r["name"]):
        print("%s\t%s" % (r["name"], r.get("lang", "-")))' "$3" >"$tmp/$1.langs" ||
		fail "top of pid $1"
	[ -s "$tmp/$1.langs" ] || fail "pid $1: no top row like '$3'"
}
# wait_named PID FROM PATTERN: folded until PATTERN appears in it (the
# symbolizer reads node's 100 MB once), at most 30 s
wait_named() {
	i=0
	while folded "$1" "$2" && ! grep -q "$3" "$tmp/$1.folded"; do
		i=$((i + 1))
		[ "$i" -le 60 ] || fail "pid $1: no frame like '$3' within 30 s"
		sleep 0.5
	done
}
val() { awk -v k="$1" '$1 == k {print $2}' "$2"; }
atleast() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a >= b)}'; }
# metric NAME: the agent's counter as the server's /metrics reports it
metric() {
	sed -n "s/^smolder_agent_reported_total{.*counter=\"$1\"} \([0-9]*\)\$/\1/p" "$tmp/metrics"
}

# --- bad maps, beside node processes that write none (they go first: the
# agent builds node's unwind table, 370 000 rows, meanwhile) ---
# node without --perf-basic-prof writes no map: the test writes one in its
# name (root may own it) once the process runs, so it is not older than it
node "$PROGS/jit_hot.js" 5 >/dev/null &
bad1=$!
node "$PROGS/jit_hot.js" 5 >/dev/null &
bad2=$!
kids="$bad1 $bad2"
t_bad=$(date +%s)
{
	printf 'this is not a perf map\n\001\002\003\n7f00 zz size\n'
	printf '%09000d\n' 0                              # a huge line
	printf '1000 10 fine\n1010 10 but unfinished'     # no newline at the end
} >"/tmp/perf-$bad1.map"
# over 1 MiB of entries (none covers node's code) for the 1 MiB bound
awk 'BEGIN {for (i = 0; i < 40000; i++) printf "%x 10 JS:*filler_%d_with_a_long_enough_name\n", 4096 + 16 * i, i}' \
	>"/tmp/perf-$bad2.map"

wait "$bad1"
wait "$bad2"

# --- node's table first ---
# The agent builds node's table (370 000 rows) on its one builder thread,
# smallest files first, behind every other table of a busy host; until it
# is in, node's own frames are walked by frame pointers, which it lacks,
# and JS stacks stop short of _start. The bad-map processes above mostly
# give it the time; a primer makes sure: node without a map until its
# stacks of the last 20 s all reach _start.
node "$PROGS/jit_hot.js" 120 >/dev/null &
prime=$!
kids="$kids $prime"
i=0
while :; do
	# the last 20 s: rows are dated to their interval's start and may come late
	folded_soon "$prime" $(($(date +%s) - 20))
	python3 "$check" --folded "$tmp/$prime.folded" --root _start >"$tmp/ours" ||
		fail "unwind_check.py"
	[ "$(val samples "$tmp/ours")" -ge 100 ] && atleast "$(val root__start "$tmp/ours")" 0.99 && break
	i=$((i + 1))
	[ "$i" -le 120 ] || fail "node's stacks never reached _start: $(cat "$tmp/ours")"
	sleep 1
done
kill "$prime"
wait "$prime" 2>/dev/null
ok "node's table is in: a primer's stacks reach _start (after $i s)"

# --- node --perf-basic-prof ---
t0=$(date +%s)
# in $tmp: with --perf-basic-prof, V8 leaves an isolate-*.log in its
# working directory
prog=$(cd "$PROGS" && pwd)/jit_hot.js
(cd "$tmp" && exec node --perf-basic-prof "$prog" 10 >/dev/null) &
np=$!
kids="$kids $np"
wait "$np"
settle "pid=\"$np\"" 6 60
wait_named "$np" $((t0 + 3)) 'node::'
python3 "$check" --folded "$tmp/$np.folded" --match '^JS:' >"$tmp/ours" || fail "unwind_check.py"
python3 "$check" --folded "$tmp/$np.folded" --where '^JS:' --root _start \
	--has 'node::Start*' --has 'Builtins_JSEntry' >"$tmp/ours.js" ||
	fail "unwind_check.py"
n=$(val samples "$tmp/ours")
m=$(val match "$tmp/ours")
[ "$n" -ge 200 ] || fail "node: only $n samples"
atleast "$m" 0.80 || { sort -t' ' -k2 -nr "$tmp/$np.folded" | head -5 | cut -c1-400 >&2; fail "node: $m of $n samples under a named JS function"; }
ok "node --perf-basic-prof: $m of $n samples under a named JS function"
for k in root__start has_node::Start has_Builtins_JSEntry; do
	v=$(val "$k" "$tmp/ours.js")
	atleast "$v" 0.95 || { grep JS: "$tmp/$np.folded" | sort -t' ' -k2 -nr | head -3 | cut -c1-600 >&2; fail "node: $k is $v of the JS samples"; }
done
grep -q 'JS:\*hotAlpha' "$tmp/$np.folded" && grep -q 'JS:\*hotBeta' "$tmp/$np.folded" ||
	fail "node: hotAlpha and hotBeta not both named"
ok "node: JS stacks reach _start through node::Start and Builtins_JSEntry ($(val root__start "$tmp/ours.js"))"
# JIT frames are named frames with the runtime's language, as Python's are
langs "$np" $((t0 + 3)) '^(JS:|\[jit\] 0x)'
! cut -f2 "$tmp/$np.langs" | grep -vqx js ||
	fail "node: JIT rows without the language js: $(grep -v "$(printf '\t')js\$" "$tmp/$np.langs" | head -3)"
ok "node: its $(wc -l <"$tmp/$np.langs") JIT functions in the top table carry lang js"

# --- the bad maps' processes ---
for p in $bad1 $bad2; do
	settle "pid=\"$p\"" 6 60
	folded "$p" "$t_bad"
	grep -q '\[jit\] 0x[0-9a-f]' "$tmp/$p.folded" || fail "pid $p: no [jit] 0x... frame"
	! grep -q '\[anon\]' "$tmp/$p.folded" || fail "pid $p: [anon] frames"
	! grep -q 'JS:' "$tmp/$p.folded" || fail "pid $p: named from a map that names nothing of it"
done
grep -q "perf map of pid $bad1 (/tmp/perf-$bad1.map): a line that is not" "$tmp/agent.err" ||
	fail "no log line for the garbage map"
grep -q "perf map of pid $bad2 (/tmp/perf-$bad2.map) needs more than" "$tmp/agent.err" ||
	fail "no log line for the map over the bound"
ok "garbage and over-bound maps: logged, JIT frames stay [jit] 0x..."

# --- JDK 17: -XX:+PreserveFramePointer, jcmd Compiler.perfmap after warm-up ---
java -XX:+PreserveFramePointer -cp "$JIT" JitBurn 3 10 "$tmp/go" >"$tmp/java.out" 2>&1 &
jp=$!
kids="$kids $jp"
i=0
until grep -q '^warm$' "$tmp/java.out"; do
	kill -0 "$jp" 2>/dev/null || fail "java exited: $(cat "$tmp/java.out")"
	i=$((i + 1))
	[ "$i" -le 300 ] || fail "java not warm within 30 s"
	sleep 0.1
done
jcmd "$jp" Compiler.perfmap >"$tmp/jcmd.out" 2>&1 || fail "jcmd: $(cat "$tmp/jcmd.out")"
t0=$(date +%s)
touch "$tmp/go"
wait "$jp" || fail "java: $(cat "$tmp/java.out")"
settle "pid=\"$jp\"" 6 60
wait_named "$jp" $((t0 + 1)) 'JavaCalls::call_helper' 
java_method='^[][A-Za-z0-9_.$<>]+ [A-Za-z0-9_.$<>]+\.[A-Za-z0-9_$<>]+\(.*\)$'
python3 "$check" --folded "$tmp/$jp.folded" --match "$java_method" --has ThreadJavaMain \
	--incl 'long JitBurn.hotAlpha(int)' --incl 'long JitBurn.hotBeta(int)' >"$tmp/ours" ||
	fail "unwind_check.py"
n=$(val samples "$tmp/ours")
m=$(val match "$tmp/ours")
[ "$n" -ge 600 ] || fail "java: only $n samples"
atleast "$m" 0.80 || { sort -t' ' -k2 -nr "$tmp/$jp.folded" | head -5 | cut -c1-400 >&2; fail "java: $m of $n samples under a named Java method"; }
ok "JDK 17 after jcmd Compiler.perfmap: $m of $n samples under a named Java method"
ia=$(awk '/^incl_long JitBurn.hotAlpha/ {print $NF}' "$tmp/ours")
ib=$(awk '/^incl_long JitBurn.hotBeta/ {print $NF}' "$tmp/ours")
ca=$(sed -n 's/^cpu_alpha_ns //p' "$tmp/java.out")
cb=$(sed -n 's/^cpu_beta_ns //p' "$tmp/java.out")
[ -n "$ca" ] && [ -n "$cb" ] || fail "java printed no CPU times: $(cat "$tmp/java.out")"
awk -v a="$ia" -v b="$ib" -v ca="$ca" -v cb="$cb" 'BEGIN {
	s = a / (a + b); c = ca / (ca + cb); d = s - c
	printf "%.4f %.4f\n", s, c; exit !(d <= 0.05 && d >= -0.05) }' >"$tmp/split" ||
	fail "java: hotAlpha's share of the two is $(cut -d' ' -f1 "$tmp/split") in the profile, $(cut -d' ' -f2 "$tmp/split") by the program's CPU time"
ok "java: hotAlpha's share $(cut -d' ' -f1 "$tmp/split"), the program's own CPU time $(cut -d' ' -f2 "$tmp/split"): within 5 points"
# the launcher's thread start (libc's clone3 below it is named only where
# libc's debug file is at hand)
atleast "$(val has_ThreadJavaMain "$tmp/ours")" 0.80 ||
	fail "java: only $(val has_ThreadJavaMain "$tmp/ours") of the samples reach ThreadJavaMain"
grep 'JitBurn.hotAlpha' "$tmp/$jp.folded" | grep -q 'JavaCalls::call_helper' ||
	fail "java: hotAlpha's stacks do not pass through the JVM's own frames"
ok "java: stacks from the Java methods through the JVM to the launcher's ThreadJavaMain ($(val has_ThreadJavaMain "$tmp/ours"))"
langs "$jp" $((t0 + 1)) 'JitBurn\.hot(Alpha|Beta)'
[ "$(cut -f2 "$tmp/$jp.langs" | sort -u)" = java ] ||
	fail "java: the hot methods' rows are not all lang java: $(cat "$tmp/$jp.langs")"
ok "java: its hot methods' top rows carry lang java"

# --- the counters reach /metrics ---
sleep 2.5     # one more push with the latest counters (the exited
sleep 2       # processes' maps are dropped two drains after their exit)
curl -sf "$base/metrics" >"$tmp/metrics" || fail "GET /metrics"
for c in unwind_fp_jit unwind_fp_no_fde jit_frames jit_frames_named perf_map_bad_lines \
	perf_map_huge_lines perf_map_over_limit perf_map_truncated; do
	v=$(metric $c)
	[ "${v:-0}" -gt 0 ] || fail "/metrics: $c is '${v}'"
done
grep -q "perf map of pid $bad1 (/tmp/perf-$bad1.map) ends in an unfinished line" "$tmp/agent.err" ||
	fail "no log line for the unfinished last line"
ok "/metrics: unwind_fp_jit $(metric unwind_fp_jit), unwind_fp_no_fde $(metric unwind_fp_no_fde), jit_frames_named $(metric jit_frames_named) of $(metric jit_frames), perf_map_bad_lines $(metric perf_map_bad_lines), perf_map_over_limit $(metric perf_map_over_limit), perf_map_truncated $(metric perf_map_truncated)"
grep 'JIT frames:' "$tmp/agent.err" | tail -1
