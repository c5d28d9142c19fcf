/* err.c - the setters of err.h. */
#include <stdio.h>

#include "base/err.h"

int base_vfail(base_err *err, int rc, const char *fmt, va_list ap)
{
	if (err)
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	return rc;
}

int base_fail(base_err *err, int rc, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	base_vfail(err, rc, fmt, ap);
	va_end(ap);
	return rc;
}

int base_fail_status(base_err *err, int rc, int status, const char *fmt, ...)
{
	va_list ap;
	if (err)
		err->status = status;
	va_start(ap, fmt);
	base_vfail(err, rc, fmt, ap);
	va_end(ap);
	return rc;
}
