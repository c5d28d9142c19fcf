/* engine.c - builds call trees from the store: select series, sum per stack
 * in storage (no rows materialized, roll-ups where they hold the range),
 * turn each stack into a path of function IDs through a bounded cache
 * (stack -> location -> function), and sort the paths so that a node of
 * the tree is a run of paths sharing a prefix. Renders trees as JSON,
 * folded stacks and top tables straight from the sorted paths. Knows
 * nothing of HTTP. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "query/q_int.h"
#include "query/query.h"

#define NONE Q__NONE
#define MAX_INLINE 32   /* frames one location may expand to */

/* ---- small helpers shared with series.c (q_int.h) ---- */

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ULL;
	x ^= x >> 27;
	x *= 0x81dadef4bc2dd44dULL;
	return x ^ (x >> 33);
}

uint32_t q__map_get(const q__map *m, uint64_t key)
{
	if (!m->cap)
		return NONE;
	for (size_t i = mix(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
		if (!m->s[i].used)
			return NONE;
		if (m->s[i].key == key)
			return m->s[i].val;
	}
}

void q__map_prefetch(const q__map *m, uint64_t key)
{
	if (m->cap)
		__builtin_prefetch(&m->s[mix(key) & (m->cap - 1)]);
}

int q__map_put(q__map *m, uint64_t key, uint32_t val)
{
	if ((m->len + 1) * 4 > m->cap * 3) {
		size_t cap = m->cap ? m->cap * 2 : 1024;
		q__map_slot *s = calloc(cap, sizeof(*s));
		if (!s)
			return -ENOMEM;
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->s[i].used)
				continue;
			size_t j = mix(m->s[i].key) & (cap - 1);
			while (s[j].used)
				j = (j + 1) & (cap - 1);
			s[j] = m->s[i];
		}
		free(m->s);
		m->s = s;
		m->cap = cap;
	}
	size_t i = mix(key) & (m->cap - 1);
	while (m->s[i].used && m->s[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (!m->s[i].used)
		m->len++;
	m->s[i] = (q__map_slot){key, val, 1};
	return 0;
}

void q__map_free(q__map *m)
{
	free(m->s);
	m->s = NULL;
	m->cap = m->len = 0;
}

int q__grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	void **a = arr;
	if (need <= *cap)
		return 0;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	void *t = realloc(*a, c * elem);
	if (!t)
		return -ENOMEM;
	*a = t;
	*cap = c;
	return 0;
}

/* ---- output buffer ---- */

int q_buf_put(q_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > Q_MAX_OUTPUT_BYTES)
		return -ENOMEM;
	if (q__grow(&b->p, &b->cap, b->len + n + 1, 1))
		return -ENOMEM;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

int q_buf_printf(q_buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if ((size_t)n < sizeof(tmp))
		return q_buf_put(b, tmp, (size_t)n);
	if (b->len + (size_t)n + 1 > Q_MAX_OUTPUT_BYTES ||
	    q__grow(&b->p, &b->cap, b->len + (size_t)n + 1, 1))
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

int q_buf_json_str(q_buf *b, const char *s)
{
	int rc = q_buf_put(b, "\"", 1);
	const unsigned char *p = (const unsigned char *)s;
	while (!rc && *p) {
		/* copy runs that need no escaping in one go: frame names rarely
		 * need any, and trees render millions of them */
		const unsigned char *q = p;
		while (*q && *q != '"' && *q != '\\' && *q >= 0x20 && *q < 0x80)
			q++;
		if (q > p)
			rc = q_buf_put(b, (const char *)p, (size_t)(q - p));
		if (rc || !*q)
			break;
		if (*q >= 0x80) {
			/* a name from debug info or a profile may hold any bytes: a
			 * valid sequence goes out as is, anything else as U+FFFD */
			size_t n = st_utf8_len((const char *)q, strnlen((const char *)q, 4));
			rc = n ? q_buf_put(b, (const char *)q, n) : q_buf_put(b, "\\ufffd", 6);
			p = q + (n ? n : 1);
			continue;
		}
		if (*q == '"' || *q == '\\') {
			char e[2] = {'\\', (char)*q};
			rc = q_buf_put(b, e, 2);
		} else {
			rc = q_buf_printf(b, "\\u%04x", *q);
		}
		p = q + 1;
	}
	return rc ? rc : q_buf_put(b, "\"", 1);
}

void q_buf_free(q_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Sums per stack over the side's range, each part of it read from the
 * coarsest roll-up that holds it (q_side.raw: raw rows only). */
static int merge_planned(st_db *db, const st_selection *sel, const q_side *q,
                         st_stack_sum **sums, size_t *n, st_err *err)
{
	st_span *plan = NULL;
	size_t np = 0;
	int rc = q_plan(db, q->from_ns, q->to_ns, 0, q->raw, &plan, &np);
	if (!rc)
		rc = st_merge_spans(db, sel, plan, np, sums, n, err);
	free(plan);
	return rc;
}

/* ---- names ---- */

#define NAME_PAGE 4096
#define MAX_NAMES (1u << 22)

#define PATH_PAGE (1u << 16)   /* IDs per page of paths; a path fits in one */
#define MAX_PATH_PAGES 4096

struct qnames {
	atomic_int refs;
	pthread_mutex_t mu;       /* adding names */
	qname *pages[MAX_NAMES / NAME_PAGE];
	_Atomic uint32_t n;
	q__map map;               /* hash of (function, kernel) or of the exact
	                           * key -> ID, probed */
	q__map func_map;          /* hash of (function, file, language) -> the
	                           * first exact name of that function */
	size_t bytes;
	/* the cache's stack paths (count, then IDs) live here too, in pages
	 * that never move, so a tree points at them instead of copying */
	uint32_t *ppages[MAX_PATH_PAGES];
	size_t npp, pp_used;      /* pages; IDs used in the last one */
};

const qname *q__name(const qnames *ns, uint32_t id)
{
	return &ns->pages[id / NAME_PAGE][id % NAME_PAGE];
}

static void names_unref(qnames *ns)
{
	if (!ns || atomic_fetch_sub(&ns->refs, 1) != 1)
		return;
	uint32_t n = atomic_load(&ns->n);
	for (uint32_t i = 0; i < n; i++) {
		qname *q = (qname *)q__name(ns, i);
		free(q->function);
		free(q->file);
		free(q->lang);
	}
	for (size_t p = 0; p < MAX_NAMES / NAME_PAGE && ns->pages[p]; p++)
		free(ns->pages[p]);
	for (size_t p = 0; p < ns->npp; p++)
		free(ns->ppages[p]);
	q__map_free(&ns->map);
	q__map_free(&ns->func_map);
	pthread_mutex_destroy(&ns->mu);
	free(ns);
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static uint64_t str_hash(const char *s, uint64_t seed)
{
	return XXH3_64bits_withSeed(s ? s : "", s ? strlen(s) : 0, seed);
}

/* The function group of the new name id (caller holds mu): the first
 * exact name with its function, file and language; a native name is its
 * own. */
static int func_of(qnames *ns, uint32_t id)
{
	qname *q = (qname *)q__name(ns, id);
	if (!q->exact) {
		q->func = id;
		return 0;
	}
	uint64_t h = str_hash(q->function, str_hash(q->file, str_hash(q->lang, 0x66)));
	for (;; h = mix(h + 1)) {
		uint32_t f = q__map_get(&ns->func_map, h);
		if (f == NONE)
			break;
		const qname *o = q__name(ns, f);
		if (str_eq(o->function, q->function) && str_eq(o->file, q->file) &&
		    str_eq(o->lang, q->lang)) {
			q->func = f;
			return 0;
		}
	}
	q->func = id;
	return q__map_put(&ns->func_map, h, id);
}

/* The ID of (fn, file, kernel), added when new with line; with exact (a
 * frame that carries its own language, file or line), of (fn, file, line,
 * lang). */
static int intern(qnames *ns, const char *fn, const char *file, int64_t line,
                  const char *lang, bool kernel, bool exact, uint32_t *out)
{
	int rc = 0;
	if (lang && !*lang)
		lang = NULL;
	if (file && !*file && exact)
		file = NULL;
	pthread_mutex_lock(&ns->mu);
	/* the file is part of every key: the table is shared by all queries,
	 * so two programs' `main` (or two files' static helpers) are two names,
	 * each with its own file */
	uint64_t h = str_hash(file, XXH3_64bits_withSeed(fn, strlen(fn), kernel));
	if (exact)
		h = str_hash(lang, mix(h ^ (uint64_t)line ^ 0x65786163ULL));
	for (;; h = mix(h + 1)) {
		uint32_t id = q__map_get(&ns->map, h);
		if (id == NONE)
			break;
		const qname *q = q__name(ns, id);
		if (q->kernel == kernel && q->exact == exact && !strcmp(q->function, fn) &&
		    str_eq(q->file, file) &&
		    (!exact || (q->line == line && str_eq(q->lang, lang)))) {
			*out = id;
			goto out;
		}
		/* a 64-bit collision: probe on with a derived key */
	}
	uint32_t id = atomic_load(&ns->n);
	if (id >= MAX_NAMES) {
		rc = -ENOMEM;
		goto out;
	}
	if (!ns->pages[id / NAME_PAGE] &&
	    !(ns->pages[id / NAME_PAGE] = calloc(NAME_PAGE, sizeof(qname)))) {
		rc = -ENOMEM;
		goto out;
	}
	qname *q = &ns->pages[id / NAME_PAGE][id % NAME_PAGE];
	q->function = strdup(fn);
	q->file = file ? strdup(file) : NULL;
	q->lang = lang ? strdup(lang) : NULL;
	q->line = line;
	q->kernel = kernel;
	q->exact = exact;
	if (!q->function || (file && !q->file) || (lang && !q->lang) ||
	    (rc = func_of(ns, id)) || (rc = q__map_put(&ns->map, h, id))) {
		free(q->function);
		free(q->file);
		free(q->lang);
		memset(q, 0, sizeof(*q));
		rc = rc ? rc : -ENOMEM;
		goto out;
	}
	ns->bytes += sizeof(*q) + strlen(fn) + 1 + (file ? strlen(file) + 1 : 0) +
	             (lang ? strlen(lang) + 1 : 0) + 24;
	*out = id;
	/* published after the entry is written: a reader that sees the count
	 * sees the entry */
	atomic_store(&ns->n, id + 1);
out:
	pthread_mutex_unlock(&ns->mu);
	return rc;
}

/* Room for a path of n IDs and its count, in the current page or a new
 * one (caller holds the cache's lock, the only writer of paths). */
static uint32_t *path_room(qnames *ns, uint32_t n)
{
	if (!ns->npp || ns->pp_used + n + 1 > PATH_PAGE) {
		if (ns->npp == MAX_PATH_PAGES || !(ns->ppages[ns->npp] = malloc(PATH_PAGE * 4)))
			return NULL;
		ns->npp++;
		ns->pp_used = 0;
		ns->bytes += PATH_PAGE * 4;
	}
	uint32_t *p = ns->ppages[ns->npp - 1] + ns->pp_used;
	ns->pp_used += n + 1;
	return p;
}

static qnames *names_new(void)
{
	qnames *ns = calloc(1, sizeof(*ns));
	uint32_t root;
	if (!ns)
		return NULL;
	atomic_init(&ns->refs, 1);
	pthread_mutex_init(&ns->mu, NULL);
	if (intern(ns, "total", NULL, 0, NULL, false, false, &root)) {   /* ID 0: the root */
		names_unref(ns);
		return NULL;
	}
	return ns;
}

/* ---- the cache: stack -> location -> function, by integer IDs ---- */

struct q_cache {
	pthread_mutex_t mu;
	size_t max_bytes;         /* 0: no bound */
	uint64_t epoch;           /* +1 at every reset */
	uint64_t gen;             /* the resolver's generation it was filled under */
	bool have_gen;
	qnames *names;
	q__map loc;               /* location ID -> offset in chain */
	q__map trunc_loc;         /* location IDs of the ST_TRUNCATED_FRAME marker */
	uint32_t *chain;          /* per location: count, then name IDs, outermost first */
	size_t nchain, chain_cap;
	/* stacks: entries with a path each, and every entry's place in the
	 * order of their paths, so a query sorts its stacks by an integer */
	q__map stk;               /* stack ID -> entry */
	const uint32_t **ent;     /* entry -> its path (count, then name IDs, root
	                           * first) in the names' path pages */
	struct ent_meta {
		uint32_t len;         /* its path's length */
		uint32_t rank;        /* its position in order */
	} *meta;                  /* entry -> ..., apart from the path so that
	                           * a query's copy touches no path */
	uint32_t *order;          /* entries, by path */
	uint8_t *etrunc;          /* entry -> whether its stack was cut short */
	size_t nent, ent_cap, rank_cap, order_cap, etrunc_cap;
	_Atomic uint64_t hits, misses, resets;
};

q_cache *q_cache_new(size_t max_bytes)
{
	q_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->mu, NULL);
	c->max_bytes = max_bytes;
	if (!(c->names = names_new())) {
		free(c);
		return NULL;
	}
	return c;
}

void q_cache_free(q_cache *c)
{
	if (!c)
		return;
	names_unref(c->names);
	q__map_free(&c->loc);
	q__map_free(&c->trunc_loc);
	q__map_free(&c->stk);
	free(c->chain);
	free(c->ent);
	free(c->meta);
	free(c->order);
	free(c->etrunc);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static size_t cache_bytes(const q_cache *c)
{
	return c->names->bytes + c->nchain * 4 + (c->loc.cap + c->trunc_loc.cap + c->stk.cap) * 16 +
	       c->nent * 17;
}

void q_cache_stats(q_cache *c, uint64_t *hits, uint64_t *misses, uint64_t *resets, size_t *bytes)
{
	pthread_mutex_lock(&c->mu);
	*hits = atomic_load(&c->hits);
	*misses = atomic_load(&c->misses);
	*resets = atomic_load(&c->resets);
	*bytes = cache_bytes(c);
	pthread_mutex_unlock(&c->mu);
}

/* Forgets everything (caller holds mu): names start over in a new table,
 * which trees built before keep their reference to. */
static int cache_reset(q_cache *c)
{
	qnames *ns = names_new();
	if (!ns)
		return -ENOMEM;
	names_unref(c->names);
	c->names = ns;
	q__map_free(&c->loc);
	q__map_free(&c->trunc_loc);
	q__map_free(&c->stk);
	c->nchain = c->nent = 0;
	c->epoch++;
	atomic_fetch_add(&c->resets, 1);
	return 0;
}

/* Paths compared by their bytes: any order that puts equal prefixes
 * together will do, and this one is a memcmp. */
static int cmp_ids(const uint32_t *a, uint32_t na, const uint32_t *b, uint32_t nb)
{
	uint32_t n = na < nb ? na : nb;
	int c = memcmp(a, b, n * sizeof(*a));
	if (c)
		return c;
	return (na > nb) - (na < nb);
}

static int cmp_entry(const void *x, const void *y, void *arg)
{
	const q_cache *c = arg;
	const uint32_t *a = c->ent[*(const uint32_t *)x], *b = c->ent[*(const uint32_t *)y];
	return cmp_ids(a + 1, a[0], b + 1, b[0]);
}

/* Puts the entries fresh[0..m) (the last m) into the order and numbers
 * every entry by its place: one merge, done only when stacks are new. */
static int order_insert(q_cache *c, uint32_t *fresh, size_t m)
{
	size_t old = c->nent - m;
	uint32_t *merged = malloc((c->nent + 1) * sizeof(*merged));
	if (!merged || q__grow(&c->meta, &c->rank_cap, c->nent, sizeof(*c->meta))) {
		free(merged);
		return -ENOMEM;
	}
	qsort_r(fresh, m, sizeof(*fresh), cmp_entry, c);
	size_t i = 0, j = 0, w = 0;
	while (i < old || j < m)
		if (j == m || (i < old && cmp_entry(&c->order[i], &fresh[j], c) <= 0))
			merged[w++] = c->order[i++];
		else
			merged[w++] = fresh[j++];
	free(c->order);
	c->order = merged;
	c->order_cap = c->nent + 1;
	for (size_t k = 0; k < w; k++)
		c->meta[merged[k]] = (struct ent_meta){c->ent[merged[k]][0], (uint32_t)k};
	return 0;
}

/* ---- building a tree ---- */

/* A query's view of the cache while it names its stacks. */
typedef struct namer {
	q_cache *c;
	const q_resolver *r;
	uint64_t epoch;
	int64_t deadline_ns;      /* st_mono_ns() to stop naming at; 0: none */
} namer;

#define RETRY 1   /* the cache was reset under a query: start it again */

/* A location's names as the resolver gives them, outermost first, held
 * until they are interned; or the one exact name of a frame the host named
 * with its language, file or line. */
typedef struct lname {
	int64_t id;
	uint32_t n;
	q_sym sym[MAX_INLINE];
	char *lang;
	bool kernel;
	bool exact;
	bool marker;            /* the ST_TRUNCATED_FRAME marker: no frame */
} lname;

static void lname_free(lname *l, size_t n)
{
	for (size_t i = 0; l && i < n; i++) {
		for (uint32_t k = 0; k < l[i].n; k++) {
			free((char *)l[i].sym[k].function);
			free((char *)l[i].sym[k].file);
		}
		free(l[i].lang);
	}
	free(l);
}

/* Asks the resolver for a location (without any lock: it may read debug
 * info for seconds); nothing known gives q_unknown_name ("[unknown]
 * FILE+0xOFF"), so the frame is still findable. The marker a walk cut
 * short ends its stack with is no frame: it is only noted. */
static int resolve_one(const q_resolver *r, const st_frame_info *fi, lname *out)
{
	q_sym sym[MAX_INLINE];
	char name[ST_MAX_SYMBOL_LEN + Q_UNKNOWN_NAME_MAX];
	out->id = fi->location_id;
	if (fi->kind == ST_FRAME_NAMED && fi->name && !strcmp(fi->name, ST_TRUNCATED_FRAME) &&
	    !fi->file && !fi->line && !fi->lang) {
		out->marker = true;
		return 0;
	}
	int n = r && r->resolve ? r->resolve(r->arg, fi, sym, MAX_INLINE) : 0;
	if (n < 0)
		return n;
	if (n > MAX_INLINE)
		n = MAX_INLINE;
	out->kernel = fi->kind == ST_FRAME_KERNEL;
	out->n = 0;
	if (n == 0 && fi->kind == ST_FRAME_NAMED && (fi->file || fi->line || fi->lang)) {
		/* named on the host with where it is (interpreted code) */
		char *fn = strdup(fi->name), *file = fi->file ? strdup(fi->file) : NULL;
		out->sym[out->n++] = (q_sym){fn, file, fi->line};
		out->lang = fi->lang ? strdup(fi->lang) : NULL;
		out->exact = true;
		return !fn || (fi->file && !file) || (fi->lang && !out->lang) ? -ENOMEM : 0;
	}
	if (n == 0) {
		if (fi->kind != ST_FRAME_USER)
			snprintf(name, sizeof(name), "%s", fi->name);
		else
			q_unknown_name(name, sizeof(name), fi->object_name, fi->offset);
		sym[0] = (q_sym){name, NULL, 0};
		n = 1;
	}
	/* innermost first from the resolver; the tree wants outermost */
	for (int i = 0; i < n; i++) {
		const q_sym *q = &sym[n - 1 - i];
		char *fn = strdup(q->function ? q->function : "?");
		char *file = q->file ? strdup(q->file) : NULL;
		out->sym[out->n++] = (q_sym){fn, file, q->line};
		if (!fn || (q->file && !file))
			return -ENOMEM;
	}
	return 0;
}

/* The stacks the cache lacks (ids[0..n)): their locations from storage,
 * the locations the cache lacks named, then, with mu taken again (and
 * held on return when 0 is returned), the names interned and each stack's
 * path added to the cache and its order. */
static int name_missing(namer *nm, st_db *db, const uint64_t *ids, size_t nmiss)
{
	q_cache *c = nm->c;
	int64_t *pool = NULL, *need = NULL;
	uint32_t *offs = NULL, *fresh = NULL, path[ST_MAX_FRAMES * MAX_INLINE];
	st_frame_info *infos = NULL;
	lname *ln = NULL;
	q__map asked = {0};
	size_t nneed = 0, need_cap = 0, nfresh = 0;
	int rc = st_stacks_locations(db, ids, nmiss, &pool, &offs);
	if (rc)
		goto out;
	pthread_mutex_lock(&c->mu);
	for (uint32_t i = 0; i < offs[nmiss] && !rc; i++) {
		uint64_t loc = (uint64_t)pool[i];
		if (q__map_get(&c->loc, loc) != NONE || q__map_get(&c->trunc_loc, loc) != NONE ||
		    q__map_get(&asked, loc) != NONE)
			continue;
		rc = q__grow(&need, &need_cap, nneed + 1, sizeof(*need));
		rc = rc ? rc : q__map_put(&asked, loc, (uint32_t)nneed);
		if (!rc)
			need[nneed++] = pool[i];
	}
	pthread_mutex_unlock(&c->mu);
	if (rc)
		goto out;
	if (nneed) {
		ln = calloc(nneed, sizeof(*ln));
		rc = ln ? st_locations(db, need, nneed, &infos) : -ENOMEM;
		/* naming may read debug info for the first time: seconds for a
		 * big file, so the deadline is looked at on the way */
		for (size_t i = 0; i < nneed && !rc; i++) {
			if (nm->deadline_ns && !(i & 63) && st_mono_ns() >= nm->deadline_ns)
				rc = -ETIMEDOUT;
			else
				rc = resolve_one(nm->r, &infos[i], &ln[i]);
		}
		if (rc)
			goto out;
	}
	fresh = malloc((nmiss + 1) * sizeof(*fresh));
	if (!fresh) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_lock(&c->mu);
	if (c->epoch != nm->epoch) {
		rc = RETRY;
		goto unlock;
	}
	for (size_t i = 0; i < nneed && !rc; i++) {
		uint32_t chain[MAX_INLINE];
		if (q__map_get(&c->loc, (uint64_t)ln[i].id) != NONE ||
		    q__map_get(&c->trunc_loc, (uint64_t)ln[i].id) != NONE)
			continue;   /* another query named it meanwhile */
		if (ln[i].marker) {
			rc = q__map_put(&c->trunc_loc, (uint64_t)ln[i].id, 1);
			continue;
		}
		for (uint32_t k = 0; k < ln[i].n && !rc; k++)
			rc = intern(c->names, ln[i].sym[k].function, ln[i].sym[k].file, ln[i].sym[k].line,
			            ln[i].lang, ln[i].kernel, ln[i].exact, &chain[k]);
		rc = rc ? rc : q__grow(&c->chain, &c->chain_cap, c->nchain + ln[i].n + 1,
		                       sizeof(*c->chain));
		rc = rc ? rc : q__map_put(&c->loc, (uint64_t)ln[i].id, (uint32_t)c->nchain);
		if (rc)
			break;
		c->chain[c->nchain++] = ln[i].n;
		memcpy(c->chain + c->nchain, chain, ln[i].n * sizeof(*chain));
		c->nchain += ln[i].n;
	}
	for (size_t i = 0; i < nmiss && !rc; i++) {
		if (q__map_get(&c->stk, ids[i]) != NONE)
			continue;   /* another query added it meanwhile */
		/* leaf first in the store: walk from the root end. The marker of
		 * a walk cut short ends the stack (its outermost location): the
		 * stack is truncated; the marker is no frame, there or anywhere */
		uint32_t n = 0;
		bool cut = offs[i + 1] > offs[i] &&
		           q__map_get(&c->trunc_loc, (uint64_t)pool[offs[i + 1] - 1]) != NONE;
		for (uint32_t j = offs[i + 1]; j-- > offs[i];) {
			if (q__map_get(&c->trunc_loc, (uint64_t)pool[j]) != NONE)
				continue;
			uint32_t off = q__map_get(&c->loc, (uint64_t)pool[j]);
			for (uint32_t k = 0; k < c->chain[off]; k++)
				path[n++] = c->chain[off + 1 + k];
		}
		uint32_t *room = path_room(c->names, n);
		rc = room ? 0 : -ENOMEM;
		rc = rc ? rc : q__grow(&c->ent, &c->ent_cap, c->nent + 1, sizeof(*c->ent));
		rc = rc ? rc : q__grow(&c->etrunc, &c->etrunc_cap, c->nent + 1, sizeof(*c->etrunc));
		rc = rc ? rc : q__map_put(&c->stk, ids[i], (uint32_t)c->nent);
		if (rc)
			break;
		room[0] = n;
		memcpy(room + 1, path, n * sizeof(*path));
		c->ent[c->nent] = room;
		c->etrunc[c->nent] = cut;
		fresh[nfresh++] = (uint32_t)c->nent++;
	}
	if (!rc && nfresh)
		rc = order_insert(c, fresh, nfresh);
	if (rc == 0)
		goto out;   /* holding mu */
unlock:
	pthread_mutex_unlock(&c->mu);
out:
	free(pool);
	free(offs);
	free(need);
	free(infos);
	free(fresh);
	lname_free(ln, nneed);
	q__map_free(&asked);
	return rc;
}

/* Sums per stack of a side: select, plan, merge in storage, by the
 * side's deadline; adds the damaged chunks the reads left out to
 * *damaged. */
static int side_sums(st_db *db, const q_side *q, st_stack_sum **sums, size_t *n,
                     uint64_t *damaged, st_err *err)
{
	st_selection *sel = NULL;
	int rc = st_select_until(db, q->m, q->nm, q->from_ns, q->to_ns, q->deadline_ns, &sel, err);
	if (rc)
		return rc;
	rc = merge_planned(db, sel, q, sums, n, err);
	*damaged += st_selection_damaged(sel);
	st_selection_free(sel);
	return rc;
}

/* Each side's stacks into the tree: its path of function IDs and place
 * in the cache's order, from the cache, after naming those it lacks. All
 * of them are copied under one hold of the cache's lock, so their places
 * are from one order. */
static int name_all(namer *nm, st_db *db, q_tree *t, st_stack_sum *const *sums,
                    const size_t *nsums, int nsides)
{
	q_cache *c = nm->c;
	uint64_t *miss = NULL;
	size_t nmiss = 0, total = 0;
	q__map seen = {0};
	int rc = 0;
	for (int s = 0; s < nsides; s++)
		total += nsums[s];
	miss = malloc((total + 1) * sizeof(*miss));
	if (!miss)
		return -ENOMEM;
	pthread_mutex_lock(&c->mu);
	/* names change when debug info arrives; and the cache is bounded:
	 * past its size it starts over (a query may take it past) */
	uint64_t gen = nm->r && nm->r->generation ? nm->r->generation(nm->r->arg) : 0;
	if ((c->have_gen && gen != c->gen) || (c->max_bytes && cache_bytes(c) > c->max_bytes))
		rc = cache_reset(c);
	c->gen = gen;
	c->have_gen = true;
	nm->epoch = c->epoch;
	t->names = c->names;
	atomic_fetch_add(&t->names->refs, 1);
	for (int s = 0; s < nsides && !rc; s++)
		for (size_t i = 0; i < nsums[s] && !rc; i++) {
			uint64_t id = sums[s][i].stack_id;
			if (i + 8 < nsums[s])
				q__map_prefetch(&c->stk, sums[s][i + 8].stack_id);
			if (!sums[s][i].value || q__map_get(&c->stk, id) != NONE ||
			    q__map_get(&seen, id) != NONE)
				continue;
			rc = q__map_put(&seen, id, 1);
			miss[nmiss++] = id;
		}
	pthread_mutex_unlock(&c->mu);
	atomic_fetch_add(&c->misses, nmiss);
	atomic_fetch_add(&c->hits, total - nmiss);
	if (!rc && nmiss)
		rc = name_missing(nm, db, miss, nmiss);   /* holds mu when 0 */
	else if (!rc)
		pthread_mutex_lock(&c->mu);
	if (rc)
		goto out;
	if (c->epoch != nm->epoch) {
		rc = RETRY;
		goto unlock;
	}
	/* every stack is there now: point at its path in the pages the tree
	 * holds a reference to (the map's slots fetched a few stacks ahead:
	 * the map of a busy server's stacks is far bigger than the caches) */
	size_t n = 0;
	if (q__grow(&t->st, &t->st_cap, total + 1, sizeof(*t->st))) {
		rc = -ENOMEM;
		goto unlock;
	}
	for (int s = 0; s < nsides; s++)
		for (size_t i = 0; i < nsums[s]; i++) {
			if (i + 8 < nsums[s])
				q__map_prefetch(&c->stk, sums[s][i + 8].stack_id);
			if (!sums[s][i].value)
				continue;
			uint32_t e = q__map_get(&c->stk, sums[s][i].stack_id);
			qstack *q = &t->st[n++];
			*q = (qstack){c->ent[e] + 1, c->meta[e].len, c->meta[e].rank, {0, 0}, {0, 0},
			              sums[s][i].stack_id};
			q->v[s] = sums[s][i].value;
			if (c->etrunc[e]) {
				q->trunc[s] = q->v[s];
				t->any_trunc = true;
			}
		}
	t->n = n;
	t->nnames = atomic_load(&c->names->n);
unlock:
	pthread_mutex_unlock(&c->mu);
out:
	free(miss);
	q__map_free(&seen);
	return rc;
}

/* By place in the cache's order: radix passes over the rank for many
 * stacks, a plain sort for few. */
static int cmp_rank(const void *a, const void *b)
{
	const qstack *x = a, *y = b;
	return (x->rank > y->rank) - (x->rank < y->rank);
}

static int sort_by_rank(qstack *v, size_t n)
{
	if (n < 1024) {
		qsort(v, n, sizeof(*v), cmp_rank);
		return 0;
	}
	qstack *tmp = malloc(n * sizeof(*tmp));
	size_t *cnt = malloc(2049 * sizeof(*cnt));
	if (!tmp || !cnt) {
		free(tmp);
		free(cnt);
		return -ENOMEM;
	}
	qstack *src = v, *dst = tmp;
	for (int shift = 0; shift < 33; shift += 11) {
		memset(cnt, 0, 2049 * sizeof(*cnt));
		for (size_t i = 0; i < n; i++)
			cnt[((src[i].rank >> shift) & 2047) + 1]++;
		for (size_t k = 0; k < 2048; k++)
			cnt[k + 1] += cnt[k];
		for (size_t i = 0; i < n; i++)
			dst[cnt[(src[i].rank >> shift) & 2047]++] = src[i];
		qstack *x = src;
		src = dst;
		dst = x;
	}
	if (src != v)
		memcpy(v, src, n * sizeof(*v));
	free(tmp);
	free(cnt);
	return 0;
}

/* Puts the paths in order (equal prefixes become neighbours), adds up
 * equal ones, counts the nodes they make and sums their values. */
/* A diff tree's nodes, one by one: each distinct path adds the nodes
 * below its common prefix with the path before it (lcp), so nodes come
 * depth first, parents before children. leaf[i] is the post-merge path of
 * pre-merge stack i (ids[i]). */
static int lay_out(q_tree *t, const uint64_t *ids, const uint32_t *leaf, size_t nids)
{
	uint32_t *at = malloc((ST_MAX_FRAMES * MAX_INLINE + 1) * sizeof(*at));
	t->nodes = calloc(t->nnodes, sizeof(*t->nodes));
	t->first = malloc((t->n + 1) * sizeof(*t->first));
	if (!at || !t->nodes || !t->first) {
		free(at);
		return -ENOMEM;
	}
	size_t nn = 1;
	at[0] = 0;
	t->nodes[0].parent = NONE;
	for (size_t i = 0; i < t->n; i++) {
		const qstack *q = &t->st[i];
		t->first[i] = (uint32_t)nn;
		for (uint32_t d = t->lcp[i] + 1; d <= q->len; d++) {
			t->nodes[nn] = (qnode){q->path[d - 1], at[d - 1], {0, 0}, {0, 0}};
			at[d] = (uint32_t)nn++;
		}
		t->nodes[at[q->len]].self[0] = q->v[0];
		t->nodes[at[q->len]].self[1] = q->v[1];
	}
	free(at);
	for (size_t i = nn; i-- > 0;) {
		qnode *nd = &t->nodes[i];
		for (int s = 0; s < 2; s++) {
			nd->total[s] = st_sum_add(nd->total[s], nd->self[s]);
			if (i)
				t->nodes[nd->parent].total[s] = st_sum_add(t->nodes[nd->parent].total[s],
				                                            nd->total[s]);
		}
	}
	int rc = 0;
	for (size_t i = 0; i < nids && !rc; i++) {
		const qstack *q = &t->st[leaf[i]];
		rc = q__map_put(&t->leaf_map, ids[i], t->first[leaf[i]] + (q->len - t->lcp[leaf[i]] - 1));
	}
	return rc;
}

static int finish(q_tree *t)
{
	int rc = sort_by_rank(t->st, t->n);
	if (rc)
		return rc;
	size_t w = 0;
	uint64_t *ids = NULL;
	uint32_t *leaf = NULL;
	size_t nids = t->n;
	t->lcp = malloc((t->n + 1) * sizeof(*t->lcp));
	if (t->diff) {
		ids = malloc((t->n + 1) * sizeof(*ids));
		leaf = malloc((t->n + 1) * sizeof(*leaf));
	}
	if (!t->lcp || (t->diff && (!ids || !leaf))) {
		free(ids);
		free(leaf);
		return -ENOMEM;
	}
	t->nnodes = 1;
	for (size_t i = 0; i < t->n; i++) {
		const qstack *q = &t->st[i];
		/* the first touch of each path: fetch ahead */
		if (i + 4 < t->n)
			__builtin_prefetch(t->st[i + 4].path);
		if (w) {
			qstack *p = &t->st[w - 1];
			uint32_t n = p->len < q->len ? p->len : q->len, k = 0;
			const uint32_t *a = p->path, *b = q->path;
			while (k < n && a[k] == b[k])
				k++;
			if (ids) {
				ids[i] = q->id;
				leaf[i] = (uint32_t)(k == q->len && k == p->len ? w - 1 : w);
			}
			if (k == q->len && k == p->len) {
				p->v[0] = st_sum_add(p->v[0], q->v[0]);
				p->v[1] = st_sum_add(p->v[1], q->v[1]);
				p->trunc[0] = st_sum_add(p->trunc[0], q->trunc[0]);
				p->trunc[1] = st_sum_add(p->trunc[1], q->trunc[1]);
				continue;
			}
			t->nnodes += q->len - k;
			t->lcp[w] = k;
		} else {
			t->nnodes += q->len;
			t->lcp[w] = 0;
			if (ids) {
				ids[i] = q->id;
				leaf[i] = 0;
			}
		}
		t->st[w++] = *q;
	}
	t->n = w;
	if (t->diff)
		rc = lay_out(t, ids, leaf, nids);
	free(ids);
	free(leaf);
	if (rc)
		return rc;
	for (int s = 0; s < 2; s++) {
		t->psum[s] = malloc((t->n + 1) * sizeof(**t->psum));
		if (!t->psum[s])
			return -ENOMEM;
		t->psum[s][0] = 0;
		t->sat_at[s] = t->n + 1;
		int64_t lo = 0, hi = 0;
		for (size_t i = 0; i < t->n; i++) {
			int64_t x = st_sum_add(t->psum[s][i], t->st[i].v[s]);
			t->psum[s][i + 1] = x;
			if (st_sum_saturated(x) && t->sat_at[s] > t->n)
				t->sat_at[s] = i + 1;
			lo = x < lo ? x : lo;
			hi = x > hi ? x : hi;
		}
		t->total[s] = t->psum[s][t->n];
		/* a sum saturated; or, with values of both signs, some node's
		 * sum (a difference of two prefix sums) may have */
		int64_t span;
		if (t->sat_at[s] <= t->n || __builtin_sub_overflow(hi, lo, &span))
			t->saturated = true;
		if (!t->any_trunc)
			continue;
		/* truncated shares: prefix sums likewise, added up past the
		 * first saturated one */
		t->tsum[s] = malloc((t->n + 1) * sizeof(**t->tsum));
		if (!t->tsum[s])
			return -ENOMEM;
		t->tsum[s][0] = 0;
		t->tsat_at[s] = t->n + 1;
		for (size_t i = 0; i < t->n; i++) {
			int64_t x = st_sum_add(t->tsum[s][i], t->st[i].trunc[s]);
			t->tsum[s][i + 1] = x;
			if (st_sum_saturated(x) && t->tsat_at[s] > t->n)
				t->tsat_at[s] = i + 1;
		}
		t->trunc[s] = t->tsum[s][t->n];
	}
	return 0;
}

void q_tree_free(q_tree *t)
{
	if (!t)
		return;
	names_unref(t->names);
	free(t->st);
	free(t->psum[0]);
	free(t->psum[1]);
	free(t->tsum[0]);
	free(t->tsum[1]);
	free(t->nodes);
	free(t->first);
	free(t->lcp);
	q__map_free(&t->leaf_map);
	q__sig_free(t->sig);
	free(t);
}

size_t q_tree_nodes(const q_tree *t) { return t->nnodes; }
int64_t q_tree_total(const q_tree *t, int side) { return t->total[side ? 1 : 0]; }
bool q_tree_saturated(const q_tree *t) { return t->saturated; }
uint64_t q_tree_damaged(const q_tree *t) { return t->damaged; }

/* One or two sides into a new tree, through the resolver's cache when it
 * has one (else one of the query's own). A reset of a shared cache while
 * the query named its stacks starts the naming again. */
static int build(st_db *db, const q_side *const *sides, int nsides, const q_resolver *r,
                 q_tree **out, st_err *err)
{
	q_cache *own = NULL;
	st_stack_sum *sums[2] = {NULL, NULL};
	size_t nsums[2] = {0, 0};
	uint64_t damaged = 0;
	int rc = 0;
	for (int s = 0; s < nsides && !rc; s++)
		rc = side_sums(db, sides[s], &sums[s], &nsums[s], &damaged, err);
	for (int attempt = 0; !rc; attempt++) {
		q_cache *c = r && r->cache && attempt < 3 ? r->cache : NULL;
		if (!c && !own && !(own = q_cache_new(0))) {
			rc = -ENOMEM;
			break;
		}
		namer nm = {c ? c : own, r, 0, sides[0]->deadline_ns};
		q_tree *t = calloc(1, sizeof(*t));
		if (!t) {
			rc = -ENOMEM;
			break;
		}
		t->diff = nsides == 2;
		t->damaged = damaged;
		rc = name_all(&nm, db, t, sums, nsums, nsides);
		if (!rc)
			rc = finish(t);
		if (rc == 0) {
			*out = t;
			break;
		}
		q_tree_free(t);
		if (rc == RETRY)
			rc = 0;
	}
	free(sums[0]);
	free(sums[1]);
	q_cache_free(own);
	return rc;
}

int q_merge(st_db *db, const q_side *side, const q_resolver *r, q_tree **out, st_err *err)
{
	const q_side *s[1] = {side};
	return build(db, s, 1, r, out, err);
}

int q_diff(st_db *db, const q_side *base, const q_side *compare, const q_resolver *r,
           q_tree **out, st_err *err)
{
	const q_side *s[2] = {base, compare};
	int rc = build(db, s, 2, r, out, err);
	if (!rc && (rc = q__sig_compute(db, base, compare, *out, err))) {
		q_tree_free(*out);
		*out = NULL;
	}
	return rc;
}

/* ---- nodes, found in the sorted paths ---- */

/* A node: the paths [a, b) share its prefix of `depth` names, the last
 * one its name (the root: depth 0, name 0). Paths are distinct, so only
 * st[a] may end here (its self value). */
typedef struct rnode {
	uint32_t a, b, depth, name;
} rnode;

static uint32_t el(const q_tree *t, uint32_t i, uint32_t d)
{
	return t->st[i].path[d];
}

/* The sum of st[a .. b).v[s]: a difference of prefix sums before any
 * saturated, else added up (only a tree whose sums saturated pays). */
static int64_t range_sum(const q_tree *t, int s, uint32_t a, uint32_t b)
{
	if (b < t->sat_at[s])
		return st_sum_add(t->psum[s][b], -t->psum[s][a]);
	int64_t v = 0;
	for (uint32_t i = a; i < b; i++)
		v = st_sum_add(v, t->st[i].v[s]);
	return v;
}

/* The same over st[a .. b).trunc[s]: the samples of those paths whose
 * stacks were cut short. */
static int64_t range_trunc(const q_tree *t, int s, uint32_t a, uint32_t b)
{
	if (!t->tsum[s])
		return 0;
	if (b < t->tsat_at[s])
		return st_sum_add(t->tsum[s][b], -t->tsum[s][a]);
	int64_t v = 0;
	for (uint32_t i = a; i < b; i++)
		v = st_sum_add(v, t->st[i].trunc[s]);
	return v;
}

/* Of a node's total, the truncated samples; of its self, those of the
 * path that ends at it. */
static void node_trunc(const q_tree *t, const rnode *nd, int64_t trunc[2], int64_t self[2])
{
	bool ends = nd->a < nd->b && t->st[nd->a].len == nd->depth;
	for (int s = 0; s < 2; s++) {
		trunc[s] = range_trunc(t, s, nd->a, nd->b);
		self[s] = ends ? t->st[nd->a].trunc[s] : 0;
	}
}

static void node_values(const q_tree *t, const rnode *nd, int64_t self[2], int64_t total[2])
{
	bool ends = nd->a < nd->b && t->st[nd->a].len == nd->depth;
	for (int s = 0; s < 2; s++) {
		total[s] = range_sum(t, s, nd->a, nd->b);
		self[s] = ends ? t->st[nd->a].v[s] : 0;
	}
}

static int64_t weight(const q_tree *t, const rnode *nd)
{
	int64_t w = range_sum(t, 0, nd->a, nd->b);
	return t->diff ? st_sum_add(w, range_sum(t, 1, nd->a, nd->b)) : w;
}

/* The children of nd appended to *v: runs of equal name at its depth,
 * each run's end found by galloping then bisecting. */
static int children(const q_tree *t, const rnode *nd, rnode **v, size_t *n, size_t *cap)
{
	uint32_t i = nd->a, b = nd->b, d = nd->depth;
	if (i < b && t->st[i].len == d)
		i++;
	while (i < b) {
		uint32_t x = el(t, i, d), last = i, j = i + 1, step = 1;
		while (j < b && el(t, j, d) == x) {
			last = j;
			j += step;
			step *= 2;
		}
		uint32_t lo = last + 1, hi = j < b ? j : b;
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (el(t, mid, d) == x)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (q__grow(v, cap, *n + 1, sizeof(**v)))
			return -ENOMEM;
		(*v)[(*n)++] = (rnode){i, lo, d + 1, x};
		i = lo;
	}
	return 0;
}

/* Children in the order flame graphs draw and people read: heaviest
 * first, ties by name. */
static int cmp_child(const void *a, const void *b, void *arg)
{
	const q_tree *t = arg;
	const rnode *x = a, *y = b;
	int64_t wx = weight(t, x), wy = weight(t, y);
	if (wx != wy)
		return wx > wy ? -1 : 1;
	int c = strcmp(q__name(t->names, x->name)->function, q__name(t->names, y->name)->function);
	return c ? c : (x->name > y->name) - (x->name < y->name);
}

/* ---- JSON ---- */

/* a - b, saturating as st_sum_add does */
static int64_t sum_sub(int64_t a, int64_t b)
{
	return st_sum_add(a, b == INT64_MIN ? INT64_MAX : -b);
}

static int put_i64(q_buf *o, int64_t v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	return q_buf_put(o, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* ,"truncated":N (of total, samples whose stacks were cut short) where
 * there are any: absent means none */
static int json_trunc(q_buf *o, int64_t trunc)
{
	if (!trunc)
		return 0;
	int rc = q_buf_put(o, ",\"truncated\":", 13);
	return rc ? rc : put_i64(o, trunc);
}

static int json_values(const q_tree *t, q_buf *o, const int64_t *self, const int64_t *total,
                       const int64_t *trunc)
{
	int rc;
	if (!t->diff) {
		rc = q_buf_put(o, ",\"self\":", 8);
		rc = rc ? rc : put_i64(o, self[0]);
		rc = rc ? rc : q_buf_put(o, ",\"total\":", 9);
		rc = rc ? rc : put_i64(o, total[0]);
		return rc ? rc : json_trunc(o, trunc[0]);
	}
	rc = q_buf_put(o, ",\"base\":{\"self\":", 16);
	rc = rc ? rc : put_i64(o, self[0]);
	rc = rc ? rc : q_buf_put(o, ",\"total\":", 9);
	rc = rc ? rc : put_i64(o, total[0]);
	rc = rc ? rc : json_trunc(o, trunc[0]);
	rc = rc ? rc : q_buf_put(o, "},\"compare\":{\"self\":", 20);
	rc = rc ? rc : put_i64(o, self[1]);
	rc = rc ? rc : q_buf_put(o, ",\"total\":", 9);
	rc = rc ? rc : put_i64(o, total[1]);
	rc = rc ? rc : json_trunc(o, trunc[1]);
	return rc ? rc : q_buf_put(o, "}", 1);
}

/* An answer that is not the plain sum says so in itself. */
int q__json_warnings(q_buf *o, bool saturated, uint64_t damaged)
{
	int rc = saturated ? q_buf_put(o, ",\"saturated\":true", 17) : 0;
	if (!rc && damaged)
		rc = q_buf_printf(o, ",\"damaged_chunks\":%" PRIu64, damaged);
	return rc;
}

/* {"name":...,values,...,"children":[ */
static int json_open(const q_tree *t, const rnode *nd, q_buf *o)
{
	const qname *nm = q__name(t->names, nd->name);
	int64_t self[2], total[2], trunc[2], self_trunc[2];
	node_values(t, nd, self, total);
	node_trunc(t, nd, trunc, self_trunc);
	int rc = q_buf_put(o, "{\"name\":", 8);
	rc = rc ? rc : q_buf_json_str(o, nm->function);
	rc = rc ? rc : json_values(t, o, self, total, trunc);
	if (!rc && t->diff) {
		/* the laid-out node this run of paths is: the root, or the one
		 * its first path added at this depth */
		uint32_t i = nd->depth ? t->first[nd->a] + (nd->depth - t->lcp[nd->a] - 1) : 0;
		rc = q__sig_node_json(t, i, o);
		if (!rc && i == 0)
			rc = q__sig_root_json(t, o);
	}
	if (!rc && nd->depth == 0)
		rc = q__json_warnings(o, t->saturated, t->damaged);
	if (!rc && nm->kernel)
		rc = q_buf_put(o, ",\"kernel\":true", 14);
	if (!rc && nm->file) {
		rc = q_buf_put(o, ",\"file\":", 8);
		rc = rc ? rc : q_buf_json_str(o, nm->file);
	}
	if (!rc && (nm->file || nm->line)) {
		rc = q_buf_put(o, ",\"line\":", 8);
		rc = rc ? rc : put_i64(o, nm->line);
	}
	if (!rc && nm->lang) {
		rc = q_buf_put(o, ",\"lang\":", 8);
		rc = rc ? rc : q_buf_json_str(o, nm->lang);
	}
	return rc ? rc : q_buf_put(o, ",\"children\":[", 13);
}

static int json_other(const q_tree *t, const int64_t other[2], const int64_t other_trunc[2],
                      bool first, q_buf *o)
{
	int rc = q_buf_put(o, first ? "{\"name\":\"other\"" : ",{\"name\":\"other\"", first ? 15 : 16);
	rc = rc ? rc : json_values(t, o, other, other, other_trunc);
	if (!rc && t->diff)  /* a fold of many nodes is no unit tested */
		rc = q_buf_put(o, ",\"significant\":false,\"p\":null,\"q\":null", 38);
	return rc ? rc : q_buf_put(o, ",\"children\":[]}", 15);
}

/* The whole tree, depth first, each node written once as it is found. */
static int json_full(const q_tree *t, const rnode *nd, q_buf *o)
{
	rnode *cs = NULL;
	size_t nc = 0, cap = 0;
	int rc = json_open(t, nd, o);
	rc = rc ? rc : children(t, nd, &cs, &nc, &cap);
	if (!rc && nc > 1)
		qsort_r(cs, nc, sizeof(*cs), cmp_child, (void *)t);
	for (size_t k = 0; k < nc && !rc; k++) {
		if (k)
			rc = q_buf_put(o, ",", 1);
		rc = rc ? rc : json_full(t, &cs[k], o);
	}
	free(cs);
	return rc ? rc : q_buf_put(o, "]}", 2);
}

/* A node kept in a folded tree: its kids (kept children) in a list. */
typedef struct knode {
	rnode r;
	uint32_t kids, next;     /* first kept child, next kept sibling */
	uint32_t nchild;         /* all its children, kept or not */
} knode;

/* A candidate for the heap: the heaviest comes out first, then the
 * earliest in path order, so the choice is the same every time. */
typedef struct cand {
	rnode r;
	int64_t w;
	uint32_t parent;
} cand;

static bool cand_before(const cand *x, const cand *y)
{
	if (x->w != y->w)
		return x->w > y->w;
	return x->r.a != y->r.a ? x->r.a < y->r.a : x->r.depth < y->r.depth;
}

static void heap_up(cand *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!cand_before(&h[i], &h[p]))
			break;
		cand tmp = h[i];
		h[i] = h[p];
		h[p] = tmp;
		i = p;
	}
}

static void heap_down(cand *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && cand_before(&h[l], &h[m]))
			m = l;
		if (l + 1 < n && cand_before(&h[l + 1], &h[m]))
			m = l + 1;
		if (m == i)
			return;
		cand tmp = h[i];
		h[i] = h[m];
		h[m] = tmp;
		i = m;
	}
}

static int cmp_kid(const void *a, const void *b, void *arg)
{
	const knode *const *x = a, *const *y = b;
	return cmp_child(&(*x)->r, &(*y)->r, arg);
}

static int json_kept(const q_tree *t, const knode *kn, uint32_t i, q_buf *o)
{
	const knode *k = &kn[i];
	const knode **kids = NULL;
	size_t nk = 0;
	int rc = json_open(t, &k->r, o);
	for (uint32_t c = k->kids; c != NONE; c = kn[c].next)
		nk++;
	kids = malloc((nk + 1) * sizeof(*kids));
	if (!kids)
		return -ENOMEM;
	nk = 0;
	for (uint32_t c = k->kids; c != NONE; c = kn[c].next)
		kids[nk++] = &kn[c];
	if (nk > 1)
		qsort_r(kids, nk, sizeof(*kids), cmp_kid, (void *)t);
	int64_t self[2], total[2], other[2], trunc[2], self_trunc[2], other_trunc[2];
	node_values(t, &k->r, self, total);
	node_trunc(t, &k->r, trunc, self_trunc);
	for (int s = 0; s < 2; s++) {
		other[s] = sum_sub(total[s], self[s]);
		other_trunc[s] = sum_sub(trunc[s], self_trunc[s]);
	}
	for (size_t c = 0; c < nk && !rc; c++) {
		int64_t cs[2], ct[2], ctr[2], cstr[2];
		node_values(t, &kids[c]->r, cs, ct);
		node_trunc(t, &kids[c]->r, ctr, cstr);
		for (int s = 0; s < 2; s++) {
			other[s] = sum_sub(other[s], ct[s]);
			other_trunc[s] = sum_sub(other_trunc[s], ctr[s]);
		}
		if (c)
			rc = q_buf_put(o, ",", 1);
		rc = rc ? rc : json_kept(t, kn, (uint32_t)(kids[c] - kn), o);
	}
	if (!rc && k->nchild > nk)
		rc = json_other(t, other, other_trunc, nk == 0, o);
	free(kids);
	return rc ? rc : q_buf_put(o, "]}", 2);
}

/* The heaviest max_nodes nodes: a child never outweighs its parent, so
 * taking the heaviest candidate each time, starting at the root, grows a
 * tree rooted at "total"; only the kept nodes' children are looked at. */
static int json_folded_tree(const q_tree *t, size_t max_nodes, q_buf *out)
{
	knode *kn = NULL;
	cand *h = NULL;
	rnode *cs = NULL;
	size_t nk = 0, kcap = 0, nh = 0, hcap = 0, ncs = 0, ccap = 0;
	int rc = 0;
	cand c = {{0, (uint32_t)t->n, 0, 0}, 0, NONE};
	c.w = weight(t, &c.r);
	if ((rc = q__grow(&h, &hcap, 1, sizeof(*h))))
		goto out;
	h[nh++] = c;
	while (nh && nk < max_nodes && !rc) {
		c = h[0];
		h[0] = h[--nh];
		heap_down(h, nh, 0);
		if ((rc = q__grow(&kn, &kcap, nk + 1, sizeof(*kn))))
			break;
		uint32_t me = (uint32_t)nk++;
		kn[me] = (knode){c.r, NONE, NONE, 0};
		if (c.parent != NONE) {
			kn[me].next = kn[c.parent].kids;
			kn[c.parent].kids = me;
		}
		ncs = 0;
		rc = children(t, &c.r, &cs, &ncs, &ccap);
		kn[me].nchild = (uint32_t)ncs;
		for (size_t i = 0; i < ncs && !rc; i++) {
			if ((rc = q__grow(&h, &hcap, nh + 1, sizeof(*h))))
				break;
			h[nh] = (cand){cs[i], weight(t, &cs[i]), me};
			heap_up(h, nh++);
		}
	}
	if (!rc)
		rc = json_kept(t, kn, 0, out);
out:
	free(kn);
	free(h);
	free(cs);
	return rc;
}

int q_tree_json(const q_tree *t, size_t max_nodes, q_buf *out)
{
	rnode root = {0, (uint32_t)t->n, 0, 0};
	if (max_nodes && max_nodes < t->nnodes)
		return json_folded_tree(t, max_nodes, out);
	return json_full(t, &root, out);
}

/* ---- folded stacks ---- */

/* Depth first, carrying the path (root excluded) in a buffer. */
static int folded_node(const q_tree *t, const rnode *nd, q_buf *path, q_buf *o)
{
	size_t mark = path->len;
	int rc = 0;
	if (nd->depth) {
		const qname *nm = q__name(t->names, nd->name);
		if (path->len)
			rc = q_buf_put(path, ";", 1);
		/* ';' separates frames, so one inside a name becomes ':'; spaces
		 * may stay (readers split the count off at the last space) */
		for (const char *p = nm->function; !rc && *p; p++)
			rc = q_buf_put(path, *p == ';' ? ":" : p, 1);
		if (!rc && nm->kernel)
			rc = q_buf_put(path, "_[k]", 4);
	}
	int64_t self[2], total[2];
	node_values(t, nd, self, total);
	if (!rc && nd->depth && (self[0] || self[1])) {
		rc = q_buf_put(o, path->p, path->len);
		if (!rc && t->diff)
			rc = q_buf_printf(o, " %" PRId64 " %" PRId64 "\n", self[0], self[1]);
		else if (!rc)
			rc = q_buf_printf(o, " %" PRId64 "\n", self[0]);
	}
	rnode *cs = NULL;
	size_t nc = 0, cap = 0;
	rc = rc ? rc : children(t, nd, &cs, &nc, &cap);
	if (!rc && nc > 1)
		qsort_r(cs, nc, sizeof(*cs), cmp_child, (void *)t);
	for (size_t k = 0; !rc && k < nc; k++)
		rc = folded_node(t, &cs[k], path, o);
	free(cs);
	path->len = mark;
	if (path->p)
		path->p[mark] = 0;
	return rc;
}

int q_tree_folded(const q_tree *t, q_buf *out)
{
	q_buf path = {0};
	rnode root = {0, (uint32_t)t->n, 0, 0};
	int rc = folded_node(t, &root, &path, out);
	q_buf_free(&path);
	return rc;
}

/* ---- top ---- */

typedef struct toprow {
	uint32_t name;
	int64_t flat, cum;
	int64_t trunc;          /* of cum: samples whose stacks were cut short */
	const q_tree *t;
} toprow;

static int cmp_top(const void *a, const void *b)
{
	const toprow *x = a, *y = b;
	if (x->flat != y->flat)
		return x->flat > y->flat ? -1 : 1;
	if (x->cum != y->cum)
		return x->cum > y->cum ? -1 : 1;
	int c = strcmp(q__name(x->t->names, x->name)->function,
	               q__name(x->t->names, y->name)->function);
	return c ? c : (x->name > y->name) - (x->name < y->name);
}

int q_top_json(const q_tree *t, size_t limit, q_buf *out)
{
	int rc = 0;
	int64_t *flat = calloc(t->nnames + 1, sizeof(*flat));
	int64_t *cum = calloc(t->nnames + 1, sizeof(*cum));
	int64_t *trunc = calloc(t->nnames + 1, sizeof(*trunc));
	uint32_t *seen = calloc(t->nnames + 1, sizeof(*seen));
	toprow *rows = NULL;
	size_t nrows = 0;
	if (!flat || !cum || !trunc || !seen) {
		rc = -ENOMEM;
		goto out;
	}
	/* flat: the value of the paths a function ends; cum: of the paths it
	 * is on, once per path however often it recurs. A row is a function
	 * group (qname.func): the lines of one interpreted function add up */
	for (size_t i = 0; i < t->n; i++) {
		const qstack *q = &t->st[i];
		const uint32_t *p = q->path;
		if (!q->v[0] || !q->len)
			continue;
		uint32_t leaf = q__name(t->names, p[q->len - 1])->func;
		flat[leaf] = st_sum_add(flat[leaf], q->v[0]);
		for (uint32_t k = 0; k < q->len; k++) {
			uint32_t f = q__name(t->names, p[k])->func;
			if (seen[f] != i + 1) {
				seen[f] = (uint32_t)i + 1;
				cum[f] = st_sum_add(cum[f], q->v[0]);
				trunc[f] = st_sum_add(trunc[f], q->trunc[0]);
			}
		}
	}
	for (uint32_t i = 1; i < t->nnames; i++)
		nrows += flat[i] || cum[i];
	rows = malloc((nrows + 1) * sizeof(*rows));
	if (!rows) {
		rc = -ENOMEM;
		goto out;
	}
	nrows = 0;
	for (uint32_t i = 1; i < t->nnames; i++)   /* 0 is the root, not a function */
		if (flat[i] || cum[i])
			rows[nrows++] = (toprow){i, flat[i], cum[i], trunc[i], t};
	qsort(rows, nrows, sizeof(*rows), cmp_top);
	int64_t total = t->total[0];
	rc = q_buf_put(out, "{\"total\":", 9);
	rc = rc ? rc : put_i64(out, total);
	rc = rc ? rc : json_trunc(out, t->trunc[0]);
	rc = rc ? rc : q__json_warnings(out, t->saturated, t->damaged);
	rc = rc ? rc : q_buf_put(out, ",\"rows\":[", 9);
	for (size_t i = 0; !rc && i < nrows && (!limit || i < limit); i++) {
		const toprow *r = &rows[i];
		const qname *nm = q__name(t->names, r->name);
		if (i)
			rc = q_buf_put(out, ",", 1);
		rc = rc ? rc : q_buf_put(out, "{\"name\":", 8);
		rc = rc ? rc : q_buf_json_str(out, nm->function);
		if (!rc && nm->file) {
			rc = q_buf_put(out, ",\"file\":", 8);
			rc = rc ? rc : q_buf_json_str(out, nm->file);
		}
		/* a row of an exact name sums all its lines: no one line is its */
		if (!rc && nm->file && !nm->exact)
			rc = q_buf_printf(out, ",\"line\":%" PRId64, nm->line);
		rc = rc ? rc : q_buf_printf(out, ",\"flat\":%" PRId64 ",\"flat_pct\":%.4f"
		                            ",\"cum\":%" PRId64 ",\"cum_pct\":%.4f",
		                            r->flat, total ? 100.0 * (double)r->flat / (double)total : 0.0,
		                            r->cum, total ? 100.0 * (double)r->cum / (double)total : 0.0);
		rc = rc ? rc : json_trunc(out, r->trunc);
		if (!rc && nm->kernel)
			rc = q_buf_put(out, ",\"kernel\":true", 14);
		if (!rc && nm->lang) {
			rc = q_buf_put(out, ",\"lang\":", 8);
			rc = rc ? rc : q_buf_json_str(out, nm->lang);
		}
		rc = rc ? rc : q_buf_put(out, "}", 1);
	}
	rc = rc ? rc : q_buf_put(out, "]}", 2);
out:
	free(flat);
	free(cum);
	free(trunc);
	free(seen);
	free(rows);
	return rc;
}
