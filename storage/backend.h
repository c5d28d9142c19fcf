/* backend.h - the one seam between storage.h and the stores behind it
 * (internal to storage/). Every function of storage.h that reads or
 * writes a store calls through the handle's operations table: the
 * embedded store (db.c fills it with db_int.h's st__emb_* from head.c,
 * maint.c, select.c and read.c: WAL, blocks, SQLite) and ClickHouse
 * (clickhouse.c) each fill one, and nothing outside storage/ can tell
 * which one it has.
 *
 * A handle is the backend's own struct whose first member is the table
 * pointer: the embedded store's is `struct st_db` itself, ClickHouse's
 * `struct st__ch`, so storage.c reads the table through st__backend_of()
 * and hands the same pointer back. */
#ifndef SMOLDER_ST_BACKEND_H
#define SMOLDER_ST_BACKEND_H

#include <stdatomic.h>

#include "base/clock.h"
#include "base/map.h"
#include "storage/st_int.h"

typedef struct st__ops {
	const char *name;     /* "embedded", "clickhouse": logs and /metrics */
	void (*close)(st_db *db);
	int (*append)(st_db *db, const st_batch *b, base_err *err);
	int (*cut)(st_db *db, int64_t now_ns, int force);
	bool (*head_full)(st_db *db);
	int (*retention)(st_db *db, int64_t now_ns);
	int (*compact)(st_db *db);
	int (*select)(st_db *db, const st_matcher *m, size_t nm, int64_t from_ns, int64_t to_ns,
	              int64_t deadline_ns, st_selection **out, base_err *err);
	int (*series_labels)(st_db *db, uint64_t series_id, st_label **out, size_t *n);
	int (*rows)(st_db *db, const st_selection *sel, int64_t from_ns, int64_t to_ns,
	            st_row_fn fn, void *arg);
	/* st_merge and st_series_steps are these over one raw span */
	int (*merge_spans)(st_db *db, const st_selection *sel, const st_span *spans,
	                   size_t nspans, st_stack_sum **out, size_t *n, base_err *err);
	int (*series_steps_spans)(st_db *db, const st_selection *sel, const st_span *spans,
	                          size_t nspans, int64_t origin_ns, int64_t step_ns,
	                          size_t nsteps, const uint32_t *group, int64_t *sums,
	                          uint8_t *has, base_err *err);
	size_t (*rollup_steps)(st_db *db, int64_t *steps, size_t max);
	int (*rollup_spans)(st_db *db, int64_t step_ns, int64_t from_ns, int64_t to_ns,
	                    st_span **out, size_t *n);
	int (*rollup)(st_db *db, int64_t now_ns);
	int (*stack_frames)(st_db *db, uint64_t stack_id, st_frame_info **out, size_t *n);
	int (*stacks_locations)(st_db *db, const uint64_t *ids, size_t n, int64_t **locs,
	                        uint32_t **offs);
	int (*locations)(st_db *db, const int64_t *ids, size_t n, st_frame_info **out);
	int (*symbols_get)(st_db *db, const int64_t *ids, size_t n, st_symbols_fn fn, void *arg);
	int (*symbols_put)(st_db *db, int64_t location_id, const st_symbol *syms, size_t n);
	int (*symbols_forget)(st_db *db, const uint8_t *build_id, uint32_t build_id_len);
	int (*symbols_missing)(st_db *db, int64_t after_id, size_t limit, st_unsymbolized_fn fn,
	                       void *arg);
	const char *(*file_dir)(st_db *db);
	int (*file_keep)(st_db *db, const char *name, const char *path, base_err *err);
	int (*file_exists)(st_db *db, const char *name);
	int (*file_path)(st_db *db, const char *name, char *path, size_t size);
	int (*file_changes)(st_db *db, int64_t *cursor, st_file_fn fn, void *arg);
	void (*get_stats)(st_db *db, st_stats *out);
} st__ops;

/* The first member of every backend's handle. */
typedef struct st__handle {
	const st__ops *ops;
} st__handle;

static inline const st__ops *st__backend_of(st_db *db)
{
	return ((const st__handle *)(const void *)db)->ops;
}

/* ---- selections, shared by both backends ----
 * A selection is a sorted set of series IDs whatever the store: the query
 * engine only counts and indexes it. gbits is the embedded store's own
 * (positions in its series registry), NULL elsewhere. */
struct st_selection {
	uint64_t *ids;        /* ascending */
	size_t n;
	base_map map;          /* id -> position */
	uint8_t *gbits;       /* embedded: by registry index, for the head */
	uint32_t gbits_n;
	int64_t deadline_ns;  /* CLOCK_MONOTONIC; 0: none */
	/* chunks reads over this selection skipped as damaged (the embedded
	 * store's; ClickHouse checks its own parts). Reads take the selection
	 * const (it is their input); this counter is their one output through
	 * it, so it is atomic and written through a cast (the object itself
	 * is heap memory, never const). */
	atomic_uint_fast64_t damaged;
};

/* Sorts ids[0..n) (taking ownership of the malloc'd array, freed on
 * failure too) and indexes it into a new selection without a deadline. */
int st__selection_new(uint64_t *ids, size_t n, st_selection **out);

/* Orders st_stack_sums by stack ID (qsort), as st_merge returns them. */
int st__cmp_stack_sum(const void *a, const void *b);
/* Orders uint64_t ascending (qsort). */
int st__cmp_u64(const void *a, const void *b);
/* The same into sel (zeroed or holding its other fields): ids goes to
 * sel->ids at once, so st_selection_free(sel) frees it on failure. */
int st__selection_index(st_selection *sel, uint64_t *ids, size_t n);

/* -ETIMEDOUT once deadline_ns (CLOCK_MONOTONIC, 0: none) has passed. */
static inline int st__past(int64_t deadline_ns)
{
	return deadline_ns && base_monotonic_ns() >= deadline_ns ? -ETIMEDOUT : 0;
}

/* ---- label matchers, one semantics for both backends (select.c) ---- */
typedef struct st__match st__match;

/* Checks and compiles m[0..nm) (regexes fully anchored, PCRE2 UTF) into
 * *out, freed with st__match_free(). -EINVAL with err for a bad one. */
int st__match_compile(const st_matcher *m, size_t nm, st__match **out, base_err *err);
void st__match_free(st__match *cm, size_t nm);
/* Whether a label's value v ("" for a series without the label) passes
 * the i-th matcher of cm: 1 when it does, 0 when not, -EINVAL with err
 * when a regex ran out of its match budget on v (never taken for either
 * answer). */
int st__match_nth(const st__match *cm, size_t i, const char *v, base_err *err);

/* ---- debug-info files in a local directory ----
 * The embedded store's files, and ClickHouse's local copies of its own. */

/* Whether name is a file name the stores accept: 1..200 bytes of
 * [0-9A-Za-z._-], not starting with a dot (temporary files do). */
bool st__file_name_ok(const char *name);

/* Moves path to dir/name without replacing anything: fsyncs the file,
 * renames it (RENAME_NOREPLACE) and fsyncs dir. -EEXIST when dir/name
 * exists (path stays). */
int st__dir_keep(const char *dir, const char *name, const char *path);

#endif
