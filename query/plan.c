/* plan.c - a query's read plan: which roll-up level, over which time
 * range. The coarsest level whose steps fit takes every whole step it
 * holds; what is left (the ragged edges, spans a level does not hold yet)
 * goes to the next finer level, and what no level holds to raw rows.
 * Storage says where each level holds every row (st_rollup_spans), so the
 * plan is the same answer as raw rows, only cheaper to read. */
#include <errno.h>
#include <stdlib.h>

#include "query/q_int.h"
#include "query/query.h"

static int span_add(st_span **v, size_t *n, size_t *cap, int64_t step, int64_t from, int64_t to)
{
	if (from >= to)
		return 0;
	if (q__grow(v, cap, *n + 1, sizeof(**v)))
		return -ENOMEM;
	(*v)[(*n)++] = (st_span){step, from, to};
	return 0;
}

static int cmp_span(const void *a, const void *b)
{
	const st_span *x = a, *y = b;
	return x->from_ns < y->from_ns ? -1 : x->from_ns > y->from_ns;
}

int q_plan(st_db *db, int64_t from, int64_t to, int64_t divides, bool raw, st_span **out,
            size_t *nout)
{
	int64_t steps[ST_MAX_ROLLUPS];
	size_t nl = raw ? 0 : st_rollup_steps(db, steps, ST_MAX_ROLLUPS);
	st_span *plan = NULL, *left = NULL, *next = NULL;
	size_t np = 0, pcap = 0, nleft = 0, lcap = 0, nnext = 0, ncap = 0;
	int rc = span_add(&left, &nleft, &lcap, 0, from, to);
	if (nl > ST_MAX_ROLLUPS)
		nl = ST_MAX_ROLLUPS;
	for (size_t li = nl; li-- > 0 && !rc && nleft;) {
		int64_t s = steps[li];
		if (divides && divides % s)
			continue;  /* a timeline step the level's steps do not tile */
		nnext = 0;
		for (size_t i = 0; i < nleft && !rc; i++) {
			st_span *have = NULL;
			size_t nh = 0;
			int64_t at = left[i].from_ns;
			rc = st_rollup_spans(db, s, left[i].from_ns, left[i].to_ns, &have, &nh);
			for (size_t k = 0; k < nh && !rc; k++) {
				rc = span_add(&next, &nnext, &ncap, 0, at, have[k].from_ns);
				rc = rc ? rc : span_add(&plan, &np, &pcap, s, have[k].from_ns, have[k].to_ns);
				at = have[k].to_ns;
			}
			rc = rc ? rc : span_add(&next, &nnext, &ncap, 0, at, left[i].to_ns);
			free(have);
		}
		st_span *t = left;
		left = next;
		next = t;
		size_t tc = lcap;
		lcap = ncap;
		ncap = tc;
		nleft = nnext;
	}
	for (size_t i = 0; i < nleft && !rc; i++)
		rc = span_add(&plan, &np, &pcap, 0, left[i].from_ns, left[i].to_ns);
	free(left);
	free(next);
	if (rc) {
		free(plan);
		return rc;
	}
	if (np)
		qsort(plan, np, sizeof(*plan), cmp_span);
	*out = plan;
	*nout = np;
	return 0;
}
