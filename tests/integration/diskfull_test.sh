#!/bin/sh
# diskfull_test.sh - the real server on a data directory that fills up: a
# 4 MiB tmpfs mounted for the test. Batches are pushed until the disk is
# full: the push that does not fit is answered 507 (not 500), the server
# stays up, a refused batch leaves none of its series behind (none after a
# restart either), the maintenance pass that fails every second says so
# once, not every second, and once there is room again (the tmpfs grown)
# ingest and maintenance work again. Every batch answered 200 is stored.
# Needs root to mount; anywhere else it says loudly that it skipped.
# Binaries from $SMOLDER_SERVER and $SMOLDER_MKBATCH.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
MKBATCH=${SMOLDER_MKBATCH:-build/tests/mkbatch}
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3.11

mnt="$tmp/data"
mkdir -p "$mnt"
if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=4m smolder-diskfull "$mnt" 2>"$tmp/mount.err"; then
	skip diskfull_test.sh "mounting a small tmpfs needs root (uid $(id -u)): $(cat "$tmp/mount.err" 2>/dev/null)"
fi
unmount() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	pid=""
	umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	cleanup
}
trap unmount EXIT

series() { curl -sf "$base/api/v1/status" | $PY -c 'import json,sys; print(json.load(sys.stdin)["storage"]["series"])'; }
post() { curl -s -o "$tmp/resp" -w '%{http_code}' --data-binary "@$1" \
	-H 'Content-Type: application/x-smolder-batch' "$base/api/v1/ingest"; }

start_server 127.0.0.1:0 --maintenance-interval 1s --retention 0
port=${base##*:}
acked=0
full=""
i=1
while [ $i -le 400 ]; do
	# a new agent (new series) each time, rows in a closed partition, so
	# every maintenance pass cuts
	"$MKBATCH" --seed $i --processes 20 --stacks 400 --rows 20000 "$tmp/b.bin" >/dev/null
	before=$(series)
	c=$(post "$tmp/b.bin")
	if [ "$c" = 200 ]; then
		acked=$((acked + 1))
		echo $i >>"$tmp/acked"
	elif [ "$c" = 507 ]; then
		full=$i
		break
	else
		fail "push $i answered $c: $(cat "$tmp/resp")"
	fi
	i=$((i + 1))
done
[ -n "$full" ] || fail "400 batches fit in 4 MiB: the disk never filled"
grep -q "disk is full" "$tmp/resp" || fail "the 507 does not say why: $(cat "$tmp/resp")"
[ "$(series)" = "$before" ] || fail "the refused batch added series: $before before, $(series) after"
ok "push $full answered 507 once the disk was full ($acked acknowledged before); its series were not registered"

# maintenance fails every second now (no room for blocks): said once
sleep 6
curl -sf "$base/healthz" >/dev/null || fail "the server is not answering with a full disk"
n=$(grep -c 'storage cut failed\|storage cut still fails' "$tmp/err" || true)
[ "$n" -le 2 ] || fail "the failing cut was logged $n times in 6 s"
ok "a full disk kept the server up; the failing cut was logged $n time(s) in 6 s, not every second"

# a restart on the full disk either works or fails saying which file
kill -TERM "$pid"
wait "$pid" 2>/dev/null || true
pid=""
start_or_fail() {
	: >"$tmp/out"
	"$SERVER" --listen 127.0.0.1:0 --data-dir "$mnt" >"$tmp/out" 2>"$tmp/err2" &
	pid=$!
	i=0
	while ! grep -q '^smolder-server listening' "$tmp/out"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null || true
			pid=""
			grep -q "$mnt/.*disk is full\|$mnt/.*No space left" "$tmp/err2" ||
				fail "a start on a full disk does not name the file: $(cat "$tmp/err2")"
			echo "refused: $(tail -1 "$tmp/err2" | cut -c1-150)"
			return
		fi
		i=$((i + 1)); [ "$i" -le 200 ] || fail "server neither listened nor exited in 20 s"
		sleep 0.1
	done
	kill -TERM "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
	echo "started"
}
how=$(start_or_fail)
ok "a start on the full disk: $how"

# room again: the refused batch's series are still not there after the
# restart, the same batch goes in, and maintenance recovers
mount -o remount,size=64m "$mnt"
start_server "127.0.0.1:$port" --maintenance-interval 1s --retention 0
[ "$(series)" = "$before" ] || fail "after a restart: $before series expected, $(series) found"
ok "after a restart the store holds the $before series of the acknowledged batches only"
c=$(post "$tmp/b.bin")
[ "$c" = 200 ] || fail "with room again the push answered $c: $(cat "$tmp/resp")"
echo "$full" >>"$tmp/acked"
# every acknowledged batch is stored: each agent's process count
$PY - "$base" "$tmp/acked" <<'PY' || fail "acknowledged batches missing"
import json, sys, urllib.parse, urllib.request
base, acked = sys.argv[1], [int(x) for x in open(sys.argv[2])]
q = urllib.parse.urlencode({"from": "1767225000", "to": "1767229200"})
with urllib.request.urlopen(base + "/api/v1/labels/hostname/values?" + q) as r:
    hosts = set(json.load(r))
missing = [s for s in acked if "host-%d" % s not in hosts]
if missing:
    sys.exit("batches %s acknowledged but not stored" % missing[:10])
PY
ok "with room again ingest works, and all $((acked + 1)) acknowledged batches are stored"
