/* api_metrics.c - the server's counters and GET /metrics (metrics.h). The
 * counters are atomics bumped by handlers; the store's, symbolizer's and
 * agents' figures are read at each scrape, so nothing here duplicates
 * what they keep themselves. */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <uv.h>

#include "server/metrics.h"

/* ---- counters ---- */

static atomic_uint_fast64_t ingest_bytes[2], ingest_batches[2], ingest_rows[2];

/* Request latency buckets, seconds: from a cached merge to a long query. */
static const double le_s[] = {0.005, 0.025, 0.1, 0.5, 2.5, 10};
#define NLE (sizeof(le_s) / sizeof(*le_s))
#define MAX_ROUTES 64          /* the server registers about 20 */
#define ROUTE_OTHER "other"    /* requests no route matched (404s) */

typedef struct route_stats {
	char route[96];
	atomic_uint_fast64_t by_class[5];   /* 1xx .. 5xx */
	atomic_uint_fast64_t bucket[NLE];   /* not cumulative; summed when written */
	atomic_uint_fast64_t count, sum_ns;
} route_stats;

/* Slots are claimed under the lock and never freed; nroutes is published
 * after a slot's name is written, so readers scan without the lock. */
static route_stats routes[MAX_ROUTES];
static atomic_size_t nroutes;
static pthread_mutex_t routes_mu = PTHREAD_MUTEX_INITIALIZER;

void srv_metrics_ingest_bytes(srv_metrics_ingest_kind k, uint64_t bytes)
{
	atomic_fetch_add_explicit(&ingest_bytes[k & 1], bytes, memory_order_relaxed);
}

void srv_metrics_ingest_ok(srv_metrics_ingest_kind k, uint64_t rows)
{
	atomic_fetch_add_explicit(&ingest_batches[k & 1], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&ingest_rows[k & 1], rows, memory_order_relaxed);
}

static atomic_uint_fast64_t di_count[SRV_METRICS_DI_N], di_upload_bytes;
/* label values of smolder_debuginfo_requests_total */
static const char *const di_names[SRV_METRICS_DI_N] = {
	"uploaded", "repeat", "refused", "on_server", "debuginfod", "missing",
};

void srv_metrics_debuginfo(srv_metrics_di what, uint64_t bytes)
{
	if ((unsigned)what >= SRV_METRICS_DI_N)
		return;
	atomic_fetch_add_explicit(&di_count[what], 1, memory_order_relaxed);
	if (what == SRV_METRICS_DI_UPLOADED)
		atomic_fetch_add_explicit(&di_upload_bytes, bytes, memory_order_relaxed);
}

void srv_metrics_debuginfo_get(uint64_t counts[SRV_METRICS_DI_N], uint64_t *upload_bytes)
{
	for (int i = 0; i < SRV_METRICS_DI_N; i++)
		counts[i] = atomic_load(&di_count[i]);
	*upload_bytes = atomic_load(&di_upload_bytes);
}

void srv_metrics_debuginfo_json(srv_json *j)
{
	uint64_t c[SRV_METRICS_DI_N], bytes;
	srv_metrics_debuginfo_get(c, &bytes);
	srv_json_key(j, "debuginfo");
	srv_json_obj_begin(j);
	srv_json_kv_uint(j, "uploaded", c[SRV_METRICS_DI_UPLOADED]);
	srv_json_kv_uint(j, "upload_bytes", bytes);
	srv_json_kv_uint(j, "repeats", c[SRV_METRICS_DI_REPEAT]);
	srv_json_kv_uint(j, "refused", c[SRV_METRICS_DI_REFUSED]);
	srv_json_kv_uint(j, "skipped_on_server", c[SRV_METRICS_DI_ON_SERVER]);
	srv_json_kv_uint(j, "skipped_debuginfod", c[SRV_METRICS_DI_DEBUGINFOD]);
	srv_json_kv_uint(j, "missing", c[SRV_METRICS_DI_MISSING]);
	srv_json_obj_end(j);
}

static route_stats *route_slot(const char *route)
{
	size_t n = atomic_load(&nroutes);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(routes[i].route, route))
			return &routes[i];
	pthread_mutex_lock(&routes_mu);
	route_stats *r = NULL;
	n = atomic_load(&nroutes);
	for (size_t i = 0; i < n && !r; i++)
		if (!strcmp(routes[i].route, route))
			r = &routes[i];
	if (!r && n < MAX_ROUTES) {
		r = &routes[n];
		snprintf(r->route, sizeof(r->route), "%s", route);
		atomic_store(&nroutes, n + 1);
	}
	pthread_mutex_unlock(&routes_mu);
	/* past MAX_ROUTES everything lands in the last slot rather than
	 * growing without end */
	return r ? r : &routes[MAX_ROUTES - 1];
}

void srv_metrics_http(const char *route, int status, uint64_t dur_ns)
{
	route_stats *r = route_slot(route ? route : ROUTE_OTHER);
	int cls = status / 100 - 1;
	if (cls < 0 || cls > 4)
		cls = 4;
	atomic_fetch_add_explicit(&r->by_class[cls], 1, memory_order_relaxed);
	double s = (double)dur_ns / 1e9;
	size_t b = 0;
	while (b < NLE && s > le_s[b])
		b++;
	if (b < NLE)
		atomic_fetch_add_explicit(&r->bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->sum_ns, dur_ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->count, 1, memory_order_relaxed);
}

/* ---- the text writer ---- */

static void escape(base_buf *b, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			srv_xbuf_puts(b, "\\\\");
		else if (*s == '\n')
			srv_xbuf_puts(b, "\\n");
		else if (*s == '"' && quote)
			srv_xbuf_puts(b, "\\\"");
		else
			srv_xbuf_putc(b, *s);
	}
}

void srv_metrics_family(base_buf *b, const char *name, const char *type, const char *help)
{
	srv_xbuf_printf(b, "# HELP %s ", name);
	escape(b, help, false);
	srv_xbuf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void sample_head(base_buf *b, const char *name, const char *const *labels, int nlabels)
{
	srv_xbuf_puts(b, name);
	if (nlabels <= 0)
		return;
	srv_xbuf_putc(b, '{');
	for (int i = 0; i < nlabels; i++) {
		srv_xbuf_printf(b, "%s%s=\"", i ? "," : "", labels[2 * i]);
		escape(b, labels[2 * i + 1], true);
		srv_xbuf_putc(b, '"');
	}
	srv_xbuf_putc(b, '}');
}

void srv_metrics_sample_u64(base_buf *b, const char *name, const char *const *labels,
                            int nlabels, uint64_t v)
{
	sample_head(b, name, labels, nlabels);
	srv_xbuf_printf(b, " %" PRIu64 "\n", v);
}

void srv_metrics_sample_f64(base_buf *b, const char *name, const char *const *labels,
                            int nlabels, double v)
{
	sample_head(b, name, labels, nlabels);
	srv_xbuf_printf(b, " %.9g\n", v);
}

/* A family of one unlabelled sample. */
static void one(base_buf *b, const char *name, const char *type, const char *help, uint64_t v)
{
	srv_metrics_family(b, name, type, help);
	srv_metrics_sample_u64(b, name, NULL, 0, v);
}

/* ---- GET /metrics ---- */

/* nftw has no argument for its callback: one walk at a time. */
static pthread_mutex_t du_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t du_bytes;

static int du_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F || flag == FTW_D || flag == FTW_DP || flag == FTW_SL)
		du_bytes += (uint64_t)st->st_blocks * 512;
	return 0;
}

/* What the data dir takes on disk (as du counts it), blocks, WAL, meta.db
 * and debug info together: the figure --max-disk and the disk's free space
 * are compared with. Files vanishing during the walk are skipped. */
static uint64_t disk_use(const char *dir)
{
	pthread_mutex_lock(&du_mu);
	du_bytes = 0;
	nftw(dir, du_cb, 32, FTW_PHYS);
	uint64_t v = du_bytes;
	pthread_mutex_unlock(&du_mu);
	return v;
}

static void agent_counter(void *arg, const char *agent_id, const char *hostname,
                          const char *counter, uint64_t value)
{
	const char *l[] = {"agent", agent_id, "hostname", hostname ? hostname : "",
	                   "counter", counter};
	srv_metrics_sample_u64(arg, "smolder_agent_reported_total", l, 3, value);
}

void srv_metrics_write_http(base_buf *b)
{
	/* routes are claimed once; a slot claimed during this scrape shows next
	 * time */
	size_t n = atomic_load(&nroutes);
	static const char *const cls[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
	srv_metrics_family(b, "smolder_http_requests_total", "counter",
	                   "HTTP requests answered, by route pattern and status class.");
	for (size_t i = 0; i < n; i++)
		for (int c = 0; c < 5; c++) {
			uint64_t v = atomic_load(&routes[i].by_class[c]);
			const char *l[] = {"route", routes[i].route, "code", cls[c]};
			if (v)
				srv_metrics_sample_u64(b, "smolder_http_requests_total", l, 2, v);
		}
	srv_metrics_family(b, "smolder_http_request_duration_seconds", "histogram",
	                   "Time from a request's arrival to the end of its answer, by route "
	                   "pattern (the query endpoints' are the query latency).");
	for (size_t i = 0; i < n; i++) {
		route_stats *r = &routes[i];
		/* count first: a request landing mid-scrape may then make the
		 * buckets exceed it by one, never fall short */
		uint64_t count = atomic_load(&r->count), cum = 0;
		char le[32];
		for (size_t k = 0; k <= NLE; k++) {
			if (k < NLE) {
				cum += atomic_load(&r->bucket[k]);
				snprintf(le, sizeof(le), "%g", le_s[k]);
			}
			const char *l[] = {"route", r->route, "le", k < NLE ? le : "+Inf"};
			srv_metrics_sample_u64(b, "smolder_http_request_duration_seconds_bucket", l, 2,
			                       k < NLE ? (cum < count ? cum : count) : count);
		}
		const char *l[] = {"route", r->route};
		srv_metrics_sample_f64(b, "smolder_http_request_duration_seconds_sum", l, 1,
		                       (double)atomic_load(&r->sum_ns) / 1e9);
		srv_metrics_sample_u64(b, "smolder_http_request_duration_seconds_count", l, 1, count);
	}
}

/* A level's label: "raw", or its step ("1h", "6h", "1d", else seconds). */
static const char *level_name(int64_t step_ns, char buf[32])
{
	int64_t s = step_ns / 1000000000LL;
	if (s % 86400 == 0)
		snprintf(buf, 32, "%" PRId64 "d", s / 86400);
	else if (s % 3600 == 0)
		snprintf(buf, 32, "%" PRId64 "h", s / 3600);
	else if (s % 60 == 0)
		snprintf(buf, 32, "%" PRId64 "m", s / 60);
	else
		snprintf(buf, 32, "%" PRId64 "s", s);
	return buf;
}

/* A counter by level: v[0] for "raw", v[1 + i] for roll-up level i. */
static void by_level(base_buf *b, const char *family, const char *help, const st_stats *s,
                    const uint64_t *v)
{
	char name[32];
	srv_metrics_family(b, family, "counter", help);
	const char *raw[] = {"level", "raw"};
	srv_metrics_sample_u64(b, family, raw, 1, v[0]);
	for (uint32_t i = 0; i < s->nrollups; i++) {
		const char *l[] = {"level", level_name(s->rollup_steps_ns[i], name)};
		srv_metrics_sample_u64(b, family, l, 1, v[1 + i]);
	}
}

/* What reads cost, by level, and what the roll-up levels hold. */
static void write_rollups(base_buf *b, const st_stats *s)
{
	char name[32];
	by_level(b, "smolder_query_rows_read_total", "Rows decoded by queries, by level: raw "
	         "rows (blocks and the head) or a roll-up level by its step.", s, s->rows_read);
	static const struct {
		const char *name, *help;
		size_t off;
	} g[] = {
		{"smolder_rollup_files", "Roll-up files, by level.",
		 offsetof(st_stats, rollup_files)},
		{"smolder_rollup_rows", "Rows in roll-up files, by level.",
		 offsetof(st_stats, rollup_rows)},
		{"smolder_rollup_bytes", "Bytes of roll-up files on disk, by level.",
		 offsetof(st_stats, rollup_bytes)},
	};
	for (size_t k = 0; k < sizeof(g) / sizeof(*g); k++) {
		srv_metrics_family(b, g[k].name, "gauge", g[k].help);
		const uint64_t *v = (const uint64_t *)((const char *)s + g[k].off);
		for (uint32_t i = 0; i < s->nrollups; i++) {
			const char *l[] = {"level", level_name(s->rollup_steps_ns[i], name)};
			srv_metrics_sample_u64(b, g[k].name, l, 1, v[i]);
		}
	}
	one(b, "smolder_rollup_damaged_total", "counter",
	    "Roll-up files found damaged (at open or by a query) since the server started; "
	    "each is kept out of reads and rebuilt.", s->rollup_damaged);
	one(b, "smolder_query_rollup_fallbacks_total", "counter",
	    "Query parts read from raw rows because the roll-up file they were planned on "
	    "turned out damaged.", s->rollup_fallbacks);
}

static int h_metrics(void *arg, const srv_req *req, srv_resp *resp)
{
	(void)req;
	const srv_metrics_opts *o = arg;
	srv_resp_set(resp, 200, "text/plain; version=0.0.4; charset=utf-8");
	base_buf *b = srv_resp_body(resp);

	srv_metrics_family(b, "smolder_build_info", "gauge", "Smolder's version, as a label.");
	const char *vl[] = {"version", o->version};
	srv_metrics_sample_u64(b, "smolder_build_info", vl, 1, 1);
	srv_metrics_family(b, "smolder_uptime_seconds", "gauge", "Seconds since the server started.");
	srv_metrics_sample_f64(b, "smolder_uptime_seconds", NULL, 0,
	                       (double)(uv_hrtime() - o->start_ns) / 1e9);

	static const char *const kinds[] = {"native", "pprof"};
	static const struct {
		const char *name, *help;
		atomic_uint_fast64_t *v;
	} ing[] = {
		{"smolder_ingest_batches_total", "Batches stored, by format.", ingest_batches},
		{"smolder_ingest_rows_total", "Rows (samples) stored, by format.", ingest_rows},
		{"smolder_ingest_received_bytes_total",
		 "Request body bytes received on the ingest endpoints, stored or rejected.",
		 ingest_bytes},
	};
	for (size_t i = 0; i < sizeof(ing) / sizeof(*ing); i++) {
		srv_metrics_family(b, ing[i].name, "counter", ing[i].help);
		for (int k = 0; k < 2; k++) {
			const char *l[] = {"format", kinds[k]};
			srv_metrics_sample_u64(b, ing[i].name, l, 1, atomic_load(&ing[i].v[k]));
		}
	}

	st_stats s;
	st_get_stats(o->api->db, &s);
	one(b, "smolder_wal_fsyncs_total", "counter", "WAL fdatasync calls (group commits).",
	    s.wal_syncs);
	srv_metrics_family(b, "smolder_wal_fsync_seconds_total", "counter",
	                   "Seconds spent in WAL fdatasync calls.");
	srv_metrics_sample_f64(b, "smolder_wal_fsync_seconds_total", NULL, 0,
	                       (double)s.wal_sync_ns / 1e9);
	one(b, "smolder_wal_records_total", "counter", "WAL records appended.", s.wal_records);
	one(b, "smolder_wal_bytes", "gauge", "Bytes of WAL segments on disk.", s.wal_bytes);
	one(b, "smolder_wal_segments", "gauge", "WAL segments on disk.", s.wal_segments);
	one(b, "smolder_blocks", "gauge", "Storage blocks.", s.blocks);
	one(b, "smolder_block_rows", "gauge", "Rows in storage blocks.", s.block_rows);
	one(b, "smolder_block_bytes", "gauge", "Bytes of storage blocks on disk.", s.block_bytes);
	one(b, "smolder_head_rows", "gauge", "Rows in the in-memory head, not cut into blocks yet.",
	    s.head_rows);
	bool ch = !strcmp(st_backend_name(o->api->db), "clickhouse");
	/* ClickHouse's levels are tables it sums itself: no files, and the
	 * rows it reads are its own to count (system.query_log) */
	if (!ch)
		write_rollups(b, &s);
	one(b, "smolder_series", "gauge", "Series known to the store.", s.series);
	one(b, "smolder_stacks", "gauge", "Distinct stacks known to the store.", s.stacks);
	if (ch) {
		by_level(b, "smolder_clickhouse_reads_total", "Queries of sample sums sent to "
		         "ClickHouse, by level: raw rows (samples) or a roll-up level's table by its "
		         "step.", &s, s.remote_reads);
		one(b, "smolder_clickhouse_inserts_total", "counter",
		    "Inserts of sample rows into ClickHouse (each holds one or more batches).",
		    s.remote_inserts);
		one(b, "smolder_clickhouse_insert_rows_total", "counter",
		    "Sample rows those inserts carried.", s.remote_insert_rows);
		one(b, "smolder_clickhouse_insert_batches_total", "counter",
		    "Batches grouped into inserts, acknowledged or failed.", s.remote_insert_batches);
		one(b, "smolder_clickhouse_dedup_rows_total", "counter",
		    "Rows of batches sent again that ClickHouse held already, not stored twice.",
		    s.remote_dedup_rows);
		one(b, "smolder_clickhouse_failures_total", "counter",
		    "ClickHouse requests that failed.", s.remote_failures);
	}
	one(b, "smolder_data_dir_bytes", "gauge",
	    "Disk space the data directory takes (blocks, WAL, metadata, debug info).",
	    disk_use(o->data_dir));

	if (o->api->names) {
		uint64_t hits, misses, resets;
		size_t bytes;
		q_cache_stats(o->api->names, &hits, &misses, &resets, &bytes);
		one(b, "smolder_query_names_cache_hits_total", "counter",
		    "Stacks whose path of function names a query found in the cache.", hits);
		one(b, "smolder_query_names_cache_misses_total", "counter",
		    "Stacks a query had to read from storage and name.", misses);
		one(b, "smolder_query_names_cache_resets_total", "counter",
		    "Times the cache of names started over (full, or new debug info).", resets);
		one(b, "smolder_query_names_cache_bytes", "gauge",
		    "Memory the cache of names holds.", bytes);
	}
	if (o->api->sym) {
		srv_sym_stats ss;
		srv_sym_get_stats(o->api->sym, &ss);
		one(b, "smolder_symbolizer_lookups_total", "counter",
		    "Locations the symbolizer was asked to name.", ss.lookups);
		one(b, "smolder_symbolizer_memory_hits_total", "counter",
		    "Lookups answered from the in-memory cache.", ss.memory_hits);
		one(b, "smolder_symbolizer_cache_hits_total", "counter",
		    "Lookups answered from the persistent (SQLite) cache.", ss.cache_hits);
		one(b, "smolder_symbolizer_symbolized_total", "counter",
		    "Locations named from debug info.", ss.symbolized);
		one(b, "smolder_symbolizer_without_debuginfo_total", "counter",
		    "Lookups whose build ID has no debug info (yet).", ss.unknown);
		one(b, "smolder_symbolizer_files_opened_total", "counter",
		    "Debug-info files opened and parsed.", ss.files_opened);
		one(b, "smolder_symbolizer_gopclntab_read_total", "counter",
		    "Go symbol tables (.gopclntab) read, for Go binaries without DWARF.",
		    ss.go_tables);
		one(b, "smolder_symbolizer_gopclntab_unsupported_total", "counter",
		    "Go symbol tables with a version (magic) this server does not read: their "
		    "frames stay addresses.", ss.go_unsupported);
		one(b, "smolder_symbolizer_gopclntab_malformed_total", "counter",
		    "Go symbol tables whose header does not hold together: their frames stay "
		    "addresses.", ss.go_malformed);
	}

	uint64_t dc[SRV_METRICS_DI_N], dbytes;
	srv_metrics_debuginfo_get(dc, &dbytes);
	srv_metrics_family(b, "smolder_debuginfo_requests_total", "counter",
	                   "Debug-info requests by outcome: uploads stored, repeats and "
	                   "refusals; asks (HEAD) answered from the store, from debuginfod "
	                   "(no upload needed) or missing (an upload is welcome).");
	for (int k = 0; k < SRV_METRICS_DI_N; k++) {
		const char *l[] = {"outcome", di_names[k]};
		srv_metrics_sample_u64(b, "smolder_debuginfo_requests_total", l, 1, dc[k]);
	}
	one(b, "smolder_debuginfo_upload_bytes_total", "counter",
	    "Bytes of debug-info files uploaded and stored.", dbytes);
	srv_metrics_write_http(b);

	srv_metrics_family(b, "smolder_agent_reported_total", "counter",
	                   "Counters each agent reports with its batches (totals since the agent "
	                   "started: samples, drops, errors), as of its last accepted batch.");
	srv_api_agents_counters(o->api, agent_counter, b);
	return 0;
}

int srv_metrics_routes(srv_http *h, const srv_metrics_opts *o)
{
	const srv_route r = {.method = "GET", .path = "/metrics", .fn = h_metrics,
	                     .arg = (void *)o};
	return srv_http_route(h, &r);
}
