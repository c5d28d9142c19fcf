/* api_status.c - GET /healthz, the liveness probe (public, answered on
 * the loop thread so it works while the pool is busy), and GET
 * /api/v1/status: the store's, the maintenance passes', the symbolizer's,
 * the agents', debug-info uploads', authentication's and connections'
 * figures as one JSON object
 * (docs/api.md). Reads what others keep; keeps nothing itself. */
#include <pthread.h>
#include <string.h>

#include <uv.h>

#include "server/api.h"
#include "server/json.h"
#include "server/metrics.h"

static int healthz(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)arg;
	(void)req;
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "status", "ok");
	srv_json_obj_end(j);
	return 0;
}

static int status(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)req;
	const srv_status_opts *o = arg;
	srv_maint_record *m = o->maint;
	st_stats s;
	st_get_stats(o->api->db, &s);
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "version", o->version);
	srv_json_kv_uint(j, "uptime_s", (uv_hrtime() - o->start_ns) / 1000000000u);

	srv_json_key(j, "storage");
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "backend", st_backend_name(o->api->db));
	srv_json_kv_uint(j, "head_rows", s.head_rows);
	srv_json_kv_uint(j, "head_partitions", s.head_partitions);
	srv_json_kv_uint(j, "blocks", s.blocks);
	srv_json_kv_uint(j, "block_rows", s.block_rows);
	srv_json_kv_uint(j, "block_bytes", s.block_bytes);
	srv_json_kv_uint(j, "wal_segments", s.wal_segments);
	srv_json_kv_uint(j, "wal_bytes", s.wal_bytes);
	srv_json_kv_uint(j, "wal_records", s.wal_records);
	srv_json_kv_uint(j, "wal_syncs", s.wal_syncs);
	srv_json_kv_uint(j, "wal_sync_ns", s.wal_sync_ns);
	srv_json_kv_uint(j, "series", s.series);
	srv_json_kv_uint(j, "stacks", s.stacks);
	srv_json_kv_uint(j, "replayed_records", s.replayed_records);
	srv_json_kv_uint(j, "torn_bytes", s.torn_bytes);
	if (!strcmp(st_backend_name(o->api->db), "clickhouse")) {
		srv_json_kv_uint(j, "clickhouse_inserts", s.remote_inserts);
		srv_json_kv_uint(j, "clickhouse_insert_rows", s.remote_insert_rows);
		srv_json_kv_uint(j, "clickhouse_insert_batches", s.remote_insert_batches);
		srv_json_kv_uint(j, "clickhouse_dedup_rows", s.remote_dedup_rows);
		srv_json_kv_uint(j, "clickhouse_failures", s.remote_failures);
	}
	srv_json_obj_end(j);

	pthread_mutex_lock(&m->mu);
	srv_json_key(j, "maintenance");
	srv_json_obj_begin(j);
	srv_json_kv_uint(j, "interval_s", m->interval_ms / 1000);
	srv_json_kv_uint(j, "runs", m->runs);
	srv_json_kv_int(j, "last_run_unix_s", m->last_unix_s);
	srv_json_kv_uint(j, "last_run_ms", m->last_ms);
	srv_json_kv_str(j, "last_error", m->error[0] ? m->error : NULL);
	srv_json_obj_end(j);
	pthread_mutex_unlock(&m->mu);

	if (o->api->sym) {
		srv_sym_stats ss;
		srv_sym_get_stats(o->api->sym, &ss);
		srv_json_key(j, "symbolizer");
		srv_json_obj_begin(j);
		srv_json_kv_uint(j, "lookups", ss.lookups);
		srv_json_kv_uint(j, "memory_hits", ss.memory_hits);
		srv_json_kv_uint(j, "cache_hits", ss.cache_hits);
		srv_json_kv_uint(j, "symbolized", ss.symbolized);
		srv_json_kv_uint(j, "without_debuginfo", ss.unknown);
		srv_json_kv_uint(j, "files_opened", ss.files_opened);
		srv_json_kv_uint(j, "gopclntab_read", ss.go_tables);
		srv_json_kv_uint(j, "gopclntab_unsupported", ss.go_unsupported);
		srv_json_kv_uint(j, "gopclntab_malformed", ss.go_malformed);
		srv_json_obj_end(j);
	}
	srv_api_agents_json(o->api, j);
	srv_metrics_debuginfo_json(j);

	uint64_t rej_w, rej_r;
	srv_http_auth_rejected(o->http, &rej_w, &rej_r);
	srv_json_key(j, "auth");
	srv_json_obj_begin(j);
	srv_json_kv_bool(j, "enabled", o->auth);
	srv_json_kv_uint(j, "rejected_writes", rej_w);
	srv_json_kv_uint(j, "rejected_reads", rej_r);
	srv_json_obj_end(j);

	srv_http_conn_stats cs;
	srv_http_conn_stats_get(o->http, &cs);
	srv_json_key(j, "connections");
	srv_json_obj_begin(j);
	srv_json_kv_uint(j, "open", cs.open);
	srv_json_kv_uint(j, "accepted", cs.accepted);
	srv_json_kv_uint(j, "accept_errors", cs.accept_errors);
	srv_json_kv_uint(j, "evicted", cs.evicted);
	srv_json_kv_uint(j, "refused", cs.refused);
	srv_json_kv_uint(j, "header_timeouts", cs.header_timeouts);
	srv_json_kv_uint(j, "queries_waiting", cs.queries_waiting);
	srv_json_obj_end(j);
	srv_json_obj_end(j);
	return 0;
}

int srv_api_status_routes(srv_http *h, const srv_status_opts *o)
{
	const srv_route routes[] = {
		{.method = "GET", .path = "/healthz", .fn = healthz,
		 .flags = SRV_ROUTE_INLINE | SRV_ROUTE_PUBLIC},
		{.method = "GET", .path = "/api/v1/status", .fn = status, .arg = (void *)o},
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes); i++) {
		int rc = srv_http_route(h, &routes[i]);
		if (rc)
			return rc;
	}
	return 0;
}
