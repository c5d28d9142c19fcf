#!/bin/sh
# debuginfo_test.sh - the debug-info store's two files per build ID
# (docs/protocol.md section 4) against the real smolder-server on a
# loopback port: stripped binaries, binaries with DWARF and separate debug
# files (objcopy --only-keep-debug), built here with gcc, uploaded in every
# order; where each lands, what HEAD's X-Smolder-Debuginfo headers say,
# which uploads are no-ops, and the 256 MiB limit. Cleans up on any exit.
set -eu

SERVER=${SMOLDER_SERVER:-bin/smolder-server}
. "$(dirname "$0")/lib.sh"

[ -x "$SERVER" ] || fail "$SERVER is not an executable (build it first)"

start_server 127.0.0.1:0
dir=$tmp/data/debuginfo

# build N: program N in four forms, $tmp/pN.{full,stripped,debug}, and its
# build ID in $bid (the same in all of them)
build() {
	printf 'int f%s(int x) { return x * %s; }\nint main(int c, char **v) { (void)v; return f%s(c); }\n' \
		"$1" "$1" "$1" >"$tmp/p$1.c"
	gcc -g -O1 -Wl,--build-id=sha1 -o "$tmp/p$1.full" "$tmp/p$1.c" || fail "gcc"
	strip -o "$tmp/p$1.stripped" "$tmp/p$1.full" || fail "strip"
	objcopy --only-keep-debug "$tmp/p$1.full" "$tmp/p$1.debug" || fail "objcopy"
	bid=$(LC_ALL=C readelf -n "$tmp/p$1.full" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p')
	[ ${#bid} -eq 40 ] || fail "readelf build ID '$bid'"
	# the test is only as good as its files: check them
	LC_ALL=C readelf -S "$tmp/p$1.debug" 2>/dev/null | grep -A1 ' \.text ' | grep -q NOBITS ||
		fail "objcopy --only-keep-debug kept .text"
	! LC_ALL=C readelf -S "$tmp/p$1.stripped" | grep -q '\.debug_info' || fail "strip kept DWARF"
}

# put FILE ID: the status of PUTting FILE; the body goes to $tmp/body
put() {
	curl -sS -X PUT -o "$tmp/body" -w '%{http_code}' --max-time 20 \
		--data-binary @"$1" "$base/api/v1/debuginfo/$2" || echo 000
}
# head ID: "STATUS KIND DWARF" (the X-Smolder-Debuginfo headers, - if absent)
head_() {
	c=$(curl -sS -I -o "$tmp/hdr" -w '%{http_code}' --max-time 20 \
		"$base/api/v1/debuginfo/$1" || echo 000)
	k=$(tr -d '\r' <"$tmp/hdr" | sed -n 's/^[Xx]-[Ss]molder-[Dd]ebuginfo: //p')
	d=$(tr -d '\r' <"$tmp/hdr" | sed -n 's/^[Xx]-[Ss]molder-[Dd]ebuginfo-[Dd]warf: //p')
	echo "$c ${k:--} ${d:--}"
}
# expect_put FILE ID STATUS STORED_AS: STORED_AS is "binary", "debug" or null
expect_put() {
	c=$(put "$1" "$2")
	[ "$c" = "$3" ] && grep -q "\"stored_as\":$4" "$tmp/body" ||
		fail "PUT $1: $c $(cat "$tmp/body"), want $3 stored_as $4"
}
expect_head() {
	h=$(head_ "$1")
	[ "$h" = "$2" ] || fail "HEAD $1: '$h', want '$2'"
}

# A stripped binary first, then its separate debug file.
build 1
expect_head "$bid" "404 - -"
expect_put "$tmp/p1.stripped" "$bid" 201 '"binary"'
expect_head "$bid" "200 binary no"
expect_put "$tmp/p1.debug" "$bid" 201 '"debug"'
expect_head "$bid" "200 both yes"
cmp -s "$tmp/p1.stripped" "$dir/$bid" || fail "<hex> is not the stripped binary"
cmp -s "$tmp/p1.debug" "$dir/$bid.debug" || fail "<hex>.debug is not the debug file"
expect_put "$tmp/p1.debug" "$bid" 200 null
expect_put "$tmp/p1.full" "$bid" 200 null
expect_put "$tmp/p1.stripped" "$bid" 200 null
cmp -s "$tmp/p1.debug" "$dir/$bid.debug" || fail "a no-op upload replaced <hex>.debug"
ok "stripped binary, then its debug file: <hex> and <hex>.debug; repeats are 200 no-ops"

# A binary with DWARF first: a debug file adds nothing.
build 2
expect_put "$tmp/p2.full" "$bid" 201 '"binary"'
expect_head "$bid" "200 binary yes"
expect_put "$tmp/p2.debug" "$bid" 200 null
expect_put "$tmp/p2.stripped" "$bid" 200 null
[ ! -e "$dir/$bid.debug" ] || fail "a debug file was kept beside a binary with DWARF"
cmp -s "$tmp/p2.full" "$dir/$bid" || fail "<hex> is not the first binary"
ok "binary with DWARF first: later debug file and stripped binary are no-ops"

# The debug file first: it goes to <hex>.debug, the binary still to <hex>.
build 3
expect_put "$tmp/p3.debug" "$bid" 201 '"debug"'
expect_head "$bid" "200 debug yes"
[ ! -e "$dir/$bid" ] || fail "a debug file went to <hex>"
expect_put "$tmp/p3.stripped" "$bid" 201 '"binary"'
expect_head "$bid" "200 both yes"
cmp -s "$tmp/p3.stripped" "$dir/$bid" || fail "<hex> is not the binary"
ok "debug file first: <hex>.debug, then the binary as <hex>"

# A stripped binary, then the same binary unstripped: kept as <hex>.debug.
build 4
expect_put "$tmp/p4.stripped" "$bid" 201 '"binary"'
expect_put "$tmp/p4.full" "$bid" 201 '"debug"'
expect_head "$bid" "200 both yes"
cmp -s "$tmp/p4.full" "$dir/$bid.debug" || fail "<hex>.debug is not the full binary"
ok "stripped binary, then the unstripped one: kept as <hex>.debug"

# Refused uploads store nothing, whichever file they would have been.
build 5
other=$(echo "$bid" | tr '0-9a-f' '1-9a-f0')
c=$(put "$tmp/p5.debug" "$other")
[ "$c" = 400 ] && grep -q "build ID is $bid" "$tmp/body" || fail "mismatched debug file: $c"
expect_head "$other" "404 - -"
[ -z "$(ls -A "$dir" | grep "^$other\|tmp" || true)" ] || fail "a refused upload left files"
ok "a debug file under another build ID: 400, nothing stored"

# Over 256 MiB: 413 from the declared length, before the body is read.
dd if=/dev/zero of="$tmp/small" bs=1024 count=1 2>/dev/null
c=$(curl -sS -X PUT -o "$tmp/body" -w '%{http_code}' --max-time 20 \
	-H 'Content-Length: 268435457' --data-binary @"$tmp/small" \
	"$base/api/v1/debuginfo/$bid" || true)
[ "$c" = 413 ] || fail "oversized PUT: '$c' $(cat "$tmp/body")"
ok "over 256 MiB: 413"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[ "$rc" -eq 0 ] || fail "server exited with $rc after SIGTERM"
! grep -q 'AddressSanitizer\|LeakSanitizer\|runtime error' "$tmp/err" ||
	fail "sanitizer report in the server's stderr"
ok "clean exit"
