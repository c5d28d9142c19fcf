/* engine.c - builds call trees from the store: select series, sum per stack
 * in storage (no rows materialized), then name each distinct location once
 * and fold the stacks into a tree. Renders trees as JSON, folded stacks and
 * top tables. Knows nothing of HTTP. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
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
		while (*q && *q != '"' && *q != '\\' && *q >= 0x20)
			q++;
		if (q > p)
			rc = q_buf_put(b, (const char *)p, (size_t)(q - p));
		if (rc || !*q)
			break;
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

/* ---- the tree ---- */

void q_tree_free(q_tree *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nnames; i++) {
		free(t->names[i].function);
		free(t->names[i].file);
		free(t->names[i].lang);
	}
	free(t->names);
	q__map_free(&t->name_map);
	q__map_free(&t->func_map);
	free(t->nodes);
	q__map_free(&t->child_map);
	q__map_free(&t->loc_map);
	free(t->chain);
	q__map_free(&t->leaf_map);
	q__sig_free(t->sig);
	free(t);
}

size_t q_tree_nodes(const q_tree *t) { return t->n; }
int64_t q_tree_total(const q_tree *t, int side) { return t->nodes[0].total[side ? 1 : 0]; }

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static uint64_t str_hash(const char *s, uint64_t seed)
{
	return XXH3_64bits_withSeed(s ? s : "", s ? strlen(s) : 0, seed);
}

/* The function group of name id: the first name with its function, file,
 * language and kind (a native name is its own). */
static int func_of(q_tree *t, uint32_t id)
{
	qname *q = &t->names[id];
	if (!q->exact) {
		q->func = id;
		return 0;
	}
	uint64_t h = str_hash(q->function, str_hash(q->file, str_hash(q->lang, 0x66)));
	for (;; h = mix(h + 1)) {
		uint32_t f = q__map_get(&t->func_map, h);
		if (f == NONE)
			break;
		const qname *o = &t->names[f];
		if (str_eq(o->function, q->function) && str_eq(o->file, q->file) &&
		    str_eq(o->lang, q->lang)) {
			q->func = f;
			return 0;
		}
	}
	q->func = id;
	return q__map_put(&t->func_map, h, id);
}

/* Interns (function, kernel), file and line kept from the first; with
 * exact (a frame that carries its own language, file or line), interns
 * (function, file, line, language). */
static int intern(q_tree *t, const char *fn, const char *file, int64_t line,
                  const char *lang, bool kernel, bool exact, uint32_t *out)
{
	if (lang && !*lang)
		lang = NULL;
	if (file && !*file && exact)
		file = NULL;
	uint64_t h = XXH3_64bits_withSeed(fn, strlen(fn), kernel);
	if (exact)
		h = str_hash(file, str_hash(lang, mix(h ^ (uint64_t)line ^ 0x65786163ULL)));
	for (;; h = mix(h + 1)) {
		uint32_t id = q__map_get(&t->name_map, h);
		if (id == NONE)
			break;
		const qname *o = &t->names[id];
		if (o->kernel == kernel && o->exact == exact && !strcmp(o->function, fn) &&
		    (!exact || (str_eq(o->file, file) && o->line == line && str_eq(o->lang, lang)))) {
			*out = id;
			return 0;
		}
		/* a 64-bit collision: probe on with a derived key */
	}
	if (q__grow(&t->names, &t->names_cap, t->nnames + 1, sizeof(*t->names)))
		return -ENOMEM;
	qname *q = &t->names[t->nnames];
	memset(q, 0, sizeof(*q));
	q->function = strdup(fn);
	q->file = file ? strdup(file) : NULL;
	q->lang = lang ? strdup(lang) : NULL;
	q->line = line;
	q->kernel = kernel;
	q->exact = exact;
	if (!q->function || (file && !q->file) || (lang && !q->lang)) {
		free(q->function);
		free(q->file);
		free(q->lang);
		return -ENOMEM;
	}
	*out = (uint32_t)t->nnames++;
	int rc = func_of(t, *out);
	return rc ? rc : q__map_put(&t->name_map, h, *out);
}

static int new_node(q_tree *t, uint32_t parent, uint32_t name, uint32_t *out)
{
	if (t->n >= NONE - 1 || q__grow(&t->nodes, &t->cap, t->n + 1, sizeof(*t->nodes)))
		return -ENOMEM;
	qnode *nd = &t->nodes[t->n];
	memset(nd, 0, sizeof(*nd));
	nd->name = name;
	nd->parent = parent;
	nd->child = nd->next = NONE;
	if (parent != NONE) {
		nd->next = t->nodes[parent].child;
		t->nodes[parent].child = (uint32_t)t->n;
		int rc = q__map_put(&t->child_map, (uint64_t)parent << 32 | name, (uint32_t)t->n);
		if (rc)
			return rc;
	}
	*out = (uint32_t)t->n++;
	return 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* Names a location, outermost inline frame first, and records the chain in
 * t->chain ("count, ids...") under the location's ID in t->loc_map. */
static int name_location(q_tree *t, const st_frame_info *fi, const q_resolver *r)
{
	q_sym sym[MAX_INLINE];
	uint32_t ids[MAX_INLINE];
	int rc = 0;
	int n = r && r->resolve ? r->resolve(r->arg, fi, sym, MAX_INLINE) : 0;
	if (n < 0)
		return n;
	if (n > MAX_INLINE)
		n = MAX_INLINE;
	bool kernel = fi->kind == ST_FRAME_KERNEL;
	if (n == 0 && fi->kind == ST_FRAME_NAMED && (fi->file || fi->line || fi->lang)) {
		/* named on the host with where it is (interpreted code) */
		rc = intern(t, fi->name, fi->file, fi->line, fi->lang, false, true, &ids[0]);
		n = 1;
	} else if (n == 0) {
		/* nothing known: the object's file name and the offset, so the
		 * frame is still findable, as the symbolization issue asks */
		char name[ST_MAX_SYMBOL_LEN + ST_MAX_OBJECT_NAME_LEN + 32];
		if (fi->kind != ST_FRAME_USER)
			snprintf(name, sizeof(name), "%s", fi->name);
		else
			snprintf(name, sizeof(name), "[unknown] %s+0x%" PRIx64,
			         base_name(fi->object_name ? fi->object_name : "?"), fi->offset);
		rc = intern(t, name, NULL, 0, NULL, kernel, false, &ids[0]);
		n = 1;
	} else {
		/* innermost first from the resolver; the tree wants outermost */
		for (int i = 0; i < n && !rc; i++)
			rc = intern(t, sym[n - 1 - i].function ? sym[n - 1 - i].function : "?",
			            sym[n - 1 - i].file, sym[n - 1 - i].line, NULL, kernel, false,
			            &ids[i]);
	}
	if (rc)
		return rc;
	if (q__grow(&t->chain, &t->chain_cap, t->nchain + (size_t)n + 1, sizeof(*t->chain)))
		return -ENOMEM;
	uint32_t off = (uint32_t)t->nchain;
	t->chain[t->nchain++] = (uint32_t)n;
	for (int i = 0; i < n; i++)
		t->chain[t->nchain++] = ids[i];
	return q__map_put(&t->loc_map, (uint64_t)fi->location_id, off);
}

/* Adds one side's merge into the tree: sums per stack from storage, then
 * the locations of all those stacks and the names of the ones not named
 * yet, each in one bulk read, then the tree. */
static int add_side(q_tree *t, st_db *db, const q_side *q, int side,
                    const q_resolver *r, st_err *err)
{
	st_selection *sel = NULL;
	st_stack_sum *sums = NULL;
	uint64_t *ids = NULL;
	int64_t *pool = NULL, *need = NULL;
	uint32_t *offs = NULL;
	st_frame_info *infos = NULL;
	size_t nsums = 0, nneed = 0, need_cap = 0;
	q__map asked = {0};
	int rc = st_select(db, q->m, q->nm, q->from_ns, q->to_ns, &sel, err);
	if (rc)
		return rc;
	rc = st_merge(db, sel, q->from_ns, q->to_ns, &sums, &nsums);
	st_selection_free(sel);
	if (rc || nsums == 0)
		goto out;
	ids = malloc(nsums * sizeof(*ids));
	if (!ids) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nsums; i++)
		ids[i] = sums[i].stack_id;
	if ((rc = st_stacks_locations(db, ids, nsums, &pool, &offs)))
		goto out;
	for (uint32_t i = 0; i < offs[nsums] && !rc; i++) {
		uint64_t loc = (uint64_t)pool[i];
		if (q__map_get(&t->loc_map, loc) != NONE || q__map_get(&asked, loc) != NONE)
			continue;
		rc = q__grow(&need, &need_cap, nneed + 1, sizeof(*need));
		rc = rc ? rc : q__map_put(&asked, loc, (uint32_t)nneed);
		if (!rc)
			need[nneed++] = pool[i];
	}
	if (!rc && nneed)
		rc = st_locations(db, need, nneed, &infos);
	for (size_t i = 0; i < nneed && !rc; i++)
		rc = name_location(t, &infos[i], r);
	for (size_t i = 0; i < nsums && !rc; i++) {
		int64_t v = sums[i].value;
		uint32_t node = 0;
		t->nodes[0].total[side] += v;
		/* leaf first in the store: walk from the root end */
		for (uint32_t j = offs[i + 1]; j-- > offs[i] && !rc;) {
			uint32_t off = q__map_get(&t->loc_map, (uint64_t)pool[j]);
			for (uint32_t k = 0; !rc && k < t->chain[off]; k++) {
				uint32_t name = t->chain[off + 1 + k];
				uint32_t c = q__map_get(&t->child_map, (uint64_t)node << 32 | name);
				if (c == NONE)
					rc = new_node(t, node, name, &c);
				if (!rc) {
					node = c;
					t->nodes[node].total[side] += v;
				}
			}
		}
		if (!rc)
			t->nodes[node].self[side] += v;
		if (!rc && t->diff)
			rc = q__map_put(&t->leaf_map, sums[i].stack_id, node);
	}
out:
	free(sums);
	free(ids);
	free(pool);
	free(offs);
	free(need);
	free(infos);
	q__map_free(&asked);
	return rc;
}

static int tree_new(bool diff, q_tree **out)
{
	q_tree *t = calloc(1, sizeof(*t));
	uint32_t root_name, root;
	if (!t)
		return -ENOMEM;
	t->diff = diff;
	int rc = intern(t, "total", NULL, 0, NULL, false, false, &root_name);
	if (!rc)
		rc = new_node(t, NONE, root_name, &root);
	if (rc) {
		q_tree_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int q_merge(st_db *db, const q_side *side, const q_resolver *r, q_tree **out,
            st_err *err)
{
	q_tree *t;
	int rc = tree_new(false, &t);
	if (!rc)
		rc = add_side(t, db, side, 0, r, err);
	if (rc) {
		q_tree_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int q_diff(st_db *db, const q_side *base, const q_side *compare,
           const q_resolver *r, q_tree **out, st_err *err)
{
	q_tree *t;
	int rc = tree_new(true, &t);
	if (!rc)
		rc = add_side(t, db, base, 0, r, err);
	if (!rc)
		rc = add_side(t, db, compare, 1, r, err);
	if (!rc)
		rc = q__sig_compute(db, base, compare, t, err);
	if (rc) {
		q_tree_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

/* ---- rendering ---- */

static int64_t weight(const q_tree *t, uint32_t i)
{
	return t->nodes[i].total[0] + (t->diff ? t->nodes[i].total[1] : 0);
}

/* Children of node in descending weight, ties by name: the order flame
 * graphs draw and people read. Caller frees. */
static int cmp_child(const void *a, const void *b, void *arg)
{
	const q_tree *sort_tree = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	int64_t wx = weight(sort_tree, x), wy = weight(sort_tree, y);
	if (wx != wy)
		return wx > wy ? -1 : 1;
	return strcmp(sort_tree->names[sort_tree->nodes[x].name].function,
	              sort_tree->names[sort_tree->nodes[y].name].function);
}

static uint32_t *children(const q_tree *t, uint32_t node, size_t *n)
{
	*n = 0;
	for (uint32_t c = t->nodes[node].child; c != NONE; c = t->nodes[c].next)
		(*n)++;
	uint32_t *v = malloc((*n + 1) * sizeof(*v));
	if (!v)
		return NULL;
	size_t i = 0;
	for (uint32_t c = t->nodes[node].child; c != NONE; c = t->nodes[c].next)
		v[i++] = c;
	qsort_r(v, *n, sizeof(*v), cmp_child, (void *)t);
	return v;
}

static int json_values(const q_tree *t, q_buf *o, const int64_t *self, const int64_t *total)
{
	if (!t->diff)
		return q_buf_printf(o, ",\"self\":%" PRId64 ",\"total\":%" PRId64, self[0], total[0]);
	return q_buf_printf(o, ",\"base\":{\"self\":%" PRId64 ",\"total\":%" PRId64 "},"
	                    "\"compare\":{\"self\":%" PRId64 ",\"total\":%" PRId64 "}",
	                    self[0], total[0], self[1], total[1]);
}

static int json_node(const q_tree *t, uint32_t i, const uint8_t *keep, q_buf *o)
{
	const qnode *nd = &t->nodes[i];
	const qname *nm = &t->names[nd->name];
	int rc = q_buf_put(o, "{\"name\":", 8);
	rc = rc ? rc : q_buf_json_str(o, nm->function);
	rc = rc ? rc : json_values(t, o, nd->self, nd->total);
	if (!rc && t->diff)
		rc = q__sig_node_json(t, i, o);
	if (!rc && t->diff && i == 0)
		rc = q__sig_root_json(t, o);
	if (!rc && nm->kernel)
		rc = q_buf_put(o, ",\"kernel\":true", 14);
	if (!rc && nm->file) {
		rc = q_buf_put(o, ",\"file\":", 8);
		rc = rc ? rc : q_buf_json_str(o, nm->file);
	}
	if (!rc && (nm->file || nm->line))
		rc = q_buf_printf(o, ",\"line\":%" PRId64, nm->line);
	if (!rc && nm->lang) {
		rc = q_buf_put(o, ",\"lang\":", 8);
		rc = rc ? rc : q_buf_json_str(o, nm->lang);
	}
	size_t nc;
	uint32_t *cs = children(t, i, &nc);
	if (!cs)
		return -ENOMEM;
	rc = rc ? rc : q_buf_put(o, ",\"children\":[", 13);
	int64_t other[2] = {0, 0};
	bool first = true, have_other = false;
	for (size_t k = 0; k < nc && !rc; k++) {
		if (keep && !keep[cs[k]]) {
			other[0] += t->nodes[cs[k]].total[0];
			other[1] += t->nodes[cs[k]].total[1];
			have_other = true;
			continue;
		}
		if (!first)
			rc = q_buf_put(o, ",", 1);
		first = false;
		rc = rc ? rc : json_node(t, cs[k], keep, o);
	}
	if (!rc && have_other) {
		rc = q_buf_put(o, first ? "{\"name\":\"other\"" : ",{\"name\":\"other\"", first ? 15 : 16);
		rc = rc ? rc : json_values(t, o, other, other);
		if (!rc && t->diff)  /* a fold of many nodes is no unit tested */
			rc = q_buf_put(o, ",\"significant\":false,\"p\":null,\"q\":null", 38);
		rc = rc ? rc : q_buf_put(o, ",\"children\":[]}", 15);
	}
	free(cs);
	return rc ? rc : q_buf_put(o, "]}", 2);
}

static int cmp_rank(const void *a, const void *b, void *arg)
{
	const q_tree *rank_tree = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	int64_t wx = weight(rank_tree, x), wy = weight(rank_tree, y);
	if (wx != wy)
		return wx > wy ? -1 : 1;
	return x < y ? -1 : x > y;  /* parents were created before children */
}

int q_tree_json(const q_tree *t, size_t max_nodes, q_buf *out)
{
	uint8_t *keep = NULL;
	if (max_nodes && max_nodes < t->n) {
		/* a child never outweighs its parent and ties keep creation order,
		 * so the heaviest max_nodes form a tree rooted at "total" */
		uint32_t *ord = malloc(t->n * sizeof(*ord));
		keep = calloc(t->n, 1);
		if (!ord || !keep) {
			free(ord);
			free(keep);
			return -ENOMEM;
		}
		for (size_t i = 0; i < t->n; i++)
			ord[i] = (uint32_t)i;
		qsort_r(ord, t->n, sizeof(*ord), cmp_rank, (void *)t);
		for (size_t i = 0; i < max_nodes; i++)
			keep[ord[i]] = 1;
		free(ord);
	}
	int rc = json_node(t, 0, keep, out);
	free(keep);
	return rc;
}

/* Depth-first, carrying the path (root excluded) in a buffer. */
static int folded_node(const q_tree *t, uint32_t i, q_buf *path, q_buf *o)
{
	size_t mark = path->len;
	int rc = 0;
	if (i != 0) {
		if (path->len)
			rc = q_buf_put(path, ";", 1);
		/* ';' separates frames, so one inside a name becomes ':'; spaces
		 * may stay (readers split the count off at the last space) */
		for (const char *p = t->names[t->nodes[i].name].function; !rc && *p; p++)
			rc = q_buf_put(path, *p == ';' ? ":" : p, 1);
		if (!rc && t->names[t->nodes[i].name].kernel)
			rc = q_buf_put(path, "_[k]", 4);
	}
	const qnode *nd = &t->nodes[i];
	if (!rc && i != 0 && (nd->self[0] || nd->self[1])) {
		rc = q_buf_put(o, path->p, path->len);
		if (!rc && t->diff)
			rc = q_buf_printf(o, " %" PRId64 " %" PRId64 "\n", nd->self[0], nd->self[1]);
		else if (!rc)
			rc = q_buf_printf(o, " %" PRId64 "\n", nd->self[0]);
	}
	size_t nc;
	uint32_t *cs = rc ? NULL : children(t, i, &nc);
	if (!rc && !cs)
		rc = -ENOMEM;
	for (size_t k = 0; !rc && k < nc; k++)
		rc = folded_node(t, cs[k], path, o);
	free(cs);
	path->len = mark;
	if (path->p)
		path->p[mark] = 0;
	return rc;
}

int q_tree_folded(const q_tree *t, q_buf *out)
{
	q_buf path = {0};
	int rc = folded_node(t, 0, &path, out);
	q_buf_free(&path);
	return rc;
}

typedef struct toprow {
	uint32_t name;
	int64_t flat, cum;
} toprow;

static int cmp_top(const void *a, const void *b)
{
	const toprow *x = a, *y = b;
	if (x->flat != y->flat)
		return x->flat > y->flat ? -1 : 1;
	if (x->cum != y->cum)
		return x->cum > y->cum ? -1 : 1;
	return x->name < y->name ? -1 : x->name > y->name;
}

int q_top_json(const q_tree *t, size_t limit, q_buf *out)
{
	int rc = 0;
	toprow *rows = calloc(t->nnames, sizeof(*rows));
	uint32_t *onpath = calloc(t->nnames, sizeof(*onpath));
	if (!rows || !onpath) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < t->nnames; i++)
		rows[i].name = (uint32_t)i;
	/* flat: a node's self. cum: its total, unless the function is already
	 * on the path above (recursion must not count twice). An explicit
	 * stack walks the tree; onpath counts each function on the path. */
	{
		uint32_t *stack = malloc((t->n + 1) * sizeof(*stack));
		uint8_t *entered = calloc(t->n, 1);
		size_t sp = 0;
		if (!stack || !entered) {
			free(stack);
			free(entered);
			rc = -ENOMEM;
			goto out;
		}
		stack[sp++] = 0;
		while (sp) {
			uint32_t i = stack[sp - 1];
			const qnode *nd = &t->nodes[i];
			if (!entered[i]) {
				entered[i] = 1;
				if (i != 0) {
					uint32_t f = t->names[nd->name].func;
					rows[f].flat += nd->self[0];
					if (onpath[f]++ == 0)
						rows[f].cum += nd->total[0];
				}
				for (uint32_t c = nd->child; c != NONE; c = t->nodes[c].next)
					stack[sp++] = c;
			} else {
				sp--;
				if (i != 0)
					onpath[t->names[nd->name].func]--;
			}
		}
		free(stack);
		free(entered);
	}
	/* the root's name is not a function */
	rows[t->nodes[0].name].flat = rows[t->nodes[0].name].cum = 0;
	qsort(rows, t->nnames, sizeof(*rows), cmp_top);
	int64_t total = t->nodes[0].total[0];
	rc = q_buf_printf(out, "{\"total\":%" PRId64 ",\"rows\":[", total);
	size_t emitted = 0;
	for (size_t i = 0; !rc && i < t->nnames && (!limit || emitted < limit); i++) {
		const toprow *r = &rows[i];
		if (r->cum == 0 && r->flat == 0)
			continue;
		const qname *nm = &t->names[r->name];
		if (emitted++)
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
	free(rows);
	free(onpath);
	return rc;
}
