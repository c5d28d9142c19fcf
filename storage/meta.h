/* meta.h - storage's SQLite metadata (internal to storage/): series and
 * their inverted label index, objects, locations, stacks, and the symbols
 * table the symbolizer fills. The WAL stays the source of truth for
 * anything not yet checkpointed here; see st__meta_sync(). */
#ifndef SMOLDER_ST_META_H
#define SMOLDER_ST_META_H

#include "storage/st_int.h"

typedef struct st__meta st__meta;

int st__meta_open(const char *path, st__meta **out, st_err *err);
void st__meta_close(st__meta *m);

/* Stores value under key the first time; afterwards returns the stored
 * value in *value (settings the data on disk depends on). */
int st__meta_setting(st__meta *m, const char *key, int64_t *value);
/* Raises the setting key to at least value (creating it). */
int st__meta_setting_raise(st__meta *m, const char *key, int64_t value);

/* SQLite's message for the writer connection's last failure; for st_open's
 * messages, before any other thread uses the store. */
const char *st__meta_errmsg(st__meta *m);

/* Writer side, any thread: this module serializes every use of its writer
 * connection itself. A transaction is begin, puts, then commit or rollback
 * on one thread; it holds the writer from begin until commit or rollback
 * returns (whatever they return), so nothing between them may wait for
 * another writer call. */
int st__meta_begin(st__meta *m);
int st__meta_commit(st__meta *m);
void st__meta_rollback(st__meta *m);
/* Inside a transaction only. */
int st__meta_put_series(st__meta *m, uint64_t id, const st_series_def *s);
/* Inserts the stack, its objects and locations as needed. Inside a
 * transaction only. */
int st__meta_put_stack(st__meta *m, const st_batch *b, const st_stack_def *s);
/* Makes every commit so far durable (checkpoint with fsync); called before
 * WAL segments that carried the same metadata are deleted. */
int st__meta_sync(st__meta *m);

/* Remembers that partition_start's rows up to wal_lsn are in blocks, so a
 * replay skips them even after retention deleted those blocks. */
int st__meta_put_cover(st__meta *m, int64_t partition_start, uint64_t wal_lsn);
typedef int (*st__meta_cover_fn)(void *arg, int64_t partition_start, uint64_t wal_lsn);
int st__meta_load_cover(st__meta *m, st__meta_cover_fn fn, void *arg);

/* Loading at open. */
typedef int (*st__meta_series_fn)(void *arg, uint64_t id, const char *type,
                                  const st_label *labels, uint32_t n);
int st__meta_load_series(st__meta *m, st__meta_series_fn fn, void *arg);
typedef int (*st__meta_stack_fn)(void *arg, uint64_t id);
int st__meta_load_stacks(st__meta *m, st__meta_stack_fn fn, void *arg);

/* Reader side, any thread. */
typedef int (*st__meta_id_fn)(void *arg, uint64_t id);
/* Series having label name=value (name may be ST_TYPE_LABEL). */
int st__meta_series_eq(st__meta *m, const char *name, const char *value,
                       st__meta_id_fn fn, void *arg);
typedef int (*st__meta_value_fn)(void *arg, const char *value);
/* Distinct values of a label name. */
int st__meta_label_values(st__meta *m, const char *name, st__meta_value_fn fn,
                          void *arg);
int st__meta_stack_frames(st__meta *m, uint64_t id, st_frame_info **out, size_t *n);
int st__meta_stack_locations(st__meta *m, uint64_t id, int64_t *locs, size_t *n);
int st__meta_location(st__meta *m, int64_t loc, st_frame_info **out);
int st__meta_stacks_locations(st__meta *m, const uint64_t *ids, size_t n,
                              int64_t **locs, uint32_t **offs);
int st__meta_locations(st__meta *m, const int64_t *ids, size_t n, st_frame_info **out);

/* The symbol cache (storage.h). */
int st__meta_symbols_get(st__meta *m, const int64_t *ids, size_t n, st_symbols_fn fn,
                         void *arg);
int st__meta_symbols_put(st__meta *m, int64_t loc, const st_symbol *syms, size_t n);
int st__meta_symbols_forget(st__meta *m, const uint8_t *bid, uint32_t len);
int st__meta_symbols_missing(st__meta *m, int64_t after, size_t limit,
                             st_unsymbolized_fn fn, void *arg);

#endif
