/* test_base.c - base/: the error setter, the buffer and its max, array
 * growth, hex, UTF-8 and JSON strings, the hash map, the clocks. The
 * modules' own tests exercise these through their users; here each
 * contract is checked at its edges. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/err.h"
#include "base/map.h"
#include "base/text.h"

static void test_err(void **state)
{
	(void)state;
	base_err e = {0};
	assert_int_equal(base_fail(&e, -EINVAL, "bad %d", 7), -EINVAL);
	assert_string_equal(e.msg, "bad 7");
	assert_int_equal(e.status, 0);
	assert_int_equal(base_fail_status(&e, -EINVAL, 413, "big"), -EINVAL);
	assert_int_equal(e.status, 413);
	assert_string_equal(e.msg, "big");
	assert_int_equal(base_fail(NULL, -ENOENT, "nobody reads this"), -ENOENT);
	char longer[2 * BASE_ERR_MSG];
	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = 0;
	base_fail(&e, -EINVAL, "%s", longer);   /* cut to fit, terminated */
	assert_int_equal(strlen(e.msg), BASE_ERR_MSG - 1);
}

static void test_buf(void **state)
{
	(void)state;
	base_buf b = {0};
	assert_int_equal(base_buf_puts(&b, "ab"), 0);
	assert_int_equal(base_buf_putc(&b, 'c'), 0);
	assert_int_equal(base_buf_printf(&b, "%d", 42), 0);
	assert_string_equal(b.data, "abc42");
	/* a printf longer than the small stack buffer */
	char big[1000];
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	assert_int_equal(base_buf_printf(&b, "%s!", big), 0);
	assert_int_equal(b.len, 5 + 999 + 1);
	assert_int_equal(b.data[b.len], 0);
	base_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	/* max: an append past it fails and leaves the content */
	b.max = 4;
	assert_int_equal(base_buf_put(&b, "abcd", 4), 0);
	assert_int_equal(base_buf_putc(&b, 'e'), -ENOMEM);
	assert_int_equal(base_buf_printf(&b, "%s", big), -ENOMEM);
	assert_int_equal(b.len, 4);
	assert_string_equal(b.data, "abcd");
	base_buf c = {0};
	base_buf_move(&c, &b);
	assert_null(b.data);
	assert_string_equal(c.data, "abcd");
	base_buf_free(&c);
	base_buf_free(&b);
	base_buf_free(NULL);
	/* array growth */
	uint64_t *v = NULL;
	size_t cap = 0;
	assert_int_equal(base_grow(&v, &cap, 1, sizeof(*v)), 0);
	assert_true(cap >= 1);
	assert_int_equal(base_grow(&v, &cap, 1000, sizeof(*v)), 0);
	assert_true(cap >= 1000);
	v[999] = 1;
	size_t before = cap;
	assert_int_equal(base_grow(&v, &cap, SIZE_MAX / 4, sizeof(*v)), -ENOMEM);
	assert_int_equal(cap, before);
	free(v);
}

static void test_hex(void **state)
{
	(void)state;
	const uint8_t id[] = {0x00, 0x7f, 0xab, 0xff};
	char hex[9];
	base_hex(id, sizeof(id), hex);
	assert_string_equal(hex, "007fabff");
	uint8_t back[4];
	assert_int_equal(base_unhex("007FabfF", 4, back), 0);
	assert_memory_equal(back, id, 4);
	assert_int_equal(base_unhex("0g", 1, back), -EINVAL);
	assert_int_equal(base_unhex("g0", 1, back), -EINVAL);
	assert_int_equal(base_hexval('a'), 10);
	assert_int_equal(base_hexval('F'), 15);
	assert_int_equal(base_hexval('/'), -1);
	assert_int_equal(base_hexval(':'), -1);
	assert_int_equal(base_hexval('G'), -1);
}

static void test_utf8(void **state)
{
	(void)state;
	static const struct {
		const char *name, *s;
		size_t n, len;   /* the first sequence's length, 0 invalid */
	} cases[] = {
		{"ascii", "a", 1, 1},
		{"two bytes", "\xc3\xa9", 2, 2},
		{"three bytes", "\xe2\x82\xac", 3, 3},
		{"four bytes", "\xf0\x9f\x94\xa5", 4, 4},
		{"stray continuation", "\x80", 1, 0},
		{"overlong slash", "\xc0\xaf", 2, 0},
		{"overlong three", "\xe0\x80\xaf", 3, 0},
		{"surrogate", "\xed\xa0\x80", 3, 0},
		{"past U+10FFFF", "\xf4\x90\x80\x80", 4, 0},
		{"cut short", "\xe2\x82", 2, 0},
		{"bad continuation", "\xc3\x28", 2, 0},
		{"0xff", "\xff", 1, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		size_t got = base_utf8_len(cases[i].s, cases[i].n);
		if (got != cases[i].len)
			fail_msg("%s: length %zu, want %zu", cases[i].name, got, cases[i].len);
		if (base_utf8_valid(cases[i].s, cases[i].n) != (cases[i].len == cases[i].n))
			fail_msg("%s: valid", cases[i].name);
	}
	assert_true(base_utf8_valid("a\0b", 3));
	char m[] = "a\xff\xc3\xa9\xe2\x82";
	base_utf8_mend(m, 6, '?');
	assert_string_equal(m, "a?\xc3\xa9??");
	/* cut: never inside a sequence */
	assert_int_equal(base_utf8_cut("ab\xc3\xa9", 4, 3), 2);
	assert_int_equal(base_utf8_cut("ab\xc3\xa9", 4, 4), 4);
	assert_int_equal(base_utf8_cut("abc", 3, 2), 2);
	/* a run of continuation bytes longer than a sequence is cut at max */
	assert_int_equal(base_utf8_cut("a\x80\x80\x80\x80\x80\x80", 7, 5), 5);
	assert_int_equal(base_utf8_cut("a\xf0\x9f\x98\x80" "b", 6, 3), 1);
	char o[4];
	assert_int_equal(base_utf8_put(o, 0x20ac), 3);
	assert_memory_equal(o, "\xe2\x82\xac", 3);
	assert_int_equal(base_utf8_put(o, 0x1f525), 4);
	assert_memory_equal(o, "\xf0\x9f\x94\xa5", 4);
}

static void test_json_str(void **state)
{
	(void)state;
	static const struct {
		const char *name, *in;
		size_t n;
		const char *want;
	} cases[] = {
		{"plain", "abc", 3, "\"abc\""},
		{"quotes and backslash", "a\"b\\", 4, "\"a\\\"b\\\\\""},
		{"short escapes", "\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\""},
		{"other controls", "\x01\x1f", 2, "\"\\u0001\\u001f\""},
		{"NUL inside", "a\0b", 3, "\"a\\u0000b\""},
		{"valid UTF-8 as is", "\xc3\xa9", 2, "\"\xc3\xa9\""},
		{"invalid bytes", "a\xff\xc3", 3, "\"a\\ufffd\\ufffd\""},
		{"surrogate", "\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\""},
		{"empty", "", 0, "\"\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		base_buf b = {0};
		assert_int_equal(base_json_str(&b, cases[i].in, cases[i].n), 0);
		if (strcmp(b.data, cases[i].want))
			fail_msg("%s: %s, want %s", cases[i].name, b.data, cases[i].want);
		base_buf_free(&b);
	}
	base_buf b = {.max = 3};
	assert_int_equal(base_json_str(&b, "abcd", 4), -ENOMEM);
	base_buf_free(&b);
}

static void test_map(void **state)
{
	(void)state;
	base_map m = {0};
	assert_int_equal(base_map_get(&m, 1), BASE_MAP_NONE);   /* zeroed is empty */
	enum { N = 100000 };
	for (uint32_t i = 0; i < N; i++)   /* small keys, and 0 */
		assert_int_equal(base_map_put(&m, i, i * 2), 0);
	assert_int_equal(m.len, N);
	for (uint32_t i = 0; i < N; i++)
		if (base_map_get(&m, i) != i * 2)
			fail_msg("key %u", i);
	assert_int_equal(base_map_get(&m, N), BASE_MAP_NONE);
	assert_int_equal(base_map_put(&m, 5, 7), 0);   /* overwrite */
	assert_int_equal(base_map_get(&m, 5), 7);
	assert_int_equal(m.len, N);
	base_map_prefetch(&m, 5);
	size_t cap = m.cap;
	base_map_clear(&m);
	assert_int_equal(m.len, 0);
	assert_int_equal(m.cap, cap);
	assert_int_equal(base_map_get(&m, 5), BASE_MAP_NONE);
	/* keys that are hashes already, with the top bits set */
	assert_int_equal(base_map_put(&m, UINT64_MAX, 1), 0);
	assert_int_equal(base_map_put(&m, 0x8000000000000000ULL, 2), 0);
	assert_int_equal(base_map_get(&m, UINT64_MAX), 1);
	assert_int_equal(base_map_get(&m, 0x8000000000000000ULL), 2);
	base_map_free(&m);
	assert_int_equal(base_map_init(&m, 1000), 0);
	assert_true(m.cap >= 2000);
	base_map_free(&m);
}

/* Deletion against a plain array of what should be there: keys come and
 * go in a small map (clusters that wrap around the end of the slots) and
 * a large one, and every key answers right after every step. */
static void test_map_del(void **state)
{
	(void)state;
	for (int round = 0; round < 2; round++) {
		uint32_t n = round ? 20000 : 12;      /* keys 0..n-1 */
		uint32_t *want = malloc(n * sizeof(*want));
		assert_non_null(want);
		for (uint32_t i = 0; i < n; i++)
			want[i] = BASE_MAP_NONE;
		base_map m = {0};
		uint64_t x = 88172645463325252ULL;    /* xorshift64 */
		for (uint32_t step = 0; step < 20 * n; step++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			uint32_t k = (uint32_t)(x % n);
			if (x >> 63) {
				base_map_del(&m, k);
				want[k] = BASE_MAP_NONE;
			} else {
				assert_int_equal(base_map_put(&m, k, step), 0);
				want[k] = step;
			}
			if (round == 0 || step % 1000 == 0) {
				size_t len = 0;
				for (uint32_t i = 0; i < n; i++) {
					if (base_map_get(&m, i) != want[i])
						fail_msg("round %d step %u: key %u", round, step, i);
					len += want[i] != BASE_MAP_NONE;
				}
				assert_int_equal(m.len, len);
			}
		}
		base_map_del(&m, n + 1);   /* absent: nothing happens */
		base_map_free(&m);
		base_map_del(&m, 1);       /* empty */
		free(want);
	}
}

/* The table: objects by key, removal moving the last into the hole, and
 * a walk down from the end that removes as it goes. */
static void test_tab(void **state)
{
	(void)state;
	base_tab t = {0};
	enum { N = 1000 };
	static int objs[N];
	assert_null(base_tab_get(&t, 7));
	for (int i = 0; i < N; i++)
		assert_int_equal(base_tab_add(&t, (uint64_t)i * 7919, &objs[i]), 0);
	assert_int_equal(t.n, N);
	for (int i = 0; i < N; i++)
		assert_ptr_equal(base_tab_get(&t, (uint64_t)i * 7919), &objs[i]);
	/* take the odd ones, walking down */
	for (size_t i = t.n; i-- > 0;)
		if (((int *)t.obj[i] - objs) & 1)
			assert_true(((int *)base_tab_take(&t, i) - objs) & 1);
	assert_int_equal(t.n, N / 2);
	for (int i = 0; i < N; i++) {
		int *o = base_tab_get(&t, (uint64_t)i * 7919);
		if (i & 1)
			assert_null(o);
		else
			assert_ptr_equal(o, &objs[i]);
	}
	for (size_t i = 0; i < t.n; i++)
		assert_int_equal(t.key[i], (uint64_t)((int *)t.obj[i] - objs) * 7919);
	/* and back in */
	assert_int_equal(base_tab_add(&t, 7919, &objs[1]), 0);
	assert_ptr_equal(base_tab_get(&t, 7919), &objs[1]);
	/* by key */
	assert_ptr_equal(base_tab_del(&t, 2 * 7919), &objs[2]);
	assert_null(base_tab_del(&t, 2 * 7919));
	assert_null(base_tab_get(&t, 2 * 7919));
	assert_ptr_equal(base_tab_get(&t, 4 * 7919), &objs[4]);
	while (t.n)
		base_tab_take(&t, 0);
	assert_null(base_tab_get(&t, 0));
	base_tab_free(&t);
	base_tab_free(&t);
}

static void test_clock(void **state)
{
	(void)state;
	int64_t w = base_realtime_ns();
	assert_true(w > 1700000000LL * 1000000000LL);   /* after November 2023 */
	int64_t a = base_monotonic_ns(), b = base_monotonic_ns();
	assert_true(a > 0 && b >= a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err),
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_json_str),
		cmocka_unit_test(test_map),
		cmocka_unit_test(test_map_del),
		cmocka_unit_test(test_tab),
		cmocka_unit_test(test_clock),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
