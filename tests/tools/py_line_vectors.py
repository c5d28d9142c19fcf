"""py_line_vectors.py - prints line-table test vectors for
tests/unit/py_lines.h from the interpreter that runs it: for a few
functions, the raw line table, co_firstlineno and the line CPython itself
gives every instruction (co_positions from 3.11, co_lines in 3.10,
dis.findlinestarts before). Run it with each version to test:

  for py in python3.8 python3.9 python3.10 python3.11 python3.12 python3.13; do
      $py tests/tools/py_line_vectors.py; done > tests/unit/py_lines.h.in
"""
import dis
import sys


def plain(n):
    s = 0
    for i in range(n):
        s += i
    return s


def spread(a,
           b):
    x = (a +
         b)
    if x > 3:
        y = [i
             for i in range(x)]
    else:
        y = None
    return (x,
            y)


def far(a):
    b = a + 1
    # a long gap, so a line delta does not fit one table entry














































































































































    c = b * 2
    try:
        d = c / a
    except ZeroDivisionError:
        d = 0
    while d > 1:
        d -= 1
    return d


def lines_311(co):
    return [p[0] or 0 for p in co.co_positions()]


def lines_310(co):
    n = len(co.co_code) // 2
    out = [0] * n
    for start, end, line in co.co_lines():
        for off in range(start, end, 2):
            out[off // 2] = line or 0
    return out


def lines_38(co):
    starts = dict(dis.findlinestarts(co))
    out, cur = [], co.co_firstlineno
    for off in range(0, len(co.co_code), 2):
        cur = starts.get(off, cur)
        out.append(cur)
    return out


def main():
    v = sys.version_info
    if v >= (3, 11):
        table, lines = "co_linetable", lines_311
    elif v >= (3, 10):
        table, lines = "co_linetable", lines_310
    else:
        table, lines = "co_lnotab", lines_38
    for f in (plain, spread, far):
        co = f.__code__
        t = getattr(co, table)
        print("\t{%d, %d, \"%s\", %d, %d," % (v[0], v[1], f.__name__, co.co_firstlineno, len(t)))
        print("\t \"%s\"," % "".join("\\x%02x" % b for b in t))
        ls = lines(co)
        print("\t %d, (const int32_t[]){%s}}," % (len(ls), ", ".join(str(x) for x in ls)))


main()
