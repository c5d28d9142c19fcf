/* suggest.c - why a selector selects nothing, said so that a typo does not
 * look like silence: which matcher matches no series, and the label values
 * (or label names, or profile types) closest to what was typed, by edit
 * distance. Runs only once a query found no series; it reads series
 * labels through the discovery path (series.c), so it costs what a label
 * listing costs. Not here: deciding what to answer over HTTP (the server). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query/q_int.h"
#include "query/query.h"

/* Names compared byte by byte up to this length: a longer value is no
 * typo of a short one, and the table stays small. */
#define CMP_MAX 256
/* Bytes of one name in the sentence (the JSON has it whole). */
#define SHOW_MAX 80

/* Optimal string alignment distance (Levenshtein plus adjacent
 * transpositions, so "pyhton3" is one edit from "python3"), over at most
 * CMP_MAX bytes of each. */
static size_t osa(const char *a, const char *b)
{
	size_t n = strnlen(a, CMP_MAX), m = strnlen(b, CMP_MAX);
	static _Thread_local size_t row[3][CMP_MAX + 1];
	size_t *pp = row[0], *p = row[1], *c = row[2];
	for (size_t j = 0; j <= m; j++)
		p[j] = j;
	for (size_t i = 1; i <= n; i++) {
		c[0] = i;
		for (size_t j = 1; j <= m; j++) {
			size_t cost = a[i - 1] != b[j - 1];
			size_t v = p[j - 1] + cost;
			if (p[j] + 1 < v)
				v = p[j] + 1;
			if (c[j - 1] + 1 < v)
				v = c[j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    pp[j - 2] + 1 < v)
				v = pp[j - 2] + 1;
			c[j] = v;
		}
		size_t *t = pp;
		pp = p;
		p = c;
		c = t;
	}
	return p[m];
}

/* Close enough to say "did you mean": a third of the name, at least one. */
static bool near_enough(const char *typed, size_t d)
{
	size_t n = strnlen(typed, CMP_MAX);
	return d <= (n / 3 > 1 ? n / 3 : 1);
}

typedef struct cand {
	const char *s;
	size_t d;
} cand;

static int by_distance(const void *x, const void *y)
{
	const cand *a = x, *b = y;
	if (a->d != b->d)
		return a->d < b->d ? -1 : 1;
	return strcmp(a->s, b->s);
}

/* What one matcher's look found. */
typedef struct finding {
	const st_matcher *m;
	bool alone;              /* matches series on its own (with the type) */
	bool label_exists;       /* some series in range has the label */
	const char *closest[Q_SUGGEST_MAX];
	size_t nclosest;
	const char *dym;         /* "did you mean", or NULL */
	char **vals;             /* owns what closest and dym point into */
	size_t nvals;
} finding;

static void vals_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The Q_SUGGEST_MAX entries of vals closest to typed (an empty one never:
 * "" is a series lacking the label) into f. */
static int pick_closest(finding *f, const char *typed)
{
	cand *c = malloc((f->nvals + 1) * sizeof(*c));
	size_t k = 0;
	if (!c)
		return -ENOMEM;
	for (size_t i = 0; i < f->nvals; i++)
		if (f->vals[i][0])
			c[k++] = (cand){f->vals[i], osa(typed, f->vals[i])};
	qsort(c, k, sizeof(*c), by_distance);
	f->nclosest = k < Q_SUGGEST_MAX ? k : Q_SUGGEST_MAX;
	for (size_t i = 0; i < f->nclosest; i++)
		f->closest[i] = c[i].s;
	f->dym = k && c[0].d && near_enough(typed, c[0].d) ? c[0].s : NULL;
	free(c);
	return 0;
}

static int count(st_db *db, const st_matcher *m, size_t nm, int64_t from, int64_t to,
                 int64_t deadline_ns, size_t *n, st_err *err)
{
	st_selection *sel;
	int rc = st_select_until(db, m, nm, from, to, deadline_ns, &sel, err);
	if (rc)
		return rc;
	*n = st_selection_count(sel);
	st_selection_free(sel);
	return 0;
}

/* Looks at matcher i of side: whether it matches on its own, and the
 * values of its label closest to its value, among the series the other
 * matchers select (where a fix would help) or, when those are none, among
 * every series of the range. */
static int look(st_db *db, const q_side *side, size_t i, finding *f, st_err *err)
{
	const st_matcher *m = side->m;
	size_t nm = side->nm, n = 0;
	st_matcher alone[2];
	int rc;
	f->m = &m[i];
	/* on its own: the type's matcher alone, or it with the type */
	alone[0] = m[0];
	alone[1] = m[i];
	if ((rc = count(db, i ? alone : m, i ? 2 : 1, side->from_ns, side->to_ns, side->deadline_ns,
	                &n, err)))
		return rc;
	f->alone = n > 0;
	/* the others: every matcher but i */
	st_matcher *others = malloc(nm * sizeof(*others));
	size_t no = 0;
	if (!others)
		return -ENOMEM;
	for (size_t k = 0; k < nm; k++)
		if (k != i)
			others[no++] = m[k];
	q_side rest = *side, every = *side;
	rest.m = others;
	rest.nm = no;
	every.m = NULL;
	every.nm = 0;
	rc = q__label_values(db, &rest, m[i].name, &f->vals, &f->nvals, err);
	free(others);
	if (!rc && (f->nvals == 0 || (f->nvals == 1 && !f->vals[0][0]))) {
		vals_free(f->vals, f->nvals);
		rc = q__label_values(db, &every, m[i].name, &f->vals, &f->nvals, err);
	}
	if (rc)
		return rc;
	f->label_exists = f->nvals > 1 || (f->nvals == 1 && f->vals[0][0]);
	if (!f->label_exists && i) {
		/* no series has the label at all: its name is the typo */
		vals_free(f->vals, f->nvals);
		if ((rc = q__label_values(db, &every, NULL, &f->vals, &f->nvals, err)))
			return rc;
		return pick_closest(f, m[i].name);
	}
	return pick_closest(f, m[i].value);
}

static const char *op_str(st_match_op op)
{
	return op == ST_MATCH_EQ ? "=" : op == ST_MATCH_NE ? "!=" : op == ST_MATCH_RE ? "=~" : "!~";
}

static int put(q_buf *b, const char *s)
{
	return q_buf_put(b, s, strlen(s));
}

/* A name for the sentence: at most SHOW_MAX bytes, then "...". */
static int put_short(q_buf *b, const char *s)
{
	size_t n = strlen(s);
	if (n <= SHOW_MAX)
		return q_buf_put(b, s, n);
	int rc = q_buf_put(b, s, SHOW_MAX);
	return rc ? rc : put(b, "...");
}

static int put_list(q_buf *b, const char *const *v, size_t n)
{
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		if (i)
			rc = put(b, ", ");
		rc = rc ? rc : put_short(b, v[i]);
	}
	return rc;
}

static int put_time(q_buf *b, int64_t ns)
{
	time_t s = (time_t)(ns / 1000000000LL);
	struct tm tm;
	char tmp[40];
	if (!gmtime_r(&s, &tm) || !strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return q_buf_printf(b, "%" PRId64, ns);
	return q_buf_put(b, tmp, strlen(tmp));
}

/* The sentence for a finding that explains the emptiness. */
static int say(q_buf *msg, const finding *f, bool is_type)
{
	const st_matcher *m = f->m;
	int rc;
	if (is_type) {
		rc = put(msg, "; no series of type ");
		rc = rc ? rc : put_short(msg, m->value);
		if (!rc && f->dym) {
			rc = put(msg, "; did you mean ");
			rc = rc ? rc : put_short(msg, f->dym);
			rc = rc ? rc : put(msg, "?");
		}
		if (!rc && f->nclosest) {
			rc = put(msg, " (types with data: ");
			rc = rc ? rc : put_list(msg, f->closest, f->nclosest);
			rc = rc ? rc : put(msg, ")");
		}
		return rc;
	}
	rc = put(msg, "; ");
	rc = rc ? rc : put_short(msg, m->name);
	rc = rc ? rc : q_buf_printf(msg, "%s\"", op_str(m->op));
	rc = rc ? rc : put_short(msg, m->value);
	if (!f->label_exists) {
		rc = rc ? rc : put(msg, "\": no series has a label ");
		rc = rc ? rc : put_short(msg, m->name);
		if (!rc && f->dym) {
			rc = put(msg, "; did you mean ");
			rc = rc ? rc : put_short(msg, f->dym);
			rc = rc ? rc : put(msg, "?");
		}
		if (!rc && f->nclosest) {
			rc = put(msg, " (closest label names: ");
			rc = rc ? rc : put_list(msg, f->closest, f->nclosest);
			rc = rc ? rc : put(msg, ")");
		}
		return rc;
	}
	rc = rc ? rc : put(msg, f->alone ? "\"" : "\" matches no series");
	if (!rc && f->dym && m->op == ST_MATCH_EQ) {
		rc = put(msg, "; did you mean ");
		rc = rc ? rc : put_short(msg, m->name);
		rc = rc ? rc : put(msg, "=\"");
		rc = rc ? rc : put_short(msg, f->dym);
		rc = rc ? rc : put(msg, "\"?");
	}
	if (!rc && f->nclosest) {
		rc = q_buf_printf(msg, " (%s ", f->alone ? "with the other matchers," : "closest");
		rc = rc ? rc : put_short(msg, m->name);
		rc = rc ? rc : put(msg, f->alone ? " is one of: " : " values: ");
		rc = rc ? rc : put_list(msg, f->closest, f->nclosest);
		rc = rc ? rc : put(msg, ")");
	}
	return rc;
}

static int json_finding(q_buf *j, const finding *f)
{
	int rc = put(j, "{\"label\":");
	rc = rc ? rc : q_buf_json_str(j, f->m->name);
	rc = rc ? rc : q_buf_printf(j, ",\"op\":\"%s\",\"value\":", op_str(f->m->op));
	rc = rc ? rc : q_buf_json_str(j, f->m->value);
	rc = rc ? rc : q_buf_printf(j, ",\"matches_alone\":%s,\"label_exists\":%s,\"closest\":[",
	                            f->alone ? "true" : "false",
	                            f->label_exists ? "true" : "false");
	for (size_t i = 0; i < f->nclosest && !rc; i++) {
		if (i)
			rc = put(j, ",");
		rc = rc ? rc : q_buf_json_str(j, f->closest[i]);
	}
	rc = rc ? rc : put(j, "],\"did_you_mean\":");
	if (!rc)
		rc = f->dym ? q_buf_json_str(j, f->dym) : put(j, "null");
	return rc ? rc : put(j, "}");
}

int q_no_match(st_db *db, const q_side *side, const char *selector, q_buf *json, q_buf *msg,
               st_err *err)
{
	size_t n = 0, nm = side->nm;
	finding *f = NULL;
	int rc = count(db, side->m, nm, side->from_ns, side->to_ns, side->deadline_ns, &n, err);
	if (rc || n)
		return rc;
	/* outside the range; and is there anything at all in it? */
	size_t outside = 0, any = 0;
	if ((rc = count(db, side->m, nm, 0, ST_MAX_TS_NS, side->deadline_ns, &outside, err)) ||
	    (rc = count(db, NULL, 0, side->from_ns, side->to_ns, side->deadline_ns, &any, err)))
		return rc;
	f = calloc(nm, sizeof(*f));
	if (!f)
		return -ENOMEM;
	/* a matcher to blame: one that matches nothing on its own */
	size_t nblamed = 0;
	for (size_t i = 0; any && !outside && i < nm && !rc; i++) {
		rc = look(db, side, i, &f[i], err);
		nblamed += !rc && !f[i].alone;
	}
	if (rc)
		goto out;

	rc = put(msg, "no series match ");
	rc = rc ? rc : put_short(msg, selector);
	if (!any || outside) {
		rc = rc ? rc : put(msg, any ? " from " : ": nothing at all was stored from ");
		rc = rc ? rc : put_time(msg, side->from_ns);
		rc = rc ? rc : put(msg, " to ");
		rc = rc ? rc : put_time(msg, side->to_ns - 1);
		if (outside)
			rc = rc ? rc : put(msg, any ? ", but some do outside that range: widen it" :
			                   ", but the selector matches data outside that range: widen it");
		else
			rc = rc ? rc : put(msg, " (is an agent pushing to this server? it sends "
			                   "every 10 s)");
	} else {
		for (size_t i = 0; i < nm && !rc; i++)
			if (!f[i].alone)
				rc = say(msg, &f[i], i == 0);
		if (!rc && !nblamed) {
			rc = put(msg, "; each matcher matches series, but no series matches "
			         "them all");
			for (size_t i = 1; i < nm && !rc; i++)
				if (f[i].m->op == ST_MATCH_EQ)
					rc = say(msg, &f[i], false);
		}
	}

	rc = rc ? rc : put(json, "{\"selector\":");
	rc = rc ? rc : q_buf_json_str(json, selector);
	rc = rc ? rc : q_buf_printf(json, ",\"from\":%" PRId64 ",\"to\":%" PRId64
	                            ",\"empty_range\":%s,\"outside_range\":%s,\"matchers\":[",
	                            side->from_ns, side->to_ns - 1, any ? "false" : "true",
	                            outside ? "true" : "false");
	for (size_t i = 0, w = 0; i < nm && !rc && any && !outside; i++) {
		if (w++)
			rc = put(json, ",");
		rc = rc ? rc : json_finding(json, &f[i]);
	}
	rc = rc ? rc : put(json, "]}");
	rc = rc ? rc : 1;
out:
	for (size_t i = 0; i < nm; i++)
		vals_free(f[i].vals, f[i].nvals);
	free(f);
	return rc;
}
