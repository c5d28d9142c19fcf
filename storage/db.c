/* db.c - the store: ties the WAL, the in-memory head, the block files and
 * the SQLite metadata together, and answers reads over all of them.
 *
 * Locking: append_mu serializes WAL appends, metadata writes for ingest
 * and head updates, so the head holds records in LSN order and the WAL's
 * last LSN is always applied to the head. The SQLite writer has its own
 * lock inside meta.c, a leaf: nothing else is taken under it. rw guards what readers
 * see (registries, head, block list); readers hold it only while copying or
 * scanning the head, never while reading blocks. cut_mu serializes cuts,
 * maint_mu compaction and retention; they do their slow I/O without
 * append_mu. A cut may run while a compaction does (both only add blocks
 * and swap them under rw), so the head is cut on time even while a long
 * compaction runs: waiting for one let the head grow by millions of rows
 * during a backfill. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <xxhash.h>

#include "storage/backend.h"
#include "storage/meta.h"
#include "storage/rollup.h"
#include "storage/st_int.h"
#include "storage/wal.h"

#define BLOCK_FILE "data.smb"

/* A head row: series and stack are registry indices, the form the block
 * writer takes, so a cut hands the head's rows over without a copy. */
typedef st__wrow hrow;

/* One head partition. A frozen one is being written as a block; rows for
 * its time that arrive meanwhile go to a fresh partition with the same
 * start. */
typedef struct hpart {
	int64_t start;
	hrow *rows;
	size_t n, cap;
	uint64_t min_lsn;   /* first WAL record with a row here */
	bool frozen;
	bool stuck;         /* its block could not be taken back after a failed
	                     * cut: stays frozen (never cut again) until restart */
} hpart;

typedef struct sreg {
	uint64_t id;
	int64_t mint, maxt;   /* INT64_MAX/INT64_MIN while it has no rows */
	st_label *labels;     /* type first as ST_TYPE_LABEL; one allocation */
	uint32_t nlabels;
} sreg;

typedef struct blk {
	char name[32];
	st__block b;
	void *map;
	size_t map_len;
	uint64_t file_bytes;
	atomic_int refs;
	atomic_bool dead;     /* delete its directory once unreferenced */
	atomic_bool damaged;  /* a chunk failed its CRC or did not decode:
	                       * reads skip such chunks, compaction the block */
	_Atomic(uint32_t *) gidx; /* its stacks' registry indices, once a merge
	                       * needed them (stack_gidx) */
	char path[PATH_MAX + 64];  /* blocks_dir/name[.deleted] */
} blk;

/* Per partition, the highest LSN whose rows are in blocks. */
typedef struct covers {
	st__blk_cover *v;
	size_t n, cap;
} covers;

/* The embedded store's handle (backend.h: the operations table first). */
struct st_db {
	st__handle h;
	char dir[PATH_MAX];
	char files_dir[PATH_MAX + 16];   /* dir/debuginfo: st_file_* */
	char blocks_dir[PATH_MAX + 8];
	st_options opt;
	int lock_fd;
	st__wal *wal;
	st__meta *meta;
	pthread_mutex_t append_mu, maint_mu, cut_mu;
	pthread_rwlock_t rw;

	sreg *series;
	uint32_t nseries;
	size_t series_cap;
	st__map series_map;
	st__ids stacks;     /* stack registry: ID <-> dense index */

	hpart **parts;
	size_t nparts, parts_cap;
	uint64_t head_rows;    /* written under rw, read by emb_head_full() without */

	blk **blocks;
	size_t nblocks, blocks_cap;
	uint64_t next_block_seq;

	covers cover;          /* max covered LSN per partition, from blocks */
	st__ru *ru;            /* roll-up levels (rollup.c), guarded by rw */
	uint64_t rows_read_raw; /* rows decoded by reads, atomically */

	uint64_t replayed, torn_bytes;
	bool replaying;
	atomic_bool compact_halted;  /* a result block could not be taken back */
};

void st_options_default(st_options *o)
{
	o->partition_ns = 3600LL * 1000000000LL;
	o->retention_ns = 7LL * 24 * 3600 * 1000000000LL;
	o->cut_grace_ns = 300LL * 1000000000LL;
	/* 24 bytes a row: about 25 MB, a minute and a bit of a 100-host fleet */
	o->head_max_rows = 1u << 20;
	o->wal_segment_bytes = 64u << 20;
	o->compact_max_rows = 16u << 20;
	o->compact_max_span_ns = 24LL * 3600 * 1000000000LL;
	o->max_future_ns = 600LL * 1000000000LL;
	o->max_series = 1000000;
	o->chunk_rows = 16384;
	o->max_block_bytes = 0;
	/* an hour and a day: see docs/architecture.md for why not a minute */
	o->nrollups = 2;
	o->rollup_steps_ns[0] = 3600LL * 1000000000LL;
	o->rollup_steps_ns[1] = 86400LL * 1000000000LL;
	o->rollup_retention_ns = 90LL * 24 * 3600 * 1000000000LL;
}

static int64_t part_of(const st_db *db, int64_t ts)
{
	return ts - ts % db->opt.partition_ns;
}

/* ---- registries ---- */

static int series_add(st_db *db, uint64_t id, const char *type,
                      const st_label *labels, uint32_t n, uint32_t *idx)
{
	uint32_t have = st__map_get(&db->series_map, id);
	if (have != ST__MAP_NONE) {
		*idx = have;
		return 0;
	}
	if (st__grow(&db->series, &db->series_cap, (size_t)db->nseries + 1, sizeof(*db->series)))
		return -ENOMEM;
	/* labels arrive sorted by name (canonical) from every caller */
	size_t bytes = (n + 1) * sizeof(st_label) + sizeof(ST_TYPE_LABEL) + strlen(type) + 1;
	for (uint32_t i = 0; i < n; i++)
		bytes += strlen(labels[i].name) + strlen(labels[i].value) + 2;
	st_label *l = malloc(bytes);
	if (!l)
		return -ENOMEM;
	char *sp = (char *)(l + n + 1);
	for (uint32_t i = 0; i <= n; i++) {
		const char *k = i ? labels[i - 1].name : ST_TYPE_LABEL;
		const char *v = i ? labels[i - 1].value : type;
		l[i].name = strcpy(sp, k);
		sp += strlen(k) + 1;
		l[i].value = strcpy(sp, v);
		sp += strlen(v) + 1;
	}
	int rc = st__map_put(&db->series_map, id, db->nseries);
	if (rc) {
		free(l);
		return rc;
	}
	db->series[db->nseries] = (sreg){id, INT64_MAX, INT64_MIN, l, n + 1};
	*idx = db->nseries++;
	return 0;
}

static int stack_add(st_db *db, uint64_t id)
{
	uint32_t idx;
	return st__ids_index(&db->stacks, id, &idx);
}

static int load_series_cb(void *arg, uint64_t id, const char *type,
                          const st_label *labels, uint32_t n)
{
	uint32_t idx;
	return series_add(arg, id, type, labels, n, &idx);
}

static int load_stack_cb(void *arg, uint64_t id)
{
	return stack_add(arg, id);
}

/* ---- coverage ---- */

static uint64_t covered(const covers *c, int64_t part)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].partition_start == part)
			return c->v[i].wal_lsn;
	return 0;
}

/* Raises part's covered LSN to at least lsn. */
static int cover_note(covers *c, int64_t part, uint64_t lsn)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].partition_start == part) {
			if (lsn > c->v[i].wal_lsn)
				c->v[i].wal_lsn = lsn;
			return 0;
		}
	if (st__grow(&c->v, &c->cap, c->n + 1, sizeof(*c->v)))
		return -ENOMEM;
	c->v[c->n++] = (st__blk_cover){part, lsn};
	return 0;
}

/* ---- head ---- */

static hpart *head_part(st_db *db, int64_t start, uint64_t lsn)
{
	for (size_t i = db->nparts; i-- > 0;)
		if (db->parts[i]->start == start && !db->parts[i]->frozen)
			return db->parts[i];
	if (st__grow(&db->parts, &db->parts_cap, db->nparts + 1, sizeof(*db->parts)))
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
static int apply(st_db *db, const st_batch *b, const uint64_t *series_ids,
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
		rc = series_add(db, series_ids[i], s->type, l, s->nlabels, &sidx[i]);
	}
	for (uint32_t i = 0; i < b->nstacks && !rc; i++)
		rc = stack_add(db, b->stacks[i].id);
	hpart *h = NULL;
	int64_t cpart = INT64_MIN;
	uint64_t cov = 0;
	for (uint32_t i = 0; i < b->nsamples && !rc; i++) {
		const st_sample *s = &b->samples[i];
		int64_t part = part_of(db, s->ts_ns);
		if (db->replaying && part != cpart) {
			cpart = part;
			cov = covered(&db->cover, part);
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
		if (st__grow(&h->rows, &h->cap, h->n + 1, sizeof(*h->rows))) {
			rc = -ENOMEM;
			break;
		}
		uint32_t k = kidx[i] != ST__MAP_NONE ? kidx[i] :
		             st__map_get(&db->stacks.map, s->stack_id);
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
static int put_meta(st_db *db, const st_batch *b, const uint64_t *series_ids, bool *open_tx)
{
	int rc = 0;
	*open_tx = false;
	for (uint32_t i = 0; i < b->nseries && !rc; i++) {
		if (st__map_get(&db->series_map, series_ids[i]) != ST__MAP_NONE)
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
		if (st__map_get(&db->stacks.map, b->stacks[i].id) != ST__MAP_NONE)
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
static int check_series_limit(st_db *db, const st_batch *b, const uint64_t *ids, st_err *err)
{
	if (!db->opt.max_series)
		return 0;
	uint64_t fresh = 0;
	for (uint32_t i = 0; i < b->nseries; i++)
		fresh += st__map_get(&db->series_map, ids[i]) == ST__MAP_NONE;
	if (db->nseries + fresh <= db->opt.max_series)
		return 0;
	/* over, unless the batch names some new series twice: count them
	 * once (a map, not a pairwise search: a batch may hold a million) */
	st__map seen = {0};
	int rc = st__map_init(&seen, fresh);
	fresh = 0;
	for (uint32_t i = 0; !rc && i < b->nseries; i++) {
		if (st__map_get(&db->series_map, ids[i]) != ST__MAP_NONE ||
		    st__map_get(&seen, ids[i]) != ST__MAP_NONE)
			continue;
		fresh++;
		rc = st__map_put(&seen, ids[i], 1);
	}
	st__map_free(&seen);
	if (!rc && db->nseries + fresh > db->opt.max_series)
		rc = st__fail(err, -EUSERS, "the store holds %u series and its limit is %" PRIu64
		              " (--max-series): a batch adding %" PRIu64 " new series is refused; "
		              "drop high-cardinality labels (pid, request IDs) or raise the limit",
		              db->nseries, db->opt.max_series, fresh);
	return rc;
}

/* Every sample must name a stack that is in the batch or already stored:
 * a stack ID alone cannot be turned back into frames. Fills kidx with each
 * sample's registry index, ST__MAP_NONE for stacks this batch introduces
 * (apply() resolves those once it has added them). Caller holds append_mu,
 * so the registry cannot change before apply(). */
static int check_stacks(st_db *db, const st_batch *b, uint32_t *kidx, st_err *err)
{
	st__map inb = {0};
	int rc = 0;
	uint64_t last = 0;
	uint32_t last_k = ST__MAP_NONE;
	for (uint32_t i = 0; i < b->nsamples && !rc; i++) {
		uint64_t id = b->samples[i].stack_id;
		if (i + 8 < b->nsamples)
			st__map_prefetch(&db->stacks.map, b->samples[i + 8].stack_id);
		if (i && id == last) {
			kidx[i] = last_k;
			continue;
		}
		uint32_t k = st__map_get(&db->stacks.map, id);
		if (k == ST__MAP_NONE) {
			if (!inb.cap) {
				rc = st__map_init(&inb, b->nstacks);
				for (uint32_t j = 0; j < b->nstacks && !rc; j++)
					rc = st__map_put(&inb, b->stacks[j].id, j);
				if (rc)
					break;
			}
			/* -ENOENT, not -EINVAL: the batch is well formed, the store
			 * just lacks a stack the sender believed it had (the agent's
			 * stack cache; the server answers 409 and the agent resends) */
			if (st__map_get(&inb, id) == ST__MAP_NONE)
				rc = st__fail(err, -ENOENT, "sample %u: stack %016" PRIx64 " is "
				              "unknown; send its frames in the batch", i, id);
		}
		kidx[i] = last_k = k;
		last = id;
	}
	st__map_free(&inb);
	return rc;
}

static int emb_append(st_db *db, const st_batch *b, st_err *err)
{
	int rc;
	uint64_t lsn = 0;
	st__buf payload = {0};
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
		rc = st__fail(err, -EINVAL, "batch encodes to %zu bytes, the limit is %u",
		              payload.len, ST__WAL_MAX_RECORD);
		goto out;
	}
	pthread_mutex_lock(&db->append_mu);
	bool tx = false;
	rc = check_stacks(db, b, kidx, err);
	if (!rc)
		rc = check_series_limit(db, b, ids, err);
	if (!rc) {
		rc = put_meta(db, b, ids, &tx);
		if (rc)
			st__fail(err, rc, "writing metadata to %s/meta.db: %s", db->dir, strerror(-rc));
	}
	/* The metadata commits only once the WAL has room for the record
	 * (written ahead as zeros), and the record goes in only once the
	 * metadata committed: a batch refused for a full disk, by either,
	 * leaves no series or stacks behind, now or after a restart. */
	if (!rc) {
		rc = st__fault(ST__FAULT_APPEND_WAL) ? -ENOSPC :
		     st__wal_reserve(db->wal, payload.len);
		if (rc)
			st__fail(err, rc, "writing the WAL in %s/wal: %s", db->dir, strerror(-rc));
	}
	if (tx && rc) {
		st__meta_rollback(db->meta);
	} else if (tx) {
		rc = st__meta_commit(db->meta);
		if (rc)
			st__fail(err, rc, "committing metadata to %s/meta.db: %s", db->dir,
			         strerror(-rc));
	}
	if (!rc) {
		rc = st__wal_append(db->wal, payload.data, payload.len, &lsn);
		if (rc)
			st__fail(err, rc, "writing the WAL in %s/wal: %s", db->dir, strerror(-rc));
	}
	if (!rc) {
		rc = apply(db, b, ids, kidx, lsn);
		if (rc)
			st__fail(err, rc, "applying the batch: %s", strerror(-rc));
	}
	pthread_mutex_unlock(&db->append_mu);
	if (!rc) {
		rc = st__wal_sync(db->wal, lsn);
		if (rc)
			st__fail(err, rc, "syncing the WAL: %s", strerror(-rc));
	}
out:
	st__buf_free(&payload);
	free(ids);
	free(kidx);
	return rc;
}

/* ---- blocks on disk ---- */

static void blk_unref(blk *k)
{
	if (!k || atomic_fetch_sub(&k->refs, 1) != 1)
		return;
	if (k->map)
		munmap(k->map, k->map_len);
	free(atomic_load(&k->gidx));
	st__block_release(&k->b);
	if (atomic_load(&k->dead))
		st__rm_rf(k->path);
	free(k);
}

static int blk_open(st_db *db, const char *name, blk **out, st_err *err)
{
	int rc = 0, fd = -1;
	blk *k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	atomic_init(&k->refs, 1);
	snprintf(k->name, sizeof(k->name), "%s", name);
	snprintf(k->path, sizeof(k->path), "%s/%s", db->blocks_dir, name);
	char file[sizeof(k->path) + 16];
	snprintf(file, sizeof(file), "%s/" BLOCK_FILE, k->path);
	fd = open(file, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		rc = st__fail(err, -errno, "block %s: %s", name, strerror(errno));
		goto out;
	}
	k->map_len = (size_t)st.st_size;
	k->file_bytes = (uint64_t)st.st_size;
	if (k->map_len) {
		k->map = mmap(NULL, k->map_len, PROT_READ, MAP_SHARED, fd, 0);
		if (k->map == MAP_FAILED) {
			k->map = NULL;
			rc = st__fail(err, -errno, "block %s: mmap: %s", name, strerror(errno));
			goto out;
		}
	}
	st_err e2;
	rc = st__block_parse(k->map, k->map_len, &k->b, &e2);
	if (!rc && k->b.step_s)
		rc = st__fail(&e2, -EBADMSG, "a roll-up file, not a block");
	if (rc)
		st__fail(err, rc, "block %s is damaged (%s); move it out of %s to start "
		         "without it", name, e2.msg, db->blocks_dir);
out:
	if (fd >= 0)
		close(fd);
	if (rc) {
		blk_unref(k);
		return rc;
	}
	*out = k;
	return 0;
}

static int blocks_push(st_db *db, blk *k)
{
	if (st__grow(&db->blocks, &db->blocks_cap, db->nblocks + 1, sizeof(*db->blocks)))
		return -ENOMEM;
	/* keep the list ordered by time, then name */
	size_t i = db->nblocks;
	while (i > 0 && (db->blocks[i - 1]->b.mint > k->b.mint ||
	                 (db->blocks[i - 1]->b.mint == k->b.mint &&
	                  strcmp(db->blocks[i - 1]->name, k->name) > 0))) {
		db->blocks[i] = db->blocks[i - 1];
		i--;
	}
	db->blocks[i] = k;
	db->nblocks++;
	return 0;
}

/* Writes rows as a new block directory: temporary name, fsync, rename,
 * fsync the parent, so a block either exists whole or not at all. */
static int block_create(st_db *db, const st__wrow *rows, size_t n,
                        const st__block *const *in, size_t nin,
                        st__block_spec *spec, char name[32])
{
	int rc, fd = -1;
	char tmp[PATH_MAX + 64], fin[PATH_MAX + 64], file[PATH_MAX + 80];
	snprintf(name, 32, "b%016" PRIx64,
	         __atomic_fetch_add(&db->next_block_seq, 1, __ATOMIC_RELAXED));
	snprintf(tmp, sizeof(tmp), "%s/%s.tmp", db->blocks_dir, name);
	snprintf(fin, sizeof(fin), "%s/%s", db->blocks_dir, name);
	st__rm_rf(tmp);
	if (mkdir(tmp, 0755))
		return -errno;
	snprintf(file, sizeof(file), "%s/" BLOCK_FILE, tmp);
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	spec->chunk_rows = db->opt.chunk_rows;
	/* from rows in memory (a cut), or merged from blocks (a compaction) */
	rc = in ? st__block_merge_fd(fd, in, nin, spec) : st__block_write_fd(fd, rows, n, spec);
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	fd = -1;
	if (!rc)
		rc = st__fsync_dir(tmp);
	if (!rc && rename(tmp, fin))
		rc = -errno;
	if (!rc)
		rc = st__fsync_dir(db->blocks_dir);
out:
	if (rc)
		st__rm_rf(tmp);
	return rc;
}

static void blocks_remove(st_db *db, blk *k)
{
	for (size_t i = 0; i < db->nblocks; i++)
		if (db->blocks[i] == k) {
			memmove(db->blocks + i, db->blocks + i + 1,
			        (db->nblocks - i - 1) * sizeof(*db->blocks));
			db->nblocks--;
			return;
		}
}

/* Marks a block dead (its directory goes once the last reader is done) and
 * renames it first, so a crash in between cannot leave half a block under a
 * live name. */
static void blk_kill(st_db *db, blk *k)
{
	char dead[sizeof(k->path)];
	size_t n = strlen(k->path);
	memcpy(dead, k->path, n);
	memcpy(dead + n, ".deleted", sizeof(".deleted"));
	if (!rename(k->path, dead)) {
		memcpy(k->path, dead, sizeof(dead));
		st__fsync_dir(db->blocks_dir);
	}
	atomic_store(&k->dead, true);
	blk_unref(k);
}

/* A damaged chunk met by a read: said once per block on stderr, naming
 * the file and what to do. Reads go on without it (the answer counts it
 * through its selection), so one bad sector does not fail every query
 * over its hour; compaction leaves the block alone. */
static void blk_damaged(const blk *k, uint32_t chunk)
{
	if (atomic_exchange(&((blk *)k)->damaged, true))
		return;
	fprintf(stderr, "smolder storage: %s/" BLOCK_FILE " is damaged (chunk %u fails its "
	        "checksum or does not decode): queries leave its rows out and say so, "
	        "compaction skips the block; move the directory %s out of the data "
	        "directory to drop it\n", k->path, chunk, k->path);
}

/* ---- cut ---- */

static int cmp_part(const void *a, const void *b)
{
	const hpart *x = *(hpart *const *)a, *y = *(hpart *const *)b;
	return x->start < y->start ? -1 : x->start > y->start;
}

/* Takes a block written moments ago away from its live name, so that
 * neither a restart nor a retry of its rows counts it: renamed to
 * NAME.deleted (which st_open removes) and then removed. 0 once it no
 * longer has its live name; the rename's -errno otherwise. */
static int block_unpublish(st_db *db, const char *name)
{
	char live[PATH_MAX + 64], dead[PATH_MAX + 80];
	snprintf(live, sizeof(live), "%s/%s", db->blocks_dir, name);
	snprintf(dead, sizeof(dead), "%s.deleted", live);
	if (rename(live, dead))
		return -errno;
	st__fsync_dir(db->blocks_dir);
	st__rm_rf(dead);
	return 0;
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
	int rc = block_create(db, h->rows, h->n, NULL, 0, &spec, name);
	if (rc)
		return rc;
	blk *k = NULL;
	rc = st__fault(ST__FAULT_CUT_OPEN);
	if (!rc)
		rc = blk_open(db, name, &k, NULL);
	if (!rc) {
		/* room for the block and its coverage, taken now so that the
		 * commit below cannot fail. Nothing else adds to either list
		 * meanwhile (cuts are serialized by cut_mu; a compaction adds one
		 * block and removes its inputs in one step), so the room stays */
		pthread_rwlock_wrlock(&db->rw);
		rc = st__fault(ST__FAULT_CUT_MEMORY);
		if (!rc && (st__grow(&db->blocks, &db->blocks_cap, db->nblocks + 1,
		                     sizeof(*db->blocks)) ||
		            st__grow(&db->cover.v, &db->cover.cap, db->cover.n + 1,
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
		blk_unref(k);
		if (block_unpublish(db, name)) {
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
	rc = cover_note(&db->cover, h->start, lsn);
	if (!rc)
		rc = blocks_push(db, k);
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

static int emb_cut(st_db *db, int64_t now_ns, int force)
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
	 * ingest between its WAL append and apply() has a record in the WAL
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

static int emb_retention(st_db *db, int64_t now_ns)
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
			blocks_remove(db, db->blocks[i]);
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
		blocks_remove(db, k);
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
		blk_kill(db, gone[i]);
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
			rc = cover_note(&cov, run[i]->b.cover[c].partition_start,
			                run[i]->b.cover[c].wal_lsn);
	}
	if (rc)
		goto out;
	char name[32];
	st__block_spec spec = {.cover = cov.v, .ncover = (uint32_t)cov.n, .parents = parents,
	                       .nparents = (uint32_t)nrun};
	rc = block_create(db, NULL, 0, in, nrun, &spec, name);
	if (rc)
		goto out;
	blk *k = NULL;
	rc = blk_open(db, name, &k, NULL);
	pthread_rwlock_wrlock(&db->rw);
	if (!rc)
		rc = blocks_push(db, k);
	if (!rc)
		for (size_t i = 0; i < nrun; i++)
			blocks_remove(db, run[i]);
	pthread_rwlock_unlock(&db->rw);
	if (rc) {
		/* the result lists its parents: left under its live name, it and
		 * the next attempt's result would both load at restart, the rows
		 * twice. Without its name gone, compaction stops until restart */
		blk_unref(k);
		if (block_unpublish(db, name)) {
			atomic_store(&db->compact_halted, true);
			fprintf(stderr, "smolder storage: compaction failed and its result %s/%s "
			        "could not be removed; compaction stops until the next start\n",
			        db->blocks_dir, name);
		}
		goto out;
	}
	for (size_t i = 0; i < nrun; i++)
		blk_kill(db, run[i]);
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
			blk_damaged(k, c);
			break;
		}
	st__chunk_rows_free(&cr);
}

static int emb_compact(st_db *db)
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
				blk_unref(run[i]);
			free(run);
			break;
		}
		rc = compact_run(db, run, nrun);
		/* an input chunk is damaged: find which block, so the next pass
		 * leaves it out instead of failing on it forever */
		for (size_t i = 0; rc == -EBADMSG && i < nrun; i++)
			blk_check(run[i]);
		for (size_t i = 0; i < nrun; i++)
			blk_unref(run[i]);
		free(run);
		if (rc)
			break;
	}
	pthread_mutex_unlock(&db->maint_mu);
	return rc;
}

/* ---- open / close ---- */

typedef struct replay_arg {
	st_db *db;
	st_err *err;
} replay_arg;

static int replay_rec(void *arg, uint64_t lsn, const uint8_t *p, size_t len)
{
	replay_arg *ra = arg;
	st__dbatch d;
	int rc = st__batch_decode(p, len, &d, ra->err);
	if (rc)
		return rc;
	uint32_t *kidx = malloc((d.b.nsamples + 1) * sizeof(*kidx));
	rc = kidx ? check_stacks(ra->db, &d.b, kidx, ra->err) : -ENOMEM;
	if (rc == -ENOENT)
		rc = -EBADMSG;   /* in a logged record, a missing stack is damage */
	bool tx;
	if (!rc)
		rc = put_meta(ra->db, &d.b, d.series_ids, &tx);
	if (!rc)
		rc = apply(ra->db, &d.b, d.series_ids, kidx, lsn);
	free(kidx);
	st__dbatch_free(&d);
	return rc;
}

static int load_cover_cb(void *arg, int64_t part, uint64_t lsn)
{
	return cover_note(&((st_db *)arg)->cover, part, lsn);
}

static int load_blocks(st_db *db, st_err *err)
{
	int rc = 0;
	DIR *d = opendir(db->blocks_dir);
	if (!d)
		return st__fail(err, -errno, "%s: %s", db->blocks_dir, strerror(errno));
	struct dirent *e;
	while ((e = readdir(d)) && !rc) {
		const char *n = e->d_name;
		size_t len = strlen(n);
		if (n[0] != 'b')
			continue;
		char path[PATH_MAX + 300];
		snprintf(path, sizeof(path), "%s/%s", db->blocks_dir, n);
		/* leftovers of a crash: never renamed, or being deleted */
		if ((len > 4 && !strcmp(n + len - 4, ".tmp")) ||
		    (len > 8 && !strcmp(n + len - 8, ".deleted"))) {
			st__rm_rf(path);
			continue;
		}
		char *end;
		if (len != 17)
			continue;
		uint64_t seq = strtoull(n + 1, &end, 16);
		if (*end)
			continue;
		if (seq >= db->next_block_seq)
			db->next_block_seq = seq + 1;
		blk *k;
		rc = blk_open(db, n, &k, err);
		if (!rc)
			rc = blocks_push(db, k);
	}
	closedir(d);
	if (rc)
		return rc;
	/* a compaction that died after writing its result but before deleting
	 * its inputs: the result wins */
	for (size_t i = 0; i < db->nblocks; i++)
		for (uint32_t p = 0; p < db->blocks[i]->b.nparents; p++)
			for (size_t j = 0; j < db->nblocks; j++)
				if (j != i && !strcmp(db->blocks[j]->name, db->blocks[i]->b.parents[p])) {
					blk *old = db->blocks[j];
					blocks_remove(db, old);
					blk_kill(db, old);
					if (j < i)
						i--;
					break;
				}
	for (size_t i = 0; i < db->nblocks && !rc; i++) {
		const st__block *b = &db->blocks[i]->b;
		for (uint32_t c = 0; c < b->ncover && !rc; c++)
			rc = cover_note(&db->cover, b->cover[c].partition_start, b->cover[c].wal_lsn);
		for (uint32_t s = 0; s < b->nseries; s++) {
			uint32_t x = st__map_get(&db->series_map, b->series[s].id);
			if (x == ST__MAP_NONE)
				continue;
			if (b->series[s].mint < db->series[x].mint)
				db->series[x].mint = b->series[s].mint;
			if (b->series[s].maxt > db->series[x].maxt)
				db->series[x].maxt = b->series[s].maxt;
		}
	}
	return rc;
}

/* A failure reading meta.db, as st_open reports it: the file, what SQLite
 * said, and for damage what to do. The samples are in the WAL and the
 * blocks, but the labels and stacks that name them only in meta.db, so
 * starting afresh is no answer; SQLite's own .recover usually is. */
static int meta_fail(st_db *db, st_err *err, int rc, const char *detail)
{
	if (rc == -ENOMEM)
		return st__fail(err, rc, "reading %s/meta.db: out of memory", db->dir);
	if (rc == -ENOSPC)
		return st__fail(err, rc, "writing %s/meta.db: the disk is full (%s); free some "
		                "space on it", db->dir, detail && *detail ? detail : "SQLITE_FULL");
	if (rc != -EBADMSG)
		return st__fail(err, rc, "reading %s/meta.db: %s (%s)", db->dir, strerror(-rc),
		                detail && *detail ? detail : "no detail");
	if (detail && !strcmp(detail, "not an error"))
		detail = "a row that does not decode";
	return st__fail(err, rc, "%s/meta.db is damaged (%s). Stop, keep a copy of the data "
	                "directory, then rebuild it with SQLite: sqlite3 %s/meta.db .recover "
	                "| sqlite3 %s/meta.db.new, and move meta.db.new over meta.db "
	                "(removing meta.db-wal and meta.db-shm)", db->dir,
	                detail && *detail ? detail : "malformed", db->dir, db->dir);
}

static uint64_t cover_cb(void *arg, int64_t part)
{
	return covered(&((st_db *)arg)->cover, part);
}

static void series_time_cb(void *arg, uint64_t id, int64_t mint, int64_t maxt)
{
	st_db *db = arg;
	uint32_t x = st__map_get(&db->series_map, id);
	if (x == ST__MAP_NONE)
		return;
	if (mint < db->series[x].mint)
		db->series[x].mint = mint;
	if (maxt > db->series[x].maxt)
		db->series[x].maxt = maxt;
}

/* The roll-up levels in DIR/rollup, once blocks and coverage are known. */
static int open_rollups(st_db *db, st_err *err)
{
	char path[PATH_MAX + 16];
	int64_t floor = 0;
	int rc = st__meta_setting(db->meta, "raw_floor_ns", &floor);
	if (rc)
		return st__fail(err, rc, "reading settings: %s", strerror(-rc));
	snprintf(path, sizeof(path), "%s/rollup", db->dir);
	st__ru_opts o = {.dir = path, .steps = db->opt.rollup_steps_ns,
	                 .nsteps = db->opt.nrollups, .partition_ns = db->opt.partition_ns,
	                 .grace_ns = db->opt.cut_grace_ns, .chunk_rows = db->opt.chunk_rows,
	                 .raw_floor = floor, .covered = cover_cb, .carg = db};
	rc = st__ru_open(&o, &db->ru, err);
	if (!rc)
		st__ru_series(db->ru, series_time_cb, db);
	return rc;
}

static const st__ops emb_ops;
static void emb_close(st_db *db);

int st_open(const char *dir, const st_options *opt, st_db **out, st_err *err)
{
	int rc;
	char path[PATH_MAX + 16];
	if (err)
		err->msg[0] = 0;
	st_db *db = calloc(1, sizeof(*db));
	if (!db)
		return -ENOMEM;
	db->h.ops = &emb_ops;
	db->lock_fd = -1;
	pthread_mutex_init(&db->append_mu, NULL);
	pthread_mutex_init(&db->maint_mu, NULL);
	pthread_mutex_init(&db->cut_mu, NULL);
	pthread_rwlock_init(&db->rw, NULL);
	if (opt)
		db->opt = *opt;
	else
		st_options_default(&db->opt);
	if (db->opt.partition_ns <= 0 || db->opt.partition_ns > ST_MAX_TS_NS ||
	    db->opt.cut_grace_ns < 0 || db->opt.cut_grace_ns > ST_MAX_TS_NS ||
	    db->opt.retention_ns < 0 || db->opt.chunk_rows == 0 ||
	    db->opt.chunk_rows > ST__BLK_MAX_CHUNK_ROWS || db->opt.wal_segment_bytes < 4096) {
		rc = st__fail(err, -EINVAL, "invalid storage options");
		goto out;
	}
	if (strlen(dir) >= PATH_MAX - 64) {
		rc = st__fail(err, -ENAMETOOLONG, "data dir path too long");
		goto out;
	}
	snprintf(db->dir, sizeof(db->dir), "%s", dir);
	snprintf(db->blocks_dir, sizeof(db->blocks_dir), "%s/blocks", dir);
	snprintf(db->files_dir, sizeof(db->files_dir), "%s/debuginfo", dir);
	const char *mk = db->blocks_dir;
	if ((rc = st__mkdir_p(mk)) || (rc = st__mkdir_p(mk = db->files_dir))) {
		st__fail(err, rc, "creating %s: %s", mk, strerror(-rc));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	db->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (db->lock_fd < 0 || flock(db->lock_fd, LOCK_EX | LOCK_NB)) {
		rc = st__fail(err, errno == EWOULDBLOCK ? -EBUSY : -errno,
		              "%s is in use by another process", dir);
		goto out;
	}
	if ((rc = st__map_init(&db->series_map, 1024)) ||
	    (rc = st__map_init(&db->stacks.map, 65536)))
		goto out;
	snprintf(path, sizeof(path), "%s/meta.db", dir);
	if ((rc = st__meta_open(path, &db->meta, err))) {
		char detail[sizeof(err->msg)];
		snprintf(detail, sizeof(detail), "%s", err && err->msg[0] ? err->msg : "");
		meta_fail(db, err, rc, detail);
		goto out;
	}
	/* the coverage table and replay are keyed by partition start: a store
	 * keeps the partition size it was created with */
	int64_t part = db->opt.partition_ns;
	if ((rc = st__meta_setting(db->meta, "partition_ns", &part))) {
		meta_fail(db, err, rc, st__meta_errmsg(db->meta));
		goto out;
	}
	if (part != db->opt.partition_ns) {
		rc = st__fail(err, -EINVAL, "%s was created with %lld s partitions; it cannot "
		              "be opened with %lld s ones", dir, (long long)(part / 1000000000LL),
		              (long long)(db->opt.partition_ns / 1000000000LL));
		goto out;
	}
	if ((rc = st__meta_load_series(db->meta, load_series_cb, db)) ||
	    (rc = st__meta_load_stacks(db->meta, load_stack_cb, db)) ||
	    (rc = st__meta_load_cover(db->meta, load_cover_cb, db))) {
		meta_fail(db, err, rc, st__meta_errmsg(db->meta));
		goto out;
	}
	if ((rc = load_blocks(db, err)) || (rc = open_rollups(db, err)))
		goto out;
	snprintf(path, sizeof(path), "%s/wal", dir);
	uint64_t min_next = 1;
	for (size_t i = 0; i < db->cover.n; i++)
		if (db->cover.v[i].wal_lsn + 1 > min_next)
			min_next = db->cover.v[i].wal_lsn + 1;
	if ((rc = st__wal_open(path, db->opt.wal_segment_bytes, &db->wal))) {
		st__fail(err, rc, "opening %s: %s", path, strerror(-rc));
		goto out;
	}
	db->replaying = true;
	replay_arg ra = {db, err};
	st__wal_replay_info info;
	if ((rc = st__meta_begin(db->meta))) {
		meta_fail(db, err, rc, st__meta_errmsg(db->meta));
		goto out;
	}
	rc = st__wal_replay(db->wal, min_next, replay_rec, &ra, &info, err);
	if (rc) {
		st__meta_rollback(db->meta);
		if (!err || !err->msg[0])
			st__fail(err, rc, "replaying the WAL in %s: %s", path, strerror(-rc));
		goto out;
	}
	if ((rc = st__meta_commit(db->meta))) {
		meta_fail(db, err, rc, st__meta_errmsg(db->meta));
		goto out;
	}
	db->replaying = false;
	db->replayed = info.records;
	db->torn_bytes = info.torn_bytes;
	if (info.torn_bytes)
		fprintf(stderr, "smolder storage: dropped a torn WAL tail of %" PRIu64
		        " bytes (a write cut short by a crash; never acknowledged)\n",
		        info.torn_bytes);
	*out = db;
	return 0;
out:
	emb_close(db);
	return rc;
}

static void emb_close(st_db *db)
{
	if (!db)
		return;
	st__wal_close(db->wal);
	st__meta_close(db->meta);
	st__ru_close(db->ru);
	for (size_t i = 0; i < db->nparts; i++) {
		free(db->parts[i]->rows);
		free(db->parts[i]);
	}
	free(db->parts);
	for (size_t i = 0; i < db->nblocks; i++)
		blk_unref(db->blocks[i]);
	free(db->blocks);
	for (uint32_t i = 0; i < db->nseries; i++)
		free(db->series[i].labels);
	free(db->series);
	st__ids_free(&db->stacks);
	free(db->cover.v);
	st__map_free(&db->series_map);
	if (db->lock_fd >= 0)
		close(db->lock_fd);
	pthread_mutex_destroy(&db->append_mu);
	pthread_mutex_destroy(&db->maint_mu);
	pthread_mutex_destroy(&db->cut_mu);
	pthread_rwlock_destroy(&db->rw);
	free(db);
}

/* ---- selection (the struct is backend.h's) ---- */

static void sel_note_damaged(const st_selection *s)
{
	atomic_fetch_add(&((st_selection *)s)->damaged, 1);
}

static bool sel_has(const st_selection *s, uint64_t id)
{
	return st__map_get(&s->map, id) != ST__MAP_NONE;
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
	st__map memo;
	const char **memo_v;
	size_t memo_n, memo_cap;
};
typedef st__match cmatch;

/* 1 when v passes c, 0 when not, or -EINVAL with err when the regex ran
 * out of its budget on v (PCRE2 said neither match nor no match: taking
 * that for "no match" answered wrong, and for "match" under !~). */
static int cm_test(const cmatch *c, const char *v, st_err *err)
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
		return st__fail(err, -EINVAL, "the regex \"%.80s\" for label \"%s\" is too "
		                "costly: on the value \"%.40s%s\" PCRE2 stopped with \"%s\"; "
		                "simplify it (nested repetition such as (a+)+ backtracks "
		                "exponentially)", c->m->value, c->m->name, v,
		                strlen(v) > 40 ? "..." : "", (const char *)msg);
	}
	}
}

int st__match_nth(const st__match *cm, size_t i, const char *v, st_err *err)
{
	return cm_test(&cm[i], v, err);
}

/* cm_test through the matcher's memo: equal values are matched once.
 * Caller holds rw, which keeps the remembered strings alive. */
static int cm_test_memo(cmatch *c, const char *v, st_err *err)
{
	if (c->m->op == ST_MATCH_EQ || c->m->op == ST_MATCH_NE)
		return cm_test(c, v, err);
	uint64_t h = XXH3_64bits(v, strlen(v));
	uint32_t e = c->memo.cap ? st__map_get(&c->memo, h) : ST__MAP_NONE;
	if (e != ST__MAP_NONE && !strcmp(c->memo_v[e >> 1], v))
		return (int)(e & 1);
	int r = cm_test(c, v, err);
	/* a hash collision with another value is only not remembered */
	if (r < 0 || e != ST__MAP_NONE || c->memo_n >= (ST__MAP_NONE >> 1))
		return r;
	if ((c->memo.cap || !st__map_init(&c->memo, 64)) &&
	    !st__grow(&c->memo_v, &c->memo_cap, c->memo_n + 1, sizeof(*c->memo_v)) &&
	    !st__map_put(&c->memo, h, (uint32_t)(c->memo_n << 1 | (size_t)r)))
		c->memo_v[c->memo_n++] = v;
	return r;
}

static const char *label_of(const sreg *s, const char *name)
{
	for (uint32_t i = 0; i < s->nlabels; i++)
		if (!strcmp(s->labels[i].name, name))
			return s->labels[i].value;
	return "";
}

typedef struct cand {
	st__map set;     /* candidate series from the inverted index */
	st__map next;    /* being built for the current matcher */
	const cmatch *cm;
	st_db *db;
	int64_t deadline_ns;
	st_err *err;
	int rc;
} cand;

static int cand_add(void *arg, uint64_t id)
{
	cand *c = arg;
	return st__map_put(&c->next, id, 1);
}

static int cand_value(void *arg, const char *v)
{
	cand *c = arg;
	int r = st__past(c->deadline_ns);
	if (!r)
		r = cm_test(c->cm, v, c->err);
	if (r <= 0)
		return r;
	return st__meta_series_eq(c->db->meta, c->cm->m->name, v, cand_add, c);
}

void st__match_free(st__match *cm, size_t nm)
{
	for (size_t i = 0; cm && i < nm; i++) {
		pcre2_match_data_free(cm[i].md);
		pcre2_match_context_free(cm[i].mc);
		pcre2_code_free(cm[i].re);
		st__map_free(&cm[i].memo);
		free(cm[i].memo_v);
	}
	free(cm);
}

int st__match_compile(const st_matcher *m, size_t nm, st__match **out, st_err *err)
{
	int rc = 0;
	cmatch *cm = calloc(nm + 1, sizeof(*cm));
	if (!cm)
		return -ENOMEM;
	for (size_t i = 0; i < nm; i++) {
		cm[i].m = &m[i];
		if (!m[i].name || !m[i].value || m[i].op > ST_MATCH_NRE) {
			rc = st__fail(err, -EINVAL, "matcher %zu is incomplete", i);
			goto out;
		}
		if (strlen(m[i].value) > ST_MAX_LABEL_VALUE_LEN) {
			rc = st__fail(err, -EINVAL, "matcher value for \"%s\" is longer than %d "
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
				rc = st__fail(err, -EINVAL, "bad regex for \"%s\" at offset %zu: %s",
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

static int emb_select(st_db *db, const st_matcher *m, size_t nm, int64_t from, int64_t to,
                      int64_t deadline_ns, st_selection **out, st_err *err)
{
	int rc = 0;
	cmatch *cm = NULL;
	st_selection *sel = calloc(1, sizeof(*sel));
	cand c = {.db = db, .deadline_ns = deadline_ns, .err = err};
	bool have_cand = false;
	if (!sel) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = st__match_compile(m, nm, &cm, err)))
		goto out;
	/* narrow through the inverted index with matchers that cannot match a
	 * missing label; the rest filter in memory */
	for (size_t i = 0; i < nm; i++) {
		int empty = cm_test(&cm[i], "", err);
		if (empty < 0) {
			rc = empty;
			goto out;
		}
		if (empty || m[i].op == ST_MATCH_NE || m[i].op == ST_MATCH_NRE)
			continue;
		if ((rc = st__map_init(&c.next, 256)))
			goto out;
		c.cm = &cm[i];
		if (m[i].op == ST_MATCH_EQ)
			rc = st__meta_series_eq(db->meta, m[i].name, m[i].value, cand_add, &c);
		else
			rc = st__meta_label_values(db->meta, m[i].name, cand_value, &c);
		if (rc) {
			st__map_free(&c.next);
			goto out;
		}
		if (have_cand) {
			/* intersect */
			st__map keep;
			if ((rc = st__map_init(&keep, c.next.len))) {
				st__map_free(&c.next);
				goto out;
			}
			for (size_t k = 0; k < c.next.cap; k++)
				if (c.next.slots[k].val != ST__MAP_NONE &&
				    st__map_get(&c.set, c.next.slots[k].key) != ST__MAP_NONE)
					st__map_put(&keep, c.next.slots[k].key, 1);
			st__map_free(&c.next);
			st__map_free(&c.set);
			c.set = keep;
		} else {
			c.set = c.next;
			have_cand = true;
		}
		memset(&c.next, 0, sizeof(c.next));
	}
	pthread_rwlock_rdlock(&db->rw);
	size_t cap = have_cand ? c.set.len : db->nseries;
	sel->ids = malloc((cap + 1) * sizeof(*sel->ids));
	sel->gbits_n = db->nseries;
	sel->gbits = calloc(db->nseries / 8 + 1, 1);
	sel->deadline_ns = deadline_ns;
	if (!sel->ids || !sel->gbits) {
		pthread_rwlock_unlock(&db->rw);
		rc = -ENOMEM;
		goto out;
	}
	for (uint32_t x = 0; x < db->nseries && !rc; x++) {
		const sreg *s = &db->series[x];
		if (have_cand && st__map_get(&c.set, s->id) == ST__MAP_NONE)
			continue;
		if (s->maxt < from || s->mint >= to)
			continue;
		if (!(x & 255) && (rc = st__past(deadline_ns)))
			break;
		int ok = 1;
		for (size_t i = 0; i < nm && ok > 0; i++)
			ok = cm_test_memo(&cm[i], label_of(s, m[i].name), err);
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
	st__map_free(&c.set);
	st_selection_free(sel);
	return rc;
}

static int emb_series_labels(st_db *db, uint64_t id, st_label **out, size_t *n)
{
	int rc = 0;
	pthread_rwlock_rdlock(&db->rw);
	uint32_t x = st__map_get(&db->series_map, id);
	if (x == ST__MAP_NONE) {
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

static int emb_stack_frames(st_db *db, uint64_t id, st_frame_info **out, size_t *n)
{
	return st__meta_stack_frames(db->meta, id, out, n);
}

static int emb_stack_locations(st_db *db, uint64_t id, int64_t *locs, size_t *n)
{
	return st__meta_stack_locations(db->meta, id, locs, n);
}

static int emb_location(st_db *db, int64_t id, st_frame_info **out)
{
	return st__meta_location(db->meta, id, out);
}

static int emb_stacks_locations(st_db *db, const uint64_t *ids, size_t n, int64_t **locs,
                                uint32_t **offs)
{
	return st__meta_stacks_locations(db->meta, ids, n, locs, offs);
}

static int emb_symbols_get(st_db *db, const int64_t *ids, size_t n, st_symbols_fn fn,
                           void *arg)
{
	return st__meta_symbols_get(db->meta, ids, n, fn, arg);
}

static int emb_symbols_put(st_db *db, int64_t location_id, const st_symbol *syms,
                           size_t n)
{
	return st__meta_symbols_put(db->meta, location_id, syms, n);
}

static int emb_symbols_forget(st_db *db, const uint8_t *build_id, uint32_t build_id_len)
{
	return st__meta_symbols_forget(db->meta, build_id, build_id_len);
}

static int emb_symbols_missing(st_db *db, int64_t after_id, size_t limit,
                               st_unsymbolized_fn fn, void *arg)
{
	return st__meta_symbols_missing(db->meta, after_id, limit, fn, arg);
}

static int emb_locations(st_db *db, const int64_t *ids, size_t n, st_frame_info **out)
{
	return st__meta_locations(db->meta, ids, n, out);
}

/* ---- reads ---- */

static bool gsel(const st_selection *s, uint32_t x)
{
	return x < s->gbits_n && (s->gbits[x / 8] >> (x % 8)) & 1;
}

/* Takes references on the blocks overlapping [from, to). Caller holds rw. */
static blk **snapshot_blocks(st_db *db, int64_t from, int64_t to, size_t *n)
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
 * count so a chunk's series range is checked in O(1). */
static int block_sel(const st__block *b, const st_selection *sel, int64_t from, int64_t to,
                     uint8_t **want, uint32_t **prefix)
{
	uint32_t ns = b->nseries;
	*want = calloc(ns, 1);
	*prefix = calloc((size_t)ns + 1, sizeof(**prefix));
	if (!*want || !*prefix)
		return -ENOMEM;
	for (uint32_t s = 0; s < ns; s++) {
		const st__blk_series *e = &b->series[s];
		(*want)[s] = sel_has(sel, e->id) && e->maxt >= from && e->mint < to;
		(*prefix)[s + 1] = (*prefix)[s] + (*want)[s];
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
                      int64_t from, int64_t to, int64_t *acc, const st__steps *steps,
                      chunk_fn fn, void *arg, uint64_t *rows)
{
	uint8_t *want = NULL;
	uint32_t *prefix = NULL;
	st__chunk_rows cr = {0};
	int rc = block_sel(b, sel, from, to, &want, &prefix);
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
			rc = st__chunk_merge(b, c, want, all, from, to, acc, &cr);
		else if (steps)
			rc = st__chunk_steps(b, c, steps, &cr);
		else if (!(rc = st__chunk_decode(b, c, &cr)))
			rc = fn(arg, b, &cr, want, all, from, to);
		*rows += ch->nrows;
		if (rc == -EBADMSG && k) {
			blk_damaged(k, c);
			sel_note_damaged(sel);
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
	st__map map;     /* stack id -> index in v */
	st_stack_sum *v;
	size_t n, cap;
} sums;

static int sums_add(sums *s, uint64_t id, int64_t value)
{
	uint32_t i = st__map_get(&s->map, id);
	if (i != ST__MAP_NONE) {
		s->v[i].value = st_sum_add(s->v[i].value, value);
		return 0;
	}
	if (st__grow(&s->v, &s->cap, s->n + 1, sizeof(*s->v)))
		return -ENOMEM;
	s->v[s->n] = (st_stack_sum){id, value};
	return st__map_put(&s->map, id, (uint32_t)s->n++);
}

static int cmp_sum(const void *a, const void *b)
{
	const st_stack_sum *x = a, *y = b;
	return x->stack_id < y->stack_id ? -1 : x->stack_id > y->stack_id;
}

/* ---- reads over a plan: raw rows, roll-ups and the head ---- */

/* The registry indices of a block's (or roll-up file's) stacks, mapped
 * once and kept with it in *slot: a merge then adds each stack's sum into
 * one array by index, instead of a hash lookup per stack per file per
 * query, which was a third of a week's merge from roll-ups. A stack the
 * registry lacks (none should) gets ST__MAP_NONE. Caller holds rw. */
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
			st__map_prefetch(&db->stacks.map, b->stacks[k + 8]);
		g[k] = st__map_get(&db->stacks.map, b->stacks[k]);
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
	st_err *err;
	uint64_t raw_rows;       /* rows decoded from blocks and the head */
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
			if (g == ST__MAP_NONE || r->ts < rd->origin)
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
		int64_t *acc = calloc((size_t)b->nstacks + 1, sizeof(*acc));
		if (!acc)
			return -ENOMEM;
		rc = scan_block(kb, b, rd->sel, from, to, acc, NULL, NULL, NULL, rows);
		for (uint32_t x = 0; x < b->nstacks && !rc; x++) {
			if (!acc[x])
				continue;
			if (gidx[x] < rd->nst)
				rd->hacc[gidx[x]] = st_sum_add(rd->hacc[gidx[x]], acc[x]);
			else
				rc = sums_add(rd->s, b->stacks[x], acc[x]);
		}
		free(acc);
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
		uint32_t pos = st__map_get(&rd->sel->map, b->series[s].id);
		bg[s] = pos == ST__MAP_NONE ? ST__MAP_NONE : rd->group[pos];
		if (bg[s] != ST__MAP_NONE && bg[s] >= ng)
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
	rc = scan_block(kb, b, rd->sel, from, to, NULL, &sp, NULL, NULL, rows);
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
	if (st__grow(v, cap, *n + 1, sizeof(**v)))
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
	bl = snapshot_blocks(db, lo, hi, &nb);
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
			uint32_t pos = gsel(rd->sel, i) ? st__map_get(&rd->sel->map, db->series[i].id)
			                                : ST__MAP_NONE;
			rg[i] = pos == ST__MAP_NONE ? ST__MAP_NONE : rd->group[pos];
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
				rc = st__fail(rd->err, -EINVAL, "no roll-up level has a step of %" PRId64
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
			rc = st__fail(rd->err, -EBADMSG, "roll-up file %s is damaged and the raw "
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
			rc = st__fail(rd->err, -EBADMSG, "roll-up file %s is damaged and the raw rows "
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
		if (st__grow(&rd->s->v, &rd->s->cap, rd->s->n + nz + 1, sizeof(*rd->s->v)))
			rc = -ENOMEM;
		for (size_t i = 0; i < rd->nst && !rc; i++)
			if (rd->hacc[i])
				rd->s->v[rd->s->n++] = (st_stack_sum){db->stacks.ids[i], rd->hacc[i]};
		pthread_rwlock_unlock(&db->rw);
	}
	__atomic_fetch_add(&db->rows_read_raw, rd->raw_rows, __ATOMIC_RELAXED);
	for (size_t i = 0; bl && i < nb; i++)
		blk_unref(bl[i]);
	free(bl);
	rparts_free(parts, np);
	free(rg);
	free(rd->hacc);
	rd->hacc = NULL;
	return rc;
}

static int emb_merge_spans(st_db *db, const st_selection *sel, const st_span *sp, size_t nsp,
                           st_stack_sum **out, size_t *nout, st_err *err)
{
	sums s = {0};
	int rc = st__map_init(&s.map, 4096);
	if (rc)
		return rc;
	reader rd = {.sel = sel, .s = &s, .err = err};
	rc = read_plan(db, &rd, sp, nsp);
	if (!rc) {
		if (s.n)
			qsort(s.v, s.n, sizeof(*s.v), cmp_sum);
		*out = s.v;
		*nout = s.n;
		s.v = NULL;
	}
	free(s.v);
	st__map_free(&s.map);
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

static int emb_rows(st_db *db, const st_selection *sel, int64_t from, int64_t to,
            st_row_fn fn, void *arg)
{
	int rc = 0;
	size_t nb = 0, nh = 0, hcap = 0;
	st_row *hrows = NULL;
	pthread_rwlock_rdlock(&db->rw);
	blk **bl = snapshot_blocks(db, from, to, &nb);
	/* copy the head's rows so fn runs without the lock */
	for (size_t p = 0; bl && p < db->nparts && !rc; p++) {
		const hpart *h = db->parts[p];
		if (h->start + db->opt.partition_ns <= from || h->start >= to)
			continue;
		for (size_t i = 0; i < h->n; i++) {
			const hrow *r = &h->rows[i];
			if (r->ts < from || r->ts >= to || !gsel(sel, r->series))
				continue;
			if (st__grow(&hrows, &hcap, nh + 1, sizeof(*hrows))) {
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
		rc = scan_block(bl[i], &bl[i]->b, sel, from, to, NULL, NULL, rows_chunk, &ra, &rows);
	for (size_t i = 0; i < nh && !rc; i++)
		rc = fn(arg, &hrows[i]);
	for (size_t i = 0; bl && i < nb; i++)
		blk_unref(bl[i]);
	free(bl);
	free(hrows);
	return rc;
}

/* ---- the timeline: sums per (group, step) ---- */

static int emb_series_steps_spans(st_db *db, const st_selection *sel, const st_span *sp,
                                  size_t nsp, int64_t origin, int64_t step, size_t nsteps,
                                  const uint32_t *group, int64_t *acc, uint8_t *has,
                                  st_err *err)
{
	reader rd = {.sel = sel, .steps = true, .origin = origin, .step = step, .nsteps = nsteps,
	             .group = group, .acc = acc, .has = has, .err = err};
	return read_plan(db, &rd, sp, nsp);
}

/* ---- roll-ups ---- */

static size_t emb_rollup_steps(st_db *db, int64_t *steps, size_t max)
{
	size_t n = st__ru_nlevels(db->ru);
	for (size_t i = 0; i < n && i < max; i++)
		steps[i] = st__ru_step(db->ru, i);
	return n;
}

static int emb_rollup_spans(st_db *db, int64_t step, int64_t from, int64_t to, st_span **out,
                    size_t *n)
{
	pthread_rwlock_rdlock(&db->rw);
	int rc = st__ru_spans(db->ru, step, from, to, out, n);
	pthread_rwlock_unlock(&db->rw);
	return rc;
}

/* The coverage of [s, e)'s partitions, for a roll-up built from raw rows.
 * Caller holds rw. */
static int covers_of(st_db *db, int64_t s, int64_t e, covers *out)
{
	int rc = 0;
	for (int64_t p = s; p < e && !rc; p += db->opt.partition_ns) {
		uint64_t l = covered(&db->cover, p);
		if (l)
			rc = cover_note(out, p, l);
	}
	return rc;
}

/* Builds one roll-up file: from its job's files, or from the blocks over
 * its span as the store has them now, with the coverage they hold. A span
 * with a damaged block gets none: its raw rows stay what queries read,
 * without the damaged chunks and saying so, where a roll-up would hide the
 * loss (and building it would fail at every pass). */
static int rollup_job(st_db *db, const st__ru_job *j)
{
	int rc = 0;
	size_t nb = 0, nin = 0;
	blk **bl = NULL;
	covers cov = {0};
	const st__block **in = NULL;
	st__ru_file *f = NULL;
	st_err err = {{0}};
	pthread_rwlock_rdlock(&db->rw);
	if (j->nsrc) {
		in = malloc(j->nsrc * sizeof(*in));
		for (size_t i = 0; in && i < j->nsrc && !rc; i++) {
			const st__block *b = st__ru_file_block(j->src[i]);
			in[nin++] = b;
			for (uint32_t c = 0; c < b->ncover && !rc; c++)
				if (b->cover[c].partition_start >= j->start &&
				    b->cover[c].partition_start < j->end)
					rc = cover_note(&cov, b->cover[c].partition_start, b->cover[c].wal_lsn);
		}
	} else {
		bl = snapshot_blocks(db, j->start, j->end, &nb);
		in = malloc((nb + 1) * sizeof(*in));
		for (size_t i = 0; in && bl && i < nb; i++)
			in[nin++] = &bl[i]->b;
		if (bl)
			rc = covers_of(db, j->start, j->end, &cov);
	}
	pthread_rwlock_unlock(&db->rw);
	if (!in || (!j->nsrc && !bl))
		rc = -ENOMEM;
	bool damaged = false;
	for (size_t i = 0; bl && i < nb; i++)
		damaged |= atomic_load(&bl[i]->damaged);
	if (!rc && !damaged)
		rc = st__ru_write(db->ru, j, in, nin, cov.v, cov.n, &f, &err);
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
		blk_unref(bl[i]);
	free(bl);
	free(in);
	free(cov.v);
	return rc;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int emb_rollup(st_db *db, int64_t now)
{
	int rc = 0;
	int64_t keep_after = db->opt.rollup_retention_ns > 0 ? now - db->opt.rollup_retention_ns
	                                                      : INT64_MIN;
	pthread_mutex_lock(&db->maint_mu);
	for (size_t li = 0; li < st__ru_nlevels(db->ru) && !rc; li++) {
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
	}
	pthread_mutex_unlock(&db->maint_mu);
	return rc;
}

static bool emb_head_full(st_db *db)
{
	return __atomic_load_n(&db->head_rows, __ATOMIC_RELAXED) > db->opt.head_max_rows;
}

static void emb_get_stats(st_db *db, st_stats *o)
{
	memset(o, 0, sizeof(*o));
	pthread_rwlock_rdlock(&db->rw);
	o->head_rows = db->head_rows;
	o->head_partitions = db->nparts;
	o->blocks = db->nblocks;
	for (size_t i = 0; i < db->nblocks; i++) {
		o->block_rows += db->blocks[i]->b.nrows;
		o->block_bytes += db->blocks[i]->file_bytes;
	}
	o->series = db->nseries;
	o->stacks = db->stacks.n;
	o->replayed_records = db->replayed;
	o->torn_bytes = db->torn_bytes;
	o->rows_read[0] = __atomic_load_n(&db->rows_read_raw, __ATOMIC_RELAXED);
	st__ru_stats(db->ru, o);
	pthread_rwlock_unlock(&db->rw);
	pthread_mutex_lock(&db->append_mu);
	st__wal_usage(db->wal, &o->wal_segments, &o->wal_bytes);
	st__wal_counters(db->wal, &o->wal_records, &o->wal_syncs, &o->wal_sync_ns);
	pthread_mutex_unlock(&db->append_mu);
}

/* ---- debug-info files: DIR/debuginfo ---- */

static const char *emb_file_dir(st_db *db)
{
	return db->files_dir;
}

static int emb_file_keep(st_db *db, const char *name, const char *path, st_err *err)
{
	int rc = st__dir_keep(db->files_dir, name, path);
	if (rc && rc != -EEXIST)
		st__fail(err, rc, "keeping %s/%s: %s", db->files_dir, name, strerror(-rc));
	return rc;
}

static int emb_file_path(st_db *db, const char *name, char *path, size_t size)
{
	struct stat st;
	if ((size_t)snprintf(path, size, "%s/%s", db->files_dir, name) >= size)
		return -ENAMETOOLONG;
	return stat(path, &st) ? -errno : 0;
}

static int emb_file_exists(st_db *db, const char *name)
{
	char path[sizeof(db->files_dir) + 256];
	int rc = emb_file_path(db, name, path, sizeof(path));
	return rc == 0 ? 1 : rc == -ENOENT ? 0 : rc;
}

static int emb_file_changes(st_db *db, int64_t *cursor, st_file_fn fn, void *arg)
{
	(void)db, (void)cursor, (void)fn, (void)arg;
	return 0;
}

static const st__ops emb_ops = {
	.name = "embedded",
	.close = emb_close,
	.append = emb_append,
	.cut = emb_cut,
	.head_full = emb_head_full,
	.retention = emb_retention,
	.compact = emb_compact,
	.select = emb_select,
	.series_labels = emb_series_labels,
	.rows = emb_rows,
	.merge_spans = emb_merge_spans,
	.series_steps_spans = emb_series_steps_spans,
	.rollup_steps = emb_rollup_steps,
	.rollup_spans = emb_rollup_spans,
	.rollup = emb_rollup,
	.stack_frames = emb_stack_frames,
	.stack_locations = emb_stack_locations,
	.location = emb_location,
	.stacks_locations = emb_stacks_locations,
	.locations = emb_locations,
	.symbols_get = emb_symbols_get,
	.symbols_put = emb_symbols_put,
	.symbols_forget = emb_symbols_forget,
	.symbols_missing = emb_symbols_missing,
	.file_dir = emb_file_dir,
	.file_keep = emb_file_keep,
	.file_exists = emb_file_exists,
	.file_path = emb_file_path,
	.file_changes = emb_file_changes,
	.get_stats = emb_get_stats,
};
