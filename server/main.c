/* main.c - smolder-server: opens the store (embedded in --data-dir, or
 * ClickHouse with --clickhouse), serves the HTTP API on one libuv loop,
 * and runs storage maintenance (cut, retention, compaction, roll-ups) in
 * the background. Every endpoint registers its routes from
 * its own server/api_*.c file; this file only wires things up. */
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

#include "base/clock.h"
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
	uv_work_t maint_work;
	bool maint_running;         /* loop thread only: one maintenance at a time */
	uint64_t maint_due_ms;      /* uv_now() of the next scheduled pass */
	uv_work_t cut_work;
	bool cut_running;           /* loop thread only: an early cut is queued */
	uv_signal_t sigint, sigterm;
	bool stopping;
	bool auth;                  /* --auth-token-file given */

	srv_maint_record maint;     /* what /api/v1/status shows of the passes */
	/* per maintenance step (cut, retention, roll-up, compaction,
	 * symbolization), under maint.mu:
	 * the error it last logged, when, and how often it failed since. A
	 * full disk fails the cut every second; that is one line a minute */
	struct {
		int rc;
		uint64_t logged_ms, repeats;
	} step_log[5];
	/* what /metrics and /api/v1/status read: routes keep the pointers */
	srv_metrics_opts metrics_opt;
	srv_status_opts status_opt;
} app;

/* ---- maintenance ---- */

#define SYM_PER_TICK 4096  /* locations the background symbolizer names per tick */

/* Logs a maintenance step's outcome (pool thread): a new failure at once,
 * the same failure again at most once a minute with how often it
 * happened, and the recovery once it passes again. */
static void maint_log(app *a, int step, const char *what, int rc)
{
	uint64_t now = uv_hrtime() / 1000000;
	char buf[128];
	pthread_mutex_lock(&a->maint.mu);
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
	pthread_mutex_unlock(&a->maint.mu);
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
	int64_t now = base_realtime_ns();
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
	srv_maint_record *m = &a->maint;
	pthread_mutex_lock(&m->mu);
	m->runs++;
	m->last_unix_s = base_realtime_ns() / NS_PER_S;
	m->last_ms = (uv_hrtime() - t0) / 1000000;
	snprintf(m->error, sizeof(m->error), "%s", first_err);
	pthread_mutex_unlock(&m->mu);
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
	maint_log(a, 0, "cut", st_cut(a->db, base_realtime_ns(), 0));
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
	a->maint_due_ms = now + a->maint.interval_ms;
	a->maint_work.data = a;
	if (uv_queue_work(&a->loop, &a->maint_work, maint_work_cb, maint_after_cb) == 0)
		a->maint_running = true;
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
	base_err e;
	return q_parse_duration(s, out, &e) ? -EINVAL : 0;
}

/* Reads a --*-token-file into *out (freed by the caller); on failure says
 * why on stderr and returns -errno. A token others may read is accepted
 * with a warning: refusing would break setups where a group is meant to
 * share it, and the operator sees the warning at every start. */
static int load_token(const char *path, char **out)
{
	base_err err = {0};
	bool shared = false;
	int rc = wire_auth_read_token_file(path, out, &shared, &err);
	if (rc)
		fprintf(stderr, "smolder-server: %s\n", err.msg);
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
	        "                      [--rollup-group-label LABEL] [--max-disk SIZE]\n"
	        "                      [--partition DURATION]\n"
	        "                      [--maintenance-interval DURATION]\n"
	        "                      [--debuginfod-url URL[,URL...]] [--ui-dir DIR]\n"
	        "                      [--auth-token-file FILE [--read-token-file FILE]]\n"
	        "                      [--max-connections N] [--query-timeout DURATION]\n"
	        "                      [--max-queries N] [--max-series N]\n"
	        "                      [--log-level info|debug] [--slow-request DURATION]\n"
	        "       smolder-server --clickhouse URL[,URL...] | --clickhouse-file FILE\n"
	        "                      [--clickhouse-cluster NAME] [--data-dir DIR]\n"
	        "                      [the options above but --max-disk, --partition and\n"
	        "                      --rollup-group-label]\n"
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
	        "                       delete roll-ups (sums per hour, 6 hours and day that\n"
	        "                       long ranges read) older than this, 0 keeps all\n"
	        "                       (default 90d)\n"
	        "  --rollup-group-label LABEL\n"
	        "                       roll-ups also sum the series of each value of this\n"
	        "                       label, so a long range of one value reads one sum;\n"
	        "                       \"\" for the profile type's sums only (default service)\n"
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

/* The command line, with its defaults. */
typedef struct cfg {
	const char *listen, *data_dir;
	int64_t maint_ns;
	const char *debuginfod_urls;   /* --debuginfod-url, or NULL */
	const char *ui_dir;            /* --ui-dir; NULL: api_ui.c's default places */
	const char *auth_file, *read_file;  /* --auth/read-token-file */
	uint32_t max_conns, max_queries;    /* 0: http.h's defaults */
	int64_t query_timeout_ns;
	bool log_debug;                /* --log-level debug */
	int64_t slow_ns;               /* --slow-request */
	st_options sopt;
	/* --clickhouse, --clickhouse-file (read into ch_urls), --clickhouse-cluster */
	const char *ch_arg, *ch_file;
	char *ch_urls;
	st_ch_options chopt;
	bool ch;                       /* either of the first two given */
	bool max_disk_set, partition_set, group_label_set;
} cfg;

/* One option's value into c; 0, or -1 after saying on stderr what is
 * wrong with it. */
static int parse_opt(int o, const char *arg, cfg *c)
{
	const char *bad = NULL, *want = "";
	switch (o) {
	case 'l': c->listen = arg; break;
	case 'd': c->data_dir = arg; break;
	case 'D': c->debuginfod_urls = arg; break;
	case 'U': c->ui_dir = arg; break;
	case 'A': c->auth_file = arg; break;
	case 'R': c->read_file = arg; break;
	case OPT_CLICKHOUSE: c->ch_arg = arg; break;
	case OPT_CLICKHOUSE_FILE: c->ch_file = arg; break;
	case OPT_CLICKHOUSE_CLUSTER: c->chopt.cluster = arg; break;
	case 'r':
		if (parse_duration(arg, &c->sopt.retention_ns))
			bad = "retention";
		break;
	case 'o':
		if (parse_duration(arg, &c->sopt.rollup_retention_ns))
			bad = "retention-rollup";
		break;
	case 'G':
		c->sopt.rollup_group_label = arg;
		c->group_label_set = true;
		break;
	case 'M':
		if (parse_size(arg, &c->sopt.max_block_bytes)) {
			bad = "max-disk";
			want = ": expected a size such as 500M or 10G";
		}
		c->max_disk_set = c->sopt.max_block_bytes != 0;
		break;
	case 'p':
		if (parse_duration(arg, &c->sopt.partition_ns) || c->sopt.partition_ns <= 0)
			bad = "partition";
		c->partition_set = true;
		break;
	case 'm':
		if (parse_duration(arg, &c->maint_ns) || c->maint_ns <= 0)
			bad = "maintenance-interval";
		break;
	case 'L':
		if (strcmp(arg, "info") && strcmp(arg, "debug")) {
			bad = "log-level";
			want = ": info or debug";
		}
		c->log_debug = !strcmp(arg, "debug");
		break;
	case 'W':
		if (parse_duration(arg, &c->slow_ns) || c->slow_ns < 1000000 ||
		    c->slow_ns > 3600 * 1000000000LL) {
			bad = "slow-request";
			want = ": a duration from 1ms to 1h";
		}
		break;
	case 'C':
		if (parse_count(arg, 1, 1u << 20, &c->max_conns))
			bad = "max-connections";
		break;
	case 'T':
		if (parse_duration(arg, &c->query_timeout_ns) || c->query_timeout_ns <= 0)
			bad = "query-timeout";
		break;
	case 'S':
		if (parse_size(arg, &c->sopt.max_series))
			bad = "max-series";
		break;
	case 'Q':
		if (parse_count(arg, 1, 1024, &c->max_queries))
			bad = "max-queries";
		break;
	}
	if (!bad)
		return 0;
	fprintf(stderr, "smolder-server: invalid --%s '%s'%s\n", bad, arg, want);
	return -1;
}

/* The options into c. Returns -1 to go on, else the exit status (0 after
 * --help, 2 for a usage error, said on stderr). */
static int parse_args(int argc, char **argv, cfg *c)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"data-dir", required_argument, NULL, 'd'},
		{"retention", required_argument, NULL, 'r'},
		{"retention-rollup", required_argument, NULL, 'o'},
		{"rollup-group-label", required_argument, NULL, 'G'},
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
		if (o == 'h') {
			usage(stdout);
			return 0;
		}
		if (o == '?') {
			usage(stderr);
			return 2;
		}
		if (parse_opt(o, optarg, c))
			return 2;
	}
	c->ch = c->ch_arg || c->ch_file;
	if (optind < argc || (!c->data_dir && !c->ch)) {
		if (!c->data_dir)
			fprintf(stderr, "smolder-server: --data-dir is required (or --clickhouse URL)\n");
		usage(stderr);
		return 2;
	}
	if (c->ch_arg && c->ch_file) {
		fprintf(stderr, "smolder-server: --clickhouse and --clickhouse-file are one setting; "
		        "give one\n");
		return 2;
	}
	if (c->chopt.cluster && !c->ch) {
		fprintf(stderr, "smolder-server: --clickhouse-cluster needs --clickhouse\n");
		return 2;
	}
	/* what only the embedded store has: refused rather than ignored */
	if (c->ch && (c->max_disk_set || c->partition_set)) {
		fprintf(stderr, "smolder-server: %s applies to the embedded store; with ClickHouse "
		        "data is partitioned by day and kept for --retention\n",
		        c->max_disk_set ? "--max-disk" : "--partition");
		return 2;
	}
	if (c->ch && c->group_label_set) {
		fprintf(stderr, "smolder-server: --rollup-group-label applies to the embedded "
		        "store's roll-ups; ClickHouse keeps its own\n");
		return 2;
	}
	if (c->ch_file && load_urls(c->ch_file, &c->ch_urls))
		return 2;
	if (c->read_file && !c->auth_file) {
		/* a read token alone would leave ingest open while looking guarded */
		fprintf(stderr, "smolder-server: --read-token-file needs --auth-token-file\n");
		return 2;
	}
	return -1;
}

/* The store (ClickHouse or the embedded one) and, with --debuginfod-url,
 * the debuginfod client, whose cache goes beside the store's files.
 * Returns 0, or the exit status after saying on stderr what failed. */
static int open_store(app *a, cfg *c, srv_dbgd **dbgd)
{
	int rc;
	base_err serr = {0};
	char cache[4096];
	if (c->ch) {
		c->chopt.urls = c->ch_urls ? c->ch_urls : c->ch_arg;
		c->chopt.retention_ns = c->sopt.retention_ns;
		c->chopt.rollup_retention_ns = c->sopt.rollup_retention_ns;
		c->chopt.max_series = c->sopt.max_series;
		c->chopt.max_future_ns = c->sopt.max_future_ns;
		if (c->data_dir) {
			snprintf(cache, sizeof(cache), "%s/debuginfo", c->data_dir);
			c->chopt.cache_dir = cache;
		}
		if ((rc = st_open_clickhouse(&c->chopt, &a->db, &serr))) {
			fprintf(stderr, "smolder-server: cannot open the store in ClickHouse: %s\n",
			        serr.msg[0] ? serr.msg : strerror(-rc));
			return 1;
		}
	} else if ((rc = st_open(c->data_dir, &c->sopt, &a->db, &serr))) {
		fprintf(stderr, "smolder-server: cannot open the store in %s: %s\n", c->data_dir,
		        serr.msg[0] ? serr.msg : strerror(-rc));
		return 1;
	}
	/* libdebuginfod's environment, set before any thread starts (the
	 * store starts none) */
	if (c->debuginfod_urls &&
	    (rc = srv_dbgd_new(c->debuginfod_urls, st_file_dir(a->db), dbgd))) {
		fprintf(stderr, "smolder-server: invalid --debuginfod-url '%s': expected "
		        "http(s)://HOST[:PORT][,...]\n", c->debuginfod_urls);
		return 2;
	}
	return 0;
}

/* The API's state, the symbolizer, and every route. Says on stderr what
 * failed. */
static int open_api(app *a, const cfg *c, srv_dbgd *dbgd)
{
	int rc;
	if ((rc = srv_api_init(&a->api, a->db))) {
		fprintf(stderr, "smolder-server: cannot set up the API: %s\n", strerror(-rc));
		return rc;
	}
	a->api.query_timeout_ns = c->query_timeout_ns;
	srv_sym_opts so = {.debuginfo_dir = st_file_dir(a->db), .db = a->db, .dbgd = dbgd};
	a->api.dbgd = dbgd;
	if ((rc = srv_sym_new(&so, &a->api.sym))) {
		fprintf(stderr, "smolder-server: symbolizer: %s\n", strerror(-rc));
		return rc;
	}
	a->metrics_opt = (srv_metrics_opts){.api = &a->api,
	                                    .data_dir = c->data_dir ? c->data_dir
	                                                            : st_file_dir(a->db),
	                                    .version = SMOLDER_VERSION, .start_ns = a->start_ns};
	a->status_opt = (srv_status_opts){.api = &a->api, .http = a->http, .auth = a->auth,
	                                  .version = SMOLDER_VERSION, .start_ns = a->start_ns,
	                                  .maint = &a->maint};
	if ((rc = srv_api_status_routes(a->http, &a->status_opt)) ||
	    (rc = srv_api_query_routes(a->http, &a->api)) ||
	    (rc = srv_api_ingest_routes(a->http, &a->api)) ||
	    (rc = srv_api_pyroscope_routes(a->http, &a->api)) ||
	    (rc = srv_api_ingest_native_routes(a->http, &a->api)) ||
	    (rc = srv_api_debuginfo_routes(a->http, &a->api)) ||
	    (rc = srv_metrics_routes(a->http, &a->metrics_opt)) ||
	    (rc = srv_api_ui_routes(a->http, c->ui_dir)))
		fprintf(stderr, "smolder-server: API routes: %s\n", strerror(-rc));
	return rc;
}

/* The maintenance timer and the signals that stop the server. */
static void start_timers(app *a)
{
	uv_timer_init(&a->loop, &a->maint_timer);
	a->maint_timer.data = a;
	uint64_t check_ms = a->maint.interval_ms < 1000 ? a->maint.interval_ms : 1000;
	a->maint_due_ms = uv_now(&a->loop) + a->maint.interval_ms;
	uv_timer_start(&a->maint_timer, maint_timer_cb, check_ms, check_ms);
	uv_signal_init(&a->loop, &a->sigint);
	uv_signal_init(&a->loop, &a->sigterm);
	a->sigint.data = a->sigterm.data = a;
	uv_signal_start(&a->sigint, on_signal, SIGINT);
	uv_signal_start(&a->sigterm, on_signal, SIGTERM);
}

int main(int argc, char **argv)
{
	int rc, exit_code = 1;
	malloc_tune();
	cfg c = {.listen = SRV_HTTP_DEFAULT_LISTEN,
	         .maint_ns = (int64_t)MAINT_INTERVAL_MS_DEFAULT * 1000000,
	         .query_timeout_ns = 30 * NS_PER_S, .slow_ns = 1000000000};
	st_options_default(&c.sopt);
	st_ch_options_default(&c.chopt);
	/* --debuginfod-url: created once the flags are read, before any thread
	 * (srv_dbgd_new sets libdebuginfod's environment); NULL when off */
	srv_dbgd *dbgd = NULL;
	char *write_token = NULL, *read_token = NULL;
	if ((rc = parse_args(argc, argv, &c)) >= 0)
		return rc;
	if (c.auth_file && (load_token(c.auth_file, &write_token) ||
	                    (c.read_file && load_token(c.read_file, &read_token)))) {
		free(write_token);
		free(c.ch_urls);
		return 2;
	}
	/* Ingest handlers block in st_append until the group commit's fsync,
	 * and queries can run for seconds: libuv's default of 4 pool threads
	 * would let four slow requests stall everything else. Read at the first
	 * uv_queue_work, so it must be set before; the user's value wins. */
	setenv("UV_THREADPOOL_SIZE", "16", 0);
	/* a client that goes away mid-response must cost an EPIPE, not the process */
	signal(SIGPIPE, SIG_IGN);
	c.max_conns = raise_nofile(c.max_conns);

	app a = {0};
	pthread_mutex_init(&a.maint.mu, NULL);
	a.start_ns = uv_hrtime();
	a.maint.interval_ms = (uint64_t)(c.maint_ns / 1000000);
	if ((rc = uv_loop_init(&a.loop))) {
		fprintf(stderr, "smolder-server: uv_loop_init: %s\n", uv_strerror(rc));
		return 1;
	}

	srv_http_options hopt;
	srv_http_options_default(&hopt);
	hopt.listen = c.listen;
	hopt.access_log = stderr;
	hopt.log_every_request = c.log_debug;
	hopt.log_slow_ms = (uint32_t)(c.slow_ns / 1000000);
	hopt.write_token = write_token;
	hopt.read_token = read_token;
	hopt.max_connections = c.max_conns;
	hopt.max_queries = c.max_queries;
	a.auth = write_token != NULL;
	if ((rc = srv_http_new(&a.loop, &hopt, &a.http))) {
		fprintf(stderr, "smolder-server: invalid --listen '%s': expected ADDR:PORT, "
		        "e.g. 127.0.0.1:7070 or [::1]:7070\n", c.listen);
		exit_code = 2;
		goto out;
	}
	if ((rc = open_store(&a, &c, &dbgd))) {
		exit_code = rc;
		goto out;
	}
	if (open_api(&a, &c, dbgd))
		goto out;
	if ((rc = srv_http_listen(a.http))) {
		fprintf(stderr, "smolder-server: cannot listen on %s: %s\n", c.listen,
		        uv_strerror(rc));
		goto out;
	}
	start_timers(&a);

	char addr[64];
	srv_http_address(a.http, addr, sizeof(addr));
	printf("smolder-server listening on http://%s\n", addr);
	fflush(stdout);
	startup_line(addr, c.ch ? NULL : c.data_dir, c.chopt.cluster, c.ui_dir, c.auth_file,
	             c.read_file, c.log_debug, c.slow_ns);

	uv_run(&a.loop, UV_RUN_DEFAULT);
	/* Every acknowledged batch is in the WAL already; cutting the whole
	 * head into blocks now only spares the next start its replay. A
	 * failure here loses nothing (the WAL stays), so it is reported, not
	 * fatal. */
	int crc = st_cut(a.db, base_realtime_ns(), 1);
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
	pthread_mutex_destroy(&a.maint.mu);
	srv_dbgd_free(dbgd);
	free(write_token);
	free(read_token);
	free(c.ch_urls);
	return exit_code;
}
