#!/bin/sh
# agent_test.sh - the real agent with real eBPF against the real server on
# loopback: a frame-pointer test program's samples arrive with the right
# count, stacks and labels (tests/integration/agent_check.py); the server
# is killed -9 and restarted on the same port while the agent keeps
# sampling, and the backlog arrives; SIGTERM detaches every BPF program.
#
# Binaries come from $SMOLDER_SERVER, $SMOLDER_AGENT and $SMOLDER_FP_BUSY
# (the Makefile passes them). Needs root and a kernel with BTF; anywhere
# else it says loudly that it skipped.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
BUSY=${SMOLDER_FP_BUSY:-build/tests/fp_busy}
FREQ=99
. "$(dirname "$0")/lib.sh"
check="$(dirname "$0")/agent_check.py"

. "$(dirname "$0")/agent_lib.sh"
need_bpf agent_test.sh

# the BPF programs a process holds, by ID, from its descriptors' fdinfo
prog_ids() { grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{print $2}' | sort -u; }

start_server 127.0.0.1:0
port=${base##*:}
start_agent --frequency $FREQ --label service=agent-test --label version=1.0 --verbose
progs=$(prog_ids "$apid")
[ -n "$progs" ] || fail "the agent holds no BPF program"
for id in $progs; do
	bpftool prog show id "$id" | grep -q 'name sm_' || fail "program $id is not ours"
done
ok "agent loaded its BPF program and samples"

# Names of this run only (comm is the file name, up to 15 bytes): another
# test beside this one on the host, profiled by its own agent, must not
# count here. Both copies share a build ID, so frames not yet symbolized
# carry the first copy's name: agent_check.py matches on the prefix.
A=fpa$$
B=fpb$$
export OBJECT_PREFIX=fp
cp "$BUSY" "$tmp/$A"
cpu=$("$tmp/$A" 4)
settle "$A"
python3 "$check" "$base" "$tmp/$A" "$A" "$cpu" $FREQ service=agent-test \
	version=1.0 "hostname=$(hostname)" "comm=$A" "exe=$tmp/$A" ||
	fail "stored samples of $A"
ok "fp_busy: count, stacks to main and labels right"

# the agent uploaded the binary's debug info, under its build ID
bid=$(readelf -n "$tmp/$A" | sed -n 's/.*Build ID: *//p')
i=0
until curl -sf -o /dev/null -I "$base/api/v1/debuginfo/$bid"; do
	i=$((i + 1))
	[ "$i" -le 300 ] || fail "debug info of fp_busy ($bid) not uploaded within 30 s"
	sleep 0.1
done
cmp -s "$tmp/$A" "$tmp/data/debuginfo/$bid" || fail "uploaded file differs from fp_busy"
ok "the agent uploaded fp_busy's ELF file by build ID"

# what went up and what was skipped, as the server counts it and as the
# agent reports it with its next batches
size=$(stat -c %s "$tmp/$A")
i=0
until curl -sf "$base/metrics" >"$tmp/metrics" &&
	awk -v s="$size" '/^smolder_agent_reported_total\{.*counter="debuginfo_upload_bytes"\}/ { if ($NF >= s) f = 1 }
		END { exit !f }' "$tmp/metrics"; do
	i=$((i + 1))
	[ "$i" -le 300 ] || fail "no debuginfo_upload_bytes >= $size reported: $(grep debuginfo "$tmp/metrics")"
	sleep 0.1
done
grep -q '^smolder_agent_reported_total{.*counter="debuginfo_skipped_on_server"}' "$tmp/metrics" ||
	fail "no debuginfo_skipped_on_server counter"
curl -sf "$base/api/v1/status" >"$tmp/status" || fail "status"
python3 - "$tmp/status" "$size" <<'PY' || fail "status: $(cat "$tmp/status")"
import json, sys
st = json.load(open(sys.argv[1]))
d = st["debuginfo"]
assert d["uploaded"] >= 1 and d["upload_bytes"] >= int(sys.argv[2]), d
c = st["agents"][0]["counters"]
assert c["debuginfo_uploads"] >= 1 and "debuginfo_waiting_daily_bound" in c, c
PY
ok "uploads and skips counted in /metrics and /api/v1/status (server and agent)"

# The server dies mid-stream; the agent keeps sampling and buffers.
kill -KILL "$pid"
wait "$pid" 2>/dev/null || true
pid=""
cp "$BUSY" "$tmp/$B"
cpu2=$("$tmp/$B" 3)
sleep 3
grep -q 'keeping batches for later' "$tmp/agent.err" || fail "agent did not notice the server was gone"
ok "agent buffers while the server is down"
start_server "127.0.0.1:$port"
settle "$B"
python3 "$check" "$base" "$tmp/$B" "$B" "$cpu2" $FREQ service=agent-test ||
	fail "stored samples of $B after the restart"
ok "the backlog arrived after the restart"
n1=$(total "$A")
python3 "$check" "$base" "$tmp/$A" "$A" "$cpu" $FREQ >/dev/null ||
	fail "$A's samples changed across the kill (now $n1)"
ok "acknowledged samples survived kill -9"

kill -TERM "$apid"
i=0
while kill -0 "$apid" 2>/dev/null; do
	i=$((i + 1))
	[ "$i" -le 100 ] || fail "agent did not exit within 10 s of SIGTERM"
	sleep 0.1
done
wait "$apid" && rc=0 || rc=$?
apid=""
[ "$rc" = 0 ] || { tail -20 "$tmp/agent.err" >&2; fail "agent exited $rc on SIGTERM"; }
for id in $progs; do
	! bpftool prog show id "$id" >/dev/null 2>&1 || fail "BPF program $id still loaded after the agent exited"
done
ok "agent exits 0 on SIGTERM and detaches its BPF programs"
