# lib.sh - sourced by every integration script: a temporary dir ($tmp), a
# server pid ($pid) killed and the dir removed on any exit, fail and ok.

tmp=$(mktemp -d /tmp/smolder-it.XXXXXX)
pid=""

cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# fail MESSAGE: the tail of whatever the server and client wrote to stderr
fail() {
	echo "FAIL: $*" >&2
	for f in "$tmp/cli.err" "$tmp/err" "$tmp/agent.err"; do
		if [ -s "$f" ]; then
			echo "--- $f (last 40 lines) ---" >&2
			tail -40 "$f" >&2
		fi
	done
	exit 1
}

# skip NAME REASON...: a loud skip. Exit status 77 (automake's), which
# the Makefile counts as skipped, never as passed; the reason also goes to
# $SMOLDER_SKIP_FILE for make test's summary.
skip() {
	n=$1
	shift
	echo "################################################################"
	echo "SKIP $n: $*"
	echo "################################################################"
	[ -z "${SMOLDER_SKIP_FILE:-}" ] || echo "$n: $*" >>"$SMOLDER_SKIP_FILE"
	exit 77
}

checks=0
ok() {
	checks=$((checks + 1))
	echo "ok $checks - $*"
}

# start_server LISTEN [FLAGS...]: $SERVER with its data in $tmp/data, its
# stdout in $tmp/out and stderr in $tmp/err (both started afresh); sets
# $pid and $base once it listens
start_server() {
	l=$1
	shift
	: >"$tmp/out"
	# --retention 0 first (a caller's own --retention comes later and wins):
	# the scripts' data is dated 2026-01-01, which the default 7-day
	# retention deletes at the first maintenance pass, 30 s in
	"$SERVER" --listen "$l" --data-dir "$tmp/data" --retention 0 "$@" >"$tmp/out" 2>"$tmp/err" &
	pid=$!
	i=0
	while ! grep -q '^smolder-server listening on http://' "$tmp/out"; do
		kill -0 "$pid" 2>/dev/null || fail "server exited before listening"
		i=$((i + 1))
		[ "$i" -le 200 ] || fail "server did not listen within 20 s"
		sleep 0.1
	done
	base=$(sed -n 's/^smolder-server listening on \(http:\/\/127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$tmp/out")
}
