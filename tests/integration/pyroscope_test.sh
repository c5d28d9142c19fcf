#!/bin/sh
# pyroscope_test.sh - POST /ingest, Pyroscope's ingest API, against the real
# smolder-server on a loopback port: the real Pyroscope Node.js client
# (@pyroscope/nodejs, installed with `npm ci` into tests/pyroscope) profiles
# a Node program burning CPU in fibonacci() and its profiles arrive with
# service_name and its tags, from two client versions (the newest and a
# 0.4 release, which sends no format=); folded and lines bodies with exact
# totals; multipart, gzip'd and plain pprof bodies told apart by their
# content; and the refusals of bad input. Cleans up on exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
. "$(dirname "$0")/lib.sh"
PYRO=$(cd "$(dirname "$0")/../pyroscope" && pwd)

[ -x "$SERVER" ] || fail "$SERVER is not an executable (build it first)"
command -v node >/dev/null || fail "node is not installed (apt-get install nodejs npm)"

start_server 127.0.0.1:0

# code METHOD URL [curl args...]: the HTTP status; the body goes to $tmp/body
code() {
	m=$1
	u=$2
	shift 2
	curl -sS -X "$m" -o "$tmp/body" -w '%{http_code}' --max-time 20 "$@" "$u" || echo 000
}
# folded QUERY: the folded merge of the last day for selector QUERY
folded() {
	c=$(code GET "$base/api/v1/query" -G --data-urlencode "query=$1" \
		--data-urlencode from=1767139200 --data-urlencode to=now+1d -d format=folded)
	[ "$c" = 200 ] || fail "query $1: $c $(cat "$tmp/body")"
	cat "$tmp/body"
}
# total QUERY: the sum of the folded counts
total() { folded "$1" | awk '{ s += $NF } END { print s + 0 }'; }
# refuse NAME STATUS WORD URL [curl args]: answered STATUS with a JSON error naming WORD
refuse() {
	what=$1 want=$2 word=$3 u=$4
	shift 4
	c=$(code POST "$u" "$@")
	[ "$c" = "$want" ] || fail "$what: status $c, want $want: $(cat "$tmp/body")"
	grep -q '"error"' "$tmp/body" && grep -qi -- "$word" "$tmp/body" ||
		fail "$what: no JSON error naming '$word': $(cat "$tmp/body")"
	ok "$what: $want naming '$word'"
}

# ---- folded: counts and CPU time at sampleRate, the name's labels ----
printf 'main;work;fibonacci 7\nmain;work;fibonacci 3\nmain;idle 5\n\n' >"$tmp/f1"
c=$(code POST "$base/ingest?name=curlapp.cpu%7Bregion%3Deu%2Cteam%3D%22a%20b%22%7D&from=1767225600&until=1767225610&sampleRate=100&spyName=test" \
	--data-binary @"$tmp/f1")
[ "$c" = 200 ] || fail "folded: $c $(cat "$tmp/body")"
grep -q '"stacks":2' "$tmp/body" || fail "folded: identical stacks not summed: $(cat "$tmp/body")"
ok "folded body stored (identical stacks summed)"
q='process_cpu:samples:count:cpu:nanoseconds:delta{service_name="curlapp",region="eu",team="a b"}'
f=$(folded "$q")
printf '%s\n' "$f" | grep -qx 'main;work;fibonacci 10' || fail "folded: $f"
printf '%s\n' "$f" | grep -qx 'main;idle 5' || fail "folded: $f"
ok "folded: sample counts per stack, root first, with service_name and quoted labels"
t=$(total 'process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta{service_name="curlapp"}')
[ "$t" = 150000000 ] || fail "folded CPU time: $t, want 15 samples x 10 ms"
ok "folded: CPU nanoseconds = counts x 1e9/sampleRate"

# no format: folded, Pyroscope's default; no from: now
printf 'a;b 4\r\n' >"$tmp/f2"
c=$(code POST "$base/ingest?name=deflt" --data-binary @"$tmp/f2")
[ "$c" = 200 ] || fail "default format: $c $(cat "$tmp/body")"
[ "$(total '{service_name="deflt"}')" = 4 ] || fail "default format total"
ok "no format= is folded; an app name without a type suffix; CRLF lines"

# ---- lines: one sample per line ----
printf 'main;a\nmain;a\nmain;b\n' >"$tmp/l1"
c=$(code POST "$base/ingest?name=lines.cpu&format=lines&from=1767225600" --data-binary @"$tmp/l1")
[ "$c" = 200 ] || fail "lines: $c $(cat "$tmp/body")"
f=$(folded '{service_name="lines"}')
printf '%s\n' "$f" | grep -qx 'main;a 2' && printf '%s\n' "$f" | grep -qx 'main;b 1' ||
	fail "lines: $f"
ok "lines: one sample per line"

# ---- other units: one series named after the type ----
c=$(code POST "$base/ingest?name=heap.alloc_objects&units=objects&from=1767225600" \
	--data-binary 'x;y 9')
[ "$c" = 200 ] || fail "units: $c $(cat "$tmp/body")"
[ "$(total 'alloc_objects:alloc_objects:objects:alloc_objects:objects:delta{service_name="heap"}')" = 9 ] ||
	fail "units=objects"
ok "units=objects: one series alloc_objects:alloc_objects:objects:..."

# ---- errors ----
refuse "no name" 400 name "$base/ingest?format=folded" --data-binary 'a 1'
refuse "bad format" 400 format "$base/ingest?name=x&format=trie" --data-binary 'a 1'
refuse "bad label name" 400 label "$base/ingest?name=x%7B1a%3Db%7D" --data-binary 'a 1'
refuse "reserved label name" 400 reserved "$base/ingest?name=x%7B__n%3Db%7D" --data-binary 'a 1'
refuse "unterminated quote" 400 quote "$base/ingest?name=x%7Ba%3D%22b%7D" --data-binary 'a 1'
refuse "duplicate label" 400 twice "$base/ingest?name=x%7Ba%3D1%2Ca%3D2%7D" --data-binary 'a 1'
refuse "no count" 400 "line 2" "$base/ingest?name=x" --data-binary "$(printf 'a 1\nb')"
refuse "bad count" 400 count "$base/ingest?name=x" --data-binary 'a;b 1x'
refuse "empty frame" 400 "empty frame" "$base/ingest?name=x" --data-binary 'a;;b 1'
refuse "bad from" 400 from "$base/ingest?name=x&from=yesterday" --data-binary 'a 1'
refuse "until before from" 400 until "$base/ingest?name=x&from=1767225600&until=1767225500" --data-binary 'a 1'
refuse "sampleRate 0" 400 sampleRate "$base/ingest?name=x&sampleRate=0" --data-binary 'a 1'
awk 'BEGIN { s = "f"; for (i = 1; i < 513; i++) s = s ";f" i; print s " 1" }' >"$tmp/deep"
refuse "513 frames" 400 "512 frames" "$base/ingest?name=x" --data-binary @"$tmp/deep"
refuse "pprof not pprof" 400 pprof "$base/ingest?name=x&format=pprof" --data-binary 'nonsense'
refuse "multipart without profile" 400 profile "$base/ingest?name=x&format=pprof" \
	-F 'other=@/dev/null'
refuse "multipart without boundary" 400 boundary "$base/ingest?name=x&format=pprof" \
	-H 'Content-Type: multipart/form-data' --data-binary 'x'
c=$(code GET "$base/api/v1/query" -G --data-urlencode 'query={service_name="x"}' \
	--data-urlencode from=1767139200 --data-urlencode to=now+1d -d format=folded)
[ "$c" = 404 ] && grep -q 'no series match' "$tmp/body" ||
	fail "a refused body stored something: $c $(head -c 300 "$tmp/body")"
ok "refused bodies store nothing"

# ---- the real clients: @pyroscope/nodejs, the newest and a 0.4 release ----
# 0.6 sends a bare gzip'd pprof with format=pprof; 0.4 sends a
# multipart/form-data pprof with no format at all, which the body's content
# must identify. Both run at once, each under its own app name.
if [ ! -d "$PYRO/node_modules/@pyroscope/nodejs" ] || [ ! -d "$PYRO/node_modules/pyroscope-nodejs-0.4" ]; then
	npm ci --prefix "$PYRO" --no-audit --no-fund >"$tmp/npm.log" 2>&1 ||
		fail "npm ci in $PYRO failed (is the npm registry reachable?): $(tail -20 "$tmp/npm.log")"
fi
v_new=$(node -p "require('$PYRO/node_modules/@pyroscope/nodejs/package.json').version")
v_old=$(node -p "require('$PYRO/node_modules/pyroscope-nodejs-0.4/package.json').version")
case $v_old in 0.4.*) ;; *) fail "pyroscope-nodejs-0.4 is $v_old, not a 0.4 release" ;; esac
timeout 60 node "$PYRO/burn.js" "$base" 8 @pyroscope/nodejs smolder-test >"$tmp/node.log" 2>&1 &
n1=$!
DEBUG=pyroscope timeout 60 node "$PYRO/burn.js" "$base" 8 pyroscope-nodejs-0.4 smolder-test-04 \
	>"$tmp/node04.log" 2>&1 &
n2=$!
wait "$n1" || fail "the Node program ($v_new) failed: $(tail -20 "$tmp/node.log")"
wait "$n2" || fail "the Node program ($v_old) failed: $(tail -20 "$tmp/node04.log")"
! grep -q 'Server rejected' "$tmp/node04.log" ||
	fail "the server rejected @pyroscope/nodejs $v_old: $(grep -A1 'Server rejected' "$tmp/node04.log" | head -4)"
c=$(code GET "$base/api/v1/labels/service_name/values?from=now-1h")
[ "$c" = 200 ] || fail "label values: $c"
for app in smolder-test smolder-test-04; do
	grep -q "\"$app\"" "$tmp/body" || fail "no service_name $app: $(cat "$tmp/body")"
done
ok "@pyroscope/nodejs $v_new and $v_old: service_name smolder-test and smolder-test-04 arrived"
# 0.6 adds OpenTelemetry's process.runtime.name as a tag; 0.4 does not
for sel in 'service_name="smolder-test",region="eu",process_runtime_name="nodejs"' \
	'service_name="smolder-test-04",region="eu"'; do
	f=$(folded "wall:cpu:nanoseconds:wall:nanoseconds:delta{$sel}")
	printf '%s\n' "$f" | grep -q 'fibonacci' ||
		fail "{$sel}: no fibonacci in the client's CPU profile: $(printf '%s\n' "$f" | head -5)"
done
ok "@pyroscope/nodejs $v_new and $v_old: region=eu (and 0.6's OTel tags) as labels; fibonacci in the CPU time"
c=$(code GET "$base/api/v1/labels/service_name/values" -G -d from=now-1h \
	--data-urlencode 'query=memory:inuse_space:bytes:inuse_space:bytes{}')
grep -q '"smolder-test"' "$tmp/body" && grep -q '"smolder-test-04"' "$tmp/body" ||
	fail "no heap profile of both clients: $(cat "$tmp/body")"
ok "@pyroscope/nodejs $v_new and $v_old: the heap profile arrives as memory:inuse_space:bytes"

# the same form by hand, without format=: the body's content decides
c=$(code GET "$base/api/v1/query" -G --data-urlencode 'query=process_cpu:samples:count:cpu:nanoseconds:delta{service_name="curlapp"}' \
	--data-urlencode from=1767139200 --data-urlencode to=now+1d -d format=pprof)
[ "$c" = 200 ] || fail "pprof query: $c"
cp "$tmp/body" "$tmp/p.pb.gz"
c=$(code POST "$base/ingest?name=noformat.cpu&from=1767225600" -F "profile=@$tmp/p.pb.gz")
[ "$c" = 200 ] || fail "multipart pprof without format=: $c $(cat "$tmp/body")"
[ "$(total 'process_cpu:samples:count:cpu:nanoseconds:delta{service_name="noformat"}')" = 15 ] ||
	fail "multipart pprof without format=: wrong total"
# a bare gzip'd pprof under format=folded, and the same pprof not gzip'd
c=$(code POST "$base/ingest?name=gzfolded.cpu&format=folded&from=1767225600" --data-binary @"$tmp/p.pb.gz")
[ "$c" = 200 ] || fail "gzip pprof with format=folded: $c $(cat "$tmp/body")"
gzip -dc "$tmp/p.pb.gz" >"$tmp/p.pb"
c=$(code POST "$base/ingest?name=rawpb.cpu&from=1767225600" --data-binary @"$tmp/p.pb")
[ "$c" = 200 ] || fail "plain protobuf pprof without format=: $c $(cat "$tmp/body")"
[ "$(total '{service_name="gzfolded"}')" = 15 ] && [ "$(total '{service_name="rawpb"}')" = 15 ] ||
	fail "gzip or plain pprof without format=pprof: wrong totals"
ok "the body decides: a pprof form, gzip'd pprof and plain protobuf pprof stored whatever format= says"

# a multipart body as the Go client sends it: the pprof the server itself
# answers, wrapped in a form with a sample_type_config part
c=$(code GET "$base/api/v1/query" -G --data-urlencode 'query=process_cpu:samples:count:cpu:nanoseconds:delta{service_name="curlapp"}' \
	--data-urlencode from=1767139200 --data-urlencode to=now+1d -d format=pprof)
[ "$c" = 200 ] || fail "pprof query: $c"
cp "$tmp/body" "$tmp/p.pb.gz"
printf '{"samples":{"units":"samples"}}' >"$tmp/stc.json"
c=$(code POST "$base/ingest?name=gomp.cpu%7Bk%3Dv%7D&format=pprof&from=1767225600" \
	-F "profile=@$tmp/p.pb.gz;filename=profile.pprof" -F "sample_type_config=@$tmp/stc.json")
[ "$c" = 200 ] || fail "multipart pprof: $c $(cat "$tmp/body")"
t=$(total 'process_cpu:samples:count:cpu:nanoseconds:delta{service_name="gomp",k="v"}')
[ "$t" = 15 ] || fail "multipart pprof total $t, want 15"
ok "multipart/form-data pprof (profile + sample_type_config parts) with exact totals"

# ---- auth: with tokens, /ingest is a write like /api/v1/ingest/pprof ----
printf 'write-token-0a1b2c3d4e5f60\n' >"$tmp/wtok"
printf 'read-token-9f8e7d6c5b4a30\n' >"$tmp/rtok"
"$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/data2" --auth-token-file "$tmp/wtok" \
	--read-token-file "$tmp/rtok" >"$tmp/out2" 2>"$tmp/err2" &
pid2=$!
i=0
while ! grep -q '^smolder-server listening on http://' "$tmp/out2"; do
	kill -0 "$pid2" 2>/dev/null || fail "auth server exited before listening"
	i=$((i + 1))
	[ "$i" -le 200 ] || fail "auth server did not listen within 20 s"
	sleep 0.1
done
base2=$(sed -n 's/^smolder-server listening on \(http:\/\/127\.0\.0\.1:[0-9]*\)$/\1/p' "$tmp/out2")
c1=$(code POST "$base2/ingest?name=a" --data-binary 'a 1')
c2=$(code POST "$base2/ingest?name=a" -H 'Authorization: Bearer read-token-9f8e7d6c5b4a30' --data-binary 'a 1')
c3=$(code POST "$base2/ingest?name=a" -H 'Authorization: Bearer write-token-0a1b2c3d4e5f60' --data-binary 'a 1')
kill "$pid2" 2>/dev/null || true
wait "$pid2" 2>/dev/null || true
[ "$c1 $c2 $c3" = "401 401 200" ] || fail "auth on /ingest: none/read/write gave $c1 $c2 $c3"
ok "with auth on, /ingest needs the write token (the clients' authToken)"

echo "pyroscope_test: $checks checks passed"
