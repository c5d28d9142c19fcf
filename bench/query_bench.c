/* query_bench.c - times the query engine on a store that bench_storage
 * built with --maintain (bench/query makes one, then runs this on it):
 * flame graphs as the UI asks for them over the newest hour and the last
 * seven days, for all series and for one service, against storage's share
 * of the same work, in interleaved rounds on one thread, each timed in the
 * thread's CPU time (best of the rounds). Prints one line per figure on
 * stdout (docs/bench-query.md says what each is).
 * Usage: query_bench DATA_DIR */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/map.h"
#include "query/query.h"

#define TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"
#define ROUNDS 5
#define HOUR (3600LL * 1000000000LL)
#define DAY (24 * HOUR)

/* names through a cache, as the server has them after its first query */
static q_resolver names;

/* The query's own CPU time: it runs on this one thread, and other
 * processes loading the machine (a shared 2-core VM) do not count. */
static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int count_row(void *arg, const st_row *r)
{
	(void)r;
	(*(uint64_t *)arg)++;
	return 0;
}

/* Raw rows a side's range holds. */
static uint64_t rows_in(st_db *db, const q_side *s)
{
	st_selection *sel;
	base_err err;
	uint64_t n = 0;
	if (st_select(db, s->m, s->nm, s->from_ns, s->to_ns, &sel, &err))
		return 0;
	st_rows(db, sel, s->from_ns, s->to_ns, count_row, &n);
	st_selection_free(sel);
	return n;
}

struct minmax {
	int64_t lo, hi;
};

static int minmax_row(void *arg, const st_row *r)
{
	struct minmax *x = arg;
	if (r->ts_ns < x->lo)
		x->lo = r->ts_ns;
	if (r->ts_ns > x->hi)
		x->hi = r->ts_ns;
	return 0;
}

static void die(const char *what, int rc, const base_err *err)
{
	fprintf(stderr, "query_bench: %s failed: %s (%s)\n", what, strerror(-rc),
	        err ? err->msg : "");
	exit(1);
}

/* Storage's share: select, plan, sum per stack (no names, no tree). */
static double time_storage(st_db *db, const q_side *s)
{
	st_selection *sel;
	st_stack_sum *sums = NULL;
	st_span *plan = NULL;
	size_t n, np;
	base_err err = {0};
	double t0 = now_s();
	int rc = st_select(db, s->m, s->nm, s->from_ns, s->to_ns, &sel, &err);
	if (rc)
		die("select", rc, &err);
	if ((rc = q_plan(db, s->from_ns, s->to_ns, 0, s->raw, &plan, &np)))
		die("q_plan", rc, NULL);
	if ((rc = st_merge_spans(db, sel, plan, np, &sums, &n, &err)))
		die("st_merge_spans", rc, &err);
	double dt = now_s() - t0;
	st_selection_free(sel);
	free(sums);
	free(plan);
	return dt;
}

/* End to end as the UI asks: merge, tree, JSON folded to max_nodes. */
static double time_flame(st_db *db, const q_side *s, int64_t *total)
{
	base_err err = {0};
	q_tree *t = NULL;
	base_buf o = {0};
	double t0 = now_s();
	int rc = q_merge(db, s, &names, &t, &err);
	if (rc)
		die("q_merge", rc, &err);
	if ((rc = q_tree_json(t, Q_MAX_NODES_UI, &o)))
		die("q_tree_json", rc, NULL);
	double dt = now_s() - t0;
	*total = q_tree_total(t, 0);
	q_tree_free(t);
	base_buf_free(&o);
	return dt;
}

/* The timeline as the UI asks for a range: the server's default step
 * (about 240 round points: hourly over a week), the ten
 * heaviest lines; by service where the fleet has more series than a
 * timeline may have lines (Q_MAX_RANGE_SERIES: the server refuses that
 * ungrouped, and the UI's user would group). */
static bool timeline_by_service;

static double time_timeline(st_db *db, const q_side *s)
{
	static const char *const by[] = {"service"};
	base_err err = {0};
	base_buf o = {0};
	int64_t step = q_range_default_step(s->to_ns - s->from_ns);
	double t0 = now_s();
	int rc = q_range_json(db, s, step, by, timeline_by_service ? 1 : 0, 10, &o, &err);
	if (rc)
		die("q_range_json", rc, &err);
	double dt = now_s() - t0;
	base_buf_free(&o);
	return dt;
}

/* The fewest rows any sum per (series, stack) could hold for a range:
 * its distinct (series, stack) pairs, whatever the step (a pair is one
 * 64-bit key, so two may rarely share one: a bound, not a count). */
static int pair_row(void *arg, const st_row *r)
{
	base_map *m = arg;
	uint64_t k = (r->series_id * 0x9e3779b97f4a7c15ULL) ^ r->stack_id;
	return base_map_put(m, k, 0);
}

static uint64_t distinct_pairs(st_db *db, const q_side *s, uint64_t rows)
{
	base_map m = {0};
	st_selection *sel;
	base_err err;
	if (base_map_init(&m, rows) || st_select(db, s->m, s->nm, s->from_ns, s->to_ns, &sel, &err)) {
		base_map_free(&m);
		return 0;
	}
	st_rows(db, sel, s->from_ns, s->to_ns, pair_row, &m);
	st_selection_free(sel);
	uint64_t n = m.len;
	base_map_free(&m);
	return n;
}

static uint64_t rows_read(st_db *db)
{
	st_stats s;
	st_get_stats(db, &s);
	uint64_t n = 0;
	for (uint32_t i = 0; i <= s.nrollups; i++)
		n += s.rows_read[i];
	return n;
}

static void min_of(double *best, double v)
{
	if (v < *best)
		*best = v;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: query_bench DATA_DIR\n");
		return 2;
	}
	st_db *db;
	base_err err;
	st_options opt;
	st_options_default(&opt);
	opt.retention_ns = 0;
	names.cache = q_cache_new(256u << 20);
	if (st_open(argv[1], &opt, &db, &err)) {
		fprintf(stderr, "query_bench: %s: %s\n", argv[1], err.msg);
		return 1;
	}
	/* the fleet's time range and one of its services, from the store */
	const st_matcher all[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE}};
	st_selection *sel;
	if (st_select(db, all, 1, 0, INT64_MAX, &sel, &err) || !st_selection_count(sel)) {
		fprintf(stderr, "query_bench: no series in %s\n", argv[1]);
		return 1;
	}
	if (st_selection_count(sel) > Q_MAX_RANGE_SERIES) {
		timeline_by_service = true;
		fprintf(stderr, "query_bench: %zu series, more than a timeline's %d lines: the "
		        "timeline by service\n", st_selection_count(sel), Q_MAX_RANGE_SERIES);
	}
	char service[256] = "";
	st_label *l;
	size_t n;
	if (!st_series_labels(db, st_selection_id(sel, 0), &l, &n)) {
		for (size_t i = 0; i < n; i++)
			if (!strcmp(l[i].name, "service"))
				snprintf(service, sizeof(service), "%s", l[i].value);
		free(l);
	}
	struct minmax mm = {INT64_MAX, INT64_MIN};
	st_rows(db, sel, 0, INT64_MAX, minmax_row, &mm);
	st_selection_free(sel);
	const int64_t end = mm.hi + 1;
	const int64_t week = end - 7 * DAY > mm.lo ? 7 * DAY : end - mm.lo;
	const st_matcher one[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                          {"service", ST_MATCH_EQ, service}};
	q_side all_1h = {all, 1, end - HOUR, end, false};
	q_side all_7d = {all, 1, end - week, end, false};
	q_side svc_1h = {one, 2, end - HOUR, end, false};
	q_side svc_7d = {one, 2, end - week, end, false};
	q_side all_7d_raw = all_7d;
	all_7d_raw.raw = true;
	fprintf(stderr, "query_bench: %s, %.1f h of data, the last %.1f h as \"7 days\", "
	        "service \"%s\"\n", argv[1], (double)(mm.hi - mm.lo) / (double)HOUR,
	        (double)week / (double)HOUR, service);
	uint64_t rows_1h = rows_in(db, &all_1h), rows_7d = rows_in(db, &all_7d);
	uint64_t rows_svc = rows_in(db, &svc_1h);

	/* rows decoded for one 7-day flame graph, roll-ups and raw edges */
	int64_t tot_plan, tot_raw;
	uint64_t r0 = rows_read(db);
	time_flame(db, &all_7d, &tot_plan);
	uint64_t r1 = rows_read(db);
	time_flame(db, &all_7d_raw, &tot_raw);
	if (tot_plan != tot_raw) {
		fprintf(stderr, "query_bench: the 7-day total is %" PRId64 " from roll-ups and %"
		        PRId64 " from raw rows\n", tot_plan, tot_raw);
		return 1;
	}

	double st_svc = 1e9, fl_svc = 1e9, fl_all1 = 1e9, fl_all7 = 1e9, fl_svc7 = 1e9;
	double st_raw7 = 1e9, tl_all7 = 1e9;
	int64_t tot;
	for (int r = 0; r < ROUNDS; r++) {
		min_of(&st_svc, time_storage(db, &svc_1h));
		min_of(&fl_svc, time_flame(db, &svc_1h, &tot));
		min_of(&fl_all1, time_flame(db, &all_1h, &tot));
		min_of(&fl_all7, time_flame(db, &all_7d, &tot));
		min_of(&fl_svc7, time_flame(db, &svc_7d, &tot));
		min_of(&tl_all7, time_timeline(db, &all_7d));
		if (r < 2)
			min_of(&st_raw7, time_storage(db, &all_7d_raw));
	}
	fprintf(stderr, "query_bench: rows: %" PRIu64 " in the last hour (%" PRIu64
	        " of one service), %" PRIu64 " in the 7 days; a 7-day flame graph decoded %"
	        PRIu64 "\n", rows_1h, rows_svc, rows_7d, r1 - r0);
	printf("storage_service_1h_ms: %.2f\n", st_svc * 1e3);
	printf("flame_service_1h_ms: %.2f\n", fl_svc * 1e3);
	printf("flame_all_1h_ms: %.2f\n", fl_all1 * 1e3);
	printf("flame_all_7d_ms: %.2f\n", fl_all7 * 1e3);
	printf("flame_service_7d_ms: %.2f\n", fl_svc7 * 1e3);
	printf("timeline_all_7d_ms: %.2f\n", tl_all7 * 1e3);
	printf("storage_raw_all_7d_ms: %.2f\n", st_raw7 * 1e3);
	printf("flame_over_storage_service_1h: %.2f\n", fl_svc / st_svc);
	printf("flame_7d_over_1h_all: %.2f\n", fl_all7 / fl_all1);
	printf("flame_7d_over_1h_service: %.2f\n", fl_svc7 / fl_svc);
	printf("rows_read_7d_over_rows_in_range: %.4f\n",
	       rows_7d ? (double)(r1 - r0) / (double)rows_7d : 0.0);
	printf("distinct_series_stacks_7d_over_rows_in_range: %.4f\n",
	       rows_7d ? (double)distinct_pairs(db, &all_7d, rows_7d) / (double)rows_7d : 0.0);
	printf("merge_rows_per_s: %.0f\n", (double)rows_7d / fl_all7);
	printf("raw_merge_rows_per_s: %.0f\n", (double)rows_7d / st_raw7);
	st_close(db);
	q_cache_free(names.cache);
	return 0;
}
