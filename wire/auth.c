/* auth.c - bearer tokens: token files and constant-time comparison
 * (wire/auth.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "wire/auth.h"

int wire_auth_read_token_file(const char *path, char **out, bool *group_readable,
                              base_err *err)
{
	char line[WIRE_TOKEN_MAX_BYTES + 2];
	int rc = 0;
	FILE *f = NULL;
	struct stat st;

	*out = NULL;
	if (err)
		err->msg[0] = 0;
	if (group_readable)
		*group_readable = false;
	if (!(f = fopen(path, "re"))) {
		rc = base_fail(err, -errno, "cannot read token file %s: %s", path, strerror(errno));
		goto out;
	}
	if (group_readable && fstat(fileno(f), &st) == 0)
		*group_readable = (st.st_mode & (S_IRGRP | S_IROTH)) != 0;
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	/* a first line that did not fit is too long, not silently cut */
	size_t n = strlen(line);
	if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
		rc = base_fail(err, -EINVAL, "token in %s is longer than %d bytes", path,
		               WIRE_TOKEN_MAX_BYTES);
		goto out;
	}
	char *s = line;
	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] == 0x7f) {
			rc = base_fail(err, -EINVAL, "token in %s holds a space or control byte", path);
			goto out;
		}
	if (n < WIRE_TOKEN_MIN_BYTES) {
		rc = base_fail(err, -EINVAL, "token in %s is %zu bytes; at least %d are needed", path,
		               n, WIRE_TOKEN_MIN_BYTES);
		goto out;
	}
	if (!(*out = strdup(s)))
		rc = -ENOMEM;
out:
	if (f)
		fclose(f);
	/* the token must not linger on the stack */
	explicit_bzero(line, sizeof(line));
	return rc;
}

bool wire_auth_token_eq(const char *given, size_t glen, const char *want)
{
	size_t wlen = strlen(want);
	/* every byte of given is looked at, whatever matched so far; want is
	 * read cyclically so a wrong length costs the same as a wrong byte */
	volatile unsigned char diff = glen != wlen;
	if (!wlen)
		return false;
	for (size_t i = 0; i < glen; i++)
		diff |= (unsigned char)given[i] ^ (unsigned char)want[i % wlen];
	return diff == 0;
}

const char *wire_auth_bearer(const char *value, size_t *len)
{
	if (!value || strncasecmp(value, "Bearer", 6) || (value[6] != ' ' && value[6] != '\t'))
		return NULL;
	const char *t = value + 6;
	while (*t == ' ' || *t == '\t')
		t++;
	size_t n = strlen(t);
	while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
		n--;
	*len = n;
	return t;
}

void wire_http_header_value(const char *line, size_t n, const char *name, char *out,
                            size_t cap)
{
	size_t k = strlen(name);
	if (!cap || n <= k + 1 || strncasecmp(line, name, k) || line[k] != ':')
		return;
	line += k + 1;
	n -= k + 1;
	while (n && (*line == ' ' || *line == '\t'))
		line++, n--;
	while (n && (line[n - 1] == '\r' || line[n - 1] == '\n' || line[n - 1] == ' '))
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(out, line, n);
	out[n] = 0;
}
