/* clickhouse.c - the store in ClickHouse (storage.h's second backend):
 * samples, series and labels, stacks and locations, the symbol cache and
 * the debug-info files in tables of one ClickHouse node or a cluster of
 * shards, so any number of servers share them. docs/architecture.md
 * ("Two backends") says how it differs from the embedded store and why.
 *
 * Tables (schema version ST__CH_SCHEMA; with a cluster each is NAME_local
 * on every node plus a Distributed table NAME over them):
 *   samples      (ts, series_id, stack_id, value, batch)  MergeTree, a
 *                partition per day, ordered by (series_id, ts, stack_id);
 *                sharded by stack_id
 *   stacks       (stack_id, locations)  sharded by stack_id, beside its rows
 *   locations    (location_id, kind, build_id, object_name, obj_offset, name,
 *                file, line, lang)
 *   series       (series_id, type, label_names, label_values)  labels as two arrays
 *   series_span  first and last row time per series, a materialized view
 *                of samples (which series have rows in a range)
 *   batches      per batch and shard one stack ID, a materialized view of
 *                samples (a retried batch is stored once)
 *   symbols      the symbolizer's answers, versioned (forgetting is a newer
 *                tombstone)
 *   debuginfo    files in parts of 1 MiB
 *   smolder_schema  the schema version, per node
 * Not here: HTTP (ch_http.c). */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "base/text.h"
#include "storage/backend.h"
#include "storage/ch.h"

/* The tables' layout this code reads and writes. A database created with
 * another is refused at open, naming both. */
#define ST__CH_SCHEMA 2
#define DAY_NS INT64_C(86400000000000)
#define FILE_PART (1u << 20)            /* bytes per debuginfo row */
#define FILE_MAX ((size_t)288 << 20)    /* a file kept at most (the server's
                                         * limit is 256 MiB) */
/* A forgotten symbol's tombstone outranks answers stored up to this long
 * after it: other servers learn of the new file at their next pass and
 * may store answers from the old one until then (docs/architecture.md). */
#define FORGET_GRACE_NS (INT64_C(120) * 1000000000)
#define CACHE_MAX (1u << 20)            /* entries per read cache */
#define KNOWN_MAX (4u << 20)            /* IDs remembered as stored */
#define SYM_FLUSH 1024                  /* symbol answers per insert */
#define MAX_ANSWER ((size_t)1 << 30)    /* bytes of one answer at most */
/* How long a file or a symbol row found absent is taken as absent without
 * asking again, in ticks of MISS_TICK (the maps keep 32-bit ticks). */
#define MISS_NS (INT64_C(5) * 1000000000)
#define MISS_TICK (INT64_C(100) * 1000000)
#define MISS_MAX (1u << 16)             /* file names remembered at most */

typedef struct cache {
	base_map map;        /* id -> index into v */
	void **v;
	size_t n, cap;
} cache;

/* One batch waiting for the insert that holds it. */
typedef struct item {
	struct item *next;
	base_buf series, locations, stacks, samples;   /* RowBinary rows */
	uint64_t *new_series, *new_stacks;   /* to remember once stored */
	uint32_t nnew_series, nnew_stacks;
	uint32_t nsamples;
	uint64_t batch;
	int64_t mint, maxt;
	bool done;
	int rc;
	base_err err;
} item;

typedef struct sym_pending {
	int64_t loc;
	base_buf row;        /* the symbols row as inserted */
	st_symbol *syms;    /* the same for reads before the insert */
	size_t n;
} sym_pending;

typedef struct st__ch {
	st__handle h;
	st__ch_client cl;
	st_ch_options opt;
	char cluster[128];
	bool dist;          /* a cluster: NAME_local tables and Distributed ones */
	char cache_dir[PATH_MAX];
	bool own_cache;     /* a temporary directory, removed at close */
	uint32_t *slot_shard;   /* Distributed's rule: key % nslots -> shard */
	uint32_t nslots;

	pthread_mutex_t kmu;    /* known_series, known_stacks */
	base_map known_series, known_stacks;

	pthread_rwlock_t cmu;   /* the read caches */
	cache labels;       /* series_id -> st_label[] (type first), one allocation */
	cache stacks;       /* stack_id -> uint32_t n then int64_t locations[n] */
	cache locs;         /* location_id -> st_frame_info, one allocation */
	cache symc;         /* location_id -> symchain: the symbol cache's rows */
	base_map nosyms;     /* location_id -> MISS_TICK when it had no row; 0:
	                     * has one since (both under cmu) */

	pthread_mutex_t gmu;    /* the insert group */
	pthread_cond_t gcv;
	item *pend, *pend_tail;
	bool inserting;

	pthread_mutex_t smu;    /* symbol answers not inserted yet */
	sym_pending *syms;
	size_t nsyms, syms_cap;

	pthread_mutex_t fmu;    /* names ClickHouse lacked, and when asked */
	base_map miss;       /* XXH3(name) -> MISS_TICK since t0 when last
	                     * found absent; 0: found since */
	int64_t t0;

	atomic_uint_fast64_t inserts, insert_rows, insert_batches, dedup_rows, requests_failed;
	atomic_uint_fast64_t reads[ST_MAX_ROLLUPS + 1];   /* sample queries by level */

	/* --max-series: how many series ClickHouse held when last counted
	 * (series_count_at, CLOCK_MONOTONIC; 0 never) plus those this server
	 * stored since (both under kmu) */
	uint64_t series_count;
	int64_t series_count_at;
} st__ch;

/* Now in MISS_TICKs since open, from 1 (0 marks "found since"). */
static uint32_t tick_now(const st__ch *ch)
{
	return (uint32_t)((base_monotonic_ns() - ch->t0) / MISS_TICK + 1);
}

static int bprintf(base_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bprintf(base_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || base_buf_reserve(b, (size_t)n + 1))
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* The text of b as a C string (b keeps a NUL past len). */
static const char *bstr(base_buf *b)
{
	if (base_buf_reserve(b, 1))
		return NULL;
	b->data[b->len] = 0;
	return (const char *)b->data;
}

/* ---- read caches ---- */

static int cache_init(cache *c)
{
	memset(c, 0, sizeof(*c));
	return base_map_init(&c->map, 1024);
}

static void cache_clear(cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i]);
	c->n = 0;
	base_map_clear(&c->map);
}

static void cache_free(cache *c)
{
	cache_clear(c);
	free(c->v);
	base_map_free(&c->map);
}

/* Caller holds cmu (read). */
static void *cache_get(const cache *c, uint64_t id)
{
	uint32_t i = base_map_get(&c->map, id);
	return i == BASE_MAP_NONE ? NULL : c->v[i];
}

/* Takes p (freed here on failure too). Caller holds cmu (write). Stored
 * data never changes, so a full cache simply starts over. */
static int cache_put(cache *c, uint64_t id, void *p)
{
	if (base_map_get(&c->map, id) != BASE_MAP_NONE) {
		free(p);
		return 0;
	}
	if (c->n >= CACHE_MAX)
		cache_clear(c);
	if (base_grow(&c->v, &c->cap, c->n + 1, sizeof(*c->v)) ||
	    base_map_put(&c->map, id, (uint32_t)c->n)) {
		free(p);
		return -ENOMEM;
	}
	c->v[c->n++] = p;
	return 0;
}

/* ---- IDs known to be stored ---- */

static bool known(st__ch *ch, base_map *m, uint64_t id)
{
	pthread_mutex_lock(&ch->kmu);
	bool k = base_map_get(m, id) != BASE_MAP_NONE;
	pthread_mutex_unlock(&ch->kmu);
	return k;
}

static void remember(st__ch *ch, base_map *m, const uint64_t *ids, size_t n)
{
	pthread_mutex_lock(&ch->kmu);
	if (m->len + n > KNOWN_MAX)
		base_map_clear(m);
	for (size_t i = 0; i < n; i++)
		if (base_map_put(m, ids[i], 1))
			break;   /* out of memory: asked again later, no harm */
	pthread_mutex_unlock(&ch->kmu);
}

/* ---- requests ---- */

/* A read: sql on the front node, the answer into out; ext, when given,
 * is the external table "sel" of 64-bit IDs of type ext_type ("UInt64";
 * "Int64" for location IDs: an Int64 column is not found IN a UInt64 set). */
static int ask_ids_until(st__ch *ch, const char *sql, const char *settings,
                         const base_buf *ext, const char *ext_type, int64_t deadline_ns,
                         base_buf *out, base_err *err)
{
	char structure[32];
	st__ch_req r = {.node = -1, .sql = sql, .settings = settings, .max_out = MAX_ANSWER,
	                .deadline_ns = deadline_ns};
	if (ext) {
		snprintf(structure, sizeof(structure), "id %s", ext_type);
		r.ext = ext->data ? (const void *)ext->data : "";
		r.ext_len = ext->len;
		r.ext_structure = structure;
	}
	int rc = st__ch_do(&ch->cl, &r, out, err);
	if (rc)
		atomic_fetch_add(&ch->requests_failed, 1);
	return rc;
}

static int ask_ids(st__ch *ch, const char *sql, const char *settings, const base_buf *ext,
                   const char *ext_type, base_buf *out, base_err *err)
{
	return ask_ids_until(ch, sql, settings, ext, ext_type, 0, out, err);
}

static int ask(st__ch *ch, const char *sql, const char *settings, const base_buf *ext,
               base_buf *out, base_err *err)
{
	return ask_ids_until(ch, sql, settings, ext, "UInt64", 0, out, err);
}

/* A read that stops at a query's deadline (st_select_until): -ETIMEDOUT. */
static int ask_until(st__ch *ch, const char *sql, const char *settings, const base_buf *ext,
                     int64_t deadline_ns, base_buf *out, base_err *err)
{
	return ask_ids_until(ch, sql, settings, ext, "UInt64", deadline_ns, out, err);
}

/* Settings of reads: a cluster's GROUP BY stack is complete on each shard
 * (a stack's rows are all on one), so the initiator only concatenates. */
#define NO_MERGE "distributed_group_by_no_merge=1"

/* An insert of rows into table (the Distributed one with a cluster),
 * acknowledged once every shard wrote its part (insert_distributed_sync). */
static int insert(st__ch *ch, const char *table, const char *cols, const base_buf *rows,
                  base_err *err)
{
	char sql[512];
	snprintf(sql, sizeof(sql), "INSERT INTO %s (%s) FORMAT RowBinary", table, cols);
	st__ch_req r = {.node = -1, .sql = sql, .data = rows->data ? (const void *)rows->data : "",
	                .len = rows->len, .max_out = 1 << 20,
	                .settings = ch->dist ? "insert_distributed_sync=1" : NULL};
	int rc = st__ch_do(&ch->cl, &r, NULL, err);
	if (rc)
		atomic_fetch_add(&ch->requests_failed, 1);
	return rc;
}

/* DDL and maintenance on one node. */
static int on_node(st__ch *ch, size_t node, const char *sql, base_buf *out, base_err *err)
{
	st__ch_req r = {.node = (int)node, .sql = sql, .max_out = 16 << 20};
	return st__ch_do(&ch->cl, &r, out, err);
}

/* The same outside the database (which may not exist yet): system tables
 * and CREATE DATABASE. */
static int on_node_sys(st__ch *ch, size_t node, const char *sql, base_buf *out, base_err *err)
{
	st__ch_req r = {.node = (int)node, .sql = sql, .max_out = 16 << 20, .no_database = true};
	return st__ch_do(&ch->cl, &r, out, err);
}

/* ---- answers ---- */

/* Copies s[0..n) NUL-terminated into the arena at *sp. */
static char *put_str(char **sp, const char *s, size_t n)
{
	char *d = *sp;
	memcpy(d, s, n);
	d[n] = 0;
	*sp += n + 1;
	return d;
}

int st__ch_parse_series(const uint8_t *p, size_t n, st__ch_series_fn fn, void *arg)
{
	st__rb r = {p, p + n};
	int rc = 0;
	while (!rc && r.p < r.end) {
		uint64_t id, nn, nv;
		const char *type, *names[ST_MAX_LABELS], *vals[ST_MAX_LABELS];
		size_t tl, nl[ST_MAX_LABELS], vl[ST_MAX_LABELS];
		if (st__rb_u64(&r, &id) || st__rb_text(&r, &type, &tl, ST_MAX_TYPE_LEN) ||
		    st__rb_count(&r, &nn, ST_MAX_LABELS))
			return -EBADMSG;
		for (uint64_t i = 0; i < nn; i++)
			if (st__rb_text(&r, &names[i], &nl[i], ST_MAX_LABEL_NAME_LEN))
				return -EBADMSG;
		if (st__rb_count(&r, &nv, ST_MAX_LABELS) || nv != nn)
			return -EBADMSG;
		for (uint64_t i = 0; i < nv; i++)
			if (st__rb_text(&r, &vals[i], &vl[i], ST_MAX_LABEL_VALUE_LEN))
				return -EBADMSG;
		st_label l[ST_MAX_LABELS + 1];
		char text[ST_MAX_TYPE_LEN + sizeof(ST_TYPE_LABEL) + 1 +
		          ST_MAX_LABELS * (ST_MAX_LABEL_NAME_LEN + ST_MAX_LABEL_VALUE_LEN + 2)];
		char *sp = text;
		l[0].name = put_str(&sp, ST_TYPE_LABEL, strlen(ST_TYPE_LABEL));
		l[0].value = put_str(&sp, type, tl);
		for (uint64_t i = 0; i < nn; i++) {
			l[1 + i].name = put_str(&sp, names[i], nl[i]);
			l[1 + i].value = put_str(&sp, vals[i], vl[i]);
		}
		rc = fn(arg, id, l, (uint32_t)nn + 1);
	}
	return rc;
}

int st__ch_parse_stacks(const uint8_t *p, size_t n, st__ch_stack_fn fn, void *arg)
{
	st__rb r = {p, p + n};
	int rc = 0;
	while (!rc && r.p < r.end) {
		uint64_t id, nl;
		int64_t locs[ST_MAX_FRAMES];
		if (st__rb_u64(&r, &id) || st__rb_count(&r, &nl, ST_MAX_FRAMES))
			return -EBADMSG;
		for (uint64_t i = 0; i < nl; i++)
			if (st__rb_i64(&r, &locs[i]))
				return -EBADMSG;
		rc = fn(arg, id, locs, (size_t)nl);
	}
	return rc;
}

int st__ch_parse_locations(const uint8_t *p, size_t n, st__ch_location_fn fn, void *arg)
{
	st__rb r = {p, p + n};
	int rc = 0;
	while (!rc && r.p < r.end) {
		int64_t id;
		uint8_t kind;
		uint64_t off;
		uint32_t line;
		const char *bid, *obj, *name, *file, *lang;
		size_t bl, ol, nl, fl, ll;
		if (st__rb_i64(&r, &id) || st__rb_u8(&r, &kind) ||
		    st__rb_str(&r, &bid, &bl, ST_MAX_BUILD_ID_LEN) ||
		    st__rb_text(&r, &obj, &ol, ST_MAX_OBJECT_NAME_LEN) || st__rb_u64(&r, &off) ||
		    st__rb_text(&r, &name, &nl, ST_MAX_SYMBOL_LEN) ||
		    st__rb_text(&r, &file, &fl, ST_MAX_FILE_LEN) || st__rb_u32(&r, &line) ||
		    st__rb_text(&r, &lang, &ll, ST_MAX_LANG_LEN))
			return -EBADMSG;
		if (kind > ST_FRAME_NAMED || line > ST_MAX_LINE)
			return -EBADMSG;
		/* the embedded store's shape: user frames carry an object name
		 * and build ID, the others a name, named ones their place (NULL
		 * and 0 where they have none) */
		bool user = kind == ST_FRAME_USER, named = kind == ST_FRAME_NAMED;
		if (!named)
			fl = ll = line = 0;
		st_frame_info *fi = calloc(1, sizeof(*fi) + (user ? bl + ol + 1 : nl + 1) +
		                                  (fl ? fl + 1 : 0) + (ll ? ll + 1 : 0));
		if (!fi)
			return -ENOMEM;
		char *sp = (char *)(fi + 1);
		fi->kind = kind;
		fi->location_id = id;
		if (user) {
			fi->offset = off;
			fi->object_name = put_str(&sp, obj, ol);
			fi->build_id = memcpy(sp, bid, bl);
			fi->build_id_len = (uint32_t)bl;
		} else {
			fi->name = put_str(&sp, name, nl);
			fi->file = fl ? put_str(&sp, file, fl) : NULL;
			fi->lang = ll ? put_str(&sp, lang, ll) : NULL;
			fi->line = line;
		}
		rc = fn(arg, fi);
	}
	return rc;
}

int st__ch_parse_symbols(const uint8_t *p, size_t n, st_symbols_fn fn, void *arg)
{
	st__rb r = {p, p + n};
	int rc = 0;
	while (!rc && r.p < r.end) {
		int64_t loc;
		uint64_t nf, nfile, nline;
		const char *fs[ST_MAX_INLINE], *files[ST_MAX_INLINE];
		size_t fl[ST_MAX_INLINE], filel[ST_MAX_INLINE];
		int64_t lines[ST_MAX_INLINE];
		if (st__rb_i64(&r, &loc) || st__rb_count(&r, &nf, ST_MAX_INLINE))
			return -EBADMSG;
		for (uint64_t i = 0; i < nf; i++)
			if (st__rb_text(&r, &fs[i], &fl[i], 4096))
				return -EBADMSG;
		if (st__rb_count(&r, &nfile, ST_MAX_INLINE) || nfile != nf)
			return -EBADMSG;
		for (uint64_t i = 0; i < nf; i++)
			if (st__rb_text(&r, &files[i], &filel[i], 4096))
				return -EBADMSG;
		if (st__rb_count(&r, &nline, ST_MAX_INLINE) || nline != nf)
			return -EBADMSG;
		for (uint64_t i = 0; i < nf; i++)
			if (st__rb_i64(&r, &lines[i]))
				return -EBADMSG;
		if (nf == 0)
			return -EBADMSG;   /* a stored chain has a frame at least */
		st_symbol syms[ST_MAX_INLINE];
		char *text = malloc(ST_MAX_INLINE * 2 * 4097);
		if (!text)
			return -ENOMEM;
		char *sp = text;
		for (uint64_t i = 0; i < nf; i++) {
			syms[i].function = put_str(&sp, fs[i], fl[i]);
			/* "" stands for a file the symbolizer did not know */
			syms[i].file = filel[i] ? put_str(&sp, files[i], filel[i]) : NULL;
			syms[i].line = lines[i];
		}
		rc = fn(arg, loc, syms, (size_t)nf);
		free(text);
	}
	return rc;
}

/* ---- IDs ---- */

/* A location's ID: XXH3 of what makes it one (kind and build ID and
 * offset, or kind and name), the same on every server, as the embedded
 * store's SQLite row IDs are not. 63 bits, never 0. */
static int64_t location_id(const st_batch *b, const st_frame *f)
{
	XXH3_state_t st;
	uint8_t k = (uint8_t)f->kind;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, &k, 1);
	if (f->kind == ST_FRAME_USER) {
		const st_object *o = &b->objects[f->object];
		uint8_t off[8];
		st__put_u64(off, f->offset);
		XXH3_64bits_update(&st, o->build_id, o->build_id_len);
		XXH3_64bits_update(&st, off, 8);
	} else {
		XXH3_64bits_update(&st, f->name, strlen(f->name));
		/* a named frame's place makes another location; frames without
		 * one keep the IDs they had before frames carried it */
		if (f->kind == ST_FRAME_NAMED && st__frame_has_source(f)) {
			const char *l = f->lang ? f->lang : "", *fl = f->file ? f->file : "";
			uint8_t line[4];
			st__put_u32(line, f->line);
			/* the name's NUL first: "ab"+"c" and "a"+"bc" differ */
			XXH3_64bits_update(&st, "", 1);
			XXH3_64bits_update(&st, fl, strlen(fl) + 1);
			XXH3_64bits_update(&st, l, strlen(l) + 1);
			XXH3_64bits_update(&st, line, 4);
		}
	}
	int64_t id = (int64_t)(XXH3_64bits_digest(&st) & (uint64_t)INT64_MAX);
	return id ? id : 1;
}

/* The shard a stack's rows go to (Distributed: the sharding key modulo
 * the shards' total weight, each shard taking weight slots in order). */
static uint32_t shard_of(const st__ch *ch, uint64_t stack_id)
{
	return ch->nslots ? ch->slot_shard[stack_id % ch->nslots] : 0;
}

/* ---- ingest ---- */

static void item_free(item *it)
{
	if (!it)
		return;
	base_buf_free(&it->series);
	base_buf_free(&it->locations);
	base_buf_free(&it->stacks);
	base_buf_free(&it->samples);
	free(it->new_series);
	free(it->new_stacks);
	free(it);
}

#define SAMPLE_ROW 40   /* ts, series_id, stack_id, value, batch */

/* The rows of b that ClickHouse does not have yet, as RowBinary, into it. */
static int item_encode(st__ch *ch, const st_batch *b, const uint64_t *sids, item *it)
{
	int rc = 0;
	it->new_series = malloc((b->nseries + 1) * sizeof(uint64_t));
	it->new_stacks = malloc((b->nstacks + 1) * sizeof(uint64_t));
	if (!it->new_series || !it->new_stacks)
		return -ENOMEM;
	for (uint32_t i = 0; i < b->nseries && !rc; i++) {
		const st_series_def *s = &b->series[i];
		bool dup = false;
		for (uint32_t j = 0; j < it->nnew_series && !dup; j++)
			dup = it->new_series[j] == sids[i];
		if (dup || known(ch, &ch->known_series, sids[i]))
			continue;
		st_label l[ST_MAX_LABELS];
		st__labels_sorted(s->labels, s->nlabels, l);
		it->new_series[it->nnew_series++] = sids[i];
		rc = st__enc_u64(&it->series, sids[i]);
		rc = rc ? rc : st__rb_put_str(&it->series, s->type, strlen(s->type));
		rc = rc ? rc : st__enc_varint(&it->series, s->nlabels);
		for (uint32_t k = 0; k < s->nlabels && !rc; k++)
			rc = st__rb_put_str(&it->series, l[k].name, strlen(l[k].name));
		rc = rc ? rc : st__enc_varint(&it->series, s->nlabels);
		for (uint32_t k = 0; k < s->nlabels && !rc; k++)
			rc = st__rb_put_str(&it->series, l[k].value, strlen(l[k].value));
	}
	for (uint32_t i = 0; i < b->nstacks && !rc; i++) {
		const st_stack_def *s = &b->stacks[i];
		bool dup = false;
		for (uint32_t j = it->nnew_stacks; j > 0 && !dup && j + 64 > it->nnew_stacks; j--)
			dup = it->new_stacks[j - 1] == s->id;
		if (dup || known(ch, &ch->known_stacks, s->id))
			continue;
		it->new_stacks[it->nnew_stacks++] = s->id;
		rc = st__enc_u64(&it->stacks, s->id);
		rc = rc ? rc : st__enc_varint(&it->stacks, s->nframes);
		for (uint32_t k = 0; k < s->nframes && !rc; k++) {
			const st_frame *f = &s->frames[k];
			int64_t loc = location_id(b, f);
			rc = st__enc_u64(&it->stacks, (uint64_t)loc);
			/* a location may repeat across stacks: ClickHouse keeps one
			 * (ReplacingMergeTree), reads take any */
			rc = rc ? rc : st__enc_u64(&it->locations, (uint64_t)loc);
			rc = rc ? rc : st__rb_put_u8(&it->locations, (uint8_t)f->kind);
			if (f->kind == ST_FRAME_USER) {
				const st_object *o = &b->objects[f->object];
				const char *on = o->name ? o->name : "";
				rc = rc ? rc : st__rb_put_str(&it->locations, (const char *)o->build_id,
				                              o->build_id_len);
				rc = rc ? rc : st__rb_put_str(&it->locations, on, strlen(on));
				rc = rc ? rc : st__enc_u64(&it->locations, f->offset);
				rc = rc ? rc : st__rb_put_str(&it->locations, "", 0);
			} else {
				rc = rc ? rc : st__rb_put_str(&it->locations, "", 0);
				rc = rc ? rc : st__rb_put_str(&it->locations, "", 0);
				rc = rc ? rc : st__enc_u64(&it->locations, 0);
				rc = rc ? rc : st__rb_put_str(&it->locations, f->name, strlen(f->name));
			}
			/* file, line, lang: a named frame's place, "" and 0 for none */
			bool src = f->kind == ST_FRAME_NAMED;
			const char *fl = src && f->file ? f->file : "";
			const char *lg = src && f->lang ? f->lang : "";
			rc = rc ? rc : st__rb_put_str(&it->locations, fl, strlen(fl));
			rc = rc ? rc : st__enc_u32(&it->locations, src ? f->line : 0);
			rc = rc ? rc : st__rb_put_str(&it->locations, lg, strlen(lg));
		}
	}
	/* the batch's key: its rows, so a retry of the same rows (through
	 * this server or another) is recognized and stored once */
	XXH3_state_t hs;
	XXH3_64bits_reset(&hs);
	it->mint = INT64_MAX;
	it->maxt = INT64_MIN;
	for (uint32_t i = 0; i < b->nsamples && !rc; i++) {
		const st_sample *s = &b->samples[i];
		uint8_t row[32];
		st__put_u64(row, (uint64_t)s->ts_ns);
		st__put_u64(row + 8, sids[s->series]);
		st__put_u64(row + 16, s->stack_id);
		st__put_u64(row + 24, (uint64_t)s->value);
		XXH3_64bits_update(&hs, row, sizeof(row));
		rc = base_buf_put(&it->samples, row, sizeof(row));
		rc = rc ? rc : st__enc_u64(&it->samples, 0);   /* the key, set below */
		if (s->ts_ns < it->mint)
			it->mint = s->ts_ns;
		if (s->ts_ns > it->maxt)
			it->maxt = s->ts_ns;
	}
	it->batch = XXH3_64bits_digest(&hs);
	for (size_t off = 32; !rc && off < it->samples.len; off += SAMPLE_ROW)
		st__put_u64((uint8_t *)it->samples.data + off, it->batch);
	it->nsamples = b->nsamples;
	return rc;
}

/* Stacks that samples name but b does not define, and that ClickHouse is
 * not known to hold: asked for in one query. -ENOENT with err naming the
 * first it lacks (the sender resends with frames; nothing is stored). */
static int check_stacks(st__ch *ch, const st_batch *b, base_err *err)
{
	base_map inb = {0}, asked = {0};
	base_buf ext = {0}, out = {0};
	int rc = base_map_init(&inb, b->nstacks);
	for (uint32_t j = 0; j < b->nstacks && !rc; j++)
		rc = base_map_put(&inb, b->stacks[j].id, j);
	rc = rc ? rc : base_map_init(&asked, 64);
	for (uint32_t i = 0; i < b->nsamples && !rc; i++) {
		uint64_t id = b->samples[i].stack_id;
		if (base_map_get(&inb, id) != BASE_MAP_NONE || base_map_get(&asked, id) != BASE_MAP_NONE ||
		    known(ch, &ch->known_stacks, id))
			continue;
		rc = base_map_put(&asked, id, i);
		rc = rc ? rc : st__enc_u64(&ext, id);
	}
	if (rc || !ext.len)
		goto out;
	if ((rc = ask(ch, "SELECT DISTINCT stack_id FROM stacks WHERE stack_id IN sel "
	              "FORMAT RowBinary", NULL, &ext, &out, err)))
		goto out;
	for (size_t off = 0; off + 8 <= out.len; off += 8) {
		uint64_t id = st__get_u64((uint8_t *)out.data + off);
		remember(ch, &ch->known_stacks, &id, 1);
		if (base_map_get(&asked, id) != BASE_MAP_NONE)
			base_map_put(&asked, id, BASE_MAP_NONE - 1);
	}
	for (size_t k = 0; k < asked.cap && !rc; k++) {
		const base_map_slot *sl = &asked.slots[k];
		if (sl->val == BASE_MAP_NONE || sl->val == BASE_MAP_NONE - 1)
			continue;
		/* -ENOENT, not -EINVAL, as the embedded store: the agent's stack
		 * cache is out of step; the server answers 409 */
		rc = base_fail(err, -ENOENT, "sample %u: stack %016" PRIx64 " is unknown; send its "
		              "frames in the batch", sl->val, sl->key);
	}
out:
	base_map_free(&inb);
	base_map_free(&asked);
	base_buf_free(&ext);
	base_buf_free(&out);
	return rc;
}

/* Concatenates one buffer of every item in a group. */
static int gather(item *g, size_t off, base_buf *out)
{
	int rc = 0;
	for (item *it = g; it && !rc; it = it->next) {
		base_buf *b = (base_buf *)((char *)it + off);
		if (b->len)
			rc = base_buf_put(out, b->data, b->len);
	}
	return rc;
}

/* Sample rows of the group that ClickHouse already holds: a batch whose
 * insert reached some shards (the server died after sending it, a shard
 * failed at commit) and came again. A shard writes its part of an insert
 * as one block, so per (batch, shard) the rows are all there or none; the
 * batches view records one stack ID per batch and shard, and a row is
 * left out when its batch is recorded on its stack's shard. */
static int dedup(st__ch *ch, item *g, base_buf *rows, base_err *err)
{
	base_buf ext = {0}, out = {0}, sql = {0};
	int rc = 0;
	int64_t mint = INT64_MAX, maxt = INT64_MIN;
	for (item *it = g; it && !rc; it = it->next) {
		if (!it->nsamples)
			continue;
		rc = st__enc_u64(&ext, it->batch);
		if (it->mint < mint)
			mint = it->mint;
		if (it->maxt > maxt)
			maxt = it->maxt;
	}
	if (rc || !ext.len)
		goto out;
	/* the time range lets ClickHouse skip other days' partitions */
	if ((rc = bprintf(&sql, "SELECT batch, stack_id FROM batches WHERE batch IN sel AND "
	                  "ts >= %" PRId64 " AND ts <= %" PRId64 " FORMAT RowBinary",
	                  mint - DAY_NS, maxt)) ||
	    (rc = ask(ch, bstr(&sql), NULL, &ext, &out, err)))
		goto out;
	if (!out.len)
		goto out;
	size_t keep = 0, dropped = 0;
	for (size_t off = 0; off + SAMPLE_ROW <= rows->len; off += SAMPLE_ROW) {
		uint64_t stack = st__get_u64((uint8_t *)rows->data + off + 16);
		uint64_t batch = st__get_u64((uint8_t *)rows->data + off + 32);
		bool have = false;
		for (size_t h = 0; h + 16 <= out.len && !have; h += 16)
			have = st__get_u64((uint8_t *)out.data + h) == batch &&
			       shard_of(ch, st__get_u64((uint8_t *)out.data + h + 8)) == shard_of(ch, stack);
		if (have) {
			dropped++;
			continue;
		}
		memmove(rows->data + keep, rows->data + off, SAMPLE_ROW);
		keep += SAMPLE_ROW;
	}
	rows->len = keep;
	atomic_fetch_add(&ch->dedup_rows, dropped);
	if (dropped)
		fprintf(stderr, "smolder storage: %zu rows of a batch sent again were stored before; "
		        "not storing them twice\n", dropped);
out:
	base_buf_free(&ext);
	base_buf_free(&out);
	base_buf_free(&sql);
	return rc;
}

/* Inserts a group: series, then locations and stacks, then the sample
 * rows, so that no row names a series or stack ClickHouse lacks. */
static int insert_group(st__ch *ch, item *g, base_err *err)
{
	base_buf b = {0};
	int rc = gather(g, offsetof(item, series), &b);
	if (!rc && b.len)
		rc = insert(ch, "series", "series_id, type, label_names, label_values", &b, err);
	b.len = 0;
	rc = rc ? rc : gather(g, offsetof(item, locations), &b);
	if (!rc && b.len)
		rc = insert(ch, "locations", "location_id, kind, build_id, object_name, obj_offset, "
		            "name, file, line, lang", &b, err);
	b.len = 0;
	rc = rc ? rc : gather(g, offsetof(item, stacks), &b);
	if (!rc && b.len)
		rc = insert(ch, "stacks", "stack_id, locations", &b, err);
	b.len = 0;
	rc = rc ? rc : gather(g, offsetof(item, samples), &b);
	rc = rc ? rc : dedup(ch, g, &b, err);
	if (!rc && b.len) {
		rc = insert(ch, "samples", "ts, series_id, stack_id, value, batch", &b, err);
		if (!rc) {
			atomic_fetch_add(&ch->inserts, 1);
			atomic_fetch_add(&ch->insert_rows, b.len / SAMPLE_ROW);
		}
	}
	base_buf_free(&b);
	return rc;
}

/* Whether batch x's key is in the queue from g up to x: the same batch
 * twice (a client that sent it again before the first got its answer)
 * goes in the next insert, where dedup() finds the first one's rows. */
static bool key_in(const item *g, const item *x)
{
	for (; g != x; g = g->next)
		if (x->nsamples && g->nsamples && g->batch == x->batch)
			return true;
	return false;
}

/* Group commit: the first caller to find no insert running takes every
 * waiting batch (up to max_group_rows rows) into one insert per table;
 * batches that arrive meanwhile wait for the next. Each caller returns
 * once the insert holding its batch is acknowledged, with its outcome. */
static int commit(st__ch *ch, item *it, base_err *err)
{
	pthread_mutex_lock(&ch->gmu);
	if (ch->pend_tail)
		ch->pend_tail->next = it;
	else
		ch->pend = it;
	ch->pend_tail = it;
	while (!it->done) {
		if (ch->inserting) {
			pthread_cond_wait(&ch->gcv, &ch->gmu);
			continue;
		}
		item *g = ch->pend, *last = g;
		size_t rows = last->nsamples;
		while (last->next && rows + last->next->nsamples <= ch->opt.max_group_rows &&
		       !key_in(g, last->next)) {
			last = last->next;
			rows += last->nsamples;
		}
		ch->pend = last->next;
		if (!ch->pend)
			ch->pend_tail = NULL;
		last->next = NULL;
		ch->inserting = true;
		pthread_mutex_unlock(&ch->gmu);
		/* one insert at a time: side by side (tried, 4 at once) they only
		 * made smaller parts on this 2-core machine, and slower ingest */

		base_err gerr = {0};
		int rc = insert_group(ch, g, &gerr);
		for (item *x = g; x && !rc; x = x->next) {
			remember(ch, &ch->known_series, x->new_series, x->nnew_series);
			remember(ch, &ch->known_stacks, x->new_stacks, x->nnew_stacks);
			pthread_mutex_lock(&ch->kmu);
			ch->series_count += x->nnew_series;
			pthread_mutex_unlock(&ch->kmu);
		}
		pthread_mutex_lock(&ch->gmu);
		size_t n = 0;
		for (item *x = g; x; x = x->next, n++) {
			x->rc = rc;
			x->err = gerr;
			x->done = true;
		}
		atomic_fetch_add(&ch->insert_batches, n);
		ch->inserting = false;
		pthread_cond_broadcast(&ch->gcv);
	}
	pthread_mutex_unlock(&ch->gmu);
	if (it->rc && err)
		*err = it->err;
	return it->rc;
}

/* How long a count of ClickHouse's series stands for --max-series. */
#define SERIES_COUNT_NS (INT64_C(10) * 1000000000)

/* The series of b that ClickHouse lacks, against max_series: a count of
 * its series at most SERIES_COUNT_NS old plus those this server stored
 * since, as the embedded store's count, only asked for when the batch
 * names a series this server does not know to be stored. */
static int check_series_limit(st__ch *ch, const st_batch *b, const uint64_t *sids, base_err *err)
{
	base_buf fresh = {0}, ans = {0};
	base_map seen = {0};
	int rc = 0;
	if (!ch->opt.max_series)
		return 0;
	for (uint32_t i = 0; i < b->nseries && !rc; i++) {
		if (known(ch, &ch->known_series, sids[i]))
			continue;
		if (!seen.cap && (rc = base_map_init(&seen, 64)))
			break;
		if (base_map_get(&seen, sids[i]) != BASE_MAP_NONE)
			continue;
		rc = base_map_put(&seen, sids[i], 1);
		rc = rc ? rc : st__enc_u64(&fresh, sids[i]);
	}
	if (rc || !fresh.len)
		goto out;
	pthread_mutex_lock(&ch->kmu);
	bool stale = !ch->series_count_at || base_monotonic_ns() - ch->series_count_at > SERIES_COUNT_NS;
	pthread_mutex_unlock(&ch->kmu);
	if (stale) {
		if ((rc = ask(ch, "SELECT uniqExact(series_id) FROM series FORMAT RowBinary", NULL,
		              NULL, &ans, err)))
			goto out;
		if (ans.len != 8) {
			rc = base_fail(err, -EBADMSG, "ClickHouse's count of series does not decode");
			goto out;
		}
		pthread_mutex_lock(&ch->kmu);
		ch->series_count = st__get_u64((uint8_t *)ans.data);
		ch->series_count_at = base_monotonic_ns();
		pthread_mutex_unlock(&ch->kmu);
	}
	pthread_mutex_lock(&ch->kmu);
	uint64_t have = ch->series_count;
	pthread_mutex_unlock(&ch->kmu);
	uint64_t nfresh = fresh.len / 8;
	if (have + nfresh <= ch->opt.max_series)
		goto out;
	/* over, unless some are stored already (by another server, or before
	 * this one started) */
	ans.len = 0;
	if ((rc = ask(ch, "SELECT DISTINCT series_id FROM series WHERE series_id IN sel "
	              "FORMAT RowBinary", NULL, &fresh, &ans, err)))
		goto out;
	uint64_t *stored = malloc(ans.len + 8);
	if (!stored) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < ans.len / 8; i++)
		stored[i] = st__get_u64((uint8_t *)ans.data + 8 * i);
	remember(ch, &ch->known_series, stored, ans.len / 8);
	free(stored);
	nfresh -= ans.len / 8 < nfresh ? ans.len / 8 : nfresh;
	if (have + nfresh > ch->opt.max_series)
		rc = base_fail(err, -EUSERS, "ClickHouse holds %" PRIu64 " series and the limit is %"
		              PRIu64 " (--max-series): a batch adding %" PRIu64 " new series is "
		              "refused; drop high-cardinality labels (pid, request IDs) or raise the "
		              "limit", have, ch->opt.max_series, nfresh);
out:
	base_map_free(&seen);
	base_buf_free(&fresh);
	base_buf_free(&ans);
	return rc;
}

static int ch_append(st_db *db, const st_batch *b, base_err *err)
{
	st__ch *ch = (st__ch *)db;
	uint64_t *sids = malloc((b->nseries + 1) * sizeof(*sids));
	item *it = calloc(1, sizeof(*it));
	int rc = -ENOMEM;
	if (!sids || !it)
		goto out;
	if ((rc = st__batch_validate(b, sids, err)) ||
	    (rc = st__batch_check_future(b, ch->opt.max_future_ns, err)) ||
	    (rc = check_stacks(ch, b, err)) || (rc = check_series_limit(ch, b, sids, err)))
		goto out;
	if ((rc = item_encode(ch, b, sids, it)))
		goto out;
	if (!it->series.len && !it->stacks.len && !it->samples.len)
		goto out;   /* nothing ClickHouse lacks */
	rc = commit(ch, it, err);
out:
	free(sids);
	item_free(it);
	return rc;
}

/* ---- selection ---- */

typedef struct sel_arg {
	st__ch *ch;
	const st_matcher *m;
	size_t nm;
	st__match *cm;
	base_buf ids;        /* candidates, RowBinary: the next query's "sel" */
	base_err *err;
} sel_arg;

/* A series' labels as the label cache keeps them: the count, the array,
 * the strings, in one allocation. */
typedef struct lab {
	uint32_t n;
	st_label l[];
} lab;

/* l[0..n) into one allocation of hdr bytes, the array, the strings;
 * the array is at (char *)*out + hdr. */
static int label_copy(const st_label *l, uint32_t n, size_t hdr, void **out)
{
	size_t bytes = hdr + n * sizeof(st_label);
	for (uint32_t i = 0; i < n; i++)
		bytes += strlen(l[i].name) + strlen(l[i].value) + 2;
	char *m = malloc(bytes);
	if (!m)
		return -ENOMEM;
	st_label *c = (st_label *)(m + hdr);
	char *sp = (char *)(c + n);
	for (uint32_t i = 0; i < n; i++) {
		c[i].name = put_str(&sp, l[i].name, strlen(l[i].name));
		c[i].value = put_str(&sp, l[i].value, strlen(l[i].value));
	}
	*out = m;
	return 0;
}

/* Caches series id's labels. */
static int lab_cache(st__ch *ch, uint64_t id, const st_label *l, uint32_t n)
{
	void *m;
	int rc = label_copy(l, n, offsetof(lab, l), &m);
	if (rc)
		return rc;
	((lab *)m)->n = n;
	pthread_rwlock_wrlock(&ch->cmu);
	rc = cache_put(&ch->labels, id, m);
	pthread_rwlock_unlock(&ch->cmu);
	return rc;
}

static const char *label_of(const st_label *l, uint32_t n, const char *name)
{
	for (uint32_t i = 0; i < n; i++)
		if (!strcmp(l[i].name, name))
			return l[i].value;
	return "";
}

/* A series row: kept (and its labels cached) when every matcher passes. */
static int on_series(void *arg, uint64_t id, const st_label *l, uint32_t n)
{
	sel_arg *a = arg;
	for (size_t i = 0; i < a->nm; i++) {
		int ok = st__match_nth(a->cm, i, label_of(l, n, a->m[i].name), a->err);
		if (ok <= 0)
			return ok;   /* a regex over its budget fails the query */
	}
	/* st_series_labels of what a query selects comes next: no round trip */
	int rc = lab_cache(a->ch, id, l, n);
	return rc ? rc : st__enc_u64(&a->ids, id);
}

/* The WHERE of the series query: matchers that ClickHouse can apply as
 * the store would (equality; a regex is applied here, with PCRE2, so that
 * both backends answer alike). */
static int series_where(const st_matcher *m, size_t nm, base_buf *q)
{
	int rc = bprintf(q, "1");
	for (size_t i = 0; i < nm && !rc; i++) {
		if (m[i].op != ST_MATCH_EQ && m[i].op != ST_MATCH_NE)
			continue;
		if (!strcmp(m[i].name, ST_TYPE_LABEL)) {
			rc = bprintf(q, " AND type %s ", m[i].op == ST_MATCH_EQ ? "=" : "!=");
		} else {
			/* label_values[0] is "": a series without the label matches name="" */
			rc = bprintf(q, " AND label_values[indexOf(label_names, ");
			rc = rc ? rc : st__ch_quote(q, m[i].name, strlen(m[i].name));
			rc = rc ? rc : bprintf(q, ")] %s ", m[i].op == ST_MATCH_EQ ? "=" : "!=");
		}
		rc = rc ? rc : st__ch_quote(q, m[i].value, strlen(m[i].value));
	}
	return rc;
}

static int ch_select(st_db *db, const st_matcher *m, size_t nm, int64_t from, int64_t to,
                     int64_t deadline_ns, st_selection **out, base_err *err)
{
	st__ch *ch = (st__ch *)db;
	base_buf q = {0}, ans = {0};
	uint64_t *ids = NULL;
	size_t nids = 0;
	st_selection *sel = NULL;
	sel_arg a = {.ch = ch, .m = m, .nm = nm, .err = err};
	int rc = st__match_compile(m, nm, &a.cm, err);
	if (rc)
		return rc;
	if ((rc = bprintf(&q, "SELECT series_id, any(type), any(label_names), any(label_values) FROM series "
	                  "WHERE ")) ||
	    (rc = series_where(m, nm, &q)) ||
	    (rc = bprintf(&q, " GROUP BY series_id FORMAT RowBinary")) ||
	    (rc = ask_until(ch, bstr(&q), NULL, NULL, deadline_ns, &ans, err)))
		goto out;
	if ((rc = st__ch_parse_series((uint8_t *)ans.data, ans.len, on_series, &a))) {
		if (rc == -EBADMSG)
			base_fail(err, rc, "ClickHouse sent series rows that do not decode");
		goto out;
	}
	if (a.ids.len) {
		/* which of them have rows in the range: each shard's first and
		 * last row time per series, merged */
		q.len = ans.len = 0;
		if ((rc = bprintf(&q, "SELECT series_id FROM series_span WHERE series_id IN sel "
		                  "GROUP BY series_id HAVING maxMerge(maxt) >= %" PRId64 " AND "
		                  "minMerge(mint) < %" PRId64 " FORMAT RowBinary", from, to)) ||
		    (rc = ask_until(ch, bstr(&q), NULL, &a.ids, deadline_ns, &ans, err)))
			goto out;
	}
	nids = ans.len / 8;
	if (!(ids = malloc((nids + 1) * sizeof(*ids))) || !(sel = calloc(1, sizeof(*sel)))) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nids; i++)
		ids[i] = st__get_u64((uint8_t *)ans.data + 8 * i);
	/* reads over it stop at the same deadline */
	sel->deadline_ns = deadline_ns;
	rc = st__selection_index(sel, ids, nids);
	ids = NULL;
	if (!rc) {
		*out = sel;
		sel = NULL;
	}
out:
	free(ids);
	st_selection_free(sel);
	st__match_free(a.cm, nm);
	base_buf_free(&a.ids);
	base_buf_free(&q);
	base_buf_free(&ans);
	return rc;
}

typedef struct labels_arg {
	st__ch *ch;
	st_label *got;
	size_t n;
} labels_arg;

static int on_one_series(void *arg, uint64_t id, const st_label *l, uint32_t n)
{
	labels_arg *a = arg;
	void *m;
	int rc = label_copy(l, n, 0, &m);
	if (rc)
		return rc;
	free(a->got);
	a->got = m;
	a->n = n;
	lab_cache(a->ch, id, l, n);
	return 0;
}

static int ch_series_labels(st_db *db, uint64_t id, st_label **out, size_t *n)
{
	st__ch *ch = (st__ch *)db;
	base_buf q = {0}, ans = {0};
	int rc = 0;
	pthread_rwlock_rdlock(&ch->cmu);
	const lab *c = cache_get(&ch->labels, id);
	if (c) {
		void *m;
		rc = label_copy(c->l, c->n, 0, &m);
		*out = m;
		*n = c->n;
	}
	pthread_rwlock_unlock(&ch->cmu);
	if (c)
		return rc;
	labels_arg a = {.ch = ch};
	if ((rc = bprintf(&q, "SELECT series_id, any(type), any(label_names), any(label_values) FROM series "
	                  "WHERE series_id = %" PRIu64 " GROUP BY series_id FORMAT RowBinary",
	                  id)) ||
	    (rc = ask(ch, bstr(&q), NULL, NULL, &ans, NULL)) ||
	    (rc = st__ch_parse_series((uint8_t *)ans.data, ans.len, on_one_series, &a)))
		goto out;
	if (!a.got) {
		rc = -ENOENT;
		goto out;
	}
	*out = a.got;
	*n = a.n;
out:
	base_buf_free(&q);
	base_buf_free(&ans);
	return rc;
}

/* The selection's IDs as an external table. */
static int sel_ext(const st_selection *sel, base_buf *ext)
{
	int rc = base_buf_reserve(ext, sel->n * 8 + 8);
	for (size_t i = 0; i < sel->n && !rc; i++)
		rc = st__enc_u64(ext, sel->ids[i]);
	return rc;
}

/* ---- roll-up levels ----
 * A level is a table of sums per (series, step, stack) that a
 * materialized view of samples fills in the same insert, on each shard
 * beside the rows it sums (SummingMergeTree adds up a key's rows as its
 * parts merge; reads still GROUP BY). A level therefore holds every row
 * the moment samples does: no pass builds it, late rows land in it as
 * they land in samples, and it outlives samples' retention up to its own.
 * One level, the hour: a day level would spare reads 24 hour rows per key
 * and day, and cost every insert one more part per shard, which is where
 * ClickHouse's ingest time goes (docs/bench-clickhouse.md). */
static const struct {
	int64_t step_ns;
	const char *table;
} levels[] = {
	{INT64_C(3600000000000), "samples_1h"},
};
#define NLEVELS (sizeof(levels) / sizeof(*levels))
_Static_assert(NLEVELS <= ST_MAX_ROLLUPS, "st_stats has room for every level");

/* 1 + the level of step (0: raw rows), or -1 for no level's. */
static int level_of(int64_t step)
{
	if (!step)
		return 0;
	for (size_t i = 0; i < NLEVELS; i++)
		if (levels[i].step_ns == step)
			return (int)i + 1;
	return -1;
}

/* ClickHouse's sum() of Int64 wraps around. So sums travel in two
 * halves: hi, the sum of value / 2^24 (truncated), and lo, the sum of the
 * remainders. A value is below 2^48, so neither half can wrap before
 * 2^39 rows; the whole is hi * 2^24 + lo, saturating as st_sum_add does.
 * SPLIT and HALVES are the SQL of the halves of raw rows (intDiv and the
 * remainder by subtraction, all Int64, for values of either sign). */
#define SPLIT_BITS 24
#define SPLIT "toInt64(16777216)"
#define HALVES "sum(intDiv(value, " SPLIT ")), sum(value - intDiv(value, " SPLIT ") * " SPLIT ")"
#define HALVES_AS "sum(intDiv(value, " SPLIT ")) AS hi, " \
                  "sum(value - intDiv(value, " SPLIT ") * " SPLIT ") AS lo"

static int64_t sum_of(int64_t hi, int64_t lo)
{
	int64_t h, r;
	if (__builtin_mul_overflow(hi, INT64_C(1) << SPLIT_BITS, &h))
		return hi > 0 ? INT64_MAX : INT64_MIN;
	if (__builtin_add_overflow(h, lo, &r))
		return lo > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* The parts of one level's query: its table, time column, and the two
 * halves of its values' sum (a level's columns are not named value:
 * ClickHouse before 21 took the alias in "sum(value) AS value" for the
 * column inside it). */
typedef struct level_cols {
	const char *table, *tcol, *sums;
} level_cols;

static level_cols level_sql(int lv)
{
	if (lv)
		return (level_cols){levels[lv - 1].table, "step_ts", "sum(hi), sum(lo)"};
	return (level_cols){"samples", "ts", HALVES};
}

/* " AND ((t >= a AND t < b) OR ...)" for the spans of level lv; 0 with
 * *any false when it has none. -EINVAL with err for a span of a step
 * that is no level's. */
static int spans_where(base_buf *q, const char *tcol, int lv, const st_span *sp, size_t nsp,
                       bool *any, base_err *err)
{
	int rc = 0;
	*any = false;
	for (size_t i = 0; i < nsp && !rc; i++) {
		int l = level_of(sp[i].step_ns);
		if (l < 0)
			return base_fail(err, -EINVAL, "no roll-up level has a step of %" PRId64 " ns",
			                sp[i].step_ns);
		if (l != lv || sp[i].from_ns >= sp[i].to_ns)
			continue;
		rc = bprintf(q, "%s(%s >= %" PRId64 " AND %s < %" PRId64 ")", *any ? " OR " : " AND (",
		             tcol, sp[i].from_ns, tcol, sp[i].to_ns);
		*any = true;
	}
	if (!rc && *any)
		rc = bprintf(q, ")");
	return rc;
}

/* ---- reads of rows ---- */

/* One query per level the plan uses, each a GROUP BY stack on every shard
 * (a stack's rows are all on one), the levels' sums added here. */
static int ch_merge_spans(st_db *db, const st_selection *sel, const st_span *sp, size_t nsp,
                          st_stack_sum **out, size_t *nout, base_err *err)
{
	st__ch *ch = (st__ch *)db;
	base_buf q = {0}, ext = {0}, ans = {0};
	base_map idx = {0};
	st_stack_sum *v = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	*out = NULL;
	*nout = 0;
	if (!sel->n)
		return 0;
	if ((rc = sel_ext(sel, &ext)) || (rc = base_map_init(&idx, 1024)))
		goto out;
	for (int lv = 0; lv <= (int)NLEVELS && !rc; lv++) {
		level_cols c = level_sql(lv);
		bool any;
		q.len = ans.len = 0;
		if ((rc = bprintf(&q, "SELECT stack_id, %s FROM %s WHERE series_id IN sel", c.sums,
		                  c.table)) ||
		    (rc = spans_where(&q, c.tcol, lv, sp, nsp, &any, err)) || !any ||
		    (rc = bprintf(&q, " GROUP BY stack_id FORMAT RowBinary")) ||
		    (rc = ask_until(ch, bstr(&q), ch->dist ? NO_MERGE : NULL, &ext, sel->deadline_ns,
		                    &ans, err)))
			continue;
		atomic_fetch_add(&ch->reads[lv], 1);
		/* a stack twice (a level's and raw rows', or a cluster that was
		 * resharded) adds up */
		for (size_t off = 0; off + 24 <= ans.len && !rc; off += 24) {
			uint64_t id = st__get_u64((uint8_t *)ans.data + off);
			int64_t s = sum_of((int64_t)st__get_u64((uint8_t *)ans.data + off + 8),
			                   (int64_t)st__get_u64((uint8_t *)ans.data + off + 16));
			uint32_t k = base_map_get(&idx, id);
			if (k != BASE_MAP_NONE) {
				v[k].value = st_sum_add(v[k].value, s);
				continue;
			}
			if ((rc = base_grow(&v, &cap, n + 1, sizeof(*v))) ||
			    (rc = base_map_put(&idx, id, (uint32_t)n)))
				break;
			v[n++] = (st_stack_sum){id, s, 0};
		}
	}
	if (rc)
		goto out;
	/* as the embedded store: no stack whose rows sum to nothing */
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].value)
			v[k++] = v[i];
	if (k)
		qsort(v, k, sizeof(*v), st__cmp_stack_sum);
	*out = v;
	*nout = k;
	v = NULL;
out:
	free(v);
	base_map_free(&idx);
	base_buf_free(&q);
	base_buf_free(&ext);
	base_buf_free(&ans);
	return rc;
}

typedef struct rows_arg {
	st_row_fn fn;
	void *arg;
	uint8_t carry[32];
	size_t ncarry;
} rows_arg;

/* The answer as it arrives: whole 32-byte rows to fn, a partial one kept. */
static int rows_stream(void *arg, const uint8_t *p, size_t n)
{
	rows_arg *a = arg;
	int rc = 0;
	while (n && !rc) {
		size_t k = 32 - a->ncarry < n ? 32 - a->ncarry : n;
		if (a->ncarry || n < 32) {
			memcpy(a->carry + a->ncarry, p, k);
			a->ncarry += k;
			p += k;
			n -= k;
			if (a->ncarry < 32)
				break;
			st_row r = {(int64_t)st__get_u64(a->carry), st__get_u64(a->carry + 8),
			            st__get_u64(a->carry + 16), (int64_t)st__get_u64(a->carry + 24)};
			a->ncarry = 0;
			rc = a->fn(a->arg, &r);
			continue;
		}
		st_row r = {(int64_t)st__get_u64(p), st__get_u64(p + 8), st__get_u64(p + 16),
		            (int64_t)st__get_u64(p + 24)};
		p += 32;
		n -= 32;
		rc = a->fn(a->arg, &r);
	}
	return rc;
}

static int ch_rows(st_db *db, const st_selection *sel, int64_t from, int64_t to,
                   st_row_fn fn, void *arg)
{
	st__ch *ch = (st__ch *)db;
	base_buf q = {0}, ext = {0};
	rows_arg a = {.fn = fn, .arg = arg};
	int rc = 0;
	if (!sel->n || from >= to)
		return 0;
	if ((rc = sel_ext(sel, &ext)) ||
	    (rc = bprintf(&q, "SELECT ts, series_id, stack_id, value FROM samples WHERE "
	                  "series_id IN sel AND ts >= %" PRId64 " AND ts < %" PRId64
	                  " FORMAT RowBinary", from, to)))
		goto out;
	st__ch_req r = {.node = -1, .sql = bstr(&q), .ext = ext.data, .ext_len = ext.len,
	                .ext_structure = "id UInt64", .max_out = SIZE_MAX,
	                .stream = rows_stream, .stream_arg = &a, .deadline_ns = sel->deadline_ns};
	atomic_fetch_add(&ch->reads[0], 1);
	rc = st__ch_do(&ch->cl, &r, NULL, NULL);
	if (!rc && a.ncarry)
		rc = -EBADMSG;
out:
	base_buf_free(&q);
	base_buf_free(&ext);
	return rc;
}

/* Sums per (series, step) on each shard, per level the plan uses; the
 * shards' parts of one series and the levels' add up here. */
static int ch_series_steps_spans(st_db *db, const st_selection *sel, const st_span *sp,
                                 size_t nsp, int64_t origin, int64_t step, size_t nsteps,
                                 const uint32_t *group, int64_t *acc, uint8_t *has, base_err *err)
{
	st__ch *ch = (st__ch *)db;
	base_buf q = {0}, ext = {0}, ans = {0};
	int rc = 0;
	if (!sel->n || !nsteps)
		return 0;
	if ((rc = sel_ext(sel, &ext)))
		goto out;
	for (int lv = 0; lv <= (int)NLEVELS && !rc; lv++) {
		level_cols c = level_sql(lv);
		bool any;
		q.len = ans.len = 0;
		if ((rc = bprintf(&q, "SELECT series_id, toInt64(intDiv(%s - %" PRId64 ", %" PRId64
		                  ")) AS k, %s FROM %s WHERE series_id IN sel AND %s >= %" PRId64,
		                  c.tcol, origin, step, c.sums, c.table, c.tcol, origin)) ||
		    (rc = spans_where(&q, c.tcol, lv, sp, nsp, &any, err)) || !any ||
		    (rc = bprintf(&q, " GROUP BY series_id, k HAVING k < %zu FORMAT RowBinary",
		                  nsteps)) ||
		    (rc = ask_until(ch, bstr(&q), ch->dist ? NO_MERGE : NULL, &ext, sel->deadline_ns,
		                    &ans, err)))
			continue;
		atomic_fetch_add(&ch->reads[lv], 1);
		for (size_t off = 0; off + 32 <= ans.len; off += 32) {
			uint32_t pos = base_map_get(&sel->map, st__get_u64((uint8_t *)ans.data + off));
			int64_t k = (int64_t)st__get_u64((uint8_t *)ans.data + off + 8);
			if (pos == BASE_MAP_NONE || k < 0 || (uint64_t)k >= nsteps ||
			    group[pos] == UINT32_MAX)
				continue;
			size_t x = (size_t)group[pos] * nsteps + (size_t)k;
			acc[x] = st_sum_add(acc[x], sum_of((int64_t)st__get_u64((uint8_t *)ans.data + off + 16),
			                                   (int64_t)st__get_u64((uint8_t *)ans.data + off + 24)));
			has[x] = 1;
		}
	}
out:
	base_buf_free(&q);
	base_buf_free(&ext);
	base_buf_free(&ans);
	return rc;
}

/* Every whole step of a level within [from, to): a level holds every row
 * from the moment it exists (with the tables), back to its retention's
 * drops, which take whole days older than rollup_retention_ns. */
static int ch_rollup_spans(st_db *db, int64_t step, int64_t from, int64_t to, st_span **out,
                           size_t *n)
{
	st__ch *ch = (st__ch *)db;
	*out = NULL;
	*n = 0;
	if (level_of(step) <= 0)
		return -EINVAL;
	if (ch->opt.rollup_retention_ns > 0) {
		int64_t kept = base_realtime_ns() - ch->opt.rollup_retention_ns;
		kept = kept > 0 ? kept / DAY_NS * DAY_NS : 0;
		if (from < kept)
			from = kept;
	}
	if (from < 0)
		from = 0;
	int64_t a = (from + step - 1) / step * step, b = to / step * step;
	if (a >= b)
		return 0;
	if (!(*out = malloc(sizeof(**out))))
		return -ENOMEM;
	**out = (st_span){step, a, b};
	*n = 1;
	return 0;
}

static size_t ch_rollup_steps(st_db *db, int64_t *steps, size_t max)
{
	(void)db;
	for (size_t i = 0; i < NLEVELS && i < max; i++)
		steps[i] = levels[i].step_ns;
	return NLEVELS;
}

static int ch_rollup(st_db *db, int64_t now)
{
	(void)db, (void)now;   /* the views sum at insert; retention drops */
	return 0;
}

/* ---- stacks and locations ---- */

static int on_stack(void *arg, uint64_t id, const int64_t *locs, size_t n)
{
	st__ch *ch = arg;
	uint8_t *e = malloc(8 + n * sizeof(int64_t));
	if (!e)
		return -ENOMEM;
	st__put_u64(e, n);
	memcpy(e + 8, locs, n * sizeof(int64_t));
	pthread_rwlock_wrlock(&ch->cmu);
	int rc = cache_put(&ch->stacks, id, e);
	pthread_rwlock_unlock(&ch->cmu);
	return rc;
}

static int on_location(void *arg, st_frame_info *fi)
{
	st__ch *ch = arg;
	pthread_rwlock_wrlock(&ch->cmu);
	int rc = cache_put(&ch->locs, (uint64_t)fi->location_id, fi);
	pthread_rwlock_unlock(&ch->cmu);
	return rc;
}

/* The IDs of ids[0..n) that cache c lacks, as an external table into ext.
 * Location IDs (int64_t) come as their bits. */
static int cache_lacks(st__ch *ch, const cache *c, const uint64_t *ids, size_t n, base_buf *ext)
{
	int rc = 0;
	pthread_rwlock_rdlock(&ch->cmu);
	for (size_t i = 0; i < n && !rc; i++)
		if (!cache_get(c, ids[i]))
			rc = st__enc_u64(ext, ids[i]);
	pthread_rwlock_unlock(&ch->cmu);
	return rc;
}

/* Brings the stacks ids[0..n) into the cache (those it lacks, in one
 * query). Stacks never change, so a cached one is always right. */
static int load_stacks(st__ch *ch, const uint64_t *ids, size_t n)
{
	base_buf ext = {0}, ans = {0};
	int rc = cache_lacks(ch, &ch->stacks, ids, n, &ext);
	if (!rc && ext.len &&
	    !(rc = ask(ch, "SELECT stack_id, any(locations) FROM stacks WHERE stack_id IN sel "
	               "GROUP BY stack_id FORMAT RowBinary", NULL, &ext, &ans, NULL)))
		rc = st__ch_parse_stacks((uint8_t *)ans.data, ans.len, on_stack, ch);
	base_buf_free(&ext);
	base_buf_free(&ans);
	return rc;
}

static int load_locations(st__ch *ch, const int64_t *ids, size_t n)
{
	base_buf ext = {0}, ans = {0};
	int rc = cache_lacks(ch, &ch->locs, (const uint64_t *)ids, n, &ext);
	if (!rc && ext.len &&
	    !(rc = ask_ids(ch, "SELECT location_id, any(kind), any(build_id), any(object_name), "
	               "any(obj_offset), any(name), any(file), any(line), any(lang) FROM locations "
	               "WHERE location_id IN sel GROUP BY location_id FORMAT RowBinary", NULL,
	               &ext, "Int64", &ans, NULL)))
		rc = st__ch_parse_locations((uint8_t *)ans.data, ans.len, on_location, ch);
	base_buf_free(&ext);
	base_buf_free(&ans);
	return rc;
}

static int ch_stacks_locations(st_db *db, const uint64_t *ids, size_t n, int64_t **locs_out,
                               uint32_t **offs_out)
{
	st__ch *ch = (st__ch *)db;
	int rc = load_stacks(ch, ids, n);
	if (rc)
		return rc;
	size_t cap = n * 16 + 16, len = 0;
	int64_t *pool = malloc(cap * sizeof(*pool));
	uint32_t *offs = malloc((n + 1) * sizeof(*offs));
	if (!pool || !offs) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_rwlock_rdlock(&ch->cmu);
	for (size_t i = 0; i < n && !rc; i++) {
		const uint8_t *e = cache_get(&ch->stacks, ids[i]);
		if (!e) {
			rc = -ENOENT;
			break;
		}
		size_t k = (size_t)st__get_u64(e);
		if (len + k > UINT32_MAX) {
			rc = -E2BIG;
			break;
		}
		if (len + k > cap) {
			cap = (len + k) * 2;
			int64_t *t = realloc(pool, cap * sizeof(*pool));
			if (!t) {
				rc = -ENOMEM;
				break;
			}
			pool = t;
		}
		offs[i] = (uint32_t)len;
		memcpy(pool + len, e + 8, k * sizeof(int64_t));
		len += k;
	}
	pthread_rwlock_unlock(&ch->cmu);
	if (!rc) {
		offs[n] = (uint32_t)len;
		*locs_out = pool;
		*offs_out = offs;
		return 0;
	}
out:
	free(pool);
	free(offs);
	return rc;
}

static int symbols_prefetch(st__ch *ch, const st_frame_info *fi, size_t n);

static int ch_locations(st_db *db, const int64_t *ids, size_t n, st_frame_info **out)
{
	st__ch *ch = (st__ch *)db;
	int rc = load_locations(ch, ids, n);
	if (rc)
		return rc;
	st_frame_info **one = calloc(n + 1, sizeof(*one));
	if (!one)
		return -ENOMEM;
	pthread_rwlock_rdlock(&ch->cmu);
	for (size_t i = 0; i < n && !rc; i++)
		if (!(one[i] = cache_get(&ch->locs, (uint64_t)ids[i])))
			rc = -ENOENT;
	if (!rc)
		rc = st__frames_pack(one, n, out);
	pthread_rwlock_unlock(&ch->cmu);
	free(one);
	/* the engine names these next: their symbol rows in one query (a
	 * failure only leaves them to be asked one by one) */
	if (!rc && n > 1)
		(void)symbols_prefetch(ch, *out, n);
	return rc;
}

static int ch_stack_locations(st_db *db, uint64_t id, int64_t *locs, size_t *n)
{
	int64_t *l;
	uint32_t *o;
	int rc = ch_stacks_locations(db, &id, 1, &l, &o);
	if (rc)
		return rc;
	*n = o[1] - o[0];
	if (*n > ST_MAX_FRAMES)
		rc = -EBADMSG;
	else
		memcpy(locs, l, *n * sizeof(*l));
	free(l);
	free(o);
	return rc;
}

static int ch_stack_frames(st_db *db, uint64_t id, st_frame_info **out, size_t *n)
{
	int64_t locs[ST_MAX_FRAMES];
	size_t k;
	int rc = ch_stack_locations(db, id, locs, &k);
	if (rc)
		return rc;
	rc = ch_locations(db, locs, k, out);
	if (rc == -ENOENT)
		rc = -EBADMSG;   /* a stack naming a missing location */
	if (!rc)
		*n = k;
	return rc;
}

/* ---- the symbol cache ---- */

static void sym_pending_free(sym_pending *p)
{
	base_buf_free(&p->row);
	free(p->syms);
}

/* Inserts the answers waiting in memory. Those the insert fails for stay
 * (at most SYM_FLUSH * 64 of them; past that the oldest go: the
 * symbolizer works them out again). */
static int sym_flush(st__ch *ch)
{
	base_buf rows = {0};
	pthread_mutex_lock(&ch->smu);
	size_t n = ch->nsyms;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++)
		rc = base_buf_put(&rows, ch->syms[i].row.data, ch->syms[i].row.len);
	pthread_mutex_unlock(&ch->smu);
	if (!rc && rows.len)
		rc = insert(ch, "symbols", "location_id, version, forgotten, functions, files, lines",
		            &rows, NULL);
	pthread_mutex_lock(&ch->smu);
	size_t drop = !rc ? n : ch->nsyms > SYM_FLUSH * 64 ? ch->nsyms - SYM_FLUSH * 64 : 0;
	for (size_t i = 0; i < drop; i++)
		sym_pending_free(&ch->syms[i]);
	if (drop) {
		memmove(ch->syms, ch->syms + drop, (ch->nsyms - drop) * sizeof(*ch->syms));
		ch->nsyms -= drop;
	}
	pthread_mutex_unlock(&ch->smu);
	base_buf_free(&rows);
	return rc;
}

static int sym_row(base_buf *b, int64_t loc, int64_t version, bool forgotten,
                   const st_symbol *syms, size_t n)
{
	int rc = st__enc_u64(b, (uint64_t)loc);
	rc = rc ? rc : st__enc_u64(b, (uint64_t)version);
	rc = rc ? rc : st__rb_put_u8(b, forgotten);
	rc = rc ? rc : st__enc_varint(b, n);
	for (size_t i = 0; i < n && !rc; i++)
		rc = st__rb_put_str(b, syms[i].function, strlen(syms[i].function));
	rc = rc ? rc : st__enc_varint(b, n);
	for (size_t i = 0; i < n && !rc; i++)
		rc = st__rb_put_str(b, syms[i].file ? syms[i].file : "",
		                    syms[i].file ? strlen(syms[i].file) : 0);
	rc = rc ? rc : st__enc_varint(b, n);
	for (size_t i = 0; i < n && !rc; i++)
		rc = st__enc_u64(b, (uint64_t)syms[i].line);
	return rc;
}

static int ch_symbols_put(st_db *db, int64_t loc, const st_symbol *syms, size_t n)
{
	st__ch *ch = (st__ch *)db;
	sym_pending p = {.loc = loc, .n = n};
	size_t bytes = n * sizeof(st_symbol);
	for (size_t i = 0; i < n; i++)
		bytes += strlen(syms[i].function) + 1 + (syms[i].file ? strlen(syms[i].file) + 1 : 0);
	int rc = sym_row(&p.row, loc, base_realtime_ns(), false, syms, n);
	if (!rc && !(p.syms = malloc(bytes)))
		rc = -ENOMEM;
	if (rc) {
		sym_pending_free(&p);
		return rc;
	}
	char *sp = (char *)(p.syms + n);
	for (size_t i = 0; i < n; i++) {
		p.syms[i].function = put_str(&sp, syms[i].function, strlen(syms[i].function));
		p.syms[i].file = syms[i].file ? put_str(&sp, syms[i].file, strlen(syms[i].file)) : NULL;
		p.syms[i].line = syms[i].line;
	}
	pthread_rwlock_wrlock(&ch->cmu);
	if (base_map_get(&ch->nosyms, (uint64_t)loc) != BASE_MAP_NONE)
		rc = base_map_put(&ch->nosyms, (uint64_t)loc, 0);
	pthread_rwlock_unlock(&ch->cmu);
	pthread_mutex_lock(&ch->smu);
	bool full = false;
	if (base_grow(&ch->syms, &ch->syms_cap, ch->nsyms + 1, sizeof(*ch->syms))) {
		rc = -ENOMEM;
		sym_pending_free(&p);
	} else {
		ch->syms[ch->nsyms++] = p;
		full = ch->nsyms >= SYM_FLUSH;
	}
	pthread_mutex_unlock(&ch->smu);
	/* inserted in groups: one insert per answer would be thousands of
	 * tiny parts; until then reads find them here */
	if (full)
		sym_flush(ch);
	return rc;
}

/* ---- the symbol cache's rows, read ----
 * The query engine names a query's locations one at a time, and asks the
 * symbol cache for each location the symbolizer has not in memory: a
 * SQLite lookup in the embedded store, a round trip here. So the rows of
 * every user location a query reads (st_locations) are fetched in one
 * query beforehand and kept: rows never change but by a forget, after
 * which this server drops them all (st_symbols_forget here, and
 * st_file_changes for a file kept through another server). A location
 * without a row is remembered as such for MISS_NS, as files are. */

typedef struct symchain {
	size_t n;
	st_symbol s[];
} symchain;

/* Caller holds cmu (write). */
static int symc_put(st__ch *ch, int64_t loc, const st_symbol *syms, size_t n)
{
	symchain *c = st_symbols_pack(offsetof(symchain, s), syms, n);
	if (!c)
		return -ENOMEM;
	c->n = n;
	return cache_put(&ch->symc, (uint64_t)loc, c);
}

/* Caller holds cmu (write). */
static int symc_none(st__ch *ch, int64_t loc, uint32_t tick)
{
	if (ch->nosyms.len >= CACHE_MAX)
		base_map_clear(&ch->nosyms);
	return base_map_put(&ch->nosyms, (uint64_t)loc, tick);
}

/* Whether loc was found without a row within MISS_NS. Caller holds cmu. */
static bool symc_none_recent(const st__ch *ch, int64_t loc, uint32_t now)
{
	uint32_t at = base_map_get(&ch->nosyms, (uint64_t)loc);
	return at != BASE_MAP_NONE && at && now - at < MISS_NS / MISS_TICK;
}

/* Drops every kept row (a forget). */
static void symc_clear(st__ch *ch)
{
	pthread_rwlock_wrlock(&ch->cmu);
	cache_clear(&ch->symc);
	base_map_clear(&ch->nosyms);
	pthread_rwlock_unlock(&ch->cmu);
}

typedef struct sym_get_arg {
	st__ch *ch;
	st_symbols_fn fn;
	void *arg;
	base_map pending;     /* locations answered from memory already */
	base_map asked;       /* locations asked of ClickHouse; 1 once answered */
} sym_get_arg;

static int on_symbols(void *arg, int64_t loc, const st_symbol *syms, size_t n)
{
	sym_get_arg *a = arg;
	if (base_map_get(&a->pending, (uint64_t)loc) != BASE_MAP_NONE)
		return 0;
	pthread_rwlock_wrlock(&a->ch->cmu);
	int rc = symc_put(a->ch, loc, syms, n);
	rc = rc ? rc : base_map_put(&a->asked, (uint64_t)loc, 1);
	pthread_rwlock_unlock(&a->ch->cmu);
	return rc ? rc : a->fn ? a->fn(a->arg, loc, syms, n) : 0;
}

/* Asks ClickHouse for the rows of ext's locations (RowBinary Int64s),
 * keeps them, and remembers those without one. */
static int symbols_ask(st__ch *ch, base_buf *ext, sym_get_arg *a)
{
	base_buf ans = {0};
	int rc = base_map_init(&a->asked, ext->len / 8);
	for (size_t off = 0; off + 8 <= ext->len && !rc; off += 8)
		rc = base_map_put(&a->asked, st__get_u64((uint8_t *)ext->data + off), 0);
	/* the newest row per location, unless it is a tombstone */
	if (!rc &&
	    !(rc = ask_ids(ch, "SELECT location_id, argMax(functions, version), argMax(files, version), "
	               "argMax(lines, version) FROM symbols WHERE location_id IN sel GROUP BY "
	               "location_id HAVING argMax(forgotten, version) = 0 FORMAT RowBinary", NULL,
	               ext, "Int64", &ans, NULL)))
		rc = st__ch_parse_symbols((uint8_t *)ans.data, ans.len, on_symbols, a);
	if (!rc) {
		uint32_t now = tick_now(ch);
		pthread_rwlock_wrlock(&ch->cmu);
		for (size_t k = 0; k < a->asked.cap && !rc; k++)
			if (a->asked.slots[k].val == 0)
				rc = symc_none(ch, (int64_t)a->asked.slots[k].key, now);
		pthread_rwlock_unlock(&ch->cmu);
	}
	base_map_free(&a->asked);
	base_buf_free(&ans);
	return rc;
}

/* The rows of the user locations among fi[0..n) that are not kept yet, in
 * one query (st_locations' callers name them next). */
static int symbols_prefetch(st__ch *ch, const st_frame_info *fi, size_t n)
{
	base_buf ext = {0};
	int rc = 0;
	uint32_t now = tick_now(ch);
	pthread_rwlock_rdlock(&ch->cmu);
	for (size_t i = 0; i < n && !rc; i++)
		if (fi[i].kind == ST_FRAME_USER && fi[i].build_id_len &&
		    !cache_get(&ch->symc, (uint64_t)fi[i].location_id) &&
		    !symc_none_recent(ch, fi[i].location_id, now))
			rc = st__enc_u64(&ext, (uint64_t)fi[i].location_id);
	pthread_rwlock_unlock(&ch->cmu);
	sym_get_arg a = {.ch = ch};
	if (!rc && ext.len > 8)
		rc = symbols_ask(ch, &ext, &a);
	base_buf_free(&ext);
	return rc;
}

static int ch_symbols_get(st_db *db, const int64_t *ids, size_t n, st_symbols_fn fn, void *arg)
{
	st__ch *ch = (st__ch *)db;
	base_buf ext = {0};
	sym_get_arg a = {.ch = ch, .fn = fn, .arg = arg};
	int rc = base_map_init(&a.pending, 16);
	/* answers not inserted yet first */
	pthread_mutex_lock(&ch->smu);
	for (size_t i = 0; i < n && !rc; i++)
		for (size_t k = ch->nsyms; k > 0 && !rc; k--)
			if (ch->syms[k - 1].loc == ids[i]) {
				rc = fn(arg, ids[i], ch->syms[k - 1].syms, ch->syms[k - 1].n);
				rc = rc ? rc : base_map_put(&a.pending, (uint64_t)ids[i], 1);
				break;
			}
	pthread_mutex_unlock(&ch->smu);
	/* then rows kept here, and locations known to have none */
	uint32_t now = tick_now(ch);
	pthread_rwlock_rdlock(&ch->cmu);
	for (size_t i = 0; i < n && !rc; i++) {
		if (base_map_get(&a.pending, (uint64_t)ids[i]) != BASE_MAP_NONE)
			continue;
		const symchain *c = cache_get(&ch->symc, (uint64_t)ids[i]);
		if (c)
			rc = fn(arg, ids[i], c->s, c->n);
		else if (!symc_none_recent(ch, ids[i], now))
			rc = st__enc_u64(&ext, (uint64_t)ids[i]);
	}
	pthread_rwlock_unlock(&ch->cmu);
	if (!rc && ext.len)
		rc = symbols_ask(ch, &ext, &a);
	base_map_free(&a.pending);
	base_buf_free(&ext);
	return rc;
}

static int ch_symbols_forget(st_db *db, const uint8_t *bid, uint32_t bl)
{
	st__ch *ch = (st__ch *)db;
	base_buf q = {0}, ans = {0}, rows = {0};
	char hex[2 * ST_MAX_BUILD_ID_LEN + 1];
	base_hex(bid, bl, hex);
	int rc = bprintf(&q, "SELECT DISTINCT location_id FROM locations WHERE kind = 0 AND "
	                 "build_id = unhex('%s') FORMAT RowBinary", hex);
	rc = rc ? rc : ask(ch, bstr(&q), NULL, NULL, &ans, NULL);
	/* tombstones dated a grace period ahead: answers other servers store
	 * from the old file before they learn of the new one lose to them */
	int64_t version = base_realtime_ns() + FORGET_GRACE_NS;
	st_symbol none = {"", NULL, 0};
	for (size_t off = 0; !rc && off + 8 <= ans.len; off += 8)
		rc = sym_row(&rows, (int64_t)st__get_u64((uint8_t *)ans.data + off), version, true, &none, 1);
	if (!rc && rows.len) {
		pthread_mutex_lock(&ch->smu);
		size_t k = 0;
		for (size_t i = 0; i < ch->nsyms; i++) {
			bool gone = false;
			for (size_t off = 0; off + 8 <= ans.len && !gone; off += 8)
				gone = ch->syms[i].loc == (int64_t)st__get_u64((uint8_t *)ans.data + off);
			if (gone)
				sym_pending_free(&ch->syms[i]);
			else
				ch->syms[k++] = ch->syms[i];
		}
		ch->nsyms = k;
		pthread_mutex_unlock(&ch->smu);
		rc = insert(ch, "symbols", "location_id, version, forgotten, functions, files, lines",
		            &rows, NULL);
	}
	/* after the tombstones: a read meanwhile may have kept the old rows */
	symc_clear(ch);
	base_buf_free(&q);
	base_buf_free(&ans);
	base_buf_free(&rows);
	return rc;
}

static int ch_symbols_missing(st_db *db, int64_t after, size_t limit, st_unsymbolized_fn fn,
                              void *arg)
{
	st__ch *ch = (st__ch *)db;
	base_buf q = {0}, ans = {0};
	int rc = bprintf(&q, "SELECT location_id, any(build_id), any(obj_offset) FROM locations "
	                 "WHERE kind = 0 AND build_id != '' AND location_id > %" PRId64 " AND "
	                 "location_id %sNOT IN (SELECT location_id FROM symbols GROUP BY "
	                 "location_id HAVING argMax(forgotten, version) = 0) GROUP BY "
	                 "location_id ORDER BY location_id LIMIT %zu FORMAT RowBinary",
	                 after, ch->dist ? "GLOBAL " : "", limit);
	rc = rc ? rc : ask(ch, bstr(&q), NULL, NULL, &ans, NULL);
	st__rb r = {(uint8_t *)ans.data, (uint8_t *)ans.data + ans.len};
	while (!rc && r.p < r.end) {
		int64_t loc;
		const char *bid;
		size_t bl;
		uint64_t off;
		if (st__rb_i64(&r, &loc) || st__rb_str(&r, &bid, &bl, ST_MAX_BUILD_ID_LEN) ||
		    st__rb_u64(&r, &off)) {
			rc = -EBADMSG;
			break;
		}
		bool pending = false;
		pthread_mutex_lock(&ch->smu);
		for (size_t i = 0; i < ch->nsyms && !pending; i++)
			pending = ch->syms[i].loc == loc;
		pthread_mutex_unlock(&ch->smu);
		if (!pending)
			rc = fn(arg, loc, (const uint8_t *)bid, (uint32_t)bl, off);
	}
	base_buf_free(&q);
	base_buf_free(&ans);
	return rc;
}

/* ---- debug-info files ---- */

static const char *ch_file_dir(st_db *db)
{
	return ((st__ch *)db)->cache_dir;
}

/* Negative answers are remembered for MISS_NS: a query asks for every
 * build ID it meets (twice: the binary and its .debug) and once per
 * location, most never get a file, and the embedded store answers such a
 * question with a failed open(). A file kept through this server, or that
 * st_file_changes() reports kept through another, is asked for again at
 * once; otherwise other servers' uploads are seen within MISS_NS. */

static bool miss_recent(st__ch *ch, const char *name)
{
	uint64_t key = XXH3_64bits(name, strlen(name));
	uint32_t now = tick_now(ch);
	pthread_mutex_lock(&ch->fmu);
	uint32_t at = base_map_get(&ch->miss, key);
	pthread_mutex_unlock(&ch->fmu);
	return at != BASE_MAP_NONE && at && now - at < MISS_NS / MISS_TICK;
}

static void miss_note(st__ch *ch, const char *name, bool missing)
{
	uint64_t key = XXH3_64bits(name, strlen(name));
	uint32_t now = tick_now(ch);
	pthread_mutex_lock(&ch->fmu);
	if (ch->miss.len >= MISS_MAX)
		base_map_clear(&ch->miss);   /* forgetting costs one question each */
	if (missing || base_map_get(&ch->miss, key) != BASE_MAP_NONE)
		(void)base_map_put(&ch->miss, key, missing ? now : 0);   /* 0: found since */
	pthread_mutex_unlock(&ch->fmu);
}

/* The upload that holds name: the first kept (by time, then ID), so every
 * server reads the same one whatever raced. 0 with *found false when none. */
static int file_upload(st__ch *ch, const char *name, uint64_t *upload, uint64_t *size,
                       uint32_t *nparts, bool *found, base_err *err)
{
	base_buf q = {0}, ans = {0};
	*found = false;
	int rc = bprintf(&q, "SELECT upload, size, nparts FROM debuginfo WHERE name = ");
	rc = rc ? rc : st__ch_quote(&q, name, strlen(name));
	rc = rc ? rc : bprintf(&q, " AND part = 0 ORDER BY kept_ns, upload LIMIT 1 "
	                       "FORMAT RowBinary");
	rc = rc ? rc : ask(ch, bstr(&q), NULL, NULL, &ans, err);
	if (!rc && ans.len) {
		if (ans.len != 20) {
			rc = base_fail(err, -EBADMSG, "ClickHouse sent a debuginfo row that does not "
			              "decode");
		} else {
			*upload = st__get_u64((uint8_t *)ans.data);
			*size = st__get_u64((uint8_t *)ans.data + 8);
			*nparts = st__get_u32((uint8_t *)ans.data + 16);
			*found = true;
		}
	}
	base_buf_free(&q);
	base_buf_free(&ans);
	return rc;
}

static int ch_file_exists(st_db *db, const char *name)
{
	st__ch *ch = (st__ch *)db;
	char path[PATH_MAX + 256];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", ch->cache_dir, name);
	if (!stat(path, &st))
		return 1;
	/* asked every time, not from the misses: an upload or a HEAD, rare,
	 * and their answer must not lag another server's upload */
	uint64_t up, size;
	uint32_t np;
	bool found;
	int rc = file_upload(ch, name, &up, &size, &np, &found, NULL);
	if (rc)
		return rc;
	miss_note(ch, name, !found);
	return found;
}

typedef struct fetch_arg {
	int fd;
	base_buf buf;          /* the answer so far, whole parts taken out */
	uint64_t written;
	uint32_t parts;
	uint64_t size;
	int rc;
} fetch_arg;

/* A file's parts as they arrive: each a RowBinary String, written out. */
static int fetch_stream(void *arg, const uint8_t *p, size_t n)
{
	fetch_arg *a = arg;
	int rc = base_buf_put(&a->buf, p, n);
	size_t used = 0;
	while (!rc) {
		st__rb r = {(uint8_t *)a->buf.data + used, (uint8_t *)a->buf.data + a->buf.len};
		const char *s;
		size_t sl;
		if (st__rb_str(&r, &s, &sl, FILE_PART)) {
			if (a->buf.len - used > FILE_PART + 16)
				rc = -EBADMSG;
			break;
		}
		if (a->written + sl > a->size)
			rc = -EBADMSG;
		rc = rc ? rc : st__write_all(a->fd, s, sl);
		a->written += sl;
		a->parts++;
		used = (size_t)(r.p - (uint8_t *)a->buf.data);
	}
	memmove(a->buf.data, a->buf.data + used, a->buf.len - used);
	a->buf.len -= used;
	return rc;
}

static int ch_file_path(st_db *db, const char *name, char *path, size_t size)
{
	static atomic_uint seq;
	st__ch *ch = (st__ch *)db;
	struct stat st;
	char tmp[PATH_MAX + 300];
	base_buf q = {0};
	int rc;
	if ((size_t)snprintf(path, size, "%s/%s", ch->cache_dir, name) >= size)
		return -ENAMETOOLONG;
	if (!stat(path, &st))
		return 0;
	if (miss_recent(ch, name))
		return -ENOENT;
	uint64_t up, fsize;
	uint32_t np;
	bool found;
	if ((rc = file_upload(ch, name, &up, &fsize, &np, &found, NULL)))
		return rc;
	if (!found) {
		miss_note(ch, name, true);
		return -ENOENT;
	}
	/* fetched once into the cache directory, checked against the sizes
	 * the upload recorded, and renamed into place whole */
	snprintf(tmp, sizeof(tmp), "%s/.%s.%ld.f%u.tmp", ch->cache_dir, name, (long)getpid(),
	         atomic_fetch_add(&seq, 1));
	fetch_arg a = {.size = fsize};
	a.fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (a.fd < 0)
		return -errno;
	rc = bprintf(&q, "SELECT data FROM debuginfo WHERE name = ");
	rc = rc ? rc : st__ch_quote(&q, name, strlen(name));
	rc = rc ? rc : bprintf(&q, " AND upload = %" PRIu64 " ORDER BY part FORMAT RowBinary", up);
	if (!rc) {
		st__ch_req r = {.node = -1, .sql = bstr(&q), .max_out = FILE_MAX + FILE_MAX / 8,
		                .stream = fetch_stream, .stream_arg = &a};
		rc = st__ch_do(&ch->cl, &r, NULL, NULL);
	}
	if (!rc && (a.buf.len || a.written != fsize || a.parts != np))
		rc = -EBADMSG;
	close(a.fd);
	base_buf_free(&a.buf);
	base_buf_free(&q);
	if (!rc) {
		rc = st__dir_keep(ch->cache_dir, name, tmp);
		if (rc == -EEXIST)   /* another thread fetched it meanwhile */
			rc = 0;
	}
	unlink(tmp);
	return rc;
}

static int ch_file_keep(st_db *db, const char *name, const char *path, base_err *err)
{
	st__ch *ch = (st__ch *)db;
	base_buf rows = {0};
	uint8_t *data = NULL;
	size_t len = 0;
	uint64_t up, size, ours;
	uint32_t np;
	bool found;
	int rc = file_upload(ch, name, &up, &size, &np, &found, err);
	if (rc)
		return rc;
	if (found)
		return -EEXIST;
	if ((rc = st__read_file(path, &data, &len, FILE_MAX)))
		return base_fail(err, rc, "reading %s: %s", path, strerror(-rc));
	if (getrandom(&ours, sizeof(ours), 0) != sizeof(ours)) {
		rc = -errno;
		goto out;
	}
	int64_t kept = base_realtime_ns();
	uint32_t parts = len ? (uint32_t)((len + FILE_PART - 1) / FILE_PART) : 1;
	for (uint32_t i = 0; i < parts && !rc; i++) {
		size_t off = (size_t)i * FILE_PART, k = len - off < FILE_PART ? len - off : FILE_PART;
		rc = st__rb_put_str(&rows, name, strlen(name));
		rc = rc ? rc : st__enc_u64(&rows, ours);
		rc = rc ? rc : st__enc_u64(&rows, (uint64_t)kept);
		rc = rc ? rc : st__enc_u32(&rows, i);
		rc = rc ? rc : st__enc_u32(&rows, parts);
		rc = rc ? rc : st__enc_u64(&rows, len);
		rc = rc ? rc : st__rb_put_str(&rows, (const char *)data + off, k);
	}
	/* one insert: all of a file's parts go to one shard (sharded by name)
	 * as one block, so a file is there whole or not at all */
	rc = rc ? rc : insert(ch, "debuginfo", "name, upload, kept_ns, part, nparts, size, data",
	                      &rows, err);
	/* two servers may have kept the name at once: the first wins for all */
	rc = rc ? rc : file_upload(ch, name, &up, &size, &np, &found, err);
	if (!rc && (!found || up != ours))
		rc = -EEXIST;
	if (!rc) {
		miss_note(ch, name, false);
		int k = st__dir_keep(ch->cache_dir, name, path);
		if (k == -EEXIST)
			unlink(path);
		else if (k)
			fprintf(stderr, "smolder storage: keeping a local copy of %s: %s\n", name,
			        strerror(-k));
	}
out:
	free(data);
	base_buf_free(&rows);
	return rc;
}

static int ch_file_changes(st_db *db, int64_t *cursor, st_file_fn fn, void *arg)
{
	st__ch *ch = (st__ch *)db;
	base_buf q = {0}, ans = {0};
	int64_t now = base_realtime_ns();
	int rc = 0;
	if (!*cursor) {
		/* nothing read before this: nothing to forget */
		*cursor = now;
		return 0;
	}
	/* files kept since the last call, with a margin for clocks and
	 * inserts that took a while: a name may come twice */
	if ((rc = bprintf(&q, "SELECT DISTINCT name FROM debuginfo WHERE part = 0 AND kept_ns > "
	                  "%" PRId64 " FORMAT RowBinary", *cursor - FORGET_GRACE_NS / 2)) ||
	    (rc = ask(ch, bstr(&q), NULL, NULL, &ans, NULL)))
		goto out;
	*cursor = now;
	st__rb r = {(uint8_t *)ans.data, (uint8_t *)ans.data + ans.len};
	while (!rc && r.p < r.end) {
		const char *s;
		size_t sl;
		char name[256];
		if (st__rb_text(&r, &s, &sl, 200)) {
			rc = -EBADMSG;
			break;
		}
		snprintf(name, sizeof(name), "%.*s", (int)sl, s);
		/* a name is never replaced, but a build ID's second file
		 * changes what its first one answered */
		if (st__file_name_ok(name)) {
			miss_note(ch, name, false);
			/* its server forgot the rows its object's locations had */
			symc_clear(ch);
			rc = fn(arg, name);
		}
	}
out:
	base_buf_free(&q);
	base_buf_free(&ans);
	return rc;
}

/* ---- maintenance ---- */

static int ch_cut(st_db *db, int64_t now, int force)
{
	(void)now, (void)force;
	/* nothing to cut: ClickHouse has the rows; the maintenance tick is
	 * when waiting symbol answers go out */
	return sym_flush((st__ch *)db);
}

static bool ch_head_full(st_db *db)
{
	(void)db;
	return false;
}

static int ch_compact(st_db *db)
{
	(void)db;   /* ClickHouse merges parts itself */
	return 0;
}

/* The first day partition a retention of ret_ns keeps (0: all). */
static int64_t first_day_kept(int64_t now, int64_t ret_ns)
{
	int64_t cutoff = ret_ns > 0 ? now - ret_ns : 0;
	return cutoff > 0 ? cutoff / DAY_NS : 0;   /* partitions below end before cutoff */
}

/* Drops every day partition of the partitioned tables that ended before
 * now - retention (the roll-up levels': now - rollup retention), on every
 * node (a partition drop, not a TTL: MergeTree TTL came after 18.16; a
 * drop is immediate and whole). */
static int ch_retention(st_db *db, int64_t now)
{
	st__ch *ch = (st__ch *)db;
	int64_t raw_day = first_day_kept(now, ch->opt.retention_ns);
	int64_t level_day = first_day_kept(now, ch->opt.rollup_retention_ns);
	if (!raw_day && !level_day)
		return 0;
	const char *L = ch->dist ? "_local" : "";
	int rc = 0;
	for (size_t i = 0; i < ch->cl.nnodes && !rc; i++) {
		base_buf q = {0}, ans = {0};
		base_err err = {0};
		rc = bprintf(&q, "SELECT DISTINCT table, partition FROM system.parts WHERE database "
		             "= '%s' AND active AND table IN ('samples%s', 'batches%s', '%s%s') "
		             "FORMAT TSV", ch->cl.db, L, L, levels[0].table, L);
		rc = rc ? rc : on_node(ch, i, bstr(&q), &ans, &err);
		char *save = NULL, *text = (char *)bstr(&ans);
		for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line && !rc;
		     line = strtok_r(NULL, "\n", &save)) {
			char table[64];
			long long day;
			if (sscanf(line, "%63[a-z0-9_]\t%lld", table, &day) != 2)
				continue;
			bool level = !strncmp(table, "samples_1", 9);
			if (day >= (level ? level_day : raw_day))
				continue;
			base_buf d = {0};
			rc = bprintf(&d, "ALTER TABLE %s DROP PARTITION %lld", table, day);
			rc = rc ? rc : on_node(ch, i, bstr(&d), NULL, &err);
			if (!rc && !strncmp(table, "samples", 7))
				fprintf(stderr, "smolder storage: retention dropped day %lld (rows before "
				        "%lld s) of %s at %s\n", day, (day + 1) * (DAY_NS / 1000000000),
				        table, ch->cl.nodes[i].where);
			base_buf_free(&d);
		}
		if (rc && err.msg[0])
			fprintf(stderr, "smolder storage: retention: %s\n", err.msg);
		base_buf_free(&q);
		base_buf_free(&ans);
	}
	return rc;
}

static void ch_get_stats(st_db *db, st_stats *o)
{
	st__ch *ch = (st__ch *)db;
	memset(o, 0, sizeof(*o));
	pthread_mutex_lock(&ch->kmu);
	o->series = ch->known_series.len;
	o->stacks = ch->known_stacks.len;
	pthread_mutex_unlock(&ch->kmu);
	o->remote_inserts = atomic_load(&ch->inserts);
	o->remote_insert_rows = atomic_load(&ch->insert_rows);
	o->remote_insert_batches = atomic_load(&ch->insert_batches);
	o->remote_dedup_rows = atomic_load(&ch->dedup_rows);
	o->remote_failures = atomic_load(&ch->requests_failed);
	o->nrollups = NLEVELS;
	for (size_t i = 0; i < NLEVELS; i++)
		o->rollup_steps_ns[i] = levels[i].step_ns;
	for (size_t i = 0; i <= NLEVELS; i++)
		o->remote_reads[i] = atomic_load(&ch->reads[i]);
}

/* ---- open and close ---- */

static void ch_close(st_db *db)
{
	st__ch *ch = (st__ch *)db;
	if (!ch)
		return;
	if (ch->cl.nnodes)
		sym_flush(ch);
	for (size_t i = 0; i < ch->nsyms; i++)
		sym_pending_free(&ch->syms[i]);
	free(ch->syms);
	cache_free(&ch->labels);
	cache_free(&ch->stacks);
	cache_free(&ch->locs);
	cache_free(&ch->symc);
	base_map_free(&ch->nosyms);
	base_map_free(&ch->known_series);
	base_map_free(&ch->known_stacks);
	base_map_free(&ch->miss);
	free(ch->slot_shard);
	if (ch->own_cache && ch->cache_dir[0])
		st__rm_rf(ch->cache_dir);
	st__ch_client_free(&ch->cl);
	pthread_mutex_destroy(&ch->kmu);
	pthread_rwlock_destroy(&ch->cmu);
	pthread_mutex_destroy(&ch->gmu);
	pthread_cond_destroy(&ch->gcv);
	pthread_mutex_destroy(&ch->smu);
	pthread_mutex_destroy(&ch->fmu);
	free(ch);
}

/* The tables of schema 2. %1$s is "_local" with a cluster, else "". */
static const struct {
	const char *name;
	const char *ddl;        /* columns and engine, after "CREATE TABLE name" */
	const char *shard_key;  /* the Distributed table's; NULL: no inserts
	                         * through it (a view fills the local table) */
} tables[] = {
	{"samples", "(ts Int64, series_id UInt64, stack_id UInt64, value Int64, batch UInt64) "
	 "ENGINE = MergeTree PARTITION BY intDiv(ts, 86400000000000) "
	 "ORDER BY (series_id, ts, stack_id)", "stack_id"},
	/* the roll-up level (levels[]): sums per (series, hour, stack) */
	{"samples_1h", "(step_ts Int64, series_id UInt64, stack_id UInt64, hi Int64, lo Int64) "
	 "ENGINE = SummingMergeTree PARTITION BY intDiv(step_ts, 86400000000000) "
	 "ORDER BY (series_id, step_ts, stack_id)", NULL},
	{"batches", "(batch UInt64, stack_id UInt64, ts Int64) ENGINE = MergeTree "
	 "PARTITION BY intDiv(ts, 86400000000000) ORDER BY batch", NULL},
	{"series_span", "(series_id UInt64, mint AggregateFunction(min, Int64), "
	 "maxt AggregateFunction(max, Int64)) ENGINE = AggregatingMergeTree ORDER BY series_id",
	 NULL},
	{"series", "(series_id UInt64, type String, label_names Array(String), "
	 "label_values Array(String)) "
	 "ENGINE = ReplacingMergeTree ORDER BY (type, series_id)", "series_id"},
	{"stacks", "(stack_id UInt64, locations Array(Int64)) ENGINE = ReplacingMergeTree "
	 "ORDER BY stack_id", "stack_id"},
	{"locations", "(location_id Int64, kind UInt8, build_id String, object_name String, "
	 "obj_offset UInt64, name String, file String, line UInt32, lang String) "
	 "ENGINE = ReplacingMergeTree ORDER BY location_id", "location_id"},
	{"symbols", "(location_id Int64, version Int64, forgotten UInt8, functions Array(String), "
	 "files Array(String), lines Array(Int64)) ENGINE = ReplacingMergeTree(version) "
	 "ORDER BY location_id", "location_id"},
	{"debuginfo", "(name String, upload UInt64, kept_ns Int64, part UInt32, nparts UInt32, "
	 "size UInt64, data String) ENGINE = MergeTree ORDER BY (name, upload, part) "
	 "SETTINGS index_granularity = 64", "cityHash64(name)"},
};

/* Views of samples, on each node's local table, so each shard records
 * what it holds in the same insert. */
static const char *const views[][2] = {
	{"batches_mv", "batches%1$s AS SELECT batch, any(stack_id) AS stack_id, min(ts) AS ts "
	 "FROM samples%1$s GROUP BY batch"},
	{"series_span_mv", "series_span%1$s AS SELECT series_id, minState(ts) AS mint, "
	 "maxState(ts) AS maxt FROM samples%1$s GROUP BY series_id"},
	{"samples_1h_mv", "samples_1h%1$s AS SELECT toInt64(intDiv(ts, 3600000000000) * "
	 "3600000000000) AS step_ts, series_id, stack_id, " HALVES_AS " FROM samples%1$s "
	 "GROUP BY step_ts, series_id, stack_id"},
};

static int node_version(st__ch *ch, size_t i, base_err *err)
{
	base_buf ans = {0};
	int major = 0, minor = 0;
	int rc = on_node_sys(ch, i, "SELECT version()", &ans, err);
	if (!rc && sscanf(bstr(&ans), "%d.%d", &major, &minor) != 2)
		rc = base_fail(err, -EPROTO, "ClickHouse at %s did not say its version",
		              ch->cl.nodes[i].where);
	if (!rc && (major < 18 || (major == 18 && minor < 16)))
		rc = base_fail(err, -EPROTONOSUPPORT, "ClickHouse at %s is version %d.%d; Smolder "
		              "needs 18.16 or later", ch->cl.nodes[i].where, major, minor);
	base_buf_free(&ans);
	return rc;
}

/* Creates what node i lacks and checks the schema version it holds. */
static int node_schema(st__ch *ch, size_t i, base_err *err)
{
	const char *L = ch->dist ? "_local" : "";
	const char *where = ch->cl.nodes[i].where;
	base_buf q = {0}, ans = {0};
	int rc = 0;
	if (strcmp(ch->cl.db, "default")) {
		rc = bprintf(&q, "CREATE DATABASE IF NOT EXISTS %s", ch->cl.db);
		rc = rc ? rc : on_node_sys(ch, i, bstr(&q), NULL, err);
	}
	q.len = 0;
	rc = rc ? rc : bprintf(&q, "CREATE TABLE IF NOT EXISTS smolder_schema (key String, value "
	                       "String) ENGINE = ReplacingMergeTree ORDER BY key");
	rc = rc ? rc : on_node(ch, i, bstr(&q), NULL, err);
	rc = rc ? rc : on_node(ch, i, "SELECT value FROM smolder_schema WHERE key = 'version' "
	                       "FORMAT TSV", &ans, err);
	if (rc)
		goto out;
	bool fresh = ans.len == 0;
	int have = fresh ? ST__CH_SCHEMA : atoi(bstr(&ans));
	if (have != ST__CH_SCHEMA) {
		rc = base_fail(err, -EPROTO, "database %s at %s holds Smolder's ClickHouse schema "
		              "version %d; this server reads and writes version %d", ch->cl.db, where,
		              have, ST__CH_SCHEMA);
		goto out;
	}
	for (size_t t = 0; t < sizeof(tables) / sizeof(*tables) && !rc; t++) {
		q.len = 0;
		rc = bprintf(&q, "CREATE TABLE IF NOT EXISTS %s%s %s", tables[t].name, L,
		             tables[t].ddl);
		rc = rc ? rc : on_node(ch, i, bstr(&q), NULL, err);
	}
	for (size_t v = 0; v < sizeof(views) / sizeof(*views) && !rc; v++) {
		q.len = 0;
		rc = bprintf(&q, "CREATE MATERIALIZED VIEW IF NOT EXISTS %s%s TO ", views[v][0], L);
		rc = rc ? rc : bprintf(&q, views[v][1], L);
		rc = rc ? rc : on_node(ch, i, bstr(&q), NULL, err);
	}
	for (size_t t = 0; ch->dist && t < sizeof(tables) / sizeof(*tables) && !rc; t++) {
		q.len = 0;
		rc = bprintf(&q, "CREATE TABLE IF NOT EXISTS %s AS %s_local ENGINE = Distributed(",
		             tables[t].name, tables[t].name);
		rc = rc ? rc : st__ch_quote(&q, ch->cluster, strlen(ch->cluster));
		rc = rc ? rc : bprintf(&q, ", %s, %s_local%s%s)", ch->cl.db, tables[t].name,
		                       tables[t].shard_key ? ", " : "",
		                       tables[t].shard_key ? tables[t].shard_key : "");
		rc = rc ? rc : on_node(ch, i, bstr(&q), NULL, err);
	}
	if (!rc && fresh) {
		q.len = 0;
		rc = bprintf(&q, "INSERT INTO smolder_schema VALUES ('version', '%d')", ST__CH_SCHEMA);
		rc = rc ? rc : on_node(ch, i, bstr(&q), NULL, err);
	}
out:
	base_buf_free(&q);
	base_buf_free(&ans);
	return rc;
}

/* The cluster as remote_servers defines it on the first node: which
 * shards, their weights, and a listed URL for each of their nodes. */
static int cluster_check(st__ch *ch, base_err *err)
{
	base_buf q = {0}, ans = {0};
	uint32_t shards[256], weights[256], replicas[256][8];
	char hosts[256][8][160];
	size_t nshards = 0;
	bool covered[256][8] = {{false}};
	int rc = bprintf(&q, "SELECT shard_num, shard_weight, replica_num, host_name, port FROM "
	                 "system.clusters WHERE cluster = ");
	rc = rc ? rc : st__ch_quote(&q, ch->cluster, strlen(ch->cluster));
	rc = rc ? rc : bprintf(&q, " ORDER BY shard_num, replica_num FORMAT TSV");
	rc = rc ? rc : on_node_sys(ch, 0, bstr(&q), &ans, err);
	if (rc)
		goto out;
	char *save = NULL;
	size_t nrep[256] = {0};
	for (char *line = strtok_r((char *)bstr(&ans), "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		unsigned s, w, r, port;
		char host[128];
		if (sscanf(line, "%u\t%u\t%u\t%127[^\t]\t%u", &s, &w, &r, host, &port) != 5)
			continue;
		if (!nshards || shards[nshards - 1] != s) {
			if (nshards == 256)
				break;
			shards[nshards] = s;
			weights[nshards++] = w;
		}
		size_t k = nshards - 1;
		if (nrep[k] < 8) {
			replicas[k][nrep[k]] = r;
			snprintf(hosts[k][nrep[k]], sizeof(hosts[k][0]), "%s:%u", host, port);
			nrep[k]++;
		}
	}
	if (!nshards) {
		rc = base_fail(err, -ENOENT, "ClickHouse at %s has no cluster '%s' in its "
		              "remote_servers", ch->cl.nodes[0].where, ch->cluster);
		goto out;
	}
	/* which shard and replica each listed node is */
	for (size_t i = 0; i < ch->cl.nnodes && !rc; i++) {
		q.len = ans.len = 0;
		rc = bprintf(&q, "SELECT shard_num, replica_num FROM system.clusters WHERE is_local "
		             "AND cluster = ");
		rc = rc ? rc : st__ch_quote(&q, ch->cluster, strlen(ch->cluster));
		rc = rc ? rc : bprintf(&q, " FORMAT TSV");
		rc = rc ? rc : on_node_sys(ch, i, bstr(&q), &ans, err);
		char *s2 = NULL;
		for (char *line = rc ? NULL : strtok_r((char *)bstr(&ans), "\n", &s2); line;
		     line = strtok_r(NULL, "\n", &s2)) {
			unsigned s, r;
			if (sscanf(line, "%u\t%u", &s, &r) != 2)
				continue;
			for (size_t k = 0; k < nshards; k++)
				for (size_t j = 0; j < nrep[k]; j++)
					if (shards[k] == s && replicas[k][j] == r)
						covered[k][j] = true;
		}
	}
	for (size_t k = 0; k < nshards && !rc; k++)
		for (size_t j = 0; j < nrep[k] && !rc; j++)
			if (!covered[k][j])
				rc = base_fail(err, -EINVAL, "shard %u of cluster '%s' (%s) has no URL in "
				              "--clickhouse: the server creates every shard's tables and "
				              "drops their old partitions itself, so it needs each node's "
				              "HTTP interface", shards[k], ch->cluster, hosts[k][j]);
	if (rc)
		goto out;
	uint32_t total = 0;
	for (size_t k = 0; k < nshards; k++)
		total += weights[k];
	if (!total || total > 1u << 16 || !(ch->slot_shard = malloc(total * sizeof(uint32_t)))) {
		rc = total ? -ENOMEM : base_fail(err, -EINVAL, "cluster '%s' has no weight",
		                                ch->cluster);
		goto out;
	}
	for (size_t k = 0, s = 0; k < nshards; k++)
		for (uint32_t w = 0; w < weights[k]; w++)
			ch->slot_shard[s++] = (uint32_t)k;
	ch->nslots = total;
out:
	base_buf_free(&q);
	base_buf_free(&ans);
	return rc;
}

void st_ch_options_default(st_ch_options *o)
{
	memset(o, 0, sizeof(*o));
	o->retention_ns = 7LL * 24 * 3600 * 1000000000LL;
	o->rollup_retention_ns = 90LL * 24 * 3600 * 1000000000LL;
	o->timeout_ns = 30LL * 1000000000LL;
	o->max_group_rows = 1u << 20;
	o->max_future_ns = 600LL * 1000000000LL;
	o->max_series = 1000000;
}

static const st__ops ch_ops;

int st_open_clickhouse(const st_ch_options *opt, st_db **out, base_err *err)
{
	int rc;
	if (err)
		err->msg[0] = 0;
	st__ch *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->h.ops = &ch_ops;
	pthread_mutex_init(&ch->kmu, NULL);
	pthread_rwlock_init(&ch->cmu, NULL);
	pthread_mutex_init(&ch->gmu, NULL);
	pthread_cond_init(&ch->gcv, NULL);
	pthread_mutex_init(&ch->smu, NULL);
	pthread_mutex_init(&ch->fmu, NULL);
	ch->t0 = base_monotonic_ns();
	ch->opt = *opt;
	if (!ch->opt.timeout_ns)
		ch->opt.timeout_ns = 30LL * 1000000000LL;
	if (!ch->opt.max_group_rows)
		ch->opt.max_group_rows = 1u << 20;
	if ((rc = cache_init(&ch->labels)) || (rc = cache_init(&ch->stacks)) ||
	    (rc = cache_init(&ch->locs)) || (rc = cache_init(&ch->symc)) ||
	    (rc = base_map_init(&ch->nosyms, 1024)) || (rc = base_map_init(&ch->known_series, 1024)) ||
	    (rc = base_map_init(&ch->known_stacks, 65536)) || (rc = base_map_init(&ch->miss, 256)))
		goto out;
	if (opt->cluster) {
		size_t n = strlen(opt->cluster);
		if (!n || n >= sizeof(ch->cluster) ||
		    strspn(opt->cluster, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		                         "0123456789_-.") != n) {
			rc = base_fail(err, -EINVAL, "cluster name '%s': expected [A-Za-z0-9_.-]",
			              opt->cluster);
			goto out;
		}
		snprintf(ch->cluster, sizeof(ch->cluster), "%s", opt->cluster);
		ch->dist = true;
	}
	if (opt->cache_dir) {
		snprintf(ch->cache_dir, sizeof(ch->cache_dir), "%s", opt->cache_dir);
		if ((rc = st__mkdir_p(ch->cache_dir))) {
			base_fail(err, rc, "creating %s: %s", ch->cache_dir, strerror(-rc));
			goto out;
		}
	} else {
		const char *t = getenv("TMPDIR");
		snprintf(ch->cache_dir, sizeof(ch->cache_dir), "%s/smolder-cache.XXXXXX",
		         t && *t ? t : "/tmp");
		if (!mkdtemp(ch->cache_dir)) {
			rc = base_fail(err, -errno, "creating %s: %s", ch->cache_dir, strerror(errno));
			ch->cache_dir[0] = 0;
			goto out;
		}
		ch->own_cache = true;
	}
	if ((rc = st__ch_client_init(&ch->cl, opt->urls, ch->opt.timeout_ns, err)))
		goto out;
	for (size_t i = 0; i < ch->cl.nnodes && !rc; i++)
		rc = node_version(ch, i, err);
	if (!rc && ch->dist)
		rc = cluster_check(ch, err);
	for (size_t i = 0; i < ch->cl.nnodes && !rc; i++)
		rc = node_schema(ch, i, err);
	if (rc)
		goto out;
	*out = (st_db *)ch;
	return 0;
out:
	ch_close((st_db *)ch);
	return rc;
}

static const st__ops ch_ops = {
	.name = "clickhouse",
	.close = ch_close,
	.append = ch_append,
	.cut = ch_cut,
	.head_full = ch_head_full,
	.retention = ch_retention,
	.compact = ch_compact,
	.select = ch_select,
	.series_labels = ch_series_labels,
	.rows = ch_rows,
	.merge_spans = ch_merge_spans,
	.series_steps_spans = ch_series_steps_spans,
	.rollup_steps = ch_rollup_steps,
	.rollup_spans = ch_rollup_spans,
	.rollup = ch_rollup,
	.stack_frames = ch_stack_frames,
	.stacks_locations = ch_stacks_locations,
	.locations = ch_locations,
	.symbols_get = ch_symbols_get,
	.symbols_put = ch_symbols_put,
	.symbols_forget = ch_symbols_forget,
	.symbols_missing = ch_symbols_missing,
	.file_dir = ch_file_dir,
	.file_keep = ch_file_keep,
	.file_exists = ch_file_exists,
	.file_path = ch_file_path,
	.file_changes = ch_file_changes,
	.get_stats = ch_get_stats,
};
