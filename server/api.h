/* api.h - the HTTP API's endpoint groups, each registering its routes on
 * the server (server/http.h). main.c wires them; handlers run on the
 * thread pool and share only what srv_api holds. */
#ifndef SMOLDER_SRV_API_H
#define SMOLDER_SRV_API_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/debuginfod.h"
#include "server/http.h"
#include "server/symbolize.h"
#include "storage/storage.h"

/* What one agent sent last (server/api_ingest_native.c). */
typedef struct srv_agent srv_agent;

typedef struct srv_api {
	st_db *db;                 /* the store: embedded or ClickHouse */
	pthread_mutex_t agents_mu; /* guards agents and nagents */
	srv_agent *agents;         /* per agent_id, in memory only: the last
	                            * accepted batch's header and counters */
	size_t nagents;
	srv_sym *sym;              /* names user frames in query answers; NULL:
	                            * frames stay "[unknown] file+0xoffset" */
	int64_t query_timeout_ns;  /* a query stops (503) after this; 0: never */
	q_cache *names;            /* stacks as paths of function IDs, kept
	                            * across queries (query/query.h) */
	srv_dbgd *dbgd;            /* --debuginfod-url, asked on a debug-info
	                            * HEAD the store cannot answer; NULL: off */
} srv_api;

/* The query engine's cache of names: bounded, it starts over past this. */
#define SRV_NAMES_CACHE_BYTES (256u << 20)

/* Sets up api (db is not copied and must outlive it). Free with
 * srv_api_free(), which accepts a zeroed api. */
int srv_api_init(srv_api *api, st_db *db);
void srv_api_free(srv_api *api);

/* When rc is -EAGAIN (the store cannot be reached now: ClickHouse down, a
 * shard stopped), answers 503 with storage's reason (err may be NULL) and
 * returns true: the client keeps what it sent and tries again. */
bool srv_api_unavailable(srv_resp *resp, int rc, const base_err *err);

/* Answers a failed st_append: 400 for a bad batch, 422 past the series
 * limit, 503 when the store cannot be reached now (srv_api_unavailable),
 * 507 when the disk is full (nothing was stored; the sender may retry
 * later), with storage's message. Returns 0 once resp is set, or rc for a
 * failure that is the server's own (a 500). */
int srv_api_store_error(srv_resp *resp, int rc, const base_err *err);

/* GET /api/v1/query, /diff, /top, /range, /types, /labels,
 * /labels/{name}/values (server/api_query.c). */
int srv_api_query_routes(srv_http *h, srv_api *api);

/* POST /api/v1/ingest/pprof (server/api_ingest.c) and POST /api/v1/ingest,
 * the agent's native batches (server/api_ingest_native.c). */
int srv_api_ingest_routes(srv_http *h, srv_api *api);
int srv_api_ingest_native_routes(srv_http *h, srv_api *api);
/* POST /ingest, Pyroscope's ingest API (server/api_pyroscope.c). */
int srv_api_pyroscope_routes(srv_http *h, srv_api *api);

/* Writes "agents": [...] (one object per agent seen since start) into an
 * open JSON object, for GET /api/v1/status. */
void srv_api_agents_json(srv_api *api, srv_json *j);

/* Calls fn for every counter of every agent's last accepted batch
 * (totals since that agent started), under the agents' lock: fn must not
 * block or call back into api. */
typedef void (*srv_agent_counter_fn)(void *arg, const char *agent_id, const char *hostname,
                                     const char *counter, uint64_t value);
void srv_api_agents_counters(srv_api *api, srv_agent_counter_fn fn, void *arg);

/* The maintenance passes' record: main.c writes it after each pass (on
 * the pool), GET /api/v1/status reads it, both under mu. */
typedef struct srv_maint_record {
	pthread_mutex_t mu;
	uint64_t interval_ms;       /* set before the server starts; not under mu */
	uint64_t runs;
	int64_t last_unix_s;        /* when the last run ended; 0 before */
	uint64_t last_ms;           /* how long it took */
	char error[256];            /* the last run's first failure, "" if none */
} srv_maint_record;

/* What GET /api/v1/status reads; everything must outlive the server. */
typedef struct srv_status_opts {
	srv_api *api;               /* store, symbolizer and agents */
	srv_http *http;             /* its authentication counters */
	bool auth;                  /* --auth-token-file given */
	const char *version;
	uint64_t start_ns;          /* uv_hrtime() at start, for uptime */
	srv_maint_record *maint;
} srv_status_opts;

/* GET /healthz (public, answered on the loop thread) and GET
 * /api/v1/status (server/api_status.c). o is not copied. */
int srv_api_status_routes(srv_http *h, const srv_status_opts *o);

/* HEAD and PUT /api/v1/debuginfo/{build_id} (server/api_debuginfo.c). */
int srv_api_debuginfo_routes(srv_http *h, srv_api *api);

/* GET / (index.html) and GET /ui/... (server/api_ui.c): the web UI's files
 * under ui_dir (not copied; must outlive h), or when NULL under bin/../ui
 * beside the executable, else ./ui. A missing directory is not an error:
 * the routes then answer 404 naming where they looked. */
int srv_api_ui_routes(srv_http *h, const char *ui_dir);
/* Where the UI's files are found for ui_dir (as above) now: 0 with the
 * directory in out, or -ENOENT with the places looked at in out. */
int srv_api_ui_dir(const char *ui_dir, char *out, size_t n);

#endif
