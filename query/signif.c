/* signif.c - which changes of a diff are real: a test per node of the
 * finished diff tree (its total) and per function (flat and cum), with the
 * false discovery rate controlled by Benjamini-Hochberg. It reads the
 * finished tree and, per side, the rows again to split each side into its
 * profiles; it never changes how the tree was built. The method and its
 * assumptions are in docs/query-language.md ("Significance of a diff"). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_errno.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "query/q_int.h"
#include "query/query.h"

#define NONE Q__NONE

/* One tested quantity on both sides: the sum, and over the side's profile
 * groups the sums of squares and of products with the group totals (what
 * the profile-level variance needs, without keeping every group). */
typedef struct acc {
	double x[2], s2[2], s3[2];
	uint32_t nz;          /* groups (both sides) where it is non-zero */
} acc;

/* The outcome of one test: p (NAN: not tested), q, significant. */
typedef struct verdict {
	double p, q;
	bool sig;
} verdict;

struct q__sig {
	const char *method;         /* Q_SIG_* below */
	bool counts;                /* the values are sample counts */
	uint32_t groups[2];         /* profile groups with samples, per side */
	uint64_t profiles[2];       /* distinct profiles (series, time), per side */
	double total[2];            /* what the tests saw, per side */
	size_t tested_nodes, tested_functions;
	verdict *node;              /* per tree node */
	verdict *flat, *cum;        /* per name (function) */
};

#define M_SAMPLES "samples"
#define M_BOTH "samples+profiles"
#define M_PROFILES "profiles"
#define M_NONE "none"

void q__sig_free(q__sig *s)
{
	if (!s)
		return;
	free(s->node);
	free(s->flat);
	free(s->cum);
	free(s);
}

/* GSL's default error handler aborts; a numerical corner in one query
 * must not take the server down, and every value we hand GSL is checked
 * for its domain first, so its errors only ever mean "no answer". */
static pthread_once_t gsl_once = PTHREAD_ONCE_INIT;
static void gsl_quiet(void) { gsl_set_error_handler_off(); }

/* Whether a side's type measures sample counts (its sample unit is
 * "count"): only then is the samples test meaningful. The parser puts the
 * type first as __name__="TYPE". */
static bool side_counts(const q_side *s)
{
	for (size_t i = 0; i < s->nm; i++) {
		if (strcmp(s->m[i].name, ST_TYPE_LABEL) || s->m[i].op != ST_MATCH_EQ)
			continue;
		const char *t = s->m[i].value;
		for (int k = 0; k < 2 && t; k++) {
			t = strchr(t, ':');
			t = t ? t + 1 : NULL;
		}
		return t && !strncmp(t, "count:", 6);
	}
	return false;
}

/* ---- the tests ---- */

/* The samples test: given k = x0 + x1 samples of the unit, under "no
 * change" x1 ~ Binomial(k, n1 / (n0 + n1)) (two Poisson counts given their
 * sum). Two-sided: twice the smaller tail, at most 1. */
static double p_samples(double x0, double x1, double n0, double n1)
{
	double k = x0 + x1, pi = n1 / (n0 + n1);
	if (k <= 0)
		return 1;
	if (k > 1e9) {
		/* past unsigned int: the normal approximation is exact enough */
		double z = (x1 - k * pi) / sqrt(k * pi * (1 - pi));
		return fmin(1, 2 * gsl_cdf_ugaussian_Q(fabs(z)));
	}
	unsigned ku = (unsigned)k, xu = (unsigned)x1;
	double lo = gsl_cdf_binomial_P(xu, pi, ku);
	double hi = xu ? gsl_cdf_binomial_Q(xu - 1, pi, ku) : 1;
	double p = 2 * fmin(lo, hi);
	return isnan(p) ? 1 : fmin(1, p);
}

/* The profiles test: each side's share as a ratio of sums over its profile
 * groups, its variance from how the groups scatter around it (the
 * cluster-robust variance of a ratio), and Welch's t with
 * Satterthwaite's degrees of freedom. Needs two groups per side. */
static double p_profiles(const acc *a, const double *n, const double *n2, const uint32_t *g)
{
	double share[2], var[2];
	for (int s = 0; s < 2; s++) {
		share[s] = a->x[s] / n[s];
		double ss = a->s2[s] - 2 * share[s] * a->s3[s] + share[s] * share[s] * n2[s];
		if (ss < 0)
			ss = 0;  /* rounding */
		var[s] = (double)g[s] / (g[s] - 1) * ss / (n[s] * n[s]);
	}
	double d = share[1] - share[0], v = var[0] + var[1];
	if (v <= 0)
		return d == 0 ? 1 : 0;
	/* the smaller side's degrees of freedom, not Satterthwaite's: with a
	 * dozen profiles the variance estimate is rough and per-profile shares
	 * are skewed, and Satterthwaite's larger value let about 6.5 % of
	 * overdispersed A/A diffs through at 5 % (tests/unit/test_signif.c) */
	double nu = (double)(g[0] < g[1] ? g[0] : g[1]) - 1;
	double p = 2 * gsl_cdf_tdist_Q(fabs(d) / sqrt(v), nu);
	return isnan(p) ? 1 : fmin(1, p);
}

/* p of one unit, NAN when it has too few samples to tell. */
static double test_unit(const q__sig *s, const acc *a, const double *n2)
{
	const double *n = s->total;
	bool prof = s->groups[0] >= 2 && s->groups[1] >= 2;
	if (s->counts) {
		/* too few: under "no change" fewer than Q_SIG_MIN_EXPECTED
		 * samples expected on a side (the chi-square rule) */
		double k = a->x[0] + a->x[1];
		if (k * fmin(n[0], n[1]) / (n[0] + n[1]) < Q_SIG_MIN_EXPECTED)
			return NAN;
		double p = p_samples(a->x[0], a->x[1], n[0], n[1]);
		return prof ? fmax(p, p_profiles(a, n, n2, s->groups)) : p;
	}
	/* values that are not counts (durations, bytes): profiles only */
	if (!prof || a->nz < Q_SIG_MIN_NONZERO_GROUPS)
		return NAN;
	return p_profiles(a, n, n2, s->groups);
}

typedef struct pref {
	double p;
	verdict *v;
} pref;

static int cmp_pref(const void *a, const void *b)
{
	double x = ((const pref *)a)->p, y = ((const pref *)b)->p;
	return x < y ? -1 : x > y;
}

/* Benjamini-Hochberg over one family: q_(i) = min over j >= i of
 * p_(j) m / j; significant when q <= Q_SIG_ALPHA. Untested units (p NAN)
 * are not in the family. Returns how many were tested, or -ENOMEM. */
static ssize_t bh(verdict **vs, const size_t *nv, int nfam)
{
	size_t m = 0, k = 0;
	for (int f = 0; f < nfam; f++)
		for (size_t i = 0; i < nv[f]; i++)
			m += !isnan(vs[f][i].p);
	pref *r = malloc((m + 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (int f = 0; f < nfam; f++)
		for (size_t i = 0; i < nv[f]; i++)
			if (!isnan(vs[f][i].p))
				r[k++] = (pref){vs[f][i].p, &vs[f][i]};
	qsort(r, m, sizeof(*r), cmp_pref);
	double run = 1;
	for (size_t i = m; i-- > 0;) {
		double q = r[i].p * (double)m / (double)(i + 1);
		if (q < run)
			run = q;
		r[i].v->q = run;
		r[i].v->sig = run <= Q_SIG_ALPHA;
	}
	free(r);
	return (ssize_t)m;
}

/* ---- profiles: each side's rows split by (series, time) ---- */

typedef struct scan {
	const q_tree *t;
	uint32_t G;                 /* groups */
	int64_t *self;              /* [node * G + g] */
	q__map prof;                /* (series, time) hash -> group, first G only */
	uint64_t nprof;
	q__map seen;                /* every profile, for the count (bounded) */
} scan;

#define PROFILES_COUNTED (1u << 20)

static int scan_row(void *arg, const st_row *r)
{
	scan *sc = arg;
	uint32_t leaf = q__map_get(&sc->t->leaf_map, r->stack_id);
	if (leaf == NONE)
		return 0;  /* arrived after the tree was built */
	uint64_t key = XXH3_64bits_withSeed(&r->ts_ns, sizeof(r->ts_ns), r->series_id);
	/* A profile is one series at one time: one agent interval of one
	 * process, one pushed pprof. The first G each get a group of their
	 * own; later ones share groups by hash, which keeps groups
	 * independent when profiles are (sums of independent profiles). */
	uint32_t g = q__map_get(&sc->prof, key);
	if (g == NONE) {
		if (sc->prof.len < sc->G) {
			g = (uint32_t)sc->prof.len;
			if (q__map_put(&sc->prof, key, g))
				return -ENOMEM;
		} else {
			g = (uint32_t)(key % sc->G);
		}
	}
	if (sc->seen.len < PROFILES_COUNTED && q__map_get(&sc->seen, key) == NONE) {
		if (q__map_put(&sc->seen, key, 0))
			return -ENOMEM;
		sc->nprof++;
	}
	int64_t *c = &sc->self[(size_t)leaf * sc->G + g];
	*c = (int64_t)((uint64_t)*c + (uint64_t)r->value);
	return 0;
}

/* Per-name data for one side: flat and cum per group. */
typedef struct side_fn {
	double *flat, *cum;  /* [name * G + g] */
} side_fn;

/* Reads one side's rows into per-group node totals and accumulates the
 * statistics of every node and function. */
static int side_stats(st_db *db, const q_side *q, int side, q_tree *t, q__sig *s,
                      const uint8_t *outer, uint32_t G, acc *nodes, acc *flat, acc *cum,
                      double *n2, st_err *err)
{
	st_selection *sel = NULL;
	scan sc = {.t = t, .G = G};
	double *fflat = NULL, *fcum = NULL;
	int rc = 0;
	sc.self = calloc(t->nnodes * G, sizeof(*sc.self));
	fflat = calloc(t->nnames * G, sizeof(*fflat));
	fcum = calloc(t->nnames * G, sizeof(*fcum));
	if (!sc.self || !fflat || !fcum) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = st_select_until(db, q->m, q->nm, q->from_ns, q->to_ns, q->deadline_ns, &sel, err)))
		goto out;
	if ((rc = st_rows(db, sel, q->from_ns, q->to_ns, scan_row, &sc)))
		goto out;
	s->profiles[side] = sc.nprof;
	/* flat per name from the leaves' own values, then totals upwards:
	 * children are created after their parents */
	for (size_t i = 1; i < t->nnodes; i++)
		for (uint32_t g = 0; g < G; g++)
			fflat[(size_t)t->nodes[i].name * G + g] += (double)sc.self[i * G + g];
	for (size_t i = t->nnodes; i-- > 1;) {
		uint32_t par = t->nodes[i].parent;
		for (uint32_t g = 0; g < G; g++)
			sc.self[(size_t)par * G + g] += sc.self[i * G + g];
	}
	const int64_t *root = sc.self;  /* node 0: the group totals */
	double n = 0;
	n2[side] = 0;
	s->groups[side] = 0;
	for (uint32_t g = 0; g < G; g++) {
		n += (double)root[g];
		n2[side] += (double)root[g] * (double)root[g];
		s->groups[side] += root[g] != 0;
	}
	s->total[side] = n;
	for (size_t i = 0; i < t->nnodes; i++) {
		acc *a = &nodes[i];
		for (uint32_t g = 0; g < G; g++) {
			double v = (double)sc.self[i * G + g];
			a->x[side] += v;
			a->s2[side] += v * v;
			a->s3[side] += v * (double)root[g];
			a->nz += v != 0;
			if (outer[i])
				fcum[(size_t)t->nodes[i].name * G + g] += v;
		}
	}
	for (size_t f = 0; f < t->nnames; f++)
		for (uint32_t g = 0; g < G; g++) {
			double vf = fflat[f * G + g], vc = fcum[f * G + g];
			flat[f].x[side] += vf;
			flat[f].s2[side] += vf * vf;
			flat[f].s3[side] += vf * (double)root[g];
			flat[f].nz += vf != 0;
			cum[f].x[side] += vc;
			cum[f].s2[side] += vc * vc;
			cum[f].s3[side] += vc * (double)root[g];
			cum[f].nz += vc != 0;
		}
out:
	st_selection_free(sel);
	free(sc.self);
	q__map_free(&sc.prof);
	q__map_free(&sc.seen);
	free(fflat);
	free(fcum);
	return rc;
}

/* Marks the nodes whose function is not already on the path above them
 * (their total counts towards the function's cum once, as top does), and
 * which names appear below the root at all. */
static int outermost(const q_tree *t, uint8_t *outer, uint8_t *used)
{
	/* nodes are laid out depth first: the path to node i is what is left
	 * of the path to i - 1 once it is cut back to i's parent */
	uint32_t *onpath = calloc(t->nnames + 1, sizeof(*onpath));
	uint32_t *path = malloc((t->nnodes + 1) * sizeof(*path));
	size_t sp = 0;
	if (!onpath || !path) {
		free(onpath);
		free(path);
		return -ENOMEM;
	}
	for (size_t i = 1; i < t->nnodes; i++) {
		const qnode *nd = &t->nodes[i];
		while (sp && path[sp - 1] != nd->parent)
			onpath[t->nodes[path[--sp]].name]--;
		outer[i] = onpath[nd->name]++ == 0;
		used[nd->name] = 1;
		path[sp++] = (uint32_t)i;
	}
	free(onpath);
	free(path);
	return 0;
}

/* How many profile groups a side is split into: Q_SIG_MAX_GROUPS, fewer
 * for trees so big that a group's node array would pass the budget. */
static uint32_t groups_for(size_t nodes)
{
	size_t g = Q_SIG_GROUP_BUDGET / (nodes ? nodes : 1);
	if (g > Q_SIG_MAX_GROUPS)
		g = Q_SIG_MAX_GROUPS;
	return g < 2 ? 2 : (uint32_t)g;
}

int q__sig_compute(st_db *db, const q_side *base, const q_side *compare, q_tree *t,
                   st_err *err)
{
	pthread_once(&gsl_once, gsl_quiet);
	q__sig *s = calloc(1, sizeof(*s));
	acc *nodes = calloc(t->nnodes, sizeof(*nodes));
	acc *flat = calloc(t->nnames, sizeof(*flat)), *cum = calloc(t->nnames, sizeof(*cum));
	uint8_t *outer = calloc(t->nnodes, 1), *used = calloc(t->nnames, 1);
	double n2[2] = {0, 0};
	int rc = 0;
	if (!s || !nodes || !flat || !cum || !outer || !used) {
		rc = -ENOMEM;
		goto out;
	}
	s->node = malloc(t->nnodes * sizeof(*s->node));
	s->flat = malloc(t->nnames * sizeof(*s->flat));
	s->cum = malloc(t->nnames * sizeof(*s->cum));
	if (!s->node || !s->flat || !s->cum) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = outermost(t, outer, used)))
		goto out;
	s->counts = side_counts(base) && side_counts(compare);
	uint32_t G = groups_for(t->nnodes);
	if ((rc = side_stats(db, base, 0, t, s, outer, G, nodes, flat, cum, n2, err)) ||
	    (rc = side_stats(db, compare, 1, t, s, outer, G, nodes, flat, cum, n2, err)))
		goto out;
	bool prof = s->groups[0] >= 2 && s->groups[1] >= 2;
	bool any = s->total[0] > 0 && s->total[1] > 0;
	s->method = !any ? M_NONE : s->counts ? (prof ? M_BOTH : M_SAMPLES) :
	            (prof ? M_PROFILES : M_NONE);
	for (size_t i = 0; i < t->nnodes; i++) {
		/* the root's share is 1 on both sides: nothing to test */
		double p = any && i ? test_unit(s, &nodes[i], n2) : NAN;
		s->node[i] = (verdict){p, NAN, false};
	}
	for (size_t f = 0; f < t->nnames; f++) {
		bool u = any && used[f];
		s->flat[f] = (verdict){u ? test_unit(s, &flat[f], n2) : NAN, NAN, false};
		s->cum[f] = (verdict){u ? test_unit(s, &cum[f], n2) : NAN, NAN, false};
	}
	/* two families: the tree's nodes, and the functions' flat and cum
	 * together (one table, one list of "what changed") */
	verdict *fam_nodes[1] = {s->node}, *fam_fn[2] = {s->flat, s->cum};
	size_t n_nodes[1] = {t->nnodes}, n_fn[2] = {t->nnames, t->nnames};
	ssize_t m = bh(fam_nodes, n_nodes, 1);
	if (m < 0) {
		rc = (int)m;
		goto out;
	}
	s->tested_nodes = (size_t)m;
	if ((m = bh(fam_fn, n_fn, 2)) < 0) {
		rc = (int)m;
		goto out;
	}
	s->tested_functions = (size_t)m;
	q__sig_free(t->sig);
	t->sig = s;
	s = NULL;
out:
	q__sig_free(s);
	free(nodes);
	free(flat);
	free(cum);
	free(outer);
	free(used);
	return rc;
}

/* ---- JSON ---- */

static int put_p(q_buf *o, const char *key, double v)
{
	if (isnan(v))
		return q_buf_printf(o, ",\"%s\":null", key);
	return q_buf_printf(o, ",\"%s\":%.3g", key, v);
}

int q__sig_node_json(const q_tree *t, uint32_t node, q_buf *o)
{
	if (!t->sig)
		return 0;
	const verdict *v = &t->sig->node[node];
	int rc = q_buf_printf(o, ",\"significant\":%s", v->sig ? "true" : "false");
	rc = rc ? rc : put_p(o, "p", v->p);
	return rc ? rc : put_p(o, "q", v->q);
}

int q__sig_root_json(const q_tree *t, q_buf *o)
{
	const q__sig *s = t->sig;
	if (!s)
		return 0;
	return q_buf_printf(o, ",\"significance\":{\"method\":\"%s\",\"alpha\":%g,"
	                    "\"min_expected\":%g,\"profiles\":{\"base\":%" PRIu64 ",\"compare\":%"
	                    PRIu64 "},\"groups\":{\"base\":%u,\"compare\":%u},"
	                    "\"tested_nodes\":%zu,\"tested_functions\":%zu}",
	                    s->method, Q_SIG_ALPHA, Q_SIG_MIN_EXPECTED, s->profiles[0],
	                    s->profiles[1], s->groups[0], s->groups[1], s->tested_nodes,
	                    s->tested_functions);
}

/* ---- the diff's top table ---- */

typedef struct drow {
	uint32_t name;
	double rank;      /* the change it is listed by, points */
	bool sig;         /* listed: in "what changed" */
} drow;

static int cmp_drow(const void *a, const void *b)
{
	const drow *x = a, *y = b;
	if (x->sig != y->sig)
		return x->sig ? -1 : 1;
	double ax = fabs(x->rank), ay = fabs(y->rank);
	if (ax != ay)
		return ax > ay ? -1 : 1;
	return x->name < y->name ? -1 : x->name > y->name;
}

static double pct(double v, double total) { return total > 0 ? 100.0 * v / total : 0.0; }

int q_diff_top_json(const q_tree *t, size_t limit, q_buf *out)
{
	const q__sig *s = t->sig;
	if (!t->diff || !s)
		return -EINVAL;
	drow *rows = malloc((t->nnames + 1) * sizeof(*rows));
	size_t n = 0;
	int rc = 0;
	if (!rows)
		return -ENOMEM;
	double tot[2] = {(double)t->nodes[0].total[0], (double)t->nodes[0].total[1]};
	/* values from the tree (what the flame graph shows); the tests saw
	 * the rows again and may have seen a few more that arrived since */
	double *val = calloc(t->nnames * 4, sizeof(*val)), *sub = NULL, *expl = NULL;
	uint8_t *outer = calloc(t->nnodes, 1), *used = calloc(t->nnames, 1);
	if (!val || !outer || !used) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = outermost(t, outer, used)))
		goto out;
	for (size_t i = 1; i < t->nnodes; i++) {
		const qnode *nd = &t->nodes[i];
		for (int side = 0; side < 2; side++) {
			val[nd->name * 4 + side * 2] += (double)nd->self[side];
			if (outer[i])
				val[nd->name * 4 + side * 2 + 1] += (double)nd->total[side];
		}
	}
	/* What the listed own-share changes explain under each function: per
	 * node, the self-share changes of significant functions in its
	 * subtree (children come after their parents), summed over the
	 * function's outermost nodes. */
	sub = calloc(t->nnodes, sizeof(*sub));
	expl = calloc(t->nnames, sizeof(*expl));
	if (!sub || !expl) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 1; i < t->nnodes; i++)
		if (s->flat[t->nodes[i].name].sig)
			sub[i] = pct((double)t->nodes[i].self[1], tot[1]) -
			         pct((double)t->nodes[i].self[0], tot[0]);
	for (size_t i = t->nnodes; i-- > 1;)
		sub[t->nodes[i].parent] += sub[i];
	for (size_t i = 1; i < t->nnodes; i++)
		if (outer[i])
			expl[t->nodes[i].name] += sub[i];
	for (size_t f = 0; f < t->nnames; f++) {
		if (!used[f])
			continue;
		/* Listed: a significant change of its own share; or of its share
		 * with its callees (a caller whose callees' work moved) when the
		 * listed changes beneath it do not explain most of it, so the
		 * list names where time went and not every caller above. */
		double d = pct(val[f * 4 + 2], tot[1]) - pct(val[f * 4], tot[0]);
		double dc = pct(val[f * 4 + 3], tot[1]) - pct(val[f * 4 + 1], tot[0]);
		bool fs = s->flat[f].sig, cs = s->cum[f].sig && fabs(dc - expl[f]) > fabs(dc) / 2;
		rows[n++] = (drow){(uint32_t)f, fs || !cs ? d : dc, fs || cs};
	}
	qsort(rows, n, sizeof(*rows), cmp_drow);
	size_t nsig = 0;
	while (nsig < n && rows[nsig].sig)
		nsig++;
	rc = q_buf_printf(out, "{\"base_total\":%.0f,\"compare_total\":%.0f,\"listed_rows\":%zu",
	                  tot[0], tot[1], nsig);
	const int64_t *tr = t->trunc;
	if (!rc && (tr[0] || tr[1]))
		rc = q_buf_printf(out, ",\"base_truncated\":%" PRId64 ",\"compare_truncated\":%" PRId64,
		                  tr[0], tr[1]);
	rc = rc ? rc : q__sig_root_json(t, out);
	/* reasons to doubt the comparison itself, each a sentence for people:
	 * the sides' shares of incomplete stacks, when they differ by more
	 * than Q_TRUNCATED_WARN_POINTS (frames near the root then grow or
	 * shrink by that much for no other reason) */
	rc = rc ? rc : q_buf_put(out, ",\"warnings\":[", 13);
	double sb = pct((double)tr[0], tot[0]), sc = pct((double)tr[1], tot[1]);
	if (!rc && tot[0] > 0 && tot[1] > 0 && fabs(sc - sb) > Q_TRUNCATED_WARN_POINTS)
		rc = q_buf_printf(out, "\"the sides differ in completeness: %.1f %% of the base's samples "
		                  "and %.1f %% of the compare side's have incomplete stacks (their "
		                  "callers are missing), so frames near the root grow or shrink by up "
		                  "to that much for this reason alone\"", sb, sc);
	rc = rc ? rc : q_buf_put(out, "]", 1);
	rc = rc ? rc : q_buf_put(out, ",\"rows\":[", 9);
	for (size_t i = 0; !rc && i < n && (!limit || i < limit); i++) {
		uint32_t f = rows[i].name;
		const qname *nm = q__name(t->names, f);
		const double *v = &val[f * 4];
		if (i)
			rc = q_buf_put(out, ",", 1);
		rc = rc ? rc : q_buf_put(out, "{\"name\":", 8);
		rc = rc ? rc : q_buf_json_str(out, nm->function);
		if (!rc && nm->file) {
			rc = q_buf_put(out, ",\"file\":", 8);
			rc = rc ? rc : q_buf_json_str(out, nm->file);
			rc = rc ? rc : q_buf_printf(out, ",\"line\":%" PRId64, nm->line);
		}
		if (!rc && nm->kernel)
			rc = q_buf_put(out, ",\"kernel\":true", 14);
		for (int side = 0; side < 2 && !rc; side++)
			rc = q_buf_printf(out, ",\"%s\":{\"flat\":%.0f,\"flat_pct\":%.4f,\"cum\":%.0f,"
			                  "\"cum_pct\":%.4f}", side ? "compare" : "base",
			                  v[side * 2], pct(v[side * 2], tot[side]), v[side * 2 + 1],
			                  pct(v[side * 2 + 1], tot[side]));
		rc = rc ? rc : q_buf_printf(out, ",\"listed\":%s", rows[i].sig ? "true" : "false");
		rc = rc ? rc : q_buf_printf(out, ",\"delta\":%.4f,\"cum_delta\":%.4f,\"significant\":%s",
		                            pct(v[2], tot[1]) - pct(v[0], tot[0]),
		                            pct(v[3], tot[1]) - pct(v[1], tot[0]),
		                            s->flat[f].sig ? "true" : "false");
		rc = rc ? rc : put_p(out, "p", s->flat[f].p);
		rc = rc ? rc : put_p(out, "q", s->flat[f].q);
		rc = rc ? rc : q_buf_printf(out, ",\"cum_significant\":%s",
		                            s->cum[f].sig ? "true" : "false");
		rc = rc ? rc : put_p(out, "cum_p", s->cum[f].p);
		rc = rc ? rc : put_p(out, "cum_q", s->cum[f].q);
		rc = rc ? rc : q_buf_put(out, "}", 1);
	}
	rc = rc ? rc : q_buf_put(out, "]}", 2);
out:
	free(rows);
	free(val);
	free(sub);
	free(expl);
	free(outer);
	free(used);
	return rc;
}
