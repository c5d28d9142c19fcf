/* alloc.c - the server's allocation wrapper (alloc.h): one place that
 * aborts on out-of-memory with a message, for malloc and for base/buf.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/alloc.h"

void srv_oom(size_t n)
{
	/* No allocation here: the heap is what failed. */
	fprintf(stderr, "smolder-server: out of memory allocating %zu bytes\n", n);
	abort();
}

void *srv_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		srv_oom(n);
	return p;
}

void *srv_xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
	if (!p)
		srv_oom(nmemb * size);
	return p;
}

void *srv_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		srv_oom(n);
	return q;
}

void *srv_xreallocarray(void *p, size_t nmemb, size_t size)
{
	size_t n;
	if (__builtin_mul_overflow(nmemb, size, &n))
		srv_oom(SIZE_MAX);
	return srv_xrealloc(p, n);
}

char *srv_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = srv_xmalloc(n);
	memcpy(p, s, n);
	return p;
}


void srv_xbuf_reserve(base_buf *b, size_t n)
{
	if (base_buf_reserve(b, n))
		srv_oom(n);
}

void srv_xbuf_put(base_buf *b, const void *p, size_t n)
{
	if (base_buf_put(b, p, n))
		srv_oom(n);
}

void srv_xbuf_puts(base_buf *b, const char *s)
{
	srv_xbuf_put(b, s, strlen(s));
}

void srv_xbuf_putc(base_buf *b, char c)
{
	srv_xbuf_put(b, &c, 1);
}

void srv_xbuf_vprintf(base_buf *b, const char *fmt, va_list ap)
{
	if (base_buf_vprintf(b, fmt, ap))
		srv_oom(0);
}

void srv_xbuf_printf(base_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	srv_xbuf_vprintf(b, fmt, ap);
	va_end(ap);
}
