/* buf.c - the buffer and the array growth of buf.h. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

int base_buf_reserve(base_buf *b, size_t n)
{
	size_t need;
	if (__builtin_add_overflow(b->len, n, &need) || (b->max && need > b->max) ||
	    __builtin_add_overflow(need, 1, &need))
		return -ENOMEM;
	if (need <= b->cap)
		return 0;
	/* a first reservation is taken exactly: a 64 MiB request body must
	 * not round up to 128 MiB */
	size_t cap = b->cap ? b->cap : need > 256 ? need : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *d = realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

int base_buf_put(base_buf *b, const void *p, size_t n)
{
	int rc = base_buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

int base_buf_puts(base_buf *b, const char *s)
{
	return base_buf_put(b, s, strlen(s));
}

int base_buf_putc(base_buf *b, char c)
{
	return base_buf_put(b, &c, 1);
}

int base_buf_vprintf(base_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	char small[256];
	int n = vsnprintf(small, sizeof(small), fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return -EINVAL;   /* an invalid format, which -Wformat rules out */
	if ((size_t)n < sizeof(small))
		return base_buf_put(b, small, (size_t)n);
	int rc = base_buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int base_buf_printf(base_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = base_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return rc;
}

void base_buf_reset(base_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = 0;
}

void base_buf_move(base_buf *dst, base_buf *src)
{
	if (dst == src)
		return;
	free(dst->data);
	dst->data = src->data;
	dst->len = src->len;
	dst->cap = src->cap;
	src->data = NULL;
	src->len = src->cap = 0;
}

void base_buf_free(base_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int base_grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	void **a = arr;
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 16;
	while (c < need) {
		if (c > SIZE_MAX / 2 / elem)
			return -ENOMEM;
		c *= 2;
	}
	void *t = realloc(*a, c * elem);
	if (!t)
		return -ENOMEM;
	*a = t;
	*cap = c;
	return 0;
}
