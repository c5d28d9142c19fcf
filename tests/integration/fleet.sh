# fleet.sh - sourced by the integration scripts that query a real server:
# a temporary dir, cleanup on any exit, fail/ok reporting, the storage
# benchmark's smoke fleet (160423 samples, 2 hosts, 2026-01-01T00:00Z ..
# 01:15Z) as data, and smolder-server on a loopback port over it. The
# server listens on 127.0.0.1:0 and $base is read back from its
# "listening on" line, so no other process can take the port.
# Uses SMOLDER_SERVER and SMOLDER_BENCH; sets tmp, pid, base (lib.sh).

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
BENCH=${SMOLDER_BENCH:-build/bench/bench_storage}
. "$(dirname "$0")/lib.sh"

"$BENCH" --smoke --dir "$tmp/data" >"$tmp/bench.out" 2>"$tmp/bench.err" ||
	fail "bench_storage --smoke: $(tail -3 "$tmp/bench.err")"
grep -q "merge total 160423 samples" "$tmp/bench.err" || fail "unexpected fleet"

# --retention 0: the fleet is dated 2026-01-01, which the default 7-day
# retention would delete at the first maintenance pass, 30 s in
"$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/data" --retention 0 >"$tmp/out" 2>"$tmp/err" &
pid=$!
i=0
while ! grep -q '^smolder-server listening on http://' "$tmp/out"; do
	kill -0 "$pid" 2>/dev/null || fail "server exited before listening"
	i=$((i + 1))
	[ "$i" -le 200 ] || fail "server did not listen within 20 s"
	sleep 0.1
done
base=$(sed -n 's/^smolder-server listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$tmp/out")
