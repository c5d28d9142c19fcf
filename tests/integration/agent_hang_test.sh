#!/bin/sh
# agent_hang_test.sh - the real agent against a server that hangs: the
# server is stopped (SIGSTOP: it still accepts connections, in the kernel,
# but answers nothing, so a push waits) for 6 s while the agent samples a
# busy program every second. Delivery runs on its own thread, so the agent
# must drain every interval all the same: the stored timeline of the
# program has a point in every 2 s step from its first to its last, with
# no gap and no catch-up spike, once the backlog arrives. Then the server
# hangs again, the agent queues, the server wakes and the agent gets
# SIGTERM at once (still in its backoff): it must deliver every queued
# batch before it exits, its last interval included.
#
# Binaries come from $SMOLDER_SERVER, $SMOLDER_AGENT and $SMOLDER_FP_BUSY.
# Needs root and a kernel with BTF; anywhere else it says loudly that it
# skipped.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
BUSY=${SMOLDER_FP_BUSY:-build/tests/fp_busy}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"
need_bpf agent_hang_test.sh

# a stopped server must not outlive a failed check
cont_server() { [ -z "$pid" ] || kill -CONT "$pid" 2>/dev/null || true; }
trap 'cont_server; stop_all' EXIT

start_server 127.0.0.1:0
"$AGENT" --server "$base" --interval 1 --frequency 49 --no-upload --verbose \
	>"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
i=0
until grep -q 'smolder-agent: sampling' "$tmp/agent.err"; do
	kill -0 "$apid" 2>/dev/null || fail "agent exited at start"
	i=$((i + 1)); [ "$i" -le 100 ] || fail "agent did not start sampling within 10 s"
	sleep 0.1
done

# the subject: its own name, so another test's processes do not count
S=hang$$
cp "$BUSY" "$tmp/$S"
t0=$(date +%s)
# 12 s of its own CPU time: at least 12 s of wall time, more on a loaded
# machine, so it runs through the 4 s before the hang and the 6 s of it
"$tmp/$S" 12 >/dev/null &
spid=$!
sleep 4
kill -STOP "$pid"
sleep 6
kill -CONT "$pid"
wait "$spid"
t1=$(date +%s)
settle "$S"
# every 2 s step of the subject's run has samples: a drain delayed by the
# hung push left a gap of three steps here, then one step with them all
curl -sfG "$base/api/v1/range" --data-urlencode \
	"query=process_cpu:samples:count:cpu:nanoseconds:delta{comm=\"$S\"}" \
	--data-urlencode "from=$t0" --data-urlencode "to=$t1" --data-urlencode "step=2s" \
	>"$tmp/range.json" || fail "range query"
/usr/bin/python3.11 - "$tmp/range.json" <<'PY' || fail "the timeline has a gap"
import json, sys
r = json.load(open(sys.argv[1]))
pts = [(int(t), v) for s in r["series"] for t, v in s["values"]]
pts.sort()
if len(pts) < 4:
    sys.exit("only %d points" % len(pts))
ts = [t for t, _ in pts]
gaps = [(a, b) for a, b in zip(ts, ts[1:]) if b - a > 2]
print("points:", " ".join("%d:%d" % (t - ts[0], v) for t, v in pts), file=sys.stderr)
if gaps:
    sys.exit("steps without samples between %s" % gaps)
PY
ok "a server hung for 6 s cost no drained interval: a point in every 2 s step"

# again, and SIGTERM right after the server wakes: the queue (with the
# agent in its backoff) goes out before the agent exits
kill -STOP "$pid"
sleep 4
kill -CONT "$pid"
kill -TERM "$apid"
i=0
while kill -0 "$apid" 2>/dev/null; do
	i=$((i + 1))
	[ "$i" -le 120 ] || fail "agent did not exit within 12 s of SIGTERM"
	sleep 0.1
done
wait "$apid" && rc=0 || rc=$?
apid=""
[ "$rc" = 0 ] || fail "agent exited $rc on SIGTERM"
grep -q 'every batch delivered' "$tmp/agent.err" || fail "the agent left batches behind"
last=$(sed -n 's/^smolder-agent: interval \([0-9]*\):.*/\1/p' "$tmp/agent.err" | tail -1)
got=$(curl -sf "$base/api/v1/status" | /usr/bin/python3.11 -c \
	'import json,sys; a=json.load(sys.stdin)["agents"]; print(max(x["last_seq"] for x in a))')
[ "$last" = "$got" ] || fail "the agent's last interval was $last, the server has $got"
ok "SIGTERM after a hang delivered every queued batch, the last ($last) included"
