/* storage.h - Smolder's sample store, behind one interface with two
 * backends: the embedded store (a checksummed write-ahead log, an
 * in-memory head, immutable time-partitioned lz4 column blocks, and SQLite
 * for metadata: series and their labels, stacks, objects, locations,
 * symbols, and a directory of debug-info files), opened by st_open(); and
 * ClickHouse (the same data in tables of a ClickHouse server or cluster,
 * so any number of servers share it), opened by st_open_clickhouse().
 * Everything else is the same call on either; docs/architecture.md says
 * where their behaviour differs.
 *
 * This header is the whole contract the server and query engine may use.
 * It knows nothing of HTTP, the wire protocol or symbolization.
 *
 * -EAGAIN, with err where the function takes one, means the store cannot
 * be reached or refused for now (ClickHouse down, a shard stopped, a
 * timeout): nothing was stored and the same call may pass later. Only the
 * ClickHouse backend returns it. */
#ifndef SMOLDER_STORAGE_H
#define SMOLDER_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Limits on input. Exceeding one makes st_append() fail with -EINVAL and a
 * message naming the limit; nothing is ever truncated silently. */
#define ST_MAX_TYPE_LEN        256   /* bytes of a profile type string */
#define ST_MAX_LABEL_NAME_LEN  128
#define ST_MAX_LABEL_VALUE_LEN 1024
#define ST_MAX_LABELS          64    /* labels per series, type excluded */
#define ST_MAX_FRAMES          512   /* frames per stack */
#define ST_MAX_BUILD_ID_LEN    64    /* bytes of an object's build ID */
#define ST_MAX_OBJECT_NAME_LEN 4096
#define ST_MAX_SYMBOL_LEN      1024  /* a kernel frame's name */
#define ST_MAX_FILE_LEN        4096  /* a named frame's source file */
#define ST_MAX_LANG_LEN        32    /* a named frame's language tag */
#define ST_MAX_LINE            INT32_MAX /* a named frame's line */
#define ST_MAX_BATCH_SAMPLES   (1u << 22)
#define ST_MAX_BATCH_ITEMS     (1u << 20) /* series, objects or stacks */
#define ST_MAX_TS_NS           (INT64_C(1) << 62) /* timestamps in [0, this): before 2116 */
#define ST_MAX_VALUE           (INT64_C(1) << 48) /* |value| of one sample */

/* The label that carries a series' profile type, as Prometheus' __name__. */
#define ST_TYPE_LABEL "__name__"

/* Roll-up levels a store may keep (st_options.rollup_steps_ns). */
#define ST_MAX_ROLLUPS 4

typedef struct st_db st_db;
typedef struct st_selection st_selection;

/* Functions that take a base_err (base/err.h) fill its msg with a
 * human-readable reason when they fail; it may be NULL where the caller
 * does not care. */

typedef struct st_options {
	int64_t partition_ns;      /* block time partition; default 1 h */
	int64_t retention_ns;      /* delete blocks older; default 7 d, 0 keeps all */
	uint64_t max_block_bytes;  /* delete the oldest blocks while all blocks
	                            * together take more; 0 (default) no limit.
	                            * The WAL and head are never deleted for it */
	int64_t cut_grace_ns;      /* a partition is cut this long after it ends;
	                            * default 5 min, so late batches still land */
	uint64_t head_max_rows;    /* cut every partition once the head holds
	                            * more rows; default 1 M (24 bytes each) */
	uint64_t wal_segment_bytes;/* rotate WAL segments at this size; 64 MiB */
	uint64_t compact_max_rows; /* compaction never builds a bigger block; 16 M */
	int64_t compact_max_span_ns; /* nor one spanning longer; default 24 h */
	uint32_t chunk_rows;       /* rows per column chunk; default 16384 */
	int64_t max_future_ns;     /* refuse rows dated further ahead of the
	                            * clock; default 10 min, 0 no limit */
	uint64_t max_series;       /* refuse batches that would make the store
	                            * hold more series; default 1 M, 0 none */
	/* Roll-up levels: per (series, stack), the sum of values per step,
	 * written by st_rollup() and read in place of raw rows where they
	 * hold every row of a step. Steps ascend, each a whole number of
	 * seconds dividing the next; default 1 h and 1 d. nrollups 0: none */
	uint32_t nrollups;
	int64_t rollup_steps_ns[ST_MAX_ROLLUPS];
	int64_t rollup_retention_ns; /* delete roll-ups older; default 90 d, 0 keeps all */
	/* Roll-ups also hold sums over groups of series: per profile type
	 * over all its series, and over the series of each value of this
	 * label; a merge whose selection holds a whole group reads its sums
	 * instead of its series' (docs/format.md, section 7). Default
	 * "service"; NULL or "": per type only. Copied at st_open(). */
	const char *rollup_group_label;
} st_options;

typedef struct st_label {
	const char *name;
	const char *value;
} st_label;

/* A series: a profile type such as "process_cpu:samples:count:cpu:nanoseconds:delta"
 * plus labels in any order (storage sorts them). Label names follow
 * Prometheus: [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"; values are
 * non-empty UTF-8. */
typedef struct st_series_def {
	const char *type;
	const st_label *labels;
	uint32_t nlabels;
} st_series_def;

/* An ELF object (executable or shared library) identified by build ID;
 * name is its file name as the host saw it, for "[unknown] libc.so.6+0x1234". */
typedef struct st_object {
	const uint8_t *build_id;
	uint32_t build_id_len;
	const char *name;
} st_object;

enum { ST_FRAME_USER = 0, ST_FRAME_KERNEL = 1, ST_FRAME_NAMED = 2 };

/* One frame. User frames are (object, file offset); kernel frames carry the
 * symbol name the agent read from /proc/kallsyms; named frames carry a
 * function name from a profile that arrived symbolized (pprof ingest) or
 * that the agent named itself (interpreted and JIT code, whose names live
 * only in the process), so its names are kept without debug info.
 *
 * A named frame may also carry where it is: a language tag (the runtime
 * the code belongs to: "python", "js", "java", ...; 1..ST_MAX_LANG_LEN
 * bytes of [a-z0-9_.+-]), the source file and the line being executed.
 * Each is optional; two frames that differ in any of them are different
 * locations. Other kinds must leave them unset.
 *
 * A stack whose walk stopped before its outermost frame (no unwind rule,
 * unreadable memory, the depth limit: its callers are missing) ends,
 * outermost, with the named frame ST_TRUNCATED_FRAME, which carries no
 * language, file or line. It marks the stack, it is no code: queries leave
 * it out of trees and count the stack's samples as truncated instead. The
 * agent's WIRE_TRUNCATED_FRAME. */
#define ST_TRUNCATED_FRAME "[truncated]"
typedef struct st_frame {
	uint32_t kind;
	uint32_t object;     /* user: index into st_batch.objects */
	uint64_t offset;     /* user: offset in the object's file */
	const char *name;    /* kernel: symbol; named: function */
	const char *file;    /* named: source file; NULL or "" when unknown */
	uint32_t line;       /* named: line, 1..ST_MAX_LINE; 0 when unknown */
	const char *lang;    /* named: language tag; NULL or "" for none */
} st_frame;

/* A stack, leaf first. id must equal st_stack_hash() of the frames. */
typedef struct st_stack_def {
	uint64_t id;
	const st_frame *frames;
	uint32_t nframes;
} st_stack_def;

typedef struct st_sample {
	int64_t ts_ns;
	uint32_t series;     /* index into st_batch.series */
	uint64_t stack_id;   /* defined in this batch or stored before */
	int64_t value;
} st_sample;

/* What one st_append() stores atomically. Stacks that the store already
 * has may be left out; objects are only referenced from stacks. */
typedef struct st_batch {
	const st_series_def *series;
	uint32_t nseries;
	const st_object *objects;
	uint32_t nobjects;
	const st_stack_def *stacks;
	uint32_t nstacks;
	const st_sample *samples;
	uint32_t nsamples;
} st_batch;

/* One stored row, as reads return it. */
typedef struct st_row {
	int64_t ts_ns;
	uint64_t series_id;
	uint64_t stack_id;
	int64_t value;
} st_row;

typedef struct st_stack_sum {
	uint64_t stack_id;
	int64_t value;
	/* 1 + the store's number for the stack: dense (below st_stats.stacks
	 * + 1) and the same for the stack while the store is open, so a
	 * caller can keep what it knows of stacks in an array instead of a
	 * hash table; 0 where the store has none */
	uint32_t num;
} st_stack_sum;

typedef enum st_match_op {
	ST_MATCH_EQ,   /* =  */
	ST_MATCH_NE,   /* != */
	ST_MATCH_RE,   /* =~ fully anchored PCRE2 */
	ST_MATCH_NRE,  /* !~ */
} st_match_op;

/* As in Prometheus, a series without the label has it as "" for matching:
 * name!="x" and name=~".*" match it, name="" selects series lacking it. */
typedef struct st_matcher {
	const char *name;
	st_match_op op;
	const char *value;
} st_matcher;

/* One frame of a stored stack, as st_stack_frames() returns it. Strings and
 * build_id point into the same allocation as the array. */
typedef struct st_frame_info {
	uint32_t kind;
	int64_t location_id;       /* SQLite locations.id: the symbolizer's key */
	const uint8_t *build_id;   /* user frames */
	uint32_t build_id_len;
	const char *object_name;   /* user frames */
	uint64_t offset;
	const char *name;          /* kernel and named frames */
	const char *file;          /* named frames: source file, NULL when none */
	uint32_t line;             /* named frames: line, 0 when none */
	const char *lang;          /* named frames: language tag, NULL when none */
} st_frame_info;

typedef struct st_stats {
	uint64_t head_rows;
	uint64_t head_partitions;
	uint64_t blocks;
	uint64_t block_rows;
	uint64_t block_bytes;
	uint64_t wal_segments;
	uint64_t wal_bytes;
	uint64_t wal_records;       /* appended since open */
	uint64_t wal_syncs;         /* fdatasync calls since open (group commits) */
	uint64_t wal_sync_ns;       /* time spent in them */
	uint64_t series;
	uint64_t stacks;
	uint64_t replayed_records;  /* WAL records replayed at open */
	uint64_t torn_bytes;        /* bytes of torn WAL tail dropped at open */
	/* ClickHouse only (0 in the embedded store), since open; series and
	 * stacks above are those this server knows to be stored */
	uint64_t remote_inserts;        /* inserts of sample rows */
	uint64_t remote_insert_rows;    /* rows they carried */
	uint64_t remote_insert_batches; /* batches grouped into them */
	uint64_t remote_dedup_rows;     /* rows of a batch sent again, stored once */
	uint64_t remote_failures;       /* requests that failed */
	uint64_t remote_reads[1 + ST_MAX_ROLLUPS]; /* queries of sample sums: [0] raw
	                                 * rows, [1 + i] roll-up level i */
	/* rows decoded by reads since open: [0] raw rows (blocks and head),
	 * [1 + i] the roll-up level with step rollup_steps_ns[i] */
	uint64_t rows_read[1 + ST_MAX_ROLLUPS];
	uint32_t nrollups;
	int64_t rollup_steps_ns[ST_MAX_ROLLUPS];
	uint64_t rollup_files[ST_MAX_ROLLUPS];
	uint64_t rollup_rows[ST_MAX_ROLLUPS];
	uint64_t rollup_bytes[ST_MAX_ROLLUPS];
	uint64_t rollup_damaged;    /* roll-up files found damaged since open */
	uint64_t rollup_fallbacks;  /* reads that used raw rows for a damaged one */
} st_stats;

/* Sums of sample values saturate instead of wrapping around: one that
 * would pass INT64_MAX (INT64_MIN) stays there, sticky, and whoever shows a
 * sum reports such a value as saturated (st_sum_saturated). 40,000 rows of
 * 2^48 nanoseconds (a fleet's CPU time over a long range) pass INT64_MAX;
 * wrapping turned them negative. Every sum storage and the query engine
 * return is made with this. */
static inline bool st_sum_saturated(int64_t v)
{
	return v == INT64_MAX || v == INT64_MIN;
}

static inline int64_t st_sum_add(int64_t a, int64_t b)
{
	int64_t r;
	if (st_sum_saturated(a))
		return a;
	if (st_sum_saturated(b))
		return b;
	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* Fills opt with the defaults above. */
void st_options_default(st_options *opt);

/* Opens (creating if needed) the store in dir: dir/meta.db (SQLite),
 * dir/wal/, dir/blocks/. Replays the WAL; a torn record at the tail of the
 * last segment is dropped, any other corruption fails with -EBADMSG.
 * opt may be NULL for defaults. Close with st_close(). */
int st_open(const char *dir, const st_options *opt, st_db **out, base_err *err);

/* ClickHouse as the store (docs/architecture.md, "Two backends"). */
typedef struct st_ch_options {
	/* HTTP interfaces of ClickHouse nodes, comma-separated:
	 * http[s]://[user[:password]@]host:port[/database]. The first that
	 * answers takes reads and inserts; with a cluster, every shard's node
	 * must be listed (ClickHouse without ZooKeeper has no ON CLUSTER, so
	 * the store creates each shard's tables and drops their old
	 * partitions itself). Database "default" when the URL names none. */
	const char *urls;
	/* A remote_servers cluster: tables are sharded through Distributed
	 * tables over it. NULL: one node, plain tables. */
	const char *cluster;
	/* Where local copies of debug-info files go (st_file_path). */
	const char *cache_dir;
	int64_t retention_ns;      /* drop day partitions older; 0 keeps all */
	/* the roll-up level's (sums per hour, made at insert by a
	 * materialized view): drop day partitions older; default 90 d, 0
	 * keeps all */
	int64_t rollup_retention_ns;
	int64_t timeout_ns;        /* per ClickHouse request; default 30 s */
	uint32_t max_group_rows;   /* concurrent appends grouped into one insert
	                            * up to this many rows; default 1 M */
	int64_t max_future_ns;     /* as st_options'; default 10 min, 0 no limit */
	/* refuse batches whose new series would pass this many in ClickHouse;
	 * default 1 M, 0 none. Checked against a count at most 10 s old plus
	 * this server's own since, so servers sharing the store may together
	 * pass it by what they add in that time */
	uint64_t max_series;
} st_ch_options;

/* Fills opt with the defaults above (urls, cluster and cache_dir NULL). */
void st_ch_options_default(st_ch_options *opt);

/* Opens the store in ClickHouse: checks every node's version (18.16 or
 * later) and the schema version its tables were created with, refusing a
 * mismatch with err saying which; creates the tables that are missing.
 * -EAGAIN with err when a node cannot be reached. Close with st_close(). */
int st_open_clickhouse(const st_ch_options *opt, st_db **out, base_err *err);

/* Which backend db is: "embedded" or "clickhouse". */
const char *st_backend_name(st_db *db);

/* Flushes nothing (everything acknowledged is already in the WAL) and frees.
 * Accepts NULL. */
void st_close(st_db *db);

/* Validates batch, writes it to the WAL and the head, and returns once the
 * WAL record is on stable storage (group commit with concurrent callers).
 * Reads may see the rows a moment before the call returns. Thread-safe.
 * Returns 0, -EINVAL with err for a bad batch (rows dated more than
 * max_future_ns ahead included), -EUSERS with err when its new series
 * would pass max_series, -ENOENT with err when a
 * sample names a stack that is neither in the batch nor stored (the batch
 * is otherwise fine: the sender should resend it with that stack's frames;
 * nothing of it was stored), -ENOSPC (-EDQUOT from the file system) when
 * the disk is full: nothing of the batch is stored, later ones may pass, or
 * -EIO when the disk failed: the store then
 * refuses every further append, and whether that last batch survives a
 * restart depends on what reached the disk. */
int st_append(st_db *db, const st_batch *batch, base_err *err);

/* The stable 64-bit ID of a stack: XXH3 over the normalized frames (build
 * ID bytes and offset, or kernel name), so every host computes the same. */
uint64_t st_stack_hash(const st_object *objects, uint32_t nobjects,
                       const st_frame *frames, uint32_t nframes);

/* The ID of a series: XXH3 over the type and the sorted labels. Fails with
 * -EINVAL for labels that st_append() would reject. */
int st_series_id(const st_series_def *s, uint64_t *out, base_err *err);

/* Cuts head partitions that ended more than cut_grace_ns before now_ns
 * (every partition when force is set, or when the head is over
 * head_max_rows) into blocks, then deletes WAL segments no longer needed. */
int st_cut(st_db *db, int64_t now_ns, int force);

/* Whether the head holds more than head_max_rows rows, so that a caller
 * cutting on a timer can cut sooner when ingest outpaces the timer. Cheap
 * (no lock) and thread-safe. */
bool st_head_full(st_db *db);

/* Deletes blocks whose newest row is older than now_ns - retention_ns,
 * then, with max_block_bytes set, the oldest blocks (by their first row)
 * until the rest take at most max_block_bytes. Each deletion is logged on
 * stderr with the block's name, time range and size. */
int st_retention(st_db *db, int64_t now_ns);

/* Merges overlapping blocks and runs of adjacent small blocks. */
int st_compact(st_db *db);

/* Selects series that match every matcher and have rows in
 * [from_ns, to_ns). Free with st_selection_free(). A regex that exhausts
 * its match budget on some label value (nested repetition backtracking
 * exponentially) fails with -EINVAL and err naming the regex; it is never
 * taken for a match or a miss. */
int st_select(st_db *db, const st_matcher *m, size_t nm, int64_t from_ns,
              int64_t to_ns, st_selection **out, base_err *err);
/* The same with a deadline on CLOCK_MONOTONIC (0: none): this call, and
 * every read over the selection it returns (st_merge, st_series_steps,
 * st_rows), fail with -ETIMEDOUT once it has passed, so a query cannot
 * outlive the time its caller gave it. */
int st_select_until(st_db *db, const st_matcher *m, size_t nm, int64_t from_ns,
                    int64_t to_ns, int64_t deadline_ns, st_selection **out, base_err *err);
void st_selection_free(st_selection *sel);
size_t st_selection_count(const st_selection *sel);
/* Chunks that reads over sel left out because they are damaged (a
 * checksum that does not match, content that does not decode): the
 * answers lack their rows, and say so by this count. Each damaged block
 * is named once on stderr. */
uint64_t st_selection_damaged(const st_selection *sel);
/* The i-th selected series ID, ascending. */
uint64_t st_selection_id(const st_selection *sel, size_t i);

/* Labels of a series, type first as ST_TYPE_LABEL, then sorted by name.
 * The caller frees *out with free() (one allocation). */
int st_series_labels(st_db *db, uint64_t series_id, st_label **out, size_t *n);

/* Calls fn for every row of the selected series in [from_ns, to_ns), in no
 * particular order. A non-zero return from fn stops and is returned. Reads
 * over a selection skip damaged chunks (st_selection_damaged) and stop
 * with -ETIMEDOUT past its deadline (st_select_until). */
typedef int (*st_row_fn)(void *arg, const st_row *row);
int st_rows(st_db *db, const st_selection *sel, int64_t from_ns, int64_t to_ns,
            st_row_fn fn, void *arg);

/* The timeline without rows: adds (st_sum_add) the value of every row of the selected
 * series in [from_ns, to_ns) into sums[g * nsteps + k] and sets has[g *
 * nsteps + k], where k = (ts - origin_ns) / step_ns and g = group[i] for
 * the series' position i in the selection (st_selection_id order);
 * group[i] == UINT32_MAX leaves series i out, rows before origin_ns or in
 * no step below nsteps are skipped. sums and has are the caller's, one
 * entry per (group, step), added to, not cleared. */
int st_series_steps(st_db *db, const st_selection *sel, int64_t from_ns, int64_t to_ns,
                    int64_t origin_ns, int64_t step_ns, size_t nsteps,
                    const uint32_t *group, int64_t *sums, uint8_t *has);

/* Sums values per stack over the selected series in [from_ns, to_ns)
 * without materializing rows, saturating (st_sum_add). *out is sorted by
 * stack ID; the caller frees it with free(). */
int st_merge(st_db *db, const st_selection *sel, int64_t from_ns,
             int64_t to_ns, st_stack_sum **out, size_t *n);

/* ---- roll-ups ----
 * A read plan is a list of spans, each read either from raw rows or from
 * one roll-up level: "which step, over which time range". Rows still in
 * the head are read for every span whatever its step (no level holds
 * them). A span of a level is only exact over whole steps of it, and only
 * where the level holds every row: st_rollup_spans says where. Where a
 * level cannot answer when the read runs (a file replaced, damaged or
 * deleted since the plan was made), storage reads raw rows instead. */
typedef struct st_span {
	int64_t step_ns;   /* 0: raw rows; else a roll-up level's step */
	int64_t from_ns, to_ns;
} st_span;

/* The roll-up levels' steps, finest first, into steps[0..max); returns
 * how many levels there are. */
size_t st_rollup_steps(st_db *db, int64_t *steps, size_t max);

/* Where the level with step_ns holds every row: whole steps within
 * [from_ns, to_ns), as ascending disjoint spans (step_ns set) in *out,
 * which the caller frees. -EINVAL for a step that is no level's. */
int st_rollup_spans(st_db *db, int64_t step_ns, int64_t from_ns, int64_t to_ns,
                    st_span **out, size_t *n);

/* Writes the roll-ups that are due: each level's spans that ended more
 * than cut_grace_ns before now_ns and lack an up-to-date file (new, or
 * late rows were cut since), from the level below or raw rows; then
 * deletes roll-ups older than rollup_retention_ns. Each file is written
 * under a temporary name, fsynced and renamed: it exists whole or not. */
int st_rollup(st_db *db, int64_t now_ns);

/* st_merge over a plan: spans must not overlap. *out comes in no
 * particular order (sorting a week's 100 k stacks by ID took a tenth of
 * storage's share, and the query engine has no use for the order). A
 * damaged roll-up file is counted and its part read from raw rows;
 * -EBADMSG with err naming the file when those are gone. */
int st_merge_spans(st_db *db, const st_selection *sel, const st_span *spans, size_t nspans,
                   st_stack_sum **out, size_t *n, base_err *err);

/* st_series_steps over a plan; a level's span is used as it is, so its
 * step should divide step_ns (else a roll-up row lands in the step its
 * start falls in). */
int st_series_steps_spans(st_db *db, const st_selection *sel, const st_span *spans,
                          size_t nspans, int64_t origin_ns, int64_t step_ns, size_t nsteps,
                          const uint32_t *group, int64_t *sums, uint8_t *has, base_err *err);

/* Frames of a stack, leaf first. -ENOENT for an unknown stack. The caller
 * frees *out with free() (one allocation). */
int st_stack_frames(st_db *db, uint64_t stack_id, st_frame_info **out,
                    size_t *n);

/* Location IDs of many stacks, leaf first, in one read transaction
 * (per-call lookups spend most of their time taking SQLite's file locks),
 * so that a caller names each distinct location once (st_locations)
 * instead of once per stack. Stack i's locations
 * are (*locs)[(*offs)[i] .. (*offs)[i + 1]); the caller frees both. Any
 * unknown stack fails the call with -ENOENT. */
int st_stacks_locations(st_db *db, const uint64_t *ids, size_t n,
                        int64_t **locs, uint32_t **offs);
/* n locations into one allocation (*out, n entries); -ENOENT for an
 * unknown one. */
int st_locations(st_db *db, const int64_t *ids, size_t n, st_frame_info **out);

/* ---- the symbol cache (filled by the server's symbolizer) ----
 * A location's inline chain, innermost first, as the symbolizer found it
 * in the location's debug info. Kept for good: a location's answer never
 * changes, because its object is named by build ID. A chain of one frame
 * with an empty function means "looked, nothing there". */
typedef struct st_symbol {
	const char *function;
	const char *file;        /* NULL when unknown */
	int64_t line;            /* 0 when unknown */
} st_symbol;

#define ST_MAX_INLINE 64     /* frames of one chain at most */

/* Calls fn for each of ids[0..n) that has cached symbols, in one read
 * transaction; the strings are valid during the call only. A non-zero
 * return from fn stops and is returned. */
typedef int (*st_symbols_fn)(void *arg, int64_t location_id, const st_symbol *syms,
                             size_t n);
int st_symbols_get(st_db *db, const int64_t *ids, size_t n, st_symbols_fn fn, void *arg);

/* Stores a location's chain (1..ST_MAX_INLINE frames); a location already
 * cached keeps its first answer. Thread-safe; it waits only for other
 * metadata writes, never for the WAL. */
int st_symbols_put(st_db *db, int64_t location_id, const st_symbol *syms, size_t n);

/* A chain kept in memory as one allocation: head bytes for the caller's
 * header (a multiple of sizeof(void *)), then syms[0..n) copied, then
 * their strings, so one free() releases it all. The copies start at
 * (st_symbol *)((char *)block + head). NULL without memory. */
void *st_symbols_pack(size_t head, const st_symbol *syms, size_t n);

/* Drops the cached symbols of every location in the object with this
 * build ID: its debug info got better (a separate debug file arrived after
 * the stripped binary), so the next lookup works them out again. */
int st_symbols_forget(st_db *db, const uint8_t *build_id, uint32_t build_id_len);

/* User locations (object, offset) that have no cached symbols, with IDs
 * greater than after_id, in ID order, at most limit of them: the
 * symbolizer's background work list. */
typedef int (*st_unsymbolized_fn)(void *arg, int64_t location_id, const uint8_t *build_id,
                                  uint32_t build_id_len, uint64_t offset);
int st_symbols_missing(st_db *db, int64_t after_id, size_t limit, st_unsymbolized_fn fn,
                       void *arg);

/* ---- debug-info files ----
 * Whole files kept by name for the server (its debug info, "<hex>" and
 * "<hex>.debug"), each kept once and never replaced. Names are 1..200
 * bytes of [0-9A-Za-z._-] not starting with a dot. The embedded store
 * keeps them in DIR/debuginfo; ClickHouse in its debuginfo table, with a
 * local copy under st_ch_options.cache_dir for readers that want a path. */

/* A directory on this machine for the caller's temporary files (names
 * starting with a dot), written before st_file_keep(). */
const char *st_file_dir(st_db *db);

/* Keeps the file at path (a temporary file in st_file_dir()) as name.
 * Returns 0 (path is then gone: moved into the store), -EEXIST when name
 * is kept already (path is left to the caller), -EAGAIN with err when the
 * store cannot be reached, or another -errno. Durable when it returns. */
int st_file_keep(st_db *db, const char *name, const char *path, base_err *err);

/* 1 when name is kept, 0 when not, or a negative errno. */
int st_file_exists(st_db *db, const char *name);

/* Writes into path[0..size) the path of a local copy of name (the file
 * itself in the embedded store; a copy fetched from ClickHouse once).
 * -ENOENT when name is not kept. */
int st_file_path(st_db *db, const char *name, char *path, size_t size);

/* Files kept by any server since *cursor (0 at first; an opaque position
 * that the call advances): fn(arg, name) for each, for callers that cache
 * what they read from older files. A name may come more than once. The
 * embedded store, which only its own process writes, reports none. */
typedef int (*st_file_fn)(void *arg, const char *name);
int st_file_changes(st_db *db, int64_t *cursor, st_file_fn fn, void *arg);

void st_get_stats(st_db *db, st_stats *out);

#endif
