/* json.h - the streaming JSON writer that the server's responses are
 * built with, into a base_buf (base/buf.h). Not a JSON parser, and not
 * for storage/ or query/, which return -ENOMEM instead of aborting: every
 * function here either succeeds or aborts (through server/alloc.h). */
#ifndef SMOLDER_SRV_JSON_H
#define SMOLDER_SRV_JSON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "server/alloc.h"   /* srv_xbuf_*: what a response body is written with */

/* ---- JSON writer ----
 * Appends compact JSON to a base_buf. Strings are escaped per RFC 8259
 * (base/text.h); bytes that are not valid UTF-8 become U+FFFD, so the output is always
 * valid JSON whatever the input (file names and kernel symbols from the
 * network are not trusted to be UTF-8). Non-finite doubles become null.
 * Commas are inserted automatically. Misuse (a value where an object key is
 * due, unbalanced ends) is a programming error caught by assert(). */
typedef struct srv_json srv_json;

/* A writer appending to out, which must outlive it. Free with
 * srv_json_free(), which leaves out's contents alone. */
srv_json *srv_json_new(base_buf *out);
void srv_json_free(srv_json *j);
/* Depth of open objects and arrays: 0 once the top-level value is done. */
size_t srv_json_depth(const srv_json *j);

void srv_json_obj_begin(srv_json *j);
void srv_json_obj_end(srv_json *j);
void srv_json_arr_begin(srv_json *j);
void srv_json_arr_end(srv_json *j);
/* An object key; the next call writes its value. */
void srv_json_key(srv_json *j, const char *key);
/* s may be NULL, written as null. */
void srv_json_str(srv_json *j, const char *s);
void srv_json_strn(srv_json *j, const char *s, size_t n);
void srv_json_int(srv_json *j, int64_t v);
void srv_json_uint(srv_json *j, uint64_t v);
/* The shortest of %.15g / %.17g that reads back as v; null when not finite. */
void srv_json_double(srv_json *j, double v);
void srv_json_bool(srv_json *j, bool v);
void srv_json_null(srv_json *j);
/* Inserts already-serialized JSON as one value (trusted: not checked). */
void srv_json_raw(srv_json *j, const char *json, size_t n);

/* Key-value shorthands inside an object. */
void srv_json_kv_str(srv_json *j, const char *key, const char *s);
void srv_json_kv_int(srv_json *j, const char *key, int64_t v);
void srv_json_kv_uint(srv_json *j, const char *key, uint64_t v);
void srv_json_kv_double(srv_json *j, const char *key, double v);
void srv_json_kv_bool(srv_json *j, const char *key, bool v);

/* Appends s[0..n) to b as a quoted, escaped JSON string: base/text.h's
 * base_json_str, aborting on out-of-memory. */
void srv_json_escape(base_buf *b, const char *s, size_t n);

#endif
