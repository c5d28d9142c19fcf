/* http.c - the HTTP/1.1 server behind http.h: libuv accepts and reads,
 * llhttp parses, the route table picks a handler, the handler runs on the
 * libuv thread pool, and the loop thread writes the answer.
 *
 * One request per connection at a time. When llhttp completes a message,
 * the parser pauses and reading stops until the response is written; bytes
 * that arrived behind it (a pipelined request) wait in the connection's
 * input buffer. So a client can never queue work faster than it reads
 * answers, and responses go out in request order.
 *
 * A connection is READING (parsing, idle timer running), BUSY (a handler
 * runs or the response is being written), LINGER (final response sent,
 * write side shut down, reading and dropping what the client still sends so
 * it sees our answer instead of a reset) or CLOSED (handles closing). A
 * connection is never closed while its request is in the thread pool. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include <llhttp.h>
#include <uv.h>

#include "server/http.h"
#include "server/metrics.h"
#include "wire/auth.h"

#define READ_CHUNK (64 * 1024)
#define LINGER_MS 2000                      /* how long to drain after an error */
#define LINGER_MAX_BYTES (4u * 1024 * 1024) /* and at most this much */

enum { R_EXACT, R_PARAM, R_PREFIX };

typedef struct route {
	char method[24];
	char *path;          /* the pattern as registered */
	int kind;            /* R_* */
	char *prefix;        /* R_PARAM: text before the {param} segment;
	                      * R_PREFIX: the pattern without its '*' */
	char *suffix;        /* R_PARAM: text after the segment ("" at the end) */
	char *param;         /* R_PARAM: the name; R_PREFIX: "*" */
	srv_handler_fn fn;
	void *arg;
	uint64_t max_body;
	unsigned flags;
} route;

enum { C_READING, C_BUSY, C_LINGER, C_CLOSED };

typedef struct conn conn;

/* One header field: offsets into srv_req.hbytes, each string NUL-terminated. */
typedef struct hdr {
	size_t name_off, name_len, val_off, val_len;
} hdr;

typedef struct qparam {
	const char *name, *value;   /* into srv_req.decoded */
} qparam;

struct srv_resp {
	int status;                 /* 0 until a handler sets one */
	char *content_type;
	srv_buf body;
	srv_buf headers;            /* extra "Name: value\r\n" lines */
	srv_json *json;
};

struct srv_req {
	conn *c;
	uv_work_t work;
	uv_write_t wr;              /* the response */
	uv_write_t wr100;           /* "100 Continue" */
	uint64_t t0_ns;
	const route *rt;
	char method[24];
	bool head;                  /* HEAD: answer without the body */

	srv_buf url;                /* the raw request target */
	char *path;                 /* url up to '?', NUL-terminated (own copy) */
	srv_buf hbytes;             /* header names and values, NUL-separated */
	hdr *hdrs;                  /* complete fields */
	size_t nhdrs, hcap;
	hdr cur;                    /* the field being received */
	int hstate;                 /* 0 none, 1 in a name, 2 in a value, 3 done */
	size_t header_bytes;        /* counted against max_header_bytes */

	srv_buf decoded;            /* decoded query names/values and param */
	qparam *query;
	size_t nquery;
	const char *param_value;

	srv_buf body;
	uint64_t max_body;

	int err_status;             /* an answer decided while parsing, not by a handler */
	char err_msg[192];
	uint64_t err_limit;         /* the limit that was exceeded, for the JSON */
	char allow[96];             /* for 405 */

	srv_resp resp;
	srv_buf head_bytes;         /* serialized status line and headers */
	size_t sent_body;
	srv_req *wnext;             /* next in the queries' wait queue */
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	srv_http *h;
	conn *prev, *next;
	llhttp_t parser;
	int state;
	int open_handles;
	bool keep_alive;            /* another request may follow this one */
	bool close_after;           /* answer, then linger and close */
	bool in_pool;
	bool reading;
	char *in;                   /* received bytes; [in_off, in_len) unparsed */
	size_t in_off, in_len, in_cap;
	size_t linger_bytes;
	srv_req *req;
	uint64_t wait_since;        /* uv_now() when it last began waiting for a
	                             * request: the eviction order at the cap */
	uint64_t hdr_deadline;      /* uv_now() by which the current request's
	                             * headers must be complete */
	bool in_headers;            /* a request has begun, its headers not done */
	bool in_body;               /* its headers are done, its body is not */
};

struct srv_http {
	uv_loop_t *loop;
	srv_http_options opt;
	struct sockaddr_storage addr;
	route *routes;
	size_t nroutes;
	llhttp_settings_t settings;
	uv_tcp_t listener;
	uv_async_t async;
	int open_handles;           /* listener, async */
	bool listening;
	atomic_bool shutdown_sent;  /* srv_http_shutdown() ran: the async is spent */
	bool shutting_down;         /* loop thread's view: listener closed */
	conn *conns;
	uint32_t nconns;            /* loop thread: connections not closed */
	/* SRV_ROUTE_QUERY requests: how many run, and those waiting (loop
	 * thread only) */
	uint32_t queries_running;
	srv_req *waitq, *waitq_tail;
	/* 401s, counted on the loop thread, read by handlers on the pool */
	atomic_uint_fast64_t auth_rejected_writes, auth_rejected_reads;
	/* connection counters (srv_http_conn_stats), written on the loop */
	atomic_uint_fast64_t n_open, n_accepted, n_accept_errors, n_evicted, n_refused,
		n_header_timeouts, n_waiting;
	/* accept failures and refusals are logged at most once a minute each,
	 * with how many there were since: a flood must not flood the log */
	uint64_t log_accept_ms, log_cap_ms;
	uint64_t log_accept_n, log_cap_n;
};

/* ---- small helpers ---- */

static void h_close_cb(uv_handle_t *hd)
{
	srv_http *h = hd->data;
	h->open_handles--;
}

static const char *reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}

/* RFC 9110 tchar: what a header name or method may be made of. */
static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
			return false;
	return true;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Appends s[0..n) percent-decoded (and '+' as space when plus) to out,
 * NUL-terminated, and returns the offset of the result in out. -EINVAL for
 * a bad escape or an encoded NUL (results are used as C strings). */
static int pct_decode(const char *s, size_t n, bool plus, srv_buf *out, size_t *off)
{
	srv_buf_reserve(out, n + 1);
	*off = out->len;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -EINVAL;
			int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return -EINVAL;
			c = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus) {
			c = ' ';
		}
		out->data[out->len++] = c;
	}
	out->data[out->len++] = 0;
	return 0;
}

static char *xstrndup(const char *s, size_t n)
{
	char *p = srv_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

/* ---- options, addresses ---- */

void srv_http_options_default(srv_http_options *opt)
{
	memset(opt, 0, sizeof(*opt));
	opt->listen = SRV_HTTP_DEFAULT_LISTEN;
	opt->max_url_bytes = 8 * 1024;
	opt->max_header_bytes = 64 * 1024;
	opt->max_headers = 100;
	opt->max_body_bytes = 64ull * 1024 * 1024;
	opt->idle_timeout_ms = 60 * 1000;
	opt->header_timeout_ms = 10 * 1000;
	opt->max_connections = 4096;
	opt->max_queries = 8;
	opt->log_slow_ms = 1000;
}

int srv_http_parse_addr(const char *s, struct sockaddr_storage *out)
{
	char host[INET6_ADDRSTRLEN + 32];
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	size_t hl = (size_t)(colon - s);
	const char *port_s = colon + 1;
	if (!*port_s || strlen(port_s) > 5)
		return -EINVAL;
	int port = 0;
	for (const char *p = port_s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		port = port * 10 + (*p - '0');
	}
	if (port > 65535)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']' || hl - 2 >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl - 2);
		host[hl - 2] = 0;
		if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)out))
			return -EINVAL;
		return 0;
	}
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = 0;
	/* inet_pton (under uv_ip4_addr) takes only the dotted quad: no names,
	 * no "1.2.3", and an unbracketed IPv6 address fails here. */
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)out))
		return -EINVAL;
	return 0;
}

/* ---- routes ---- */

static void route_free(route *r)
{
	free(r->path);
	free(r->prefix);
	free(r->suffix);
	free(r->param);
}

/* Splits a pattern into its kind and parts; -EINVAL when malformed. */
static int route_parse(route *r, const char *pat)
{
	size_t n = strlen(pat);
	if (n == 0 || pat[0] != '/')
		return -EINVAL;
	for (const char *p = pat; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#' || *p == 0x7f)
			return -EINVAL;
	const char *open = strchr(pat, '{');
	const char *star = strchr(pat, '*');
	if (star) {
		/* a prefix: the star is the whole last segment, and nothing else is special */
		if (open || strchr(pat, '}') || star != pat + n - 1 || star[-1] != '/')
			return -EINVAL;
		r->kind = R_PREFIX;
		r->prefix = xstrndup(pat, n - 1);
		r->param = srv_xstrdup("*");
		return 0;
	}
	if (!open) {
		if (strchr(pat, '}'))
			return -EINVAL;
		r->kind = R_EXACT;
		return 0;
	}
	const char *close = strchr(open, '}');
	if (!close || open[-1] != '/' || (close[1] != 0 && close[1] != '/') ||
	    close == open + 1 || strchr(close + 1, '{') || strchr(close + 1, '}'))
		return -EINVAL;
	for (const char *p = open + 1; p < close; p++)
		if (!isalnum((unsigned char)*p) && *p != '_')
			return -EINVAL;
	r->kind = R_PARAM;
	r->prefix = xstrndup(pat, (size_t)(open - pat));
	r->param = xstrndup(open + 1, (size_t)(close - open - 1));
	r->suffix = srv_xstrdup(close + 1);
	return 0;
}

int srv_http_route(srv_http *h, const srv_route *def)
{
	int rc;
	route r = {0};
	if (!def || !def->fn || !def->method || !def->path || h->listening ||
	    !is_token(def->method) || strlen(def->method) >= sizeof(r.method))
		return -EINVAL;
	for (size_t i = 0; i < h->nroutes; i++)
		if (!strcmp(h->routes[i].method, def->method) &&
		    !strcmp(h->routes[i].path, def->path))
			return -EEXIST;
	snprintf(r.method, sizeof(r.method), "%s", def->method);
	r.path = srv_xstrdup(def->path);
	r.fn = def->fn;
	r.arg = def->arg;
	/* a GET takes no body unless its route says so: a public route (the
	 * health check, the UI) must not buffer megabytes for anybody */
	r.max_body = def->max_body_bytes ? def->max_body_bytes :
	             !strcmp(def->method, "GET") ? 0 : h->opt.max_body_bytes;
	r.flags = def->flags;
	if ((rc = route_parse(&r, def->path)))
		goto out;
	h->routes = srv_xreallocarray(h->routes, h->nroutes + 1, sizeof(*h->routes));
	h->routes[h->nroutes++] = r;
	return 0;
out:
	route_free(&r);
	return rc;
}

/* Whether path matches r's pattern; for R_PARAM and R_PREFIX, the raw
 * parameter is path[*poff, *poff + *plen). */
static bool route_match(const route *r, const char *path, size_t *poff, size_t *plen)
{
	size_t n = strlen(path);
	switch (r->kind) {
	case R_EXACT:
		return !strcmp(r->path, path);
	case R_PREFIX: {
		size_t pl = strlen(r->prefix);
		if (n < pl || memcmp(path, r->prefix, pl))
			return false;
		*poff = pl;
		*plen = n - pl;
		return true;
	}
	default: {
		size_t pl = strlen(r->prefix), sl = strlen(r->suffix);
		if (n < pl + sl + 1 || memcmp(path, r->prefix, pl) ||
		    memcmp(path + n - sl, r->suffix, sl))
			return false;
		if (memchr(path + pl, '/', n - pl - sl))
			return false;   /* the parameter is exactly one segment */
		*poff = pl;
		*plen = n - pl - sl;
		return true;
	}
	}
}

static bool method_ok(const route *r, const char *method)
{
	return !strcmp(r->method, method) ||
	       (!strcmp(method, "HEAD") && !strcmp(r->method, "GET"));
}

/* Rank of a match, lower wins: exact, then {param}, then the longest prefix. */
static size_t route_rank(const route *r)
{
	switch (r->kind) {
	case R_EXACT: return 0;
	case R_PARAM: return 1;
	default: return SIZE_MAX - strlen(r->prefix);
	}
}

/* The best route for method and path, or NULL with allow filled with the
 * methods that path does take ("" when none: a 404). */
static const route *route_find(const srv_http *h, const char *method, const char *path,
                               size_t *poff, size_t *plen, char *allow, size_t allow_len)
{
	const route *best = NULL;
	size_t best_rank = SIZE_MAX;
	const char *ms[32];
	size_t nm = 0;
	for (size_t i = 0; i < h->nroutes; i++) {
		const route *r = &h->routes[i];
		size_t o = 0, l = 0;
		if (!route_match(r, path, &o, &l))
			continue;
		if (method_ok(r, method)) {
			size_t rank = route_rank(r);
			if (!best || rank < best_rank) {
				best = r;
				best_rank = rank;
				*poff = o;
				*plen = l;
			}
		}
		/* GET routes answer HEAD too, so Allow names it */
		const char *add[2] = {r->method, !strcmp(r->method, "GET") ? "HEAD" : NULL};
		for (int k = 0; k < 2 && add[k]; k++) {
			bool dup = false;
			for (size_t m = 0; m < nm; m++)
				dup |= !strcmp(ms[m], add[k]);
			if (!dup && nm < sizeof(ms) / sizeof(*ms))
				ms[nm++] = add[k];
		}
	}
	allow[0] = 0;
	for (size_t m = 0, o = 0; m < nm; m++) {
		int w = snprintf(allow + o, allow_len - o, "%s%s", m ? ", " : "", ms[m]);
		if (w < 0 || (size_t)w >= allow_len - o)
			break;
		o += (size_t)w;
	}
	return best;
}

/* ---- responses ---- */

void srv_resp_set(srv_resp *resp, int status, const char *content_type)
{
	resp->status = status;
	free(resp->content_type);
	resp->content_type = NULL;
	if (!content_type)
		return;
	/* the type goes into the header block verbatim: no CR/LF smuggling */
	for (const char *p = content_type; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			content_type = "application/octet-stream";
	resp->content_type = srv_xstrdup(content_type);
}

srv_buf *srv_resp_body(srv_resp *resp)
{
	return &resp->body;
}

void srv_resp_take(srv_resp *resp, int status, const char *content_type, srv_buf *body)
{
	srv_resp_set(resp, status, content_type);
	srv_buf_move(&resp->body, body);
}

srv_json *srv_resp_json(srv_resp *resp, int status)
{
	srv_resp_set(resp, status, "application/json");
	srv_json_free(resp->json);
	srv_buf_reset(&resp->body);
	resp->json = srv_json_new(&resp->body);
	return resp->json;
}

static void resp_verror(srv_resp *resp, int status, uint64_t limit, const char *fmt, va_list ap)
{
	srv_buf msg = {0};
	srv_buf_vprintf(&msg, fmt, ap);
	srv_json *j = srv_resp_json(resp, status);
	srv_json_obj_begin(j);
	srv_json_key(j, "error");
	srv_json_strn(j, msg.data ? msg.data : "", msg.len);
	if (limit)
		srv_json_kv_uint(j, "limit", limit);
	srv_json_obj_end(j);
	srv_buf_free(&msg);
}

void srv_resp_error(srv_resp *resp, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	resp_verror(resp, status, 0, fmt, ap);
	va_end(ap);
}

static void resp_error_limit(srv_resp *resp, int status, uint64_t limit, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void resp_error_limit(srv_resp *resp, int status, uint64_t limit, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	resp_verror(resp, status, limit, fmt, ap);
	va_end(ap);
}

int srv_resp_header(srv_resp *resp, const char *name, const char *value)
{
	static const char *const reserved[] = {
		"Content-Length", "Content-Type", "Connection", "Transfer-Encoding", "Date",
	};
	if (!is_token(name))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(*reserved); i++)
		if (!strcasecmp(name, reserved[i]))
			return -EINVAL;
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return -EINVAL;
	srv_buf_printf(&resp->headers, "%s: %s\r\n", name, value);
	return 0;
}

static void resp_clear(srv_resp *resp)
{
	srv_json_free(resp->json);
	free(resp->content_type);
	srv_buf_free(&resp->body);
	srv_buf_free(&resp->headers);
	memset(resp, 0, sizeof(*resp));
}

/* ---- requests ---- */

const char *srv_req_method(const srv_req *req)
{
	return req->method;
}

const char *srv_req_path(const srv_req *req)
{
	return req->path ? req->path : "";
}

const char *srv_req_param(const srv_req *req, const char *name)
{
	if (!req->rt || !req->rt->param || strcmp(req->rt->param, name))
		return NULL;
	return req->param_value;
}

const char *srv_req_query(const srv_req *req, const char *name, size_t i)
{
	for (size_t k = 0; k < req->nquery; k++)
		if (!strcmp(req->query[k].name, name) && i-- == 0)
			return req->query[k].value;
	return NULL;
}

const char *srv_req_query_at(const srv_req *req, size_t i, const char **value)
{
	if (i >= req->nquery)
		return NULL;
	if (value)
		*value = req->query[i].value;
	return req->query[i].name;
}

size_t srv_req_query_count(const srv_req *req, const char *name)
{
	size_t n = 0;
	for (size_t k = 0; k < req->nquery; k++)
		n += !strcmp(req->query[k].name, name);
	return n;
}

const char *srv_req_header(const srv_req *req, const char *name)
{
	for (size_t i = 0; i < req->nhdrs; i++)
		if (!strcasecmp(req->hbytes.data + req->hdrs[i].name_off, name))
			return req->hbytes.data + req->hdrs[i].val_off;
	return NULL;
}

const void *srv_req_body(const srv_req *req, size_t *len)
{
	*len = req->body.len;
	return req->body.data ? req->body.data : "";
}

static srv_req *req_new(conn *c)
{
	srv_req *req = srv_xcalloc(1, sizeof(*req));
	req->c = c;
	req->t0_ns = uv_hrtime();
	req->work.data = req;
	req->wr.data = req;
	req->wr100.data = req;
	strcpy(req->method, "-");
	return req;
}

static void req_free(srv_req *req)
{
	if (!req)
		return;
	srv_buf_free(&req->url);
	free(req->path);
	srv_buf_free(&req->hbytes);
	free(req->hdrs);
	srv_buf_free(&req->decoded);
	free(req->query);
	srv_buf_free(&req->body);
	resp_clear(&req->resp);
	srv_buf_free(&req->head_bytes);
	free(req);
}

/* Splits the target into path and query and decodes the query and the route
 * parameter. -EINVAL (with err_msg) for a bad target or encoding. */
static int req_parse_target(srv_req *req, size_t poff, size_t plen)
{
	const char *url = req->url.data;
	const char *q = strchr(url, '?');
	size_t *offs = NULL, nq = 0, cap = 0;   /* name and value offset per parameter */
	int rc = 0;
	if (q) {
		const char *p = q + 1;
		while (*p) {
			const char *amp = strchr(p, '&');
			size_t len = amp ? (size_t)(amp - p) : strlen(p);
			if (len) {
				const char *eq = memchr(p, '=', len);
				size_t nl = eq ? (size_t)(eq - p) : len;
				if (nq == cap) {
					cap = cap ? 2 * cap : 16;
					offs = srv_xreallocarray(offs, 2 * cap, sizeof(*offs));
				}
				if (pct_decode(p, nl, true, &req->decoded, &offs[2 * nq]) ||
				    pct_decode(eq ? eq + 1 : p + len, eq ? len - nl - 1 : 0, true,
				               &req->decoded, &offs[2 * nq + 1])) {
					snprintf(req->err_msg, sizeof(req->err_msg),
					         "invalid percent-encoding in the query string");
					rc = -EINVAL;
					goto out;
				}
				nq++;
			}
			if (!amp)
				break;
			p = amp + 1;
		}
	}
	size_t param_off = 0;
	if (req->rt && req->rt->param &&
	    pct_decode(req->path + poff, plen, false, &req->decoded, &param_off)) {
		snprintf(req->err_msg, sizeof(req->err_msg),
		         "invalid percent-encoding in the path");
		rc = -EINVAL;
		goto out;
	}
	/* the decoded buffer is complete: now pointers into it are stable */
	if (req->rt && req->rt->param)
		req->param_value = req->decoded.data + param_off;
	if (nq) {
		req->query = srv_xreallocarray(NULL, nq, sizeof(*req->query));
		for (size_t i = 0; i < nq; i++) {
			req->query[i].name = req->decoded.data + offs[2 * i];
			req->query[i].value = req->decoded.data + offs[2 * i + 1];
		}
		req->nquery = nq;
	}
out:
	free(offs);
	return rc;
}

/* ---- connections ---- */

static void conn_start_reading(conn *c);
static void conn_feed(conn *c);
static void conn_respond(conn *c);

static void conn_free_if_closed(conn *c)
{
	if (--c->open_handles > 0)
		return;
	req_free(c->req);
	free(c->in);
	free(c);
}

static void conn_close_cb(uv_handle_t *hd)
{
	conn_free_if_closed(hd->data);
}

static void conn_close(conn *c)
{
	if (c->state == C_CLOSED)
		return;
	assert(!c->in_pool);
	c->state = C_CLOSED;
	c->h->nconns--;
	atomic_store(&c->h->n_open, c->h->nconns);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	uv_close((uv_handle_t *)&c->timer, conn_close_cb);
	uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
}

static void conn_timer_cb(uv_timer_t *t)
{
	/* idle too long between or inside requests, headers that did not
	 * arrive in time, a response nobody reads, or the end of a linger */
	conn *c = t->data;
	if (c->state == C_READING && c->in_headers &&
	    uv_now(c->h->loop) >= c->hdr_deadline)
		atomic_fetch_add(&c->h->n_header_timeouts, 1);
	conn_close(c);
}

static void conn_arm_timer(conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
}

/* While reading: the idle timeout, but never past the header deadline of a
 * request whose headers are still arriving. The idle timer alone restarted
 * with every byte, so a client trickling a byte a second held its
 * connection forever (slowloris). */
static void conn_arm_read_timer(conn *c)
{
	uint64_t ms = c->h->opt.idle_timeout_ms;
	if (c->in_headers) {
		uint64_t now = uv_now(c->h->loop);
		uint64_t left = c->hdr_deadline > now ? c->hdr_deadline - now : 0;
		if (left < ms)
			ms = left;
	}
	conn_arm_timer(c, ms);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	conn *c = hd->data;
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	if (c->in_cap - c->in_len < READ_CHUNK) {
		c->in_cap = c->in_len + READ_CHUNK;
		c->in = srv_xrealloc(c->in, c->in_cap);
	}
	buf->base = c->in + c->in_len;
	buf->len = c->in_cap - c->in_len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	conn *c = s->data;
	if (nread == 0)
		return;
	if (nread < 0) {
		/* EOF or reset: whatever was half-received is dropped */
		conn_close(c);
		return;
	}
	if (c->state == C_LINGER) {
		c->linger_bytes += (size_t)nread;
		if (c->linger_bytes > LINGER_MAX_BYTES)
			conn_close(c);
		return;
	}
	if (c->state != C_READING)
		return;
	c->in_len += (size_t)nread;
	conn_feed(c);
	/* still reading (a dispatched request stopped the timer, an answer
	 * armed its own) */
	if (c->state == C_READING)
		conn_arm_read_timer(c);
}

static void conn_start_reading(conn *c)
{
	if (c->reading)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read)) {
		conn_close(c);
		return;
	}
	c->reading = true;
}

static void conn_stop_reading(conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = false;
}

/* Records an answer decided while parsing. When a body may follow that we
 * will not read, the connection closes after the answer; otherwise it stays
 * usable. Returns what llhttp callbacks return to stop parsing. */
static int reject(conn *c, int status, bool stop, uint64_t limit, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int reject(conn *c, int status, bool stop, uint64_t limit, const char *fmt, ...)
{
	srv_req *req = c->req;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(req->err_msg, sizeof(req->err_msg), fmt, ap);
	va_end(ap);
	req->err_status = status;
	req->err_limit = limit;
	if (stop) {
		c->close_after = true;
		return -1;
	}
	return 0;
}

static bool count_header_bytes(conn *c, size_t n)
{
	srv_req *req = c->req;
	req->header_bytes += n;
	return req->header_bytes <= c->h->opt.max_header_bytes;
}

static int on_message_begin(llhttp_t *p)
{
	conn *c = p->data;
	req_free(c->req);
	c->req = req_new(c);
	c->in_headers = true;
	c->hdr_deadline = uv_now(c->h->loop) + c->h->opt.header_timeout_ms;
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
	conn *c = p->data;
	srv_req *req = c->req;
	if (req->url.len + len > c->h->opt.max_url_bytes)
		return reject(c, 414, true, c->h->opt.max_url_bytes,
		              "request target longer than %zu bytes", c->h->opt.max_url_bytes);
	if (!count_header_bytes(c, len))
		return reject(c, 431, true, c->h->opt.max_header_bytes,
		              "request headers larger than %zu bytes", c->h->opt.max_header_bytes);
	srv_buf_append(&req->url, at, len);
	return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
	conn *c = p->data;
	srv_req *req = c->req;
	/* each field also costs its ": " and CRLF on the wire */
	if (!count_header_bytes(c, len + (req->hstate != 1 ? 4 : 0)))
		return reject(c, 431, true, c->h->opt.max_header_bytes,
		              "request headers larger than %zu bytes", c->h->opt.max_header_bytes);
	if (req->hstate != 1) {
		if (req->nhdrs >= c->h->opt.max_headers)
			return reject(c, 431, true, c->h->opt.max_headers,
			              "more than %" PRIu32 " header fields", c->h->opt.max_headers);
		req->cur = (hdr){.name_off = req->hbytes.len};
		req->hstate = 1;
	}
	srv_buf_append(&req->hbytes, at, len);
	req->cur.name_len += len;
	return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
	conn *c = p->data;
	srv_req *req = c->req;
	srv_buf_putc(&req->hbytes, 0);
	req->cur.val_off = req->hbytes.len;
	req->hstate = 2;
	return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
	conn *c = p->data;
	srv_req *req = c->req;
	if (!count_header_bytes(c, len))
		return reject(c, 431, true, c->h->opt.max_header_bytes,
		              "request headers larger than %zu bytes", c->h->opt.max_header_bytes);
	srv_buf_append(&req->hbytes, at, len);
	req->cur.val_len += len;
	return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
	conn *c = p->data;
	srv_req *req = c->req;
	hdr *hd = &req->cur;
	if (req->hstate != 2)
		return 0;
	/* llhttp drops leading whitespace of a value but keeps trailing */
	while (hd->val_len && (req->hbytes.data[req->hbytes.len - 1] == ' ' ||
	                       req->hbytes.data[req->hbytes.len - 1] == '\t')) {
		hd->val_len--;
		req->hbytes.len--;
	}
	srv_buf_putc(&req->hbytes, 0);
	if (req->nhdrs == req->hcap) {
		req->hcap = req->hcap ? 2 * req->hcap : 16;
		req->hdrs = srv_xreallocarray(req->hdrs, req->hcap, sizeof(*req->hdrs));
	}
	req->hdrs[req->nhdrs++] = *hd;
	req->hstate = 3;
	return 0;
}

static void on_continue_written(uv_write_t *w, int status)
{
	(void)w;
	(void)status;   /* a failure shows up again on the final response */
}

/* Whether req carries the token its route needs (http.h, write_token).
 * Both tokens are compared whatever the first gave, so the time taken does
 * not tell which one a guess was tried against. */
static bool auth_ok(const srv_http *h, const srv_req *req)
{
	if (!h->opt.write_token || (req->rt->flags & SRV_ROUTE_PUBLIC))
		return true;
	size_t len = 0;
	const char *t = wire_auth_bearer(srv_req_header(req, "Authorization"), &len);
	if (!t)
		return false;
	bool w = wire_auth_token_eq(t, len, h->opt.write_token);
	bool r = h->opt.read_token && wire_auth_token_eq(t, len, h->opt.read_token);
	return w || (r && !(req->rt->flags & SRV_ROUTE_WRITE));
}

/* The first Transfer-Encoding value that is not exactly "chunked" (the
 * only coding this server decodes), or NULL. */
static const char *te_unsupported(const srv_req *req)
{
	for (size_t i = 0; i < req->nhdrs; i++) {
		if (strcasecmp(req->hbytes.data + req->hdrs[i].name_off, "Transfer-Encoding"))
			continue;
		const char *v = req->hbytes.data + req->hdrs[i].val_off;
		if (strcasecmp(v, "chunked"))
			return v;
	}
	return NULL;
}

static int on_headers_complete(llhttp_t *p)
{
	conn *c = p->data;
	srv_req *req = c->req;
	srv_http *h = c->h;
	bool has_body = (p->flags & F_CHUNKED) || p->content_length > 0;

	c->in_headers = false;
	if (req->hstate == 2)
		on_header_value_complete(p);   /* a field with an empty value */

	snprintf(req->method, sizeof(req->method), "%s",
	         llhttp_method_name((llhttp_method_t)llhttp_get_method(p)));
	req->head = llhttp_get_method(p) == HTTP_HEAD;
	c->keep_alive = llhttp_should_keep_alive(p);
	if (llhttp_get_method(p) == HTTP_CONNECT)
		return reject(c, 405, true, 0, "CONNECT is not supported");
	/* llhttp takes the chunked framing off and hands the rest on: a body
	 * sent "Transfer-Encoding: gzip, chunked" would reach a handler still
	 * compressed, as if it were the payload. No coding but chunked is
	 * implemented, so say so (RFC 9112, 6.1) instead of misreading it. */
	const char *te = te_unsupported(req);
	if (te)
		return reject(c, 501, true, 0, "Transfer-Encoding \"%.64s\" is not supported; "
		              "send the body as is or chunked", te);
	/* Ignore "Upgrade: h2c" and the like: answer in HTTP/1.1, which a client
	 * offering an upgrade must accept (RFC 9110, 7.8). */
	p->upgrade = 0;

	if (!req->url.data)
		srv_buf_putc(&req->url, 0);
	/* clients do not send fragments; if one does, it is not part of the query */
	req->url.data[strcspn(req->url.data, "#")] = 0;
	const char *url = req->url.data;
	if (url[0] != '/')
		return reject(c, 400, has_body, 0, "request target must be a path starting with '/'");
	size_t path_len = strcspn(url, "?");
	req->path = xstrndup(url, path_len);

	size_t poff = 0, plen = 0;
	req->rt = route_find(h, req->method, req->path, &poff, &plen,
	                     req->allow, sizeof(req->allow));
	if (!req->rt) {
		if (req->allow[0])
			return reject(c, 405, has_body, 0, "method %s not allowed for %s",
			              req->method, req->path);
		return reject(c, 404, has_body, 0, "no such endpoint: %s", req->path);
	}
	if (req_parse_target(req, poff, plen)) {
		char msg[sizeof(req->err_msg)];
		memcpy(msg, req->err_msg, sizeof(msg));
		return reject(c, 400, has_body, 0, "%s", msg);
	}
	if (!auth_ok(h, req)) {
		bool w = req->rt->flags & SRV_ROUTE_WRITE;
		atomic_fetch_add(w ? &h->auth_rejected_writes : &h->auth_rejected_reads, 1);
		/* the body (up to the route's limit) is not read for a client that
		 * may not send it: has_body closes the connection after the 401 */
		return reject(c, 401, has_body, 0,
		              "this endpoint needs the %s: Authorization: Bearer ...",
		              w ? "write token" : h->opt.read_token ?
		              "read token (or the write token)" : "token");
	}
	req->max_body = req->rt->max_body;
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > req->max_body)
		return reject(c, 413, true, req->max_body,
		              "request body of %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes",
		              (uint64_t)p->content_length, req->max_body);
	c->in_body = true;
	/* A client that asked may send the body now; one that did not sends it
	 * anyway. Either way the limit above and in on_body applies. */
	const char *expect = srv_req_header(req, "Expect");
	if (expect && has_body && !strcasecmp(expect, "100-continue") &&
	    p->http_major == 1 && p->http_minor >= 1) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		uv_buf_t b = uv_buf_init((char *)cont, sizeof(cont) - 1);
		if (uv_write(&req->wr100, (uv_stream_t *)&c->tcp, &b, 1, on_continue_written))
			return reject(c, 500, true, 0, "writing 100 Continue failed");
	}
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	conn *c = p->data;
	srv_req *req = c->req;
	if (req->err_status)
		return 0;   /* not possible: errors with a body stop parsing */
	if (len > req->max_body - req->body.len)
		return reject(c, 413, true, req->max_body,
		              "request body exceeds the limit of %" PRIu64 " bytes", req->max_body);
	/* With a known length (llhttp has already counted this chunk off
	 * content_length), allocate it all once the body starts arriving (not
	 * at the headers, where a client could make us hold the whole limit by
	 * sending nothing), instead of doubling up to twice the size. */
	if (!req->body.cap && (p->flags & F_CONTENT_LENGTH))
		srv_buf_reserve(&req->body, (size_t)p->content_length + len);
	srv_buf_append(&req->body, at, len);
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	((conn *)p->data)->in_body = false;
	/* Stop right behind this message: conn_feed dispatches it, and what
	 * follows waits until the answer is out. */
	return HPE_PAUSED;
}

static void log_request(conn *c, srv_req *req, size_t bytes)
{
	/* once per request, answered or not: the place to count them */
	uint64_t dur_ns = uv_hrtime() - req->t0_ns;
	srv_metrics_http(req->rt ? req->rt->path : NULL, req->resp.status, dur_ns);
	FILE *f = c->h->opt.access_log;
	/* At info level a quiet server logs nothing per request: the UI and
	 * the agents make a dozen a minute that all went well. What needs a
	 * look (a failure, a slow answer) is still a line. A 404 is no
	 * failure of the server's: a query whose selector selects nothing, a
	 * scanner's probe. */
	int st = req->resp.status;
	bool failed = st >= 400 && st != 404;
	if (!f || (!c->h->opt.log_every_request && !failed &&
	           dur_ns < (uint64_t)c->h->opt.log_slow_ms * 1000000u))
		return;
	/* The path comes off the network: print it with control bytes escaped,
	 * and not without end, so one log line stays one line. */
	char path[512];
	const char *src = req->path ? req->path : "-";
	size_t o = 0;
	for (; *src && o + 5 < sizeof(path); src++) {
		unsigned char ch = (unsigned char)*src;
		if (ch < 0x20 || ch >= 0x7f || ch == '\\')
			o += (size_t)snprintf(path + o, sizeof(path) - o, "\\x%02x", ch);
		else
			path[o++] = (char)ch;
	}
	path[o] = 0;
	double ms = (double)dur_ns / 1e6;
	fprintf(f, "%s %s %d %zu %.3fms\n", req->method, path, req->resp.status, bytes, ms);
}

static void conn_linger_or_close(conn *c);
static void conn_queue_work(conn *c);
static void query_done(srv_http *h);

static void on_written(uv_write_t *w, int status)
{
	srv_req *req = w->data;
	conn *c = req->c;
	if (c->state == C_CLOSED)
		return;   /* cancelled by a close; the close frees req */
	log_request(c, req, req->sent_body);
	req_free(req);
	c->req = NULL;
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (c->close_after || !c->keep_alive || c->h->shutting_down) {
		conn_linger_or_close(c);
		return;
	}
	c->state = C_READING;
	c->wait_since = uv_now(c->h->loop);
	conn_arm_timer(c, c->h->opt.idle_timeout_ms);
	conn_feed(c);
	if (c->state == C_READING)
		conn_start_reading(c);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
	conn *c = sr->data;
	free(sr);
	if (c->state == C_CLOSED)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	/* keep reading (and dropping) until the client closes, briefly */
	c->state = C_LINGER;
	conn_arm_timer(c, LINGER_MS);
	conn_start_reading(c);
}

/* After a final answer: shut our side down, so the client reads the whole
 * response, then drain what it still sends for a moment. Closing at once
 * with unread input would make the kernel send a reset, which can destroy
 * the answer (a 413, say) before the client has read it. */
static void conn_linger_or_close(conn *c)
{
	uv_shutdown_t *sr = srv_xcalloc(1, sizeof(*sr));
	sr->data = c;
	c->state = C_BUSY;
	conn_stop_reading(c);
	if (uv_shutdown(sr, (uv_stream_t *)&c->tcp, on_shutdown)) {
		free(sr);
		conn_close(c);
	}
}

static void fmt_date(char *buf, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Serializes c->req's response and writes it. */
static void conn_respond(conn *c)
{
	srv_req *req = c->req;
	srv_resp *resp = &req->resp;
	srv_buf *hb = &req->head_bytes;
	char date[64];
	c->state = C_BUSY;
	conn_stop_reading(c);
	if (c->h->shutting_down)
		c->keep_alive = false;
	if (resp->body.len > UINT_MAX) {
		/* uv_buf_t lengths are unsigned int; no endpoint should get here */
		resp_clear(resp);
		srv_resp_error(resp, 500, "internal error: response larger than 4 GiB");
	}
	bool no_body = resp->status < 200 || resp->status == 204 || resp->status == 304;
	if (no_body)
		srv_buf_reset(&resp->body);
	fmt_date(date, sizeof(date));
	srv_buf_reset(hb);
	srv_buf_printf(hb, "HTTP/1.1 %d %s\r\nDate: %s\r\n", resp->status,
	               reason(resp->status), date);
	if (!no_body) {
		if (resp->body.len || resp->content_type)
			srv_buf_printf(hb, "Content-Type: %s\r\n",
			               resp->content_type ? resp->content_type : "application/octet-stream");
		srv_buf_printf(hb, "Content-Length: %zu\r\n", resp->body.len);
	}
	if (resp->headers.len)
		srv_buf_append(hb, resp->headers.data, resp->headers.len);
	if (c->close_after || !c->keep_alive)
		srv_buf_puts(hb, "Connection: close\r\n");
	else if (c->parser.http_major == 1 && c->parser.http_minor == 0)
		srv_buf_puts(hb, "Connection: keep-alive\r\n");
	srv_buf_puts(hb, "\r\n");

	uv_buf_t bufs[2];
	unsigned nbufs = 0;
	bufs[nbufs++] = uv_buf_init(hb->data, (unsigned)hb->len);
	req->sent_body = 0;
	if (resp->body.len && !req->head) {
		bufs[nbufs++] = uv_buf_init(resp->body.data, (unsigned)resp->body.len);
		req->sent_body = resp->body.len;
	}
	/* a response nobody reads must not hold the connection forever */
	conn_arm_timer(c, c->h->opt.idle_timeout_ms);
	if (uv_write(&req->wr, (uv_stream_t *)&c->tcp, bufs, nbufs, on_written)) {
		log_request(c, req, 0);
		conn_close(c);
	}
}

/* Turns a request that failed while parsing into its error answer. */
static void conn_respond_error(conn *c)
{
	srv_req *req = c->req;
	resp_clear(&req->resp);
	resp_error_limit(&req->resp, req->err_status, req->err_limit, "%s", req->err_msg);
	if (req->err_status == 405 && req->allow[0])
		srv_resp_header(&req->resp, "Allow", req->allow);
	if (req->err_status == 401)
		srv_resp_header(&req->resp, "WWW-Authenticate", "Bearer realm=\"smolder\"");
	conn_respond(c);
}

/* Runs the handler and checks what it left. Pool thread or loop thread. */
static void run_handler(srv_req *req)
{
	srv_resp *resp = &req->resp;
	int rc = req->rt->fn(req->rt->arg, req, resp);
	if (rc < 0) {
		char buf[128];
		const char *e = strerror_r(-rc, buf, sizeof(buf));
		resp_clear(resp);
		srv_resp_error(resp, 500, "internal error: %s", e);
	} else if (resp->status < 200 || resp->status > 599) {
		resp_clear(resp);
		srv_resp_error(resp, 500, "internal error: the handler set no valid status");
	} else if (resp->json && srv_json_depth(resp->json)) {
		/* the handler forgot to close something: never send broken JSON */
		resp_clear(resp);
		srv_resp_error(resp, 500, "internal error: the handler left its JSON unfinished");
	}
}

static void work_cb(uv_work_t *w)
{
	run_handler(w->data);
}

static void after_work_cb(uv_work_t *w, int status)
{
	srv_req *req = w->data;
	conn *c = req->c;
	c->in_pool = false;
	if (req->rt->flags & SRV_ROUTE_QUERY)
		query_done(c->h);
	if (status < 0) {
		resp_clear(&req->resp);
		srv_resp_error(&req->resp, 503, "the server is shutting down");
	}
	conn_respond(c);
}

/* A complete request is parsed: answer it, inline or through the pool. */
static void conn_dispatch(conn *c)
{
	srv_req *req = c->req;
	c->state = C_BUSY;
	conn_stop_reading(c);
	uv_timer_stop(&c->timer);
	if (req->err_status) {
		conn_respond_error(c);
		return;
	}
	if (req->rt->flags & SRV_ROUTE_INLINE) {
		run_handler(req);
		conn_respond(c);
		return;
	}
	if (req->rt->flags & SRV_ROUTE_QUERY) {
		srv_http *h = c->h;
		if (h->queries_running >= h->opt.max_queries) {
			/* waits here, in order, on no pool thread; the connection is
			 * not read meanwhile, so nothing closes it under us */
			c->in_pool = true;
			if (h->waitq_tail)
				h->waitq_tail->wnext = req;
			else
				h->waitq = req;
			h->waitq_tail = req;
			atomic_fetch_add(&h->n_waiting, 1);
			return;
		}
		h->queries_running++;
	}
	conn_queue_work(c);
}

/* Hands c's request to the pool (a query's slot is already counted). */
static void conn_queue_work(conn *c)
{
	srv_req *req = c->req;
	c->in_pool = true;
	if (uv_queue_work(c->h->loop, &req->work, work_cb, after_work_cb)) {
		c->in_pool = false;
		if (req->rt->flags & SRV_ROUTE_QUERY)
			query_done(c->h);
		srv_resp_error(&req->resp, 503, "cannot queue the request");
		conn_respond(c);
	}
}

/* A query's slot is free: the longest-waiting query takes it. */
static void query_done(srv_http *h)
{
	h->queries_running--;
	srv_req *next = h->waitq;
	if (!next)
		return;
	h->waitq = next->wnext;
	if (!h->waitq)
		h->waitq_tail = NULL;
	next->wnext = NULL;
	atomic_fetch_sub(&h->n_waiting, 1);
	h->queries_running++;
	next->c->in_pool = false;
	conn_queue_work(next->c);
}

/* Parses what is buffered until it runs out or a request is complete. */
static void conn_feed(conn *c)
{
	while (c->state == C_READING && c->in_off < c->in_len) {
		const char *p = c->in + c->in_off;
		size_t n = c->in_len - c->in_off;
		llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
		if (e == HPE_OK) {
			c->in_off = c->in_len;
			break;
		}
		if (e == HPE_PAUSED) {
			c->in_off += (size_t)(llhttp_get_error_pos(&c->parser) - p);
			llhttp_resume(&c->parser);
			conn_dispatch(c);
			break;
		}
		/* The stream cannot be trusted past a parse error: answer, close. */
		c->close_after = true;
		if (!c->req)
			c->req = req_new(c);
		if (!c->req->err_status) {
			c->req->err_status = 400;
			snprintf(c->req->err_msg, sizeof(c->req->err_msg), "malformed request: %s",
			         llhttp_get_error_reason(&c->parser));
		}
		c->state = C_BUSY;
		conn_stop_reading(c);
		conn_respond_error(c);
		break;
	}
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
}

/* Logs a repeated condition at most once a minute, with how often it
 * happened since the last line. */
static void log_throttled(srv_http *h, uint64_t *last_ms, uint64_t *count, const char *what)
{
	uint64_t now = uv_now(h->loop);
	(*count)++;
	if (*last_ms && now - *last_ms < 60000)
		return;
	fprintf(stderr, "smolder-server: %s (%" PRIu64 " time%s since the last such message)\n",
	        what, *count, *count == 1 ? "" : "s");
	*last_ms = now ? now : 1;
	*count = 0;
}

/* At the connection cap: the connection that has waited longest for a
 * request (between requests, or trickling its headers), or NULL when every
 * one is busy with a request. */
static conn *conn_victim(srv_http *h)
{
	conn *v = NULL;
	for (conn *c = h->conns; c; c = c->next)
		if (c->state == C_READING && !c->in_body && (!v || c->wait_since < v->wait_since))
			v = c;
	return v;
}

static void on_connection(uv_stream_t *server, int status)
{
	srv_http *h = server->data;
	if (status < 0) {
		/* out of descriptors, most likely: say so, or the server just looks
		 * dead to every new client */
		char what[160];
		snprintf(what, sizeof(what), "accepting a connection failed: %s (%" PRIu32
		         " connections open)", uv_strerror(status), h->nconns);
		atomic_fetch_add(&h->n_accept_errors, 1);
		log_throttled(h, &h->log_accept_ms, &h->log_accept_n, what);
		return;
	}
	if (h->shutting_down)
		return;
	bool refuse = false;
	if (h->nconns >= h->opt.max_connections) {
		conn *v = conn_victim(h);
		if (v) {
			atomic_fetch_add(&h->n_evicted, 1);
			conn_close(v);
		} else {
			refuse = true;
			atomic_fetch_add(&h->n_refused, 1);
		}
		char what[160];
		snprintf(what, sizeof(what), "%" PRIu32 " connections open (--max-connections): %s",
		         h->opt.max_connections, refuse ? "closing new ones while all are busy" :
		         "closing the longest-waiting ones for new clients");
		log_throttled(h, &h->log_cap_ms, &h->log_cap_n, what);
	}
	conn *c = srv_xcalloc(1, sizeof(*c));
	c->h = h;
	uv_tcp_init(h->loop, &c->tcp);
	uv_timer_init(h->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->open_handles = 2;
	c->state = C_READING;
	c->wait_since = uv_now(h->loop);
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	h->nconns++;
	atomic_store(&h->n_open, h->nconns);
	/* accepted even when refused: libuv stops accepting until the pending
	 * connection is taken */
	if (uv_accept(server, (uv_stream_t *)&c->tcp) || refuse) {
		conn_close(c);
		return;
	}
	atomic_fetch_add(&h->n_accepted, 1);
	/* responses are written whole; Nagle would only delay the last bytes */
	uv_tcp_nodelay(&c->tcp, 1);
	llhttp_init(&c->parser, HTTP_REQUEST, &h->settings);
	c->parser.data = c;
	conn_arm_timer(c, h->opt.idle_timeout_ms);
	conn_start_reading(c);
}

/* ---- server ---- */

int srv_http_new(uv_loop_t *loop, const srv_http_options *opt, srv_http **out)
{
	int rc;
	srv_http *h = srv_xcalloc(1, sizeof(*h));
	h->loop = loop;
	srv_http_options def;
	srv_http_options_default(&def);
	h->opt = opt ? *opt : def;
	/* zero means "default" for every limit */
	if (!h->opt.listen)
		h->opt.listen = def.listen;
	if (!h->opt.max_url_bytes)
		h->opt.max_url_bytes = def.max_url_bytes;
	if (!h->opt.max_header_bytes)
		h->opt.max_header_bytes = def.max_header_bytes;
	if (!h->opt.max_headers)
		h->opt.max_headers = def.max_headers;
	if (!h->opt.max_body_bytes)
		h->opt.max_body_bytes = def.max_body_bytes;
	if (!h->opt.log_slow_ms)
		h->opt.log_slow_ms = def.log_slow_ms;
	if (!h->opt.idle_timeout_ms)
		h->opt.idle_timeout_ms = def.idle_timeout_ms;
	if (!h->opt.header_timeout_ms)
		h->opt.header_timeout_ms = def.header_timeout_ms;
	if (!h->opt.max_connections)
		h->opt.max_connections = def.max_connections;
	if (!h->opt.max_queries)
		h->opt.max_queries = def.max_queries;
	if ((rc = srv_http_parse_addr(h->opt.listen, &h->addr)))
		goto out;
	llhttp_settings_init(&h->settings);
	h->settings.on_message_begin = on_message_begin;
	h->settings.on_url = on_url;
	h->settings.on_header_field = on_header_field;
	h->settings.on_header_field_complete = on_header_field_complete;
	h->settings.on_header_value = on_header_value;
	h->settings.on_header_value_complete = on_header_value_complete;
	h->settings.on_headers_complete = on_headers_complete;
	h->settings.on_body = on_body;
	h->settings.on_message_complete = on_message_complete;
	*out = h;
	return 0;
out:
	srv_http_free(h);
	return rc;
}

static void on_async(uv_async_t *a)
{
	srv_http *h = a->data;
	if (h->shutting_down)
		return;
	h->shutting_down = true;
	uv_close((uv_handle_t *)&h->listener, h_close_cb);
	uv_close((uv_handle_t *)&h->async, h_close_cb);
	for (conn *c = h->conns, *next; c; c = next) {
		next = c->next;
		/* READING: nothing of ours is running; a half-sent request is
		 * dropped. BUSY and LINGER finish by themselves, and on_written
		 * sees shutting_down and closes instead of reading on. */
		if (c->state == C_READING)
			conn_close(c);
	}
}

int srv_http_listen(srv_http *h)
{
	int rc;
	if (h->listening || h->open_handles)
		return -EINVAL;
	if ((rc = uv_tcp_init(h->loop, &h->listener)))
		return rc;
	h->listener.data = h;
	h->open_handles++;
	if ((rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&h->addr, 0)) ||
	    (rc = uv_listen((uv_stream_t *)&h->listener, 511, on_connection)))
		goto out;
	if ((rc = uv_async_init(h->loop, &h->async, on_async)))
		goto out;
	h->async.data = h;
	h->open_handles++;
	h->listening = true;
	return 0;
out:
	uv_close((uv_handle_t *)&h->listener, h_close_cb);
	return rc;
}

void srv_http_auth_rejected(const srv_http *h, uint64_t *writes, uint64_t *reads)
{
	*writes = atomic_load(&((srv_http *)h)->auth_rejected_writes);
	*reads = atomic_load(&((srv_http *)h)->auth_rejected_reads);
}

void srv_http_conn_stats_get(const srv_http *h, srv_http_conn_stats *o)
{
	srv_http *m = (srv_http *)h;   /* atomics: loads only */
	o->open = atomic_load(&m->n_open);
	o->accepted = atomic_load(&m->n_accepted);
	o->accept_errors = atomic_load(&m->n_accept_errors);
	o->evicted = atomic_load(&m->n_evicted);
	o->refused = atomic_load(&m->n_refused);
	o->header_timeouts = atomic_load(&m->n_header_timeouts);
	o->queries_waiting = atomic_load(&m->n_waiting);
}

int srv_http_port(const srv_http *h)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	if (!h->listening ||
	    uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len))
		return 0;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int srv_http_address(const srv_http *h, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN + 1];
	int port = srv_http_port(h);
	int n;
	if (h->addr.ss_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)&h->addr, ip, sizeof(ip));
		n = snprintf(buf, len, "[%s]:%d", ip, port);
	} else {
		uv_ip4_name((const struct sockaddr_in *)&h->addr, ip, sizeof(ip));
		n = snprintf(buf, len, "%s:%d", ip, port);
	}
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

void srv_http_shutdown(srv_http *h)
{
	/* uv_async_send is the one libuv call safe from any thread; once only,
	 * since the handle is closed by the shutdown it triggers */
	if (h && h->listening && !atomic_exchange(&h->shutdown_sent, true))
		uv_async_send(&h->async);
}

void srv_http_free(srv_http *h)
{
	if (!h)
		return;
	assert(!h->open_handles && !h->conns);
	for (size_t i = 0; i < h->nroutes; i++)
		route_free(&h->routes[i]);
	free(h->routes);
	free(h);
}
