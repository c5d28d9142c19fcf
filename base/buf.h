/* buf.h - the one growable byte buffer, and the one way to grow an array.
 * Every function that allocates returns 0 or -ENOMEM and leaves the
 * buffer as it was on failure: storage and query pass the error up, the
 * server aborts through its own wrappers (server/alloc.h). Not a string
 * builder with policy: limits on what a buffer may hold are the caller's
 * (max), formats are the callers'. */
#ifndef SMOLDER_BASE_BUF_H
#define SMOLDER_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

/* A plain value type, like uv_buf_t: data[0..len) is the content, and
 * data[len] is 0 after every append (so text reads as a C string; bytes
 * written straight into data are the writer's to terminate). A zeroed
 * base_buf is a valid empty buffer; the owner frees it with
 * base_buf_free(). */
typedef struct base_buf {
	char *data;
	size_t len, cap;
	size_t max;    /* the most bytes the content may reach, 0 for no limit:
	                * an append past it fails with -ENOMEM, as one that
	                * finds no memory */
} base_buf;

/* Makes room for n more bytes (and the NUL after them). */
int base_buf_reserve(base_buf *b, size_t n);
int base_buf_put(base_buf *b, const void *p, size_t n);
int base_buf_puts(base_buf *b, const char *s);
int base_buf_putc(base_buf *b, char c);
int base_buf_printf(base_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int base_buf_vprintf(base_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Empties b, keeping its memory and max. */
void base_buf_reset(base_buf *b);
/* Moves src's content into dst (whose old content is freed) and leaves
 * src empty. */
void base_buf_move(base_buf *dst, base_buf *src);
/* Frees the content; b stays a valid empty buffer (max kept). Accepts
 * NULL. */
void base_buf_free(base_buf *b);

/* Grows *arr (an array of elem-byte items, *cap of them) so that it
 * holds at least need items, doubling from 16. Returns 0, or -ENOMEM
 * leaving *arr and *cap as they were. */
int base_grow(void *arr, size_t *cap, size_t need, size_t elem);

#endif
