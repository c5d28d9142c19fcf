/* http.h - Smolder's HTTP/1.1 server: listens on one address, parses
 * requests with llhttp under size limits, routes them by method and path,
 * and runs each handler on the libuv thread pool so a long query never
 * stalls the event loop. The endpoints themselves live elsewhere and
 * register here with srv_http_route(). Not here: TLS, HTTP/2, compressed
 * request bodies.
 *
 * Threads: srv_http_new/route/listen/free run on the thread that runs the
 * loop (or before the loop starts on another); srv_http_shutdown() may be
 * called from any thread.
 * Handlers run on libuv's thread pool, several at once, and must be
 * thread-safe; they see only their own request and response. */
#ifndef SMOLDER_SRV_HTTP_H
#define SMOLDER_SRV_HTTP_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "server/json.h"

/* Declared, not included: modules that only register routes need neither
 * libuv's headers nor the socket API's names (send, bind, ...). */
typedef struct uv_loop_s uv_loop_t;
struct sockaddr_storage;

#define SRV_HTTP_DEFAULT_LISTEN "127.0.0.1:7070"

typedef struct srv_http srv_http;
typedef struct srv_req srv_req;
typedef struct srv_resp srv_resp;

typedef struct srv_http_options {
	const char *listen;         /* "ADDR:PORT", IPv4 or [IPv6] literal; port 0
	                             * picks a free one. Default 127.0.0.1:7070 */
	size_t max_url_bytes;       /* request target; default 8 KiB, else 414 */
	size_t max_header_bytes;    /* request line + header fields; default
	                             * 64 KiB, else 431 */
	uint32_t max_headers;       /* header fields per request; default 100 */
	uint64_t max_body_bytes;    /* for routes that set none; default 64 MiB,
	                             * else 413. GET routes that set none take
	                             * no body at all: one is answered 413 at
	                             * its headers, never read into memory */
	uint32_t idle_timeout_ms;   /* close a connection idle this long between
	                             * or inside requests; default 60 s */
	uint32_t header_timeout_ms; /* a request's line and headers must all
	                             * arrive this long after its first byte,
	                             * however slowly they trickle; default 10 s */
	uint32_t max_connections;   /* open at once; default 4096. At the cap a
	                             * new client takes the place of the
	                             * connection that has waited longest for a
	                             * request (a trickling or idle one); when
	                             * every connection is busy it is closed */
	uint32_t max_queries;       /* SRV_ROUTE_QUERY handlers running at once;
	                             * default 8. The rest wait on the loop, in
	                             * order, holding no pool thread, so queries
	                             * cannot take every thread from ingest */
	FILE *access_log;           /* request lines go here; NULL for none */
	bool log_every_request;     /* a line per request; otherwise only for the
	                             * failed (status >= 400 but 404) and the
	                             * slow ones */
	uint32_t log_slow_ms;       /* slow: answered in this long or longer;
	                             * default 1000 */
	/* Bearer tokens (not copied; must outlive the server). With write_token
	 * NULL every route is open. Otherwise a route flagged SRV_ROUTE_WRITE
	 * needs "Authorization: Bearer <write_token>", one flagged
	 * SRV_ROUTE_PUBLIC needs nothing, and any other route needs read_token
	 * or write_token (read_token NULL: write_token only). A request without
	 * it is answered 401 at its headers, before any body is read. */
	const char *write_token;
	const char *read_token;
} srv_http_options;

/* Runs on a thread-pool thread. Reads req, fills resp (status, content type,
 * body). Returns 0 once resp is set (any status, errors included), or a
 * negative errno for an unexpected failure: the server then discards resp
 * and answers 500 with a JSON error naming the errno. req and resp are
 * valid only during the call. */
typedef int (*srv_handler_fn)(void *arg, const srv_req *req, srv_resp *resp);

enum {
	/* Run the handler on the loop thread instead of the pool. Only for
	 * handlers that never block (no disk, no locks another thread holds for
	 * long): /healthz, so a pool busy with long queries cannot make the
	 * server look dead to its health check. */
	SRV_ROUTE_INLINE = 1u << 0,
	/* No token needed even when the server has them: /healthz and the UI's
	 * files (the page must load to ask for the token). */
	SRV_ROUTE_PUBLIC = 1u << 1,
	/* Changes what the server stores (ingest, debug-info upload): needs the
	 * write token; a read token is not enough. */
	SRV_ROUTE_WRITE = 1u << 2,
	/* A read that may run for seconds (the query API): at most
	 * max_queries such handlers run at once (srv_http_options). */
	SRV_ROUTE_QUERY = 1u << 3,
};

typedef struct srv_route {
	const char *method;         /* "GET", "POST", "PUT", "DELETE", ...; a
	                             * GET route also answers HEAD */
	const char *path;           /* "/healthz"; one {param} segment:
	                             * "/api/v1/labels/{name}/values"; or a prefix
	                             * whose last segment is "*" ("/ui/" then
	                             * "*"): the rest of the path is param "*" */
	srv_handler_fn fn;
	void *arg;                  /* passed to fn; outlives the server */
	uint64_t max_body_bytes;    /* 0: the server's max_body_bytes */
	unsigned flags;             /* SRV_ROUTE_* */
} srv_route;

/* Fills opt with the defaults above. */
void srv_http_options_default(srv_http_options *opt);

/* Parses "ADDR:PORT" (IPv4 literal, or IPv6 literal in brackets) into out.
 * -EINVAL for anything else, names included: the server binds where it is
 * told, without DNS. */
int srv_http_parse_addr(const char *s, struct sockaddr_storage *out);

/* A server on loop (which the caller owns and runs). opt may be NULL for
 * defaults; its strings and FILE are not copied and must outlive the
 * server. -EINVAL for a bad listen address or limits. Free with
 * srv_http_free(). */
int srv_http_new(uv_loop_t *loop, const srv_http_options *opt, srv_http **out);

/* Adds a route. Call before srv_http_listen(). Patterns are matched on the
 * raw path, exact first, then {param} patterns, then prefixes (longest
 * first); a parameter's value is percent-decoded. -EINVAL for a malformed
 * pattern, -EEXIST when method and path are registered already. */
int srv_http_route(srv_http *h, const srv_route *r);

/* Binds and starts accepting. -errno from bind/listen (-EADDRINUSE...). */
int srv_http_listen(srv_http *h);

/* The bound port (useful after listening on port 0), or 0 before. */
int srv_http_port(const srv_http *h);

/* Requests answered 401 since start, for want of the write token (writes)
 * or of a read or write token (reads). Any thread. */
void srv_http_auth_rejected(const srv_http *h, uint64_t *writes, uint64_t *reads);

/* Connection counters since start, for /api/v1/status. Any thread. */
typedef struct srv_http_conn_stats {
	uint64_t open;              /* now */
	uint64_t accepted;
	uint64_t accept_errors;     /* accept() failed (EMFILE, ENFILE, ...) */
	uint64_t evicted;           /* closed at the cap for a new client */
	uint64_t refused;           /* closed at the cap, nothing to evict */
	uint64_t header_timeouts;   /* headers not complete in header_timeout_ms */
	uint64_t queries_waiting;   /* SRV_ROUTE_QUERY requests waiting now */
} srv_http_conn_stats;
void srv_http_conn_stats_get(const srv_http *h, srv_http_conn_stats *out);

/* "127.0.0.1:7070" or "[::1]:7070" of the bound address into buf. Returns
 * 0, or -ENOSPC when buf is too small (64 bytes always suffice). */
int srv_http_address(const srv_http *h, char *buf, size_t len);

/* Stops accepting, closes idle connections, and lets requests being handled
 * finish and be answered (with Connection: close). Once they have, the
 * server holds no handles, so uv_run() returns when the caller's own
 * handles are closed too. Safe from any thread and more than once, once
 * srv_http_listen() has returned; a no-op when it failed. */
void srv_http_shutdown(srv_http *h);

/* Frees the server. Call once the server holds no handles: after
 * srv_http_shutdown() and uv_run() returned, after a failed
 * srv_http_listen() and uv_run() returned (closing the socket needs one
 * loop turn), or when srv_http_listen() was never called. Accepts NULL. */
void srv_http_free(srv_http *h);

/* ---- requests (for handlers) ---- */

/* "GET", "POST", ...: HEAD requests report "HEAD" (the server drops the body). */
const char *srv_req_method(const srv_req *req);
/* The path as received, before '?', not decoded. */
const char *srv_req_path(const srv_req *req);
/* The route's {param} (or "*" for a prefix route), percent-decoded; NULL
 * when the route has no such parameter. */
const char *srv_req_param(const srv_req *req, const char *name);
/* The i-th value (0-based, in request order) of query parameter name,
 * percent-decoded with '+' as space; "" for "?name" or "?name="; NULL when
 * there are fewer. Repeated parameters ("?a=1&a=2") are all kept. */
const char *srv_req_query(const srv_req *req, const char *name, size_t i);
/* The name of the i-th query parameter in request order (and its value
 * through *value when not NULL), decoded; NULL past the last. */
const char *srv_req_query_at(const srv_req *req, size_t i, const char **value);

/* How many times query parameter name occurs. */
size_t srv_req_query_count(const srv_req *req, const char *name);
/* The first header of that name, compared without case; NULL if absent. */
const char *srv_req_header(const srv_req *req, const char *name);
/* The body (chunked transfer decoded), *len bytes, NUL-terminated for
 * convenience. Never NULL. */
const void *srv_req_body(const srv_req *req, size_t *len);

/* ---- responses (for handlers) ----
 * A response starts as 500 with no body; a handler sets it with one of
 * the calls below. The server owns and frees everything in it. */

/* Sets status and content type (copied; one holding control bytes becomes
 * application/octet-stream); the body is written through srv_resp_body(). */
void srv_resp_set(srv_resp *resp, int status, const char *content_type);
/* The body buffer, to append to. */
srv_buf *srv_resp_body(srv_resp *resp);
/* Sets status and type and takes body's contents (body is left empty). */
void srv_resp_take(srv_resp *resp, int status, const char *content_type,
                   srv_buf *body);
/* Sets status and type application/json and returns a writer on the body,
 * owned by resp. The handler must close every object and array it opens. */
srv_json *srv_resp_json(srv_resp *resp, int status);
/* Replaces the response with status and {"error": "<message>"}. */
void srv_resp_error(srv_resp *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Adds a response header (both strings copied). -EINVAL when name is not
 * an HTTP token, value holds CR, LF or other control bytes, or name is one
 * the server writes itself (Content-Length, Content-Type, Connection,
 * Transfer-Encoding, Date). */
int srv_resp_header(srv_resp *resp, const char *name, const char *value);

#endif
