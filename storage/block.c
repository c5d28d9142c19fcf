/* block.c - immutable column blocks: the writer that sorts rows and encodes
 * them in lz4-compressed column chunks, and the reader that validates an
 * image before trusting any offset in it. The byte layout is described in
 * docs/format.md; the directory life cycle lives in db.c (open, create,
 * delete), head.c (cut) and maint.c (compaction, retention). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <lz4.h>

#include "storage/st_int.h"

/* ---- Exp-Golomb bit coding ----
 * The stack and value columns are sequences of small numbers with a long
 * tail (rank gaps within a group; sample counts near 1). A byte varint
 * spends 8 bits on a 1 and lz4 cannot find repeats in such data, so these
 * columns are Exp-Golomb coded with an order k chosen per chunk (the
 * column's first byte), MSB first. On the benchmark fleet this takes the
 * stack column from 1.40 to about 1.2 bytes per row and the values from
 * 0.31 to about 0.2. lz4 still runs over the result, uniformly. */

#define EG_MAX_K 40

static int bitlen(uint64_t x)
{
	return 64 - __builtin_clzll(x);
}

/* The order that codes x[0..n) in the fewest bits, from a histogram of
 * bit lengths: (x >> k) + 1 has bitlen(x) - k bits, or one more when it
 * carries, which the estimate ignores. */
static int eg_best_k(const uint64_t *x, size_t n)
{
	uint64_t hist[65] = {0};
	for (size_t i = 0; i < n; i++)
		hist[x[i] ? bitlen(x[i]) : 0]++;
	int best = 0;
	uint64_t best_bits = UINT64_MAX;
	for (int k = 0; k <= EG_MAX_K; k++) {
		uint64_t bits = 0;
		for (int b = 0; b <= 64; b++) {
			int l = b > k ? b - k : 1;
			bits += hist[b] * (uint64_t)(2 * l - 1 + k);
		}
		if (bits < best_bits) {
			best_bits = bits;
			best = k;
		}
	}
	return best;
}

typedef struct bitw {
	uint8_t *p;
	uint64_t acc;
	int n;        /* pending bits in acc, always < 8 between calls */
} bitw;

static void bw_put(bitw *w, uint64_t v, int nbits)
{
	/* at most 56 bits a call, so acc never overflows */
	while (nbits > 56) {
		bw_put(w, v >> 32, nbits - 32);
		v &= 0xffffffffULL;
		nbits = 32;
	}
	w->acc = (w->acc << nbits) | v;
	w->n += nbits;
	while (w->n >= 8) {
		*w->p++ = (uint8_t)(w->acc >> (w->n - 8));
		w->n -= 8;
	}
	w->acc &= (1ULL << w->n) - 1;
}

static void bw_eg(bitw *w, uint64_t x, int k)
{
	uint64_t q = (x >> k) + 1;
	int l = bitlen(q);
	bw_put(w, 0, l - 1);
	bw_put(w, q, l);
	if (k)
		bw_put(w, x & ((1ULL << k) - 1), k);
}

static void bw_flush(bitw *w)
{
	if (w->n)
		*w->p++ = (uint8_t)(w->acc << (8 - w->n));
	w->n = 0;
}

/* Encodes x[0..n) into out (room for 1 + n * 17 bytes); returns bytes. */
static size_t eg_encode(const uint64_t *x, size_t n, uint8_t *out)
{
	int k = eg_best_k(x, n);
	/* callers keep numbers below 2^51 (ranks, values within ST_MAX_VALUE) */
	bitw w = {out + 1, 0, 0};
	out[0] = (uint8_t)k;
	for (size_t i = 0; i < n; i++)
		bw_eg(&w, x[i], k);
	bw_flush(&w);
	return (size_t)(w.p - out);
}

/* The reader works on a column followed by at least 8 zero bytes, and
 * checks its position against the column's length before every load, so
 * damaged input ends in an error, never a read past the buffer. */
typedef struct bitr {
	const uint8_t *p;
	uint64_t pos, nbits;
	int k;
} bitr;

static inline uint64_t br_peek(const bitr *r)
{
	uint64_t v;
	memcpy(&v, r->p + (r->pos >> 3), 8);
	return __builtin_bswap64(v) << (r->pos & 7);
}

static inline int br_eg(bitr *r, uint64_t *out)
{
	if (r->pos >= r->nbits)
		return -EBADMSG;
	uint64_t w = br_peek(r);
	if (!w)
		return -EBADMSG;
	int z = __builtin_clzll(w), k = r->k;
	if (z > 51)  /* no valid column holds numbers this large */
		return -EBADMSG;
	uint64_t q;
	if (2 * z + 1 + k <= 57) {
		/* the common case: zeros, q and the low bits in one load */
		q = w >> (63 - 2 * z);
		uint64_t low = k ? (w << (2 * z + 1)) >> (64 - k) : 0;
		r->pos += (uint64_t)(2 * z + 1 + k);
		*out = ((q - 1) << k) | low;
		return 0;
	}
	r->pos += (uint64_t)z;
	if (r->pos >= r->nbits)
		return -EBADMSG;
	q = br_peek(r) >> (63 - z);
	r->pos += (uint64_t)z + 1;
	uint64_t low = 0;
	if (k) {
		if (r->pos >= r->nbits)
			return -EBADMSG;
		low = br_peek(r) >> (64 - k);
		r->pos += (uint64_t)k;
	}
	*out = ((q - 1) << k) | low;
	return 0;
}

static int br_init(bitr *r, const uint8_t *col, uint32_t len)
{
	if (len < 1 || col[0] > EG_MAX_K)
		return -EBADMSG;
	r->p = col + 1;
	r->pos = 0;
	r->nbits = (uint64_t)(len - 1) * 8;
	r->k = col[0];
	return 0;
}

/* ---- writer ---- */

typedef struct srow {
	int64_t ts;
	uint32_t series;   /* block-local series index */
	uint32_t rank;     /* block-local stack index, most frequent first */
	int64_t value;
} srow;

static int cmp_ts_rank(const void *a, const void *b)
{
	const srow *x = a, *y = b;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

static int cmp_rank(const void *a, const void *b)
{
	const srow *x = a, *y = b;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

typedef struct freq {
	uint64_t id;
	uint64_t count;
	uint32_t u;       /* universe index */
} freq;

static int cmp_freq(const void *a, const void *b)
{
	const freq *x = a, *y = b;
	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Rows of one series arrive in time order from the head almost always, so
 * sort only the small equal-time groups by rank and fall back to a full sort
 * when time goes backwards. */
static void sort_series_rows(srow *r, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (r[i].ts < r[i - 1].ts) {
			qsort(r, n, sizeof(*r), cmp_ts_rank);
			return;
		}
	size_t g = 0;
	for (size_t i = 1; i <= n; i++)
		if (i == n || r[i].ts != r[g].ts) {
			if (i - g > 64) {
				qsort(r + g, i - g, sizeof(*r), cmp_rank);
			} else {
				/* groups are a few dozen rows: insertion sort */
				for (size_t a = g + 1; a < i; a++) {
					srow t = r[a];
					size_t b = a;
					while (b > g && r[b - 1].rank > t.rank) {
						r[b] = r[b - 1];
						b--;
					}
					r[b] = t;
				}
			}
			g = i;
		}
}

typedef struct wctx {
	int fd;
	base_buf out;       /* pending file bytes */
	uint64_t file_off; /* file offset of out.data[0] */
} wctx;

static int w_flush(wctx *w, bool force)
{
	if (!force && w->out.len < (4u << 20))
		return 0;
	int rc = st__write_all(w->fd, w->out.data, w->out.len);
	w->file_off += w->out.len;
	w->out.len = 0;
	return rc;
}

/* Orders present series indices by their IDs. */
static int cmp_by_id(const void *a, const void *b, void *ids)
{
	const uint64_t *id = ids;
	uint64_t x = id[*(const uint32_t *)a], y = id[*(const uint32_t *)b];
	return x < y ? -1 : x > y;
}

/* The chunk encoder: takes sorted rows a chunk at a time and writes them
 * out as they come, so a writer whose rows arrive in order (a compaction's
 * merge) needs memory for one chunk, not for the block. */
typedef struct benc {
	wctx w;
	uint32_t crows;
	st__blk_chunk *chunks;
	size_t nchunks, chunks_cap;
	base_buf col[ST__BLK_NCOL];
	uint8_t *cbuf;
	uint64_t *xs, *xv;   /* one chunk's stack and value codes */
	uint64_t nrows;
	int64_t mint, maxt;
} benc;

static void benc_free(benc *e)
{
	free(e->chunks);
	free(e->cbuf);
	free(e->xs);
	free(e->xv);
	for (int k = 0; k < ST__BLK_NCOL; k++)
		base_buf_free(&e->col[k]);
	base_buf_free(&e->w.out);
}

/* Starts an image on fd with a placeholder header. */
static int benc_init(benc *e, int fd, uint32_t crows)
{
	memset(e, 0, sizeof(*e));
	e->w.fd = fd;
	e->crows = crows;
	e->mint = INT64_MAX;
	e->maxt = INT64_MIN;
	e->cbuf = malloc((size_t)LZ4_compressBound((int)crows * 17 + 16) + 16);
	e->xs = malloc(crows * sizeof(*e->xs));
	e->xv = malloc(crows * sizeof(*e->xv));
	if (!e->cbuf || !e->xs || !e->xv)
		return -ENOMEM;
	uint8_t hdr[ST__BLK_HDR] = {0};
	return base_buf_put(&e->w.out, hdr, sizeof(hdr));
}

/* Encodes rows r[0..n) (1 <= n <= crows, sorted by series, time, rank) as
 * the next chunk. */
static int benc_chunk(benc *e, const srow *r, size_t n)
{
	int rc;
	if ((rc = base_grow(&e->chunks, &e->chunks_cap, e->nchunks + 1, sizeof(*e->chunks))))
		return rc;
	st__blk_chunk *ch = &e->chunks[e->nchunks++];
	memset(ch, 0, sizeof(*ch));
	ch->nrows = (uint32_t)n;
	ch->first_series = r[0].series;
	ch->last_series = r[n - 1].series;
	ch->mint = INT64_MAX;
	ch->maxt = INT64_MIN;
	for (int k = 0; k < ST__BLK_NCOL; k++) {
		e->col[k].len = 0;
		if ((rc = base_buf_reserve(&e->col[k], n * 17 + 16)))
			return rc;
	}
	uint8_t *p0 = (uint8_t *)e->col[0].data, *p1 = (uint8_t *)e->col[1].data;
	uint32_t ps = 0, pr = 0;
	int64_t pt = 0;
	for (size_t i = 0; i < n; i++) {
		const srow *x = &r[i];
		bool first = i == 0;
		uint32_t ds = first ? x->series : x->series - ps;
		int64_t dt = (int64_t)((uint64_t)x->ts - (uint64_t)pt);
		p0 += st__put_varint(p0, ds);
		p1 += st__put_varint(p1, st__zigzag(dt));
		/* within one (series, time) group ranks ascend: store the gap */
		bool group = first || ds != 0 || dt != 0;
		if (x->value > ST_MAX_VALUE || x->value < -ST_MAX_VALUE)
			return -EINVAL;  /* st_append never lets one in */
		e->xs[i] = group ? x->rank : x->rank - pr;
		/* most values are 1: centre the zigzag there */
		e->xv[i] = st__zigzag((int64_t)((uint64_t)x->value - 1));
		ps = x->series;
		pt = x->ts;
		pr = x->rank;
		if (x->ts < ch->mint)
			ch->mint = x->ts;
		if (x->ts > ch->maxt)
			ch->maxt = x->ts;
	}
	if (ch->mint < e->mint)
		e->mint = ch->mint;
	if (ch->maxt > e->maxt)
		e->maxt = ch->maxt;
	e->nrows += n;
	e->col[0].len = (size_t)(p0 - (uint8_t *)e->col[0].data);
	e->col[1].len = (size_t)(p1 - (uint8_t *)e->col[1].data);
	e->col[2].len = eg_encode(e->xs, n, (uint8_t *)e->col[2].data);
	e->col[3].len = eg_encode(e->xv, n, (uint8_t *)e->col[3].data);
	ch->off = e->w.file_off + e->w.out.len;
	uint32_t crc = 0;
	for (int k = 0; k < ST__BLK_NCOL; k++) {
		int cl = LZ4_compress_default((const char *)e->col[k].data, (char *)e->cbuf,
		                              (int)e->col[k].len,
		                              LZ4_compressBound((int)e->crows * 17 + 16));
		if (cl <= 0)
			return -EIO;
		ch->rlen[k] = (uint32_t)e->col[k].len;
		ch->clen[k] = (uint32_t)cl;
		crc = st__crc32c(crc, e->cbuf, (size_t)cl);
		if ((rc = base_buf_put(&e->w.out, e->cbuf, (size_t)cl)))
			return rc;
	}
	ch->crc = crc;
	return w_flush(&e->w, false);
}

/* Writes the index (series table, stack dictionary in rank order, chunk
 * directory, coverage, parents) and then the header. */
/* gtab: a roll-up's group table as it goes in the index (u32 ngroups,
 * then each group), or NULL for none (version 1). */
static int benc_finish(benc *e, const st__blk_series *ser, uint32_t nser,
                       const uint64_t *stacks, uint32_t nstk, const st__block_spec *spec,
                       const base_buf *gtab)
{
	int rc = 0;
	base_buf idx = {0};
	uint64_t index_off = e->w.file_off + e->w.out.len;
	for (uint32_t s = 0; s < nser && !rc; s++) {
		rc = st__enc_u64(&idx, ser[s].id);
		rc = rc ? rc : st__enc_u64(&idx, ser[s].first_row);
		rc = rc ? rc : st__enc_u32(&idx, ser[s].nrows);
		rc = rc ? rc : st__enc_u64(&idx, (uint64_t)ser[s].mint);
		rc = rc ? rc : st__enc_u64(&idx, (uint64_t)ser[s].maxt);
	}
	for (uint32_t k = 0; k < nstk && !rc; k++)
		rc = st__enc_u64(&idx, stacks[k]);
	for (size_t c = 0; c < e->nchunks && !rc; c++) {
		st__blk_chunk *ch = &e->chunks[c];
		rc = st__enc_u64(&idx, ch->off);
		rc = rc ? rc : st__enc_u32(&idx, ch->nrows);
		rc = rc ? rc : st__enc_u32(&idx, ch->first_series);
		rc = rc ? rc : st__enc_u32(&idx, ch->last_series);
		rc = rc ? rc : st__enc_u32(&idx, ch->crc);
		rc = rc ? rc : st__enc_u64(&idx, (uint64_t)ch->mint);
		rc = rc ? rc : st__enc_u64(&idx, (uint64_t)ch->maxt);
		for (int k = 0; k < ST__BLK_NCOL && !rc; k++)
			rc = st__enc_u32(&idx, ch->clen[k]);
		for (int k = 0; k < ST__BLK_NCOL && !rc; k++)
			rc = st__enc_u32(&idx, ch->rlen[k]);
	}
	rc = rc ? rc : st__enc_u32(&idx, spec->ncover);
	uint64_t max_lsn = 0;
	int64_t min_part = INT64_MAX;
	for (uint32_t i = 0; i < spec->ncover && !rc; i++) {
		rc = st__enc_u64(&idx, (uint64_t)spec->cover[i].partition_start);
		rc = rc ? rc : st__enc_u64(&idx, spec->cover[i].wal_lsn);
		if (spec->cover[i].wal_lsn > max_lsn)
			max_lsn = spec->cover[i].wal_lsn;
		if (spec->cover[i].partition_start < min_part)
			min_part = spec->cover[i].partition_start;
	}
	rc = rc ? rc : st__enc_u32(&idx, spec->nparents);
	for (uint32_t i = 0; i < spec->nparents && !rc; i++) {
		size_t l = strlen(spec->parents[i]);
		uint8_t t[2] = {(uint8_t)l, (uint8_t)(l >> 8)};
		rc = base_buf_put(&idx, t, 2);
		rc = rc ? rc : base_buf_put(&idx, spec->parents[i], l);
	}
	if (!rc && gtab)
		rc = base_buf_put(&idx, gtab->data, gtab->len);
	if (rc)
		goto out;
	if (idx.len > UINT32_MAX || e->nchunks > UINT32_MAX) {
		rc = -EFBIG;
		goto out;
	}
	if ((rc = base_buf_put(&e->w.out, idx.data, idx.len)) || (rc = w_flush(&e->w, true)))
		goto out;

	uint8_t hdr[ST__BLK_HDR] = {0};
	memcpy(hdr, ST__BLK_MAGIC, 8);
	st__put_u32(hdr + 8, gtab ? ST__BLK_VERSION_GROUPS : ST__BLK_VERSION);
	st__put_u32(hdr + 12, spec->step_s);
	st__put_u64(hdr + 16, (uint64_t)e->mint);
	st__put_u64(hdr + 24, (uint64_t)e->maxt);
	st__put_u64(hdr + 32, e->nrows);
	st__put_u32(hdr + 40, nser);
	st__put_u32(hdr + 44, nstk);
	st__put_u32(hdr + 48, (uint32_t)e->nchunks);
	st__put_u32(hdr + 52, e->crows);
	st__put_u64(hdr + 56, max_lsn);
	st__put_u64(hdr + 64, (uint64_t)(spec->ncover ? min_part : e->mint));
	st__put_u64(hdr + 72, index_off);
	st__put_u32(hdr + 80, (uint32_t)idx.len);
	st__put_u32(hdr + 84, st__crc32c(0, idx.data, idx.len));
	st__put_u32(hdr + 92, st__crc32c(0, hdr, 92));
	ssize_t wr = pwrite(e->w.fd, hdr, sizeof(hdr), 0);
	if (wr != (ssize_t)sizeof(hdr))
		rc = wr < 0 ? -errno : -EIO;
out:
	base_buf_free(&idx);
	return rc;
}

/* Ranks stacks by descending count (ties by ID), so the common ones get the
 * short codes: fills rank[u] for every u with count[u] > 0 and returns the
 * IDs in rank order in *out (the caller frees it). */
static int rank_stacks(const uint64_t *count, const uint64_t *ids, uint32_t nu,
                       uint32_t *rank, uint64_t **out, uint32_t *nout)
{
	uint32_t n = 0;
	for (uint32_t u = 0; u < nu; u++)
		n += count[u] != 0;
	freq *fr = malloc(((size_t)n + 1) * sizeof(*fr));
	uint64_t *v = malloc(((size_t)n + 1) * sizeof(*v));
	if (!fr || !v) {
		free(fr);
		free(v);
		return -ENOMEM;
	}
	n = 0;
	for (uint32_t u = 0; u < nu; u++)
		if (count[u])
			fr[n++] = (freq){ids[u], count[u], u};
	qsort(fr, n, sizeof(*fr), cmp_freq);
	for (uint32_t i = 0; i < n; i++) {
		rank[fr[i].u] = i;
		v[i] = fr[i].id;
	}
	free(fr);
	*out = v;
	*nout = n;
	return 0;
}

int st__block_write_fd(int fd, const st__wrow *rows, size_t n, const st__block_spec *spec)
{
	int rc = 0;
	uint32_t *s_local = NULL, *k_rank = NULL, *present = NULL;
	uint64_t *kcount = NULL, *kids = NULL;
	srow *sorted = NULL;
	size_t *start = NULL;
	st__blk_series *ser = NULL;
	benc e = {0};
	uint32_t nser = 0, nstk = 0;
	uint32_t crows = spec->chunk_rows ? spec->chunk_rows : 16384;
	if (n == 0 || crows > ST__BLK_MAX_CHUNK_ROWS)
		return -EINVAL;

	/* dictionaries: series sorted by ID, stacks by descending frequency so
	 * the common ones get short codes; rows index the caller's universes,
	 * so this is array work, no hashing */
	s_local = malloc(((size_t)spec->nseries_u + 1) * sizeof(*s_local));
	present = malloc(((size_t)spec->nseries_u + 1) * sizeof(*present));
	kcount = calloc((size_t)spec->nstacks_u + 1, sizeof(*kcount));
	k_rank = malloc(((size_t)spec->nstacks_u + 1) * sizeof(*k_rank));
	if (!s_local || !present || !kcount || !k_rank) {
		rc = -ENOMEM;
		goto out;
	}
	memset(s_local, 0xff, ((size_t)spec->nseries_u + 1) * sizeof(*s_local));
	for (size_t i = 0; i < n; i++) {
		if (rows[i].series >= spec->nseries_u || rows[i].stack >= spec->nstacks_u) {
			rc = -EINVAL;
			goto out;
		}
		if (s_local[rows[i].series] == UINT32_MAX) {
			s_local[rows[i].series] = 0;
			present[nser++] = rows[i].series;
		}
		kcount[rows[i].stack]++;
	}
	qsort_r(present, nser, sizeof(*present), cmp_by_id, (void *)spec->series_ids);
	for (uint32_t i = 0; i < nser; i++)
		s_local[present[i]] = i;
	if ((rc = rank_stacks(kcount, spec->stack_ids, spec->nstacks_u, k_rank, &kids, &nstk)))
		goto out;

	/* counting sort by series, then by (time, rank) within each series */
	sorted = malloc(n * sizeof(*sorted));
	start = calloc((size_t)nser + 1, sizeof(*start));
	ser = calloc(nser, sizeof(*ser));
	if (!sorted || !start || !ser) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		start[s_local[rows[i].series] + 1]++;
	for (uint32_t s = 0; s < nser; s++)
		start[s + 1] += start[s];
	for (uint32_t s = 0; s < nser; s++) {
		ser[s].id = spec->series_ids[present[s]];
		ser[s].first_row = start[s];
		ser[s].nrows = (uint32_t)(start[s + 1] - start[s]);
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t s = s_local[rows[i].series];
		sorted[start[s]++] = (srow){rows[i].ts, s, k_rank[rows[i].stack], rows[i].value};
	}
	for (uint32_t s = 0; s < nser; s++) {
		srow *r = sorted + ser[s].first_row;
		sort_series_rows(r, ser[s].nrows);
		ser[s].mint = r[0].ts;
		ser[s].maxt = r[ser[s].nrows - 1].ts;
	}

	if ((rc = benc_init(&e, fd, crows)))
		goto out;
	for (size_t lo = 0; lo < n && !rc; lo += crows)
		rc = benc_chunk(&e, sorted + lo, lo + crows < n ? crows : n - lo);
	rc = rc ? rc : benc_finish(&e, ser, nser, kids, nstk, spec, NULL);
out:
	free(s_local);
	free(present);
	free(kcount);
	free(k_rank);
	free(kids);
	free(sorted);
	free(start);
	free(ser);
	benc_free(&e);
	return rc;
}

/* ---- merging blocks without holding their rows ---- */

/* One input of a merge: its current decoded chunk and position, and its
 * dictionaries mapped to the output's. With a window, chunks outside it
 * are not decoded and rows outside it are passed over, as are the rows of
 * series the output leaves out (smap NONE). The rows a roll-up sums into
 * groups come as one more input without a block (b NULL): its rows hold
 * output series and ranks already. */
typedef struct mcur {
	const st__block *b;
	st__chunk_rows cr;
	uint32_t chunk, i;    /* next chunk to decode; next row of cr */
	uint32_t *smap;       /* block-local series -> output series */
	uint32_t *kmap;       /* block-local stack -> merged stack universe */
	bool done;
} mcur;

static bool chunk_outside(const st__blk_chunk *ch, const st__block_spec *spec)
{
	return spec->window && (ch->maxt < spec->from || ch->mint >= spec->to);
}

/* Makes cur's next row available; done when the block has no more. */
static int mcur_fill(mcur *c, const st__block_spec *spec)
{
	if (!c->b) {
		c->done = c->i >= c->cr.n;
		return 0;
	}
	for (;;) {
		while (c->i < c->cr.n) {
			int64_t t = c->cr.ts[c->i];
			if ((!spec->window || (t >= spec->from && t < spec->to)) &&
			    c->smap[c->cr.series[c->i]] != UINT32_MAX)
				return 0;
			c->i++;
		}
		while (c->chunk < c->b->nchunks && chunk_outside(&c->b->chunks[c->chunk], spec))
			c->chunk++;
		if (c->chunk >= c->b->nchunks) {
			c->done = true;
			return 0;
		}
		int rc = st__chunk_decode(c->b, c->chunk++, &c->cr);
		if (rc)
			return rc;
		c->i = 0;
	}
}

static inline uint32_t mcur_series(const mcur *c)
{
	return c->b ? c->smap[c->cr.series[c->i]] : c->cr.series[c->i];
}

static int cmp_u64v(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_srow_rank(const void *a, const void *b)
{
	const srow *x = a, *y = b;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

static int cmp_srow(const void *a, const void *b)
{
	const srow *x = a, *y = b;
	if (x->series != y->series)
		return x->series < y->series ? -1 : 1;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* Sums the rows of one (series, step) group that share a rank, in place:
 * grp is sorted by rank. A sum that would pass ST_MAX_VALUE either way is
 * closed and a new row of the same rank started, so every stored value
 * stays within what the value column codes and the total is unchanged.
 * Returns the new row count. */
static size_t sum_ranks(srow *grp, size_t n)
{
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (w && grp[w - 1].rank == grp[i].rank) {
			int64_t s = grp[w - 1].value, v = grp[i].value;
			/* both within ±ST_MAX_VALUE (2^48): no overflow here */
			if (s + v <= ST_MAX_VALUE && s + v >= -ST_MAX_VALUE) {
				grp[w - 1].value = s + v;
				continue;
			}
		}
		grp[w++] = grp[i];
	}
	return w;
}

/* ---- a roll-up's groups ---- */

/* Sums per (group, step, stack) of raw rows, in open addressing over the
 * rows: a slot names its key's latest row; a sum that would pass
 * ST_MAX_VALUE starts a new row of the same key, as sum_ranks does. */
typedef struct grow {
	int64_t t;
	uint32_t g, k;           /* universe series of the group; universe stack */
	int64_t v;
} grow;

typedef struct gacc {
	grow *r;
	size_t n, cap;
	uint32_t *slot;          /* row + 1; 0: empty */
	size_t nslot;
} gacc;

static size_t gacc_at(const gacc *a, uint32_t g, int64_t t, uint32_t k)
{
	uint64_t h = base_mix64(((uint64_t)g << 32 | k) ^ base_mix64((uint64_t)t));
	size_t m = a->nslot - 1, i = (size_t)h & m;
	while (a->slot[i]) {
		const grow *r = &a->r[a->slot[i] - 1];
		if (r->g == g && r->t == t && r->k == k)
			break;
		i = (i + 1) & m;
	}
	return i;
}

/* -E2BIG past ST__MAX_GROUP_ROWS rows. */
static int gacc_add(gacc *a, uint32_t g, int64_t t, uint32_t k, int64_t v)
{
	if ((a->n + 1) * 2 > a->nslot) {
		size_t ns = a->nslot ? a->nslot * 2 : 65536;
		uint32_t *sl = calloc(ns, sizeof(*sl));
		if (!sl)
			return -ENOMEM;
		free(a->slot);
		a->slot = sl;
		a->nslot = ns;
		/* later rows of a key come after, so the latest row wins */
		for (size_t i = 0; i < a->n; i++)
			a->slot[gacc_at(a, a->r[i].g, a->r[i].t, a->r[i].k)] = (uint32_t)i + 1;
	}
	size_t i = gacc_at(a, g, t, k);
	if (a->slot[i]) {
		grow *r = &a->r[a->slot[i] - 1];
		/* |r->v| <= 2^48, |v| < 2^52 (a decoded value): no overflow */
		int64_t s = r->v + v;
		if (s <= ST_MAX_VALUE && s >= -ST_MAX_VALUE) {
			r->v = s;
			return 0;
		}
	}
	if (a->n >= ST__MAX_GROUP_ROWS)
		return -E2BIG;
	if (base_grow(&a->r, &a->cap, a->n + 1, sizeof(*a->r)))
		return -ENOMEM;
	a->r[a->n++] = (grow){t, g, k, v};
	a->slot[i] = (uint32_t)a->n;
	return 0;
}

static void gacc_free(gacc *a)
{
	free(a->r);
	free(a->slot);
	memset(a, 0, sizeof(*a));
}

/* The group IDs spec gives series id, or NULL. */
static const uint64_t *gids_of(const st__block_spec *spec, uint64_t id)
{
	size_t lo = 0, hi = spec->ngsids;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (spec->gsids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < spec->ngsids && spec->gsids[lo] == id ? spec->gids[lo] : NULL;
}

static uint32_t sid_index(const uint64_t *sids, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (sids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && sids[lo] == id ? (uint32_t)lo : UINT32_MAX;
}

/* universe flags */
#define U_REAL 1u      /* a series of an input, not a group's */
#define U_INGRP 2u     /* an input's group series */
#define U_GRP 4u       /* a group spec gives a real series */
#define U_BAD 8u       /* a group not to write (its rows, if any, dropped) */
#define U_LVL 16u      /* a group of level 1 (else 0) */
/* an input's group series whose rows are not written */
#define U_DROP(f) (((f) & (U_BAD | U_INGRP)) == (U_BAD | U_INGRP))

/* Checks that input b groups its real series as spec says (a roll-up
 * written under another grouping, or before groups, does not): each group
 * that differs is marked U_BAD. */
static void groups_check(const st__block *b, const uint32_t *smap,
                         uint32_t (*ugrp)[ST__MAX_GROUPS], uint8_t *uflag)
{
	uint32_t (*have)[ST__MAX_GROUPS + 1] = malloc(((size_t)b->nseries + 1) * sizeof(*have));
	if (!have) {
		/* cannot tell: no groups */
		for (uint32_t s = 0; s < b->nseries; s++)
			for (int l = 0; l < ST__MAX_GROUPS; l++)
				if (ugrp[smap[s]][l] != UINT32_MAX)
					uflag[ugrp[smap[s]][l]] |= U_BAD;
		return;
	}
	for (uint32_t s = 0; s < b->nseries; s++)
		have[s][ST__MAX_GROUPS] = 0;
	for (uint32_t g = 0; g < b->ngroups; g++) {
		uint32_t ug = smap[b->groups[g].series];
		for (uint32_t m = 0; m < b->groups[g].nmembers; m++) {
			uint32_t s = b->groups[g].members[m];
			if (have[s][ST__MAX_GROUPS] == ST__MAX_GROUPS)
				uflag[ug] |= U_BAD;
			else
				have[s][have[s][ST__MAX_GROUPS]++] = ug;
		}
	}
	for (uint32_t s = 0; s < b->nseries; s++) {
		uint32_t u = smap[s];
		if (!(uflag[u] & U_REAL))
			continue;
		uint32_t n = have[s][ST__MAX_GROUPS];
		/* the same set both ways: spec's groups of s, and the input's */
		for (int l = 0; l < ST__MAX_GROUPS; l++) {
			uint32_t want = ugrp[u][l];
			bool found = want == UINT32_MAX;
			for (uint32_t k = 0; k < n && !found; k++)
				found = have[s][k] == want;
			if (!found)
				uflag[want] |= U_BAD;
		}
		for (uint32_t k = 0; k < n; k++) {
			bool found = false;
			for (int l = 0; l < ST__MAX_GROUPS && !found; l++)
				found = ugrp[u][l] == have[s][k];
			if (!found)
				uflag[have[s][k]] |= U_BAD;
		}
	}
	free(have);
}

/* A merge in progress: the inputs' cursors, the output's series and
 * stack universes, and the group of rows being sorted. */
typedef struct mrg {
	const st__block *const *in;
	size_t nin;
	const st__block_spec *spec;
	int64_t step;               /* ns; 0: rows kept as they are */
	uint32_t crows;             /* rows per output chunk */
	mcur *cur;
	size_t ncur;                /* nin, and one more for the groups' sums */
	uint64_t *sids;             /* series IDs: the union, then the output's */
	size_t nuni;
	uint32_t *s_out;            /* union index -> output series */
	uint32_t nser;
	st__ids ku;                 /* the stacks' universe */
	uint64_t *kcount, *kids;
	uint32_t *k_rank, nstk;
	st__blk_series *ser;
	srow *buf, *grp;
	size_t nbuf, ngrp, grp_cap;
	uint64_t row;               /* rows written */
	uint32_t last_s;            /* the series of the rows written last */
	benc e;
	/* groups (st__block_spec.gsids): 0 none, 1 summed from raw rows, 2
	 * merged from roll-ups that have them */
	int gmode;
	uint8_t *uflag;             /* per union entry, U_* */
	uint32_t (*ugrp)[ST__MAX_GROUPS]; /* a real series' groups (union) */
	uint8_t *isgrp;             /* per output series: a group's */
	gacc ga;                    /* gmode 1: the groups' sums */
	base_buf gtab;              /* the group table, for the index */
	uint32_t ngroups;
} mrg;

/* The union of the inputs' series tables (and, summing groups, the
 * groups' IDs), by ID as always. */
static int merge_series(mrg *m)
{
	size_t nsid = 0;
	for (size_t j = 0; j < m->nin; j++)
		nsid += m->in[j]->nseries;
	m->sids = malloc((nsid * (1 + (m->gmode == 1 ? ST__MAX_GROUPS : 0)) + 1) *
	                 sizeof(*m->sids));
	if (!m->sids)
		return -ENOMEM;
	nsid = 0;
	for (size_t j = 0; j < m->nin; j++)
		for (uint32_t s = 0; s < m->in[j]->nseries; s++) {
			uint64_t id = m->in[j]->series[s].id;
			m->sids[nsid++] = id;
			const uint64_t *g = m->gmode == 1 ? gids_of(m->spec, id) : NULL;
			for (int l = 0; g && l < ST__MAX_GROUPS; l++)
				if (g[l])
					m->sids[nsid++] = g[l];
		}
	qsort(m->sids, nsid, sizeof(*m->sids), cmp_u64v);
	for (size_t i = 0; i < nsid; i++)
		if (!m->nuni || m->sids[m->nuni - 1] != m->sids[i])
			m->sids[m->nuni++] = m->sids[i];
	m->s_out = malloc((m->nuni + 1) * sizeof(*m->s_out));
	m->uflag = calloc(m->nuni + 1, 1);
	m->ugrp = malloc((m->nuni + 1) * sizeof(*m->ugrp));
	if (!m->s_out || !m->uflag || !m->ugrp)
		return -ENOMEM;
	memset(m->s_out, 0xff, (m->nuni + 1) * sizeof(*m->s_out));
	memset(m->ugrp, 0xff, (m->nuni + 1) * sizeof(*m->ugrp));
	return base_map_init(&m->ku.map, 65536);
}

/* Each input's dictionaries mapped: series tables are sorted by ID, so a
 * merge walk; stacks into one universe. */
static int merge_dicts(mrg *m)
{
	int rc = 0;
	for (size_t j = 0; j < m->nin && !rc; j++) {
		const st__block *b = m->in[j];
		mcur *c = &m->cur[j];
		c->b = b;
		c->smap = malloc(((size_t)b->nseries + 1) * sizeof(*c->smap));
		c->kmap = malloc(((size_t)b->nstacks + 1) * sizeof(*c->kmap));
		if (!c->smap || !c->kmap)
			return -ENOMEM;
		uint32_t o = 0;
		for (uint32_t s = 0; s < b->nseries; s++) {
			while (m->sids[o] != b->series[s].id)
				o++;
			c->smap[s] = o;
			m->uflag[o] |= U_REAL;
		}
		for (uint32_t g = 0; g < b->ngroups; g++)
			m->uflag[c->smap[b->groups[g].series]] |= U_INGRP;
		for (uint32_t k = 0; k < b->nstacks && !rc; k++)
			rc = st__ids_index(&m->ku, b->stacks[k], &c->kmap[k]);
	}
	return rc;
}

/* Which groups the output gets: those the spec gives its real series,
 * but for a group whose ID is a real series' too (never seen), and,
 * merging roll-ups, one that an input lacks or groups otherwise, or that
 * the spec no longer gives (its rows are then dropped). */
static void merge_groups(mrg *m)
{
	uint8_t *uf = m->uflag;
	for (uint32_t u = 0; u < m->nuni; u++) {
		if (uf[u] & U_INGRP)
			uf[u] &= (uint8_t)~U_REAL;   /* a series of a group's */
		const uint64_t *g = m->gmode && (uf[u] & U_REAL) ? gids_of(m->spec, m->sids[u]) : NULL;
		for (int l = 0; g && l < ST__MAX_GROUPS; l++) {
			uint32_t ug = g[l] ? sid_index(m->sids, m->nuni, g[l]) : UINT32_MAX;
			if (ug == UINT32_MAX)
				continue;
			m->ugrp[u][l] = ug;
			uf[ug] |= U_GRP | (l ? U_LVL : 0);
		}
	}
	if (m->gmode == 2)
		for (size_t j = 0; j < m->nin; j++)
			groups_check(m->in[j], m->cur[j].smap, m->ugrp, uf);
	for (uint32_t u = 0; u < m->nuni; u++) {
		if ((uf[u] & U_GRP) && (uf[u] & U_REAL))
			uf[u] |= U_BAD;
		if ((uf[u] & U_INGRP) && !(uf[u] & U_GRP))
			uf[u] |= U_BAD;
		if (m->gmode == 2 && (uf[u] & U_GRP) && !(uf[u] & U_INGRP))
			uf[u] |= U_BAD;
	}
	for (uint32_t u = 0; u < m->nuni; u++)
		for (int l = 0; l < ST__MAX_GROUPS; l++)
			if (m->ugrp[u][l] != UINT32_MAX && (uf[m->ugrp[u][l]] & U_BAD))
				m->ugrp[u][l] = UINT32_MAX;
}

/* Stack ranks need counts, which blocks do not store: one decoding pass
 * over the inputs, which also finds the series with rows in the window
 * (a roll-up of a window leaves the others out) and sums groups' rows
 * from raw rows. Then the output's series table and stack ranks.
 * -ENODATA when the window holds no row. */
static int merge_count(mrg *m)
{
	int rc = 0;
	m->kcount = calloc(m->ku.n + 1, sizeof(*m->kcount));
	m->k_rank = malloc((m->ku.n + 1) * sizeof(*m->k_rank));
	if (!m->kcount || !m->k_rank)
		return -ENOMEM;
	bool summing = m->gmode == 1;
	for (size_t j = 0; j < m->nin && !rc; j++) {
		mcur *c = &m->cur[j];
		for (uint32_t ci = 0; ci < m->in[j]->nchunks && !rc; ci++) {
			if (chunk_outside(&m->in[j]->chunks[ci], m->spec))
				continue;
			rc = st__chunk_decode(m->in[j], ci, &c->cr);
			for (uint32_t i = 0; !rc && i < c->cr.n; i++) {
				int64_t t = c->cr.ts[i];
				uint32_t u = c->smap[c->cr.series[i]];
				if ((m->spec->window && (t < m->spec->from || t >= m->spec->to)) ||
				    U_DROP(m->uflag[u]))
					continue;
				m->kcount[c->kmap[c->cr.stack[i]]]++;
				m->s_out[u] = 0;
				for (int l = 0; summing && l < ST__MAX_GROUPS && !rc; l++)
					if (m->ugrp[u][l] != UINT32_MAX)
						rc = gacc_add(&m->ga, m->ugrp[u][l], t - t % m->step,
						              c->kmap[c->cr.stack[i]], c->cr.value[i]);
				if (rc == -E2BIG) {
					/* too many to hold: this file goes without groups */
					summing = false;
					gacc_free(&m->ga);
					memset(m->ugrp, 0xff, (m->nuni + 1) * sizeof(*m->ugrp));
					rc = 0;
				}
			}
		}
		c->cr.n = 0;
	}
	if (rc)
		return rc;
	for (size_t i = 0; i < m->ga.n; i++) {
		m->kcount[m->ga.r[i].k]++;
		m->s_out[m->ga.r[i].g] = 0;
	}
	for (uint32_t s = 0; s < m->nuni; s++)
		if (m->s_out[s] == 0)
			m->sids[m->s_out[s] = m->nser++] = m->sids[s];
	if (m->nser == 0)
		return -ENODATA;
	for (size_t j = 0; j < m->nin; j++)
		for (uint32_t s = 0; s < m->in[j]->nseries; s++)
			m->cur[j].smap[s] = m->s_out[m->cur[j].smap[s]];
	m->ser = calloc((size_t)m->nser + 1, sizeof(*m->ser));
	m->isgrp = calloc((size_t)m->nser + 1, 1);
	if (!m->ser || !m->isgrp)
		return -ENOMEM;
	for (uint32_t s = 0; s < m->nser; s++)
		m->ser[s] = (st__blk_series){m->sids[s], 0, 0, INT64_MAX, INT64_MIN};
	for (uint32_t u = 0; u < m->nuni; u++)
		if (m->s_out[u] != UINT32_MAX && (m->uflag[u] & (U_GRP | U_INGRP)) &&
		    !(m->uflag[u] & U_BAD))
			m->isgrp[m->s_out[u]] = 1;
	return rank_stacks(m->kcount, m->ku.ids, (uint32_t)m->ku.n, m->k_rank, &m->kids,
	                   &m->nstk);
}

/* The group table (docs/format.md, section 7), coarsest first, each group
 * with its members: the real series the spec puts in it, as the output
 * has them. */
static int merge_group_table(mrg *m)
{
	uint32_t *gcnt = calloc(m->nuni + 1, sizeof(*gcnt)), *gmem = NULL, *at = NULL;
	int rc = gcnt ? 0 : -ENOMEM;
	size_t nmem = 0;
	/* members bucketed by group (at: each group's end in gmem), in union
	 * order, which is output order */
	for (uint32_t u = 0; u < m->nuni && !rc; u++)
		for (int l = 0; l < ST__MAX_GROUPS; l++) {
			uint32_t g = m->ugrp[u][l];
			if (m->s_out[u] != UINT32_MAX && g != UINT32_MAX && m->s_out[g] != UINT32_MAX) {
				gcnt[g]++;
				nmem++;
			}
		}
	if (!rc) {
		gmem = malloc((nmem + 1) * sizeof(*gmem));
		at = malloc((m->nuni + 1) * sizeof(*at));
		rc = gmem && at ? 0 : -ENOMEM;
	}
	if (rc)
		goto out;
	uint32_t sum = 0;
	for (uint32_t g = 0; g < m->nuni; g++) {
		at[g] = sum;
		sum += gcnt[g];
	}
	for (uint32_t u = 0; u < m->nuni; u++)
		for (int l = 0; l < ST__MAX_GROUPS; l++) {
			uint32_t g = m->ugrp[u][l];
			if (m->s_out[u] != UINT32_MAX && g != UINT32_MAX && m->s_out[g] != UINT32_MAX)
				gmem[at[g]++] = m->s_out[u];
		}
	rc = st__enc_u32(&m->gtab, 0);
	for (int l = 0; l < 2 && !rc; l++)
		for (uint32_t g = 0; g < m->nuni && !rc; g++) {
			if (!gcnt[g] || !!(m->uflag[g] & U_LVL) != (l == 1))
				continue;
			rc = st__enc_u32(&m->gtab, m->s_out[g]);
			rc = rc ? rc : st__enc_u32(&m->gtab, gcnt[g]);
			for (uint32_t k = at[g] - gcnt[g]; k < at[g] && !rc; k++)
				rc = st__enc_u32(&m->gtab, gmem[k]);
			m->ngroups++;
		}
	if (!rc)
		st__put_u32((uint8_t *)m->gtab.data, m->ngroups);
out:
	free(gcnt);
	free(gmem);
	free(at);
	return rc;
}

/* The groups' summed rows as one more input, in output order. */
static int merge_group_rows(mrg *m)
{
	if (!m->ga.n)
		return 0;
	mcur *c = &m->cur[m->nin];
	st__chunk_rows *r = &c->cr;
	size_t n = m->ga.n;
	r->series = malloc(n * sizeof(*r->series));
	r->ts = malloc(n * sizeof(*r->ts));
	r->stack = malloc(n * sizeof(*r->stack));
	r->value = malloc(n * sizeof(*r->value));
	srow *v = malloc(n * sizeof(*v));
	if (!r->series || !r->ts || !r->stack || !r->value || !v) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const grow *g = &m->ga.r[i];
		v[i] = (srow){g->t, m->s_out[g->g], m->k_rank[g->k], g->v};
	}
	qsort(v, n, sizeof(*v), cmp_srow);
	for (size_t i = 0; i < n; i++) {
		r->series[i] = v[i].series;
		r->ts[i] = v[i].ts;
		r->stack[i] = v[i].rank;
		r->value[i] = v[i].value;
	}
	free(v);
	r->n = (uint32_t)n;
	r->cap = n;
	m->ncur = m->nin + 1;
	gacc_free(&m->ga);
	return 0;
}

/* The smallest (series, time) at the inputs' heads (with a step, the
 * step's start for the time); false when every input is done. */
static bool merge_next_key(const mrg *m, uint32_t *gs, int64_t *gt)
{
	*gs = UINT32_MAX;
	*gt = INT64_MAX;
	for (size_t j = 0; j < m->ncur; j++) {
		const mcur *c = &m->cur[j];
		if (c->done)
			continue;
		uint32_t s = mcur_series(c);
		int64_t t = c->cr.ts[c->i];
		if (m->step)
			t -= t % m->step;  /* timestamps are never negative */
		if (s < *gs || (s == *gs && t < *gt)) {
			*gs = s;
			*gt = t;
		}
	}
	return *gs != UINT32_MAX;
}

/* Takes the group (gs, gt) from every input holding it into grp, sorted
 * by the output's ranks (and with a step, summed per rank). */
static int merge_take_group(mrg *m, uint32_t gs, int64_t gt)
{
	int rc = 0;
	m->ngrp = 0;
	for (size_t j = 0; j < m->ncur && !rc; j++) {
		mcur *c = &m->cur[j];
		while (!rc && !c->done && mcur_series(c) == gs) {
			int64_t t = c->cr.ts[c->i];
			if ((m->step ? t - t % m->step : t) != gt)
				break;
			if ((rc = base_grow(&m->grp, &m->grp_cap, m->ngrp + 1, sizeof(*m->grp))))
				break;
			uint32_t rank = c->b ? m->k_rank[c->kmap[c->cr.stack[c->i]]] : c->cr.stack[c->i];
			m->grp[m->ngrp++] = (srow){gt, gs, rank, c->cr.value[c->i]};
			c->i++;
			rc = mcur_fill(c, m->spec);
		}
	}
	if (rc)
		return rc;
	/* groups are a process' stacks in one second, a few dozen rows:
	 * insertion sort (glibc's qsort allocates and merge-sorts, and showed
	 * up as 7 % of a compaction); a roll-up's groups are a step's worth,
	 * sorted with qsort */
	srow *grp = m->grp;
	if (m->ngrp > 64) {
		qsort(grp, m->ngrp, sizeof(*grp), cmp_srow_rank);
	} else {
		for (size_t a = 1; a < m->ngrp; a++) {
			srow t = grp[a];
			size_t b = a;
			while (b > 0 && grp[b - 1].rank > t.rank) {
				grp[b] = grp[b - 1];
				b--;
			}
			grp[b] = t;
		}
	}
	if (m->step)
		m->ngrp = sum_ranks(grp, m->ngrp);
	return 0;
}

/* The group into its series' extent and the output's chunks. */
static int merge_put_group(mrg *m, uint32_t gs, int64_t gt)
{
	int rc = 0;
	/* a group's rows in chunks of their own: a read that takes the
	 * group decodes none of its neighbours' rows, and one that takes the
	 * members none of the group's */
	if (m->nbuf && gs != m->last_s && (m->isgrp[gs] || m->isgrp[m->last_s])) {
		rc = benc_chunk(&m->e, m->buf, m->nbuf);
		m->nbuf = 0;
		if (rc)
			return rc;
	}
	m->last_s = gs;
	st__blk_series *sr = &m->ser[gs];
	if (sr->nrows == 0)
		sr->first_row = m->row;
	if (sr->nrows > UINT32_MAX - m->ngrp)
		return -EFBIG;
	sr->nrows += (uint32_t)m->ngrp;
	if (gt < sr->mint)
		sr->mint = gt;
	if (gt > sr->maxt)
		sr->maxt = gt;
	m->row += m->ngrp;
	for (size_t g = 0; g < m->ngrp && !rc; g++) {
		m->buf[m->nbuf++] = m->grp[g];
		if (m->nbuf == m->crows) {
			rc = benc_chunk(&m->e, m->buf, m->nbuf);
			m->nbuf = 0;
		}
	}
	return rc;
}

int st__block_merge_fd(int fd, const st__block *const *in, size_t nin,
                       const st__block_spec *spec)
{
	int rc = 0;
	mrg m = {.in = in, .nin = nin, .spec = spec,
	         .step = (int64_t)spec->step_s * 1000000000LL,
	         .crows = spec->chunk_rows ? spec->chunk_rows : 16384, .ncur = nin,
	         .last_s = UINT32_MAX};
	m.cur = calloc(nin + 1, sizeof(*m.cur));
	if (!m.cur || nin == 0 || m.crows > ST__BLK_MAX_CHUNK_ROWS ||
	    (spec->window && spec->from >= spec->to)) {
		rc = m.cur ? -EINVAL : -ENOMEM;
		goto out;
	}
	/* groups: summed here from raw rows, or merged from roll-ups */
	bool raw_in = true, ru_in = true;
	for (size_t j = 0; j < nin; j++) {
		raw_in &= in[j]->step_s == 0;
		ru_in &= in[j]->step_s != 0;
	}
	if (spec->step_s && spec->gsids && spec->ngsids)
		m.gmode = raw_in ? 1 : ru_in ? 2 : 0;
	if ((rc = merge_series(&m)) || (rc = merge_dicts(&m)))
		goto out;
	merge_groups(&m);
	if ((rc = merge_count(&m)) || (m.gmode && (rc = merge_group_table(&m))) ||
	    (rc = merge_group_rows(&m)))
		goto out;
	/* the merge: inputs are each sorted by (series, time, own rank); take
	 * one (series, time) group at a time from every input holding it (with
	 * a step, one (series, step) group: a step's start is monotonic in
	 * time, so the order holds), sort it by the output's ranks, and hand
	 * full chunks to the encoder */
	m.buf = malloc((size_t)m.crows * sizeof(*m.buf));
	if (!m.buf || (rc = benc_init(&m.e, fd, m.crows))) {
		rc = rc ? rc : -ENOMEM;
		goto out;
	}
	for (size_t j = 0; j < m.ncur && !rc; j++)
		rc = mcur_fill(&m.cur[j], spec);
	uint32_t gs;
	int64_t gt;
	while (!rc && merge_next_key(&m, &gs, &gt))
		if (!(rc = merge_take_group(&m, gs, gt)))
			rc = merge_put_group(&m, gs, gt);
	if (!rc && m.nbuf)
		rc = benc_chunk(&m.e, m.buf, m.nbuf);
	if (!rc && m.row == 0)
		rc = -EINVAL;
	rc = rc ? rc : benc_finish(&m.e, m.ser, m.nser, m.kids, m.nstk, spec,
	                           m.ngroups ? &m.gtab : NULL);
out:
	for (size_t j = 0; m.cur && j <= nin; j++) {
		st__chunk_rows_free(&m.cur[j].cr);
		free(m.cur[j].smap);
		free(m.cur[j].kmap);
	}
	free(m.cur);
	free(m.sids);
	free(m.s_out);
	free(m.uflag);
	free(m.ugrp);
	free(m.isgrp);
	free(m.kcount);
	free(m.kids);
	free(m.k_rank);
	free(m.ser);
	free(m.buf);
	free(m.grp);
	st__ids_free(&m.ku);
	gacc_free(&m.ga);
	base_buf_free(&m.gtab);
	benc_free(&m.e);
	return rc;
}

/* ---- reader ---- */

void st__block_release(st__block *b)
{
	if (!b)
		return;
	free(b->series);
	free(b->stacks);
	free(b->chunks);
	free(b->cover);
	free(b->groups);
	free(b->group_members);
	if (b->parents)
		for (uint32_t i = 0; i < b->nparents; i++)
			free(b->parents[i]);
	free(b->parents);
	memset(b, 0, sizeof(*b));
}

#define BAD(...) do { rc = base_fail(err, -EBADMSG, __VA_ARGS__); goto out; } while (0)

/* Whether t may be a row's time in b: any time in a block, a multiple of
 * the step in a roll-up. */
static bool on_step(const st__block *b, int64_t t)
{
	return b->step_s == 0 || t % ((int64_t)b->step_s * 1000000000LL) == 0;
}

/* A roll-up's group table (docs/format.md, section 7) at *ip: each group
 * a series of its own, its members real series (no group's), ascending,
 * in no more than ST__MAX_GROUPS groups each. */
static int parse_groups(st__block *b, const uint8_t **ipp, const uint8_t *iend, base_err *err)
{
	int rc = 0;
	const uint8_t *ip = *ipp;
	uint8_t *role = NULL;      /* per series: 0xff a group's, else its groups */
	if (b->step_s == 0)
		BAD("block has a group table, which only roll-up files have");
	if (iend - ip < 4)
		BAD("block group table is cut short");
	b->ngroups = st__get_u32(ip);
	ip += 4;
	if (b->ngroups == 0 || b->ngroups >= b->nseries)
		BAD("block lists %u groups for %u series", b->ngroups, b->nseries);
	/* members fit in what is left of the index: 8 bytes per group, 4 per
	 * member, so this bounds the allocation */
	size_t left = (size_t)(iend - ip);
	if (left < (size_t)b->ngroups * 12)
		BAD("block group table is cut short");
	b->groups = calloc(b->ngroups, sizeof(*b->groups));
	b->group_members = malloc(left / 4 * sizeof(*b->group_members) + 4);
	role = calloc(b->nseries, 1);
	if (!b->groups || !b->group_members || !role) {
		rc = -ENOMEM;
		goto out;
	}
	size_t nm = 0;
	for (uint32_t g = 0; g < b->ngroups; g++) {
		if (iend - ip < 8)
			BAD("block group table is cut short");
		st__blk_group *e = &b->groups[g];
		e->series = st__get_u32(ip);
		e->nmembers = st__get_u32(ip + 4);
		ip += 8;
		if (e->series >= b->nseries || role[e->series])
			BAD("block group %u: series %u is another group's or a member", g, e->series);
		role[e->series] = 0xff;
		if (e->nmembers == 0 || (size_t)(iend - ip) / 4 < e->nmembers)
			BAD("block group %u has %u members, the table room for fewer", g, e->nmembers);
		e->members = b->group_members + nm;
		for (uint32_t m = 0; m < e->nmembers; m++, ip += 4) {
			uint32_t s = st__get_u32(ip);
			if (s >= b->nseries || role[s] == 0xff || role[s] >= ST__MAX_GROUPS ||
			    (m > 0 && s <= e->members[m - 1]))
				BAD("block group %u: member %u is out of order, a group or in too "
				    "many groups", g, s);
			role[s]++;
			b->group_members[nm++] = s;
		}
	}
	*ipp = ip;
out:
	free(role);
	return rc;
}

int st__block_parse(const uint8_t *img, size_t len, st__block *b, base_err *err)
{
	int rc = 0;
	memset(b, 0, sizeof(*b));
	if (len < ST__BLK_HDR)
		BAD("block is %zu bytes, shorter than its header", len);
	if (memcmp(img, ST__BLK_MAGIC, 8))
		BAD("not a Smolder block (bad magic)");
	if (st__get_u32(img + 92) != st__crc32c(0, img, 92))
		BAD("block header checksum mismatch");
	uint32_t version = st__get_u32(img + 8);
	if (version != ST__BLK_VERSION && version != ST__BLK_VERSION_GROUPS)
		BAD("block version %u, this build reads %u and %u", version, ST__BLK_VERSION,
		    ST__BLK_VERSION_GROUPS);
	b->img = img;
	b->len = len;
	b->step_s = st__get_u32(img + 12);
	b->mint = (int64_t)st__get_u64(img + 16);
	b->maxt = (int64_t)st__get_u64(img + 24);
	b->nrows = st__get_u64(img + 32);
	b->nseries = st__get_u32(img + 40);
	b->nstacks = st__get_u32(img + 44);
	b->nchunks = st__get_u32(img + 48);
	b->chunk_rows = st__get_u32(img + 52);
	b->wal_lsn = st__get_u64(img + 56);
	b->partition_start = (int64_t)st__get_u64(img + 64);
	uint64_t ioff = st__get_u64(img + 72);
	uint32_t ilen = st__get_u32(img + 80);
	if (ioff < ST__BLK_HDR || ioff > len || ilen > len - ioff)
		BAD("block index lies outside the file");
	const uint8_t *ip = img + ioff, *iend = ip + ilen;
	if (st__get_u32(img + 84) != st__crc32c(0, ip, ilen))
		BAD("block index checksum mismatch");
	if (b->chunk_rows == 0 || b->chunk_rows > ST__BLK_MAX_CHUNK_ROWS ||
	    b->mint > b->maxt || b->nrows == 0 || b->nseries == 0 || b->nstacks == 0 ||
	    b->mint < 0 || !on_step(b, b->mint) || !on_step(b, b->maxt))
		BAD("block header fields out of range");
	uint64_t need = (uint64_t)b->nseries * ST__BLK_SERIES_ENT +
	                (uint64_t)b->nstacks * 8 + (uint64_t)b->nchunks * ST__BLK_CHUNK_DIR + 8;
	if (need > ilen)
		BAD("block index is %u bytes, its counts need %llu", ilen,
		    (unsigned long long)need);
	if ((uint64_t)b->nchunks * b->chunk_rows < b->nrows ||
	    (uint64_t)b->nchunks > b->nrows)
		BAD("block has %u chunks for %llu rows", b->nchunks,
		    (unsigned long long)b->nrows);
	b->series = calloc(b->nseries, sizeof(*b->series));
	b->stacks = malloc((size_t)b->nstacks * 8);
	b->chunks = calloc(b->nchunks ? b->nchunks : 1, sizeof(*b->chunks));
	if (!b->series || !b->stacks || !b->chunks) {
		rc = -ENOMEM;
		goto out;
	}
	uint64_t rows = 0;
	for (uint32_t s = 0; s < b->nseries; s++, ip += ST__BLK_SERIES_ENT) {
		st__blk_series *e = &b->series[s];
		e->id = st__get_u64(ip);
		e->first_row = st__get_u64(ip + 8);
		e->nrows = st__get_u32(ip + 16);
		e->mint = (int64_t)st__get_u64(ip + 20);
		e->maxt = (int64_t)st__get_u64(ip + 28);
		if (e->first_row != rows || e->nrows == 0 || e->mint > e->maxt ||
		    e->mint < b->mint || e->maxt > b->maxt || !on_step(b, e->mint) ||
		    !on_step(b, e->maxt) || (s > 0 && e->id <= b->series[s - 1].id))
			BAD("block series %u is inconsistent", s);
		rows += e->nrows;
	}
	if (rows != b->nrows)
		BAD("block series hold %llu rows, header says %llu",
		    (unsigned long long)rows, (unsigned long long)b->nrows);
	memcpy(b->stacks, ip, (size_t)b->nstacks * 8);
	ip += (size_t)b->nstacks * 8;
	rows = 0;
	uint64_t data_end = ST__BLK_HDR;
	for (uint32_t c = 0; c < b->nchunks; c++, ip += ST__BLK_CHUNK_DIR) {
		st__blk_chunk *ch = &b->chunks[c];
		ch->off = st__get_u64(ip);
		ch->nrows = st__get_u32(ip + 8);
		ch->first_series = st__get_u32(ip + 12);
		ch->last_series = st__get_u32(ip + 16);
		ch->crc = st__get_u32(ip + 20);
		ch->mint = (int64_t)st__get_u64(ip + 24);
		ch->maxt = (int64_t)st__get_u64(ip + 32);
		uint64_t clen = 0;
		for (int k = 0; k < ST__BLK_NCOL; k++) {
			ch->clen[k] = st__get_u32(ip + 40 + 4 * k);
			ch->rlen[k] = st__get_u32(ip + 56 + 4 * k);
			clen += ch->clen[k];
			/* a varint is at most 10 bytes, an Exp-Golomb code of a
			 * valid number at most 17: this bounds decompression */
			uint64_t max = (uint64_t)ch->nrows * (k < 2 ? 10 : 17) + 1;
			uint64_t min = k < 2 ? ch->nrows : 2;
			if (ch->rlen[k] > max || ch->rlen[k] < min)
				BAD("block chunk %u column %d has a bad raw length", c, k);
		}
		if (ch->nrows == 0 || ch->nrows > b->chunk_rows || ch->off != data_end ||
		    clen > ioff - ch->off || ch->first_series > ch->last_series ||
		    ch->last_series >= b->nseries || ch->mint > ch->maxt ||
		    ch->mint < b->mint || ch->maxt > b->maxt || !on_step(b, ch->mint) ||
		    !on_step(b, ch->maxt))
			BAD("block chunk %u is inconsistent", c);
		data_end = ch->off + clen;
		rows += ch->nrows;
	}
	if (rows != b->nrows || data_end != ioff)
		BAD("block chunks do not cover the rows and data exactly");
	if (iend - ip < 4)
		BAD("block coverage table is cut short");
	b->ncover = st__get_u32(ip);
	ip += 4;
	if (b->ncover > 100000 || (uint64_t)(iend - ip) < (uint64_t)b->ncover * 16 + 4)
		BAD("block coverage table is cut short");
	b->cover = calloc(b->ncover ? b->ncover : 1, sizeof(*b->cover));
	if (!b->cover) {
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < b->ncover; i++, ip += 16) {
		b->cover[i].partition_start = (int64_t)st__get_u64(ip);
		b->cover[i].wal_lsn = st__get_u64(ip + 8);
	}
	b->nparents = st__get_u32(ip);
	ip += 4;
	if (b->nparents > 1024)
		BAD("block lists %u parents", b->nparents);
	if (b->nparents) {
		b->parents = calloc(b->nparents, sizeof(*b->parents));
		if (!b->parents) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (uint32_t i = 0; i < b->nparents; i++) {
		if (iend - ip < 2)
			BAD("block parent list is cut short");
		size_t l = ip[0] | (size_t)ip[1] << 8;
		ip += 2;
		if ((size_t)(iend - ip) < l || l == 0 || l > 255 || memchr(ip, '/', l) ||
		    memchr(ip, 0, l) || (l <= 2 && ip[0] == '.'))
			BAD("block parent %u is not a block name", i);
		b->parents[i] = strndup((const char *)ip, l);
		if (!b->parents[i]) {
			rc = -ENOMEM;
			goto out;
		}
		ip += l;
	}
	if (version == ST__BLK_VERSION_GROUPS && (rc = parse_groups(b, &ip, iend, err)))
		goto out;
	if (ip != iend)
		BAD("block index has %zu trailing bytes", (size_t)(iend - ip));
out:
	if (rc)
		st__block_release(b);
	return rc;
}

void st__chunk_rows_free(st__chunk_rows *r)
{
	free(r->series);
	free(r->ts);
	free(r->stack);
	free(r->value);
	free(r->raw);
	memset(r, 0, sizeof(*r));
}

/* A chunk's compressed columns checked against their CRC (which covers
 * every column, read or not) and r's scratch grown for all of them
 * decompressed, each with 8 zero bytes of padding for the bit reader.
 * *src is where the compressed columns begin. */
static int chunk_check(const st__block *b, uint32_t ci, st__chunk_rows *r,
                       const uint8_t **src)
{
	const st__blk_chunk *ch = &b->chunks[ci];
	size_t raw = 0, cl = 0;
	for (int k = 0; k < ST__BLK_NCOL; k++) {
		raw += ch->rlen[k] + 8;
		cl += ch->clen[k];
	}
	*src = b->img + ch->off;
	if (st__crc32c(0, *src, cl) != ch->crc)
		return -EBADMSG;
	if (r->raw_cap < raw) {
		uint8_t *t = realloc(r->raw, raw);
		if (!t)
			return -ENOMEM;
		r->raw = t;
		r->raw_cap = raw;
	}
	return 0;
}

/* One walk over a chunk, specialized by inlining into its two uses: merge
 * adds the wanted rows' values into acc (indexed by block-local stack)
 * without storing rows; otherwise every row is stored in r. */
static inline __attribute__((always_inline)) int
chunk_walk(const st__block *b, uint32_t ci, st__chunk_rows *r, bool merge,
           const uint8_t *want, bool all, int64_t from, int64_t to, int64_t *acc,
           uint64_t *touched)
{
	const st__blk_chunk *ch = &b->chunks[ci];
	const uint8_t *src;
	int rc = chunk_check(b, ci, r, &src);
	if (rc)
		return rc;
	if (!merge && r->cap < ch->nrows) {
		size_t cap = ch->nrows;
		uint32_t *s = realloc(r->series, cap * sizeof(*s));
		if (s)
			r->series = s;
		int64_t *t = realloc(r->ts, cap * sizeof(*t));
		if (t)
			r->ts = t;
		uint32_t *k = realloc(r->stack, cap * sizeof(*k));
		if (k)
			r->stack = k;
		int64_t *v = realloc(r->value, cap * sizeof(*v));
		if (v)
			r->value = v;
		if (!s || !t || !k || !v)
			return -ENOMEM;
		r->cap = cap;
	}
	const uint8_t *colp[ST__BLK_NCOL], *cole[ST__BLK_NCOL];
	uint8_t *dst = r->raw;
	for (int k = 0; k < ST__BLK_NCOL; k++) {
		int got = LZ4_decompress_safe((const char *)src, (char *)dst, (int)ch->clen[k],
		                              (int)ch->rlen[k]);
		if (got < 0 || (uint32_t)got != ch->rlen[k])
			return -EBADMSG;
		memset(dst + ch->rlen[k], 0, 8);
		colp[k] = dst;
		cole[k] = dst + ch->rlen[k];
		src += ch->clen[k];
		dst += ch->rlen[k] + 8;
	}
	bitr rs, rv;
	if (br_init(&rs, colp[2], ch->rlen[2]) || br_init(&rv, colp[3], ch->rlen[3]))
		return -EBADMSG;
	const uint8_t *p0 = colp[0], *p1 = colp[1];
	uint32_t ps = 0, pr = 0, nstacks = b->nstacks;
	int64_t pt = 0, step = (int64_t)b->step_s * 1000000000LL;
	for (uint32_t i = 0; i < ch->nrows; i++) {
		uint64_t ds, dt, rk, v;
		/* series and time deltas are almost always a single zero byte */
		if (ST__LIKELY(p0 < cole[0] && *p0 < 0x80))
			ds = *p0++;
		else if (st__get_varint(&p0, cole[0], &ds))
			return -EBADMSG;
		if (ST__LIKELY(p1 < cole[1] && *p1 < 0x80))
			dt = *p1++;
		else if (st__get_varint(&p1, cole[1], &dt))
			return -EBADMSG;
		if (br_eg(&rs, &rk) || br_eg(&rv, &v))
			return -EBADMSG;
		int64_t d = st__unzigzag(dt);
		bool group = i == 0 || ds != 0 || d != 0;
		uint64_t s = i == 0 ? ds : ps + ds;
		uint64_t rank = group ? rk : pr + rk;
		int64_t t = (int64_t)((uint64_t)pt + (uint64_t)d);
		if (ST__UNLIKELY(s < ch->first_series || s > ch->last_series || rank >= nstacks ||
		                 t < ch->mint || t > ch->maxt))
			return -EBADMSG;
		/* a roll-up's rows sit at step starts: checked where time moves */
		if (ST__UNLIKELY(step && d != 0 && t % step))
			return -EBADMSG;
		/* unsigned: a hostile v must not overflow (writers keep values
		 * within ST_MAX_VALUE, readers do not trust that) */
		int64_t val = (int64_t)((uint64_t)st__unzigzag(v) + 1);
		if (merge) {
			/* saturating: 2^15 rows of ST_MAX_VALUE pass int64 */
			if (all || (want[s] && t >= from && t < to)) {
				acc[rank] = st_sum_add(acc[rank], val);
				touched[rank >> 6] |= UINT64_C(1) << (rank & 63);
			}
		} else {
			r->series[i] = (uint32_t)s;
			r->ts[i] = t;
			r->stack[i] = (uint32_t)rank;
			r->value[i] = val;
		}
		ps = (uint32_t)s;
		pt = t;
		pr = (uint32_t)rank;
	}
	/* everything consumed: byte columns exactly, bit columns up to the
	 * final byte's padding */
	if (p0 != cole[0] || p1 != cole[1] || rs.pos > rs.nbits ||
	    rs.nbits - rs.pos >= 8 || rv.pos > rv.nbits || rv.nbits - rv.pos >= 8)
		return -EBADMSG;
	r->n = merge ? 0 : ch->nrows;
	return 0;
}

int st__chunk_steps(const st__block *b, uint32_t ci, const st__steps *sp,
                    st__chunk_rows *scratch)
{
	/* the timeline needs series, time and value: the stack column is
	 * neither decompressed nor decoded, which was over a third of the cost
	 * of a full decode. The CRC still covers every column. */
	const st__blk_chunk *ch = &b->chunks[ci];
	const uint8_t *src;
	int rc = chunk_check(b, ci, scratch, &src);
	if (rc)
		return rc;
	const uint8_t *colp[ST__BLK_NCOL] = {0}, *cole[ST__BLK_NCOL] = {0};
	uint8_t *dst = scratch->raw;
	for (int k = 0; k < ST__BLK_NCOL; k++) {
		if (k != 2) {
			int got = LZ4_decompress_safe((const char *)src, (char *)dst,
			                              (int)ch->clen[k], (int)ch->rlen[k]);
			if (got < 0 || (uint32_t)got != ch->rlen[k])
				return -EBADMSG;
			memset(dst + ch->rlen[k], 0, 8);
			colp[k] = dst;
			cole[k] = dst + ch->rlen[k];
			dst += ch->rlen[k] + 8;
		}
		src += ch->clen[k];
	}
	bitr rv;
	if (br_init(&rv, colp[3], ch->rlen[3]))
		return -EBADMSG;
	const uint8_t *p0 = colp[0], *p1 = colp[1];
	uint32_t ps = 0;
	int64_t pt = 0, lo = 1, hi = 0;   /* the current step's [lo, hi) */
	int64_t bstep = (int64_t)b->step_s * 1000000000LL;  /* a roll-up's own */
	size_t step = 0;
	for (uint32_t i = 0; i < ch->nrows; i++) {
		uint64_t ds, dt, v;
		if (ST__LIKELY(p0 < cole[0] && *p0 < 0x80))
			ds = *p0++;
		else if (st__get_varint(&p0, cole[0], &ds))
			return -EBADMSG;
		if (ST__LIKELY(p1 < cole[1] && *p1 < 0x80))
			dt = *p1++;
		else if (st__get_varint(&p1, cole[1], &dt))
			return -EBADMSG;
		if (br_eg(&rv, &v))
			return -EBADMSG;
		uint64_t s = i == 0 ? ds : ps + ds;
		int64_t t = (int64_t)((uint64_t)pt + (uint64_t)st__unzigzag(dt));
		if (ST__UNLIKELY(s < ch->first_series || s > ch->last_series ||
		                 t < ch->mint || t > ch->maxt || (bstep && dt && t % bstep)))
			return -EBADMSG;
		ps = (uint32_t)s;
		pt = t;
		uint32_t g = sp->group[s];
		if (g == UINT32_MAX || t < sp->from || t >= sp->to)
			continue;
		/* rows come by series and time: a new step index only when the
		 * time leaves the current step, not a division per row */
		if (t < lo || t >= hi) {
			step = (size_t)((uint64_t)(t - sp->origin) / (uint64_t)sp->step);
			lo = sp->origin + (int64_t)step * sp->step;
			hi = lo + sp->step;
		}
		if (step >= sp->nsteps)
			continue;
		size_t at = (size_t)g * sp->nsteps + step;
		sp->acc[at] = st_sum_add(sp->acc[at], (int64_t)((uint64_t)st__unzigzag(v) + 1));
		sp->has[at] = 1;
	}
	if (p0 != cole[0] || p1 != cole[1] || rv.pos > rv.nbits || rv.nbits - rv.pos >= 8)
		return -EBADMSG;
	return 0;
}

int st__chunk_decode(const st__block *b, uint32_t ci, st__chunk_rows *r)
{
	return chunk_walk(b, ci, r, false, NULL, true, 0, 0, NULL, NULL);
}

int st__chunk_merge(const st__block *b, uint32_t ci, const uint8_t *want, bool all,
                    int64_t from, int64_t to, int64_t *acc, uint64_t *touched,
                    st__chunk_rows *scratch)
{
	return chunk_walk(b, ci, scratch, true, want, all, from, to, acc, touched);
}
