/* wal.h - storage's write-ahead log (internal to storage/). Appends are
 * serialized by the caller; st__wal_sync() may be called from any thread. */
#ifndef SMOLDER_ST_WAL_H
#define SMOLDER_ST_WAL_H

#include "storage/st_int.h"

typedef struct st__wal st__wal;

typedef struct st__wal_replay_info {
	uint64_t records;
	uint64_t torn_bytes;
	uint64_t next_lsn;
} st__wal_replay_info;

/* Lists the segments in dir (creating it); nothing is read yet. */
int st__wal_open(const char *dir, uint64_t seg_bytes, st__wal **out);
void st__wal_close(st__wal *w);

/* Calls fn for every intact record in LSN order, drops a torn tail of the
 * last segment, and leaves the log ready for appends with LSNs of at least
 * min_next_lsn. Any damage before the tail is -EBADMSG with err. */
int st__wal_replay(st__wal *w, uint64_t min_next_lsn, st__wal_fn fn, void *arg,
                   st__wal_replay_info *info, st_err *err);

/* Makes room for a record of len bytes: rotates the segment when it would
 * not fit and writes zeros ahead over the blocks it will take, so that the
 * append that follows cannot fail for want of space. -ENOSPC (and nothing
 * written) when the disk is full. Callers serialize it with appends. */
int st__wal_reserve(st__wal *w, size_t len);

/* Writes one record (not yet durable) and returns its LSN. Callers
 * serialize appends. */
int st__wal_append(st__wal *w, const uint8_t *payload, size_t len, uint64_t *lsn);

/* Returns once every record up to lsn is on stable storage. */
int st__wal_sync(st__wal *w, uint64_t lsn);

uint64_t st__wal_last_lsn(const st__wal *w);

/* Deletes segments holding only records below lsn. */
int st__wal_remove_before(st__wal *w, uint64_t lsn);

void st__wal_usage(st__wal *w, uint64_t *segments, uint64_t *bytes);
void st__wal_counters(st__wal *w, uint64_t *records, uint64_t *syncs, uint64_t *sync_ns);

#endif
