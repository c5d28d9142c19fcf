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

#include "base/clock.h"
#include "base/text.h"
#include "query/q_int.h"
#include "query/query.h"

#define NONE Q__NONE
#define MAX_INLINE 32   /* frames one location may expand to */

/* Sums per stack over the side's range, each part of it read from the
 * coarsest roll-up that holds it (q_side.raw: raw rows only). */
static int merge_planned(st_db *db, const st_selection *sel, const q_side *q,
                         st_stack_sum **sums, size_t *n, base_err *err)
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
	base_map map;               /* hash of (function, kernel) or of the exact
	                           * key -> ID, probed */
	base_map func_map;          /* hash of (function, file, language) -> the
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
		free(q->file);
		free(q->lang);
		free(q->frag);    /* the function's string too */
	}
	for (size_t p = 0; p < MAX_NAMES / NAME_PAGE && ns->pages[p]; p++)
		free(ns->pages[p]);
	for (size_t p = 0; p < ns->npp; p++)
		free(ns->ppages[p]);
	base_map_free(&ns->map);
	base_map_free(&ns->func_map);
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
	for (;; h = base_mix64(h + 1)) {
		uint32_t f = base_map_get(&ns->func_map, h);
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
	return base_map_put(&ns->func_map, h, id);
}

/* A name's JSON as tree nodes carry it (qname.frag): escaped once here,
 * so that rendering a tree of thousands of nodes copies bytes instead of
 * escaping the same strings again at every query. */
static int name_frag(qname *q)
{
	base_buf b = {0};
	int rc = base_buf_put(&b, "\"name\":", 7);
	rc = rc ? rc : base_json_str(&b, q->function, strlen(q->function));
	size_t head = b.len;
	if (!rc && q->kernel)
		rc = base_buf_put(&b, ",\"kernel\":true", 14);
	if (!rc && q->file) {
		rc = base_buf_put(&b, ",\"file\":", 8);
		rc = rc ? rc : base_json_str(&b, q->file, strlen(q->file));
	}
	if (!rc && (q->file || q->line))
		rc = base_buf_printf(&b, ",\"line\":%" PRId64, q->line);
	if (!rc && q->lang) {
		rc = base_buf_put(&b, ",\"lang\":", 8);
		rc = rc ? rc : base_json_str(&b, q->lang, strlen(q->lang));
	}
	/* then the function itself, which sorting children by name reads:
	 * in the same allocation, so fetching the JSON fetches it */
	size_t flen = b.len;
	rc = rc ? rc : base_buf_put(&b, "", 1);
	rc = rc ? rc : base_buf_put(&b, q->function, strlen(q->function));
	if (!rc && b.len > UINT32_MAX)
		rc = -ENOMEM;
	if (rc) {
		base_buf_free(&b);
		return rc;
	}
	q->frag = b.data;
	q->frag_head = (uint32_t)head;
	q->frag_len = (uint32_t)flen;
	q->function = b.data + flen + 1;
	return 0;
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
		h = str_hash(lang, base_mix64(h ^ (uint64_t)line ^ 0x65786163ULL));
	for (;; h = base_mix64(h + 1)) {
		uint32_t id = base_map_get(&ns->map, h);
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
	q->function = (char *)fn;   /* name_frag copies it */
	q->file = file ? strdup(file) : NULL;
	q->lang = lang ? strdup(lang) : NULL;
	q->line = line;
	q->kernel = kernel;
	q->exact = exact;
	if ((file && !q->file) || (lang && !q->lang) || (rc = name_frag(q)) ||
	    (rc = func_of(ns, id)) || (rc = base_map_put(&ns->map, h, id))) {
		free(q->file);
		free(q->lang);
		free(q->frag);
		memset(q, 0, sizeof(*q));
		rc = rc ? rc : -ENOMEM;
		goto out;
	}
	ns->bytes += sizeof(*q) + strlen(fn) + 1 + (file ? strlen(file) + 1 : 0) +
	             (lang ? strlen(lang) + 1 : 0) + q->frag_len + 1 + 24;
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

/* The cache's order of paths as a query reads it: at each place r of the
 * order, the path there and its length, the length of the prefix it
 * shares with the path before it (lcp[0] = 0); and over blocks of
 * LCP_BLOCK places, a sparse table of their minima. The prefix two paths
 * share is the minimum of lcp between their places, so a query finds its
 * tree's nodes without reading a path (comparing paths was two thirds of
 * building a tree of 100 k stacks), and reads its stacks' paths in place
 * order, nearly in sequence. Never changed once built, and counted: a
 * query keeps the one its places came from while the cache moves on. */
#define LCP_BLOCK 32
#define CUT 0x80000000u
_Static_assert(ST_MAX_FRAMES * MAX_INLINE < UINT16_MAX, "a path's length fits lcp");

typedef struct qorder {
	atomic_int refs;
	uint32_t n;               /* places */
	uint32_t nb, levels;      /* blocks; levels of sp */
	const uint32_t **path;    /* [n]: the path (name IDs, root first) */
	uint32_t *len;            /* [n]: its length, | CUT when its stack was
	                           * cut short (etrunc) */
	uint16_t *lcp;            /* [n] */
	uint16_t *sp;             /* sp[k * nb + b]: min of lcp over blocks b .. b + 2^k - 1 */
} qorder;

static void order_unref(qorder *o)
{
	if (o && atomic_fetch_sub(&o->refs, 1) == 1)
		free(o);
}

/* The prefix shared by the paths at places r1 < r2: min of lcp over
 * (r1, r2]. */
static uint32_t order_lcp(const qorder *o, uint32_t r1, uint32_t r2)
{
	uint32_t lo = r1 + 1, hi = r2, m = UINT16_MAX;
	uint32_t bl = lo / LCP_BLOCK, bh = hi / LCP_BLOCK;
	if (bh - bl < 2) {
		for (uint32_t r = lo; r <= hi; r++)
			m = o->lcp[r] < m ? o->lcp[r] : m;
		return m;
	}
	for (uint32_t r = lo; r < (bl + 1) * LCP_BLOCK; r++)
		m = o->lcp[r] < m ? o->lcp[r] : m;
	for (uint32_t r = bh * LCP_BLOCK; r <= hi; r++)
		m = o->lcp[r] < m ? o->lcp[r] : m;
	uint32_t a = bl + 1, b = bh - 1;
	uint32_t k = 31 - (uint32_t)__builtin_clz(b - a + 1);
	uint16_t x = o->sp[(size_t)k * o->nb + a], y = o->sp[(size_t)k * o->nb + b + 1 - (1u << k)];
	m = x < m ? x : m;
	return y < m ? y : m;
}

static uint16_t path_lcp(const uint32_t *a, const uint32_t *b)
{
	uint32_t n = a[0] < b[0] ? a[0] : b[0], k = 0;
	while (k < n && a[1 + k] == b[1 + k])
		k++;
	return (uint16_t)k;
}

struct q_cache {
	pthread_mutex_t mu;
	size_t max_bytes;         /* 0: no bound */
	uint64_t epoch;           /* +1 at every reset */
	uint64_t gen;             /* the resolver's generation it was filled under */
	bool have_gen;
	qnames *names;
	base_map loc;               /* location ID -> offset in chain */
	base_map trunc_loc;         /* location IDs of the ST_TRUNCATED_FRAME marker */
	uint32_t *chain;          /* per location: count, then name IDs, outermost first */
	size_t nchain, chain_cap;
	/* stacks: entries with a path each, and every entry's place in the
	 * order of their paths, so a query sorts its stacks by an integer */
	base_map stk;               /* stack ID -> entry */
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
	qorder *ord;              /* the order's prefixes (NULL while empty) */
	uint32_t *bynum;          /* the store's stack number (st_stack_sum.num
	                           * - 1) -> entry, NONE when not there yet: a
	                           * lookup without hashing, in the order storage
	                           * returns its sums */
	size_t bynum_cap;
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
	base_map_free(&c->loc);
	base_map_free(&c->trunc_loc);
	base_map_free(&c->stk);
	free(c->chain);
	free(c->ent);
	free(c->meta);
	free(c->order);
	free(c->etrunc);
	free(c->bynum);
	order_unref(c->ord);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

static size_t cache_bytes(const q_cache *c)
{
	return c->names->bytes + c->nchain * 4 + (c->loc.cap + c->trunc_loc.cap + c->stk.cap) * 16 +
	       c->nent * 17 + c->bynum_cap * 4 + (c->ord ? (size_t)c->ord->n * 3 : 0);
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
	base_map_free(&c->loc);
	base_map_free(&c->trunc_loc);
	base_map_free(&c->stk);
	c->nchain = c->nent = 0;
	free(c->bynum);
	c->bynum = NULL;
	c->bynum_cap = 0;
	order_unref(c->ord);
	c->ord = NULL;
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

/* Puts the entries fresh[0..m) (the last m) into the order, numbers every
 * entry by its place and builds the order's prefixes anew (qorder): one
 * merge, done only when stacks are new. A prefix between two entries that
 * were neighbours before is copied; only the fresh entries' are
 * compared. */
static int order_insert(q_cache *c, uint32_t *fresh, size_t m)
{
	size_t old = c->nent - m, n = c->nent;
	uint32_t *merged = malloc((n + 1) * sizeof(*merged));
	uint32_t *src = malloc((n + 1) * sizeof(*src));   /* old place, or NONE */
	uint32_t nb = (uint32_t)((n + LCP_BLOCK - 1) / LCP_BLOCK), levels = 0;
	while (nb >> levels)
		levels++;
	qorder *o = malloc(sizeof(*o) + (n + 1) * (sizeof(*o->path) + sizeof(*o->len)) +
	                   (n + 1) * sizeof(uint16_t) + ((size_t)levels * nb + 1) * sizeof(uint16_t));
	if (!merged || !src || !o || base_grow(&c->meta, &c->rank_cap, n, sizeof(*c->meta))) {
		free(merged);
		free(src);
		free(o);
		return -ENOMEM;
	}
	qsort_r(fresh, m, sizeof(*fresh), cmp_entry, c);
	size_t i = 0, j = 0, w = 0;
	while (i < old || j < m)
		if (j == m || (i < old && cmp_entry(&c->order[i], &fresh[j], c) <= 0)) {
			src[w] = (uint32_t)i;
			merged[w++] = c->order[i++];
		} else {
			src[w] = NONE;
			merged[w++] = fresh[j++];
		}
	atomic_init(&o->refs, 1);
	o->n = (uint32_t)n;
	o->nb = nb;
	o->levels = levels;
	o->path = (const uint32_t **)(o + 1);
	o->len = (uint32_t *)(o->path + n + 1);
	o->lcp = (uint16_t *)(o->len + n + 1);
	o->sp = o->lcp + n + 1;
	const qorder *was = c->ord;
	for (size_t k = 0; k < n; k++) {
		if (k == 0)
			o->lcp[k] = 0;
		else if (src[k] != NONE && src[k - 1] != NONE && src[k] == src[k - 1] + 1)
			o->lcp[k] = was->lcp[src[k]];
		else
			o->lcp[k] = path_lcp(c->ent[merged[k - 1]], c->ent[merged[k]]);
	}
	for (uint32_t bl = 0; bl < nb; bl++) {
		uint16_t mn = UINT16_MAX;
		for (size_t r = (size_t)bl * LCP_BLOCK; r < n && r < (size_t)(bl + 1) * LCP_BLOCK; r++)
			mn = o->lcp[r] < mn ? o->lcp[r] : mn;
		o->sp[bl] = mn;
	}
	for (uint32_t k = 1; k < levels; k++)
		for (uint32_t bl = 0; bl + (1u << k) <= nb; bl++) {
			uint16_t x = o->sp[(size_t)(k - 1) * nb + bl];
			uint16_t y = o->sp[(size_t)(k - 1) * nb + bl + (1u << (k - 1))];
			o->sp[(size_t)k * nb + bl] = x < y ? x : y;
		}
	order_unref(c->ord);
	c->ord = o;
	free(src);
	free(c->order);
	c->order = merged;
	c->order_cap = n + 1;
	for (size_t k = 0; k < w; k++) {
		uint32_t e = merged[k];
		c->meta[e] = (struct ent_meta){c->ent[e][0], (uint32_t)k};
		o->path[k] = c->ent[e] + 1;
		o->len[k] = c->ent[e][0] | (c->etrunc[e] ? CUT : 0);
	}
	return 0;
}

/* ---- building a tree ---- */

/* A query's view of the cache while it names its stacks. */
typedef struct namer {
	q_cache *c;
	const q_resolver *r;
	uint64_t epoch;
	int64_t deadline_ns;      /* base_monotonic_ns() to stop naming at; 0: none */
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
	base_map asked = {0};
	size_t nneed = 0, need_cap = 0, nfresh = 0;
	int rc = st_stacks_locations(db, ids, nmiss, &pool, &offs);
	if (rc)
		goto out;
	pthread_mutex_lock(&c->mu);
	for (uint32_t i = 0; i < offs[nmiss] && !rc; i++) {
		uint64_t loc = (uint64_t)pool[i];
		if (base_map_get(&c->loc, loc) != NONE || base_map_get(&c->trunc_loc, loc) != NONE ||
		    base_map_get(&asked, loc) != NONE)
			continue;
		rc = base_grow(&need, &need_cap, nneed + 1, sizeof(*need));
		rc = rc ? rc : base_map_put(&asked, loc, (uint32_t)nneed);
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
			if (nm->deadline_ns && !(i & 63) && base_monotonic_ns() >= nm->deadline_ns)
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
		if (base_map_get(&c->loc, (uint64_t)ln[i].id) != NONE ||
		    base_map_get(&c->trunc_loc, (uint64_t)ln[i].id) != NONE)
			continue;   /* another query named it meanwhile */
		if (ln[i].marker) {
			rc = base_map_put(&c->trunc_loc, (uint64_t)ln[i].id, 1);
			continue;
		}
		for (uint32_t k = 0; k < ln[i].n && !rc; k++)
			rc = intern(c->names, ln[i].sym[k].function, ln[i].sym[k].file, ln[i].sym[k].line,
			            ln[i].lang, ln[i].kernel, ln[i].exact, &chain[k]);
		rc = rc ? rc : base_grow(&c->chain, &c->chain_cap, c->nchain + ln[i].n + 1,
		                       sizeof(*c->chain));
		rc = rc ? rc : base_map_put(&c->loc, (uint64_t)ln[i].id, (uint32_t)c->nchain);
		if (rc)
			break;
		c->chain[c->nchain++] = ln[i].n;
		memcpy(c->chain + c->nchain, chain, ln[i].n * sizeof(*chain));
		c->nchain += ln[i].n;
	}
	for (size_t i = 0; i < nmiss && !rc; i++) {
		if (base_map_get(&c->stk, ids[i]) != NONE)
			continue;   /* another query added it meanwhile */
		/* leaf first in the store: walk from the root end. The marker of
		 * a walk cut short ends the stack (its outermost location): the
		 * stack is truncated; the marker is no frame, there or anywhere */
		uint32_t n = 0;
		bool cut = offs[i + 1] > offs[i] &&
		           base_map_get(&c->trunc_loc, (uint64_t)pool[offs[i + 1] - 1]) != NONE;
		for (uint32_t j = offs[i + 1]; j-- > offs[i];) {
			if (base_map_get(&c->trunc_loc, (uint64_t)pool[j]) != NONE)
				continue;
			uint32_t off = base_map_get(&c->loc, (uint64_t)pool[j]);
			for (uint32_t k = 0; k < c->chain[off]; k++)
				path[n++] = c->chain[off + 1 + k];
		}
		uint32_t *room = path_room(c->names, n);
		rc = room ? 0 : -ENOMEM;
		rc = rc ? rc : base_grow(&c->ent, &c->ent_cap, c->nent + 1, sizeof(*c->ent));
		rc = rc ? rc : base_grow(&c->etrunc, &c->etrunc_cap, c->nent + 1, sizeof(*c->etrunc));
		rc = rc ? rc : base_map_put(&c->stk, ids[i], (uint32_t)c->nent);
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
	base_map_free(&asked);
	return rc;
}

/* Sums per stack of a side: select, plan, merge in storage, by the
 * side's deadline; adds the damaged chunks the reads left out to
 * *damaged. */
static int side_sums(st_db *db, const q_side *q, st_stack_sum **sums, size_t *n,
                     uint64_t *damaged, base_err *err)
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

/* The cache's entry of a stack, NONE when it has none: by the store's
 * number for it where the store gives one (noted there at the first
 * lookup by ID), else by ID. Caller holds mu. */
static uint32_t entry_of(q_cache *c, uint64_t id, uint32_t num)
{
	if (num && num <= c->bynum_cap && c->bynum[num - 1] != NONE)
		return c->bynum[num - 1];
	uint32_t e = base_map_get(&c->stk, id);
	if (e == NONE || !num)
		return e;
	if (num > c->bynum_cap) {
		size_t cap = c->bynum_cap ? c->bynum_cap : 1024;
		while (cap < num)
			cap *= 2;
		uint32_t *v = realloc(c->bynum, cap * sizeof(*v));
		if (!v)
			return e;   /* only a shortcut: the ID finds it */
		memset(v + c->bynum_cap, 0xff, (cap - c->bynum_cap) * sizeof(*v));
		c->bynum = v;
		c->bynum_cap = cap;
	}
	c->bynum[num - 1] = e;
	return e;
}

/* Sorts keys by their bits [lo, lo + bits) (those above are zero):
 * radix passes for many, insertion for few; stable, so (place << 32 |
 * index) keys sorted by place keep their indices' order. */
static int sort_keys(uint64_t *k, size_t n, uint32_t lo, uint32_t bits)
{
	if (n < 64) {
		for (size_t i = 1; i < n; i++) {
			uint64_t x = k[i];
			size_t j = i;
			for (; j > 0 && k[j - 1] > x; j--)
				k[j] = k[j - 1];
			k[j] = x;
		}
		return 0;
	}
	uint64_t *tmp = malloc(n * sizeof(*tmp)), *src = k, *dst = tmp;
	size_t *cnt = malloc(2049 * sizeof(*cnt));
	if (!tmp || !cnt) {
		free(tmp);
		free(cnt);
		return -ENOMEM;
	}
	for (uint32_t shift = lo; shift < lo + bits; shift += 11) {
		memset(cnt, 0, 2049 * sizeof(*cnt));
		for (size_t i = 0; i < n; i++)
			cnt[((src[i] >> shift) & 2047) + 1]++;
		for (size_t d = 0; d < 2048; d++)
			cnt[d + 1] += cnt[d];
		for (size_t i = 0; i < n; i++)
			dst[cnt[(src[i] >> shift) & 2047]++] = src[i];
		uint64_t *x = src;
		src = dst;
		dst = x;
	}
	if (src != k)
		memcpy(k, src, n * sizeof(*k));
	free(tmp);
	free(cnt);
	return 0;
}

/* A query's stacks between naming and building the tree: each stack with
 * a value, side 0's first (k < n0), with its sum, ID and cache entry,
 * then its place in the cache's order as a sort key (place << 32 | k). */
typedef struct pend {
	size_t n, n0;
	uint64_t *key;
	uint32_t *ent;
	int64_t *val;
	uint64_t *id;
} pend;

static void pend_free(pend *pd)
{
	free(pd->key);
	free(pd->ent);
	free(pd->val);
	free(pd->id);
	memset(pd, 0, sizeof(*pd));
}

/* Each side's stacks: their entries in the cache, after naming those it
 * lacks, and their places in its order. All places are taken under one
 * hold of the cache's lock, so they are from one order, whose snapshot
 * (*ord, a reference the caller drops) the tree is then built from. */
static int name_all(namer *nm, st_db *db, q_tree *t, st_stack_sum *const *sums,
                    const size_t *nsums, int nsides, pend *pd, qorder **ord)
{
	q_cache *c = nm->c;
	uint64_t *miss = NULL;
	size_t nmiss = 0, total = 0, n = 0;
	base_map seen = {0};
	int rc = 0;
	for (int s = 0; s < nsides; s++)
		total += nsums[s];
	miss = malloc((total + 1) * sizeof(*miss));
	pd->key = malloc((total + 1) * sizeof(*pd->key));
	pd->ent = malloc((total + 1) * sizeof(*pd->ent));
	pd->val = malloc((total + 1) * sizeof(*pd->val));
	pd->id = malloc((total + 1) * sizeof(*pd->id));
	if (!miss || !pd->key || !pd->ent || !pd->val || !pd->id) {
		free(miss);
		return -ENOMEM;
	}
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
	for (int s = 0; s < nsides && !rc; s++) {
		if (s == 1)
			pd->n0 = n;
		for (size_t i = 0; i < nsums[s] && !rc; i++) {
			const st_stack_sum *x = &sums[s][i];
			if (!x->num && i + 8 < nsums[s])
				base_map_prefetch(&c->stk, sums[s][i + 8].stack_id);
			if (!x->value)
				continue;
			uint32_t e = entry_of(c, x->stack_id, x->num);
			pd->ent[n] = e;
			pd->val[n] = x->value;
			pd->id[n++] = x->stack_id;
			if (e != NONE || base_map_get(&seen, x->stack_id) != NONE)
				continue;
			rc = base_map_put(&seen, x->stack_id, 1);
			miss[nmiss++] = x->stack_id;
		}
	}
	if (nsides == 1)
		pd->n0 = n;
	pd->n = n;
	pthread_mutex_unlock(&c->mu);
	atomic_fetch_add(&c->misses, nmiss);
	atomic_fetch_add(&c->hits, n - nmiss);
	/* named in order of stack ID, whatever order the store gave: names
	 * get their IDs in the order they are first met, and the order of
	 * paths (hence ties in a folded tree, and pprof's order) follows
	 * them, so a store that returns its sums otherwise gives the same
	 * answer */
	if (!rc && nmiss)
		rc = sort_keys(miss, nmiss, 0, 64);
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
	/* every stack is there now: its place in the order as it is now */
	for (size_t k = 0; k < n; k++) {
		uint32_t e = pd->ent[k];
		if (e == NONE && (e = base_map_get(&c->stk, pd->id[k])) == NONE) {
			rc = -EIO;   /* named above, under this hold of the lock */
			goto unlock;
		}
		pd->key[k] = (uint64_t)c->meta[e].rank << 32 | k;
	}
	t->nnames = atomic_load(&c->names->n);
	if ((*ord = c->ord))
		atomic_fetch_add(&c->ord->refs, 1);
unlock:
	pthread_mutex_unlock(&c->mu);
out:
	free(miss);
	base_map_free(&seen);
	return rc;
}


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
		rc = base_map_put(&t->leaf_map, ids[i], t->first[leaf[i]] + (q->len - t->lcp[leaf[i]] - 1));
	}
	return rc;
}

/* Puts the stacks of pd in order of their places in the cache's order o
 * (equal prefixes become neighbours), takes their paths from o, adds up
 * equal paths, counts the nodes they make and sums their values. */
static int finish(q_tree *t, const qorder *o, pend *pd)
{
	int rc = 0;
	size_t n = pd->n, nids = n, w = 0;
	uint64_t *key = pd->key, *ids = NULL;
	uint32_t *leaf = NULL, *slot = NULL;
	qstack *st = malloc((n + 1) * sizeof(*st));
	t->lcp = malloc((n + 1) * sizeof(*t->lcp));
	if (t->diff) {
		ids = malloc((n + 1) * sizeof(*ids));
		leaf = malloc((n + 1) * sizeof(*leaf));
	}
	if (!st || !t->lcp || (t->diff && (!ids || !leaf))) {
		rc = -ENOMEM;
		goto out;
	}
	if (n && !t->diff && n >= o->n / 4) {
		/* many of the cache's stacks: one pass over the places beats
		 * sorting (one side has each place once) */
		if (!(slot = calloc(o->n, sizeof(*slot)))) {
			rc = -ENOMEM;
			goto out;
		}
		for (size_t k = 0; k < n; k++)
			slot[key[k] >> 32] = (uint32_t)k + 1;
		size_t j = 0;
		for (uint32_t r = 0; r < o->n; r++)
			if (slot[r])
				key[j++] = (uint64_t)r << 32 | (slot[r] - 1);
	} else if (n) {
		uint32_t bits = 1;
		while (bits < 32 && (o->n >> bits))
			bits++;
		if ((rc = sort_keys(key, n, 32, bits)))
			goto out;
	}
	t->nnodes = 1;
	for (size_t i = 0; i < n; i++) {
		uint32_t k = (uint32_t)key[i], r = (uint32_t)(key[i] >> 32);
		uint32_t len = o->len[r] & ~CUT;
		int s = k >= pd->n0;
		bool cut = o->len[r] & CUT;
		if (ids)
			ids[i] = pd->id[k];
		uint32_t lcp = 0;
		if (w) {
			qstack *p = &st[w - 1];
			/* the same place: one stack on both sides of a diff */
			lcp = p->rank == r ? len : order_lcp(o, p->rank, r);
			if (lcp == len && lcp == p->len) {
				p->v[s] = st_sum_add(p->v[s], pd->val[k]);
				if (cut)
					p->trunc[s] = st_sum_add(p->trunc[s], pd->val[k]);
				if (leaf)
					leaf[i] = (uint32_t)w - 1;
				continue;
			}
		}
		t->nnodes += len - lcp;
		t->lcp[w] = lcp;
		if (leaf)
			leaf[i] = (uint32_t)w;
		qstack *q = &st[w++];
		*q = (qstack){o->path[r], len, r, {0, 0}, {0, 0}, pd->id[k]};
		q->v[s] = pd->val[k];
		if (cut) {
			q->trunc[s] = pd->val[k];
			t->any_trunc = true;
		}
	}
	free(t->st);
	t->st = st;
	t->st_cap = n + 1;
	st = NULL;
	t->n = w;
	t->paths = malloc((w + 1) * sizeof(*t->paths));
	t->lmin = malloc((w / LMIN_BLOCK + 1) * sizeof(*t->lmin));
	if (!t->paths || !t->lmin) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < w; i++) {
		t->paths[i] = t->st[i].path;
		if (i % LMIN_BLOCK == 0 || t->lcp[i] < t->lmin[i / LMIN_BLOCK])
			t->lmin[i / LMIN_BLOCK] = t->lcp[i];
	}
	if (t->diff && (rc = lay_out(t, ids, leaf, nids)))
		goto out;
	for (int s = 0; s < 2; s++) {
		t->psum[s] = malloc((t->n + 1) * sizeof(**t->psum));
		if (!t->psum[s]) {
			rc = -ENOMEM;
			goto out;
		}
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
		if (!t->tsum[s]) {
			rc = -ENOMEM;
			goto out;
		}
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
out:
	free(st);
	free(slot);
	free(ids);
	free(leaf);
	return rc;
}

void q_tree_free(q_tree *t)
{
	if (!t)
		return;
	names_unref(t->names);
	free(t->st);
	free(t->paths);
	free(t->lmin);
	free(t->psum[0]);
	free(t->psum[1]);
	free(t->tsum[0]);
	free(t->tsum[1]);
	free(t->nodes);
	free(t->first);
	free(t->lcp);
	base_map_free(&t->leaf_map);
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
                 q_tree **out, base_err *err)
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
		qorder *ord = NULL;
		pend pd = {0};
		rc = name_all(&nm, db, t, sums, nsums, nsides, &pd, &ord);
		if (!rc)
			rc = finish(t, ord, &pd);
		order_unref(ord);
		pend_free(&pd);
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

int q_merge(st_db *db, const q_side *side, const q_resolver *r, q_tree **out, base_err *err)
{
	const q_side *s[1] = {side};
	return build(db, s, 1, r, out, err);
}

int q_diff(st_db *db, const q_side *base, const q_side *compare, const q_resolver *r,
           q_tree **out, base_err *err)
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
	return t->paths[i][d];
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

/* The children of nd appended to *v: runs of paths sharing more than
 * nd's depth d, each ending where the prefix a path shares with the one
 * before drops to d, found in the tree's lcp array and its block minima
 * (lmin), without reading a path: galloping over the paths' names cost a
 * cache miss per probe. Without names, a child's name is left NONE (el()
 * of its first path at depth d; a folded tree reads it only for the
 * nodes it keeps) and its line fetched meanwhile. */
static int children(const q_tree *t, const rnode *nd, bool names, rnode **v, size_t *n,
                    size_t *cap)
{
	uint32_t i = nd->a, b = nd->b, d = nd->depth;
	if (i < b && t->st[i].len == d)
		i++;
	while (i < b) {
		uint32_t x, j = i + 1;
		if (names) {
			x = el(t, i, d);
		} else {
			__builtin_prefetch(&t->paths[i][d]);
			x = NONE;
		}
		while (j < b && j % LMIN_BLOCK && t->lcp[j] > d)
			j++;
		if (j < b && j % LMIN_BLOCK == 0) {
			while (j + LMIN_BLOCK <= b && t->lmin[j / LMIN_BLOCK] > d)
				j += LMIN_BLOCK;
			while (j < b && t->lcp[j] > d)
				j++;
		}
		if (base_grow(v, cap, *n + 1, sizeof(**v)))
			return -ENOMEM;
		(*v)[(*n)++] = (rnode){i, j, d + 1, x};
		i = j;
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

static int put_i64(base_buf *o, int64_t v)
{
	char tmp[24], *p = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	return base_buf_put(o, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* ,"truncated":N (of total, samples whose stacks were cut short) where
 * there are any: absent means none */
static int json_trunc(base_buf *o, int64_t trunc)
{
	if (!trunc)
		return 0;
	int rc = base_buf_put(o, ",\"truncated\":", 13);
	return rc ? rc : put_i64(o, trunc);
}

static int json_values(const q_tree *t, base_buf *o, const int64_t *self, const int64_t *total,
                       const int64_t *trunc)
{
	int rc;
	if (!t->diff) {
		rc = base_buf_put(o, ",\"self\":", 8);
		rc = rc ? rc : put_i64(o, self[0]);
		rc = rc ? rc : base_buf_put(o, ",\"total\":", 9);
		rc = rc ? rc : put_i64(o, total[0]);
		return rc ? rc : json_trunc(o, trunc[0]);
	}
	rc = base_buf_put(o, ",\"base\":{\"self\":", 16);
	rc = rc ? rc : put_i64(o, self[0]);
	rc = rc ? rc : base_buf_put(o, ",\"total\":", 9);
	rc = rc ? rc : put_i64(o, total[0]);
	rc = rc ? rc : json_trunc(o, trunc[0]);
	rc = rc ? rc : base_buf_put(o, "},\"compare\":{\"self\":", 20);
	rc = rc ? rc : put_i64(o, self[1]);
	rc = rc ? rc : base_buf_put(o, ",\"total\":", 9);
	rc = rc ? rc : put_i64(o, total[1]);
	rc = rc ? rc : json_trunc(o, trunc[1]);
	return rc ? rc : base_buf_put(o, "}", 1);
}

/* An answer that is not the plain sum says so in itself. */
int q__json_warnings(base_buf *o, bool saturated, uint64_t damaged)
{
	int rc = saturated ? base_buf_put(o, ",\"saturated\":true", 17) : 0;
	if (!rc && damaged)
		rc = base_buf_printf(o, ",\"damaged_chunks\":%" PRIu64, damaged);
	return rc;
}

/* Room for n more bytes of output, written in place after it: a node is
 * a dozen small pieces, and appending each through base_buf_put was a
 * third of a flame graph's rendering. */
static int room(base_buf *o, size_t n)
{
	return base_buf_reserve(o, n);
}

#define RAW(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

static char *raw_i64(char *p, int64_t v)
{
	char tmp[24], *q = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
	do {
		*--q = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--q = '-';
	size_t n = (size_t)(tmp + sizeof(tmp) - q);
	memcpy(p, q, n);
	return p + n;
}

/* Ends a run of raw writes at p. */
static void raw_done(base_buf *o, char *p)
{
	o->len = (size_t)(p - o->data);
	o->data[o->len] = 0;
}

/* {"name":...,values,...,"children":[ for node nd named nm, with its
 * values (node_values, node_trunc) */
static int json_open(const q_tree *t, const rnode *nd, const qname *nm, const int64_t self[2],
                     const int64_t total[2], const int64_t trunc[2], base_buf *o)
{
	int rc = room(o, nm->frag_head + 128);
	if (rc)
		return rc;
	char *p = o->data + o->len;
	*p++ = '{';
	memcpy(p, nm->frag, nm->frag_head);
	p += nm->frag_head;
	if (!t->diff) {
		p = RAW(p, ",\"self\":");
		p = raw_i64(p, self[0]);
		p = RAW(p, ",\"total\":");
		p = raw_i64(p, total[0]);
		if (trunc[0]) {
			p = RAW(p, ",\"truncated\":");
			p = raw_i64(p, trunc[0]);
		}
		raw_done(o, p);
	} else {
		raw_done(o, p);
		rc = json_values(t, o, self, total, trunc);
		/* the laid-out node this run of paths is: the root, or the one
		 * its first path added at this depth */
		uint32_t i = nd->depth ? t->first[nd->a] + (nd->depth - t->lcp[nd->a] - 1) : 0;
		rc = rc ? rc : q__sig_node_json(t, i, o);
		if (!rc && i == 0)
			rc = q__sig_root_json(t, o);
	}
	if (!rc && nd->depth == 0)
		rc = q__json_warnings(o, t->saturated, t->damaged);
	rc = rc ? rc : room(o, nm->frag_len - nm->frag_head + 16);
	if (rc)
		return rc;
	p = o->data + o->len;
	memcpy(p, nm->frag + nm->frag_head, nm->frag_len - nm->frag_head);
	p += nm->frag_len - nm->frag_head;
	raw_done(o, RAW(p, ",\"children\":["));
	return 0;
}

static int json_other(const q_tree *t, const int64_t other[2], const int64_t other_trunc[2],
                      bool first, base_buf *o)
{
	int rc = base_buf_put(o, first ? "{\"name\":\"other\"" : ",{\"name\":\"other\"", first ? 15 : 16);
	rc = rc ? rc : json_values(t, o, other, other, other_trunc);
	if (!rc && t->diff)  /* a fold of many nodes is no unit tested */
		rc = base_buf_put(o, ",\"significant\":false,\"p\":null,\"q\":null", 38);
	return rc ? rc : base_buf_put(o, ",\"children\":[]}", 15);
}

/* A child waiting to be written: its node, weight and name. */
typedef struct wnode {
	rnode r;
	int64_t w;
	const qname *nm;
} wnode;

/* Children in the order flame graphs draw and people read: heaviest
 * first, ties by name (cmp_child, with the weights at hand). */
static int cmp_wnode(const void *a, const void *b)
{
	const wnode *x = a, *y = b;
	if (x->w != y->w)
		return x->w > y->w ? -1 : 1;
	int c = strcmp(x->nm->function, y->nm->function);
	return c ? c : (x->r.name > y->r.name) - (x->r.name < y->r.name);
}

/* The whole tree, depth first, each node written once as it is found;
 * the children of the nodes on the way down share one stack (st), each
 * level's above its parent's. */
typedef struct fullctx {
	const q_tree *t;
	base_buf *o;
	wnode *st;
	size_t n, cap;
	rnode *cs;
	size_t ccap;
} fullctx;

static int json_full(fullctx *x, const rnode *nd, const qname *nm)
{
	const q_tree *t = x->t;
	int64_t self[2], total[2], trunc[2], self_trunc[2];
	size_t nc = 0, base = x->n;
	node_values(t, nd, self, total);
	node_trunc(t, nd, trunc, self_trunc);
	int rc = json_open(t, nd, nm, self, total, trunc, x->o);
	rc = rc ? rc : children(t, nd, true, &x->cs, &nc, &x->ccap);
	rc = rc ? rc : base_grow(&x->st, &x->cap, base + nc, sizeof(*x->st));
	for (size_t k = 0; k < nc && !rc; k++) {
		x->st[base + k] = (wnode){x->cs[k], weight(t, &x->cs[k]),
		                          q__name(t->names, x->cs[k].name)};
		__builtin_prefetch(x->st[base + k].nm->frag);
	}
	if (rc)
		return rc;
	x->n = base + nc;
	if (nc > 1)
		qsort(x->st + base, nc, sizeof(*x->st), cmp_wnode);
	for (size_t k = 0; k < nc && !rc; k++) {
		if (k)
			rc = base_buf_put(x->o, ",", 1);
		wnode w = x->st[base + k];   /* the stack may move deeper down */
		rc = rc ? rc : json_full(x, &w.r, w.nm);
	}
	x->n = base;
	return rc ? rc : base_buf_put(x->o, "]}", 2);
}

/* A node kept in a folded tree: its kids (kept children) in a list. */
typedef struct knode {
	rnode r;
	int64_t w;
	const qname *nm;
	uint32_t kids, next;     /* first kept child, next kept sibling */
	uint32_t nchild;         /* all its children, kept or not */
} knode;

/* A candidate for the heap: the heaviest comes out first, then the
 * earliest in path order (a, then depth), so the choice is the same every
 * time. The heap holds 16 bytes per candidate, the rest in a pool: the
 * heap's moves were most of choosing a flame graph's nodes. */
typedef struct cand {
	rnode r;
	uint32_t parent;
} cand;

typedef struct hent {
	int64_t w;
	uint32_t a;
	uint32_t c;              /* its cand in the pool */
} hent;

static bool cand_before(const hent *x, const hent *y, const cand *pool)
{
	if (x->w != y->w)
		return x->w > y->w;
	if (x->a != y->a)
		return x->a < y->a;
	return pool[x->c].r.depth < pool[y->c].r.depth;
}

static void heap_up(hent *h, size_t i, const cand *pool)
{
	hent c = h[i];
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!cand_before(&c, &h[p], pool))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = c;
}

static void heap_down(hent *h, size_t n, size_t i, const cand *pool)
{
	hent c = h[i];
	for (;;) {
		size_t l = 2 * i + 1, m = l;
		if (l >= n)
			break;
		if (l + 1 < n && cand_before(&h[l + 1], &h[l], pool))
			m = l + 1;
		if (!cand_before(&h[m], &c, pool))
			break;
		h[i] = h[m];
		i = m;
	}
	h[i] = c;
}

static int cmp_kid(const void *a, const void *b)
{
	const knode *const *x = a, *const *y = b;
	const knode *p = *x, *q = *y;
	if (p->w != q->w)
		return p->w > q->w ? -1 : 1;
	int c = strcmp(p->nm->function, q->nm->function);
	return c ? c : (p->r.name > q->r.name) - (p->r.name < q->r.name);
}

/* Writes kept node i and its kept subtree; its kids' pointers go to
 * kb[*used ..) (every node is a kid once, so kb holds them all). Returns
 * the node's total and truncated count for its parent's "other". */
static int json_kept(const q_tree *t, const knode *kn, uint32_t i, const knode **kb,
                     size_t *used, base_buf *o, int64_t total[2], int64_t trunc[2])
{
	const knode *k = &kn[i];
	const knode **kids = kb + *used;
	size_t nk = 0;
	int64_t self[2], self_trunc[2], other[2], other_trunc[2];
	node_values(t, &k->r, self, total);
	node_trunc(t, &k->r, trunc, self_trunc);
	int rc = json_open(t, &k->r, k->nm, self, total, trunc, o);
	if (rc)
		return rc;
	for (uint32_t c = k->kids; c != NONE; c = kn[c].next)
		kids[nk++] = &kn[c];
	*used += nk;
	if (nk > 1)
		qsort(kids, nk, sizeof(*kids), cmp_kid);
	for (int s = 0; s < 2; s++) {
		other[s] = sum_sub(total[s], self[s]);
		other_trunc[s] = sum_sub(trunc[s], self_trunc[s]);
	}
	for (size_t c = 0; c < nk && !rc; c++) {
		int64_t ct[2], ctr[2];
		if (c)
			rc = base_buf_put(o, ",", 1);
		rc = rc ? rc : json_kept(t, kn, (uint32_t)(kids[c] - kn), kb, used, o, ct, ctr);
		for (int s = 0; s < 2 && !rc; s++) {
			other[s] = sum_sub(other[s], ct[s]);
			other_trunc[s] = sum_sub(other_trunc[s], ctr[s]);
		}
	}
	if (!rc && k->nchild > nk)
		rc = json_other(t, other, other_trunc, nk == 0, o);
	return rc ? rc : base_buf_put(o, "]}", 2);
}

/* The heaviest max_nodes nodes: a child never outweighs its parent, so
 * taking the heaviest candidate each time, starting at the root, grows a
 * tree rooted at "total"; only the kept nodes' children are looked at. */
static int json_folded_tree(const q_tree *t, size_t max_nodes, base_buf *out)
{
	knode *kn = NULL;
	const knode **kb = NULL;
	hent *h = NULL;
	cand *pool = NULL;
	rnode *cs = NULL;
	size_t nk = 0, kcap = 0, nh = 0, hcap = 0, np = 0, pcap = 0, ncs = 0, ccap = 0, used = 0;
	int rc = 0;
	rnode root = {0, (uint32_t)t->n, 0, 0};
	if ((rc = base_grow(&h, &hcap, 1, sizeof(*h))) || (rc = base_grow(&pool, &pcap, 1, sizeof(*pool))))
		goto out;
	pool[np] = (cand){root, NONE};
	/* e: the next node to keep, taken from the heap or, when the heaviest
	 * child of the node kept last outweighs the heap's top (a chain of
	 * single children in a deep tree, mostly), straight from there: most
	 * kept nodes then never go through the heap */
	hent e = {weight(t, &root), 0, (uint32_t)np++};
	bool have = true;
	while (have && nk < max_nodes && !rc) {
		const cand c = pool[e.c];
		if ((rc = base_grow(&kn, &kcap, nk + 1, sizeof(*kn))))
			break;
		uint32_t me = (uint32_t)nk++;
		kn[me] = (knode){c.r, e.w, NULL, NONE, NONE, 0};
		if (c.parent != NONE) {
			kn[me].next = kn[c.parent].kids;
			kn[c.parent].kids = me;
		}
		ncs = 0;
		rc = children(t, &c.r, false, &cs, &ncs, &ccap);
		kn[me].nchild = (uint32_t)ncs;
		if (!rc)
			rc = base_grow(&h, &hcap, nh + ncs, sizeof(*h));
		if (!rc)
			rc = base_grow(&pool, &pcap, np + ncs, sizeof(*pool));
		if (rc)
			break;
		have = false;
		for (size_t i = 0; i < ncs; i++) {
			pool[np] = (cand){cs[i], me};
			hent x = {weight(t, &cs[i]), cs[i].a, (uint32_t)np++};
			if (have && cand_before(&x, &e, pool)) {
				hent y = e;
				e = x;
				x = y;
			} else if (!have) {
				e = x;
				have = true;
				continue;
			}
			h[nh] = x;
			heap_up(h, nh++, pool);
		}
		if (have && nh && cand_before(&h[0], &e, pool)) {
			hent y = h[0];
			h[0] = e;
			heap_down(h, nh, 0, pool);
			e = y;
		} else if (!have && nh) {
			e = h[0];
			h[0] = h[--nh];
			if (nh)
				heap_down(h, nh, 0, pool);
			have = true;
		}
	}
	if (rc)
		goto out;
	/* the kept nodes' names, fetched all at once before the depth-first
	 * walk needs them one by one: a flame graph touches thousands of
	 * names spread over the whole table; and room for the output at once */
	for (size_t i = 0; i < nk; i++) {
		rnode *r = &kn[i].r;
		if (r->name == NONE)
			r->name = el(t, r->a, r->depth - 1);
		__builtin_prefetch(q__name(t->names, r->name));
	}
	size_t bytes = 256;
	for (size_t i = 0; i < nk; i++) {
		kn[i].nm = q__name(t->names, kn[i].r.name);
		__builtin_prefetch(kn[i].nm->frag);
		if (kn[i].nm->frag_len > 48)
			__builtin_prefetch(kn[i].nm->frag + 64);
		bytes += kn[i].nm->frag_len + (t->diff ? 256 : 96);
	}
	kb = malloc((nk + 1) * sizeof(*kb));
	int64_t tot[2], tr[2];
	rc = kb ? room(out, bytes) : -ENOMEM;
	rc = rc ? rc : json_kept(t, kn, 0, kb, &used, out, tot, tr);
out:
	free(kn);
	free(kb);
	free(h);
	free(pool);
	free(cs);
	return rc;
}

int q_tree_json(const q_tree *t, size_t max_nodes, base_buf *out)
{
	rnode root = {0, (uint32_t)t->n, 0, 0};
	if (max_nodes && max_nodes < t->nnodes)
		return json_folded_tree(t, max_nodes, out);
	fullctx x = {t, out, NULL, 0, 0, NULL, 0};
	int rc = json_full(&x, &root, q__name(t->names, 0));
	free(x.st);
	free(x.cs);
	return rc;
}

/* ---- folded stacks ---- */

/* Depth first, carrying the path (root excluded) in a buffer. */
static int folded_node(const q_tree *t, const rnode *nd, base_buf *path, base_buf *o)
{
	size_t mark = path->len;
	int rc = 0;
	if (nd->depth) {
		const qname *nm = q__name(t->names, nd->name);
		if (path->len)
			rc = base_buf_put(path, ";", 1);
		/* ';' separates frames, so one inside a name becomes ':'; spaces
		 * may stay (readers split the count off at the last space) */
		for (const char *p = nm->function; !rc && *p; p++)
			rc = base_buf_put(path, *p == ';' ? ":" : p, 1);
		if (!rc && nm->kernel)
			rc = base_buf_put(path, "_[k]", 4);
	}
	int64_t self[2], total[2];
	node_values(t, nd, self, total);
	if (!rc && nd->depth && (self[0] || self[1])) {
		rc = base_buf_put(o, path->data, path->len);
		if (!rc && t->diff)
			rc = base_buf_printf(o, " %" PRId64 " %" PRId64 "\n", self[0], self[1]);
		else if (!rc)
			rc = base_buf_printf(o, " %" PRId64 "\n", self[0]);
	}
	rnode *cs = NULL;
	size_t nc = 0, cap = 0;
	rc = rc ? rc : children(t, nd, true, &cs, &nc, &cap);
	if (!rc && nc > 1)
		qsort_r(cs, nc, sizeof(*cs), cmp_child, (void *)t);
	for (size_t k = 0; !rc && k < nc; k++)
		rc = folded_node(t, &cs[k], path, o);
	free(cs);
	path->len = mark;
	if (path->data)
		path->data[mark] = 0;
	return rc;
}

int q_tree_folded(const q_tree *t, base_buf *out)
{
	base_buf path = {0};
	rnode root = {0, (uint32_t)t->n, 0, 0};
	int rc = folded_node(t, &root, &path, out);
	base_buf_free(&path);
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

int q_top_json(const q_tree *t, size_t limit, base_buf *out)
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
	rc = base_buf_put(out, "{\"total\":", 9);
	rc = rc ? rc : put_i64(out, total);
	rc = rc ? rc : json_trunc(out, t->trunc[0]);
	rc = rc ? rc : q__json_warnings(out, t->saturated, t->damaged);
	rc = rc ? rc : base_buf_put(out, ",\"rows\":[", 9);
	for (size_t i = 0; !rc && i < nrows && (!limit || i < limit); i++) {
		const toprow *r = &rows[i];
		const qname *nm = q__name(t->names, r->name);
		if (i)
			rc = base_buf_put(out, ",", 1);
		rc = rc ? rc : base_buf_put(out, "{\"name\":", 8);
		rc = rc ? rc : base_json_str(out, nm->function, strlen(nm->function));
		if (!rc && nm->file) {
			rc = base_buf_put(out, ",\"file\":", 8);
			rc = rc ? rc : base_json_str(out, nm->file, strlen(nm->file));
		}
		/* a row of an exact name sums all its lines: no one line is its */
		if (!rc && nm->file && !nm->exact)
			rc = base_buf_printf(out, ",\"line\":%" PRId64, nm->line);
		rc = rc ? rc : base_buf_printf(out, ",\"flat\":%" PRId64 ",\"flat_pct\":%.4f"
		                            ",\"cum\":%" PRId64 ",\"cum_pct\":%.4f",
		                            r->flat, total ? 100.0 * (double)r->flat / (double)total : 0.0,
		                            r->cum, total ? 100.0 * (double)r->cum / (double)total : 0.0);
		rc = rc ? rc : json_trunc(out, r->trunc);
		if (!rc && nm->kernel)
			rc = base_buf_put(out, ",\"kernel\":true", 14);
		if (!rc && nm->lang) {
			rc = base_buf_put(out, ",\"lang\":", 8);
			rc = rc ? rc : base_json_str(out, nm->lang, strlen(nm->lang));
		}
		rc = rc ? rc : base_buf_put(out, "}", 1);
	}
	rc = rc ? rc : base_buf_put(out, "]}", 2);
out:
	free(flat);
	free(cum);
	free(trunc);
	free(seen);
	free(rows);
	return rc;
}
