/* main.c - smolder-server: opens the store (embedded in --data-dir, or
 * ClickHouse with --clickhouse), serves the HTTP API on one libuv loop,
 * and runs storage maintenance (cut, retention, compaction, roll-ups) in
 * the background. The ingest, query and debug-info endpoints register
 * their routes from their own files; this file only wires things up. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <uv.h>

#include "query/parse.h"
#include "server/api.h"
#include "server/debuginfod.h"
#include "server/http.h"
#include "server/json.h"
#include "server/metrics.h"
#include "storage/storage.h"
#include "wire/auth.h"

#define SMOLDER_VERSION "0.1.0-dev"
#define MAINT_INTERVAL_MS_DEFAULT (30 * 1000)
#define NS_PER_S INT64_C(1000000000)
/* long options without a letter of their own */
enum { OPT_CLICKHOUSE = 256, OPT_CLICKHOUSE_FILE, OPT_CLICKHOUSE_CLUSTER };

typedef struct app {
	uv_loop_t loop;
	st_db *db;
	srv_http *http;
	srv_api api;                /* what the API's handlers share */
	uint64_t start_ns;          /* uv_hrtime() at start, for uptime */
	uv_timer_t maint_timer;
	uint64_t maint_interval_ms;
	uv_work_t maint_work;
	bool maint_running;         /* loop thread only: one maintenance at a time */
	uint64_t maint_due_ms;      /* uv_now() of the next scheduled pass */
	uv_work_t cut_work;
	bool cut_running;           /* loop thread only: an early cut is queued */
	uv_signal_t sigint, sigterm;
	bool stopping;
	bool auth;                  /* --auth-token-file given */

	pthread_mutex_t mu;         /* guards the maintenance record below,
	                             * written by the pool, read by /status */
	uint64_t maint_runs;
	int64_t maint_last_unix_s;  /* when the last run ended; 0 before */
	uint64_t maint_last_ms;     /* how long it took */
	char maint_error[256];      /* the last run's first failure, "" if none */
	/* per maintenance step (cut, retention, roll-up, compaction,
	 * symbolization):
	 * the error it last logged, when, and how often it failed since. A
	 * full disk fails the cut every second; that is one line a minute */
	struct {
		int rc;
		uint64_t logged_ms, repeats;
	} step_log[5];
} app;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* ---- maintenance ---- */

#define SYM_PER_TICK 4096  /* locations the background symbolizer names per tick */

/* Logs a maintenance step's outcome (pool thread): a new failure at once,
 * the same failure again at most once a minute with how often it
 * happened, and the recovery once it passes again. */
static void maint_log(app *a, int step, const char *what, int rc)
{
	uint64_t now = uv_hrtime() / 1000000;
	char buf[128];
	pthread_mutex_lock(&a->mu);
	typeof(a->step_log[0]) *l = &a->step_log[step];
	if (!rc) {
		if (l->rc)
			fprintf(stderr, "smolder-server: storage %s works again\n", what);
		l->rc = 0;
		l->repeats = 0;
	} else if (rc != l->rc || now - l->logged_ms >= 60000) {
		if (rc == l->rc)
			fprintf(stderr, "smolder-server: storage %s still fails: %s (%" PRIu64
			        " times in the last minute)\n", what,
			        strerror_r(-rc, buf, sizeof(buf)), l->repeats + 1);
		else
			fprintf(stderr, "smolder-server: storage %s failed: %s\n", what,
			        strerror_r(-rc, buf, sizeof(buf)));
		l->rc = rc;
		l->logged_ms = now;
		l->repeats = 0;
	} else {
		l->repeats++;
	}
	pthread_mutex_unlock(&a->mu);
}

/* Pool thread. The steps run in order on every tick: cutting first makes
 * blocks that retention, the roll-ups and compaction then see. Roll-ups
 * before compaction: an hour that just ended is then read from the blocks
 * cut for it, not from the day's block that compaction merges it into. A
 * failing step is logged (maint_log) and does not stop the others:
 * retention must still free disk when compaction fails for lack of it. */
static void maint_work_cb(uv_work_t *w)
{
	app *a = w->data;
	uint64_t t0 = uv_hrtime();
	int64_t now = now_ns();
	char first_err[256] = "";
	/* the symbolizer names what arrived since, a bounded amount per tick
	 * so a fleet's first upload of big files does not hog a pool thread */
	size_t named = 0;
	struct {
		const char *what;
		int rc;
	} steps[5] = {
		{"cut", st_cut(a->db, now, 0)},
		{"retention", st_retention(a->db, now)},
		{"roll-up", st_rollup(a->db, now)},
		{"compaction", st_compact(a->db)},
		{"symbolization", a->api.sym ? srv_sym_pass(a->api.sym, SYM_PER_TICK, &named) : 0},
	};
	for (int i = 0; i < 5; i++) {
		maint_log(a, i, steps[i].what, steps[i].rc);
		if (!steps[i].rc || first_err[0])
			continue;
		char buf[128];
		snprintf(first_err, sizeof(first_err), "%s: %s", steps[i].what,
		         strerror_r(-steps[i].rc, buf, sizeof(buf)));
	}
	pthread_mutex_lock(&a->mu);
	a->maint_runs++;
	a->maint_last_unix_s = now_ns() / NS_PER_S;
	a->maint_last_ms = (uv_hrtime() - t0) / 1000000;
	snprintf(a->maint_error, sizeof(a->maint_error), "%s", first_err);
	pthread_mutex_unlock(&a->mu);
}

static void maint_after_cb(uv_work_t *w, int status)
{
	(void)status;
	app *a = w->data;
	a->maint_running = false;
}

/* Pool thread: a cut alone, when the head is over head_max_rows between
 * two passes. Storage lets it run beside a pass's compaction. */
static void cut_work_cb(uv_work_t *w)
{
	app *a = w->data;
	maint_log(a, 0, "cut", st_cut(a->db, now_ns(), 0));
}

static void cut_after_cb(uv_work_t *w, int status)
{
	(void)status;
	app *a = w->data;
	a->cut_running = false;
}

static void maint_timer_cb(uv_timer_t *t)
{
	app *a = t->data;
	if (a->stopping)
		return;
	/* the timer ticks every second; besides the pass every interval, the
	 * head is cut as soon as it outgrows head_max_rows: at a backfill's
	 * pace it would otherwise grow by tens of millions of rows (24 bytes
	 * each) between two passes, or while a pass compacts */
	if (!a->cut_running && st_head_full(a->db)) {
		a->cut_work.data = a;
		if (uv_queue_work(&a->loop, &a->cut_work, cut_work_cb, cut_after_cb) == 0)
			a->cut_running = true;
	}
	/* a run longer than the interval makes the next tick a no-op, so two
	 * never overlap (storage serializes them too, but would queue them up
	 * and hold pool threads) */
	uint64_t now = uv_now(&a->loop);
	if (a->maint_running || now < a->maint_due_ms)
		return;
	a->maint_due_ms = now + a->maint_interval_ms;
	a->maint_work.data = a;
	if (uv_queue_work(&a->loop, &a->maint_work, maint_work_cb, maint_after_cb) == 0)
		a->maint_running = true;
}

/* ---- endpoints ---- */

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
	app *a = arg;
	st_stats s;
	st_get_stats(a->db, &s);
	srv_json *j = srv_resp_json(resp, 200);
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "version", SMOLDER_VERSION);
	srv_json_kv_uint(j, "uptime_s", (uv_hrtime() - a->start_ns) / 1000000000u);

	srv_json_key(j, "storage");
	srv_json_obj_begin(j);
	srv_json_kv_str(j, "backend", st_backend_name(a->db));
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
	if (!strcmp(st_backend_name(a->db), "clickhouse")) {
		srv_json_kv_uint(j, "clickhouse_inserts", s.remote_inserts);
		srv_json_kv_uint(j, "clickhouse_insert_rows", s.remote_insert_rows);
		srv_json_kv_uint(j, "clickhouse_insert_batches", s.remote_insert_batches);
		srv_json_kv_uint(j, "clickhouse_dedup_rows", s.remote_dedup_rows);
		srv_json_kv_uint(j, "clickhouse_failures", s.remote_failures);
	}
	srv_json_obj_end(j);

	pthread_mutex_lock(&a->mu);
	srv_json_key(j, "maintenance");
	srv_json_obj_begin(j);
	srv_json_kv_uint(j, "interval_s", a->maint_interval_ms / 1000);
	srv_json_kv_uint(j, "runs", a->maint_runs);
	srv_json_kv_int(j, "last_run_unix_s", a->maint_last_unix_s);
	srv_json_kv_uint(j, "last_run_ms", a->maint_last_ms);
	srv_json_kv_str(j, "last_error", a->maint_error[0] ? a->maint_error : NULL);
	srv_json_obj_end(j);
	pthread_mutex_unlock(&a->mu);

	if (a->api.sym) {
		srv_sym_stats ss;
		srv_sym_get_stats(a->api.sym, &ss);
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
	srv_api_agents_json(&a->api, j);
	srv_metrics_debuginfo_json(j);

	uint64_t rej_w, rej_r;
	srv_http_auth_rejected(a->http, &rej_w, &rej_r);
	srv_json_key(j, "auth");
	srv_json_obj_begin(j);
	srv_json_kv_bool(j, "enabled", a->auth);
	srv_json_kv_uint(j, "rejected_writes", rej_w);
	srv_json_kv_uint(j, "rejected_reads", rej_r);
	srv_json_obj_end(j);

	srv_http_conn_stats cs;
	srv_http_conn_stats_get(a->http, &cs);
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

/* ---- shutdown ---- */

static void on_signal(uv_signal_t *sig, int signum)
{
	app *a = sig->data;
	if (a->stopping)
		return;
	a->stopping = true;
	fprintf(stderr, "smolder-server: %s, shutting down\n", strsignal(signum));
	uv_timer_stop(&a->maint_timer);
	uv_close((uv_handle_t *)&a->maint_timer, NULL);
	/* Closing the signal handles restores the default action: a second
	 * Ctrl-C kills a shutdown that hangs. */
	uv_close((uv_handle_t *)&a->sigint, NULL);
	uv_close((uv_handle_t *)&a->sigterm, NULL);
	srv_http_shutdown(a->http);
	/* uv_run now returns once in-flight requests are answered and a
	 * running maintenance pass is done: both hold the loop open. */
}

/* ---- flags ---- */

/* Durations as the query language writes them ("30s", "1h30m", "7d";
 * "0" alone is zero): one parser for flags and queries. */
static int parse_duration(const char *s, int64_t *out)
{
	q_error e;
	return q_parse_duration(s, out, &e) ? -EINVAL : 0;
}

/* Reads a --*-token-file into *out (freed by the caller); on failure says
 * why on stderr and returns -errno. A token others may read is accepted
 * with a warning: refusing would break setups where a group is meant to
 * share it, and the operator sees the warning at every start. */
static int load_token(const char *path, char **out)
{
	char err[256];
	bool shared = false;
	int rc = wire_auth_read_token_file(path, out, &shared, err, sizeof(err));
	if (rc)
		fprintf(stderr, "smolder-server: %s\n", err);
	else if (shared)
		fprintf(stderr, "smolder-server: warning: token file %s is readable by group or "
		        "others; chmod 600 it\n", path);
	return rc;
}

/* --clickhouse-file: the URL list from a file (its lines, joined by
 * commas; blank lines and lines starting with # skipped), so a password
 * need not be on the command line, where ps shows it. The caller frees
 * *out. Returns 0, or -errno after saying why on stderr. */
static int load_urls(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	char line[4096];
	size_t len = 0;
	char *list = NULL;
	if (!f) {
		fprintf(stderr, "smolder-server: --clickhouse-file %s: %s\n", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		size_t n = strcspn(line, "\r\n");
		line[n] = 0;
		char *l = line + strspn(line, " \t");
		if (!*l || *l == '#')
			continue;
		n = strlen(l);
		list = srv_xrealloc(list, len + n + 2);
		if (len)
			list[len++] = ',';
		memcpy(list + len, l, n + 1);
		len += n;
	}
	fclose(f);
	if (!list) {
		fprintf(stderr, "smolder-server: --clickhouse-file %s holds no URL\n", path);
		return -EINVAL;
	}
	*out = list;
	return 0;
}

/* Sizes as "500M", "10G", "1T" (powers of 1024) or plain bytes; "0" is no
 * limit. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno || *s == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	}
	if (*end == 'B' || (*end == 'i' && end[1] == 'B' && shift))
		end += *end == 'i' ? 2 : 1;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/* A whole number in [lo, hi]. */
static int parse_count(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (end == s || *end || errno || *s == '-' || v < lo || v > hi)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* Descriptors to the hard limit: the soft limit is often 1024, and each
 * connection takes one. Returns the connection cap to use: want (0: the
 * default of http.h), lowered to what the limit leaves after a reserve
 * for the store's files, with a warning when that lowers it. */
static uint32_t raise_nofile(uint32_t want)
{
	const rlim_t reserve = 256;   /* WAL, blocks, SQLite, debug-info files */
	srv_http_options def;
	srv_http_options_default(&def);
	uint32_t cap = want ? want : def.max_connections;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return want;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)cap + reserve) {
		uint32_t fit = rl.rlim_cur > 2 * reserve ? (uint32_t)(rl.rlim_cur - reserve) :
		               (uint32_t)(rl.rlim_cur / 2);
		fprintf(stderr, "smolder-server: warning: %llu file descriptors allowed "
		        "(RLIMIT_NOFILE); serving at most %u connections instead of %u\n",
		        (unsigned long long)rl.rlim_cur, fit, cap);
		return fit ? fit : 1;
	}
	return want;
}

/* The one line a newcomer needs at start: where the UI is, where the
 * data is (data_dir, or ClickHouse when data_dir is NULL), which auth is
 * on, and what the log will say. */
static void startup_line(const char *addr, const char *data_dir, const char *cluster,
                         const char *ui_dir, const char *auth_file, const char *read_file,
                         bool log_debug, int64_t slow_ns)
{
	char where[3 * PATH_MAX], ui[sizeof(where) + 128], data[PATH_MAX];
	char auth[2 * PATH_MAX + 128];
	if (srv_api_ui_dir(ui_dir, where, sizeof(where)) == 0)
		snprintf(ui, sizeof(ui), "UI at http://%s/ (files in %s)", addr, where);
	else
		snprintf(ui, sizeof(ui), "no UI (looked in %s; --ui-dir DIR)", where);
	if (!data_dir)
		snprintf(data, sizeof(data), "ClickHouse%s%s", cluster ? ", cluster " : "",
		         cluster ? cluster : "");
	else if (!realpath(data_dir, data))
		snprintf(data, sizeof(data), "%s", data_dir);
	if (!auth_file)
		snprintf(auth, sizeof(auth), "auth off (no token needed; --auth-token-file to "
		         "require one)");
	else if (!read_file)
		snprintf(auth, sizeof(auth), "auth on (the token in %s for everything but the UI's "
		         "files and /healthz)", auth_file);
	else
		snprintf(auth, sizeof(auth), "auth on (writes: the token in %s; reads: that one or "
		         "the one in %s)", auth_file, read_file);
	char logs[128];
	if (log_debug)
		snprintf(logs, sizeof(logs), "every request logged (--log-level debug)");
	else
		snprintf(logs, sizeof(logs), "requests logged when they fail or take %" PRId64
		         " ms or more", slow_ns / 1000000);
	fprintf(stderr, "smolder-server: %s; data in %s; %s; %s\n", ui, data, auth, logs);
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: smolder-server --data-dir DIR [--listen ADDR:PORT]\n"
	        "                      [--retention DURATION] [--retention-rollup DURATION]\n"
	        "                      [--max-disk SIZE]\n"
	        "                      [--partition DURATION]\n"
	        "                      [--maintenance-interval DURATION]\n"
	        "                      [--debuginfod-url URL[,URL...]] [--ui-dir DIR]\n"
	        "                      [--auth-token-file FILE [--read-token-file FILE]]\n"
	        "                      [--max-connections N] [--query-timeout DURATION]\n"
	        "                      [--max-queries N] [--max-series N]\n"
	        "                      [--log-level info|debug] [--slow-request DURATION]\n"
	        "       smolder-server --clickhouse URL[,URL...] | --clickhouse-file FILE\n"
	        "                      [--clickhouse-cluster NAME] [--data-dir DIR]\n"
	        "                      [the options above but --max-disk and --partition]\n"
	        "\n"
	        "  --listen ADDR:PORT   address to serve HTTP on; an IPv4 literal or an IPv6\n"
	        "                       literal in brackets, port 0 for any free one\n"
	        "                       (default %s)\n"
	        "  --data-dir DIR       where the store lives; created if missing (with\n"
	        "                       --clickhouse: only a cache of debug-info files,\n"
	        "                       a temporary directory when not given)\n"
	        "  --clickhouse URL[,URL...]\n"
	        "                       keep everything in ClickHouse instead: the HTTP\n"
	        "                       interface of its nodes, http://[USER[:PASSWORD]@]\n"
	        "                       HOST:PORT[/DATABASE]; with a cluster, one per shard\n"
	        "  --clickhouse-file FILE\n"
	        "                       the same URLs from FILE, one a line (keeps a\n"
	        "                       password off the command line)\n"
	        "  --clickhouse-cluster NAME\n"
	        "                       shard the tables over this remote_servers cluster\n"
	        "                       through Distributed tables (default: one node)\n"
	        "  --retention DUR      delete data older than this, 0 keeps all (default 7d)\n"
	        "  --retention-rollup DUR\n"
	        "                       delete roll-ups (sums per hour and per day that long\n"
	        "                       ranges read) older than this, 0 keeps all (default 90d)\n"
	        "  --max-disk SIZE      delete the oldest blocks while blocks take more than\n"
	        "                       this (\"500M\", \"10G\"; the WAL is not counted);\n"
	        "                       0 is no limit (default)\n"
	        "  --partition DUR      time span of one storage block (default 1h)\n"
	        "  --maintenance-interval DUR\n"
	        "                       how often to cut, apply retention, compact and\n"
	        "                       write roll-ups (default 30s)\n"
	        "  --debuginfod-url URL[,URL...]\n"
	        "                       fetch debug info the store lacks from these\n"
	        "                       debuginfod servers (default: none)\n"
	        "  --ui-dir DIR         the web UI's files, served at / (default: ui/ beside\n"
	        "                       the binary's directory, bin/../ui, else\n"
	        "                       bin/../share/smolder/ui, else ./ui)\n"
	        "  --auth-token-file FILE\n"
	        "                       require \"Authorization: Bearer TOKEN\" (FILE's first\n"
	        "                       line) on every API endpoint but /healthz; the UI's\n"
	        "                       files stay open (default: no auth)\n"
	        "  --read-token-file FILE\n"
	        "                       a second token that is enough for queries but not for\n"
	        "                       ingest or debug-info upload\n"
	        "  --max-connections N  connections open at once (default 4096, bounded by\n"
	        "                       the descriptor limit); at the cap a new client\n"
	        "                       replaces the longest-waiting idle connection\n"
	        "  --query-timeout DUR  a query still running after this answers 503\n"
	        "                       (default 30s)\n"
	        "  --max-queries N      queries running at once; more wait their turn\n"
	        "                       (default 8; the thread pool has 16 threads)\n"
	        "  --max-series N       refuse batches that would make the store hold more\n"
	        "                       series (default 1000000, 0 for no limit)\n"
	        "  --log-level LEVEL    info (default): start-up, storage events, and only\n"
	        "                       the requests that failed (status >= 400 but 404)\n"
	        "                       or were slow; debug: a line for every request\n"
	        "  --slow-request DUR   a request answered in this long is logged at info\n"
	        "                       (default 1s; \"250ms\")\n"
	        "\n"
	        "Durations are an integer and a unit: s, m, h, d or w (\"90m\", \"7d\").\n",
	        SRV_HTTP_DEFAULT_LISTEN);
}

/* glibc raises its mmap threshold (up to 32 MB) each time a big mmapped
 * block is freed, so later arrays of that size come from the arenas, and
 * with 16 pool threads there are 16 arenas that keep what was freed in
 * them. Measured under bench/load: 555 MB of arena memory holding 25 MB in
 * use after the backfill. A fixed threshold keeps big arrays (head
 * partitions, a cut's sorted copy, query buffers) in their own mappings,
 * which go back to the system when freed; small ones still use the
 * arenas. Set before any thread starts. */
static void malloc_tune(void)
{
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
}

int main(int argc, char **argv)
{
	int rc, exit_code = 1;
	malloc_tune();
	const char *listen = SRV_HTTP_DEFAULT_LISTEN, *data_dir = NULL;
	int64_t maint_ns = (int64_t)MAINT_INTERVAL_MS_DEFAULT * 1000000;
	/* --debuginfod-url: created once the flags are read, before any thread
	 * (srv_dbgd_new sets libdebuginfod's environment); NULL when off */
	const char *debuginfod_urls = NULL;
	const char *ui_dir = NULL;     /* --ui-dir; NULL: api_ui.c's default places */
	srv_dbgd *dbgd = NULL;
	const char *auth_file = NULL, *read_file = NULL;  /* --auth/read-token-file */
	uint32_t max_conns = 0, max_queries = 0;          /* 0: http.h's defaults */
	int64_t query_timeout_ns = 30 * NS_PER_S;
	bool log_debug = false;                           /* --log-level debug */
	int64_t slow_ns = 1000000000;                     /* --slow-request */
	char *write_token = NULL, *read_token = NULL;
	/* --clickhouse, --clickhouse-file (read into ch_urls), --clickhouse-cluster */
	const char *ch_arg = NULL, *ch_file = NULL;
	char *ch_urls = NULL;
	st_ch_options chopt;
	st_ch_options_default(&chopt);
	bool max_disk_set = false, partition_set = false;
	st_options sopt;
	st_options_default(&sopt);
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"data-dir", required_argument, NULL, 'd'},
		{"retention", required_argument, NULL, 'r'},
		{"retention-rollup", required_argument, NULL, 'o'},
		{"max-disk", required_argument, NULL, 'M'},
		{"partition", required_argument, NULL, 'p'},
		{"maintenance-interval", required_argument, NULL, 'm'},
		{"debuginfod-url", required_argument, NULL, 'D'},
		{"ui-dir", required_argument, NULL, 'U'},
		{"auth-token-file", required_argument, NULL, 'A'},
		{"read-token-file", required_argument, NULL, 'R'},
		{"max-connections", required_argument, NULL, 'C'},
		{"query-timeout", required_argument, NULL, 'T'},
		{"max-queries", required_argument, NULL, 'Q'},
		{"max-series", required_argument, NULL, 'S'},
		{"log-level", required_argument, NULL, 'L'},
		{"slow-request", required_argument, NULL, 'W'},
		{"clickhouse", required_argument, NULL, OPT_CLICKHOUSE},
		{"clickhouse-file", required_argument, NULL, OPT_CLICKHOUSE_FILE},
		{"clickhouse-cluster", required_argument, NULL, OPT_CLICKHOUSE_CLUSTER},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (o) {
		case 'l':
			listen = optarg;
			break;
		case 'd':
			data_dir = optarg;
			break;
		case 'r':
			if (parse_duration(optarg, &sopt.retention_ns)) {
				fprintf(stderr, "smolder-server: invalid --retention '%s'\n", optarg);
				return 2;
			}
			break;
		case 'o':
			if (parse_duration(optarg, &sopt.rollup_retention_ns)) {
				fprintf(stderr, "smolder-server: invalid --retention-rollup '%s'\n",
				        optarg);
				return 2;
			}
			break;
		case 'M':
			if (parse_size(optarg, &sopt.max_block_bytes)) {
				fprintf(stderr, "smolder-server: invalid --max-disk '%s': expected a "
				        "size such as 500M or 10G\n", optarg);
				return 2;
			}
			max_disk_set = sopt.max_block_bytes != 0;
			break;
		case 'p':
			if (parse_duration(optarg, &sopt.partition_ns) || sopt.partition_ns <= 0) {
				fprintf(stderr, "smolder-server: invalid --partition '%s'\n", optarg);
				return 2;
			}
			partition_set = true;
			break;
		case 'm':
			if (parse_duration(optarg, &maint_ns) || maint_ns <= 0) {
				fprintf(stderr, "smolder-server: invalid --maintenance-interval '%s'\n",
				        optarg);
				return 2;
			}
			break;
		case 'D':
			debuginfod_urls = optarg;
			break;
		case 'U':
			ui_dir = optarg;
			break;
		case 'A':
			auth_file = optarg;
			break;
		case 'R':
			read_file = optarg;
			break;
		case OPT_CLICKHOUSE:
			ch_arg = optarg;
			break;
		case OPT_CLICKHOUSE_FILE:
			ch_file = optarg;
			break;
		case OPT_CLICKHOUSE_CLUSTER:
			chopt.cluster = optarg;
			break;
		case 'L':
			if (strcmp(optarg, "info") && strcmp(optarg, "debug")) {
				fprintf(stderr, "smolder-server: invalid --log-level '%s': info or "
				        "debug\n", optarg);
				return 2;
			}
			log_debug = !strcmp(optarg, "debug");
			break;
		case 'W':
			if (parse_duration(optarg, &slow_ns) || slow_ns < 1000000 ||
			    slow_ns > 3600 * 1000000000LL) {
				fprintf(stderr, "smolder-server: invalid --slow-request '%s': a "
				        "duration from 1ms to 1h\n", optarg);
				return 2;
			}
			break;
		case 'C':
			if (parse_count(optarg, 1, 1u << 20, &max_conns)) {
				fprintf(stderr, "smolder-server: invalid --max-connections '%s'\n", optarg);
				return 2;
			}
			break;
		case 'T':
			if (parse_duration(optarg, &query_timeout_ns) || query_timeout_ns <= 0) {
				fprintf(stderr, "smolder-server: invalid --query-timeout '%s'\n", optarg);
				return 2;
			}
			break;
		case 'S':
			if (parse_size(optarg, &sopt.max_series)) {
				fprintf(stderr, "smolder-server: invalid --max-series '%s'\n", optarg);
				return 2;
			}
			break;
		case 'Q':
			if (parse_count(optarg, 1, 1024, &max_queries)) {
				fprintf(stderr, "smolder-server: invalid --max-queries '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	bool ch = ch_arg || ch_file;
	if (optind < argc || (!data_dir && !ch)) {
		if (!data_dir)
			fprintf(stderr, "smolder-server: --data-dir is required (or --clickhouse URL)\n");
		usage(stderr);
		return 2;
	}
	if (ch_arg && ch_file) {
		fprintf(stderr, "smolder-server: --clickhouse and --clickhouse-file are one setting; "
		        "give one\n");
		return 2;
	}
	if (chopt.cluster && !ch) {
		fprintf(stderr, "smolder-server: --clickhouse-cluster needs --clickhouse\n");
		return 2;
	}
	/* what only the embedded store has: refused rather than ignored */
	if (ch && (max_disk_set || partition_set)) {
		fprintf(stderr, "smolder-server: %s applies to the embedded store; with ClickHouse "
		        "data is partitioned by day and kept for --retention\n",
		        max_disk_set ? "--max-disk" : "--partition");
		return 2;
	}
	if (ch_file && load_urls(ch_file, &ch_urls))
		return 2;
	if (read_file && !auth_file) {
		/* a read token alone would leave ingest open while looking guarded */
		fprintf(stderr, "smolder-server: --read-token-file needs --auth-token-file\n");
		return 2;
	}
	if (auth_file && (load_token(auth_file, &write_token) ||
	                  (read_file && load_token(read_file, &read_token)))) {
		free(write_token);
		return 2;
	}
	/* Ingest handlers block in st_append until the group commit's fsync,
	 * and queries can run for seconds: libuv's default of 4 pool threads
	 * would let four slow requests stall everything else. Read at the first
	 * uv_queue_work, so it must be set before; the user's value wins. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	/* a client that goes away mid-response must cost an EPIPE, not the process */
	signal(SIGPIPE, SIG_IGN);
	max_conns = raise_nofile(max_conns);

	app a = {0};
	pthread_mutex_init(&a.mu, NULL);
	a.start_ns = uv_hrtime();
	a.maint_interval_ms = (uint64_t)(maint_ns / 1000000);
	if ((rc = uv_loop_init(&a.loop))) {
		fprintf(stderr, "smolder-server: uv_loop_init: %s\n", uv_strerror(rc));
		return 1;
	}

	srv_http_options hopt;
	srv_http_options_default(&hopt);
	hopt.listen = listen;
	hopt.access_log = stderr;
	hopt.log_every_request = log_debug;
	hopt.log_slow_ms = (uint32_t)(slow_ns / 1000000);
	hopt.write_token = write_token;
	hopt.read_token = read_token;
	hopt.max_connections = max_conns;
	hopt.max_queries = max_queries;
	a.auth = write_token != NULL;
	if ((rc = srv_http_new(&a.loop, &hopt, &a.http))) {
		fprintf(stderr, "smolder-server: invalid --listen '%s': expected ADDR:PORT, "
		        "e.g. 127.0.0.1:7070 or [::1]:7070\n", listen);
		exit_code = 2;
		goto out;
	}

	st_err serr = {{0}};
	char cache[4096];
	if (ch) {
		chopt.urls = ch_urls ? ch_urls : ch_arg;
		chopt.retention_ns = sopt.retention_ns;
		chopt.rollup_retention_ns = sopt.rollup_retention_ns;
		chopt.max_series = sopt.max_series;
		chopt.max_future_ns = sopt.max_future_ns;
		if (data_dir) {
			snprintf(cache, sizeof(cache), "%s/debuginfo", data_dir);
			chopt.cache_dir = cache;
		}
		if ((rc = st_open_clickhouse(&chopt, &a.db, &serr))) {
			fprintf(stderr, "smolder-server: cannot open the store in ClickHouse: %s\n",
			        serr.msg[0] ? serr.msg : strerror(-rc));
			goto out;
		}
	} else if ((rc = st_open(data_dir, &sopt, &a.db, &serr))) {
		fprintf(stderr, "smolder-server: cannot open the store in %s: %s\n", data_dir,
		        serr.msg[0] ? serr.msg : strerror(-rc));
		goto out;
	}
	/* libdebuginfod's environment, set before any thread starts (the
	 * store starts none); its cache beside the store's files */
	if (debuginfod_urls && (rc = srv_dbgd_new(debuginfod_urls, st_file_dir(a.db), &dbgd))) {
		fprintf(stderr, "smolder-server: invalid --debuginfod-url '%s': expected "
		        "http(s)://HOST[:PORT][,...]\n", debuginfod_urls);
		exit_code = 2;
		goto out;
	}

	const srv_route routes[] = {
		{.method = "GET", .path = "/healthz", .fn = healthz, .arg = &a,
		 .flags = SRV_ROUTE_INLINE | SRV_ROUTE_PUBLIC},
		{.method = "GET", .path = "/api/v1/status", .fn = status, .arg = &a},
	};
	for (size_t i = 0; i < sizeof(routes) / sizeof(*routes); i++)
		if ((rc = srv_http_route(a.http, &routes[i]))) {
			fprintf(stderr, "smolder-server: route %s %s: %s\n", routes[i].method,
			        routes[i].path, strerror(-rc));
			goto out;
		}
	if ((rc = srv_api_init(&a.api, a.db))) {
		fprintf(stderr, "smolder-server: cannot set up the API: %s\n", strerror(-rc));
		goto out;
	}
	a.api.query_timeout_ns = query_timeout_ns;
	{
		srv_sym_opts so = {.debuginfo_dir = st_file_dir(a.db), .db = a.db, .dbgd = dbgd};
		a.api.dbgd = dbgd;
		if ((rc = srv_sym_new(&so, &a.api.sym))) {
			fprintf(stderr, "smolder-server: symbolizer: %s\n", strerror(-rc));
			goto out;
		}
	}
	const srv_metrics_opts mopt = {.api = &a.api,
	                               .data_dir = data_dir ? data_dir : st_file_dir(a.db),
	                               .version = SMOLDER_VERSION, .start_ns = a.start_ns};
	if ((rc = srv_api_query_routes(a.http, &a.api)) ||
	    (rc = srv_api_ingest_routes(a.http, &a.api)) ||
	    (rc = srv_api_pyroscope_routes(a.http, &a.api)) ||
	    (rc = srv_api_ingest_native_routes(a.http, &a.api)) ||
	    (rc = srv_api_debuginfo_routes(a.http, &a.api)) ||
	    (rc = srv_metrics_routes(a.http, &mopt)) ||
	    (rc = srv_api_ui_routes(a.http, ui_dir))) {
		fprintf(stderr, "smolder-server: API routes: %s\n", strerror(-rc));
		goto out;
	}

	if ((rc = srv_http_listen(a.http))) {
		fprintf(stderr, "smolder-server: cannot listen on %s: %s\n", listen, uv_strerror(rc));
		goto out;
	}

	uv_timer_init(&a.loop, &a.maint_timer);
	a.maint_timer.data = &a;
	uint64_t check_ms = a.maint_interval_ms < 1000 ? a.maint_interval_ms : 1000;
	a.maint_due_ms = uv_now(&a.loop) + a.maint_interval_ms;
	uv_timer_start(&a.maint_timer, maint_timer_cb, check_ms, check_ms);
	uv_signal_init(&a.loop, &a.sigint);
	uv_signal_init(&a.loop, &a.sigterm);
	a.sigint.data = a.sigterm.data = &a;
	uv_signal_start(&a.sigint, on_signal, SIGINT);
	uv_signal_start(&a.sigterm, on_signal, SIGTERM);

	char addr[64];
	srv_http_address(a.http, addr, sizeof(addr));
	printf("smolder-server listening on http://%s\n", addr);
	fflush(stdout);
	startup_line(addr, ch ? NULL : data_dir, chopt.cluster, ui_dir, auth_file, read_file,
	             log_debug, slow_ns);

	uv_run(&a.loop, UV_RUN_DEFAULT);
	/* Every acknowledged batch is in the WAL already; cutting the whole
	 * head into blocks now only spares the next start its replay. A
	 * failure here loses nothing (the WAL stays), so it is reported, not
	 * fatal. */
	int64_t now_ns = (int64_t)time(NULL) * 1000000000LL;
	int crc = st_cut(a.db, now_ns, 1);
	if (crc)
		fprintf(stderr, "smolder-server: flushing the head at exit failed (%s); the WAL "
		        "keeps everything and is replayed at the next start\n", strerror(-crc));
	exit_code = 0;
	fprintf(stderr, "smolder-server: stopped\n");
out:
	/* Close whatever is still open (after a failed start) and let the loop
	 * run the close callbacks, so the loop can be closed cleanly. */
	if (a.http && !a.stopping)
		srv_http_shutdown(a.http);
	uv_run(&a.loop, UV_RUN_DEFAULT);
	srv_sym_free(a.api.sym);
	a.api.sym = NULL;
	st_close(a.db);
	srv_http_free(a.http);
	srv_api_free(&a.api);
	if (uv_loop_close(&a.loop))
		fprintf(stderr, "smolder-server: event loop still has open handles at exit\n");
	pthread_mutex_destroy(&a.mu);
	srv_dbgd_free(dbgd);
	free(write_token);
	free(read_token);
	free(ch_urls);
	return exit_code;
}
