/* db_int.h - the store's own workshop: what db.c (open, replay, close,
 * registries, coverage, blocks on disk), head.c (append, apply, cut),
 * maint.c (retention, compaction, roll-ups), select.c (selections over the
 * label postings) and read.c (merges, rows, the timeline) share, and
 * nothing else includes.
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
#ifndef SMOLDER_DB_INT_H
#define SMOLDER_DB_INT_H

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/clock.h"
#include "base/err.h"
#include "base/map.h"
#include "storage/backend.h"
#include "storage/meta.h"
#include "storage/postings.h"
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
	base_map series_map;
	st__postings post;  /* the series' label postings (select.c's index) */
	st__ids stacks;     /* stack registry: ID <-> dense index */

	hpart **parts;
	size_t nparts, parts_cap;
	uint64_t head_rows;    /* written under rw, read by st__emb_head_full() without */

	blk **blocks;
	size_t nblocks, blocks_cap;
	uint64_t next_block_seq;

	covers cover;          /* max covered LSN per partition, from blocks */
	st__ru *ru;            /* roll-up levels (rollup.c), guarded by rw */
	uint64_t rows_read_raw; /* rows decoded by reads, atomically */
	char *group_label;     /* opt.rollup_group_label's copy, or NULL */

	uint64_t replayed, torn_bytes;
	bool replaying;
	atomic_bool compact_halted;  /* a result block could not be taken back */
};

static inline int64_t st__part_of(const st_db *db, int64_t ts)
{
	return ts - ts % db->opt.partition_ns;
}

/* ---- registries and coverage (db.c); callers hold rw for writing, or
 * are st_open ---- */

/* The registry index of series id, added (labels sorted by name, the
 * type first as ST_TYPE_LABEL) when new. */
int st__series_add(st_db *db, uint64_t id, const char *type, const st_label *labels,
                   uint32_t n, uint32_t *idx);
int st__stack_add(st_db *db, uint64_t id);
/* part's covered LSN, 0 when none. */
uint64_t st__covered(const covers *c, int64_t part);
/* Raises part's covered LSN to at least lsn. 0 or -ENOMEM. */
int st__cover_note(covers *c, int64_t part, uint64_t lsn);

/* ---- blocks on disk (db.c) ---- */

/* Opens (maps and parses) block directory name, one reference held. */
int st__blk_open(st_db *db, const char *name, blk **out, base_err *err);
/* Drops a reference; the last one unmaps, and deletes a dead block. */
void st__blk_unref(blk *k);
/* Writes a new block directory (rows from memory, or merged from in),
 * whole or not at all, its name into name. */
int st__blk_create(st_db *db, const st__wrow *rows, size_t n, const st__block *const *in,
                   size_t nin, st__block_spec *spec, char name[32]);
/* Takes a block written moments ago away from its live name. */
int st__blk_unpublish(st_db *db, const char *name);
/* Marks k dead (renamed, deleted once unreferenced) and drops the list's
 * reference. */
void st__blk_kill(st_db *db, blk *k);
/* A damaged chunk met by a read: said once per block on stderr. */
void st__blk_damaged(const blk *k, uint32_t chunk);
/* Adds k to the block list, ordered by time then name; caller holds rw
 * for writing. 0 or -ENOMEM. */
int st__blocks_push(st_db *db, blk *k);
/* Takes k out of the block list; caller holds rw for writing. */
void st__blocks_remove(st_db *db, blk *k);

/* ---- the head (head.c), for replay too ---- */

int st__head_check_stacks(st_db *db, const st_batch *b, uint32_t *kidx, base_err *err);
int st__head_put_meta(st_db *db, const st_batch *b, const uint64_t *series_ids, bool *open_tx);
int st__head_apply(st_db *db, const st_batch *b, const uint64_t *series_ids,
                   const uint32_t *kidx, uint64_t lsn);

/* ---- selections (select.c) ---- */

static inline bool st__sel_has(const st_selection *s, uint64_t id)
{
	return base_map_get(&s->map, id) != BASE_MAP_NONE;
}
/* Counts a damaged chunk a read over s left out. */
void st__sel_note_damaged(const st_selection *s);
/* Series s's value of label name, "" when it has none. */
const char *st__label_of(const sreg *s, const char *name);

/* ---- reads (read.c) ---- */

/* References on the blocks overlapping [from, to); caller holds rw. */
blk **st__snapshot_blocks(st_db *db, int64_t from, int64_t to, size_t *n);

/* ---- the embedded store's operations (backend.h), by file ---- */

/* head.c */
int st__emb_append(st_db *db, const st_batch *b, base_err *err);
int st__emb_cut(st_db *db, int64_t now_ns, int force);
/* maint.c */
int st__emb_retention(st_db *db, int64_t now_ns);
int st__emb_compact(st_db *db);
int st__emb_rollup(st_db *db, int64_t now_ns);
/* select.c */
int st__emb_select(st_db *db, const st_matcher *m, size_t nm, int64_t from, int64_t to,
                   int64_t deadline_ns, st_selection **out, base_err *err);
int st__emb_series_labels(st_db *db, uint64_t id, st_label **out, size_t *n);
/* read.c */
int st__emb_stack_frames(st_db *db, uint64_t id, st_frame_info **out, size_t *n);
int st__emb_stacks_locations(st_db *db, const uint64_t *ids, size_t n, int64_t **locs,
                             uint32_t **offs);
int st__emb_locations(st_db *db, const int64_t *ids, size_t n, st_frame_info **out);
int st__emb_symbols_get(st_db *db, const int64_t *ids, size_t n, st_symbols_fn fn, void *arg);
int st__emb_symbols_put(st_db *db, int64_t location_id, const st_symbol *syms, size_t n);
int st__emb_symbols_forget(st_db *db, const uint8_t *build_id, uint32_t build_id_len);
int st__emb_symbols_missing(st_db *db, int64_t after_id, size_t limit, st_unsymbolized_fn fn,
                            void *arg);
int st__emb_merge_spans(st_db *db, const st_selection *sel, const st_span *sp, size_t nsp,
                        st_stack_sum **out, size_t *nout, base_err *err);
int st__emb_rows(st_db *db, const st_selection *sel, int64_t from, int64_t to, st_row_fn fn,
                 void *arg);
int st__emb_series_steps_spans(st_db *db, const st_selection *sel, const st_span *sp,
                               size_t nsp, int64_t origin, int64_t step, size_t nsteps,
                               const uint32_t *group, int64_t *acc, uint8_t *has,
                               base_err *err);
size_t st__emb_rollup_steps(st_db *db, int64_t *steps, size_t max);
int st__emb_rollup_spans(st_db *db, int64_t step, int64_t from, int64_t to, st_span **out,
                         size_t *n);

#endif
