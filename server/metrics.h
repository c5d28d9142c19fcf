/* metrics.h - the server's own counters (srv_metrics_ prefix) and GET
 * /metrics, which renders them with the store's, the symbolizer's and the
 * agents' figures in Prometheus' text exposition format 0.0.4.
 *
 * The counters are process-wide atomics that handlers bump from any
 * thread without locks (one server per process). Not here: pushing to a
 * gateway, OpenMetrics, per-series cardinality. */
#ifndef SMOLDER_SRV_METRICS_H
#define SMOLDER_SRV_METRICS_H

#include <stdint.h>

#include "server/api.h"
#include "server/http.h"
#include "server/json.h"

typedef enum srv_metrics_ingest_kind {
	SRV_METRICS_NATIVE = 0,    /* POST /api/v1/ingest, the agent's batches */
	SRV_METRICS_PPROF = 1,     /* POST /api/v1/ingest/pprof */
} srv_metrics_ingest_kind;

/* An ingest request's body arrived (stored or not): bytes received. */
void srv_metrics_ingest_bytes(srv_metrics_ingest_kind k, uint64_t bytes);
/* A batch of `rows` rows was stored. */
void srv_metrics_ingest_ok(srv_metrics_ingest_kind k, uint64_t rows);

/* What became of a debug-info request (server/api_debuginfo.c). */
typedef enum srv_metrics_di {
	SRV_METRICS_DI_UPLOADED = 0,  /* a PUT stored a file (bytes: its size) */
	SRV_METRICS_DI_REPEAT,        /* a PUT of what the server had */
	SRV_METRICS_DI_REFUSED,       /* a PUT refused (400) */
	SRV_METRICS_DI_ON_SERVER,     /* a HEAD for files the server had */
	SRV_METRICS_DI_DEBUGINFOD,    /* a HEAD the server answered by fetching
	                               * the files from debuginfod: no upload */
	SRV_METRICS_DI_MISSING,       /* a HEAD answered 404: an upload is welcome */
	SRV_METRICS_DI_N
} srv_metrics_di;

void srv_metrics_debuginfo(srv_metrics_di what, uint64_t bytes);
/* The counts by outcome and the bytes stored by uploads. */
void srv_metrics_debuginfo_get(uint64_t counts[SRV_METRICS_DI_N], uint64_t *upload_bytes);
/* "debuginfo": {...} into an open JSON object, for GET /api/v1/status. */
void srv_metrics_debuginfo_json(srv_json *j);

/* A request was answered (server/http.c): route is the pattern it matched
 * ("/api/v1/labels/{name}/values"), NULL when none did; status the HTTP
 * status; dur_ns from its first byte to the end of the answer. */
void srv_metrics_http(const char *route, int status, uint64_t dur_ns);

/* What GET /metrics reads besides the counters above; everything must
 * outlive the server. */
typedef struct srv_metrics_opts {
	srv_api *api;              /* store, symbolizer and agents */
	const char *data_dir;      /* its disk use is walked at each scrape */
	const char *version;       /* smolder_build_info{version=...} */
	uint64_t start_ns;         /* uv_hrtime() at start, for uptime */
} srv_metrics_opts;

/* Registers GET /metrics. o is not copied. */
int srv_metrics_routes(srv_http *h, const srv_metrics_opts *o);

/* ---- the text writer (exposed for its unit test) ---- */

/* "# HELP name help\n# TYPE name type\n"; help is escaped as the format
 * wants (backslash, newline). */
void srv_metrics_family(srv_buf *b, const char *name, const char *type, const char *help);
/* One sample line: name, then labels as alternating name/value strings
 * (nlabels pairs; values escaped: backslash, double quote, newline), then
 * the value. The _u64 form prints integers exactly. */
void srv_metrics_sample_u64(srv_buf *b, const char *name, const char *const *labels,
                            int nlabels, uint64_t v);
void srv_metrics_sample_f64(srv_buf *b, const char *name, const char *const *labels,
                            int nlabels, double v);

/* The request counters and latency histograms, as GET /metrics writes them. */
void srv_metrics_write_http(srv_buf *b);

#endif
