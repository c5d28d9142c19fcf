#!/bin/sh
# ingest_test.sh - the agent's side of the API end to end, against the real
# smolder-server on a loopback port with a temporary data dir: native
# batches (made by tests/tools/mkbatch, $SMOLDER_MKBATCH) are stored and
# queryable with the right totals; broken ones get 400/413 with a message
# and leave the stored totals alone; a batch naming stacks the server lacks
# gets 409; the per-agent record in /api/v1/status; debug-info HEAD/PUT
# with real ELF files built here. Cleans up on any exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
MKBATCH=${SMOLDER_MKBATCH:-build/tests/mkbatch}
. "$(dirname "$0")/lib.sh"

[ -x "$SERVER" ] || fail "$SERVER is not an executable (build it first)"
[ -x "$MKBATCH" ] || fail "$MKBATCH is not an executable (build it first)"

start_server 127.0.0.1:0

# code METHOD URL [curl args...]: the HTTP status; the body goes to $tmp/body
code() {
	m=$1
	u=$2
	shift 2
	if [ "$m" = HEAD ]; then
		curl -sS -I -o "$tmp/body" -w '%{http_code}' --max-time 20 "$@" "$u" || echo 000
	else
		curl -sS -X "$m" -o "$tmp/body" -w '%{http_code}' --max-time 20 "$@" "$u" || echo 000
	fi
}
# post FILE: POST a batch file to /api/v1/ingest, prints the status
post() {
	code POST "$base/api/v1/ingest" -H 'Content-Type: application/x-smolder-batch' \
		--data-binary @"$1"
}
# json EXPR: evaluates a Python expression over the last body as j
json() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$tmp/body" "$1"
}
total() {
	c=$(code GET "$base/api/v1/query?query=%7B%7D&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z")
	[ "$c" = 200 ] || fail "query: $c $(cat "$tmp/body")"
	json 'j["total"]'
}
samples() { sed -n 's/.*samples=\([0-9]*\).*/\1/p' "$1"; }

# A valid batch is stored, answered with its counts, and queryable.
T0=1767225600000000000
"$MKBATCH" --seed 1 "$tmp/b1" >"$tmp/b1.txt"
s1=$(samples "$tmp/b1.txt")
c=$(post "$tmp/b1")
[ "$c" = 200 ] || fail "valid batch: $c $(cat "$tmp/body")"
[ "$(json 'j["rows"], j["series"], j["stacks"]')" = "(200, 3, 20)" ] ||
	fail "ingest answer $(cat "$tmp/body")"
[ "$(total)" = "$s1" ] || fail "total $(total), want $s1"
ok "a valid batch is stored: $s1 samples"

c=$(code GET "$base/api/v1/query?query=%7Bcomm%3D%22proc1%22%7D&from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&format=folded")
[ "$c" = 200 ] && grep -q 'fn_1_' "$tmp/body" && grep -q 'do_syscall_64' "$tmp/body" ||
	fail "folded query: $c $(head -3 "$tmp/body")"
ok "process labels select its series; named and kernel frames come back"

# Stacks the server has may be left out (the agent's stack cache).
"$MKBATCH" --seed 1 --omit-stacks --start-ns $((T0 + 10000000000)) "$tmp/b1b" >/dev/null
c=$(post "$tmp/b1b")
[ "$c" = 200 ] || fail "batch without known stacks: $c $(cat "$tmp/body")"
[ "$(total)" = "$((2 * s1))" ] || fail "total $(total), want $((2 * s1))"
ok "a batch may leave out stacks the server has"

# Stacks it lacks: 409 with missing_stacks, nothing stored; the resend works.
"$MKBATCH" --seed 2 --omit-stacks "$tmp/b2o" >/dev/null
c=$(post "$tmp/b2o")
[ "$c" = 409 ] && [ "$(json 'j["missing_stacks"]')" = True ] &&
	json 'j["error"]' | grep -q 'unknown' || fail "unknown stack: $c $(cat "$tmp/body")"
[ "$(total)" = "$((2 * s1))" ] || fail "the 409 batch was stored"
"$MKBATCH" --seed 2 "$tmp/b2" >"$tmp/b2.txt"
c=$(post "$tmp/b2")
[ "$c" = 200 ] || fail "resend with stacks: $c $(cat "$tmp/body")"
want=$((2 * s1 + $(samples "$tmp/b2.txt")))
[ "$(total)" = "$want" ] || fail "total $(total), want $want"
ok "unknown stacks: 409 missing_stacks, then the resend with stacks is stored"

# Broken batches: 400 (413 when too large) naming the problem; nothing stored.
for k in "truncate:compressed bytes" "magic:bad magic" "version:version 3, this server reads versions 1 to 2" \
	"flags:unknown flags" "lz4:lz4" "trailing:trailing bytes" \
	"label:must match" "oversize:exceeds the limit"; do
	kind=${k%%:*}
	words=${k#*:}
	"$MKBATCH" --seed 3 --break "$kind" "$tmp/bad" >/dev/null
	c=$(post "$tmp/bad")
	want_code=400
	[ "$kind" = oversize ] && want_code=413
	[ "$c" = "$want_code" ] || fail "--break $kind: $c, want $want_code: $(cat "$tmp/body")"
	json 'j["error"]' | grep -q "$words" ||
		fail "--break $kind: error $(cat "$tmp/body"), want '$words'"
done
[ "$(total)" = "$want" ] || fail "a broken batch changed the total: $(total), want $want"
ok "malformed, truncated, bad magic/version/flags, trailing bytes, bad labels: 400; oversized: 413; totals unchanged"

# The agents seen, with their last batch and counters.
c=$(code GET "$base/api/v1/status")
[ "$c" = 200 ] || fail "status: $c"
[ "$(json 'sorted((a["agent_id"], a["hostname"], a["last_seq"], a["batches"]) for a in j["agents"])')" = \
	"[('agent-1', 'host-1', 1, 2), ('agent-2', 'host-2', 2, 1)]" ] ||
	fail "status agents: $(cat "$tmp/body")"
[ "$(json '[a["counters"]["samples"] for a in j["agents"] if a["agent_id"] == "agent-2"][0]')" = \
	"$(samples "$tmp/b2.txt")" ] || fail "agent counters: $(cat "$tmp/body")"
ok "status lists each agent's last batch and counters"

# Debug info: real ELF files, one with a GNU build ID, one without.
printf 'int main(void) { return 0; }\n' >"$tmp/p.c"
cc -o "$tmp/with_id" -Wl,--build-id=sha1 "$tmp/p.c" || fail "cc"
cc -o "$tmp/no_id" -Wl,--build-id=none "$tmp/p.c" || fail "cc"
id=$(LC_ALL=C readelf -n "$tmp/with_id" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p')
[ ${#id} -eq 40 ] || fail "readelf build ID '$id'"
u="$base/api/v1/debuginfo/$id"
[ "$(code HEAD "$u")" = 404 ] || fail "HEAD before upload"
c=$(code PUT "$u" --data-binary @"$tmp/with_id")
[ "$c" = 201 ] || fail "PUT: $c $(cat "$tmp/body")"
[ "$(code HEAD "$u")" = 200 ] || fail "HEAD after upload"
cmp -s "$tmp/with_id" "$tmp/data/debuginfo/$id" || fail "stored file differs"
c=$(code PUT "$u" --data-binary @"$tmp/with_id")
[ "$c" = 200 ] || fail "second PUT: $c $(cat "$tmp/body")"
ok "debuginfo: HEAD 404, PUT 201, HEAD 200, PUT again 200"

fid=$("$MKBATCH" --fallback-id "$tmp/no_id")
[ ${#fid} -eq 32 ] || fail "fallback ID '$fid'"
c=$(code PUT "$base/api/v1/debuginfo/$fid" --data-binary @"$tmp/no_id")
[ "$c" = 201 ] || fail "PUT by fallback ID: $c $(cat "$tmp/body")"
c=$(code PUT "$base/api/v1/debuginfo/$id" --data-binary @"$tmp/no_id")
[ "$c" = 400 ] && grep -q 'no GNU build ID' "$tmp/body" ||
	fail "no-ID file under another ID: $c $(cat "$tmp/body")"
ok "debuginfo: a file without a build ID goes by its fallback ID (XXH3-128)"

other=$(echo "$id" | tr '0-9a-f' '1-9a-f0')
c=$(code PUT "$base/api/v1/debuginfo/$other" --data-binary @"$tmp/with_id")
[ "$c" = 400 ] && grep -q "build ID is $id" "$tmp/body" ||
	fail "mismatched build ID: $c $(cat "$tmp/body")"
c=$(code PUT "$base/api/v1/debuginfo/$other" --data-binary @"$tmp/p.c")
[ "$c" = 400 ] && grep -q 'not an ELF file' "$tmp/body" || fail "non-ELF: $c $(cat "$tmp/body")"
printf '\177ELFjunk' >"$tmp/fake"
c=$(code PUT "$base/api/v1/debuginfo/$other" --data-binary @"$tmp/fake")
[ "$c" = 400 ] && grep -q 'not a valid ELF' "$tmp/body" || fail "fake ELF: $c $(cat "$tmp/body")"
for bad in ABCD abc x "$(printf '%0130d' 0)"; do
	[ "$(code HEAD "$base/api/v1/debuginfo/$bad")" = 400 ] || fail "HEAD bad ID $bad"
done
[ ! -e "$tmp/data/debuginfo/$other" ] || fail "a refused upload was stored"
[ -z "$(ls -A "$tmp/data/debuginfo" | grep tmp || true)" ] || fail "temporary files left"
ok "debuginfo: mismatched ID, non-ELF, broken ELF and malformed IDs are 400"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with $rc after SIGTERM"
! grep -q 'AddressSanitizer\|LeakSanitizer\|runtime error' "$tmp/err" ||
	fail "sanitizer report in the server's stderr"
ok "clean exit"
