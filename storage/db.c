/* db.c - the store as a whole: opens a data directory (the lock, SQLite's
 * registries, the blocks, the WAL replayed into the head, the roll-up
 * levels), closes it, and keeps what the other parts share: the series
 * and stack registries, the per-partition coverage and the blocks on
 * disk. Appends and cuts are head.c's, retention, compaction and roll-ups
 * maint.c's, selections select.c's, reads read.c's; db_int.h says how
 * they lock. This file fills the embedded store's operations table
 * (backend.h) with theirs, and keeps its debug-info files in
 * DIR/debuginfo (st_file_*). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "storage/db_int.h"

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
	/* an hour, six and a day: docs/architecture.md says why not a
	 * minute, and what the six hours save a week's edges */
	o->nrollups = 3;
	o->rollup_steps_ns[0] = 3600LL * 1000000000LL;
	o->rollup_steps_ns[1] = 6 * 3600LL * 1000000000LL;
	o->rollup_steps_ns[2] = 86400LL * 1000000000LL;
	o->rollup_retention_ns = 90LL * 24 * 3600 * 1000000000LL;
	o->rollup_group_label = "service";
}

/* ---- registries ---- */

int st__series_add(st_db *db, uint64_t id, const char *type,
                      const st_label *labels, uint32_t n, uint32_t *idx)
{
	uint32_t have = base_map_get(&db->series_map, id);
	if (have != BASE_MAP_NONE) {
		*idx = have;
		return 0;
	}
	if (base_grow(&db->series, &db->series_cap, (size_t)db->nseries + 1, sizeof(*db->series)))
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
	int rc = base_map_put(&db->series_map, id, db->nseries);
	if (!rc && (rc = st__post_add(&db->post, db->nseries, l, n + 1)))
		base_map_del(&db->series_map, id);
	if (rc) {
		free(l);
		return rc;
	}
	db->series[db->nseries] = (sreg){id, INT64_MAX, INT64_MIN, l, n + 1};
	*idx = db->nseries++;
	return 0;
}

int st__stack_add(st_db *db, uint64_t id)
{
	uint32_t idx;
	return st__ids_index(&db->stacks, id, &idx);
}

static int load_series_cb(void *arg, uint64_t id, const char *type,
                          const st_label *labels, uint32_t n)
{
	uint32_t idx;
	return st__series_add(arg, id, type, labels, n, &idx);
}

static int load_stack_cb(void *arg, uint64_t id)
{
	return st__stack_add(arg, id);
}

/* ---- coverage ---- */

uint64_t st__covered(const covers *c, int64_t part)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].partition_start == part)
			return c->v[i].wal_lsn;
	return 0;
}

/* Raises part's covered LSN to at least lsn. */
int st__cover_note(covers *c, int64_t part, uint64_t lsn)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].partition_start == part) {
			if (lsn > c->v[i].wal_lsn)
				c->v[i].wal_lsn = lsn;
			return 0;
		}
	if (base_grow(&c->v, &c->cap, c->n + 1, sizeof(*c->v)))
		return -ENOMEM;
	c->v[c->n++] = (st__blk_cover){part, lsn};
	return 0;
}

/* ---- blocks on disk ---- */

void st__blk_unref(blk *k)
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

int st__blk_open(st_db *db, const char *name, blk **out, base_err *err)
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
		rc = base_fail(err, -errno, "block %s: %s", name, strerror(errno));
		goto out;
	}
	k->map_len = (size_t)st.st_size;
	k->file_bytes = (uint64_t)st.st_size;
	if (k->map_len) {
		k->map = mmap(NULL, k->map_len, PROT_READ, MAP_SHARED, fd, 0);
		if (k->map == MAP_FAILED) {
			k->map = NULL;
			rc = base_fail(err, -errno, "block %s: mmap: %s", name, strerror(errno));
			goto out;
		}
	}
	base_err e2;
	rc = st__block_parse(k->map, k->map_len, &k->b, &e2);
	if (!rc && k->b.step_s)
		rc = base_fail(&e2, -EBADMSG, "a roll-up file, not a block");
	if (rc)
		base_fail(err, rc, "block %s is damaged (%s); move it out of %s to start "
		         "without it", name, e2.msg, db->blocks_dir);
out:
	if (fd >= 0)
		close(fd);
	if (rc) {
		st__blk_unref(k);
		return rc;
	}
	*out = k;
	return 0;
}

int st__blocks_push(st_db *db, blk *k)
{
	if (base_grow(&db->blocks, &db->blocks_cap, db->nblocks + 1, sizeof(*db->blocks)))
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
int st__blk_create(st_db *db, const st__wrow *rows, size_t n,
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

void st__blocks_remove(st_db *db, blk *k)
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
void st__blk_kill(st_db *db, blk *k)
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
	st__blk_unref(k);
}

/* A damaged chunk met by a read: said once per block on stderr, naming
 * the file and what to do. Reads go on without it (the answer counts it
 * through its selection), so one bad sector does not fail every query
 * over its hour; compaction leaves the block alone. */
void st__blk_damaged(const blk *k, uint32_t chunk)
{
	if (atomic_exchange(&((blk *)k)->damaged, true))
		return;
	fprintf(stderr, "smolder storage: %s/" BLOCK_FILE " is damaged (chunk %u fails its "
	        "checksum or does not decode): queries leave its rows out and say so, "
	        "compaction skips the block; move the directory %s out of the data "
	        "directory to drop it\n", k->path, chunk, k->path);
}

/* Takes a block written moments ago away from its live name, so that
 * neither a restart nor a retry of its rows counts it: renamed to
 * NAME.deleted (which st_open removes) and then removed. 0 once it no
 * longer has its live name; the rename's -errno otherwise. */
int st__blk_unpublish(st_db *db, const char *name)
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

/* ---- open / close ---- */

typedef struct replay_arg {
	st_db *db;
	base_err *err;
} replay_arg;

static int replay_rec(void *arg, uint64_t lsn, const uint8_t *p, size_t len)
{
	replay_arg *ra = arg;
	st__dbatch d;
	int rc = st__batch_decode(p, len, &d, ra->err);
	if (rc)
		return rc;
	uint32_t *kidx = malloc((d.b.nsamples + 1) * sizeof(*kidx));
	rc = kidx ? st__head_check_stacks(ra->db, &d.b, kidx, ra->err) : -ENOMEM;
	if (rc == -ENOENT)
		rc = -EBADMSG;   /* in a logged record, a missing stack is damage */
	bool tx;
	if (!rc)
		rc = st__head_put_meta(ra->db, &d.b, d.series_ids, &tx);
	if (!rc)
		rc = st__head_apply(ra->db, &d.b, d.series_ids, kidx, lsn);
	free(kidx);
	st__dbatch_free(&d);
	return rc;
}

static int load_cover_cb(void *arg, int64_t part, uint64_t lsn)
{
	return st__cover_note(&((st_db *)arg)->cover, part, lsn);
}

static int load_blocks(st_db *db, base_err *err)
{
	int rc = 0;
	DIR *d = opendir(db->blocks_dir);
	if (!d)
		return base_fail(err, -errno, "%s: %s", db->blocks_dir, strerror(errno));
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
		rc = st__blk_open(db, n, &k, err);
		if (!rc)
			rc = st__blocks_push(db, k);
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
					st__blocks_remove(db, old);
					st__blk_kill(db, old);
					if (j < i)
						i--;
					break;
				}
	for (size_t i = 0; i < db->nblocks && !rc; i++) {
		const st__block *b = &db->blocks[i]->b;
		for (uint32_t c = 0; c < b->ncover && !rc; c++)
			rc = st__cover_note(&db->cover, b->cover[c].partition_start, b->cover[c].wal_lsn);
		for (uint32_t s = 0; s < b->nseries; s++) {
			uint32_t x = base_map_get(&db->series_map, b->series[s].id);
			if (x == BASE_MAP_NONE)
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
static int meta_fail(st_db *db, base_err *err, int rc, const char *detail)
{
	if (rc == -ENOMEM)
		return base_fail(err, rc, "reading %s/meta.db: out of memory", db->dir);
	if (rc == -ENOSPC)
		return base_fail(err, rc, "writing %s/meta.db: the disk is full (%s); free some "
		                "space on it", db->dir, detail && *detail ? detail : "SQLITE_FULL");
	if (rc != -EBADMSG)
		return base_fail(err, rc, "reading %s/meta.db: %s (%s)", db->dir, strerror(-rc),
		                detail && *detail ? detail : "no detail");
	if (detail && !strcmp(detail, "not an error"))
		detail = "a row that does not decode";
	return base_fail(err, rc, "%s/meta.db is damaged (%s). Stop, keep a copy of the data "
	                "directory, then rebuild it with SQLite: sqlite3 %s/meta.db .recover "
	                "| sqlite3 %s/meta.db.new, and move meta.db.new over meta.db "
	                "(removing meta.db-wal and meta.db-shm)", db->dir,
	                detail && *detail ? detail : "malformed", db->dir, db->dir);
}

static uint64_t cover_cb(void *arg, int64_t part)
{
	return st__covered(&((st_db *)arg)->cover, part);
}

static void series_time_cb(void *arg, uint64_t id, int64_t mint, int64_t maxt)
{
	st_db *db = arg;
	uint32_t x = base_map_get(&db->series_map, id);
	if (x == BASE_MAP_NONE)
		return;
	if (mint < db->series[x].mint)
		db->series[x].mint = mint;
	if (maxt > db->series[x].maxt)
		db->series[x].maxt = maxt;
}

/* The roll-up levels in DIR/rollup, once blocks and coverage are known. */
static int open_rollups(st_db *db, base_err *err)
{
	char path[PATH_MAX + 16];
	int64_t floor = 0;
	int rc = st__meta_setting(db->meta, "raw_floor_ns", &floor);
	if (rc)
		return base_fail(err, rc, "reading settings: %s", strerror(-rc));
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

int st_open(const char *dir, const st_options *opt, st_db **out, base_err *err)
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
		rc = base_fail(err, -EINVAL, "invalid storage options");
		goto out;
	}
	if (db->opt.rollup_group_label && *db->opt.rollup_group_label &&
	    !(db->group_label = strdup(db->opt.rollup_group_label))) {
		rc = -ENOMEM;
		goto out;
	}
	db->opt.rollup_group_label = db->group_label;
	if (strlen(dir) >= PATH_MAX - 64) {
		rc = base_fail(err, -ENAMETOOLONG, "data dir path too long");
		goto out;
	}
	snprintf(db->dir, sizeof(db->dir), "%s", dir);
	snprintf(db->blocks_dir, sizeof(db->blocks_dir), "%s/blocks", dir);
	snprintf(db->files_dir, sizeof(db->files_dir), "%s/debuginfo", dir);
	const char *mk = db->blocks_dir;
	if ((rc = st__mkdir_p(mk)) || (rc = st__mkdir_p(mk = db->files_dir))) {
		base_fail(err, rc, "creating %s: %s", mk, strerror(-rc));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/LOCK", dir);
	db->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (db->lock_fd < 0 || flock(db->lock_fd, LOCK_EX | LOCK_NB)) {
		rc = base_fail(err, errno == EWOULDBLOCK ? -EBUSY : -errno,
		              "%s is in use by another process", dir);
		goto out;
	}
	if ((rc = base_map_init(&db->series_map, 1024)) ||
	    (rc = base_map_init(&db->stacks.map, 65536)))
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
		rc = base_fail(err, -EINVAL, "%s was created with %lld s partitions; it cannot "
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
		base_fail(err, rc, "opening %s: %s", path, strerror(-rc));
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
			base_fail(err, rc, "replaying the WAL in %s: %s", path, strerror(-rc));
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
		st__blk_unref(db->blocks[i]);
	free(db->blocks);
	st__post_free(&db->post);
	for (uint32_t i = 0; i < db->nseries; i++)
		free(db->series[i].labels);
	free(db->series);
	st__ids_free(&db->stacks);
	free(db->cover.v);
	base_map_free(&db->series_map);
	if (db->lock_fd >= 0)
		close(db->lock_fd);
	pthread_mutex_destroy(&db->append_mu);
	pthread_mutex_destroy(&db->maint_mu);
	pthread_mutex_destroy(&db->cut_mu);
	pthread_rwlock_destroy(&db->rw);
	free(db->group_label);
	free(db);
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

static int emb_file_keep(st_db *db, const char *name, const char *path, base_err *err)
{
	int rc = st__dir_keep(db->files_dir, name, path);
	if (rc && rc != -EEXIST)
		base_fail(err, rc, "keeping %s/%s: %s", db->files_dir, name, strerror(-rc));
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
	.append = st__emb_append,
	.cut = st__emb_cut,
	.head_full = emb_head_full,
	.retention = st__emb_retention,
	.compact = st__emb_compact,
	.select = st__emb_select,
	.series_labels = st__emb_series_labels,
	.rows = st__emb_rows,
	.merge_spans = st__emb_merge_spans,
	.series_steps_spans = st__emb_series_steps_spans,
	.rollup_steps = st__emb_rollup_steps,
	.rollup_spans = st__emb_rollup_spans,
	.rollup = st__emb_rollup,
	.stack_frames = st__emb_stack_frames,
	.stacks_locations = st__emb_stacks_locations,
	.locations = st__emb_locations,
	.symbols_get = st__emb_symbols_get,
	.symbols_put = st__emb_symbols_put,
	.symbols_forget = st__emb_symbols_forget,
	.symbols_missing = st__emb_symbols_missing,
	.file_dir = emb_file_dir,
	.file_keep = emb_file_keep,
	.file_exists = emb_file_exists,
	.file_path = emb_file_path,
	.file_changes = emb_file_changes,
	.get_stats = emb_get_stats,
};
