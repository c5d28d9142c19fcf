#!/bin/sh
# debuginfod_test.sh - server/debuginfod.c against Debian's real debuginfod
# server on a loopback port, indexing a directory of files built here:
# a binary with DWARF is fetched and kept as <hex>; a separate debug file
# lands in <hex>.debug beside a stripped binary already in the store; a
# stripped executable comes from the executable fallback; an unknown
# build ID is ENOENT, asked once an hour (the second ask costs the server
# nothing); libdebuginfod's cache stays under the data dir. Then
# smolder-server's --debuginfod-url flag. Uses tests/tools/dbgd_fetch
# ($SMOLDER_DBGD_FETCH). Kills debuginfod and removes everything on any
# exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
FETCH=${SMOLDER_DBGD_FETCH:-build/tests/dbgd_fetch}
MKBATCH=${SMOLDER_MKBATCH:-build/tests/mkbatch}
. "$(dirname "$0")/lib.sh"

dpid=""
stop_debuginfod() {
	if [ -n "$dpid" ] && kill -0 "$dpid" 2>/dev/null; then
		kill -KILL "$dpid" 2>/dev/null || true
		wait "$dpid" 2>/dev/null || true
	fi
	dpid=""
}
trap 'stop_debuginfod; cleanup' EXIT

command -v debuginfod >/dev/null || fail "debuginfod is not installed (make deps)"
[ -x "$FETCH" ] || fail "$FETCH is not an executable (build it first)"

# program N, in $tmp/pN.{full,stripped,debug}; its build ID in $bid
build() {
	printf 'int g%s(int x) { return x + %s; }\nint main(int c, char **v) { (void)v; return g%s(c); }\n' \
		"$1" "$1" "$1" >"$tmp/p$1.c"
	gcc -g -O1 -Wl,--build-id=sha1 -o "$tmp/p$1.full" "$tmp/p$1.c" || fail "gcc"
	strip -o "$tmp/p$1.stripped" "$tmp/p$1.full" || fail "strip"
	objcopy --only-keep-debug "$tmp/p$1.full" "$tmp/p$1.debug" || fail "objcopy"
	bid=$(LC_ALL=C readelf -n "$tmp/p$1.full" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p')
	[ ${#bid} -eq 40 ] || fail "readelf build ID '$bid'"
}

mkdir -p "$tmp/serve" "$tmp/data/debuginfo"
build 1; b1=$bid; cp "$tmp/p1.full" "$tmp/serve/"
build 2; b2=$bid; cp "$tmp/p2.debug" "$tmp/serve/"
build 3; b3=$bid; cp "$tmp/p3.stripped" "$tmp/serve/"
# p4 only debuginfod has: the server's background symbolizer must fetch it
build 4; b4=$bid; cp "$tmp/p4.full" "$tmp/serve/"
# the store has p2's stripped binary already, as an agent would have sent
cp "$tmp/p2.stripped" "$tmp/data/debuginfo/$b2"

# a free port: bind one, note it, let it go (debuginfod has no port 0)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# -F: index ELF files in the directory; -d: its database here, not in $HOME
debuginfod -p "$port" -d "$tmp/dbgd.sqlite" -F -t 0 -g 0 "$tmp/serve" \
	>"$tmp/dbgd.out" 2>"$tmp/dbgd.err" &
dpid=$!
url="http://127.0.0.1:$port"
i=0
# ready when it answers /metrics and has indexed all three files
until curl -sf --max-time 2 "$url/metrics" >/dev/null 2>&1 &&
	curl -sf --max-time 2 -o /dev/null "$url/buildid/$b1/debuginfo" &&
	curl -sf --max-time 2 -o /dev/null "$url/buildid/$b2/debuginfo" &&
	curl -sf --max-time 2 -o /dev/null "$url/buildid/$b3/executable" &&
	curl -sf --max-time 2 -o /dev/null "$url/buildid/$b4/debuginfo"; do
	kill -0 "$dpid" 2>/dev/null || fail "debuginfod exited: $(tail -5 "$tmp/dbgd.err")"
	i=$((i + 1))
	[ "$i" -le 300 ] || fail "debuginfod did not index $tmp/serve within 30 s"
	sleep 0.1
done
ok "debuginfod on 127.0.0.1:$port serves the test files"

# build-ID requests debuginfod has had so far
requests() {
	curl -sf --max-time 5 "$url/metrics" |
		awk '/^http_requests_total\{type="(debuginfo|executable)"\}/ { s += $NF }
			END { print s + 0 }'
}

unknown=0123456789abcdef0123456789abcdef01234567
HOME=$tmp/home "$FETCH" "http://127.0.0.1:1,$url" "$tmp/data" "$b1" "$b2" "$b3" \
	"$unknown" >"$tmp/fetch.out" 2>"$tmp/fetch.err" || fail "dbgd_fetch: $(cat "$tmp/fetch.err")"
[ "$(cat "$tmp/fetch.out")" = "$b1 ok
$b2 ok
$b3 ok
$unknown ENOENT" ] || fail "fetches: $(cat "$tmp/fetch.out") $(cat "$tmp/fetch.err")"
d=$tmp/data/debuginfo
cmp -s "$tmp/p1.full" "$d/$b1" && [ ! -e "$d/$b1.debug" ] || fail "binary with DWARF not kept as <hex>"
cmp -s "$tmp/p2.debug" "$d/$b2.debug" && cmp -s "$tmp/p2.stripped" "$d/$b2" ||
	fail "debug file not kept as <hex>.debug"
cmp -s "$tmp/p3.stripped" "$d/$b3" && [ ! -e "$d/$b3.debug" ] || fail "executable fallback"
ok "fetched: DWARF binary as <hex>, debug file as <hex>.debug, executable fallback, unknown ENOENT"

[ -d "$d/.debuginfod-cache" ] || fail "no cache under the data dir"
[ ! -e "$tmp/home" ] || fail "libdebuginfod wrote into \$HOME"
[ -z "$(find "$d/.debuginfod-cache" -type f -path "*/$b1/*")" ] || fail "cached copy kept"
[ -z "$(ls -A "$d" | grep tmp || true)" ] || fail "temporary files left"
ok "libdebuginfod's cache under DATA_DIR/debuginfo, emptied of what was kept"

# the same unknown ID twice in one process: the second is answered from
# memory, so debuginfod sees one round for it (the debuginfo ask and the
# executable ask), then one ask for b1: 3 requests
# (a new data dir: libdebuginfod's own cache of misses must not answer)
mkdir -p "$tmp/data3/debuginfo"
r0=$(requests)
HOME=$tmp/home "$FETCH" "$url" "$tmp/data3" "$unknown" "$unknown" "$b1" \
	>"$tmp/fetch.out" 2>"$tmp/fetch.err" || fail "dbgd_fetch: $(cat "$tmp/fetch.err")"
r1=$(requests)
[ "$(cat "$tmp/fetch.out")" = "$unknown ENOENT
$unknown ENOENT
$b1 ok" ] || fail "repeat: $(cat "$tmp/fetch.out")"
[ $((r1 - r0)) -eq 3 ] || fail "debuginfod had $((r1 - r0)) requests, want 3"
ok "an unknown build ID is asked once an hour ($((r1 - r0)) requests for 3 fetches)"

# no server listening: an error, not ENOENT
mkdir -p "$tmp/data4/debuginfo"
HOME=$tmp/home "$FETCH" "http://127.0.0.1:1" "$tmp/data4" "$unknown" \
	>"$tmp/fetch.out" 2>&1 || fail "dbgd_fetch"
grep -q "^$unknown error 111: Connection refused" "$tmp/fetch.out" ||
	fail "no server: $(cat "$tmp/fetch.out")"
rc=0
"$FETCH" "ftp://x" "$tmp/data" "$unknown" >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a non-http URL was accepted"
ok "unreachable servers and non-http URLs are errors"

# smolder-server takes the flag (off by default) and refuses a bad URL
rc=0
"$SERVER" --data-dir "$tmp/data2" --debuginfod-url ftp://x >/dev/null 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q 'debuginfod-url' "$tmp/err" || fail "--debuginfod-url ftp://x: $rc"
"$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/data2" --debuginfod-url "$url" \
	>"$tmp/out" 2>"$tmp/err" &
pid=$!
i=0
while ! grep -q '^smolder-server listening on http://' "$tmp/out"; do
	kill -0 "$pid" 2>/dev/null || fail "server with --debuginfod-url exited"
	i=$((i + 1))
	[ "$i" -le 200 ] || fail "server did not listen within 20 s"
	sleep 0.1
done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with $rc"
! grep -q 'AddressSanitizer\|LeakSanitizer\|runtime error' "$tmp/err" ||
	fail "sanitizer report in the server's stderr"
ok "smolder-server --debuginfod-url: a bad URL is exit 2, a good one starts"

# End to end: a batch whose leaf frames lie in g4 of p4, which only
# debuginfod has; the server's background pass fetches p4 and names them.
g4=$(nm "$tmp/p4.full" | awk '$3 == "g4" {print $1}')
off=$(readelf -lW "$tmp/p4.full" | python3 -c '
import sys
a = int(sys.argv[1], 16)
for l in sys.stdin:
    f = l.split()
    if f and f[0] == "LOAD":
        o, v, s = int(f[1], 16), int(f[2], 16), int(f[4], 16)
        if v <= a < v + s:
            print("%x" % (a - v + o))' "$g4")
[ -n "$off" ] || fail "no file offset for g4 ($g4)"
"$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/data3" --debuginfod-url "$url" \
	--maintenance-interval 1s >"$tmp/out" 2>"$tmp/err" &
pid=$!
i=0
while ! grep -q '^smolder-server listening on http://' "$tmp/out"; do
	kill -0 "$pid" 2>/dev/null || fail "server with --debuginfod-url exited"
	i=$((i + 1))
	[ "$i" -le 200 ] || fail "server did not listen within 20 s"
	sleep 0.1
done
base=$(sed -n 's/^smolder-server listening on //p' "$tmp/out")
now=$(($(date +%s) * 1000000000))
"$MKBATCH" --app-build-id "$b4" --app-offset "$off" --start-ns "$now" "$tmp/b4.bin" >/dev/null
curl -sf -o /dev/null -H 'Content-Type: application/x-smolder-batch' --data-binary @"$tmp/b4.bin" \
	"$base/api/v1/ingest" || fail "ingest of the p4 batch"
i=0
until curl -sf -G "$base/api/v1/query" --data-urlencode 'query={comm="proc0"}' \
	--data-urlencode 'from=now-1h' --data-urlencode 'format=folded' | grep -q ';g4 '; do
	i=$((i + 1))
	[ "$i" -le 150 ] || fail "g4 not named within 15 s: $(curl -s -G "$base/api/v1/query" \
		--data-urlencode 'query={comm="proc0"}' --data-urlencode 'from=now-1h' \
		--data-urlencode 'format=folded' | head -3)"
	sleep 0.1
done
[ -s "$tmp/data3/debuginfo/$b4" ] || fail "p4 not kept in the store"
ok "the background symbolizer fetched p4 from debuginfod and named g4 in queries"

# An agent's HEAD for a build ID the store lacks: the server asks
# debuginfod, and when it has the file, says so: the agent uploads nothing.
head() { curl -s -o /dev/null -D "$tmp/h" -w '%{http_code}' -I "$base/api/v1/debuginfo/$1"; }
[ ! -e "$tmp/data3/debuginfo/$b3" ] || fail "p3 in the store already"
c=$(head "$b3")
[ "$c" = 200 ] && grep -qi '^X-Smolder-Debuginfo-Source: debuginfod' "$tmp/h" ||
	fail "HEAD of p3, which debuginfod has: $c $(cat "$tmp/h")"
[ -s "$tmp/data3/debuginfo/$b3" ] || fail "p3 not kept after the HEAD"
c=$(head "$b3")
[ "$c" = 200 ] && ! grep -qi '^X-Smolder-Debuginfo-Source' "$tmp/h" || fail "second HEAD of p3: $c"
c=$(head "$unknown")
[ "$c" = 404 ] || fail "HEAD of an unknown build ID: $c"
curl -sf "$base/api/v1/status" >"$tmp/status" || fail "status"
python3 - "$tmp/status" <<'PY' || fail "status debuginfo: $(cat "$tmp/status")"
import json, sys
d = json.load(open(sys.argv[1]))["debuginfo"]
assert d["skipped_debuginfod"] == 1 and d["skipped_on_server"] == 1 and d["missing"] == 1, d
PY
curl -sf "$base/metrics" >"$tmp/metrics" || fail "metrics"
grep -q '^smolder_debuginfo_requests_total{outcome="debuginfod"} 1$' "$tmp/metrics" &&
	grep -q '^smolder_debuginfo_requests_total{outcome="missing"} 1$' "$tmp/metrics" ||
	fail "metrics: $(grep smolder_debuginfo "$tmp/metrics")"
ok "a HEAD for what debuginfod has: fetched, 200 with X-Smolder-Debuginfo-Source: debuginfod; counted in /api/v1/status and /metrics"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with $rc"
