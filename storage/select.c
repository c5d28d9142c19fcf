/* select.c - selections: the series whose labels pass every matcher and
 * that have rows in a time range, with regexes under a budget so that
 * one costly pattern cannot hold a query for minutes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <xxhash.h>

#include "base/buf.h"
#include "base/clock.h"
#include "storage/db_int.h"

/* ---- selection (the struct is backend.h's) ---- */

/* chunks a read over s left out as damaged (st_selection_damaged) */
void st__sel_note_damaged(const st_selection *s)
{
	atomic_fetch_add(&((st_selection *)s)->damaged, 1);
}

/* What one regex evaluation may spend. PCRE2's defaults (ten million
 * match steps, 20 MB of backtracking heap) let a single value take about
 * 150 ms, and a selector evaluates a regex once per label value and per
 * series: one query took 14 s. With these a value costs at most a
 * millisecond or two; a regex that needs more on real label values is
 * refused, naming it, rather than evaluated for minutes. */
#define RE_MATCH_LIMIT 100000
#define RE_HEAP_LIMIT_KIB 4096

struct st__match {
	const st_matcher *m;
	pcre2_code *re;
	pcre2_match_data *md;
	pcre2_match_context *mc;
	/* results by value for the per-series pass: series share few values,
	 * and each distinct one is matched once. Key: XXH3 of the value;
	 * val: index into memo_v << 1 | result. */
	base_map memo;
	const char **memo_v;
	size_t memo_n, memo_cap;
	bool used;              /* candidates() took its = list */
};
typedef st__match cmatch;

/* 1 when v passes c, 0 when not, or -EINVAL with err when the regex ran
 * out of its budget on v (PCRE2 said neither match nor no match: taking
 * that for "no match" answered wrong, and for "match" under !~). */
static int cm_test(const cmatch *c, const char *v, base_err *err)
{
	switch (c->m->op) {
	case ST_MATCH_EQ: return !strcmp(v, c->m->value);
	case ST_MATCH_NE: return strcmp(v, c->m->value) != 0;
	default: {
		int r = pcre2_match(c->re, (PCRE2_SPTR)v, PCRE2_ZERO_TERMINATED, 0, 0, c->md, c->mc);
		if (r >= 0 || r == PCRE2_ERROR_NOMATCH)
			return (r >= 0) == (c->m->op == ST_MATCH_RE);
		PCRE2_UCHAR msg[128];
		pcre2_get_error_message(r, msg, sizeof(msg));
		return base_fail(err, -EINVAL, "the regex \"%.80s\" for label \"%s\" is too "
		                "costly: on the value \"%.40s%s\" PCRE2 stopped with \"%s\"; "
		                "simplify it (nested repetition such as (a+)+ backtracks "
		                "exponentially)", c->m->value, c->m->name, v,
		                strlen(v) > 40 ? "..." : "", (const char *)msg);
	}
	}
}

int st__match_nth(const st__match *cm, size_t i, const char *v, base_err *err)
{
	return cm_test(&cm[i], v, err);
}

/* cm_test through the matcher's memo: equal values are matched once.
 * Caller holds rw, which keeps the remembered strings alive. */
static int cm_test_memo(cmatch *c, const char *v, base_err *err)
{
	if (c->m->op == ST_MATCH_EQ || c->m->op == ST_MATCH_NE)
		return cm_test(c, v, err);
	uint64_t h = XXH3_64bits(v, strlen(v));
	uint32_t e = c->memo.cap ? base_map_get(&c->memo, h) : BASE_MAP_NONE;
	if (e != BASE_MAP_NONE && !strcmp(c->memo_v[e >> 1], v))
		return (int)(e & 1);
	int r = cm_test(c, v, err);
	/* a hash collision with another value is only not remembered */
	if (r < 0 || e != BASE_MAP_NONE || c->memo_n >= (BASE_MAP_NONE >> 1))
		return r;
	if ((c->memo.cap || !base_map_init(&c->memo, 64)) &&
	    !base_grow(&c->memo_v, &c->memo_cap, c->memo_n + 1, sizeof(*c->memo_v)) &&
	    !base_map_put(&c->memo, h, (uint32_t)(c->memo_n << 1 | (size_t)r)))
		c->memo_v[c->memo_n++] = v;
	return r;
}

const char *st__label_of(const sreg *s, const char *name)
{
	for (uint32_t i = 0; i < s->nlabels; i++)
		if (!strcmp(s->labels[i].name, name))
			return s->labels[i].value;
	return "";
}

/* Candidates from the postings: registry indices, ascending. */
typedef struct cands {
	uint32_t *v;
	size_t n, cap;
} cands;

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Keeps in a the indices that are also in b[0..nb) (both ascending). */
static void intersect(cands *a, const uint32_t *b, size_t nb)
{
	size_t i = 0, j = 0, w = 0;
	while (i < a->n && j < nb) {
		if (a->v[i] < b[j]) {
			i++;
		} else if (a->v[i] > b[j]) {
			j++;
		} else {
			a->v[w++] = a->v[i++];
			j++;
		}
	}
	a->n = w;
}

/* Narrows c (*have: it holds candidates; else it is every series) by the
 * postings of the = matchers marked in by_post, shortest list first.
 * Caller holds rw. */
static int eq_candidates(st_db *db, cmatch *cm, size_t nm, const bool *by_post, cands *c,
                         bool *have)
{
	for (;;) {
		const st__plist *best = NULL;
		size_t bi = 0;
		bool any = false;
		for (size_t i = 0; i < nm; i++) {
			if (!by_post[i] || cm[i].m->op != ST_MATCH_EQ || cm[i].used)
				continue;
			const st__plist *pl = st__post_list(&db->post, cm[i].m->name, cm[i].m->value);
			if (!any || !pl || (best && pl->n < best->n)) {
				best = pl;
				bi = i;
			}
			any = true;
			if (!pl)
				break;
		}
		if (!any)
			return 0;
		cm[bi].used = true;
		if (!best) {            /* no series has that label value */
			c->n = 0;
			*have = true;
			return 0;
		}
		if (!*have) {
			if (base_grow(&c->v, &c->cap, best->n, sizeof(*c->v)))
				return -ENOMEM;
			if (best->n)
				memcpy(c->v, best->ids, best->n * sizeof(*c->v));
			c->n = best->n;
			*have = true;
		} else {
			intersect(c, best->ids, best->n);
		}
	}
}

/* The values of an =~ matcher's label, taken under rw and matched
 * without it (a costly regex must not hold off ingest, which waits for
 * rw to add series); then the lists of those that passed. The strings
 * are the registry's, which lives until st_close. */
typedef struct revals {
	const char **v;
	uint32_t *list;             /* v[i]'s list */
	size_t n;
} revals;

/* Takes the values of cm's label into rv, or says the label is on no
 * series (*none). An =~ whose label has more values than c has
 * candidates is left to the per-series test (by_post cleared): matching
 * each candidate's value costs less than matching every value. Caller
 * holds rw. */
static int re_values(st_db *db, const cmatch *cm, const cands *c, bool have, bool *by_post,
                     revals *rv, bool *none)
{
	const st__pname *pn = st__post_name(&db->post, cm->m->name);
	if (!pn) {
		*none = true;
		return 0;
	}
	if (have && c->n < pn->n) {
		*by_post = false;
		return 0;
	}
	rv->v = malloc((pn->n + 1) * sizeof(*rv->v));
	rv->list = malloc((pn->n + 1) * sizeof(*rv->list));
	if (!rv->v || !rv->list)
		return -ENOMEM;
	for (size_t i = 0; i < pn->n; i++) {
		rv->v[i] = db->post.lists[pn->lists[i]].value;
		rv->list[i] = pn->lists[i];
	}
	rv->n = pn->n;
	return 0;
}

/* Keeps in rv the values that pass cm, each matched once. No lock. */
static int re_match(cmatch *cm, revals *rv, int64_t deadline_ns, base_err *err)
{
	size_t w = 0;
	for (size_t i = 0; i < rv->n; i++) {
		int r = (i & 63) ? 0 : st__past(deadline_ns);
		if (!r)
			r = cm_test(cm, rv->v[i], err);
		if (r < 0)
			return r;
		if (r)
			rv->list[w++] = rv->list[i];
	}
	rv->n = w;
	return 0;
}

/* Narrows c by the union of the lists of the values in rv (disjoint: a
 * series has one value per name). Caller holds rw. */
static int re_candidates(st_db *db, const revals *rv, cands *c, bool *have)
{
	cands u = {0};
	for (size_t i = 0; i < rv->n; i++) {
		const st__plist *pl = &db->post.lists[rv->list[i]];
		if (!pl->n)
			continue;
		if (base_grow(&u.v, &u.cap, u.n + pl->n, sizeof(*u.v))) {
			free(u.v);
			return -ENOMEM;
		}
		memcpy(u.v + u.n, pl->ids, pl->n * sizeof(*u.v));
		u.n += pl->n;
	}
	if (u.n > 1)
		qsort(u.v, u.n, sizeof(*u.v), cmp_u32);
	if (*have) {
		intersect(c, u.v, u.n);
		free(u.v);
	} else {
		free(c->v);
		*c = u;
		*have = true;
	}
	return 0;
}

void st__match_free(st__match *cm, size_t nm)
{
	for (size_t i = 0; cm && i < nm; i++) {
		pcre2_match_data_free(cm[i].md);
		pcre2_match_context_free(cm[i].mc);
		pcre2_code_free(cm[i].re);
		base_map_free(&cm[i].memo);
		free(cm[i].memo_v);
	}
	free(cm);
}

int st__match_compile(const st_matcher *m, size_t nm, st__match **out, base_err *err)
{
	int rc = 0;
	cmatch *cm = calloc(nm + 1, sizeof(*cm));
	if (!cm)
		return -ENOMEM;
	for (size_t i = 0; i < nm; i++) {
		cm[i].m = &m[i];
		if (!m[i].name || !m[i].value || m[i].op > ST_MATCH_NRE) {
			rc = base_fail(err, -EINVAL, "matcher %zu is incomplete", i);
			goto out;
		}
		if (strlen(m[i].value) > ST_MAX_LABEL_VALUE_LEN) {
			rc = base_fail(err, -EINVAL, "matcher value for \"%s\" is longer than %d "
			              "bytes", m[i].name, ST_MAX_LABEL_VALUE_LEN);
			goto out;
		}
		if (m[i].op == ST_MATCH_RE || m[i].op == ST_MATCH_NRE) {
			int ec;
			PCRE2_SIZE eo;
			/* fully anchored as in Prometheus: "a.*" must match all of v */
			cm[i].re = pcre2_compile((PCRE2_SPTR)m[i].value, PCRE2_ZERO_TERMINATED,
			                         PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF,
			                         &ec, &eo, NULL);
			if (!cm[i].re) {
				PCRE2_UCHAR msg[128];
				pcre2_get_error_message(ec, msg, sizeof(msg));
				rc = base_fail(err, -EINVAL, "bad regex for \"%s\" at offset %zu: %s",
				              m[i].name, (size_t)eo, (const char *)msg);
				goto out;
			}
			cm[i].md = pcre2_match_data_create_from_pattern(cm[i].re, NULL);
			cm[i].mc = pcre2_match_context_create(NULL);
			if (!cm[i].md || !cm[i].mc) {
				rc = -ENOMEM;
				goto out;
			}
			pcre2_set_match_limit(cm[i].mc, RE_MATCH_LIMIT);
			pcre2_set_heap_limit(cm[i].mc, RE_HEAP_LIMIT_KIB);
		}
	}
out:
	if (rc) {
		st__match_free(cm, nm);
		cm = NULL;
	}
	*out = cm;
	return rc;
}

int st__emb_select(st_db *db, const st_matcher *m, size_t nm, int64_t from, int64_t to,
                   int64_t deadline_ns, st_selection **out, base_err *err)
{
	int rc = 0;
	cmatch *cm = NULL;
	st_selection *sel = calloc(1, sizeof(*sel));
	cands c = {0};
	revals *rv = NULL;
	bool have_cand = false, *by_post = NULL;
	if (!sel) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = st__match_compile(m, nm, &cm, err)))
		goto out;
	/* which matchers the postings answer: = and =~ that cannot match a
	 * missing label (""); the rest (!=, !~, and those that pass "") are
	 * tested per candidate series */
	by_post = calloc(nm + 1, sizeof(*by_post));
	if (!by_post) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nm; i++) {
		int empty = cm_test(&cm[i], "", err);
		if (empty < 0) {
			rc = empty;
			goto out;
		}
		by_post[i] = !empty && (m[i].op == ST_MATCH_EQ || m[i].op == ST_MATCH_RE);
	}
	/* the = lists, and the values of the =~ labels, under the lock */
	rv = calloc(nm + 1, sizeof(*rv));
	if (!rv) {
		rc = -ENOMEM;
		goto out;
	}
	bool none = false;
	pthread_rwlock_rdlock(&db->rw);
	rc = eq_candidates(db, cm, nm, by_post, &c, &have_cand);
	for (size_t i = 0; i < nm && !rc && !none && !(have_cand && !c.n); i++)
		if (by_post[i] && m[i].op == ST_MATCH_RE)
			rc = re_values(db, &cm[i], &c, have_cand, &by_post[i], &rv[i], &none);
	pthread_rwlock_unlock(&db->rw);
	if (none) {
		c.n = 0;
		have_cand = true;
	}
	/* the regexes without it */
	for (size_t i = 0; i < nm && !rc && !(have_cand && !c.n); i++)
		if (rv[i].v)
			rc = re_match(&cm[i], &rv[i], deadline_ns, err);
	if (rc)
		goto out;
	pthread_rwlock_rdlock(&db->rw);
	for (size_t i = 0; i < nm && !rc && !(have_cand && !c.n); i++)
		if (rv[i].v)
			rc = re_candidates(db, &rv[i], &c, &have_cand);
	size_t cap = have_cand ? c.n : db->nseries;
	sel->ids = rc ? NULL : malloc((cap + 1) * sizeof(*sel->ids));
	sel->gbits_n = db->nseries;
	sel->gbits = rc ? NULL : calloc(db->nseries / 8 + 1, 1);
	sel->deadline_ns = deadline_ns;
	if (!rc && (!sel->ids || !sel->gbits))
		rc = -ENOMEM;
	size_t ncand = have_cand ? c.n : db->nseries;
	for (size_t k = 0; k < ncand && !rc; k++) {
		uint32_t x = have_cand ? c.v[k] : (uint32_t)k;
		const sreg *s = &db->series[x];
		if (s->maxt < from || s->mint >= to)
			continue;
		if (!(k & 255) && (rc = st__past(deadline_ns)))
			break;
		int ok = 1;
		for (size_t i = 0; i < nm && ok > 0; i++)
			if (!by_post[i])
				ok = cm_test_memo(&cm[i], st__label_of(s, m[i].name), err);
		if (ok < 0)
			rc = ok;
		if (ok <= 0)
			continue;
		sel->ids[sel->n++] = s->id;
		sel->gbits[x / 8] |= (uint8_t)(1u << (x % 8));
	}
	pthread_rwlock_unlock(&db->rw);
	if (rc)
		goto out;
	/* sorted and indexed as the other backend's selections are; the
	 * registry bits and the deadline stay on it */
	uint64_t *ids = sel->ids;
	sel->ids = NULL;
	if ((rc = st__selection_index(sel, ids, sel->n)))
		goto out;
	*out = sel;
	sel = NULL;
out:
	st__match_free(cm, nm);
	free(by_post);
	for (size_t i = 0; rv && i < nm; i++) {
		free(rv[i].v);
		free(rv[i].list);
	}
	free(rv);
	free(c.v);
	st_selection_free(sel);
	return rc;
}

int st__emb_series_labels(st_db *db, uint64_t id, st_label **out, size_t *n)
{
	int rc = 0;
	pthread_rwlock_rdlock(&db->rw);
	uint32_t x = base_map_get(&db->series_map, id);
	if (x == BASE_MAP_NONE) {
		rc = -ENOENT;
		goto out;
	}
	const sreg *s = &db->series[x];
	size_t bytes = s->nlabels * sizeof(st_label);
	for (uint32_t i = 0; i < s->nlabels; i++)
		bytes += strlen(s->labels[i].name) + strlen(s->labels[i].value) + 2;
	st_label *l = malloc(bytes);
	if (!l) {
		rc = -ENOMEM;
		goto out;
	}
	char *sp = (char *)(l + s->nlabels);
	for (uint32_t i = 0; i < s->nlabels; i++) {
		l[i].name = strcpy(sp, s->labels[i].name);
		sp += strlen(sp) + 1;
		l[i].value = strcpy(sp, s->labels[i].value);
		sp += strlen(sp) + 1;
	}
	*out = l;
	*n = s->nlabels;
out:
	pthread_rwlock_unlock(&db->rw);
	return rc;
}

