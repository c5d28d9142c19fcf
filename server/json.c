/* json.c - the server's JSON writer (json.h).
 * Everything here aborts on out-of-memory (through server/alloc.h) rather
 * than returning an error, so response code stays linear. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/alloc.h"
#include "server/json.h"

/* ---- JSON ---- */

/* What the writer expects next, per open container. */
enum { J_TOP, J_OBJ_KEY, J_OBJ_VAL, J_ARR };

struct srv_json {
	base_buf *out;
	unsigned char *stack;   /* container kinds, J_OBJ_KEY/J_OBJ_VAL or J_ARR */
	size_t depth, cap;
	bool need_comma;        /* a value was written at this level already */
	bool top_done;
};

srv_json *srv_json_new(base_buf *out)
{
	srv_json *j = srv_xcalloc(1, sizeof(*j));
	j->out = out;
	return j;
}

void srv_json_free(srv_json *j)
{
	if (!j)
		return;
	free(j->stack);
	free(j);
}

size_t srv_json_depth(const srv_json *j)
{
	return j->depth;
}

static int top(const srv_json *j)
{
	return j->depth ? j->stack[j->depth - 1] : J_TOP;
}

/* Called before every value: a comma in arrays, and bookkeeping so an
 * object alternates key and value. */
static void before_value(srv_json *j)
{
	switch (top(j)) {
	case J_TOP:
		assert(!j->top_done && "one top-level value per writer");
		j->top_done = true;
		break;
	case J_OBJ_VAL:
		j->stack[j->depth - 1] = J_OBJ_KEY;
		break;
	case J_ARR:
		if (j->need_comma)
			srv_xbuf_putc(j->out, ',');
		break;
	default:
		assert(!"JSON value where an object key is due");
	}
	j->need_comma = true;
}

static void push(srv_json *j, int kind)
{
	if (j->depth == j->cap) {
		j->cap = j->cap ? j->cap * 2 : 16;
		j->stack = srv_xrealloc(j->stack, j->cap);
	}
	j->stack[j->depth++] = (unsigned char)kind;
	j->need_comma = false;
}

void srv_json_obj_begin(srv_json *j)
{
	before_value(j);
	srv_xbuf_putc(j->out, '{');
	push(j, J_OBJ_KEY);
}

void srv_json_obj_end(srv_json *j)
{
	assert(top(j) == J_OBJ_KEY && "object end without a matching begin, or a key without a value");
	j->depth--;
	j->need_comma = true;
	srv_xbuf_putc(j->out, '}');
}

void srv_json_arr_begin(srv_json *j)
{
	before_value(j);
	srv_xbuf_putc(j->out, '[');
	push(j, J_ARR);
}

void srv_json_arr_end(srv_json *j)
{
	assert(top(j) == J_ARR && "array end without a matching begin");
	j->depth--;
	j->need_comma = true;
	srv_xbuf_putc(j->out, ']');
}

void srv_json_key(srv_json *j, const char *key)
{
	assert(top(j) == J_OBJ_KEY && "object key outside an object or in place of a value");
	if (j->need_comma)
		srv_xbuf_putc(j->out, ',');
	srv_json_escape(j->out, key, strlen(key));
	srv_xbuf_putc(j->out, ':');
	j->stack[j->depth - 1] = J_OBJ_VAL;
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one:
 * overlong forms, surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned cp, min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2; cp = c & 0x1f; min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3; cp = c & 0x0f; min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4; cp = c & 0x07; min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void srv_json_escape(base_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	srv_xbuf_reserve(b, n + 2);
	srv_xbuf_putc(b, '"');
	size_t i = 0;
	while (i < n) {
		/* copy the longest run that needs no escaping in one go */
		size_t run = i;
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i) {
			srv_xbuf_put(b, p + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = p[i];
		if (c >= 0x80) {
			size_t len = utf8_len(p + i, n - i);
			if (len) {
				srv_xbuf_put(b, p + i, len);
				i += len;
			} else {
				srv_xbuf_puts(b, "\\ufffd");
				i++;
			}
			continue;
		}
		switch (c) {
		case '"': srv_xbuf_puts(b, "\\\""); break;
		case '\\': srv_xbuf_puts(b, "\\\\"); break;
		case '\b': srv_xbuf_puts(b, "\\b"); break;
		case '\f': srv_xbuf_puts(b, "\\f"); break;
		case '\n': srv_xbuf_puts(b, "\\n"); break;
		case '\r': srv_xbuf_puts(b, "\\r"); break;
		case '\t': srv_xbuf_puts(b, "\\t"); break;
		default: {
			char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			srv_xbuf_put(b, u, sizeof(u));
		}
		}
		i++;
	}
	srv_xbuf_putc(b, '"');
}

void srv_json_str(srv_json *j, const char *s)
{
	if (!s) {
		srv_json_null(j);
		return;
	}
	srv_json_strn(j, s, strlen(s));
}

void srv_json_strn(srv_json *j, const char *s, size_t n)
{
	before_value(j);
	srv_json_escape(j->out, s, n);
}

void srv_json_int(srv_json *j, int64_t v)
{
	before_value(j);
	srv_xbuf_printf(j->out, "%lld", (long long)v);
}

void srv_json_uint(srv_json *j, uint64_t v)
{
	before_value(j);
	srv_xbuf_printf(j->out, "%llu", (unsigned long long)v);
}

void srv_json_double(srv_json *j, double v)
{
	if (!isfinite(v)) {
		srv_json_null(j);
		return;
	}
	before_value(j);
	char tmp[32];
	snprintf(tmp, sizeof(tmp), "%.15g", v);
	if (strtod(tmp, NULL) != v)
		snprintf(tmp, sizeof(tmp), "%.17g", v);
	srv_xbuf_puts(j->out, tmp);
}

void srv_json_bool(srv_json *j, bool v)
{
	before_value(j);
	srv_xbuf_puts(j->out, v ? "true" : "false");
}

void srv_json_null(srv_json *j)
{
	before_value(j);
	srv_xbuf_puts(j->out, "null");
}

void srv_json_raw(srv_json *j, const char *json, size_t n)
{
	before_value(j);
	srv_xbuf_put(j->out, json, n);
}

void srv_json_kv_str(srv_json *j, const char *key, const char *s)
{
	srv_json_key(j, key);
	srv_json_str(j, s);
}

void srv_json_kv_int(srv_json *j, const char *key, int64_t v)
{
	srv_json_key(j, key);
	srv_json_int(j, v);
}

void srv_json_kv_uint(srv_json *j, const char *key, uint64_t v)
{
	srv_json_key(j, key);
	srv_json_uint(j, v);
}

void srv_json_kv_double(srv_json *j, const char *key, double v)
{
	srv_json_key(j, key);
	srv_json_double(j, v);
}

void srv_json_kv_bool(srv_json *j, const char *key, bool v)
{
	srv_json_key(j, key);
	srv_json_bool(j, v);
}
