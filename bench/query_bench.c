/* query_bench.c - times the query engine on a store that bench_storage
 * built (bench/query makes one, then runs this on it): merge, top and diff
 * over the last hour and the whole range, for one service and for all.
 * One thread. Prints merge_rows_per_s and one latency per line on stdout.
 * Usage: query_bench DATA_DIR */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "query/query.h"

#define TYPE "process_cpu:samples:count:cpu:nanoseconds:delta"
#define RUNS 3

static double now_s(void)
{
	return (double)base_monotonic_ns() / 1e9;
}

static int count_row(void *arg, const st_row *r)
{
	(void)r;
	(*(uint64_t *)arg)++;
	return 0;
}

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

/* Best of RUNS of storage's share alone: select and sum per stack. */
static double time_storage(st_db *db, const q_side *s)
{
	double best = 1e9;
	for (int i = 0; i < RUNS; i++) {
		st_selection *sel;
		st_stack_sum *sums = NULL;
		size_t n;
		base_err err;
		double t0 = now_s();
		if (st_select(db, s->m, s->nm, s->from_ns, s->to_ns, &sel, &err) ||
		    st_merge(db, sel, s->from_ns, s->to_ns, &sums, &n))
			exit(1);
		double dt = now_s() - t0;
		st_selection_free(sel);
		free(sums);
		if (dt < best)
			best = dt;
	}
	return best;
}

/* Best of RUNS: a merge to a tree, then (what == 1) top or (what == 2) a
 * diff of this side against the hour before it. */
static double time_query(st_db *db, const q_side *s, int what, int64_t *total)
{
	double best = 1e9;
	for (int i = 0; i < RUNS; i++) {
		base_err err;
		q_tree *t = NULL;
		base_buf o = {0};
		double t0 = now_s();
		int rc;
		if (what == 2) {
			q_side base = *s;
			base.from_ns -= 3600LL * 1000000000LL;
			base.to_ns -= 3600LL * 1000000000LL;
			rc = q_diff(db, &base, s, NULL, &t, &err);
		} else {
			rc = q_merge(db, s, NULL, &t, &err);
		}
		if (!rc && what == 1)
			rc = q_top_json(t, 100, &o);
		if (!rc && what == 0)
			rc = q_tree_json(t, 0, &o);
		double dt = now_s() - t0;
		if (rc) {
			fprintf(stderr, "query_bench: query failed: %s (%s)\n", strerror(-rc), err.msg);
			exit(1);
		}
		*total = q_tree_total(t, what == 2 ? 1 : 0);
		q_tree_free(t);
		base_buf_free(&o);
		if (dt < best)
			best = dt;
	}
	return best;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: query_bench DATA_DIR\n");
		return 2;
	}
	st_db *db;
	base_err err;
	if (st_open(argv[1], NULL, &db, &err)) {
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
	char service[256] = "";
	st_label *l;
	size_t n;
	if (!st_series_labels(db, st_selection_id(sel, 0), &l, &n)) {
		for (size_t i = 0; i < n; i++)
			if (!strcmp(l[i].name, "service"))
				snprintf(service, sizeof(service), "%s", l[i].value);
		free(l);
	}
	st_selection_free(sel);
	/* the data's time range, from the rows themselves */
	struct minmax mm = {INT64_MAX, INT64_MIN};
	st_selection *s3;
	if (st_select(db, all, 1, 0, INT64_MAX, &s3, &err))
		return 1;
	st_rows(db, s3, 0, INT64_MAX, minmax_row, &mm);
	st_selection_free(s3);
	int64_t mint = mm.lo, maxt = mm.hi;
	const int64_t hour = 3600LL * 1000000000LL;
	const st_matcher one[] = {{ST_TYPE_LABEL, ST_MATCH_EQ, TYPE},
	                          {"service", ST_MATCH_EQ, service}};
	struct {
		const char *name;
		q_side side;
	} cases[] = {
		{"all_1h", {all, 1, maxt + 1 - hour, maxt + 1}},
		{"all_range", {all, 1, mint, maxt + 1}},
		{"service_1h", {one, 2, maxt + 1 - hour, maxt + 1}},
		{"service_range", {one, 2, mint, maxt + 1}},
	};
	fprintf(stderr, "query_bench: %s, %.1f h of data, service \"%s\"\n", argv[1],
	        (double)(maxt - mint) / (double)hour, service);
	double best_rate = 0;
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		uint64_t rows = rows_in(db, &cases[c].side);
		int64_t total;
		double storage = time_storage(db, &cases[c].side);
		double merge = time_query(db, &cases[c].side, 0, &total);
		double top = time_query(db, &cases[c].side, 1, &total);
		double diff = time_query(db, &cases[c].side, 2, &total);
		double rate = rows / merge;
		if (rate > best_rate)
			best_rate = rate;
		printf("storage_%s_ms: %.1f\n", cases[c].name, storage * 1e3);
		printf("merge_%s_ms: %.1f\n", cases[c].name, merge * 1e3);
		printf("top_%s_ms: %.1f\n", cases[c].name, top * 1e3);
		printf("diff_%s_ms: %.1f\n", cases[c].name, diff * 1e3);
		fprintf(stderr, "query_bench: %s: %" PRIu64 " rows, merge %.0f rows/s end to end\n",
		        cases[c].name, rows, rate);
	}
	/* the engine's whole path: select, sum in storage, name, build, JSON */
	printf("merge_rows_per_s: %.0f\n", best_rate);
	st_close(db);
	return 0;
}
