/* err.h - the one shape of an error and the one way to fill it: a
 * function that can fail for a reason a person should read returns a
 * negative errno and, when its caller passed a base_err, says why in it
 * (SQLite's sqlite3ErrorWithMsg, libuv's uv__set_err). Every module's
 * errors are this struct; what differs is only which fields it sets. */
#ifndef SMOLDER_BASE_ERR_H
#define SMOLDER_BASE_ERR_H

#include <stdarg.h>
#include <stddef.h>

#define BASE_ERR_MSG 300   /* bytes of a message, NUL included */

typedef struct base_err {
	int status;              /* input refused over HTTP: the status to
	                          * answer (400, 413, ...); 0 when not set */
	size_t pos;              /* text input: the byte the message is about
	                          * (0-based); 0 when not set */
	char msg[BASE_ERR_MSG];  /* why, for a person; "" when nothing was said */
} base_err;

/* Formats fmt into err->msg (truncated to fit; status and pos untouched)
 * when err is not NULL, and returns rc, so that call sites read
 * `return base_fail(err, -EINVAL, "...", ...)`. */
int base_fail(base_err *err, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int base_vfail(base_err *err, int rc, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* The same, setting err->status too: input an HTTP handler refuses. */
int base_fail_status(base_err *err, int rc, int status, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
