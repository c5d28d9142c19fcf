/* json.c - the server's allocation wrapper, growable buffer and JSON
 * writer. Everything here aborts on out-of-memory rather than returning an
 * error, so response code stays linear. */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/json.h"
#include "storage/storage.h"   /* st_utf8_len: one UTF-8 decoder for all */

/* ---- allocation ---- */

static void oom(size_t n)
{
	/* No allocation here: the heap is what failed. */
	fprintf(stderr, "smolder-server: out of memory allocating %zu bytes\n", n);
	abort();
}

void *srv_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *srv_xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		oom(nmemb * size);
	return p;
}

void *srv_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

void *srv_xreallocarray(void *p, size_t nmemb, size_t size)
{
	size_t n;
	if (__builtin_mul_overflow(nmemb, size, &n))
		oom(SIZE_MAX);
	return srv_xrealloc(p, n);
}

char *srv_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = srv_xmalloc(n);
	memcpy(p, s, n);
	return p;
}

/* ---- buffer ---- */

void srv_buf_free(srv_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void srv_buf_reserve(srv_buf *b, size_t n)
{
	size_t need;
	if (__builtin_add_overflow(b->len, n, &need) ||
	    __builtin_add_overflow(need, 1, &need))
		oom(SIZE_MAX);
	if (need <= b->cap)
		return;
	/* a first reservation is taken exactly: a 64 MiB request body must
	 * not round up to 128 MiB */
	size_t cap = b->cap ? b->cap : need > 256 ? need : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->data = srv_xrealloc(b->data, cap);
	b->cap = cap;
}

void srv_buf_append(srv_buf *b, const void *p, size_t n)
{
	srv_buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
}

void srv_buf_puts(srv_buf *b, const char *s)
{
	srv_buf_append(b, s, strlen(s));
}

void srv_buf_putc(srv_buf *b, char c)
{
	srv_buf_reserve(b, 1);
	b->data[b->len++] = c;
	b->data[b->len] = 0;
}

void srv_buf_vprintf(srv_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	char small[256];
	int n = vsnprintf(small, sizeof(small), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return; /* only for an invalid format, which -Wformat rules out */
	if ((size_t)n < sizeof(small)) {
		srv_buf_append(b, small, (size_t)n);
		return;
	}
	srv_buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void srv_buf_printf(srv_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	srv_buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void srv_buf_reset(srv_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = 0;
}

void srv_buf_move(srv_buf *dst, srv_buf *src)
{
	if (dst == src)
		return;
	srv_buf_free(dst);
	*dst = *src;
	src->data = NULL;
	src->len = src->cap = 0;
}

/* ---- JSON ---- */

/* What the writer expects next, per open container. */
enum { J_TOP, J_OBJ_KEY, J_OBJ_VAL, J_ARR };

struct srv_json {
	srv_buf *out;
	unsigned char *stack;   /* container kinds, J_OBJ_KEY/J_OBJ_VAL or J_ARR */
	size_t depth, cap;
	bool need_comma;        /* a value was written at this level already */
	bool top_done;
};

srv_json *srv_json_new(srv_buf *out)
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
			srv_buf_putc(j->out, ',');
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
	srv_buf_putc(j->out, '{');
	push(j, J_OBJ_KEY);
}

void srv_json_obj_end(srv_json *j)
{
	assert(top(j) == J_OBJ_KEY && "object end without a matching begin, or a key without a value");
	j->depth--;
	j->need_comma = true;
	srv_buf_putc(j->out, '}');
}

void srv_json_arr_begin(srv_json *j)
{
	before_value(j);
	srv_buf_putc(j->out, '[');
	push(j, J_ARR);
}

void srv_json_arr_end(srv_json *j)
{
	assert(top(j) == J_ARR && "array end without a matching begin");
	j->depth--;
	j->need_comma = true;
	srv_buf_putc(j->out, ']');
}

void srv_json_key(srv_json *j, const char *key)
{
	assert(top(j) == J_OBJ_KEY && "object key outside an object or in place of a value");
	if (j->need_comma)
		srv_buf_putc(j->out, ',');
	srv_json_escape(j->out, key, strlen(key));
	srv_buf_putc(j->out, ':');
	j->stack[j->depth - 1] = J_OBJ_VAL;
}

void srv_json_escape(srv_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	srv_buf_reserve(b, n + 2);
	srv_buf_putc(b, '"');
	size_t i = 0;
	while (i < n) {
		/* copy the longest run that needs no escaping in one go */
		size_t run = i;
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i) {
			srv_buf_append(b, p + i, run - i);
			i = run;
			continue;
		}
		unsigned char c = p[i];
		if (c >= 0x80) {
			size_t len = st_utf8_len(s + i, n - i);
			if (len) {
				srv_buf_append(b, p + i, len);
				i += len;
			} else {
				srv_buf_puts(b, "\\ufffd");
				i++;
			}
			continue;
		}
		switch (c) {
		case '"': srv_buf_puts(b, "\\\""); break;
		case '\\': srv_buf_puts(b, "\\\\"); break;
		case '\b': srv_buf_puts(b, "\\b"); break;
		case '\f': srv_buf_puts(b, "\\f"); break;
		case '\n': srv_buf_puts(b, "\\n"); break;
		case '\r': srv_buf_puts(b, "\\r"); break;
		case '\t': srv_buf_puts(b, "\\t"); break;
		default: {
			char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			srv_buf_append(b, u, sizeof(u));
		}
		}
		i++;
	}
	srv_buf_putc(b, '"');
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
	srv_buf_printf(j->out, "%lld", (long long)v);
}

void srv_json_uint(srv_json *j, uint64_t v)
{
	before_value(j);
	srv_buf_printf(j->out, "%llu", (unsigned long long)v);
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
	srv_buf_puts(j->out, tmp);
}

void srv_json_bool(srv_json *j, bool v)
{
	before_value(j);
	srv_buf_puts(j->out, v ? "true" : "false");
}

void srv_json_null(srv_json *j)
{
	before_value(j);
	srv_buf_puts(j->out, "null");
}

void srv_json_raw(srv_json *j, const char *json, size_t n)
{
	before_value(j);
	srv_buf_append(j->out, json, n);
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
