/* maint.c - what the maintenance pass runs besides the cut: retention
 * (blocks past --retention or over --max-disk, roll-up files past their
 * own retention), compaction of neighbouring blocks, and the roll-up jobs
 * that write each level's files. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/db_int.h"

/* ---- retention and compaction ---- */

/* "2026-01-01T00:00:00Z" for the log: an operator reads it, not a program. */
static const char *utc_str(int64_t ns, char buf[32])
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, 32, "%" PRId64 "ns", ns);
	return buf;
}

/* Deletes roll-up files older than rollup_retention_ns. */
static int rollup_retention(st_db *db, int64_t now_ns)
{
	if (db->opt.rollup_retention_ns <= 0)
		return 0;
	st__ru_file **gone = NULL;
	size_t n = 0;
	pthread_mutex_lock(&db->maint_mu);
	pthread_rwlock_wrlock(&db->rw);
	int rc = st__ru_expire(db->ru, now_ns - db->opt.rollup_retention_ns, &gone, &n);
	pthread_rwlock_unlock(&db->rw);
	st__ru_drop(db->ru, gone, n);
	free(gone);
	pthread_mutex_unlock(&db->maint_mu);
	return rc;
}

/* Raw rows before floor may be gone: roll-ups of spans before it are the
 * best there is, and no longer rebuilt from raw rows. Kept in meta.db so
 * the next open knows too. */
static int raise_raw_floor(st_db *db, int64_t floor)
{
	pthread_rwlock_wrlock(&db->rw);
	st__ru_raw_floor(db->ru, floor);
	pthread_rwlock_unlock(&db->rw);
	return st__meta_setting_raise(db->meta, "raw_floor_ns", floor);
}

static int block_retention(st_db *db, int64_t now_ns);

int st__emb_retention(st_db *db, int64_t now_ns)
{
	int rc = block_retention(db, now_ns);
	int rc2 = rollup_retention(db, now_ns);
	return rc ? rc : rc2;
}

static int block_retention(st_db *db, int64_t now_ns)
{
	int64_t limit = db->opt.retention_ns > 0 ? now_ns - db->opt.retention_ns : INT64_MIN;
	uint64_t max_bytes = db->opt.max_block_bytes;
	if (limit == INT64_MIN && !max_bytes)
		return 0;
	pthread_mutex_lock(&db->maint_mu);
	pthread_rwlock_wrlock(&db->rw);
	blk **gone = malloc((db->nblocks + 1) * sizeof(*gone));
	const char **why = malloc((db->nblocks + 1) * sizeof(*why));
	size_t ngone = 0;
	int rc = gone && why ? 0 : -ENOMEM;
	uint64_t total = 0;
	for (size_t i = 0; !rc && i < db->nblocks;)
		if (db->blocks[i]->b.maxt < limit) {
			why[ngone] = "retention";
			gone[ngone++] = db->blocks[i];
			st__blocks_remove(db, db->blocks[i]);
		} else {
			total += db->blocks[i]->file_bytes;
			i++;
		}
	/* the list is ordered by first row, so the front is the oldest data;
	 * a block still being read goes from the list now and from disk once
	 * its readers are done (blk_kill) */
	while (!rc && max_bytes && total > max_bytes && db->nblocks) {
		blk *k = db->blocks[0];
		total -= k->file_bytes;
		why[ngone] = "--max-disk";
		gone[ngone++] = k;
		st__blocks_remove(db, k);
	}
	pthread_rwlock_unlock(&db->rw);
	int64_t floor = INT64_MIN;
	for (size_t i = 0; i < ngone; i++)
		if (gone[i]->b.maxt + 1 > floor)
			floor = gone[i]->b.maxt + 1;
	if (ngone && !rc)
		rc = raise_raw_floor(db, floor);
	for (size_t i = 0; i < ngone; i++) {
		char from[32], to[32];
		fprintf(stderr, "smolder storage: %s deletes block %s (rows %s .. %s, %" PRIu64
		        " bytes)\n", why[i], gone[i]->name, utc_str(gone[i]->b.mint, from),
		        utc_str(gone[i]->b.maxt, to), gone[i]->file_bytes);
		st__blk_kill(db, gone[i]);
	}
	free(gone);
	free(why);
	pthread_mutex_unlock(&db->maint_mu);
	return rc;
}

/* Merges a run of blocks into one. The inputs are read a chunk at a time
 * (st__block_merge_fd), so a compaction's memory does not grow with the
 * rows it rewrites: reading them all into memory cost 48 bytes a row
 * (rows plus the writer's sorted copy), 770 MB for a 16 M-row block. */
static int compact_run(st_db *db, blk **run, size_t nrun)
{
	int rc = 0;
	const char **parents = calloc(nrun, sizeof(*parents));
	const st__block **in = calloc(nrun, sizeof(*in));
	covers cov = {0};
	if (!parents || !in) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nrun && !rc; i++) {
		parents[i] = run[i]->name;
		in[i] = &run[i]->b;
		for (uint32_t c = 0; !rc && c < run[i]->b.ncover; c++)
			rc = st__cover_note(&cov, run[i]->b.cover[c].partition_start,
			                run[i]->b.cover[c].wal_lsn);
	}
	if (rc)
		goto out;
	char name[32];
	st__block_spec spec = {.cover = cov.v, .ncover = (uint32_t)cov.n, .parents = parents,
	                       .nparents = (uint32_t)nrun};
	rc = st__blk_create(db, NULL, 0, in, nrun, &spec, name);
	if (rc)
		goto out;
	blk *k = NULL;
	rc = st__blk_open(db, name, &k, NULL);
	pthread_rwlock_wrlock(&db->rw);
	if (!rc)
		rc = st__blocks_push(db, k);
	if (!rc)
		for (size_t i = 0; i < nrun; i++)
			st__blocks_remove(db, run[i]);
	pthread_rwlock_unlock(&db->rw);
	if (rc) {
		/* the result lists its parents: left under its live name, it and
		 * the next attempt's result would both load at restart, the rows
		 * twice. Without its name gone, compaction stops until restart */
		st__blk_unref(k);
		if (st__blk_unpublish(db, name)) {
			atomic_store(&db->compact_halted, true);
			fprintf(stderr, "smolder storage: compaction failed and its result %s/%s "
			        "could not be removed; compaction stops until the next start\n",
			        db->blocks_dir, name);
		}
		goto out;
	}
	for (size_t i = 0; i < nrun; i++)
		st__blk_kill(db, run[i]);
out:
	free(parents);
	free(in);
	free(cov.v);
	return rc;
}

/* Decodes every chunk of k, marking it damaged at the first that fails. */
static void blk_check(blk *k)
{
	st__chunk_rows cr = {0};
	for (uint32_t c = 0; c < k->b.nchunks; c++)
		if (st__chunk_decode(&k->b, c, &cr) == -EBADMSG) {
			st__blk_damaged(k, c);
			break;
		}
	st__chunk_rows_free(&cr);
}

int st__emb_compact(st_db *db)
{
	int rc = 0;
	if (atomic_load(&db->compact_halted))
		return -EIO;
	pthread_mutex_lock(&db->maint_mu);
	for (;;) {
		/* find the first run worth merging: neighbours that fit in one
		 * block of compact_max_rows, spanning at most compact_max_span_ns
		 * unless they overlap in time. Overlap alone no longer lifts the
		 * row limit: the head is cut every head_max_rows, so the blocks of
		 * the current hour all overlap a little, and merging them all
		 * every pass would rewrite the hour again and again. Overlapping
		 * blocks are read correctly either way; merging them only saves
		 * queries a block. */
		blk **run = NULL;
		size_t nrun = 0;
		pthread_rwlock_rdlock(&db->rw);
		run = malloc((db->nblocks + 1) * sizeof(*run));
		for (size_t i = 0; run && i < db->nblocks && nrun < 2; i++) {
			nrun = 0;
			blk *a = db->blocks[i];
			if (atomic_load(&a->damaged))
				continue;   /* would fail every pass; left for the operator */
			int64_t mint = a->b.mint, maxt = a->b.maxt;
			uint64_t rows = a->b.nrows;
			run[nrun++] = a;
			for (size_t j = i + 1; j < db->nblocks; j++) {
				blk *c = db->blocks[j];
				if (atomic_load(&c->damaged))
					break;
				bool overlap = c->b.mint <= maxt;
				int64_t nmax = c->b.maxt > maxt ? c->b.maxt : maxt;
				if (rows + c->b.nrows > db->opt.compact_max_rows ||
				    (!overlap && nmax - mint > db->opt.compact_max_span_ns))
					break;
				run[nrun++] = c;
				rows += c->b.nrows;
				maxt = nmax;
			}
		}
		for (size_t i = 0; i < nrun; i++)
			atomic_fetch_add(&run[i]->refs, 1);
		pthread_rwlock_unlock(&db->rw);
		if (!run) {
			rc = -ENOMEM;
			break;
		}
		if (nrun < 2) {
			for (size_t i = 0; i < nrun; i++)
				st__blk_unref(run[i]);
			free(run);
			break;
		}
		rc = compact_run(db, run, nrun);
		/* an input chunk is damaged: find which block, so the next pass
		 * leaves it out instead of failing on it forever */
		for (size_t i = 0; rc == -EBADMSG && i < nrun; i++)
			blk_check(run[i]);
		for (size_t i = 0; i < nrun; i++)
			st__blk_unref(run[i]);
		free(run);
		if (rc)
			break;
	}
	pthread_mutex_unlock(&db->maint_mu);
	return rc;
}

static int covers_of(st_db *db, int64_t s, int64_t e, covers *out)
{
	int rc = 0;
	for (int64_t p = s; p < e && !rc; p += db->opt.partition_ns) {
		uint64_t l = st__covered(&db->cover, p);
		if (l)
			rc = st__cover_note(out, p, l);
	}
	return rc;
}

/* The groups of the series of a roll-up's inputs, for st__ru_write: each
 * series' type's, and its type's with its value of the group label
 * (st_options.rollup_group_label). A series the registry lacks (a
 * group's own) has none. Caller holds rw. */
static int rollup_groups(st_db *db, const st__block *const *in, size_t nin, uint64_t **sids,
                         uint64_t (**gids)[ST__MAX_GROUPS], size_t *n)
{
	size_t total = 0, m = 0;
	for (size_t j = 0; j < nin; j++)
		total += in[j]->nseries;
	uint64_t *v = malloc((total + 1) * sizeof(*v));
	uint64_t (*g)[ST__MAX_GROUPS] = calloc(total + 1, sizeof(*g));
	if (!v || !g) {
		free(v);
		free(g);
		return -ENOMEM;
	}
	for (size_t j = 0; j < nin; j++)
		for (uint32_t s = 0; s < in[j]->nseries; s++)
			v[m++] = in[j]->series[s].id;
	qsort(v, m, sizeof(*v), st__cmp_u64);
	size_t w = 0;
	for (size_t i = 0; i < m; i++)
		if (!w || v[w - 1] != v[i])
			v[w++] = v[i];
	for (size_t i = 0; i < w; i++) {
		uint32_t x = base_map_get(&db->series_map, v[i]);
		if (x == BASE_MAP_NONE)
			continue;
		const sreg *s = &db->series[x];
		const char *type = s->labels[0].value;   /* ST_TYPE_LABEL first */
		g[i][0] = st__group_id(type, NULL, NULL);
		if (db->group_label)
			g[i][1] = st__group_id(type, db->group_label, st__label_of(s, db->group_label));
	}
	*sids = v;
	*gids = g;
	*n = w;
	return 0;
}

/* Builds one roll-up file: from its job's files, or from the blocks over
 * its span as the store has them now, with the coverage they hold. A span
 * with a damaged block gets none: its raw rows stay what queries read,
 * without the damaged chunks and saying so, where a roll-up would hide the
 * loss (and building it would fail at every pass). */
static int rollup_job(st_db *db, const st__ru_job *j)
{
	uint64_t *gsids = NULL, (*gids)[ST__MAX_GROUPS] = NULL;
	size_t ngsids = 0;
	int rc = 0;
	size_t nb = 0, nin = 0;
	blk **bl = NULL;
	covers cov = {0};
	const st__block **in = NULL;
	st__ru_file *f = NULL;
	base_err err = {0};
	pthread_rwlock_rdlock(&db->rw);
	if (j->nsrc) {
		in = malloc(j->nsrc * sizeof(*in));
		for (size_t i = 0; in && i < j->nsrc && !rc; i++) {
			const st__block *b = st__ru_file_block(j->src[i]);
			in[nin++] = b;
			for (uint32_t c = 0; c < b->ncover && !rc; c++)
				if (b->cover[c].partition_start >= j->start &&
				    b->cover[c].partition_start < j->end)
					rc = st__cover_note(&cov, b->cover[c].partition_start, b->cover[c].wal_lsn);
		}
	} else {
		bl = st__snapshot_blocks(db, j->start, j->end, &nb);
		in = malloc((nb + 1) * sizeof(*in));
		for (size_t i = 0; in && bl && i < nb; i++)
			in[nin++] = &bl[i]->b;
		if (bl)
			rc = covers_of(db, j->start, j->end, &cov);
	}
	if (!rc && in)
		rc = rollup_groups(db, in, nin, &gsids, &gids, &ngsids);
	pthread_rwlock_unlock(&db->rw);
	if (!in || (!j->nsrc && !bl))
		rc = -ENOMEM;
	bool damaged = false;
	for (size_t i = 0; bl && i < nb; i++)
		damaged |= atomic_load(&bl[i]->damaged);
	if (!rc && !damaged)
		rc = st__ru_write(db->ru, j, in, nin, cov.v, cov.n, gsids,
		                  (const uint64_t (*)[ST__MAX_GROUPS])gids, ngsids, &f, &err);
	if (rc == -EBADMSG && bl) {
		/* found now: mark the block (blk_check names it) so the next
		 * pass skips the span at once */
		for (size_t i = 0; i < nb; i++)
			blk_check(bl[i]);
		damaged = true;
		rc = 0;
	}
	if (damaged) {
		/* nothing built */
	} else if (!rc) {
		pthread_rwlock_wrlock(&db->rw);
		st__ru_install(db->ru, f);
		pthread_rwlock_unlock(&db->rw);
	} else if (rc == -ENODATA) {
		rc = 0;   /* nothing left in its span */
	} else {
		fprintf(stderr, "smolder storage: roll-up: %s\n", err.msg[0] ? err.msg : strerror(-rc));
	}
	for (size_t i = 0; bl && i < nb; i++)
		st__blk_unref(bl[i]);
	free(bl);
	free(in);
	free(cov.v);
	free(gsids);
	free(gids);
	return rc;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int st__emb_rollup(st_db *db, int64_t now)
{
	int rc = 0;
	int64_t keep_after = db->opt.rollup_retention_ns > 0 ? now - db->opt.rollup_retention_ns
	                                                      : INT64_MIN;
	pthread_mutex_lock(&db->maint_mu);
	/* each level twice when its first round wrote files: a day's file is
	 * made from its units' files, which a first round may write */
	size_t again = 0;
	for (size_t li = 0; li < st__ru_nlevels(db->ru) && !rc; li += !again) {
		st__ru_job *jobs = NULL;
		size_t nj = 0;
		int64_t *parts = NULL;
		pthread_rwlock_rdlock(&db->rw);
		/* the partitions that have rows in blocks (or had, before
		 * retention), in time order */
		parts = malloc((db->cover.n + 1) * sizeof(*parts));
		if (parts) {
			for (size_t i = 0; i < db->cover.n; i++)
				parts[i] = db->cover.v[i].partition_start;
			qsort(parts, db->cover.n, sizeof(*parts), cmp_i64);
			rc = st__ru_todo(db->ru, li, parts, db->cover.n, now, keep_after, &jobs, &nj);
		} else {
			rc = -ENOMEM;
		}
		pthread_rwlock_unlock(&db->rw);
		free(parts);
		for (size_t i = 0; i < nj && !rc; i++)
			rc = rollup_job(db, &jobs[i]);
		st__ru_jobs_free(jobs, nj);
		again = nj && !again;
	}
	pthread_mutex_unlock(&db->maint_mu);
	return rc;
}

