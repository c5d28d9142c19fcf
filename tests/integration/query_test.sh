#!/bin/sh
# query_test.sh - the read API end to end: the storage benchmark's smoke
# fleet (known totals) in a temporary data dir, the real smolder-server on
# a loopback port, and checks over HTTP of merge totals, every matcher
# operator, diff, top, range, discovery, folded and pprof output (its main
# mapping and sample type read back by go tool pprof -raw), the error a bad
# query gets, and what a selector that selects nothing is told. Cleans up on any exit.
set -eu

. "$(dirname "$0")/fleet.sh"

SMOLDER_BASE=$base SMOLDER_GO_PPROF=$(dirname "$0")/../data/go-cpu.pb.gz \
	python3 - <<'PY' || fail "API checks"
import gzip, json, os, sys, urllib.error, urllib.parse, urllib.request

base = os.environ["SMOLDER_BASE"]
T = "process_cpu:samples:count:cpu:nanoseconds:delta"
RANGE = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
TOTAL = 160423
n = 0

def get(path, **params):
    q = dict(RANGE)
    q.update(params)
    url = base + path + "?" + urllib.parse.urlencode(q)
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()

def js(path, **params):
    st, ct, body = get(path, **params)
    assert st == 200, (path, params, st, body[:300])
    assert ct.startswith("application/json"), ct
    return json.loads(body)

def ok(what):
    global n
    n += 1
    print("ok %d - %s" % (n, what))

def total(sel, **kw):
    return js("/api/v1/query", query=sel, **kw)["total"]

assert js("/api/v1/types") == [T]; ok("types")
names = js("/api/v1/labels")
assert names == ["comm", "exe", "hostname", "service", "version"], names; ok("label names")
services = js("/api/v1/labels/service/values")
assert len(services) >= 2 and services == sorted(services); ok("label values")
hosts = js("/api/v1/labels/hostname/values", query='{service="%s"}' % services[0])
assert 1 <= len(hosts) <= 2; ok("label values restricted by a selector")

assert total("{}") == TOTAL; ok("merge total of everything")
assert total(T + "{}") == TOTAL; ok("explicit type")
per = {s: total('{service="%s"}' % s) for s in services}
assert sum(per.values()) == TOTAL and all(v > 0 for v in per.values()), per; ok("= per service")
s0, s1 = services[0], services[1]
assert total('{service!="%s"}' % s0) == TOTAL - per[s0]; ok("!=")
assert total('{service=~"%s|%s"}' % (s0, s1)) == per[s0] + per[s1]; ok("=~ alternatives")
def nomatch(path="/api/v1/query", param="query", sel="{}", **kw):
    """The 404 a selector selecting no series gets: its JSON body."""
    st, ct, body = get(path, **{param: sel}, **kw)
    e = json.loads(body)
    assert st == 404 and "no_match" in e and e["error"].startswith(
        ("no series match", "compare: no series match", "base: no series match")), (st, body[:300])
    return e
nomatch(sel='{service=~"%s"}' % s0[:-1]); ok("=~ is anchored")
assert total('{service!~"%s|%s"}' % (s0, s1)) == TOTAL - per[s0] - per[s1]; ok("!~")
nomatch(sel='{service="%s", service="%s"}' % (s0, s1)); ok("matchers intersect")

# a selector that selects nothing says so, naming the matcher and the
# closest values by edit distance, on /query, /top and either side of /diff
typo = s0[:2] + s0[3] + s0[2] + s0[4:]        # two letters swapped
e = nomatch(sel='{service="%s"}' % typo)
assert 'did you mean service="%s"?' % s0 in e["error"], e["error"]
m = e["no_match"]["matchers"]
assert [x["label"] for x in m] == ["__name__", "service"] and m[1]["did_you_mean"] == s0, m
assert m[1]["closest"][0] == s0 and len(m[1]["closest"]) <= 3 and not m[1]["matches_alone"], m
ok("a typo in a value: 404 naming it, did you mean the closest value")
e = nomatch("/api/v1/top", sel='{servce="%s"}' % s0)
assert "no series has a label servce; did you mean service?" in e["error"], e["error"]
ok("a typo in a label name: the closest label names")
e = nomatch(sel='process_cpu:sample:count:cpu:nanoseconds:delta{}')
assert "did you mean %s?" % T in e["error"], e["error"]; ok("a typo in the type: the closest type")
hosts0 = js("/api/v1/labels/hostname/values", query='{service="%s"}' % s0)
other = [h for h in js("/api/v1/labels/hostname/values") if h not in hosts0]
if other:
    e = nomatch(sel='{service="%s", hostname="%s"}' % (s0, other[0]))
    assert "no series matches them all" in e["error"], e["error"]; ok("matchers that exclude each other")
e = nomatch(sel="{}", **{"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"})
assert e["no_match"]["empty_range"] and "nothing at all was stored" in e["error"], e
assert "widen it" in e["error"], e; ok("an empty range says so, and that there is data elsewhere")
e = nomatch(sel='{service="%s"}' % s0, **{"from": "2026-01-01T02:00:00Z", "to": "2026-01-01T03:00:00Z"})
assert e["no_match"]["outside_range"] and "outside that range" in e["error"], e; ok("matches outside the range: widen it")
e = nomatch("/api/v1/diff", "compare", '{service="%s"}' % typo, base='{service="%s"}' % s0)
assert e["error"].startswith("compare: ") and e["parameter"] == "compare", e; ok("diff names the side that matches nothing")
first_half = total("{}", to="2026-01-01T00:30:00Z")
assert 0 < first_half < TOTAL; ok("time range narrows")

st, ct, body = get("/api/v1/query", query="{}", format="folded")
lines = body.decode().splitlines()
assert sum(int(l.rsplit(" ", 1)[1]) for l in lines) == TOTAL; ok("folded sums to the total")
st, ct, body = get("/api/v1/query", query="{}", format="pprof")
raw = gzip.decompress(body)
assert st == 200 and len(raw) > 100; ok("pprof is gzip'd protobuf")
# and the reference reader agrees on the total
import subprocess, tempfile
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "p.pb.gz")
    open(path, "wb").write(body)
    out = subprocess.run(["go", "tool", "pprof", "-top", "-nodecount=3", path],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, HOME=d, GOCACHE=os.path.join(d, "c"))).stdout
    assert "of %d total" % TOTAL in out, out
ok("go tool pprof -top reads our pprof with the same total")

def gopprof(body, *args):
    """go tool pprof ARGS on a pprof body: its standard output."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p.pb.gz")
        open(path, "wb").write(body)
        r = subprocess.run(["go", "tool", "pprof", *args, path], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, HOME=d, GOCACHE=os.path.join(d, "c")))
        assert r.returncode == 0, r.stderr
        return r.stdout

def mappings(raw):
    """-raw's Mappings section: [(id, file)]."""
    sec = raw.split("\nMappings\n", 1)[1].splitlines()
    out = []
    for l in sec:
        if not l.strip():
            break
        mid, rest = l.split(": ", 1)
        f = rest.split(" ", 1)[1].strip() if " " in rest else ""
        out.append((int(mid), f.split("  [")[0].strip() if f and not f.startswith("[FN]") else ""))
    return out

# the main mapping: the selection's executable, or none when it spans several
exe0 = js("/api/v1/labels/exe/values")[0]
st, _, body = get("/api/v1/query", query='{exe="%s"}' % exe0, format="pprof")
raw = gopprof(body, "-raw")
ms = mappings(raw)
assert ms[0] == (1, exe0) and (2, "[kernel.kallsyms]") in ms, ms
assert "File: %s" % os.path.basename(exe0) in gopprof(body, "-top"); ok("pprof: the main mapping is the selection's executable")
st, _, body = get("/api/v1/query", query="{}", format="pprof")
ms = mappings(gopprof(body, "-raw"))
assert ms[0] == (1, "") and (2, "[kernel.kallsyms]") in ms, ms
assert "File:" not in gopprof(body, "-top"); ok("pprof: no main mapping when the selection spans several executables")
raw = gopprof(body, "-raw")
assert "\nSamples:\nsamples/count\n" in raw and "PeriodType: cpu nanoseconds" in raw, raw[:300]
assert "Duration: 24h" in raw, raw[:300]; ok("pprof: sample type/unit and period type from the profile type, the range as time and duration")

tree = js("/api/v1/query", query="{}", max_nodes="10")
def count(n): return 1 + sum(count(c) for c in n["children"])
assert tree["total"] == TOTAL and count(tree) <= 40; ok("max_nodes folds")

d = js("/api/v1/diff", base='{service="%s"}' % s0, compare='{service="%s"}' % s1)
assert d["base"]["total"] == per[s0] and d["compare"]["total"] == per[s1], d["base"]; ok("diff by selector")
d = js("/api/v1/diff", base="{}", compare="{}", base_to="2026-01-01T00:30:00Z",
       compare_from="2026-01-01T00:30:00.000000001Z")
assert d["base"]["total"] == first_half and d["compare"]["total"] == TOTAL - first_half; ok("diff by range")

top = js("/api/v1/top", query="{}", limit="5")
rows = top["rows"]
assert top["total"] == TOTAL and len(rows) == 5; ok("top limit")
assert all(rows[i]["flat"] >= rows[i + 1]["flat"] for i in range(4)); ok("top order")
assert all(r["cum"] >= r["flat"] for r in rows); ok("top cum >= flat")

r = js("/api/v1/range", query="{}", step="10m", by="service")
assert sorted(s["labels"]["service"] for s in r["series"]) == services; ok("range by label")
assert sum(v for s in r["series"] for _, v in s["values"]) == TOTAL; ok("range sums to the total")
assert all(v[0] % 600 == 0 for s in r["series"] for v in s["values"]); ok("range steps")
r = js("/api/v1/range", query="{}", step="10m", by="service", limit="1")
lines = r["series"]
assert len(lines) == 2 and lines[1]["labels"] == {} and lines[1]["other"] == len(services) - 1, \
    [(l["labels"], l.get("other")) for l in lines]
heaviest = max(per.values())
assert sum(v for _, v in lines[0]["values"]) == heaviest and \
    sum(v for s in lines for _, v in s["values"]) == TOTAL; ok("range limit: the heaviest line and other")
assert total("{}", raw="1") == TOTAL and total('{service="%s"}' % s0, raw="true") == per[s0]
ok("raw=1 gives the same totals")
st, ct, body = get("/api/v1/query", query="{}", raw="maybe")
assert st == 400 and b"raw" in body, body; ok("a bad raw is a 400")

st, ct, body = get("/api/v1/query", query='{service=~"("}')
e = json.loads(body)
assert st == 400 and e["parameter"] == "query" and "position" in e, (st, e); ok("bad regex is a 400 with a position")
st, ct, body = get("/api/v1/query", query='{service="x"')
assert st == 400 and json.loads(body)["position"] == 12, body; ok("unterminated selector")
st, ct, body = get("/api/v1/query", query="{}", format="xml")
assert st == 400; ok("unknown format")
st, ct, body = get("/api/v1/range", query="{}", step="1ms")
assert st == 400; ok("too many range points")

# pprof ingest: our own pprof output posted back under another name keeps
# every frame's name and every value
def post(path, data, **params):
    url = base + path + "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

st, _, pp = get("/api/v1/query", query="{}", format="pprof")
st, body = post("/api/v1/ingest/pprof", pp, __name__="replay", service="replay")
assert st == 200 and json.loads(body)["rows"] == 2000, (st, body); ok("pprof ingest (gzip'd)")
st, body = post("/api/v1/ingest/pprof", gzip.decompress(pp), __name__="replay", service="plain")
assert st == 200, body; ok("pprof ingest (plain)")
RT = "replay:samples:count:cpu:nanoseconds:delta"
# the export carries its range's start as the profile's time, so the
# replay lands where the original rows are
assert RT in js("/api/v1/types"); ok("ingested type listed, at the exported profile's time")
def folded(sel, **rng):
    st, _, body = get("/api/v1/query", query=sel, format="folded", **rng)
    assert st == 200, body
    return sorted(l.replace("_[k]", "") for l in body.decode().splitlines())
now = RANGE
assert folded(RT + '{service="replay"}', **now) == folded("{}"); ok("ingested names and values kept")
assert js("/api/v1/query", query=RT + "{}", **now)["total"] == 2 * TOTAL; ok("both posts stored")
# a CPU profile recorded from a real Go program with runtime/pprof
# (tests/data/go-cpu.pb.gz); `go tool pprof -top` on it: 1500ms in all,
# main.spinA 1260ms flat, main.spinB 240ms flat, runtime.main cum 1500ms
gp = open(os.environ["SMOLDER_GO_PPROF"], "rb").read()
st, body = post("/api/v1/ingest/pprof", gp, service="gosvc")
assert st == 200 and json.loads(body)["series"] == 2, body; ok("Go runtime/pprof profile ingested")
GO = {"from": "2026-11-26T06:55:00Z", "to": "2026-11-26T06:57:00Z"}
assert js("/api/v1/query", query='{service="gosvc"}', **GO)["total"] == 150; ok("Go samples total")
cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds:delta"
assert js("/api/v1/query", query=cpu + '{service="gosvc"}', **GO)["total"] == 1500000000; ok("Go cpu nanoseconds total")
top = {r["name"]: r for r in js("/api/v1/top", query=cpu + '{service="gosvc"}', **GO)["rows"]}
assert top["main.spinA"]["flat"] == 1260000000 and top["main.spinB"]["flat"] == 240000000, top
assert top["runtime.main"]["cum"] == 1500000000; ok("Go function names and values as go tool pprof shows them")
st, _, body = get("/api/v1/query", query=cpu + '{service="gosvc"}', format="pprof", **GO)
raw = gopprof(body, "-raw")
assert "\nSamples:\ncpu/nanoseconds\n" in raw, raw[:300]
t = gopprof(body, "-top")
assert "Type: cpu" in t and "Total samples = 1500ms" in t, t[:400]; ok("pprof export of a cpu/nanoseconds type: Type: cpu, its values as durations")

# discovery narrowed by a selector (one without a type selects the
# default type, as everywhere)
assert js("/api/v1/types", **GO) == sorted([T, cpu]); ok("types of every series")
assert js("/api/v1/types", query=cpu + '{service="gosvc"}', **GO) == [cpu]
assert js("/api/v1/types", query='{service="nobody"}', **GO) == []; ok("types narrowed by query")

# a function name that is not UTF-8, as a profile may carry it (pprof
# strings are bytes): stored as it came, answered as valid JSON with U+FFFD
def varint(v):
    out = b""
    while True:
        b, v = v & 0x7f, v >> 7
        out += bytes([b | (0x80 if v else 0)])
        if not v:
            return out
def field(num, payload):
    return varint(num << 3 | 2) + varint(len(payload)) + payload
def vfield(num, v):
    return varint(num << 3) + varint(v)
strings = [b"", b"samples", b"count", b"bad\xff\xfe\xc3name", b"cpu", b"nanoseconds"]
prof = (field(1, vfield(1, 1) + vfield(2, 2)) +
        field(2, field(1, varint(1)) + field(2, varint(7))) +
        field(2, field(1, varint(1)) + field(2, varint(3))) +
        field(4, vfield(1, 1) + field(4, vfield(1, 1))) +
        field(5, vfield(1, 1) + vfield(2, 3)) +
        b"".join(field(6, x) for x in strings) +
        vfield(9, 1767225600 * 10**9) + field(11, vfield(1, 4) + vfield(2, 5)))
st, body = post("/api/v1/ingest/pprof", prof, service="badutf8")
assert st == 200, body
# two samples of one stack: one stack, two rows
assert json.loads(body)["stacks"] == 1 and json.loads(body)["rows"] == 2, body
ok("pprof ingest counts distinct stacks")
st, ct, raw = get("/api/v1/query", query='{service="badutf8"}')
assert st == 200, raw
text = raw.decode("utf-8")   # strict: fails on any invalid byte
assert "bad\ufffd\ufffd\ufffdname" in json.dumps(json.loads(text), ensure_ascii=False), text
st, ct, raw = get("/api/v1/top", query='{service="badutf8"}')
json.loads(raw.decode("utf-8")); ok("a name that is not UTF-8 comes out as valid JSON, U+FFFD")

st, body = post("/api/v1/ingest/pprof", b"garbage")
assert st == 400 and "pprof" in json.loads(body)["error"]; ok("garbage is a 400")
st, body = post("/api/v1/ingest/pprof", b"")
assert st == 400; ok("empty body is a 400")
st, body = post("/api/v1/ingest/pprof", b"\x1f\x8b\x08\x00garbage")
assert st == 400 and "gzip" in json.loads(body)["error"]; ok("bad gzip is a 400")
st, body = post("/api/v1/ingest/pprof", pp, __name__="bad name")
assert st == 400; ok("bad __name__ is a 400")
st, body = post("/api/v1/ingest/pprof", pp, **{"9bad": "x"})
assert st == 400 and "label" in json.loads(body)["error"], body; ok("bad label name is a 400")
PY

kill -TERM "$pid"
wait "$pid" || fail "server exit status $?"
pid=""
echo "query_test: all checks passed"
