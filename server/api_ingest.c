/* api_ingest.c - POST /api/v1/ingest/pprof: takes the labels from the
 * query string, decodes the profile (server/pprof_in.c) and stores it. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "server/api.h"
#include "server/metrics.h"
#include "server/pprof_in.h"

int srv_api_store_error(srv_resp *resp, int rc, const base_err *err)
{
	const char *msg = err && err->msg[0] ? err->msg : "";
	if (srv_api_unavailable(resp, rc, err))
		return 0;
	switch (rc) {
	case -EINVAL:
	case -ENOENT:   /* a sample without its stack: the input's fault */
		srv_resp_error(resp, 400, "%s", msg);
		return 0;
	case -EUSERS:
		srv_resp_error(resp, 422, "%s", msg);
		return 0;
	case -ENOSPC:
	case -EDQUOT:
		/* 507: the request was fine and nothing of it was stored; a
		 * client that keeps it and retries later loses nothing */
		srv_resp_error(resp, 507, "the server's disk is full, nothing was stored: %s",
		               msg);
		return 0;
	default:
		return rc;
	}
}

static int h_ingest_pprof(void *arg, const srv_req *req, srv_resp *resp)
{
	st_db *db = ((srv_api *)arg)->db;
	st_label labels[ST_MAX_LABELS];
	size_t nlabels = 0, len;
	const char *pk, *pv;
	for (size_t i = 0; (pk = srv_req_query_at(req, i, &pv)); i++) {
		if (!strcmp(pk, "__name__"))
			continue;
		if (nlabels == ST_MAX_LABELS) {
			srv_resp_error(resp, 400, "more than %d labels", ST_MAX_LABELS);
			return 0;
		}
		labels[nlabels++] = (st_label){pk, pv};
	}
	const char *name = srv_req_query(req, "__name__", 0);
	const uint8_t *body = srv_req_body(req, &len);
	srv_metrics_ingest_bytes(SRV_METRICS_PPROF, len);
	srv_pprof pp;
	base_err e;
	int rc = srv_pprof_decode(body, len, name && *name ? name : "process_cpu", labels,
	                          nlabels, base_realtime_ns(),
	                          &pp, &e);
	if (rc == -EINVAL) {
		srv_resp_error(resp, e.status, "%s", e.msg);
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	base_err serr = {0};
	rc = st_append(db, &pp.batch, &serr);
	if (rc) {
		rc = srv_api_store_error(resp, rc, &serr);
		goto out;
	}
	srv_metrics_ingest_ok(SRV_METRICS_PPROF, pp.batch.nsamples);
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_uint(j, "series", pp.batch.nseries);
	srv_json_kv_uint(j, "stacks", pp.batch.nstacks);
	srv_json_kv_uint(j, "rows", pp.batch.nsamples);
	srv_json_obj_end(j);
out:
	srv_pprof_free(&pp);
	return rc;
}

int srv_api_ingest_routes(srv_http *h, srv_api *api)
{
	const srv_route r = {.method = "POST", .path = "/api/v1/ingest/pprof",
	                     .fn = h_ingest_pprof, .arg = api,
	                     .max_body_bytes = SRV_PPROF_MAX_BODY,
	                     .flags = SRV_ROUTE_WRITE};
	return srv_http_route(h, &r);
}
