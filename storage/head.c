/* head.c - the write path: a batch checked (stacks known, series within
 * --max-series, rows not from the future), its metadata and WAL record
 * written, then applied to the in-memory head; and the cut, which turns
 * closed head partitions into blocks and lets the WAL go. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <assert.h>

#include "base/buf.h"
#include "base/clock.h"
#include "storage/db_int.h"

/* ---- head ---- */

static hpart *head_part(st_db *db, int64_t start, uint64_t lsn)
{
	for (size_t i = db->nparts; i-- > 0;)
		if (db->parts[i]->start == start && !db->parts[i]->frozen)
			return db->parts[i];
	if (base_grow(&db->parts, &db->parts_cap, db->nparts + 1, sizeof(*db->parts)))
		return NULL;
	hpart *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->start = start;
	h->min_lsn = lsn;
	db->parts[db->nparts++] = h;
	return h;
}

/* Applies a validated batch that the WAL holds as record lsn. Caller holds
 * append_mu; rw is taken here. */
int st__head_apply(st_db *db, const st_batch *b, const uint64_t *series_ids,
                 const uint32_t *kidx, uint64_t lsn)
{
	int rc = 0;
	uint32_t *sidx = malloc((b->nseries + 1) * sizeof(*sidx));
	if (!sidx)
		return -ENOMEM;
	pthread_rwlock_wrlock(&db->rw);
	for (uint32_t i = 0; i < b->nseries && !rc; i++) {
		const st_series_def *s = &b->series[i];
		st_label l[ST_MAX_LABELS];
		st__labels_sorted(s->labels, s->nlabels, l);
		rc = st__series_add(db, series_ids[i], s->type, l, s->nlabels, &sidx[i]);
	}
	for (uint32_t i = 0; i < b->nstacks && !rc; i++)
		rc = st__stack_add(db, b->stacks[i].id);
	hpart *h = NULL;
	int64_t cpart = INT64_MIN;
	uint64_t cov = 0;
	for (uint32_t i = 0; i < b->nsamples && !rc; i++) {
		const st_sample *s = &b->samples[i];
		int64_t part = st__part_of(db, s->ts_ns);
		if (db->replaying && part != cpart) {
			cpart = part;
			cov = st__covered(&db->cover, part);
		}
		if (db->replaying && lsn <= cov)
			continue;  /* already in a block */
		if (!h || h->start != part) {
			h = head_part(db, part, lsn);
			if (!h) {
				rc = -ENOMEM;
				break;
			}
		}
		if (base_grow(&h->rows, &h->cap, h->n + 1, sizeof(*h->rows))) {
			rc = -ENOMEM;
			break;
		}
		uint32_t k = kidx[i] != BASE_MAP_NONE ? kidx[i] :
		             base_map_get(&db->stacks.map, s->stack_id);
		sreg *sr = &db->series[sidx[s->series]];
		h->rows[h->n++] = (hrow){s->ts_ns, sidx[s->series], k, s->value};
		if (s->ts_ns < sr->mint)
			sr->mint = s->ts_ns;
		if (s->ts_ns > sr->maxt)
			sr->maxt = s->ts_ns;
		__atomic_store_n(&db->head_rows, db->head_rows + 1, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&db->rw);
	free(sidx);
	return rc;
}

/* Writes series and stacks the store has not seen to SQLite. Caller holds
 * append_mu. Outside replay (which runs in one transaction of its own) it
 * opens a transaction when there is anything to write and leaves it open
 * (*open_tx): the caller commits once the batch is in the WAL, or rolls
 * back, so a batch the WAL refused (a full disk) leaves no series behind.
 * On failure nothing is left open. */
int st__head_put_meta(st_db *db, const st_batch *b, const uint64_t *series_ids, bool *open_tx)
{
	int rc = 0;
	*open_tx = false;
	for (uint32_t i = 0; i < b->nseries && !rc; i++) {
		if (base_map_get(&db->series_map, series_ids[i]) != BASE_MAP_NONE)
			continue;
		if (!*open_tx && !db->replaying) {
			if ((rc = st__meta_begin(db->meta)))
				return rc;
			*open_tx = true;
		}
		const st_series_def *s = &b->series[i];
		st_label l[ST_MAX_LABELS];
		st__labels_sorted(s->labels, s->nlabels, l);
		st_series_def c = {s->type, l, s->nlabels};
		rc = st__meta_put_series(db->meta, series_ids[i], &c);
	}
	for (uint32_t i = 0; i < b->nstacks && !rc; i++) {
		if (base_map_get(&db->stacks.map, b->stacks[i].id) != BASE_MAP_NONE)
			continue;
		if (!*open_tx && !db->replaying) {
			if ((rc = st__meta_begin(db->meta)))
				return rc;
			*open_tx = true;
		}
		rc = st__meta_put_stack(db->meta, b, &b->stacks[i]);
	}
	if (rc && *open_tx) {
		st__meta_rollback(db->meta);
		*open_tx = false;
	}
	return rc;
}

/* The series of b the store does not have yet, each counted once, against
 * max_series. Caller holds append_mu (the registry cannot grow meanwhile). */
static int check_series_limit(st_db *db, const st_batch *b, const uint64_t *ids, base_err *err)
{
	if (!db->opt.max_series)
		return 0;
	uint64_t fresh = 0;
	for (uint32_t i = 0; i < b->nseries; i++)
		fresh += base_map_get(&db->series_map, ids[i]) == BASE_MAP_NONE;
	if (db->nseries + fresh <= db->opt.max_series)
		return 0;
	/* over, unless the batch names some new series twice: count them
	 * once (a map, not a pairwise search: a batch may hold a million) */
	base_map seen = {0};
	int rc = base_map_init(&seen, fresh);
	fresh = 0;
	for (uint32_t i = 0; !rc && i < b->nseries; i++) {
		if (base_map_get(&db->series_map, ids[i]) != BASE_MAP_NONE ||
		    base_map_get(&seen, ids[i]) != BASE_MAP_NONE)
			continue;
		fresh++;
		rc = base_map_put(&seen, ids[i], 1);
	}
	base_map_free(&seen);
	if (!rc && db->nseries + fresh > db->opt.max_series)
		rc = base_fail(err, -EUSERS, "the store holds %u series and its limit is %" PRIu64
		              " (--max-series): a batch adding %" PRIu64 " new series is refused; "
		              "drop high-cardinality labels (pid, request IDs) or raise the limit",
		              db->nseries, db->opt.max_series, fresh);
	return rc;
}

/* Every sample must name a stack that is in the batch or already stored:
 * a stack ID alone cannot be turned back into frames. Fills kidx with each
 * sample's registry index, BASE_MAP_NONE for stacks this batch introduces
 * (st__head_apply() resolves those once it has added them). Caller holds append_mu,
 * so the registry cannot change before st__head_apply(). */
int st__head_check_stacks(st_db *db, const st_batch *b, uint32_t *kidx, base_err *err)
{
	base_map inb = {0};
	int rc = 0;
	uint64_t last = 0;
	uint32_t last_k = BASE_MAP_NONE;
	for (uint32_t i = 0; i < b->nsamples && !rc; i++) {
		uint64_t id = b->samples[i].stack_id;
		if (i + 8 < b->nsamples)
			base_map_prefetch(&db->stacks.map, b->samples[i + 8].stack_id);
		if (i && id == last) {
			kidx[i] = last_k;
			continue;
		}
		uint32_t k = base_map_get(&db->stacks.map, id);
		if (k == BASE_MAP_NONE) {
			if (!inb.cap) {
				rc = base_map_init(&inb, b->nstacks);
				for (uint32_t j = 0; j < b->nstacks && !rc; j++)
					rc = base_map_put(&inb, b->stacks[j].id, j);
				if (rc)
					break;
			}
			/* -ENOENT, not -EINVAL: the batch is well formed, the store
			 * just lacks a stack the sender believed it had (the agent's
			 * stack cache; the server answers 409 and the agent resends) */
			if (base_map_get(&inb, id) == BASE_MAP_NONE)
				rc = base_fail(err, -ENOENT, "sample %u: stack %016" PRIx64 " is "
				              "unknown; send its frames in the batch", i, id);
		}
		kidx[i] = last_k = k;
		last = id;
	}
	base_map_free(&inb);
	return rc;
}

int st__emb_append(st_db *db, const st_batch *b, base_err *err)
{
	int rc;
	uint64_t lsn = 0;
	base_buf payload = {0};
	uint64_t *ids = malloc((b->nseries + 1) * sizeof(*ids));
	uint32_t *kidx = malloc((b->nsamples + 1) * sizeof(*kidx));
	if (!ids || !kidx) {
		free(ids);
		free(kidx);
		return -ENOMEM;
	}
	if (err)
		err->msg[0] = 0;
	rc = st__batch_validate(b, ids, err);
	if (!rc)
		rc = st__batch_check_future(b, db->opt.max_future_ns, err);
	if (rc)
		goto out;
	rc = st__batch_encode(b, ids, &payload);
	if (rc)
		goto out;
	if (payload.len > ST__WAL_MAX_RECORD) {
		rc = base_fail(err, -EINVAL, "batch encodes to %zu bytes, the limit is %u",
		              payload.len, ST__WAL_MAX_RECORD);
		goto out;
	}
	pthread_mutex_lock(&db->append_mu);
	bool tx = false;
	rc = st__head_check_stacks(db, b, kidx, err);
	if (!rc)
		rc = check_series_limit(db, b, ids, err);
	if (!rc) {
		rc = st__head_put_meta(db, b, ids, &tx);
		if (rc)
			base_fail(err, rc, "writing metadata to %s/meta.db: %s", db->dir, strerror(-rc));
	}
	/* The metadata commits only once the WAL has room for the record
	 * (written ahead as zeros), and the record goes in only once the
	 * metadata committed: a batch refused for a full disk, by either,
	 * leaves no series or stacks behind, now or after a restart. */
	if (!rc) {
		rc = st__fault(ST__FAULT_APPEND_WAL) ? -ENOSPC :
		     st__wal_reserve(db->wal, payload.len);
		if (rc)
			base_fail(err, rc, "writing the WAL in %s/wal: %s", db->dir, strerror(-rc));
	}
	if (tx && rc) {
		st__meta_rollback(db->meta);
	} else if (tx) {
		rc = st__meta_commit(db->meta);
		if (rc)
			base_fail(err, rc, "committing metadata to %s/meta.db: %s", db->dir,
			         strerror(-rc));
	}
	if (!rc) {
		rc = st__wal_append(db->wal, (const uint8_t *)payload.data, payload.len, &lsn);
		if (rc)
			base_fail(err, rc, "writing the WAL in %s/wal: %s", db->dir, strerror(-rc));
	}
	if (!rc) {
		rc = st__head_apply(db, b, ids, kidx, lsn);
		if (rc)
			base_fail(err, rc, "applying the batch: %s", strerror(-rc));
	}
	pthread_mutex_unlock(&db->append_mu);
	if (!rc) {
		rc = st__wal_sync(db->wal, lsn);
		if (rc)
			base_fail(err, rc, "syncing the WAL: %s", strerror(-rc));
	}
out:
	base_buf_free(&payload);
	free(ids);
	free(kidx);
	return rc;
}

/* ---- cut ---- */

static int cmp_part(const void *a, const void *b)
{
	const hpart *x = *(hpart *const *)a, *y = *(hpart *const *)b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Cuts one frozen partition h into a block covering WAL records up to lsn
 * and takes it out of the head. On failure the rows stay in the head, and
 * nothing of the attempt stays behind: a block left under its live name
 * would be loaded at restart beside the rows a retry writes again (rows
 * twice), and coverage recorded for a block then deleted would make replay
 * skip rows that are nowhere (rows lost). So the in-memory records that
 * can fail are reserved before the coverage is written, and nothing can
 * fail after it. */
static int cut_part(st_db *db, hpart *h, uint64_t lsn, const uint64_t *sids, uint32_t nsu,
                    const uint64_t *kids, uint32_t nku)
{
	char name[32];
	st__blk_cover cov = {h->start, lsn};
	st__block_spec spec = {.cover = &cov, .ncover = 1, .series_ids = sids,
	                       .nseries_u = nsu, .stack_ids = kids, .nstacks_u = nku};
	/* frozen rows never change: the writer reads them without a lock.
	 * A failure here leaves no block (block_create removes its .tmp) */
	int rc = st__blk_create(db, h->rows, h->n, NULL, 0, &spec, name);
	if (rc)
		return rc;
	blk *k = NULL;
	rc = st__fault(ST__FAULT_CUT_OPEN);
	if (!rc)
		rc = st__blk_open(db, name, &k, NULL);
	if (!rc) {
		/* room for the block and its coverage, taken now so that the
		 * commit below cannot fail. Nothing else adds to either list
		 * meanwhile (cuts are serialized by cut_mu; a compaction adds one
		 * block and removes its inputs in one step), so the room stays */
		pthread_rwlock_wrlock(&db->rw);
		rc = st__fault(ST__FAULT_CUT_MEMORY);
		if (!rc && (base_grow(&db->blocks, &db->blocks_cap, db->nblocks + 1,
		                     sizeof(*db->blocks)) ||
		            base_grow(&db->cover.v, &db->cover.cap, db->cover.n + 1,
		                     sizeof(*db->cover.v))))
			rc = -ENOMEM;
		pthread_rwlock_unlock(&db->rw);
	}
	/* the block header holds its coverage too; SQLite keeps it after
	 * retention deletes the block */
	if (!rc)
		rc = st__fault(ST__FAULT_CUT_COVER);
	if (!rc)
		rc = st__meta_put_cover(db->meta, h->start, lsn);
	if (rc) {
		st__blk_unref(k);
		if (st__blk_unpublish(db, name)) {
			/* the block may still load at restart, where its coverage
			 * makes replay skip its rows: exactly once then. Until then
			 * the rows stay in the head and are never cut again */
			h->stuck = true;
			fprintf(stderr, "smolder storage: cutting the head failed and block %s/%s "
			        "could not be removed; its partition stays in memory until the "
			        "next start\n", db->blocks_dir, name);
		}
		return rc;
	}
	pthread_rwlock_wrlock(&db->rw);
	rc = st__cover_note(&db->cover, h->start, lsn);
	if (!rc)
		rc = st__blocks_push(db, k);
	assert(!rc);   /* room was reserved above */
	st__ru_cut(db->ru, h->start);   /* roll-ups of its span now lack rows */
	for (size_t i = 0; i < db->nparts; i++)
		if (db->parts[i] == h) {
			memmove(db->parts + i, db->parts + i + 1,
			        (db->nparts - i - 1) * sizeof(*db->parts));
			db->nparts--;
			break;
		}
	__atomic_store_n(&db->head_rows, db->head_rows - h->n, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&db->rw);
	free(h->rows);
	free(h);
	return 0;
}

int st__emb_cut(st_db *db, int64_t now_ns, int force)
{
	int rc = 0;
	hpart **todo = NULL;
	size_t ntodo = 0;
	uint64_t lsn;
	pthread_mutex_lock(&db->cut_mu);

	/* freeze under append_mu: rows with a higher LSN go to new partitions */
	pthread_mutex_lock(&db->append_mu);
	pthread_rwlock_wrlock(&db->rw);
	bool all = force || db->head_rows > db->opt.head_max_rows;
	todo = malloc((db->nparts + 1) * sizeof(*todo));
	if (!todo) {
		rc = -ENOMEM;
	} else {
		for (size_t i = 0; i < db->nparts; i++) {
			hpart *h = db->parts[i];
			bool closed = h->start + db->opt.partition_ns + db->opt.cut_grace_ns <= now_ns;
			if (!h->frozen && h->n > 0 && (all || closed)) {
				h->frozen = true;
				todo[ntodo++] = h;
			}
		}
	}
	lsn = st__wal_last_lsn(db->wal);
	pthread_rwlock_unlock(&db->rw);
	pthread_mutex_unlock(&db->append_mu);
	qsort(todo, ntodo, sizeof(*todo), cmp_part);

	/* the registry as it is now covers every frozen row; it only grows,
	 * but its arrays may move, so copy the IDs under the lock */
	uint64_t *sids = NULL, *kids = NULL;
	uint32_t nsu = 0, nku = 0;
	if (ntodo) {
		pthread_rwlock_rdlock(&db->rw);
		nsu = db->nseries;
		nku = (uint32_t)db->stacks.n;
		sids = malloc(((size_t)nsu + 1) * sizeof(*sids));
		kids = malloc(((size_t)nku + 1) * sizeof(*kids));
		if (sids && kids) {
			for (uint32_t i = 0; i < nsu; i++)
				sids[i] = db->series[i].id;
			memcpy(kids, db->stacks.ids, (size_t)nku * sizeof(*kids));
		} else {
			rc = -ENOMEM;
		}
		pthread_rwlock_unlock(&db->rw);
	}
	for (size_t t = 0; t < ntodo && !rc; t++) {
		rc = cut_part(db, todo[t], lsn, sids, nsu, kids, nku);
		if (rc)
			break;
		todo[t] = NULL;
	}
	free(sids);
	free(kids);
	/* a failed cut leaves its partitions in the head, unfrozen, to retry.
	 * The lowest LSN the head still needs is read under append_mu: an
	 * ingest between its WAL append and st__head_apply() has a record in the WAL
	 * that no partition holds yet, and reading the last LSN without the
	 * lock would let the segment with it go. */
	pthread_mutex_lock(&db->append_mu);
	pthread_rwlock_wrlock(&db->rw);
	for (size_t t = 0; t < ntodo; t++)
		if (todo[t] && !todo[t]->stuck)
			todo[t]->frozen = false;
	uint64_t need = st__wal_last_lsn(db->wal) + 1;
	for (size_t i = 0; i < db->nparts; i++)
		if (db->parts[i]->min_lsn < need)
			need = db->parts[i]->min_lsn;
	pthread_rwlock_unlock(&db->rw);
	pthread_mutex_unlock(&db->append_mu);
	free(todo);

	/* segments below `need` only hold rows now in blocks; their metadata
	 * must be durable in SQLite before they go */
	if (!rc && ntodo) {
		rc = st__meta_sync(db->meta);
		if (!rc) {
			pthread_mutex_lock(&db->append_mu);
			rc = st__wal_remove_before(db->wal, need);
			pthread_mutex_unlock(&db->append_mu);
		}
	}
	pthread_mutex_unlock(&db->cut_mu);
	return rc;
}

