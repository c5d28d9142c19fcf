/* json.c - the server's JSON writer (json.h).
 * Everything here aborts on out-of-memory (through server/alloc.h) rather
 * than returning an error, so response code stays linear. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/text.h"
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

void srv_json_escape(base_buf *b, const char *s, size_t n)
{
	if (base_json_str(b, s, n))
		srv_oom(n);
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
