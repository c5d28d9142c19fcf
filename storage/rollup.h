/* rollup.h - roll-up levels, internal to storage/: files of per (series,
 * stack) sums per step, built from blocks or from a finer level, that a
 * read uses instead of raw rows for the parts of a range they hold
 * exactly. The files are blocks of the block format with a step in the
 * header (docs/format.md, section 7); read.c decides what to read,
 * maint.c when to build, and this module keeps the files.
 *
 * Locking: the store's rw lock guards every list here. Functions that
 * look (st__ru_parts, st__ru_spans, st__ru_todo) need it held for reading,
 * functions that change (st__ru_install, st__ru_cut, st__ru_expire) for
 * writing; files are reference counted so a read keeps using one that was
 * replaced meanwhile. Writing a file (st__ru_write) takes no lock. */
#ifndef SMOLDER_ST_ROLLUP_H
#define SMOLDER_ST_ROLLUP_H

#include "storage/st_int.h"

typedef struct st__ru st__ru;
typedef struct st__ru_file st__ru_file;

/* The highest LSN of a partition whose rows are in blocks, 0 when none:
 * db.c's coverage. Called under the store's lock (or during open). */
typedef uint64_t (*st__ru_cover_fn)(void *arg, int64_t partition_start);

typedef struct st__ru_opts {
	const char *dir;              /* DATA_DIR/rollup */
	const int64_t *steps;         /* ascending, whole seconds */
	size_t nsteps;                /* <= ST_MAX_ROLLUPS */
	int64_t partition_ns;
	int64_t grace_ns;             /* a span is built this long after it ends */
	uint32_t chunk_rows;
	int64_t raw_floor;            /* raw rows before this may be gone */
	st__ru_cover_fn covered;
	void *carg;
} st__ru_opts;

/* Opens (creating) the level directories and loads their files. A file
 * that does not parse is logged with its path and kept out of reads until
 * a build replaces it; leftovers of a crash (.tmp, files inside another
 * file's span) are removed. */
int st__ru_open(const st__ru_opts *o, st__ru **out, base_err *err);
void st__ru_close(st__ru *r);

size_t st__ru_nlevels(const st__ru *r);
int64_t st__ru_step(const st__ru *r, size_t level);
/* The level with this step, or -1. */
int st__ru_level(const st__ru *r, int64_t step);

/* A cut recorded coverage for partition part: files holding it no longer
 * hold every row (write lock). */
void st__ru_cut(st__ru *r, int64_t part);
/* Raw rows before floor may have been deleted (write lock). */
void st__ru_raw_floor(st__ru *r, int64_t floor);
int64_t st__ru_get_raw_floor(const st__ru *r);

/* ---- reading ---- */

/* One piece of a level's span: a file to read (with a reference the
 * caller drops with st__ru_file_unref) or, with f NULL, a part the level
 * cannot answer, to read from raw rows. */
typedef struct st__ru_part {
	st__ru_file *f;
	int64_t from, to;
} st__ru_part;

/* Splits [from, to) for the level with this step into parts, in time
 * order; only whole steps are read from files. *out is the caller's to
 * free (read lock). */
int st__ru_parts(st__ru *r, int64_t step, int64_t from, int64_t to, st__ru_part **out,
                 size_t *n);
/* Where the level answers exactly: whole steps of [from, to), merged into
 * ascending, disjoint spans (read lock). *out is the caller's to free. */
int st__ru_spans(st__ru *r, int64_t step, int64_t from, int64_t to, st_span **out,
                 size_t *n);

const st__block *st__ru_file_block(const st__ru_file *f);
/* Where read.c keeps the registry indices of f's stacks (freed with f). */
_Atomic(uint32_t *) *st__ru_file_gidx(st__ru_file *f);
const char *st__ru_file_path(const st__ru_file *f);
size_t st__ru_file_level(const st__ru_file *f);
void st__ru_file_unref(st__ru_file *f);
/* A read found damage in f: it is kept out of reads and rebuilt by the
 * next st_rollup. Returns whether the raw rows of its span still exist,
 * so the read may fall back to them. */
bool st__ru_file_damaged(st__ru *r, st__ru_file *f);
/* When raw rows of [from, to) are read below the raw floor, where a
 * damaged file held them and no finer level does: that file's path (they
 * are lost; the read must say so), else NULL. Read lock. */
const char *st__ru_lost(const st__ru *r, int64_t from, int64_t to);
/* Counts a read that used raw rows in place of a damaged file. */
void st__ru_fallback(st__ru *r);

/* ---- building ---- */

/* A span of a level that st_rollup should write, and what from. */
typedef struct st__ru_job {
	size_t level;
	int64_t start, end;
	st__ru_file **src;      /* references; NULL: from raw blocks */
	size_t nsrc;
} st__ru_job;

/* The spans of level li due: each span with covered partitions
 * (parts[0..nparts), ascending) that ended grace_ns before now and after
 * keep_after and has no usable file, where its data still exists: the
 * same level's smaller files or the files of the level below when those
 * are all usable, else raw rows when they are complete; but a day-long
 * span (longer than the level's unit) that raw rows alone could give is
 * due as its units' spans that lack a file, and as a day at the next call,
 * from them. Ask level by level, finest first, so a level is built from
 * what the one below just got. Read lock. Free with st__ru_jobs_free. */
int st__ru_todo(st__ru *r, size_t li, const int64_t *parts, size_t nparts, int64_t now,
                int64_t keep_after, st__ru_job **out, size_t *n);
void st__ru_jobs_free(st__ru_job *j, size_t n);

/* Writes job's file from in[0..nin) (the job's files' blocks, or raw
 * blocks), durable under its final name; covers are the coverage of its
 * partitions that the inputs hold; gsids, gids and ngsids the groups of
 * the inputs' series (st__block_spec; NULL: none). -ENODATA when no row
 * falls in the span (nothing written). No lock. On success *out is the
 * opened file for st__ru_install. */
int st__ru_write(st__ru *r, const st__ru_job *job, const st__block *const *in, size_t nin,
                 const st__blk_cover *covers, size_t ncovers, const uint64_t *gsids,
                 const uint64_t (*gids)[ST__MAX_GROUPS], size_t ngsids, st__ru_file **out,
                 base_err *err);
/* Puts f in its level in place of the files inside its span, which are
 * deleted unless f took their name; f is stale at once if the coverage
 * moved on since its inputs were read (write lock). Takes f's reference. */
void st__ru_install(st__ru *r, st__ru_file *f);

/* Takes out files whose span ended before limit (write lock) into *gone;
 * st__ru_drop then deletes them from disk without the lock. */
int st__ru_expire(st__ru *r, int64_t limit, st__ru_file ***gone, size_t *n);
void st__ru_drop(st__ru *r, st__ru_file **gone, size_t n);

/* Calls fn for every series of every file, with the times its rows stand
 * for (a step's row, its whole step): at open, so a series whose raw rows
 * are gone is still selected where roll-ups hold it. */
typedef void (*st__ru_series_fn)(void *arg, uint64_t id, int64_t mint, int64_t maxt);
void st__ru_series(const st__ru *r, st__ru_series_fn fn, void *arg);

/* Figures for st_stats (read lock). */
void st__ru_stats(const st__ru *r, st_stats *o);
void st__ru_count(st__ru *r, size_t level, uint64_t rows);

#endif
