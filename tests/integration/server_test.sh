#!/bin/sh
# server_test.sh - starts the real smolder-server on a loopback port with a
# temporary data dir and talks to it only over HTTP, as a user would:
# health, status, errors, the access log, a clean exit 0 on SIGTERM (under
# ASan that includes no leaks), and a restart on the same data.
#
# The server binary comes from $SMOLDER_SERVER (the Makefile passes the ASan
# build). It listens on 127.0.0.1:0, so the kernel picks a free port and no
# other process can take it between choosing and binding; the port is read
# back from the "listening on" line. Everything is cleaned up on any exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
. "$(dirname "$0")/lib.sh"

# start [flags...]: launches the server and sets $pid and $base once it
# listens.
start() {
	: >"$tmp/out"
	: >"$tmp/err"
	"$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/data" --retention 7d \
		--partition 1h "$@" >"$tmp/out" 2>"$tmp/err" &
	pid=$!
	i=0
	while ! grep -q '^smolder-server listening on http://' "$tmp/out"; do
		kill -0 "$pid" 2>/dev/null || fail "server exited before listening"
		i=$((i + 1))
		[ "$i" -le 200 ] || fail "server did not listen within 20 s"
		sleep 0.1
	done
	base=$(sed -n 's/^smolder-server listening on \(http:\/\/127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$tmp/out")
	[ -n "$base" ] || fail "unexpected listening line: $(cat "$tmp/out")"
	port=${base##*:}
	[ "$port" -gt 0 ] || fail "port 0 in the listening line"
}

# stop: SIGTERM, and the server must exit 0 within 20 s.
stop() {
	kill -TERM "$pid"
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		[ "$i" -le 200 ] || fail "server still running 20 s after SIGTERM"
		sleep 0.1
	done
	rc=0
	wait "$pid" || rc=$?
	pid=""
	[ "$rc" -eq 0 ] || fail "server exited with $rc after SIGTERM"
	! grep -q 'AddressSanitizer\|LeakSanitizer\|runtime error' "$tmp/err" ||
		fail "sanitizer report in the server's stderr"
}

# code URL [curl args...]: prints the HTTP status, the body goes to $tmp/body
code() {
	url=$1
	shift
	curl -sS -o "$tmp/body" -w '%{http_code}' --max-time 10 "$@" "$url" || echo 000
}

[ -x "$SERVER" ] || fail "$SERVER is not an executable (build it first)"

# Wrong command lines are refused with exit 2 and a reason.
rc=0
"$SERVER" --listen 127.0.0.1:0 >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- '--data-dir is required' "$tmp/err" ||
	fail "missing --data-dir: exit $rc"
rc=0
"$SERVER" --listen localhost:7070 --data-dir "$tmp/data" >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" -eq 2 ] && grep -q 'invalid --listen' "$tmp/err" || fail "bad --listen: exit $rc"
for flag in "--retention 7x" "--partition 0" "--maintenance-interval 1.5s"; do
	rc=0
	# the flag and its value split into two words on purpose
	"$SERVER" $flag --data-dir "$tmp/data" >/dev/null 2>"$tmp/err" || rc=$?
	[ "$rc" -eq 2 ] || fail "$flag: exit $rc"
done
ok "bad command lines exit 2"

start
ok "listening on $base"

# /healthz answers as soon as the server listens; poll briefly anyway.
i=0
while [ "$(code "$base/healthz")" != 200 ]; do
	i=$((i + 1))
	[ "$i" -le 50 ] || fail "/healthz never answered 200"
	sleep 0.1
done
[ "$(cat "$tmp/body")" = '{"status":"ok"}' ] || fail "/healthz body: $(cat "$tmp/body")"
ok "GET /healthz is 200 {\"status\":\"ok\"}"

[ "$(code "$base/api/v1/status")" = 200 ] || fail "/api/v1/status status"
python3 - "$tmp/body" <<'EOF' || fail "/api/v1/status body: $(cat "$tmp/body")"
import json, sys
s = json.load(open(sys.argv[1]))
st = s["storage"]
for k in ("head_rows", "blocks", "series", "stacks", "wal_segments", "wal_bytes"):
    assert isinstance(st[k], int) and st[k] >= 0, k
assert st["series"] == 0 and st["head_rows"] == 0, st
assert isinstance(s["uptime_s"], int) and s["version"]
assert s["maintenance"]["interval_s"] == 30
EOF
ok "GET /api/v1/status is JSON with the storage stats"

[ "$(code "$base/no/such/endpoint")" = 404 ] || fail "unknown path"
grep -q '"error"' "$tmp/body" || fail "404 body: $(cat "$tmp/body")"
ok "unknown path is 404 with a JSON error"

[ "$(code "$base/healthz" -X POST -d x)" = 405 ] || fail "POST /healthz"
ok "wrong method is 405"

# at the default level only what failed is logged: the 405, not the 200
# health checks nor the 404 (log_test.sh counts the lines under load)
grep -q '^POST /healthz 405 [0-9]* [0-9.]*ms$' "$tmp/err" || fail "no access log line for the 405"
! grep -q '^GET /healthz 200' "$tmp/err" || fail "a 200 was logged at the default level"
ok "an access log line for a failed request, none for the ones that went well"

stop
[ -f "$tmp/data/meta.db" ] && [ -d "$tmp/data/wal" ] || fail "data dir not created"
ok "SIGTERM: clean exit 0"

# The same data dir opens again: the lock was released, the WAL replays.
# Maintenance every second this time, so passes (cut, retention and
# compaction on the real store, on the pool) run while we watch.
start --maintenance-interval 1s
ok "restart on the same data dir"
i=0
while :; do
	[ "$(code "$base/api/v1/status")" = 200 ] || fail "status after restart"
	python3 - "$tmp/body" <<'EOF' && break
import json, sys
m = json.load(open(sys.argv[1]))["maintenance"]
assert m["interval_s"] == 1
sys.exit(0 if m["runs"] >= 2 and m["last_error"] is None else 1)
EOF
	i=$((i + 1))
	[ "$i" -le 100 ] || fail "no clean maintenance pass: $(cat "$tmp/body")"
	sleep 0.1
done
ok "maintenance passes run and report no error"
stop
ok "SIGTERM after maintenance: clean exit 0"

echo "integration server_test: $checks checks passed"
