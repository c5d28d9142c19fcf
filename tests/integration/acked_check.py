#!/usr/bin/env python3
"""acked_check.py DIR - compares what tests/tools/pusher sent with what a
server stored, for the crash tests (crash_test.sh, clickhouse_test.sh).

DIR/log holds the pusher's lines "PUSHER BATCH SAMPLES STATUS", one per
attempt (with --resend a batch may come more than once: it counts as
acknowledged when any attempt got a 200); DIR/range.PUSHER holds each
pusher's /api/v1/range?by=batch answer. Every acknowledged batch must be
stored exactly (its samples once), every other one whole or not at all,
and nothing stored that was never sent. Prints the counts; exits 1 after
printing each batch that breaks the rule.
"""
import json
import os
import sys

tmp = sys.argv[1]
sent = {}
for line in open(os.path.join(tmp, "log")):
    p, b, total, code = line.split()
    t, acked, tries = sent.get((p, b), (int(total), False, 0))
    sent[(p, b)] = (t, acked or code == "200", tries + 1)
stored = {}
for p in sorted({k[0] for k in sent}):
    for s in json.load(open(os.path.join(tmp, "range." + p)))["series"]:
        stored[(p, s["labels"]["batch"])] = sum(int(v[1]) for v in s["values"])
bad = resent = whole = 0
for k, (total, acked, tries) in sent.items():
    got = stored.pop(k, 0)
    resent += tries > 1
    if acked and got != total:
        print("acknowledged batch %s %s: stored %d samples, sent %d" % (k + (got, total)))
        bad += 1
    elif not acked and got not in (0, total):
        print("unacknowledged batch %s %s stored partly: %d of %d" % (k + (got, total)))
        bad += 1
    elif not acked and got:
        whole += 1
for k, got in stored.items():
    print("batch %s %s stored (%d samples) but never sent" % (k + (got,)))
    bad += 1
print("%d batches, %d acknowledged, %d sent more than once, %d unacknowledged stored whole" %
      (len(sent), sum(1 for v in sent.values() if v[1]), resent, whole))
sys.exit(1 if bad else 0)
