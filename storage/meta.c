/* meta.c - the SQLite side of storage: small relational metadata that is
 * written once and read by ID. Two connections, each owned by this file and
 * used only under its own mutex: the writer (w_mu) and a reader for queries
 * (r_mu), so a long query never holds up ingest (SQLite's WAL mode lets them
 * overlap). Both are opened SQLITE_OPEN_NOMUTEX: SQLite itself does not
 * guard a connection then, so every use of m->w, the statements prepared on
 * it and the writer-side caches below is under w_mu, taken here and never
 * by the callers. A transaction holds w_mu from st__meta_begin() to its
 * commit or rollback. */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <sqlite3.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "storage/meta.h"

#define SCHEMA_VERSION "2"

/* Locations of schema 2: named frames may carry a source file, a line and
 * a language tag (none: '' and 0), part of what makes a location. Schema 1
 * had the first four columns only; st__meta_open() moves such a table
 * over. */
#define LOCATIONS_TABLE(name)                                                        \
	"CREATE TABLE IF NOT EXISTS " name "(id INTEGER PRIMARY KEY,"                 \
	" object_id INTEGER NOT NULL, offset INTEGER NOT NULL, kernel_name TEXT NOT NULL," \
	" file TEXT NOT NULL DEFAULT '', line INTEGER NOT NULL DEFAULT 0,"            \
	" lang TEXT NOT NULL DEFAULT '',"                                             \
	" UNIQUE(object_id, offset, kernel_name, file, line, lang));"

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	/* series: id is the 64-bit series hash; labels is name\0value\0... */
	"CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, type TEXT NOT NULL,"
	" labels BLOB NOT NULL);"
	/* the inverted index: (name, value) -> series, type as __name__; the
	 * store selects through postings.c's copy in memory, made from
	 * `series` at open, and keeps this one for SQLite queries on meta.db */
	"CREATE TABLE IF NOT EXISTS series_labels(name TEXT NOT NULL, value TEXT NOT NULL,"
	" series_id INTEGER NOT NULL, PRIMARY KEY(name, value, series_id)) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS objects(id INTEGER PRIMARY KEY,"
	" build_id BLOB NOT NULL UNIQUE, name TEXT NOT NULL);"
	/* user locations have kernel_name '', kernel ones object_id 0: NULLs
	 * would make the UNIQUE constraint useless */
	LOCATIONS_TABLE("locations")
	/* frames: varint location IDs, leaf first */
	"CREATE TABLE IF NOT EXISTS stacks(id INTEGER PRIMARY KEY, frames BLOB NOT NULL);"
	/* filled by the symbolizer: the inline chain of a location, depth 0
	 * innermost, as pprof's Line list */
	"CREATE TABLE IF NOT EXISTS symbols(location_id INTEGER NOT NULL,"
	" depth INTEGER NOT NULL, function TEXT NOT NULL, file TEXT, line INTEGER,"
	" PRIMARY KEY(location_id, depth)) WITHOUT ROWID;"
	/* per time partition, the last WAL record whose rows are in blocks */
	"CREATE TABLE IF NOT EXISTS coverage(partition_start INTEGER PRIMARY KEY,"
	" wal_lsn INTEGER NOT NULL);";

enum {
	W_INS_SERIES, W_INS_LABEL, W_SEL_OBJECT, W_INS_OBJECT, W_SEL_LOC, W_INS_LOC,
	W_INS_STACK, W_PUT_COVER, W_HAS_SYM, W_INS_SYM, W_DEL_SYM, W_NSTMT
};
static const char *const wsql[W_NSTMT] = {
	[W_INS_SERIES] = "INSERT OR IGNORE INTO series(id, type, labels) VALUES(?1, ?2, ?3)",
	[W_INS_LABEL] = "INSERT OR IGNORE INTO series_labels(name, value, series_id) VALUES(?1, ?2, ?3)",
	[W_SEL_OBJECT] = "SELECT id FROM objects WHERE build_id = ?1",
	[W_INS_OBJECT] = "INSERT INTO objects(build_id, name) VALUES(?1, ?2)",
	[W_SEL_LOC] = "SELECT id FROM locations WHERE object_id = ?1 AND offset = ?2"
	              " AND kernel_name = ?3 AND file = ?4 AND line = ?5 AND lang = ?6",
	[W_INS_LOC] = "INSERT INTO locations(object_id, offset, kernel_name, file, line, lang)"
	              " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
	[W_INS_STACK] = "INSERT OR IGNORE INTO stacks(id, frames) VALUES(?1, ?2)",
	[W_PUT_COVER] = "INSERT INTO coverage(partition_start, wal_lsn) VALUES(?1, ?2)"
	                " ON CONFLICT(partition_start) DO UPDATE SET"
	                " wal_lsn = max(wal_lsn, excluded.wal_lsn)",
	[W_HAS_SYM] = "SELECT 1 FROM symbols WHERE location_id = ?1 LIMIT 1",
	[W_INS_SYM] = "INSERT INTO symbols(location_id, depth, function, file, line)"
	              " VALUES(?1, ?2, ?3, ?4, ?5)",
	[W_DEL_SYM] = "DELETE FROM symbols WHERE location_id IN (SELECT l.id FROM locations l"
	              " JOIN objects o ON o.id = l.object_id WHERE o.build_id = ?1)",
};

enum { R_STACK, R_LOC, R_SYM, R_MISSING, R_NSTMT };
static const char *const rsql[R_NSTMT] = {
	[R_STACK] = "SELECT frames FROM stacks WHERE id = ?1",
	[R_LOC] = ("SELECT l.object_id, l.offset, l.kernel_name, o.build_id, o.name,"
	           " l.file, l.line, l.lang"
	           " FROM locations l LEFT JOIN objects o ON o.id = l.object_id WHERE l.id = ?1"),
	[R_SYM] = "SELECT function, file, line FROM symbols WHERE location_id = ?1 ORDER BY depth",
	/* user locations only: kernel ones have object 0, named ones -1 */
	[R_MISSING] = ("SELECT l.id, o.build_id, l.offset FROM locations l"
	               " JOIN objects o ON o.id = l.object_id"
	               " WHERE l.id > ?1 AND l.object_id > 0"
	               " AND NOT EXISTS (SELECT 1 FROM symbols s WHERE s.location_id = l.id)"
	               " ORDER BY l.id LIMIT ?2"),
};

struct st__meta {
	sqlite3 *w, *r;
	sqlite3_stmt *ws[W_NSTMT], *rs[R_NSTMT];
	pthread_mutex_t w_mu, r_mu;
	bool in_tx;          /* under w_mu: between begin and commit/rollback */
	/* writer-side caches (under w_mu), so a known object or location costs
	 * no query: build-ID hash -> object id; packed (object, offset) or
	 * kernel-name hash -> location id. They may hold IDs of rows a
	 * transaction inserted, so a rollback empties them: SQLite would give
	 * those rowids to other rows next. */
	base_map objects, locations;
	base_buf scratch;
};

static int sql_err(sqlite3 *db, int rc)
{
	(void)db;
	switch (rc) {
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_CORRUPT: case SQLITE_NOTADB: return -EBADMSG;
	case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
	default: return -EIO;
	}
}

static int open_conn(const char *path, int flags, sqlite3 **out, base_err *err)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		rc = base_fail(err, sql_err(db, rc), "opening %s: %s", path,
		              db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return rc;
	}
	sqlite3_busy_timeout(db, 10000);
	*out = db;
	return 0;
}

static int exec(sqlite3 *db, const char *sql, base_err *err)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		rc = base_fail(err, sql_err(db, rc), "sqlite: %s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return rc;
	}
	return 0;
}

/* Schema 1 to 2: the locations table gains file, line and lang, and its
 * UNIQUE constraint with them, which SQLite can only do by copying the
 * table. One transaction: a crash leaves schema 1, done again at the next
 * open. IDs are kept (stacks and symbols refer to them). */
static int migrate(sqlite3 *db, const char *path, base_err *err)
{
	sqlite3_stmt *st = NULL;
	sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='schema'", -1, &st, NULL);
	bool v1 = st && sqlite3_step(st) == SQLITE_ROW &&
	          !strcmp((const char *)sqlite3_column_text(st, 0), "1");
	sqlite3_finalize(st);
	if (!v1)
		return 0;
	int rc = exec(db, "BEGIN IMMEDIATE;"
	              LOCATIONS_TABLE("locations_v2")
	              "INSERT INTO locations_v2(id, object_id, offset, kernel_name)"
	              " SELECT id, object_id, offset, kernel_name FROM locations;"
	              "DROP TABLE locations;"
	              "ALTER TABLE locations_v2 RENAME TO locations;"
	              "UPDATE meta SET value = '2' WHERE key = 'schema';"
	              "COMMIT;", err);
	if (rc) {
		char why[sizeof(err->msg)];
		snprintf(why, sizeof(why), "%s", err ? err->msg : "sqlite");
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return base_fail(err, rc, "%s: moving schema 1 to 2 failed: %s", path, why);
	}
	return 0;
}

void st__meta_close(st__meta *m)
{
	if (!m)
		return;
	for (int i = 0; i < W_NSTMT; i++)
		sqlite3_finalize(m->ws[i]);
	for (int i = 0; i < R_NSTMT; i++)
		sqlite3_finalize(m->rs[i]);
	sqlite3_close(m->r);
	sqlite3_close(m->w);
	pthread_mutex_destroy(&m->r_mu);
	pthread_mutex_destroy(&m->w_mu);
	base_map_free(&m->objects);
	base_map_free(&m->locations);
	base_buf_free(&m->scratch);
	free(m);
}

int st__meta_open(const char *path, st__meta **out, base_err *err)
{
	int rc;
	st__meta *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->r_mu, NULL);
	pthread_mutex_init(&m->w_mu, NULL);
	rc = open_conn(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &m->w, err);
	if (rc)
		goto out;
	/* synchronous=NORMAL: a commit may be lost on power failure, but never
	 * anything the WAL of storage does not still hold (st__meta_sync runs
	 * before segments are deleted) */
	rc = exec(m->w, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err);
	if (!rc)
		rc = exec(m->w, schema, err);
	if (!rc)
		rc = exec(m->w, "INSERT OR IGNORE INTO meta(key, value) VALUES('schema', '"
		          SCHEMA_VERSION "')", err);
	if (!rc)
		rc = migrate(m->w, path, err);
	if (rc)
		goto out;
	{
		sqlite3_stmt *st = NULL;
		sqlite3_prepare_v2(m->w, "SELECT value FROM meta WHERE key='schema'", -1, &st, NULL);
		const char *v = st && sqlite3_step(st) == SQLITE_ROW ?
			(const char *)sqlite3_column_text(st, 0) : NULL;
		if (!v || strcmp(v, SCHEMA_VERSION))
			rc = base_fail(err, -EPROTO, "%s has schema version %s, this build "
			              "reads %s", path, v ? v : "?", SCHEMA_VERSION);
		sqlite3_finalize(st);
		if (rc)
			goto out;
	}
	rc = open_conn(path, SQLITE_OPEN_READONLY, &m->r, err);
	if (rc)
		goto out;
	for (int i = 0; i < W_NSTMT; i++)
		if (sqlite3_prepare_v3(m->w, wsql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                       &m->ws[i], NULL) != SQLITE_OK) {
			rc = base_fail(err, -EIO, "sqlite: %s", sqlite3_errmsg(m->w));
			goto out;
		}
	for (int i = 0; i < R_NSTMT; i++)
		if (sqlite3_prepare_v3(m->r, rsql[i], -1, SQLITE_PREPARE_PERSISTENT,
		                       &m->rs[i], NULL) != SQLITE_OK) {
			rc = base_fail(err, -EIO, "sqlite: %s", sqlite3_errmsg(m->r));
			goto out;
		}
	if ((rc = base_map_init(&m->objects, 1024)) || (rc = base_map_init(&m->locations, 65536)))
		goto out;
	*out = m;
	return 0;
out:
	st__meta_close(m);
	return rc;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st);

static int setting_locked(st__meta *m, const char *key, int64_t *value)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(m->w, "INSERT OR IGNORE INTO meta(key, value) VALUES(?1, ?2)",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_err(m->w, rc);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, *value);
	rc = step_done(m->w, st);
	sqlite3_finalize(st);
	if (rc)
		return rc;
	rc = sqlite3_prepare_v2(m->w, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_err(m->w, rc);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*value = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : -EBADMSG;
}

const char *st__meta_errmsg(st__meta *m)
{
	return sqlite3_errmsg(m->w);
}

int st__meta_setting(st__meta *m, const char *key, int64_t *value)
{
	pthread_mutex_lock(&m->w_mu);
	int rc = setting_locked(m, key, value);
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

int st__meta_setting_raise(st__meta *m, const char *key, int64_t value)
{
	pthread_mutex_lock(&m->w_mu);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(m->w, "INSERT INTO meta(key, value) VALUES(?1, ?2) "
	                            "ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS "
	                            "INTEGER), excluded.value)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, value);
		rc = step_done(m->w, st);
	} else {
		rc = sql_err(m->w, rc);
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

/* Empties the writer caches after a transaction did not commit. */
static void caches_reset(st__meta *m)
{
	base_map_clear(&m->objects);
	base_map_clear(&m->locations);
}

int st__meta_begin(st__meta *m)
{
	pthread_mutex_lock(&m->w_mu);
	assert(!m->in_tx);
	int rc = exec(m->w, "BEGIN", NULL);
	if (rc) {
		pthread_mutex_unlock(&m->w_mu);
		return rc;
	}
	m->in_tx = true;
	return 0;
}

int st__meta_commit(st__meta *m)
{
	assert(m->in_tx);
	int rc = exec(m->w, "COMMIT", NULL);
	if (rc) {
		/* a COMMIT that failed with BUSY leaves the transaction open, one
		 * that failed on I/O may have rolled it back already: end it
		 * either way, so the next begin starts clean */
		if (!sqlite3_get_autocommit(m->w))
			exec(m->w, "ROLLBACK", NULL);
		caches_reset(m);
	}
	m->in_tx = false;
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

void st__meta_rollback(st__meta *m)
{
	assert(m->in_tx);
	if (!sqlite3_get_autocommit(m->w))
		exec(m->w, "ROLLBACK", NULL);
	caches_reset(m);
	m->in_tx = false;
	pthread_mutex_unlock(&m->w_mu);
}

int st__meta_sync(st__meta *m)
{
	/* under w_mu: the checkpoint runs on the writer connection. It blocks
	 * writers inside SQLite anyway for as long as it runs, so a connection
	 * of its own would only trade this mutex for SQLite's busy polling. */
	pthread_mutex_lock(&m->w_mu);
	assert(!m->in_tx);
	/* TRUNCATE: copy everything into the database file, fsync it, and
	 * empty the -wal file so it does not grow with the fleet's history */
	int rc = sqlite3_wal_checkpoint_v2(m->w, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	if (rc == SQLITE_OK) {
		rc = 0;
	} else if (rc != SQLITE_BUSY) {
		rc = sql_err(m->w, rc);
	} else {
		/* a reader in the way: the commits are still in the -wal file,
		 * which synchronous=NORMAL fsyncs at every checkpoint; fsync it
		 * ourselves by a FULL checkpoint of what can be copied */
		rc = sqlite3_wal_checkpoint_v2(m->w, NULL, SQLITE_CHECKPOINT_FULL, NULL, NULL);
		rc = rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : sql_err(m->w, rc);
	}
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : sql_err(db, rc);
}

int st__meta_put_series(st__meta *m, uint64_t id, const st_series_def *s)
{
	assert(m->in_tx);
	base_buf *b = &m->scratch;
	b->len = 0;
	int rc = 0;
	for (uint32_t i = 0; !rc && i < s->nlabels; i++) {
		rc = base_buf_put(b, s->labels[i].name, strlen(s->labels[i].name) + 1);
		rc = rc ? rc : base_buf_put(b, s->labels[i].value, strlen(s->labels[i].value) + 1);
	}
	if (rc)
		return rc;
	sqlite3_stmt *st = m->ws[W_INS_SERIES];
	sqlite3_bind_int64(st, 1, (int64_t)id);
	sqlite3_bind_text(st, 2, s->type, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, b->len ? (const void *)b->data : "", (int)b->len, SQLITE_STATIC);
	rc = step_done(m->w, st);
	if (rc || sqlite3_changes(m->w) == 0)
		return rc;
	st = m->ws[W_INS_LABEL];
	for (uint32_t i = 0; !rc && i <= s->nlabels; i++) {
		const char *k = i < s->nlabels ? s->labels[i].name : ST_TYPE_LABEL;
		const char *v = i < s->nlabels ? s->labels[i].value : s->type;
		sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, (int64_t)id);
		rc = step_done(m->w, st);
	}
	return rc;
}

/* Looks up or inserts a row with one statement pair, returning its rowid. */
static int get_or_insert(st__meta *m, sqlite3_stmt *sel, sqlite3_stmt *ins,
                         int64_t *id)
{
	int rc = sqlite3_step(sel);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(sel, 0);
		sqlite3_reset(sel);
		return 0;
	}
	sqlite3_reset(sel);
	if (rc != SQLITE_DONE)
		return sql_err(m->w, rc);
	rc = step_done(m->w, ins);
	if (rc)
		return rc;
	*id = sqlite3_last_insert_rowid(m->w);
	return 0;
}

static int object_id(st__meta *m, const st_object *o, int64_t *id)
{
	uint64_t h = XXH3_64bits(o->build_id, o->build_id_len);
	uint32_t v = base_map_get(&m->objects, h);
	if (v != BASE_MAP_NONE) {
		*id = v;
		return 0;
	}
	sqlite3_stmt *sel = m->ws[W_SEL_OBJECT], *ins = m->ws[W_INS_OBJECT];
	sqlite3_bind_blob(sel, 1, o->build_id, (int)o->build_id_len, SQLITE_STATIC);
	sqlite3_bind_blob(ins, 1, o->build_id, (int)o->build_id_len, SQLITE_STATIC);
	sqlite3_bind_text(ins, 2, o->name ? o->name : "", -1, SQLITE_STATIC);
	int rc = get_or_insert(m, sel, ins, id);
	if (!rc && *id >= 0 && *id < BASE_MAP_NONE)
		rc = base_map_put(&m->objects, h, (uint32_t)*id);
	return rc;
}

/* Cache keys: user frames pack (object id, offset) exactly when they fit in
 * 23 + 40 bits; kernel and function names use their hash (seeded by kind)
 * with the top bit set. A 64-bit hash collision among names is far less
 * likely than a disk error. */
static int location_id(st__meta *m, const st_batch *b, const st_frame *f, int64_t *id)
{
	int64_t obj = 0;
	uint64_t key;
	bool cacheable = true;
	const char *kname = "", *file = "", *lang = "";
	uint32_t line = 0;
	if (f->kind == ST_FRAME_KERNEL || f->kind == ST_FRAME_NAMED) {
		/* named frames: object -1, so a function and a kernel symbol of the
		 * same name stay two locations */
		kname = f->name;
		obj = f->kind == ST_FRAME_NAMED ? -1 : 0;
		key = XXH3_64bits_withSeed(kname, strlen(kname), (uint64_t)f->kind);
		if (f->kind == ST_FRAME_NAMED && st__frame_has_source(f)) {
			file = f->file ? f->file : "";
			lang = f->lang ? f->lang : "";
			line = f->line;
			uint64_t k2[2] = {XXH3_64bits(file, strlen(file)),
			                  XXH3_64bits_withSeed(lang, strlen(lang), line)};
			key = XXH3_64bits_withSeed(k2, sizeof(k2), key);
		}
		key |= 1ULL << 63;
	} else {
		int rc = object_id(m, &b->objects[f->object], &obj);
		if (rc)
			return rc;
		cacheable = obj < (1 << 23) && f->offset < (1ULL << 40);
		key = ((uint64_t)obj << 40) | f->offset;
	}
	uint32_t v = cacheable ? base_map_get(&m->locations, key) : BASE_MAP_NONE;
	if (v != BASE_MAP_NONE) {
		*id = v;
		return 0;
	}
	sqlite3_stmt *sel = m->ws[W_SEL_LOC], *ins = m->ws[W_INS_LOC];
	for (int i = 0; i < 2; i++) {
		sqlite3_stmt *st = i ? ins : sel;
		sqlite3_bind_int64(st, 1, obj);
		sqlite3_bind_int64(st, 2, f->kind == ST_FRAME_USER ? (int64_t)f->offset : 0);
		sqlite3_bind_text(st, 3, kname, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, file, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, line);
		sqlite3_bind_text(st, 6, lang, -1, SQLITE_STATIC);
	}
	int rc = get_or_insert(m, sel, ins, id);
	if (!rc && cacheable && *id >= 0 && *id < BASE_MAP_NONE)
		rc = base_map_put(&m->locations, key, (uint32_t)*id);
	return rc;
}

int st__meta_put_stack(st__meta *m, const st_batch *b, const st_stack_def *s)
{
	assert(m->in_tx);
	uint8_t blob[ST_MAX_FRAMES * 10];
	size_t n = 0;
	for (uint32_t i = 0; i < s->nframes; i++) {
		int64_t loc;
		int rc = location_id(m, b, &s->frames[i], &loc);
		if (rc)
			return rc;
		n += st__put_varint(blob + n, (uint64_t)loc);
	}
	sqlite3_stmt *st = m->ws[W_INS_STACK];
	sqlite3_bind_int64(st, 1, (int64_t)s->id);
	sqlite3_bind_blob(st, 2, blob, (int)n, SQLITE_STATIC);
	return step_done(m->w, st);
}

static int load_series_locked(st__meta *m, st__meta_series_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	st_label labels[ST_MAX_LABELS];
	int rc = sqlite3_prepare_v2(m->w, "SELECT id, type, labels FROM series", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_err(m->w, rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *p = sqlite3_column_blob(st, 2);
		int len = sqlite3_column_bytes(st, 2);
		const char *end = p + len;
		uint32_t n = 0;
		/* the blob is name\0value\0 pairs; refuse anything else */
		while (p && p < end) {
			const char *k = p, *v = memchr(k, 0, (size_t)(end - k));
			if (!v || n == ST_MAX_LABELS)
				goto bad;
			v++;
			const char *e = memchr(v, 0, (size_t)(end - v));
			if (!e)
				goto bad;
			labels[n].name = k;
			labels[n].value = v;
			n++;
			p = e + 1;
		}
		const char *type = (const char *)sqlite3_column_text(st, 1);
		if (!type)
			goto bad;
		rc = fn(arg, (uint64_t)sqlite3_column_int64(st, 0), type, labels, n);
		if (rc) {
			sqlite3_finalize(st);
			return rc;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sql_err(m->w, rc);
bad:
	sqlite3_finalize(st);
	return -EBADMSG;
}

int st__meta_load_series(st__meta *m, st__meta_series_fn fn, void *arg)
{
	pthread_mutex_lock(&m->w_mu);
	int rc = load_series_locked(m, fn, arg);
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

static int put_cover_locked(st__meta *m, int64_t partition_start, uint64_t wal_lsn)
{
	sqlite3_stmt *st = m->ws[W_PUT_COVER];
	sqlite3_bind_int64(st, 1, partition_start);
	sqlite3_bind_int64(st, 2, (int64_t)wal_lsn);
	return step_done(m->w, st);
}

int st__meta_put_cover(st__meta *m, int64_t partition_start, uint64_t wal_lsn)
{
	pthread_mutex_lock(&m->w_mu);
	int rc = put_cover_locked(m, partition_start, wal_lsn);
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

static int load_cover_locked(st__meta *m, st__meta_cover_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(m->w, "SELECT partition_start, wal_lsn FROM coverage",
	                            -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_err(m->w, rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int r = fn(arg, sqlite3_column_int64(st, 0),
		           (uint64_t)sqlite3_column_int64(st, 1));
		if (r) {
			sqlite3_finalize(st);
			return r;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sql_err(m->w, rc);
}

int st__meta_load_cover(st__meta *m, st__meta_cover_fn fn, void *arg)
{
	pthread_mutex_lock(&m->w_mu);
	int rc = load_cover_locked(m, fn, arg);
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

static int load_stacks_locked(st__meta *m, st__meta_stack_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(m->w, "SELECT id FROM stacks", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return sql_err(m->w, rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int r = fn(arg, (uint64_t)sqlite3_column_int64(st, 0));
		if (r) {
			sqlite3_finalize(st);
			return r;
		}
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : sql_err(m->w, rc);
}

int st__meta_load_stacks(st__meta *m, st__meta_stack_fn fn, void *arg)
{
	pthread_mutex_lock(&m->w_mu);
	int rc = load_stacks_locked(m, fn, arg);
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

/* Decodes a stacks.frames blob: varint location IDs, leaf first. Caller
 * holds r_mu. */
static int stack_locs(st__meta *m, uint64_t id, int64_t *locs, size_t *n)
{
	int rc = 0;
	sqlite3_stmt *st = m->rs[R_STACK];
	sqlite3_bind_int64(st, 1, (int64_t)id);
	int s = sqlite3_step(st);
	*n = 0;
	if (s != SQLITE_ROW) {
		rc = s == SQLITE_DONE ? -ENOENT : sql_err(m->r, s);
	} else {
		const uint8_t *p = sqlite3_column_blob(st, 0);
		const uint8_t *end = p + sqlite3_column_bytes(st, 0);
		while (p && p < end) {
			uint64_t loc;
			if (*n == ST_MAX_FRAMES || st__get_varint(&p, end, &loc)) {
				rc = -EBADMSG;
				break;
			}
			locs[(*n)++] = (int64_t)loc;
		}
	}
	sqlite3_reset(st);
	return rc;
}

/* One location as an st_frame_info in a single allocation. Caller holds
 * r_mu. */
static int location_row(st__meta *m, int64_t loc, st_frame_info **out)
{
	int rc = 0;
	sqlite3_stmt *st = m->rs[R_LOC];
	sqlite3_bind_int64(st, 1, loc);
	int s = sqlite3_step(st);
	if (s != SQLITE_ROW) {
		rc = s == SQLITE_DONE ? -ENOENT : sql_err(m->r, s);
		goto out;
	}
	const char *kn = (const char *)sqlite3_column_text(st, 2);
	const char *on = (const char *)sqlite3_column_text(st, 4);
	bool named = sqlite3_column_int64(st, 0) == -1;
	const void *bid = sqlite3_column_blob(st, 3);
	int bl = sqlite3_column_bytes(st, 3);
	bool kernel = kn && *kn;
	size_t kl = kernel ? strlen(kn) + 1 : 0;
	size_t ol = kernel ? 0 : strlen(on ? on : "") + 1;
	size_t bn = kernel || bl < 0 ? 0 : (size_t)bl;
	/* a named frame's source: columns 5..7, '' and 0 when it has none */
	const char *fn = named ? (const char *)sqlite3_column_text(st, 5) : NULL;
	const char *ln = named ? (const char *)sqlite3_column_text(st, 7) : NULL;
	int64_t line = named ? sqlite3_column_int64(st, 6) : 0;
	size_t fl = fn && *fn ? strlen(fn) + 1 : 0, ll = ln && *ln ? strlen(ln) + 1 : 0;
	st_frame_info *fi = calloc(1, sizeof(*fi) + kl + ol + bn + fl + ll);
	if (!fi) {
		rc = -ENOMEM;
		goto out;
	}
	char *sp = (char *)(fi + 1);
	fi->location_id = loc;
	if (kernel) {
		fi->kind = named ? ST_FRAME_NAMED : ST_FRAME_KERNEL;
		fi->name = memcpy(sp, kn, kl);
		sp += kl;
		if (fl) {
			fi->file = memcpy(sp, fn, fl);
			sp += fl;
		}
		if (ll)
			fi->lang = memcpy(sp, ln, ll);
		fi->line = line > 0 && line <= ST_MAX_LINE ? (uint32_t)line : 0;
	} else {
		fi->kind = ST_FRAME_USER;
		fi->offset = (uint64_t)sqlite3_column_int64(st, 1);
		fi->object_name = memcpy(sp, on ? on : "", ol);
		sp += ol;
		if (bn)
			memcpy(sp, bid, bn);
		fi->build_id = (const uint8_t *)sp;
		fi->build_id_len = (uint32_t)bn;
	}
	*out = fi;
out:
	sqlite3_reset(st);
	return rc;
}

/* Many reads under one lock and one read transaction: SQLite otherwise
 * takes and drops its file locks (fcntl) for every statement, which costs
 * more than the lookups themselves when a query names thousands of stacks. */
static void read_begin(st__meta *m)
{
	pthread_mutex_lock(&m->r_mu);
	sqlite3_exec(m->r, "BEGIN", NULL, NULL, NULL);
}

static void read_end(st__meta *m)
{
	sqlite3_exec(m->r, "COMMIT", NULL, NULL, NULL);
	pthread_mutex_unlock(&m->r_mu);
}

int st__meta_stacks_locations(st__meta *m, const uint64_t *ids, size_t n,
                              int64_t **locs_out, uint32_t **offs_out)
{
	int rc = 0;
	size_t cap = n * 16 + 16, len = 0;
	int64_t *pool = malloc(cap * sizeof(*pool));
	uint32_t *offs = malloc((n + 1) * sizeof(*offs));
	if (!pool || !offs) {
		free(pool);
		free(offs);
		return -ENOMEM;
	}
	read_begin(m);
	for (size_t i = 0; i < n && !rc; i++) {
		if (cap - len < ST_MAX_FRAMES) {
			cap = cap * 2 + ST_MAX_FRAMES;
			int64_t *t = realloc(pool, cap * sizeof(*pool));
			if (!t) {
				rc = -ENOMEM;
				break;
			}
			pool = t;
		}
		size_t k;
		offs[i] = (uint32_t)len;
		rc = stack_locs(m, ids[i], pool + len, &k);
		len += k;
		if (len > UINT32_MAX - ST_MAX_FRAMES)
			rc = -E2BIG;
	}
	offs[n] = (uint32_t)len;
	read_end(m);
	if (rc) {
		free(pool);
		free(offs);
		return rc;
	}
	*locs_out = pool;
	*offs_out = offs;
	return 0;
}

int st__frames_pack(st_frame_info *const *one, size_t n, st_frame_info **out)
{
	size_t bytes = 0;
	for (size_t i = 0; i < n; i++)
		bytes += (one[i]->name ? strlen(one[i]->name) + 1 : 0) +
		         (one[i]->object_name ? strlen(one[i]->object_name) + 1 : 0) +
		         (one[i]->file ? strlen(one[i]->file) + 1 : 0) +
		         (one[i]->lang ? strlen(one[i]->lang) + 1 : 0) +
		         one[i]->build_id_len;
	st_frame_info *fi = malloc(n * sizeof(*fi) + bytes + 1);
	if (!fi)
		return -ENOMEM;
	char *sp = (char *)(fi + n);
	for (size_t i = 0; i < n; i++) {
		fi[i] = *one[i];
		if (one[i]->name) {
			fi[i].name = strcpy(sp, one[i]->name);
			sp += strlen(sp) + 1;
		}
		if (one[i]->file) {
			fi[i].file = strcpy(sp, one[i]->file);
			sp += strlen(sp) + 1;
		}
		if (one[i]->lang) {
			fi[i].lang = strcpy(sp, one[i]->lang);
			sp += strlen(sp) + 1;
		}
		if (one[i]->object_name) {
			fi[i].object_name = strcpy(sp, one[i]->object_name);
			sp += strlen(sp) + 1;
			memcpy(sp, one[i]->build_id, one[i]->build_id_len);
			fi[i].build_id = (const uint8_t *)sp;
			sp += one[i]->build_id_len;
		}
	}
	*out = fi;
	return 0;
}

int st__meta_locations(st__meta *m, const int64_t *ids, size_t n, st_frame_info **out)
{
	int rc = 0;
	st_frame_info **one = calloc(n + 1, sizeof(*one));
	size_t got = 0;
	if (!one)
		return -ENOMEM;
	read_begin(m);
	while (got < n && !rc) {
		rc = location_row(m, ids[got], &one[got]);
		if (!rc)
			got++;
	}
	read_end(m);
	if (!rc)
		rc = st__frames_pack(one, n, out);
	for (size_t i = 0; i < got; i++)
		free(one[i]);
	free(one);
	return rc;
}

int st__meta_stack_frames(st__meta *m, uint64_t id, st_frame_info **out, size_t *n)
{
	int64_t locs[ST_MAX_FRAMES];
	st_frame_info *fl[ST_MAX_FRAMES];
	size_t nf = 0, got = 0;
	pthread_mutex_lock(&m->r_mu);
	int rc = stack_locs(m, id, locs, &nf);
	while (!rc && got < nf) {
		rc = location_row(m, locs[got], &fl[got]);
		if (rc == -ENOENT)
			rc = -EBADMSG;  /* a stack naming a missing location */
		else if (!rc)
			got++;
	}
	pthread_mutex_unlock(&m->r_mu);
	if (rc)
		goto out;
	if (!(rc = st__frames_pack(fl, nf, out)))
		*n = nf;
out:
	for (size_t i = 0; i < got; i++)
		free(fl[i]);
	return rc;
}

/* ---- symbol cache ---- */

int st__meta_symbols_get(st__meta *m, const int64_t *ids, size_t n, st_symbols_fn fn,
                         void *arg)
{
	int rc = 0;
	st_symbol syms[ST_MAX_INLINE];
	base_buf text = {0};  /* a row's strings die at the next step: copies */
	size_t offs[ST_MAX_INLINE][2];
	read_begin(m);
	sqlite3_stmt *st = m->rs[R_SYM];
	for (size_t i = 0; i < n && !rc; i++) {
		size_t k = 0;
		text.len = 0;
		sqlite3_bind_int64(st, 1, ids[i]);
		int s;
		while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW && k < ST_MAX_INLINE) {
			const char *f = (const char *)sqlite3_column_text(st, 0);
			const char *file = (const char *)sqlite3_column_text(st, 1);
			offs[k][0] = text.len;
			rc = base_buf_put(&text, f ? f : "", strlen(f ? f : "") + 1);
			offs[k][1] = file ? text.len : SIZE_MAX;
			if (!rc && file)
				rc = base_buf_put(&text, file, strlen(file) + 1);
			syms[k].line = sqlite3_column_int64(st, 2);
			k++;
		}
		if (!rc && s != SQLITE_ROW && s != SQLITE_DONE)
			rc = sql_err(m->r, s);
		sqlite3_reset(st);
		for (size_t j = 0; j < k && !rc; j++) {
			syms[j].function = (const char *)text.data + offs[j][0];
			syms[j].file = offs[j][1] == SIZE_MAX ? NULL : (const char *)text.data + offs[j][1];
		}
		if (!rc && k)
			rc = fn(arg, ids[i], syms, k);
	}
	read_end(m);
	base_buf_free(&text);
	return rc;
}

static int symbols_put_locked(st__meta *m, int64_t loc, const st_symbol *syms, size_t n)
{
	int rc = exec(m->w, "BEGIN", NULL);
	if (rc)
		return rc;
	sqlite3_stmt *has = m->ws[W_HAS_SYM], *ins = m->ws[W_INS_SYM];
	sqlite3_bind_int64(has, 1, loc);
	int s = sqlite3_step(has);
	sqlite3_reset(has);
	if (s == SQLITE_ROW)
		goto out;  /* the first answer stays */
	if (s != SQLITE_DONE) {
		rc = sql_err(m->w, s);
		goto out;
	}
	for (size_t i = 0; i < n && !rc; i++) {
		sqlite3_bind_int64(ins, 1, loc);
		sqlite3_bind_int64(ins, 2, (int64_t)i);
		sqlite3_bind_text(ins, 3, syms[i].function ? syms[i].function : "", -1, SQLITE_STATIC);
		if (syms[i].file)
			sqlite3_bind_text(ins, 4, syms[i].file, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(ins, 4);
		sqlite3_bind_int64(ins, 5, syms[i].line);
		rc = step_done(m->w, ins);
	}
out:
	if (rc)
		exec(m->w, "ROLLBACK", NULL);
	else
		rc = exec(m->w, "COMMIT", NULL);
	return rc;
}

int st__meta_symbols_put(st__meta *m, int64_t loc, const st_symbol *syms, size_t n)
{
	pthread_mutex_lock(&m->w_mu);
	int rc = symbols_put_locked(m, loc, syms, n);
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}

int st__meta_symbols_missing(st__meta *m, int64_t after, size_t limit,
                             st_unsymbolized_fn fn, void *arg)
{
	int rc = 0, s;
	read_begin(m);
	sqlite3_stmt *st = m->rs[R_MISSING];
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, (int64_t)(limit > INT64_MAX ? INT64_MAX : limit));
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		int bl = sqlite3_column_bytes(st, 1);
		rc = fn(arg, sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
		        bl > 0 ? (uint32_t)bl : 0, (uint64_t)sqlite3_column_int64(st, 2));
	}
	if (!rc && s != SQLITE_DONE)
		rc = sql_err(m->r, s);
	sqlite3_reset(st);
	read_end(m);
	return rc;
}

static int symbols_forget_locked(st__meta *m, const uint8_t *bid, uint32_t len)
{
	sqlite3_stmt *st = m->ws[W_DEL_SYM];
	sqlite3_bind_blob(st, 1, bid, (int)len, SQLITE_STATIC);
	return step_done(m->w, st);
}

int st__meta_symbols_forget(st__meta *m, const uint8_t *bid, uint32_t len)
{
	pthread_mutex_lock(&m->w_mu);
	int rc = symbols_forget_locked(m, bid, len);
	pthread_mutex_unlock(&m->w_mu);
	return rc;
}
