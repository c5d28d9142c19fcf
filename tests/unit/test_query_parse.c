/* test_query_parse.c - unit tests of query/parse.c: selectors, times and
 * durations, table-driven (one cmocka test per row, named after it), plus
 * limits, buffer sizes, allocation failures and a check that parsed
 * selectors select in storage what docs/query-language.md promises. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "query/parse.h"
#include "storage/storage.h"

#define D Q_DEFAULT_TYPE
#define SEC INT64_C(1000000000)
#define MS INT64_C(1000000)
#define MIN (60 * SEC)
#define HOUR (3600 * SEC)
#define DAY (24 * HOUR)
#define T0 (INT64_C(1767225600) * SEC) /* 2026-01-01T00:00:00Z, "now" below */

/* ---- selectors ---- */

typedef struct sel_case {
	const char *name;
	const char *in;
	const char *want;  /* canonical form, or NULL when an error is expected */
	size_t pos;        /* the error's position and exact message */
	const char *err;
} sel_case;

#define OK(n, in, want) {n, in, want, 0, NULL}
#define ERR(n, in, pos, msg) {n, in, NULL, pos, msg}

#define EXPECT_OP "expected \"=\", \"!=\", \"=~\" or \"!~\" after label name "
#define TYPE_SHAPE "a profile type is name:sample_type:sample_unit:period_type:period_unit[:delta]"

static const sel_case sel_cases[] = {
	/* operators */
	OK("eq", "{service=\"api\"}", D "{service=\"api\"}"),
	OK("ne", "{service!=\"api\"}", D "{service!=\"api\"}"),
	OK("re", "{version=~\"1\\\\.4.*\"}", D "{version=~\"1\\\\.4.*\"}"),
	OK("nre", "{comm!~\"java|python\"}", D "{comm!~\"java|python\"}"),
	OK("all four operators in order",
	   "process_cpu:samples:count:cpu:nanoseconds:delta{a=\"1\",b!=\"2\",c=~\"3\",d!~\"4\"}",
	   D "{a=\"1\", b!=\"2\", c=~\"3\", d!~\"4\"}"),
	OK("regex with classes and groups", "{host=~\"[a-z]+(-[0-9]+)?\"}",
	   D "{host=~\"[a-z]+(-[0-9]+)?\"}"),
	OK("empty value selects a missing label", "{version=\"\"}", D "{version=\"\"}"),
	OK("empty regex", "{version=~\"\"}", D "{version=~\"\"}"),
	OK("same label twice stays twice", "{a=\"1\", a!=\"2\"}", D "{a=\"1\", a!=\"2\"}"),
	/* type */
	OK("default type with empty braces", "{}", D "{}"),
	OK("bare type", D, D "{}"),
	OK("bare five-part type", "memory:alloc_space:bytes:space:bytes",
	   "memory:alloc_space:bytes:space:bytes{}"),
	OK("five-part type with matchers", "memory:inuse_space:bytes:space:bytes{service=\"api\"}",
	   "memory:inuse_space:bytes:space:bytes{service=\"api\"}"),
	OK("type words with capitals, digits, underscores", "Go_1:A2:b_3:_c:D{}",
	   "Go_1:A2:b_3:_c:D{}"),
	/* whitespace and commas */
	OK("whitespace around every token",
	   " \t" D " \n{\r\n service \n= \"api\" ,\t version =~ 'x' \n}  ",
	   D "{service=\"api\", version=~\"x\"}"),
	OK("whitespace around a bare type", "  " D "\n", D "{}"),
	OK("whitespace inside empty braces", "{ \n }", D "{}"),
	OK("trailing comma", "{service=\"api\",}", D "{service=\"api\"}"),
	OK("trailing comma and whitespace", "{ a = \"1\" , b=\"2\" , }", D "{a=\"1\", b=\"2\"}"),
	/* names */
	OK("names with underscores and digits", "{_a1=\"x\", B_2=\"y\"}", D "{_a1=\"x\", B_2=\"y\"}"),
	OK("other double-underscore names are plain labels", "{__meta=\"x\"}", D "{__meta=\"x\"}"),
	/* quoting and escapes */
	OK("single quotes", "{a='x\"y'}", D "{a=\"x\\\"y\"}"),
	OK("escaped single quote in single quotes", "{a='it\\'s'}", D "{a=\"it's\"}"),
	OK("escaped single quote in double quotes", "{a=\"\\'\"}", D "{a=\"'\"}"),
	OK("backticks are raw", "{a=~`\\d+\\.x`}", D "{a=~\"\\\\d+\\\\.x\"}"),
	OK("backticks keep newlines and quotes", "{a=`x\n\"y'`}", D "{a=\"x\\n\\\"y'\"}"),
	OK("single-letter escapes", "{a=\"\\a\\b\\f\\n\\r\\t\\v\\\\\\\"\"}",
	   D "{a=\"\\x07\\x08\\x0c\\n\\r\\t\\x0b\\\\\\\"\"}"),
	OK("hex escapes", "{a=\"\\x41\\x7e\\x7F\"}", D "{a=\"A~\\x7f\"}"),
	OK("octal escapes", "{a=\"\\101\\060\\177\"}", D "{a=\"A0\\x7f\"}"),
	OK("u escapes", "{a=\"\\u00e9\\u4E2D\"}", D "{a=\"\xc3\xa9\xe4\xb8\xad\"}"),
	OK("U escape", "{a=\"\\U0001F525\"}", D "{a=\"\xf0\x9f\x94\xa5\"}"),
	OK("hex escapes forming UTF-8", "{a=\"\\xc3\\xa9\"}", D "{a=\"\xc3\xa9\"}"),
	OK("raw UTF-8", "{a=\"\xe6\x97\xa5\xe6\x9c\xac\"}", D "{a=\"\xe6\x97\xa5\xe6\x9c\xac\"}"),
	OK("control bytes are written as hex", "{a=\"\x01\"}", D "{a=\"\\x01\"}"),
	OK("the example of the docs", "{service=\"api\", version=~\"1\\\\.4.*\"}",
	   D "{service=\"api\", version=~\"1\\\\.4.*\"}"),

	/* errors: nothing to parse */
	ERR("empty", "", 0, "1:1: expected a profile type or \"{\""),
	ERR("only whitespace", "  \n ", 4, "2:2: expected a profile type or \"{\""),
	ERR("starts with an operator", "=\"x\"", 0, "1:1: expected a profile type or \"{\""),
	ERR("non-ASCII outside strings", "{\xc3\xa9=\"x\"}", 1,
	    "1:2: expected a label name or \"}\" after \"{\""),
	/* errors: type */
	ERR("type of one word", "process_cpu{}", 11,
	    "1:12: expected \":\" after \"process_cpu\": " TYPE_SHAPE),
	ERR("type with a space inside", "process_cpu :samples:count:cpu:nanoseconds", 11,
	    "1:12: expected \":\" after \"process_cpu\": " TYPE_SHAPE),
	ERR("type of four parts", "a:b:c:d{}", 7, "1:8: expected \":\" after \"d\": " TYPE_SHAPE),
	ERR("type with an empty part", "a::b:c:d", 2,
	    "1:3: expected a word of [a-zA-Z_][a-zA-Z0-9_]* after \":\" in the profile type"),
	ERR("type part starting with a digit", "a:b:1c:d:e", 4,
	    "1:5: expected a word of [a-zA-Z_][a-zA-Z0-9_]* after \":\" in the profile type"),
	ERR("type ending in a colon", "a:b:c:d:e:", 10,
	    "1:11: expected a word of [a-zA-Z_][a-zA-Z0-9_]* after \":\" in the profile type"),
	ERR("sixth part not delta", "a:b:c:d:e:cumulative{}", 10,
	    "1:11: expected \"delta\" as the sixth part of the profile type, got \"cumulative\""),
	ERR("seven parts", "a:b:c:d:e:delta:x", 15,
	    "1:16: expected \"{\" or end of selector after the profile type"),
	ERR("text after a bare type", "a:b:c:d:e foo", 10,
	    "1:11: expected \"{\" or end of selector after the profile type"),
	/* errors: braces and matchers */
	ERR("missing operator", "{version=\"1.0\",service}", 22,
	    "1:23: " EXPECT_OP "\"service\""),
	ERR("lone bang", "{a!\"x\"}", 2, "1:3: " EXPECT_OP "\"a\""),
	ERR("double equals", "{a==\"x\"}", 3, "1:4: expected a string in \"\", '' or `` after \"=\""),
	ERR("missing value", "{a=}", 3, "1:4: expected a string in \"\", '' or `` after \"=\""),
	ERR("unquoted value", "{a=~x}", 4, "1:5: expected a string in \"\", '' or `` after \"=~\""),
	ERR("missing comma", "{a=\"1\" b=\"2\"}", 7,
	    "1:8: expected \",\" or \"}\" after the string for label \"a\""),
	ERR("unclosed brace", "{a=\"1\"", 6,
	    "1:7: expected \",\" or \"}\" after the string for label \"a\""),
	ERR("unclosed empty brace", "{", 1, "1:2: expected a label name or \"}\" after \"{\""),
	ERR("two commas", "{a=\"1\",,}", 7, "1:8: expected a label name or \"}\" after \",\""),
	ERR("leading comma", "{,a=\"1\"}", 1, "1:2: expected a label name or \"}\" after \"{\""),
	ERR("label name starting with a digit", "{1a=\"x\"}", 1,
	    "1:2: expected a label name or \"}\" after \"{\""),
	ERR("__name__ inside braces", "{__name__=\"process_cpu\"}", 1,
	    "1:2: the profile type is not matched inside braces: use the TYPE prefix, as in TYPE{...}"),
	ERR("text after the braces", "{} x", 3, "1:4: expected end of selector after \"}\""),
	ERR("two selectors", "{}{}", 2, "1:3: expected end of selector after \"}\""),
	ERR("position on the third line", "{\n  a=\"1\",\n  b \"2\"\n}", 15,
	    "3:5: " EXPECT_OP "\"b\""),
	/* errors: strings */
	ERR("unterminated double quote", "{a=\"abc", 7,
	    "1:8: expected a closing \" to end the string begun at 1:4"),
	ERR("unterminated single quote", "{a='abc\"}", 9,
	    "1:10: expected a closing ' to end the string begun at 1:4"),
	ERR("unterminated backtick across lines", "{a=`x\ny", 7,
	    "2:2: expected a closing ` to end the string begun at 1:4"),
	ERR("newline in a quoted string", "{a=\"x\ny\"}", 5,
	    "1:6: newline in a quoted string: write \\n, or quote with backticks"),
	ERR("unknown escape", "{a=\"\\q\"}", 4, "1:5: unknown escape sequence \"\\q\""),
	ERR("escape at the end", "{a=\"\\", 5, "1:6: expected an escape sequence after \"\\\""),
	ERR("short hex escape", "{a=\"\\x4\"}", 4, "1:5: escape \"\\x\" needs 2 hex digits"),
	ERR("short u escape", "{a=\"\\u12\"}", 4, "1:5: escape \"\\u\" needs 4 hex digits"),
	ERR("short U escape", "{a=\"\\U0001F5\"}", 4, "1:5: escape \"\\U\" needs 8 hex digits"),
	ERR("surrogate u escape", "{a=\"\\uD800\"}", 4,
	    "1:5: escape \"\\uD800\" is not a Unicode code point"),
	ERR("U escape beyond U+10FFFF", "{a=\"\\U00110000\"}", 4,
	    "1:5: escape \"\\U00110000\" is not a Unicode code point"),
	ERR("octal escape above 255", "{a=\"\\400\"}", 4, "1:5: octal escape \"\\400\" is above \\377"),
	ERR("short octal escape", "{a=\"\\12\"}", 4, "1:5: octal escape needs 3 digits, \\000 to \\377"),
	ERR("NUL by hex escape", "{a=\"x\\x00\"}", 5,
	    "1:6: a NUL byte (\"\\x00\") is not allowed in a string"),
	ERR("NUL by u escape", "{a=\"\\u0000\"}", 4,
	    "1:5: a NUL byte (\"\\u0000\") is not allowed in a string"),
	ERR("invalid UTF-8 by hex escape", "{a=\"\\xff\"}", 3,
	    "1:4: the string for label \"a\" is not valid UTF-8"),
	ERR("invalid UTF-8 in the input", "{a=\"\xc3(\"}", 3,
	    "1:4: the string for label \"a\" is not valid UTF-8"),
	/* errors: regexes, at the string's position */
	ERR("bad regex", "{a=~\"(x\"}", 4,
	    "1:5: bad regex for label \"a\": missing closing parenthesis at offset 2 of the regex"),
	ERR("bad negative regex", "{a=\"1\", b!~\"*\"}", 11,
	    "1:12: bad regex for label \"b\": quantifier does not follow a repeatable item at "
	    "offset 0 of the regex"),
	ERR("bad regex in backticks", "{a=~`[z-a]`}", 4,
	    "1:5: bad regex for label \"a\": range out of order in character class at offset 3 "
	    "of the regex"),
	ERR("regex in a != is not a regex", "{a!=\"(\", b=~\"(\"}", 12,
	    "1:13: bad regex for label \"b\": missing closing parenthesis at offset 1 of the regex"),
};

static void check_roundtrip(const char *canon)
{
	q_selector *sel;
	base_err err;
	char *buf = malloc(Q_SELECTOR_FORMAT_MAX);
	assert_non_null(buf);
	int rc = q_parse_selector(canon, &sel, &err);
	if (rc)
		fail_msg("canonical form \"%s\" does not parse: %s", canon, err.msg);
	assert_int_equal(q_selector_format(sel, buf, Q_SELECTOR_FORMAT_MAX), (int)strlen(canon));
	assert_string_equal(buf, canon);
	q_selector_free(sel);
	free(buf);
}

static void run_sel_case(void **state)
{
	const sel_case *c = *state;
	q_selector *sel = (q_selector *)&sel;  /* must become NULL on error */
	base_err err;
	char buf[4096];
	int rc = q_parse_selector(c->in, &sel, &err);
	if (!c->want) {
		if (rc == 0)
			fail_msg("parsed, want error \"%s\"", c->err);
		assert_int_equal(rc, -EINVAL);
		assert_null(sel);
		assert_string_equal(err.msg, c->err);
		assert_int_equal(err.pos, c->pos);
		return;
	}
	if (rc)
		fail_msg("error \"%s\" (pos %zu), want \"%s\"", err.msg, err.pos, c->want);
	int n = q_selector_format(sel, buf, sizeof(buf));
	assert_int_equal(n, (int)strlen(c->want));
	assert_string_equal(buf, c->want);
	/* the type is matcher 0, always */
	size_t nm;
	const st_matcher *m = q_selector_matchers(sel, &nm);
	assert_true(nm >= 1);
	assert_string_equal(m[0].name, ST_TYPE_LABEL);
	assert_int_equal(m[0].op, ST_MATCH_EQ);
	assert_ptr_equal(m[0].value, q_selector_type(sel));
	assert_memory_equal(c->want, m[0].value, strlen(m[0].value));
	assert_int_equal(c->want[strlen(m[0].value)], '{');
	q_selector_free(sel);
	check_roundtrip(c->want);
}

/* The decoded matchers themselves, not only their canonical spelling. */
static void test_matcher_array(void **state)
{
	(void)state;
	q_selector *sel;
	base_err err;
	size_t n;
	assert_int_equal(q_parse_selector("{service=\"api\", version=~`1\\.4.*`, a!=\"\\n\", "
	                                  "b!~'x'}", &sel, &err), 0);
	const st_matcher *m = q_selector_matchers(sel, &n);
	assert_int_equal(n, 5);
	const st_matcher want[5] = {
		{ST_TYPE_LABEL, ST_MATCH_EQ, D}, {"service", ST_MATCH_EQ, "api"},
		{"version", ST_MATCH_RE, "1\\.4.*"}, {"a", ST_MATCH_NE, "\n"},
		{"b", ST_MATCH_NRE, "x"},
	};
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(m[i].name, want[i].name);
		assert_int_equal(m[i].op, want[i].op);
		assert_string_equal(m[i].value, want[i].value);
	}
	assert_string_equal(q_selector_type(sel), D);
	q_selector_free(sel);
	q_selector_free(NULL);
	/* err may be NULL */
	sel = (q_selector *)&sel;
	assert_int_equal(q_parse_selector("{a=}", &sel, NULL), -EINVAL);
	assert_null(sel);
}

/* s repeated n times into a new string (the caller frees). */
static char *rep(const char *pre, const char *s, size_t n, const char *post)
{
	size_t ls = strlen(s), lp = strlen(pre), lq = strlen(post);
	char *r = malloc(lp + ls * n + lq + 1), *w = r;
	assert_non_null(r);
	memcpy(w, pre, lp);
	w += lp;
	for (size_t i = 0; i < n; i++, w += ls)
		memcpy(w, s, ls);
	memcpy(w, post, lq + 1);
	return r;
}

static void expect_err(const char *in, size_t pos, const char *msg)
{
	q_selector *sel;
	base_err err;
	assert_int_equal(q_parse_selector(in, &sel, &err), -EINVAL);
	assert_null(sel);
	assert_string_equal(err.msg, msg);
	assert_int_equal(err.pos, pos);
}

static void expect_ok(const char *in)
{
	q_selector *sel;
	base_err err;
	if (q_parse_selector(in, &sel, &err))
		fail_msg("%.60s...: %s", in, err.msg);
	q_selector_free(sel);
}

static void test_limits(void **state)
{
	(void)state;
	char *s, msg[256];
	/* 64 matchers, not 65: the 65th name is where it fails */
	s = rep("{", "a=\"1\",", 64, "}");
	expect_ok(s);
	free(s);
	s = rep("{", "a=\"1\",", 65, "}");
	expect_err(s, 1 + 64 * 6, "1:386: more than 64 matchers");
	free(s);
	/* value: 1024 bytes, also when spelled as escapes */
	s = rep("{a=\"", "x", 1024, "\"}");
	expect_ok(s);
	free(s);
	s = rep("{a=\"", "\\x41", 1024, "\"}");
	expect_ok(s);
	free(s);
	s = rep("{a=\"", "x", 1025, "\"}");
	expect_err(s, 3, "1:4: the string for label \"a\" is 1025 bytes, the limit is 1024");
	free(s);
	/* label name: 128 */
	s = rep("{", "n", 128, "=\"\"}");
	expect_ok(s);
	free(s);
	s = rep("{", "n", 129, "=\"\"}");
	expect_err(s, 1, "1:2: label name \"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\" is 129 bytes, "
	           "the limit is 128");
	free(s);
	/* type: 256, as storage */
	s = rep("", "t", 256 - 8, ":b:c:d:e");
	expect_ok(s);
	free(s);
	s = rep("", "t", 257 - 8, ":b:c:d:e{}");
	expect_err(s, 0, "1:1: the profile type is 257 bytes, the limit is 256");
	free(s);
	/* the whole selector: 16 KiB */
	s = rep("{", " ", Q_MAX_SELECTOR_LEN - 2, "}");
	expect_ok(s);
	free(s);
	s = rep("{", " ", Q_MAX_SELECTOR_LEN - 1, "}");
	snprintf(msg, sizeof(msg), "1:%d: the selector is longer than %d bytes",
	         Q_MAX_SELECTOR_LEN + 1, Q_MAX_SELECTOR_LEN);
	expect_err(s, Q_MAX_SELECTOR_LEN, msg);
	free(s);
}

static void test_format_buffer(void **state)
{
	(void)state;
	q_selector *sel;
	base_err err;
	const char *want = D "{a=\"x\\\"y\"}";
	int len = (int)strlen(want);
	char buf[128];
	assert_int_equal(q_parse_selector("{a='x\"y'}", &sel, &err), 0);
	assert_int_equal(q_selector_format(sel, NULL, 0), -ENOSPC);
	memset(buf, 'Z', sizeof(buf));
	/* one byte short: the NUL does not fit */
	assert_int_equal(q_selector_format(sel, buf, (size_t)len), -ENOSPC);
	assert_int_equal(strlen(buf), len - 1);
	assert_memory_equal(buf, want, (size_t)len - 1);
	assert_int_equal(q_selector_format(sel, buf, (size_t)len + 1), len);
	assert_string_equal(buf, want);
	assert_int_equal(q_selector_format(sel, buf, 1), -ENOSPC);
	assert_string_equal(buf, "");
	q_selector_free(sel);

	/* The limit holds for the canonical form, so that Q_SELECTOR_FORMAT_MAX
	 * always suffices and every canonical form parses again. 16 matchers of
	 * 250 control bytes (1000 bytes each as \xHH) and a 17th of x's bring
	 * it to exactly 16384 bytes from a 4321-byte input. */
	char ctl[251], xs[237];
	memset(ctl, 1, 250);
	ctl[250] = 0;
	memset(xs, 'x', 236);
	xs[236] = 0;
	char *one = rep("a=\"", ctl, 1, "\",");
	char *many = rep("{", one, 16, "a=\"");
	char *fits, *over;
	xs[235] = 0;
	fits = rep(many, xs, 1, "\"}");
	xs[235] = 'x';
	over = rep(many, xs, 1, "\"}");
	assert_int_equal(strlen(fits), 4321);
	char *big = malloc(Q_SELECTOR_FORMAT_MAX);
	assert_non_null(big);
	assert_int_equal(q_parse_selector(fits, &sel, &err), 0);
	assert_int_equal(q_selector_format(sel, big, Q_SELECTOR_FORMAT_MAX), Q_MAX_SELECTOR_LEN);
	check_roundtrip(big);
	q_selector_free(sel);
	expect_err(over, 1 + 16 * 255, "1:4082: the selector is longer than 16384 bytes when "
	           "written canonically (default type, \", \" and escapes included)");
	free(big);
	free(one);
	free(many);
	free(fits);
	free(over);
}

/* Every allocation, ours or PCRE2's, can fail: -ENOMEM, nothing leaks
 * (ASan checks), and the next attempt works. */
static void test_out_of_memory(void **state)
{
	(void)state;
	const char *in = "{a=~\"x+\", b!~\"(y|z)*\", c=\"1\"}";
	int failures = 0;
	for (long k = 1; k < 1000; k++) {
		q_selector *sel;
		base_err err;
		q__fail_alloc_in = k;
		int rc = q_parse_selector(in, &sel, &err);
		if (rc == 0) {
			q_selector_free(sel);
			assert_true(q__fail_alloc_in > 0);  /* the k-th never came */
			q__fail_alloc_in = 0;
			break;
		}
		assert_int_equal(rc, -ENOMEM);
		assert_null(sel);
		assert_string_equal(err.msg, "out of memory");
		failures++;
	}
	q__fail_alloc_in = 0;
	/* the selector, PCRE2's two contexts and at least one compile */
	assert_true(failures >= 4);
	expect_ok(in);
}

/* Parsed selectors go straight to st_select() and mean there what the
 * language reference says. */
static void test_selects_in_storage(void **state)
{
	(void)state;
	char dir[1024];
	const char *base = getenv("SMOLDER_TEST_TMP");
	snprintf(dir, sizeof(dir), "%s/qp.XXXXXX", base ? base : "/tmp");
	assert_non_null(mkdtemp(dir));
	st_db *db;
	base_err serr;
	assert_int_equal(st_open(dir, NULL, &db, &serr), 0);
	const st_frame fr = {ST_FRAME_KERNEL, 0, 0, "schedule"};
	const st_stack_def sk = {st_stack_hash(NULL, 0, &fr, 1), &fr, 1};
	const st_label l0[2] = {{"service", "api"}, {"version", "1.4.2"}};
	const st_label l1[1] = {{"service", "web"}};
	const st_series_def sd[4] = {
		{D, l0, 2}, {D, l1, 1}, {D, NULL, 0},
		{"memory:alloc_space:bytes:space:bytes", l0, 2},
	};
	const st_sample sm[4] = {{T0, 0, sk.id, 1}, {T0, 1, sk.id, 1}, {T0, 2, sk.id, 1},
	                         {T0, 3, sk.id, 1}};
	const st_batch b = {sd, 4, NULL, 0, &sk, 1, sm, 4};
	assert_int_equal(st_append(db, &b, &serr), 0);
	static const struct {
		const char *sel;
		size_t want;
	} cases[] = {
		{"{}", 3},
		{D, 3},
		{"{service=\"api\"}", 1},
		{"{version=~\"1\\\\.4.*\"}", 1},
		{"{version=~\"1\\\\.4\"}", 0},     /* anchored at both ends */
		{"{version=\"\"}", 2},             /* series without the label */
		{"{service!=\"api\"}", 2},         /* includes the unlabelled one */
		{"{service!~\"a.*|w.*\"}", 1},
		{"{service=~\".*\"}", 3},
		{"{service=\"api\", version!=\"\"}", 1},
		{"memory:alloc_space:bytes:space:bytes{}", 1},
		{"memory:alloc_space:bytes:space:bytes{service=\"web\"}", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		q_selector *sel;
		base_err err;
		st_selection *ss;
		size_t n;
		assert_int_equal(q_parse_selector(cases[i].sel, &sel, &err), 0);
		const st_matcher *m = q_selector_matchers(sel, &n);
		assert_int_equal(st_select(db, m, n, 0, INT64_MAX, &ss, &serr), 0);
		if (st_selection_count(ss) != cases[i].want)
			fail_msg("%s: %zu series, want %zu", cases[i].sel,
			         st_selection_count(ss), cases[i].want);
		st_selection_free(ss);
		q_selector_free(sel);
	}
	st_close(db);
	char cmd[1100];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- times and durations ---- */

typedef struct time_case {
	const char *name;
	const char *in;
	int64_t want;
	size_t pos;
	const char *err;   /* NULL: want is expected */
} time_case;

#define TOK(n, in, want) {n, in, want, 0, NULL}
#define TERR(n, in, pos, msg) {n, in, 0, pos, msg}
#define RANGE "outside 64-bit nanoseconds since 1970 (1677-09-21 to 2262-04-11)"
#define EXPECT_TIME "expected a time: RFC 3339 (2026-01-01T00:00:00Z), unix seconds or " \
	"milliseconds, now, or now-DURATION"

static const time_case time_cases[] = {
	TOK("RFC 3339 UTC", "2026-01-01T00:00:00Z", T0),
	TOK("RFC 3339 nanoseconds", "2026-01-01T12:30:45.123456789Z",
	    T0 + 12 * HOUR + 30 * MIN + 45 * SEC + 123456789),
	TOK("RFC 3339 short fraction", "2026-01-01T00:00:00.5Z", T0 + 500 * MS),
	TOK("RFC 3339 positive offset", "2026-01-01T02:00:00+02:00", T0),
	TOK("RFC 3339 negative offset", "2025-12-31T19:30:00-04:30", T0),
	TOK("RFC 3339 lower-case t and z", "2026-01-01t00:00:00z", T0),
	TOK("RFC 3339 space separator", "2026-01-01 00:00:00Z", T0),
	TOK("leap day", "2024-02-29T00:00:00Z", INT64_C(1709164800) * SEC),
	TOK("the epoch", "1970-01-01T00:00:00Z", 0),
	TOK("before the epoch", "1969-12-31T23:59:59.5Z", -500 * MS),
	TOK("last representable", "2262-04-11T23:47:16.854775807Z", INT64_MAX),
	TOK("unix seconds", "1767225600", T0),
	TOK("unix seconds with a fraction", "1767225600.25", T0 + 250 * MS),
	TOK("unix zero", "0", 0),
	TOK("unix milliseconds, 13 digits", "1767225600123", T0 + 123 * MS),
	TOK("unix milliseconds, 12 digits", "100000000000", INT64_C(100000000000) * MS),
	TOK("now", "now", T0),
	TOK("now minus", "now-1h", T0 - HOUR),
	TOK("now plus", "now+5m", T0 + 5 * MIN),
	TOK("minus alone means now minus", "-15m", T0 - 15 * MIN),
	TOK("plus alone", "+1h30m", T0 + HOUR + 30 * MIN),
	TOK("whitespace around and between", "  now - 1d \n", T0 - DAY),
	TERR("empty", "", 0, "1:1: " EXPECT_TIME),
	TERR("a word", "yesterday", 0, "1:1: " EXPECT_TIME),
	TERR("now and something", "now*2", 3, "1:4: expected \"-\", \"+\" or end of input after \"now\""),
	TERR("now minus nothing", "now-", 4, "1:5: expected a duration such as 5m or 1h30m"),
	TERR("a duration without now", "15m", 2,
	     "1:3: expected end of input after the unix time \"15\"; a time relative to now "
	     "is written now-15m or -15m"),
	TERR("a duration and more without now", "15mx", 2,
	     "1:3: expected end of input after the unix time \"15\""),
	TERR("unix time with text after", "1767225600 x", 10,
	     "1:11: expected end of input after the unix time \"1767225600\""),
	TERR("15 digits", "176722560000000", 0,
	     "1:1: a unix time has at most 14 digits: 1 to 11 for seconds, 12 to 14 for "
	     "milliseconds"),
	TERR("11-digit seconds overflow", "10000000000", 0,
	     "1:1: the unix time 10000000000 s is " RANGE),
	TERR("fraction on milliseconds", "1767225600123.5", 13,
	     "1:14: a fraction is only allowed on unix seconds (1 to 11 digits)"),
	TERR("date only", "2026-01-01", 10, "1:11: expected \"T\" and a time of day after the date"),
	TERR("month 13", "2026-13-01T00:00:00Z", 5, "1:6: month 13 is out of range 01-12"),
	TERR("February 29 of a common year", "2026-02-29T00:00:00Z", 8,
	     "1:9: day 29 is out of range for 2026-02 (01-28)"),
	TERR("hour 24", "2026-01-01T24:00:00Z", 11, "1:12: hour 24 is out of range 00-23"),
	TERR("leap second", "2026-01-01T23:59:60Z", 17, "1:18: second 60 is out of range 00-59"),
	TERR("no time zone", "2026-01-01T00:00:00", 19,
	     "1:20: expected \"Z\" or an offset such as +02:00 after the time"),
	TERR("one-digit offset hour", "2026-01-01T00:00:00+2:00", 20,
	     "1:21: expected 2 digits of the offset hour"),
	TERR("ten fractional digits", "2026-01-01T00:00:00.1234567890Z", 29,
	     "1:30: at most 9 fractional digits (nanoseconds) after \".\""),
	TERR("fraction without digits", "2026-01-01T00:00:00.Z", 20,
	     "1:21: expected digits after \".\""),
	TERR("past 2262", "2262-04-12T00:00:00Z", 0, "1:1: the time is " RANGE),
	TERR("now plus overflows", "now+292y", 0, "1:1: the time is " RANGE),
	TERR("duration overflows", "now-293y", 4,
	     "1:5: the duration does not fit in 64-bit nanoseconds (about 292 years)"),
};

static void run_time_case(void **state)
{
	const time_case *c = *state;
	base_err err;
	int64_t got = -1;
	int rc = q_parse_time(c->in, T0, &got, &err);
	if (c->err) {
		if (rc == 0)
			fail_msg("parsed as %" PRId64 ", want error \"%s\"", got, c->err);
		assert_int_equal(rc, -EINVAL);
		assert_string_equal(err.msg, c->err);
		assert_int_equal(err.pos, c->pos);
		return;
	}
	if (rc)
		fail_msg("error \"%s\", want %" PRId64, err.msg, c->want);
	if (got != c->want)
		fail_msg("got %" PRId64 ", want %" PRId64, got, c->want);
}

static const time_case dur_cases[] = {
	TOK("hours", "1h", HOUR),
	TOK("hours and minutes", "1h30m", HOUR + 30 * MIN),
	TOK("seconds", "90s", 90 * SEC),
	TOK("milliseconds", "1500ms", 1500 * MS),
	TOK("minutes then milliseconds", "1m5ms", MIN + 5 * MS),
	TOK("days and hours", "2d12h", 2 * DAY + 12 * HOUR),
	TOK("week", "1w", 7 * DAY),
	TOK("year is 365 days", "1y", 365 * DAY),
	TOK("every unit", "1y2w3d4h5m6s7ms",
	    365 * DAY + 14 * DAY + 3 * DAY + 4 * HOUR + 5 * MIN + 6 * SEC + 7 * MS),
	TOK("zero alone", "0", 0),
	TOK("zero seconds", "0s", 0),
	TOK("leading zeros", "007m", 7 * MIN),
	TOK("surrounding whitespace", " 5m\t", 5 * MIN),
	TOK("292 years fit", "292y", 292 * 365 * DAY),
	TERR("empty", "", 0, "1:1: expected a duration such as 5m or 1h30m"),
	TERR("no unit", "15", 2, "1:3: expected a unit (y, w, d, h, m, s or ms) after \"15\""),
	TERR("fraction", "1.5h", 1, "1:2: expected a unit (y, w, d, h, m, s or ms) after \"1\""),
	TERR("space before the unit", "1 h", 1, "1:2: expected a unit (y, w, d, h, m, s or ms) after \"1\""),
	TERR("capital unit", "5M", 1, "1:2: expected a unit (y, w, d, h, m, s or ms) after \"5\""),
	TERR("sign", "-1h", 0, "1:1: expected a duration such as 5m or 1h30m"),
	TERR("smaller unit first", "30m1h", 4,
	     "1:5: unit \"h\" after \"m\": units go from largest to smallest, each at most once "
	     "(y w d h m s ms)"),
	TERR("unit twice", "1h1h", 3,
	     "1:4: unit \"h\" after \"h\": units go from largest to smallest, each at most once "
	     "(y w d h m s ms)"),
	TERR("junk after a unit", "1hx", 2, "1:3: expected a number after \"h\""),
	TERR("293 years", "293y", 0,
	     "1:1: the duration does not fit in 64-bit nanoseconds (about 292 years)"),
	TERR("number beyond 64 bits", "99999999999999999999ms", 0,
	     "1:1: the duration does not fit in 64-bit nanoseconds (about 292 years)"),
	TERR("sum overflows", "292y30w", 4,
	     "1:5: the duration does not fit in 64-bit nanoseconds (about 292 years)"),
};

static void run_dur_case(void **state)
{
	const time_case *c = *state;
	base_err err;
	int64_t got = -1;
	int rc = q_parse_duration(c->in, &got, &err);
	if (c->err) {
		if (rc == 0)
			fail_msg("parsed as %" PRId64 ", want error \"%s\"", got, c->err);
		assert_int_equal(rc, -EINVAL);
		assert_string_equal(err.msg, c->err);
		assert_int_equal(err.pos, c->pos);
		return;
	}
	if (rc)
		fail_msg("error \"%s\", want %" PRId64, err.msg, c->want);
	if (got != c->want)
		fail_msg("got %" PRId64 ", want %" PRId64, got, c->want);
	/* the same duration after now- is that much earlier */
	char rel[64];
	int64_t t;
	snprintf(rel, sizeof(rel), "now-%s", c->in);
	assert_int_equal(q_parse_time(rel, T0, &t, &err), 0);
	assert_true(t == T0 - c->want);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

int main(void)
{
	static const struct CMUnitTest fixed[] = {
		cmocka_unit_test(test_matcher_array),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_format_buffer),
		cmocka_unit_test(test_out_of_memory),
		cmocka_unit_test(test_selects_in_storage),
	};
	/* one cmocka test per table row, named "selector: <row>" and so on, so
	 * a failure names its row and the counts count rows */
	size_t n = N(fixed) + N(sel_cases) + N(time_cases) + N(dur_cases), k = 0;
	struct CMUnitTest *tests = calloc(n, sizeof(*tests));
	char **names = calloc(n, sizeof(*names));
	if (!tests || !names)
		return 1;
	for (size_t i = 0; i < N(fixed); i++)
		tests[k++] = fixed[i];
	for (size_t i = 0; i < N(sel_cases); i++, k++) {
		if (asprintf(&names[k], "selector: %s", sel_cases[i].name) < 0)
			return 1;
		tests[k] = (struct CMUnitTest){names[k], run_sel_case, NULL, NULL,
		                               (void *)&sel_cases[i]};
	}
	for (size_t i = 0; i < N(time_cases); i++, k++) {
		if (asprintf(&names[k], "time: %s", time_cases[i].name) < 0)
			return 1;
		tests[k] = (struct CMUnitTest){names[k], run_time_case, NULL, NULL,
		                               (void *)&time_cases[i]};
	}
	for (size_t i = 0; i < N(dur_cases); i++, k++) {
		if (asprintf(&names[k], "duration: %s", dur_cases[i].name) < 0)
			return 1;
		tests[k] = (struct CMUnitTest){names[k], run_dur_case, NULL, NULL,
		                               (void *)&dur_cases[i]};
	}
	if (getenv("SMOLDER_TEST_FILTER"))
		cmocka_set_test_filter(getenv("SMOLDER_TEST_FILTER"));
	/* cmocka_run_group_tests_name() needs an array of known size; this is
	 * what it expands to */
	int rc = _cmocka_run_group_tests("query_parse", tests, n, NULL, NULL);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(tests);
	return rc;
}
