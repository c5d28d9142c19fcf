/* names.c - how the query engine names code nothing names, in one place:
 * the engine and the server's symbolizer (which links it without the
 * engine) both print such frames. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "query/query.h"

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

char *q_unknown_name(char *buf, size_t cap, const char *object_name, uint64_t offset)
{
	snprintf(buf, cap, "[unknown] %s+0x%" PRIx64, base_name(object_name ? object_name : "?"),
	         offset);
	return buf;
}
