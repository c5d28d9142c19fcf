#!/bin/sh
# offcpu_test.sh - off-CPU time with the real agent, kernel and server:
# tests/programs/offcpu_prog blocks in known functions and measures itself,
# two agents record it at once (--off-cpu-sample 1 and 0.1, told apart by a
# label), and tests/integration/offcpu_check.py compares what the server
# stored with what the program measured: sleeping against reading a pipe
# (each within 15 %, their split within 5 points), a thread moved to the
# other CPU while it sleeps (counted once), a CPU-bound process (no
# off-CPU time), p = 0.1 against p = 1 (within 20 %), the off-CPU series'
# labels against the CPU ones', a diff, /api/v1/types, a Python program's
# waits under its Python functions. Then, one agent at a
# time: a flood of blocks shorter than --off-cpu-min stores nothing, and
# more distinct stacks than the maps hold are counted in /metrics.
#
# Binaries come from $SMOLDER_SERVER, $SMOLDER_AGENT and
# $SMOLDER_OFFCPU_PROG (the Makefile passes them). Needs root, BTF and the
# sched_exit_tp tracepoint (Linux 6.16); anywhere else it says loudly that
# it skipped.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
PROG=${SMOLDER_OFFCPU_PROG:-build/tests/offcpu_prog}
OFF=off_cpu:time:nanoseconds:time:nanoseconds:delta
. "$(dirname "$0")/lib.sh"
check="python3 $(dirname "$0")/offcpu_check.py"
. "$(dirname "$0")/agent_lib.sh"
need_bpf offcpu_test.sh
[ "$(nproc)" -ge 2 ] || skip offcpu_test.sh "the migration check needs two CPUs; this host has $(nproc)"

start_server 127.0.0.1:0

a2pid=""
stop_agents() {
	for p in $apid $a2pid; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	apid=""; a2pid=""
}
trap 'stop_agents; stop_all' EXIT

# start_offcpu ERR FLAGS...: an agent with --off-cpu; sets $last_pid once it
# records (skips where the kernel lacks what off-CPU time needs)
start_offcpu() {
	err=$1
	shift
	"$AGENT" --server "$base" --off-cpu "$@" >/dev/null 2>"$err" &
	last_pid=$!
	i=0
	while ! grep -q 'smolder-agent: off-CPU time' "$err"; do
		if ! kill -0 "$last_pid" 2>/dev/null; then
			if grep -q 'needs the sched_exit_tp tracepoint' "$err"; then
				skip offcpu_test.sh "$(grep 'sched_exit_tp' "$err")"
			fi
			cat "$err" >&2
			fail "agent exited at start"
		fi
		i=$((i + 1))
		[ "$i" -le 300 ] || fail "agent did not start within 30 s"
		sleep 0.1
	done
}

# Names of this run only (comm is the file name, up to 15 bytes).
for m in split migrate sleeps busy flood stacks; do
	cp "$PROG" "$tmp/oc$m$$"
done

# ---- two agents, the same workload ----
# (small files uploaded only: the subject for its names, not the host's
# big binaries, whose uploads would hold the agent's loop)
start_offcpu "$tmp/agent.err" --interval 2 --frequency 99 --upload-max-mb 1 --label sample=1
apid=$last_pid
start_offcpu "$tmp/agent2.err" --interval 2 --frequency 19 --no-upload \
	--off-cpu-sample 0.1 --label sample=0.1
a2pid=$last_pid
ok "two agents record off-CPU time (p = 1 and p = 0.1)"

# The agents build unwind tables for the objects of every process they
# see, on one builder thread, and on a busy host that queue can take a
# while; until a process' tables are in, its stacks are walked by frame
# pointers, which Debian's libc lacks (stacks skip the caller). A primer of
# the same binary blocks in nap_fn until both agents name it through libc,
# so the subjects' tables are ready before they start.
cp "$PROG" "$tmp/ocprime$$"
"$tmp/ocprime$$" sleeps 1 1000000 >/dev/null &
pp=$!
i=0
until $check ready "$base" "ocprime$$" nap_fn >/dev/null 2>&1; do
	i=$((i + 1))
	[ "$i" -le 240 ] || fail "the agents' stacks of the primer never reached nap_fn through libc"
	sleep 0.5
done
kill "$pp"
wait "$pp" 2>/dev/null || true
ok "both agents walk the subjects' stacks through libc (after $((i / 2)) s)"

# the subjects run side by side; each measures itself
"$tmp/ocsplit$$" split 150 >"$tmp/split.out" &
p1=$!
"$tmp/ocmigrate$$" migrate 100 >"$tmp/migrate.out" &
p2=$!
"$tmp/ocsleeps$$" sleeps 4 1000 >"$tmp/sleeps.out" &
p3=$!
"$tmp/ocbusy$$" busy 2 >"$tmp/busy.out" &
p4=$!
for p in $p1 $p2 $p3 $p4; do
	wait "$p" || fail "a subject failed: $(cat "$tmp"/*.out)"
done
cat "$tmp/split.out" "$tmp/migrate.out" "$tmp/sleeps.out" "$tmp/busy.out"

# off-CPU totals of a comm stable for 5 polls in a row (both agents push
# every 2 s; a block is counted when it ends, so by now all have ended)
settle_off() {
	last=-1; same=0; i=0
	while [ "$same" -lt 5 ]; do
		n=$($check total "$base" "$1" "sample=$2")
		if [ "$n" = "$last" ] && [ "$n" -gt 0 ]; then same=$((same + 1)); else same=0; fi
		last=$n
		i=$((i + 1))
		[ "$i" -le 120 ] || fail "off-CPU time of $1 (sample=$2) still changing or none: $n"
		sleep 0.5
	done
}
settle_off "ocsplit$$" 1
settle_off "ocmigrate$$" 1
settle_off "ocsleeps$$" 1
settle_off "ocsleeps$$" 0.1

curl -sf "$base/api/v1/types" | grep -q "\"$OFF\"" ||
	fail "/api/v1/types does not list $OFF: $(curl -s "$base/api/v1/types")"
ok "/api/v1/types lists $OFF"

set -- $(cat "$tmp/split.out")
$check split "$base" "ocsplit$$" "$2" "$4" || fail "sleep against pipe read"
ok "sleep_fn and pipe_fn within 15 % of the program's own clock, the split within 5 points"

set -- $(cat "$tmp/migrate.out")
[ "$4" -ge $(($6 * 9 / 10)) ] || fail "the subject did not migrate while blocked: $*"
$check migrate "$base" "ocmigrate$$" "$2" || fail "a thread that wakes on the other CPU"
ok "a thread blocked on one CPU and woken on the other ($4 of $6 blocks) is counted once"

set -- $(cat "$tmp/sleeps.out")
$check sample "$base" "ocsleeps$$" "$2" || fail "sampling at p = 0.1"
ok "--off-cpu-sample 0.1 gives totals within 20 % of p = 1"

set -- $(cat "$tmp/busy.out")
$check busy "$base" "ocbusy$$" "$2" || fail "a CPU-bound process"
ok "a CPU-bound process has no off-CPU time to speak of"

$check labels "$base" "ocsplit$$" || fail "labels"
ok "off-CPU series carry the labels of the process' CPU series"

$check diff "$base" "ocsleeps$$" || fail "diff"
ok "off-CPU profiles diff"

# A CPython program's waits are under its Python functions: the off-CPU
# walk is the CPU one, Python frames included. Debian's interpreter (other
# python3.11 processes may be about: the functions are named for this
# run). Until the agent has read the new process (its tables, its thread
# state's key) its stacks are native only, so it first sleeps in a primer
# function until that shows under its Python caller, then sleeps 80 x 25
# ms in the measured one and says how long that took by its own clock.
# pyoff_ns OUTER INNER FROM: off-CPU ns of python3.11 under OUTER → INNER
pyoff_ns() {
	curl -sf -G "$base/api/v1/query" -d format=folded -d from="$3" -d to=now \
		--data-urlencode "query=$OFF{comm=\"python3.11\",sample=\"1\"}" |
		awk -v f="$1;$2" 'index($0, f) {n += $NF} END {print n + 0}'
}
t0=$(date +%s)
rm -f "$tmp/pygo"
/usr/bin/python3.11 -c "import os, time
def ocpy_prime_$$():
    time.sleep(0.05)
def ocpy_primer_$$():
    while not os.path.exists('$tmp/pygo'):
        ocpy_prime_$$()
def ocpy_waits_$$():
    time.sleep(0.025)
def ocpy_outer_$$():
    for _ in range(80):
        ocpy_waits_$$()
ocpy_primer_$$()
t = time.monotonic_ns()
ocpy_outer_$$()
print(time.monotonic_ns() - t)" >"$tmp/py.out" &
pp=$!
i=0
until [ "$(pyoff_ns "ocpy_primer_$$" "ocpy_prime_$$" "$t0")" -gt 0 ]; do
	i=$((i + 1))
	[ "$i" -le 240 ] || fail "python3.11's waits never showed under its Python functions"
	sleep 0.5
done
touch "$tmp/pygo"
wait "$pp" || fail "python3.11 failed"
slept=$(cat "$tmp/py.out")
i=0
while :; do
	ns=$(pyoff_ns "ocpy_outer_$$" "ocpy_waits_$$" "$t0")
	[ "$ns" -ge $((slept * 7 / 10)) ] && break
	i=$((i + 1))
	[ "$i" -le 40 ] || fail "python3.11: $ns ns off the CPU under ocpy_outer_$$ → ocpy_waits_$$, of $slept ns by its own clock"
	sleep 0.5
done
ok "python3.11: $((ns / 1000000)) ms off the CPU under its Python functions, of $((slept / 1000000)) ms by its own clock"

stop_agents

# ---- a flood of short blocks costs nothing stored ----
# One process, blocks far shorter than a minimum of 1 s: every one is seen
# and counted as short, none is stored. The interval is longer than the
# run: the counters go out with the last drain, at SIGTERM.
rm -f "$tmp/go"
"$tmp/ocflood$$" flood 50000 "$tmp/go" >"$tmp/flood.out" &
p1=$!
start_offcpu "$tmp/agent.err" --interval 60 --pid "$p1" --off-cpu-min 1000 --no-upload
apid=$last_pid
touch "$tmp/go"
wait "$p1" || fail "flood failed"
stop_agents
short=$($check metric "$base" offcpu_blocks_short)
long=$($check metric "$base" offcpu_blocks)
set -- $($check stacks "$base" "ocflood$$")
echo "flood: 50000 round trips, $short blocks shorter than the minimum, $long recorded, $1 stacks stored"
[ "$short" -ge 5000 ] || fail "the flood's blocks were not seen: $short short blocks"
[ "$long" = 0 ] && [ "$1" = 0 ] || fail "blocks below the minimum were stored: $long blocks, $1 stacks"
ok "a flood of blocks below --off-cpu-min is counted, and stores nothing"

# ---- more distinct stacks than the map holds ----
# 1 920 distinct stacks of ~1 ms blocks in one interval against room for
# 1 024 + 16 counters (the maps' floor at 1 Hz, plus --off-cpu-entries):
# the rest are dropped, and /metrics says how many.
start_offcpu "$tmp/agent.err" --interval 60 --frequency 1 --off-cpu-entries 16 \
	--off-cpu-min 0.5 --no-upload
apid=$last_pid
"$tmp/ocstacks$$" stacks 2400 >"$tmp/stacks.out" || fail "stacks failed"
stop_agents
full=$($check metric "$base" offcpu_dropped_map_full)
set -- $($check stacks "$base" "ocstacks$$")
echo "stacks: $1 off-CPU stacks stored, $full blocks dropped for a full map"
[ "$full" -gt 0 ] || fail "a full map was not counted: offcpu_dropped_map_full=$full"
ok "a full map is counted in /metrics (offcpu_dropped_map_full $full)"
