#!/bin/sh
# auth_test.sh - --auth-token-file and --read-token-file against the real
# smolder-server on a loopback port: every protected endpoint answers 401
# (with WWW-Authenticate and a message naming the token) without a token or
# with a wrong one, and 200 with the right one; the read token reads but
# cannot write; /healthz and the UI's files stay open; the CLI with
# --token-file; a push with a wrong token is refused, stores nothing and is
# counted in /api/v1/status; bad token files stop the server with exit 2.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
CLI=${SMOLDER_CLI:-bin/smolder}
MKBATCH=${SMOLDER_MKBATCH:-build/tests/mkbatch}
. "$(dirname "$0")/lib.sh"

for b in "$SERVER" "$CLI" "$MKBATCH"; do
	[ -x "$b" ] || fail "$b is not an executable (build it first)"
done

W=write-token-5f3c9a7e21d04b
R=read-token-8b1e60d2c7f94a
umask 077
printf '%s\n' "$W" >"$tmp/write"
printf '  %s  \n# a comment line is ignored\n' "$R" >"$tmp/read"
printf 'short\n' >"$tmp/short"
printf '%s-wrong\n' "$W" >"$tmp/wrong"

# A token file that cannot be used stops the server before it listens.
for f in "$tmp/short" "$tmp/missing"; do
	set +e
	"$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/d0" --auth-token-file "$f" \
		>"$tmp/out0" 2>"$tmp/err0"
	rc=$?
	set -e
	[ "$rc" = 2 ] || fail "token file $f: exit $rc, want 2"
	grep -q "$f" "$tmp/err0" || fail "no message naming $f: $(cat "$tmp/err0")"
done
ok "a short or missing token file: exit 2 with a message naming it"

start_server 127.0.0.1:0 --auth-token-file "$tmp/write" --read-token-file "$tmp/read"
grep -q 'warning: token file' "$tmp/err" && fail "a 0600 token file was warned about"

# code METHOD URL [curl args...]: the HTTP status; body to $tmp/body,
# headers to $tmp/headers
code() {
	m=$1
	u=$2
	shift 2
	if [ "$m" = HEAD ]; then
		curl -sS -I -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 20 "$@" \
			"$u" || echo 000
	else
		curl -sS -X "$m" -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --max-time 20 \
			"$@" "$u" || echo 000
	fi
}
json() {
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$tmp/body" "$1"
}

T0=1767225600000000000
"$MKBATCH" --seed 1 "$tmp/b1" >/dev/null
"$MKBATCH" --seed 2 --start-ns $((T0 + 10000000000)) "$tmp/b2" >/dev/null
printf 'not an ELF file' >"$tmp/elf"
BID=0123456789abcdef0123456789abcdef01234567
FROM=from=2026-01-01T00:00:00Z\&to=2026-01-02T00:00:00Z

# data for the queries to answer 200 (a selector that selects no series
# is a 404)
c=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $W" \
	-H 'Content-Type: application/x-smolder-batch' --data-binary @"$tmp/b1" "$base/api/v1/ingest")
[ "$c" = 200 ] || fail "ingest of the first batch: $c"

# Table: method, path, what it needs (read|write), curl args for a body.
# A body that is not a valid request is fine: a 401 comes before it is
# looked at, and with the right token any answer but 401 shows the token
# was taken (200 is checked where the request is valid).
cat >"$tmp/table" <<EOT
GET /api/v1/query?query=%7B%7D&$FROM read
GET /api/v1/diff?base=%7B%7D&compare=%7B%7D&$FROM read
GET /api/v1/top?query=%7B%7D&$FROM read
GET /api/v1/range?query=%7B%7D&$FROM read
GET /api/v1/types?$FROM read
GET /api/v1/labels?$FROM read
GET /api/v1/labels/comm/values?$FROM read
GET /api/v1/status read
POST /api/v1/ingest write --data-binary @$tmp/b1
POST /api/v1/ingest/pprof write --data-binary @$tmp/elf
HEAD /api/v1/debuginfo/$BID write
PUT /api/v1/debuginfo/$BID write --data-binary @$tmp/elf
EOT
n=0
while read -r m p need args; do
	# shellcheck disable=SC2086 # args are curl words
	c=$(code "$m" "$base$p" $args)
	[ "$c" = 401 ] || fail "$m $p without a token: $c"
	grep -qi '^WWW-Authenticate: Bearer' "$tmp/headers" || fail "$m $p: no WWW-Authenticate"
	if [ "$m" != HEAD ]; then
		grep -q "needs the $need token" "$tmp/body" || fail "$m $p: message $(cat "$tmp/body")"
	fi
	# shellcheck disable=SC2086
	c=$(code "$m" "$base$p" -H "Authorization: Bearer ${W}x" $args)
	[ "$c" = 401 ] || fail "$m $p with a wrong token: $c"
	# shellcheck disable=SC2086
	c=$(code "$m" "$base$p" -H "Authorization: Basic $W" $args)
	[ "$c" = 401 ] || fail "$m $p with the token under Basic: $c"
	# shellcheck disable=SC2086
	c=$(code "$m" "$base$p" -H "Authorization: Bearer $R" $args)
	if [ "$need" = write ]; then
		[ "$c" = 401 ] || fail "$m $p with the read token: $c, want 401"
	else
		[ "$c" = 200 ] || fail "$m $p with the read token: $c $(cat "$tmp/body")"
	fi
	# shellcheck disable=SC2086
	c=$(code "$m" "$base$p" -H "Authorization: Bearer $W" $args)
	[ "$c" != 401 ] && [ "$c" != 000 ] && [ "$c" -lt 500 ] ||
		fail "$m $p with the write token: $c $(cat "$tmp/body")"
	case "$m $p" in
	"GET "* | "POST /api/v1/ingest "*) [ "$c" = 200 ] || fail "$m $p with the write token: $c" ;;
	esac
	n=$((n + 1))
done <"$tmp/table"
[ "$n" = 12 ] || fail "the table ran $n rows"
ok "$n endpoints: 401 without, with a wrong or a Basic token; the read token reads only; the write token does both"

# Open: the health check and the UI's files, so the page can ask.
for p in /healthz /; do
	c=$(code GET "$base$p")
	[ "$c" = 200 ] || fail "GET $p without a token: $c"
done
c=$(code GET "$base/ui/api.js")
[ "$c" = 200 ] || [ "$c" = 404 ] || fail "GET /ui/api.js without a token: $c"
ok "/healthz and the UI's files need no token"

# A push with a wrong token is refused, stores nothing, and is counted.
c=$(code GET "$base/api/v1/query?query=%7B%7D&$FROM" -H "Authorization: Bearer $R")
before=$(json 'j["total"]')
c=$(code POST "$base/api/v1/ingest" -H "Authorization: Bearer ${W}x" \
	-H 'Content-Type: application/x-smolder-batch' --data-binary @"$tmp/b2")
[ "$c" = 401 ] || fail "push with a wrong token: $c"
c=$(code GET "$base/api/v1/query?query=%7B%7D&$FROM" -H "Authorization: Bearer $R")
[ "$(json 'j["total"]')" = "$before" ] || fail "a refused push changed the total"
c=$(code GET "$base/api/v1/status" -H "Authorization: Bearer $R")
[ "$(json 'j["auth"]["enabled"]')" = True ] || fail "status: $(cat "$tmp/body")"
rw=$(json 'j["auth"]["rejected_writes"]')
rr=$(json 'j["auth"]["rejected_reads"]')
# per write row: none, wrong, Basic, read token = 4; 4 write rows, plus this push
[ "$rw" = 17 ] || fail "rejected_writes $rw, want 17"
[ "$rr" = 24 ] || fail "rejected_reads $rr, want 24"
ok "a push with a wrong token stores nothing and is counted (writes $rw, reads $rr)"

# The CLI: refused without a token (exit 1, the server's message), fine with either.
set +e
"$CLI" --server "$base" types --from 2026-01-01T00:00:00Z --to 2026-01-02T00:00:00Z \
	>"$tmp/cli.out" 2>"$tmp/cli.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "CLI without a token: exit $rc"
grep -q 'needs the read token' "$tmp/cli.err" || fail "CLI message: $(cat "$tmp/cli.err")"
for f in "$tmp/read" "$tmp/write"; do
	"$CLI" --server "$base" --token-file "$f" types --from 2026-01-01T00:00:00Z \
		--to 2026-01-02T00:00:00Z >"$tmp/cli.out" 2>"$tmp/cli.err" ||
		fail "CLI with $f: $(cat "$tmp/cli.err")"
	grep -q cpu "$tmp/cli.out" || fail "CLI types with $f: $(cat "$tmp/cli.out")"
done
set +e
SMOLDER_TOKEN_FILE="$tmp/wrong" "$CLI" --server "$base" types >/dev/null 2>"$tmp/cli.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "CLI with a wrong token from SMOLDER_TOKEN_FILE: exit $rc"
ok "the CLI: 401 without or with a wrong token, answers with --token-file"

# A token file others may read: a warning, not a refusal.
chmod 644 "$tmp/read"
"$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/d2" --auth-token-file "$tmp/write" \
	--read-token-file "$tmp/read" >"$tmp/out2" 2>"$tmp/err2" &
pid2=$!
i=0
while ! grep -q '^smolder-server listening' "$tmp/out2"; do
	kill -0 "$pid2" 2>/dev/null || fail "server with a 0644 token file exited"
	i=$((i + 1))
	[ "$i" -le 200 ] || fail "second server did not listen"
	sleep 0.1
done
kill "$pid2"
wait "$pid2" || true
grep -q "warning: token file $tmp/read is readable by group or others" "$tmp/err2" ||
	fail "no warning for a 0644 token file: $(cat "$tmp/err2")"
ok "a group/world-readable token file is warned about"

kill "$pid"
wait "$pid" || fail "server exited with $? on SIGTERM"
pid=""
echo "auth_test: $checks checks passed"
