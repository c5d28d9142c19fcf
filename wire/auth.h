/* auth.h - the HTTP details server, agent and CLI share: bearer tokens
 * (reading a token file, comparing tokens without leaking through timing
 * how much of a guess was right) and reading a header the server sends. Not here: which endpoint needs which token (the
 * server's HTTP layer decides, server/http.c). */
#ifndef SMOLDER_WIRE_AUTH_H
#define SMOLDER_WIRE_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

#define WIRE_TOKEN_MIN_BYTES 16   /* shorter tokens are refused: guessable */
#define WIRE_TOKEN_MAX_BYTES 4096

/* Reads the token from the first line of path, trimmed of surrounding
 * whitespace, into a string the caller frees with free() (*out). Returns 0;
 * -ENOENT/-EACCES/... when the file cannot be read; -EINVAL when the token
 * is shorter than WIRE_TOKEN_MIN_BYTES, longer than WIRE_TOKEN_MAX_BYTES or
 * holds control bytes or spaces (it goes into an HTTP header). err (may be
 * NULL) gets a message fit for the user either way. *group_readable is set
 * (when not NULL) if the file's mode lets group or others read it, so the
 * caller can warn: a token others can read is no secret. */
int wire_auth_read_token_file(const char *path, char **out, bool *group_readable,
                              base_err *err);

/* Whether given[0..glen) equals the NUL-terminated want, in time that
 * depends on the lengths only, never on where the first difference is. */
bool wire_auth_token_eq(const char *given, size_t glen, const char *want);

/* The token of an "Authorization: Bearer TOKEN" value (scheme without
 * case, spaces after it skipped) and its length through *len; NULL when
 * value is NULL or not a Bearer credential. Points into value. */
const char *wire_auth_bearer(const char *value, size_t *len);

/* When the raw header line[0..n) ("Name: value\r\n", as libcurl hands it
 * over) is the header name (without case), copies its value, trimmed,
 * into out (cap bytes, NUL-terminated, truncated to fit); else leaves out
 * as it is. The clients read the debug-info HEAD's X-Smolder-Debuginfo
 * headers with it. */
void wire_http_header_value(const char *line, size_t n, const char *name, char *out,
                            size_t cap);

#endif
