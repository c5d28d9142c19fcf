/* alloc.h - the server's one allocation wrapper (srv_x prefix): the
 * server may abort on out-of-memory, and does so only through these
 * functions, which never return NULL or fail. Not for storage/ or query/, which
 * return -ENOMEM so that tests can reach those paths. */
#ifndef SMOLDER_SRV_ALLOC_H
#define SMOLDER_SRV_ALLOC_H

#include <stdarg.h>
#include <stddef.h>

#include "base/buf.h"

/* Prints that n bytes could not be allocated and aborts. */
__attribute__((noreturn)) void srv_oom(size_t n);

void *srv_xmalloc(size_t n);
void *srv_xcalloc(size_t nmemb, size_t size);
void *srv_xrealloc(void *p, size_t n);
/* Reallocates p to nmemb * size bytes, aborting when the product overflows. */
void *srv_xreallocarray(void *p, size_t nmemb, size_t size);
char *srv_xstrdup(const char *s);

/* base/buf.h's appends, aborting where those return -ENOMEM (a buffer
 * the server fills has no max). The rest of base/buf.h (reset, move,
 * free) cannot fail and is called directly. */
void srv_xbuf_reserve(base_buf *b, size_t n);
void srv_xbuf_put(base_buf *b, const void *p, size_t n);
void srv_xbuf_puts(base_buf *b, const char *s);
void srv_xbuf_putc(base_buf *b, char c);
void srv_xbuf_printf(base_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_xbuf_vprintf(base_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#endif
