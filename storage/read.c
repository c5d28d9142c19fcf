/* read.c - reads over a selection: sums per stack (st_merge, over a
 * plan of roll-up levels, raw blocks and the head), rows (st_rows), sums
 * per (series, step) for the timeline, and the metadata passthroughs
 * (stack frames, locations, symbols). A damaged chunk of a block is left
 * out and counted; one of a roll-up file sends the read to finer data. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "storage/db_int.h"

int st__emb_stack_frames(st_db *db, uint64_t id, st_frame_info **out, size_t *n)
{
	return st__meta_stack_frames(db->meta, id, out, n);
}

int st__emb_stacks_locations(st_db *db, const uint64_t *ids, size_t n, int64_t **locs,
                             uint32_t **offs)
{
	return st__meta_stacks_locations(db->meta, ids, n, locs, offs);
}

int st__emb_symbols_get(st_db *db, const int64_t *ids, size_t n, st_symbols_fn fn,
                        void *arg)
{
	return st__meta_symbols_get(db->meta, ids, n, fn, arg);
}

int st__emb_symbols_put(st_db *db, int64_t location_id, const st_symbol *syms, size_t n)
{
	return st__meta_symbols_put(db->meta, location_id, syms, n);
}

int st__emb_symbols_forget(st_db *db, const uint8_t *build_id, uint32_t build_id_len)
{
	return st__meta_symbols_forget(db->meta, build_id, build_id_len);
}

int st__emb_symbols_missing(st_db *db, int64_t after_id, size_t limit,
                            st_unsymbolized_fn fn, void *arg)
{
	return st__meta_symbols_missing(db->meta, after_id, limit, fn, arg);
}

int st__emb_locations(st_db *db, const int64_t *ids, size_t n, st_frame_info **out)
{
	return st__meta_locations(db->meta, ids, n, out);
}

/* ---- reads ---- */

static bool gsel(const st_selection *s, uint32_t x)
{
	return x < s->gbits_n && (s->gbits[x / 8] >> (x % 8)) & 1;
}

/* Takes references on the blocks overlapping [from, to). Caller holds rw. */
blk **st__snapshot_blocks(st_db *db, int64_t from, int64_t to, size_t *n)
{
	blk **v = malloc((db->nblocks + 1) * sizeof(*v));
	*n = 0;
	if (!v)
		return NULL;
	for (size_t i = 0; i < db->nblocks; i++) {
		blk *k = db->blocks[i];
		if (k->b.maxt < from || k->b.mint >= to)
			continue;
		atomic_fetch_add(&k->refs, 1);
		v[(*n)++] = k;
	}
	return v;
}

/* Block-local selection: which series of the block are wanted, and a prefix
 * count so a chunk's series range is checked in O(1). With groups (a
 * merge over a roll-up file that has them), a group whose every member
 * in [from, to) is selected, and none taken by a coarser group, is read
 * in place of its members: its rows are their sums. */
static int block_sel(const st__block *b, const st_selection *sel, int64_t from, int64_t to,
                     bool groups, uint8_t **want, uint32_t **prefix)
{
	uint32_t ns = b->nseries;
	*want = calloc(ns, 1);
	*prefix = calloc((size_t)ns + 1, sizeof(**prefix));
	if (!*want || !*prefix)
		return -ENOMEM;
	uint8_t *w = *want;
	for (uint32_t s = 0; s < ns; s++) {
		const st__blk_series *e = &b->series[s];
		w[s] = st__sel_has(sel, e->id) && e->maxt >= from && e->mint < to;
	}
	for (uint32_t g = 0; groups && g < b->ngroups; g++) {
		const st__blk_group *gr = &b->groups[g];
		bool ok = true;
		/* 2: a member a coarser group took */
		for (uint32_t m = 0; m < gr->nmembers && ok; m++) {
			const st__blk_series *e = &b->series[gr->members[m]];
			ok = w[gr->members[m]] == 1 || (w[gr->members[m]] == 0 && (e->maxt < from ||
			                                                          e->mint >= to));
		}
		if (!ok)
			continue;
		for (uint32_t m = 0; m < gr->nmembers; m++)
			w[gr->members[m]] = 2;
		const st__blk_series *e = &b->series[gr->series];
		w[gr->series] = e->maxt >= from && e->mint < to;
	}
	for (uint32_t s = 0; s < ns; s++) {
		w[s] = w[s] == 1;
		(*prefix)[s + 1] = (*prefix)[s] + w[s];
	}
	return 0;
}

/* Visits the wanted chunks of a block (k) or of a roll-up file (k NULL).
 * With acc, values are summed into acc[block-local stack] (the merge path,
 * no rows materialized); with steps, into the timeline's (group, step)
 * sums; else each wanted chunk is decoded and handed to fn. Adds the rows
 * of the chunks it decoded to *rows. A damaged chunk of a block is left
 * out and counted in sel (st_selection_damaged); one of a roll-up file
 * fails the call with -EBADMSG, so the caller reads its part from finer
 * data instead. Stops with -ETIMEDOUT past sel's deadline. */
typedef int (*chunk_fn)(void *arg, const st__block *b, const st__chunk_rows *r,
                        const uint8_t *want, bool all, int64_t from, int64_t to);

static int scan_block(const blk *k, const st__block *b, const st_selection *sel,
                      int64_t from, int64_t to, int64_t *acc, uint64_t *touched,
                      const st__steps *steps, chunk_fn fn, void *arg, uint64_t *rows)
{
	uint8_t *want = NULL;
	uint32_t *prefix = NULL;
	st__chunk_rows cr = {0};
	int rc = block_sel(b, sel, from, to, acc != NULL, &want, &prefix);
	if (rc || prefix[b->nseries] == 0)
		goto out;
	for (uint32_t c = 0; c < b->nchunks && !rc; c++) {
		if ((rc = st__past(sel->deadline_ns)))
			break;
		const st__blk_chunk *ch = &b->chunks[c];
		if (ch->maxt < from || ch->mint >= to)
			continue;
		uint32_t nwant = prefix[ch->last_series + 1] - prefix[ch->first_series];
		if (nwant == 0)
			continue;
		bool all = nwant == ch->last_series - ch->first_series + 1 &&
		           ch->mint >= from && ch->maxt < to;
		if (acc)
			rc = st__chunk_merge(b, c, want, all, from, to, acc, touched, &cr);
		else if (steps)
			rc = st__chunk_steps(b, c, steps, &cr);
		else if (!(rc = st__chunk_decode(b, c, &cr)))
			rc = fn(arg, b, &cr, want, all, from, to);
		*rows += ch->nrows;
		if (rc == -EBADMSG && k) {
			st__blk_damaged(k, c);
			st__sel_note_damaged(sel);
			rc = 0;
		}
	}
out:
	free(want);
	free(prefix);
	st__chunk_rows_free(&cr);
	return rc;
}

typedef struct sums {
	base_map map;     /* stack id -> index in v */
	st_stack_sum *v;
	size_t n, cap;
} sums;

static int sums_add(sums *s, uint64_t id, int64_t value)
{
	uint32_t i = base_map_get(&s->map, id);
	if (i != BASE_MAP_NONE) {
		s->v[i].value = st_sum_add(s->v[i].value, value);
		return 0;
	}
	if (base_grow(&s->v, &s->cap, s->n + 1, sizeof(*s->v)))
		return -ENOMEM;
	s->v[s->n] = (st_stack_sum){id, value, 0};
	return base_map_put(&s->map, id, (uint32_t)s->n++);
}

/* ---- reads over a plan: raw rows, roll-ups and the head ---- */

/* The registry indices of a block's (or roll-up file's) stacks, mapped
 * once and kept with it in *slot: a merge then adds each stack's sum into
 * one array by index, instead of a hash lookup per stack per file per
 * query, which was a third of a week's merge from roll-ups. A stack the
 * registry lacks (none should) gets BASE_MAP_NONE. Caller holds rw. */
static const uint32_t *stack_gidx(st_db *db, const st__block *b, _Atomic(uint32_t *) *slot)
{
	uint32_t *g = atomic_load(slot);
	if (g)
		return g;
	g = malloc(((size_t)b->nstacks + 1) * sizeof(*g));
	if (!g)
		return NULL;
	for (uint32_t k = 0; k < b->nstacks; k++) {
		if (k + 8 < b->nstacks)
			base_map_prefetch(&db->stacks.map, b->stacks[k + 8]);
		g[k] = base_map_get(&db->stacks.map, b->stacks[k]);
	}
	uint32_t *none = NULL;
	if (!atomic_compare_exchange_strong(slot, &none, g)) {
		free(g);   /* another read mapped it first */
		return none;
	}
	return g;
}

/* What a read adds into: sums per stack (the merge) or the timeline's
 * sums per (group, step). */
typedef struct reader {
	const st_selection *sel;
	sums *s;                 /* merge: stacks the registry lacks */
	int64_t *hacc;           /* merge: sums by registry index, head and all */
	size_t nst;              /* its size: the registry's at the snapshot */
	bool steps;              /* else merge */
	int64_t origin, step;
	size_t nsteps;
	const uint32_t *group;   /* by selection position */
	int64_t *acc;
	uint8_t *has;
	base_err *err;
	uint64_t raw_rows;       /* rows decoded from blocks and the head */
	/* merge: one file's sums by its stack index, zero between files, and
	 * which of them a file touched: kept for the whole read, so a file
	 * costs what it holds for the selection, not its dictionary's size
	 * (23 hourly files of 80 000 stacks each cost a week's flame graph
	 * of one service more than its rows) */
	int64_t *facc;
	uint64_t *ftouched;
	size_t fcap;
} reader;

/* The head's rows in [from, to), added under the caller's read lock. */
static void read_head(st_db *db, reader *rd, const uint32_t *rg, int64_t from, int64_t to)
{
	for (size_t p = 0; p < db->nparts; p++) {
		const hpart *h = db->parts[p];
		if (h->start + db->opt.partition_ns <= from || h->start >= to)
			continue;
		rd->raw_rows += h->n;
		for (size_t i = 0; i < h->n; i++) {
			const hrow *r = &h->rows[i];
			if (r->ts < from || r->ts >= to)
				continue;
			if (!rd->steps) {
				if (gsel(rd->sel, r->series))
					rd->hacc[r->stack] = st_sum_add(rd->hacc[r->stack], r->value);
				continue;
			}
			uint32_t g = rg[r->series];
			if (g == BASE_MAP_NONE || r->ts < rd->origin)
				continue;
			size_t k = (size_t)((uint64_t)(r->ts - rd->origin) / (uint64_t)rd->step);
			if (k >= rd->nsteps)
				continue;
			size_t at = (size_t)g * rd->nsteps + k;
			rd->acc[at] = st_sum_add(rd->acc[at], r->value);
			rd->has[at] = 1;
		}
	}
}

/* Reads the rows in [from, to) of one block (kb) or roll-up file (kb NULL,
 * rollup true). The merge sums into an array of its own and adds it once
 * the read succeeded, as does the timeline for a roll-up file (into the
 * steps its part spans), so a damaged file adds nothing and its part can
 * be read again elsewhere. */
static int read_one(reader *rd, const blk *kb, const st__block *b, bool rollup,
                    const uint32_t *gidx, int64_t from, int64_t to, uint64_t *rows)
{
	int rc = 0;
	if (!rd->steps) {
		size_t need = ((size_t)b->nstacks + 64) / 64 * 64;
		if (need > rd->fcap) {
			free(rd->facc);
			free(rd->ftouched);
			rd->facc = calloc(need, sizeof(*rd->facc));
			rd->ftouched = calloc(need / 64, sizeof(*rd->ftouched));
			rd->fcap = rd->facc && rd->ftouched ? need : 0;
			if (!rd->fcap)
				return -ENOMEM;
		}
		int64_t *acc = rd->facc;
		uint64_t *touched = rd->ftouched;
		rc = scan_block(kb, b, rd->sel, from, to, acc, touched, NULL, NULL, NULL, rows);
		/* added only when the whole file read well; zeroed either way */
		for (size_t wd = 0; wd < need / 64; wd++)
			for (uint64_t bits = touched[wd]; bits; bits &= bits - 1) {
				uint32_t x = (uint32_t)(wd * 64 + (size_t)__builtin_ctzll(bits));
				if (!rc && acc[x]) {
					if (gidx[x] < rd->nst)
						rd->hacc[gidx[x]] = st_sum_add(rd->hacc[gidx[x]], acc[x]);
					else
						rc = sums_add(rd->s, b->stacks[x], acc[x]);
				}
				acc[x] = 0;
			}
		memset(touched, 0, need / 64 * sizeof(*touched));
		return rc;
	}
	if (from < rd->origin)
		from = rd->origin;
	if (from >= to)
		return 0;
	uint32_t *bg = malloc(((size_t)b->nseries + 1) * sizeof(*bg));
	if (!bg)
		return -ENOMEM;
	uint32_t ng = 0;
	for (uint32_t s = 0; s < b->nseries; s++) {
		uint32_t pos = base_map_get(&rd->sel->map, b->series[s].id);
		bg[s] = pos == BASE_MAP_NONE ? BASE_MAP_NONE : rd->group[pos];
		if (bg[s] != BASE_MAP_NONE && bg[s] >= ng)
			ng = bg[s] + 1;
	}
	st__steps sp = {bg, from, to, rd->origin, rd->step, rd->nsteps, rd->acc, rd->has};
	int64_t *tacc = NULL;
	uint8_t *thas = NULL;
	size_t k0 = 0, nk = 0;
	if (rollup && ng) {
		/* the steps [from, to) falls in, for every group */
		k0 = (size_t)((uint64_t)(from - rd->origin) / (uint64_t)rd->step);
		size_t k1 = (size_t)((uint64_t)(to - 1 - rd->origin) / (uint64_t)rd->step) + 1;
		if (k1 > rd->nsteps)
			k1 = rd->nsteps;
		nk = k1 > k0 ? k1 - k0 : 0;
		tacc = calloc((size_t)ng * nk + 1, sizeof(*tacc));
		thas = calloc((size_t)ng * nk + 1, 1);
		if (!tacc || !thas) {
			rc = -ENOMEM;
			goto out;
		}
		sp.origin = rd->origin + (int64_t)k0 * rd->step;
		sp.nsteps = nk;
		sp.acc = tacc;
		sp.has = thas;
	}
	rc = scan_block(kb, b, rd->sel, from, to, NULL, NULL, &sp, NULL, NULL, rows);
	for (size_t g = 0; !rc && tacc && g < ng; g++)
		for (size_t k = 0; k < nk; k++) {
			size_t at = g * rd->nsteps + k0 + k, t = g * nk + k;
			if (!thas[t])
				continue;
			rd->acc[at] = st_sum_add(rd->acc[at], tacc[t]);
			rd->has[at] = 1;
		}
out:
	free(tacc);
	free(thas);
	free(bg);
	return rc;
}

/* Raw rows of [from, to) from the blocks of the read's snapshot. */
static int read_raw(reader *rd, blk *const *bl, size_t nb, int64_t from, int64_t to)
{
	int rc = 0;
	for (size_t i = 0; i < nb && !rc; i++)
		if (bl[i]->b.maxt >= from && bl[i]->b.mint < to)
			rc = read_one(rd, bl[i], &bl[i]->b, false, atomic_load(&bl[i]->gidx),
			              from, to, &rd->raw_rows);
	return rc;
}

/* One part of a plan as the read's snapshot found it. */
typedef struct rpart {
	st__ru_file *f;          /* NULL: raw rows */
	int64_t from, to;
	const char *lost;        /* raw rows a damaged roll-up held are gone */
	const uint32_t *gidx;    /* the merge: f's stacks' registry indices */
} rpart;

static void rparts_free(rpart *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		st__ru_file_unref(v[i].f);
	free(v);
}

static int rparts_add(rpart **v, size_t *n, size_t *cap, const rpart *p)
{
	if (base_grow(v, cap, *n + 1, sizeof(**v)))
		return -ENOMEM;
	(*v)[(*n)++] = *p;
	return 0;
}

/* Reads a plan: under one read lock, the head's rows of every span, the
 * blocks and the roll-up files each part needs (so a cut meanwhile can
 * neither double nor drop a row); then the files and blocks without it. */
static int read_plan(st_db *db, reader *rd, const st_span *sp, size_t nsp)
{
	int rc = 0;
	size_t nb = 0, np = 0, pcap = 0;
	blk **bl = NULL;
	rpart *parts = NULL;
	uint32_t *rg = NULL;
	int64_t lo = INT64_MAX, hi = INT64_MIN;
	for (size_t i = 0; i < nsp; i++) {
		if (sp[i].from_ns >= sp[i].to_ns)
			continue;
		lo = sp[i].from_ns < lo ? sp[i].from_ns : lo;
		hi = sp[i].to_ns > hi ? sp[i].to_ns : hi;
	}
	if (lo >= hi)
		return 0;
	pthread_rwlock_rdlock(&db->rw);
	bl = st__snapshot_blocks(db, lo, hi, &nb);
	if (!bl) {
		rc = -ENOMEM;
		goto unlock;
	}
	if (rd->steps) {
		rg = malloc(((size_t)db->nseries + 1) * sizeof(*rg));
		if (!rg) {
			rc = -ENOMEM;
			goto unlock;
		}
		for (uint32_t i = 0; i < db->nseries; i++) {
			uint32_t pos = gsel(rd->sel, i) ? base_map_get(&rd->sel->map, db->series[i].id)
			                                : BASE_MAP_NONE;
			rg[i] = pos == BASE_MAP_NONE ? BASE_MAP_NONE : rd->group[pos];
		}
	} else {
		rd->nst = db->stacks.n;
		rd->hacc = calloc(rd->nst + 1, sizeof(*rd->hacc));
		if (!rd->hacc) {
			rc = -ENOMEM;
			goto unlock;
		}
		for (size_t i = 0; i < nb && !rc; i++)
			if (!stack_gidx(db, &bl[i]->b, &bl[i]->gidx))
				rc = -ENOMEM;
	}
	for (size_t i = 0; i < nsp && !rc; i++) {
		int64_t from = sp[i].from_ns, to = sp[i].to_ns;
		if (from >= to)
			continue;
		read_head(db, rd, rg, from, to);
		st__ru_part *rp = NULL;
		size_t nrp = 0;
		if (sp[i].step_ns) {
			if (st__ru_level(db->ru, sp[i].step_ns) < 0) {
				rc = base_fail(rd->err, -EINVAL, "no roll-up level has a step of %" PRId64
				              " ns", sp[i].step_ns);
				break;
			}
			rc = st__ru_parts(db->ru, sp[i].step_ns, from, to, &rp, &nrp);
		} else {
			rp = malloc(sizeof(*rp));
			rc = rp ? 0 : -ENOMEM;
			if (rp)
				rp[nrp++] = (st__ru_part){NULL, from, to};
		}
		for (size_t k = 0; k < nrp; k++) {
			rpart p = {rp[k].f, rp[k].from, rp[k].to,
			           rp[k].f ? NULL : st__ru_lost(db->ru, rp[k].from, rp[k].to), NULL};
			if (!rc && rp[k].f && !rd->steps &&
			    !(p.gidx = stack_gidx(db, st__ru_file_block(rp[k].f),
			                          st__ru_file_gidx(rp[k].f))))
				rc = -ENOMEM;
			if (!rc)
				rc = rparts_add(&parts, &np, &pcap, &p);
			if (rc)
				st__ru_file_unref(rp[k].f);
		}
		free(rp);
	}
unlock:
	pthread_rwlock_unlock(&db->rw);
	for (size_t i = 0; i < np && !rc; i++) {
		rpart *p = &parts[i];
		if (p->lost) {
			rc = base_fail(rd->err, -EBADMSG, "roll-up file %s is damaged and the raw "
			              "rows of its span are gone", p->lost);
			break;
		}
		if (!p->f) {
			rc = read_raw(rd, bl, nb, p->from, p->to);
			continue;
		}
		uint64_t rows = 0;
		size_t level = st__ru_file_level(p->f);
		rc = read_one(rd, NULL, st__ru_file_block(p->f), true, p->gidx, p->from, p->to,
		              &rows);
		st__ru_count(db->ru, level, rows);
		if (rc != -EBADMSG)
			continue;
		/* damaged: raw rows of its part, while they exist */
		if (!st__ru_file_damaged(db->ru, p->f)) {
			rc = base_fail(rd->err, -EBADMSG, "roll-up file %s is damaged and the raw rows "
			              "of its span are gone", st__ru_file_path(p->f));
			break;
		}
		st__ru_fallback(db->ru);
		rc = read_raw(rd, bl, nb, p->from, p->to);
	}
	if (!rc && !rd->steps) {
		/* the sums by index into (stack ID, sum): the registry's ID
		 * array may move under ingest, so under the lock */
		pthread_rwlock_rdlock(&db->rw);
		size_t nz = 0;
		for (size_t i = 0; i < rd->nst; i++)
			nz += rd->hacc[i] != 0;
		if (base_grow(&rd->s->v, &rd->s->cap, rd->s->n + nz + 1, sizeof(*rd->s->v)))
			rc = -ENOMEM;
		for (size_t i = 0; i < rd->nst && !rc; i++)
			if (rd->hacc[i])
				rd->s->v[rd->s->n++] = (st_stack_sum){db->stacks.ids[i], rd->hacc[i],
				                                      (uint32_t)i + 1};
		pthread_rwlock_unlock(&db->rw);
	}
	__atomic_fetch_add(&db->rows_read_raw, rd->raw_rows, __ATOMIC_RELAXED);
	for (size_t i = 0; bl && i < nb; i++)
		st__blk_unref(bl[i]);
	free(bl);
	rparts_free(parts, np);
	free(rg);
	free(rd->hacc);
	rd->hacc = NULL;
	free(rd->facc);
	free(rd->ftouched);
	rd->facc = NULL;
	rd->ftouched = NULL;
	rd->fcap = 0;
	return rc;
}

int st__emb_merge_spans(st_db *db, const st_selection *sel, const st_span *sp, size_t nsp,
                        st_stack_sum **out, size_t *nout, base_err *err)
{
	sums s = {0};
	int rc = base_map_init(&s.map, 4096);
	if (rc)
		return rc;
	reader rd = {.sel = sel, .s = &s, .err = err};
	rc = read_plan(db, &rd, sp, nsp);
	if (!rc) {
		*out = s.v;
		*nout = s.n;
		s.v = NULL;
	}
	free(s.v);
	base_map_free(&s.map);
	return rc;
}

typedef struct rows_arg {
	st_row_fn fn;
	void *arg;
} rows_arg;

static int rows_chunk(void *arg, const st__block *b, const st__chunk_rows *r,
                      const uint8_t *want, bool all, int64_t from, int64_t to)
{
	rows_arg *ra = arg;
	for (uint32_t i = 0; i < r->n; i++) {
		if (!all && !(want[r->series[i]] && r->ts[i] >= from && r->ts[i] < to))
			continue;
		st_row row = {r->ts[i], b->series[r->series[i]].id,
		              b->stacks[r->stack[i]], r->value[i]};
		int rc = ra->fn(ra->arg, &row);
		if (rc)
			return rc;
	}
	return 0;
}

int st__emb_rows(st_db *db, const st_selection *sel, int64_t from, int64_t to,
                 st_row_fn fn, void *arg)
{
	int rc = 0;
	size_t nb = 0, nh = 0, hcap = 0;
	st_row *hrows = NULL;
	pthread_rwlock_rdlock(&db->rw);
	blk **bl = st__snapshot_blocks(db, from, to, &nb);
	/* copy the head's rows so fn runs without the lock */
	for (size_t p = 0; bl && p < db->nparts && !rc; p++) {
		const hpart *h = db->parts[p];
		if (h->start + db->opt.partition_ns <= from || h->start >= to)
			continue;
		for (size_t i = 0; i < h->n; i++) {
			const hrow *r = &h->rows[i];
			if (r->ts < from || r->ts >= to || !gsel(sel, r->series))
				continue;
			if (base_grow(&hrows, &hcap, nh + 1, sizeof(*hrows))) {
				rc = -ENOMEM;
				break;
			}
			hrows[nh++] = (st_row){r->ts, db->series[r->series].id,
			                       db->stacks.ids[r->stack], r->value};
		}
	}
	pthread_rwlock_unlock(&db->rw);
	if (!bl)
		rc = -ENOMEM;
	rows_arg ra = {fn, arg};
	uint64_t rows = 0;
	for (size_t i = 0; i < nb && !rc; i++)
		rc = scan_block(bl[i], &bl[i]->b, sel, from, to, NULL, NULL, NULL, rows_chunk, &ra,
		                &rows);
	for (size_t i = 0; i < nh && !rc; i++)
		rc = fn(arg, &hrows[i]);
	for (size_t i = 0; bl && i < nb; i++)
		st__blk_unref(bl[i]);
	free(bl);
	free(hrows);
	return rc;
}

/* ---- the timeline: sums per (group, step) ---- */

int st__emb_series_steps_spans(st_db *db, const st_selection *sel, const st_span *sp,
                               size_t nsp, int64_t origin, int64_t step, size_t nsteps,
                               const uint32_t *group, int64_t *acc, uint8_t *has,
                               base_err *err)
{
	reader rd = {.sel = sel, .steps = true, .origin = origin, .step = step, .nsteps = nsteps,
	             .group = group, .acc = acc, .has = has, .err = err};
	return read_plan(db, &rd, sp, nsp);
}

/* ---- roll-ups ---- */

size_t st__emb_rollup_steps(st_db *db, int64_t *steps, size_t max)
{
	size_t n = st__ru_nlevels(db->ru);
	for (size_t i = 0; i < n && i < max; i++)
		steps[i] = st__ru_step(db->ru, i);
	return n;
}

int st__emb_rollup_spans(st_db *db, int64_t step, int64_t from, int64_t to, st_span **out,
                         size_t *n)
{
	pthread_rwlock_rdlock(&db->rw);
	int rc = st__ru_spans(db->ru, step, from, to, out, n);
	pthread_rwlock_unlock(&db->rw);
	return rc;
}

/* The coverage of [s, e)'s partitions, for a roll-up built from raw rows.
 * Caller holds rw. */
