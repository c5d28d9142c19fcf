#!/bin/sh
# cli_test.sh - the smolder command-line client end to end: the storage
# benchmark's smoke fleet (known totals) in a temporary data dir, the real
# smolder-server on a loopback port, and the client against it: discovery,
# folded totals, the top table, diff, and the errors (a bad selector with
# its caret, a selector that selects nothing with the closest values, a
# bad flag, an unreachable server) with their exit codes.
# Cleans up on any exit.
set -eu

CLI=${SMOLDER_CLI:-bin/smolder}
. "$(dirname "$0")/fleet.sh"

FROM=2026-01-01T00:00:00Z
TO=2026-01-02T00:00:00Z
T=process_cpu:samples:count:cpu:nanoseconds:delta

# cli ARGS...: the client against our server, stdout to $tmp/cli.out,
# stderr to $tmp/cli.err; sets rc to its exit status.
cli() {
	rc=0
	"$CLI" --server "$base" "$@" >"$tmp/cli.out" 2>"$tmp/cli.err" || rc=$?
}

cli types --from "$FROM" --to "$TO"
[ "$rc" = 0 ] && [ "$(cat "$tmp/cli.out")" = "$T" ] || fail "types (rc $rc)"
ok "types"

cli labels --from "$FROM" --to "$TO"
[ "$rc" = 0 ] && [ "$(tr '\n' ' ' <"$tmp/cli.out")" = "comm exe hostname service version " ] ||
	fail "labels (rc $rc): $(cat "$tmp/cli.out")"
ok "labels"

cli labels service --from "$FROM" --to "$TO"
[ "$rc" = 0 ] && [ "$(wc -l <"$tmp/cli.out")" -ge 2 ] || fail "labels service (rc $rc)"
sort -c "$tmp/cli.out" || fail "label values not sorted"
s0=$(head -1 "$tmp/cli.out")
ok "labels service"

cli labels hostname --query "{service=\"$s0\"}" --from "$FROM" --to "$TO"
h=$(wc -l <"$tmp/cli.out")
[ "$rc" = 0 ] && [ "$h" -ge 1 ] && [ "$h" -le 2 ] || fail "labels --query (rc $rc)"
ok "labels NAME --query"

# the server URL from the environment, with a trailing slash
rc=0
SMOLDER_SERVER_URL="$base/" "$CLI" types --from "$FROM" --to "$TO" >"$tmp/cli.out" \
	2>"$tmp/cli.err" || rc=$?
[ "$rc" = 0 ] && [ "$(cat "$tmp/cli.out")" = "$T" ] || fail "SMOLDER_SERVER_URL (rc $rc)"
ok "SMOLDER_SERVER_URL"

cli query '{}' --from "$FROM" --to "$TO" --format folded
[ "$rc" = 0 ] || fail "query folded (rc $rc)"
sum=$(awk '{ s += $NF } END { print s }' "$tmp/cli.out")
[ "$sum" = 160423 ] || fail "folded sums to $sum"
ok "query folded sums to the total"

cli query '{}' --from "$FROM" --to "$TO" --format json --max-nodes 10
[ "$rc" = 0 ] && grep -q '"total":160423' "$tmp/cli.out" || fail "query json (rc $rc)"
ok "query json"

cli query '{}' --from "$FROM" --to "$TO" --format pprof -o "$tmp/p.pb.gz"
[ "$rc" = 0 ] && gzip -t "$tmp/p.pb.gz" || fail "query pprof (rc $rc)"
ok "query pprof -o FILE"

cli top '{}' --from "$FROM" --to "$TO" --limit 7
[ "$rc" = 0 ] || fail "top (rc $rc)"
grep -q '^Total: 160423 samples' "$tmp/cli.out" || fail "top summary line"
sed -n 2p "$tmp/cli.out" | grep -Eq '^ *flat +flat% +cum +cum% +name$' || fail "top header"
[ "$(sed 1,2d "$tmp/cli.out" | wc -l)" = 7 ] || fail "top rows"
# rows: flat flat% cum cum% name..., flat descending, cum >= flat
sed 1,2d "$tmp/cli.out" | awk '
	$2 !~ /%$/ || $4 !~ /%$/ { exit 1 }
	NR > 1 && $1 > prev { exit 1 }
	$3 < $1 { exit 1 }
	{ prev = $1 }' || fail "top order: $(cat "$tmp/cli.out")"
ok "top table: header and rows in flat order"

cli top '{}' --from "$FROM" --to "$TO" --limit 3 --json
[ "$rc" = 0 ] && grep -q '^{"total":160423,"rows":\[' "$tmp/cli.out" || fail "top --json"
ok "top --json"

cli query '{}' --from "$FROM" --to "$TO" --format top
[ "$rc" = 0 ] && grep -q '^Total: 160423 samples' "$tmp/cli.out" || fail "query --format top"
ok "query --format top"

# the default: what changed. A profile against itself: nothing.
cli diff '{}' '{}' --from "$FROM" --to "$TO"
[ "$rc" = 0 ] && [ "$(cat "$tmp/cli.out")" = "no significant change" ] ||
	fail "diff of a profile with itself (rc $rc): $(cat "$tmp/cli.out")"
ok "diff A/A: no significant change"

# two services really differ: ranked changes, then the closing line
s1=$("$CLI" --server "$base" labels service --from "$FROM" --to "$TO" | sed -n 2p)
cli diff "{service=\"$s0\"}" "{service=\"$s1\"}" --from "$FROM" --to "$TO" --limit 1000
[ "$rc" = 0 ] || fail "diff changes (rc $rc)"
[ "$(tail -1 "$tmp/cli.out")" = "no other significant change" ] || fail "diff closing line"
n=$(sed '$d' "$tmp/cli.out" | wc -l)
[ "$n" -ge 3 ] || fail "diff of two services lists $n changes"
sed '$d' "$tmp/cli.out" | grep -Evq '^[+-][0-9]+\.[0-9] pp .+ \(p (< 0\.001|= 0\.[0-9]{3})\)$' &&
	fail "diff change lines: $(cat "$tmp/cli.out")"
# ranked: |pp| never grows down the list
sed '$d' "$tmp/cli.out" | awk '{ v = $1 < 0 ? -$1 : $1 } NR > 1 && v > prev + 0.05 { exit 1 }
	{ prev = v }' || fail "diff changes not ranked: $(cat "$tmp/cli.out")"
ok "diff: $n ranked significant changes, then 'no other significant change'"

cli diff "{service=\"$s0\"}" "{service=\"$s1\"}" --from "$FROM" --to "$TO" --limit 2
[ "$rc" = 0 ] && [ "$(sed -n 3p "$tmp/cli.out")" = "$((n - 2)) more significant changes (--limit)" ] ||
	fail "diff --limit 2: $(cat "$tmp/cli.out")"
ok "diff --limit counts what it left out"

cli diff "{service=\"$s0\"}" "{service=\"$s1\"}" --from "$FROM" --to "$TO" --format top --limit 5
[ "$rc" = 0 ] && grep -q '"listed_rows":'"$n"',' "$tmp/cli.out" &&
	grep -q '"delta":' "$tmp/cli.out" || fail "diff --format top (rc $rc)"
ok "diff --format top"

cli diff "{service=\"$s0\"}" '{}' --from "$FROM" --to "$TO" --format folded
[ "$rc" = 0 ] && [ -s "$tmp/cli.out" ] || fail "diff (rc $rc)"
awk '$(NF - 1) !~ /^[0-9]+$/ || $NF !~ /^[0-9]+$/ { exit 1 }
	{ b += $(NF - 1); c += $NF } END { if (c != 160423 || b <= 0 || b >= c) exit 1 }' \
	"$tmp/cli.out" || fail "diff folded lines"
ok "diff folded: two numbers per line"

cli diff '{}' '{}' --from "$FROM" --to "$TO" --base-to 2026-01-01T00:30:00Z --format json
[ "$rc" = 0 ] && grep -q '"compare":{"self":0,"total":160423}' "$tmp/cli.out" ||
	fail "diff by range (rc $rc)"
ok "diff --base-to, json"

# a bad selector: the server's message, and a caret under position 12
cli query '{service="x"' --from "$FROM" --to "$TO"
[ "$rc" = 1 ] || fail "bad selector exit $rc"
grep -q '^smolder: query: 1:13: ' "$tmp/cli.err" || fail "bad selector message"
line=$(grep -n '{service="x"$' "$tmp/cli.err" | cut -d: -f1)
[ -n "$line" ] || fail "selector not echoed"
caret=$(sed -n "$((line + 1))p" "$tmp/cli.err")
sel=$(sed -n "${line}p" "$tmp/cli.err")
indent=${sel%%\{*}
[ "$caret" = "$indent            ^" ] || fail "caret at the wrong column: '$caret'"
ok "bad selector: exit 1, message and caret"

cli diff '{}' '{a=~"(x"}'
[ "$rc" = 1 ] && grep -q '^smolder: compare: 1:5: bad regex' "$tmp/cli.err" &&
	grep -q '^ *    \^$' "$tmp/cli.err" || fail "bad compare selector (rc $rc)"
ok "bad diff selector names the parameter"

# a selector that selects nothing: exit 1 and the closest values, not an
# empty table with exit 0 (two letters of a real service swapped)
typo=$(printf '%s' "$s0" | sed 's/^\(..\)\(.\)\(.\)/\1\3\2/')
for cmd in top query; do
	cli "$cmd" "{service=\"$typo\"}" --from "$FROM" --to "$TO"
	[ "$rc" = 1 ] && [ ! -s "$tmp/cli.out" ] || fail "$cmd of a typo: rc $rc, output $(head -3 "$tmp/cli.out")"
	grep -q "^smolder: no series match {service=\"$typo\"}; service=\"$typo\" matches no series; did you mean service=\"$s0\"?" \
		"$tmp/cli.err" || fail "$cmd of a typo: $(cat "$tmp/cli.err")"
done
ok "a selector matching no series: exit 1, 'no series match', did you mean the closest value"
cli diff "{service=\"$s0\"}" "{service=\"$typo\"}" --from "$FROM" --to "$TO"
[ "$rc" = 1 ] && grep -q '^smolder: compare: no series match' "$tmp/cli.err" ||
	fail "diff with a typo: rc $rc: $(cat "$tmp/cli.err")"
ok "diff: the side that matches nothing is named, exit 1"

cli query '{}' --from yesterday
[ "$rc" = 1 ] && grep -q '^smolder: from: ' "$tmp/cli.err" || fail "bad time (rc $rc)"
ok "bad time: exit 1"

cli query '{}' --bogus
[ "$rc" = 2 ] && grep -q -- '--bogus' "$tmp/cli.err" || fail "bad flag (rc $rc)"
cli query '{}' --format xml
[ "$rc" = 2 ] || fail "bad format (rc $rc)"
cli top '{}' --limit ten
[ "$rc" = 2 ] || fail "bad limit (rc $rc)"
cli frobnicate
[ "$rc" = 2 ] || fail "unknown command (rc $rc)"
cli query
[ "$rc" = 2 ] || fail "missing selector (rc $rc)"
ok "usage errors: exit 2"

# a port nobody listens on: bind one, note it, let it go
dead=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rc=0
"$CLI" --server "http://127.0.0.1:$dead" types >"$tmp/cli.out" 2>"$tmp/cli.err" || rc=$?
[ "$rc" = 1 ] && grep -q "http://127.0.0.1:$dead" "$tmp/cli.err" || fail "unreachable (rc $rc)"
ok "unreachable server: exit 1, names the URL"

rc=0
"$CLI" --help >"$tmp/cli.out" 2>"$tmp/cli.err" || rc=$?
[ "$rc" = 0 ] && grep -q '^usage: smolder' "$tmp/cli.out" || fail "--help"
for c in query diff top labels types debuginfo; do
	cli "$c" --help
	[ "$rc" = 0 ] && grep -q "^usage: smolder $c" "$tmp/cli.out" || fail "$c --help"
done
ok "--help, and for each command"

# debuginfo: real files built here (a stripped binary and its separate
# debug file share a build ID; a binary without a build-id note goes by
# its content's XXH3-128), uploaded, repeated, refused, asked about.
printf 'int main(void) { return 0; }\n' >"$tmp/d.c"
gcc -g -Wl,--build-id=sha1 -o "$tmp/d.full" "$tmp/d.c" || fail "gcc"
strip -o "$tmp/d.stripped" "$tmp/d.full" || fail "strip"
objcopy --only-keep-debug "$tmp/d.full" "$tmp/d.debug" || fail "objcopy"
gcc -Wl,--build-id=none -o "$tmp/d.noid" "$tmp/d.c" || fail "gcc"
bid=$(LC_ALL=C readelf -n "$tmp/d.full" | sed -n 's/.*Build ID: \([0-9a-f]*\).*/\1/p')
[ ${#bid} -eq 40 ] || fail "readelf build ID '$bid'"
fid=$("${SMOLDER_MKBATCH:-build/tests/mkbatch}" --fallback-id "$tmp/d.noid") || fail "mkbatch"
[ ${#fid} -eq 32 ] || fail "fallback ID '$fid'"

cli debuginfo status "$bid"
[ "$rc" = 1 ] && [ "$(cat "$tmp/cli.out")" = "$bid missing" ] || fail "status before (rc $rc)"
ok "debuginfo status: missing, exit 1"

cli debuginfo upload "$tmp/d.stripped" "$tmp/d.noid"
[ "$rc" = 0 ] || fail "upload (rc $rc)"
[ "$(cat "$tmp/cli.out")" = "$bid $tmp/d.stripped uploaded
$fid $tmp/d.noid uploaded" ] || fail "upload lines: $(cat "$tmp/cli.out")"
cli debuginfo status "$bid"
[ "$rc" = 0 ] && [ "$(cat "$tmp/cli.out")" = "$bid binary no-dwarf" ] ||
	fail "status binary (rc $rc): $(cat "$tmp/cli.out")"
ok "debuginfo upload: GNU build ID and fallback ID, one line per file"

cli debuginfo upload "$tmp/d.debug" "$tmp/d.stripped"
[ "$rc" = 0 ] && [ "$(cat "$tmp/cli.out")" = "$bid $tmp/d.debug uploaded
$bid $tmp/d.stripped already there" ] || fail "second upload: $(cat "$tmp/cli.out")"
cli debuginfo status "$bid"
[ "$rc" = 0 ] && [ "$(cat "$tmp/cli.out")" = "$bid both dwarf" ] ||
	fail "status both (rc $rc): $(cat "$tmp/cli.out")"
ok "debuginfo upload: the debug file beside the binary, a repeat is 'already there'"

# refused files: the server's reason, the others still sent, exit 1
cli debuginfo upload "$tmp/d.c" "$tmp/d.full" "$tmp/nonexistent"
[ "$rc" = 1 ] || fail "refused upload exit $rc"
grep -q "^smolder: $tmp/d.c: not an ELF file" "$tmp/cli.err" ||
	fail "refused upload message: $(cat "$tmp/cli.err")"
grep -q "^smolder: $tmp/nonexistent: No such file" "$tmp/cli.err" || fail "missing file message"
[ "$(cat "$tmp/cli.out")" = "$bid $tmp/d.full already there" ] ||
	fail "files after a refused one: $(cat "$tmp/cli.out")"
ok "debuginfo upload: a refused file gives the server's reason and exit 1"

cli debuginfo upload
[ "$rc" = 2 ] || fail "upload without files (rc $rc)"
cli debuginfo status XYZ
[ "$rc" = 2 ] || fail "status with a bad ID (rc $rc)"
cli debuginfo frob
[ "$rc" = 2 ] || fail "debuginfo frob (rc $rc)"
ok "debuginfo usage errors: exit 2"

kill -TERM "$pid"
wait "$pid" || fail "server exit status $?"
pid=""
echo "cli_test: all checks passed"
