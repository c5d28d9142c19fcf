/* parse.c - hand-written parsers for selectors, times and durations (the
 * contract is in parse.h, the language in docs/query-language.md). One pass,
 * no backtracking, every error at the byte where the input went wrong. It
 * does not touch storage: regexes are only compiled to be validated. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/text.h"
#include "query/parse.h"

_Thread_local long q__fail_alloc_in;

/* Every allocation of this file and of PCRE2 on our behalf goes through
 * here, so the tests can fail each one in turn. */
static void *q__alloc(size_t n)
{
	if (q__fail_alloc_in > 0 && --q__fail_alloc_in == 0)
		return NULL;
	return malloc(n);
}

static void *pcre_alloc(PCRE2_SIZE n, void *unused)
{
	(void)unused;
	return q__alloc(n);
}

static void pcre_free(void *p, void *unused)
{
	(void)unused;
	free(p);
}

/* ---- errors ---- */

/* Line and column of pos, 1-based; the column counts bytes. */
static void line_col(const char *s, size_t pos, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t k = 0; k < pos; k++) {
		if (s[k] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

static int vfail(base_err *err, const char *s, size_t pos, const char *fmt, va_list ap)
{
	if (!err)
		return -EINVAL;
	/* line and column are for people; pos is for programs (underlining) */
	size_t line, col;
	line_col(s, pos, &line, &col);
	char what[BASE_ERR_MSG];
	vsnprintf(what, sizeof(what), fmt, ap);
	err->pos = pos;
	return base_fail(err, -EINVAL, "%zu:%zu: %s", line, col, what);
}

/* Fills err (when not NULL) and returns -EINVAL, so call sites read
 * `return fail(err, s, pos, "expected ...")`. */
__attribute__((format(printf, 4, 5)))
static int fail(base_err *err, const char *s, size_t pos, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = vfail(err, s, pos, fmt, ap);
	va_end(ap);
	return rc;
}

static int nomem(base_err *err)
{
	if (err)
		err->pos = 0;
	return base_fail(err, -ENOMEM, "out of memory");
}

/* ---- characters ---- */

/* The whitespace PromQL skips between tokens. */
static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool word_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool word_char(char c) { return word_start(c) || is_digit(c); }

/* ---- selectors ---- */

/* How the canonical form writes byte c of a value: into e, returning the
 * length. Control bytes are escaped so the form is one printable line. */
static size_t canon_byte(unsigned char c, char e[5])
{
	switch (c) {
	case '\\': memcpy(e, "\\\\", 2); return 2;
	case '"': memcpy(e, "\\\"", 2); return 2;
	case '\n': memcpy(e, "\\n", 2); return 2;
	case '\r': memcpy(e, "\\r", 2); return 2;
	case '\t': memcpy(e, "\\t", 2); return 2;
	}
	if (c < 0x20 || c == 0x7f) {
		snprintf(e, 5, "\\x%02x", c);
		return 4;
	}
	e[0] = (char)c;
	return 1;
}

struct q_selector {
	size_t n;                           /* matchers in m, the type's included */
	st_matcher m[Q_MAX_MATCHERS + 1];   /* m[0] is {ST_TYPE_LABEL, EQ, type} */
	char strs[];                        /* every name and value, NUL-terminated */
};

typedef struct pstate {
	const char *s;
	size_t len;
	size_t i;                     /* the cursor */
	base_err *err;
	q_selector *sel;
	char *w;                      /* next free byte of sel->strs */
	char *wend;                   /* end of sel->strs */
	size_t canon;                 /* length of the canonical form so far */
	pcre2_general_context *gctx;  /* made at the first regex */
	pcre2_compile_context *cctx;
} pstate;

#define PFAIL(ps, pos, ...) fail((ps)->err, (ps)->s, (pos), __VA_ARGS__)

static char cur(const pstate *ps) { return ps->s[ps->i]; /* s[len] is the NUL */ }

static void skip_ws(pstate *ps)
{
	while (is_ws(cur(ps)))
		ps->i++;
}

/* Copies n bytes into the string area and NUL-terminates them. */
static char *arena_put(pstate *ps, const char *p, size_t n)
{
	char *r = ps->w;
	memcpy(r, p, n);
	r[n] = 0;
	ps->w += n + 1;
	return r;
}

/* TYPE = WORD ":" WORD ":" WORD ":" WORD ":" WORD [ ":delta" ]: one token, as
 * a Prometheus metric name with colons, so no whitespace inside. The parts
 * follow storage's rule for a profile type, so any type that parses could
 * exist in the store. */
static int parse_type(pstate *ps, const char **type)
{
	size_t start = ps->i, part;
	int parts = 0;
	for (;;) {
		part = ps->i;
		if (!word_start(cur(ps)))
			return PFAIL(ps, ps->i, "expected a word of [a-zA-Z_][a-zA-Z0-9_]* after "
			             "\":\" in the profile type");
		while (word_char(cur(ps)))
			ps->i++;
		parts++;
		if (parts == 6 && !(ps->i - part == 5 && !memcmp(ps->s + part, "delta", 5)))
			return PFAIL(ps, part, "expected \"delta\" as the sixth part of the "
			             "profile type, got \"%.*s\"",
			             (int)(ps->i - part > 64 ? 64 : ps->i - part), ps->s + part);
		if (cur(ps) != ':' || parts == 6)
			break;
		ps->i++;
	}
	if (parts < 5)
		return PFAIL(ps, ps->i, "expected \":\" after \"%.*s\": a profile type is "
		             "name:sample_type:sample_unit:period_type:period_unit[:delta]",
		             (int)(ps->i - part > 64 ? 64 : ps->i - part), ps->s + part);
	size_t n = ps->i - start;
	if (n > ST_MAX_TYPE_LEN)
		return PFAIL(ps, start, "the profile type is %zu bytes, the limit is %d",
		             n, ST_MAX_TYPE_LEN);
	*type = arena_put(ps, ps->s + start, n);
	ps->canon = n + 2;  /* TYPE{} */
	return 0;
}

/* Reads n hex digits at the cursor into *v, or fails pointing at the
 * escape's backslash. */
static int read_hex(pstate *ps, size_t esc, int n, uint32_t *v)
{
	*v = 0;
	for (int k = 0; k < n; k++) {
		int h = base_hexval((unsigned char)cur(ps));
		if (h < 0)
			return PFAIL(ps, esc, "escape \"\\%c\" needs %d hex digits",
			             ps->s[esc + 1], n);
		*v = (*v << 4) | (uint32_t)h;
		ps->i++;
	}
	return 0;
}

/* One escape sequence after a backslash at esc, the cursor on the letter.
 * The escapes are PromQL's (which are Go's): the value written is never
 * longer than its spelling, which sizes the string area. */
static int parse_escape(pstate *ps, size_t esc)
{
	const char *s = ps->s;
	char c = cur(ps);
	uint32_t v;
	int rc;
	ps->i++;
	switch (c) {
	case 'a': *ps->w++ = '\a'; return 0;
	case 'b': *ps->w++ = '\b'; return 0;
	case 'f': *ps->w++ = '\f'; return 0;
	case 'n': *ps->w++ = '\n'; return 0;
	case 'r': *ps->w++ = '\r'; return 0;
	case 't': *ps->w++ = '\t'; return 0;
	case 'v': *ps->w++ = '\v'; return 0;
	case '\\': case '"': case '\'':
		*ps->w++ = c;
		return 0;
	case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7':
		v = (uint32_t)(c - '0');
		for (int k = 0; k < 2; k++) {
			if (cur(ps) < '0' || cur(ps) > '7')
				return PFAIL(ps, esc, "octal escape needs 3 digits, \\000 to \\377");
			v = v * 8 + (uint32_t)(cur(ps) - '0');
			ps->i++;
		}
		if (v > 0377)
			return PFAIL(ps, esc, "octal escape \"\\%.3s\" is above \\377", s + esc + 1);
		break;
	case 'x':
		if ((rc = read_hex(ps, esc, 2, &v)))
			return rc;
		break;
	case 'u':
	case 'U':
		if ((rc = read_hex(ps, esc, c == 'u' ? 4 : 8, &v)))
			return rc;
		if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			return PFAIL(ps, esc, "escape \"\\%.*s\" is not a Unicode code point",
			             c == 'u' ? 5 : 9, s + esc + 1);
		if (v) {
			ps->w += base_utf8_put(ps->w, v);
			return 0;
		}
		break;
	case 0:
		return PFAIL(ps, esc + 1, "expected an escape sequence after \"\\\"");
	default:
		if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
			return PFAIL(ps, esc, "unknown escape sequence \"\\%c\"", c);
		return PFAIL(ps, esc, "unknown escape sequence: \"\\\" followed by byte 0x%02x",
		             (unsigned char)c);
	}
	/* octal and \x give one byte, possibly half a UTF-8 sequence (the whole
	 * value is checked for UTF-8 at the end) */
	if (v == 0)
		return PFAIL(ps, esc, "a NUL byte (\"\\%.*s\") is not allowed in a string",
		             (int)(ps->i - esc - 1), s + esc + 1);
	*ps->w++ = (char)v;
	return 0;
}

/* A string literal at the cursor: "..." and '...' with escapes, `...` raw.
 * Decodes into the string area; *value is NUL-terminated there. */
static int parse_string(pstate *ps, const char **value, size_t *vlen)
{
	size_t open = ps->i;
	char q = cur(ps);
	char *v = ps->w;
	int rc;
	ps->i++;
	for (;;) {
		char c = cur(ps);
		if (c == q) {
			ps->i++;
			break;
		}
		if (c == 0) {
			size_t l, col;
			line_col(ps->s, open, &l, &col);
			return PFAIL(ps, ps->i, "expected a closing %c to end the string "
			             "begun at %zu:%zu", q, l, col);
		}
		if (q != '`' && c == '\n')
			return PFAIL(ps, ps->i, "newline in a quoted string: write \\n, or "
			             "quote with backticks");
		if (q == '`' || c != '\\') {
			*ps->w++ = c;
			ps->i++;
			continue;
		}
		size_t esc = ps->i++;
		if ((rc = parse_escape(ps, esc)))
			return rc;
	}
	*vlen = (size_t)(ps->w - v);
	*ps->w++ = 0;
	*value = v;
	return 0;
}

/* Compiles re exactly as st_select() will, only to report a bad one here,
 * where its position is known. */
static int check_regex(pstate *ps, size_t open, const char *name, const char *re)
{
	if (!ps->cctx) {
		ps->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, NULL);
		if (!ps->gctx)
			return nomem(ps->err);
		/* a compile context with its defaults, so it compiles as NULL
		 * would, only through q__alloc() */
		ps->cctx = pcre2_compile_context_create(ps->gctx);
		if (!ps->cctx)
			return nomem(ps->err);
	}
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
	                                 PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF,
	                                 &ec, &eo, ps->cctx);
	if (code) {
		pcre2_code_free(code);
		return 0;
	}
	if (ec == PCRE2_ERROR_HEAP_FAILED)
		return nomem(ps->err);
	PCRE2_UCHAR msg[160];
	if (pcre2_get_error_message(ec, msg, sizeof(msg)) < 0)
		snprintf((char *)msg, sizeof(msg), "error %d", ec);
	/* the name is cut so PCRE2's message fits in base_err.msg */
	return PFAIL(ps, open, "bad regex for label \"%.64s\": %s at offset %zu of the regex",
	             name, (const char *)msg, (size_t)eo);
}

static const char *op_str(st_match_op op)
{
	switch (op) {
	case ST_MATCH_EQ: return "=";
	case ST_MATCH_NE: return "!=";
	case ST_MATCH_RE: return "=~";
	case ST_MATCH_NRE: return "!~";
	}
	return "?";
}

/* name op string, the cursor on the name's first byte. */
static int parse_matcher(pstate *ps)
{
	q_selector *sel = ps->sel;
	size_t npos = ps->i;
	while (word_char(cur(ps)))
		ps->i++;
	size_t nlen = ps->i - npos;
	if (nlen > ST_MAX_LABEL_NAME_LEN)
		return PFAIL(ps, npos, "label name \"%.32s...\" is %zu bytes, the limit is %d",
		             ps->s + npos, nlen, ST_MAX_LABEL_NAME_LEN);
	if (nlen == sizeof(ST_TYPE_LABEL) - 1 && !memcmp(ps->s + npos, ST_TYPE_LABEL, nlen))
		return PFAIL(ps, npos, "the profile type is not matched inside braces: use "
		             "the TYPE prefix, as in TYPE{...}");
	if (sel->n > Q_MAX_MATCHERS)
		return PFAIL(ps, npos, "more than %d matchers", Q_MAX_MATCHERS);
	st_matcher *m = &sel->m[sel->n];
	m->name = arena_put(ps, ps->s + npos, nlen);

	skip_ws(ps);
	char c = cur(ps), d = c ? ps->s[ps->i + 1] : 0;
	if (c == '=' && d == '~')
		m->op = ST_MATCH_RE;
	else if (c == '=')
		m->op = ST_MATCH_EQ;
	else if (c == '!' && d == '=')
		m->op = ST_MATCH_NE;
	else if (c == '!' && d == '~')
		m->op = ST_MATCH_NRE;
	else
		return PFAIL(ps, ps->i, "expected \"=\", \"!=\", \"=~\" or \"!~\" after label "
		             "name \"%s\"", m->name);
	ps->i += m->op == ST_MATCH_EQ ? 1 : 2;

	skip_ws(ps);
	c = cur(ps);
	if (c != '"' && c != '\'' && c != '`')
		return PFAIL(ps, ps->i, "expected a string in \"\", '' or `` after \"%s\"",
		             op_str(m->op));
	size_t open = ps->i, vlen = 0;
	int rc;
	if ((rc = parse_string(ps, &m->value, &vlen)))
		return rc;
	if (vlen > ST_MAX_LABEL_VALUE_LEN)
		return PFAIL(ps, open, "the string for label \"%s\" is %zu bytes, the limit "
		             "is %d", m->name, vlen, ST_MAX_LABEL_VALUE_LEN);
	if (!base_utf8_valid(m->value, vlen))
		return PFAIL(ps, open, "the string for label \"%s\" is not valid UTF-8",
		             m->name);
	if ((m->op == ST_MATCH_RE || m->op == ST_MATCH_NRE) &&
	    (rc = check_regex(ps, open, m->name, m->value)))
		return rc;
	/* The limit holds for the canonical form too, which escapes, adds the
	 * default type and ", ": so whatever q_selector_format() writes parses
	 * again, and Q_SELECTOR_FORMAT_MAX is small. */
	ps->canon += (sel->n > 1 ? 2 : 0) + nlen + strlen(op_str(m->op)) + 2;
	for (size_t k = 0; k < vlen; k++) {
		char e[5];
		ps->canon += canon_byte((unsigned char)m->value[k], e);
	}
	if (ps->canon > Q_MAX_SELECTOR_LEN)
		return PFAIL(ps, npos, "the selector is longer than %d bytes when written "
		             "canonically (default type, \", \" and escapes included)",
		             Q_MAX_SELECTOR_LEN);
	sel->n++;
	return 0;
}

/* "{" [ matcher { "," matcher } [ "," ] ] "}", the cursor on the "{". */
static int parse_braces(pstate *ps)
{
	const char *after = "\"{\"";
	int rc;
	ps->i++;
	for (;;) {
		skip_ws(ps);
		if (cur(ps) == '}')
			break;
		if (!word_start(cur(ps)))
			return PFAIL(ps, ps->i, "expected a label name or \"}\" after %s", after);
		if ((rc = parse_matcher(ps)))
			return rc;
		skip_ws(ps);
		if (cur(ps) == '}')
			break;
		if (cur(ps) != ',')
			return PFAIL(ps, ps->i, "expected \",\" or \"}\" after the string for "
			             "label \"%s\"", ps->sel->m[ps->sel->n - 1].name);
		ps->i++;
		after = "\",\"";
	}
	ps->i++;
	return 0;
}

int q_parse_selector(const char *s, q_selector **out, base_err *err)
{
	pstate ps = {.s = s, .err = err};
	int rc = 0;
	const char *type = NULL;
	bool braces = false;
	*out = NULL;
	if (err) {
		err->pos = 0;
		err->msg[0] = 0;
	}
	ps.len = strnlen(s, Q_MAX_SELECTOR_LEN + 1);
	if (ps.len > Q_MAX_SELECTOR_LEN)
		return fail(err, s, Q_MAX_SELECTOR_LEN, "the selector is longer than %d bytes",
		            Q_MAX_SELECTOR_LEN);
	/* One block holds the selector and all its strings. Decoding never
	 * lengthens text, and each name or value loses at least one byte of
	 * spelling (an operator or a quote) for its NUL, so the input's length
	 * plus the default type and the type label bound the strings. */
	size_t strs = ps.len + sizeof(Q_DEFAULT_TYPE) + sizeof(ST_TYPE_LABEL) + 2;
	ps.sel = q__alloc(sizeof(q_selector) + strs);
	if (!ps.sel)
		return nomem(err);
	ps.sel->n = 1;
	ps.w = ps.sel->strs;
	ps.wend = ps.sel->strs + strs;

	skip_ws(&ps);
	if (word_start(cur(&ps))) {
		if ((rc = parse_type(&ps, &type)))
			goto out;
		skip_ws(&ps);
		if (cur(&ps) == '{') {
			braces = true;
			if ((rc = parse_braces(&ps)))
				goto out;
		}
	} else if (cur(&ps) == '{') {
		braces = true;
		type = arena_put(&ps, Q_DEFAULT_TYPE, sizeof(Q_DEFAULT_TYPE) - 1);
		ps.canon = sizeof(Q_DEFAULT_TYPE) - 1 + 2;
		if ((rc = parse_braces(&ps)))
			goto out;
	} else {
		rc = PFAIL(&ps, ps.i, "expected a profile type or \"{\"");
		goto out;
	}
	skip_ws(&ps);
	if (cur(&ps)) {
		rc = PFAIL(&ps, ps.i, "expected %s", braces ? "end of selector after \"}\"" :
		           "\"{\" or end of selector after the profile type");
		goto out;
	}
	ps.sel->m[0] = (st_matcher){arena_put(&ps, ST_TYPE_LABEL, sizeof(ST_TYPE_LABEL) - 1),
	                            ST_MATCH_EQ, type};
	assert(ps.w <= ps.wend);
	*out = ps.sel;
	ps.sel = NULL;
out:
	pcre2_compile_context_free(ps.cctx);
	pcre2_general_context_free(ps.gctx);
	free(ps.sel);
	return rc;
}

void q_selector_free(q_selector *sel)
{
	free(sel);
}

const char *q_selector_type(const q_selector *sel)
{
	return sel->m[0].value;
}

const st_matcher *q_selector_matchers(const q_selector *sel, size_t *n)
{
	*n = sel->n;
	return sel->m;
}

typedef struct obuf {
	char *buf;
	size_t n, len;
} obuf;

static void put(obuf *o, const char *p, size_t k)
{
	if (o->len < o->n) {
		size_t room = o->n - o->len;
		memcpy(o->buf + o->len, p, k < room ? k : room);
	}
	o->len += k;
}

static void put_s(obuf *o, const char *p) { put(o, p, strlen(p)); }

int q_selector_format(const q_selector *sel, char *buf, size_t n)
{
	obuf o = {buf, n, 0};
	put_s(&o, sel->m[0].value);
	put_s(&o, "{");
	for (size_t i = 1; i < sel->n; i++) {
		const st_matcher *m = &sel->m[i];
		if (i > 1)
			put_s(&o, ", ");
		put_s(&o, m->name);
		put_s(&o, op_str(m->op));
		put_s(&o, "\"");
		for (const unsigned char *p = (const unsigned char *)m->value; *p; p++) {
			char e[5];
			put(&o, e, canon_byte(*p, e));
		}
		put_s(&o, "\"");
	}
	put_s(&o, "}");
	if (o.len >= n) {
		if (n)
			buf[n - 1] = 0;
		return -ENOSPC;
	}
	buf[o.len] = 0;
	return (int)o.len;
}

/* ---- durations and times ---- */

#define NS_MS INT64_C(1000000)
#define NS_S  INT64_C(1000000000)
#define NS_D  (86400 * NS_S)

static const struct unit {
	const char *name;
	int64_t ns;
} units[] = {
	{"y", 365 * NS_D}, {"w", 7 * NS_D}, {"d", NS_D}, {"h", 3600 * NS_S},
	{"m", 60 * NS_S}, {"s", NS_S}, {"ms", NS_MS},
};

/* A duration in s[i, end): positions in errors are offsets in s. */
static int parse_dur(const char *s, size_t i, size_t end, int64_t *out, base_err *err)
{
	int64_t total = 0;
	size_t last = (size_t)-1;  /* index in units[] of the previous unit */
	if (i == end)
		return fail(err, s, i, "expected a duration such as 5m or 1h30m");
	if (end - i == 1 && s[i] == '0') {
		*out = 0;
		return 0;
	}
	while (i < end) {
		size_t num = i;
		uint64_t v = 0;
		bool big = false;
		if (!is_digit(s[i]) && last == (size_t)-1)
			return fail(err, s, i, "expected a duration such as 5m or 1h30m");
		if (!is_digit(s[i]))
			return fail(err, s, i, "expected a number after \"%s\"", units[last].name);
		/* read every digit even past int64, so the error names the number */
		for (; i < end && is_digit(s[i]); i++) {
			v = v * 10 + (uint64_t)(s[i] - '0');
			if (v > (uint64_t)INT64_MAX) {
				big = true;
				v = 0;
			}
		}
		size_t u;
		if (i + 1 < end && s[i] == 'm' && s[i + 1] == 's')
			u = 6;
		else if (i < end && s[i] && strchr("ywdhms", s[i]))
			u = (size_t)(strchr("ywdhms", s[i]) - "ywdhms");
		else
			return fail(err, s, i, "expected a unit (y, w, d, h, m, s or ms) after "
			            "\"%.*s\"", (int)(i - num > 20 ? 20 : i - num), s + num);
		if (last != (size_t)-1 && u <= last)
			return fail(err, s, i, "unit \"%s\" after \"%s\": units go from largest "
			            "to smallest, each at most once (y w d h m s ms)",
			            units[u].name, units[last].name);
		int64_t part;
		if (big || __builtin_mul_overflow((int64_t)v, units[u].ns, &part) ||
		    __builtin_add_overflow(total, part, &total))
			return fail(err, s, num, "the duration does not fit in 64-bit "
			            "nanoseconds (about 292 years)");
		i += strlen(units[u].name);
		last = u;
	}
	*out = total;
	return 0;
}

int q_parse_duration(const char *s, int64_t *out_ns, base_err *err)
{
	size_t i = 0, end = strlen(s);
	if (err) {
		err->pos = 0;
		err->msg[0] = 0;
	}
	while (is_ws(s[i]))
		i++;
	while (end > i && is_ws(s[end - 1]))
		end--;
	return parse_dur(s, i, end, out_ns, err);
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil): exact for every year, no table, no timegm() and its
 * time zone state. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
	static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : dim[m - 1];
}

#define RANGE_MSG "outside 64-bit nanoseconds since 1970 (1677-09-21 to 2262-04-11)"

typedef struct tstate {
	const char *s;
	size_t i, end;
	base_err *err;
} tstate;

/* Two digits of a field in [lo, hi]. */
static int two(tstate *t, const char *what, int lo, int hi, int *v)
{
	size_t p = t->i;
	if (p + 2 > t->end || !is_digit(t->s[p]) || !is_digit(t->s[p + 1]))
		return fail(t->err, t->s, p, "expected 2 digits of the %s", what);
	*v = (t->s[p] - '0') * 10 + (t->s[p + 1] - '0');
	if (*v < lo || *v > hi)
		return fail(t->err, t->s, p, "%s %02d is out of range %02d-%02d", what, *v, lo, hi);
	t->i += 2;
	return 0;
}

static int expect(tstate *t, char c, const char *what)
{
	if (t->i >= t->end || t->s[t->i] != c)
		return fail(t->err, t->s, t->i, "expected \"%c\" after the %s", c, what);
	t->i++;
	return 0;
}

/* The digits after a ".", the cursor on the "." itself: up to 9 of them,
 * as nanoseconds added to *frac. */
static int parse_fraction(tstate *t, int64_t *frac)
{
	const char *s = t->s;
	size_t f = ++t->i;
	int64_t scale = NS_S;
	for (; t->i < t->end && is_digit(s[t->i]); t->i++) {
		if (t->i - f == 9)
			return fail(t->err, s, t->i, "at most 9 fractional digits "
			            "(nanoseconds) after \".\"");
		scale /= 10;
		*frac += (s[t->i] - '0') * scale;
	}
	if (t->i == f)
		return fail(t->err, s, t->i, "expected digits after \".\"");
	return 0;
}

/* YYYY-MM-DD(T|t| )HH:MM:SS[.F{1,9}](Z|z|(+|-)HH:MM), the cursor on the year
 * (whose four digits and "-" the caller has seen). */
static int parse_rfc3339(tstate *t, int64_t *out)
{
	const char *s = t->s;
	size_t start = t->i;
	int y = 0, mo, d, h, mi, sec, oh = 0, om = 0, rc;
	int64_t frac = 0, off = 0;
	for (int k = 0; k < 4; k++)
		y = y * 10 + (s[t->i++] - '0');
	if ((rc = expect(t, '-', "year")) || (rc = two(t, "month", 1, 12, &mo)) ||
	    (rc = expect(t, '-', "month")))
		return rc;
	size_t dpos = t->i;
	if ((rc = two(t, "day", 1, 31, &d)))
		return rc;
	if (d > days_in_month(y, mo))
		return fail(t->err, s, dpos, "day %02d is out of range for %04d-%02d (01-%02d)",
		            d, y, mo, days_in_month(y, mo));
	if (t->i >= t->end || (s[t->i] != 'T' && s[t->i] != 't' && s[t->i] != ' '))
		return fail(t->err, s, t->i, "expected \"T\" and a time of day after the date");
	t->i++;
	if ((rc = two(t, "hour", 0, 23, &h)) || (rc = expect(t, ':', "hour")) ||
	    (rc = two(t, "minute", 0, 59, &mi)) || (rc = expect(t, ':', "minute")) ||
	    (rc = two(t, "second", 0, 59, &sec)))
		return rc;
	if (t->i < t->end && s[t->i] == '.') {
		int rc2 = parse_fraction(t, &frac);
		if (rc2)
			return rc2;
	}
	char z = t->i < t->end ? s[t->i] : 0;
	if (z == 'Z' || z == 'z') {
		t->i++;
	} else if (z == '+' || z == '-') {
		t->i++;
		if ((rc = two(t, "offset hour", 0, 23, &oh)) ||
		    (rc = expect(t, ':', "offset hour")) ||
		    (rc = two(t, "offset minute", 0, 59, &om)))
			return rc;
		off = (z == '-' ? -1 : 1) * (int64_t)(oh * 3600 + om * 60);
	} else {
		return fail(t->err, s, t->i, "expected \"Z\" or an offset such as +02:00 "
		            "after the time");
	}
	if (t->i != t->end)
		return fail(t->err, s, t->i, "expected end of input after the time");
	/* seconds cannot overflow for 4-digit years; nanoseconds can */
	int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
	if (__builtin_mul_overflow(secs, NS_S, out) || __builtin_add_overflow(*out, frac, out))
		return fail(t->err, s, start, "the time is " RANGE_MSG);
	return 0;
}

/* Unix seconds (1-11 digits, optionally .F{1,9}) or milliseconds (12-14
 * digits), the cursor on the first digit. */
static int parse_unix(tstate *t, int64_t *out)
{
	const char *s = t->s;
	size_t start = t->i;
	uint64_t v = 0;
	int64_t frac = 0;
	while (t->i < t->end && is_digit(s[t->i]) && t->i - start < 14)
		v = v * 10 + (uint64_t)(s[t->i++] - '0');
	size_t nd = t->i - start;
	if (t->i < t->end && is_digit(s[t->i]))
		return fail(t->err, s, start, "a unix time has at most 14 digits: 1 to 11 "
		            "for seconds, 12 to 14 for milliseconds");
	if (t->i < t->end && s[t->i] == '.') {
		if (nd > 11)
			return fail(t->err, s, t->i, "a fraction is only allowed on unix seconds "
			            "(1 to 11 digits)");
		int rc2 = parse_fraction(t, &frac);
		if (rc2)
			return rc2;
	}
	if (t->i != t->end) {
		int64_t d;
		/* "15m" is a duration, not a time: say how to write one, quoting
		 * the input only once it is known to be plain ASCII */
		if (parse_dur(s, start, t->end, &d, NULL) == 0)
			return fail(t->err, s, t->i, "expected end of input after the unix time "
			            "\"%.*s\"; a time relative to now is written now-%.*s or -%.*s",
			            (int)nd, s + start, (int)(t->end - start), s + start,
			            (int)(t->end - start), s + start);
		return fail(t->err, s, t->i, "expected end of input after the unix time \"%.*s\"",
		            (int)nd, s + start);
	}
	int64_t unit = nd <= 11 ? NS_S : NS_MS;
	if (__builtin_mul_overflow((int64_t)v, unit, out) || __builtin_add_overflow(*out, frac, out))
		return fail(t->err, s, start, "the unix time %.*s %s is " RANGE_MSG, (int)nd,
		            s + start, nd <= 11 ? "s" : "ms");
	return 0;
}

int q_parse_time(const char *s, int64_t now_ns, int64_t *out_ns, base_err *err)
{
	tstate t = {.s = s, .end = strlen(s), .err = err};
	if (err) {
		err->pos = 0;
		err->msg[0] = 0;
	}
	while (is_ws(s[t.i]))
		t.i++;
	while (t.end > t.i && is_ws(s[t.end - 1]))
		t.end--;
	size_t start = t.i;
	char c = s[t.i];
	if (t.end - t.i >= 3 && !memcmp(s + t.i, "now", 3)) {
		t.i += 3;
		while (t.i < t.end && is_ws(s[t.i]))
			t.i++;
		if (t.i == t.end) {
			*out_ns = now_ns;
			return 0;
		}
		c = s[t.i];
		if (c != '-' && c != '+')
			return fail(err, s, t.i, "expected \"-\", \"+\" or end of input after \"now\"");
	}
	if (t.i < t.end && (c == '-' || c == '+')) {
		int64_t d;
		int rc;
		t.i++;
		while (t.i < t.end && is_ws(s[t.i]))
			t.i++;
		if ((rc = parse_dur(s, t.i, t.end, &d, err)))
			return rc;
		if (c == '-' ? __builtin_sub_overflow(now_ns, d, out_ns)
		             : __builtin_add_overflow(now_ns, d, out_ns))
			return fail(err, s, start, "the time is " RANGE_MSG);
		return 0;
	}
	if (t.i < t.end && is_digit(c)) {
		if (t.i + 4 < t.end && is_digit(s[t.i + 1]) && is_digit(s[t.i + 2]) &&
		    is_digit(s[t.i + 3]) && s[t.i + 4] == '-')
			return parse_rfc3339(&t, out_ns);
		return parse_unix(&t, out_ns);
	}
	return fail(err, s, t.i, "expected a time: RFC 3339 (2026-01-01T00:00:00Z), unix "
	            "seconds or milliseconds, now, or now-DURATION");
}
