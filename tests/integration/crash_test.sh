#!/bin/sh
# crash_test.sh - kill -9 the real smolder-server at random moments while
# simulated agents (tests/tools/pusher, $SMOLDER_PUSHER) push, restart it
# each time on the same data dir and port, then check through the query API
# that every batch it answered 200 is stored exactly once and every other
# one is stored whole or not at all. Maintenance runs every second
# (CRASH_MAINT), so cuts, checkpoints and WAL removal race the ingest they
# must not disturb: the rows lie in a closed partition of 2026-01-01, kept
# by --retention 0, so every pass cuts. The store must reopen after every
# kill and hold no corrupted SQLite page at the end, and a sanitizer build
# (ASan in test-integration, TSan in `make test-tsan`) must report nothing.
# CRASH_KILLS=N (default 15) kills. Cleans up on any exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
PUSHER=${SMOLDER_PUSHER:-build/tests/pusher}
KILLS=${CRASH_KILLS:-15}
MAINT=${CRASH_MAINT:-1s}
. "$(dirname "$0")/lib.sh"

[ -x "$SERVER" ] || fail "$SERVER is not an executable (build it first)"
[ -x "$PUSHER" ] || fail "$PUSHER is not an executable (build it first)"

ppid_=""
# sanitizer_clean WHEN: fails when the server's stderr holds a sanitizer
# report (a data race under TSan, a memory error under ASan/UBSan)
sanitizer_clean() {
	if grep -q -E 'WARNING: ThreadSanitizer|ERROR: AddressSanitizer|runtime error:' "$tmp/err"; then
		fail "$1: the server's sanitizer reported: $(grep -m3 -E 'ThreadSanitizer|AddressSanitizer|runtime error:|^    #[0-4] ' "$tmp/err" | head -12)"
	fi
}
# the pushers are stopped before lib.sh's cleanup kills the server
stop_pushers() {
	touch "$tmp/stop" 2>/dev/null || true
	if [ -n "$ppid_" ]; then
		kill -KILL "$ppid_" 2>/dev/null || true
		wait "$ppid_" 2>/dev/null || true
	fi
	cleanup
}
trap stop_pushers EXIT

# start LISTEN: the server on LISTEN, waits until it listens
start() {
	# the file exists before the server's shell opens it, for the grep below
	: >"$tmp/out"
	"$SERVER" --listen "$1" --data-dir "$tmp/data" --maintenance-interval "$MAINT" --retention 0 \
		>"$tmp/out" 2>>"$tmp/err" &
	pid=$!
	i=0
	while ! grep -q '^smolder-server listening on http://' "$tmp/out"; do
		kill -0 "$pid" 2>/dev/null || fail "server exited before listening"
		i=$((i + 1))
		[ "$i" -le 300 ] || fail "server did not listen within 30 s"
		sleep 0.05
	done
}

start 127.0.0.1:0
base=$(sed -n 's/^smolder-server listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$tmp/out")
listen=${base#http://}

"$PUSHER" --url "$base" --log "$tmp/log" --stop "$tmp/stop" --pushers 4 2>"$tmp/pusher.err" &
ppid_=$!

k=0
while [ "$k" -lt "$KILLS" ]; do
	# 0.3 .. 2.3 s of pushing, then a kill at whatever the server is doing
	sleep "$(awk -v s="$$$k" 'BEGIN { srand(s); printf "%.2f", 0.3 + 2 * rand() }')"
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null || true
	k=$((k + 1))
	sanitizer_clean "after kill $k"
	start "$listen"
done
sleep 1
touch "$tmp/stop"
wait "$ppid_" || fail "pusher failed: $(cat "$tmp/pusher.err")"
ppid_=""
ok "$KILLS kills with pushers running; the server restarted each time"

acked=$(awk '$4 == 200' "$tmp/log" | wc -l)
unacked=$(awk '$4 != 200' "$tmp/log" | wc -l)
[ "$acked" -gt 0 ] || fail "no batch was acknowledged"

# What the server holds per pusher and batch (one range point per series:
# all rows lie inside the first 10 s of 2026).
for p in $(awk '{print $1}' "$tmp/log" | sort -u); do
	curl -sS -o "$tmp/range.$p" -w '%{http_code}' --max-time 60 \
		"$base/api/v1/range?query=%7Bpusher%3D%22$p%22%7D&by=batch&step=1h&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z" \
		>"$tmp/code" || fail "range query for $p failed"
	[ "$(cat "$tmp/code")" = 200 ] || fail "range $p: $(cat "$tmp/code") $(head -c 300 "$tmp/range.$p")"
done
python3 "$(dirname "$0")/acked_check.py" "$tmp" ||
	fail "stored batches do not match what was acknowledged"
ok "all $acked acknowledged batches stored exactly once; $unacked others whole or absent"

# a clean stop, then SQLite's own check of every page and index
kill -TERM "$pid"
rc=0
wait "$pid" 2>/dev/null || rc=$?
if [ "$rc" != 0 ]; then
	sanitizer_clean "stop"
	fail "the server did not stop cleanly on SIGTERM (exit status $rc): $(tail -5 "$tmp/err")"
fi
pid=""
sanitizer_clean "at the end"
ic=$(sqlite3 "$tmp/data/meta.db" 'PRAGMA integrity_check' 2>&1) || fail "sqlite3: $ic"
[ "$ic" = ok ] || fail "meta.db integrity_check: $(echo "$ic" | head -5)"
ok "meta.db passes integrity_check; no sanitizer report in $KILLS restarts"
