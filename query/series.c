/* series.c - questions about series rather than stacks: which profile
 * types, label names and values exist (for the label picker and
 * autocompletion), and the timeline (sum per step per series or group). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "base/text.h"
#include "query/q_int.h"
#include "query/query.h"

/* A sorted set of strings built by collecting, then sort + unique. */
typedef struct strset {
	char **v;
	size_t n, cap;
} strset;

static int set_add(strset *s, const char *str)
{
	if (base_grow(&s->v, &s->cap, s->n + 1, sizeof(*s->v)))
		return -ENOMEM;
	s->v[s->n] = strdup(str);
	if (!s->v[s->n])
		return -ENOMEM;
	s->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void set_free(strset *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

/* Calls fn with the labels of every series matching m in [from, to). */
typedef int (*labels_fn)(void *arg, uint64_t id, const st_label *l, size_t n);

static int each_series(st_db *db, const st_matcher *m, size_t nm, int64_t from,
                       int64_t to, int64_t deadline_ns, labels_fn fn, void *arg, base_err *err)
{
	st_selection *sel;
	int rc = st_select_until(db, m, nm, from, to, deadline_ns, &sel, err);
	if (rc)
		return rc;
	for (size_t i = 0; !rc && i < st_selection_count(sel); i++) {
		st_label *l;
		size_t n;
		uint64_t id = st_selection_id(sel, i);
		rc = st_series_labels(db, id, &l, &n);
		if (rc == -ENOENT) {
			rc = 0;  /* selected a moment ago, so it exists; be lenient */
			continue;
		}
		if (!rc) {
			rc = fn(arg, id, l, n);
			free(l);
		}
	}
	st_selection_free(sel);
	return rc;
}

typedef struct collect {
	strset set;
	const char *name;   /* values of this label, or names when NULL */
} collect;

static int collect_cb(void *arg, uint64_t id, const st_label *l, size_t n)
{
	(void)id;
	collect *c = arg;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		if (c->name) {
			if (!strcmp(l[i].name, c->name))
				rc = set_add(&c->set, l[i].value);
		} else if (strcmp(l[i].name, ST_TYPE_LABEL)) {
			rc = set_add(&c->set, l[i].name);
		}
	}
	return rc;
}

int q__label_values(st_db *db, const q_side *side, const char *name, char ***out, size_t *n,
                    base_err *err)
{
	collect c = {.name = name};
	*out = NULL;
	*n = 0;
	int rc = each_series(db, side->m, side->nm, side->from_ns, side->to_ns, side->deadline_ns,
	                     collect_cb, &c, err);
	if (rc) {
		set_free(&c.set);
		return rc;
	}
	if (c.set.n)
		qsort(c.set.v, c.set.n, sizeof(*c.set.v), cmp_str);
	size_t w = 0;
	for (size_t i = 0; i < c.set.n; i++) {
		if (w && !strcmp(c.set.v[i], c.set.v[w - 1]))
			free(c.set.v[i]);
		else
			c.set.v[w++] = c.set.v[i];
	}
	*out = c.set.v;
	*n = w;
	return 0;
}

int q_labels_json(st_db *db, const q_side *side, const char *name, base_buf *out, base_err *err)
{
	char **v;
	size_t n;
	int rc = q__label_values(db, side, name, &v, &n, err);
	if (rc)
		return rc;
	rc = base_buf_put(out, "[", 1);
	for (size_t i = 0; !rc && i < n; i++) {
		if (i)
			rc = base_buf_put(out, ",", 1);
		rc = rc ? rc : base_json_str(out, v[i], strlen(v[i]));
	}
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return rc ? rc : base_buf_put(out, "]", 1);
}

int q_types_json(st_db *db, const q_side *side, base_buf *out, base_err *err)
{
	return q_labels_json(db, side, ST_TYPE_LABEL, out, err);
}

/* The one non-empty value of label name over side's series, or NULL. */
static int only_value(st_db *db, const q_side *side, const char *name, char **out,
                      base_err *err)
{
	char **v;
	size_t n, k = 0;
	*out = NULL;
	int rc = q__label_values(db, side, name, &v, &n, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		if (v[i][0])
			k++;
	for (size_t i = 0; i < n; i++) {
		if (k == 1 && v[i][0])
			*out = v[i];
		else
			free(v[i]);
	}
	free(v);
	return 0;
}

int q_main_executable(st_db *db, const q_side *side, char **exe, char **build_id,
                      base_err *err)
{
	*build_id = NULL;
	int rc = only_value(db, side, "exe", exe, err);
	if (!rc && *exe)
		rc = only_value(db, side, "build_id", build_id, err);
	if (rc) {
		free(*exe);
		*exe = NULL;
	}
	return rc;
}

/* ---- the timeline ---- */

typedef struct group {
	char *labels_json;   /* {"k":"v",...} */
	size_t idx;          /* its row in range.sum and range.has */
	int64_t total;       /* over the range */
} group;

typedef struct range {
	int64_t from, step;
	size_t nsteps;
	const char *const *by;
	size_t nby;
	base_map series_group;   /* series id -> group */
	base_map key_group;      /* hash of the group's labels -> group */
	group *g;
	size_t ng, gcap;
	int64_t *sum;          /* per group and step: sum[idx * nsteps + step] */
	uint8_t *has;          /* the same: the step has samples */
	bool saturated;        /* a point written was a saturated sum */
} range;

static int range_series(void *arg, uint64_t id, const st_label *l, size_t n)
{
	range *r = arg;
	base_buf key = {0};
	int rc = base_buf_put(&key, "{", 1);
	size_t w = 0;
	if (r->nby == 0) {
		/* one line per series: all its labels */
		for (size_t i = 0; i < n && !rc; i++) {
			if (w++)
				rc = base_buf_put(&key, ",", 1);
			rc = rc ? rc : base_json_str(&key, l[i].name, strlen(l[i].name));
			rc = rc ? rc : base_buf_put(&key, ":", 1);
			rc = rc ? rc : base_json_str(&key, l[i].value, strlen(l[i].value));
		}
	} else {
		for (size_t b = 0; b < r->nby && !rc; b++) {
			/* by=comm,comm: one key, not two of the same name */
			bool again = false;
			for (size_t e = 0; e < b && !again; e++)
				again = !strcmp(r->by[e], r->by[b]);
			if (again)
				continue;
			const char *v = NULL;
			for (size_t i = 0; i < n && !v; i++)
				if (!strcmp(l[i].name, r->by[b]))
					v = l[i].value;
			if (!v)
				continue;   /* as Prometheus' sum by: absent stays absent */
			if (w++)
				rc = base_buf_put(&key, ",", 1);
			rc = rc ? rc : base_json_str(&key, r->by[b], strlen(r->by[b]));
			rc = rc ? rc : base_buf_put(&key, ":", 1);
			rc = rc ? rc : base_json_str(&key, v, strlen(v));
		}
	}
	rc = rc ? rc : base_buf_put(&key, "}", 1);
	if (rc)
		goto out;
	uint64_t h = XXH3_64bits(key.data, key.len);
	uint32_t g;
	for (;; h++) {
		g = base_map_get(&r->key_group, h);
		if (g == Q__NONE || !strcmp(r->g[g].labels_json, key.data))
			break;
	}
	if (g == Q__NONE) {
		if (r->ng >= Q_MAX_RANGE_SERIES) {
			rc = -E2BIG;
			goto out;
		}
		if ((rc = base_grow(&r->g, &r->gcap, r->ng + 1, sizeof(*r->g))))
			goto out;
		group *gr = &r->g[r->ng];
		gr->labels_json = key.data;
		gr->idx = r->ng;
		gr->total = 0;
		key.data = NULL;
		g = (uint32_t)r->ng++;
		if ((rc = base_map_put(&r->key_group, h, g)))
			goto out;
	}
	rc = base_map_put(&r->series_group, id, g);
out:
	base_buf_free(&key);
	return rc;
}

static int cmp_group(const void *a, const void *b)
{
	return strcmp(((const group *)a)->labels_json, ((const group *)b)->labels_json);
}

/* The heaviest first, ties by labels. */
static int cmp_group_total(const void *a, const void *b)
{
	const group *x = a, *y = b;
	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return strcmp(x->labels_json, y->labels_json);
}

/* One line of the answer: {"labels":...,["other":N,]"values":[[t,v],...]}. */
static int range_line(base_buf *out, range *r, const char *labels, size_t other,
                      const int64_t *sum, const uint8_t *has, bool first)
{
	int rc = base_buf_printf(out, "%s{\"labels\":%s,", first ? "" : ",", labels);
	if (!rc && other)
		rc = base_buf_printf(out, "\"other\":%zu,", other);
	rc = rc ? rc : base_buf_put(out, "\"values\":[", 10);
	for (size_t k = 0, w = 0; k < r->nsteps && !rc; k++) {
		if (!has[k])
			continue;
		r->saturated |= st_sum_saturated(sum[k]);
		int64_t t = r->from + (int64_t)k * r->step;
		/* seconds, with millisecond decimals only when needed */
		if (t % 1000000000LL == 0)
			rc = base_buf_printf(out, "%s[%" PRId64 ",%" PRId64 "]", w++ ? "," : "",
			                  (int64_t)(t / 1000000000LL), sum[k]);
		else
			rc = base_buf_printf(out, "%s[%.3f,%" PRId64 "]", w++ ? "," : "",
			                  (double)t / 1e9, sum[k]);
	}
	return rc ? rc : base_buf_put(out, "]}", 2);
}

int64_t q_range_default_step(int64_t span)
{
	static const int64_t steps_s[] = {10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
	                                  10800, 21600, 43200, 86400};
	const int64_t s = 1000000000LL;
	for (size_t i = 0; i < sizeof(steps_s) / sizeof(*steps_s); i++)
		if (span / (steps_s[i] * s) <= 240)
			return steps_s[i] * s;
	/* longer than 240 days: whole days, about 240 of them */
	return (span / 240 / (86400 * s) + 1) * 86400 * s;
}

int q_range_json(st_db *db, const q_side *side, int64_t step, const char *const *by,
                 size_t nby, size_t limit, base_buf *out, base_err *err)
{
	int rc = 0;
	range r = {.from = side->from_ns, .step = step, .by = by, .nby = nby};
	if (step <= 0 || side->to_ns <= side->from_ns || side->to_ns == INT64_MAX ||
	    (uint64_t)(side->to_ns - side->from_ns) / (uint64_t)step >= Q_MAX_RANGE_POINTS) {
		return base_fail(err, -EINVAL, "a range needs from < to and a step giving at most "
		                 "%d points", Q_MAX_RANGE_POINTS);
	}
	/* Steps start at multiples of the step since the epoch (as Prometheus
	 * aligns), not at `from`: a point's time is then a round number, and
	 * the buckets stay put when a relative range ("now-1h") moves on. The
	 * first bucket may start before `from`; only rows in [from, to) count. */
	int64_t rem = side->from_ns % step;
	r.from = side->from_ns - (rem < 0 ? rem + step : rem);
	r.nsteps = (size_t)(((uint64_t)(side->to_ns - r.from) + (uint64_t)step - 1) /
	                    (uint64_t)step);
	st_selection *sel = NULL;
	uint32_t *sel_group = NULL;
	rc = each_series(db, side->m, side->nm, side->from_ns, side->to_ns, side->deadline_ns,
	                 range_series, &r, err);
	if (rc == -E2BIG)
		base_fail(err, rc, "more than %d lines: narrow the selector or group by fewer "
		          "labels", Q_MAX_RANGE_SERIES);
	if (!rc)
		rc = st_select_until(db, side->m, side->nm, side->from_ns, side->to_ns,
		                     side->deadline_ns, &sel, err);
	if (!rc) {
		/* storage sums per (group, step) as it decodes: a callback per row
		 * (st_rows) cost seconds for a fleet's hour, and copied the head */
		size_t ns = st_selection_count(sel);
		sel_group = malloc((ns + 1) * sizeof(*sel_group));
		r.sum = calloc(r.ng * r.nsteps + 1, sizeof(*r.sum));
		r.has = calloc(r.ng * r.nsteps + 1, 1);
		if (!sel_group || !r.sum || !r.has)
			rc = -ENOMEM;
		for (size_t i = 0; !rc && i < ns; i++)
			sel_group[i] = base_map_get(&r.series_group, st_selection_id(sel, i));
	}
	if (!rc) {
		/* a level whose steps tile the timeline's: each of its rows falls
		 * in one point */
		st_span *plan = NULL;
		size_t np = 0;
		rc = q_plan(db, side->from_ns, side->to_ns, step, side->raw, &plan, &np);
		if (!rc)
			rc = st_series_steps_spans(db, sel, plan, np, r.from, step, r.nsteps, sel_group,
			                           r.sum, r.has, err);
		free(plan);
	}
	uint64_t damaged = sel ? st_selection_damaged(sel) : 0;
	st_selection_free(sel);
	free(sel_group);
	if (rc)
		goto out;
	for (size_t i = 0; i < r.ng; i++)
		for (size_t k = 0; k < r.nsteps; k++)
			r.g[i].total = st_sum_add(r.g[i].total, r.sum[r.g[i].idx * r.nsteps + k]);
	bool fold = limit && r.ng > limit;
	if (r.ng)
		qsort(r.g, r.ng, sizeof(*r.g), fold ? cmp_group_total : cmp_group);
	size_t shown = fold ? limit : r.ng;
	rc = base_buf_put(out, "{\"series\":[", 11);
	for (size_t i = 0; i < shown && !rc; i++)
		rc = range_line(out, &r, r.g[i].labels_json, 0, r.sum + r.g[i].idx * r.nsteps,
		                r.has + r.g[i].idx * r.nsteps, i == 0);
	if (!rc && fold) {
		/* the rest as one line, "other", saying how many it holds */
		int64_t *osum = calloc(r.nsteps + 1, sizeof(*osum));
		uint8_t *ohas = calloc(r.nsteps + 1, 1);
		if (!osum || !ohas)
			rc = -ENOMEM;
		for (size_t i = shown; i < r.ng && !rc; i++)
			for (size_t k = 0; k < r.nsteps; k++) {
				osum[k] = st_sum_add(osum[k], r.sum[r.g[i].idx * r.nsteps + k]);
				ohas[k] |= r.has[r.g[i].idx * r.nsteps + k];
			}
		rc = rc ? rc : range_line(out, &r, "{}", r.ng - shown, osum, ohas, shown == 0);
		free(osum);
		free(ohas);
	}
	rc = rc ? rc : base_buf_put(out, "]", 1);
	rc = rc ? rc : q__json_warnings(out, r.saturated, damaged);
	rc = rc ? rc : base_buf_put(out, "}", 1);
out:
	for (size_t i = 0; i < r.ng; i++)
		free(r.g[i].labels_json);
	free(r.g);
	free(r.sum);
	free(r.has);
	base_map_free(&r.series_group);
	base_map_free(&r.key_group);
	return rc;
}
