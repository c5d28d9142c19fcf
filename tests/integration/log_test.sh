#!/bin/sh
# log_test.sh - what smolder-server writes to its log, against the real
# server on a loopback port: one start-up line saying where the UI is,
# where the data is and which auth is on; then under a load of 1,000
# ordinary requests (the UI's queries, an agent's pushes, health checks)
# nothing per request at the default level, a line for each failed one,
# and a line for every request with --log-level debug. Cleans up on exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
. "$(dirname "$0")/lib.sh"

[ -x "$SERVER" ] || fail "$SERVER is not an executable (build it first)"

# load N: N requests over kept-alive connections (curl --config, 4 URLs
# per round: a push, a merge, the top table, a health check, plus the
# page every 50th), bodies thrown away
load() {
	n=$1
	: >"$tmp/curl.cfg"
	i=0
	while [ "$i" -lt "$n" ]; do
		[ "$i" = 0 ] || echo next >>"$tmp/curl.cfg"
		case $((i % 4)) in
		0) printf 'url = "%s/ingest?name=logtest.cpu&sampleRate=100"\ndata-binary = "main;work;f%d 3"\n' "$base" "$((i % 7))" ;;
		1) printf 'url = "%s/api/v1/query?query=%%7Bservice_name%%3D%%22logtest%%22%%7D&from=now-1h"\n' "$base" ;;
		2) printf 'url = "%s/api/v1/top?query=%%7Bservice_name%%3D%%22logtest%%22%%7D&from=now-1h"\n' "$base" ;;
		3) if [ $((i % 50)) = 3 ]; then printf 'url = "%s/"\n' "$base"; else printf 'url = "%s/healthz"\n' "$base"; fi ;;
		esac >>"$tmp/curl.cfg"
		printf 'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n' >>"$tmp/curl.cfg"
		i=$((i + 1))
	done
	curl -sS --config "$tmp/curl.cfg" >"$tmp/codes" || fail "curl failed"
	[ "$(wc -l <"$tmp/codes")" = "$n" ] || fail "curl made $(wc -l <"$tmp/codes") requests, not $n"
	# the first merge may come before the first push is stored: a 404
	bad=$(grep -cv '^200$' "$tmp/codes" || true)
	[ "$bad" -le 2 ] || fail "$bad of $n requests not answered 200: $(sort "$tmp/codes" | uniq -c)"
}

# requests: the request lines of the server's log (METHOD PATH STATUS ...)
requests() { grep -cE '^(GET|POST|PUT|HEAD|DELETE) /' "$tmp/err" || true; }

# ---- default level: the start-up line, then only what went wrong ----
start_server 127.0.0.1:0
grep -q '^smolder-server: UI at http://127\.0\.0\.1:[0-9]*/ (files in /' "$tmp/err" ||
	fail "no start-up line with the UI's address: $(cat "$tmp/err")"
line=$(grep '^smolder-server: UI at' "$tmp/err")
case $line in
*"; data in $(cd "$tmp/data" && pwd);"*) ;;
*) fail "the start-up line does not say where the data is ($tmp/data): $line" ;;
esac
case $line in *"; auth off"*) ;; *) fail "the start-up line does not say auth is off: $line" ;; esac
ok "start-up line: the UI's address, the data dir and auth off, in one line"

load 1000
sleep 0.3
r=$(requests)
[ "$r" = 0 ] || fail "$r request lines for 1,000 requests that all went well: $(grep -E '^(GET|POST) ' "$tmp/err" | head -5)"
total=$(wc -l <"$tmp/err")
[ "$total" -le 2 ] || fail "$total log lines after 1,000 requests: $(head -5 "$tmp/err")"
ok "1,000 requests that went well: $total log lines, none of them per request"

code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary 'a;b' "$base/ingest?name=logtest.cpu")
[ "$code" = 400 ] || fail "a bad push got $code"
i=0
until grep -q '^POST /ingest 400 ' "$tmp/err"; do
	i=$((i + 1)); [ "$i" -le 50 ] || fail "a failed request was not logged: $(tail -3 "$tmp/err")"
	sleep 0.1
done
ok "a failed request is one line (POST /ingest 400)"
kill -TERM "$pid"
wait "$pid" || fail "server exit status $?"
pid=""

# ---- --log-level debug: a line per request ----
start_server 127.0.0.1:0 --log-level debug
load 1000
i=0
while [ "$(requests)" -lt 1000 ]; do
	i=$((i + 1)); [ "$i" -le 50 ] || fail "--log-level debug: $(requests) request lines for 1,000 requests"
	sleep 0.1
done
grep -q 'every request logged (--log-level debug)' "$tmp/err" || fail "debug not said at start"
ok "--log-level debug: $(requests) request lines for 1,000 requests"
kill -TERM "$pid"
wait "$pid" || fail "server exit status $?"
pid=""

# ---- auth on: said at start; refused requests are failures, logged ----
printf 'log-test-token-0123456789\n' >"$tmp/tok"
chmod 600 "$tmp/tok"
start_server 127.0.0.1:0 --auth-token-file "$tmp/tok"
grep -q "^smolder-server: UI at .*; auth on (the token in $tmp/tok " "$tmp/err" ||
	fail "the start-up line does not say auth is on: $(cat "$tmp/err")"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/api/v1/types")
[ "$code" = 401 ] || fail "no token: $code"
i=0
until grep -q '^GET /api/v1/types 401 ' "$tmp/err"; do
	i=$((i + 1)); [ "$i" -le 50 ] || fail "a refused request was not logged"
	sleep 0.1
done
ok "auth on is said at start; a refused request is logged"

echo "log_test: $checks checks passed"
