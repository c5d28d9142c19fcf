#!/usr/bin/env python3
"""offcpu_check.py - reads what the server stored of off-CPU time for one
run of tests/programs/offcpu_prog and checks it against what the program
measured itself (offcpu_test.sh runs it).

usage: offcpu_check.py CHECK BASE_URL COMM [ARGS...]
  total    COMM [LABEL=V]           prints the off-CPU total (ns) of COMM
  split    COMM SLEEP_NS PIPE_NS    sleep_fn and pipe_fn within 15 %, split 5 pp
  migrate  COMM MIGRATE_NS          migrate_fn within 15 % (counted once)
  sample   COMM NAP_NS              nap_fn at p = 0.1 within 20 % of p = 1
  busy     COMM CPU_NS              a CPU-bound process: off-CPU < 1 % of its CPU
  labels   COMM                     its off-CPU series have its CPU series' labels
  diff     COMM                     p = 1 against p = 0.1 as a diff
  ready    COMM FUNC                both agents' stacks of COMM keep FUNC
  stacks   COMM                     prints the off-CPU stacks and total of COMM
  metric   COUNTER                  prints the agent's counter from /metrics
Exits non-zero with a message on the first failed check."""
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

OFF = "off_cpu:time:nanoseconds:time:nanoseconds:delta"
CPU = "process_cpu:samples:count:cpu:nanoseconds:delta"


def get(server, path, **params):
    url = server + path + "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        if e.code == 404:       # no series match the selector
            return None
        raise


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def sel(typ, comm, **labels):
    ms = ['comm="%s"' % comm] + ['%s="%s"' % kv for kv in sorted(labels.items())]
    return "%s{%s}" % (typ, ",".join(ms))


def cum(base, selector, names):
    """name -> cumulative value in the selector's top table (0 if absent)."""
    body = get(base, "/api/v1/top", query=selector, **{"from": "now-1h"}, limit=100000)
    out = dict.fromkeys(names, 0)
    if body is None:
        return out
    for r in json.loads(body)["rows"]:
        if r["name"] in out:
            out[r["name"]] = max(out[r["name"]], r["cum"])
    return out


def total(base, selector):
    body = get(base, "/api/v1/query", query=selector, **{"from": "now-1h"}, format="folded")
    if body is None:
        return 0
    return sum(int(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.strip())


def within(got, want, tol, what):
    if want <= 0:
        fail("%s: nothing measured to compare with" % what)
    err = got / want - 1
    print("%s: stored %.1f ms, measured %.1f ms (%+.1f %%)" % (what, got / 1e6, want / 1e6, 100 * err))
    if abs(err) > tol:
        fail("%s: off by %+.1f %% (limit %.0f %%)" % (what, 100 * err, 100 * tol))


def series_labels(base, typ, comm):
    body = get(base, "/api/v1/range", query=sel(typ, comm, sample="1"),
               **{"from": "now-1h"}, to="now")
    if body is None:
        return []
    out = []
    for s in json.loads(body)["series"]:
        out.append({k: v for k, v in s["labels"].items() if k != "__name__"})
    return sorted(out, key=lambda d: sorted(d.items()))


def main():
    check, base = sys.argv[1], sys.argv[2]
    a = sys.argv[3:]
    if check == "total":
        labels = dict(kv.split("=", 1) for kv in a[1:])
        print(total(base, sel(OFF, a[0], **labels)))
    elif check == "split":
        comm, s_ns, p_ns = a[0], int(a[1]), int(a[2])
        c = cum(base, sel(OFF, comm, sample="1"), ["sleep_fn", "pipe_fn"])
        within(c["sleep_fn"], s_ns, 0.15, "sleep_fn")
        within(c["pipe_fn"], p_ns, 0.15, "pipe_fn")
        got = 100 * c["sleep_fn"] / (c["sleep_fn"] + c["pipe_fn"])
        want = 100 * s_ns / (s_ns + p_ns)
        print("split: sleep_fn %.1f %% stored, %.1f %% measured" % (got, want))
        if abs(got - want) > 5:
            fail("split off by %.1f points (limit 5)" % (got - want))
    elif check == "migrate":
        comm, m_ns = a[0], int(a[1])
        c = cum(base, sel(OFF, comm, sample="1"), ["migrate_fn"])
        within(c["migrate_fn"], m_ns, 0.15, "migrate_fn")
    elif check == "sample":
        comm, n_ns = a[0], int(a[1])
        p1 = cum(base, sel(OFF, comm, sample="1"), ["nap_fn"])["nap_fn"]
        p01 = cum(base, sel(OFF, comm, sample="0.1"), ["nap_fn"])["nap_fn"]
        within(p1, n_ns, 0.15, "nap_fn at p = 1 against the program")
        within(p01, p1, 0.20, "nap_fn at p = 0.1 against p = 1")
    elif check == "busy":
        comm, cpu_ns = a[0], int(a[1])
        cpu = total(base, sel(CPU, comm, sample="1"))
        if cpu <= 0:
            fail("no CPU samples of %s: the agent did not see it" % comm)
        off = total(base, sel(OFF, comm, sample="1"))
        print("busy: %d CPU samples, %.2f ms off the CPU for %.0f ms of CPU time"
              % (cpu, off / 1e6, cpu_ns / 1e6))
        if off > 0.01 * cpu_ns:
            fail("a CPU-bound process spent %.1f ms off the CPU (limit 1 %% of %.0f ms)"
                 % (off / 1e6, cpu_ns / 1e6))
    elif check == "labels":
        off, cpu = series_labels(base, OFF, a[0]), series_labels(base, CPU, a[0])
        if not off or not cpu:
            fail("labels: off-CPU series %s, CPU series %s" % (off, cpu))
        if off != cpu:
            fail("labels differ: off-CPU %s, CPU %s" % (off, cpu))
        print("labels: %s" % off)
    elif check == "diff":
        body = get(base, "/api/v1/diff", base=sel(OFF, a[0], sample="1"),
                   compare=sel(OFF, a[0], sample="0.1"), **{"from": "now-1h"})
        if body is None:
            fail("diff: no series")
        d = json.loads(body)
        if not d["base"]["total"] or not d["compare"]["total"]:
            fail("diff: a side is empty: %s %s" % (d["base"]["total"], d["compare"]["total"]))
        print("diff: base %.1f ms, compare %.1f ms" % (d["base"]["total"] / 1e6,
                                                      d["compare"]["total"] / 1e6))
    elif check == "ready":
        # FUNC on the stacks of both agents: it called libc's nanosleep,
        # which has no frame pointer, so only a table walk keeps it
        for sample in ("1", "0.1"):
            body = get(base, "/api/v1/query", query=sel(OFF, a[0], sample=sample),
                       **{"from": "now-1m"}, format="folded")
            if not any(";%s;" % a[1] in l for l in (body or "").splitlines()):
                fail("not yet for sample=%s" % sample)
    elif check == "stacks":
        body = get(base, "/api/v1/query", query=sel(OFF, a[0]), **{"from": "now-1h"},
                   format="folded")
        lines = [l for l in (body or "").splitlines() if l.strip()]
        print(len(lines), sum(int(l.rsplit(" ", 1)[1]) for l in lines))
    elif check == "metric":
        want = 'counter="%s"' % a[0]
        for line in get(base, "/metrics").splitlines():
            if line.startswith("smolder_agent_reported_total{") and want in line:
                print(line.rsplit(" ", 1)[1])
                return
        print(-1)
    else:
        fail("unknown check " + check)


if __name__ == "__main__":
    main()
