#!/usr/bin/env python3
"""prom_check.py FILE - checks a Prometheus text exposition (format 0.0.4)
strictly enough to catch what a scraper would choke on or misread, and
prints {"name{labels}": value} of every sample as JSON for the test to look
values up. Exits 1 with the first problem on stderr.

Checked: every line is a comment, blank, or `name{labels} value`; names and
label names are valid; label values are properly escaped; each family has
one HELP and one TYPE, both before its samples, and its samples are
contiguous; no family or sample appears twice; counters end in _total;
histograms have _bucket (with le, ascending, +Inf last, cumulative),
_sum and _count equal to the +Inf bucket.
"""
import json
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LNAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def die(n, msg):
    sys.stderr.write("line %d: %s\n" % (n, msg))
    sys.exit(1)


def parse_labels(n, s):
    """s starts after '{'; returns (list of (name, value), rest after '}')."""
    out = []
    i = 0
    while True:
        if s[i:i + 1] == "}":
            return out, s[i + 1:]
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", s[i:])
        if not m:
            die(n, "bad label at %r" % s[i:])
        i += m.end()
        v = []
        while True:
            if i >= len(s):
                die(n, "unterminated label value")
            c = s[i]
            if c == "\\":
                e = s[i + 1:i + 2]
                if e not in ("\\", '"', "n"):
                    die(n, "bad escape \\%s" % e)
                v.append({"\\": "\\", '"': '"', "n": "\n"}[e])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                v.append(c)
                i += 1
        out.append((m.group(1), "".join(v)))
        if s[i:i + 1] == ",":
            i += 1
        elif s[i:i + 1] != "}":
            die(n, "expected , or } at %r" % s[i:])


def family_of(name, types):
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[:-len(suf)]) in ("histogram", "summary"):
            return name[:-len(suf)]
    return name


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    if text and not text.endswith("\n"):
        die(0, "no newline at the end")
    helps, types, done, samples = {}, {}, set(), {}
    cur = None
    hist = {}   # family -> {labels without le -> [(le, v)], sum, count}
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    die(n, "bad metric name %r" % name)
                if name in done:
                    die(n, "family %s again after its samples" % name)
                d = helps if parts[1] == "HELP" else types
                if name in d:
                    die(n, "second %s for %s" % (parts[1], name))
                if parts[1] == "TYPE":
                    if len(parts) != 4 or parts[3] not in TYPES:
                        die(n, "bad TYPE line")
                    if parts[3] == "counter" and not name.endswith("_total"):
                        die(n, "counter %s does not end in _total" % name)
                d[name] = parts[3] if len(parts) == 4 else ""
                if cur and cur != name:
                    done.add(cur)
                cur = name
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{?)(.*)$", line)
        if not m:
            die(n, "bad sample line %r" % line)
        name = m.group(1)
        labels, rest = parse_labels(n, m.group(3)) if m.group(2) else ([], m.group(3))
        if len({k for k, _ in labels}) != len(labels):
            die(n, "repeated label name")
        f = rest.split()
        if len(f) not in (1, 2) or not rest.startswith(" "):
            die(n, "bad value in %r" % line)
        try:
            v = float(f[0])
        except ValueError:
            die(n, "bad value %r" % f[0])
        fam = family_of(name, types)
        if fam not in helps or fam not in types:
            die(n, "sample of %s before its HELP and TYPE" % fam)
        if fam in done:
            die(n, "samples of %s are not contiguous" % fam)
        if fam != cur:
            done.add(cur)
            cur = fam
        if types[fam] == "counter" and (v < 0 or math.isnan(v)):
            die(n, "counter %s is %s" % (name, f[0]))
        key = name + ("{" + ",".join('%s="%s"' % (k, val.replace("\\", "\\\\")
                      .replace('"', '\\"').replace("\n", "\\n")) for k, val in labels) + "}"
                      if labels else "")
        if key in samples:
            die(n, "sample %s twice" % key)
        samples[key] = int(v) if v.is_integer() and abs(v) < 2**53 else v
        if types[fam] == "histogram":
            rest_l = tuple((k, x) for k, x in labels if k != "le")
            h = hist.setdefault(fam, {}).setdefault(rest_l, {"b": [], "sum": None, "count": None})
            if name == fam + "_bucket":
                le = dict(labels).get("le")
                if le is None:
                    die(n, "bucket without le")
                h["b"].append((float(le), v))
            elif name == fam + "_sum":
                h["sum"] = v
            elif name == fam + "_count":
                h["count"] = v
            else:
                die(n, "histogram %s has sample %s" % (fam, name))
    for fam, by in hist.items():
        for lab, h in by.items():
            les = [le for le, _ in h["b"]]
            if not les or les[-1] != math.inf or les != sorted(les):
                die(0, "%s%s: buckets not ascending to +Inf" % (fam, lab))
            vs = [v for _, v in h["b"]]
            if vs != sorted(vs):
                die(0, "%s%s: buckets not cumulative" % (fam, lab))
            if h["count"] != vs[-1] or h["sum"] is None:
                die(0, "%s%s: _count differs from +Inf bucket or no _sum" % (fam, lab))
    for fam in set(helps) | set(types):
        if fam not in helps or fam not in types:
            die(0, "%s lacks HELP or TYPE" % fam)
    json.dump(samples, sys.stdout, indent=0, sort_keys=True)


main()
