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

checks=0
ok() {
	checks=$((checks + 1))
	echo "ok $checks - $*"
}
