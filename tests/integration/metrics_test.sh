#!/bin/sh
# metrics_test.sh - GET /metrics against the real smolder-server on a
# loopback port with a temporary data dir: the exposition parses as
# Prometheus text 0.0.4 (tests/integration/prom_check.py: names unique,
# HELP and TYPE before samples, counters ending in _total, histograms
# consistent), and the counters move with what we do: a native batch and
# a pprof profile ingested, queries answered, a 404, an agent's counters.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
MKBATCH=${SMOLDER_MKBATCH:-build/tests/mkbatch}
here=$(dirname "$0")
. "$here/lib.sh"

[ -x "$SERVER" ] || fail "$SERVER is not an executable (build it first)"
[ -x "$MKBATCH" ] || fail "$MKBATCH is not an executable (build it first)"

# --retention 0: mkbatch's batches are dated 2026-01-01 (lib.sh)
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

# scrape FILE: GET /metrics into FILE, checked by the parser; its JSON
# digest of the samples goes to FILE.json
scrape() {
	c=$(curl -sS -o "$1" -w '%{http_code} %{content_type}' --max-time 20 "$base/metrics") ||
		fail "GET /metrics failed"
	case "$c" in
	"200 text/plain; version=0.0.4"*) ;;
	*) fail "GET /metrics: $c" ;;
	esac
	python3 "$here/prom_check.py" "$1" >"$1.json" 2>"$tmp/check.err" ||
		fail "exposition does not parse: $(cat "$tmp/check.err")"
}
# val FILE 'SERIES': a sample's value from a scrape, as the parser read it
val() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get(sys.argv[2], "absent"))' \
		"$1.json" "$2"
}

scrape "$tmp/m0"
ok "the exposition of an idle server parses"
[ "$(val "$tmp/m0" 'smolder_build_info{version="0.1.0-dev"}')" = 1 ] ||
	fail "build info: $(grep build_info "$tmp/m0")"
[ "$(val "$tmp/m0" 'smolder_ingest_rows_total{format="native"}')" = 0 ] ||
	fail "native rows before any ingest: $(grep ingest_rows "$tmp/m0")"
ok "build info and zero counters before ingest"

# one native batch, one pprof profile
"$MKBATCH" --seed 1 --agent metrics-agent "$tmp/b1" >"$tmp/b1.txt"
rows=$(sed -n 's/.*rows=\([0-9]*\).*/\1/p' "$tmp/b1.txt")
samples=$(sed -n 's/.*samples=\([0-9]*\).*/\1/p' "$tmp/b1.txt")
bytes=$(wc -c <"$tmp/b1")
c=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 --data-binary @"$tmp/b1" \
	-H 'Content-Type: application/octet-stream' "$base/api/v1/ingest")
[ "$c" = 200 ] || fail "native ingest: $c"
c=$(curl -sS -o "$tmp/pp" -w '%{http_code}' --max-time 20 \
	--data-binary @"$here/../data/go-cpu.pb.gz" "$base/api/v1/ingest/pprof?service=m")
[ "$c" = 200 ] || fail "pprof ingest: $c $(cat "$tmp/pp")"
pprows=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rows"])' "$tmp/pp")
ppbytes=$(wc -c <"$here/../data/go-cpu.pb.gz")
# two queries and a miss
for q in 'query?query=%7B%7D&from=now-30d&to=now%2B1d' 'labels?from=now-30d&to=now%2B1d'; do
	c=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 "$base/api/v1/$q")
	[ "$c" = 200 ] || fail "query $q: $c"
done
c=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 20 "$base/no/such/page")
[ "$c" = 404 ] || fail "a missing page: $c"

scrape "$tmp/m1"
ok "the exposition parses after ingest and queries"
for want in \
	"smolder_ingest_batches_total{format=\"native\"} 1" \
	"smolder_ingest_rows_total{format=\"native\"} $rows" \
	"smolder_ingest_received_bytes_total{format=\"native\"} $bytes" \
	"smolder_ingest_batches_total{format=\"pprof\"} 1" \
	"smolder_ingest_rows_total{format=\"pprof\"} $pprows" \
	"smolder_ingest_received_bytes_total{format=\"pprof\"} $ppbytes" \
	"smolder_http_requests_total{route=\"/api/v1/ingest\",code=\"2xx\"} 1" \
	"smolder_http_requests_total{route=\"/api/v1/query\",code=\"2xx\"} 1" \
	"smolder_http_requests_total{route=\"other\",code=\"4xx\"} 1" \
	"smolder_http_request_duration_seconds_count{route=\"/api/v1/query\"} 1" \
	"smolder_http_request_duration_seconds_bucket{route=\"/api/v1/query\",le=\"+Inf\"} 1" \
	"smolder_agent_reported_total{agent=\"metrics-agent\",hostname=\"host-1\",counter=\"samples\"} $samples"; do
	series=${want% *}
	v=$(val "$tmp/m1" "$series")
	[ "$v" = "${want##* }" ] || fail "$series is $v, want ${want##* }"
done
ok "ingest (rows, batches, bytes per format), requests by route and class, query latency, agent counters"

# store figures: rows in the head (nothing cut yet), fsyncs of the WAL,
# series and stacks, disk use of the data dir
for name in smolder_head_rows smolder_wal_fsyncs_total smolder_series smolder_stacks \
	smolder_wal_bytes smolder_data_dir_bytes smolder_uptime_seconds; do
	v=$(val "$tmp/m1" "$name")
	python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$v" ||
		fail "$name is $v after ingest"
done
[ "$(val "$tmp/m1" smolder_head_rows)" = "$((rows + pprows))" ] ||
	fail "head rows $(val "$tmp/m1" smolder_head_rows), want $((rows + pprows))"
v=$(val "$tmp/m1" smolder_symbolizer_lookups_total)
[ "$v" != absent ] || fail "no symbolizer figures"
# the query read the head's rows, raw; no roll-up exists yet
v=$(val "$tmp/m1" 'smolder_query_rows_read_total{level="raw"}')
[ "$v" != absent ] && [ "$v" -gt 0 ] || fail "rows read by the query: $v"
for lv in 1h 6h 1d; do
	[ "$(val "$tmp/m1" "smolder_query_rows_read_total{level=\"$lv\"}")" = 0 ] ||
		fail "rows read at level $lv: $(grep rows_read "$tmp/m1")"
	[ "$(val "$tmp/m1" "smolder_rollup_files{level=\"$lv\"}")" = 0 ] ||
		fail "roll-up files at level $lv: $(grep rollup_files "$tmp/m1")"
done
ok "store figures moved: head rows, WAL fsyncs and bytes, series, stacks, disk use, rows read"

# the metrics endpoint counts itself from the next scrape on
scrape "$tmp/m2"
[ "$(val "$tmp/m2" 'smolder_http_requests_total{route="/metrics",code="2xx"}')" = 2 ] ||
	fail "scrapes counted: $(grep 'route="/metrics"' "$tmp/m2" | head -2)"
ok "scrapes are counted"

kill -TERM "$pid"
wait "$pid" || fail "server exited with $?"
pid=""
echo "metrics_test: $checks checks passed"
