/* api_pyroscope.c - POST /ingest, Pyroscope's ingest API, so Pyroscope's
 * clients push to Smolder unchanged: the query string read here, the
 * body told apart by its content (srv_pyro_sniff), the formats decoded by
 * server/pyroscope.c (text, multipart) and
 * server/pprof_in.c (pprof). Not here: Pyroscope's tree and trie formats,
 * and its query API. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/api.h"
#include "server/metrics.h"
#include "server/pprof_in.h"
#include "server/pyroscope.h"

/* A decimal integer in [lo, hi] into *out; -EINVAL otherwise. */
static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	uint64_t v = 0;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > hi)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	if (v < lo || v > hi)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Stores b and answers with its counts, as /api/v1/ingest/pprof does. */
static int store(st_db *db, const st_batch *b, srv_metrics_ingest_kind k, srv_resp *resp)
{
	st_err serr = {{0}};
	int rc = st_append(db, b, &serr);
	if (rc)
		return srv_api_store_error(resp, rc, &serr);
	srv_metrics_ingest_ok(k, b->nsamples);
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_uint(j, "series", b->nseries);
	srv_json_kv_uint(j, "stacks", b->nstacks);
	srv_json_kv_uint(j, "rows", b->nsamples);
	srv_json_obj_end(j);
	return 0;
}

static int h_ingest(void *arg, const srv_req *req, srv_resp *resp)
{
	st_db *db = ((srv_api *)arg)->db;
	srv_pyro_name *nm = malloc(sizeof(*nm));
	srv_pyro txt;
	srv_pprof pp;
	srv_pyro_err e;
	srv_pprof_err pe;
	int rc = 0;
	memset(&txt, 0, sizeof(txt));
	memset(&pp, 0, sizeof(pp));
	if (!nm) {
		rc = -ENOMEM;
		goto out;
	}
	const char *name = srv_req_query(req, "name", 0);
	if (!name) {
		srv_resp_error(resp, 400, "name is required: ?name=APP.cpu{key=value}");
		goto out;
	}
	if (srv_pyro_parse_name(name, nm, &e)) {
		srv_resp_error(resp, e.status, "%s", e.msg);
		goto out;
	}
	const char *format = srv_req_query(req, "format", 0);
	if (!format || !*format)
		format = "folded";  /* Pyroscope's default */
	int fmt_pprof = !strcmp(format, "pprof");
	if (!fmt_pprof && strcmp(format, "folded") && strcmp(format, "lines")) {
		srv_resp_error(resp, 400, "format %s is not supported: folded, lines or pprof",
		               format);
		goto out;
	}
	/* Pyroscope's clients send unix seconds; the profile is dated at
	 * from, as Pyroscope dates it */
	uint64_t from = 0, until = 0, rate = SRV_PYRO_DEFAULT_RATE_HZ;
	const char *s;
	const uint64_t max_s = (uint64_t)(ST_MAX_TS_NS / 1000000000LL) - 1;
	if ((s = srv_req_query(req, "from", 0)) && *s && parse_u64(s, 0, max_s, &from)) {
		srv_resp_error(resp, 400, "from must be unix seconds");
		goto out;
	}
	if ((s = srv_req_query(req, "until", 0)) && *s && parse_u64(s, 0, max_s, &until)) {
		srv_resp_error(resp, 400, "until must be unix seconds");
		goto out;
	}
	if (from && until && until < from) {
		srv_resp_error(resp, 400, "until is before from");
		goto out;
	}
	if ((s = srv_req_query(req, "sampleRate", 0)) && *s &&
	    parse_u64(s, 1, 1000000000, &rate)) {
		srv_resp_error(resp, 400, "sampleRate must be an integer in 1..1000000000 (Hz)");
		goto out;
	}
	int64_t ts_ns;
	if (from) {
		ts_ns = (int64_t)from * 1000000000LL;
	} else {
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		ts_ns = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
	}
	size_t len;
	const uint8_t *body = srv_req_body(req, &len);
	/* the body's bytes decide, not ?format=: the Node client before 0.6
	 * sends a pprof form without any format, so "folded" would refuse it */
	const char *ct = srv_req_header(req, "Content-Type");
	srv_pyro_body kind = srv_pyro_sniff(body, len, ct);
	if (kind != SRV_PYRO_BODY_TEXT || fmt_pprof) {
		srv_metrics_ingest_bytes(SRV_METRICS_PPROF, len);
		/* the Go client and older Node ones wrap the profile in a form;
		 * newer Node ones send it bare */
		if (kind == SRV_PYRO_BODY_MULTIPART) {
			rc = srv_pyro_multipart_part(body, len, ct, "profile", &body, &len, &e);
			if (rc == -ENOENT)
				srv_resp_error(resp, 400, "the multipart body has no \"profile\" part");
			else if (rc)
				srv_resp_error(resp, e.status, "%s", e.msg);
			if (rc) {
				rc = 0;
				goto out;
			}
		}
		/* decoded under a placeholder name, then named by sample type */
		rc = srv_pprof_decode(body, len, "pyroscope", nm->labels, nm->nlabels, ts_ns, &pp,
		                      &pe);
		if (rc == -EINVAL) {
			srv_resp_error(resp, pe.status, "%s", pe.msg);
			rc = 0;
			goto out;
		}
		if (rc)
			goto out;
		srv_pyro_name_pprof_types(pp.types, pp.batch.nseries,
		                          !strcmp(nm->type, "cpu") ? "process_cpu" : nm->type);
		rc = store(db, &pp.batch, SRV_METRICS_PPROF, resp);
		goto out;
	}
	const char *agg = srv_req_query(req, "aggregationType", 0);
	srv_pyro_opts o = {
		.lines = !strcmp(format, "lines"),
		.type = nm->type,
		.units = srv_req_query(req, "units", 0),
		.level = agg && !strcmp(agg, "average"),
		.sample_rate_hz = (uint32_t)rate,
		.ts_ns = ts_ns,
		.labels = nm->labels,
		.nlabels = nm->nlabels,
	};
	rc = srv_pyro_decode_text(body, len, &o, &txt, &e);
	if (rc == -EINVAL) {
		srv_resp_error(resp, e.status, "%s", e.msg);
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	rc = store(db, &txt.batch, SRV_METRICS_PPROF, resp);
out:
	srv_pyro_free(&txt);
	srv_pprof_free(&pp);
	free(nm);
	return rc;
}

int srv_api_pyroscope_routes(srv_http *h, srv_api *api)
{
	/* a write like /api/v1/ingest/pprof: the write token when auth is on,
	 * which Pyroscope's clients send as their authToken */
	const srv_route r = {.method = "POST", .path = "/ingest", .fn = h_ingest, .arg = api,
	                     .max_body_bytes = SRV_PYRO_MAX_BODY, .flags = SRV_ROUTE_WRITE};
	return srv_http_route(h, &r);
}
