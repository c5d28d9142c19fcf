#!/bin/sh
# Runs unit-test binaries (cmocka), each in its own temporary directory that
# is removed afterwards, and prints one closing line for the whole run.
set -u
pass=0
fail=0
skipped=0
failed=""
for t in "$@"; do
	tmp=$(mktemp -d /tmp/smolder-test.XXXXXX)
	out="$tmp.log"
	echo "== $t"
	if SMOLDER_TEST_TMP="$tmp" "$t" >"$out" 2>&1; then
		:
	else
		failed="$failed $t"
	fi
	cat "$out"
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	k=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	pass=$((pass + ${p:-0}))
	fail=$((fail + ${f:-0}))
	skipped=$((skipped + ${k:-0}))
	# each skipped test's own SKIP line says why; keep it for the summary
	if [ -n "${SMOLDER_SKIP_FILE:-}" ] && [ "${k:-0}" -gt 0 ]; then
		grep '^SKIP ' "$out" | sed "s|^SKIP |${t##*/} |" >>"$SMOLDER_SKIP_FILE" || true
	fi
	rm -rf "$tmp" "$out"
done
if [ -n "$failed" ] && [ "$fail" -eq 0 ]; then
	fail=1  # a binary crashed or failed outside cmocka's accounting
fi
echo "unit: $pass passed, $fail failed, $skipped skipped"
[ -n "${SMOLDER_COUNT_FILE:-}" ] && echo "$pass $fail $skipped" > "$SMOLDER_COUNT_FILE"
[ -z "$failed" ]
