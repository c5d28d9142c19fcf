/* api_query.c - the read API: merge, diff, top, range and discovery over
 * HTTP. Parses parameters with query/parse.h, runs query/query.h, writes
 * the result. The API is described in docs/api.md. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "query/parse.h"
#include "query/query.h"
#include "server/api.h"

#define NS_PER_S 1000000000LL
#define DEFAULT_RANGE_NS (3600LL * NS_PER_S)
#define MAX_BY_LABELS 8

/* 400 {"error": "...", "position": N} for a parameter that did not parse. */
static void bad_param(srv_resp *resp, const char *param, const base_err *e)
{
	srv_resp_set(resp, 400, "application/json");
	base_buf *b = srv_resp_body(resp);
	char msg[400];
	snprintf(msg, sizeof(msg), "%s: %s", param, e->msg);
	/* srv_json_escape writes the quotes too */
	srv_xbuf_puts(b, "{\"error\":");
	srv_json_escape(b, msg, strlen(msg));
	srv_xbuf_printf(b, ",\"parameter\":\"%s\",\"position\":%zu}", param, e->pos);
}

/* A selector parameter; absent means "all series of the default type".
 * Returns 0, or non-zero once the response says what went wrong: a 400 for
 * a selector that does not parse, a 503 when memory ran out. */
static int get_selector(const srv_req *req, srv_resp *resp, const char *param,
                        q_selector **out)
{
	const char *s = srv_req_query(req, param, 0);
	base_err e;
	int rc = q_parse_selector(s ? s : "{}", out, &e);
	if (rc == -ENOMEM) {
		srv_resp_error(resp, 503, "out of memory parsing %s; try again", param);
		return -1;
	}
	if (rc) {
		bad_param(resp, param, &e);
		return -1;
	}
	return 0;
}

/* A time parameter, or def when absent. */
static int get_time(const srv_req *req, srv_resp *resp, const char *param, int64_t now,
                    int64_t def, int64_t *out)
{
	const char *s = srv_req_query(req, param, 0);
	base_err e;
	if (!s || !*s) {
		*out = def;
		return 0;
	}
	if (q_parse_time(s, now, out, &e)) {
		bad_param(resp, param, &e);
		return -1;
	}
	return 0;
}

/* from/to with the usual defaults (the last hour); to is inclusive for
 * users, the engine's ranges end exclusive. */
static int get_range(const srv_req *req, srv_resp *resp, const char *from_p,
                     const char *to_p, int64_t dfrom, int64_t dto, int64_t *from,
                     int64_t *to)
{
	int64_t now = base_realtime_ns();
	if (get_time(req, resp, from_p, now, dfrom ? dfrom : now - DEFAULT_RANGE_NS, from) ||
	    get_time(req, resp, to_p, now, dto ? dto : now, to))
		return -1;
	if (*to < *from) {
		srv_resp_error(resp, 400, "%s is after %s", from_p, to_p);
		return -1;
	}
	if (*to < INT64_MAX)
		(*to)++;
	return 0;
}

static int get_uint(const srv_req *req, srv_resp *resp, const char *param, size_t def,
                    size_t max, size_t *out)
{
	const char *s = srv_req_query(req, param, 0);
	if (!s || !*s) {
		*out = def;
		return 0;
	}
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end || *s == '-' || v > max) {
		srv_resp_error(resp, 400, "%s must be a whole number up to %zu", param, max);
		return -1;
	}
	*out = (size_t)v;
	return 0;
}

/* raw=1 (or true): read raw rows only, never a roll-up; the answer is the
 * same, so this is for checking roll-ups against the rows. */
static int get_raw(const srv_req *req, srv_resp *resp, bool *raw)
{
	const char *s = srv_req_query(req, "raw", 0);
	*raw = s && (!strcmp(s, "1") || !strcmp(s, "true"));
	if (s && *s && !*raw && strcmp(s, "0") && strcmp(s, "false")) {
		srv_resp_error(resp, 400, "raw must be 1, true, 0 or false");
		return -1;
	}
	return 0;
}

/* Moves a query result into the response. */
static void reply(srv_resp *resp, const char *type, base_buf *b)
{
	srv_resp_set(resp, 200, type);
	srv_xbuf_put(srv_resp_body(resp), b->data ? b->data : "", b->len);
	base_buf_free(b);
}

/* When a query started now must stop: --query-timeout from now. */
static int64_t deadline(const srv_api *api)
{
	return api->query_timeout_ns ? base_monotonic_ns() + api->query_timeout_ns : 0;
}

/* A failure of the engine: bad input it found (a regex the parser let
 * through, one too costly to evaluate, limits) is the client's; running
 * out of time and a store that cannot be reached are 503s (as Prometheus
 * answers), anything else is ours. */
static int engine_error(srv_resp *resp, int rc, const base_err *err)
{
	if (rc == -ETIMEDOUT) {
		srv_resp_error(resp, 503, "the query ran past --query-timeout: narrow the "
		               "selector or the time range");
		return 0;
	}
	if (srv_api_unavailable(resp, rc, err))
		return 0;
	if (rc == -EINVAL) {
		srv_resp_error(resp, 400, "%s", err->msg[0] ? err->msg : "invalid query");
		return 0;
	}
	if (rc == -ENOMEM) {
		srv_resp_error(resp, 413, "the result is too large: narrow the selector "
		               "or the time range, or ask for max_nodes");
		return 0;
	}
	return rc;
}

/* The JSON answers say it themselves; folded and pprof cannot, so every
 * tree answer carries it in headers too. */
static void warn_headers(srv_resp *resp, const q_tree *t)
{
	if (q_tree_saturated(t))
		srv_resp_header(resp, "X-Smolder-Saturated", "true");
	if (q_tree_damaged(t)) {
		char n[24];
		snprintf(n, sizeof(n), "%llu", (unsigned long long)q_tree_damaged(t));
		srv_resp_header(resp, "X-Smolder-Damaged-Chunks", n);
	}
}

static const char *format_of(const srv_req *req)
{
	const char *f = srv_req_query(req, "format", 0);
	return f && *f ? f : "json";
}

/* Names for user frames: the symbolizer when the server has one, through
 * the cache of names either way. */
static const q_resolver *resolver_of(const srv_api *api)
{
	static _Thread_local q_resolver r;
	if (api->sym)
		r = (q_resolver){srv_sym_resolve, api->sym, srv_sym_generation, api->names};
	else
		r = (q_resolver){NULL, NULL, NULL, api->names};
	return &r;
}

/* When side selects no series at all: answers 404 {"error": "no series
 * match ...", "no_match": {...}} (q_no_match: the matcher to blame and
 * the closest label values), so a typo is not taken for an empty profile.
 * what prefixes the message ("compare: "), param names the selector's
 * parameter. Returns 1 when it answered, 0 when series match, or a
 * negative errno. */
static int no_match(const srv_api *api, const srv_req *req, srv_resp *resp,
                    const q_side *side, const char *param, const char *what)
{
	base_buf json = {.max = Q_MAX_OUTPUT_BYTES}, msg = {.max = Q_MAX_OUTPUT_BYTES};
	base_err err = {0};
	const char *sel = srv_req_query(req, param, 0);
	int rc = q_no_match(api->db, side, sel && *sel ? sel : "{}", &json, &msg, &err);
	if (rc == 1) {
		srv_resp_set(resp, 404, "application/json");
		base_buf *b = srv_resp_body(resp);
		srv_xbuf_puts(b, "{\"error\":");
		base_buf m = {0};
		srv_xbuf_puts(&m, what);
		srv_xbuf_put(&m, msg.data, msg.len);
		srv_json_escape(b, m.data, m.len);
		base_buf_free(&m);
		srv_xbuf_printf(b, ",\"parameter\":\"%s\",\"no_match\":", param);
		srv_xbuf_put(b, json.data, json.len);
		srv_xbuf_puts(b, "}");
	} else if (rc < 0) {
		rc = engine_error(resp, rc, &err);
		rc = rc ? rc : 1;
	}
	base_buf_free(&json);
	base_buf_free(&msg);
	return rc;
}

/* The merge both /query and /top start from: the selector in `query`
 * over from/to. Returns 1 when it already answered (a bad parameter or a
 * query error), 0 with *sel and *t set, or a negative errno. */
static int merge_req(const srv_api *api, const srv_req *req, srv_resp *resp,
                     q_selector **sel, q_tree **t, q_side *side_out)
{
	st_db *db = api->db;
	base_err err = {0};
	int64_t from, to;
	size_t nm;
	bool raw;
	if (get_selector(req, resp, "query", sel) ||
	    get_range(req, resp, "from", "to", 0, 0, &from, &to) || get_raw(req, resp, &raw))
		return 1;
	q_side side = {q_selector_matchers(*sel, &nm), 0, from, to, raw, deadline(api)};
	side.nm = nm;
	int rc = q_merge(db, &side, resolver_of(api), t, &err);
	if (rc) {
		rc = engine_error(resp, rc, &err);
		return rc ? rc : 1;
	}
	if (side_out)
		*side_out = side;
	return q_tree_total(*t, 0) ? 0 : no_match(api, req, resp, &side, "query", "");
}

/* The pprof of a merge: its main mapping is the selection's executable
 * when its series agree on one, and its time the range asked. */
static int pprof_of(const srv_api *api, const q_tree *t, const char *type, const q_side *side,
                    base_buf *out, base_err *err)
{
	char *exe = NULL, *bid = NULL;
	int rc = q_main_executable(api->db, side, &exe, &bid, err);
	if (rc)
		return rc;
	/* to_ns is exclusive: the duration ends on the range's last included
	 * nanosecond, where pprof ingest dates a profile (time + duration);
	 * but not past the clock: no stored row is dated there (ingest
	 * refuses rows far ahead of it), and a profile dated a day ahead
	 * ("to=now+1d") would be refused by pprof ingest as from the future */
	int64_t end = side->to_ns - 1, now = base_realtime_ns();
	if (end > now && now > side->from_ns)
		end = now;
	q_pprof_opts o = {.type = type, .main_file = exe, .main_build_id = bid,
	                  .time_ns = side->from_ns, .duration_ns = end - side->from_ns};
	rc = q_tree_pprof(t, &o, out);
	free(exe);
	free(bid);
	return rc;
}

static int h_query(void *arg, const srv_req *req, srv_resp *resp)
{
	q_side side;
	q_selector *sel = NULL;
	q_tree *t = NULL;
	base_buf out = {.max = Q_MAX_OUTPUT_BYTES};
	base_err err = {0};
	size_t max_nodes;
	int rc = 0;
	const char *fmt = format_of(req);
	if (strcmp(fmt, "json") && strcmp(fmt, "folded") && strcmp(fmt, "pprof")) {
		srv_resp_error(resp, 400, "format must be json, folded or pprof");
		return 0;
	}
	if (get_uint(req, resp, "max_nodes", 0, 10000000, &max_nodes))
		goto out;
	if ((rc = merge_req(arg, req, resp, &sel, &t, &side))) {
		rc = rc > 0 ? 0 : rc;
		goto out;
	}
	if (!strcmp(fmt, "folded"))
		rc = q_tree_folded(t, &out);
	else if (!strcmp(fmt, "pprof"))
		rc = pprof_of(arg, t, q_selector_type(sel), &side, &out, &err);
	else
		rc = q_tree_json(t, max_nodes, &out);
	if (rc) {
		rc = engine_error(resp, rc, &err);
		goto out;
	}
	if (!strcmp(fmt, "pprof"))
		srv_resp_header(resp, "Content-Disposition", "attachment; filename=\"profile.pb.gz\"");
	warn_headers(resp, t);
	reply(resp, !strcmp(fmt, "json") ? "application/json" :
	     !strcmp(fmt, "pprof") ? "application/octet-stream" : "text/plain; charset=utf-8",
	     &out);
out:
	base_buf_free(&out);
	q_tree_free(t);
	q_selector_free(sel);
	return rc;
}

static int h_diff(void *arg, const srv_req *req, srv_resp *resp)
{
	const srv_api *api = arg;
	st_db *db = api->db;
	q_selector *bs = NULL, *cs = NULL;
	q_tree *t = NULL;
	base_buf out = {.max = Q_MAX_OUTPUT_BYTES};
	base_err err = {0};
	int64_t from, to, bfrom, bto, cfrom, cto;
	size_t max_nodes, limit, nb, nc;
	bool raw;
	int rc = 0;
	const char *fmt = format_of(req);
	if (strcmp(fmt, "json") && strcmp(fmt, "folded") && strcmp(fmt, "top")) {
		srv_resp_error(resp, 400, "format must be json, folded or top");
		return 0;
	}
	/* both sides default to the shared from/to: "two deploys" changes the
	 * selector, "before/after" the ranges */
	if (get_selector(req, resp, "base", &bs) || get_selector(req, resp, "compare", &cs) ||
	    get_range(req, resp, "from", "to", 0, 0, &from, &to) ||
	    get_range(req, resp, "base_from", "base_to", from, to - 1, &bfrom, &bto) ||
	    get_range(req, resp, "compare_from", "compare_to", from, to - 1, &cfrom, &cto) ||
	    get_uint(req, resp, "max_nodes", 0, 10000000, &max_nodes) ||
	    get_uint(req, resp, "limit", 100, 100000, &limit) || get_raw(req, resp, &raw))
		goto out;
	q_side base = {q_selector_matchers(bs, &nb), 0, bfrom, bto, raw, deadline(api)};
	q_side cmp = {q_selector_matchers(cs, &nc), 0, cfrom, cto, raw, base.deadline_ns};
	base.nm = nb;
	cmp.nm = nc;
	if ((rc = q_diff(db, &base, &cmp, resolver_of(api), &t, &err))) {
		rc = engine_error(resp, rc, &err);
		goto out;
	}
	if ((!q_tree_total(t, 0) && (rc = no_match(api, req, resp, &base, "base", "base: "))) ||
	    (!q_tree_total(t, 1) && (rc = no_match(api, req, resp, &cmp, "compare", "compare: ")))) {
		rc = rc > 0 ? 0 : rc;
		goto out;
	}
	rc = !strcmp(fmt, "folded") ? q_tree_folded(t, &out) :
	     !strcmp(fmt, "top")    ? q_diff_top_json(t, limit, &out) :
	                              q_tree_json(t, max_nodes, &out);
	if (rc) {
		rc = engine_error(resp, rc, &err);
		goto out;
	}
	warn_headers(resp, t);
	reply(resp, strcmp(fmt, "folded") ? "application/json" : "text/plain; charset=utf-8", &out);
out:
	base_buf_free(&out);
	q_tree_free(t);
	q_selector_free(bs);
	q_selector_free(cs);
	return rc;
}

static int h_top(void *arg, const srv_req *req, srv_resp *resp)
{
	q_selector *sel = NULL;
	q_tree *t = NULL;
	base_buf out = {.max = Q_MAX_OUTPUT_BYTES};
	base_err err = {0};
	size_t limit;
	int rc = 0;
	if (get_uint(req, resp, "limit", 100, 100000, &limit))
		goto out;
	if ((rc = merge_req(arg, req, resp, &sel, &t, NULL))) {
		rc = rc > 0 ? 0 : rc;
		goto out;
	}
	if ((rc = q_top_json(t, limit, &out))) {
		rc = engine_error(resp, rc, &err);
		goto out;
	}
	reply(resp, "application/json", &out);
out:
	base_buf_free(&out);
	q_tree_free(t);
	q_selector_free(sel);
	return rc;
}

static int h_range(void *arg, const srv_req *req, srv_resp *resp)
{
	st_db *db = ((srv_api *)arg)->db;
	q_selector *sel = NULL;
	base_buf out = {.max = Q_MAX_OUTPUT_BYTES};
	base_err err = {0};
	int64_t from, to, step;
	size_t nm, nby = 0, limit;
	char *by_copy = NULL;
	const char *by[MAX_BY_LABELS];
	bool raw;
	int rc = 0;
	if (get_selector(req, resp, "query", &sel) ||
	    get_range(req, resp, "from", "to", 0, 0, &from, &to) || get_raw(req, resp, &raw) ||
	    get_uint(req, resp, "limit", 0, Q_MAX_RANGE_SERIES, &limit))
		goto out;
	const char *st = srv_req_query(req, "step", 0);
	if (st && *st) {
		base_err e;
		if (q_parse_duration(st, &step, &e)) {
			bad_param(resp, "step", &e);
			goto out;
		}
	} else {
		step = q_range_default_step(to - from);
	}
	const char *b = srv_req_query(req, "by", 0);
	if (b && *b) {
		by_copy = strdup(b);
		if (!by_copy) {
			rc = -ENOMEM;
			goto out;
		}
		for (char *save = NULL, *tok = strtok_r(by_copy, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			if (nby == MAX_BY_LABELS) {
				srv_resp_error(resp, 400, "by takes at most %d labels", MAX_BY_LABELS);
				goto out;
			}
			by[nby++] = tok;
		}
	}
	q_side side = {q_selector_matchers(sel, &nm), 0, from, to, raw, deadline(arg)};
	side.nm = nm;
	if ((rc = q_range_json(db, &side, step, by, nby, limit, &out, &err))) {
		rc = engine_error(resp, rc, &err);
		goto out;
	}
	reply(resp, "application/json", &out);
out:
	free(by_copy);
	base_buf_free(&out);
	q_selector_free(sel);
	return rc;
}

/* /api/v1/types, /api/v1/labels and /api/v1/labels/{name}/values: over
 * every series of every type unless a selector narrows it. */
static int discovery(srv_api *api, const srv_req *req, srv_resp *resp, int what)
{
	q_selector *sel = NULL;
	base_buf out = {.max = Q_MAX_OUTPUT_BYTES};
	base_err err = {0};
	int64_t from, to;
	size_t nm = 0;
	const st_matcher *m = NULL;
	int rc = 0;
	/* discovery defaults to the last 24 h: wide enough to find a label,
	 * narrow enough to stay fast */
	int64_t now = base_realtime_ns();
	if (get_range(req, resp, "from", "to", now - 24 * DEFAULT_RANGE_NS, now, &from, &to))
		goto out;
	const char *q = srv_req_query(req, "query", 0);
	if (q && *q) {
		if (get_selector(req, resp, "query", &sel))
			goto out;
		m = q_selector_matchers(sel, &nm);
	}
	q_side side = {m, nm, from, to, false, deadline(api)};
	if (what == 0)
		rc = q_types_json(api->db, &side, &out, &err);
	else
		rc = q_labels_json(api->db, &side, what == 2 ? srv_req_param(req, "name") : NULL,
		                   &out, &err);
	if (rc) {
		rc = engine_error(resp, rc, &err);
		goto out;
	}
	reply(resp, "application/json", &out);
out:
	base_buf_free(&out);
	q_selector_free(sel);
	return rc;
}

static int h_types(void *arg, const srv_req *req, srv_resp *resp)
{
	return discovery(arg, req, resp, 0);
}

static int h_labels(void *arg, const srv_req *req, srv_resp *resp)
{
	return discovery(arg, req, resp, 1);
}

static int h_values(void *arg, const srv_req *req, srv_resp *resp)
{
	return discovery(arg, req, resp, 2);
}

int srv_api_query_routes(srv_http *h, srv_api *api)
{
	const srv_route routes[] = {
		{.method = "GET", .path = "/api/v1/query", .fn = h_query, .arg = api,
		 .flags = SRV_ROUTE_QUERY},
		{.method = "GET", .path = "/api/v1/diff", .fn = h_diff, .arg = api,
		 .flags = SRV_ROUTE_QUERY},
		{.method = "GET", .path = "/api/v1/top", .fn = h_top, .arg = api,
		 .flags = SRV_ROUTE_QUERY},
		{.method = "GET", .path = "/api/v1/range", .fn = h_range, .arg = api,
		 .flags = SRV_ROUTE_QUERY},
		{.method = "GET", .path = "/api/v1/types", .fn = h_types, .arg = api,
		 .flags = SRV_ROUTE_QUERY},
		{.method = "GET", .path = "/api/v1/labels", .fn = h_labels, .arg = api,
		 .flags = SRV_ROUTE_QUERY},
		{.method = "GET", .path = "/api/v1/labels/{name}/values", .fn = h_values, .arg = api,
		 .flags = SRV_ROUTE_QUERY},
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes); i++) {
		int rc = srv_http_route(h, &routes[i]);
		if (rc)
			return rc;
	}
	return 0;
}
