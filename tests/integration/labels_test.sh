#!/bin/sh
# labels_test.sh - processes' own labels through the real agent, real eBPF
# and the real server: two processes of one executable started with
# different SMOLDER_LABEL_version values arrive as two versions, and
# `smolder diff` between them shows their real difference (one gives hot_a
# three quarters of its work, the other half). The agent's config keeps
# only this test's processes, drops one marked skip=yes, rewrites a
# version ("2-rc" -> "2") and derives a label from exe. A variable longer
# than a label value may be is cut and counted; a config that does not
# parse stops the agent with its line and column, and so does a regex too
# slow to run on every process.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
CLI=${SMOLDER_CLI:-bin/smolder}
BUSY=${SMOLDER_FP_BUSY:-build/tests/fp_busy}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/agent_lib.sh"

# bad configs first: they stop the agent before it loads anything
printf 'relabel_configs:\n  - source_labels: [comm]\n    action: [drop\n' >"$tmp/bad.yml"
rc=0
"$AGENT" --config "$tmp/bad.yml" --exit-after 1 2>"$tmp/agent.err" || rc=$?
[ "$rc" = 2 ] || fail "agent with an unparseable config exited $rc"
grep -Eq "^smolder-agent: $tmp/bad.yml:[0-9]+:[0-9]+: " "$tmp/agent.err" ||
	fail "no line and column: $(cat "$tmp/agent.err")"
ok "an unparseable config stops the agent: $(cat "$tmp/agent.err")"

printf 'relabel_configs:\n  - source_labels: [comm]\n    regex: "(a|aa)+b"\n    action: drop\n' \
	>"$tmp/slow.yml"
rc=0
"$AGENT" --config "$tmp/slow.yml" --exit-after 1 2>"$tmp/agent.err" || rc=$?
[ "$rc" = 2 ] && grep -q "^smolder-agent: $tmp/slow.yml:3:12: regex too slow" "$tmp/agent.err" ||
	fail "slow regex (rc $rc): $(cat "$tmp/agent.err")"
ok "a too slow regex is refused with its place"

printf 'relabel_configs:\n  - source_labels: [comm]\n    action: keep\n    colour: red\n' \
	>"$tmp/unknown.yml"
rc=0
"$AGENT" --config "$tmp/unknown.yml" --exit-after 1 2>"$tmp/agent.err" || rc=$?
[ "$rc" = 2 ] && grep -q "^smolder-agent: $tmp/unknown.yml:4:5: unknown key 'colour'" \
	"$tmp/agent.err" || fail "unknown key (rc $rc): $(cat "$tmp/agent.err")"
ok "an unknown key is an error at its place"

need_bpf labels_test.sh

# one executable, this run's name (comm is the file name)
P=lbl$$
cp "$BUSY" "$tmp/$P"
cat >"$tmp/agent.yml" <<EOF
relabel_configs:
  # only this test's processes (others on the host are not ours)
  - source_labels: [comm]
    regex: "$P"
    action: keep
  - source_labels: [skip]
    regex: "yes"
    action: drop
  # a release candidate counts as its release
  - source_labels: [version]
    regex: "([0-9]+)-rc"
    target_label: version
  - source_labels: [exe]
    regex: ".*/(lbl[0-9]+)"
    target_label: program
    replacement: "prog-\$1"
  - regex: "skip"
    action: labeldrop
EOF

start_server 127.0.0.1:0
# A profile is one process over one interval: 1 s intervals give each
# version about ten, enough for the profiles test even when other work
# on the host leaves the two processes a fraction of a CPU.
start_agent --interval 1 --frequency 199 --config "$tmp/agent.yml"

long=$(head -c 300 /dev/zero | tr '\0' x)
SMOLDER_LABEL_version=1 SMOLDER_LABEL_note="$long" "$tmp/$P" 10 300 >/dev/null &
p1=$!
SMOLDER_LABEL_version=2-rc "$tmp/$P" 10 100 >/dev/null &
p2=$!
SMOLDER_LABEL_version=3 SMOLDER_LABEL_skip=yes "$tmp/$P" 4 >/dev/null &
p3=$!
wait $p1 $p2 $p3
settle "$P"

Q='process_cpu:samples:count:cpu:nanoseconds:delta'
values() {
	curl -sf -G "$base/api/v1/labels/$1/values" --data-urlencode "from=now-1h" \
		--data-urlencode "query=$Q{comm=\"$P\"}" | tr -d '[]"' | tr ',' ' '
}
[ "$(values version)" = "1 2" ] || fail "versions: $(values version)"
ok "two processes of one executable arrive as two versions; 2-rc rewritten to 2; skip=yes dropped"
[ "$(values program)" = "prog-$P" ] || fail "program label: $(values program)"
ok "a rule derives a label from exe"
[ "$(values comm)" = "$P" ] || fail "comm values: $(values comm)"
all=$(curl -sf -G "$base/api/v1/labels/comm/values" --data-urlencode "from=now-1h" | tr -d '[]"')
[ "$all" = "$P" ] || fail "keep let other processes through: $all"
ok "keep: only this test's processes were sent"
n=$(values note)
[ "${#n}" = 256 ] || fail "note label is ${#n} bytes"
curl -sf "$base/metrics" >"$tmp/metrics"
cut=$(sed -n 's/^smolder_agent_reported_total{.*counter="label_values_cut"} \([0-9]*\)$/\1/p' "$tmp/metrics")
[ "${cut:-0}" -ge 1 ] || fail "label_values_cut not counted: $(grep label_ "$tmp/metrics")"
dropped=$(sed -n 's/^smolder_agent_reported_total{.*counter="relabel_samples_dropped"} \([0-9]*\)$/\1/p' "$tmp/metrics")
[ "${dropped:-0}" -ge 100 ] || fail "relabel_samples_dropped: ${dropped:-none}"
ok "a 300-byte variable cut to 256 bytes and counted ($cut); dropped samples counted ($dropped)"

# names need the uploaded debug info
bid=$(readelf -n "$tmp/$P" | sed -n 's/.*Build ID: *//p')
i=0
until curl -sf -o /dev/null -I "$base/api/v1/debuginfo/$bid"; do
	i=$((i + 1))
	[ "$i" -le 300 ] || fail "debug info of $P not uploaded within 30 s"
	sleep 0.1
done
"$CLI" --server "$base" diff "{comm=\"$P\",version=\"1\"}" "{comm=\"$P\",version=\"2\"}" \
	--from now-1h >"$tmp/cli.out" 2>"$tmp/cli.err" || fail "smolder diff"
cat "$tmp/cli.out"
[ "$(tail -1 "$tmp/cli.out")" = "no other significant change" ] || fail "diff closing line"
# hot_a had 3/4 of the work, then 1/2: -25 points, hot_b +25
a=$(sed -n 's/^\([+-][0-9.]*\) pp hot_a with callees (p .*)$/\1/p' "$tmp/cli.out")
b=$(sed -n 's/^\([+-][0-9.]*\) pp hot_b with callees (p .*)$/\1/p' "$tmp/cli.out")
[ -n "$a" ] && [ -n "$b" ] || fail "hot_a and hot_b not both listed"
awk -v a="$a" -v b="$b" 'BEGIN { exit !(a < -15 && a > -35 && b > 15 && b < 35) }' ||
	fail "hot_a $a, hot_b $b points: not the 25-point move"
! grep -q ' main ' "$tmp/cli.out" || fail "main listed: it is all of both"
ok "smolder diff between the versions: hot_a $a pp, hot_b $b pp, nothing else about main"
