#!/bin/sh
# query_limits_test.sh - regexes cannot take the server: the real server
# with --query-timeout 2s holds 1,000 series whose comm is fourteen a's and
# a number (a value on which (a|a)+ backtracks about 16,000 steps before it
# fails, a few milliseconds each) and one whose hostname is sixty a's (on
# which (a|a)+ never ends). The catastrophic regex is answered 4xx naming
# it, within the deadline; the expensive one ends at the deadline with a
# 503; 24 expensive and 16 catastrophic ones at once (three waves of the 8
# query slots: at least 6 s, bound by the deadline) leave an agent's ingest
# answered before the storm is over: queries run --max-queries at a time,
# on no more pool threads. Binaries from $SMOLDER_SERVER and
# $SMOLDER_MKBATCH.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
MKBATCH=${SMOLDER_MKBATCH:-build/tests/mkbatch}
. "$(dirname "$0")/lib.sh"

start_server 127.0.0.1:0 --query-timeout 2s
post() { curl -s -o "$tmp/resp" -w '%{http_code}' --data-binary "@$1" \
	-H 'Content-Type: application/x-smolder-batch' "$base/api/v1/ingest"; }

"$MKBATCH" --seed 1 --processes 1000 --rows 3000 --comm-prefix aaaaaaaaaaaaaa! "$tmp/slow.bin" >/dev/null
"$MKBATCH" --seed 2 --processes 1 --hostname \
	'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!' "$tmp/cat.bin" >/dev/null
for b in slow cat; do
	c=$(post "$tmp/$b.bin")
	[ "$c" = 200 ] || fail "ingest of $b.bin answered $c: $(cat "$tmp/resp")"
done
i=3
while [ $i -lt 23 ]; do
	"$MKBATCH" --seed $i --processes 3 "$tmp/b$i.bin" >/dev/null
	i=$((i + 1))
done

/usr/bin/python3.11 - "$base" "$tmp" <<'PY' || fail "query limits"
import json, statistics, sys, threading, time, urllib.error, urllib.parse, urllib.request
base, tmp = sys.argv[1], sys.argv[2]
RANGE = {"from": "1767225000", "to": "1767229200"}

def query(sel):
    q = urllib.parse.urlencode(dict(RANGE, query=sel))
    t = time.monotonic()
    try:
        with urllib.request.urlopen(base + "/api/v1/query?" + q, timeout=60) as r:
            code, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        code, body = e.code, e.read()
    return code, json.loads(body), time.monotonic() - t

def ingest(i):
    data = open("%s/b%d.bin" % (tmp, i), "rb").read()
    req = urllib.request.Request(base + "/api/v1/ingest", data=data,
                                 headers={"Content-Type": "application/x-smolder-batch"})
    t = time.monotonic()
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200, r.status
    return time.monotonic() - t

CAT = '{hostname=~"(a|a)+"}'
SLOW = '{comm=~"(a|a)+"}'

# alone: the catastrophic regex is a 400 naming it, well within the deadline
code, body, took = query(CAT)
if code != 400 or "(a|a)+" not in body["error"] or "hostname" not in body["error"]:
    sys.exit("catastrophic regex alone: %d %s" % (code, body))
print("catastrophic regex: %d in %.3f s: %s" % (code, took, body["error"][:100]), file=sys.stderr)
# the expensive one runs into --query-timeout and says so
code, body, took = query(SLOW)
if code != 503 or "query-timeout" not in body["error"]:
    sys.exit("expensive regex alone: %d %s after %.1f s" % (code, body, took))
print("expensive regex: %d after %.2f s" % (code, took), file=sys.stderr)

base_lat = [ingest(i) for i in range(3, 13)]

# the storm: 16 of each, and an agent's ingest meanwhile
results, done_at = [], []
def run(sel):
    r = query(sel)
    results.append((sel, r[0], r[1]))
    done_at.append(time.monotonic())
ths = [threading.Thread(target=run, args=(s,)) for s in [SLOW] * 24 + [CAT] * 16]
for t in ths:
    t.start()
time.sleep(0.3)
lat = [ingest(i) for i in range(13, 23)]
ingest_end = time.monotonic()
for t in ths:
    t.join()
bad = [(s, c, b) for s, c, b in results if (s == CAT and c != 400) or (s == SLOW and c != 503)]
if bad:
    sys.exit("storm answers: %s" % bad[:3])
last = max(done_at)
print("ingest median %.1f ms alone, %.1f ms (max %.1f ms) during 40 bad queries; "
      "the last ingest ended %.1f s before the last query" %
      (1e3 * statistics.median(base_lat), 1e3 * statistics.median(lat), 1e3 * max(lat),
       last - ingest_end), file=sys.stderr)
if ingest_end > last:
    sys.exit("10 ingests took longer than the 40 queries: ingest waited for them")
PY
ok "a catastrophic regex is a 400 naming it, an expensive one a 503 at --query-timeout, ingest goes on beside them"
