#!/bin/sh
# limits_test.sh - hostile clients against the real server, its memory
# read as the kernel's high-water mark of its resident set (VmHWM in
# /proc/PID/status), never timed:
#  - 20 unauthenticated 64 MiB bodies at once to /healthz (half chunked)
#    are answered 413 and leave the peak under 256 MB;
#  - a 64 KB gzip of 32 million empty pprof samples, to both pprof ingest
#    routes, is answered 413 and leaves the peak under 256 MB;
#  - 1,100 connections trickling their headers a byte at a time, with the
#    server started under a soft descriptor limit of 1,024 (a common
#    default), leave /healthz answering a new client; they are closed at
#    the header deadline; and with a hard limit of 1,024 as well the cap
#    falls to what fits and new clients take the place of the oldest.
# Binaries from $SMOLDER_SERVER; the numbers go to stderr for
# docs/reliability.md.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3.11
LIMIT_KB=$((256 * 1000))

hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB$/\1/p' /proc/"$pid"/status; }

printf 'write-secret-0123456789\n' >"$tmp/token"
chmod 600 "$tmp/token"
# the soft limit of many a login and service manager; the hard one stays
start() {
	: >"$tmp/out"
	(ulimit -S -n "$1"; shift; exec "$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/data" \
		--auth-token-file "$tmp/token" "$@" >"$tmp/out" 2>"$tmp/err") &
	pid=$!
	i=0
	while ! grep -q '^smolder-server listening on http://' "$tmp/out"; do
		kill -0 "$pid" 2>/dev/null || fail "server exited before listening"
		i=$((i + 1)); [ "$i" -le 200 ] || fail "server did not listen within 20 s"
		sleep 0.1
	done
	base=$(sed -n 's/^smolder-server listening on \(http:\/\/127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$tmp/out")
	port=${base##*:}
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

start 1024
h0=$(hwm)

# ---- 20 unauthenticated 64 MiB bodies to a route that takes none
$PY - "$port" <<'PY' || fail "bodies to /healthz"
import socket, sys, threading
port, N, SIZE = int(sys.argv[1]), 20, 64 << 20
status = []
def one(i):
    s = socket.create_connection(("127.0.0.1", port))
    chunked = i % 2
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" +
              (b"Transfer-Encoding: chunked\r\n\r\n" if chunked else
               b"Content-Length: %d\r\n\r\n" % SIZE))
    piece = b"x" * (1 << 20)
    try:
        for _ in range(SIZE // len(piece)):
            s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n" if chunked else piece)
    except OSError:
        pass   # the server stopped reading after its answer: expected
    s.settimeout(10)
    data = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except OSError:
        pass
    status.append(data.split(b"\r\n", 1)[0])
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
for t in ts: t.start()
for t in ts: t.join()
bad = [x for x in status if not x.startswith(b"HTTP/1.1 413")]
if len(status) != N or bad:
    sys.exit("answers: %s" % status)
PY
h1=$(hwm)
echo "20 x 64 MiB bodies to /healthz: all 413; VmHWM ${h0} kB before, ${h1} kB after" >&2
[ "$h1" -lt "$LIMIT_KB" ] || fail "peak RSS ${h1} kB after the bodies"
ok "20 unauthenticated 64 MiB bodies to /healthz: 413, peak RSS ${h1} kB"

# ---- the pprof bomb: 32 M empty samples ("\x12\x00"), 64 MiB inflated
$PY -c 'import gzip,sys; sys.stdout.buffer.write(gzip.compress(b"\x12\x00" * (32 << 20), 9))' \
	>"$tmp/bomb.gz"
for path in "/api/v1/ingest/pprof" "/ingest?name=bomb.cpu&format=pprof"; do
	c=$(curl -s -o "$tmp/resp" -w '%{http_code}' -H "Authorization: Bearer write-secret-0123456789" \
		--data-binary "@$tmp/bomb.gz" "$base$path")
	case $c in 413|400) ;; *) fail "pprof bomb to $path answered $c: $(cat "$tmp/resp")" ;; esac
done
h2=$(hwm)
echo "pprof bomb ($(wc -c <"$tmp/bomb.gz") bytes of gzip) to both routes: $c ($(cat "$tmp/resp")); VmHWM ${h2} kB" >&2
[ "$h2" -lt "$LIMIT_KB" ] || fail "peak RSS ${h2} kB after the pprof bomb"
ok "pprof bomb answered $c on both routes, peak RSS ${h2} kB"

# ---- 1,100 trickling connections; a new client asks /healthz
slowloris() {
	$PY - "$port" "$@" <<'PY'
import resource, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
msg = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 10000
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    socks.append([s, 0])
closed = 0
def trickle():
    global closed
    for e in socks:
        if e[0] is None:
            continue
        try:
            e[0].send(msg[e[1]:e[1] + 1])
            e[1] += 1
        except OSError:
            e[0].close()
            e[0] = None
            closed += 1
t0 = time.monotonic()
while time.monotonic() - t0 < 3:
    trickle()
    time.sleep(0.5)
t = time.monotonic()
c = socket.create_connection(("127.0.0.1", port), timeout=10)
c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
first = c.recv(4096).split(b"\r\n", 1)[0]
took = time.monotonic() - t
print("%d trickling connections: /healthz for a new one: %s in %.1f ms (%d of them closed by then)"
      % (n, first.decode(errors="replace"), took * 1e3, closed), file=sys.stderr)
if not first.startswith(b"HTTP/1.1 200"):
    sys.exit("/healthz answered %r" % first)
if len(sys.argv) > 3:
    # the header deadline (10 s) closes them however they trickle
    while time.monotonic() - t0 < 14 and closed < n:
        trickle()
        time.sleep(0.5)
    print("closed at the header deadline: %d of %d" % (closed, n), file=sys.stderr)
    if closed < n:
        sys.exit("%d trickling connections still open after 14 s" % (n - closed))
PY
}
slowloris 1100 deadline || fail "slowloris, soft descriptor limit 1024"
ok "1,100 trickling connections (soft fd limit 1,024): /healthz answers a new client; all closed at the header deadline"
stop

# the same with the hard limit at 1,024 too: the cap falls to what fits
# and the oldest trickler makes room for the new client
: >"$tmp/out"; : >"$tmp/err"   # the first server's lines must not be read as this one's
(ulimit -n 1024; exec "$SERVER" --listen 127.0.0.1:0 --data-dir "$tmp/data" >"$tmp/out" 2>"$tmp/err") &
pid=$!
i=0
while ! grep -q '^smolder-server listening on http://' "$tmp/out"; do
	kill -0 "$pid" 2>/dev/null || fail "server exited before listening"
	i=$((i + 1)); [ "$i" -le 200 ] || fail "server did not listen within 20 s"
	sleep 0.1
done
base=$(sed -n 's/^smolder-server listening on \(http:\/\/127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$tmp/out")
port=${base##*:}
grep -q 'serving at most 768 connections' "$tmp/err" || fail "no warning about the lowered cap"
slowloris 1100 || fail "slowloris, hard descriptor limit 1024"
curl -sf "$base/api/v1/status" | $PY -c 'import json,sys; c=json.load(sys.stdin)["connections"]; print("connections:", c, file=sys.stderr); sys.exit(0 if c["evicted"] > 0 else 1)' ||
	fail "no connection was evicted at the cap"
ok "1,100 trickling connections (hard fd limit 1,024, cap 768): /healthz answers a new client"
