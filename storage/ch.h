/* ch.h - the ClickHouse backend's parts (internal to storage/): an HTTP
 * client for ClickHouse's HTTP interface over libcurl (ch_http.c), a
 * bounded reader of its RowBinary format, and the decoders of the
 * answers the backend asks for (clickhouse.c), which the fuzzer drives
 * directly (tests/fuzz/fuzz_chrow.c): an answer is input from the
 * network like any other. */
#ifndef SMOLDER_ST_CH_H
#define SMOLDER_ST_CH_H

#include <pthread.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/map.h"
#include "storage/st_int.h"

/* ---- RowBinary ----
 * Little-endian fixed-width numbers, String as a LEB128 length and the
 * bytes, Array(T) as a LEB128 count and the elements. */
typedef struct st__rb {
	const uint8_t *p, *end;
} st__rb;

/* Each returns 0, or -EBADMSG when the input ends inside the value (or a
 * length or count is over its bound); *out is then unset. */
int st__rb_u8(st__rb *r, uint8_t *out);
int st__rb_u32(st__rb *r, uint32_t *out);
int st__rb_u64(st__rb *r, uint64_t *out);
int st__rb_i64(st__rb *r, int64_t *out);
/* A String: *s points into the input (not NUL-terminated), *n bytes,
 * at most max. */
int st__rb_str(st__rb *r, const char **s, size_t *n, size_t max);
/* The same for text: a String without NUL bytes (-EBADMSG for one). */
int st__rb_text(st__rb *r, const char **s, size_t *n, size_t max);
/* An Array's element count, at most max. */
int st__rb_count(st__rb *r, uint64_t *n, uint64_t max);

/* Writers into a buffer: the insert side. */
int st__rb_put_u8(base_buf *b, uint8_t v);
int st__rb_put_str(base_buf *b, const char *s, size_t n);

/* ---- HTTP client ---- */

/* One node's HTTP interface, from a URL of --clickhouse. */
typedef struct st__ch_node {
	char *base;        /* scheme://host:port/ */
	char *user, *password;   /* NULL when the URL has none */
	char where[300];   /* host:port, for messages */
	struct st__ch_pool *pool;   /* idle libcurl handles to this node */
} st__ch_node;

typedef struct st__ch_client {
	st__ch_node *nodes;
	size_t nnodes;
	char db[128];          /* the database every node uses */
	long timeout_ms;
	size_t front;          /* the node front requests go to first (atomic) */
} st__ch_client;

/* Parses urls (comma-separated) into c; every URL must name the same
 * database (default "default"). -EINVAL with err for a malformed one. */
int st__ch_client_init(st__ch_client *c, const char *urls, int64_t timeout_ns, base_err *err);
void st__ch_client_free(st__ch_client *c);

typedef int (*st__ch_stream_fn)(void *arg, const uint8_t *p, size_t n);

typedef struct st__ch_req {
	int node;              /* which node; -1: the front one, and on a
	                        * failed connection the next ones in turn */
	const char *sql;
	const char *settings;  /* "name=value&..." for the URL, or NULL */
	bool no_database;      /* not in the database (CREATE DATABASE) */
	const void *data;      /* INSERT ... FORMAT RowBinary: the rows */
	size_t len;
	const void *ext;       /* an external table "sel" (RowBinary rows), or NULL */
	size_t ext_len;
	const char *ext_structure;   /* its columns: "id UInt64" */
	size_t max_out;        /* answer bytes at most (-EFBIG past them) */
	st__ch_stream_fn stream;     /* the answer as it arrives, instead of out */
	void *stream_arg;
	int64_t deadline_ns;   /* CLOCK_MONOTONIC; 0: none. Past it the request
	                        * fails with -ETIMEDOUT, and ClickHouse is told
	                        * to stop the query then too */
} st__ch_req;

/* Sends one request and, with out, appends the answer (200 only) to it.
 * Every request waits for the end of the query on the server
 * (wait_end_of_query), so an error is a status, never a cut answer.
 * Returns 0; -ETIMEDOUT with err past r->deadline_ns; -EAGAIN with err
 * when the node cannot be reached, times out
 * or answers with an error that passes (a shard down, too many parts,
 * memory); -EIO with err for any other error ClickHouse reports (the
 * message is its own); -EFBIG past max_out; -ENOMEM. */
int st__ch_do(st__ch_client *c, const st__ch_req *r, base_buf *out, base_err *err);

/* Appends s[0..n) to b as a ClickHouse string literal, quotes included:
 * backslash and quote escaped, other bytes below 0x20 and 0x7f as \xHH. */
int st__ch_quote(base_buf *b, const char *s, size_t n);

/* ---- answers (clickhouse.c) ----
 * Each decodes one whole answer and calls fn per row; a non-zero return
 * from fn stops and is returned; -EBADMSG for an answer that does not
 * decode (nothing is trusted: lengths, counts and sizes are bounded). */

/* SELECT series_id, type, names, values: labels come back sorted by name
 * with the type first as ST_TYPE_LABEL, strings NUL-terminated copies
 * valid during the call. */
typedef int (*st__ch_series_fn)(void *arg, uint64_t id, const st_label *labels, uint32_t n);
int st__ch_parse_series(const uint8_t *p, size_t n, st__ch_series_fn fn, void *arg);

/* SELECT stack_id, locations: location IDs leaf first. */
typedef int (*st__ch_stack_fn)(void *arg, uint64_t id, const int64_t *locs, size_t n);
int st__ch_parse_stacks(const uint8_t *p, size_t n, st__ch_stack_fn fn, void *arg);

/* SELECT location_id, kind, build_id, object_name, offset, name, file,
 * line, lang: one st_frame_info (one allocation, the caller's) per row. */
typedef int (*st__ch_location_fn)(void *arg, st_frame_info *fi);
int st__ch_parse_locations(const uint8_t *p, size_t n, st__ch_location_fn fn, void *arg);

/* SELECT location_id, functions, files, lines (the symbol cache). */
int st__ch_parse_symbols(const uint8_t *p, size_t n, st_symbols_fn fn, void *arg);

#endif
