/* fuzz_query.c - libFuzzer target for query/parse.c. The same bytes, as a C
 * string, go to all three parsers, and every result is checked against a
 * second opinion:
 *   1. q_parse_selector(): an error names a position inside the input, its
 *      "LINE:COL: " agrees with it and it is printable ASCII; a selector keeps the limits, its
 *      canonical form parses to the same matchers and formats to the same
 *      text, and a short buffer gets -ENOSPC with a proper prefix;
 *   2. q_parse_time(): absolute times do not depend on now, relative ones
 *      move with it, and RFC 3339 results agree with timegm();
 *   3. q_parse_duration(): the value is whole milliseconds, written back in
 *      units it parses to the same value, and now-D is D before now. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define T0 (INT64_C(1767225600) * 1000000000) /* 2026-01-01T00:00:00Z */

static void check(bool ok)
{
	if (!ok)
		abort();
}

/* An error's position is inside the input and its prefix matches it. */
static void check_err(const char *s, const base_err *err)
{
	size_t len = strlen(s), line = 1, col = 1;
	check(err->pos <= len);
	for (size_t k = 0; k < err->pos; k++) {
		if (s[k] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	char pre[64];
	int n = snprintf(pre, sizeof(pre), "%zu:%zu: ", line, col);
	check(!strncmp(err->msg, pre, (size_t)n) && err->msg[n] != 0);
	/* messages go into JSON and terminals: printable ASCII only */
	for (const char *p = err->msg; *p; p++)
		check(*p >= 0x20 && *p < 0x7f);
}

static bool word(const char *s, size_t n)
{
	if (n == 0 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

static char fbuf[Q_SELECTOR_FORMAT_MAX], fbuf2[Q_SELECTOR_FORMAT_MAX];

static void fuzz_selector(const char *s)
{
	q_selector *sel = (q_selector *)&sel, *sel2;
	base_err err;
	int rc = q_parse_selector(s, &sel, &err);
	if (rc) {
		check(rc == -EINVAL && !sel);
		check_err(s, &err);
		return;
	}
	size_t n, n2;
	const st_matcher *m = q_selector_matchers(sel, &n);
	check(n >= 1 && n <= Q_MAX_MATCHERS + 1);
	check(!strcmp(m[0].name, ST_TYPE_LABEL) && m[0].op == ST_MATCH_EQ &&
	      m[0].value == q_selector_type(sel));
	size_t tl = strlen(m[0].value);
	check(tl <= ST_MAX_TYPE_LEN);
	for (size_t i = 1; i < n; i++) {
		size_t nl = strlen(m[i].name);
		check(word(m[i].name, nl) && nl <= ST_MAX_LABEL_NAME_LEN &&
		      strcmp(m[i].name, ST_TYPE_LABEL) != 0);
		check(m[i].op <= ST_MATCH_NRE);
		check(strlen(m[i].value) <= ST_MAX_LABEL_VALUE_LEN);
	}

	int len = q_selector_format(sel, fbuf, sizeof(fbuf));
	check(len >= 0 && len <= Q_MAX_SELECTOR_LEN && (size_t)len == strlen(fbuf));
	/* a buffer one byte short: -ENOSPC, the same bytes up to its end */
	check(q_selector_format(sel, fbuf2, (size_t)len) == -ENOSPC);
	check(len == 0 || (strlen(fbuf2) == (size_t)len - 1 &&
	                   !memcmp(fbuf2, fbuf, (size_t)len - 1)));

	rc = q_parse_selector(fbuf, &sel2, &err);
	if (rc)
		fprintf(stderr, "canonical form does not parse: %s\n%s\n", err.msg, fbuf);
	check(rc == 0);
	const st_matcher *m2 = q_selector_matchers(sel2, &n2);
	check(n2 == n);
	for (size_t i = 0; i < n; i++)
		check(!strcmp(m[i].name, m2[i].name) && m[i].op == m2[i].op &&
		      !strcmp(m[i].value, m2[i].value));
	check(q_selector_format(sel2, fbuf2, sizeof(fbuf2)) == len && !strcmp(fbuf, fbuf2));
	q_selector_free(sel2);
	q_selector_free(sel);
}

static bool digits(const char *p, int n)
{
	for (int i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

/* timegm() as a second opinion on an RFC 3339 result t. */
static void check_rfc3339(const char *p, int64_t t)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, sec;
	if (sscanf(p, "%4d-%2d-%2d%*c%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) != 6)
		abort();
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	int64_t secs = (int64_t)timegm(&tm);
	/* the fraction, then the zone */
	const char *z = p + 19;
	int64_t frac = 0, scale = 1000000000;
	if (*z == '.')
		for (z++; *z >= '0' && *z <= '9'; z++)
			frac += (*z - '0') * (scale /= 10);
	if (*z == '+' || *z == '-') {
		check(digits(z + 1, 2) && z[3] == ':' && digits(z + 4, 2));
		int off = ((z[1] - '0') * 10 + (z[2] - '0')) * 3600 + ((z[4] - '0') * 10 + (z[5] - '0')) * 60;
		secs -= *z == '-' ? -off : off;
	} else {
		check(*z == 'Z' || *z == 'z');
	}
	/* t = secs * 1e9 + frac, without overflowing where t is near the ends */
	int64_t fl = t / 1000000000, rem = t % 1000000000;
	if (rem < 0) {
		fl--;
		rem += 1000000000;
	}
	check(fl == secs && rem == frac);
}

static void fuzz_time(const char *s)
{
	base_err err;
	int64_t t1, t2;
	int rc1 = q_parse_time(s, T0, &t1, &err);
	if (rc1) {
		check(rc1 == -EINVAL);
		check_err(s, &err);
	}
	int rc2 = q_parse_time(s, T0 + 7, &t2, &err);
	const char *p = s;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	bool relative = *p == 'n' || *p == '-' || *p == '+';
	/* the same now gives the same answer; near now, the same verdict */
	check(rc1 == rc2);
	if (rc1)
		return;
	check(relative ? t2 - t1 == 7 : t2 == t1);
	if (!relative && digits(p, 4) && p[4] == '-')
		check_rfc3339(p, t1);
}

/* d in the largest units first, as q_parse_duration() wants them. */
static void fmt_duration(int64_t d, char *buf, size_t n)
{
	static const struct {
		const char *u;
		int64_t ns;
	} units[] = {
		{"y", INT64_C(365) * 86400000000000}, {"w", INT64_C(7) * 86400000000000},
		{"d", INT64_C(86400000000000)}, {"h", INT64_C(3600000000000)},
		{"m", INT64_C(60000000000)}, {"s", INT64_C(1000000000)}, {"ms", INT64_C(1000000)},
	};
	size_t len = 0;
	buf[0] = 0;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (d >= units[i].ns) {
			len += (size_t)snprintf(buf + len, n - len, "%lld%s",
			                        (long long)(d / units[i].ns), units[i].u);
			d %= units[i].ns;
		}
	}
	if (len == 0)
		snprintf(buf, n, "0");
}

static char rel[Q_MAX_SELECTOR_LEN + 8];

static void fuzz_duration(const char *s)
{
	base_err err;
	int64_t d, d2, t;
	int rc = q_parse_duration(s, &d, &err);
	if (rc) {
		check(rc == -EINVAL);
		check_err(s, &err);
		return;
	}
	check(d >= 0 && d % 1000000 == 0);
	char buf[128];
	fmt_duration(d, buf, sizeof(buf));
	check(q_parse_duration(buf, &d2, &err) == 0 && d2 == d);
	if (strlen(s) + 5 <= sizeof(rel)) {
		snprintf(rel, sizeof(rel), "now-%s", s);
		check(q_parse_time(rel, 0, &t, &err) == 0 && t == -d);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the parsers take C strings: a NUL ends the input where it is */
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	fuzz_selector(s);
	fuzz_time(s);
	fuzz_duration(s);
	free(s);
	return 0;
}
