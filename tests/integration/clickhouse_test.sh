#!/bin/sh
# clickhouse_test.sh - ClickHouse as the store, end to end: two Debian
# clickhouse-server processes on loopback ports are the two shards of one
# cluster (remote_servers, no ZooKeeper), two smolder-servers in front of
# them (A talks to shard 1's node first, B to shard 2's) and an embedded
# one beside them. Checks that
#   - the same native batches (CPython frames, JIT frames with a language
#     tag, an off-CPU profile type, sums past INT64_MAX among them) and
#     pprof profiles give byte-identical answers for merge (JSON, folded,
#     pprof), diff, top, range, labels, label values and types from all
#     three servers, read from roll-ups and from raw rows (raw=1) alike;
#     CPython frames with their file, line and language, JIT frames with
#     their language, off-CPU nanoseconds, saturated sums said so;
#   - the cluster's roll-up table answers long ranges (ClickHouse's read
#     counts say so), also for a day whose raw rows are gone;
#   - --max-series refuses new series past the limit (422), and rows
#     dated ahead of the clock are refused (400);
#   - rows are on both shards; a batch sent again, or four times at once
#     through one server, is stored once;
#   - a debug file uploaded through A names frames in queries through B;
#   - kill -9 of A while two clients push (failing over to B and resending
#     what got no answer) loses no acknowledged batch, and stores every
#     other one whole or not at all;
#   - a shard killed during ingest gives 503s, not acks;
#   - a database holding another schema version, a cluster shard without a
#     URL and malformed URLs are refused, naming them;
#   - --retention drops old day partitions on both shards;
#   - the real agent's backlog across a shard's outage arrives once it is
#     back;
#   - the servers stop cleanly with no sanitizer report.
# Skips (exit 77) without clickhouse-server; the agent's part without root
# and BTF. Everything it started is killed on any exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
MKBATCH=${SMOLDER_MKBATCH:-build/tests/mkbatch}
PUSHER=${SMOLDER_PUSHER:-build/tests/pusher}
AGENT=${SMOLDER_AGENT:-bin/smolder-agent}
FP_BUSY=${SMOLDER_FP_BUSY:-build/tests/fp_busy}
. "$(dirname "$0")/lib.sh"
GO_PPROF=$(dirname "$0")/../data/go-cpu.pb.gz

command -v clickhouse-server >/dev/null ||
	skip clickhouse_test "clickhouse-server is not installed (make deps installs Debian's)"
for b in "$SERVER" "$MKBATCH" "$PUSHER"; do
	[ -x "$b" ] || fail "$b is not an executable (build it first)"
done

chpid1=""; chpid2=""; pa=""; pb=""; pe=""; pr=""; pl=""; ppush=""; apid=""; busy=""
stop_all() {
	touch "$tmp/stop" 2>/dev/null || true
	for p in $apid $busy $ppush $pa $pb $pe $pr $pl $chpid1 $chpid2; do
		kill -KILL "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	cleanup
}
trap stop_all EXIT

. "$(dirname "$0")/ch_lib.sh"
ch_start 1
ch_start 2
ok "two ClickHouse $(chq 1 'SELECT version()') nodes on ports $http1 and $http2, one cluster"

ch1=http://127.0.0.1:$http1/smolder
ch2=http://127.0.0.1:$http2/smolder
# srv NAME FLAGS...: a server, its pid in p<NAME>, its URL in u<NAME>
srv() {
	n=$1
	shift
	: >"$tmp/$n.out"
	# roll-ups kept for good: the test's rows are months old
	"$SERVER" --listen 127.0.0.1:0 --retention 0 --retention-rollup 0 --maintenance-interval 1s "$@" \
		>"$tmp/$n.out" 2>"$tmp/$n.err" &
	eval "p$n=\$!"
	i=0
	while ! grep -q '^smolder-server listening on http://' "$tmp/$n.out"; do
		eval "kill -0 \$p$n" 2>/dev/null || fail "server $n exited: $(tail -3 "$tmp/$n.err")"
		i=$((i + 1))
		[ "$i" -le 300 ] || fail "server $n did not listen within 30 s"
		sleep 0.1
	done
	eval "u$n=\$(sed -n 's/^smolder-server listening on //p' \"\$tmp/\$n.out\")"
}
srv e --data-dir "$tmp/emb"
srv a --clickhouse "$ch1,$ch2" --clickhouse-cluster smolder
# B reads its URLs from a file, as an operator keeps a password
printf '# the shards\n%s\n%s\n' "$ch2" "$ch1" >"$tmp/urls"
srv b --clickhouse-file "$tmp/urls" --clickhouse-cluster smolder --data-dir "$tmp/bcache"
for t in samples samples_1h series stacks locations symbols debuginfo; do
	[ "$(chq 1 "EXISTS TABLE smolder.${t}_local")" = 1 ] &&
		[ "$(chq 2 "EXISTS TABLE smolder.${t}_local")" = 1 ] &&
		[ "$(chq 2 "EXISTS TABLE smolder.$t")" = 1 ] || fail "table $t missing on a node"
done
ok "servers A and B created each shard's tables and the Distributed ones"

# ---- the same data into the embedded store and the cluster ----
push() {  # push URL FILE [PATH]: the status
	curl -sS -o "$tmp/push.body" -w '%{http_code}' --max-time 30 \
		-H 'Content-Type: application/x-smolder-batch' --data-binary @"$2" "$1${3:-/api/v1/ingest}"
}
for s in 1 2 3 4 5 6; do
	"$MKBATCH" --seed "$s" --agent "agent$s" --processes 4 --stacks 30 --rows 300 \
		--start-ns $((1767225600000000000 + s * 60000000000)) "$tmp/b$s" >/dev/null
	[ "$(push "$ue" "$tmp/b$s")" = 200 ] || fail "embedded ingest: $(cat "$tmp/push.body")"
	# half through A, half through B: both write the same tables
	if [ $((s % 2)) = 1 ]; then u=$ua; else u=$ub; fi
	[ "$(push "$u" "$tmp/b$s")" = 200 ] || fail "ClickHouse ingest: $(cat "$tmp/push.body")"
done
# CPython's named frames: function, file, line and language stored and read
"$MKBATCH" --seed 7 --agent pyhost --python --service pysvc \
	--start-ns $((1767225600000000000 + 7 * 60000000000)) "$tmp/b7" >/dev/null
for u in "$ue" "$ub"; do
	[ "$(push "$u" "$tmp/b7")" = 200 ] || fail "python batch: $(cat "$tmp/push.body")"
done
for u in "$ue" "$ua"; do
	c=$(curl -sS -o "$tmp/push.body" -w '%{http_code}' --max-time 30 --data-binary @"$GO_PPROF" \
		"$u/api/v1/ingest/pprof?service=gosvc")
	[ "$c" = 200 ] || fail "pprof ingest: $c $(cat "$tmp/push.body")"
done
# JIT frames (a language tag without file or line), an agent's off-CPU
# type (values in nanoseconds), a day of the same stack summing past
# INT64_MAX (2025-06-01), and a day whose raw rows are dropped below
# (2026-02-01)
OFFCPU=off_cpu:time:nanoseconds:time:nanoseconds:delta
"$MKBATCH" --seed 11 --agent jithost --lang js --service jssvc \
	--start-ns $((1767225600000000000 + 11 * 60000000000)) "$tmp/b11" >/dev/null
"$MKBATCH" --seed 12 --agent offhost --type "$OFFCPU" --value 2500000 --service offsvc \
	--start-ns $((1767225600000000000 + 12 * 60000000000)) "$tmp/b12" >/dev/null
"$MKBATCH" --seed 13 --agent sathost --processes 1 --stacks 1 --rows 40000 \
	--value 281474976710655 --service satsvc --start-ns 1748736000000000000 "$tmp/b13" >/dev/null
"$MKBATCH" --seed 14 --agent drophost --service dropsvc --start-ns 1769904000000000000 \
	"$tmp/b14" >/dev/null
for b in b11 b12 b13 b14; do
	for u in "$ue" "$ua"; do
		[ "$(push "$u" "$tmp/$b")" = 200 ] || fail "$b: $(cat "$tmp/push.body")"
	done
done
ok "11 native batches (CPython frames, JIT frames, an off-CPU type, sums past INT64_MAX) and a Go pprof profile into the embedded store and the cluster"

r1=$(chq 1 'SELECT count() FROM smolder.samples_local')
r2=$(chq 2 'SELECT count() FROM smolder.samples_local')
[ "$r1" -gt 0 ] && [ "$r2" -gt 0 ] || fail "rows per shard: $r1 and $r2"
[ "$(chq 1 'SELECT count() FROM smolder.stacks_local')" -gt 0 ] &&
	[ "$(chq 2 'SELECT count() FROM smolder.stacks_local')" -gt 0 ] || fail "stacks on one shard only"
ok "rows on both shards ($r1 and $r2), stacks beside them"

# every query from the three servers, byte for byte; each also with
# raw=1 (raw rows only: the cluster's roll-up tables left out)
R='from=2026-01-01T00:00:00Z&to=2026-12-01T00:00:00Z'
RSAT='from=2025-06-01T00:00:00Z&to=2025-06-02T00:00:00Z'
metric() {  # metric URL NAME LABELS: a sample's value in /metrics
	curl -sS --max-time 30 "$1/metrics" | awk -v k="$2$3" '$1 == k { print $2 }'
}
reads_1h=$(metric "$ua" smolder_clickhouse_reads_total '{level="1h"}')
n=0
while read -r q; do
	for raw in "" "&raw=1"; do
		n=$((n + 1))
		case $q in *satsvc*) r=$RSAT ;; *) r=$R ;; esac
		for s in e a b; do
			eval "u=\$u$s"
			c=$(curl -sS -o "$tmp/q.$s" -w '%{http_code}' --max-time 60 "$u/api/v1/$q&$r$raw")
			[ "$c" = 200 ] || fail "$s: $q$raw: $c $(head -c 300 "$tmp/q.$s")"
		done
		[ -s "$tmp/q.e" ] && cmp -s "$tmp/q.e" "$tmp/q.a" && cmp -s "$tmp/q.e" "$tmp/q.b" ||
			fail "answers differ for $q$raw: embedded $(head -c 200 "$tmp/q.e"), A $(head -c 200 "$tmp/q.a"), B $(head -c 200 "$tmp/q.b")"
	done
done <<'EOF'
query?query=%7B%7D
query?query=%7B%7D&format=folded
query?query=%7B%7D&format=pprof
query?query=%7Bservice%3D%22gosvc%22%7D&format=folded
query?query=%7Bservice%3D%22pysvc%22%7D
top?query=%7Bservice%3D%22pysvc%22%7D
query?query=%7Bservice%3D%22pysvc%22%7D&format=pprof
query?query=%7Bcomm%3D~%22proc.*%22%2Ccomm%21%3D%22proc1%22%7D
top?query=%7B%7D
top?query=%7Bhostname%21~%22host-%5B12%5D%22%7D
diff?base=%7Bhostname%3D%22host-1%22%7D&compare=%7Bhostname%3D%22host-2%22%7D
diff?base=%7Bhostname%3D%22host-1%22%7D&compare=%7Bhostname%3D%22host-2%22%7D&format=top
range?query=%7B%7D&step=1h&by=hostname
range?query=process_cpu%3Asamples%3Acount%3Acpu%3Ananoseconds%3Adelta%7B%7D&step=1d
labels?x=1
labels/hostname/values?x=1
labels/comm/values?query=%7Bhostname%3D%22host-3%22%7D
types?x=1
query?query=%7Bservice%3D%22jssvc%22%7D
query?query=off_cpu%3Atime%3Ananoseconds%3Atime%3Ananoseconds%3Adelta%7B%7D
top?query=off_cpu%3Atime%3Ananoseconds%3Atime%3Ananoseconds%3Adelta%7B%7D
range?query=off_cpu%3Atime%3Ananoseconds%3Atime%3Ananoseconds%3Adelta%7B%7D&step=1h
types?query=%7Bservice%3D%22offsvc%22%7D
query?query=%7Bservice%3D%22satsvc%22%7D
query?query=%7Bservice%3D%22satsvc%22%7D&format=folded
top?query=%7Bservice%3D%22satsvc%22%7D
range?query=%7Bservice%3D%22satsvc%22%7D&step=1h
range?query=%7Bservice%3D%22satsvc%22%7D&step=1d
EOF
ok "$n queries (merge, diff, top, range, labels, values, types; each from roll-ups and with raw=1) answered identically by the embedded store, A and B"
# the cluster read its roll-up table for the whole hours of the ranges,
# and samples for raw=1
[ "$(metric "$ua" smolder_clickhouse_reads_total '{level="1h"}')" -gt "$reads_1h" ] &&
	[ "$(metric "$ua" smolder_clickhouse_reads_total '{level="raw"}')" -gt 0 ] ||
	fail "A's reads by level: $(curl -sS "$ua/metrics" | grep clickhouse_reads)"
[ "$(chq 1 "SELECT count() FROM smolder.samples_1h_local")" -gt 0 ] &&
	[ "$(chq 2 "SELECT count() FROM smolder.samples_1h_local")" -gt 0 ] ||
	fail "samples_1h empty on a shard"
ok "the cluster answered from its roll-up table samples_1h (on both shards), raw=1 from samples: $(curl -sS "$ua/metrics" | awk '/^smolder_clickhouse_reads_total/ { printf "%s%s", s, $0; s = ", " }')"

# JIT frames keep their language; off-CPU time its nanoseconds; a sum past
# INT64_MAX is saturated and says so, from either store
curl -sS --max-time 30 "$ua/api/v1/query?query=%7Bservice%3D%22jssvc%22%7D&$R" >"$tmp/js.json"
curl -sS --max-time 30 "$ub/api/v1/query?query=off_cpu%3Atime%3Ananoseconds%3Atime%3Ananoseconds%3Adelta%7B%7D&$R" >"$tmp/off.json"
curl -sS --max-time 30 "$ub/api/v1/types?$R" >"$tmp/types.json"
curl -sS --max-time 30 "$ua/api/v1/query?query=%7Bservice%3D%22satsvc%22%7D&$RSAT" >"$tmp/sat.json"
python3 - "$tmp" <<'PY' || fail "JIT frames, off-CPU time or a saturated sum through ClickHouse"
import json, os, sys
t = sys.argv[1]
def nodes(path):
    todo, out = [json.load(open(os.path.join(t, path)))], []
    while todo:
        n = todo.pop()
        todo += n.get("children", [])
        out.append(n)
    return out
js = [n for n in nodes("js.json") if n.get("lang") == "js"]
named = [n for n in js if n["name"].startswith("fn_11_") and "file" not in n and "line" not in n]
off = json.load(open(os.path.join(t, "off.json")))
names = json.dumps(json.load(open(os.path.join(t, "types.json"))))
sat = json.load(open(os.path.join(t, "sat.json")))
print("%d js nodes (%d named, no file or line); off-CPU total %d ns over 200 rows of 2.5 ms; "
      "off_cpu type listed: %s; saturated: %s, total %d" %
      (len(js), len(named), off["total"], "off_cpu:time:nanoseconds" in names,
       sat.get("saturated"), sat["total"]))
sys.exit(0 if js and len(named) == len(js) and off["total"] == 200 * 2500000 and
         "off_cpu:time:nanoseconds" in names and sat.get("saturated") is True and
         sat["total"] == 2**63 - 1 else 1)
PY
ok "JIT frames with their language, an off-CPU type in nanoseconds, and a saturated sum round-trip through the cluster"

# a day whose raw rows are gone (as retention drops them) is still
# answered, from the roll-ups; raw=1 finds nothing of it
q='query?query=%7Bservice%3D%22dropsvc%22%7D&format=folded'
curl -sS --max-time 30 "$ue/api/v1/$q&$R" >"$tmp/drop.e"
[ -s "$tmp/drop.e" ] || fail "no folded stacks for dropsvc"
day=$((1769904000 / 86400))
for nd in 1 2; do
	chq "$nd" "ALTER TABLE smolder.samples_local DROP PARTITION $day" >/dev/null
done
[ "$(chq 1 "SELECT count() FROM smolder.samples WHERE intDiv(ts, 86400000000000) = $day")" = 0 ] ||
	fail "the day's raw rows are still there"
curl -sS --max-time 30 "$ub/api/v1/$q&$R" >"$tmp/drop.b"
cmp -s "$tmp/drop.e" "$tmp/drop.b" || fail "the day without raw rows: $(head -c 200 "$tmp/drop.b")"
c=$(curl -sS -o "$tmp/drop.raw" -w '%{http_code}' --max-time 30 "$ub/api/v1/$q&$R&raw=1")
[ "$c" = 404 ] || { [ "$c" = 200 ] && [ ! -s "$tmp/drop.raw" ]; } ||
	fail "raw=1 over the dropped day: $c $(head -c 200 "$tmp/drop.raw")"
ok "a day whose raw rows were dropped on both shards is answered from the roll-ups as before (raw=1: $c)"

# the CPython frames came back named, with their file, line and language
curl -sS --max-time 30 "$ua/api/v1/query?query=%7Bservice%3D%22pysvc%22%7D&$R" >"$tmp/py.json"
python3 - "$tmp/py.json" <<'PY' || fail "CPython frames through ClickHouse: $(head -c 300 "$tmp/py.json")"
import json, sys
nodes, todo = [], [json.load(open(sys.argv[1]))]
while todo:
    n = todo.pop()
    todo += n.get("children", [])
    if n.get("lang") == "python":
        nodes.append(n)
ok = [n for n in nodes if n["name"].startswith("Handler.fn_7_") and
      n.get("file") == "/srv/app/handlers.py" and 10 <= n.get("line", 0) < 40]
print("%d python nodes, %d named with their file and line" % (len(nodes), len(ok)))
sys.exit(0 if nodes and len(ok) == len(nodes) else 1)
PY
ok "CPython frames (function, file, line, language) round-trip through the cluster"

total() {  # total URL: the merge total of everything
	curl -sS --max-time 30 "$1/api/v1/query?query=%7B%7D&$R" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])'
}
before=$(total "$ub")
[ "$(push "$ub" "$tmp/b1")" = 200 ] || fail "resend: $(cat "$tmp/push.body")"
[ "$(total "$ua")" = "$before" ] || fail "a batch sent again was stored twice"
# the same new batch four times at once through one server, while another
# batch is being inserted: one insert groups what waits, and a batch twice
# in a group would be stored twice
"$MKBATCH" --seed 8 --agent twice --rows 2000 --stacks 100 \
	--start-ns $((1767225600000000000 + 8 * 60000000000)) "$tmp/b8" >/dev/null
"$MKBATCH" --seed 9 --agent other --rows 100000 --stacks 2000 \
	--start-ns $((1767225600000000000 + 9 * 60000000000)) "$tmp/b9" >/dev/null
push "$ua" "$tmp/b9" >"$tmp/c9" &
cps=$!
sleep 0.3   # so that the four wait behind b9's insert
for k in 1 2 3 4; do
	push "$ua" "$tmp/b8" >"$tmp/c8.$k" &
	cps="$cps $!"
done
for p in $cps; do
	wait "$p" || true
done
for k in 1 2 3 4; do
	[ "$(cat "$tmp/c8.$k")" = 200 ] || fail "concurrent send $k: $(cat "$tmp/c8.$k")"
done
[ "$(cat "$tmp/c9")" = 200 ] || fail "the other batch: $(cat "$tmp/c9")"
for b in b8 b9; do
	[ "$(push "$ue" "$tmp/$b")" = 200 ] || fail "embedded: $(cat "$tmp/push.body")"
done
[ "$(total "$ua")" = "$(total "$ue")" ] ||
	fail "a batch sent four times at once: $(total "$ua") samples in ClickHouse, $(total "$ue") embedded"
ok "a batch sent four times at once through one server is stored once"
curl -sS "$ub/api/v1/status" | python3 -c 'import json, sys
s = json.load(sys.stdin)["storage"]
sys.exit(0 if s["backend"] == "clickhouse" and s["clickhouse_dedup_rows"] > 0 else 1)' ||
	fail "B's status does not count the rows it left out: $(curl -sS "$ub/api/v1/status")"
ok "a batch sent again (through the other server) is acknowledged and stored once"

# ---- debug info through A names frames through B ----
printf 'int f_named(int x) { return x * 3 + 1; }\nint main(int c, char **v) { (void)v; return f_named(c); }\n' \
	>"$tmp/p.c"
gcc -g -O1 -Wl,--build-id=sha1 -o "$tmp/p.full" "$tmp/p.c" || fail "gcc"
strip -o "$tmp/p.stripped" "$tmp/p.full"
objcopy --only-keep-debug "$tmp/p.full" "$tmp/p.debug"
bid=$(LC_ALL=C readelf -n "$tmp/p.full" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p')
# f_named's file offset: its address within the executable segment
off=$(python3 - "$tmp/p.full" <<'PY'
import subprocess, sys
f = sys.argv[1]
addr = next(int(l.split()[0], 16) for l in subprocess.run(["nm", f], capture_output=True,
            text=True).stdout.splitlines() if l.endswith(" f_named"))
for l in subprocess.run(["readelf", "-lW", f], capture_output=True, text=True).stdout.splitlines():
    w = l.split()
    if w and w[0] == "LOAD":
        o, va, fs = int(w[1], 16), int(w[2], 16), int(w[4], 16)
        if va <= addr < va + fs:
            print("%x" % (addr - va + o + 4))
PY
)
"$MKBATCH" --seed 9 --agent symhost --app-build-id "$bid" --app-offset "$off" "$tmp/bsym" >/dev/null
[ "$(push "$ua" "$tmp/bsym")" = 200 ] || fail "ingest: $(cat "$tmp/push.body")"
put() {
	curl -sS -o "$tmp/put.body" -w '%{http_code}' -X PUT --max-time 30 --data-binary @"$2" \
		"$1/api/v1/debuginfo/$bid"
}
named() {  # named URL: folded stacks of host-9 naming f_named
	curl -sS --max-time 30 "$1/api/v1/query?query=%7Bhostname%3D%22host-9%22%7D&format=folded&$R" |
		grep -c 'f_named' || true
}
[ "$(put "$ua" "$tmp/p.stripped")" = 201 ] || fail "PUT stripped: $(cat "$tmp/put.body")"
[ "$(named "$ub")" = 0 ] || fail "named without any symbols"
[ "$(put "$ua" "$tmp/p.debug")" = 201 ] || fail "PUT debug: $(cat "$tmp/put.body")"
c=$(curl -sS -I -o "$tmp/hdr" -w '%{http_code}' "$ub/api/v1/debuginfo/$bid")
[ "$c" = 200 ] && grep -qi '^X-Smolder-Debuginfo: both' "$tmp/hdr" || fail "HEAD through B: $c"
i=0
until [ "$(named "$ub")" -gt 0 ]; do
	i=$((i + 1))
	[ "$i" -le 100 ] || fail "B never named f_named: $(curl -sS "$ub/api/v1/query?query=%7Bhostname%3D%22host-9%22%7D&format=folded&$R" | head -3)"
	sleep 0.2
done
cmp -s "$tmp/p.debug" "$tmp/bcache/debuginfo/$bid.debug" || fail "B's local copy differs"
ok "a stripped binary and its debug file uploaded through A name frames in B's answers (after ${i} polls)"

# ---- kill -9 of A while two clients push; they fail over to B ----
"$PUSHER" --url "$ua" --url "$ub" --pushers 2 --resend --log "$tmp/log" --stop "$tmp/stop" \
	2>"$tmp/pusher.err" &
ppush=$!
i=0
until [ "$(awk '$4 == 200' "$tmp/log" 2>/dev/null | wc -l)" -ge 20 ]; do
	i=$((i + 1))
	[ "$i" -le 300 ] || fail "pushers got no 200s: $(tail -3 "$tmp/log")"
	sleep 0.1
done
kill -KILL "$pa"
wait "$pa" 2>/dev/null || true
pa=""
sleep 2
touch "$tmp/stop"
wait "$ppush" || fail "pusher: $(cat "$tmp/pusher.err")"
ppush=""
for p in p0 p1; do
	curl -sS -o "$tmp/range.$p" --max-time 60 \
		"$ub/api/v1/range?query=%7Bpusher%3D%22$p%22%7D&by=batch&step=1h&from=2026-01-01T00:00:00Z&to=2026-01-01T01:00:00Z"
done
python3 "$(dirname "$0")/acked_check.py" "$tmp" ||
	fail "stored batches do not match what was acknowledged"
ok "kill -9 of A under two pushers: every acknowledged batch stored once, the rest whole or absent ($(awk '$4 == 200' "$tmp/log" | wc -l) acks)"

# ---- a shard down during ingest: 503s, then the agent's backlog ----
[ "$(push "$ub" "$tmp/b2")" = 200 ] || fail "before the stop: $(cat "$tmp/push.body")"
kill -KILL "$chpid2"
wait "$chpid2" 2>/dev/null || true
chpid2=""
"$MKBATCH" --seed 40 --agent down "$tmp/b40" >/dev/null
c=$(push "$ub" "$tmp/b40")
[ "$c" = 503 ] && grep -q 'ClickHouse' "$tmp/push.body" || fail "with a shard down: $c $(cat "$tmp/push.body")"
c=$(curl -sS -o "$tmp/q.body" -w '%{http_code}' "$ub/api/v1/query?query=%7B%7D&$R")
[ "$c" = 503 ] || fail "a query with a shard down: $c $(head -c 200 "$tmp/q.body")"
ch_start 2
[ "$(push "$ub" "$tmp/b40")" = 200 ] || fail "after the restart: $(cat "$tmp/push.body")"
ok "a stopped shard: ingest and queries answer 503 naming ClickHouse; the batch passes once it is back"

# ---- a schema of another version is refused ----
chq 1 'CREATE DATABASE IF NOT EXISTS other' >/dev/null
chq 1 "CREATE TABLE other.smolder_schema (key String, value String) ENGINE = ReplacingMergeTree ORDER BY key" >/dev/null
chq 1 "INSERT INTO other.smolder_schema VALUES ('version', '99')" >/dev/null
rc=0
"$SERVER" --listen 127.0.0.1:0 --clickhouse "http://127.0.0.1:$http1/other" >/dev/null 2>"$tmp/v.err" || rc=$?
[ "$rc" != 0 ] && grep -q 'schema version 99; this server reads and writes version 2' "$tmp/v.err" ||
	fail "another schema version: exit $rc, $(cat "$tmp/v.err")"
ok "a database of another schema version is refused: $(sed 's/^smolder-server: //' "$tmp/v.err")"
# a cluster with a shard the URLs leave out, and URLs that are no URLs
rc=0
"$SERVER" --listen 127.0.0.1:0 --clickhouse "$ch1" --clickhouse-cluster smolder >/dev/null \
	2>"$tmp/v.err" || rc=$?
[ "$rc" != 0 ] && grep -q "shard 2 of cluster 'smolder' (127.0.0.1:$tcp2) has no URL" "$tmp/v.err" ||
	fail "a shard without a URL: exit $rc, $(cat "$tmp/v.err")"
for bad in "ftp://127.0.0.1:$http1/x" "http://127.0.0.1:$http1/a/b" "http://127.0.0.1:$http1/?x=1"; do
	rc=0
	"$SERVER" --listen 127.0.0.1:0 --clickhouse "$bad" >/dev/null 2>"$tmp/v.err" || rc=$?
	[ "$rc" != 0 ] && grep -q "'$bad'" "$tmp/v.err" || fail "URL $bad: exit $rc, $(cat "$tmp/v.err")"
done
ok "a shard without a URL and malformed URLs are refused, naming them"

# ---- --max-series and rows from the future, against ClickHouse ----
srv l --clickhouse "http://127.0.0.1:$http1/limits" --max-series 6
"$MKBATCH" --seed 60 --agent lim1 --processes 4 "$tmp/b60" >/dev/null
"$MKBATCH" --seed 61 --agent lim2 --processes 4 "$tmp/b61" >/dev/null
[ "$(push "$ul" "$tmp/b60")" = 200 ] || fail "4 series under a limit of 6: $(cat "$tmp/push.body")"
c=$(push "$ul" "$tmp/b61")
[ "$c" = 422 ] && grep -q 'max-series' "$tmp/push.body" ||
	fail "4 more series past a limit of 6: $c $(cat "$tmp/push.body")"
[ "$(chq 1 "SELECT count() FROM limits.series WHERE has(label_values, 'host-61')")" = 0 ] ||
	fail "the refused batch left series behind"
msg=$(cat "$tmp/push.body")
# after a restart the server knows none of the stored series: ClickHouse
# says which are, and the first batch passes again
kill -TERM "$pl"
wait "$pl" 2>/dev/null || true
pl=""
srv l --clickhouse "http://127.0.0.1:$http1/limits" --max-series 6
[ "$(push "$ul" "$tmp/b60")" = 200 ] || fail "stored series after a restart: $(cat "$tmp/push.body")"
[ "$(push "$ul" "$tmp/b61")" = 422 ] || fail "the second batch after a restart: $(cat "$tmp/push.body")"
"$MKBATCH" --seed 62 --agent ahead --start-ns $((($(date +%s) + 3600) * 1000000000)) \
	"$tmp/b62" >/dev/null
c=$(push "$ub" "$tmp/b62")
[ "$c" = 400 ] && grep -q 'ahead of this server' "$tmp/push.body" ||
	fail "rows an hour ahead: $c $(cat "$tmp/push.body")"
kill -TERM "$pl"
wait "$pl" 2>/dev/null || true
pl=""
ok "--max-series 6: 4 new series pass, 4 more answer 422 ($msg), also after a restart; rows an hour ahead answer 400"

# ---- retention: a server with --retention drops old days on every shard ----
now_ns=$(($(date +%s) * 1000000000))
"$MKBATCH" --seed 50 --agent fresh --start-ns "$now_ns" "$tmp/b50" >/dev/null
[ "$(push "$ub" "$tmp/b50")" = 200 ] || fail "a batch of now: $(cat "$tmp/push.body")"
old_rows() {  # old_rows N: rows of node N's shard dated before 2026-06-01
	chq "$1" "SELECT (SELECT count() FROM smolder.samples_local WHERE ts < 1780272000000000000)
		+ (SELECT count() FROM smolder.batches_local WHERE ts < 1780272000000000000)"
}
[ "$(old_rows 1)" -gt 0 ] && [ "$(old_rows 2)" -gt 0 ] || fail "no old rows to drop"
fresh=$(chq 1 "SELECT count() FROM smolder.samples WHERE ts >= $((now_ns - 86400000000000))")
srv r --clickhouse "$ch1,$ch2" --clickhouse-cluster smolder --retention 30d
i=0
until [ "$(old_rows 1)" = 0 ] && [ "$(old_rows 2)" = 0 ]; do
	i=$((i + 1))
	[ "$i" -le 300 ] || fail "old days still there: $(old_rows 1) and $(old_rows 2) rows"
	sleep 0.1
done
kill -TERM "$pr"
wait "$pr" 2>/dev/null || true
pr=""
[ "$(chq 1 "SELECT count() FROM smolder.samples WHERE ts >= $((now_ns - 86400000000000))")" = "$fresh" ] ||
	fail "retention dropped today's rows"
grep -q 'retention dropped day' "$tmp/r.err" || fail "retention said nothing: $(tail -3 "$tmp/r.err")"
ok "--retention 30d dropped the old day partitions on both shards, kept today's $fresh rows, and said so"

# stop_servers: B and the embedded one stop cleanly (under ASan, the leak
# check runs at exit); no sanitizer report in any server's stderr
stop_servers() {
	for p in $pb $pe; do
		kill -TERM "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pb="" pe=""
	for n in a b e r l; do
		! grep -q 'ERROR: AddressSanitizer\|ERROR: LeakSanitizer\|runtime error' "$tmp/$n.err" ||
			fail "server $n: $(grep -m1 -A8 'ERROR\|runtime error' "$tmp/$n.err")"
	done
	ok "the servers stopped cleanly; no sanitizer report"
}

if [ "$(id -u)" != 0 ] || [ ! -r /sys/kernel/btf/vmlinux ] || [ ! -x "$AGENT" ]; then
	stop_servers
	echo "# the agent's backlog part needs root, BTF and $AGENT: not run" >&2
	skip clickhouse_test "the agent's backlog through a stopped shard needs root and BTF"
fi
"$FP_BUSY" 40 >/dev/null 2>&1 &
busy=$!
"$AGENT" --server "$ub" --interval 1 --pid "$busy" --no-upload -v >"$tmp/agent.out" 2>"$tmp/agent.err" &
apid=$!
agent_rows() {  # rows stored for the busy process, per 1 s step of [from, to)
	curl -sS --max-time 30 "$ub/api/v1/range?query=%7Bcomm%3D%22fp_busy%22%7D&step=1s&from=$1&to=$2"
}
i=0
until [ "$(chq 1 "SELECT count() FROM smolder.series WHERE has(label_values, 'fp_busy')")" -gt 0 ]; do
	i=$((i + 1))
	[ "$i" -le 200 ] || fail "the agent's first batches never arrived: $(tail -5 "$tmp/agent.err")"
	sleep 0.1
done
down_from=$(date +%s)
kill -KILL "$chpid2"
wait "$chpid2" 2>/dev/null || true
chpid2=""
wait_log() {  # wait_log PATTERN TRIES WHAT: polls the agent's log
	i=0
	until grep -q "$1" "$tmp/agent.err"; do
		i=$((i + 1))
		[ "$i" -le "$2" ] || fail "$3: $(tail -5 "$tmp/agent.err")"
		sleep 0.1
	done
}
wait_log 'server answered 503' 200 "the agent saw no 503"
sleep 3
ch_start 2
down_to=$(date +%s)
wait_log 'server is back; delivering' 400 "the agent never delivered its backlog"
sleep 2
python3 - "$(agent_rows "$down_from" "$down_to")" "$down_from" "$down_to" <<'PY' ||
import json, sys
j = json.loads(sys.argv[1])
a, b = int(sys.argv[2]), int(sys.argv[3])
steps = set()
for s in j["series"]:
    for t, v in s["values"]:
        if int(v) > 0:
            steps.add(int(t))
missing = [t for t in range(a + 1, b - 1) if t not in steps]
print("steps with samples: %d of %d; missing %s" % (len(steps), b - a, missing[:10]))
sys.exit(1 if missing else 0)
PY
	fail "the agent's samples of the outage are not all stored"
ok "the real agent got 503s while shard 2 was down, kept its backlog, and every second of the outage arrived"
stop_servers
